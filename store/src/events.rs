//! The store's part for activity events: reads, and how its write is applied.

use std::collections::HashSet;

use futures::{StreamExt as _, TryStreamExt as _};
use sqlx::{AnyConnection, Row as _};
use warden_core::activity::{ActivityEvent, ActorKind};
use warden_core::records::OutcomeStatus;

use crate::error::{Result, StoreError};
use crate::writer::{Applied, ROWS_PER_INSERT, multi_insert};
use crate::{Store, Write};

/// A write to activity events.
#[derive(Debug, Clone)]
pub enum EventWrite {
    /// Stores events; one already stored under its (source, source_id) is left as it is.
    InsertEvents {
        /// The events.
        events: Vec<ActivityEvent>,
        /// When they were received, Unix microseconds.
        received_at: i64,
    },
}

impl From<EventWrite> for Write {
    fn from(w: EventWrite) -> Write {
        Write::Event(w)
    }
}

const COLUMNS: &str = "actor_kind, actor_id, team, class, environment, service, targets, change_size, at, outcome, decision_id, source, source_id";

/// [`COLUMNS`] for a scan, `targets` as JSON.
const SCAN_COLUMNS: [&str; 13] = [
    "actor_kind",
    "actor_id",
    "team",
    "class",
    "environment",
    "service",
    "json:targets",
    "change_size",
    "at",
    "outcome",
    "decision_id",
    "source",
    "source_id",
];

/// Rows of `seq` one chunk of a scan covers: a few megabytes of JSON.
const SCAN_CHUNK: i64 = 20_000;

/// One event of a scan, as the database wrote it into the chunk's JSON (in [`SCAN_COLUMNS`]'
/// order).
#[derive(serde::Deserialize)]
struct ScanRow(
    String,
    String,
    String,
    String,
    String,
    String,
    Vec<String>,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
);

impl ScanRow {
    fn into_event(self) -> Result<ActivityEvent> {
        let ScanRow(
            kind,
            actor_id,
            team,
            class,
            environment,
            service,
            targets,
            change_size,
            at,
            outcome,
            decision_id,
            source,
            source_id,
        ) = self;
        Ok(ActivityEvent {
            actor_kind: ActorKind::parse(&kind).ok_or_else(|| unknown("actor_kind", &kind))?,
            actor_id,
            team,
            class,
            environment,
            service,
            targets,
            change_size: change_size.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            at,
            outcome: match outcome {
                Some(o) => Some(OutcomeStatus::parse(&o).ok_or_else(|| unknown("outcome", &o))?),
                None => None,
            },
            decision_id,
            source,
            source_id,
        })
    }
}

fn unknown(column: &str, value: &str) -> StoreError {
    StoreError::Bug(format!("stored {column} `{value}` is not one Warden knows"))
}

impl Store {
    /// Of these (source, source id) pairs, those already stored.
    pub async fn known_events(&self, keys: &[(&str, &str)]) -> Result<HashSet<(String, String)>> {
        let mut known = HashSet::new();
        let mut sources: Vec<&str> = keys.iter().map(|k| k.0).collect();
        sources.sort_unstable();
        sources.dedup();
        for source in sources {
            let ids: Vec<&str> = keys.iter().filter(|k| k.0 == source).map(|k| k.1).collect();
            for chunk in ids.chunks(500) {
                let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                let sql = format!(
                    "SELECT source_id FROM events WHERE source = $1 AND source_id IN ({})",
                    marks.join(", ")
                );
                let mut q = sqlx::query(&sql).bind(source);
                for id in chunk {
                    q = q.bind(*id);
                }
                for row in q.fetch_all(&self.pool).await? {
                    known.insert((source.to_string(), row.try_get("source_id")?));
                }
            }
        }
        Ok(known)
    }

    /// Every event of one actor kind (or all) with `from <= at < to`, in no particular order,
    /// handed to `each` one at a time so that a million events never sit in memory as rows.
    /// Read in chunks of `seq`, each one JSON value built by the database (see
    /// [`crate::Backend::json_rows`]), two chunks in flight: the database builds the next
    /// while this one is parsed.
    pub async fn scan_events(
        &self,
        kind: Option<ActorKind>,
        from: i64,
        to: i64,
        mut each: impl FnMut(ActivityEvent),
    ) -> Result<u64> {
        // The period's first and last seq, from the index on `at` alone.
        let row = sqlx::query(
            "SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM events WHERE at >= $1 AND at < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        let (Some(lo), Some(hi)) = (
            row.try_get::<Option<i64>, _>("lo")?,
            row.try_get::<Option<i64>, _>("hi")?,
        ) else {
            return Ok(0);
        };
        let rows = self.backend.json_rows(&SCAN_COLUMNS);
        let only = if kind.is_some() {
            " AND actor_kind = $5"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {rows} AS rows FROM events WHERE seq >= $1 AND seq < $2 AND at >= $3 AND at < $4{only}"
        );
        let starts = (lo..=hi).step_by(SCAN_CHUNK as usize);
        let mut chunks = futures::stream::iter(starts)
            .map(|start| {
                let mut q = sqlx::query_scalar::<_, String>(&sql)
                    .bind(start)
                    .bind(start + SCAN_CHUNK)
                    .bind(from)
                    .bind(to);
                if let Some(kind) = kind {
                    q = q.bind(kind.as_str());
                }
                q.fetch_one(&self.pool)
            })
            .buffered(2);
        let mut n = 0;
        while let Some(json) = chunks.try_next().await? {
            let rows: Vec<ScanRow> = serde_json::from_str(&json).map_err(StoreError::bug)?;
            for r in rows {
                each(r.into_event()?);
                n += 1;
            }
        }
        Ok(n)
    }

    /// The events an agent did, newest first (humans' events are read by time, in scans).
    pub async fn actor_events(&self, actor_id: &str, limit: u32) -> Result<Vec<ActivityEvent>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE actor_kind = 'agent' AND actor_id = $1 ORDER BY at DESC, seq DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(actor_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_of).collect()
    }

    /// The platform's events carrying a decision id: what the platform says happened after it.
    pub async fn decision_events(&self, decision_id: &str) -> Result<Vec<ActivityEvent>> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE decision_id = $1 ORDER BY at, seq");
        let rows = sqlx::query(&sql)
            .bind(decision_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_of).collect()
    }

    /// How many events are stored.
    pub async fn event_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn event_of(row: &sqlx::any::AnyRow) -> Result<ActivityEvent> {
    // By position, in the order of `COLUMNS`: a million rows' name lookups cost seconds.
    let kind: String = row.try_get(0)?;
    let targets: String = row.try_get(6)?;
    let change_size: Option<i64> = row.try_get(7)?;
    let outcome: Option<String> = row.try_get(9)?;
    Ok(ActivityEvent {
        actor_kind: ActorKind::parse(&kind).ok_or_else(|| unknown("actor_kind", &kind))?,
        actor_id: row.try_get(1)?,
        team: row.try_get(2)?,
        class: row.try_get(3)?,
        environment: row.try_get(4)?,
        service: row.try_get(5)?,
        targets: serde_json::from_str(&targets).map_err(StoreError::bug)?,
        change_size: change_size.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        at: row.try_get(8)?,
        outcome: match outcome {
            Some(o) => Some(OutcomeStatus::parse(&o).ok_or_else(|| unknown("outcome", &o))?),
            None => None,
        },
        decision_id: row.try_get(10)?,
        source: row.try_get(11)?,
        source_id: row.try_get(12)?,
    })
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &EventWrite) -> Applied {
    let EventWrite::InsertEvents {
        events,
        received_at,
    } = write;
    // SQLite allows 32766 parameters per statement; 14 columns × 256 rows stays well below.
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut sql = multi_insert(
            crate::Backend::of(conn),
            "events (source, source_id, actor_kind, actor_id, team, class, environment, service, targets, change_size, at, outcome, decision_id, received_at)",
            14,
            chunk.len(),
        );
        sql.push_str(" ON CONFLICT (source, source_id) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for e in chunk {
            let targets = serde_json::to_string(&e.targets)
                .map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
            q = q
                .bind(&e.source)
                .bind(&e.source_id)
                .bind(e.actor_kind.as_str())
                .bind(&e.actor_id)
                .bind(&e.team)
                .bind(&e.class)
                .bind(&e.environment)
                .bind(&e.service)
                .bind(targets)
                .bind(e.change_size.map(i64::from))
                .bind(e.at)
                .bind(e.outcome.map(OutcomeStatus::as_str))
                .bind(&e.decision_id)
                .bind(*received_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(Ok(()))
}
