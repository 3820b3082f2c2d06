//! Spare instances: fresh instances of each plugin made ahead of need on a background thread,
//! and used stores torn down there, so that a decision pays for neither.
//!
//! A spare is a store with one instance in it that nothing has called: taking one gives a call
//! exactly what instantiating on the spot would, so a verdict still never depends on an earlier
//! call. Each spare is used for one call and then retired. When a plugin has no spare ready (a
//! burst, a plugin whose instantiation fails, spares switched off) the call instantiates on its
//! own thread as before; when the thread falls behind on teardown, callers tear down themselves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use wasmtime::component::Instance;
use wasmtime::{Engine, ResourceLimiter, Store};

use crate::manifest::Limits;
use crate::runtime::{CallState, FAST_FUEL, Prepared};

/// Spares kept per plugin version unless configured (`[plugins] spare_instances`).
pub const DEFAULT_PER_PLUGIN: usize = 2;

/// The most spares configurable per plugin.
pub const MAX_PER_PLUGIN: usize = 8;

/// The most spares alive at once over all plugins: they hold slots of the instance pool
/// ([`crate::runtime::POOL_INSTANCES`]) that concurrent calls also need.
pub const MAX_TOTAL: usize = 64;

/// Used stores (a spare's one instance, or a decision's on-the-spot ones) waiting for teardown
/// beyond which callers tear down their own: slots of the pool are only free again once torn down.
const MAX_PENDING_RETIRES: usize = 32;

/// A fresh, never-called instance and its store.
pub struct Spare {
    /// The store, with the plugin's limits in its state.
    pub store: Store<CallState>,
    /// The instance.
    pub instance: Instance,
    /// Fuel its instantiation used (start functions), charged to the call that takes it.
    pub instantiate_fuel: u64,
}

/// The spares of one plugin version.
pub struct Queue {
    prepared: Prepared,
    limits: Limits,
    ready: Mutex<Vec<Spare>>,
    /// A refill is asked for and not yet done.
    refilling: AtomicBool,
    /// Instantiation failed once: this version gets no spares (its calls report the failure).
    broken: AtomicBool,
    pool: Arc<Shared>,
}

impl Queue {
    /// Takes a spare if one is ready (the caller then asks [`Spares::refill`] to top it up).
    pub fn take(&self) -> Option<Spare> {
        let spare = self.ready.lock().expect("spares lock").pop();
        if spare.is_some() {
            self.pool.live.fetch_sub(1, Ordering::Relaxed);
            self.pool.counters.spare.inc();
        } else {
            self.pool.counters.on_demand.inc();
        }
        spare
    }

    /// The handle this plugin version is instantiated from.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// Spares ready now.
    pub fn ready(&self) -> usize {
        self.ready.lock().expect("spares lock").len()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let left = self.ready.get_mut().map(|r| r.len()).unwrap_or(0);
        self.pool.live.fetch_sub(left, Ordering::Relaxed);
    }
}

/// Counts of where calls found their instances (exported as metrics).
#[derive(Debug, Clone, Default)]
pub struct InstanceCounters {
    /// Calls that found a spare ready.
    pub spare: Counter,
    /// Calls that instantiated their plugin on the spot.
    pub on_demand: Counter,
}

/// What the spare thread and its callers share.
struct Shared {
    counters: InstanceCounters,
    per_plugin: usize,
    /// Spares made and not yet taken, over all plugins.
    live: AtomicUsize,
    /// Stores sent for teardown and not yet torn down.
    pending_retires: AtomicUsize,
}

enum Job {
    Refill(Weak<Queue>),
    Retire(Store<CallState>),
}

/// The handle to the spare thread; dropping it stops the thread.
pub struct Spares {
    jobs: Option<Sender<Job>>,
    shared: Arc<Shared>,
}

impl Spares {
    /// Starts the spare thread, keeping `per_plugin` spares of each plugin version (0: none,
    /// and no thread; at most [`MAX_PER_PLUGIN`]).
    pub fn start(engine: &Engine, per_plugin: usize) -> Spares {
        let shared = Arc::new(Shared {
            counters: InstanceCounters::default(),
            per_plugin: per_plugin.min(MAX_PER_PLUGIN),
            live: AtomicUsize::new(0),
            pending_retires: AtomicUsize::new(0),
        });
        let mut jobs = None;
        if shared.per_plugin > 0 {
            let (tx, rx) = mpsc::channel();
            let thread_shared = shared.clone();
            let engine = engine.clone();
            match std::thread::Builder::new()
                .name("warden-plugin-spares".into())
                .spawn(move || run(&engine, rx, &thread_shared))
            {
                Ok(_) => jobs = Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the plugin spare thread; every call instantiates its plugin")
                }
            }
        }
        Spares { jobs, shared }
    }

    /// A queue of spares for a newly loaded plugin version, filled in the background.
    pub fn queue(&self, prepared: Prepared, limits: Limits) -> Arc<Queue> {
        let queue = Arc::new(Queue {
            prepared,
            limits,
            ready: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            pool: self.shared.clone(),
        });
        self.refill(&queue);
        queue
    }

    /// Asks the thread to top up `queue` (once until it has).
    pub fn refill(&self, queue: &Arc<Queue>) {
        if let Some(jobs) = &self.jobs
            && !queue.broken.load(Ordering::Relaxed)
            && !queue.refilling.swap(true, Ordering::AcqRel)
            && jobs.send(Job::Refill(Arc::downgrade(queue))).is_err()
        {
            queue.refilling.store(false, Ordering::Release);
        }
    }

    /// The counts of where calls found their instances.
    pub fn counters(&self) -> InstanceCounters {
        self.shared.counters.clone()
    }

    /// Tears down a used store (a spare's, or one a caller instantiated in) on the thread, or
    /// here when the thread is behind or absent.
    pub fn retire(&self, store: Store<CallState>) {
        let Some(jobs) = &self.jobs else { return };
        if self.shared.pending_retires.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_RETIRES {
            self.shared.pending_retires.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        if let Err(mpsc::SendError(job)) = jobs.send(Job::Retire(store)) {
            self.shared.pending_retires.fetch_sub(1, Ordering::AcqRel);
            drop(job);
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has done what was sent.
        self.jobs.take();
    }
}

/// A store for one call of a plugin with `limits`, holding `fuel`.
pub fn store(engine: &Engine, limits: Limits, fuel: u64) -> wasmtime::Result<Store<CallState>> {
    let mut store = Store::new(engine, CallState::new(limits));
    store.limiter(|s| s as &mut dyn ResourceLimiter);
    store.set_fuel(fuel)?;
    Ok(store)
}

/// A fresh instance of `queue`'s plugin in a store of its own. Instantiation may run start
/// functions, so it gets the fast path's fuel: a plugin whose start loops is not spared.
fn make(engine: &Engine, queue: &Queue) -> wasmtime::Result<Spare> {
    let fuel = queue.limits.fuel.min(FAST_FUEL);
    let mut store = store(engine, queue.limits, fuel)?;
    let instance = queue.prepared.instantiate(&mut store)?;
    let instantiate_fuel = fuel - store.get_fuel()?;
    Ok(Spare {
        store,
        instance,
        instantiate_fuel,
    })
}

/// How long the idle spare thread polls before it sleeps, while jobs come faster than that:
/// their callers then hand work over without a system call to wake it. When jobs come more
/// slowly it sleeps at once, so a lightly loaded server does not pay for the polling. It polls
/// by yielding, so that on a busy server the threads answering requests run first.
const POLL: Duration = Duration::from_micros(50);

/// The next job: polled for [`POLL`] if the last one came soon after the thread went idle,
/// else waited for.
fn wait(jobs: &Receiver<Job>, busy: &mut bool) -> Result<Job, mpsc::RecvError> {
    let idle = Instant::now();
    if *busy {
        while idle.elapsed() < POLL {
            match jobs.try_recv() {
                Ok(job) => return Ok(job),
                Err(TryRecvError::Disconnected) => return Err(mpsc::RecvError),
                Err(TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
    }
    let job = jobs.recv()?;
    *busy = idle.elapsed() < POLL;
    Ok(job)
}

/// The spare thread: tears down what it is sent first (that frees pool slots), then makes one
/// spare at a time for the queues that asked, round robin, until each is full. A queue turned
/// away at [`MAX_TOTAL`] asks again at its next call.
fn run(engine: &Engine, jobs: Receiver<Job>, shared: &Shared) {
    let mut wanted: VecDeque<Weak<Queue>> = VecDeque::new();
    let mut busy = false;
    loop {
        let job = match wanted.is_empty() {
            true => match wait(&jobs, &mut busy) {
                Ok(job) => Some(job),
                Err(_) => return,
            },
            false => match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            },
        };
        let weak = match job {
            Some(Job::Retire(store)) => {
                drop(store);
                shared.pending_retires.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            Some(Job::Refill(queue)) => {
                wanted.push_back(queue);
                continue;
            }
            None => wanted.pop_front().expect("a queue is wanted"),
        };
        let Some(queue) = weak.upgrade() else {
            continue;
        };
        let wants = |q: &Queue| {
            !q.broken.load(Ordering::Relaxed)
                && q.ready() < shared.per_plugin
                && shared.live.load(Ordering::Relaxed) < MAX_TOTAL
        };
        if !wants(&queue) {
            // Done with it; a take that raced this sees the flag clear and asks again.
            queue.refilling.store(false, Ordering::Release);
            if wants(&queue) && !queue.refilling.swap(true, Ordering::AcqRel) {
                wanted.push_back(weak);
            }
            continue;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make(engine, &queue))) {
            Ok(Ok(spare)) => {
                shared.live.fetch_add(1, Ordering::Relaxed);
                queue.ready.lock().expect("spares lock").push(spare);
                wanted.push_back(weak);
            }
            // The pool is full for now (a burst): the next call asks again.
            Ok(Err(e))
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                queue.refilling.store(false, Ordering::Release);
            }
            // The plugin's own failure (its start traps, loops or asks for too much memory):
            // its calls instantiate it themselves and report the failure by its policy.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "a plugin cannot be instantiated ahead of need; its calls instantiate it themselves");
                queue.broken.store(true, Ordering::Relaxed);
                queue.refilling.store(false, Ordering::Release);
            }
            Err(_) => {
                tracing::error!(
                    "instantiating a plugin ahead of need panicked; its calls instantiate it themselves"
                );
                queue.broken.store(true, Ordering::Relaxed);
                queue.refilling.store(false, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::Runtime;

    #[test]
    fn too_many_spares_is_refused_naming_the_setting() {
        let err = Runtime::with_spares(super::MAX_PER_PLUGIN + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spare_instances is 9, at most 8"), "{err}");
        assert!(Runtime::with_spares(super::MAX_PER_PLUGIN).is_ok());
    }
}
