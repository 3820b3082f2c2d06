//! Human baselines (DESIGN.md, "Human baselines, anomaly and drift"): recomputed with
//! `warden-analytics` in the background, on a schedule and after large imports, and kept in
//! memory for the decisions, which never wait for a recompute.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use warden_analytics::Activity;

use crate::activity::{ActivityEvent, ActorKind};
use crate::baseline::{AgentDrift, BaselineRun, HumanBaseline};
use crate::clock::{SharedClock, format_micros, parse_micros};
use crate::error::{Error, Result};
use crate::records::Baseline;
use crate::store::{BaselineFilter, BaselineWrite, Change, Store, Write};

const DAY: i64 = 86_400_000_000;

/// `[baselines]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselinesConfig {
    /// Recompute on this schedule, seconds (0: only on request and after imports).
    pub every_secs: u64,
    /// How much human history a baseline covers, days.
    pub window_days: u32,
    /// Recompute as soon as this many events have come in since the last one.
    pub recompute_after_events: u64,
    /// Versions whose baselines are kept (every run's summary is kept).
    pub keep_versions: u32,
    /// The time zone hours of the week are counted in (an IANA name), so that a team's working
    /// hours stay put across daylight-saving changes.
    pub time_zone: String,
    /// How often (ms) a replica looks for a newer version computed elsewhere.
    pub refresh_interval_ms: u64,
    /// Drift is measured over each agent's actions of this many days.
    pub drift_window_days: u32,
    /// Fewer actions than this in the window: the agent's drift is not computed.
    pub drift_min_actions: u64,
}

impl Default for BaselinesConfig {
    fn default() -> Self {
        BaselinesConfig {
            every_secs: 3600,
            window_days: 28,
            recompute_after_events: 10_000,
            keep_versions: 10,
            time_zone: "UTC".into(),
            refresh_interval_ms: 5000,
            drift_window_days: 7,
            drift_min_actions: 20,
        }
    }
}

impl BaselinesConfig {
    /// The configured time zone: an error names the setting.
    pub fn zone(&self) -> anyhow::Result<jiff::tz::TimeZone> {
        jiff::tz::TimeZone::get(&self.time_zone).map_err(|e| {
            anyhow::anyhow!(
                "baselines.time_zone `{}` is not a time zone: {e}",
                self.time_zone
            )
        })
    }
}

/// One baseline as the decisions read it, with its targets in a set.
#[derive(Debug)]
pub struct Entry {
    /// The baseline.
    pub baseline: HumanBaseline,
    targets: HashSet<String>,
    computed_at: i64,
}

impl Entry {
    /// What an anomaly detector sees for an action at `environment` touching `targets`.
    pub fn for_action(&self, environment: &str, targets: &[String]) -> Baseline {
        let mut view = self.baseline.for_action(environment, &[], self.computed_at);
        view.targets_seen = targets
            .iter()
            .filter(|t| self.targets.contains(*t))
            .cloned()
            .collect();
        view
    }
}

type Key = (String, String, String);

#[derive(Debug, Default)]
struct Snapshot {
    run: Option<BaselineRun>,
    entries: HashMap<Key, Arc<Entry>>,
}

/// The baselines service.
#[derive(Debug, Clone)]
pub struct Baselines {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    clock: SharedClock,
    config: BaselinesConfig,
    zone: jiff::tz::TimeZone,
    current: RwLock<Arc<Snapshot>>,
    /// Events in since the last recompute.
    pending: AtomicU64,
    kick: Notify,
    /// One recompute at a time in this process.
    running: tokio::sync::Mutex<()>,
}

impl Baselines {
    /// The service; nothing is loaded until [`Baselines::refresh`].
    pub fn new(
        store: Store,
        clock: SharedClock,
        config: BaselinesConfig,
    ) -> anyhow::Result<Baselines> {
        let zone = config.zone()?;
        Ok(Baselines {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                zone,
                current: RwLock::new(Arc::new(Snapshot::default())),
                pending: AtomicU64::new(0),
                kick: Notify::new(),
                running: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The time zone hours of the week are counted in.
    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.inner.zone
    }

    /// The settings.
    pub fn config(&self) -> &BaselinesConfig {
        &self.inner.config
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.read().expect("baselines lock").clone()
    }

    /// The current baseline of one team, service and class, if one was computed.
    pub fn get(&self, team: &str, service: &str, class: &str) -> Option<Arc<Entry>> {
        let key = (team.to_string(), service.to_string(), class.to_string());
        self.snapshot().entries.get(&key).cloned()
    }

    /// The newest run this process has loaded.
    pub fn run(&self) -> Option<BaselineRun> {
        self.snapshot().run.clone()
    }

    /// Loads the newest version from the store when it is newer than the one in memory.
    pub async fn refresh(&self) -> Result<()> {
        let Some(run) = self.inner.store.latest_baseline_run().await? else {
            return Ok(());
        };
        if self.snapshot().run.as_ref().map(|r| r.version) == Some(run.version) {
            return Ok(());
        }
        let baselines = self
            .inner
            .store
            .baselines(run.version, &BaselineFilter::default())
            .await?;
        let computed_at = parse_micros(&run.computed_at).unwrap_or(0);
        let entries = baselines
            .into_iter()
            .map(|b| {
                let key = (b.team.clone(), b.service.clone(), b.class.clone());
                let targets = b.targets.iter().map(|t| t.name.clone()).collect();
                (
                    key,
                    Arc::new(Entry {
                        baseline: b,
                        targets,
                        computed_at,
                    }),
                )
            })
            .collect();
        *self.inner.current.write().expect("baselines lock") = Arc::new(Snapshot {
            run: Some(run),
            entries,
        });
        Ok(())
    }

    /// Counts newly stored events; enough of them wake the background recompute.
    pub fn note_events(&self, n: u64) {
        let before = self.inner.pending.fetch_add(n, Ordering::Relaxed);
        if before + n >= self.inner.config.recompute_after_events {
            self.inner.kick.notify_one();
        }
    }

    /// Reads what a recompute needs: the humans' events of the baseline window, and each
    /// agent's work of the drift window (its allowed decisions, and the platform's events of
    /// it that no decision accounts for already).
    async fn read_activity(&self, from: i64, drift_from: i64, now: i64) -> Result<(Activity, u64)> {
        // A Warden agent's work counts for its own team, whatever team owns the repository or
        // namespace a platform event names.
        let teams: HashMap<String, String> = self
            .inner
            .store
            .agents(None)
            .await?
            .into_iter()
            .map(|a| (a.id, a.team))
            .collect();
        let mut activity = Activity::new(self.inner.zone.clone());
        let mut humans = 0u64;
        // One scan of the period: the store reads it in chunks, two in flight.
        self.inner
            .store
            .scan_events(None, from.min(drift_from), now + 1, |e| {
                if e.actor_kind == ActorKind::Human {
                    if e.at >= from {
                        activity.push(&e);
                        humans += 1;
                    }
                } else if e.at >= drift_from && e.decision_id.is_none() {
                    let mut e = e;
                    if let Some(team) = teams.get(&e.actor_id) {
                        e.team.clone_from(team);
                    }
                    activity.push(&e);
                }
            })
            .await?;
        self.inner
            .store
            .scan_allowed(drift_from, now + 1, |d| {
                let Some(team) = teams.get(&d.agent_id) else {
                    return;
                };
                activity.push(&ActivityEvent {
                    source: "warden".into(),
                    source_id: String::new(),
                    actor_kind: ActorKind::Agent,
                    actor_id: d.agent_id,
                    team: team.clone(),
                    class: d.class,
                    environment: d.environment,
                    service: d.service,
                    targets: Vec::new(),
                    change_size: None,
                    at: d.at,
                    outcome: None,
                    decision_id: None,
                });
            })
            .await?;
        Ok((activity, humans))
    }

    /// Recomputes every baseline from the humans' events of the window and every agent's drift,
    /// stores both (the baselines as the newest version), and loads them.
    pub async fn recompute(&self) -> Result<BaselineRun> {
        let _one = self.inner.running.lock().await;
        self.inner.pending.store(0, Ordering::Relaxed);
        let config = &self.inner.config;
        let now = self.inner.clock.now_micros();
        let from = now - i64::from(config.window_days) * DAY;
        let drift_from = now - i64::from(config.drift_window_days) * DAY;
        let started = std::time::Instant::now();
        let (activity, events) = self.read_activity(from, drift_from, now).await?;
        let read_ms = started.elapsed().as_millis();
        let min_actions = config.drift_min_actions;
        // Polars works on its own threads; keep it off the runtime's.
        let (computed, drift) = tokio::task::spawn_blocking(move || {
            let baselines = warden_analytics::baselines(&activity, from, now)?;
            let drift = warden_analytics::drift(&activity, drift_from, now + 1, min_actions)?;
            Ok::<_, warden_analytics::Error>((baselines, drift))
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)?;
        let count = computed.len();
        let compute_ms = started.elapsed().as_millis() - read_ms;
        let day = jiff::Timestamp::from_microsecond(now)
            .map(|t| self.inner.zone.to_datetime(t).date().to_string())
            .map_err(Error::internal)?;
        let drift = drift
            .into_iter()
            .map(|d| AgentDrift {
                agent: d.agent,
                day: day.clone(),
                score: d.score,
                mix: d.mix,
                timing: d.timing,
                actions: d.actions,
                window_days: config.drift_window_days,
                organisation: d.organisation,
                computed_at: format_micros(now),
            })
            .collect();
        self.inner
            .store
            .commit(Change {
                writes: vec![
                    Write::Baseline(BaselineWrite::RecordRun {
                        computed_at: now,
                        from,
                        to: now,
                        events,
                        time_zone: config.time_zone.clone(),
                        baselines: computed,
                        keep: config.keep_versions.max(1),
                    }),
                    Write::Baseline(BaselineWrite::RecordDrift {
                        drift,
                        computed_at: now,
                    }),
                ],
                audit: Vec::new(),
            })
            .await?;
        self.refresh().await?;
        let run = self
            .run()
            .ok_or_else(|| Error::internal("the recorded run is not readable"))?;
        tracing::info!(
            version = run.version,
            events,
            baselines = count,
            read_ms,
            compute_ms,
            total_ms = started.elapsed().as_millis(),
            "human baselines recomputed"
        );
        Ok(run)
    }

    /// Recomputes unless enough events are waiting or the newest version (perhaps another
    /// replica's) is younger than `every`, in which case that version is loaded.
    async fn recompute_if_stale(&self, every: Duration) -> Result<()> {
        let waiting =
            self.inner.pending.load(Ordering::Relaxed) >= self.inner.config.recompute_after_events;
        if !waiting && let Some(run) = self.inner.store.latest_baseline_run().await? {
            let age = self.inner.clock.now_micros() - parse_micros(&run.computed_at).unwrap_or(0);
            if age >= 0 && (age as u128) < every.as_micros() {
                return self.refresh().await;
            }
        }
        self.recompute().await.map(|_| ())
    }

    /// Runs until the store closes: a recompute on the schedule and whenever enough events have
    /// come in; a newer version from another replica is picked up on the refresh interval.
    pub fn spawn(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let every = match me.inner.config.every_secs {
                0 => Duration::from_secs(365 * 24 * 3600),
                s => Duration::from_secs(s),
            };
            let refresh = Duration::from_millis(me.inner.config.refresh_interval_ms.max(100));
            let mut due = tokio::time::Instant::now();
            loop {
                if me.inner.store.is_closed() {
                    return;
                }
                let now = tokio::time::Instant::now();
                let woken = if now >= due {
                    true
                } else {
                    tokio::select! {
                        _ = me.inner.kick.notified() => true,
                        _ = tokio::time::sleep(refresh.min(due - now)) => false,
                    }
                };
                if woken || tokio::time::Instant::now() >= due {
                    due = tokio::time::Instant::now() + every;
                    if let Err(e) = me.recompute_if_stale(every).await
                        && !me.inner.store.is_closed()
                    {
                        tracing::warn!(error = %e.message, "baseline recompute failed; will retry");
                    }
                } else if let Err(e) = me.refresh().await
                    && !me.inner.store.is_closed()
                {
                    tracing::warn!(error = %e.message, "baseline refresh failed");
                }
            }
        });
    }
}
