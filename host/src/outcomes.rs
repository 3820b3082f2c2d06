//! Outcomes (DESIGN.md, "After the action"): every allowed write owes a report of what happened
//! (`succeeded`, `failed`, `rolled_back`) by a deadline set per action class. A report that does
//! not come is recorded as `unknown`, once, by whichever replica sees it first; the trust engine
//! reads outcomes as evidence.

use std::time::Duration;

use crate::audit::{Actor, AuditRecord};
use crate::clock::SharedClock;
use crate::store::{Change, Store, Write};
use crate::tiers::{Controller, Trigger};
use crate::trust::Kind;

/// The outcomes an agent or the platform may report.
pub const REPORTABLE: [&str; 3] = ["succeeded", "failed", "rolled_back"];

/// Records overdue outcomes as `unknown` (audited as `outcome.overdue`, weak negative trust
/// evidence) until the store closes.
pub async fn mark_overdue(store: Store, clock: SharedClock, tiers: Controller, every: Duration) {
    while !store.is_closed() {
        let now = clock.now_micros();
        match store.overdue_outcomes(now, 200).await {
            Ok(overdue) => {
                for o in overdue {
                    let actor = Actor { kind: "service".into(), id: "warden".into(), tool: None, model: None, token_id: None };
                    let details = serde_json::json!({"decision_id": o.decision_id, "due_at": o.due_at});
                    let record = AuditRecord {
                        agent: Some(o.agent.clone()),
                        decision_id: Some(o.decision_id.clone()),
                        action_class: Some(o.class.clone()),
                        environment: Some(o.environment.clone()),
                        outcome: Some("unknown".into()),
                        ..AuditRecord::change(actor, "outcome.overdue", format!("service:{}", o.service), details, now)
                    };
                    let evidence = tiers.evidence(&o.agent, &o.environment, o.risk, Kind::Unknown, now, 1);
                    let mut writes = vec![Write::OutcomeOverdue { decision_id: o.decision_id, at: now }, Write::AddEvidence(evidence)];
                    if let Ok(Some(agent)) = store.agent(&o.agent).await {
                        writes.push(tiers.note(&agent));
                    }
                    // A conflict means the report (or another replica) came first.
                    if store.commit(Change { writes, audit: vec![record] }).await.is_ok() {
                        let _ = tiers.review(&o.agent, Trigger::Outcome { bad: true }).await;
                    }
                }
            }
            Err(e) if !store.is_closed() => tracing::warn!(error = %e.message, "cannot look for overdue outcomes"),
            Err(_) => return,
        }
        tokio::time::sleep(every).await;
    }
}
