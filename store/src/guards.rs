//! The store's part for the watch over guarded actions: reads, and how each write is applied.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::records::{Guard, GuardStatus};

use crate::error::{Conflict, Result, StoreError};
use crate::writer::{Applied, Table, affected};
use crate::{Store, Write};

/// A write to guards.
#[derive(Debug, Clone)]
pub enum GuardWrite {
    /// Arms a watch (with the decision that allows the guarded action).
    Arm(Guard),
    /// Records one judgement of a batch of signals on a watch still open (watching, or held
    /// for a human): the count, the verdict, and trigger errors in a row (`error`: this one
    /// was an error).
    Judged {
        /// The guarded decision.
        decision_id: String,
        /// The judgement's verdict.
        verdict: String,
        /// Whether it was a trigger error.
        error: bool,
    },
    /// Holds only while the watch is open (watching or held): a report whose evidence waits
    /// for the watch conflicts (409 `guard_moved`) with the watch closing meanwhile.
    ExpectOpen {
        /// The guarded decision.
        decision_id: String,
    },
    /// Notes that someone was paged about trigger errors on this watch: once, and only with at
    /// least `limit` errors in a row (409 `guard_moved` otherwise).
    Page {
        /// The guarded decision.
        decision_id: String,
        /// Errors in a row needed.
        limit: i64,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Moves a watch from `from` to `to` (compare-and-set: 409 `guard_moved` otherwise), with
    /// the human review asked for when it is held.
    Move {
        /// The guarded decision.
        decision_id: String,
        /// Where it must stand.
        from: GuardStatus,
        /// Where it goes.
        to: GuardStatus,
        /// The review asked for (held), if any.
        review: Option<String>,
        /// When, Unix microseconds.
        at: i64,
    },
}

impl From<GuardWrite> for Write {
    fn from(w: GuardWrite) -> Write {
        Write::Guard(w)
    }
}

const COLUMNS: &str = "SELECT g.decision_id, g.agent_id, g.class, g.environment, g.service, g.armed_at, g.deadline, g.status, g.signals, g.errors, \
     g.last_verdict, g.review_id FROM guards g";

/// The watch whose review is `$1`.
pub(crate) fn of_review() -> String {
    format!("{COLUMNS} WHERE g.review_id = $1")
}

fn guard_of(r: &AnyRow) -> Result<Guard> {
    let status: String = r.try_get("status")?;
    Ok(Guard {
        decision_id: r.try_get("decision_id")?,
        agent: r.try_get("agent_id")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        service: r.try_get("service")?,
        armed_at: r.try_get("armed_at")?,
        deadline: r.try_get("deadline")?,
        status: GuardStatus::parse(&status)
            .ok_or_else(|| StoreError::Bug(format!("stored guard status `{status}`")))?,
        signals: r.try_get("signals")?,
        errors: r.try_get("errors")?,
        last_verdict: r.try_get("last_verdict")?,
        review: r.try_get("review_id")?,
    })
}

impl Store {
    /// The watch over a decision, if it was guarded.
    pub async fn guard(&self, decision_id: &str) -> Result<Option<Guard>> {
        let row = sqlx::query(&format!("{COLUMNS} WHERE g.decision_id = $1"))
            .bind(decision_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(guard_of).transpose()
    }

    /// The watch a human review was asked for.
    pub async fn guard_of_review(&self, review_id: &str) -> Result<Option<Guard>> {
        let row = sqlx::query(&of_review())
            .bind(review_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(guard_of).transpose()
    }

    /// Watches held for a human whose review was decided (approved, used, or rejected).
    pub async fn decided_reviews(&self, limit: i64) -> Result<Vec<Guard>> {
        let rows = sqlx::query(&format!(
            "{COLUMNS} JOIN approvals a ON a.id = g.review_id \
             WHERE g.status = 'held' AND a.status IN ('approved', 'consumed', 'rejected') ORDER BY g.deadline LIMIT {}",
            limit.clamp(1, 1000)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(guard_of).collect()
    }

    /// Watches rolled back whose decision does not yet record the outcome `rolled_back` (the
    /// watch closes first; the outcome follows in a change of its own).
    pub async fn unsettled_rollbacks(&self, limit: i64) -> Result<Vec<Guard>> {
        let rows = sqlx::query(&format!(
            "{COLUMNS} JOIN decisions d ON d.id = g.decision_id \
             WHERE g.status = 'rolled_back' AND COALESCE(d.outcome, '') <> 'rolled_back' ORDER BY g.deadline LIMIT {}",
            limit.clamp(1, 1000)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(guard_of).collect()
    }

    /// Watches still open whose deadline has passed, oldest first.
    pub async fn due_guards(&self, now: i64, limit: i64) -> Result<Vec<Guard>> {
        let rows = sqlx::query(&format!(
            "{COLUMNS} WHERE g.status = 'watching' AND g.deadline <= $1 ORDER BY g.deadline LIMIT {}",
            limit.clamp(1, 1000)
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(guard_of).collect()
    }
}

/// Arms new guards, a multi-row `INSERT` per [`crate::writer::ROWS_PER_INSERT`] rows: a guard
/// is armed with its new decision, which no other guard can name, so the writer gathers a
/// batch's guards into one statement.
/// New guard rows, for one multi-row INSERT.
pub(crate) fn guard_rows<'a>() -> Table<'a, Guard> {
    Table::<Guard>::new(
        "guards (decision_id, agent_id, class, environment, service, armed_at, deadline, status)",
        8,
        |q, g| {
            q.bind(&g.decision_id)
                .bind(&g.agent)
                .bind(&g.class)
                .bind(&g.environment)
                .bind(&g.service)
                .bind(g.armed_at)
                .bind(g.deadline)
                .bind(g.status.as_str())
        },
    )
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &GuardWrite) -> Applied {
    Ok(match write {
        GuardWrite::Arm(g) => {
            guard_rows().with(g).insert(conn).await?;
            Ok(())
        }
        GuardWrite::Judged {
            decision_id,
            verdict,
            error,
        } => {
            let n = sqlx::query(
                "UPDATE guards SET signals = signals + 1, last_verdict = $1, \
                 errors = CASE WHEN $2 = 1 THEN errors + 1 ELSE 0 END \
                 WHERE decision_id = $3 AND status IN ('watching', 'held')",
            )
            .bind(verdict)
            .bind(i64::from(*error))
            .bind(decision_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::GuardMoved,
                format!("the watch over decision `{decision_id}` is not open any more"),
            )
        }
        GuardWrite::ExpectOpen { decision_id } => {
            let n = sqlx::query(
                "UPDATE guards SET status = status WHERE decision_id = $1 AND status IN ('watching', 'held')",
            )
            .bind(decision_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::GuardMoved,
                format!("the watch over decision `{decision_id}` ended meanwhile"),
            )
        }
        GuardWrite::Page {
            decision_id,
            limit,
            at,
        } => {
            let n = sqlx::query(
                "UPDATE guards SET paged_at = $1 WHERE decision_id = $2 AND paged_at IS NULL AND errors >= $3",
            )
            .bind(*at)
            .bind(decision_id)
            .bind(*limit)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::GuardMoved,
                format!(
                    "the watch over decision `{decision_id}` paged already, or has fewer errors"
                ),
            )
        }
        GuardWrite::Move {
            decision_id,
            from,
            to,
            review,
            at,
        } => {
            let n = sqlx::query(
                "UPDATE guards SET status = $1, review_id = COALESCE($2, review_id), \
                 closed_at = CASE WHEN $3 = 1 THEN $4 ELSE closed_at END \
                 WHERE decision_id = $5 AND status = $6",
            )
            .bind(to.as_str())
            .bind(review)
            .bind(i64::from(to.closed()))
            .bind(*at)
            .bind(decision_id)
            .bind(from.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::GuardMoved,
                format!("the watch over decision `{decision_id}` is not {from} any more"),
            )
        }
    })
}
