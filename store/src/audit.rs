//! The store's part for the audit chain: reading, paging and verifying it (appending is the writer's): reads, and how each of its writes is applied.

use sqlx::{AnyConnection, Row as _};
use warden_core::audit::{self, AuditEntry, AuditRecord, StoredRow};

use crate::error::{Result, StoreError};
use crate::writer::{ROWS_PER_INSERT, multi_insert};
use crate::{Filters, Store};

/// Filters for audit queries.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `agent`, `human`, `service` or `admin`.
    pub actor_kind: Option<String>,
    /// The agent concerned.
    pub agent: Option<String>,
    /// Environment of the action.
    pub environment: Option<String>,
    /// Action class.
    pub action_class: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// At or after, Unix microseconds.
    pub since: Option<i64>,
    /// Before, Unix microseconds.
    pub until: Option<i64>,
    /// Only records after this sequence number (for paging).
    pub after_seq: Option<i64>,
    /// At most this many records.
    pub limit: i64,
}

pub(crate) struct AuditRow<'a> {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) record: &'a AuditRecord,
    pub(crate) json: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

pub(crate) async fn insert_audit(
    conn: &mut AnyConnection,
    rows: &[AuditRow<'_>],
) -> std::result::Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_insert(
            crate::Backend::of(conn),
            "audit_events (seq, at, event_type, actor_kind, actor_id, agent_id, environment, action_class, decision_id, record, prev_hash, hash)",
            12,
            chunk.len(),
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.seq)
                .bind(r.at)
                .bind(&r.record.event_type)
                .bind(&r.record.actor.kind)
                .bind(&r.record.actor.id)
                .bind(&r.record.agent)
                .bind(&r.record.environment)
                .bind(&r.record.action_class)
                .bind(&r.record.decision_id)
                .bind(&r.json)
                .bind(&r.prev_hash)
                .bind(&r.hash);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    /// Audit records matching a filter, in chain order.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut w = Filters::new("SELECT seq, record, prev_hash, hash FROM audit_events");
        w.text("actor_kind", &filter.actor_kind);
        w.text("agent_id", &filter.agent);
        w.text("environment", &filter.environment);
        w.text("action_class", &filter.action_class);
        w.text("event_type", &filter.event_type);
        w.int("at", ">=", filter.since);
        w.int("at", "<", filter.until);
        w.int("seq", ">", filter.after_seq);
        let rows = w
            .fetch_all(
                &format!(" ORDER BY seq LIMIT {}", filter.limit.clamp(1, 1001)),
                &self.pool,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let record: String = r.try_get("record")?;
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                    record: serde_json::from_str(&record).map_err(StoreError::bug)?,
                })
            })
            .collect()
    }

    /// How many `decision` audit records a decision has (its own record; approvals and
    /// violations it caused are records of their own).
    pub async fn count_audit_for_decision(&self, decision_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE decision_id = $1 AND event_type = 'decision'")
            .bind(decision_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// The policy version of the newest `policy.loaded` audit record.
    pub async fn last_policy_version(&self) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT record FROM audit_events WHERE event_type = 'policy.loaded' ORDER BY seq DESC LIMIT 1").fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let record: AuditRecord =
            serde_json::from_str(&row.try_get::<String, _>("record")?).map_err(StoreError::bug)?;
        Ok(record.policy_version)
    }

    /// Verifies the whole audit chain; returns the number of records, or what is wrong.
    pub async fn verify_audit(&self) -> Result<std::result::Result<i64, String>> {
        let mut verifier = audit::Verifier::default();
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, event_type, actor_kind, actor_id, agent_id, environment, action_class, decision_id, record, prev_hash, hash \
                 FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 5000",
            )
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let row = StoredRow {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    event_type: r.try_get("event_type")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    agent_id: r.try_get("agent_id")?,
                    environment: r.try_get("environment")?,
                    action_class: r.try_get("action_class")?,
                    decision_id: r.try_get("decision_id")?,
                    record: r.try_get("record")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                };
                if let Err(problem) = verifier.check(&row) {
                    return Ok(Err(problem));
                }
                after = row.seq;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(verifier.finish(head.try_get("seq")?, &head.try_get::<String, _>("hash")?))
    }
}
