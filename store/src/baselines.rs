//! The store's part for human baselines: reads, and how each of its writes is applied.

use sqlx::{AnyConnection, Row as _};
use warden_core::records::Baseline;

use crate::error::{Result, StoreError};
use crate::writer::Applied;
use crate::{Store, Write};

/// A write to human baselines.
#[derive(Debug, Clone)]
pub enum BaselineWrite {
    /// Create or replace the human baseline of one team, service, class and environment.
    UpsertBaseline(Baseline),
}

impl From<BaselineWrite> for Write {
    fn from(w: BaselineWrite) -> Write {
        Write::Baseline(w)
    }
}

impl Store {
    /// The human baseline for one kind of action, if one has been computed.
    pub async fn baseline(
        &self,
        team: &str,
        service: &str,
        class: &str,
        environment: &str,
    ) -> Result<Option<Baseline>> {
        let row = sqlx::query("SELECT record FROM baselines WHERE team = $1 AND service = $2 AND class = $3 AND environment = $4")
            .bind(team)
            .bind(service)
            .bind(class)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let record: String = row.try_get("record")?;
        Ok(Some(
            serde_json::from_str(&record).map_err(StoreError::bug)?,
        ))
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &BaselineWrite) -> Applied {
    Ok(match write {
        BaselineWrite::UpsertBaseline(b) => {
            let record = serde_json::to_string(b).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO baselines (team, service, class, environment, record, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (team, service, class, environment) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
            )
            .bind(&b.team)
            .bind(&b.service)
            .bind(&b.class)
            .bind(&b.environment)
            .bind(record)
            .bind(b.updated_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    })
}
