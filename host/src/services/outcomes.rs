//! Outcomes (DESIGN.md, "After the action"): every allowed write owes a report of what happened
//! (`succeeded`, `failed`, `rolled_back`) by a deadline set per action class. A report that does
//! not come is recorded as `unknown`, once, by whichever replica sees it first; the trust engine
//! reads outcomes as evidence.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::activity::ActivityEvent;
use crate::audit::{Actor, AuditRecord, by_caller};
use crate::clock::{SharedClock, parse_micros};
use crate::decision::{DecisionAnswer, check_len};
use crate::error::{Error, Kind, Result};
use crate::identity::{Caller, Role};
use crate::policy::{CompiledPolicy, RiskLevel, ViolationMode};
use crate::quotas::{Unit, cents, window_at};
use crate::records::{ConfirmationStatus, Outcome, OutcomeStatus, ViolationReason, ViolationRow};
use crate::services::tiering::{Controller, Trigger};
use crate::store::{
    Change, Conflict, GuardWrite, OutcomeWrite, QuotaWrite, Store, StoreError, TrustWrite,
    ViolationWrite, Write,
};
use crate::tiering::HardTrigger;
use crate::trust::{Kind as TrustKind, Source};

/// Records overdue outcomes as `unknown` (audited as `outcome.overdue`, weak negative trust
/// evidence): one step of the periodic task (see [`crate::jobs`]).
pub async fn mark_overdue(
    store: &Store,
    clock: &SharedClock,
    tiers: &Controller,
) -> std::result::Result<(), StoreError> {
    let now = clock.now_micros();
    for o in store.overdue_outcomes(now, 200).await? {
        let details = serde_json::json!({"decision_id": o.decision_id, "due_at": o.due_at});
        let record = AuditRecord {
            agent: Some(o.agent.clone()),
            decision_id: Some(o.decision_id.clone()),
            action_class: Some(o.class.clone()),
            environment: Some(o.environment.clone()),
            outcome: Some("unknown".into()),
            ..AuditRecord::change(
                Actor::warden(),
                "outcome.overdue",
                format!("service:{}", o.service),
                details,
                now,
            )
        };
        let evidence = tiers.evidence(&o.agent, &o.environment, o.risk, TrustKind::Unknown, now, 1);
        let mut writes = vec![
            Write::Outcome(OutcomeWrite::OutcomeOverdue {
                decision_id: o.decision_id,
                at: now,
            }),
            Write::Trust(TrustWrite::AddEvidence(evidence)),
        ];
        if let Ok(Some(agent)) = store.agent(&o.agent).await {
            writes.push(tiers.note(&agent));
        }
        // A conflict means the report (or another replica) came first.
        if store
            .commit(Change {
                writes,
                audit: vec![record],
            })
            .await
            .is_ok()
        {
            let _ = tiers.review(&o.agent, Trigger::Outcome { bad: true }).await;
        }
    }
    Ok(())
}

/// What recording an outcome needs.
#[derive(Debug, Clone, Copy)]
pub struct Reporting<'a> {
    /// The store.
    pub store: &'a Store,
    /// The effective policy (quotas' windows, the severe-anomaly bar).
    pub policy: &'a CompiledPolicy,
    /// The tier controller, which reacts to the outcome.
    pub tiers: &'a Controller,
    /// Time.
    pub clock: &'a SharedClock,
}

/// `POST /v1/decisions/{id}/outcome`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    /// `succeeded`, `failed` or `rolled_back`.
    pub status: OutcomeStatus,
    /// What happened, for humans.
    #[serde(default)]
    pub detail: Option<String>,
    /// What it actually cost, US dollars.
    #[serde(default)]
    pub actual_cost_usd: Option<f64>,
}

/// Records what happened after an allowed action, reported by the agent itself, a service or
/// an admin: the same report again is accepted; a different one is 409; for a decision that
/// did not allow the action, 422. The report is trust evidence (less what it replaces), may
/// correct the dollar quotas, and lets the tier controller react at once.
pub async fn report(
    cx: &Reporting<'_>,
    caller: &Caller,
    id: &str,
    report: &OutcomeReport,
) -> Result<Outcome> {
    caller.require(&[Role::Agent, Role::Service, Role::Admin])?;
    if !OutcomeStatus::REPORTABLE.contains(&report.status) {
        let reportable: Vec<&str> = OutcomeStatus::REPORTABLE
            .iter()
            .map(|s| s.as_str())
            .collect();
        let message = format!(
            "`{}` is not one of {}",
            report.status,
            reportable.join(", ")
        );
        return Err(Error::field("status", message));
    }
    if let Some(cost) = report.actual_cost_usd
        && !(cost.is_finite() && (0.0..=1e9).contains(&cost))
    {
        return Err(Error::field(
            "actual_cost_usd",
            "must be a number from 0 to 1e9",
        ));
    }
    if let Some(d) = &report.detail
        && d.len() > 4096
    {
        return Err(Error::field(
            "detail",
            format!("is {} bytes, over the limit of 4096", d.len()),
        ));
    }
    // An overdue marker may land between reading the outcome and writing the report: then the
    // report replaces the `unknown`, read afresh (so the right evidence is taken back).
    for _ in 0..3 {
        if let Some(done) = attempt_report(cx, caller, id, report).await? {
            return Ok(done);
        }
    }
    Err(Error::new(
        Kind::Conflict,
        "outcome_conflict",
        format!("decision `{id}` kept changing while this report was recorded; retry"),
    ))
}

/// The decision, if the caller may see it: agents see only their own; to them another's does
/// not exist.
pub async fn visible(store: &Store, caller: &Caller, id: &str) -> Result<Outcome> {
    let unknown = || Error::not_found("unknown_decision", format!("no decision `{id}`"));
    let outcome = store.outcome(id).await?.ok_or_else(unknown)?;
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(outcome.agent.as_str()) {
        return Err(unknown());
    }
    Ok(Outcome {
        guard: store.guard(id).await?,
        ..outcome
    })
}

/// One attempt at recording a report: the outcome as recorded, or `None` when an overdue
/// marker landed meanwhile and the report should be made again on the fresh state.
async fn attempt_report(
    cx: &Reporting<'_>,
    caller: &Caller,
    id: &str,
    report: &OutcomeReport,
) -> Result<Option<Outcome>> {
    let current = visible(cx.store, caller, id).await?;
    if current.verdict != "allow" {
        return Err(Error::new(
            Kind::Unprocessable,
            "decision_not_allowed",
            format!(
                "decision `{id}` was `{}`: the action was not allowed, so it has no outcome",
                current.verdict
            ),
        ));
    }
    if current.due_at.is_none() {
        return Err(Error::new(
            Kind::Unprocessable,
            "no_outcome_due",
            format!("decision `{id}` owes no outcome (reads change nothing)"),
        ));
    }
    if current.rollback_requested && report.status == OutcomeStatus::Succeeded {
        return Err(Error::new(
            Kind::Conflict,
            "rollback_requested",
            format!("decision `{id}` failed its canary judgement and a rollback was requested"),
        ));
    }
    // A service or an admin may correct what the agent reported about itself, and the watch
    // over a guarded action has the last word on it (it rolled the action back); otherwise the
    // first real report stands.
    let correcting = |by: &Option<String>| {
        caller.role != Role::Agent
            && (by.as_deref() == Some(current.agent.as_str())
                || caller.subject.as_deref() == Some(GUARD_REPORTER))
    };
    match current.outcome {
        Some(same) if same == report.status => return Ok(Some(current)),
        Some(other) if other != OutcomeStatus::Unknown && !correcting(&current.reported_by) => {
            return Err(Error::new(
                Kind::Conflict,
                "outcome_conflict",
                format!("decision `{id}` was already reported `{other}`"),
            ));
        }
        _ => {}
    }
    let now = cx.clock.now_micros();
    let by = caller.actor_id();
    let details = serde_json::json!({"decision_id": id, "status": report.status, "detail": report.detail, "actual_cost_usd": report.actual_cost_usd,
        "was": current.outcome});
    let actor = Actor::of(caller);
    let record = AuditRecord {
        agent: Some(current.agent.clone()),
        decision_id: Some(id.to_string()),
        action_class: Some(current.class.clone()),
        environment: Some(current.environment.clone()),
        outcome: Some(report.status.as_str().to_string()),
        ..AuditRecord::change(
            actor,
            "outcome.reported",
            format!("service:{}", current.service),
            details,
            now,
        )
    };
    // Trust evidence: the report, less what it replaces (an `unknown`, or a corrected report).
    let tiers = cx.tiers;
    let evidence_of = |outcome: OutcomeStatus, source: Source, at: i64, delta: i64| {
        let kind = TrustKind::of_outcome(outcome, source);
        tiers.evidence(
            &current.agent,
            &current.environment,
            current.risk,
            kind,
            at,
            delta,
        )
    };
    // A guarded action's success counts once its watch ends clean: until then it has no
    // evidence to take back, and a new one waits.
    let guard = current.guard.clone();
    let counts = |o: &OutcomeStatus| {
        *o != OutcomeStatus::Succeeded || crate::services::guards::success_counts(guard.as_ref())
    };
    let replaced = current.outcome.filter(counts).map(|o| {
        evidence_of(
            o,
            source_of(&current),
            current
                .reported_at
                .as_deref()
                .and_then(parse_micros)
                .unwrap_or(now),
            -1,
        )
    });
    let added = counts(&report.status).then(|| {
        evidence_of(
            report.status,
            Source::of_report(&current.agent, Some(&by), false),
            now,
            1,
        )
    });
    let evidence: Vec<_> = replaced.into_iter().chain(added).collect();
    let agent = cx.store.agent(&current.agent).await?.ok_or_else(|| {
        Error::not_found("unknown_agent", format!("no agent `{}`", current.agent))
    })?;
    let note = tiers.note(&agent);
    let status = report.status;
    // A failed or rolled-back action judged severely anomalous confirms the anomaly: evidence
    // of its own, once per decision (a human may have confirmed it already).
    let anomaly_confirmed = status != OutcomeStatus::Succeeded
        && severely_anomalous(cx, id).await?
        && !cx.store.anomaly_confirmed(id).await?;
    let actual_cost = report.actual_cost_usd;
    let mut writes = vec![Write::Outcome(OutcomeWrite::ReportOutcome {
        decision_id: id.to_string(),
        outcome: report.status,
        at: now,
        by,
        detail: report.detail.clone(),
        actual_cost_usd: report.actual_cost_usd,
        expected: current.outcome,
    })];
    // Evidence waiting for the watch must not miss it ending meanwhile.
    if guard.as_ref().is_some_and(|g| !g.status.closed()) {
        writes.push(Write::Guard(GuardWrite::ExpectOpen {
            decision_id: id.to_string(),
        }));
    }
    writes.extend(
        evidence
            .into_iter()
            .map(|e| Write::Trust(TrustWrite::AddEvidence(e))),
    );
    if anomaly_confirmed {
        writes.push(Write::Outcome(OutcomeWrite::ConfirmAnomaly {
            decision_id: id.to_string(),
            at: now,
        }));
        writes.push(Write::Trust(TrustWrite::AddEvidence(tiers.evidence(
            &current.agent,
            &current.environment,
            current.risk,
            TrustKind::ConfirmedAnomaly,
            now,
            1,
        ))));
    }
    writes.push(note);
    if let Some(actual) = actual_cost {
        writes.extend(cost_corrections(cx, caller, id, &current, actual).await?);
    }
    if let Err(e) = cx
        .store
        .commit(Change {
            writes,
            audit: vec![record],
        })
        .await
    {
        // Another report landed first: the same one is fine (a retry), a different one conflicts.
        let now_there = visible(cx.store, caller, id).await?;
        return match (e.conflict(), now_there.outcome) {
            // A human confirmed the anomaly, or the watch ended, meanwhile: report again, on
            // the fresh state.
            (Some(Conflict::AnomalyConfirmed | Conflict::GuardMoved), _) => Ok(None),
            (Some(Conflict::OutcomeReported), Some(s)) if s == status => Ok(Some(now_there)),
            (Some(Conflict::OutcomeReported), Some(OutcomeStatus::Unknown))
                if current.outcome.is_none() =>
            {
                Ok(None)
            }
            (Some(Conflict::OutcomeReported), _) => Err(Error::new(
                Kind::Conflict,
                "outcome_conflict",
                format!("decision `{id}` got another report at the same time"),
            )),
            _ => Err(e.into()),
        };
    }
    // The tier follows at once: a critical rollback, or a failure of an action judged severely
    // anomalous (the anomaly confirmed), is a hard trigger.
    let trigger = if status == OutcomeStatus::RolledBack && current.risk == RiskLevel::Critical {
        Trigger::Hard(HardTrigger::CriticalRollback)
    } else if anomaly_confirmed {
        Trigger::Hard(HardTrigger::ConfirmedAnomaly)
    } else {
        Trigger::Outcome {
            bad: status != OutcomeStatus::Succeeded,
        }
    };
    if let Err(e) = tiers.review(&current.agent, trigger).await {
        tracing::warn!(agent = %current.agent, error = %e.message, "tier review after an outcome failed");
    }
    Ok(Some(visible(cx.store, caller, id).await?))
}

/// The actual cost replaces the estimate (or an earlier actual cost) in the dollar quotas the
/// action was charged to, in the window it was charged in. Lowering the tally takes a service
/// or an admin: an agent could otherwise report its way around its own budget.
async fn cost_corrections(
    cx: &Reporting<'_>,
    caller: &Caller,
    id: &str,
    current: &Outcome,
    actual: f64,
) -> Result<Vec<Write>> {
    let Some((decided_at, request, answer)) = cx.store.decision_request(id).await? else {
        return Ok(Vec::new());
    };
    let request: serde_json::Value = serde_json::from_str(&request).map_err(Error::internal)?;
    let answer: DecisionAnswer = serde_json::from_str(&answer).map_err(Error::internal)?;
    let estimate = request
        .pointer("/action/estimated_cost_usd")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    // What the tally holds for this action now, and what it should: an agent's own report may
    // raise it above the estimate, never lower it; a service's or an admin's sets it.
    let charged = |by_the_agent: bool, actual: f64| {
        if by_the_agent {
            actual.max(estimate)
        } else {
            actual
        }
    };
    let previous = match current.actual_cost_usd {
        Some(a) => charged(
            current.reported_by.as_deref() == Some(current.agent.as_str()),
            a,
        ),
        None => estimate,
    };
    let delta = cents(charged(caller.role == Role::Agent, actual)) - cents(previous);
    let policy = cx.policy;
    Ok(answer
        .quotas
        .iter()
        .filter(|h| h.unit == Unit::Usd && delta != 0)
        .filter_map(|h| {
            // The window the action was charged in: the one its decision fell in.
            let quota = policy.policy.quotas.quota(&h.quota)?;
            Some(Write::Quota(QuotaWrite::AdjustQuota {
                agent_id: current.agent.clone(),
                quota: h.quota.clone(),
                scope: h.scope.clone(),
                window_start: window_at(quota.window, decided_at, &policy.quota_zone).0,
                delta,
            }))
        })
        .collect())
}

/// Whether the decision's anomaly stage found the action severely anomalous.
async fn severely_anomalous(cx: &Reporting<'_>, id: &str) -> Result<bool> {
    let Some((_, answer)) = cx.store.decision(id).await? else {
        return Ok(false);
    };
    let answer: serde_json::Value = serde_json::from_str(&answer).map_err(Error::internal)?;
    let severity = answer
        .pointer("/anomaly/severity")
        .and_then(|s| s.as_u64())
        .unwrap_or(0);
    Ok(severity >= u64::from(cx.policy.policy.severe_anomaly))
}

/// What the platform says happened after an action Warden allowed (an event carrying the
/// decision's id and an outcome): the platform's word stands. Recorded as the outcome when no
/// one reported yet; the same as the agent's report confirms it; another contradicts it,
/// replaces it (the evidence follows) and is a violation of its own. Returns what it was, or
/// nothing for an event about no allowed action (a stray id is ignored, never an error).
pub async fn confirm(
    cx: &Reporting<'_>,
    event: &ActivityEvent,
) -> Result<Option<ConfirmationStatus>> {
    let (Some(id), Some(status)) = (&event.decision_id, event.outcome) else {
        return Ok(None);
    };
    let Some(before) = cx.store.outcome(id).await? else {
        return Ok(None);
    };
    let guard = cx.store.guard(id).await?;
    if before.verdict != "allow" || before.due_at.is_none() || before.confirmation.is_some() {
        return Ok(None);
    }
    let by = format!("{}:{}", event.source, event.source_id);
    // The platform reports like a service: the same rules, and it may correct the agent.
    let platform = Caller {
        token_id: by.clone(),
        role: Role::Service,
        subject: Some(format!("platform:{}", event.source)),
    };
    let report_of_platform = OutcomeReport {
        status,
        detail: Some(format!("reported by the platform ({by})")),
        actual_cost_usd: None,
    };
    match report(cx, &platform, id, &report_of_platform).await {
        Ok(_) => {}
        // A rollback already requested, or a race with another report: nothing to confirm.
        Err(e) if matches!(e.kind, Kind::Conflict | Kind::Unprocessable) => return Ok(None),
        Err(e) => return Err(e),
    }
    let contradicted =
        matches!(before.outcome, Some(o) if o != status && o != OutcomeStatus::Unknown);
    let confirmation = if contradicted {
        ConfirmationStatus::Contradicted
    } else {
        ConfirmationStatus::Confirmed
    };
    let now = cx.clock.now_micros();
    let mut writes = vec![Write::Outcome(OutcomeWrite::ConfirmOutcome {
        decision_id: id.clone(),
        status: confirmation,
        by: by.clone(),
        at: now,
    })];
    // A success waiting for its watch moves nothing now: the watch counts it, as the
    // platform's, when it ends clean. That must not happen in between.
    if guard.as_ref().is_some_and(|g| !g.status.closed()) {
        writes.push(Write::Guard(GuardWrite::ExpectOpen {
            decision_id: id.clone(),
        }));
    }
    let details = serde_json::json!({"decision_id": id, "by": by, "platform": status, "agent": before.outcome});
    let record = AuditRecord {
        agent: Some(before.agent.clone()),
        decision_id: Some(id.clone()),
        action_class: Some(before.class.clone()),
        environment: Some(before.environment.clone()),
        outcome: Some(status.as_str().to_string()),
        ..AuditRecord::change(
            Actor::integration(&event.source),
            if contradicted {
                "outcome.contradicted"
            } else {
                "outcome.confirmed"
            },
            format!("service:{}", before.service),
            details,
            now,
        )
    };
    // A success someone else reported, now confirmed: the platform vouches for it from now on.
    if !contradicted
        && before.outcome == Some(OutcomeStatus::Succeeded)
        && source_of(&before) != Source::Platform
        && crate::services::guards::success_counts(guard.as_ref())
    {
        let at = before
            .reported_at
            .as_deref()
            .and_then(parse_micros)
            .unwrap_or(now);
        for (source, delta) in [(source_of(&before), -1), (Source::Platform, 1)] {
            writes.push(Write::Trust(TrustWrite::AddEvidence(cx.tiers.evidence(
                &before.agent,
                &before.environment,
                before.risk,
                TrustKind::success(source),
                at,
                delta,
            ))));
        }
        if let Some(agent) = cx.store.agent(&before.agent).await? {
            writes.push(cx.tiers.note(&agent));
        }
    }
    if contradicted {
        // Reporting an outcome the platform contradicts is a violation, weighed as a blocked one.
        writes.push(Write::Violation(ViolationWrite::InsertViolation(
            ViolationRow {
                id: uuid::Uuid::now_v7().to_string(),
                at: now,
                decision_id: id.clone(),
                agent_id: before.agent.clone(),
                class: before.class.clone(),
                environment: before.environment.clone(),
                service: before.service.clone(),
                mode: ViolationMode::Block,
                reason: ViolationReason::OutcomeContradicted,
            },
        )));
        writes.push(Write::Trust(TrustWrite::AddEvidence(cx.tiers.evidence(
            &before.agent,
            &before.environment,
            before.risk,
            TrustKind::Violation,
            now,
            1,
        ))));
        if let Some(agent) = cx.store.agent(&before.agent).await? {
            writes.push(cx.tiers.note(&agent));
        }
    }
    match cx
        .store
        .commit(Change {
            writes,
            audit: vec![record],
        })
        .await
    {
        Ok(()) => {}
        // Another replica recorded the platform's word on this decision first.
        Err(e) if e.conflict() == Some(Conflict::OutcomeConfirmed) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if contradicted
        && let Err(e) = cx
            .tiers
            .review(&before.agent, Trigger::Outcome { bad: true })
            .await
    {
        tracing::warn!(agent = %before.agent, error = %e.message, "tier review after a contradiction failed");
    }
    Ok(Some(confirmation))
}

/// Who reports the outcome of an action the watch rolled back.
pub const GUARD_REPORTER: &str = "warden:guard";

/// Who vouches for an outcome as recorded.
pub fn source_of(o: &Outcome) -> Source {
    Source::of_report(
        &o.agent,
        o.reported_by.as_deref(),
        o.confirmation
            .as_ref()
            .is_some_and(|c| c.status == ConfirmationStatus::Confirmed),
    )
}

/// A human marks a decision's anomaly findings as real (admins and approvers): trust evidence
/// of its own, once per decision, and a hard trigger when the anomaly was severe.
pub async fn confirm_anomaly(
    cx: &Reporting<'_>,
    caller: &Caller,
    id: &str,
    comment: Option<String>,
) -> Result<Outcome> {
    caller.require(&[Role::Admin, Role::Approver])?;
    if let Some(c) = &comment {
        check_len("comment", c, 4096)?;
    }
    let current = visible(cx.store, caller, id).await?;
    let Some((_, answer)) = cx.store.decision(id).await? else {
        return Err(Error::not_found(
            "unknown_decision",
            format!("no decision `{id}`"),
        ));
    };
    let answer: serde_json::Value = serde_json::from_str(&answer).map_err(Error::internal)?;
    let findings = answer
        .pointer("/anomaly/findings")
        .and_then(|f| f.as_array())
        .map_or(0, Vec::len);
    if findings == 0 {
        return Err(Error::new(
            Kind::Unprocessable,
            "no_anomaly",
            format!("decision `{id}` has no anomaly findings to confirm"),
        ));
    }
    let severe = severely_anomalous(cx, id).await?;
    let now = cx.clock.now_micros();
    let details = serde_json::json!({"decision_id": id, "comment": comment, "severe": severe});
    let mut record = by_caller(
        caller,
        "anomaly.confirmed",
        format!("decision:{id}"),
        Some(current.agent.clone()),
        details,
        now,
    );
    record.decision_id = Some(id.to_string());
    let mut writes = vec![
        Write::Outcome(OutcomeWrite::ConfirmAnomaly {
            decision_id: id.to_string(),
            at: now,
        }),
        Write::Trust(TrustWrite::AddEvidence(cx.tiers.evidence(
            &current.agent,
            &current.environment,
            current.risk,
            TrustKind::ConfirmedAnomaly,
            now,
            1,
        ))),
    ];
    if let Some(agent) = cx.store.agent(&current.agent).await? {
        writes.push(cx.tiers.note(&agent));
    }
    cx.store
        .commit(Change {
            writes,
            audit: vec![record],
        })
        .await
        .map_err(|e| match e.conflict() {
            Some(Conflict::AnomalyConfirmed) => Error::new(
                Kind::Conflict,
                "anomaly_confirmed",
                format!("decision `{id}` has its anomaly confirmed already"),
            ),
            _ => e.into(),
        })?;
    let trigger = if severe {
        Trigger::Hard(HardTrigger::ConfirmedAnomaly)
    } else {
        Trigger::Outcome { bad: true }
    };
    if let Err(e) = cx.tiers.review(&current.agent, trigger).await {
        tracing::warn!(agent = %current.agent, error = %e.message, "tier review after a confirmed anomaly failed");
    }
    visible(cx.store, caller, id).await
}
