//! One run at a time per key, shared by everyone who asks meanwhile. A caller returns once a
//! run that began after it asked has finished, so it sees everything the caller committed
//! before asking; callers that ask while a run is under way share the one run after it. An
//! agent denied a thousand times a second is reviewed a few times a batch, not a thousand.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The keys with a run under way or asked for.
#[derive(Debug)]
pub struct Coalesce<K> {
    open: Mutex<HashMap<K, Slot>>,
}

impl<K> Default for Coalesce<K> {
    fn default() -> Self {
        Coalesce {
            open: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// Tickets handed out: each caller's number.
    asked: u64,
    /// Every ticket up to this one has had its run.
    done: u64,
    running: bool,
    finished: Arc<Notify>,
}

impl<K: Eq + Hash + Clone> Coalesce<K> {
    /// Runs `run` for `key`, or waits for a run that covers this call.
    pub async fn run<F: Future<Output = ()>>(&self, key: K, run: impl FnOnce() -> F) {
        let (ticket, finished) = {
            let mut open = self.open.lock().expect("coalesce lock");
            let slot = open.entry(key.clone()).or_default();
            slot.asked += 1;
            (slot.asked, slot.finished.clone())
        };
        let mut run = Some(run);
        loop {
            // Listening before looking, so a run that finishes in between is not missed.
            let notified = finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let target = {
                let mut open = self.open.lock().expect("coalesce lock");
                // Gone, or another slot for the key since (this one finished and was removed):
                // covered either way.
                let Some(slot) = open
                    .get_mut(&key)
                    .filter(|s| Arc::ptr_eq(&s.finished, &finished) && s.done < ticket)
                else {
                    return;
                };
                if slot.running {
                    None
                } else {
                    slot.running = true;
                    Some(slot.asked)
                }
            };
            let Some(target) = target else {
                notified.await;
                continue;
            };
            let mut running = Running {
                coalesce: self,
                key: &key,
                covered: None,
            };
            (run.take().expect("a caller runs at most once"))().await;
            running.covered = Some(target);
            return;
        }
    }
}

/// The run under way; when it ends, or is dropped half-way (its caller went away), the key is
/// free again and the waiters look again.
struct Running<'a, K: Eq + Hash> {
    coalesce: &'a Coalesce<K>,
    key: &'a K,
    /// The last ticket the run covers, once it has finished.
    covered: Option<u64>,
}

impl<K: Eq + Hash> Drop for Running<'_, K> {
    fn drop(&mut self) {
        let mut open = self.coalesce.open.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = open.get_mut(self.key) else {
            return;
        };
        slot.running = false;
        if let Some(covered) = self.covered {
            slot.done = slot.done.max(covered);
        }
        slot.finished.notify_waiters();
        if slot.done == slot.asked {
            open.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn callers_during_a_run_share_the_next_one() {
        let c = Arc::new(Coalesce::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        // The first run is under way and held.
        let first = tokio::spawn({
            let (c, runs) = (c.clone(), runs.clone());
            async move {
                c.run("a", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let _ = wait.await;
                })
                .await
            }
        });
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Ten more ask meanwhile: none of them is covered by the run already under way.
        let more: Vec<_> = (0..10)
            .map(|_| {
                let (c, runs) = (c.clone(), runs.clone());
                tokio::spawn(async move {
                    c.run("a", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "they wait for the run to end"
        );
        go.send(()).unwrap();
        first.await.unwrap();
        for m in more {
            m.await.unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "and then share one run");
        assert!(c.open.lock().unwrap().is_empty(), "nothing left behind");
        // Another key is not held up by this one, and a lone caller runs at once.
        c.run("b", || async {
            runs.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_run_abandoned_half_way_leaves_the_key_to_the_next_caller() {
        let c = Arc::new(Coalesce::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let stuck = tokio::spawn({
            let (c, runs) = (c.clone(), runs.clone());
            async move {
                c.run("a", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await
                })
                .await
            }
        });
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiter = tokio::spawn({
            let (c, runs) = (c.clone(), runs.clone());
            async move {
                c.run("a", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Its caller goes away (a client that hung up): the waiter runs instead.
        stuck.abort();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is not stuck behind an abandoned run")
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
