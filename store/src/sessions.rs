//! The store's part for the web UI's sessions: opened at sign-in, closed at sign-out, and
//! found (with the token behind them) on every page.

use sqlx::AnyConnection;
use warden_core::identity::TokenRecord;

use crate::error::Result;
use crate::identities::token_from_row;
use crate::writer::Applied;
use crate::{Store, Write};

/// A write to sessions.
#[derive(Debug, Clone)]
pub enum SessionWrite {
    /// Open a session.
    Open {
        /// SHA-256 of the session id (the id itself is only in the cookie).
        id_hash: String,
        /// The token signed in with.
        token_id: String,
        /// Now, Unix microseconds.
        at: i64,
        /// When it ends.
        expires_at: i64,
    },
    /// End a session (signing out); ending one that has ended changes nothing.
    Close {
        /// SHA-256 of the session id.
        id_hash: String,
        /// Now, Unix microseconds.
        at: i64,
    },
}

impl From<SessionWrite> for Write {
    fn from(w: SessionWrite) -> Write {
        Write::Session(w)
    }
}

impl Store {
    /// The token behind a live session (whether or not the token has since been revoked: the
    /// caller checks).
    pub async fn session_token(&self, id_hash: &str, now: i64) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT t.id, t.hash, t.role, t.subject, t.note, t.created_at, t.revoked_at FROM ui_sessions s \
             JOIN tokens t ON t.id = s.token_id WHERE s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Deletes sessions that ended before `now`; returns how many.
    pub async fn prune_sessions(&self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1 OR revoked_at IS NOT NULL")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &SessionWrite) -> Applied {
    match write {
        SessionWrite::Open {
            id_hash,
            token_id,
            at,
            expires_at,
        } => {
            sqlx::query(
                "INSERT INTO ui_sessions (id_hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(id_hash)
            .bind(token_id)
            .bind(*at)
            .bind(*expires_at)
            .execute(&mut *conn)
            .await?;
        }
        SessionWrite::Close { id_hash, at } => {
            sqlx::query(
                "UPDATE ui_sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
            )
            .bind(*at)
            .bind(id_hash)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(Ok(()))
}
