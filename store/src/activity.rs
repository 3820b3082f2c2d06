//! An agent's recent activity of one kind of action, from Warden's decisions and from the
//! platform's events. The anomaly stage asks on every decision, so both tables are read in one
//! statement: one hand-off to the database, not two.

use sqlx::Row as _;
use warden_core::decision::Verdict;
use warden_core::records::Activity;

use crate::Store;
use crate::error::Result;

/// An agent's activity of one kind from the platform's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventActivity {
    /// Events since the window start.
    pub recent: u32,
    /// Whether the agent did this kind of action before the window.
    pub done_before: bool,
}

/// An agent's activity of one kind, as each table tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentActivity {
    /// From Warden's decisions.
    pub decided: Activity,
    /// From the platform's events.
    pub done: EventActivity,
}

// Each count stops at `$6` (LIMIT inside, COUNT outside) and each "before" at its first row, so
// a busy agent's decision reads no more of its history than the cap. Decisions answer from the
// index on (agent, kind, verdict, time): the count names every verdict so that it seeks each
// one's range from `$5`, and "ever allowed" is one seek. Events answer from the partial index
// of agents' events.
const SQL: &str = "SELECT \
    (SELECT COUNT(*) FROM (SELECT 1 FROM decisions WHERE agent_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND verdict IN ('allow', 'require_approval', 'deny') AND at >= $5 LIMIT $6) AS dr) AS decided_recent, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM decisions WHERE agent_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND verdict = 'allow' LIMIT 1) AS da) AS decided_allowed, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE actor_kind = 'agent' AND actor_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND at >= $5 LIMIT $6) AS er) AS done_recent, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE actor_kind = 'agent' AND actor_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND at < $5 LIMIT 1) AS eb) AS done_before";

// The count above names every verdict: a new one does not compile here until it is named there.
const _: () = match Verdict::Allow {
    Verdict::Allow | Verdict::RequireApproval | Verdict::Deny => (),
};

impl Store {
    /// An agent's activity of one kind (class, environment, service) since `since` (Unix
    /// microseconds): in decisions, how many since then, counted up to `at_most`, and whether it
    /// was ever allowed the kind; in events, how many since then, up to `at_most`, and whether
    /// it did the kind before then.
    pub async fn activity(
        &self,
        agent: &str,
        class: &str,
        environment: &str,
        service: &str,
        since: i64,
        at_most: u32,
    ) -> Result<AgentActivity> {
        let (_turn, mut conn) = self.readers.take().await?;
        let row = sqlx::query(SQL)
            .bind(agent)
            .bind(class)
            .bind(environment)
            .bind(service)
            .bind(since)
            .bind(i64::from(at_most))
            .fetch_one(&mut conn)
            .await?;
        self.readers.give_back(conn);
        let count = |column: &str| -> Result<u32> {
            let n: i64 = row.try_get(column)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        Ok(AgentActivity {
            decided: Activity {
                recent: count("decided_recent")?,
                done_before: count("decided_allowed")? > 0,
            },
            done: EventActivity {
                recent: count("done_recent")?,
                done_before: count("done_before")? > 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite_tests::{migrated, plan};

    /// Both reads of decisions seek the agent's kind and a verdict in the index: "ever allowed"
    /// once walked a never-allowed kind's whole history, reading each row for its verdict.
    #[tokio::test]
    async fn decisions_are_read_by_kind_and_verdict() {
        let seek = "USING COVERING INDEX decisions_agent_kind_verdict_at (agent_id=? AND class=? \
                    AND environment=? AND service=? AND verdict=?";
        let now = plan(&migrated(i64::MAX).await, SQL).await;
        assert_eq!(
            now.iter().filter(|step| step.contains(seek)).count(),
            2,
            "{now:?}"
        );
        let before = plan(&migrated(25).await, SQL).await;
        assert!(!before.iter().any(|step| step.contains(seek)), "{before:?}");
    }
}
