//! Prometheus metrics: decisions by verdict, decision latency and where it went, and where
//! plugin calls found their instances.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::decision::Verdict;
use crate::plugins::spares::InstanceCounters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// Where a decision's time goes, in the order it goes there. Together they make up the whole
/// of `warden_decision_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Finding the agent, and waiting for a turn in its lane.
    Lane,
    /// Validating, and reading the agent, its parents, the human and the approval presented.
    Read,
    /// The classifiers and anomaly detectors, with the anomaly stage's read of recent activity.
    Plugins,
    /// Reading the quotas' counts.
    Quota,
    /// The pure stages (`judge`), and building the change they make.
    Judge,
    /// Waiting for the writer: its batch's commit and the flush that makes it durable.
    Commit,
    /// The tier controller's review after a violation.
    Review,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 7] = [
        Phase::Lane,
        Phase::Read,
        Phase::Plugins,
        Phase::Quota,
        Phase::Judge,
        Phase::Commit,
        Phase::Review,
    ];

    /// The metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Lane => "lane",
            Phase::Read => "read",
            Phase::Plugins => "plugins",
            Phase::Quota => "quota",
            Phase::Judge => "judge",
            Phase::Commit => "commit",
            Phase::Review => "review",
        }
    }
}

/// A decision's clock: each [`Phases::mark`] ends the phase under way and adds its time.
#[derive(Debug, Clone)]
pub struct Phases {
    started: Instant,
    last: Instant,
    took: [Duration; Phase::ALL.len()],
}

impl Phases {
    /// Starts the clock.
    pub fn start() -> Phases {
        let now = Instant::now();
        Phases {
            started: now,
            last: now,
            took: [Duration::ZERO; Phase::ALL.len()],
        }
    }

    /// Ends the phase under way: the time since the last mark was spent in `phase`.
    pub fn mark(&mut self, phase: Phase) {
        let now = Instant::now();
        self.took[phase as usize] += now - self.last;
        self.last = now;
    }

    /// The time spent in `phase`.
    pub fn took(&self, phase: Phase) -> Duration {
        self.took[phase as usize]
    }

    /// The time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Seconds, 100 µs to 2.5 s: the pipeline alone is microseconds, a durable commit
/// milliseconds, and 10 ms (a decision's target p99) is a bound of its own. The store's writer
/// times its batches and flushes in the same buckets.
const BUCKETS: [f64; 15] = warden_store::DURATION_BUCKETS;

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<VerdictLabel, Counter>,
    latency: Histogram,
    /// One per [`Phase`], in its order: looked up once, not per decision.
    phases: [Histogram; Phase::ALL.len()],
    rate_limited: Counter,
    lane_waits: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let decisions = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "decisions",
            "Decisions answered, by verdict",
            decisions.clone(),
        );
        let latency = Histogram::new(BUCKETS);
        registry.register(
            "decision_duration_seconds",
            "Time to decide and durably record a decision",
            latency.clone(),
        );
        let by_phase =
            Family::<PhaseLabel, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "decision_phase_seconds",
            "Where a decision's time went: lane, read, plugins, quota, judge, commit, review",
            by_phase.clone(),
        );
        let phases = Phase::ALL.map(|phase| {
            by_phase
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str(),
                })
                .clone()
        });
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused (429) because their agent was over a quota counting every request",
            rate_limited.clone(),
        );
        let lane_waits = Counter::default();
        registry.register(
            "agent_lane_waits",
            "Decisions that waited for their turn because their agent had server.agent_concurrency in flight",
            lane_waits.clone(),
        );
        Metrics {
            registry,
            decisions,
            latency,
            phases,
            rate_limited,
            lane_waits,
        }
    }
}

impl Metrics {
    /// Counts a decision, its latency and where it went.
    pub fn decision(&self, verdict: Verdict, phases: &Phases) {
        self.decisions
            .get_or_create(&VerdictLabel {
                verdict: verdict.as_str(),
            })
            .inc();
        self.latency.observe(phases.elapsed().as_secs_f64());
        for (histogram, phase) in self.phases.iter().zip(Phase::ALL) {
            histogram.observe(phases.took(phase).as_secs_f64());
        }
    }

    /// Counts a request refused for a rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Counts a decision that waited for its agent's lane.
    pub fn lane_wait(&self) {
        self.lane_waits.inc();
    }

    /// Registers the plugin runtime's counts of calls that ran in a spare instance and calls
    /// that instantiated their plugin on the spot (with spares on, many of those: raise
    /// `spare_instances`).
    pub fn plugin_instances(&mut self, counters: InstanceCounters) {
        self.registry.register(
            "plugin_spare_instances",
            "Plugin calls that found a spare instance, made ahead of need, ready",
            counters.spare,
        );
        self.registry.register(
            "plugin_on_demand_instances",
            "Plugin calls that instantiated their plugin on the spot",
            counters.on_demand,
        );
    }

    /// Registers the store writer's counts: commits, the changes they carried, and the
    /// flushes that made them durable (changes per commit is the batch size).
    pub fn store_writer(&mut self, counters: warden_store::WriterCounters) {
        self.registry.register(
            "store_commits",
            "Transactions the store's writer committed",
            counters.commits,
        );
        self.registry.register(
            "store_committed_changes",
            "Changes (a decision with its records, say) those transactions committed",
            counters.changes,
        );
        self.registry.register(
            "store_flushes",
            "Flushes of the database's log that made commits durable before their callers were answered",
            counters.flushes,
        );
        self.registry.register(
            "store_batch_seconds",
            "The writer's time on each batch: its transaction, before the flush",
            counters.batch_seconds,
        );
        self.registry.register(
            "store_flush_seconds",
            "Each flush's time: the wait for the disk that makes commits durable",
            counters.flush_seconds,
        );
        self.registry.register(
            "store_checkpoint_seconds",
            "Each background checkpoint of SQLite's WAL into the database file (none on PostgreSQL)",
            counters.checkpoint_seconds,
        );
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_by_verdict() {
        let m = Metrics::default();
        m.decision(Verdict::Allow, &Phases::start());
        m.decision(Verdict::Allow, &Phases::start());
        m.decision(Verdict::Deny, &Phases::start());
        let text = m.render();
        assert!(
            text.contains("warden_decisions_total{verdict=\"allow\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("warden_decisions_total{verdict=\"deny\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("warden_decision_duration_seconds_count 3"),
            "{text}"
        );
    }

    #[test]
    fn each_mark_adds_the_time_since_the_last_to_its_phase() {
        let mut p = Phases::start();
        std::thread::sleep(Duration::from_millis(3));
        p.mark(Phase::Lane);
        std::thread::sleep(Duration::from_millis(2));
        p.mark(Phase::Commit);
        std::thread::sleep(Duration::from_millis(2));
        p.mark(Phase::Commit);
        assert!(p.took(Phase::Lane) >= Duration::from_millis(3));
        assert!(p.took(Phase::Commit) >= Duration::from_millis(4), "{p:?}");
        assert_eq!(p.took(Phase::Read), Duration::ZERO);
        let sum: Duration = Phase::ALL.iter().map(|&ph| p.took(ph)).sum();
        assert!(sum <= p.elapsed(), "{p:?}");

        let m = Metrics::default();
        m.decision(Verdict::Allow, &p);
        let text = m.render();
        for phase in Phase::ALL {
            let count = format!(
                "warden_decision_phase_seconds_count{{phase=\"{}\"}} 1",
                phase.as_str()
            );
            assert!(text.contains(&count), "{count} in {text}");
        }
        // The read took nothing: it is in the smallest bucket; the commit's 4 ms is not.
        assert!(
            text.contains("warden_decision_phase_seconds_bucket{le=\"0.0001\",phase=\"read\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("warden_decision_phase_seconds_bucket{le=\"0.0001\",phase=\"commit\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("warden_decision_duration_seconds_bucket{le=\"0.01\"}"),
            "{text}"
        );
    }

    #[test]
    fn renders_the_store_writers_counts() {
        let mut m = Metrics::default();
        let counters = warden_store::WriterCounters::default();
        m.store_writer(counters.clone());
        counters.commits.inc_by(2);
        counters.changes.inc_by(37);
        counters.flushes.inc();
        counters.batch_seconds.observe(0.003);
        counters.batch_seconds.observe(0.02);
        counters.flush_seconds.observe(0.0002);
        let text = m.render();
        for line in [
            "warden_store_commits_total 2",
            "warden_store_committed_changes_total 37",
            "warden_store_flushes_total 1",
            "warden_store_batch_seconds_count 2",
            // One batch within 10 ms, one over it.
            "warden_store_batch_seconds_bucket{le=\"0.01\"} 1",
            "warden_store_flush_seconds_bucket{le=\"0.00025\"} 1",
            "warden_store_checkpoint_seconds_count 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn renders_where_plugin_calls_found_instances() {
        let mut m = Metrics::default();
        let counters = InstanceCounters::default();
        m.plugin_instances(counters.clone());
        counters.spare.inc_by(5);
        counters.on_demand.inc();
        let text = m.render();
        assert!(
            text.contains("warden_plugin_spare_instances_total 5"),
            "{text}"
        );
        assert!(
            text.contains("warden_plugin_on_demand_instances_total 1"),
            "{text}"
        );
    }
}
