//! `/v1/approvals`: human decisions on high-risk agent actions.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json, Query};
use crate::api::error::{ErrorBody, Result};
use crate::identity::{Caller, Role};
use crate::records::{Approval, ApprovalStatus};
use crate::services::approvals;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_approvals))
        .routes(routes!(get_approval))
        .routes(routes!(approve))
        .routes(routes!(reject))
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
pub(super) struct ApprovalPage {
    /// The approvals.
    pub approvals: Vec<Approval>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// `POST /v1/approvals/{id}/approve` and `/reject`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Verdict {
    /// Why, for the record (and the agent).
    #[serde(default)]
    pub comment: Option<String>,
}

/// List approvals (admins and approvers).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ApprovalQuery), security(("bearer" = [])),
    responses((status = 200, body = ApprovalPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_approvals(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ApprovalQuery>,
) -> Result<axum::Json<ApprovalPage>> {
    caller.require(&[Role::Admin, Role::Approver])?;
    let statuses: Vec<&str> = ApprovalStatus::ALL.iter().map(|s| s.as_str()).collect();
    super::one_of("status", &q.status, &statuses)?;
    let limit = super::page_limit(q.limit)?;
    let now = state.clock.now_micros();
    // One more than asked tells whether another page exists.
    let mut approvals = state
        .store
        .approvals(
            q.status.as_deref().and_then(ApprovalStatus::parse),
            q.agent.as_deref(),
            q.after.as_deref(),
            limit + 1,
            now,
        )
        .await?;
    let next_after = super::next_page(&mut approvals, limit, |a| a.id.clone());
    Ok(axum::Json(ApprovalPage {
        approvals,
        next_after,
    }))
}

/// One approval: the agent's plan and reasoning, the action, its risk and anomaly findings.
/// Admins and approvers; an agent may watch its own.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", params(("id" = String, Path, description = "Approval id")), security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_approval(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Approval>> {
    let approval = approvals::load(&state.store, &state.clock, &id).await?;
    let own =
        caller.role == Role::Agent && caller.subject.as_deref() == Some(approval.agent.as_str());
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
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(v): Json<Verdict>,
) -> Result<axum::Json<Approval>> {
    decide(state, caller, id, v, true).await
}

/// Reject a pending approval: approvers whose own grants cover the action.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "approvals", request_body = Verdict, params(("id" = String, Path, description = "Approval id")),
    security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(v): Json<Verdict>,
) -> Result<axum::Json<Approval>> {
    decide(state, caller, id, v, false).await
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    v: Verdict,
    approve: bool,
) -> Result<axum::Json<Approval>> {
    Ok(axum::Json(
        approvals::decide(&deciding(&state), &caller, &id, v.comment, approve).await?,
    ))
}

/// What deciding an approval needs, from the handlers' state (the web page uses it too).
pub(super) fn deciding(state: &AppState) -> approvals::Deciding<'_> {
    approvals::Deciding {
        store: &state.store,
        clock: &state.clock,
        outbox: &state.outbox,
        watch: super::decisions::watch(state),
    }
}
