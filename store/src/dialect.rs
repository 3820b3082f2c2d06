//! The only place SQLite and PostgreSQL differ: connection set-up, migrations, how a write
//! transaction begins and which statements share a call, how tables are locked, how many rows
//! become one JSON value, and how the writer's commits are made durable. Everything else is one SQL dialect on sqlx's `Any` driver.

use sqlx::{AnyConnection, AnyPool, Executor as _};

use crate::flush::Log;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file under the data directory.
    Sqlite,
    /// A shared server, for several replicas.
    Postgres,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Backend {
    /// The backend a database URL names.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// The `n`th parameter of a statement whose parameters are all numbered in order: SQLite
    /// prepares `$n` as a named parameter, looked up by name for each of a multi-row insert's
    /// thousands (about 40 ms a statement), so it gets plain positional `?` there.
    pub(crate) fn parameter(self, n: usize) -> String {
        let mut sql = String::new();
        self.push_parameter(&mut sql, n);
        sql
    }

    /// Appends [`Backend::parameter`] to a statement's text: a batch's inserts have hundreds,
    /// and formatting each as a `String` of its own was 5–7% of PostgreSQL's writer thread.
    pub(crate) fn push_parameter(self, sql: &mut String, n: usize) {
        match self {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => {
                sql.push('$');
                sql.push_str(itoa::Buffer::new().format(n));
            }
        }
    }

    /// An aggregate turning a query's rows into one JSON array of arrays (as text; `[]` for no
    /// rows), for scans of many rows: the driver then hands over one value per chunk instead
    /// of one row at a time (each row costs sqlx a copy of every value and a hand-over between
    /// threads, about ten times the database's own work). `columns` are column names; one
    /// holding JSON text is named `json:column`, and comes back as JSON.
    pub(crate) fn json_rows(self, columns: &[&str]) -> String {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| match (c.strip_prefix("json:"), self) {
                (Some(c), Backend::Sqlite) => format!("json({c})"),
                (Some(c), Backend::Postgres) => format!("{c}::json"),
                (None, _) => (*c).to_string(),
            })
            .collect();
        match self {
            Backend::Sqlite => format!("json_group_array(json_array({}))", cols.join(", ")),
            Backend::Postgres => format!(
                "COALESCE(json_agg(json_build_array({})), '[]'::json)::text",
                cols.join(", ")
            ),
        }
    }

    /// The backend a connection talks to.
    pub(crate) fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The schema's migrations.
    pub(crate) fn migrations(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Settings every new connection gets.
    pub(crate) async fn set_up(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if self == Backend::Sqlite {
            // WAL lets readers run beside the writer; FULL makes every commit durable.
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA busy_timeout = 5000").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            // Only the writer's connection checkpoints on its own (`writer_settings`); others'
            // commits would otherwise stop to checkpoint. The store's background task
            // (`checkpoint`) copies beside the writer, woken by its commits.
            conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
        }
        Ok(())
    }

    /// What the writer's connection runs first. Its commits return without waiting for the
    /// disk; the flusher then makes them durable before anyone is answered (see `flush`).
    ///
    /// On SQLite the writer also checkpoints the WAL itself once it holds 1,000 pages (4 MB),
    /// right after the commit that took it there. A checkpoint beside a writer that never stops
    /// can never catch up with it, and the WAL restarts from its beginning only once a
    /// checkpoint has: under sustained load it grew by 60-90 MB a second, without end. (The
    /// store's background checkpoint, woken by every commit, copies most of it beforehand.) The
    /// file is cut back to 64 MB when it restarts, should a long read have let it grow.
    ///
    /// A multi-row insert keeps a statement journal (what its pages were, to undo it alone);
    /// past 64 KB SQLite spills it into a temporary file, created and deleted per statement.
    /// The writer's are kept in memory: a batch's are a few hundred kilobytes.
    pub(crate) fn writer_settings(self) -> &'static [&'static str] {
        match self {
            Backend::Sqlite => &[
                "PRAGMA synchronous = NORMAL",
                "PRAGMA wal_autocheckpoint = 1000",
                "PRAGMA journal_size_limit = 67108864",
                "PRAGMA temp_store = MEMORY",
            ],
            Backend::Postgres => &["SET synchronous_commit = off"],
        }
    }

    /// The log the flusher makes durable for the writer on `conn`: SQLite's WAL file (none for
    /// a database in memory), or PostgreSQL's log through the pool.
    pub(crate) async fn log(
        self,
        conn: &mut AnyConnection,
        pool: &AnyPool,
    ) -> Result<Option<Log>, sqlx::Error> {
        if self == Backend::Postgres {
            return Ok(Some(Log::Postgres(pool.clone())));
        }
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(&mut *conn)
                .await?;
        let wal = mode.eq_ignore_ascii_case("wal") && !file.is_empty();
        Ok(wal.then(|| Log::wal(format!("{file}-wal").into())))
    }

    /// Starts the writer's transaction and reads the audit chain's head, locked, in one call
    /// (one statement after another: a call to SQLite's thread, a simple-protocol query to
    /// PostgreSQL). On SQLite the transaction takes the write lock at once, so a batch never
    /// fails half-way for want of it.
    pub(crate) fn open_at_head(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE; SELECT seq, hash FROM audit_head WHERE id = 1",
            Backend::Postgres => "BEGIN; SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        }
    }

    /// Moves the audit chain's head, taking its sequence number and then its hash as
    /// parameters `first` and the next, to follow a batch's inserts in one call.
    pub(crate) fn move_head(self, first: usize) -> String {
        format!(
            "UPDATE audit_head SET seq = {}, hash = {} WHERE id = 1",
            self.parameter(first),
            self.parameter(first + 1)
        )
    }

    /// Notes an agent's trust score on the agent and in its day of the trust history. On
    /// PostgreSQL one statement taking the score `$1`, the agent `$2`, the day `$3` and the tier
    /// `$4`. On SQLite two, with positional parameters so that several agents' notes can follow
    /// other statements in one call: score, agent, agent, day, score, tier.
    pub(crate) fn note_score(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "UPDATE agents SET trust_score = ? WHERE id = ?; \
                 INSERT INTO trust_daily (agent_id, day, score, tier) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (agent_id, day) DO UPDATE SET score = excluded.score, tier = excluded.tier"
            }
            Backend::Postgres => {
                "WITH scored AS (UPDATE agents SET trust_score = $1 WHERE id = $2) \
                 INSERT INTO trust_daily (agent_id, day, score, tier) VALUES ($2, $3, $1, $4) \
                 ON CONFLICT (agent_id, day) DO UPDATE SET score = excluded.score, tier = excluded.tier"
            }
        }
    }

    /// Locks tables for a rebuild, where replicas could write to them meanwhile.
    pub(crate) fn lock_tables(self, tables: &str) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some(format!("LOCK TABLE {tables} IN EXCLUSIVE MODE")),
        }
    }

    /// A passive WAL checkpoint, where there is a WAL to checkpoint.
    pub(crate) fn checkpoint(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => Some("PRAGMA wal_checkpoint(PASSIVE)"),
            Backend::Postgres => None,
        }
    }
}
