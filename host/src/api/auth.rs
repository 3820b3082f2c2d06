//! Who is calling, and whether the route lets their role in: both from the headers alone, so a
//! caller the route refuses is answered before a byte of its body is read.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use crate::api::error::ApiError as Error;
use crate::error::Kind;
use crate::identity::{Caller, Role, hash_token};

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Error> {
        let unauthorized = |code, msg: &str| Error::new(Kind::Unauthorized, code, msg);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing_token", "send `Authorization: Bearer <token>`"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or_else(|| {
                unauthorized(
                    "invalid_token",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        caller_for(state, secret).await
    }
}

/// The caller a token secret stands for: 401 if unknown or revoked.
async fn caller_for(state: &AppState, secret: &str) -> Result<Caller, Error> {
    let unauthorized = |code, msg: &str| Error::new(Kind::Unauthorized, code, msg);
    let token = state
        .store
        .token_by_hash(&hash_token(secret))
        .await?
        .ok_or_else(|| unauthorized("invalid_token", "unknown token"))?;
    if token.revoked_at.is_some() {
        return Err(unauthorized("token_revoked", "this token was revoked"));
    }
    Ok(Caller {
        token_id: token.id.clone(),
        role: token.role,
        subject: token.subject.clone(),
    })
}

/// A caller whose role is one of `R`'s, checked before the body is read: a 403 otherwise.
/// The services check their rules again; this is the edge refusing early and cheaply.
#[derive(Debug)]
pub(crate) struct Allowed<R> {
    caller: Caller,
    roles: PhantomData<R>,
}

impl<R> Deref for Allowed<R> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// A set of roles a route lets in.
pub(crate) trait Roles {
    /// The roles.
    const ROLES: &'static [Role];
}

impl<R: Roles + Send + Sync> FromRequestParts<AppState> for Allowed<R> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(R::ROLES)?;
        Ok(Allowed {
            caller,
            roles: PhantomData,
        })
    }
}

macro_rules! roles {
    ($($(#[$doc:meta])* $name:ident = [$($role:ident),+];)+) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name;

        impl Roles for $name {
            const ROLES: &'static [Role] = &[$(Role::$role),+];
        }
    )+};
}

roles! {
    /// Administration: agents, humans, tokens, plugins, quotas.
    Admins = [Admin];
    /// People who review: admins and approvers.
    Staff = [Admin, Approver];
    /// Those who read the organisation's state: admins, approvers and services.
    Readers = [Admin, Approver, Service];
    /// Those who feed activity in: services and admins.
    Feeds = [Service, Admin];
    /// Those who decide on approvals.
    Approvers = [Approver];
    /// Those who ask about actions and report on them: agents, and services and admins for them.
    Acting = [Agent, Service, Admin];
}
