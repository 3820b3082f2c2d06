//! Commits made durable beside the writer, not inside it.
//!
//! The writer's own connection commits without waiting for the disk: on SQLite with
//! `synchronous = NORMAL` (SQLite writes the batch's WAL frames but does not fsync them), on
//! PostgreSQL with `synchronous_commit = off` (the server writes the commit record but does not
//! flush it). This task then makes the log durable, and only then answers the callers of every
//! batch whose commit returned before it began:
//! - SQLite: it flushes the WAL file. The batches' frames were written before, so it covers them.
//! - PostgreSQL: it commits a transaction of its own synchronously. Its commit record follows
//!   the writer's in the log, and the server flushes the log in order, so that covers them.
//!
//! Meanwhile the writer commits the next batch, so a commit's work and the disk's wait overlap
//! instead of adding up, and one flush covers every batch that queued behind the last.
//!
//! A reader can see a batch up to one flush before it is on disk. That matters only if the
//! machine (or the PostgreSQL server) goes down in that window, and then its caller was never
//! answered: anything answered later that read it waited for a later flush, which covers it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::writer::WriterCounters;

/// A caller's reply and what to send it once its batch is durable.
pub(crate) type Reply = (oneshot::Sender<Result<()>>, Result<()>);

enum Msg {
    Answer(Vec<Reply>),
    /// Answered once everything sent before it has been answered.
    Drain(oneshot::Sender<()>),
}

/// The log a flush makes durable.
pub(crate) enum Log {
    /// SQLite's WAL file (behind a lock only to move it onto a blocking thread).
    Wal(Arc<Mutex<Wal>>),
    /// PostgreSQL's write-ahead log, through the pool.
    Postgres(AnyPool),
}

/// The flushing task's end in the writer.
pub(crate) struct Flusher {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Flusher {
    /// Starts the task that flushes `log`, counting and timing its flushes in `counters`.
    pub(crate) fn start(log: Log, counters: WriterCounters) -> Flusher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(log, rx, counters));
        Flusher { tx }
    }

    /// Sends each reply once the log holding its batch is durable.
    pub(crate) fn answer(&self, replies: Vec<Reply>) {
        if let Err(mpsc::error::SendError(Msg::Answer(replies))) =
            self.tx.send(Msg::Answer(replies))
        {
            // The task is gone (the runtime is shutting down): nothing can vouch for the disk.
            for (reply, _) in replies {
                let _ = reply.send(Err(StoreError::Undurable(
                    "the flushing task has stopped".into(),
                )));
            }
        }
    }

    /// Returns once every reply sent before has been answered.
    pub(crate) async fn drain(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Drain(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

impl Log {
    /// SQLite's WAL file at `path`, opened at the first flush.
    pub(crate) fn wal(path: PathBuf) -> Log {
        Log::Wal(Arc::new(Mutex::new(Wal { path, file: None })))
    }

    async fn flush(&self) -> std::result::Result<(), String> {
        match self {
            Log::Wal(wal) => {
                let wal = wal.clone();
                tokio::task::spawn_blocking(move || {
                    let mut wal = wal.lock().unwrap_or_else(|e| e.into_inner());
                    wal.sync()
                        .map_err(|e| format!("flushing {}: {e}", wal.path.display()))
                })
                .await
                .map_err(|e| format!("flushing the WAL: {e}"))?
            }
            // An id makes the transaction commit with a record of its own, which a synchronous
            // commit flushes with everything before it.
            Log::Postgres(pool) => sqlx::query("SELECT txid_current()")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| {
                    crate::liveness::note(&e);
                    format!("committing PostgreSQL's log: {e}")
                }),
        }
    }

    /// After a failed fsync the kernel may have dropped the dirty pages, and a later fsync can
    /// succeed without them (PostgreSQL's "fsyncgate"): on SQLite no later write is vouched
    /// for either. A failed PostgreSQL commit is the server's to recover from.
    fn sticky(&self) -> bool {
        matches!(self, Log::Wal(_))
    }
}

async fn run(log: Log, mut rx: mpsc::UnboundedReceiver<Msg>, counters: WriterCounters) {
    let mut failed: Option<String> = None;
    let mut msgs = Vec::new();
    while rx.recv_many(&mut msgs, usize::MAX).await > 0 {
        let owed = msgs.iter().any(|m| match m {
            Msg::Answer(replies) => replies.iter().any(|(_, r)| r.is_ok()),
            Msg::Drain(_) => false,
        });
        let mut this = failed.clone();
        if owed && this.is_none() {
            let started = std::time::Instant::now();
            let flushed = log.flush().await;
            counters
                .flush_seconds
                .observe(started.elapsed().as_secs_f64());
            match flushed {
                Ok(()) => {
                    counters.flushes.inc();
                }
                Err(e) => this = Some(failed_flush(&log, e, &mut failed)),
            }
        }
        for msg in msgs.drain(..) {
            match msg {
                Msg::Answer(replies) => {
                    for (reply, result) in replies {
                        let result = match (&this, result) {
                            (Some(e), Ok(())) => Err(StoreError::Undurable(e.clone())),
                            (_, result) => result,
                        };
                        let _ = reply.send(result);
                    }
                }
                Msg::Drain(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }
}

/// Logs a failed flush, and remembers it where it is sticky; returns what callers are told.
fn failed_flush(log: &Log, e: String, failed: &mut Option<String>) -> String {
    if log.sticky() {
        tracing::error!(error = %e, "cannot flush the WAL to disk; every write from now on fails until Warden restarts");
        *failed = Some(e.clone());
    } else {
        tracing::warn!(error = %e, "cannot make the last commits durable; their callers are told so");
    }
    e
}

/// The WAL file, opened again whenever SQLite has made a new one (the path names another file).
pub(crate) struct Wal {
    path: PathBuf,
    file: Option<(File, FileId)>,
}

impl Wal {
    fn sync(&mut self) -> io::Result<()> {
        let now = file_id(&std::fs::metadata(&self.path)?);
        if self.file.as_ref().is_none_or(|(_, id)| *id != now) {
            let file = OpenOptions::new().write(true).open(&self.path)?;
            let id = file_id(&file.metadata()?);
            // A new file's name must reach the disk too, or a power loss can take the file.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                sync_dir(dir)?;
            }
            self.file = Some((file, id));
        }
        let (file, _) = self.file.as_ref().expect("opened above");
        file.sync_data()
    }
}

#[cfg(unix)]
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

// Elsewhere a file has no cheap identity: the file is opened again for every flush.
#[cfg(not(unix))]
type FileId = u128;

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> FileId {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::writer::observed;

    /// A pool on the PostgreSQL server at `WARDEN_TEST_POSTGRES_URL` (no schema of its own).
    pub(crate) async fn postgres_pool(connections: u32) -> AnyPool {
        sqlx::any::install_default_drivers();
        let url = std::env::var("WARDEN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        sqlx::any::AnyPoolOptions::new()
            .max_connections(connections)
            .connect(&url)
            .await
            .expect("PostgreSQL at WARDEN_TEST_POSTGRES_URL must be reachable")
    }

    /// A WAL file with something in it, in `dir`.
    fn wal_file(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("db-wal");
        std::fs::write(&path, b"frames").unwrap();
        path
    }

    fn reply() -> (oneshot::Sender<Result<()>>, oneshot::Receiver<Result<()>>) {
        oneshot::channel()
    }

    #[tokio::test]
    async fn answers_after_flushing_and_keeps_logical_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_file(&dir);
        let sync = Flusher::start(Log::wal(path), WriterCounters::default());
        let (ok, ok_rx) = reply();
        let (bad, bad_rx) = reply();
        let conflict = StoreError::Conflict(crate::Conflict::AgentExists, "taken".into());
        sync.answer(vec![(ok, Ok(())), (bad, Err(conflict))]);
        assert!(ok_rx.await.unwrap().is_ok());
        assert!(matches!(
            bad_rx.await.unwrap(),
            Err(StoreError::Conflict(..))
        ));
    }

    #[tokio::test]
    async fn a_failed_flush_fails_that_write_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        // No WAL file where the store said it would be: the flush fails.
        let sync = Flusher::start(Log::wal(path.clone()), WriterCounters::default());
        let (first, first_rx) = reply();
        sync.answer(vec![(first, Ok(()))]);
        assert!(
            matches!(first_rx.await.unwrap(), Err(StoreError::Undurable(m)) if m.contains("db-wal"))
        );
        // The file appearing later does not make later writes trustworthy again.
        std::fs::write(&path, b"frames").unwrap();
        let (later, later_rx) = reply();
        sync.answer(vec![(later, Ok(()))]);
        assert!(matches!(
            later_rx.await.unwrap(),
            Err(StoreError::Undurable(_))
        ));
    }

    #[tokio::test]
    async fn a_replaced_wal_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_file(&dir);
        let mut wal = Wal {
            path: path.clone(),
            file: None,
        };
        wal.sync().unwrap();
        let first = wal.file.as_ref().unwrap().1;
        // SQLite deletes the WAL when its last connection closes and makes a new one later.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"new frames").unwrap();
        wal.sync().unwrap();
        assert_ne!(wal.file.as_ref().unwrap().1, first);
    }

    #[tokio::test]
    async fn on_postgres_a_synchronous_commit_vouches_and_a_failed_one_does_not() {
        let pool = postgres_pool(1).await;
        let flusher = Flusher::start(Log::Postgres(pool.clone()), WriterCounters::default());
        let (ok, ok_rx) = reply();
        flusher.answer(vec![(ok, Ok(()))]);
        assert!(ok_rx.await.unwrap().is_ok());
        // The server is gone: what the writer committed may not have reached its disk.
        pool.close().await;
        let (lost, lost_rx) = reply();
        flusher.answer(vec![(lost, Ok(()))]);
        assert!(
            matches!(lost_rx.await.unwrap(), Err(StoreError::Undurable(m)) if m.contains("PostgreSQL"))
        );
    }

    #[tokio::test]
    async fn drain_waits_for_earlier_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_file(&dir);
        let sync = Flusher::start(Log::wal(path), WriterCounters::default());
        let (a, mut a_rx) = reply();
        sync.answer(vec![(a, Ok(()))]);
        sync.drain().await;
        assert!(matches!(a_rx.try_recv(), Ok(Ok(()))));
    }

    #[tokio::test]
    async fn counts_and_times_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let counters = WriterCounters::default();
        let sync = Flusher::start(Log::wal(wal_file(&dir)), counters.clone());
        let (a, a_rx) = reply();
        sync.answer(vec![(a, Ok(()))]);
        assert!(a_rx.await.unwrap().is_ok());
        assert_eq!(counters.flushes.get(), 1);
        assert_eq!(observed(&counters.flush_seconds), 1);
        // A batch of failures alone is answered without a flush.
        let (b, b_rx) = reply();
        sync.answer(vec![(b, Err(StoreError::unavailable("closing")))]);
        assert!(b_rx.await.unwrap().is_err());
        assert_eq!(counters.flushes.get(), 1);
        assert_eq!(observed(&counters.flush_seconds), 1);
    }
}
