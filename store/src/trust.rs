//! The store's part for trust evidence, running totals, noted scores and tier changes: reads, and how each of its writes is applied.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::clock::format_micros;
use warden_core::policy::ViolationMode;
use warden_core::records::ViolationReason;
use warden_core::records::{
    ConfirmationStatus, DailyTrust, EvidenceDelta, GuardStatus, OutcomeStatus, TierChange,
};
use warden_core::trust::Source;

use crate::dialect::Backend;
use crate::error::{Result, StoreError};
use crate::identities::small;
use crate::outcomes::risk_of;
use crate::writer::{Applied, ROWS_PER_INSERT, multi_insert};
use crate::{Store, Write, wire_opt};

/// A write to trust evidence, running totals, noted scores and tier changes.
#[derive(Debug, Clone)]
pub enum TrustWrite {
    /// Add (or, with a negative `delta`, take back) trust evidence to the agent's running
    /// totals; never fails for a logical reason.
    AddEvidence(EvidenceDelta),
    /// Note an agent's trust score after new evidence (and its day in the trust history),
    /// computed from its running totals inside the transaction, after the evidence written
    /// before it.
    NoteTrust {
        /// The agent.
        agent_id: String,
        /// Its tier.
        tier: u8,
        /// When, Unix microseconds.
        at: i64,
        /// How evidence weighs.
        policy: warden_core::trust::TrustPolicy,
    },
    /// Record a tier change in the agent's history (written with the `UpdateAgent` that makes it).
    RecordTierChange(TierChange),
}

impl From<TrustWrite> for Write {
    fn from(w: TrustWrite) -> Write {
        Write::Trust(w)
    }
}

const TOTALS_SQL: &str = "SELECT environment, risk_level, kind, amount, as_of, count FROM trust_totals WHERE agent_id = $1";

/// One running total (none for a kind this version does not know).
fn total_of(r: &AnyRow) -> std::result::Result<Option<warden_core::trust::Total>, sqlx::Error> {
    let Some(kind) = warden_core::trust::Kind::parse(&r.try_get::<String, _>("kind")?) else {
        return Ok(None);
    };
    Ok(Some(warden_core::trust::Total {
        environment: r.try_get("environment")?,
        risk: risk_of(&r.try_get::<String, _>("risk_level")?),
        kind,
        decayed: warden_core::trust::Decayed {
            amount: r.try_get("amount")?,
            as_of: r.try_get("as_of")?,
        },
        count: r.try_get("count")?,
    }))
}

/// Who vouches for a decision's outcome, from its `outcome_by` and `outcome_confirmation`.
fn source_of(r: &AnyRow, agent: &str) -> std::result::Result<Source, sqlx::Error> {
    let by: Option<String> = r.try_get("outcome_by")?;
    let confirmation: Option<String> = r.try_get("outcome_confirmation")?;
    Ok(Source::of_report(
        agent,
        by.as_deref(),
        confirmation.as_deref() == Some(ConfirmationStatus::Confirmed.as_str()),
    ))
}

/// Adds evidence to one running total: `deltas` all share its key (agent, environment, risk,
/// kind) and apply in order, so a batch's evidence for one total costs two statements: the
/// row created if missing and read back, locked (on PostgreSQL another replica may be adding
/// to it; the no-op update takes the lock), then decayed and added to.
async fn add_evidence(
    conn: &mut AnyConnection,
    deltas: &[&EvidenceDelta],
) -> std::result::Result<(), sqlx::Error> {
    let Some(first) = deltas.first() else {
        return Ok(());
    };
    let key = (
        first.agent_id.as_str(),
        first.environment.as_str(),
        first.risk.as_str(),
        first.kind.as_str(),
    );
    let row = sqlx::query(
        "INSERT INTO trust_totals (agent_id, environment, risk_level, kind, amount, as_of, count) VALUES ($1, $2, $3, $4, 0, $5, 0) \
         ON CONFLICT (agent_id, environment, risk_level, kind) DO UPDATE SET count = trust_totals.count \
         RETURNING amount, as_of, count",
    )
    .bind(key.0)
    .bind(key.1)
    .bind(key.2)
    .bind(key.3)
    .bind(first.at)
    .fetch_one(&mut *conn)
    .await?;
    let mut total = warden_core::trust::Decayed {
        amount: row.try_get("amount")?,
        as_of: row.try_get("as_of")?,
    };
    let mut count: i64 = row.try_get("count")?;
    for e in deltas {
        total = total.add(e.delta as f64, e.at, e.half_life_us);
        count += e.delta;
    }
    sqlx::query("UPDATE trust_totals SET amount = $1, as_of = $2, count = $3 WHERE agent_id = $4 AND environment = $5 AND risk_level = $6 AND kind = $7")
        .bind(total.amount)
        .bind(total.as_of)
        .bind(count)
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .bind(key.3)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A batch's trust writes, applied together after its other writes: evidence summed per
/// running total, and each agent's score noted once, from the totals with all of it. Neither
/// can fail for a logical reason, and nothing else in a transaction reads what they write, so
/// coalescing changes no result: a flood of denials for one agent costs a few statements per
/// batch, not a few per denial.
#[derive(Debug, Default)]
pub(crate) struct TrustBatch<'a> {
    evidence: HashMap<(&'a str, &'a str, &'static str, &'static str), Vec<&'a EvidenceDelta>>,
    notes: HashMap<&'a str, Note<'a>>,
}

/// An agent's score to note: the latest request wins.
#[derive(Debug)]
struct Note<'a> {
    tier: u8,
    at: i64,
    policy: &'a warden_core::trust::TrustPolicy,
}

impl<'a> TrustBatch<'a> {
    /// Takes evidence into the batch.
    pub(crate) fn evidence(&mut self, e: &'a EvidenceDelta) {
        let key = (
            e.agent_id.as_str(),
            e.environment.as_str(),
            e.risk.as_str(),
            e.kind.as_str(),
        );
        self.evidence.entry(key).or_default().push(e);
    }

    /// Notes an agent's score once the batch's evidence is in (the latest request wins).
    pub(crate) fn note(
        &mut self,
        agent_id: &'a str,
        tier: u8,
        at: i64,
        policy: &'a warden_core::trust::TrustPolicy,
    ) {
        let note = Note { tier, at, policy };
        match self.notes.get_mut(agent_id) {
            Some(n) if n.at > at => {}
            Some(n) => *n = note,
            None => {
                self.notes.insert(agent_id, note);
            }
        }
    }

    /// Writes the batch's evidence, then notes the scores; returns each agent's noted score.
    pub(crate) async fn flush(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<Vec<(String, f64)>, sqlx::Error> {
        for deltas in self.evidence.values() {
            add_evidence(conn, deltas).await?;
        }
        let mut noted = Vec::with_capacity(self.notes.len());
        for (agent_id, note) in &self.notes {
            let score = note_trust(conn, agent_id, note.tier, note.at, note.policy).await?;
            noted.push((agent_id.to_string(), score));
        }
        Ok(noted)
    }
}

/// Notes an agent's score from its running totals (and its day in the trust history).
async fn note_trust(
    conn: &mut AnyConnection,
    agent_id: &str,
    tier: u8,
    at: i64,
    policy: &warden_core::trust::TrustPolicy,
) -> std::result::Result<f64, sqlx::Error> {
    let rows = sqlx::query(TOTALS_SQL)
        .bind(agent_id)
        .fetch_all(&mut *conn)
        .await?;
    let totals = rows
        .iter()
        .map(total_of)
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    let score = warden_core::trust::weigh(
        &totals.into_iter().flatten().collect::<Vec<_>>(),
        at,
        policy,
        |_| true,
    )
    .score();
    sqlx::query(Backend::of(conn).note_score())
        .bind(score)
        .bind(agent_id)
        .bind(at.div_euclid(DAY_US))
        .bind(i64::from(tier))
        .execute(&mut *conn)
        .await?;
    Ok(score)
}

const DAY_US: i64 = 86_400_000_000;

impl Store {
    /// An agent's running trust totals.
    pub async fn trust_totals(&self, agent: &str) -> Result<Vec<warden_core::trust::Total>> {
        let rows = sqlx::query(TOTALS_SQL)
            .bind(agent)
            .fetch_all(&self.pool)
            .await?;
        let totals = rows
            .iter()
            .map(total_of)
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        Ok(totals.into_iter().flatten().collect())
    }

    /// The outcomes since `since` of an agent's actions that used a human's approval: the
    /// watched work promotions rest on, oldest first.
    pub async fn watched_work(
        &self,
        agent: &str,
        since: i64,
    ) -> Result<Vec<warden_core::tiering::Watched>> {
        let rows = sqlx::query(
            "SELECT d.id, d.class, d.environment, d.service, d.risk_level, d.outcome, d.outcome_at, d.outcome_by, d.outcome_confirmation \
             FROM decisions d JOIN approvals a ON a.consumed_by = d.id \
             WHERE d.agent_id = $1 AND d.outcome IS NOT NULL AND d.outcome_at >= $2 ORDER BY d.outcome_at, d.id",
        )
        .bind(agent)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut work = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(outcome) = wire_opt(r, "outcome", OutcomeStatus::parse)? else {
                continue;
            };
            work.push(warden_core::tiering::Watched {
                decision_id: r.try_get("id")?,
                class: r.try_get("class")?,
                environment: r.try_get("environment")?,
                service: r.try_get("service")?,
                risk: risk_of(&r.try_get::<String, _>("risk_level")?),
                outcome,
                source: source_of(r, agent)?,
                at: r.try_get::<Option<i64>, _>("outcome_at")?.unwrap_or(0),
            });
        }
        Ok(work)
    }

    /// An agent's outcomes reported since `since`, with who vouched for each (for a replay).
    pub async fn recorded_outcomes(
        &self,
        agent: &str,
        since: i64,
    ) -> Result<Vec<warden_core::replay::RecordedOutcome>> {
        let rows = sqlx::query(
            "SELECT environment, risk_level, outcome, outcome_at, outcome_by, outcome_confirmation FROM decisions \
             WHERE agent_id = $1 AND outcome IS NOT NULL AND outcome_at >= $2",
        )
        .bind(agent)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(outcome) = wire_opt(r, "outcome", OutcomeStatus::parse)? else {
                continue;
            };
            outcomes.push(warden_core::replay::RecordedOutcome {
                outcome,
                source: source_of(r, agent)?,
                environment: r.try_get("environment")?,
                risk: risk_of(&r.try_get::<String, _>("risk_level")?),
                at: r.try_get::<Option<i64>, _>("outcome_at")?.unwrap_or(0),
            });
        }
        Ok(outcomes)
    }

    /// An agent's violations since `since`, with the risk of what was attempted (for a replay).
    pub async fn recorded_violations(
        &self,
        agent: &str,
        since: i64,
    ) -> Result<Vec<warden_core::replay::RecordedViolation>> {
        let rows = sqlx::query(
            "SELECT v.reason, v.mode, v.class, v.environment, d.risk_level, v.at FROM violations v JOIN decisions d ON d.id = v.decision_id \
             WHERE v.agent_id = $1 AND v.at >= $2",
        )
        .bind(agent)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(warden_core::replay::RecordedViolation {
                    reason: crate::wire(r, "reason", ViolationReason::parse)?,
                    mode: ViolationMode::parse(&r.try_get::<String, _>("mode")?)
                        .unwrap_or(ViolationMode::Block),
                    class: r.try_get("class")?,
                    environment: r.try_get("environment")?,
                    risk: risk_of(&r.try_get::<String, _>("risk_level")?),
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// The tier an agent had at `at`: where its first change since then came from, or its
    /// tier now.
    pub async fn tier_at(&self, agent: &str, at: i64) -> Result<Option<u8>> {
        let row = sqlx::query(
            "SELECT from_tier FROM tier_changes WHERE agent_id = $1 AND at >= $2 ORDER BY at, id LIMIT 1",
        )
        .bind(agent)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| small(r.try_get("from_tier")?)).transpose()
    }

    /// An agent's tier changes, newest first.
    pub async fn tier_changes(
        &self,
        agent: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<TierChange>> {
        let sql = format!(
            "SELECT id, agent_id, at, from_tier, to_tier, reason, text, actor, score, evidence FROM tier_changes WHERE agent_id = $1 AND at >= $2 \
             ORDER BY at DESC, id DESC LIMIT {}",
            limit.clamp(1, 1000)
        );
        let rows = sqlx::query(&sql)
            .bind(agent)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TierChange {
                    id: r.try_get("id")?,
                    agent: r.try_get("agent_id")?,
                    at: format_micros(r.try_get("at")?),
                    from: small(r.try_get("from_tier")?)?,
                    to: small(r.try_get("to_tier")?)?,
                    reason: r.try_get("reason")?,
                    text: r.try_get("text")?,
                    actor: r.try_get("actor")?,
                    score: r.try_get("score")?,
                    evidence: serde_json::from_str(&r.try_get::<String, _>("evidence")?)
                        .map_err(StoreError::bug)?,
                })
            })
            .collect()
    }

    /// An agent's daily score and tier since `since`, oldest first.
    pub async fn trust_daily(&self, agent: &str, since: i64) -> Result<Vec<DailyTrust>> {
        let rows = sqlx::query("SELECT day, score, tier FROM trust_daily WHERE agent_id = $1 AND day >= $2 ORDER BY day")
            .bind(agent)
            .bind(since.div_euclid(DAY_US))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let day = format_micros(r.try_get::<i64, _>("day")? * DAY_US);
                Ok(DailyTrust {
                    day: day[..10].to_string(),
                    score: r.try_get("score")?,
                    tier: small(r.try_get("tier")?)?,
                })
            })
            .collect()
    }

    /// Rebuilds every agent's running trust totals from the recorded evidence when they were
    /// computed with another half-life (or never): in one transaction, so replicas starting
    /// together rebuild once and writers wait. Returns whether it rebuilt.
    pub async fn ensure_trust_totals(&self, half_life_us: f64) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        // One SQLite database has one Warden. On PostgreSQL, replicas starting together take turns,
        // and evidence another replica adds meanwhile waits, then lands on the rebuilt totals.
        if let Some(lock) = self.backend.lock_tables("trust_meta, trust_totals") {
            sqlx::query(&lock).execute(&mut *tx).await?;
        }
        let current: Option<f64> =
            sqlx::query_scalar("SELECT half_life_us FROM trust_meta WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        if current.is_some_and(|h| (h - half_life_us).abs() < 1.0) {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut totals: HashMap<
            (String, String, String, &'static str),
            (warden_core::trust::Decayed, i64),
        > = HashMap::new();
        let mut add =
            |agent: String, env: String, risk: String, kind: warden_core::trust::Kind, at: i64| {
                let entry = totals.entry((agent, env, risk, kind.as_str())).or_insert((
                    warden_core::trust::Decayed {
                        amount: 0.0,
                        as_of: at,
                    },
                    0,
                ));
                entry.0 = entry.0.add(1.0, at, half_life_us);
                entry.1 += 1;
            };
        // In pages by primary key, so memory stays flat however much evidence there is.
        let mut after = String::new();
        loop {
            let page = sqlx::query(
                "SELECT d.id, d.agent_id, d.environment, d.risk_level, d.outcome, d.outcome_at, d.outcome_by, d.outcome_confirmation, \
                 g.status AS guard_status FROM decisions d LEFT JOIN guards g ON g.decision_id = d.id \
                 WHERE d.outcome IS NOT NULL AND d.id > $1 ORDER BY d.id LIMIT 20000",
            )
            .bind(&after)
            .fetch_all(&mut *tx)
            .await?;
            for r in &page {
                // A guarded action's success counts once its watch ended clean or was kept.
                let waiting = r
                    .try_get::<Option<String>, _>("guard_status")?
                    .and_then(|g| GuardStatus::parse(&g))
                    .is_some_and(|g| !matches!(g, GuardStatus::Clean | GuardStatus::Kept));
                let outcome = wire_opt(r, "outcome", OutcomeStatus::parse)?
                    .filter(|o| !(waiting && *o == OutcomeStatus::Succeeded));
                if let Some(outcome) = outcome {
                    let agent: String = r.try_get("agent_id")?;
                    let source = source_of(r, &agent)?;
                    let kind = warden_core::trust::Kind::of_outcome(outcome, source);
                    add(
                        agent,
                        r.try_get("environment")?,
                        r.try_get("risk_level")?,
                        kind,
                        r.try_get::<Option<i64>, _>("outcome_at")?.unwrap_or(0),
                    );
                }
            }
            match page.last() {
                Some(r) => after = r.try_get("id")?,
                None => break,
            }
        }
        let mut after = String::new();
        loop {
            let page = sqlx::query(
                "SELECT v.id, v.agent_id, v.environment, d.risk_level, v.mode, v.reason, v.at FROM violations v JOIN decisions d ON d.id = v.decision_id \
                 WHERE v.id > $1 ORDER BY v.id LIMIT 20000",
            )
            .bind(&after)
            .fetch_all(&mut *tx)
            .await?;
            for r in &page {
                let kind = warden_core::trust::Kind::of_violation(
                    ViolationMode::parse(&r.try_get::<String, _>("mode")?)
                        .unwrap_or(ViolationMode::Block),
                    crate::wire(r, "reason", ViolationReason::parse)?,
                );
                add(
                    r.try_get("agent_id")?,
                    r.try_get("environment")?,
                    r.try_get("risk_level")?,
                    kind,
                    r.try_get("at")?,
                );
            }
            match page.last() {
                Some(r) => after = r.try_get("id")?,
                None => break,
            }
        }
        sqlx::query("DELETE FROM trust_totals")
            .execute(&mut *tx)
            .await?;
        let rows: Vec<_> = totals.into_iter().collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                Backend::of(&tx),
                "trust_totals (agent_id, environment, risk_level, kind, amount, as_of, count)",
                7,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for ((agent, env, risk, kind), (d, count)) in chunk {
                q = q
                    .bind(agent)
                    .bind(env)
                    .bind(risk)
                    .bind(*kind)
                    .bind(d.amount)
                    .bind(d.as_of)
                    .bind(*count);
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM trust_meta")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO trust_meta (id, half_life_us) VALUES (1, $1)")
            .bind(half_life_us)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &TrustWrite) -> Applied {
    Ok(match write {
        TrustWrite::AddEvidence(e) => {
            add_evidence(conn, &[e]).await?;
            Ok(())
        }
        TrustWrite::NoteTrust {
            agent_id,
            tier,
            at,
            policy,
        } => {
            note_trust(conn, agent_id, *tier, *at, policy).await?;
            Ok(())
        }
        TrustWrite::RecordTierChange(c) => {
            sqlx::query(
                "INSERT INTO tier_changes (id, agent_id, at, from_tier, to_tier, reason, text, actor, score, evidence) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&c.id)
            .bind(&c.agent)
            .bind(warden_core::clock::parse_micros(&c.at).unwrap_or_default())
            .bind(i64::from(c.from))
            .bind(i64::from(c.to))
            .bind(&c.reason)
            .bind(&c.text)
            .bind(&c.actor)
            .bind(c.score)
            .bind(c.evidence.to_string())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    })
}
