//! The store's part for human baselines: versioned runs and their baselines.

use sqlx::{AnyConnection, Row as _};
use warden_core::baseline::{AgentDrift, BaselineRun, HumanBaseline};
use warden_core::clock::format_micros;

use crate::error::{Result, StoreError};
use crate::writer::Applied;
use crate::{Store, Write};

/// A write to human baselines.
#[derive(Debug, Clone)]
pub enum BaselineWrite {
    /// Records one recompute and its baselines as the newest version, and forgets the
    /// baselines (not the runs) of all but the newest `keep` versions.
    RecordRun {
        /// When it was computed, Unix microseconds.
        computed_at: i64,
        /// The activity's range, Unix microseconds: from (inclusive).
        from: i64,
        /// To (exclusive).
        to: i64,
        /// Human events read.
        events: u64,
        /// The time zone hours of the week were counted in.
        time_zone: String,
        /// The baselines.
        baselines: Vec<HumanBaseline>,
        /// Versions whose baselines are kept.
        keep: u32,
    },
    /// Records agents' drift for a day, replacing what was recorded for the same agent and day.
    RecordDrift {
        /// The scores.
        drift: Vec<AgentDrift>,
        /// When, Unix microseconds.
        computed_at: i64,
    },
}

impl From<BaselineWrite> for Write {
    fn from(w: BaselineWrite) -> Write {
        Write::Baseline(w)
    }
}

/// Which baselines to list.
#[derive(Debug, Clone, Default)]
pub struct BaselineFilter {
    /// Only this team's.
    pub team: Option<String>,
    /// Only this service's.
    pub service: Option<String>,
    /// Only this class's.
    pub class: Option<String>,
}

fn run_of(row: &sqlx::any::AnyRow) -> Result<BaselineRun> {
    let count = |c: &str| -> Result<u64> {
        let n: i64 = row.try_get(c)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(BaselineRun {
        version: row.try_get("version")?,
        computed_at: format_micros(row.try_get("computed_at")?),
        from: format_micros(row.try_get("range_from")?),
        to: format_micros(row.try_get("range_to")?),
        events: count("events")?,
        baselines: count("baselines")?,
        time_zone: row.try_get("time_zone")?,
    })
}

impl Store {
    /// The newest recompute, if there has been one.
    pub async fn latest_baseline_run(&self) -> Result<Option<BaselineRun>> {
        let row = sqlx::query("SELECT * FROM baseline_runs ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_of).transpose()
    }

    /// Recomputes, newest first.
    pub async fn baseline_runs(&self, limit: u32) -> Result<Vec<BaselineRun>> {
        let rows = sqlx::query("SELECT * FROM baseline_runs ORDER BY version DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_of).collect()
    }

    /// The baselines of one version, filtered.
    pub async fn baselines(
        &self,
        version: i64,
        filter: &BaselineFilter,
    ) -> Result<Vec<HumanBaseline>> {
        let rows = sqlx::query(
            "SELECT record FROM baselines WHERE version = $1 \
             AND ($2 = '' OR team = $2) AND ($3 = '' OR service = $3) AND ($4 = '' OR class = $4) \
             ORDER BY team, service, class",
        )
        .bind(version)
        .bind(filter.team.as_deref().unwrap_or(""))
        .bind(filter.service.as_deref().unwrap_or(""))
        .bind(filter.class.as_deref().unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let record: String = r.try_get("record")?;
                serde_json::from_str(&record).map_err(StoreError::bug)
            })
            .collect()
    }
}

impl Store {
    /// An agent's newest drift, if it was ever computed.
    pub async fn latest_drift(&self, agent_id: &str) -> Result<Option<AgentDrift>> {
        Ok(self.drift_history(agent_id, 1).await?.pop())
    }

    /// An agent's drift, newest day first.
    pub async fn drift_history(&self, agent_id: &str, limit: u32) -> Result<Vec<AgentDrift>> {
        let rows =
            sqlx::query("SELECT record FROM drift WHERE agent_id = $1 ORDER BY day DESC LIMIT $2")
                .bind(agent_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let record: String = r.try_get("record")?;
                serde_json::from_str(&record).map_err(StoreError::bug)
            })
            .collect()
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &BaselineWrite) -> Applied {
    if let BaselineWrite::RecordDrift { drift, computed_at } = write {
        for d in drift {
            let record = serde_json::to_string(d).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO drift (agent_id, day, record, computed_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (agent_id, day) DO UPDATE SET record = excluded.record, computed_at = excluded.computed_at",
            )
            .bind(&d.agent)
            .bind(&d.day)
            .bind(record)
            .bind(*computed_at)
            .execute(&mut *conn)
            .await?;
        }
        return Ok(Ok(()));
    }
    let BaselineWrite::RecordRun {
        computed_at,
        from,
        to,
        events,
        time_zone,
        baselines,
        keep,
    } = write
    else {
        return Ok(Ok(()));
    };
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO baseline_runs (computed_at, range_from, range_to, events, baselines, time_zone) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING version",
    )
    .bind(*computed_at)
    .bind(*from)
    .bind(*to)
    .bind(i64::try_from(*events).unwrap_or(i64::MAX))
    .bind(i64::try_from(baselines.len()).unwrap_or(i64::MAX))
    .bind(time_zone)
    .fetch_one(&mut *conn)
    .await?;
    for b in baselines {
        let record = serde_json::to_string(b).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO baselines (version, team, service, class, record) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(version)
        .bind(&b.team)
        .bind(&b.service)
        .bind(&b.class)
        .bind(record)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM baselines WHERE version <= $1")
        .bind(version - i64::from(*keep))
        .execute(&mut *conn)
        .await?;
    Ok(Ok(()))
}
