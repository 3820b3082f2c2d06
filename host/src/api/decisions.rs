//! `POST /v1/decisions`: ask before acting. `GET /v1/decisions/{id}`: read one back.
//! `POST /v1/decisions/{id}/outcome`: report what happened after.

use axum::extract::{Path, State};
use axum::response::IntoResponse as _;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::audit::{Actor, AuditRecord};
use crate::clock::parse_micros;
use crate::engine::{DecisionAnswer, DecisionRequest};
use crate::error::{Error, ErrorBody, Kind, Result};
use crate::identity::{Caller, Role};
use crate::policy::RiskLevel;
use crate::quotas::{Unit, cents, window_at};
use crate::store::{Change, Outcome, Write};
use crate::tiers::{HardTrigger, Trigger};
use crate::trust::Kind as TrustKind;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(decide)).routes(routes!(get_decision)).routes(routes!(report_outcome, get_outcome)).routes(routes!(signals))
}

/// Ask whether an agent may act. The decision is durable before the answer is sent.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions", request_body = DecisionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verdict", body = DecisionAnswer),
        (status = 400, description = "Invalid request; `field` names the problem", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was decided (fail closed)", body = ErrorBody),
    ))]
async fn decide(State(state): State<AppState>, caller: Caller, Json(request): Json<DecisionRequest>) -> Result<axum::Json<DecisionAnswer>> {
    Ok(axum::Json(state.engine.decide(&caller, request).await?))
}

/// A recorded decision's answer. Agents may read only their own.
#[utoipa::path(get, path = "/v1/decisions/{id}", tag = "decisions", params(("id" = String, Path, description = "Decision id")),
    security(("bearer" = [])),
    responses((status = 200, body = DecisionAnswer), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_decision(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<axum::response::Response> {
    let unknown = || Error::not_found("unknown_decision", format!("no decision `{id}`"));
    let (agent, answer) = state.store.decision(&id).await?.ok_or_else(unknown)?;
    // Agents see only their own decisions; to them another's does not exist.
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(agent.as_str()) {
        return Err(unknown());
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], answer).into_response())
}

/// `POST /v1/decisions/{id}/outcome`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    /// `succeeded`, `failed` or `rolled_back`.
    pub status: String,
    /// What happened, for humans.
    #[serde(default)]
    pub detail: Option<String>,
    /// What it actually cost, US dollars.
    #[serde(default)]
    pub actual_cost_usd: Option<f64>,
}

/// The decision, if the caller may see it: agents see only their own; to them another's does
/// not exist.
async fn visible_outcome(state: &AppState, caller: &Caller, id: &str) -> Result<Outcome> {
    let unknown = || Error::not_found("unknown_decision", format!("no decision `{id}`"));
    let outcome = state.store.outcome(id).await?.ok_or_else(unknown)?;
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(outcome.agent.as_str()) {
        return Err(unknown());
    }
    Ok(outcome)
}

/// Report what happened after an allowed action: the agent itself, a service or an admin.
/// The same report again is accepted; a different one is 409; for a decision that did not
/// allow the action, 422.
#[utoipa::path(post, path = "/v1/decisions/{id}/outcome", tag = "decisions", request_body = OutcomeReport,
    params(("id" = String, Path, description = "Decision id")), security(("bearer" = [])),
    responses((status = 200, body = Outcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn report_outcome(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(report): Json<OutcomeReport>,
) -> Result<axum::Json<Outcome>> {
    caller.require(&[Role::Agent, Role::Service, Role::Admin])?;
    if !crate::outcomes::REPORTABLE.contains(&report.status.as_str()) {
        return Err(Error::field("status", format!("`{}` is not one of {}", report.status, crate::outcomes::REPORTABLE.join(", "))));
    }
    if let Some(cost) = report.actual_cost_usd
        && !(cost.is_finite() && (0.0..=1e9).contains(&cost))
    {
        return Err(Error::field("actual_cost_usd", "must be a number from 0 to 1e9"));
    }
    if let Some(d) = &report.detail
        && d.len() > 4096
    {
        return Err(Error::field("detail", format!("is {} bytes, over the limit of 4096", d.len())));
    }
    // An overdue marker may land between reading the outcome and writing the report: then the
    // report replaces the `unknown`, read afresh (so the right evidence is taken back).
    for _ in 0..3 {
        if let Some(done) = attempt_report(&state, &caller, &id, &report).await? {
            return Ok(axum::Json(done));
        }
    }
    Err(Error::new(Kind::Conflict, "outcome_conflict", format!("decision `{id}` kept changing while this report was recorded; retry")))
}

/// One attempt at recording a report: the outcome as recorded, or `None` when an overdue
/// marker landed meanwhile and the report should be made again on the fresh state.
async fn attempt_report(state: &AppState, caller: &Caller, id: &str, report: &OutcomeReport) -> Result<Option<Outcome>> {
    let current = visible_outcome(state, caller, id).await?;
    if current.verdict != "allow" {
        return Err(Error::new(
            Kind::Unprocessable,
            "decision_not_allowed",
            format!("decision `{id}` was `{}`: the action was not allowed, so it has no outcome", current.verdict),
        ));
    }
    if current.due_at.is_none() {
        return Err(Error::new(Kind::Unprocessable, "no_outcome_due", format!("decision `{id}` owes no outcome (reads change nothing)")));
    }
    if current.rollback_requested && report.status == "succeeded" {
        return Err(Error::new(Kind::Conflict, "rollback_requested", format!("decision `{id}` failed its canary judgement and a rollback was requested")));
    }
    // A service or an admin may correct what the agent reported about itself; otherwise the
    // first real report stands.
    let correcting = |by: &Option<String>| caller.role != Role::Agent && by.as_deref() == Some(current.agent.as_str());
    match current.outcome.as_deref() {
        Some(same) if same == report.status => return Ok(Some(current)),
        Some(other) if other != "unknown" && !correcting(&current.reported_by) => {
            return Err(Error::new(Kind::Conflict, "outcome_conflict", format!("decision `{id}` was already reported `{other}`")));
        }
        _ => {}
    }
    let now = state.clock.now_micros();
    let by = caller.actor_id();
    let details = serde_json::json!({"decision_id": id, "status": report.status, "detail": report.detail, "actual_cost_usd": report.actual_cost_usd,
        "was": current.outcome});
    let actor = Actor { kind: caller.role.actor_kind().to_string(), id: by.clone(), tool: None, model: None, token_id: Some(caller.token_id.clone()) };
    let record = AuditRecord {
        agent: Some(current.agent.clone()),
        decision_id: Some(id.to_string()),
        action_class: Some(current.class.clone()),
        environment: Some(current.environment.clone()),
        outcome: Some(report.status.clone()),
        ..AuditRecord::change(actor, "outcome.reported", format!("service:{}", current.service), details, now)
    };
    // Trust evidence: the report, less what it replaces (an `unknown`, or a corrected report).
    let tiers = state.engine.tiers();
    let evidence_of = |outcome: &str, at: i64, delta: i64| {
        TrustKind::of_outcome(outcome).map(|kind| tiers.evidence(&current.agent, &current.environment, current.risk, kind, at, delta))
    };
    let replaced = current.outcome.as_deref().and_then(|o| evidence_of(o, current.reported_at.as_deref().and_then(parse_micros).unwrap_or(now), -1));
    let evidence: Vec<_> = replaced.into_iter().chain(evidence_of(&report.status, now, 1)).collect();
    let agent = state.store.agent(&current.agent).await?.ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{}`", current.agent)))?;
    let note = tiers.note(&agent);
    let status = report.status.clone();
    let actual_cost = report.actual_cost_usd;
    let mut writes = vec![Write::ReportOutcome {
        decision_id: id.to_string(),
        outcome: report.status.clone(),
        at: now,
        by,
        detail: report.detail.clone(),
        actual_cost_usd: report.actual_cost_usd,
        expected: current.outcome.clone(),
    }];
    writes.extend(evidence.into_iter().map(Write::AddEvidence));
    writes.push(note);
    if let Some(actual) = actual_cost {
        writes.extend(cost_corrections(state, caller, id, &current, actual).await?);
    }
    if let Err(e) = state.store.commit(Change { writes, audit: vec![record] }).await {
        // Another report landed first: the same one is fine (a retry), a different one conflicts.
        let now_there = visible_outcome(state, caller, id).await?;
        return match (e.code, now_there.outcome.as_deref()) {
            ("outcome_reported", Some(s)) if s == status => Ok(Some(now_there)),
            ("outcome_reported", Some("unknown")) if current.outcome.is_none() => Ok(None),
            ("outcome_reported", _) => Err(Error::new(Kind::Conflict, "outcome_conflict", format!("decision `{id}` got another report at the same time"))),
            _ => Err(e),
        };
    }
    // The tier follows at once: a critical rollback, or a failure of an action judged severely
    // anomalous (the anomaly confirmed), is a hard trigger.
    let trigger = if status == "rolled_back" && current.risk == RiskLevel::Critical {
        Trigger::Hard(HardTrigger::CriticalRollback)
    } else if status != "succeeded" && severely_anomalous(state, id).await? {
        Trigger::Hard(HardTrigger::ConfirmedAnomaly)
    } else {
        Trigger::Outcome { bad: status != "succeeded" }
    };
    if let Err(e) = tiers.review(&current.agent, trigger).await {
        tracing::warn!(agent = %current.agent, error = %e.message, "tier review after an outcome failed");
    }
    Ok(Some(visible_outcome(state, caller, id).await?))
}

/// The actual cost replaces the estimate (or an earlier actual cost) in the dollar quotas the
/// action was charged to, in the window it was charged in. Lowering the tally takes a service
/// or an admin: an agent could otherwise report its way around its own budget.
async fn cost_corrections(state: &AppState, caller: &Caller, id: &str, current: &Outcome, actual: f64) -> Result<Vec<Write>> {
    let Some((decided_at, request, answer)) = state.store.decision_request(id).await? else { return Ok(Vec::new()) };
    let request: serde_json::Value = serde_json::from_str(&request).map_err(Error::internal)?;
    let answer: DecisionAnswer = serde_json::from_str(&answer).map_err(Error::internal)?;
    let estimate = request.pointer("/action/estimated_cost_usd").and_then(|v| v.as_f64()).unwrap_or(0.0);
    // What the tally holds for this action now, and what it should: an agent's own report may
    // raise it above the estimate, never lower it; a service's or an admin's sets it.
    let charged = |by_the_agent: bool, actual: f64| if by_the_agent { actual.max(estimate) } else { actual };
    let previous = match current.actual_cost_usd {
        Some(a) => charged(current.reported_by.as_deref() == Some(current.agent.as_str()), a),
        None => estimate,
    };
    let delta = cents(charged(caller.role == Role::Agent, actual)) - cents(previous);
    let policy = state.engine.policy();
    Ok(answer
        .quotas
        .iter()
        .filter(|h| h.unit == Unit::Usd && delta != 0)
        .filter_map(|h| {
            // The window the action was charged in: the one its decision fell in.
            let quota = policy.policy.quotas.quota(&h.quota)?;
            Some(Write::AdjustQuota {
                agent_id: current.agent.clone(),
                quota: h.quota.clone(),
                scope: h.scope.clone(),
                window_start: window_at(quota.window, decided_at, &policy.quota_zone).0,
                delta,
            })
        })
        .collect())
}

/// Whether the decision's anomaly stage found the action severely anomalous.
async fn severely_anomalous(state: &AppState, id: &str) -> Result<bool> {
    let Some((_, answer)) = state.store.decision(id).await? else { return Ok(false) };
    let answer: serde_json::Value = serde_json::from_str(&answer).map_err(Error::internal)?;
    let severity = answer.pointer("/anomaly/severity").and_then(|s| s.as_u64()).unwrap_or(0);
    Ok(severity >= u64::from(state.engine.policy().policy.severe_anomaly))
}

/// A decision's outcome: reported, `unknown` when overdue, or absent while still due.
#[utoipa::path(get, path = "/v1/decisions/{id}/outcome", tag = "decisions", params(("id" = String, Path, description = "Decision id")),
    security(("bearer" = [])), responses((status = 200, body = Outcome), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_outcome(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<axum::Json<Outcome>> {
    Ok(axum::Json(visible_outcome(&state, &caller, &id).await?))
}

/// Metric samples for an allowed action, judged with all received so far by the rollback-trigger
/// plugins; a failed judgement requests a rollback once (`rollback.requested`).
#[utoipa::path(post, path = "/v1/decisions/{id}/signals", tag = "decisions", request_body = crate::rollback::Signals,
    params(("id" = String, Path, description = "Decision id")), security(("bearer" = [])),
    responses((status = 200, body = crate::rollback::SignalsAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn signals(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(signals): Json<crate::rollback::Signals>,
) -> Result<axum::Json<crate::rollback::SignalsAnswer>> {
    let cx = crate::rollback::Context {
        store: &state.store,
        policy: state.engine.policy(),
        plugins: state.engine.plugins(),
        outbox: state.engine.outbox(),
        now: state.clock.now_micros(),
    };
    Ok(axum::Json(crate::rollback::receive(cx, &caller, &id, signals).await?))
}
