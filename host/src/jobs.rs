//! Every periodic task runs through [`spawn`]: it owns the interval, stops when the store
//! closes (the server's shutdown), and logs a failed step without ending the task. A task is
//! one step, written as a plain async function that the tests can also call directly.

use std::future::Future;
use std::time::Duration;

use crate::store::Store;

/// When a task's first step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// At once, then every interval.
    Now,
    /// After one interval (work that cannot be due at start-up).
    AfterInterval,
}

/// Runs `step` every `every` until `store` closes. A failing step is logged under `name` and
/// retried at the next interval; steps never overlap.
pub fn spawn<F, Fut, E>(
    name: &'static str,
    every: Duration,
    first: First,
    store: Store,
    mut step: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if first == First::AfterInterval {
            tick.tick().await;
        }
        loop {
            tick.tick().await;
            if store.is_closed() {
                return;
            }
            if let Err(e) = step().await {
                // The store closes at shutdown: a step that failed because of it is not news.
                if store.is_closed() {
                    return;
                }
                tracing::warn!(job = name, error = %e, "periodic task failed; will retry");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn steps_repeat_through_failures_and_stop_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let options = crate::store::StoreOptions {
            url,
            max_connections: 1,
            max_batch: 8,
            cache_ttl: Duration::ZERO,
            share_writer_core: true,
            coalesce_wal_writes: true,
        };
        let store = Store::open(&options).await.unwrap();
        // The intervals pass in paused time; the store's own I/O needs the real clock.
        tokio::time::pause();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let task = spawn(
            "test",
            Duration::from_secs(1),
            First::Now,
            store.clone(),
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n.is_multiple_of(2) {
                        Err("every other step fails")
                    } else {
                        Ok(())
                    }
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            4,
            "at 0, 1, 2 and 3 seconds, failures included"
        );
        tokio::time::resume();
        store.close().await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(task.is_finished(), "the task ends once the store is closed");
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }
}
