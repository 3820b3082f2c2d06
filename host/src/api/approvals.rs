//! `/v1/approvals`: human decisions on high-risk agent actions.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admins, Allowed, Approvers, Staff};
use super::{AppState, Json, Query};
use crate::api::error::{ErrorBody, Result};
use crate::identity::Caller;
use crate::records::{Approval, ApprovalStatus, QuarantinedApproval};
use crate::services::approvals;
use crate::store::Listed;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_approvals))
        .routes(routes!(get_approval))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(quarantine))
        .routes(routes!(quarantined))
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
    /// The ids of approvals on this page that are stored in a form that does not read back:
    /// left out above, and waiting for an admin to quarantine them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// `POST /v1/approvals/{id}/quarantine`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuarantineRequest {
    /// Why, for the record.
    pub reason: String,
}

/// `POST /v1/approvals/{id}/approve` and `/reject`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ApprovalComment {
    /// Why, for the record (and the agent).
    #[serde(default)]
    pub comment: Option<String>,
}

/// List approvals (admins and approvers).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ApprovalQuery), security(("bearer" = [])),
    responses((status = 200, body = ApprovalPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_approvals(
    State(state): State<AppState>,
    _: Allowed<Staff>,
    Query(q): Query<ApprovalQuery>,
) -> Result<axum::Json<ApprovalPage>> {
    let statuses: Vec<&str> = ApprovalStatus::ALL.iter().map(|s| s.as_str()).collect();
    super::one_of("status", &q.status, &statuses)?;
    let limit = super::page_limit(q.limit)?;
    let now = state.clock.now_micros();
    // One more than asked tells whether another page exists.
    let Listed {
        items: mut approvals,
        mut unreadable,
    } = state
        .store
        .approvals(
            q.status.as_deref().and_then(ApprovalStatus::parse),
            q.agent.as_deref(),
            q.after.as_deref(),
            limit + 1,
            now,
        )
        .await?;
    // A page is `limit` rows in id order, whether they read back or not.
    let mut ids: Vec<&str> = approvals
        .iter()
        .map(|a| a.id.as_str())
        .chain(unreadable.iter().map(String::as_str))
        .collect();
    ids.sort_unstable();
    let next_after = (ids.len() as i64 > limit).then(|| ids[limit as usize - 1].to_string());
    if let Some(last) = &next_after {
        approvals.retain(|a| a.id <= *last);
        unreadable.retain(|id| id <= last);
    }
    Ok(axum::Json(ApprovalPage {
        approvals,
        unreadable,
        next_after,
    }))
}

/// Move an approval out of every reader's way (admins): one stored in a form that does not read
/// back (the list names those under `unreadable`), or one that should not be acted on. Its
/// stored columns are kept (`GET /v1/approvals/quarantined`) and the act is audited.
#[utoipa::path(post, path = "/v1/approvals/{id}/quarantine", tag = "approvals", request_body = QuarantineRequest,
    params(("id" = String, Path, description = "Approval id")), security(("bearer" = [])),
    responses((status = 204, description = "Quarantined"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn quarantine(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<String>,
    Json(body): Json<QuarantineRequest>,
) -> Result<axum::http::StatusCode> {
    let now = state.clock.now_micros();
    approvals::quarantine(&state.store, &caller, &id, &body.reason, now).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Quarantined approvals, newest first, as they were stored (admins).
#[utoipa::path(get, path = "/v1/approvals/quarantined", tag = "approvals", security(("bearer" = [])),
    responses((status = 200, body = Vec<QuarantinedApproval>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn quarantined(
    State(state): State<AppState>,
    _caller: Allowed<Admins>,
) -> Result<axum::Json<Vec<QuarantinedApproval>>> {
    Ok(axum::Json(state.store.quarantined_approvals(1000).await?))
}

/// One approval: the agent's plan and reasoning, the action, its risk and anomaly findings.
/// Admins, approvers and services (the platform waiting on it); an agent may watch its own,
/// and to it another agent's does not exist.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", params(("id" = String, Path, description = "Approval id")), security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_approval(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Approval>> {
    Ok(axum::Json(
        approvals::shown(&state.store, &state.clock, &caller, &id).await?,
    ))
}

/// Approve a pending approval: approvers whose own grants cover the action, never the human the
/// agent acts for.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", request_body = ApprovalComment, params(("id" = String, Path, description = "Approval id")),
    security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    caller: Allowed<Approvers>,
    Path(id): Path<String>,
    Json(v): Json<ApprovalComment>,
) -> Result<axum::Json<Approval>> {
    decide(state, &caller, id, v, true).await
}

/// Reject a pending approval: approvers whose own grants cover the action.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "approvals", request_body = ApprovalComment, params(("id" = String, Path, description = "Approval id")),
    security(("bearer" = [])),
    responses((status = 200, body = Approval), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn reject(
    State(state): State<AppState>,
    caller: Allowed<Approvers>,
    Path(id): Path<String>,
    Json(v): Json<ApprovalComment>,
) -> Result<axum::Json<Approval>> {
    decide(state, &caller, id, v, false).await
}

async fn decide(
    state: AppState,
    caller: &Caller,
    id: String,
    v: ApprovalComment,
    approve: bool,
) -> Result<axum::Json<Approval>> {
    Ok(axum::Json(
        approvals::decide(&deciding(&state), caller, &id, v.comment, approve).await?,
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
