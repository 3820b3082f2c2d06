//! `/v1/tokens`: API tokens. Secrets are shown once and stored hashed.

use super::auth::{Admins, Allowed};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::api::error::{ErrorBody, Result};
use crate::audit::Actor;
use crate::clock::format_micros;
use crate::identity::{Role, TokenRecord};
use crate::services::tokens::{issue, revoke};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// The token's role.
    pub role: Role,
    /// For `agent`: the agent's id; for `approver`: the human's id; otherwise a free-form name.
    pub subject: Option<String>,
    /// A note, e.g. where the token is used.
    #[serde(default)]
    pub note: String,
}

/// A new token; `token` is the secret and is never shown again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Public id, for listing and revoking.
    pub id: String,
    /// The bearer secret.
    pub token: String,
    /// Its role.
    pub role: Role,
    /// Its subject.
    pub subject: Option<String>,
}

/// Create a token (admin). The secret is in the answer and nowhere else.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = TokenCreate, security(("bearer" = [])),
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Json(req): Json<TokenCreate>,
) -> Result<(StatusCode, axum::Json<TokenCreated>)> {
    let new = issue(
        &state.store,
        Actor::of(&caller),
        req.role,
        req.subject,
        req.note,
        None,
        state.clock.now_micros(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenCreated {
            id: new.record.id,
            token: new.secret,
            role: new.record.role,
            subject: new.record.subject,
        }),
    ))
}

/// A token as listed (never the secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Public id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Subject.
    pub subject: Option<String>,
    /// Note.
    pub note: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Revoked (RFC 3339), if revoked.
    pub revoked_at: Option<String>,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> TokenInfo {
        TokenInfo {
            id: t.id,
            role: t.role,
            subject: t.subject,
            note: t.note,
            created_at: format_micros(t.created_at),
            revoked_at: t.revoked_at.map(format_micros),
        }
    }
}

/// List tokens (admin).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = [TokenInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_tokens(
    State(state): State<AppState>,
    _: Allowed<Admins>,
) -> Result<axum::Json<Vec<TokenInfo>>> {
    Ok(axum::Json(
        state
            .store
            .tokens()
            .await?
            .into_iter()
            .map(TokenInfo::from)
            .collect(),
    ))
}

/// Revoke a token (admin). It stops working at once, on every replica.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    revoke(
        &state.store,
        Actor::of(&caller),
        &id,
        state.clock.now_micros(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
