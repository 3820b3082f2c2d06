//! The audit record, its hash chain, and chain verification.
//!
//! Every record's hash covers the previous record's hash, its own sequence number and its
//! canonical JSON, so editing, deleting or reordering any record breaks every hash after it.
//! Records are appended by the store's writer in the same transaction as the change they
//! describe.

pub mod checkpoint;
pub mod export;
pub mod merkle;
pub mod ocsf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::identity::Caller;

mod verify;
pub use verify::{Break, StoredRow, Tamper, Verifier};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// `agent`, `human`, `service` or `admin`.
    pub kind: String,
    /// The agent's or human's id, or the token's subject.
    pub id: String,
    /// For agents: the tool they run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// For agents: the model behind them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The token the call came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// For agents: the owning team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// For agents: the human accountable for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor: Option<String>,
}

impl Actor {
    /// Warden itself, acting on its own schedule (expiries, overdue outcomes, tier reviews).
    pub fn warden() -> Actor {
        Actor {
            kind: "service".into(),
            id: "warden".into(),
            tool: None,
            model: None,
            token_id: None,
            ..Default::default()
        }
    }

    /// The operator's configuration file (the policy and plugin directory it names).
    pub fn configuration() -> Actor {
        Actor {
            kind: "admin".into(),
            id: "configuration".into(),
            tool: None,
            model: None,
            token_id: None,
            ..Default::default()
        }
    }

    /// A platform's signed webhook (`github`), verified by its shared secret rather than a token.
    pub fn integration(platform: &str) -> Actor {
        Actor {
            kind: "service".into(),
            id: format!("integration:{platform}"),
            tool: None,
            model: None,
            token_id: None,
            ..Default::default()
        }
    }

    /// The holder of the token a call came with.
    pub fn of(caller: &Caller) -> Actor {
        Actor {
            kind: caller.role.actor_kind().to_string(),
            id: caller.actor_id(),
            tool: None,
            model: None,
            token_id: Some(caller.token_id.clone()),
            ..Default::default()
        }
    }
}

/// An audit record for a change `caller` made (an admin's or an approver's token, whose
/// subject is the authorizing human).
pub fn by_caller(
    caller: &Caller,
    event: &str,
    target: String,
    agent: Option<String>,
    details: serde_json::Value,
    now: i64,
) -> AuditRecord {
    AuditRecord {
        agent,
        authorizing_human: caller.subject.clone(),
        ..AuditRecord::change(Actor::of(caller), event, target, details, now)
    }
}

/// JSON kept as its text: made once when a record is built and written as it is, without an
/// intermediate tree of values (the decision path builds a record for every decision).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// Serializes `value`.
    pub fn of(value: &impl Serialize) -> serde_json::Result<RawJson> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parsed, for reading a field.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or_default()
    }
}

impl From<serde_json::Value> for RawJson {
    fn from(value: serde_json::Value) -> RawJson {
        // A value tree has string keys and finite numbers: it always serializes.
        RawJson::of(&value).expect("a JSON value serializes")
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

/// One audit record: the part the hash covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// `decision`, `agent.created`, `agent.updated`, `human.created`, `token.created`, `token.revoked`, …
    pub event_type: String,
    /// When (RFC 3339, UTC, microseconds).
    pub at: String,
    /// Who acted.
    pub actor: Actor,
    /// The agent the record concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The human an agent acted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The human who authorised the change (admin or approver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizing_human: Option<String>,
    /// Action class, for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_class: Option<String>,
    /// Environment, for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The service acted on, for decisions and what follows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The team the record concerns (the agent's owning team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// What was acted on: `service:payments`, `agent:deploy-bot`, `token:tok_…`.
    pub target: String,
    /// The action as requested, for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub action: Option<RawJson>,
    /// Verdict (decisions) or outcome (outcome reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Risk level, for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
    /// The approval a decision consumed, or the approval a record is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The humans who approved it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The agent's stated reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Policy version in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The decision this record belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// Anything else: the decision's reasons, a change's before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<RawJson>,
}

impl AuditRecord {
    /// A record of a change to Warden itself (an identity, token, plugin or the policy) by
    /// `actor`, with what changed in `details`. Set `agent` or `authorizing_human` after, where
    /// they apply.
    pub fn change(
        actor: Actor,
        event_type: &str,
        target: String,
        details: serde_json::Value,
        now: i64,
    ) -> AuditRecord {
        AuditRecord {
            event_type: event_type.to_string(),
            at: crate::clock::format_micros(now),
            actor,
            agent: None,
            on_behalf_of: None,
            authorizing_human: None,
            action_class: None,
            environment: None,
            target,
            action: None,
            outcome: None,
            reasoning: None,
            policy_version: None,
            decision_id: None,
            details: Some(details.into()),
            ..Default::default()
        }
    }
}

/// A stored audit record with its place in the chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// The hash of a record at `seq` following `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, record_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(record_json.as_bytes());
    hex::encode(h.finalize())
}

/// The copies of a record's fields kept in columns for querying, derived from the record
/// alone so the verifier can check that nobody edited them apart from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    /// Unix microseconds.
    pub at: i64,
    /// Event type.
    pub event_type: String,
    /// Actor kind.
    pub actor_kind: String,
    /// Actor id.
    pub actor_id: String,
    /// The agent concerned.
    pub agent_id: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Action class.
    pub action_class: Option<String>,
    /// Decision id.
    pub decision_id: Option<String>,
    /// Service: the record's own, or its `service:` target.
    pub service: Option<String>,
    /// Team.
    pub team: Option<String>,
    /// A decision's verdict.
    pub verdict: Option<String>,
    /// An outcome record's outcome.
    pub outcome: Option<String>,
    /// Risk level.
    pub risk: Option<String>,
    /// The human an agent acted for.
    pub on_behalf_of: Option<String>,
}

impl AuditRecord {
    /// The query columns; `None` if the record's time is not RFC 3339.
    pub fn columns(&self) -> Option<Columns> {
        let at = crate::clock::parse_micros(&self.at)?;
        // Older records put a decision's verdict in `outcome`, as new ones still do.
        let (verdict, outcome) = if self.event_type == "decision" {
            (self.outcome.clone(), None)
        } else {
            (None, self.outcome.clone())
        };
        let service = self
            .service
            .clone()
            .or_else(|| self.target.strip_prefix("service:").map(str::to_string));
        Some(Columns {
            at,
            event_type: self.event_type.clone(),
            actor_kind: self.actor.kind.clone(),
            actor_id: self.actor.id.clone(),
            agent_id: self.agent.clone(),
            environment: self.environment.clone(),
            action_class: self.action_class.clone(),
            decision_id: self.decision_id.clone(),
            service,
            team: self.team.clone(),
            verdict,
            outcome,
            risk: self.risk.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
        })
    }

    /// The humans a record names: the acting human, the one an agent acted for, the one who
    /// authorised it and its approvers (what `human=` finds, and what an approver may read).
    pub fn people(&self) -> std::collections::BTreeSet<&str> {
        let acting =
            matches!(self.actor.kind.as_str(), "human" | "admin").then_some(self.actor.id.as_str());
        acting
            .into_iter()
            .chain(self.on_behalf_of.as_deref())
            .chain(self.authorizing_human.as_deref())
            .chain(self.approvers.iter().map(String::as_str))
            .collect()
    }
}
