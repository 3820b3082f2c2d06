//! The web UI's sessions. Signing in with an approver's or admin's token opens a session with a
//! random id (the cookie holds the id, the store its SHA-256), which ends at its expiry, when
//! the human signs out, or when the token is revoked. The token itself never goes into a
//! cookie.

use std::time::Duration;

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identity::{Caller, Role, hash_token};
use crate::store::{Change, SessionWrite, Store, Write};

/// `[ui]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// How long a sign-in lasts, seconds.
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (sent over HTTPS only). It is also set when
    /// `notifications.public_url` is an `https://` address: Warden is then behind TLS.
    pub secure_cookie: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_ttl_secs: 8 * 3600,
            secure_cookie: false,
        }
    }
}

/// A random identifier: 32 bytes, base64url.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a sign-in was refused.
#[derive(Debug)]
pub enum Refused {
    /// No such token, or a revoked one.
    UnknownToken,
    /// A token of a role that does not sign in (agents, services).
    RoleCannotSignIn,
    /// The store failed.
    Store(Error),
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Refused {
        Refused::Store(e.into())
    }
}

/// Opens a session for a live approver's or admin's token: the session id, and who it is.
pub async fn open(
    store: &Store,
    secret: &str,
    now: i64,
    ttl: Duration,
) -> std::result::Result<(String, Caller), Refused> {
    let token = store
        .token_by_hash(&hash_token(secret))
        .await?
        .filter(|t| t.revoked_at.is_none())
        .ok_or(Refused::UnknownToken)?;
    if !matches!(token.role, Role::Approver | Role::Admin) {
        return Err(Refused::RoleCannotSignIn);
    }
    let id = random_id();
    let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    store
        .commit(Change {
            writes: vec![Write::Session(SessionWrite::Open {
                id_hash: hash_token(&id),
                token_id: token.id.clone(),
                at: now,
                expires_at: now.saturating_add(ttl),
            })],
            audit: vec![],
        })
        .await?;
    let caller = Caller {
        token_id: token.id.clone(),
        role: token.role,
        subject: token.subject.clone(),
    };
    Ok((id, caller))
}

/// Who a live session belongs to, if its token is live too.
pub async fn find(store: &Store, id: &str, now: i64) -> Result<Option<Caller>> {
    Ok(store
        .session_token(&hash_token(id), now)
        .await?
        .filter(|t| t.revoked_at.is_none() && matches!(t.role, Role::Approver | Role::Admin))
        .map(|t| Caller {
            token_id: t.id,
            role: t.role,
            subject: t.subject,
        }))
}

/// Ends a session.
pub async fn close(store: &Store, id: &str, now: i64) -> Result<()> {
    store
        .commit(Change {
            writes: vec![Write::Session(SessionWrite::Close {
                id_hash: hash_token(id),
                at: now,
            })],
            audit: vec![],
        })
        .await?;
    Ok(())
}
