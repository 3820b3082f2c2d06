//! The HTTP API: axum routers, one file per resource, and the extractors they share.
//!
//! The OpenAPI document is assembled from the same `routes!` registrations that build the
//! router, so it cannot drift from the handlers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::api::error::ApiError as Error;
use crate::audit::checkpoint::{NoteVerifier, Signer};
use crate::clock::SharedClock;
use crate::error::Kind;
use crate::metrics::Metrics;
use crate::plugins::PluginHost;
use crate::policy::CompiledPolicy;
use crate::services::baselines::Baselines;
use crate::services::decisions::Decisions;
use crate::services::events::{Events, EventsConfig};
use crate::services::integrations::Receivers;
use crate::services::notify::Outbox;
use crate::services::tiering::Controller;
use crate::store::Store;

mod agents;
mod approvals;
pub(crate) mod audit;
mod auth;
mod authzen;
mod baselines;
mod decisions;
mod delegations;
pub mod error;
mod events;
mod humans;
mod idempotency;
mod ops;
mod plugins;
mod quotas;
mod reports;
pub mod tokens;
mod trust;
mod ui;
mod violations;
mod webhooks;

/// What every handler can reach, behind one pointer: extractors take the state per request,
/// and a clone of one `Arc` is cheaper than of the twenty handles inside.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state over its parts.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The services, and the parts they share.
#[derive(Debug)]
pub struct Shared {
    /// The decision service.
    pub decisions: Decisions,
    /// The effective policy.
    pub policy: Arc<CompiledPolicy>,
    /// The loaded plugins.
    pub plugins: Arc<PluginHost>,
    /// The notification outbox.
    pub outbox: Arc<Outbox>,
    /// The tier controller.
    pub tiers: Controller,
    /// The store, for identity and audit reads and writes.
    pub store: Store,
    /// Time.
    pub clock: SharedClock,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Activity in.
    pub events: Events,
    /// Its limits.
    pub events_config: EventsConfig,
    /// Human baselines.
    pub baselines: Baselines,
    /// The GitHub and Kubernetes receivers.
    pub receivers: Arc<Receivers>,
    /// Signs the audit trail's checkpoints.
    pub signer: Arc<Signer>,
    /// Its public half, to verify them.
    pub audit_key: Arc<NoteVerifier>,
    /// Weekly behaviour reports.
    pub reports: crate::services::reports::Reports,
    /// The web UI's sessions (`secure_cookie` already true when served over TLS).
    pub ui: crate::services::sessions::UiConfig,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Warden", description = "Adaptive risk engine for AI agents: ask before acting, get allow / require_approval / deny, with a hash-chained audit trail."),
    modifiers(&BearerAuth),
    components(schemas(crate::api::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents on every operation the errors any of its kind can answer, so that no operation's
/// list of answers is short of one the server gives: 400 (and 404 for an id in the path) where
/// there is input, 401, 403 and 503 where there is a token, 408, 413 and 415 where there is a
/// body, and 500 everywhere.
struct StandardErrors;

impl utoipa::Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                let secured = op.security.is_some();
                let body = op.request_body.is_some();
                let input = body || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let wanted = [
                    (input, "400", "Bad input; `field` names the problem"),
                    (secured, "401", "No token, or an unknown or revoked one"),
                    (secured, "403", "The token's role may not do this"),
                    (path.contains('{'), "404", "No such resource"),
                    (body, "408", "The body did not arrive in time"),
                    (body, "413", "The body is over its limit"),
                    (body, "415", "The body is not JSON"),
                    (true, "500", "A bug"),
                    (secured, "503", "The store is unavailable; nothing was done"),
                ];
                for (applies, status, description) in wanted {
                    if applies && !op.responses.responses.contains_key(status) {
                        op.responses
                            .responses
                            .insert(status.to_string(), error(description).into());
                    }
                }
            }
        }
    }
}

/// The router's limits, from `[server]`, `[plugins]` and `[events]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body, bytes, where no other limit applies.
    pub body: usize,
    /// Largest plugin upload, bytes.
    pub upload: usize,
    /// How long an idempotent answer is kept for retries.
    pub idempotency_window: std::time::Duration,
}

/// The router and the OpenAPI document that describes it.
pub fn router(state: AppState, limits: Limits) -> Router {
    let Limits {
        body: body_limit,
        upload: upload_limit,
        idempotency_window,
    } = limits;
    let events_limit = state.events_config.body_limit_bytes;
    let keyed = idempotency::Settings {
        state: state.clone(),
        window: idempotency_window,
    };
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(
            decisions::routes().layer(axum::middleware::from_fn_with_state(
                keyed,
                idempotency::layer,
            )),
        )
        .merge(authzen::routes())
        .merge(delegations::routes())
        .merge(agents::routes())
        .merge(humans::routes())
        .merge(tokens::routes())
        .merge(audit::routes())
        .merge(violations::routes())
        .merge(approvals::routes())
        .merge(webhooks::routes())
        .merge(trust::routes())
        .merge(quotas::routes())
        .merge(ops::routes())
        .merge(plugins::routes(upload_limit))
        .merge(baselines::routes())
        .merge(reports::routes())
        .merge(events::routes(events_limit))
        .split_for_parts();
    // After the paths are in: `modifiers(…)` run before the routers are merged.
    let mut openapi = openapi;
    utoipa::Modify::modify(&StandardErrors, &mut openapi);
    let openapi = Arc::new(openapi);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { axum::Json(openapi.as_ref().clone()) }),
        )
        .merge(ui::router())
        .fallback(|| async { Error::not_found("no_route", "no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            Error::new(
                Kind::MethodNotAllowed,
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// A JSON body: 415 unless it is JSON, 413 over the limit, 400 naming the field at fault.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Json<T>, Error> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Error::new(
                Kind::UnsupportedMediaType,
                "unsupported_media_type",
                "the body must be JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(r, "server.body_limit_bytes; events.body_limit_bytes for activity, plugins.upload_limit_bytes for plugins"))?;
        parse_json(&bytes).map(Json)
    }
}

/// A body that could not be read: 413 over the limit (naming the setting), else 400.
pub(crate) fn body_error(
    rejection: axum::extract::rejection::BytesRejection,
    setting: &str,
) -> Error {
    if crate::serve::timed_out(&rejection) {
        Error::new(
            Kind::RequestTimeout,
            "body_timeout",
            "the body did not arrive in time (server.body_read_timeout_secs)",
        )
    } else if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            Kind::PayloadTooLarge,
            "payload_too_large",
            format!("the body is over the server's limit ({setting})"),
        )
    } else {
        Error::new(Kind::BadRequest, "unreadable_body", rejection.body_text())
    }
}

/// Parses JSON, naming the field at fault on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    // Nearly every body is valid: it is parsed at full speed, and only one that fails is parsed
    // again, tracking the path to name the field (a copy of every key on the way). Both parses
    // read the same bytes the same way, so the second fails where the first did. A bad body costs
    // both; before, every body cost the slower one (BENCHMARKS.md, thirty-ninth session).
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    explain_json(bytes)
}

/// Parses JSON that did not parse, tracking the path for the error that names the field.
fn explain_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Error::new(
                Kind::BadRequest,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let message = inner.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        // serde names a missing field in its message and points the path at the parent object.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(missing) if path == "." => missing.to_string(),
            Some(missing) => format!("{path}.{missing}"),
            None if path == "." => "body".to_string(),
            None => path,
        };
        Error::field(field, message)
    })?;
    // One document and nothing after it: `{…}garbage` is not a request to half-read.
    de.end().map_err(|inner| {
        Error::new(
            Kind::BadRequest,
            "malformed_json",
            format!("the body is not valid JSON: {inner}"),
        )
    })?;
    Ok(value)
}

/// Query parameters, with a 400 naming the problem.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Query<T>, Error> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let path = err.path().to_string();
                Error::field(
                    if path == "." {
                        "query".to_string()
                    } else {
                        path
                    },
                    err.into_inner().to_string(),
                )
            })
    }
}

/// A query parameter that must be one of `allowed` when given: 400 naming the field otherwise.
pub(crate) fn one_of(
    field: &str,
    value: &Option<String>,
    allowed: &[&str],
) -> crate::api::error::Result<()> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Error::field(
            field,
            format!("`{v}` is not one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// A list endpoint's `limit`: 1–1000, 100 when absent.
pub(crate) fn page_limit(limit: Option<i64>) -> crate::api::error::Result<i64> {
    let limit = limit.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(Error::field("limit", "must be from 1 to 1000"))
    }
}

/// Trims a page fetched with one extra row (which tells that another page exists) to `limit`,
/// and returns the cursor for the next page.
pub(crate) fn next_page<T, K>(
    items: &mut Vec<T>,
    limit: i64,
    cursor: impl Fn(&T) -> K,
) -> Option<K> {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::DecisionRequest;

    #[test]
    fn json_errors_name_the_field() {
        let e =
            parse_json::<DecisionRequest>(br#"{"action": {"environment": "dev", "service": "x"}}"#)
                .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_field", Some("action.class"))
        );
        let e = parse_json::<DecisionRequest>(
            br#"{"action": {"class": 5, "environment": "dev", "service": "x"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("action.class"));
        let e = parse_json::<DecisionRequest>(
            br#"{"action": {"class": "x", "environment": "dev", "service": "x", "colour": 1}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("action.colour"), "{e:?}");
        let e = parse_json::<DecisionRequest>(br#"{"action": "#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let e = parse_json::<DecisionRequest>(br#"{}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("action"));
        let e = parse_json::<serde_json::Value>(b"{} {}").unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let e = parse_json::<serde_json::Value>(b"{}garbage").unwrap_err();
        assert_eq!(e.code, "malformed_json");
        parse_json::<serde_json::Value>(b" {} \n").expect("whitespace after the document is fine");
    }

    /// A valid body reads the same on the fast path and on the path that names fields, so the
    /// second one, run only after the first failed, explains the same reading.
    #[test]
    fn both_readings_agree() {
        let body = br#"{"action": {"class": "deploy", "environment": "staging", "service": "payments",
            "resources": ["k8s/payments"], "estimated_cost_usd": 0.25,
            "change": {"files_changed": 4, "lines_added": 120, "lines_deleted": 30, "paths": ["src/api.rs"]}}}"#;
        let fast: DecisionRequest = parse_json(body).unwrap();
        let explained: DecisionRequest = explain_json(body).unwrap();
        assert_eq!(
            serde_json::to_value(&fast).unwrap(),
            serde_json::to_value(&explained).unwrap()
        );
        assert_eq!(fast.action.service, "payments");
    }
}
