//! The store's part for outcomes, metric signals and rollback requests: reads, and how each of its writes is applied.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::clock::format_micros;
use warden_core::policy::RiskLevel;
use warden_core::records::{
    Confirmation, ConfirmationStatus, Confirmations, Outcome, OutcomeStatus,
};

use crate::error::{Conflict, Result};
use crate::writer::{Applied, affected};
use crate::{Store, Write, wire_opt};

/// A write to outcomes, metric signals and rollback requests.
#[derive(Debug, Clone)]
pub enum OutcomeWrite {
    /// Holds only while the decision's outcome is still `outcome` (409 `outcome_reported`
    /// otherwise): what was read is what the change rests on.
    ExpectOutcome {
        /// The decision.
        decision_id: String,
        /// The outcome read, or none.
        outcome: Option<OutcomeStatus>,
    },
    /// Record a decision's outcome; 409 if a real one (not `unknown`) is there already.
    ReportOutcome {
        /// The decision.
        decision_id: String,
        /// `succeeded`, `failed` or `rolled_back`.
        outcome: OutcomeStatus,
        /// When, Unix microseconds.
        at: i64,
        /// Who reported it.
        by: String,
        /// Detail.
        detail: Option<String>,
        /// Actual cost, US dollars.
        actual_cost_usd: Option<f64>,
        /// The outcome it replaces, as read (none, `unknown`, or a report being corrected);
        /// 409 if it is no longer what is there, so evidence is never counted twice.
        expected: Option<OutcomeStatus>,
    },
    /// Record what the platform said about a decision's outcome.
    ConfirmOutcome {
        /// The decision.
        decision_id: String,
        /// Confirmed or contradicted.
        status: ConfirmationStatus,
        /// The event that said it.
        by: String,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Mark a decision's anomaly confirmed; 409 if it was already.
    ConfirmAnomaly {
        /// The decision.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Record an overdue outcome as `unknown`; 409 if one arrived meanwhile.
    OutcomeOverdue {
        /// The decision.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Record metric samples for a decision, with the judgement they led to.
    InsertSignal {
        /// Signal id (grows with time).
        id: String,
        /// The decision.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
        /// The metric windows, as JSON.
        windows: String,
        /// The judgement after them.
        verdict: String,
    },
    /// Mark a decision's rollback requested; 409 if it already was.
    RequestRollback {
        /// The decision.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
    },
}

impl From<OutcomeWrite> for Write {
    fn from(w: OutcomeWrite) -> Write {
        Write::Outcome(w)
    }
}

const OUTCOME_COLUMNS: &str = "SELECT id, agent_id, verdict, class, environment, service, risk_level, outcome, outcome_due_at, outcome_at, outcome_by, \
     outcome_detail, actual_cost_usd, rollback_requested_at, outcome_confirmation, outcome_confirmed_by, outcome_confirmed_at FROM decisions";

fn outcome_of(r: &AnyRow) -> Result<Outcome> {
    let time = |column: &str| -> Result<Option<String>> {
        Ok(r.try_get::<Option<i64>, _>(column)?.map(format_micros))
    };
    Ok(Outcome {
        decision_id: r.try_get("id")?,
        agent: r.try_get("agent_id")?,
        verdict: r.try_get("verdict")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        service: r.try_get("service")?,
        risk: risk_of(&r.try_get::<String, _>("risk_level")?),
        outcome: wire_opt(r, "outcome", OutcomeStatus::parse)?,
        due_at: time("outcome_due_at")?,
        reported_at: time("outcome_at")?,
        reported_by: r.try_get("outcome_by")?,
        detail: r.try_get("outcome_detail")?,
        actual_cost_usd: r.try_get("actual_cost_usd")?,
        rollback_requested: r
            .try_get::<Option<i64>, _>("rollback_requested_at")?
            .is_some(),
        confirmation: match wire_opt(r, "outcome_confirmation", ConfirmationStatus::parse)? {
            Some(status) => Some(Confirmation {
                status,
                by: r
                    .try_get::<Option<String>, _>("outcome_confirmed_by")?
                    .unwrap_or_default(),
                at: time("outcome_confirmed_at")?.unwrap_or_default(),
            }),
            None => None,
        },
        // Read on its own where it is wanted (`Store::guard`).
        guard: None,
    })
}

/// A stored risk level (the decision's merged risk).
pub(crate) fn risk_of(s: &str) -> RiskLevel {
    [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ]
    .into_iter()
    .find(|r| r.as_str() == s)
    .unwrap_or(RiskLevel::Critical)
}

impl Store {
    /// A decision's outcome (reported, overdue or still due).
    pub async fn outcome(&self, decision_id: &str) -> Result<Option<Outcome>> {
        let row = sqlx::query(&format!("{OUTCOME_COLUMNS} WHERE id = $1"))
            .bind(decision_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(outcome_of).transpose()
    }

    /// How many of an agent's outcomes the platform confirmed and contradicted, and how many it
    /// reported itself that the platform never spoke to.
    pub async fn confirmations(&self, agent_id: &str) -> Result<Confirmations> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN outcome_confirmation = 'confirmed' THEN 1 ELSE 0 END), 0) AS confirmed, \
                    COALESCE(SUM(CASE WHEN outcome_confirmation = 'contradicted' THEN 1 ELSE 0 END), 0) AS contradicted, \
                    COALESCE(SUM(CASE WHEN outcome_confirmation IS NULL AND outcome_by = $1 THEN 1 ELSE 0 END), 0) AS unconfirmed \
             FROM decisions WHERE agent_id = $1 AND outcome IS NOT NULL",
        )
        .bind(agent_id)
        .fetch_one(&self.pool)
        .await?;
        let n =
            |c: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(c)?).unwrap_or(0)) };
        Ok(Confirmations {
            confirmed: n("confirmed")?,
            contradicted: n("contradicted")?,
            self_reported: n("unconfirmed")?,
        })
    }

    /// Whether a decision's anomaly was confirmed already.
    pub async fn anomaly_confirmed(&self, decision_id: &str) -> Result<bool> {
        let at: Option<Option<i64>> =
            sqlx::query_scalar("SELECT anomaly_confirmed_at FROM decisions WHERE id = $1")
                .bind(decision_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(at.flatten().is_some())
    }

    /// A decision's request (JSON), verdict, agent and whether a rollback was requested.
    pub async fn decision_for_signals(
        &self,
        id: &str,
    ) -> Result<Option<(String, String, String, bool)>> {
        let row = sqlx::query(
            "SELECT agent_id, verdict, request, rollback_requested_at FROM decisions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some((
            r.try_get("agent_id")?,
            r.try_get("verdict")?,
            r.try_get("request")?,
            r.try_get::<Option<i64>, _>("rollback_requested_at")?
                .is_some(),
        )))
    }

    /// The latest `limit` batches of metric windows received for a decision (each a JSON list),
    /// newest first, and how many batches there are in all.
    pub async fn signal_windows(
        &self,
        decision_id: &str,
        limit: i64,
    ) -> Result<(Vec<String>, i64)> {
        let sql = format!(
            "SELECT windows FROM signals WHERE decision_id = $1 ORDER BY id DESC LIMIT {}",
            limit.clamp(1, 1000)
        );
        let rows = sqlx::query(&sql)
            .bind(decision_id)
            .fetch_all(&self.pool)
            .await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signals WHERE decision_id = $1")
            .bind(decision_id)
            .fetch_one(&self.pool)
            .await?;
        Ok((
            rows.iter()
                .map(|r| r.try_get("windows"))
                .collect::<std::result::Result<_, _>>()?,
            count,
        ))
    }

    /// An agent's outcomes since `since`: how many, and how many failed, rolled back or went
    /// unreported (the error budget).
    pub async fn outcome_window(
        &self,
        agent: &str,
        since: i64,
    ) -> Result<warden_core::tiering::Window> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN outcome = 'succeeded' THEN 0 ELSE 1 END), 0) AS bad FROM decisions \
             WHERE agent_id = $1 AND outcome IS NOT NULL AND outcome_at >= $2",
        )
        .bind(agent)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(warden_core::tiering::Window {
            outcomes: r.try_get::<i64, _>("n")?.max(0) as u64,
            bad: r.try_get::<i64, _>("bad")?.max(0) as u64,
        })
    }

    /// Decisions whose outcome was due before `now` and never came, oldest first.
    pub async fn overdue_outcomes(&self, now: i64, limit: i64) -> Result<Vec<Outcome>> {
        let sql = format!(
            "{OUTCOME_COLUMNS} WHERE outcome IS NULL AND outcome_due_at <= $1 ORDER BY outcome_due_at LIMIT {}",
            limit.clamp(1, 1000)
        );
        let rows = sqlx::query(&sql).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(outcome_of).collect()
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &OutcomeWrite) -> Applied {
    Ok(match write {
        OutcomeWrite::ReportOutcome {
            decision_id,
            outcome,
            at,
            by,
            detail,
            actual_cost_usd,
            expected,
        } => {
            let n = sqlx::query(
                "UPDATE decisions SET outcome = $1, outcome_at = $2, outcome_by = $3, outcome_detail = $4, actual_cost_usd = $5 \
                 WHERE id = $6 AND COALESCE(outcome, '') = $7",
            )
            .bind(outcome.as_str())
            .bind(*at)
            .bind(by)
            .bind(detail)
            .bind(*actual_cost_usd)
            .bind(decision_id)
            .bind(expected.map_or("", OutcomeStatus::as_str))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::OutcomeReported,
                format!("decision `{decision_id}` already has an outcome"),
            )
        }
        OutcomeWrite::ConfirmOutcome {
            decision_id,
            status,
            by,
            at,
        } => {
            // Once: a second replica handling the same word gets the conflict, not a second
            // violation.
            let n = sqlx::query(
                "UPDATE decisions SET outcome_confirmation = $1, outcome_confirmed_by = $2, outcome_confirmed_at = $3 \
                 WHERE id = $4 AND outcome_confirmation IS NULL",
            )
            .bind(status.as_str())
            .bind(by)
            .bind(*at)
            .bind(decision_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::OutcomeConfirmed,
                format!("decision `{decision_id}` has the platform's word already"),
            )
        }
        OutcomeWrite::ConfirmAnomaly { decision_id, at } => {
            let n = sqlx::query(
                "UPDATE decisions SET anomaly_confirmed_at = $1 WHERE id = $2 AND anomaly_confirmed_at IS NULL",
            )
            .bind(*at)
            .bind(decision_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::AnomalyConfirmed,
                format!("decision `{decision_id}` has its anomaly confirmed already"),
            )
        }
        OutcomeWrite::InsertSignal {
            id,
            decision_id,
            at,
            windows,
            verdict,
        } => {
            sqlx::query("INSERT INTO signals (id, decision_id, at, windows, verdict) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(decision_id)
                .bind(*at)
                .bind(windows)
                .bind(verdict)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
        OutcomeWrite::ExpectOutcome {
            decision_id,
            outcome,
        } => {
            let n = sqlx::query(
                "UPDATE decisions SET outcome = outcome WHERE id = $1 AND COALESCE(outcome, '') = $2",
            )
            .bind(decision_id)
            .bind(outcome.map_or("", |o| o.as_str()))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::OutcomeReported,
                format!("decision `{decision_id}` got another outcome meanwhile"),
            )
        }
        OutcomeWrite::RequestRollback { decision_id, at } => {
            let n = sqlx::query("UPDATE decisions SET rollback_requested_at = $1 WHERE id = $2 AND rollback_requested_at IS NULL")
                .bind(*at)
                .bind(decision_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(
                n,
                Conflict::RollbackRequested,
                format!("a rollback of decision `{decision_id}` was requested already"),
            )
        }
        OutcomeWrite::OutcomeOverdue { decision_id, at } => {
            let n = sqlx::query("UPDATE decisions SET outcome = 'unknown', outcome_at = $1 WHERE id = $2 AND outcome IS NULL")
                .bind(*at)
                .bind(decision_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(
                n,
                Conflict::OutcomeReported,
                format!("decision `{decision_id}` has an outcome already"),
            )
        }
    })
}
