//! `/v1/plugins`: load, list and remove WebAssembly plugins at run time (admins).
//!
//! A load compiles the component against its manifest first, so a bad component is a 400 that
//! says why; then it is stored with its SHA-256 and an audit record, installed here at once, and
//! picked up by every other replica on its next sync.

use super::auth::{Admins, Allowed, Readers};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::audit::Actor;
use crate::plugins::manifest::{FailurePolicy, Limits, Manifest, PluginKind};

pub(super) fn routes(upload_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(load_plugin, list_plugins))
        .routes(routes!(remove_plugin))
        .layer(axum::extract::DefaultBodyLimit::max(upload_limit))
}

/// `POST /v1/plugins`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PluginUpload {
    /// The manifest (as in `plugin.toml`).
    pub manifest: Manifest,
    /// The component, base64.
    pub component_base64: String,
}

/// A loaded plugin.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct PluginInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: PluginKind,
    /// SHA-256 of the component.
    pub sha256: String,
    /// Component size, bytes.
    pub size: usize,
    /// Action classes it sees; empty for all.
    pub classes: Vec<String>,
    /// Failure policy in force.
    pub failure_policy: FailurePolicy,
    /// Limits per call.
    pub limits: Limits,
}

/// The result of a load.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct PluginLoaded {
    /// `name@version`.
    pub plugin: String,
    /// Whether anything changed (false when the same component and manifest were loaded).
    pub changed: bool,
}

/// Load or replace a plugin. In-flight decisions finish on the version they started with.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins", request_body = PluginUpload, security(("bearer" = [])),
    responses((status = 201, body = PluginLoaded), (status = 400, description = "Invalid manifest or component; the message says why", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn load_plugin(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Json(upload): Json<PluginUpload>,
) -> Result<(StatusCode, axum::Json<PluginLoaded>)> {
    upload
        .manifest
        .validate()
        .map_err(|(field, message)| Error::field(format!("manifest.{field}"), message))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(upload.component_base64.trim())
        .map_err(|e| Error::field("component_base64", format!("not base64: {e}")))?;
    let id = upload.manifest.id();
    let changed = crate::services::plugins::publish(
        &state.plugins,
        &state.store,
        Actor::of(&caller),
        upload.manifest,
        bytes,
        state.clock.now_micros(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PluginLoaded {
            plugin: id,
            changed: changed.is_some(),
        }),
    ))
}

/// The plugins loaded on this replica.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", security(("bearer" = [])),
    responses((status = 200, body = [PluginInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_plugins(
    State(state): State<AppState>,
    _: Allowed<Readers>,
) -> Result<axum::Json<Vec<PluginInfo>>> {
    let list = state
        .plugins
        .snapshot()
        .iter()
        .map(|p| PluginInfo {
            name: p.manifest.name.clone(),
            version: p.manifest.version.clone(),
            kind: p.manifest.kind,
            sha256: p.sha256.clone(),
            size: p.size,
            classes: p.manifest.classes.clone(),
            failure_policy: p.manifest.failure_policy(),
            limits: p.manifest.limits,
        })
        .collect();
    Ok(axum::Json(list))
}

/// Remove a plugin, here at once and on other replicas at their next sync.
#[utoipa::path(delete, path = "/v1/plugins/{name}", tag = "plugins", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_plugin(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    crate::services::plugins::unpublish(
        &state.plugins,
        &state.store,
        Actor::of(&caller),
        &name,
        state.clock.now_micros(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
