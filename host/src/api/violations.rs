//! `/v1/violations`: policy violations for human review.

use super::auth::{Allowed, Staff};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json, Query};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::records::Violation;
use crate::services::violations;
use crate::store::ViolationFilter;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_violations))
        .routes(routes!(get_violation))
        .routes(routes!(ack_violation))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ViolationQuery {
    /// The agent.
    agent: Option<String>,
    /// `open` or `acknowledged`.
    status: Option<String>,
    /// Action class.
    class: Option<String>,
    /// Environment.
    environment: Option<String>,
    /// `block`, `flag` or `guard`.
    mode: Option<String>,
    /// At or after this time (RFC 3339, or a span before now: `30d`, `12h`, `15m`).
    since: Option<String>,
    /// Before this time (RFC 3339, or a span before now).
    until: Option<String>,
    /// Page after this violation id (use the previous page's `next_after`).
    after: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<i64>,
}

/// A page of violations, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct ViolationPage {
    /// The violations.
    pub violations: Vec<Violation>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// `POST /v1/violations/{id}/ack`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Ack {
    /// What the reviewer found or did.
    #[serde(default)]
    pub comment: Option<String>,
}

/// List violations (admins and approvers).
#[utoipa::path(get, path = "/v1/violations", tag = "violations", params(ViolationQuery), security(("bearer" = [])),
    responses((status = 200, body = ViolationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_violations(
    State(state): State<AppState>,
    _: Allowed<Staff>,
    Query(q): Query<ViolationQuery>,
) -> Result<axum::Json<ViolationPage>> {
    super::one_of("status", &q.status, &["open", "acknowledged"])?;
    super::one_of("mode", &q.mode, &["block", "flag", "guard"])?;
    let limit = super::page_limit(q.limit)?;
    let filter = ViolationFilter {
        agent: q.agent,
        status: q.status,
        class: q.class,
        environment: q.environment,
        mode: q.mode,
        since: super::audit::time("since", &q.since, state.clock.now_micros())?,
        until: super::audit::time("until", &q.until, state.clock.now_micros())?,
        after: q.after,
        // One more than asked tells whether another page exists.
        limit: limit + 1,
    };
    let mut violations = state.store.violations(&filter).await?;
    let next_after = super::next_page(&mut violations, limit, |v| v.id.clone());
    Ok(axum::Json(ViolationPage {
        violations,
        next_after,
    }))
}

/// One violation (admins and approvers).
#[utoipa::path(get, path = "/v1/violations/{id}", tag = "violations", params(("id" = String, Path, description = "Violation id")), security(("bearer" = [])),
    responses((status = 200, body = Violation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_violation(
    State(state): State<AppState>,
    _: Allowed<Staff>,
    Path(id): Path<String>,
) -> Result<axum::Json<Violation>> {
    let v = state
        .store
        .violation(&id)
        .await?
        .ok_or_else(|| Error::not_found("unknown_violation", format!("no violation `{id}`")))?;
    Ok(axum::Json(v))
}

/// Acknowledge an open violation after review (admins and approvers); audited.
#[utoipa::path(post, path = "/v1/violations/{id}/ack", tag = "violations", request_body = Ack, params(("id" = String, Path, description = "Violation id")),
    security(("bearer" = [])),
    responses((status = 200, body = Violation), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn ack_violation(
    State(state): State<AppState>,
    caller: Allowed<Staff>,
    Path(id): Path<String>,
    Json(ack): Json<Ack>,
) -> Result<axum::Json<Violation>> {
    let v = violations::acknowledge(&state.store, &state.clock, &caller, &id, ack.comment).await?;
    Ok(axum::Json(v))
}
