//! `/v1/tokens`: API tokens. Secrets are shown once and stored hashed.
//!
//! [`issue`] and [`revoke`] are shared with the offline `warden token` commands, so a token made
//! either way is validated and audited the same.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::audit::{Actor, AuditRecord};
use crate::clock::format_micros;
use crate::error::{Error, ErrorBody, Result};
use crate::identity::{Caller, NewToken, Role, TokenRecord, mint_token, validate_text};
use crate::store::{Change, Store, Write};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(revoke_token))
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

fn token_record(actor: Actor, event: &str, token: &TokenRecord, now: i64) -> AuditRecord {
    let authorizing_human = if actor.kind == "admin" || actor.kind == "human" { Some(actor.id.clone()) } else { None };
    let agent = if token.role == Role::Agent { token.subject.clone() } else { None };
    let details = serde_json::json!({ "role": token.role, "subject": token.subject, "note": token.note });
    AuditRecord { agent, authorizing_human, ..AuditRecord::change(actor, event, format!("token:{}", token.id), details, now) }
}

/// Validates and stores a new token; `secret` overrides the random one (bootstrap only).
pub async fn issue(store: &Store, actor: Actor, role: Role, subject: Option<String>, note: String, secret: Option<String>, now: i64) -> Result<NewToken> {
    if !note.is_empty() {
        validate_text("note", &note, 256)?;
    }
    match (role, &subject) {
        (Role::Agent, None) | (Role::Approver, None) => {
            return Err(Error::field("subject", format!("a {} token needs a subject", role.as_str())));
        }
        (Role::Agent, Some(id)) if store.agent(id).await?.is_none() => {
            return Err(Error::field("subject", format!("no agent `{id}`")));
        }
        (Role::Approver, Some(id)) if store.human(id).await?.is_none() => {
            return Err(Error::field("subject", format!("no human `{id}`")));
        }
        (_, Some(s)) => validate_text("subject", s, 128)?,
        _ => {}
    }
    let new = match secret {
        Some(secret) => crate::identity::token_from_secret(secret, role, subject, note, now),
        None => mint_token(role, subject, note, now),
    };
    let record = token_record(actor, "token.created", &new.record, now);
    store.commit(Change { writes: vec![Write::InsertToken(new.record.clone())], audit: vec![record] }).await?;
    Ok(new)
}

/// Revokes a token by id.
pub async fn revoke(store: &Store, actor: Actor, id: &str, now: i64) -> Result<()> {
    let token = store.token_by_id(id).await?.ok_or_else(|| Error::not_found("unknown_token", format!("no token `{id}`")))?;
    let record = token_record(actor, "token.revoked", &token, now);
    store.commit(Change { writes: vec![Write::RevokeToken { id: id.to_string(), at: now }], audit: vec![record] }).await
}

/// Create a token (admin). The secret is in the answer and nowhere else.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = TokenCreate, security(("bearer" = [])),
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_token(State(state): State<AppState>, caller: Caller, Json(req): Json<TokenCreate>) -> Result<(StatusCode, axum::Json<TokenCreated>)> {
    caller.require(&[Role::Admin])?;
    let new = issue(&state.store, super::agents::actor(&caller), req.role, req.subject, req.note, None, state.clock.now_micros()).await?;
    Ok((StatusCode::CREATED, axum::Json(TokenCreated { id: new.record.id, token: new.secret, role: new.record.role, subject: new.record.subject })))
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
async fn list_tokens(State(state): State<AppState>, caller: Caller) -> Result<axum::Json<Vec<TokenInfo>>> {
    caller.require(&[Role::Admin])?;
    Ok(axum::Json(state.store.tokens().await?.into_iter().map(TokenInfo::from).collect()))
}

/// Revoke a token (admin). It stops working at once, on every replica.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    caller.require(&[Role::Admin])?;
    revoke(&state.store, super::agents::actor(&caller), &id, state.clock.now_micros()).await?;
    Ok(StatusCode::NO_CONTENT)
}
