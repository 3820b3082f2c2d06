//! `/v1/agents`: agents as service accounts of their own.

use super::auth::{Admins, Allowed, Readers};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json, Query};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::identity::{Agent, AgentCreate, AgentPatch, Caller, Role};
use crate::services::agents;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(get_agent, patch_agent))
}

/// Register an agent. It starts at tier 1 (sandbox) unless told otherwise, never above its ceiling.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentCreate, security(("bearer" = [])),
    responses((status = 201, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "The id exists", body = ErrorBody)))]
async fn create_agent(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Json(req): Json<AgentCreate>,
) -> Result<(StatusCode, axum::Json<Agent>)> {
    let agent = agents::create(&state.store, &caller, req, state.clock.now_micros()).await?;
    Ok((StatusCode::CREATED, axum::Json(agent)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListAgents {
    /// Only this team's agents.
    team: Option<String>,
}

/// List agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(ListAgents), security(("bearer" = [])),
    responses((status = 200, body = [Agent]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_agents(
    State(state): State<AppState>,
    _: Allowed<Readers>,
    Query(q): Query<ListAgents>,
) -> Result<axum::Json<Vec<Agent>>> {
    Ok(axum::Json(state.store.agents(q.team.as_deref()).await?))
}

/// One agent. An agent's token may read only itself; to it another agent does not exist.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Agent>> {
    let unknown = || Error::not_found("unknown_agent", format!("no agent `{id}`"));
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(id.as_str()) {
        return Err(unknown());
    }
    let agent = state.store.agent(&id).await?.ok_or_else(unknown)?;
    Ok(axum::Json(std::sync::Arc::unwrap_or_clone(agent)))
}

/// Change an agent: tier, ceiling, parent, status (suspend/resume), shadow mode, details.
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)), request_body = AgentPatch, security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Changed concurrently; retry", body = ErrorBody)))]
async fn patch_agent(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<String>,
    Json(patch): Json<AgentPatch>,
) -> Result<axum::Json<Agent>> {
    Ok(axum::Json(
        agents::patch(
            &state.store,
            &state.clock,
            &state.outbox,
            &caller,
            &id,
            patch,
        )
        .await?,
    ))
}
