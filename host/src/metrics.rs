//! Prometheus metrics: decisions by verdict, decision latency, and where plugin calls found
//! their instances.

use std::time::Duration;

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

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<VerdictLabel, Counter>,
    latency: Histogram,
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
        // 50 µs to ~1.6 s: the pipeline alone is microseconds, a durable commit milliseconds.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.00005, 2.0, 16,
        ));
        registry.register(
            "decision_duration_seconds",
            "Time to decide and durably record a decision",
            latency.clone(),
        );
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
            rate_limited,
            lane_waits,
        }
    }
}

impl Metrics {
    /// Counts a decision and its latency.
    pub fn decision(&self, verdict: Verdict, took: Duration) {
        self.decisions
            .get_or_create(&VerdictLabel {
                verdict: verdict.as_str(),
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
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
        m.decision(Verdict::Allow, Duration::from_micros(100));
        m.decision(Verdict::Allow, Duration::from_micros(100));
        m.decision(Verdict::Deny, Duration::from_millis(3));
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
    fn renders_the_store_writers_counts() {
        let mut m = Metrics::default();
        let counters = warden_store::WriterCounters::default();
        m.store_writer(counters.clone());
        counters.commits.inc_by(2);
        counters.changes.inc_by(37);
        counters.flushes.inc();
        let text = m.render();
        for line in [
            "warden_store_commits_total 2",
            "warden_store_committed_changes_total 37",
            "warden_store_flushes_total 1",
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
