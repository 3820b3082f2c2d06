//! The watch over guarded actions. A class in `guard` mode lets a violation through under a
//! watch (armed with the decision): rollback-trigger plugins judge the signals sent for it
//! (`POST /v1/decisions/{id}/signals`) until its deadline.
//!
//! - A `failed` judgement rolls the action back: `rollback.requested`, and the outcome
//!   `rolled_back` as trust evidence.
//! - An `inconclusive` one holds the watch for a human: a review in the approvals inbox;
//!   approving keeps the action, rejecting rolls it back. Signals are still judged meanwhile,
//!   and a `failed` judgement still rolls back.
//! - `error_limit` trigger errors in a row emit `rollback_trigger.failing`.
//! - At the deadline, a watch whose latest judgement was `successful` ends clean; one with no
//!   usable signal is rolled back or held for a human (`policy.guard.on_silence`).
//!
//! A success reported for a guarded action counts only once its watch ends clean (or a human
//! keeps it): until then the outcome is recorded and its evidence waits.

use sha2::{Digest as _, Sha256};

use crate::audit::{Actor, AuditRecord};
use crate::clock::format_micros;
use crate::error::{Error, Kind, Result};
use crate::identity::{Caller, Role};
use crate::plugin::JudgementVerdict;
use crate::policy::OnSilence;
use crate::records::{
    Approval, ApprovalRow, ApprovalStatus, Event, EventData, Guard, GuardStatus, OutcomeStatus,
};
use crate::services::notify::Outbox;
use crate::services::outcomes::{self, OutcomeReport, Reporting};
use crate::services::tiering::Trigger;
use crate::store::{
    ApprovalWrite, Change, Conflict, GuardWrite, OutcomeWrite, StoreError, TrustWrite, Write,
};
use crate::trust::Kind as TrustKind;

/// What the watch needs.
#[derive(Debug, Clone, Copy)]
pub struct Watch<'a> {
    /// Outcomes and trust.
    pub reporting: Reporting<'a>,
    /// Where events go.
    pub outbox: &'a Outbox,
}

/// How a change moving a watch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// Committed.
    Done,
    /// Another change (another replica, another batch) moved the watch first.
    ByAnother,
    /// Another condition of the change no longer held (an outcome reported, a rollback
    /// requested meanwhile).
    Raced(Conflict),
}

/// A conflict a move of the watch could not get past.
fn raced(g: &Guard, c: Conflict) -> Error {
    Error::new(
        Kind::Conflict,
        c.code(),
        format!(
            "the watch over decision `{}` met another change",
            g.decision_id
        ),
    )
}

/// Whether a success reported for a guarded decision carries evidence now: only once its watch
/// ended clean or a human kept it.
pub fn success_counts(guard: Option<&Guard>) -> bool {
    guard.is_none_or(|g| matches!(g.status, GuardStatus::Clean | GuardStatus::Kept))
}

impl Watch<'_> {
    fn now(&self) -> i64 {
        self.reporting.clock.now_micros()
    }

    /// After a batch of signals for decision `id` was judged (and, when `failed`, its rollback
    /// requested): the watch, if the decision is guarded, moves on.
    pub async fn judged(
        &self,
        id: &str,
        verdict: JudgementVerdict,
        reasons: &[String],
    ) -> Result<()> {
        let store = self.reporting.store;
        let Some(guard) = store.guard(id).await? else {
            return Ok(());
        };
        if guard.status.closed() {
            return Ok(());
        }
        let error = verdict == JudgementVerdict::Error;
        match store
            .commit(Change {
                writes: vec![Write::Guard(GuardWrite::Judged {
                    decision_id: id.to_string(),
                    verdict: verdict.as_str().to_string(),
                    error,
                })],
                audit: vec![],
            })
            .await
        {
            Err(e) if e.conflict() == Some(Conflict::GuardMoved) => return Ok(()),
            other => other?,
        }
        let why = reasons.join("; ");
        match verdict {
            // Decisive even while a human looks: the action goes.
            JudgementVerdict::Failed => {
                self.roll_back(
                    &guard,
                    guard.status,
                    true,
                    &format!("the canary judgement failed: {why}"),
                )
                .await
            }
            JudgementVerdict::Inconclusive if guard.status == GuardStatus::Watching => {
                self.hold(
                    &guard,
                    &format!("the canary judgement was inconclusive: {why}"),
                )
                .await
            }
            // Whether this error makes `error_limit` in a row is for the store to say (another
            // batch may be judged at the same moment): paged once per watch.
            JudgementVerdict::Error => self.failing(&guard, &why).await,
            _ => Ok(()),
        }
    }

    /// Watches past their deadline end: clean when the latest judgement was `successful`,
    /// otherwise (no usable signal) rolled back or held, by policy. Reviews a human decided
    /// are applied (again, should the answer to the approver have been cut short). One step of
    /// the periodic task.
    pub async fn sweep(&self) -> std::result::Result<(), String> {
        let store = self.reporting.store;
        let due = store
            .due_guards(self.now(), 100)
            .await
            .map_err(|e| e.to_string())?;
        for g in due {
            let done = if g.last_verdict.as_deref() == Some(JudgementVerdict::Successful.as_str()) {
                self.close(&g, GuardStatus::Watching, GuardStatus::Clean, "ended clean")
                    .await
            } else {
                let why = match g.signals {
                    0 => "no signals arrived before the watch's deadline".to_string(),
                    n => format!(
                        "{n} batches of signals, none judged usable, before the watch's deadline"
                    ),
                };
                match self.reporting.policy.policy.guard.on_silence {
                    OnSilence::Rollback => {
                        self.roll_back(&g, GuardStatus::Watching, false, &why).await
                    }
                    OnSilence::Ask => self.hold(&g, &why).await,
                }
            };
            if let Err(e) = done {
                tracing::warn!(decision = %g.decision_id, error = %e.message, "closing a watch failed");
            }
        }
        for g in store
            .unsettled_rollbacks(100)
            .await
            .map_err(|e| e.to_string())?
        {
            if let Err(e) = self.record_rollback(&g, "rolled back by the watch").await {
                tracing::warn!(decision = %g.decision_id, error = %e.message, "recording a rollback failed");
            }
        }
        for g in store
            .decided_reviews(100)
            .await
            .map_err(|e| e.to_string())?
        {
            if let Some(review) = &g.review
                && let Ok(a) = store.approval(review, self.now()).await
                && let Some(a) = a
                && let Err(e) = self.reviewed(&a).await
            {
                tracing::warn!(decision = %g.decision_id, error = %e.message, "applying a guard review failed");
            }
        }
        Ok(())
    }

    /// A human decided a review: approved keeps the action, rejected rolls it back.
    pub async fn reviewed(&self, approval: &Approval) -> Result<()> {
        let store = self.reporting.store;
        let Some(g) = store.guard_of_review(&approval.id).await? else {
            return Ok(());
        };
        if g.status != GuardStatus::Held {
            return Ok(());
        }
        let by = approval.decided_by.as_deref().unwrap_or("a human");
        // A review is never used like an approval: one approved and left past its expiry reads
        // `expired`, and still said keep.
        let approved = approval.approved_by.len() as i64 >= approval.approvals_needed;
        match approval.status {
            ApprovalStatus::Approved | ApprovalStatus::Consumed => {
                self.close(
                    &g,
                    GuardStatus::Held,
                    GuardStatus::Kept,
                    &format!("kept by {by}"),
                )
                .await
            }
            ApprovalStatus::Expired if approved => {
                self.close(
                    &g,
                    GuardStatus::Held,
                    GuardStatus::Kept,
                    &format!("kept by {by}"),
                )
                .await
            }
            ApprovalStatus::Rejected => {
                self.roll_back(
                    &g,
                    GuardStatus::Held,
                    false,
                    &format!("{by} rejected it after the watch"),
                )
                .await
            }
            _ => Ok(()),
        }
    }

    /// Ends a watch with the action standing: a success already reported now counts. The
    /// change rests on the outcome as read: a report landing meanwhile makes it look again.
    async fn close(&self, g: &Guard, from: GuardStatus, to: GuardStatus, why: &str) -> Result<()> {
        for _ in 0..3 {
            match self.try_close(g, from, to, why).await? {
                Moved::Raced(Conflict::OutcomeReported) => continue,
                Moved::Raced(c) => return Err(raced(g, c)),
                Moved::Done | Moved::ByAnother => return Ok(()),
            }
        }
        Err(Error::new(
            Kind::Conflict,
            "guard_busy",
            format!("the outcome of decision `{}` kept changing", g.decision_id),
        ))
    }

    async fn try_close(
        &self,
        g: &Guard,
        from: GuardStatus,
        to: GuardStatus,
        why: &str,
    ) -> Result<Moved> {
        let (store, now) = (self.reporting.store, self.now());
        let outcome = store.outcome(&g.decision_id).await?;
        let mut writes = vec![
            Write::Guard(GuardWrite::Move {
                decision_id: g.decision_id.clone(),
                from,
                to,
                review: None,
                at: now,
            }),
            Write::Outcome(OutcomeWrite::ExpectOutcome {
                decision_id: g.decision_id.clone(),
                outcome: outcome.as_ref().and_then(|o| o.outcome),
            }),
        ];
        let success = outcome
            .as_ref()
            .filter(|o| o.outcome == Some(OutcomeStatus::Succeeded));
        if let Some(o) = success {
            let source = outcomes::source_of(o);
            let at = o
                .reported_at
                .as_deref()
                .and_then(crate::clock::parse_micros)
                .unwrap_or(now);
            writes.push(Write::Trust(TrustWrite::AddEvidence(
                self.reporting.tiers.evidence(
                    &o.agent,
                    &o.environment,
                    o.risk,
                    TrustKind::success(source),
                    at,
                    1,
                ),
            )));
            if let Some(agent) = store.agent(&o.agent).await? {
                writes.push(self.reporting.tiers.note(&agent));
            }
        }
        let record = self.record(g, &format!("guard.{}", to.as_str()), why, now);
        let moved = self.commit_move(writes, record).await?;
        if moved == Moved::Done
            && success.is_some()
            && let Err(e) = self
                .reporting
                .tiers
                .review(&g.agent, Trigger::Outcome { bad: false })
                .await
        {
            tracing::warn!(agent = %g.agent, error = %e.message, "tier review after a clean watch failed");
        }
        Ok(moved)
    }

    /// Rolls a guarded action back: the watch closes, `rollback.requested` goes out (unless the
    /// failed judgement requested it already), and the outcome is `rolled_back`. A watch that
    /// moved meanwhile (held for a human, say) but is still open is rolled back all the same.
    async fn roll_back(
        &self,
        g: &Guard,
        from: GuardStatus,
        requested: bool,
        why: &str,
    ) -> Result<()> {
        let (mut from, mut requested) = (from, requested);
        for _ in 0..3 {
            let now = self.now();
            let mut writes = vec![Write::Guard(GuardWrite::Move {
                decision_id: g.decision_id.clone(),
                from,
                to: GuardStatus::RolledBack,
                review: None,
                at: now,
            })];
            if !requested {
                let data = EventData::RollbackRequested {
                    action: g.into(),
                    reasons: vec![why.to_string()],
                };
                writes.push(Write::Outcome(OutcomeWrite::RequestRollback {
                    decision_id: g.decision_id.clone(),
                    at: now,
                }));
                writes.extend(self.outbox.writes(&Event::new(now, data), now));
            }
            let record = self.record(g, "guard.rolled_back", why, now);
            match self.commit_move(writes, record).await? {
                Moved::Done => {
                    self.outbox.notify();
                    return self.record_rollback(g, why).await;
                }
                Moved::ByAnother => match self.reporting.store.guard(&g.decision_id).await? {
                    Some(now_there) if !now_there.status.closed() => from = now_there.status,
                    _ => return Ok(()),
                },
                // A failed judgement of another batch requested it meanwhile: close without.
                Moved::Raced(Conflict::RollbackRequested) if !requested => requested = true,
                Moved::Raced(c) => return Err(raced(g, c)),
            }
        }
        Err(Error::new(
            Kind::Conflict,
            "guard_busy",
            format!("the watch over decision `{}` kept moving", g.decision_id),
        ))
    }

    /// Records `rolled_back` as the outcome of an action the watch rolled back: the watch has
    /// the last word over any earlier report. (The periodic sweep does it again should this
    /// fail.)
    async fn record_rollback(&self, g: &Guard, why: &str) -> Result<()> {
        let warden = Caller {
            token_id: "warden".into(),
            role: Role::Service,
            subject: Some(outcomes::GUARD_REPORTER.into()),
        };
        let report = OutcomeReport {
            status: OutcomeStatus::RolledBack,
            detail: Some(format!("rolled back by the watch: {why}")),
            actual_cost_usd: None,
        };
        outcomes::report(&self.reporting, &warden, &g.decision_id, &report).await?;
        Ok(())
    }

    /// Holds a watch for a human: a review in the approvals inbox (approve keeps the action,
    /// reject rolls it back), and `guard.review_requested` to the webhooks.
    async fn hold(&self, g: &Guard, why: &str) -> Result<()> {
        let (store, now) = (self.reporting.store, self.now());
        let Some((at, request, answer)) = store.decision_request(&g.decision_id).await? else {
            return Err(Error::internal(format!(
                "guarded decision `{}` is missing",
                g.decision_id
            )));
        };
        let request: serde_json::Value = serde_json::from_str(&request).map_err(Error::internal)?;
        let answer: serde_json::Value = serde_json::from_str(&answer).map_err(Error::internal)?;
        let id = uuid::Uuid::now_v7().to_string();
        let text = format!(
            "{why}. Approve to keep the action (its success then counts), reject to roll it back."
        );
        let summary = serde_json::json!({
            "guard_review": {"decision_id": g.decision_id, "decided_at": format_micros(at), "why": why},
            "request": request,
            "risk": answer["risk"],
            "reasons": [{"code": "guard_review", "text": text}],
            "tier": answer["tier"],
            "agent_tier": answer["agent_tier"],
        });
        // Bound to no action: presenting a review as an approval for an action never matches.
        let action_hash = hex::encode(Sha256::digest(format!("guard-review:{id}")));
        let row = ApprovalRow {
            id: id.clone(),
            decision_id: g.decision_id.clone(),
            agent_id: g.agent.clone(),
            on_behalf_of: None,
            class: g.class.clone(),
            environment: g.environment.clone(),
            service: g.service.clone(),
            action_hash,
            summary: summary.to_string(),
            created_at: now,
            expires_at: now.saturating_add(self.reporting.policy.approval_ttl_micros(&g.class)),
            approvals_needed: i64::from(self.reporting.policy.approvers_required(&g.class)),
        };
        let data = EventData::GuardReviewRequested {
            review_id: id.clone(),
            action: g.into(),
            why: why.to_string(),
        };
        let mut writes = vec![
            Write::Guard(GuardWrite::Move {
                decision_id: g.decision_id.clone(),
                from: g.status,
                to: GuardStatus::Held,
                review: Some(id.clone()),
                at: now,
            }),
            Write::Approval(ApprovalWrite::InsertApproval(row)),
        ];
        writes.extend(self.outbox.writes(&Event::new(now, data), now));
        let record = self.record(g, "guard.held", why, now);
        match self.commit_move(writes, record).await? {
            Moved::Done => self.outbox.notify(),
            Moved::ByAnother => {}
            Moved::Raced(c) => return Err(raced(g, c)),
        }
        Ok(())
    }

    /// `error_limit` trigger errors in a row: someone must look at the trigger or the telemetry
    /// (once per watch).
    async fn failing(&self, g: &Guard, why: &str) -> Result<()> {
        let now = self.now();
        let limit = self.reporting.policy.policy.guard.error_limit;
        let data = EventData::RollbackTriggerFailing {
            action: g.into(),
            errors_in_a_row: limit,
            reasons: vec![why.to_string()],
        };
        let mut writes = vec![Write::Guard(GuardWrite::Page {
            decision_id: g.decision_id.clone(),
            limit: i64::from(limit),
            at: now,
        })];
        writes.extend(self.outbox.writes(&Event::new(now, data), now));
        let record = self.record(
            g,
            "rollback_trigger.failing",
            &format!("{limit} trigger errors in a row: {why}"),
            now,
        );
        // Fewer errors in a row than the limit, or paged already: nothing to say.
        match self.commit_move(writes, record).await? {
            Moved::Done => self.outbox.notify(),
            Moved::ByAnother => {}
            Moved::Raced(c) => return Err(raced(g, c)),
        }
        Ok(())
    }

    /// Commits a move of the watch, saying how it went when another change got there first.
    async fn commit_move(&self, writes: Vec<Write>, record: AuditRecord) -> Result<Moved> {
        match self
            .reporting
            .store
            .commit(Change {
                writes,
                audit: vec![record],
            })
            .await
        {
            Ok(()) => Ok(Moved::Done),
            Err(StoreError::Conflict(Conflict::GuardMoved, _)) => Ok(Moved::ByAnother),
            Err(StoreError::Conflict(c, _)) => Ok(Moved::Raced(c)),
            Err(e) => Err(e.into()),
        }
    }

    fn record(&self, g: &Guard, event: &str, why: &str, now: i64) -> AuditRecord {
        AuditRecord {
            agent: Some(g.agent.clone()),
            decision_id: Some(g.decision_id.clone()),
            action_class: Some(g.class.clone()),
            environment: Some(g.environment.clone()),
            ..AuditRecord::change(
                Actor::warden(),
                event,
                format!("service:{}", g.service),
                serde_json::json!({"decision_id": g.decision_id, "why": why, "signals": g.signals, "last_verdict": g.last_verdict}),
                now,
            )
        }
    }
}
