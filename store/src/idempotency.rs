//! The store's part for idempotent requests: a claim on a key while its request is in flight,
//! the answer once it is given, and what a retry reads back.

use sqlx::{AnyConnection, Row as _};

use crate::error::{Conflict, Result};
use crate::writer::{Applied, affected};
use crate::{Store, Write};

/// Which request a key belongs to: the caller, the route and the key the caller chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Who asked (the token's subject, or the token).
    pub principal: String,
    /// The route, with its path parameters (`POST /v1/decisions/{id}/outcome` for one id).
    pub route: String,
    /// The caller's key.
    pub key: String,
}

/// A write to idempotency keys.
#[derive(Debug, Clone)]
pub enum IdempotencyWrite {
    /// Claim a key for a request in flight; 409 ([`Conflict::IdempotencyKeyTaken`]) while another
    /// request holds it or its answer is kept. A claim older than `stale_before`, or a key past
    /// its window, is taken over.
    Claim {
        /// The key.
        key: IdempotencyKey,
        /// SHA-256 of the request.
        request_hash: String,
        /// Now, Unix microseconds.
        at: i64,
        /// When the kept answer lapses.
        expires_at: i64,
        /// Claims made before this are abandoned (their process died).
        stale_before: i64,
    },
    /// Keep the answer of the claimed request; 409 ([`Conflict::IdempotencyKeyTaken`]) unless
    /// the claim made at `claimed_at` still holds the key unanswered (it lapsed and a retry
    /// took it over, or the answer is kept already). In the change that makes the answer true,
    /// that rolls the change back: one key, one action.
    Answer {
        /// The key.
        key: IdempotencyKey,
        /// When the claim was made (which claim this is).
        claimed_at: i64,
        /// The HTTP status.
        status: u16,
        /// The body.
        response: String,
    },
    /// Give up a claim whose request was not answered with success, so a retry runs afresh;
    /// a claim another request has taken over is left alone.
    Release {
        /// The key.
        key: IdempotencyKey,
        /// When the claim was made.
        claimed_at: i64,
    },
}

impl From<IdempotencyWrite> for Write {
    fn from(w: IdempotencyWrite) -> Write {
        Write::Idempotency(w)
    }
}

/// What is kept under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// SHA-256 of the request that claimed it.
    pub request_hash: String,
    /// The answer, once given: status and body.
    pub answer: Option<(u16, String)>,
}

impl Store {
    /// What is kept under `key` and not lapsed at `now`.
    pub async fn idempotency_key(&self, key: &IdempotencyKey, now: i64) -> Result<Option<Kept>> {
        let row = sqlx::query(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE principal = $1 AND route = $2 AND idem_key = $3 AND expires_at > $4",
        )
        .bind(&key.principal)
        .bind(&key.route)
        .bind(&key.key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: i64 = row.try_get("status")?;
        let response: Option<String> = row.try_get("response")?;
        Ok(Some(Kept {
            request_hash: row.try_get("request_hash")?,
            answer: match (status, response) {
                (1.., Some(body)) => Some((u16::try_from(status).unwrap_or(500), body)),
                _ => None,
            },
        }))
    }

    /// Deletes the keys lapsed before `now`; returns how many.
    pub async fn prune_idempotency_keys(&self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &IdempotencyWrite) -> Applied {
    Ok(match write {
        IdempotencyWrite::Claim {
            key,
            request_hash,
            at,
            expires_at,
            stale_before,
        } => {
            let n = sqlx::query(
                "INSERT INTO idempotency_keys (principal, route, idem_key, request_hash, status, response, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, 0, NULL, $5, $6) \
                 ON CONFLICT (principal, route, idem_key) DO UPDATE SET request_hash = excluded.request_hash, status = 0, response = NULL, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at \
                 WHERE idempotency_keys.expires_at <= $5 OR (idempotency_keys.status = 0 AND idempotency_keys.created_at < $7)",
            )
            .bind(&key.principal)
            .bind(&key.route)
            .bind(&key.key)
            .bind(request_hash)
            .bind(*at)
            .bind(*expires_at)
            .bind(*stale_before)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::IdempotencyKeyTaken,
                format!("Idempotency-Key `{}` is in use", key.key),
            )
        }
        IdempotencyWrite::Answer {
            key,
            claimed_at,
            status,
            response,
        } => {
            let n = sqlx::query(
                "UPDATE idempotency_keys SET status = $1, response = $2 WHERE principal = $3 AND route = $4 AND idem_key = $5 AND status = 0 AND created_at = $6",
            )
            .bind(i64::from(*status))
            .bind(response)
            .bind(&key.principal)
            .bind(&key.route)
            .bind(&key.key)
            .bind(*claimed_at)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::IdempotencyKeyTaken,
                format!(
                    "the claim on Idempotency-Key `{}` lapsed and another request took it; retry to get its answer",
                    key.key
                ),
            )
        }
        IdempotencyWrite::Release { key, claimed_at } => {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE principal = $1 AND route = $2 AND idem_key = $3 AND status = 0 AND created_at = $4",
            )
            .bind(&key.principal)
            .bind(&key.route)
            .bind(&key.key)
            .bind(*claimed_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    })
}
