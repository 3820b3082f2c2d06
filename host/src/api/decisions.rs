//! `POST /v1/decisions`: ask before acting. `GET /v1/decisions/{id}`: read one back.

use axum::extract::{Path, State};
use axum::response::IntoResponse as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::engine::{DecisionAnswer, DecisionRequest};
use crate::error::{Error, ErrorBody, Result};
use crate::identity::{Caller, Role};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(decide)).routes(routes!(get_decision))
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
