//! Approvals after they are asked for: humans approve or reject them, and lapsed ones are
//! announced. The binding of an approval to its exact action, and what presenting one means,
//! are pure rules in [`warden_core::approvals`].

use crate::audit::{Actor, AuditRecord, by_caller};
use crate::clock::SharedClock;
use crate::error::{Error, Kind, Result};
use crate::identity::{Caller, Role};
use crate::policy::RiskLevel;
use crate::records::{Approval, ApprovalStatus, Event, EventData};
use crate::services::notify::Outbox;
use crate::store::{ApprovalWrite, Change, Conflict, ExpiryCursor, Store, StoreError, Write};

/// Announces lapsed approvals (`approval.expired`, audited), once each across replicas: one
/// step of the periodic task (see [`crate::jobs`]).
pub async fn announce_expiries(
    store: &Store,
    outbox: &Outbox,
    clock: &SharedClock,
) -> std::result::Result<(), StoreError> {
    let now = clock.now_micros();
    // Pages by the store's cursor, so rows that do not read back cannot hold the others up.
    let (mut after, mut unreadable) = (ExpiryCursor::default(), Vec::new());
    loop {
        let (page, last) = store.unannounced_expiries(now, &after, 100).await?;
        let full = page.items.len() + page.unreadable.len() >= 100;
        for a in page.items {
            let event = Event::new(
                now,
                EventData::ApprovalExpired {
                    approval_id: a.id.clone(),
                    action: (&a).into(),
                    expires_at: a.expires_at.clone(),
                },
            );
            let mut writes = vec![Write::Approval(ApprovalWrite::NoteApprovalExpired {
                id: a.id.clone(),
            })];
            writes.extend(outbox.writes(&event, now));
            let record = AuditRecord {
                agent: Some(a.agent.clone()),
                decision_id: Some(a.decision_id.clone()),
                action_class: Some(a.class.clone()),
                environment: Some(a.environment.clone()),
                ..AuditRecord::change(
                    Actor::warden(),
                    "approval.expired",
                    format!("approval:{}", a.id),
                    event.data.to_value(),
                    now,
                )
            };
            // A conflict means another replica announced it first.
            if store
                .commit(Change {
                    writes,
                    audit: vec![record],
                })
                .await
                .is_ok()
            {
                outbox.notify();
            }
        }
        unreadable.extend(page.unreadable);
        match last {
            Some(last) if full && last > after => after = last,
            _ => break,
        }
    }
    // The others were announced; these wait for an admin (logged as the step's failure).
    if !unreadable.is_empty() {
        return Err(StoreError::Unreadable(format!(
            "approvals {} lapsed but do not read back, so their expiry is not announced; quarantine them (POST /v1/approvals/{{id}}/quarantine)",
            unreadable.join(", ")
        )));
    }
    Ok(())
}

/// Moves an approval out of every reader's way (admins): one that no longer reads back, or one
/// an admin wants gone. Its stored columns are kept, with who and why, beside an audit record.
pub async fn quarantine(
    store: &Store,
    caller: &Caller,
    id: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    caller.require(&[Role::Admin])?;
    let reason = reason.trim();
    crate::identity::validate_text("reason", reason, 4096)?;
    let record = AuditRecord::change(
        Actor::of(caller),
        "approval.quarantined",
        format!("approval:{id}"),
        serde_json::json!({"approval_id": id, "reason": reason}),
        now,
    );
    store
        .commit(Change {
            writes: vec![Write::Approval(ApprovalWrite::Quarantine {
                id: id.to_string(),
                by: caller.actor_id(),
                reason: reason.to_string(),
                at: now,
            })],
            audit: vec![record],
        })
        .await?;
    Ok(())
}

/// What deciding an approval needs.
#[derive(Debug, Clone, Copy)]
pub struct Deciding<'a> {
    /// The store.
    pub store: &'a Store,
    /// Time.
    pub clock: &'a SharedClock,
    /// Where `approval.decided` goes.
    pub outbox: &'a Outbox,
    /// The watch over guarded actions: some approvals are its reviews.
    pub watch: crate::services::guards::Watch<'a>,
}

/// A failed attempt: another approver changed the approval meanwhile (try again on the fresh
/// state), or a failure to report.
enum Retry {
    Changed,
    Failed(Error),
}

impl From<Error> for Retry {
    fn from(e: Error) -> Retry {
        Retry::Failed(e)
    }
}

impl From<crate::store::StoreError> for Retry {
    fn from(e: crate::store::StoreError) -> Retry {
        Retry::Failed(e.into())
    }
}

/// An approval as shown now (lapsed ones read as expired).
pub async fn load(store: &Store, clock: &SharedClock, id: &str) -> Result<Approval> {
    let now = clock.now_micros();
    store.approval(id, now).await?.ok_or_else(|| unknown(id))
}

/// One approval as `caller` may see it: any role sees it, but to an agent another agent's
/// approval does not exist.
pub async fn shown(
    store: &Store,
    clock: &SharedClock,
    caller: &Caller,
    id: &str,
) -> Result<Approval> {
    let approval = load(store, clock, id).await?;
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(approval.agent.as_str()) {
        return Err(unknown(id));
    }
    Ok(approval)
}

/// What a caller is told of an approval that does not exist, or is not theirs to see.
fn unknown(id: &str) -> Error {
    Error::not_found("unknown_approval", format!("no approval `{id}`"))
}

/// Approves or rejects as `caller` (the API and the web page share this).
pub async fn decide(
    cx: &Deciding<'_>,
    caller: &Caller,
    id: &str,
    comment: Option<String>,
    approve: bool,
) -> Result<Approval> {
    // Only a human's approver token: never an agent, a service, or an admin acting as one.
    caller.require(&[Role::Approver])?;
    if let Some(c) = &comment
        && c.len() > 4096
    {
        return Err(Error::field(
            "comment",
            format!("is {} bytes, over the limit of 4096", c.len()),
        ));
    }
    // Another approver may change the approval between our read and our write: read again and
    // retry a few times (the write is a compare-and-set, so nothing is ever lost or doubled).
    for _ in 0..5 {
        match try_decide(cx, caller, id, &comment, approve).await {
            Err(Retry::Changed) => continue,
            Err(Retry::Failed(e)) => return Err(e),
            Ok(approval) => {
                // A review of a guarded action: keep it or roll it back now (the periodic
                // sweep applies it later should this fail).
                if approval.status != ApprovalStatus::Pending
                    && let Err(e) = cx.watch.reviewed(&approval).await
                {
                    tracing::warn!(approval = %id, error = %e.message, "applying a guard review failed");
                }
                return Ok(approval);
            }
        }
    }
    Err(Error::new(
        Kind::Conflict,
        "approval_busy",
        format!("approval `{id}` kept changing; try again"),
    ))
}

async fn try_decide(
    cx: &Deciding<'_>,
    caller: &Caller,
    id: &str,
    comment: &Option<String>,
    approve: bool,
) -> std::result::Result<Approval, Retry> {
    let approval = load(cx.store, cx.clock, id).await?;
    // The approver's own grants must cover what they allow.
    let who = caller.subject.clone().unwrap_or_default();
    let human = cx.store.human(&who).await?.ok_or_else(|| {
        Error::forbidden(
            "approver_unknown",
            format!("approver tokens must name a registered human; `{who}` is not one"),
        )
    })?;
    let risk: RiskLevel = serde_json::from_value(approval.summary["risk"]["level"].clone())
        .map_err(Error::internal)?;
    if !human.covers(
        &approval.class,
        &approval.environment,
        &approval.service,
        risk,
    ) {
        return Err(Retry::Failed(Error::forbidden(
            "approver_not_permitted",
            format!(
                "`{who}`'s own grants do not cover {} in {} on {} at {risk} risk",
                approval.class, approval.environment, approval.service
            ),
        )));
    }
    // Four eyes: nobody approves what they asked for. That is the human the agent acts for, the
    // agent's sponsor (who answers for the agent), and anyone whose identity is the agent's.
    if approve {
        let sponsor = cx
            .store
            .agent(&approval.agent)
            .await?
            .map(|a| a.sponsor.clone())
            .unwrap_or_default();
        let asked = if approval.on_behalf_of.as_deref() == Some(who.as_str()) {
            Some("asked for this action (on_behalf_of)")
        } else if sponsor == who {
            Some("sponsors the agent that asks")
        } else if approval.agent == who {
            Some("is the agent that asks")
        } else {
            None
        };
        if let Some(why) = asked {
            return Err(Retry::Failed(Error::forbidden(
                "self_approval",
                format!("`{who}` {why} and may not approve it"),
            )));
        }
    }
    match approval.status.as_str() {
        "pending" => {}
        "expired" => {
            return Err(Retry::Failed(Error::new(
                Kind::Gone,
                "approval_expired",
                format!("approval `{id}` expired at {}", approval.expires_at),
            )));
        }
        other => {
            return Err(Retry::Failed(Error::new(
                Kind::Conflict,
                "approval_not_pending",
                format!("approval `{id}` is already {other}"),
            )));
        }
    }
    if approve && approval.approved_by.contains(&who) {
        return Err(Retry::Failed(Error::new(
            Kind::Conflict,
            "already_approved",
            format!("`{who}` has approved `{id}` already; it needs another approver"),
        )));
    }
    let now = cx.clock.now_micros();
    let mut approvers = approval.approved_by.clone();
    let (write, status) = if approve {
        approvers.push(who.clone());
        let complete = approvers.len() as i64 >= approval.approvals_needed;
        let write = Write::Approval(ApprovalWrite::AddApprover {
            id: id.to_string(),
            by: who.clone(),
            at: now,
            comment: comment.clone(),
            before: serde_json::to_string(&approval.approved_by).map_err(Error::internal)?,
            after: serde_json::to_string(&approvers).map_err(Error::internal)?,
            complete,
        });
        (write, if complete { "approved" } else { "pending" })
    } else {
        (
            Write::Approval(ApprovalWrite::DecideApproval {
                id: id.to_string(),
                approve: false,
                by: who.clone(),
                at: now,
                comment: comment.clone(),
            }),
            "rejected",
        )
    };
    let event = if approve {
        "approval.approved"
    } else {
        "approval.rejected"
    };
    let details = serde_json::json!({"approval_id": id, "comment": comment, "action_hash": approval.action_hash, "approved_by": approvers,
        "approvals_needed": approval.approvals_needed, "status": status});
    let mut record = by_caller(
        caller,
        event,
        format!("approval:{id}"),
        Some(approval.agent.clone()),
        details,
        now,
    );
    record.decision_id = Some(approval.decision_id.clone());
    record.action_class = Some(approval.class.clone());
    record.environment = Some(approval.environment.clone());
    record.service = Some(approval.service.clone());
    record.on_behalf_of = approval.on_behalf_of.clone();
    record.approval_id = Some(id.to_string());
    if approve {
        record.approvers = approvers.clone();
    }
    let mut writes = vec![write];
    // Subscribers hear of the outcome, not of each step towards it.
    if status != "pending" {
        let data = EventData::ApprovalDecided {
            approval_id: id.to_string(),
            status: if approve {
                ApprovalStatus::Approved
            } else {
                ApprovalStatus::Rejected
            },
            decided_by: who.clone(),
            approved_by: approvers.clone(),
            comment: comment.clone(),
            action: (&approval).into(),
        };
        writes.extend(cx.outbox.writes(&Event::new(now, data), now));
    }
    match cx
        .store
        .commit(Change {
            writes,
            audit: vec![record],
        })
        .await
    {
        Err(e) if e.conflict() == Some(Conflict::ApprovalChanged) => return Err(Retry::Changed),
        other => other.map_err(Error::from)?,
    }
    cx.outbox.notify();
    Ok(load(cx.store, cx.clock, id).await?)
}
