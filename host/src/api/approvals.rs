//! `/v1/approvals`: human decisions on high-risk agent actions.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::agents::change_record;
use super::{AppState, Json, Query};
use crate::error::{Error, ErrorBody, Kind, Result};
use crate::identity::{Caller, Role};
use crate::outbox::Event;
use crate::policy::RiskLevel;
use crate::store::{Approval, Change, Write};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_approvals)).routes(routes!(get_approval)).routes(routes!(approve)).routes(routes!(reject))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ApprovalQuery {
    /// `pending`, `approved`, `rejected`, `expired` or `consumed`.
    status: Option<String>,
    /// The agent.
    agent: Option<String>,
    /// Page after this approval id (use the previous page's `next_after`).
    after: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<i64>,
}

/// A page of approvals, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApprovalPage {
    /// The approvals.
    pub approvals: Vec<Approval>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// `POST /v1/approvals/{id}/approve` and `/reject`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// Why, for the record (and the agent).
    #[serde(default)]
    pub comment: Option<String>,
}

const STATUSES: [&str; 5] = ["pending", "approved", "rejected", "expired", "consumed"];

/// List approvals (admins and approvers).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ApprovalQuery), security(("bearer" = [])),
    responses((status = 200, body = ApprovalPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_approvals(State(state): State<AppState>, caller: Caller, Query(q): Query<ApprovalQuery>) -> Result<axum::Json<ApprovalPage>> {
    caller.require(&[Role::Admin, Role::Approver])?;
    super::one_of("status", &q.status, &STATUSES)?;
    let limit = super::page_limit(q.limit)?;
    let now = state.clock.now_micros();
    // One more than asked tells whether another page exists.
    let mut approvals = state.store.approvals(q.status.as_deref(), q.agent.as_deref(), q.after.as_deref(), limit + 1, now).await?;
    let next_after = super::next_page(&mut approvals, limit, |a| a.id.clone());
    Ok(axum::Json(ApprovalPage { approvals, next_after }))
}

/// One approval: the agent's plan and reasoning, the action, its risk and anomaly findings.
/// Admins and approvers; an agent may watch its own.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", params(("id" = String, Path, description = "Approval id")), security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_approval(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<axum::Json<Approval>> {
    let approval = load(&state, &id).await?;
    let own = caller.role == Role::Agent && caller.subject.as_deref() == Some(approval.agent.as_str());
    if !own {
        caller.require(&[Role::Admin, Role::Approver])?;
    }
    Ok(axum::Json(approval))
}

/// Approve a pending approval: approvers whose own grants cover the action, never the human the
/// agent acts for.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", request_body = Verdict, params(("id" = String, Path, description = "Approval id")),
    security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn approve(State(state): State<AppState>, caller: Caller, Path(id): Path<String>, Json(v): Json<Verdict>) -> Result<axum::Json<Approval>> {
    decide(state, caller, id, v, true).await
}

/// Reject a pending approval: approvers whose own grants cover the action.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "approvals", request_body = Verdict, params(("id" = String, Path, description = "Approval id")),
    security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn reject(State(state): State<AppState>, caller: Caller, Path(id): Path<String>, Json(v): Json<Verdict>) -> Result<axum::Json<Approval>> {
    decide(state, caller, id, v, false).await
}

async fn load(state: &AppState, id: &str) -> Result<Approval> {
    let now = state.clock.now_micros();
    state.store.approval(id, now).await?.ok_or_else(|| Error::not_found("unknown_approval", format!("no approval `{id}`")))
}

async fn decide(state: AppState, caller: Caller, id: String, v: Verdict, approve: bool) -> Result<axum::Json<Approval>> {
    decide_as(&state, &caller, &id, v.comment, approve).await.map(axum::Json)
}

/// Approves or rejects as `caller` (the API and the web page share this).
pub(super) async fn decide_as(state: &AppState, caller: &Caller, id: &str, comment: Option<String>, approve: bool) -> Result<Approval> {
    let v = Verdict { comment };
    // Only a human's approver token: never an agent, a service, or an admin acting as one.
    caller.require(&[Role::Approver])?;
    if let Some(c) = &v.comment
        && c.len() > 4096
    {
        return Err(Error::field("comment", format!("is {} bytes, over the limit of 4096", c.len())));
    }
    // Another approver may change the approval between our read and our write: read again and
    // retry a few times (the write is a compare-and-set, so nothing is ever lost or doubled).
    for _ in 0..5 {
        match try_decide(state, caller, id, &v, approve).await {
            Err(e) if e.code == "approval_changed" => continue,
            other => return other,
        }
    }
    Err(Error::new(Kind::Conflict, "approval_busy", format!("approval `{id}` kept changing; try again")))
}

async fn try_decide(state: &AppState, caller: &Caller, id: &str, v: &Verdict, approve: bool) -> Result<Approval> {
    let approval = load(state, id).await?;
    // The approver's own grants must cover what they allow.
    let who = caller.subject.clone().unwrap_or_default();
    let human = state
        .store
        .human(&who)
        .await?
        .ok_or_else(|| Error::forbidden("approver_unknown", format!("approver tokens must name a registered human; `{who}` is not one")))?;
    let risk: RiskLevel = serde_json::from_value(approval.summary["risk"]["level"].clone()).map_err(Error::internal)?;
    if !human.covers(&approval.class, &approval.environment, &approval.service, risk) {
        return Err(Error::forbidden(
            "approver_not_permitted",
            format!("`{who}`'s own grants do not cover {} in {} on {} at {risk} risk", approval.class, approval.environment, approval.service),
        ));
    }
    // Four eyes: the human an agent acts for asked for the action and may not approve it.
    if approve && approval.on_behalf_of.as_deref() == Some(who.as_str()) {
        return Err(Error::forbidden("self_approval", format!("`{who}` asked for this action (on_behalf_of) and may not approve it")));
    }
    match approval.status.as_str() {
        "pending" => {}
        "expired" => return Err(Error::new(Kind::Gone, "approval_expired", format!("approval `{id}` expired at {}", approval.expires_at))),
        other => return Err(Error::new(Kind::Conflict, "approval_not_pending", format!("approval `{id}` is already {other}"))),
    }
    if approve && approval.approved_by.contains(&who) {
        return Err(Error::new(Kind::Conflict, "already_approved", format!("`{who}` has approved `{id}` already; it needs another approver")));
    }
    let now = state.clock.now_micros();
    let mut approvers = approval.approved_by.clone();
    let (write, status) = if approve {
        approvers.push(who.clone());
        let complete = approvers.len() as i64 >= approval.approvals_needed;
        let write = Write::AddApprover {
            id: id.to_string(),
            by: who.clone(),
            at: now,
            comment: v.comment.clone(),
            before: serde_json::to_string(&approval.approved_by).map_err(Error::internal)?,
            after: serde_json::to_string(&approvers).map_err(Error::internal)?,
            complete,
        };
        (write, if complete { "approved" } else { "pending" })
    } else {
        (Write::DecideApproval { id: id.to_string(), approve: false, by: who.clone(), at: now, comment: v.comment.clone() }, "rejected")
    };
    let event = if approve { "approval.approved" } else { "approval.rejected" };
    let details = serde_json::json!({"approval_id": id, "comment": v.comment, "action_hash": approval.action_hash, "approved_by": approvers,
        "approvals_needed": approval.approvals_needed, "status": status});
    let mut record = change_record(caller, event, format!("approval:{id}"), Some(approval.agent.clone()), details, now);
    record.decision_id = Some(approval.decision_id.clone());
    record.action_class = Some(approval.class.clone());
    record.environment = Some(approval.environment.clone());
    let mut writes = vec![write];
    // Subscribers hear of the outcome, not of each step towards it.
    if status != "pending" {
        let data = serde_json::json!({"approval_id": id, "status": status, "decided_by": who, "approved_by": approvers, "comment": v.comment,
            "decision_id": approval.decision_id, "agent": approval.agent, "class": approval.class, "environment": approval.environment, "service": approval.service});
        writes.extend(state.engine.outbox().writes(&Event::new("approval.decided", now, data), now));
    }
    state.store.commit(Change { writes, audit: vec![record] }).await?;
    state.engine.outbox().notify();
    load(state, id).await
}
