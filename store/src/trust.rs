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
use crate::writer::{Applied, Query, ROWS_PER_INSERT, multi_insert};
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
    ///
    /// Two calls on SQLite whatever the batch holds: every running total of the batch's agents
    /// read, then the new totals and scores written together (the writer's transaction holds
    /// the database's write lock, so nothing changes between). PostgreSQL first creates the
    /// evidence's totals where missing and locks them, in one order, since another replica may
    /// be adding to them; each statement is a call of its own there.
    pub(crate) async fn flush(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<Vec<(String, f64)>, sqlx::Error> {
        if self.evidence.is_empty() && self.notes.is_empty() {
            return Ok(Vec::new());
        }
        let backend = Backend::of(conn);
        let mut keys: Vec<_> = self.evidence.iter().collect();
        keys.sort_unstable_by_key(|(key, _)| **key);
        if backend == Backend::Postgres {
            create_and_lock(conn, &keys).await?;
        }
        let mut agents: Vec<&str> = keys
            .iter()
            .map(|(key, _)| key.0)
            .chain(self.notes.keys().copied())
            .collect();
        agents.sort_unstable();
        agents.dedup();
        let mut stored = read_totals(conn, backend, &agents).await?;

        // The evidence added in memory, in the totals' own order.
        let mut changed = Vec::with_capacity(keys.len());
        for ((agent, environment, risk, kind), deltas) in &keys {
            let rows = stored.entry(agent).or_default();
            let i = match rows
                .iter()
                .position(|r| r.environment == *environment && r.risk == *risk && r.kind == *kind)
            {
                Some(i) => i,
                None => {
                    rows.push(Stored {
                        environment: environment.to_string(),
                        risk: risk.to_string(),
                        kind: kind.to_string(),
                        decayed: warden_core::trust::Decayed {
                            amount: 0.0,
                            as_of: deltas[0].at,
                        },
                        count: 0,
                    });
                    rows.len() - 1
                }
            };
            let row = &mut rows[i];
            for e in deltas.iter() {
                row.decayed = row.decayed.add(e.delta as f64, e.at, e.half_life_us);
                row.count += e.delta;
            }
            changed.push((*agent, row.clone()));
        }
        let mut notes: Vec<_> = self.notes.iter().collect();
        notes.sort_unstable_by_key(|(agent, _)| **agent);
        let mut noted = Vec::with_capacity(notes.len());
        for (agent, note) in &notes {
            let totals = weighable(stored.get(*agent).map_or(&[], Vec::as_slice));
            let score = warden_core::trust::weigh(&totals, note.at, note.policy, |_| true).score();
            noted.push((
                **agent,
                score,
                note.at.div_euclid(DAY_US),
                i64::from(note.tier),
            ));
        }
        write_totals_and_scores(conn, backend, &changed, &noted).await?;
        Ok(noted
            .into_iter()
            .map(|(agent, score, ..)| (agent.to_string(), score))
            .collect())
    }
}

/// The evidence's running totals and the deltas each takes, sorted by key.
type Keyed<'b, 'a> = [(
    &'b (&'a str, &'a str, &'static str, &'static str),
    &'b Vec<&'a EvidenceDelta>,
)];

/// Creates the running totals `keys` name where missing (at zero) and locks them, in the
/// keys' order, so that two replicas adding to the same totals wait for each other instead
/// of deadlocking.
async fn create_and_lock(
    conn: &mut AnyConnection,
    keys: &Keyed<'_, '_>,
) -> std::result::Result<(), sqlx::Error> {
    let backend = Backend::of(conn);
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "{} ON CONFLICT (agent_id, environment, risk_level, kind) DO UPDATE SET count = trust_totals.count",
            multi_insert(backend, TOTALS_TABLE, 7, chunk.len())
        );
        let query = chunk.iter().fold(sqlx::query(&sql), |q, (key, deltas)| {
            q.bind(key.0)
                .bind(key.1)
                .bind(key.2)
                .bind(key.3)
                .bind(0.0_f64)
                .bind(deltas[0].at)
                .bind(0_i64)
        });
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

const TOTALS_TABLE: &str =
    "trust_totals (agent_id, environment, risk_level, kind, amount, as_of, count)";

/// A running total as stored, its key's columns as text.
#[derive(Debug, Clone)]
struct Stored {
    environment: String,
    risk: String,
    kind: String,
    decayed: warden_core::trust::Decayed,
    count: i64,
}

impl Stored {
    /// The total as trust weighs it (none for a kind this version does not know).
    fn total(&self) -> Option<warden_core::trust::Total> {
        Some(warden_core::trust::Total {
            environment: self.environment.clone(),
            risk: risk_of(&self.risk),
            kind: warden_core::trust::Kind::parse(&self.kind)?,
            decayed: self.decayed,
            count: self.count,
        })
    }
}

/// Running totals as trust weighs them: known kinds only, in one order, so that the writer
/// noting a score and a reader assessing one sum them alike.
fn weighable(rows: &[Stored]) -> Vec<warden_core::trust::Total> {
    let mut rows: Vec<&Stored> = rows.iter().collect();
    rows.sort_unstable_by(|a, b| {
        (&a.environment, &a.risk, &a.kind).cmp(&(&b.environment, &b.risk, &b.kind))
    });
    rows.into_iter().filter_map(Stored::total).collect()
}

/// Every running total of `agents`, by agent: one statement.
async fn read_totals<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    agents: &[&'a str],
) -> std::result::Result<HashMap<&'a str, Vec<Stored>>, sqlx::Error> {
    let mut stored: HashMap<&str, Vec<Stored>> = HashMap::with_capacity(agents.len());
    for chunk in agents.chunks(ROWS_PER_INSERT) {
        let list = (1..=chunk.len())
            .map(|n| backend.parameter(n))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT agent_id, environment, risk_level, kind, amount, as_of, count FROM trust_totals WHERE agent_id IN ({list})"
        );
        let rows = chunk
            .iter()
            .fold(sqlx::query(&sql), |q, a| q.bind(*a))
            .fetch_all(&mut *conn)
            .await?;
        for r in &rows {
            let agent: String = r.try_get("agent_id")?;
            let Some(agent) = chunk.iter().find(|a| **a == agent) else {
                continue;
            };
            stored.entry(agent).or_default().push(Stored {
                environment: r.try_get("environment")?,
                risk: r.try_get("risk_level")?,
                kind: r.try_get("kind")?,
                decayed: warden_core::trust::Decayed {
                    amount: r.try_get("amount")?,
                    as_of: r.try_get("as_of")?,
                },
                count: r.try_get("count")?,
            });
        }
    }
    Ok(stored)
}

/// Binds running totals' rows, in [`TOTALS_TABLE`]'s columns.
fn bind_totals<'q>(query: Query<'q>, rows: &'q [(&'q str, Stored)]) -> Query<'q> {
    rows.iter().fold(query, |q, (agent, t)| {
        q.bind(*agent)
            .bind(t.environment.as_str())
            .bind(t.risk.as_str())
            .bind(t.kind.as_str())
            .bind(t.decayed.amount)
            .bind(t.decayed.as_of)
            .bind(t.count)
    })
}

/// Writes running totals and notes scores (agent, score, day, tier): one call on SQLite,
/// a statement a call on PostgreSQL.
async fn write_totals_and_scores(
    conn: &mut AnyConnection,
    backend: Backend,
    totals: &[(&str, Stored)],
    scores: &[(&str, f64, i64, i64)],
) -> std::result::Result<(), sqlx::Error> {
    let upserts: Vec<String> = totals
        .chunks(ROWS_PER_INSERT)
        .map(|chunk| {
            format!(
                "{} ON CONFLICT (agent_id, environment, risk_level, kind) DO UPDATE SET \
                 amount = excluded.amount, as_of = excluded.as_of, count = excluded.count",
                multi_insert(backend, TOTALS_TABLE, 7, chunk.len())
            )
        })
        .collect();
    match backend {
        Backend::Sqlite => {
            // Positional parameters run on across the statements of one call.
            let mut sql = upserts;
            sql.extend(scores.iter().map(|_| backend.note_score().to_string()));
            let sql = sql.join("; ");
            let mut query = bind_totals(sqlx::query(&sql), totals);
            for (agent, score, day, tier) in scores {
                query = query
                    .bind(*score)
                    .bind(*agent)
                    .bind(*agent)
                    .bind(*day)
                    .bind(*score)
                    .bind(*tier);
            }
            query.execute(&mut *conn).await?;
        }
        Backend::Postgres => {
            for (sql, chunk) in upserts.iter().zip(totals.chunks(ROWS_PER_INSERT)) {
                bind_totals(sqlx::query(sql), chunk)
                    .execute(&mut *conn)
                    .await?;
            }
            for (agent, score, day, tier) in scores {
                sqlx::query(backend.note_score())
                    .bind(*score)
                    .bind(*agent)
                    .bind(*day)
                    .bind(*tier)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

const DAY_US: i64 = 86_400_000_000;

/// An agent's decisions with an outcome since `$2` that consumed a human's approval.
const WATCHED_WORK: &str = "SELECT d.id, d.class, d.environment, d.service, d.risk_level, d.outcome, d.outcome_at, d.outcome_by, d.outcome_confirmation \
     FROM decisions d JOIN approvals a ON a.consumed_by = d.id \
     WHERE d.agent_id = $1 AND d.outcome IS NOT NULL AND d.outcome_at >= $2 ORDER BY d.outcome_at, d.id";

impl Store {
    /// An agent's running trust totals.
    pub async fn trust_totals(&self, agent: &str) -> Result<Vec<warden_core::trust::Total>> {
        let mut conn = self.pool.acquire().await?;
        let backend = Backend::of(&conn);
        let stored = read_totals(&mut conn, backend, &[agent]).await?;
        Ok(weighable(stored.get(agent).map_or(&[], Vec::as_slice)))
    }

    /// The outcomes since `since` of an agent's actions that used a human's approval: the
    /// watched work promotions rest on, oldest first.
    pub async fn watched_work(
        &self,
        agent: &str,
        since: i64,
    ) -> Result<Vec<warden_core::tiering::Watched>> {
        let rows = sqlx::query(WATCHED_WORK)
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
            let mut batch = TrustBatch::default();
            batch.evidence(e);
            batch.flush(conn).await?;
            Ok(())
        }
        TrustWrite::NoteTrust {
            agent_id,
            tier,
            at,
            policy,
        } => {
            let mut batch = TrustBatch::default();
            batch.note(agent_id, *tier, *at, policy);
            batch.flush(conn).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite_tests::{migrated, plan};

    /// Approval requests enter the index of what consumed them only once consumed, and watches
    /// the index of their review only once reviewed (entries for neither were one more page
    /// written a batch); the reads by them still go through the indexes.
    #[tokio::test]
    async fn only_set_references_are_indexed() {
        let unset = [
            "SELECT COUNT(*) FROM approvals INDEXED BY approvals_consumed_by WHERE consumed_by IS NULL",
            "SELECT COUNT(*) FROM guards INDEXED BY guards_review WHERE review_id IS NULL",
        ];
        let before = migrated(23).await;
        let pool = migrated(i64::MAX).await;
        for sql in unset {
            sqlx::query(sql).fetch_one(&before).await.unwrap();
            let Err(refused) = sqlx::query(sql).fetch_one(&pool).await else {
                panic!("rows without the reference are still in the index: {sql}");
            };
            assert!(
                refused.to_string().contains("no query solution"),
                "{refused}"
            );
        }
        for (sql, index) in [
            (WATCHED_WORK, "INDEX approvals_consumed_by (consumed_by=?)"),
            (
                &crate::guards::of_review(),
                "INDEX guards_review (review_id=?)",
            ),
        ] {
            let plan = plan(&pool, sql).await;
            assert!(plan.iter().any(|step| step.contains(index)), "{plan:?}");
        }
    }
}
