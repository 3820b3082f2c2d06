//! The audit chain's long walks (a verify, a checkpoint's tree extension) run apart from the
//! request threads: on a thread of their own, with a runtime and a connection opened from that
//! thread, so taking thousands of rows is not a turn on a request thread that decisions queue
//! behind. The read keeps its priority: SQLite hands rows over fifty at a time, and a read's
//! snapshot, which keeps the WAL from restarting while it lasts, lasts until the last row is
//! taken. A read at the lowest priority, starved by the decisions, held it for so long that
//! their p99 doubled (BENCHMARKS.md). What costs CPU and holds no snapshot, a verify's check of
//! a chunk, runs at the lowest priority ([`at_lowest_priority`]).

use std::future::Future;

use crate::error::{Result, StoreError};
use crate::{Backend, Store};

impl Store {
    /// Runs `walk` on this store's data apart from the calling thread, as above, and waits for
    /// its answer.
    pub(crate) async fn apart<T, F, Fut>(&self, walk: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        let (send, done) = tokio::sync::oneshot::channel();
        let store = self.clone();
        std::thread::Builder::new()
            .name("warden-walk".into())
            .spawn(move || {
                let _ = send.send(store.here(walk));
            })
            .map_err(StoreError::bug)?;
        done.await.map_err(StoreError::bug)?
    }

    /// `walk` on the calling thread, through a connection of its own.
    fn here<T, F, Fut>(self, walk: F) -> Result<T>
    where
        F: FnOnce(Store) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StoreError::bug)?;
        runtime.block_on(async move {
            let pool = own_pool(self.backend, self.readers.url()).await?;
            let walked = walk(Store {
                pool: pool.clone(),
                ..self
            })
            .await;
            pool.close().await;
            walked
        })
    }
}

/// A pool of one connection, opened from the calling thread.
async fn own_pool(backend: Backend, url: &str) -> Result<sqlx::AnyPool> {
    Ok(crate::pool_options(backend, 1).connect(url).await?)
}

/// Runs `work` on a thread of its own at the lowest priority (nice 19 on Linux), which ends with
/// it: it runs on what the decisions leave of the cores.
pub(crate) fn at_lowest_priority<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("warden-low".into())
            .spawn_scoped(scope, || {
                lowest_priority();
                work()
            })
            .map_err(StoreError::bug)?
            .join()
            .map_err(|_| StoreError::bug("a walk's low-priority work panicked"))
    })
}

fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory preconditions; on Linux, who 0 is this thread.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, "a walk's thread keeps its priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use crate::StoreOptions;

    use super::*;

    /// This process's threads: id, name and nice value (`proc_pid_stat(5)`, fields 1, 2 and 19).
    fn threads() -> Vec<(String, String, i64)> {
        let tasks = std::fs::read_dir("/proc/self/task").unwrap();
        tasks
            .filter_map(|t| {
                let id = t.ok()?.file_name().into_string().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/self/task/{id}/stat")).ok()?;
                let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
                let nice = rest.split_whitespace().nth(16)?.parse().ok()?;
                Some((id, name.to_owned(), nice))
            })
            .collect()
    }

    fn nice() -> i64 {
        // SAFETY: getpriority has no memory preconditions; on Linux, who 0 is this thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }.into()
    }

    /// A walk runs on a thread of its own and reads through SQLite's thread for its own
    /// connection, both at the caller's priority; its low-priority work runs at nice 19.
    #[tokio::test]
    async fn a_walk_reads_apart_at_its_callers_priority() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions {
            url: format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display()),
            max_connections: 2,
            max_batch: 16,
            cache_ttl: Duration::ZERO,
            share_writer_core: false,
            coalesce_wal_writes: false,
        })
        .await
        .unwrap();
        let before: Vec<String> = threads().into_iter().map(|(id, ..)| id).collect();
        let caller = nice();
        let (name, walker, low, started) = store
            .apart(move |store| async move {
                let (head, _) = store.audit_head().await?;
                assert_eq!(head, 0);
                let started: Vec<_> = threads()
                    .into_iter()
                    .filter(|(id, ..)| !before.contains(id))
                    .collect();
                let name = std::thread::current().name().map(str::to_owned);
                Ok((name, nice(), at_lowest_priority(nice)?, started))
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("warden-walk"));
        assert_eq!(walker, caller);
        assert_eq!(low, 19);
        assert_eq!(nice(), caller, "only the low-priority work is lowered");
        let sqlite: Vec<_> = started
            .iter()
            .filter(|(_, name, _)| name.starts_with("sqlx-sqlite"))
            .collect();
        assert!(!sqlite.is_empty(), "{started:?}");
        assert!(sqlite.iter().all(|(.., n)| *n == caller), "{started:?}");
    }
}
