//! `/v1/delegations`: a human lets an agent act on their behalf (their own approver token),
//! sees and revokes what they gave; admins see and revoke all; an agent sees its own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Allowed, Approvers, Staff};
use super::{AppState, Json, Query};
use crate::api::error::{ErrorBody, Result};
use crate::delegation::{Delegation, DelegationRequest};
use crate::identity::Caller;
use crate::services::delegations;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(give, list))
        .routes(routes!(revoke))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct DelegationQuery {
    /// The human (admins; a human sees only their own).
    human: Option<String>,
    /// The agent.
    agent: Option<String>,
    /// Only those neither revoked nor lapsed.
    #[serde(default)]
    live: bool,
}

/// Delegate to an agent: the signed-in human's own approver token. The agent may then name this
/// human in `on_behalf_of` for actions in scope until the delegation lapses or is revoked.
#[utoipa::path(post, path = "/v1/delegations", tag = "delegations", request_body = DelegationRequest, security(("bearer" = [])),
    responses((status = 201, body = Delegation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn give(
    State(state): State<AppState>,
    caller: Allowed<Approvers>,
    Json(request): Json<DelegationRequest>,
) -> Result<(StatusCode, axum::Json<Delegation>)> {
    let now = state.clock.now_micros();
    let d = delegations::give(&state.store, &caller, request, now).await?;
    Ok((StatusCode::CREATED, axum::Json(d)))
}

/// Delegations, newest first: a human's own, an agent's own, or (admins) any.
#[utoipa::path(get, path = "/v1/delegations", tag = "delegations", params(DelegationQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Delegation>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DelegationQuery>,
) -> Result<axum::Json<Vec<Delegation>>> {
    let live_at = q.live.then(|| state.clock.now_micros());
    Ok(axum::Json(
        delegations::list(&state.store, &caller, q.human, q.agent, live_at).await?,
    ))
}

/// Revoke a delegation: the human who gave it, or an admin. From then on the agent naming the
/// human is refused.
#[utoipa::path(post, path = "/v1/delegations/{id}/revoke", tag = "delegations", params(("id" = String, Path, description = "Delegation id")),
    security(("bearer" = [])),
    responses((status = 200, body = Delegation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    caller: Allowed<Staff>,
    Path(id): Path<String>,
) -> Result<axum::Json<Delegation>> {
    let now = state.clock.now_micros();
    Ok(axum::Json(
        delegations::revoke(&state.store, &caller, &id, now).await?,
    ))
}
