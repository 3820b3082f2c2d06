//! `/v1/events` and `/v1/integrations/*`: activity done outside Warden, posted by the platform
//! or received from GitHub and Kubernetes.

use super::auth::{Allowed, Feeds};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json, Query};
use crate::activity::EventInput;
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::services::events::Ingested;

pub(super) fn routes(body_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_events))
        .routes(routes!(github))
        .routes(routes!(kubernetes))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

/// `POST /v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EventBatch {
    /// The events; each is checked alone.
    #[schema(value_type = Vec<EventInput>)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct BatchQuery {
    /// Check every event and say what would be stored, storing nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Store events done outside Warden (service and admin tokens). Each bad event is rejected
/// with its index and field, the good ones are kept; an event already stored under its
/// (source, source_id) counts as a duplicate, so a batch can be sent again safely.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventBatch, params(BatchQuery), security(("bearer" = [])),
    responses((status = 200, body = Ingested), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn post_events(
    State(state): State<AppState>,
    caller: Allowed<Feeds>,
    Query(q): Query<BatchQuery>,
    Json(batch): Json<EventBatch>,
) -> Result<axum::Json<Ingested>> {
    let ingested = state
        .events
        .post(
            &caller,
            batch.events,
            q.dry_run,
            state.events_config.max_batch,
        )
        .await?;
    Ok(axum::Json(ingested))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// GitHub's webhook (configure the secret as `WARDEN_GITHUB_WEBHOOK_SECRET`): deployments and
/// their statuses, pushes and merges to the default branch, workflow runs, releases, branch
/// protection, rulesets and repository settings. Every event type is accepted; one Warden does
/// not map stores nothing.
#[utoipa::path(post, path = "/v1/integrations/github", tag = "integrations", request_body = serde_json::Value,
    responses((status = 200, body = Ingested), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<Ingested>> {
    let body = body.map_err(|r| super::body_error(r, "events.body_limit_bytes"))?;
    // The signature is checked over the exact bytes, before anything reads them.
    state
        .receivers
        .verify_github(&body, header(&headers, "x-hub-signature-256"))?;
    let event = header(&headers, "x-github-event")
        .ok_or_else(|| Error::field("X-GitHub-Event", "missing"))?;
    let delivery = header(&headers, "x-github-delivery")
        .ok_or_else(|| Error::field("X-GitHub-Delivery", "missing"))?;
    let payload: serde_json::Value = super::parse_json(&body)?;
    let ingested = state
        .receivers
        .github(&state.events, &state.policy, event, delivery, &payload)
        .await?;
    Ok(axum::Json(ingested))
}

/// The Kubernetes API server's audit webhook backend (`--audit-webhook-config-file`, with a
/// service token as the kubeconfig user's token): an `audit.k8s.io/v1` `EventList`, of which
/// the writes at stage `ResponseComplete` in configured namespaces are stored.
#[utoipa::path(post, path = "/v1/integrations/kubernetes", tag = "integrations", request_body = serde_json::Value, security(("bearer" = [])),
    responses((status = 200, body = Ingested), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn kubernetes(
    State(state): State<AppState>,
    _: Allowed<Feeds>,
    Json(list): Json<serde_json::Value>,
) -> Result<axum::Json<Ingested>> {
    let ingested = state
        .receivers
        .kubernetes(&state.events, &state.policy, &list)
        .await?;
    Ok(axum::Json(ingested))
}
