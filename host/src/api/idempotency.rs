//! `Idempotency-Key` on `POST /v1/decisions`, `/v1/decisions/{id}/outcome` and
//! `/v1/decisions/{id}/signals`: the HTTP half of [`crate::services::idempotency`]. A retry with
//! the same key and body gets the first answer (with `Idempotent-Replayed: true`) and changes
//! nothing; the same key with another body is a 422; a retry while the first is still being
//! answered is a 409.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{Acting, Allowed};
use crate::api::error::{ApiError as Error, Result};
use crate::services::idempotency::{self, Begun};
use crate::store::IdempotencyKey;

/// The header.
pub(crate) const HEADER: &str = "idempotency-key";

/// What the layer needs besides the state.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub state: AppState,
    /// How long an answer is kept for retries.
    pub window: Duration,
}

/// Whether a request is one the key applies to.
fn keyed_route(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && (path == "/v1/decisions" || path.ends_with("/outcome") || path.ends_with("/signals"))
}

/// The layer: requests without the header, and other routes, pass through untouched.
pub(crate) async fn layer(State(settings): State<Settings>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key(HEADER) || !keyed_route(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    keyed(settings, req, next)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn keyed(settings: Settings, req: Request, next: Next) -> Result<Response> {
    let Settings { state, window } = settings;
    let (mut parts, body) = req.into_parts();
    let key = parts
        .headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    idempotency::check_key(&key)?;
    // Who asks, and whether these routes let them, before the body is read.
    let caller = Allowed::<Acting>::from_request_parts(&mut parts, &state).await?;
    // A flooding agent is refused before its key costs a write.
    if parts.uri.path() == "/v1/decisions"
        && let Some(refusal) = state.decisions.refused(&caller).await
    {
        return Err(refusal.into());
    }
    // The body under the route's own limits (the extensions carry them).
    let mut only_body = Request::new(body);
    *only_body.extensions_mut() = parts.extensions.clone();
    let bytes = Bytes::from_request(only_body, &state)
        .await
        .map_err(|r| super::body_error(r, "server.body_limit_bytes"))?;
    let key = IdempotencyKey {
        principal: format!("{}:{}", caller.role.as_str(), caller.actor_id()),
        route: format!("{} {}", parts.method, parts.uri.path()),
        key,
    };
    let hash = idempotency::request_hash(&bytes);
    let now = state.clock.now_micros();
    let claim = match idempotency::begin(&state.store, key, hash, now, window).await? {
        Begun::Replay(status, body) => return Ok(replay(status, body)),
        Begun::Fresh(claim) => claim,
    };
    parts.extensions.insert(claim.clone());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status();
    if !status.is_success() {
        // A failure is not kept: a retry runs afresh.
        if let Err(e) = idempotency::finish(&state.store, claim, None).await {
            tracing::warn!(error = %e.message, "cannot release an idempotency key; it lapses with its claim");
        }
        return Ok(response);
    }
    let (head, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(Error::internal)?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if let Err(e) = idempotency::finish(&state.store, claim, Some((status.as_u16(), text))).await {
        // The answer stands; a retry waits out the claim, then runs afresh.
        tracing::warn!(error = %e.message, "cannot keep an idempotent answer");
    }
    Ok(Response::from_parts(head, Body::from(body)))
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
