//! Operations: liveness, readiness, Prometheus metrics, and the effective policy.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::api::error::{ErrorBody, Result};
use crate::identity::Caller;
use crate::policy::Policy;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(get_policy))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: its database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready"), (status = 503, body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<&'static str> {
    state.store.ping().await?;
    Ok("ready")
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "OpenMetrics text")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The effective policy and its version.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PolicyView {
    /// Recorded on every decision.
    pub version: String,
    /// The policy.
    pub policy: Policy,
}

/// The effective policy: tiers, grants, risk table, violation modes.
#[utoipa::path(get, path = "/v1/policy", tag = "policy", security(("bearer" = [])),
    responses((status = 200, body = PolicyView), (status = 401, body = ErrorBody)))]
async fn get_policy(State(state): State<AppState>, _caller: Caller) -> axum::Json<PolicyView> {
    let compiled = &state.policy;
    axum::Json(PolicyView {
        version: compiled.version.clone(),
        policy: compiled.policy.clone(),
    })
}
