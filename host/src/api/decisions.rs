//! `POST /v1/decisions`: ask before acting. `GET /v1/decisions/{id}`: read one back.
//! `POST /v1/decisions/{id}/outcome`: report what happened after.

use super::auth::{Acting, Allowed, Staff};
use axum::extract::{Path, State};
use axum::response::IntoResponse as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::decision::{DecisionAnswer, DecisionRequest};
use crate::identity::{Caller, Role};
use crate::records::Outcome;
use crate::services::idempotency::Claim;
use crate::services::outcomes::{self, OutcomeReport};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(decide))
        .routes(routes!(get_decision))
        .routes(routes!(report_outcome, get_outcome))
        .routes(routes!(confirm_anomaly))
        .routes(routes!(signals))
}

/// Ask whether an agent may act. The decision is durable before the answer is sent.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions", request_body = DecisionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body within `server.idempotency_window_secs` get the first answer and change nothing; another body is a 422")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verdict", body = DecisionAnswer),
        (status = 400, description = "Invalid request; `field` names the problem", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "A request with the same Idempotency-Key is still being answered", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was sent with another request", body = ErrorBody),
        (status = 429, description = "The agent is over a rate limit (`calls_per_minute`) and is refused until its window ends; `Retry-After` says when, in seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the window ends"))),
        (status = 503, description = "The store is unavailable; nothing was decided (fail closed)", body = ErrorBody),
    ))]
async fn decide(
    State(state): State<AppState>,
    Asking(caller): Asking,
    claim: Option<axum::Extension<Claim>>,
    Json(request): Json<DecisionRequest>,
) -> Result<axum::response::Response> {
    let claim = claim.as_ref().map(|axum::Extension(c)| c);
    let decided = state.decisions.decide_once(&caller, request, claim).await?;
    // The answer was serialized once, for its row; the same text is the body.
    let json = [(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    )];
    Ok((json, decided.body).into_response())
}

/// Who asks for a decision: a caller whose role may, and whose agent is not cut off for
/// flooding. Both from the headers, so a flooding agent's body is never read.
struct Asking(Allowed<Acting>);

impl axum::extract::FromRequestParts<AppState> for Asking {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Asking> {
        let caller = Allowed::<Acting>::from_request_parts(parts, state).await?;
        match state.decisions.refused(&caller).await {
            Some(refusal) => Err(refusal.into()),
            None => Ok(Asking(caller)),
        }
    }
}

/// A recorded decision's answer. Agents may read only their own.
#[utoipa::path(get, path = "/v1/decisions/{id}", tag = "decisions", params(("id" = String, Path, description = "Decision id")),
    security(("bearer" = [])),
    responses((status = 200, body = DecisionAnswer), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_decision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response> {
    let unknown = || Error::not_found("unknown_decision", format!("no decision `{id}`"));
    let (agent, answer) = state.store.decision(&id).await?.ok_or_else(unknown)?;
    // Agents see only their own decisions; to them another's does not exist.
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(agent.as_str()) {
        return Err(unknown());
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response())
}

/// Report what happened after an allowed action: the agent itself, a service or an admin.
/// The same report again is accepted; a different one is 409; for a decision that did not
/// allow the action, 422.
#[utoipa::path(post, path = "/v1/decisions/{id}/outcome", tag = "decisions", request_body = OutcomeReport,
    params(("id" = String, Path, description = "Decision id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body within `server.idempotency_window_secs` get the first answer and change nothing; another body is a 422")), security(("bearer" = [])),
    responses((status = 200, body = Outcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn report_outcome(
    State(state): State<AppState>,
    caller: Allowed<Acting>,
    Path(id): Path<String>,
    Json(report): Json<OutcomeReport>,
) -> Result<axum::Json<Outcome>> {
    let cx = reporting(&state);
    Ok(axum::Json(
        outcomes::report(&cx, &caller, &id, &report).await?,
    ))
}

/// `POST /v1/decisions/{id}/anomaly/confirm`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AnomalyConfirmation {
    /// What the reviewer found.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A human marks a decision's anomaly findings as real (admins and approvers): trust evidence
/// of its own weight (`policy.trust.confirmed_anomaly_weight`), once per decision, and a hard
/// trigger when the anomaly was severe. 422 for a decision without findings, 409 the second time.
#[utoipa::path(post, path = "/v1/decisions/{id}/anomaly/confirm", tag = "decisions", request_body = AnomalyConfirmation,
    params(("id" = String, Path, description = "Decision id")), security(("bearer" = [])),
    responses((status = 200, body = Outcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn confirm_anomaly(
    State(state): State<AppState>,
    caller: Allowed<Staff>,
    Path(id): Path<String>,
    Json(body): Json<AnomalyConfirmation>,
) -> Result<axum::Json<Outcome>> {
    let cx = reporting(&state);
    Ok(axum::Json(
        outcomes::confirm_anomaly(&cx, &caller, &id, body.comment).await?,
    ))
}

/// What the watch over guarded actions needs, from the handlers' state.
pub(super) fn watch(state: &AppState) -> crate::services::guards::Watch<'_> {
    crate::services::guards::Watch {
        reporting: reporting(state),
        outbox: &state.outbox,
    }
}

/// What recording an outcome needs, from the handlers' state.
fn reporting(state: &AppState) -> outcomes::Reporting<'_> {
    outcomes::Reporting {
        store: &state.store,
        policy: &state.policy,
        tiers: &state.tiers,
        clock: &state.clock,
    }
}

/// A decision's outcome: reported, `unknown` when overdue, or absent while still due.
#[utoipa::path(get, path = "/v1/decisions/{id}/outcome", tag = "decisions", params(("id" = String, Path, description = "Decision id")),
    security(("bearer" = [])), responses((status = 200, body = Outcome), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_outcome(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Outcome>> {
    Ok(axum::Json(
        outcomes::visible(&state.store, &caller, &id).await?,
    ))
}

/// Metric samples for an allowed action, judged with all received so far by the rollback-trigger
/// plugins; a failed judgement requests a rollback once (`rollback.requested`).
#[utoipa::path(post, path = "/v1/decisions/{id}/signals", tag = "decisions", request_body = crate::services::rollback::Signals,
    params(("id" = String, Path, description = "Decision id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body within `server.idempotency_window_secs` get the first answer and change nothing; another body is a 422")), security(("bearer" = [])),
    responses((status = 200, body = crate::services::rollback::SignalsAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn signals(
    State(state): State<AppState>,
    caller: Allowed<Acting>,
    Path(id): Path<String>,
    Json(signals): Json<crate::services::rollback::Signals>,
) -> Result<axum::Json<crate::services::rollback::SignalsAnswer>> {
    let cx = crate::services::rollback::Context {
        store: &state.store,
        policy: &state.policy,
        plugins: &state.plugins,
        outbox: &state.outbox,
        watch: watch(&state),
        now: state.clock.now_micros(),
    };
    Ok(axum::Json(
        crate::services::rollback::receive(cx, &caller, &id, signals).await?,
    ))
}
