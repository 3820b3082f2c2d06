//! The store's part for the audit chain: reading, paging and verifying it (appending is the writer's): reads, and how each of its writes is applied.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Executor as _, Row as _};
use warden_core::audit::merkle::{self, Frontier};
use warden_core::audit::{self, AuditEntry, AuditRecord, Break, Columns, StoredRow, Tamper};

use crate::audit_tree::StoredCheckpoint;
use crate::error::{Result, StoreError};
use crate::writer::{NewRows, Query, ROWS_PER_INSERT, insert_rows, multi_insert_at};
use crate::{Arg, Backend, Filters, Store};

/// What an audit query selects (every field narrows it).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AuditFilter {
    /// `agent`, `human`, `service` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_kind: Option<String>,
    /// The agent concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A human the record names: acting, acted for, authorising or approving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human: Option<String>,
    /// The agent's team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Environment of the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Service acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Action class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_class: Option<String>,
    /// A decision's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// An outcome record's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Risk level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
    /// Event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// At or after, Unix microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Before, Unix microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Case-insensitive text in the agent's reasoning or plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Records up to this one (exports stop at their checkpoint).
    #[serde(skip)]
    pub through_seq: Option<i64>,
    /// Whose view: everything, or what a role may read.
    #[serde(skip_serializing_if = "AuditScope::is_all")]
    pub scope: AuditScope,
}

/// The records a reader may see.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditScope {
    /// Everything (admins).
    #[default]
    All,
    /// Records naming this human, and records of decisions still waiting for approval.
    Approver(String),
    /// This agent's own records.
    Agent(String),
}

impl AuditScope {
    fn is_all(&self) -> bool {
        *self == AuditScope::All
    }
}

/// Pages run by (at, seq), oldest first (the chain's order) or newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOrder {
    /// Oldest first.
    #[default]
    Oldest,
    /// Newest first.
    Newest,
    /// By sequence number alone (exports and proofs): `after` compares `seq` only.
    Chain,
}

/// A page of an audit query.
#[derive(Debug, Clone, Default)]
pub struct AuditPageRequest {
    /// What to select.
    pub filter: AuditFilter,
    /// Which way.
    pub order: AuditOrder,
    /// Only records past this (at, seq), in the page's direction.
    pub after: Option<(i64, i64)>,
    /// At most this many records.
    pub limit: i64,
}

/// What a summary groups counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditGroup {
    /// The agent concerned.
    Agent,
    /// The UTC day.
    Day,
    /// The action class.
    Class,
    /// The environment.
    Environment,
    /// A decision's verdict.
    Verdict,
    /// The event type.
    EventType,
}

/// A stored record with its text exactly as hashed (for exports and proofs).
#[derive(Debug, Clone)]
pub struct RawAuditRow {
    /// Sequence number.
    pub seq: i64,
    /// Unix microseconds.
    pub at: i64,
    /// The canonical JSON the hash covers.
    pub record: String,
    /// Previous hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

pub(crate) struct AuditRow<'a> {
    pub(crate) seq: i64,
    pub(crate) columns: &'a Columns,
    pub(crate) record: &'a AuditRecord,
    pub(crate) json: &'a str,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

const COLUMNS: &str = "seq, at, event_type, actor_kind, actor_id, agent_id, environment, action_class, decision_id, \
    service, team, verdict, outcome, risk, on_behalf_of, record, prev_hash, hash";

/// Inserts a batch's new rows, then its audit records and the people they name, moves the
/// chain's head to the last record and commits, in as few round trips as each database takes:
/// - SQLite: one call, whose statements run in order and stop at the first that fails (each
///   call is a hand-off to SQLite's thread and back).
/// - PostgreSQL, whose extended protocol binds one statement a round trip: the new rows a
///   statement per table, then the audit records, the people and the head's move as one
///   statement (the inserts data-modifying `WITH` clauses of the move), then `COMMIT`.
///
/// On failure the caller rolls back.
pub(crate) async fn insert_and_commit(
    conn: &mut AnyConnection,
    new: &NewRows<'_>,
    rows: &[AuditRow<'_>],
) -> std::result::Result<(), sqlx::Error> {
    let backend = Backend::of(conn);
    let people: Vec<(&str, i64)> = rows
        .iter()
        .flat_map(|r| r.record.people().into_iter().map(move |h| (h, r.seq)))
        .collect();
    let table = format!("audit_events ({COLUMNS})");
    // SQLite's one call begins with the new rows; the chain's part follows, its parameters
    // numbered on from theirs (on PostgreSQL a statement of its own, numbered from the first).
    let mut sql = Vec::new();
    let mut next = 1;
    if backend == Backend::Sqlite {
        new.statements(backend, &mut sql, &mut next);
    }
    let mut chain = Vec::new();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        chain.push(multi_insert_at(backend, &table, 18, chunk.len(), next));
        next += 18 * chunk.len();
    }
    for chunk in people.chunks(ROWS_PER_INSERT) {
        chain.push(multi_insert_at(backend, PEOPLE, 2, chunk.len(), next));
        next += 2 * chunk.len();
    }
    if !rows.is_empty() {
        chain.push(backend.move_head(next));
        next += 2;
    }
    let bind_chain = |query| {
        let query = rows.iter().fold(query, bind_row);
        let query = people.iter().fold(query, bind_person);
        match rows.last() {
            Some(last) => query.bind(last.seq).bind(&last.hash),
            None => query,
        }
    };
    match backend {
        Backend::Sqlite => {
            sql.extend(chain);
            sql.push("COMMIT".to_string());
            bind_chain(new.bind(sqlx::query(&sql.join("; "))))
                .execute(&mut *conn)
                .await?;
        }
        Backend::Postgres => {
            // Each statement's text changes with one table's row count: the connection keeps
            // the common ones prepared. (The whole batch as one statement has too many texts to
            // keep: BENCHMARKS.md.)
            new.insert(conn).await?;
            match one_statement(&chain, next - 1) {
                Some(sql) => {
                    bind_chain(sqlx::query(&sql)).execute(&mut *conn).await?;
                }
                // None, or more than one statement binds.
                None => {
                    insert_rows(conn, &table, 18, rows, bind_row).await?;
                    insert_rows(conn, PEOPLE, 2, &people, bind_person).await?;
                    if let Some(last) = rows.last() {
                        sqlx::query(&backend.move_head(1))
                            .bind(last.seq)
                            .bind(&last.hash)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
            }
            conn.execute("COMMIT").await?;
        }
    }
    Ok(())
}

/// PostgreSQL's most parameters in one statement.
const POSTGRES_PARAMETERS: usize = 65_535;

/// Statements as one PostgreSQL statement, each but the last a data-modifying `WITH` clause;
/// none when there are none, or more `parameters` than one statement takes.
fn one_statement(sql: &[String], parameters: usize) -> Option<String> {
    let (main, with) = sql.split_last()?;
    if parameters > POSTGRES_PARAMETERS {
        return None;
    }
    if with.is_empty() {
        return Some(main.clone());
    }
    let with: Vec<String> = with
        .iter()
        .enumerate()
        .map(|(i, s)| format!("w{i} AS ({s})"))
        .collect();
    Some(format!("WITH {} {main}", with.join(", ")))
}

const PEOPLE: &str = "audit_people (human, seq)";

/// Records a verify reads at a time: each read's snapshot holds SQLite's WAL back while it
/// lasts, so short reads keep decisions' tail low beside a verify.
const VERIFY_READ: i64 = 250;

/// Binds an audit record's row, in [`COLUMNS`]' order.
fn bind_row<'q>(q: Query<'q>, r: &'q AuditRow<'_>) -> Query<'q> {
    let c = r.columns;
    q.bind(r.seq)
        .bind(c.at)
        .bind(&c.event_type)
        .bind(&c.actor_kind)
        .bind(&c.actor_id)
        .bind(&c.agent_id)
        .bind(&c.environment)
        .bind(&c.action_class)
        .bind(&c.decision_id)
        .bind(&c.service)
        .bind(&c.team)
        .bind(&c.verdict)
        .bind(&c.outcome)
        .bind(&c.risk)
        .bind(&c.on_behalf_of)
        .bind(r.json)
        .bind(&r.prev_hash)
        .bind(&r.hash)
}

/// Binds a row of the people a record names.
fn bind_person<'q>(q: Query<'q>, (human, seq): &'q (&str, i64)) -> Query<'q> {
    q.bind(*human).bind(*seq)
}

/// The filter's conditions, added to `w`.
fn narrow(w: &mut Filters, backend: crate::Backend, f: &AuditFilter) {
    w.text("actor_kind", &f.actor_kind);
    let agents = warden_core::identity::Role::Agent.actor_kind();
    if f.actor_kind.as_deref().is_some_and(|k| k != agents) {
        // Implied by the term above, and the condition of `audit_actor_kind`, which holds only
        // the kinds other than agents': written out so that the planner may use it.
        w.and("actor_kind <> 'agent'");
    }
    w.text("agent_id", &f.agent);
    w.text("team", &f.team);
    w.text("environment", &f.environment);
    w.text("service", &f.service);
    w.text("action_class", &f.action_class);
    w.text("verdict", &f.verdict);
    w.text("outcome", &f.outcome);
    w.text("risk", &f.risk);
    w.text("event_type", &f.event_type);
    w.int("at", ">=", f.since);
    w.int("at", "<", f.until);
    w.int("seq", "<=", f.through_seq);
    if let Some(h) = &f.human {
        let p = w.arg(Arg::Text(h.clone()));
        w.and(&format!(
            "seq IN (SELECT seq FROM audit_people WHERE human = {p})"
        ));
    }
    if let Some(t) = &f.text {
        let escaped = t
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let p = w.arg(Arg::Text(format!("%{escaped}%")));
        let (reasoning, plan) = match backend {
            crate::Backend::Sqlite => (
                "json_extract(record, '$.reasoning')",
                "json_extract(record, '$.action.plan')",
            ),
            crate::Backend::Postgres => (
                "(warden_record(record)->>'reasoning')",
                "(warden_record(record)->'action'->>'plan')",
            ),
        };
        w.and(&format!(
            "(lower({reasoning}) LIKE {p} ESCAPE '\\' OR lower({plan}) LIKE {p} ESCAPE '\\')"
        ));
    }
    match &f.scope {
        AuditScope::All => {}
        AuditScope::Agent(id) => w.text("agent_id", &Some(id.clone())),
        AuditScope::Approver(human) => {
            let p = w.arg(Arg::Text(human.clone()));
            w.and(&format!(
                "(seq IN (SELECT seq FROM audit_people WHERE human = {p}) \
                 OR decision_id IN (SELECT decision_id FROM approvals WHERE status = 'pending'))"
            ));
        }
    }
}

/// A page's query: its conditions, and what follows them (order and limit).
fn page_query(backend: crate::Backend, page: &AuditPageRequest) -> (Filters, String) {
    let mut w = Filters::new("SELECT seq, at, record, prev_hash, hash FROM audit_events");
    narrow(&mut w, backend, &page.filter);
    let (cmp, order) = match page.order {
        AuditOrder::Newest => ("<", "at DESC, seq DESC"),
        AuditOrder::Oldest => (">", "at, seq"),
        AuditOrder::Chain => (">", "seq"),
    };
    match (page.after, page.order) {
        (Some((_, seq)), AuditOrder::Chain) => w.int("seq", ">", Some(seq)),
        (Some((at, seq)), _) => {
            let a = w.arg(Arg::Int(at));
            let s = w.arg(Arg::Int(seq));
            w.and(&format!("(at, seq) {cmp} ({a}, {s})"));
        }
        (None, _) => {}
    }
    let tail = format!(" ORDER BY {order} LIMIT {}", page.limit.clamp(1, 10_001));
    (w, tail)
}

fn entry(r: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    let record: String = r.try_get("record")?;
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
        record: serde_json::from_str(&record).map_err(StoreError::bug)?,
    })
}

fn raw(r: &sqlx::any::AnyRow) -> Result<RawAuditRow> {
    Ok(RawAuditRow {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        record: r.try_get("record")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl Store {
    /// A page of audit records matching a filter, by (at, seq) in the page's direction.
    pub async fn audit(&self, page: &AuditPageRequest) -> Result<Vec<AuditEntry>> {
        let rows = self.audit_rows(page).await?;
        rows.iter().map(entry).collect()
    }

    /// Like [`Store::audit`], with each record's text exactly as hashed.
    pub async fn audit_raw(&self, page: &AuditPageRequest) -> Result<Vec<RawAuditRow>> {
        let rows = self.audit_rows(page).await?;
        rows.iter().map(raw).collect()
    }

    async fn audit_rows(&self, page: &AuditPageRequest) -> Result<Vec<sqlx::any::AnyRow>> {
        let (w, tail) = page_query(self.backend, page);
        Ok(w.fetch_all(&tail, &self.pool).await?)
    }

    /// Counts of the records matching a filter, grouped, largest first.
    pub async fn audit_summary(
        &self,
        filter: &AuditFilter,
        group: AuditGroup,
    ) -> Result<Vec<(Option<String>, i64)>> {
        let key = match (group, self.backend) {
            (AuditGroup::Agent, _) => "agent_id",
            (AuditGroup::Class, _) => "action_class",
            (AuditGroup::Environment, _) => "environment",
            (AuditGroup::Verdict, _) => "verdict",
            (AuditGroup::EventType, _) => "event_type",
            (AuditGroup::Day, crate::Backend::Sqlite) => {
                "strftime('%Y-%m-%d', at / 1000000, 'unixepoch')"
            }
            (AuditGroup::Day, crate::Backend::Postgres) => {
                "to_char(to_timestamp(at / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
        };
        let mut w = Filters::new(&format!(
            "SELECT {key} AS k, COUNT(*) AS n FROM audit_events"
        ));
        narrow(&mut w, self.backend, filter);
        let order = if group == AuditGroup::Day {
            "k"
        } else {
            "n DESC, k"
        };
        let rows = w
            .fetch_all(
                &format!(" GROUP BY k ORDER BY {order} LIMIT 10000"),
                &self.pool,
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("k")?, r.try_get("n")?)))
            .collect()
    }

    /// Records after `after_seq` in chain order, at most `limit`, exactly as stored (for
    /// verification, exports and proofs, a chunk at a time).
    pub async fn audit_chain(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredRow>> {
        self.audit_chain_rows(after_seq, limit)
            .await?
            .iter()
            .map(stored_row)
            .collect()
    }

    /// [`Store::audit_chain`]'s rows before they are decoded (which a verify does off the
    /// request threads).
    async fn audit_chain_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<AnyRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
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

    /// The chain's head: the last record appended and its hash.
    pub async fn audit_head(&self) -> Result<(i64, String)> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((head.try_get("seq")?, head.try_get("hash")?))
    }

    /// Where the stored chain starts: the last pruned record and its hash (0 and the genesis
    /// hash when nothing was pruned).
    pub async fn audit_start(&self) -> Result<(i64, String)> {
        let row = sqlx::query("SELECT through_seq, through_hash FROM audit_retention WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("through_seq")?, row.try_get("through_hash")?))
    }

    /// Whether an `audit.archived` record after `through` says the records up to it were
    /// archived (the prune commits with it).
    async fn archived_through(&self, through: i64) -> Result<bool> {
        let rows = sqlx::query(
            "SELECT record FROM audit_events WHERE event_type = 'audit.archived' AND seq > $1 ORDER BY seq LIMIT 100",
        )
        .bind(through)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let record: AuditRecord = serde_json::from_str(&r.try_get::<String, _>("record")?)
                .map_err(StoreError::bug)?;
            let says = record
                .details
                .map(|d| d.value()["through"].as_i64() == Some(through));
            if says == Some(true) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Verifies the stored chain from its start to its head, 250 records at a time, and
    /// the Merkle tree against every stored checkpoint on the way (their signatures are the
    /// caller's to check); returns the last record's number, or the first break.
    /// It runs apart from the request threads (`apart`).
    pub async fn verify_audit(&self) -> Result<std::result::Result<i64, Break>> {
        self.apart(|store| async move { store.walk_audit().await })
            .await
    }

    async fn walk_audit(&self) -> Result<std::result::Result<i64, Break>> {
        let (start, start_hash) = self.audit_start().await?;
        if start > 0 && !self.archived_through(start).await? {
            return Ok(Err(Break {
                seq: start,
                tamper: Tamper::Deleted,
                detail: format!(
                    "records up to {start} are gone, and no `audit.archived` record says they were archived"
                ),
            }));
        }
        let frontier = if start == 0 {
            Frontier::new()
        } else {
            match self.checkpoint(start).await? {
                Some(cp) if cp.chain_hash == start_hash => cp.frontier,
                _ => {
                    return Ok(Err(Break {
                        seq: start,
                        tamper: Tamper::CheckpointMismatch,
                        detail: format!(
                            "records up to {start} were pruned, but no checkpoint of {start} records ends the chain where the rest begins"
                        ),
                    }));
                }
            }
        };
        let mut walk = Walk {
            verifier: audit::Verifier::resume(start, start_hash),
            frontier,
            last_checked: start,
        };
        let mut after = start;
        loop {
            // A read's snapshot keeps SQLite's WAL from restarting until its last row is taken:
            // reads of 1,000 records, not 5,000, halved decisions' p99 during a verify, and of
            // 250 lowered it by a sixth again (BENCHMARKS.md).
            let rows = self.audit_chain_rows(after, VERIFY_READ).await?;
            let Some(last) = rows.last() else { break };
            let last: i64 = last.try_get("seq")?;
            let checkpoints = self.checkpoints_through(after, last).await?;
            after = last;
            // Decoding, hashing and parsing them holds a core for milliseconds.
            if let Err(b) = crate::apart::at_lowest_priority(|| walk.chunk(&rows, &checkpoints))?? {
                return Ok(Err(b));
            }
        }
        // A signed checkpoint past the last stored record: records were cut from the end, head
        // and all.
        let (last, _) = walk.verifier.position();
        if let Some(cp) = self.checkpoints_after(last, 1).await?.pop() {
            return Ok(Err(Break {
                seq: last + 1,
                tamper: Tamper::Truncated,
                detail: format!(
                    "checkpoint {} was signed over records {}..{} that are gone",
                    cp.size,
                    last + 1,
                    cp.size
                ),
            }));
        }
        let (head, hash) = self.audit_head().await?;
        Ok(walk.verifier.finish(head, &hash))
    }
}

/// How far a verify has got: the chain so far, its Merkle tree, the last checkpoint matched.
struct Walk {
    verifier: audit::Verifier,
    frontier: Frontier,
    last_checked: i64,
}

impl Walk {
    /// Checks a chunk of the chain in order, and the tree against each checkpoint that ends in
    /// it (`checkpoints`, by size).
    fn chunk(
        &mut self,
        rows: &[AnyRow],
        checkpoints: &[StoredCheckpoint],
    ) -> Result<std::result::Result<(), Break>> {
        let mut checkpoints = checkpoints.iter().peekable();
        for row in rows {
            let row = stored_row(row)?;
            if let Err(b) = self.verifier.check(&row) {
                return Ok(Err(b));
            }
            let Some(leaf) = merkle::leaf_hash(&row.hash) else {
                return Ok(Err(Break {
                    seq: row.seq,
                    tamper: Tamper::Edited,
                    detail: "its hash is not a SHA-256 hash".into(),
                }));
            };
            self.frontier.push(leaf);
            if let Some(cp) = checkpoints.next_if(|cp| cp.size == row.seq) {
                if cp.root != self.frontier.root() || cp.chain_hash != row.hash {
                    return Ok(Err(Break {
                        seq: self.last_checked + 1,
                        tamper: Tamper::CheckpointMismatch,
                        detail: format!(
                            "records {}..{} no longer make the tree of checkpoint {}: one of them was rewritten with every hash after it",
                            self.last_checked + 1,
                            cp.size,
                            cp.size
                        ),
                    }));
                }
                self.last_checked = cp.size;
            }
        }
        Ok(Ok(()))
    }
}

/// A chain row as stored.
fn stored_row(r: &AnyRow) -> Result<StoredRow> {
    Ok(StoredRow {
        seq: r.try_get("seq")?,
        columns: Columns {
            at: r.try_get("at")?,
            event_type: r.try_get("event_type")?,
            actor_kind: r.try_get("actor_kind")?,
            actor_id: r.try_get("actor_id")?,
            agent_id: r.try_get("agent_id")?,
            environment: r.try_get("environment")?,
            action_class: r.try_get("action_class")?,
            decision_id: r.try_get("decision_id")?,
            service: r.try_get("service")?,
            team: r.try_get("team")?,
            verdict: r.try_get("verdict")?,
            outcome: r.try_get("outcome")?,
            risk: r.try_get("risk")?,
            on_behalf_of: r.try_get("on_behalf_of")?,
        },
        record: r.try_get("record")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite_tests::{migrated, plan};

    /// Agents' records, most of the trail, are not in `audit_actor_kind`: a page of them walks
    /// the time index. A page of another kind's records still walks that kind's entries alone.
    #[tokio::test]
    async fn only_the_few_kinds_of_actor_have_an_index() {
        let pool = migrated(i64::MAX).await;
        let agents = "SELECT COUNT(*) FROM audit_events INDEXED BY audit_actor_kind WHERE actor_kind = 'agent'";
        let Err(refused) = sqlx::query(agents).fetch_one(&pool).await else {
            panic!("agents' records are in audit_actor_kind");
        };
        assert!(
            refused.to_string().contains("no query solution"),
            "{refused}"
        );
        let page = |kind: &str| {
            let (w, tail) = page_query(
                crate::Backend::Sqlite,
                &AuditPageRequest {
                    filter: AuditFilter {
                        actor_kind: Some(kind.to_string()),
                        since: Some(1),
                        ..AuditFilter::default()
                    },
                    order: AuditOrder::Newest,
                    after: None,
                    limit: 100,
                },
            );
            w.sql + &tail
        };
        for (kind, index) in [
            ("human", "INDEX audit_actor_kind (actor_kind=? AND at>?)"),
            ("service", "INDEX audit_actor_kind (actor_kind=? AND at>?)"),
            ("agent", "INDEX audit_at (at>?)"),
        ] {
            let plan = plan(&pool, &page(kind)).await;
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{kind}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                "{kind}: {plan:?}"
            );
        }
    }

    /// A batch's statements become one on PostgreSQL, the last its main statement, unless
    /// they bind more parameters than one statement takes.
    #[test]
    fn a_batch_is_one_statement_within_postgres_limit() {
        let sql = [
            "INSERT INTO a VALUES ($1)".to_string(),
            "INSERT INTO b VALUES ($2)".to_string(),
            "UPDATE h SET x = $3".to_string(),
        ];
        assert_eq!(
            one_statement(&sql, 3).as_deref(),
            Some(
                "WITH w0 AS (INSERT INTO a VALUES ($1)), w1 AS (INSERT INTO b VALUES ($2)) \
                 UPDATE h SET x = $3"
            )
        );
        assert_eq!(
            one_statement(&sql[..1], 1).as_deref(),
            Some(sql[0].as_str())
        );
        assert_eq!(one_statement(&sql, POSTGRES_PARAMETERS + 1), None);
        assert_eq!(one_statement(&[], 0), None);
    }

    /// Migration 0022 makes `seq` the table's rowid: a trail written before it keeps every
    /// record as it was, reads by seq go straight to the table, and the trail stays append-only.
    #[tokio::test]
    async fn seq_becomes_the_rowid_and_keeps_the_trail() {
        let pool = migrated(22).await;
        for seq in 1..=3_i64 {
            sqlx::query(&format!(
                "INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, 'decision', 'agent', 'a1', \
                 'a1', 'staging', 'deploy', $3, 'svc', 'team', 'allow', NULL, 'low', NULL, $4, $5, $6)"
            ))
            .bind(seq)
            .bind(1_000 * seq)
            .bind(format!("d{seq}"))
            .bind(format!("{{\"n\":{seq}}}"))
            .bind(format!("h{}", seq - 1))
            .bind(format!("h{seq}"))
            .execute(&pool)
            .await
            .unwrap();
        }
        let read = |pool: sqlx::AnyPool| async move {
            sqlx::query(&format!("SELECT {COLUMNS} FROM audit_events ORDER BY seq"))
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<Option<String>, _>(i)
                                .or_else(|_| r.try_get::<i64, _>(i).map(|n| Some(n.to_string())))
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        let old = read(pool.clone()).await;
        Backend::Sqlite.migrations().run(&pool).await.unwrap();
        assert_eq!(read(pool.clone()).await, old);
        assert_eq!(old.len(), 3);

        let plan = plan(
            &pool,
            &format!("SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"),
        )
        .await;
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INTEGER PRIMARY KEY (rowid>?)")),
            "{plan:?}"
        );
        let indexes: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("name").unwrap())
        .collect();
        assert_eq!(
            indexes,
            [
                "audit_actor_kind",
                "audit_agent",
                "audit_at",
                "audit_decision",
                "audit_environment"
            ]
        );
        let refused = sqlx::query("UPDATE audit_events SET hash = 'x' WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");
        let refused = sqlx::query("DELETE FROM audit_events WHERE seq = 3")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
}
