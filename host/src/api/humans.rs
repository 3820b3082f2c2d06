//! `/v1/humans`: people, with grants of their own that bound agents acting for them.

use super::auth::{Admins, Allowed, Readers};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::identity::Human;
use crate::services::humans;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_human, list_humans))
        .routes(routes!(get_human))
}

/// Register a human and their grants.
#[utoipa::path(post, path = "/v1/humans", tag = "humans", request_body = Human, security(("bearer" = [])),
    responses((status = 201, body = Human), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_human(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Json(human): Json<Human>,
) -> Result<(StatusCode, axum::Json<Human>)> {
    let human = humans::create(&state.store, &state.clock, &caller, human).await?;
    Ok((StatusCode::CREATED, axum::Json(human)))
}

/// List humans.
#[utoipa::path(get, path = "/v1/humans", tag = "humans", security(("bearer" = [])),
    responses((status = 200, body = [Human]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_humans(
    State(state): State<AppState>,
    _: Allowed<Readers>,
) -> Result<axum::Json<Vec<Human>>> {
    Ok(axum::Json(state.store.humans().await?))
}

/// One human.
#[utoipa::path(get, path = "/v1/humans/{id}", tag = "humans", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Human), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_human(
    State(state): State<AppState>,
    _: Allowed<Readers>,
    Path(id): Path<String>,
) -> Result<axum::Json<Human>> {
    let human = state
        .store
        .human(&id)
        .await?
        .ok_or_else(|| Error::not_found("unknown_human", format!("no human `{id}`")))?;
    Ok(axum::Json(std::sync::Arc::unwrap_or_clone(human)))
}
