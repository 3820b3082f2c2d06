//! Principals: agents, humans, API tokens and the roles tokens carry.
//!
//! Everything here is plain data plus validation; persistence is in `store`, and the HTTP
//! surface in `api`. Tokens are random, shown once, and stored only as a SHA-256 hash.

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::policy::{Grant, MAX_TIER};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages agents, humans, tokens and policy, and reads everything.
    Admin,
    /// A human who may approve actions (the subject is the human's id).
    Approver,
    /// A platform integration asking for decisions on behalf of any agent.
    Service,
    /// One agent asking for itself (the subject is the agent's id).
    Agent,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Service => "service",
            Role::Agent => "agent",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "approver" => Role::Approver,
            "service" => Role::Service,
            "agent" => Role::Agent,
            _ => return None,
        })
    }

    /// The audit actor kind for a caller with this role.
    pub fn actor_kind(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "human",
            Role::Service => "service",
            Role::Agent => "agent",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id (not the secret).
    pub token_id: String,
    /// The token's role.
    pub role: Role,
    /// Who the token speaks for: the agent's or human's id, or a free-form name.
    pub subject: Option<String>,
}

impl Caller {
    /// The caller's id for the audit log.
    pub fn actor_id(&self) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| self.token_id.clone())
    }

    /// Fails with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(Error::forbidden(
                "forbidden_role",
                format!(
                    "a {} token may not do this; it needs one of: {}",
                    self.role.as_str(),
                    allowed.join(", ")
                ),
            ))
        }
    }
}

/// A newly minted token: the secret (shown once) and what is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The bearer secret, `wdn_` + 43 base64url characters. Never stored.
    pub secret: String,
    /// What the store keeps.
    pub record: TokenRecord,
}

/// A token as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenRecord {
    /// Public id, used to list and revoke.
    pub id: String,
    /// Hex SHA-256 of the secret.
    #[serde(skip)]
    pub hash: String,
    /// The token's role.
    pub role: Role,
    /// Who the token speaks for.
    pub subject: Option<String>,
    /// Free-form note.
    pub note: String,
    /// Creation time, Unix microseconds.
    #[serde(skip)]
    pub created_at: i64,
    /// Revocation time, Unix microseconds, if revoked.
    #[serde(skip)]
    pub revoked_at: Option<i64>,
}

/// Hashes a bearer secret for lookup.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Mints a random token.
pub fn mint_token(role: Role, subject: Option<String>, note: String, now: i64) -> NewToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "wdn_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    token_from_secret(secret, role, subject, note, now)
}

/// Wraps a secret chosen elsewhere (the bootstrap token) as a token.
pub fn token_from_secret(
    secret: String,
    role: Role,
    subject: Option<String>,
    note: String,
    now: i64,
) -> NewToken {
    let mut id_bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut id_bytes);
    let record = TokenRecord {
        id: format!("tok_{}", hex::encode(id_bytes)),
        hash: hash_token(&secret),
        role,
        subject,
        note,
        created_at: now,
        revoked_at: None,
    };
    NewToken { secret, record }
}

/// Agent status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May ask for decisions.
    Active,
    /// Every decision is denied.
    Suspended,
}

impl AgentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
        }
    }
}

/// An agent: a service account of its own.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Agent {
    /// Slug, unique.
    pub id: String,
    /// The tool it runs in (e.g. a coding assistant's name).
    pub tool: String,
    /// The model behind it.
    pub model: String,
    /// Owning team.
    pub team: String,
    /// The human accountable for it.
    pub sponsor: String,
    /// Current tier, 0–4.
    pub tier: u8,
    /// Highest tier humans allow it; it is never promoted past it.
    pub ceiling: u8,
    /// Parent agent, for sub-agents: their effective tier never exceeds the parent's.
    pub parent: Option<String>,
    /// Active or suspended.
    pub status: AgentStatus,
    /// In shadow mode every verdict is recorded but nothing is blocked.
    pub shadow: bool,
    /// Pinned by an admin: the tier controller leaves its tier alone.
    pub pinned: bool,
    /// In its current tier since (RFC 3339).
    pub tier_since: String,
    /// Its trust score after its latest evidence (null before any).
    pub trust_score: Option<f64>,
    /// No promotion before this, Unix microseconds (the cool-down after a demotion).
    #[serde(skip)]
    pub hold_until: Option<i64>,
    /// Its last hard trigger, Unix microseconds.
    #[serde(skip)]
    pub last_hard_at: Option<i64>,
    /// An admin's quota limits for this agent (quota name → limit), over its tier's and team's.
    pub quota_overrides: std::collections::BTreeMap<String, f64>,
    /// For each tier Warden promoted the agent into: the classes among the tier's new rights it
    /// may use alone, having done them under approval. The tier's other new rights still need a
    /// human until earned. Empty when humans set the tier.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub earned_classes: std::collections::BTreeMap<u8, std::collections::BTreeSet<String>>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Optimistic-concurrency version; bumped by every change.
    #[serde(skip)]
    pub version: i64,
}

/// `POST /v1/agents`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentCreate {
    /// Slug: 1–64 of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit.
    pub id: String,
    /// The tool it runs in.
    pub tool: String,
    /// The model behind it.
    pub model: String,
    /// Owning team.
    pub team: String,
    /// The accountable human.
    pub sponsor: String,
    /// Starting tier; default 1 (sandbox).
    pub tier: Option<u8>,
    /// Ceiling; default 2 (standard). A higher one is a deliberate human choice.
    pub ceiling: Option<u8>,
    /// Parent agent id.
    pub parent: Option<String>,
    /// Start in shadow mode; default false.
    pub shadow: Option<bool>,
}

/// `PATCH /v1/agents/{id}`: every field optional; `parent: null` detaches.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    /// The tool it runs in.
    pub tool: Option<String>,
    /// The model behind it.
    pub model: Option<String>,
    /// Owning team.
    pub team: Option<String>,
    /// The accountable human.
    pub sponsor: Option<String>,
    /// New tier (never above the ceiling).
    pub tier: Option<u8>,
    /// New ceiling.
    pub ceiling: Option<u8>,
    /// New parent, or null to detach.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub parent: Option<Option<String>>,
    /// Suspend or resume.
    pub status: Option<AgentStatus>,
    /// Shadow mode on or off.
    pub shadow: Option<bool>,
    /// Pin the tier (the controller leaves it alone) or unpin it.
    pub pinned: Option<bool>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// A human: a platform user with grants of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Human {
    /// Unique id (e.g. a username).
    pub id: String,
    /// Team.
    pub team: String,
    /// What the human may do; an agent acting on their behalf gets at most this.
    pub grants: Vec<Grant>,
    /// Creation time (RFC 3339); set by the server (what a request says is ignored).
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: String,
}

/// Checks an id-like slug.
pub fn validate_slug(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::field(
            field,
            format!(
                "`{value}` is not a valid id: use 1–64 of a-z, 0-9, - _ . starting with a letter or digit"
            ),
        ))
    }
}

/// Checks a short free-text field (name, team, model).
pub fn validate_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::field(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::field(
            field,
            format!("is {} bytes, over the limit of {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::field(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a tier number.
pub fn validate_tier(field: &str, tier: u8) -> Result<()> {
    if tier > MAX_TIER {
        Err(Error::field(
            field,
            format!("tier {tier} does not exist; tiers are 0 to {MAX_TIER}"),
        ))
    } else {
        Ok(())
    }
}

impl Agent {
    /// An active agent of `team` at `tier` (ceiling 4), a Claude Code agent sponsored by
    /// `alice`, never saved: for tests, benchmarks and fixtures (the API builds agents from
    /// their create request).
    pub fn new(id: &str, team: &str, tier: u8) -> Agent {
        Agent {
            id: id.into(),
            tool: "claude-code".into(),
            model: "claude-opus".into(),
            team: team.into(),
            sponsor: "alice".into(),
            tier,
            ceiling: 4,
            parent: None,
            status: AgentStatus::Active,
            shadow: false,
            pinned: false,
            tier_since: String::new(),
            trust_score: None,
            hold_until: None,
            last_hard_at: None,
            quota_overrides: Default::default(),
            earned_classes: Default::default(),
            created_at: String::new(),
            updated_at: String::new(),
            version: 1,
        }
    }

    /// Checks the whole agent after a create or a patch.
    pub fn validate(&self) -> Result<()> {
        validate_slug("id", &self.id)?;
        validate_text("tool", &self.tool, 128)?;
        validate_text("model", &self.model, 128)?;
        validate_slug("team", &self.team)?;
        validate_text("sponsor", &self.sponsor, 128)?;
        validate_tier("tier", self.tier)?;
        validate_tier("ceiling", self.ceiling)?;
        if self.tier > self.ceiling {
            return Err(Error::field(
                "tier",
                format!(
                    "tier {} is above the agent's ceiling {}; raise `ceiling` first",
                    self.tier, self.ceiling
                ),
            ));
        }
        if let Some(parent) = &self.parent {
            validate_slug("parent", parent)?;
            if parent == &self.id {
                return Err(Error::field("parent", "an agent cannot be its own parent"));
            }
        }
        Ok(())
    }

    /// Applies a patch (validation is separate).
    pub fn apply(&mut self, patch: AgentPatch) {
        let AgentPatch {
            tool,
            model,
            team,
            sponsor,
            tier,
            ceiling,
            parent,
            status,
            shadow,
            pinned,
        } = patch;
        if let Some(v) = tool {
            self.tool = v;
        }
        if let Some(v) = model {
            self.model = v;
        }
        if let Some(v) = team {
            self.team = v;
        }
        if let Some(v) = sponsor {
            self.sponsor = v;
        }
        if let Some(v) = tier {
            self.tier = v;
        }
        if let Some(v) = ceiling {
            self.ceiling = v;
        }
        if let Some(v) = parent {
            self.parent = v;
        }
        if let Some(v) = status {
            self.status = v;
        }
        if let Some(v) = shadow {
            self.shadow = v;
        }
        if let Some(v) = pinned {
            self.pinned = v;
        }
    }
}

impl Human {
    /// Checks the human's fields and grants.
    pub fn validate(&self) -> Result<()> {
        validate_slug("id", &self.id)?;
        validate_slug("team", &self.team)?;
        if self.grants.len() > 256 {
            return Err(Error::field("grants", "at most 256 grants"));
        }
        for (i, g) in self.grants.iter().enumerate() {
            let at = format!("grants[{i}]");
            g.validate(&at).map_err(|(f, m)| Error::field(f, m))?;
            if g.effect != crate::policy::Effect::Allow {
                return Err(Error::field(
                    format!("{at}.effect"),
                    "a human's grants always allow; leave `effect` out",
                ));
            }
        }
        Ok(())
    }

    /// Whether one of the human's grants covers the action at this risk.
    pub fn covers(
        &self,
        class: &str,
        environment: &str,
        service: &str,
        risk: crate::policy::RiskLevel,
    ) -> bool {
        self.grants
            .iter()
            .any(|g| g.covers(class, environment, service, risk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = mint_token(Role::Agent, Some("bot".into()), String::new(), 0);
        let b = mint_token(Role::Agent, Some("bot".into()), String::new(), 0);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("wdn_") && a.secret.len() == 47);
        assert_eq!(a.record.hash, hash_token(&a.secret));
        assert!(!a.record.hash.contains(&a.secret));
    }

    #[test]
    fn slugs() {
        assert!(validate_slug("id", "deploy-bot.v2").is_ok());
        for bad in ["", "-x", "Upper", "sp ace", &"a".repeat(65)] {
            assert_eq!(
                validate_slug("id", bad).unwrap_err().field.as_deref(),
                Some("id"),
                "{bad}"
            );
        }
    }

    #[test]
    fn patch_keeps_tier_under_ceiling() {
        let mut agent = Agent {
            ceiling: 2,
            ..Agent::new("a", "core", 1)
        };
        agent.apply(AgentPatch {
            tier: Some(3),
            ..Default::default()
        });
        assert_eq!(agent.validate().unwrap_err().field.as_deref(), Some("tier"));
        agent.apply(AgentPatch {
            ceiling: Some(3),
            ..Default::default()
        });
        assert!(agent.validate().is_ok());
        agent.apply(AgentPatch {
            parent: Some(Some("a".into())),
            ..Default::default()
        });
        assert_eq!(
            agent.validate().unwrap_err().field.as_deref(),
            Some("parent")
        );
    }
}
