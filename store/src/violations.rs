//! The store's part for violations and their review: reads, and how each of its writes is applied.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::clock::format_micros;
use warden_core::policy::ViolationMode;
use warden_core::records::{Violation, ViolationRow, ViolationStatus};

use crate::error::{Conflict, Result};
use crate::writer::{Applied, Table, affected};
use crate::{Filters, Store, Write, wire};

/// A write to violations and their review.
#[derive(Debug, Clone)]
pub enum ViolationWrite {
    /// Record a violation.
    InsertViolation(ViolationRow),
    /// Acknowledge an open violation; 409 if it is not open any more.
    AckViolation {
        /// Violation id.
        id: String,
        /// Who acknowledged it.
        by: String,
        /// When, Unix microseconds.
        at: i64,
        /// The reviewer's comment.
        comment: Option<String>,
    },
}

impl From<ViolationWrite> for Write {
    fn from(w: ViolationWrite) -> Write {
        Write::Violation(w)
    }
}

/// Which violations to list: every field narrows.
#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    /// The agent.
    pub agent: Option<String>,
    /// `open` or `acknowledged`.
    pub status: Option<String>,
    /// Action class.
    pub class: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Violation mode.
    pub mode: Option<String>,
    /// At or after (Unix microseconds).
    pub since: Option<i64>,
    /// Before (Unix microseconds).
    pub until: Option<i64>,
    /// Page after this violation id (ids grow with time).
    pub after: Option<String>,
    /// Rows to return.
    pub limit: i64,
}

const VIOLATION_COLUMNS: &str = "SELECT id, at, decision_id, agent_id, class, environment, service, mode, reason, status, acknowledged_by, acknowledged_at, comment FROM violations";

fn violation_of(r: &AnyRow) -> Result<Violation> {
    let acknowledged_at: Option<i64> = r.try_get("acknowledged_at")?;
    Ok(Violation {
        id: r.try_get("id")?,
        at: format_micros(r.try_get("at")?),
        decision_id: r.try_get("decision_id")?,
        agent: r.try_get("agent_id")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        service: r.try_get("service")?,
        mode: wire(r, "mode", ViolationMode::parse)?,
        reason: r.try_get("reason")?,
        status: wire(r, "status", ViolationStatus::parse)?,
        acknowledged_by: r.try_get("acknowledged_by")?,
        acknowledged_at: acknowledged_at.map(format_micros),
        comment: r.try_get("comment")?,
    })
}

/// New violation rows, for one multi-row INSERT.
pub(crate) fn violation_rows<'a>() -> Table<'a, ViolationRow> {
    Table::<ViolationRow>::new(
        "violations (id, at, decision_id, agent_id, class, environment, service, mode, reason)",
        9,
        |q, v| {
            q.bind(&v.id)
                .bind(v.at)
                .bind(&v.decision_id)
                .bind(&v.agent_id)
                .bind(&v.class)
                .bind(&v.environment)
                .bind(&v.service)
                .bind(v.mode.as_str())
                .bind(v.reason.as_str())
        },
    )
}

/// An agent's latest blocked violation ($1 the agent). Both this and [`BLOCKED_SINCE`] walk
/// the agent's blocked violations in `violations_agent_mode_at` alone, however many flagged ones
/// it has.
const LAST_BLOCKED: &str = "SELECT at FROM violations WHERE agent_id = $1 AND mode = 'block' AND reason <> 'quota_exceeded' ORDER BY at DESC LIMIT 1";

/// An agent's ($1) blocked violations since $2, at most $3 of them.
const BLOCKED_SINCE: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM violations WHERE agent_id = $1 AND mode = 'block' AND reason <> 'quota_exceeded' AND at >= $2 LIMIT $3) AS v";

impl Store {
    /// When the agent's latest blocked violation was (quota overruns are minor and left out).
    /// Read backwards along the agent's index to the first that counts, not by `MAX` over them
    /// all: an agent with many violations costs one step, not one per violation.
    pub async fn last_blocked_violation(&self, agent: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(LAST_BLOCKED)
            .bind(agent)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Blocked violations of an agent since `since`, counted up to `at_most` (quota overruns
    /// are minor and left out). Whether a threshold is reached needs no more rows than it: an
    /// agent denied over and over must not make each review read all its violations.
    pub async fn blocked_violations(&self, agent: &str, since: i64, at_most: u64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(BLOCKED_SINCE)
            .bind(agent)
            .bind(since)
            .bind(i64::try_from(at_most).unwrap_or(i64::MAX))
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// One violation.
    pub async fn violation(&self, id: &str) -> Result<Option<Violation>> {
        let row = sqlx::query(&format!("{VIOLATION_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(violation_of).transpose()
    }

    /// Violations matching a filter, oldest first.
    pub async fn violations(&self, filter: &ViolationFilter) -> Result<Vec<Violation>> {
        let mut w = Filters::new(VIOLATION_COLUMNS);
        w.text("agent_id", &filter.agent);
        w.text("status", &filter.status);
        w.text("class", &filter.class);
        w.text("environment", &filter.environment);
        w.text("mode", &filter.mode);
        w.int("at", ">=", filter.since);
        w.int("at", "<", filter.until);
        w.text_op("id", ">", filter.after.as_deref());
        let rows = w
            .fetch_all(
                &format!(" ORDER BY id LIMIT {}", filter.limit.clamp(1, 1001)),
                &self.pool,
            )
            .await?;
        rows.iter().map(violation_of).collect()
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &ViolationWrite) -> Applied {
    Ok(match write {
        ViolationWrite::AckViolation {
            id,
            by,
            at,
            comment,
        } => {
            let n = sqlx::query(
                "UPDATE violations SET status = 'acknowledged', acknowledged_by = $1, acknowledged_at = $2, comment = $3 WHERE id = $4 AND status = 'open'",
            )
            .bind(by)
            .bind(*at)
            .bind(comment)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::ViolationNotOpen,
                format!("violation `{id}` is not open (already acknowledged, or unknown)"),
            )
        }
        ViolationWrite::InsertViolation(v) => {
            violation_rows().with(v).insert(conn).await?;
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite_tests::{migrated, plan};

    /// A review's reads of an agent's blocked violations go straight to them in the index
    /// (agent, then mode): an agent with a class in `flag` mode, one violation a decision, once
    /// made each review step over all of them.
    #[tokio::test]
    async fn reviews_read_only_blocked_violations() {
        let pool = migrated(i64::MAX).await;
        for sql in [LAST_BLOCKED, BLOCKED_SINCE] {
            let plan = plan(&pool, sql).await;
            assert!(
                plan.iter().any(|step| step
                    .contains("USING INDEX violations_agent_mode_at (agent_id=? AND mode=?")),
                "{sql}: {plan:?}"
            );
        }
    }
}
