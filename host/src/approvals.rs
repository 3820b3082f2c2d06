//! Approvals (DESIGN.md, stage 8): a `require_approval` verdict creates a request for a human,
//! bound to the SHA-256 of the exact action (agent, on-behalf-of human and the whole action,
//! plan and reasoning included). The agent re-submits the same action with the approval's id;
//! the approval then allows that action once. Anything else presented as an approval (another
//! action, another agent, a used or unknown id) is denied and recorded as a violation.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::audit::{Actor, AuditRecord};
use crate::clock::SharedClock;
use crate::outbox::{Event, Outbox};
use crate::store::{Approval, Change, Store, Write};

/// An approval presented with a decision request, checked against the request.
#[derive(Debug, Clone)]
pub enum Presented {
    /// Approved, unexpired, unused, and for exactly this action by this agent.
    Valid(Approval),
    /// For this action, still waiting for a human: the agent keeps waiting on it.
    Pending(Approval),
    /// For this action, but it lapsed undecided: a new request can be made.
    Expired(String),
    /// For this action, and a human said no.
    Rejected(String),
    /// Presenting it is a violation: unknown, for another action or agent, or already used.
    Violation {
        /// Reason code (`approval_unknown`, `approval_mismatch`, `approval_reused`).
        code: &'static str,
        /// For humans.
        text: String,
    },
}

/// The hex SHA-256 of the JSON of who asks and the exact action. Structs serialize their fields
/// in a fixed order and maps sorted; free-form JSON in the action (its `plan`) must have been
/// put through [`canonical`] first, so that key order never changes the hash.
pub fn action_hash(agent: &str, on_behalf_of: Option<&str>, action: &impl serde::Serialize) -> String {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Serializing plain data into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut hashing, &(agent, on_behalf_of, action));
    hex::encode(hashing.0.finalize())
}

/// The same JSON with object keys sorted at every level.
pub fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Checks a presented approval (as loaded, `None` if unknown) against the request.
pub fn present(approval: Option<Approval>, id: &str, agent: &str, hash: &str) -> Presented {
    let violation = |code, text| Presented::Violation { code, text };
    let Some(a) = approval else {
        return violation("approval_unknown", format!("no approval `{id}`"));
    };
    if a.agent != agent || a.action_hash != hash {
        return violation("approval_mismatch", format!("approval `{id}` was given for another action or agent; it allows only the exact action asked for"));
    }
    match a.status.as_str() {
        "approved" => Presented::Valid(a),
        "pending" => Presented::Pending(a),
        "rejected" => Presented::Rejected(format!("approval `{id}` was rejected by {}", a.decided_by.as_deref().unwrap_or("a human"))),
        "expired" => Presented::Expired(format!("approval `{id}` expired at {} without a decision", a.expires_at)),
        _ => violation("approval_reused", format!("approval `{id}` was already used by decision {}", a.consumed_by.as_deref().unwrap_or("?"))),
    }
}

/// Announces lapsed approvals (`approval.expired`, audited), once each across replicas; runs
/// until the store closes.
pub async fn announce_expiries(store: Store, outbox: Arc<Outbox>, clock: SharedClock, every: Duration) {
    while !store.is_closed() {
        let now = clock.now_micros();
        match store.unannounced_expiries(now, 100).await {
            Ok(lapsed) => {
                for a in lapsed {
                    let data = serde_json::json!({"approval_id": a.id, "decision_id": a.decision_id, "agent": a.agent, "class": a.class,
                        "environment": a.environment, "service": a.service, "expires_at": a.expires_at});
                    let event = Event::new("approval.expired", now, data.clone());
                    let mut writes = vec![Write::NoteApprovalExpired { id: a.id.clone() }];
                    writes.extend(outbox.writes(&event, now));
                    let actor = Actor { kind: "service".into(), id: "warden".into(), tool: None, model: None, token_id: None };
                    let record = AuditRecord {
                        agent: Some(a.agent.clone()),
                        decision_id: Some(a.decision_id.clone()),
                        action_class: Some(a.class.clone()),
                        environment: Some(a.environment.clone()),
                        ..AuditRecord::change(actor, "approval.expired", format!("approval:{}", a.id), data, now)
                    };
                    // A conflict means another replica announced it first.
                    if store.commit(Change { writes, audit: vec![record] }).await.is_ok() {
                        outbox.notify();
                    }
                }
            }
            Err(e) if !store.is_closed() => tracing::warn!(error = %e.message, "cannot look for lapsed approvals"),
            Err(_) => return,
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(json: serde_json::Value) -> crate::engine::Action {
        let mut action: crate::engine::Action = serde_json::from_value(json).unwrap();
        action.plan = action.plan.map(canonical);
        action
    }

    #[test]
    fn the_hash_binds_the_exact_action_and_ignores_key_order() {
        let a = action(serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "plan": {"steps": [1, 2], "why": "fix"}}));
        let b = action(serde_json::json!({"service": "payments", "plan": {"why": "fix", "steps": [1, 2]}, "environment": "production", "class": "deploy"}));
        assert_eq!(action_hash("bot", None, &a), action_hash("bot", None, &b));
        let c = action(serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "plan": {"steps": [2, 1], "why": "fix"}}));
        assert_ne!(action_hash("bot", None, &a), action_hash("bot", None, &c));
        assert_ne!(action_hash("bot", None, &a), action_hash("other-bot", None, &a));
        assert_ne!(action_hash("bot", None, &a), action_hash("bot", Some("alice"), &a));
        assert_eq!(action_hash("bot", None, &a).len(), 64);
    }
}
