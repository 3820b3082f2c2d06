//! The store's part for delegations: given, revoked, and found for a decision.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::clock::format_micros;
use warden_core::delegation::Delegation;

use crate::error::{Missing, Result, StoreError};
use crate::writer::{Applied, missing};
use crate::{Store, Write};

/// A write to delegations.
#[derive(Debug, Clone)]
pub enum DelegationWrite {
    /// Record a delegation (its `created_at` is `at`).
    Insert {
        /// The delegation.
        delegation: Delegation,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Revoke a live delegation; 404 if there is none by that id, or it is revoked already.
    Revoke {
        /// Id.
        id: String,
        /// Who.
        by: String,
        /// When, Unix microseconds.
        at: i64,
    },
}

impl From<DelegationWrite> for Write {
    fn from(w: DelegationWrite) -> Write {
        Write::Delegation(w)
    }
}

const COLUMNS: &str = "SELECT id, human_id, agent_id, classes, environments, services, created_at, expires_at, revoked_at, revoked_by FROM delegations";

fn list(r: &AnyRow, column: &str) -> Result<Vec<String>> {
    let text: String = r.try_get(column)?;
    serde_json::from_str(&text).map_err(StoreError::bug)
}

fn delegation_of(r: &AnyRow) -> Result<Delegation> {
    let expires_at: i64 = r.try_get("expires_at")?;
    Ok(Delegation {
        id: r.try_get("id")?,
        human: r.try_get("human_id")?,
        agent: r.try_get("agent_id")?,
        classes: list(r, "classes")?,
        environments: list(r, "environments")?,
        services: list(r, "services")?,
        created_at: format_micros(r.try_get("created_at")?),
        expires_at: format_micros(expires_at),
        revoked_at: r
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(format_micros),
        revoked_by: r.try_get("revoked_by")?,
        expires_at_micros: expires_at,
    })
}

impl Store {
    /// One delegation.
    pub async fn delegation(&self, id: &str) -> Result<Option<Delegation>> {
        let row = sqlx::query(&format!("{COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(delegation_of).transpose()
    }

    /// Delegations by human and agent, newest first; with `live_at`, only those neither
    /// revoked nor lapsed then.
    pub async fn delegations(
        &self,
        human: Option<&str>,
        agent: Option<&str>,
        live_at: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delegation>> {
        let mut w = crate::Filters::new(COLUMNS);
        w.text("human_id", &human.map(String::from));
        w.text("agent_id", &agent.map(String::from));
        if let Some(now) = live_at {
            w.sql.push_str(" AND revoked_at IS NULL");
            w.int("expires_at", ">", Some(now));
        }
        let rows = w
            .fetch_all(
                &format!(
                    " ORDER BY created_at DESC, id LIMIT {}",
                    limit.clamp(1, 1000)
                ),
                &self.pool,
            )
            .await?;
        rows.iter().map(delegation_of).collect()
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &DelegationWrite) -> Applied {
    Ok(match write {
        DelegationWrite::Insert { delegation: d, at } => {
            let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT INTO delegations (id, human_id, agent_id, classes, environments, services, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&d.id)
            .bind(&d.human)
            .bind(&d.agent)
            .bind(json(&d.classes))
            .bind(json(&d.environments))
            .bind(json(&d.services))
            .bind(*at)
            .bind(d.expires_at_micros)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        DelegationWrite::Revoke { id, by, at } => {
            let n = sqlx::query(
                "UPDATE delegations SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(*at)
            .bind(by)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            missing(
                n,
                Missing::Delegation,
                format!("no live delegation `{id}` (unknown, or revoked already)"),
            )
        }
    })
}
