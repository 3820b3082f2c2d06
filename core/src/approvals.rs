//! Approvals (DESIGN.md, stage 8): a `require_approval` verdict creates a request for a human,
//! bound to the SHA-256 of the exact action: its class, environment, service, resources, change,
//! on-behalf-of human, estimated cost and labels (not the agent's wording of its reasoning or
//! plan, which may be regenerated). The agent re-submits the same action with the approval's id;
//! the approval then allows that action once. Anything else presented as an approval (another
//! action, another agent, a used or unknown id) is denied and recorded as a violation.

use sha2::{Digest, Sha256};

use crate::records::{Approval, ApprovalStatus, ViolationReason};

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
        /// Why (`approval_unknown`, `approval_wrong_agent`, `approval_mismatch`, `approval_reused`).
        code: ViolationReason,
        /// For humans.
        text: String,
    },
}

/// The hex SHA-256 of the JSON of what an approval allows (see [`Bound`]).
pub fn action_hash(action: &impl serde::Serialize) -> String {
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
    let _ = serde_json::to_writer(&mut hashing, action);
    hex::encode(hashing.0.finalize())
}

/// What an approval is bound to: the action's class, environment, service, resources and change,
/// the human it is done for, its estimated cost and its labels, serialized in this fixed order.
#[derive(Debug, serde::Serialize)]
pub struct Bound<'a, C: serde::Serialize, L: serde::Serialize> {
    /// Action class.
    pub class: &'a str,
    /// Environment.
    pub environment: &'a str,
    /// Service.
    pub service: &'a str,
    /// Resources, in the order given.
    pub resources: &'a [String],
    /// The change summary.
    pub change: &'a Option<C>,
    /// The human the agent acts for: an approval given for the agent alone is not one given
    /// for an action on someone's behalf (who might then approve their own request).
    pub on_behalf_of: Option<&'a str>,
    /// The estimated cost, which the approver saw.
    pub estimated_cost_usd: Option<f64>,
    /// The labels (sorted by key).
    pub labels: &'a L,
}

/// Checks a presented approval (as loaded, `None` if unknown) against the request.
pub fn present(approval: Option<Approval>, id: &str, agent: &str, hash: &str) -> Presented {
    let violation = |code, text| Presented::Violation { code, text };
    let Some(a) = approval else {
        return violation(
            ViolationReason::ApprovalUnknown,
            format!("no approval `{id}`"),
        );
    };
    if a.agent != agent {
        return violation(
            ViolationReason::ApprovalWrongAgent,
            format!(
                "approval `{id}` was given to agent `{}`, not `{agent}`",
                a.agent
            ),
        );
    }
    if a.action_hash != hash {
        return violation(
            ViolationReason::ApprovalMismatch,
            format!(
                "approval `{id}` allows {} in {} on {} exactly as asked; this action differs",
                a.class, a.environment, a.service
            ),
        );
    }
    match a.status {
        ApprovalStatus::Approved => Presented::Valid(a),
        ApprovalStatus::Pending => Presented::Pending(a),
        ApprovalStatus::Rejected => Presented::Rejected(format!(
            "approval `{id}` was rejected by {}",
            a.decided_by.as_deref().unwrap_or("a human")
        )),
        ApprovalStatus::Expired => Presented::Expired(format!(
            "approval `{id}` expired at {} without a decision",
            a.expires_at
        )),
        ApprovalStatus::Consumed => violation(
            ViolationReason::ApprovalReused,
            format!(
                "approval `{id}` was already used by decision {}",
                a.consumed_by.as_deref().unwrap_or("?")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_binds_what_is_done_not_how_it_is_explained() {
        let hash = |json: serde_json::Value| {
            let a: crate::decision::Action = serde_json::from_value(json).unwrap();
            action_hash(&Bound {
                class: &a.class,
                environment: &a.environment,
                service: &a.service,
                resources: &a.resources,
                change: &a.change,
                on_behalf_of: None,
                estimated_cost_usd: a.estimated_cost_usd,
                labels: &a.labels,
            })
        };
        let base = hash(
            serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "resources": ["k8s/payments"]}),
        );
        let reworded = hash(
            serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "resources": ["k8s/payments"],
            "reasoning": "said differently", "plan": {"steps": [1]}}),
        );
        assert_eq!(base, reworded);
        for other in [
            serde_json::json!({"class": "deploy", "environment": "staging", "service": "payments", "resources": ["k8s/payments"]}),
            serde_json::json!({"class": "deploy", "environment": "production", "service": "ledger", "resources": ["k8s/payments"]}),
            serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "resources": ["k8s/ledger"]}),
            serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "resources": ["k8s/payments"],
                "change": {"files_changed": 1, "lines_added": 1, "lines_deleted": 0}}),
            serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "resources": ["k8s/payments"], "estimated_cost_usd": 1e6}),
            serde_json::json!({"class": "deploy", "environment": "production", "service": "payments", "resources": ["k8s/payments"], "labels": {"canary": "false"}}),
        ] {
            assert_ne!(base, hash(other));
        }
        assert_eq!(base.len(), 64);
    }
}
