//! The store's part for approval requests: asked, decided, used, lapsed: reads, and how each of its writes is applied.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::clock::format_micros;
use warden_core::records::{Approval, ApprovalRow, ApprovalStatus, QuarantinedApproval};

use crate::error::{Conflict, Missing, Result, StoreError};
use crate::writer::{Applied, Table, affected, missing};
use crate::{Arg, Filters, Listed, Store, Write, unreadable, wire};

/// A write to approval requests: asked, decided, used, lapsed.
#[derive(Debug, Clone)]
pub enum ApprovalWrite {
    /// Record a new pending approval.
    InsertApproval(ApprovalRow),
    /// Approve or reject a pending, unexpired approval; 409 otherwise.
    DecideApproval {
        /// Approval id.
        id: String,
        /// Approve (true) or reject.
        approve: bool,
        /// Who decided.
        by: String,
        /// When, Unix microseconds (must be before expiry).
        at: i64,
        /// The approver's comment.
        comment: Option<String>,
    },
    /// Add an approver to a pending approval, approving it once enough have; 409 if another
    /// approver changed it meanwhile (compare-and-set on the list) or it is no longer pending.
    AddApprover {
        /// Approval id.
        id: String,
        /// The approver.
        by: String,
        /// When, Unix microseconds (must be before expiry).
        at: i64,
        /// The approver's comment.
        comment: Option<String>,
        /// The approvers before (JSON list), as read.
        before: String,
        /// The approvers after (JSON list).
        after: String,
        /// Whether this approver completes the approval.
        complete: bool,
    },
    /// Use an approved, unexpired approval for a decision; 409 if it is not (already used:
    /// approvals are single-use, and this write is what makes them so on every replica).
    ConsumeApproval {
        /// Approval id.
        id: String,
        /// The decision that uses it.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Mark a lapsed approval's expiry as announced; 409 if another replica did.
    NoteApprovalExpired {
        /// Approval id.
        id: String,
    },
    /// Move an approval out of every reader's way, whatever state it is in (an admin's act):
    /// its raw columns are kept in `quarantined_approvals`; 404 if there is no such approval.
    Quarantine {
        /// Approval id.
        id: String,
        /// Who.
        by: String,
        /// Why.
        reason: String,
        /// When, Unix microseconds.
        at: i64,
    },
}

impl From<ApprovalWrite> for Write {
    fn from(w: ApprovalWrite) -> Write {
        Write::Approval(w)
    }
}

macro_rules! approval_fields {
    () => {
        "id, decision_id, agent_id, on_behalf_of, class, environment, service, action_hash, summary, status, \
         created_at, expires_at, decided_by, decided_at, comment, consumed_by, consumed_at, approvals_needed, approved_by"
    };
}
const APPROVAL_FIELDS: &str = approval_fields!();
const APPROVAL_COLUMNS: &str = concat!("SELECT ", approval_fields!(), " FROM approvals");

/// The columns of an approval as they are stored: text as text, numbers as numbers, and null
/// for what does not decode, so that any row can be kept.
const RAW_TEXT: [&str; 14] = [
    "id",
    "decision_id",
    "agent_id",
    "on_behalf_of",
    "class",
    "environment",
    "service",
    "action_hash",
    "summary",
    "status",
    "decided_by",
    "comment",
    "consumed_by",
    "approved_by",
];
const RAW_NUMBERS: [&str; 5] = [
    "created_at",
    "expires_at",
    "decided_at",
    "consumed_at",
    "approvals_needed",
];

fn raw_of(r: &AnyRow) -> serde_json::Value {
    let mut raw = serde_json::Map::new();
    for column in RAW_TEXT {
        let v = r.try_get::<Option<String>, _>(column).ok().flatten();
        raw.insert(column.into(), v.into());
    }
    for column in RAW_NUMBERS {
        let v = r.try_get::<Option<i64>, _>(column).ok().flatten();
        raw.insert(column.into(), v.into());
    }
    serde_json::Value::Object(raw)
}

fn approval_of(r: &AnyRow, now: i64) -> Result<Approval> {
    let expires_at: i64 = r.try_get("expires_at")?;
    let mut status = wire(r, "status", ApprovalStatus::parse)?;
    // Undecided or unused, an approval lapses at its expiry (a used one stays `consumed`).
    if matches!(status, ApprovalStatus::Pending | ApprovalStatus::Approved) && expires_at <= now {
        status = ApprovalStatus::Expired;
    }
    let summary: String = r.try_get("summary")?;
    let approved_by: String = r.try_get("approved_by")?;
    let time = |column: &str| -> Result<Option<String>> {
        Ok(r.try_get::<Option<i64>, _>(column)?.map(format_micros))
    };
    Ok(Approval {
        id: r.try_get("id")?,
        status,
        decision_id: r.try_get("decision_id")?,
        agent: r.try_get("agent_id")?,
        on_behalf_of: r.try_get("on_behalf_of")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        service: r.try_get("service")?,
        action_hash: r.try_get("action_hash")?,
        summary: serde_json::from_str(&summary).map_err(StoreError::bug)?,
        created_at: format_micros(r.try_get("created_at")?),
        expires_at: format_micros(expires_at),
        approvals_needed: r.try_get("approvals_needed")?,
        approved_by: serde_json::from_str(&approved_by).map_err(StoreError::bug)?,
        decided_by: r.try_get("decided_by")?,
        decided_at: time("decided_at")?,
        comment: r.try_get("comment")?,
        consumed_by: r.try_get("consumed_by")?,
        consumed_at: time("consumed_at")?,
        expires_at_micros: expires_at,
    })
}

impl Store {
    /// One approval, with `pending` or `approved` shown as `expired` once `now` (Unix microseconds) is past its expiry.
    /// A stored approval that does not read back is [`StoreError::Unreadable`].
    pub async fn approval(&self, id: &str, now: i64) -> Result<Option<Approval>> {
        let row = sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(|r| approval_of(r, now).map_err(|e| unreadable(id, &e)))
            .transpose()
    }

    /// Approvals moved out of the way, newest first.
    pub async fn quarantined_approvals(&self, limit: i64) -> Result<Vec<QuarantinedApproval>> {
        let rows = sqlx::query(&format!(
            "SELECT id, raw, reason, quarantined_by, quarantined_at FROM quarantined_approvals ORDER BY quarantined_at DESC, id LIMIT {}",
            limit.clamp(1, 1000)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let raw: String = r.try_get("raw")?;
                Ok(QuarantinedApproval {
                    id: r.try_get("id")?,
                    // Written by `raw_of`: flat, so it always parses.
                    raw: serde_json::from_str(&raw).map_err(StoreError::bug)?,
                    reason: r.try_get("reason")?,
                    quarantined_by: r.try_get("quarantined_by")?,
                    quarantined_at: format_micros(r.try_get("quarantined_at")?),
                })
            })
            .collect()
    }

    /// Approvals by status (as of `now`) and agent, oldest first, after an id.
    pub async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        agent: Option<&str>,
        after: Option<&str>,
        limit: i64,
        now: i64,
    ) -> Result<Listed<Approval>> {
        let mut w = Filters::new(APPROVAL_COLUMNS);
        match status {
            Some(s @ (ApprovalStatus::Pending | ApprovalStatus::Approved)) => {
                w.cond("status", "=", Arg::Text(s.as_str().into()));
                w.int("expires_at", ">", Some(now));
            }
            Some(ApprovalStatus::Expired) => {
                w.sql.push_str(" AND status IN ('pending', 'approved')");
                w.int("expires_at", "<=", Some(now));
            }
            other => w.text("status", &other.map(|s| s.as_str().to_string())),
        }
        w.text("agent_id", &agent.map(String::from));
        w.text_op("id", ">", after);
        let rows = w
            .fetch_all(
                &format!(" ORDER BY id LIMIT {}", limit.clamp(1, 1001)),
                &self.pool,
            )
            .await?;
        Ok(Listed::read(&rows, "approval", |r| approval_of(r, now)))
    }

    /// Approvals that lapsed undecided before `now` and whose expiry is not yet announced, in
    /// order of expiry after `after`, and where the next page starts (the last row's place,
    /// whether it read back or not, so rows that do not read back cannot hold the others up).
    ///
    /// The walk is along `approvals_lapsing`, which holds only pending approvals whose expiry
    /// is not announced, by expiry: it reads the lapsed ones and stops, however many are still
    /// pending (every second, on every replica).
    pub async fn unannounced_expiries(
        &self,
        now: i64,
        after: &ExpiryCursor,
        limit: i64,
    ) -> Result<(Listed<Approval>, Option<ExpiryCursor>)> {
        let rows = sqlx::query(&lapsed_sql(limit))
            .bind(now)
            .bind(after.expires_at)
            .bind(&after.id)
            .fetch_all(&self.pool)
            .await?;
        let next = rows.last().map(|r| ExpiryCursor {
            expires_at: sqlx::Row::try_get(r, "expires_at").unwrap_or(after.expires_at),
            id: sqlx::Row::try_get(r, "id").unwrap_or_default(),
        });
        Ok((
            Listed::read(&rows, "approval", |r| approval_of(r, now)),
            next,
        ))
    }
}

/// The sweep's query: lapsed approvals not yet announced, after a place, by expiry.
fn lapsed_sql(limit: i64) -> String {
    format!(
        "{APPROVAL_COLUMNS} WHERE status = 'pending' AND expiry_notified = 0 AND expires_at <= $1 \
         AND (expires_at, id) > ($2, $3) ORDER BY expires_at, id LIMIT {}",
        limit.clamp(1, 1000)
    )
}

/// A place in the walk of lapsed approvals: after this expiry, and this id among approvals that
/// lapsed at the same time. The default is the walk's start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpiryCursor {
    expires_at: i64,
    id: String,
}

impl Default for ExpiryCursor {
    fn default() -> Self {
        ExpiryCursor {
            expires_at: i64::MIN,
            id: String::new(),
        }
    }
}

/// Inserts new pending approvals, a multi-row `INSERT` per
/// [`crate::writer::ROWS_PER_INSERT`] rows: a new approval cannot fail for a logical reason, so
/// the writer gathers a batch's approvals into one statement.
/// New approval rows, for one multi-row INSERT.
pub(crate) fn approval_rows<'a>() -> Table<'a, ApprovalRow> {
    Table::<ApprovalRow>::new(
        "approvals (id, decision_id, agent_id, on_behalf_of, class, environment, service, action_hash, summary, status, created_at, expires_at, \
             approvals_needed)",
        13,
        |q, a| {
            q.bind(&a.id)
                .bind(&a.decision_id)
                .bind(&a.agent_id)
                .bind(&a.on_behalf_of)
                .bind(&a.class)
                .bind(&a.environment)
                .bind(&a.service)
                .bind(&a.action_hash)
                .bind(&a.summary)
                .bind(ApprovalStatus::Pending.as_str())
                .bind(a.created_at)
                .bind(a.expires_at)
                .bind(a.approvals_needed)
        },
    )
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &ApprovalWrite) -> Applied {
    Ok(match write {
        ApprovalWrite::Quarantine { id, by, reason, at } => {
            // Removed and read in one statement, so what is kept is what was removed, whatever
            // another replica did to the row meanwhile (and a second quarantine finds none).
            let row = sqlx::query(&format!(
                "DELETE FROM approvals WHERE id = $1 RETURNING {APPROVAL_FIELDS}"
            ))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else {
                return Ok(missing(0, Missing::Approval, format!("no approval `{id}`")));
            };
            sqlx::query(
                "INSERT INTO quarantined_approvals (id, raw, reason, quarantined_by, quarantined_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(raw_of(&row).to_string())
            .bind(reason)
            .bind(by)
            .bind(*at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        ApprovalWrite::NoteApprovalExpired { id } => {
            let n = sqlx::query(
                "UPDATE approvals SET expiry_notified = 1 WHERE id = $1 AND expiry_notified = 0",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::ExpiryNoted,
                format!("the expiry of approval `{id}` was already announced"),
            )
        }
        ApprovalWrite::InsertApproval(a) => {
            approval_rows().with(a).insert(conn).await?;
            Ok(())
        }
        ApprovalWrite::DecideApproval {
            id,
            approve,
            by,
            at,
            comment,
        } => {
            let n = sqlx::query(
                "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, comment = $4 WHERE id = $5 AND status = 'pending' AND expires_at > $3",
            )
            .bind(if *approve { ApprovalStatus::Approved } else { ApprovalStatus::Rejected }.as_str())
            .bind(by)
            .bind(*at)
            .bind(comment)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::ApprovalNotPending,
                format!("approval `{id}` is no longer pending (decided or expired)"),
            )
        }
        ApprovalWrite::AddApprover {
            id,
            by,
            at,
            comment,
            before,
            after,
            complete,
        } => {
            let (decided_by, decided_at) = if *complete {
                (Some(by.clone()), Some(*at))
            } else {
                (None, None)
            };
            let n = sqlx::query(
                "UPDATE approvals SET status = $1, approved_by = $2, decided_by = COALESCE($3, decided_by), decided_at = COALESCE($4, decided_at), \
                 comment = COALESCE($5, comment) WHERE id = $6 AND status = 'pending' AND expires_at > $7 AND approved_by = $8",
            )
            .bind(if *complete { ApprovalStatus::Approved } else { ApprovalStatus::Pending }.as_str())
            .bind(after)
            .bind(decided_by)
            .bind(decided_at)
            .bind(comment)
            .bind(id)
            .bind(*at)
            .bind(before)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::ApprovalChanged,
                format!(
                    "approval `{id}` changed meanwhile (another approver, or decided or expired)"
                ),
            )
        }
        ApprovalWrite::ConsumeApproval {
            id,
            decision_id,
            at,
        } => {
            let n = sqlx::query(
                "UPDATE approvals SET status = 'consumed', consumed_by = $1, consumed_at = $2 WHERE id = $3 AND status = 'approved' AND expires_at > $2",
            )
            .bind(decision_id)
            .bind(*at)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::ApprovalUsed,
                format!(
                    "approval `{id}` was used by another decision at the same time, or has just expired"
                ),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The sweep walks `approvals_lapsing` in its order, not every pending approval (SQLite's
    /// plan; PostgreSQL's is in BENCHMARKS.md, 2026-12-06).
    #[tokio::test]
    async fn the_sweep_walks_only_lapsed_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::test_store(dir.path(), 1, Duration::ZERO).await;
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", lapsed_sql(100)))
            .bind(0_i64)
            .bind(0_i64)
            .bind("")
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
            .collect();
        assert_eq!(
            plan,
            [
                "SEARCH approvals USING INDEX approvals_lapsing (status=? AND (expires_at,id)>(?,?) AND expires_at<?)"
            ],
            "{plan:?}"
        );
    }
}
