//! Persistence on SQLite (the embedded default) or PostgreSQL (several replicas), through one
//! SQL dialect on sqlx's `Any` driver; [`dialect`] is the only place the two differ.
//!
//! Reads go straight to the pool. Every write goes through one writer per process (on SQLite a
//! thread of its own, on PostgreSQL a task) that commits whole batches of changes in one
//! transaction (group commit): each change's rows and its audit records land together or not at
//! all, and a caller hears back only after the transaction is durable. The writer also extends
//! the audit hash chain; on PostgreSQL it locks the chain's head row, so replicas append one
//! batch at a time and the chain stays linear.
//!
//! One file per domain holds its reads and how its writes apply. This crate depends on
//! `warden-core` only, never on the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use tokio::sync::{mpsc, oneshot};
use warden_core::audit::AuditRecord;
use warden_core::identity::{Agent, Human, TokenRecord};

mod activity;
mod apart;
mod approvals;
mod audit;
mod audit_tree;
mod baselines;
mod decisions;
mod delegations;
mod deliveries;
pub mod dialect;
mod error;
mod events;
mod flush;
mod guards;
mod idempotency;
mod identities;
mod liveness;
mod outcomes;
mod plugins;
mod quotas;
mod readers;
mod reports;
mod sessions;
mod trust;
mod wal_vfs;
mod writer;

pub use activity::{AgentActivity, EventActivity};
pub use approvals::{ApprovalWrite, ExpiryCursor};
pub use audit::{AuditFilter, AuditGroup, AuditOrder, AuditPageRequest, AuditScope, RawAuditRow};
pub use audit_tree::{AuditWrite, BLOCK, Extended, ProofError, Proofs, StoredCheckpoint};
pub use baselines::{BaselineFilter, BaselineWrite};
pub use decisions::{AllowedAction, DecisionWrite};
pub use delegations::DelegationWrite;
pub use deliveries::DeliveryWrite;
pub use dialect::Backend;
pub use error::{Conflict, Missing, Result, StoreError};
pub use events::EventWrite;
pub use guards::GuardWrite;
pub use idempotency::{IdempotencyKey, IdempotencyWrite, Kept};
pub use identities::IdentityWrite;
pub use outcomes::OutcomeWrite;
pub use plugins::{PluginRow, PluginWrite};
use quotas::QuotaKey;
pub use quotas::QuotaWrite;
pub use reports::{RecentDecision, ReportWrite, StoredReport};
pub use sessions::SessionWrite;
pub use trust::TrustWrite;
pub use violations::{ViolationFilter, ViolationWrite};
pub use writer::{DURATION_BUCKETS, WriterCounters};
use writer::{Job, Msg, Writer};

mod violations;

/// One row-level write, by domain. Only a change's first write may fail for a logical reason
/// (exists already, changed underneath, not found), so a failed change has written nothing.
#[derive(Debug, Clone)]
pub enum Write {
    /// Agents, humans and tokens.
    Identity(IdentityWrite),
    /// Decisions.
    Decision(DecisionWrite),
    /// Violations.
    Violation(ViolationWrite),
    /// Approval requests.
    Approval(ApprovalWrite),
    /// Outcomes, signals and rollbacks.
    Outcome(OutcomeWrite),
    /// Trust evidence, scores and tier changes.
    Trust(TrustWrite),
    /// Quota counts.
    Quota(QuotaWrite),
    /// Webhook deliveries.
    Delivery(DeliveryWrite),
    /// Stored plugins.
    Plugin(PluginWrite),
    /// Human baselines.
    Baseline(BaselineWrite),
    /// Activity events.
    Event(EventWrite),
    /// Watches over guarded actions.
    Guard(GuardWrite),
    /// The audit trail's retention.
    Audit(AuditWrite),
    /// Kept weekly reports.
    Report(ReportWrite),
    /// Idempotency keys: claims and kept answers.
    Idempotency(IdempotencyWrite),
    /// Delegations from humans to agents.
    Delegation(DelegationWrite),
    /// The web UI's sessions.
    Session(SessionWrite),
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
    /// Connections in the read pool (the writer takes one more).
    pub max_connections: u32,
    /// Most changes committed in one transaction.
    pub max_batch: usize,
    /// How long found tokens, agents and humans are cached; zero disables the cache.
    pub cache_ttl: Duration,
    /// On Linux, SQLite's writer keeps to one core, shared with its connection's thread
    /// (`share_a_core`); off, both run on any.
    pub share_writer_core: bool,
    /// SQLite's writer writes each commit's WAL frames in one write (`wal_vfs`); off, two a
    /// frame, as SQLite does.
    pub coalesce_wal_writes: bool,
}

/// A unit of change: rows and the audit records that describe them, committed together.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Row writes, in order.
    pub writes: Vec<Write>,
    /// Audit records appended to the chain in the same transaction.
    pub audit: Vec<AuditRecord>,
}

/// The store: a read pool, a handle on the writer task, and a short-lived read cache.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: mpsc::Sender<Msg>,
    cache: Arc<ReadCache>,
    counters: WriterCounters,
    /// The decision path's reading connections, outside the pool (`readers`).
    readers: Arc<readers::Readers>,
}

/// Found tokens, agents and humans, kept for `ttl` so the decision hot path skips its reads.
/// This process's own writes evict what they change at once; another replica's change (or an
/// offline `warden token revoke`) is seen here within `ttl`.
#[derive(Debug)]
pub(crate) struct ReadCache {
    ttl: Duration,
    // Shared, not cloned: a decision reads its token and agent from here, and cloning their
    // strings was up to 1% of the request threads (BENCHMARKS.md).
    tokens: Mutex<HashMap<String, (Instant, Arc<TokenRecord>)>>,
    agents: Mutex<HashMap<String, (Instant, Arc<Agent>)>>,
    humans: Mutex<HashMap<String, (Instant, Arc<Human>)>>,
    /// Last known quota counts (agent, quota, scope, window start): a hint for the decision's
    /// pre-check and its answer, kept up to date by this process's own charges. The charge
    /// itself is checked against the database when it commits, so a stale hint costs at most a
    /// second judgement, never a wrong count.
    quotas: Mutex<HashMap<QuotaKey, i64>>,
    /// Agents' recent activity per kind of action, for the anomaly stage (`activity`).
    activity: activity::ActivityCache,
}

/// Entries kept per map before it is cleared (a crude bound; the TTL keeps entries fresh).
pub(crate) const CACHE_CAPACITY: usize = 100_000;

impl ReadCache {
    fn get<V>(&self, map: &Mutex<HashMap<String, (Instant, Arc<V>)>>, key: &str) -> Option<Arc<V>> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = map.lock().expect("cache lock");
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put<V>(&self, map: &Mutex<HashMap<String, (Instant, Arc<V>)>>, key: &str, value: Arc<V>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = map.lock().expect("cache lock");
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key.to_string(), (Instant::now(), value));
    }

    /// What the writer committed: a cached agent keeps its row with the score noted, so a
    /// decision's trust evidence does not send the agent's next decision to the database; a
    /// known quota count takes the value its charge came to. Both are exact as of the commit,
    /// so a hint never runs ahead of the database (a count of calls only grows, and a full one
    /// may deny without a read).
    pub(crate) fn noted(&self, scores: &[(String, f64)], counts: &[(QuotaKey, i64)]) {
        {
            let mut agents = self.agents.lock().expect("cache lock");
            for (id, score) in scores {
                if let Some((_, agent)) = agents.get_mut(id) {
                    // Copied only while a decision still holds the old one.
                    Arc::make_mut(agent).trust_score = Some(*score);
                }
            }
        }
        let mut hints = self.quotas.lock().expect("cache lock");
        for (key, used) in counts {
            if let Some(hint) = hints.get_mut(key) {
                *hint = *used;
            }
        }
    }

    fn evict(&self, stale: &[Stale]) {
        for s in stale {
            match s {
                Stale::Agent(id) => {
                    self.agents.lock().expect("cache lock").remove(id);
                }
                Stale::Human(id) => {
                    self.humans.lock().expect("cache lock").remove(id);
                }
                Stale::Tokens => self.tokens.lock().expect("cache lock").clear(),
            }
        }
    }
}

/// A cached entry a change makes stale.
#[derive(Debug)]
enum Stale {
    Agent(String),
    Human(String),
    /// Tokens are cached by hash; revocation is rare, so all of them.
    Tokens,
}

impl Stale {
    /// What `change` makes stale: nothing for a decision (the hot path).
    fn of(change: &Change) -> Vec<Stale> {
        change
            .writes
            .iter()
            .filter_map(|write| match write {
                Write::Identity(
                    IdentityWrite::InsertAgent(a) | IdentityWrite::UpdateAgent { agent: a, .. },
                ) => Some(Stale::Agent(a.id.clone())),
                Write::Identity(IdentityWrite::InsertHuman(h, _)) => Some(Stale::Human(h.id.clone())),
                Write::Identity(IdentityWrite::RevokeToken { .. }) => Some(Stale::Tokens),
                // Nothing else is cached (quota hints follow the commit, in `Store::commit`).
                Write::Identity(IdentityWrite::InsertToken(_))
                // A noted score is written into the cached agent by the writer once committed.
                | Write::Trust(_)
                | Write::Decision(_)
                | Write::Violation(_)
                | Write::Approval(_)
                | Write::Outcome(_)
                | Write::Quota(_)
                | Write::Delivery(_)
                | Write::Plugin(_)
                | Write::Baseline(_)
                | Write::Event(_)
                | Write::Guard(_)
                | Write::Idempotency(_)
                | Write::Delegation(_)
                | Write::Session(_)
                | Write::Audit(_)
                | Write::Report(_) => None,
            })
            .collect()
    }
}

/// A SELECT narrowed by optional filters, with its bound arguments in order.
struct Filters {
    sql: String,
    args: Vec<Arg>,
}

impl Filters {
    fn new(select: &str) -> Filters {
        Filters {
            sql: format!("{select} WHERE 1 = 1"),
            args: Vec::new(),
        }
    }

    fn cond(&mut self, column: &str, op: &str, arg: Arg) {
        self.args.push(arg);
        self.sql
            .push_str(&format!(" AND {column} {op} ${}", self.args.len()));
    }

    /// Binds `arg`; returns its placeholder.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    /// Adds a condition written with placeholders from [`Filters::arg`].
    fn and(&mut self, clause: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(clause);
    }

    fn text(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.cond(column, "=", Arg::Text(v.clone()));
        }
    }

    fn text_op(&mut self, column: &str, op: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.cond(column, op, Arg::Text(v.to_string()));
        }
    }

    fn int(&mut self, column: &str, op: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.cond(column, op, Arg::Int(v));
        }
    }

    /// Appends `tail` (ORDER BY, LIMIT) and runs the query.
    async fn fetch_all(
        mut self,
        tail: &str,
        pool: &AnyPool,
    ) -> std::result::Result<Vec<AnyRow>, sqlx::Error> {
        self.sql.push_str(tail);
        let mut query = sqlx::query(&self.sql);
        for arg in self.args {
            query = match arg {
                Arg::Text(s) => query.bind(s),
                Arg::Int(i) => query.bind(i),
            };
        }
        query.fetch_all(pool).await
    }
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Store {
    /// Connects, applies migrations and starts the writer.
    pub async fn open(options: &StoreOptions) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let url = options.url.as_str();
        let Some(backend) = Backend::of_url(url) else {
            anyhow::bail!(
                "unsupported database URL `{}`: use sqlite://… or postgres://…",
                redact(url)
            );
        };
        // The writer has connections of its own (`run_writer`).
        let pool = pool_options(backend, options.max_connections.max(1))
            .connect(url)
            .await
            .with_context(|| format!("cannot open the database at {}", redact(url)))?;
        backend
            .migrations()
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        let cache = Arc::new(ReadCache {
            ttl: options.cache_ttl,
            tokens: Default::default(),
            agents: Default::default(),
            humans: Default::default(),
            quotas: Default::default(),
            activity: activity::ActivityCache::new(options.cache_ttl),
        });
        let (tx, rx) = mpsc::channel(8192);
        let counters = WriterCounters::default();
        let commits = Arc::new(tokio::sync::Notify::new());
        let writer = Writer {
            pool: pool.clone(),
            backend,
            conn: None,
            max_batch: options.max_batch.max(1),
            cache: cache.clone(),
            flusher: None,
            counters: counters.clone(),
            commits: commits.clone(),
        };
        // The writer and its flusher run on a thread of their own: their serial work, and each
        // wake-up when the database answers, is not a turn among every request's tasks.
        let share_core = backend == Backend::Sqlite && options.share_writer_core;
        let mut runtime = tokio::runtime::Builder::new_current_thread();
        if share_core {
            // Its blocking threads (the flush's) start from the writer's and would inherit its
            // core: they wait for the disk on any.
            runtime.on_thread_start(run_anywhere);
        }
        let runtime = runtime
            .enable_all()
            .build()
            .context("cannot start the writer's runtime")?;
        let url_owned = match backend {
            Backend::Sqlite if options.coalesce_wal_writes => wal_vfs::url(url),
            _ => None,
        }
        .unwrap_or_else(|| url.to_owned());
        std::thread::Builder::new()
            .name("warden-writer".into())
            .spawn(move || {
                if backend == Backend::Sqlite {
                    run_as_batch();
                    if share_core {
                        share_a_core();
                    }
                }
                runtime.block_on(run_writer(writer, url_owned, rx))
            })
            .context("cannot start the writer's thread")?;
        if let Some(sql) = backend.checkpoint() {
            tokio::spawn(checkpoint_wal(
                pool.clone(),
                sql,
                commits,
                counters.checkpoint_seconds.clone(),
            ));
        }
        Ok(Store {
            pool,
            backend,
            writer: tx,
            cache,
            counters,
            readers: Arc::new(readers::Readers::new(
                url,
                backend,
                options.max_connections.max(1) as usize,
            )),
        })
    }

    /// The writer's counts of commits, changes and flushes, and their times, for the service's
    /// metrics.
    pub fn writer_counters(&self) -> WriterCounters {
        self.counters.clone()
    }

    /// Whether the store has been closed.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Commits a change and its audit records; returns once durable.
    pub async fn commit(&self, change: Change) -> Result<()> {
        self.commit_change(change).await
    }

    async fn commit_change(&self, change: Change) -> Result<()> {
        // Identity changes evict the cache before and after: a read racing the commit cannot
        // keep the old row for long. Decisions (the hot path) evict nothing: the writer counts
        // them into the kept activity answers.
        let stale = Stale::of(&change);
        let sealed = change
            .audit
            .iter()
            .map(writer::Sealed::of)
            .collect::<Result<Vec<_>>>()?;
        self.cache.evict(&stale);
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Msg::Job(Job {
                change,
                sealed,
                reply,
            }))
            .await
            .map_err(|_| StoreError::unavailable("the writer has stopped"))?;
        let result = rx
            .await
            .map_err(|_| StoreError::unavailable("the writer has stopped"))?;
        self.cache.evict(&stale);
        result
    }

    /// Checks that the database answers and holds Warden's schema.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// Drains and stops the writer, then closes the pool. Later writes fail with 503.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Msg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.readers.close();
        self.pool.close().await;
    }
}

/// Copies the SQLite WAL back into the database beside the writer, without blocking it
/// (PASSIVE): woken by the writer's commits, at most once every [`CHECKPOINT_SPACING`], and
/// once a second for what other connections wrote. The writer's own checkpoint (at 1,000
/// pages, `Backend::writer_settings`), which lets the log restart, then finds little left to
/// copy, so the batch behind it no longer waits for the whole copy. Ends when the pool closes.
/// Each checkpoint's time goes to `seconds`.
async fn checkpoint_wal(
    pool: AnyPool,
    sql: &'static str,
    commits: Arc<tokio::sync::Notify>,
    seconds: Histogram,
) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), commits.notified()).await;
        if pool.is_closed() {
            return;
        }
        let started = Instant::now();
        match sqlx::query(sql).execute(&pool).await {
            Ok(_) => seconds.observe(started.elapsed().as_secs_f64()),
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint skipped"),
        }
        tokio::time::sleep(CHECKPOINT_SPACING).await;
    }
}

/// A store on a fresh SQLite file in `dir`, for the crate's own tests.
#[cfg(test)]
pub(crate) async fn test_store(
    dir: &std::path::Path,
    max_connections: u32,
    cache_ttl: Duration,
) -> Store {
    Store::open(&StoreOptions {
        url: format!("sqlite://{}?mode=rwc", dir.join("warden.db").display()),
        max_connections,
        max_batch: 8,
        cache_ttl,
        share_writer_core: true,
        coalesce_wal_writes: true,
    })
    .await
    .unwrap()
}

/// Makes the calling thread (SQLite's writer) a batch thread on Linux (`SCHED_BATCH`): woken,
/// it waits for its turn rather than preempting the thread that woke it. A batch wakes the
/// writer for each statement's result that SQLite's thread sends it, and preempted mid-answer,
/// that thread held the writer up in turn: on two cores the writer waited for a core a quarter
/// of its time while a quarter of the machine was idle. The process's context switches halved.
/// On PostgreSQL, whose backends wake the writer from another process, it cost 5-11% of the
/// throughput, so that writer stays an ordinary thread (BENCHMARKS.md).
fn run_as_batch() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call; pid 0 is this thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, "the writer's thread stays an ordinary one");
        }
    }
}

/// Keeps the calling thread (SQLite's writer) on the core it runs on now. Threads inherit it: the
/// thread that runs the writer's SQLite connection, started from here, shares the core. A
/// batch hands each statement to that thread and each result back, and on two cores those
/// hand-offs crossed between cores: sharing one, the writer took 12% less time a decision and
/// decisions a second rose in seven pairs of runs of eight on an AMD machine; on an Intel one,
/// where the disk's flush set the pace, they stayed level (BENCHMARKS.md). Request threads
/// still run on every core, and the flush on any (`run_anywhere`).
fn share_a_core() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getcpu has no preconditions; a zeroed cpu_set_t is the empty set, and
        // CPU_SET is given an index it checks against the set's size.
        let pinned = unsafe {
            let cpu = libc::sched_getcpu();
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            cpu >= 0 && {
                libc::CPU_SET(cpu as usize, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
            }
        };
        if !pinned {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, "the writer's thread runs on any core");
        }
    }
}

/// Lets the calling thread run on any core the process may use (the main thread's), undoing
/// what it inherited from a thread that keeps to one (`share_a_core`).
fn run_anywhere() {
    #[cfg(target_os = "linux")]
    {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a zeroed cpu_set_t is a valid set for the kernel to fill and then to read.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(libc::getpid(), size, &mut set) == 0 {
                libc::sched_setaffinity(0, size, &set);
            }
        }
    }
}

/// Runs the writer on its thread's runtime until the store closes.
async fn run_writer(mut writer: Writer, url: String, rx: mpsc::Receiver<Msg>) {
    // The writer opens its own connections here, lazily: a server that is down fails the first
    // batch, as when a connection dies, and the next connects again. PostgreSQL's are sockets of
    // the runtime that opened them: one for the commits and one for the flusher. SQLite's runs
    // on a thread of its own, which this thread starts and so shares its core (`share_a_core`).
    let connections = match writer.backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    };
    match pool_options(writer.backend, connections).connect_lazy(&url) {
        Ok(pool) => writer.pool = pool,
        Err(e) => return tracing::error!(error = %e, "cannot open the writer's connections"),
    }
    writer.run(rx).await
}

/// A pool's settings for `backend`, at most `connections` of them.
fn pool_options(backend: Backend, connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings a connection every time it is taken from the pool: a round trip of its
        // own (to SQLite's thread, or to PostgreSQL) before every read. Only one that may
        // have been dropped meanwhile is checked (`liveness`).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if liveness::check(meta.idle_for) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| Box::pin(async move { backend.set_up(conn).await }))
}

/// How long a read waits for a connection before it fails as unavailable.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time between two background checkpoints: a few commits' pages are copied at
/// once, so a page the writer changes in every commit is not copied for each of them.
const CHECKPOINT_SPACING: Duration = Duration::from_millis(5);

/// A list read from the store, and the ids of the rows in it that did not read back: those are
/// skipped and logged, so one bad row costs the reader that row, not the list.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    /// What read back.
    pub items: Vec<T>,
    /// The ids of rows that did not.
    pub unreadable: Vec<String>,
}

impl<T> Listed<T> {
    /// Reads each row with `read`; a row's error is its own (decoding does no I/O).
    pub(crate) fn read(rows: &[AnyRow], what: &str, read: impl Fn(&AnyRow) -> Result<T>) -> Self {
        let mut listed = Listed {
            items: Vec::with_capacity(rows.len()),
            unreadable: Vec::new(),
        };
        for row in rows {
            match read(row) {
                Ok(item) => listed.items.push(item),
                Err(err) => {
                    let id: String = sqlx::Row::try_get(row, "id").unwrap_or_default();
                    tracing::warn!(what, id, error = %err, "a stored row does not read back; skipped (an admin can quarantine it)");
                    listed.unreadable.push(id);
                }
            }
        }
        listed
    }
}

/// The error for one stored document, named by `id`, that does not read back.
pub(crate) fn unreadable(id: &str, err: &StoreError) -> StoreError {
    StoreError::Unreadable(format!(
        "`{id}` is stored in a form that does not read back ({err}); an admin can quarantine it"
    ))
}

/// A stored wire name read back as its closed set; anything else is a bug, not an outage.
pub(crate) fn wire<T>(r: &AnyRow, column: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let text: String = sqlx::Row::try_get(r, column)?;
    parse(&text)
        .ok_or_else(|| StoreError::Bug(format!("stored {column} `{text}` is not one Warden knows")))
}

/// [`wire`] for a column that may be NULL.
pub(crate) fn wire_opt<T>(
    r: &AnyRow,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>> {
    let text: Option<String> = sqlx::Row::try_get(r, column)?;
    text.map(|t| {
        parse(&t).ok_or_else(|| {
            StoreError::Bug(format!("stored {column} `{t}` is not one Warden knows"))
        })
    })
    .transpose()
}

/// Hides the password in a database URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// What the modules' tests of SQLite's schema share.
#[cfg(test)]
mod sqlite_tests {
    /// A private in-memory SQLite database, migrated up to (not including) `below`; `i64::MAX`
    /// migrates it all.
    pub(crate) async fn migrated(below: i64) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let all = crate::Backend::Sqlite.migrations();
        let some = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                all.iter().filter(|m| m.version < below).cloned().collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        some.run(&pool).await.unwrap();
        pool
    }

    /// The steps of SQLite's plan for `sql`.
    pub(crate) async fn plan(pool: &sqlx::AnyPool, sql: &str) -> Vec<String> {
        use sqlx::Row;
        sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("detail").unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
    }

    /// An empty change, committed: a batch, a flush, and a checkpoint woken.
    async fn commit_nothing(store: &Store) {
        store
            .commit(Change {
                writes: vec![],
                audit: vec![],
            })
            .await
            .unwrap();
    }

    /// The writer's thread runs as a batch thread, so that a wake-up does not preempt the
    /// thread that sent it (Linux's scheduling policy 3, `SCHED_BATCH`, is the 39th field of
    /// the thread's `stat` after its name).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_writers_thread_runs_as_a_batch_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path(), 1, Duration::ZERO).await;
        // Once a commit is answered the writer's thread has started and set its policy.
        commit_nothing(&store).await;
        let mut policies = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
                continue; // a thread that ended meanwhile
            };
            if name.trim_end() != "warden-writer" {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
                continue;
            };
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            policies.push(
                after_name
                    .split(' ')
                    .nth(38)
                    .unwrap()
                    .parse::<i32>()
                    .unwrap(),
            );
        }
        // Other tests' stores have writers in this process too, some perhaps only starting.
        assert!(
            policies.contains(&libc::SCHED_BATCH),
            "the writers' threads' policies: {policies:?}"
        );
    }

    /// A commit is timed as the writer's batch and as the flush that made it durable, and it
    /// wakes SQLite's background checkpoint, which is timed too.
    #[tokio::test]
    async fn the_writer_times_its_batches_flushes_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path(), 1, Duration::ZERO).await;
        let counters = store.writer_counters();
        let times = |c: &WriterCounters| {
            [&c.batch_seconds, &c.flush_seconds, &c.checkpoint_seconds].map(writer::observed)
        };
        assert_eq!(times(&counters)[..2], [0, 0], "nothing committed yet");
        commit_nothing(&store).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while times(&counters)[2] == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let [batches, flushes, checkpoints] = times(&counters);
        assert_eq!((batches, flushes), (1, 1));
        assert!(checkpoints >= 1, "no checkpoint timed");
        store.close().await;
    }
}
