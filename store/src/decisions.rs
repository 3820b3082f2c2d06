//! The store's part for decisions: reads, and how each of its writes is applied.

use futures::TryStreamExt as _;
use sqlx::{AnyConnection, Row as _};
use warden_core::records::DecisionRow;

use crate::error::Result;
use crate::writer::{Applied, Table};
use crate::{Store, Write};

/// A write to decisions.
#[derive(Debug, Clone)]
pub enum DecisionWrite {
    /// Record a decision.
    InsertDecision(DecisionRow),
}

impl From<DecisionWrite> for Write {
    fn from(w: DecisionWrite) -> Write {
        Write::Decision(w)
    }
}

/// New decision rows, for one multi-row INSERT.
pub(crate) fn decision_rows<'a>() -> Table<'a, DecisionRow> {
    Table::<DecisionRow>::new(
        "decisions (id, at, agent_id, on_behalf_of, class, environment, service, verdict, shadow_verdict, risk_level, tier, policy_version, request, answer, \
             outcome_due_at, notable)",
        16,
        |q, d| {
            q.bind(&d.id)
                .bind(d.at)
                .bind(&d.agent_id)
                .bind(&d.on_behalf_of)
                .bind(&d.class)
                .bind(&d.environment)
                .bind(&d.service)
                .bind(d.verdict.as_str())
                .bind(d.shadow_verdict.map(|v| v.as_str()))
                .bind(d.risk_level.as_str())
                .bind(i64::from(d.tier))
                .bind(&d.policy_version)
                .bind(&d.request)
                .bind(&d.answer)
                .bind(d.outcome_due_at)
                .bind(i64::from(d.notable))
        },
    )
}

impl Store {
    /// A recorded decision: its agent and its answer as JSON.
    pub async fn decision(&self, id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT agent_id, answer FROM decisions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("agent_id")?, r.try_get("answer")?)))
            .transpose()?)
    }

    /// A decision's time and request (JSON).
    pub async fn decision_request(&self, id: &str) -> Result<Option<(i64, String, String)>> {
        let row = sqlx::query("SELECT at, request, answer FROM decisions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| {
                Ok::<_, sqlx::Error>((
                    r.try_get("at")?,
                    r.try_get("request")?,
                    r.try_get("answer")?,
                ))
            })
            .transpose()?)
    }
}

/// What an agent was allowed to do, as drift counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedAction {
    /// The agent.
    pub agent_id: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// When, Unix microseconds.
    pub at: i64,
}

impl Store {
    /// Every allowed decision with `from <= at < to`, handed to `each` one at a time.
    pub async fn scan_allowed(
        &self,
        from: i64,
        to: i64,
        mut each: impl FnMut(AllowedAction),
    ) -> Result<u64> {
        let mut rows = sqlx::query(
            "SELECT agent_id, class, environment, service, at FROM decisions \
             WHERE at >= $1 AND at < $2 AND verdict = 'allow' ORDER BY at",
        )
        .bind(from)
        .bind(to)
        .fetch(&self.pool);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            each(AllowedAction {
                agent_id: row.try_get("agent_id")?,
                class: row.try_get("class")?,
                environment: row.try_get("environment")?,
                service: row.try_get("service")?,
                at: row.try_get("at")?,
            });
            n += 1;
        }
        Ok(n)
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &DecisionWrite) -> Applied {
    Ok(match write {
        DecisionWrite::InsertDecision(d) => {
            decision_rows().with(d).insert(conn).await?;
            Ok(())
        }
    })
}
