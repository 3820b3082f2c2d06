//! Approval ids presented with decisions, kept where what presenting one means can no longer
//! change. An agent that presents the same bad approval over and over (a loop retrying with a
//! made-up id, one already used, or one given to another agent or action) is denied every
//! time, as before; kept, its denial costs what a denial for want of a grant costs instead of
//! a read of the store each time (BENCHMARKS.md, "An approval no one issued").
//!
//! What is kept holds on every replica and after any later write, so nothing is invalidated:
//! - an id no approval has: Warden makes approval ids itself (random UUID v7s), and an agent
//!   learns one only from an answer sent after its approval was committed;
//! - an approval's agent and action, which never change: presented by another agent or for
//!   another action, it is a violation whatever its status;
//! - a used or rejected approval: nothing moves an approval out of `consumed` or `rejected`.
//!
//! A pending or approved one presented by its agent for its action is always read: its status
//! may have moved on another replica. So is an expired one, since expiry is judged by the
//! reading replica's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::records::{Approval, ApprovalStatus};

/// How many ids are kept; when full, all are forgotten (each is only a read saved, and a loop
/// presenting a fresh id every time gains nothing by filling it).
const KEPT: usize = 4_096;

/// The kept ids (see the module's documentation), shared by the clones.
#[derive(Debug, Clone, Default)]
pub struct Presentations {
    kept: Arc<Mutex<HashMap<String, Option<Approval>>>>,
}

impl Presentations {
    /// What presenting approval `id` for the action hashed `hash` by `agent` finds, if that is
    /// kept: `Some(None)` for an id no approval has, `Some(Some(_))` for an approval whose
    /// presentation by them it settles. `None`: read the store.
    pub fn settled(&self, id: &str, agent: &str, hash: &str) -> Option<Option<Approval>> {
        let kept = self.kept.lock().expect("presentations lock");
        match kept.get(id)? {
            None => Some(None),
            Some(a) if a.agent != agent || a.action_hash != hash || settled(a.status) => {
                Some(Some(a.clone()))
            }
            Some(_) => None,
        }
    }

    /// Keeps what a read of the store found for `id`, without what presenting it never needs
    /// (the summary the approver saw, the approvers so far).
    pub fn keep(&self, id: &str, found: Option<&Approval>) {
        let slim = found.map(|a| Approval {
            summary: serde_json::Value::Null,
            approved_by: Vec::new(),
            comment: None,
            ..a.clone()
        });
        let mut kept = self.kept.lock().expect("presentations lock");
        if kept.len() >= KEPT && !kept.contains_key(id) {
            kept.clear();
        }
        kept.insert(id.to_string(), slim);
    }
}

/// Statuses no approval leaves.
fn settled(status: ApprovalStatus) -> bool {
    matches!(status, ApprovalStatus::Consumed | ApprovalStatus::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(status: ApprovalStatus) -> Approval {
        Approval {
            id: "a-1".into(),
            status,
            decision_id: "d-1".into(),
            agent: "bot".into(),
            on_behalf_of: None,
            class: "deploy".into(),
            environment: "production".into(),
            service: "payments".into(),
            action_hash: "h".into(),
            summary: serde_json::json!({"plan": "a long plan"}),
            created_at: "2026-12-05T00:00:00Z".into(),
            expires_at: "2026-12-06T00:00:00Z".into(),
            approvals_needed: 1,
            approved_by: vec!["alice".into()],
            decided_by: Some("alice".into()),
            decided_at: None,
            comment: Some("fine".into()),
            consumed_by: None,
            consumed_at: None,
            expires_at_micros: 0,
        }
    }

    #[test]
    fn an_unknown_id_is_settled_for_everyone() {
        let p = Presentations::default();
        assert_eq!(p.settled("nope", "bot", "h").map(|a| a.is_none()), None);
        p.keep("nope", None);
        assert!(matches!(p.settled("nope", "bot", "h"), Some(None)));
        assert!(matches!(p.settled("nope", "other", "x"), Some(None)));
    }

    #[test]
    fn an_open_approval_is_read_again_by_its_agent_for_its_action() {
        for status in [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Expired,
        ] {
            let p = Presentations::default();
            p.keep("a-1", Some(&approval(status)));
            assert!(p.settled("a-1", "bot", "h").is_none(), "{status:?}");
            // Another agent, or another action: a violation whatever the status becomes.
            let other = p
                .settled("a-1", "other", "h")
                .expect("settled")
                .expect("kept");
            assert_eq!(other.agent, "bot");
            assert!(p.settled("a-1", "bot", "other-hash").is_some());
        }
    }

    #[test]
    fn a_used_or_rejected_approval_is_settled_without_its_summary() {
        for status in [ApprovalStatus::Consumed, ApprovalStatus::Rejected] {
            let p = Presentations::default();
            p.keep("a-1", Some(&approval(status)));
            let a = p
                .settled("a-1", "bot", "h")
                .expect("settled")
                .expect("kept");
            assert_eq!(a.status, status);
            assert_eq!(a.decided_by.as_deref(), Some("alice"));
            assert!(a.summary.is_null() && a.approved_by.is_empty() && a.comment.is_none());
        }
    }

    #[test]
    fn a_read_replaces_what_was_kept_and_a_full_map_starts_again() {
        let p = Presentations::default();
        p.keep("a-1", Some(&approval(ApprovalStatus::Approved)));
        assert!(p.settled("a-1", "bot", "h").is_none());
        p.keep("a-1", Some(&approval(ApprovalStatus::Consumed)));
        assert!(p.settled("a-1", "bot", "h").is_some());
        for i in 0..KEPT {
            p.keep(&format!("x-{i}"), None);
        }
        assert!(
            p.settled("a-1", "bot", "h").is_none(),
            "forgotten when full"
        );
        assert!(p.kept.lock().unwrap().len() <= KEPT);
    }
}
