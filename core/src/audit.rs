//! The audit record, its hash chain, and chain verification.
//!
//! Every record's hash covers the previous record's hash, its own sequence number and its
//! canonical JSON, so editing, deleting or reordering any record breaks every hash after it.
//! Records are appended by the store's writer in the same transaction as the change they
//! describe.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::identity::Caller;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// What was acted on: `service:payments`, `agent:deploy-bot`, `token:tok_…`.
    pub target: String,
    /// The action as requested, for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub action: Option<RawJson>,
    /// Verdict or outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
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

/// A stored row, as `verify` reads it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Sequence number.
    pub seq: i64,
    /// Stored copy of the record's time, Unix microseconds.
    pub at: i64,
    /// Stored copies of record fields, for querying.
    pub event_type: String,
    /// Stored copy.
    pub actor_kind: String,
    /// Stored copy.
    pub actor_id: String,
    /// Stored copy.
    pub agent_id: Option<String>,
    /// Stored copy.
    pub environment: Option<String>,
    /// Stored copy.
    pub action_class: Option<String>,
    /// Stored copy.
    pub decision_id: Option<String>,
    /// The canonical JSON the hash covers.
    pub record: String,
    /// Stored previous hash.
    pub prev_hash: String,
    /// Stored hash.
    pub hash: String,
}

/// Walks the chain in order, checking each row against the one before it. Feed rows in
/// ascending `seq`; call [`Verifier::finish`] with the stored head.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev_hash: GENESIS.to_string(),
        }
    }
}

impl Verifier {
    /// Checks the next row; the error says which record is wrong and how.
    pub fn check(&mut self, row: &StoredRow) -> Result<(), String> {
        let seq = row.seq;
        if seq != self.expected_seq {
            return Err(format!(
                "record {} is missing or out of order (found {seq} in its place)",
                self.expected_seq
            ));
        }
        if row.prev_hash != self.prev_hash {
            return Err(format!(
                "record {seq}: its previous-hash does not match record {}'s hash (deleted or reordered records)",
                seq - 1
            ));
        }
        if chain_hash(&row.prev_hash, seq, &row.record) != row.hash {
            return Err(format!(
                "record {seq}: its content does not match its hash (edited)"
            ));
        }
        let record: AuditRecord = serde_json::from_str(&row.record)
            .map_err(|e| format!("record {seq}: unreadable ({e})"))?;
        let at = crate::clock::parse_micros(&record.at)
            .ok_or_else(|| format!("record {seq}: bad time"))?;
        let columns_agree = row.at == at
            && row.event_type == record.event_type
            && row.actor_kind == record.actor.kind
            && row.actor_id == record.actor.id
            && row.agent_id == record.agent
            && row.environment == record.environment
            && row.action_class == record.action_class
            && row.decision_id == record.decision_id;
        if !columns_agree {
            return Err(format!(
                "record {seq}: its query columns were edited and no longer match the hashed record"
            ));
        }
        self.expected_seq += 1;
        self.prev_hash = row.hash.clone();
        Ok(())
    }

    /// Checks the chain's end against the stored head; returns the number of records.
    pub fn finish(self, head_seq: i64, head_hash: &str) -> Result<i64, String> {
        let count = self.expected_seq - 1;
        if head_seq != count || head_hash != self.prev_hash {
            return Err(format!(
                "the chain ends at record {count} but its head says {head_seq}: records were deleted from the end"
            ));
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: &str, event: &str) -> StoredRow {
        let record = AuditRecord {
            event_type: event.into(),
            at: "2026-01-01T00:00:00.000000Z".into(),
            actor: Actor {
                kind: "admin".into(),
                id: "root".into(),
                tool: None,
                model: None,
                token_id: None,
            },
            agent: None,
            on_behalf_of: None,
            authorizing_human: None,
            action_class: None,
            environment: None,
            target: "agent:x".into(),
            action: None,
            outcome: None,
            reasoning: None,
            policy_version: None,
            decision_id: None,
            details: None,
        };
        let json = serde_json::to_string(&record).unwrap();
        StoredRow {
            seq,
            at: crate::clock::parse_micros(&record.at).unwrap(),
            event_type: event.into(),
            actor_kind: "admin".into(),
            actor_id: "root".into(),
            agent_id: None,
            environment: None,
            action_class: None,
            decision_id: None,
            hash: chain_hash(prev, seq, &json),
            record: json,
            prev_hash: prev.into(),
        }
    }

    fn chain(n: i64) -> Vec<StoredRow> {
        let mut rows: Vec<StoredRow> = Vec::new();
        for seq in 1..=n {
            let prev = rows
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS.into());
            rows.push(row(seq, &prev, "agent.created"));
        }
        rows
    }

    fn verify(rows: &[StoredRow], head: (i64, &str)) -> Result<i64, String> {
        let mut v = Verifier::default();
        for r in rows {
            v.check(r)?;
        }
        v.finish(head.0, head.1)
    }

    #[test]
    fn intact_chain_verifies() {
        let rows = chain(5);
        assert_eq!(verify(&rows, (5, &rows[4].hash)), Ok(5));
    }

    #[test]
    fn detects_edit_delete_reorder_truncate_and_column_edit() {
        let rows = chain(5);
        let head = (5, rows[4].hash.as_str());
        let mut edited = rows.clone();
        edited[2].record = edited[2].record.replace("agent:x", "agent:y");
        assert!(verify(&edited, head).unwrap_err().contains("record 3"));
        let mut deleted = rows.clone();
        deleted.remove(1);
        assert!(verify(&deleted, head).unwrap_err().contains("record 2"));
        let mut reordered = rows.clone();
        reordered.swap(1, 2);
        assert!(verify(&reordered, head).is_err());
        assert!(
            verify(&rows[..4], head)
                .unwrap_err()
                .contains("deleted from the end")
        );
        let mut column = rows.clone();
        column[3].actor_kind = "human".into();
        assert!(verify(&column, head).unwrap_err().contains("record 4"));
    }
}
