//! The group-commit writer: one task per process takes every change, commits whole batches in
//! one transaction, extends the audit chain, and answers each caller only once its change is
//! durable (or has failed and written nothing).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor as _, Row as _};
use tokio::sync::{mpsc, oneshot};
use warden_core::audit::{self, AuditRecord, Columns};
use warden_core::records::{ApprovalRow, DecisionRow, Guard, ViolationRow};

use crate::activity::{Decided, acting_agents};
use crate::approvals::{ApprovalWrite, approval_rows};
use crate::audit::{AuditRow, insert_and_commit};
use crate::decisions::decision_rows;
use crate::error::{Conflict, Missing, Result, StoreError};
use crate::flush::Flusher;
use crate::guards::{GuardWrite, guard_rows};
use crate::quotas::{Counted, QuotaCounts, QuotaKey};
use crate::trust::{TrustBatch, TrustWrite};
use crate::violations::violation_rows;
use crate::{Backend, Change, DecisionWrite, QuotaWrite, ViolationWrite, Write};

pub(crate) struct Job {
    pub(crate) change: Change,
    /// The change's audit records, in order, made ready for the chain.
    pub(crate) sealed: Vec<Sealed>,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// An audit record made ready for the chain by the caller, before it reaches the writer: its
/// JSON text and its indexed columns. The one writer then only numbers and hashes it, so the
/// serialisation of many records runs beside the commit, not inside it.
pub(crate) struct Sealed {
    json: String,
    columns: Columns,
}

impl Sealed {
    /// Seals a record; a time that is not RFC 3339 is the caller's bug, refused before it can
    /// fail a batch.
    pub(crate) fn of(record: &AuditRecord) -> Result<Sealed> {
        let columns = record.columns().ok_or_else(|| {
            StoreError::bug(format!("audit time `{}` is not RFC 3339", record.at))
        })?;
        let json = serde_json::to_string(record).map_err(StoreError::bug)?;
        Ok(Sealed { json, columns })
    }
}

pub(crate) enum Msg {
    Job(Job),
    /// Commit what is queued, release the connection, and stop.
    Stop(oneshot::Sender<()>),
}

/// The group-commit writer.
pub(crate) struct Writer {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) conn: Option<PoolConnection<Any>>,
    pub(crate) max_batch: usize,
    /// The store's read cache, told the trust scores a commit noted.
    pub(crate) cache: std::sync::Arc<crate::ReadCache>,
    /// The task that makes commits durable and then answers (see [`Flusher`]); none on an
    /// in-memory database.
    pub(crate) flusher: Option<Flusher>,
    pub(crate) counters: WriterCounters,
    /// Told of every commit: it wakes the store's background checkpoint of SQLite's WAL.
    pub(crate) commits: std::sync::Arc<tokio::sync::Notify>,
}

/// Seconds, 100 µs to 2.5 s, with 10 ms (a decision's target p99) a bound of its own: the
/// buckets of the writer's times, and of the service's decision times, so the two compare.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
    1.0, 2.5,
];

/// What the writer has done since the process started, for the service's metrics: changes
/// per commit is the size of its batches, changes per flush how many callers one wait for the
/// disk answered. The times tell a slow database from a slow disk: a decision waits for its
/// batch's transaction and then for a flush.
#[derive(Debug, Clone)]
pub struct WriterCounters {
    /// Transactions committed with at least one change in them.
    pub commits: Counter,
    /// Changes those transactions committed.
    pub changes: Counter,
    /// Flushes of the log that made commits durable (none on a database in memory, whose
    /// commits answer at once).
    pub flushes: Counter,
    /// The writer's time on each batch: its transaction, any retries, not the flush.
    pub batch_seconds: Histogram,
    /// Each flush's time: the wait for the disk (or for PostgreSQL's).
    pub flush_seconds: Histogram,
    /// Each background checkpoint of SQLite's WAL: the copy into the database file and its
    /// flush, beside the writer (none on PostgreSQL, which checkpoints on its own).
    pub checkpoint_seconds: Histogram,
}

impl Default for WriterCounters {
    fn default() -> Self {
        WriterCounters {
            commits: Counter::default(),
            changes: Counter::default(),
            flushes: Counter::default(),
            batch_seconds: Histogram::new(DURATION_BUCKETS),
            flush_seconds: Histogram::new(DURATION_BUCKETS),
            checkpoint_seconds: Histogram::new(DURATION_BUCKETS),
        }
    }
}

/// How many times `histogram` observed, from its exposition (its counts are not public).
#[cfg(test)]
pub(crate) fn observed(histogram: &Histogram) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("h", "", histogram.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("to a String");
    text.lines()
        .find_map(|l| l.strip_prefix("h_count "))
        .unwrap_or_else(|| panic!("a count in {text}"))
        .parse()
        .expect("a count")
}

/// A write's result: the outer error is the database's, the inner one is logical (409/404).
pub(crate) type Applied = std::result::Result<Result<()>, sqlx::Error>;

/// Why a transaction did not commit.
#[derive(Debug)]
enum Failed {
    /// The database failed: the connection may be broken, so the next attempt takes a new one.
    Database(sqlx::Error),
    /// A change in a batch failed for a logical reason after its first write, which cannot be
    /// undone inside the batch's transaction: the batch is retried change by change.
    PastFirstWrite(StoreError),
    /// Charges took these quota counts over their limits, by so much: enough of the changes
    /// charging them are refused, and the others retried without them.
    OverQuota(Vec<(QuotaKey, i64)>, StoreError),
}

/// A batch's fate: committed (each change's result), or split on counts over their limits.
enum Split {
    Committed(Vec<Result<()>>),
    OverQuota(Vec<(QuotaKey, i64)>, StoreError),
}

impl From<sqlx::Error> for Failed {
    fn from(err: sqlx::Error) -> Failed {
        crate::liveness::note(&err);
        Failed::Database(err)
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Database(e) => e.fmt(f),
            Failed::PastFirstWrite(e) => write!(f, "a change failed after its first write: {e}"),
            Failed::OverQuota(_, e) => e.fmt(f),
        }
    }
}

/// A change and its sealed audit records, as a transaction applies them.
type Parts<'a> = (&'a Change, &'a [Sealed]);

impl Job {
    fn parts(&self) -> Parts<'_> {
        (&self.change, &self.sealed)
    }

    /// What the change charges to one quota count.
    fn charged(&self, (agent, quota, scope, start): &QuotaKey) -> i64 {
        self.change
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Quota(QuotaWrite::ChargeQuotas { agent_id, charges })
                    if agent_id == agent =>
                {
                    Some(charges)
                }
                _ => None,
            })
            .flatten()
            .filter(|c| c.quota == *quota && c.scope == *scope && c.window.0 == *start)
            .map(|c| c.amount)
            .sum()
    }
}

impl Writer {
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(self.max_batch);
        let mut batch = Vec::with_capacity(self.max_batch);
        // Whatever queued up while the last transaction was committing goes into the next one.
        while rx.recv_many(&mut msgs, self.max_batch).await > 0 {
            let mut stop = None;
            for msg in msgs.drain(..) {
                match msg {
                    Msg::Job(job) if stop.is_none() => batch.push(job),
                    Msg::Job(job) => {
                        let _ = job
                            .reply
                            .send(Err(StoreError::unavailable("the store is closing")));
                    }
                    Msg::Stop(ack) => stop = Some(ack),
                }
            }
            if !batch.is_empty() {
                let started = std::time::Instant::now();
                let results = self.commit(&batch).await;
                self.counters
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                let replies = batch.drain(..).map(|job| job.reply).zip(results);
                match &self.flusher {
                    Some(flusher) => flusher.answer(replies.collect()),
                    None => {
                        for (reply, result) in replies {
                            let _ = reply.send(result);
                        }
                    }
                }
            }
            if let Some(ack) = stop {
                if let Some(flusher) = &self.flusher {
                    flusher.drain().await;
                }
                rx.close();
                while let Ok(Msg::Job(job)) = rx.try_recv() {
                    let _ = job
                        .reply
                        .send(Err(StoreError::unavailable("the store is closing")));
                }
                self.conn = None;
                let _ = ack.send(());
                return;
            }
        }
    }

    /// Commits a batch. Charges that take a quota count over its limit refuse as many of the
    /// last changes charging it as it went over by, and the rest commit without them: a
    /// flooding agent's last requests cost the others a rolled-back attempt, not a commit each.
    async fn commit(&mut self, jobs: &[Job]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = jobs.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        while !pending.is_empty() {
            let some: Vec<&Job> = pending.iter().map(|i| &jobs[*i]).collect();
            match self.commit_some(&some).await {
                Split::Committed(done) => {
                    for (i, r) in pending.iter().zip(done) {
                        results[*i] = Some(r);
                    }
                    break;
                }
                Split::OverQuota(over, error) => {
                    // The last changes charging each count, as many as it went over by, are
                    // refused (their callers judge again on the counts then); the others fit.
                    for (key, mut excess) in over {
                        for i in pending.iter().rev() {
                            if excess <= 0 {
                                break;
                            }
                            let amount = jobs[*i].charged(&key);
                            if amount > 0 && results[*i].is_none() {
                                results[*i] = Some(Err(error.clone()));
                                excess -= amount;
                            }
                        }
                    }
                    // Only a charge has a limit, so the loop above refuses at least one change;
                    // were none found, the rest are refused rather than retried for ever.
                    if pending.iter().all(|i| results[*i].is_none()) {
                        for i in &pending {
                            results[*i] = Some(Err(error.clone()));
                        }
                    }
                    pending.retain(|i| results[*i].is_none());
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every change has its result"))
            .collect()
    }

    async fn commit_some(&mut self, jobs: &[&Job]) -> Split {
        // A connection that died while idle (failover, restart) fails the first attempt; the
        // second runs on a fresh one. A failed transaction wrote nothing, so retrying is safe.
        // A change alone needs no batch semantics: a logical failure at any write rolls it back.
        let batch = jobs.len() > 1;
        let mut outcome = self.try_commit(jobs.iter().map(|j| j.parts()), batch).await;
        if let Err(Failed::OverQuota(keys, error)) = outcome {
            return Split::OverQuota(keys, error);
        }
        // A change that failed past its first write fails the same way again: go one by one.
        let logical = matches!(&outcome, Err(Failed::PastFirstWrite(_)));
        if outcome.is_err() && !logical {
            self.conn = None;
            outcome = self.try_commit(jobs.iter().map(|j| j.parts()), batch).await;
            if let Err(Failed::OverQuota(keys, error)) = outcome {
                return Split::OverQuota(keys, error);
            }
        }
        Split::Committed(match outcome {
            Ok(results) => results,
            Err(e) if jobs.len() == 1 => {
                self.conn = None;
                vec![Err(StoreError::unavailable(e))]
            }
            Err(e) => {
                // One bad change must not sink the others: retry each in its own transaction.
                if logical {
                    tracing::debug!(error = %e, batch = jobs.len(), "a change in the batch failed; committing one by one");
                } else {
                    tracing::warn!(error = %e, batch = jobs.len(), "batch commit failed; retrying changes one by one");
                    self.conn = None;
                }
                let mut results = Vec::with_capacity(jobs.len());
                for job in jobs {
                    results.push(
                        match self.try_commit(std::iter::once(job.parts()), false).await {
                            Ok(mut r) => r.remove(0),
                            Err(e) => {
                                self.conn = None;
                                Err(StoreError::unavailable(e))
                            }
                        },
                    );
                }
                results
            }
        })
    }

    async fn try_commit<'a>(
        &mut self,
        changes: impl Iterator<Item = Parts<'a>>,
        batch: bool,
    ) -> std::result::Result<Vec<Result<()>>, Failed> {
        let backend = self.backend;
        let cache = self.cache.clone();
        let conn = self.connection().await?;
        let (results, noted) = commit_batch(conn, backend, changes, batch).await?;
        cache.noted(&noted.scores, &noted.counts);
        cache.activity.committed(noted.head, &noted.decided);
        cache
            .activity
            .forget(noted.actors.iter().map(String::as_str));
        let committed = results.iter().filter(|r| r.is_ok()).count() as u64;
        if committed > 0 {
            self.commits.notify_one();
            self.counters.commits.inc();
            self.counters.changes.inc_by(committed);
        }
        Ok(results)
    }

    async fn connection(&mut self) -> std::result::Result<&mut AnyConnection, sqlx::Error> {
        if self.conn.is_none() {
            let mut conn = self.pool.acquire().await?;
            self.defer_flush(&mut conn).await?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// The writer's commits stop waiting for the disk: the flusher waits instead, beside it.
    /// (On SQLite the writer's connection also checkpoints the WAL: `Backend::writer_settings`.)
    async fn defer_flush(
        &mut self,
        conn: &mut PoolConnection<Any>,
    ) -> std::result::Result<(), sqlx::Error> {
        // Back in the pool this connection would commit for others without flushing: it is
        // closed when the writer lets go of it.
        conn.close_on_drop();
        if self.flusher.is_none() {
            let Some(log) = self.backend.log(conn, &self.pool).await? else {
                return Ok(()); // in memory: nothing to flush
            };
            self.flusher = Some(Flusher::start(log, self.counters.clone()));
        }
        for setting in self.backend.writer_settings() {
            conn.execute(*setting).await?;
        }
        Ok(())
    }
}

/// Commits changes in one transaction. With `batch`, a logical failure past a change's first
/// write fails the whole batch (so the caller retries one by one); alone, it rolls back.
async fn commit_batch<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    changes: impl Iterator<Item = Parts<'a>>,
    batch: bool,
) -> std::result::Result<(Vec<Result<()>>, Noted), Failed> {
    let changes: Vec<Parts<'a>> = changes.collect();
    let actors: Vec<String> = changes
        .iter()
        .flat_map(|(change, _)| change.writes.iter().flat_map(acting_agents))
        .map(str::to_owned)
        .collect();
    // On SQLite a batch of gathered writes alone adds its quota sums in the call that opens its
    // transaction, a round trip to SQLite's thread fewer. (A write applied on its own may fail
    // and take its change's charges with it, so such a batch sums them as it goes.)
    let sums = (backend == Backend::Sqlite
        && changes
            .iter()
            .all(|(change, _)| change.writes.iter().all(gathered)))
    .then(|| {
        let mut sums = QuotaCounts::default();
        for (change, _) in &changes {
            for write in &change.writes {
                if let Write::Quota(q) = write {
                    sums.add(q);
                }
            }
        }
        sums
    });
    let (head, counted) = match open_at_head(conn, backend, sums.as_ref()).await {
        Ok(opened) => opened,
        Err(e) => {
            // The transaction may have begun before the read failed.
            let _ = conn.execute("ROLLBACK").await;
            return Err(e.into());
        }
    };
    let result = apply_all(conn, head, changes.into_iter(), batch, counted).await;
    match result {
        Ok(Batched {
            results,
            noted: Some(mut noted),
            rows,
            audit,
        }) => {
            if let Err(e) = insert_and_commit(conn, &rows, &audit).await {
                let _ = conn.execute("ROLLBACK").await;
                return Err(e.into());
            }
            noted.actors = actors;
            noted.head = audit.last().map(|r| r.seq);
            noted.decided = rows
                .decisions
                .rows
                .iter()
                .copied()
                .map(Decided::of)
                .collect();
            Ok((results, noted))
        }
        Ok(Batched {
            results,
            noted: None,
            ..
        }) => {
            conn.execute("ROLLBACK").await?;
            Ok((results, Noted::default()))
        }
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Begins the writer's transaction and reads the audit chain's head in it; with `sums` (on
/// SQLite), adds them to their quota counts in the same call and returns what they came to.
async fn open_at_head(
    conn: &mut AnyConnection,
    backend: Backend,
    sums: Option<&QuotaCounts>,
) -> std::result::Result<((i64, String), Option<Counted>), sqlx::Error> {
    let upserts = sums.map(QuotaCounts::upserts).unwrap_or_default();
    let mut sql = vec![backend.open_at_head().to_string()];
    QuotaCounts::statements(&upserts, &mut sql);
    let sql = sql.join("; ");
    let rows = if upserts.is_empty() {
        // Without parameters PostgreSQL takes several statements in one query (its simple
        // protocol), and the extended one, which binds them, only one.
        conn.fetch_all(sql.as_str()).await?
    } else {
        QuotaCounts::bind(&upserts, sqlx::query(&sql))
            .fetch_all(&mut *conn)
            .await?
    };
    let head = rows.first().ok_or(sqlx::Error::RowNotFound)?;
    let counted = sums.map(|s| s.counted(&rows[1..])).transpose()?;
    Ok(((head.try_get("seq")?, head.try_get("hash")?), counted))
}

/// Whether a write is gathered into the batch's multi-row inserts and sums, which cannot fail
/// for a logical reason, rather than applied on its own (as `apply_all` does).
fn gathered(write: &Write) -> bool {
    matches!(
        write,
        Write::Decision(DecisionWrite::InsertDecision(_))
            | Write::Violation(ViolationWrite::InsertViolation(_))
            | Write::Approval(ApprovalWrite::InsertApproval(_))
            | Write::Guard(GuardWrite::Arm(_))
            | Write::Trust(TrustWrite::AddEvidence(_) | TrustWrite::NoteTrust { .. })
            | Write::Quota(QuotaWrite::ChargeQuotas { .. } | QuotaWrite::AdjustQuota { .. })
    )
}

/// Applies changes inside an open transaction, from the audit chain's head as it read it;
/// `counted` is what their quota sums came to if the opening call added them.
async fn apply_all<'a>(
    conn: &mut AnyConnection,
    (mut seq, mut hash): (i64, String),
    changes: impl Iterator<Item = Parts<'a>>,
    batch: bool,
    counted: Option<Counted>,
) -> std::result::Result<Batched<'a>, Failed> {
    let mut results = Vec::new();
    // Rows that cannot fail for a logical reason are gathered and written with one multi-row
    // INSERT per table as the batch commits, and trust evidence and scores once per total and
    // agent: a batch costs a few statements, not a few per decision.
    let mut rows = NewRows::default();
    let mut audit_rows = Vec::new();
    let mut quotas = QuotaCounts::default();
    let mut trust = TrustBatch::default();
    for (change, sealed) in changes {
        let mut outcome = Ok(());
        for (i, write) in change.writes.iter().enumerate() {
            match write {
                Write::Decision(DecisionWrite::InsertDecision(d)) => rows.decisions.push(d),
                Write::Violation(ViolationWrite::InsertViolation(v)) => rows.violations.push(v),
                // New rows under fresh ids: no client knows them before the commit, so no
                // later change in the batch can need them written already.
                Write::Approval(ApprovalWrite::InsertApproval(a)) => rows.approvals.push(a),
                Write::Guard(GuardWrite::Arm(g)) => rows.guards.push(g),
                Write::Trust(TrustWrite::AddEvidence(e)) => trust.evidence(e),
                Write::Trust(TrustWrite::NoteTrust {
                    agent_id,
                    tier,
                    at,
                    policy,
                }) => trust.note(agent_id, *tier, *at, policy),
                // Summed once: by the call that opened the transaction, if it did.
                Write::Quota(q) if counted.is_none() => quotas.add(q),
                Write::Quota(_) => {}
                other => {
                    debug_assert!(!gathered(other), "a gathered write is applied on its own");
                    let applied = apply(conn, other).await?;
                    if let Err(e) = applied {
                        if i > 0 {
                            if batch {
                                return Err(Failed::PastFirstWrite(e));
                            }
                            return Ok(Batched::rolled_back(e));
                        }
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
        if outcome.is_ok() {
            for (record, sealed) in change.audit.iter().zip(sealed) {
                seq += 1;
                let next = audit::chain_hash(&hash, seq, &sealed.json);
                audit_rows.push(AuditRow {
                    seq,
                    columns: &sealed.columns,
                    record,
                    json: &sealed.json,
                    prev_hash: std::mem::replace(&mut hash, next.clone()),
                    hash: next,
                });
            }
        }
        results.push(outcome);
    }
    let counted = match counted {
        Some(counted) => counted,
        None => quotas.flush(conn).await?,
    };
    let counts = match counted {
        Ok(counts) => counts,
        Err((keys, e)) if batch => return Err(Failed::OverQuota(keys, e)),
        Err((_, e)) => return Ok(Batched::rolled_back(e)),
    };
    let noted = trust.flush(conn).await?;
    Ok(Batched {
        results,
        noted: Some(Noted {
            scores: noted,
            counts,
            ..Noted::default()
        }),
        rows,
        audit: audit_rows,
    })
}

/// A batch's new rows that cannot fail for a logical reason, written as it commits, in this
/// order (a violation, an approval or a guard names its decision).
pub(crate) struct NewRows<'a> {
    decisions: Table<'a, DecisionRow>,
    violations: Table<'a, ViolationRow>,
    approvals: Table<'a, ApprovalRow>,
    guards: Table<'a, Guard>,
}

impl Default for NewRows<'_> {
    fn default() -> Self {
        NewRows {
            decisions: decision_rows(),
            violations: violation_rows(),
            approvals: approval_rows(),
            guards: guard_rows(),
        }
    }
}

impl NewRows<'_> {
    /// Inserts them now, a statement (and a call) per table that has rows.
    pub(crate) async fn insert(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<(), sqlx::Error> {
        self.decisions.insert(conn).await?;
        self.violations.insert(conn).await?;
        self.approvals.insert(conn).await?;
        self.guards.insert(conn).await
    }

    /// Their INSERT statements, to run in one call with others, their parameters numbered on
    /// from `next` (which they advance): bind them with [`NewRows::bind`].
    pub(crate) fn statements(&self, backend: Backend, sql: &mut Vec<String>, next: &mut usize) {
        self.decisions.statements(backend, sql, next);
        self.violations.statements(backend, sql, next);
        self.approvals.statements(backend, sql, next);
        self.guards.statements(backend, sql, next);
    }

    /// Binds their values, in [`NewRows::statements`]' order.
    pub(crate) fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        let q = self.decisions.bind(q);
        let q = self.violations.bind(q);
        let q = self.approvals.bind(q);
        self.guards.bind(q)
    }
}

/// New rows of one table, written with one multi-row INSERT per [`ROWS_PER_INSERT`] of them.
pub(crate) struct Table<'a, T> {
    table_and_columns: &'static str,
    columns: usize,
    /// Binds one row's `columns` values in their order.
    bind_row: for<'q> fn(Query<'q>, &'q T) -> Query<'q>,
    rows: Vec<&'a T>,
}

impl<'a, T: Sync> Table<'a, T> {
    pub(crate) fn new(
        table_and_columns: &'static str,
        columns: usize,
        bind_row: for<'q> fn(Query<'q>, &'q T) -> Query<'q>,
    ) -> Self {
        Table {
            table_and_columns,
            columns,
            bind_row,
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: &'a T) {
        self.rows.push(row);
    }

    pub(crate) fn with(mut self, row: &'a T) -> Self {
        self.push(row);
        self
    }

    /// Inserts the rows now, a call per statement.
    pub(crate) async fn insert(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<(), sqlx::Error> {
        insert_rows(
            conn,
            self.table_and_columns,
            self.columns,
            &self.rows,
            |q, row| (self.bind_row)(q, row),
        )
        .await
    }

    fn statements(&self, backend: Backend, sql: &mut Vec<String>, next: &mut usize) {
        for chunk in self.rows.chunks(ROWS_PER_INSERT) {
            sql.push(multi_insert_at(
                backend,
                self.table_and_columns,
                self.columns,
                chunk.len(),
                *next,
            ));
            *next += self.columns * chunk.len();
        }
    }

    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        self.rows.iter().fold(q, |q, row| (self.bind_row)(q, row))
    }
}

/// What a committed batch tells the read cache: the trust scores it noted and the quota counts
/// its charges came to, each exact as of the commit.
#[derive(Default)]
pub(crate) struct Noted {
    scores: Vec<(String, f64)>,
    counts: Vec<(QuotaKey, i64)>,
    /// The audit chain's head after the commit, if it moved (the service commits every
    /// decision with its audit record), and the decisions it wrote.
    head: Option<i64>,
    decided: Vec<Decided>,
    /// The agents whose own events it stored (all of the batch's: one more read is harmless).
    actors: Vec<String>,
}

/// What applying a batch came to: each change's result, and what it tells the cache, or `None`
/// where the transaction must roll back (a change alone failed past its first write).
struct Batched<'a> {
    results: Vec<Result<()>>,
    noted: Option<Noted>,
    /// The batch's new rows, written as it commits.
    rows: NewRows<'a>,
    /// The batch's audit records, chained: written as it commits, the chain's head moved to
    /// the last.
    audit: Vec<AuditRow<'a>>,
}

impl Batched<'_> {
    fn rolled_back(e: StoreError) -> Self {
        Batched {
            results: vec![Err(e)],
            noted: None,
            rows: NewRows::default(),
            audit: Vec::new(),
        }
    }
}

/// Rows per multi-row INSERT: well under SQLite's 32,766 and PostgreSQL's 65,535 parameters.
pub(crate) const ROWS_PER_INSERT: usize = 256;

/// `INSERT INTO table (columns) VALUES ($1, …), ($n+1, …), …` for `rows` rows.
pub(crate) fn multi_insert(
    backend: Backend,
    table_and_columns: &str,
    columns: usize,
    rows: usize,
) -> String {
    multi_insert_at(backend, table_and_columns, columns, rows, 1)
}

/// [`multi_insert`] with its parameters numbered from `first`, to follow other statements'
/// in one query.
pub(crate) fn multi_insert_at(
    backend: Backend,
    table_and_columns: &str,
    columns: usize,
    rows: usize,
    first: usize,
) -> String {
    // About seven bytes a PostgreSQL parameter ("$1234, "), three a SQLite one: one allocation.
    let mut sql = String::with_capacity(table_and_columns.len() + 16 + rows * (columns * 7 + 4));
    sql.push_str("INSERT INTO ");
    sql.push_str(table_and_columns);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            backend.push_parameter(&mut sql, first + r * columns + c);
        }
        sql.push(')');
    }
    sql
}

/// A query of the store's, its values bound.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

/// Inserts rows with one multi-row `INSERT` per [`ROWS_PER_INSERT`] of them; `bind` binds one
/// row's `columns` values in their order. For rows that cannot fail for a logical reason.
pub(crate) async fn insert_rows<T: Sync>(
    conn: &mut AnyConnection,
    table_and_columns: &str,
    columns: usize,
    rows: &[T],
    bind: impl for<'q> Fn(Query<'q>, &'q T) -> Query<'q> + Send,
) -> std::result::Result<(), sqlx::Error> {
    let backend = Backend::of(conn);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_insert(backend, table_and_columns, columns, chunk.len());
        let query = chunk.iter().fold(sqlx::query(&sql), &bind);
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A write that had to touch exactly one row: anything else is the conflict.
pub(crate) fn affected(n: u64, conflict: Conflict, message: String) -> Result<()> {
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(conflict, message))
    }
}

/// A write that had to find exactly one row: anything else is missing.
pub(crate) fn missing(n: u64, what: Missing, message: String) -> Result<()> {
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound(what, message))
    }
}

/// Applies one write by its domain.
async fn apply(conn: &mut AnyConnection, write: &Write) -> Applied {
    match write {
        Write::Identity(w) => crate::identities::apply(conn, w).await,
        Write::Decision(w) => crate::decisions::apply(conn, w).await,
        Write::Idempotency(w) => crate::idempotency::apply(conn, w).await,
        Write::Delegation(w) => crate::delegations::apply(conn, w).await,
        Write::Session(w) => crate::sessions::apply(conn, w).await,
        Write::Violation(w) => crate::violations::apply(conn, w).await,
        Write::Approval(w) => crate::approvals::apply(conn, w).await,
        Write::Outcome(w) => crate::outcomes::apply(conn, w).await,
        Write::Trust(w) => crate::trust::apply(conn, w).await,
        Write::Quota(w) => crate::quotas::apply(conn, w).await,
        Write::Delivery(w) => crate::deliveries::apply(conn, w).await,
        Write::Plugin(w) => crate::plugins::apply(conn, w).await,
        Write::Event(w) => crate::events::apply(conn, w).await,
        Write::Baseline(w) => crate::baselines::apply(conn, w).await,
        Write::Audit(w) => crate::audit_tree::apply(conn, w).await,
        Write::Guard(w) => crate::guards::apply(conn, w).await,
        Write::Report(w) => crate::reports::apply(conn, w).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool(url: &str, connections: u32) -> AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(|conn, _| Box::pin(async move { Backend::Sqlite.set_up(conn).await }))
            .connect(url)
            .await
            .unwrap()
    }

    fn writer(pool: &AnyPool) -> Writer {
        Writer {
            pool: pool.clone(),
            backend: Backend::Sqlite,
            conn: None,
            max_batch: 8,
            cache: std::sync::Arc::new(crate::ReadCache {
                ttl: std::time::Duration::ZERO,
                tokens: Default::default(),
                agents: Default::default(),
                humans: Default::default(),
                quotas: Default::default(),
                activity: crate::activity::ActivityCache::new(std::time::Duration::ZERO),
            }),
            flusher: None,
            counters: WriterCounters::default(),
            commits: Default::default(),
        }
    }

    async fn synchronous(conn: &mut AnyConnection) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn on_a_file_only_the_writers_connection_leaves_flushing_to_the_flusher() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("warden.db");
        let pool = pool(&format!("sqlite://{}?mode=rwc", db.display()), 2).await;
        let mut writer = writer(&pool);
        assert_eq!(synchronous(writer.connection().await.unwrap()).await, 1); // NORMAL
        assert!(writer.flusher.is_some());
        // The writer lets go of its connection (as after a failed batch): it is closed, not
        // handed to a reader or another writer that expects each commit on disk.
        writer.conn = None;
        let (mut a, mut b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        assert_eq!(synchronous(&mut a).await, 2); // FULL
        assert_eq!(synchronous(&mut b).await, 2);
    }

    #[tokio::test]
    async fn on_postgres_only_the_writers_connection_leaves_flushing_to_the_flusher() {
        let pool = crate::flush::tests::postgres_pool(2).await;
        let mut writer = writer(&pool);
        writer.backend = Backend::Postgres;
        let setting = "SELECT current_setting('synchronous_commit')";
        let conn = writer.connection().await.unwrap();
        let mine: String = sqlx::query_scalar(setting).fetch_one(conn).await.unwrap();
        assert_eq!(mine, "off");
        assert!(writer.flusher.is_some());
        writer.conn = None;
        let (mut a, mut b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        for conn in [&mut a, &mut b] {
            let theirs: String = sqlx::query_scalar(setting)
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(theirs, "on");
        }
    }

    #[tokio::test]
    async fn in_memory_the_writer_commits_as_before() {
        let pool = pool("sqlite::memory:", 1).await;
        let mut writer = writer(&pool);
        assert_eq!(synchronous(writer.connection().await.unwrap()).await, 2);
        assert!(writer.flusher.is_none());
    }

    #[tokio::test]
    async fn a_commit_wakes_the_wal_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("warden.db");
        let pool = pool(&format!("sqlite://{}?mode=rwc", db.display()), 2).await;
        Backend::Sqlite.migrations().run(&pool).await.unwrap();
        let mut writer = writer(&pool);
        let commits = writer.commits.clone();
        let woken =
            |wait| tokio::time::timeout(std::time::Duration::from_millis(wait), commits.notified());
        assert!(woken(20).await.is_err(), "nothing committed yet");
        let change = Change {
            writes: vec![],
            audit: vec![],
        };
        let results = writer
            .try_commit(std::iter::once((&change, &[][..])), false)
            .await
            .unwrap();
        assert!(results[0].is_ok());
        woken(5_000).await.expect("the commit woke the checkpoint");
    }

    #[test]
    fn multi_row_inserts_number_every_parameter() {
        assert_eq!(
            multi_insert(Backend::Postgres, "t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            multi_insert(Backend::Sqlite, "t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        // Following another statement's five parameters in one query.
        assert_eq!(
            multi_insert_at(Backend::Postgres, "t (a, b)", 2, 3, 6),
            "INSERT INTO t (a, b) VALUES ($6, $7), ($8, $9), ($10, $11)"
        );
        assert_eq!(
            Backend::Postgres.move_head(10),
            "UPDATE audit_head SET seq = $10, hash = $11 WHERE id = 1"
        );
    }
}
