//! The store's part for weekly reports: the facts a report is computed from, read for a span of
//! time and a scope, and the reports kept once made.
//!
//! A decision's answer is read only when it holds something the report needs (a denial's
//! quota, an anomaly finding, a failed plugin call), which the decision marked `notable` when
//! it was written, so a week of a million unremarkable decisions moves no JSON at all.

use futures::TryStreamExt as _;
use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::decision::Verdict;
use warden_core::plugin::{CallStatus, FailurePolicy};
use warden_core::records::{ApprovalStatus, OutcomeStatus};
use warden_core::report::{
    AgentFact, ApprovalFact, DecisionFact, DriftFact, HumanFact, PluginIssue, Scope,
    TierChangeFact, TrustFact, ViolationFact,
};

use crate::error::{Conflict, Result, StoreError};
use crate::writer::Applied;
use crate::{Store, Write, wire, wire_opt};

const DAY_US: i64 = 86_400_000_000;

/// A write to stored reports.
#[derive(Debug, Clone)]
pub enum ReportWrite {
    /// Keeps a report; a conflict if one is kept for the same week and scope (another replica
    /// made it first), so the change it is part of (its announcement) is not applied twice.
    Keep(StoredReport),
}

impl From<ReportWrite> for Write {
    fn from(w: ReportWrite) -> Write {
        Write::Report(w)
    }
}

/// A kept report.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    /// `2026-W48`.
    pub week: String,
    /// [`Scope::key`].
    pub scope: String,
    /// Unix microseconds.
    pub generated_at: i64,
    /// The report's JSON.
    pub report: String,
}

/// One of an agent's decisions, as its page lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentDecision {
    /// Decision id.
    pub id: String,
    /// Unix microseconds.
    pub at: i64,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Risk level.
    pub risk: String,
    /// The outcome on record.
    pub outcome: Option<OutcomeStatus>,
}

/// The scope as SQL over a column holding agent ids, with the value to bind as `$n`.
fn scope_sql(scope: &Scope, column: &str, n: usize) -> (String, Option<String>) {
    match scope {
        Scope::Organisation => (String::new(), None),
        Scope::Team(t) => (
            format!(" AND {column} IN (SELECT id FROM agents WHERE team = ${n})"),
            Some(t.clone()),
        ),
        Scope::Agent(a) => (format!(" AND {column} = ${n}"), Some(a.clone())),
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the scope's value, where it has one.
fn bind_scope(q: Query<'_>, value: Option<String>) -> Query<'_> {
    match value {
        Some(v) => q.bind(v),
        None => q,
    }
}

/// The parts of a decision's answer the report reads (serde skips the rest).
#[derive(Deserialize)]
struct AnswerParts {
    #[serde(default)]
    reasons: Vec<ReasonPart>,
    #[serde(default)]
    anomaly: Option<AnomalyPart>,
    #[serde(default)]
    plugins: Vec<PluginPart>,
}

#[derive(Deserialize)]
struct ReasonPart {
    #[serde(default)]
    quota: Option<String>,
}

#[derive(Deserialize)]
struct AnomalyPart {
    #[serde(default)]
    severity: Option<u8>,
    #[serde(default)]
    findings: Vec<FindingPart>,
}

#[derive(Deserialize)]
struct FindingPart {
    message: String,
}

#[derive(Deserialize)]
struct PluginPart {
    plugin: String,
    outcome: CallStatus,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    failure_policy: Option<FailurePolicy>,
}

fn decision_fact(r: &AnyRow) -> Result<DecisionFact> {
    let answer: Option<String> = r.try_get("answer")?;
    // An answer that does not read back costs the report its details, never the report.
    let parts = answer.and_then(|a| match serde_json::from_str::<AnswerParts>(&a) {
        Ok(p) => Some(p),
        Err(e) => {
            let id: Option<String> = r.try_get("id").unwrap_or_default();
            tracing::warn!(decision = id.as_deref().unwrap_or(""), error = %e, "a stored answer does not read back; the report counts the decision without its details");
            None
        }
    });
    let anomaly = parts
        .as_ref()
        .and_then(|p| p.anomaly.as_ref())
        .and_then(|a| a.severity)
        .filter(|s| *s > 0);
    let findings = match (&parts, anomaly) {
        (Some(p), Some(_)) => p
            .anomaly
            .iter()
            .flat_map(|a| &a.findings)
            .map(|f| f.message.clone())
            .collect(),
        _ => Vec::new(),
    };
    // The quota a denial names (`Reason.quota`, set only for `quota_exceeded`).
    let quota = parts
        .as_ref()
        .and_then(|p| p.reasons.iter().find_map(|r| r.quota.clone()));
    let plugin_issues = parts
        .iter()
        .flat_map(|p| &p.plugins)
        .filter(|p| p.outcome != CallStatus::Ok)
        .map(|p| PluginIssue {
            plugin: p.plugin.clone(),
            limit: p
                .error
                .as_deref()
                .is_some_and(warden_core::report::is_limit),
            fail_closed: p.failure_policy == Some(FailurePolicy::FailClosed),
        })
        .collect();
    let due: Option<i64> = r.try_get("outcome_due_at")?;
    let id: Option<String> = r.try_get("id")?;
    let n: i64 = r.try_get("n")?;
    Ok(DecisionFact {
        id: id.unwrap_or_default(),
        count: n.max(0) as u64,
        at: r.try_get("at")?,
        agent: r.try_get("agent_id")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        verdict: wire(r, "verdict", Verdict::parse)?,
        shadow_verdict: wire_opt(r, "shadow_verdict", Verdict::parse)?,
        outcome_expected: due.is_some(),
        outcome: wire_opt(r, "outcome", OutcomeStatus::parse)?,
        anomaly,
        findings,
        quota,
        plugin_issues,
    })
}

fn small(v: i64) -> Result<u8> {
    u8::try_from(v).map_err(|_| StoreError::Bug(format!("stored tier {v} is out of range")))
}

fn date_of(day: &str) -> Result<jiff::civil::Date> {
    day.parse()
        .map_err(|_| StoreError::Bug(format!("stored day `{day}` is not a date")))
}

impl Store {
    /// The agents in scope, as they are now.
    pub async fn report_agents(&self, scope: &Scope) -> Result<Vec<AgentFact>> {
        let (clause, bind) = scope_sql(scope, "id", 1);
        let sql = format!("SELECT id, team, tier FROM agents WHERE 1 = 1{clause} ORDER BY id");
        let rows = bind_scope(sqlx::query(&sql), bind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentFact {
                    id: r.try_get("id")?,
                    team: r.try_get("team")?,
                    tier: small(r.try_get("tier")?)?,
                })
            })
            .collect()
    }

    /// The decisions of agents in scope between the first and the last of `days` (the instants
    /// days start at, and the end), in no particular order. Alike decisions of a day come as one
    /// fact with their `count`: the database groups them, so a million decisions cross as a few
    /// thousand rows. A notable decision (with its answer) is always a fact of its own.
    pub async fn report_decisions(&self, scope: &Scope, days: &[i64]) -> Result<Vec<DecisionFact>> {
        let (Some(&from), Some(&to)) = (days.first(), days.last()) else {
            return Ok(Vec::new());
        };
        let (clause, bind) = scope_sql(scope, "agent_id", 3);
        // The day boundaries are Warden's own integers, written into the text.
        let day: String = days[1..days.len() - 1]
            .iter()
            .enumerate()
            .map(|(i, b)| format!("WHEN at < {b} THEN {i} "))
            .collect();
        let grouped = format!(
            "SELECT MIN(at) AS at, agent_id, class, environment, verdict, shadow_verdict, \
             MAX(outcome_due_at) AS outcome_due_at, outcome, COUNT(*) AS n, CAST(NULL AS TEXT) AS id, CAST(NULL AS TEXT) AS answer \
             FROM decisions WHERE at >= $1 AND at < $2 AND notable = 0{clause} \
             GROUP BY CASE {day}ELSE {last} END, agent_id, class, environment, verdict, shadow_verdict, \
             outcome_due_at IS NULL, outcome",
            last = days.len() - 2
        );
        let notable = format!(
            "SELECT at, agent_id, class, environment, verdict, shadow_verdict, outcome_due_at, outcome, \
             1 AS n, id, answer FROM decisions WHERE at >= $1 AND at < $2 AND notable <> 0{clause}"
        );
        let mut out = Vec::new();
        for sql in [grouped, notable] {
            let mut rows =
                bind_scope(sqlx::query(&sql).bind(from).bind(to), bind.clone()).fetch(&self.pool);
            while let Some(r) = rows.try_next().await? {
                out.push(decision_fact(&r)?);
            }
        }
        Ok(out)
    }

    /// The humans' activity in `[from, to)`: every human's, or one team's.
    pub async fn report_humans(
        &self,
        team: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<HumanFact>> {
        let clause = if team.is_some() { " AND team = $3" } else { "" };
        let sql = format!(
            "SELECT at, actor_id, team, class, environment, outcome FROM events \
             WHERE actor_kind = 'human' AND at >= $1 AND at < $2{clause}"
        );
        let mut rows = bind_scope(
            sqlx::query(&sql).bind(from).bind(to),
            team.map(String::from),
        )
        .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(r) = rows.try_next().await? {
            out.push(HumanFact {
                at: r.try_get("at")?,
                actor: r.try_get("actor_id")?,
                team: r.try_get("team")?,
                class: r.try_get("class")?,
                environment: r.try_get("environment")?,
                outcome: wire_opt(&r, "outcome", OutcomeStatus::parse)?,
            });
        }
        Ok(out)
    }

    /// Approval requests made in `[from, to)` by agents in scope.
    pub async fn report_approvals(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<ApprovalFact>> {
        let (clause, bind) = scope_sql(scope, "agent_id", 3);
        let sql = format!(
            "SELECT created_at, agent_id, status, decided_at, decided_by, approved_by FROM approvals \
             WHERE created_at >= $1 AND created_at < $2{clause}"
        );
        let rows = bind_scope(sqlx::query(&sql).bind(from).bind(to), bind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let status = wire(r, "status", ApprovalStatus::parse)?;
                let approved_by: String = r.try_get("approved_by")?;
                let mut deciders: Vec<String> =
                    serde_json::from_str(&approved_by).map_err(StoreError::bug)?;
                if status == ApprovalStatus::Rejected || deciders.is_empty() {
                    let by: Option<String> = r.try_get("decided_by")?;
                    deciders.extend(by.filter(|b| !deciders.contains(b)));
                }
                Ok(ApprovalFact {
                    created_at: r.try_get("created_at")?,
                    agent: r.try_get("agent_id")?,
                    status,
                    decided_at: r.try_get("decided_at")?,
                    deciders,
                })
            })
            .collect()
    }

    /// Violations in `[from, to)` of agents in scope.
    pub async fn report_violations(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<ViolationFact>> {
        let (clause, bind) = scope_sql(scope, "agent_id", 3);
        let sql = format!(
            "SELECT at, agent_id, reason, mode FROM violations WHERE at >= $1 AND at < $2{clause}"
        );
        let rows = bind_scope(sqlx::query(&sql).bind(from).bind(to), bind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ViolationFact {
                    at: r.try_get("at")?,
                    agent: r.try_get("agent_id")?,
                    reason: r.try_get("reason")?,
                    mode: r.try_get("mode")?,
                })
            })
            .collect()
    }

    /// Daily trust of agents in scope for the UTC days `from` and `to` fall on, and those between.
    pub async fn report_trust(&self, scope: &Scope, from: i64, to: i64) -> Result<Vec<TrustFact>> {
        let (clause, bind) = scope_sql(scope, "agent_id", 3);
        let sql = format!(
            "SELECT agent_id, day, score, tier FROM trust_daily WHERE day >= $1 AND day < $2{clause}"
        );
        let q = sqlx::query(&sql)
            .bind(from.div_euclid(DAY_US))
            .bind(to.div_euclid(DAY_US) + 1);
        let rows = bind_scope(q, bind).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let day: i64 = r.try_get("day")?;
                let date = warden_core::clock::format_micros(day * DAY_US);
                Ok(TrustFact {
                    agent: r.try_get("agent_id")?,
                    day: date_of(&date[..10])?,
                    score: r.try_get("score")?,
                    tier: small(r.try_get("tier")?)?,
                })
            })
            .collect()
    }

    /// Tier changes of agents in scope from `from` on (later ones tell the tier before them).
    pub async fn report_tier_changes(
        &self,
        scope: &Scope,
        from: i64,
    ) -> Result<Vec<TierChangeFact>> {
        let (clause, bind) = scope_sql(scope, "agent_id", 2);
        let sql = format!(
            "SELECT agent_id, at, from_tier, to_tier, reason, text FROM tier_changes WHERE at >= $1{clause}"
        );
        let rows = bind_scope(sqlx::query(&sql).bind(from), bind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TierChangeFact {
                    agent: r.try_get("agent_id")?,
                    at: r.try_get("at")?,
                    from: small(r.try_get("from_tier")?)?,
                    to: small(r.try_get("to_tier")?)?,
                    reason: r.try_get("reason")?,
                    text: r.try_get("text")?,
                })
            })
            .collect()
    }

    /// Drift of agents in scope on the days `from` to `to` (`YYYY-MM-DD`, inclusive).
    pub async fn report_drift(
        &self,
        scope: &Scope,
        from: &str,
        to: &str,
    ) -> Result<Vec<DriftFact>> {
        let (clause, bind) = scope_sql(scope, "agent_id", 3);
        let sql = format!("SELECT record FROM drift WHERE day >= $1 AND day <= $2{clause}");
        let rows = bind_scope(sqlx::query(&sql).bind(from).bind(to), bind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let record: String = r.try_get("record")?;
                let d: warden_core::baseline::AgentDrift =
                    serde_json::from_str(&record).map_err(StoreError::bug)?;
                Ok(DriftFact {
                    day: date_of(&d.day)?,
                    agent: d.agent,
                    score: d.score,
                })
            })
            .collect()
    }

    /// An agent's latest decisions, newest first, for its page.
    pub async fn recent_decisions(&self, agent: &str, limit: i64) -> Result<Vec<RecentDecision>> {
        let rows = sqlx::query(
            "SELECT id, at, class, environment, service, verdict, risk_level, outcome FROM decisions \
             WHERE agent_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(agent)
        .bind(limit.clamp(1, 500))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RecentDecision {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    class: r.try_get("class")?,
                    environment: r.try_get("environment")?,
                    service: r.try_get("service")?,
                    verdict: wire(r, "verdict", Verdict::parse)?,
                    risk: r.try_get("risk_level")?,
                    outcome: wire_opt(r, "outcome", OutcomeStatus::parse)?,
                })
            })
            .collect()
    }

    /// A kept report.
    pub async fn stored_report(&self, week: &str, scope: &str) -> Result<Option<StoredReport>> {
        let row = sqlx::query(
            "SELECT week, scope, generated_at, report FROM weekly_reports WHERE week = $1 AND scope = $2",
        )
        .bind(week)
        .bind(scope)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredReport {
                week: r.try_get("week")?,
                scope: r.try_get("scope")?,
                generated_at: r.try_get("generated_at")?,
                report: r.try_get("report")?,
            })
        })
        .transpose()
    }

    /// The kept reports' weeks and scopes, newest week first (without the reports).
    pub async fn stored_reports(&self, limit: i64) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT week, scope, generated_at FROM weekly_reports ORDER BY week DESC, scope LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("week")?,
                    r.try_get("scope")?,
                    r.try_get("generated_at")?,
                ))
            })
            .collect()
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &ReportWrite) -> Applied {
    let ReportWrite::Keep(r) = write;
    let n = sqlx::query(
        "INSERT INTO weekly_reports (week, scope, generated_at, report) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (week, scope) DO NOTHING",
    )
    .bind(&r.week)
    .bind(&r.scope)
    .bind(r.generated_at)
    .bind(&r.report)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(crate::writer::affected(
        n,
        Conflict::ReportKept,
        format!("the {} report for {} is kept already", r.scope, r.week),
    ))
}
