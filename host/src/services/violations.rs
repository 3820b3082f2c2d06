//! Violations after they are recorded: a reviewer acknowledges one (audited).

use crate::audit::by_caller;
use crate::clock::SharedClock;
use crate::decision::check_len;
use crate::error::{Error, Result};
use crate::identity::{Caller, Role};
use crate::records::Violation;
use crate::store::{Change, Store, ViolationWrite, Write};

/// Acknowledges an open violation after review (admins and approvers).
pub async fn acknowledge(
    store: &Store,
    clock: &SharedClock,
    caller: &Caller,
    id: &str,
    comment: Option<String>,
) -> Result<Violation> {
    caller.require(&[Role::Admin, Role::Approver])?;
    if let Some(c) = &comment {
        check_len("comment", c, 4096)?;
    }
    let v = store
        .violation(id)
        .await?
        .ok_or_else(|| Error::not_found("unknown_violation", format!("no violation `{id}`")))?;
    let now = clock.now_micros();
    let details = serde_json::json!({"violation_id": id, "reason": v.reason, "mode": v.mode, "comment": comment});
    let mut record = by_caller(
        caller,
        "violation.acknowledged",
        format!("violation:{id}"),
        Some(v.agent.clone()),
        details,
        now,
    );
    record.decision_id = Some(v.decision_id.clone());
    let write = Write::Violation(ViolationWrite::AckViolation {
        id: id.to_string(),
        by: caller.actor_id(),
        at: now,
        comment,
    });
    store
        .commit(Change {
            writes: vec![write],
            audit: vec![record],
        })
        .await?;
    let v = store
        .violation(id)
        .await?
        .ok_or_else(|| Error::internal(format!("violation `{id}` vanished")))?;
    Ok(v)
}
