//! Delegation: a human lets an agent act on their behalf, within a scope and until a time. An
//! agent that names a human (`on_behalf_of`) must show that the human said so: a live
//! delegation that covers the action, or a trusted service vouching for the human in the same
//! call. Naming anyone else is refused, and the attempt is a violation.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::format_micros;
use crate::error::{Error, Result};
use crate::identity::{Human, validate_slug};
use crate::policy::glob_match;

/// The longest a delegation may last: a standing right is a grant, not a delegation.
pub const MAX_DAYS: i64 = 90;

const DAY_US: i64 = 86_400_000_000;

/// `POST /v1/delegations`: what the signed-in human lets an agent do for them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationRequest {
    /// The agent.
    pub agent: String,
    /// Action classes (patterns); empty for every class the human may do.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Environments (patterns, case-insensitive); empty for every one.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Services (patterns); empty for every one.
    #[serde(default)]
    pub services: Vec<String>,
    /// How long it lasts, in hours (1 to 2160, 90 days).
    pub hours: i64,
}

/// A delegation as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delegation {
    /// Id.
    pub id: String,
    /// The human who delegates.
    pub human: String,
    /// The agent that may act for them.
    pub agent: String,
    /// Action classes (patterns); empty for all.
    pub classes: Vec<String>,
    /// Environments (patterns); empty for all.
    pub environments: Vec<String>,
    /// Services (patterns); empty for all.
    pub services: Vec<String>,
    /// When it was given, RFC 3339.
    pub created_at: String,
    /// When it lapses, RFC 3339.
    pub expires_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// When it lapses, Unix microseconds (for the rules, not shown).
    #[serde(skip)]
    pub expires_at_micros: i64,
}

impl DelegationRequest {
    /// Checks the request and makes the delegation `human` gives at `now`.
    pub fn delegation(self, id: String, human: &str, now: i64) -> Result<Delegation> {
        validate_slug("agent", &self.agent)?;
        if !(1..=MAX_DAYS * 24).contains(&self.hours) {
            return Err(Error::field(
                "hours",
                format!("must be from 1 to {} ({MAX_DAYS} days)", MAX_DAYS * 24),
            ));
        }
        let mut environments = self.environments;
        for e in &mut environments {
            e.make_ascii_lowercase();
        }
        for (field, patterns) in [
            ("classes", &self.classes),
            ("environments", &environments),
            ("services", &self.services),
        ] {
            if patterns.len() > 32 {
                return Err(Error::field(field, "at most 32 patterns"));
            }
            if let Some((i, p)) = patterns.iter().enumerate().find(|(_, p)| !pattern(p)) {
                return Err(Error::field(
                    format!("{field}[{i}]"),
                    format!("`{p}` is not a pattern (1–128 of a-z, 0-9, - _ . / : and *)"),
                ));
            }
        }
        let expires = now.saturating_add(self.hours.saturating_mul(DAY_US / 24));
        Ok(Delegation {
            id,
            human: human.to_string(),
            agent: self.agent,
            classes: self.classes,
            environments,
            services: self.services,
            created_at: format_micros(now),
            expires_at: format_micros(expires),
            revoked_at: None,
            revoked_by: None,
            expires_at_micros: expires,
        })
    }
}

fn pattern(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 128
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.*/:".contains(c))
}

impl Delegation {
    /// Whether it lets its agent do this, now: live, and every part of the action in scope.
    pub fn covers(&self, (class, env, service): (&str, &str, &str), now: i64) -> bool {
        let within = |patterns: &[String], value: &str| {
            patterns.is_empty() || patterns.iter().any(|p| glob_match(p, value))
        };
        self.revoked_at.is_none()
            && now < self.expires_at_micros
            && within(&self.classes, class)
            && within(&self.environments, env)
            && within(&self.services, service)
    }
}

/// The human an agent says it acts for, and what proves it.
#[derive(Debug, Clone)]
pub struct OnBehalfOf {
    /// The human.
    pub human: Arc<Human>,
    /// The proof.
    pub proof: HumanProof,
}

/// How a claim to act for a human is proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HumanProof {
    /// The human delegated to the agent: the delegation's id.
    Delegated(String),
    /// A trusted service vouched for the human in this call: the service's name.
    Vouched(String),
    /// Nothing proves it.
    Unproven,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000;

    fn request(hours: i64) -> DelegationRequest {
        DelegationRequest {
            agent: "bot".into(),
            classes: vec!["deploy".into()],
            environments: vec!["Staging".into(), "prod*".into()],
            services: vec![],
            hours,
        }
    }

    #[test]
    fn a_delegation_covers_its_scope_until_it_lapses_or_is_revoked() {
        let d = request(2).delegation("d1".into(), "dana", NOW).unwrap();
        assert_eq!(d.environments, ["staging", "prod*"]);
        assert!(d.covers(("deploy", "staging", "payments"), NOW));
        assert!(d.covers(("deploy", "production", "orders"), NOW));
        assert!(!d.covers(("db_migration", "staging", "payments"), NOW));
        assert!(!d.covers(("deploy", "dev", "payments"), NOW));
        let later = NOW + 2 * 3_600_000_000;
        assert!(!d.covers(("deploy", "staging", "payments"), later));
        let revoked = Delegation {
            revoked_at: Some(format_micros(NOW)),
            ..d
        };
        assert!(!revoked.covers(("deploy", "staging", "payments"), NOW));
    }

    #[test]
    fn a_delegation_is_bounded() {
        let field = |r: DelegationRequest| r.delegation("d".into(), "dana", NOW).unwrap_err().field;
        assert_eq!(field(request(0)).as_deref(), Some("hours"));
        assert_eq!(field(request(MAX_DAYS * 24 + 1)).as_deref(), Some("hours"));
        let mut bad = request(1);
        bad.services = vec!["pay ments".into()];
        assert_eq!(field(bad).as_deref(), Some("services[0]"));
        let mut bad = request(1);
        bad.agent = "Not An Id".into();
        assert_eq!(field(bad).as_deref(), Some("agent"));
    }
}
