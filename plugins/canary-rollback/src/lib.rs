//! Warden's reference rollback trigger: judges a guarded action's canary against its baseline,
//! the way Kayenta judges canaries and Argo Rollouts' analysis counts measurements.
//!
//! Each metric window is one measurement of one metric. A measurement is judged by up to two
//! tests, each one-sided ("the canary is worse"):
//! - samples (latency and the like): Mann–Whitney U after shifting the canary by an effect-size
//!   margin (`margin` × the baseline median), so a difference too small to matter never fails;
//! - error counts: the exact conditional binomial test (the canary's share of all errors seen)
//!   against the canary's error rate being at most (1 + `margin`) × the baseline's.
//!
//! A measurement with too little data (`min_samples`, `min_requests`) is inconclusive; one with no
//! data on a side is an error (missing telemetry). The measurements of a metric then count like
//! Argo's: failed when more than `failure_limit` failed, error when more than
//! `consecutive_error_limit` errors came in a row, inconclusive when more than `inconclusive_limit`
//! were inconclusive. Across metrics the worst wins (failed, then error, then inconclusive);
//! dry-run metrics are judged and reported but never decide.
//!
//! `alpha` is the chance of failing a healthy canary in one judgement: it is split evenly
//! (Bonferroni) over every test the judgement runs, so adding metrics never raises it.

use std::collections::BTreeMap;

use serde::Deserialize;
use warden_sdk::stats::{binomial_upper_tail, mann_whitney_greater, median};
use warden_sdk::{Action, Judgement, JudgementVerdict, MetricWindow, PluginError, RollbackTrigger};

/// Configuration; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Chance of failing a healthy canary in one judgement, shared by all its tests.
    pub alpha: f64,
    /// Samples needed on each side before a sample metric is judged.
    pub min_samples: usize,
    /// Canary requests needed before an error count is judged.
    pub min_requests: u64,
    /// How much worse the canary must be to matter, as a fraction of the baseline (0.1 = 10%).
    pub margin: f64,
    /// Failed measurements tolerated per metric.
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated per metric.
    pub inconclusive_limit: u32,
    /// Consecutive errored measurements tolerated per metric.
    pub consecutive_error_limit: u32,
    /// Per-metric settings, by metric name.
    pub metrics: BTreeMap<String, MetricConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            alpha: 0.001,
            min_samples: 20,
            min_requests: 200,
            margin: 0.1,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            metrics: BTreeMap::new(),
        }
    }
}

/// Settings for one metric.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricConfig {
    /// Which way is worse.
    pub direction: Direction,
    /// Overrides the global `margin`.
    pub margin: Option<f64>,
    /// Judge and report, never decide (also settable per window).
    pub dry_run: bool,
}

/// Which way a metric gets worse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is worse (latency, memory).
    #[default]
    Increase,
    /// Lower is worse (throughput, conversions).
    Decrease,
}

/// One measurement's outcome, with why.
#[derive(Debug, Clone, PartialEq)]
struct Measurement {
    verdict: JudgementVerdict,
    why: String,
}

impl Measurement {
    fn new(verdict: JudgementVerdict, why: impl Into<String>) -> Measurement {
        Measurement {
            verdict,
            why: why.into(),
        }
    }
}

/// How many tests a window runs (for splitting `alpha`).
fn tests_in(w: &MetricWindow) -> usize {
    usize::from(!w.canary.is_empty() || !w.baseline.is_empty())
        + usize::from(w.canary_total > 0 || w.baseline_total > 0)
}

fn judge_samples(
    w: &MetricWindow,
    metric: &MetricConfig,
    config: &Config,
    alpha: f64,
) -> Measurement {
    use JudgementVerdict::*;
    if w.canary.is_empty() || w.baseline.is_empty() {
        let side = if w.canary.is_empty() {
            "canary"
        } else {
            "baseline"
        };
        return Measurement::new(Error, format!("no {side} samples"));
    }
    if w.canary.iter().chain(&w.baseline).any(|v| !v.is_finite()) {
        return Measurement::new(Error, "a sample is not a finite number");
    }
    if w.canary.len() < config.min_samples || w.baseline.len() < config.min_samples {
        return Measurement::new(
            Inconclusive,
            format!(
                "{} canary and {} baseline samples, {} needed on each side",
                w.canary.len(),
                w.baseline.len(),
                config.min_samples
            ),
        );
    }
    let (canary_median, baseline_median) = (
        median(&w.canary).unwrap_or(0.0),
        median(&w.baseline).unwrap_or(0.0),
    );
    let margin = metric.margin.unwrap_or(config.margin);
    let shift = margin * baseline_median.abs();
    // Move the canary towards "better" by the margin, then ask whether it is still worse.
    let p = match metric.direction {
        Direction::Increase => mann_whitney_greater(
            &w.canary.iter().map(|v| v - shift).collect::<Vec<_>>(),
            &w.baseline,
        ),
        Direction::Decrease => mann_whitney_greater(
            &w.baseline,
            &w.canary.iter().map(|v| v + shift).collect::<Vec<_>>(),
        ),
    };
    let change = if baseline_median != 0.0 {
        format!(
            " ({:+.0}%)",
            (canary_median / baseline_median - 1.0) * 100.0
        )
    } else {
        String::new()
    };
    let facts = format!(
        "canary median {canary_median:.4} vs baseline {baseline_median:.4}{change}, Mann–Whitney p={p:.2e} beyond a {:.0}% margin",
        margin * 100.0
    );
    Measurement::new(if p < alpha { Failed } else { Successful }, facts)
}

fn judge_errors(
    w: &MetricWindow,
    metric: &MetricConfig,
    config: &Config,
    alpha: f64,
) -> Measurement {
    use JudgementVerdict::*;
    if w.canary_errors > w.canary_total || w.baseline_errors > w.baseline_total {
        return Measurement::new(Error, "more errors than requests");
    }
    if w.canary_total == 0 || w.baseline_total == 0 {
        let side = if w.canary_total == 0 {
            "canary"
        } else {
            "baseline"
        };
        return Measurement::new(Error, format!("no {side} requests"));
    }
    if w.canary_total < config.min_requests {
        return Measurement::new(
            Inconclusive,
            format!(
                "{} canary requests, {} needed",
                w.canary_total, config.min_requests
            ),
        );
    }
    // Conditional on the errors seen on both sides, the canary's share of them is binomial; under
    // "the canary's rate is at most (1 + margin) × the baseline's" its chance per error is at most
    // `share`. This accounts for the baseline's own noise, unlike testing against its point rate.
    let (canary, baseline) = (
        w.canary_total as f64 * (1.0 + metric.margin.unwrap_or(config.margin)),
        w.baseline_total as f64,
    );
    let share = canary / (canary + baseline);
    let p = binomial_upper_tail(w.canary_errors, w.canary_errors + w.baseline_errors, share);
    let facts = format!(
        "canary {}/{} errors vs baseline {}/{}, exact binomial p={p:.2e} beyond a {:.0}% margin",
        w.canary_errors,
        w.canary_total,
        w.baseline_errors,
        w.baseline_total,
        metric.margin.unwrap_or(config.margin) * 100.0
    );
    Measurement::new(if p < alpha { Failed } else { Successful }, facts)
}

/// Judges one measurement: the worse of its sample and error-count tests.
fn measure(w: &MetricWindow, metric: &MetricConfig, config: &Config, alpha: f64) -> Measurement {
    let has_samples = !w.canary.is_empty() || !w.baseline.is_empty();
    let has_counts = w.canary_total > 0 || w.baseline_total > 0;
    let mut results = Vec::new();
    if has_samples {
        results.push(judge_samples(w, metric, config, alpha));
    }
    if has_counts {
        results.push(judge_errors(w, metric, config, alpha));
    }
    if results.is_empty() {
        return Measurement::new(JudgementVerdict::Error, "no data");
    }
    let verdict = results
        .iter()
        .map(|m| m.verdict)
        .max_by_key(|v| severity(*v))
        .unwrap_or(JudgementVerdict::Error);
    Measurement::new(
        verdict,
        results
            .into_iter()
            .map(|m| m.why)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Which verdict wins when results are combined: failed, then error, then inconclusive.
fn severity(v: JudgementVerdict) -> u8 {
    match v {
        JudgementVerdict::Successful => 0,
        JudgementVerdict::Inconclusive => 1,
        JudgementVerdict::Error => 2,
        JudgementVerdict::Failed => 3,
    }
}

fn name(v: JudgementVerdict) -> &'static str {
    match v {
        JudgementVerdict::Successful => "successful",
        JudgementVerdict::Failed => "failed",
        JudgementVerdict::Inconclusive => "inconclusive",
        JudgementVerdict::Error => "error",
    }
}

/// Counts one metric's measurements, in order, against the limits (Argo Rollouts' rules).
fn metric_verdict(measurements: &[Measurement], config: &Config) -> (JudgementVerdict, String) {
    use JudgementVerdict::*;
    let count = |v| measurements.iter().filter(|m| m.verdict == v).count() as u32;
    let (failed, inconclusive, errors) = (count(Failed), count(Inconclusive), count(Error));
    let (mut run, mut longest_run) = (0u32, 0u32);
    for m in measurements {
        run = if m.verdict == Error { run + 1 } else { 0 };
        longest_run = longest_run.max(run);
    }
    let last = measurements.last().map(|m| m.why.as_str()).unwrap_or("");
    let n = measurements.len();
    if failed > config.failure_limit {
        (
            Failed,
            format!(
                "{failed} of {n} measurements failed (limit {}); last: {last}",
                config.failure_limit
            ),
        )
    } else if longest_run > config.consecutive_error_limit {
        (
            Error,
            format!(
                "{longest_run} measurements in a row errored (limit {}); last: {last}",
                config.consecutive_error_limit
            ),
        )
    } else if inconclusive > config.inconclusive_limit {
        (
            Inconclusive,
            format!(
                "{inconclusive} of {n} measurements inconclusive (limit {}); last: {last}",
                config.inconclusive_limit
            ),
        )
    } else if errors as usize == n {
        // Errors within the limit and nothing else yet: wait for telemetry rather than pass.
        (
            Inconclusive,
            format!(
                "waiting for telemetry ({errors} errored, limit {}); last: {last}",
                config.consecutive_error_limit
            ),
        )
    } else {
        (
            Successful,
            format!(
                "{} of {n} measurements passed; last: {last}",
                n as u32 - failed - inconclusive - errors
            ),
        )
    }
}

fn check(config: &Config) -> Result<(), PluginError> {
    let bad = |message: &str| Err(PluginError::new("bad_config", message));
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return bad("alpha must be between 0 and 1");
    }
    // Written so that NaN is refused too.
    let non_negative = |x: f64| x >= 0.0;
    if !non_negative(config.margin)
        || config
            .metrics
            .values()
            .any(|m| m.margin.is_some_and(|x| !non_negative(x)))
    {
        return bad("margins must be zero or more");
    }
    if config.min_samples < 2 {
        return bad("min_samples must be at least 2");
    }
    Ok(())
}

/// The trigger.
pub struct CanaryRollback;

impl RollbackTrigger for CanaryRollback {
    type Config = Config;

    fn judge(
        _action: &Action,
        windows: &[MetricWindow],
        config: &Config,
    ) -> Result<Judgement, PluginError> {
        check(config)?;
        let default_metric = MetricConfig::default();
        let metric_of = |name: &str| config.metrics.get(name).unwrap_or(&default_metric);
        let dry = |w: &MetricWindow| w.dry_run || metric_of(&w.name).dry_run;
        let tests: usize = windows.iter().filter(|w| !dry(w)).map(tests_in).sum();
        let alpha = config.alpha / tests.max(1) as f64;

        // Measurements per metric, keeping the order metrics first appear in.
        let mut order: Vec<&str> = Vec::new();
        let mut by_metric: BTreeMap<&str, (bool, Vec<Measurement>)> = BTreeMap::new();
        for w in windows {
            let entry = by_metric.entry(&w.name).or_insert_with(|| {
                order.push(&w.name);
                (false, Vec::new())
            });
            entry.0 |= dry(w);
            entry.1.push(measure(w, metric_of(&w.name), config, alpha));
        }

        let mut verdict = if order.iter().any(|m| !by_metric[m].0) {
            JudgementVerdict::Successful
        } else {
            JudgementVerdict::Error
        };
        let mut reasons = Vec::with_capacity(order.len() + 1);
        for metric in order {
            let (dry_run, measurements) = &by_metric[metric];
            let (v, why) = metric_verdict(measurements, config);
            if *dry_run {
                reasons.push(format!("{metric} (dry run): {}: {why}", name(v)));
            } else {
                if severity(v) > severity(verdict) {
                    verdict = v;
                }
                reasons.push(format!("{metric}: {}: {why}", name(v)));
            }
        }
        if verdict == JudgementVerdict::Error && reasons.iter().all(|r| r.contains("(dry run)")) {
            reasons
                .push("no metric that decides: every window is dry-run or there are none".into());
        }
        warden_sdk::log(
            warden_sdk::LogLevel::Debug,
            &format!(
                "{} windows, {tests} tests, per-test alpha {alpha:.2e}",
                windows.len()
            ),
        );
        Ok(Judgement { verdict, reasons })
    }
}

warden_sdk::export_rollback_trigger!(CanaryRollback);

#[cfg(test)]
mod tests {
    use super::*;
    use warden_sdk::JudgementVerdict::*;
    use warden_sdk::testing;

    /// A deterministic pseudo-random stream (plugins have no clock or entropy; neither do tests).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Latency-like: exponential around `mean`.
        fn latencies(&mut self, n: usize, mean: f64) -> Vec<f64> {
            (0..n).map(|_| -mean * (1.0 - self.next()).ln()).collect()
        }

        fn errors(&mut self, n: u64, rate: f64) -> u64 {
            (0..n).filter(|_| self.next() < rate).count() as u64
        }
    }

    fn latency(rng: &mut Lcg, canary_mean: f64) -> MetricWindow {
        MetricWindow {
            name: "latency_ms".into(),
            canary: rng.latencies(200, canary_mean),
            baseline: rng.latencies(200, 100.0),
            ..Default::default()
        }
    }

    fn errors(rng: &mut Lcg, canary_rate: f64) -> MetricWindow {
        MetricWindow {
            name: "errors".into(),
            canary_total: 2000,
            canary_errors: rng.errors(2000, canary_rate),
            baseline_total: 2000,
            baseline_errors: rng.errors(2000, 0.01),
            ..Default::default()
        }
    }

    fn judge(windows: &[MetricWindow], config: &str) -> Judgement {
        let action = testing::action("deploy", "production", "payments");
        testing::judge::<CanaryRollback>(&action, windows, config)
            .0
            .unwrap()
    }

    #[test]
    fn a_healthy_canary_passes() {
        let mut rng = Lcg(7);
        let j = judge(&[latency(&mut rng, 100.0), errors(&mut rng, 0.01)], "{}");
        assert_eq!(j.verdict, Successful, "{:?}", j.reasons);
        assert_eq!(j.reasons.len(), 2);
    }

    #[test]
    fn slow_or_failing_canaries_fail() {
        let mut rng = Lcg(11);
        let slow = judge(&[latency(&mut rng, 200.0), errors(&mut rng, 0.01)], "{}");
        assert_eq!(slow.verdict, Failed, "{:?}", slow.reasons);
        assert!(
            slow.reasons[0].starts_with("latency_ms: failed"),
            "{:?}",
            slow.reasons
        );
        let failing = judge(&[latency(&mut rng, 100.0), errors(&mut rng, 0.05)], "{}");
        assert_eq!(failing.verdict, Failed, "{:?}", failing.reasons);
        assert!(
            failing.reasons[1].starts_with("errors: failed"),
            "{:?}",
            failing.reasons
        );
    }

    #[test]
    fn a_difference_within_the_margin_passes() {
        // 5% slower is real (the test would see it with no margin) but inside the 10% margin.
        let base: Vec<f64> = (0..400).map(|i| 100.0 + f64::from(i % 20)).collect();
        let canary: Vec<f64> = base.iter().map(|v| v * 1.05).collect();
        let w = MetricWindow {
            name: "latency_ms".into(),
            canary,
            baseline: base,
            ..Default::default()
        };
        assert_eq!(judge(std::slice::from_ref(&w), "{}").verdict, Successful);
        assert_eq!(judge(&[w], r#"{"margin": 0.0}"#).verdict, Failed);
    }

    #[test]
    fn direction_decrease_fails_a_drop() {
        let base: Vec<f64> = (0..100).map(|i| 1000.0 + f64::from(i % 10)).collect();
        let canary: Vec<f64> = base.iter().map(|v| v * 0.5).collect();
        let w = MetricWindow {
            name: "throughput".into(),
            canary,
            baseline: base,
            ..Default::default()
        };
        assert_eq!(
            judge(std::slice::from_ref(&w), "{}").verdict,
            Successful,
            "higher-is-worse by default: a drop is fine"
        );
        assert_eq!(
            judge(
                &[w],
                r#"{"metrics": {"throughput": {"direction": "decrease"}}}"#
            )
            .verdict,
            Failed
        );
    }

    #[test]
    fn too_little_data_is_inconclusive_and_missing_data_an_error() {
        let few = MetricWindow {
            name: "latency_ms".into(),
            canary: vec![500.0; 5],
            baseline: vec![100.0; 50],
            ..Default::default()
        };
        let j = judge(&[few], "{}");
        assert_eq!(j.verdict, Inconclusive, "{:?}", j.reasons);
        let small = MetricWindow {
            name: "errors".into(),
            canary_total: 50,
            canary_errors: 40,
            baseline_total: 5000,
            baseline_errors: 5,
            ..Default::default()
        };
        assert_eq!(judge(&[small], "{}").verdict, Inconclusive);
        // Missing telemetry: waiting while within the consecutive-error limit, an error beyond it.
        let missing = MetricWindow {
            name: "latency_ms".into(),
            baseline: vec![100.0; 50],
            ..Default::default()
        };
        let j = judge(&vec![missing.clone(); 4], "{}");
        assert_eq!(j.verdict, Inconclusive, "{:?}", j.reasons);
        let j = judge(&vec![missing; 5], "{}");
        assert_eq!(j.verdict, Error, "{:?}", j.reasons);
        assert!(
            j.reasons[0].contains("5 measurements in a row errored"),
            "{:?}",
            j.reasons
        );
        assert_eq!(judge(&[], "{}").verdict, Error);
    }

    #[test]
    fn limits_count_measurements_like_argo() {
        let mut rng = Lcg(3);
        let windows = [
            latency(&mut rng, 100.0),
            latency(&mut rng, 200.0),
            latency(&mut rng, 100.0),
        ];
        assert_eq!(judge(&windows, "{}").verdict, Failed);
        let j = judge(&windows, r#"{"failure_limit": 1}"#);
        assert_eq!(j.verdict, Successful, "{:?}", j.reasons);
        assert!(
            j.reasons[0].contains("2 of 3 measurements passed"),
            "{:?}",
            j.reasons
        );
        // Errors that are not consecutive stay within a limit of one.
        let gap = MetricWindow {
            name: "latency_ms".into(),
            ..Default::default()
        };
        let interleaved = [
            gap.clone(),
            latency(&mut rng, 100.0),
            gap.clone(),
            latency(&mut rng, 100.0),
        ];
        assert_eq!(
            judge(&interleaved, r#"{"consecutive_error_limit": 1}"#).verdict,
            Successful
        );
        assert_eq!(
            judge(&[gap.clone(), gap], r#"{"consecutive_error_limit": 1}"#).verdict,
            Error
        );
    }

    #[test]
    fn dry_run_metrics_report_but_never_decide() {
        let mut rng = Lcg(5);
        let mut slow = latency(&mut rng, 300.0);
        slow.dry_run = true;
        let j = judge(&[slow.clone(), errors(&mut rng, 0.01)], "{}");
        assert_eq!(j.verdict, Successful, "{:?}", j.reasons);
        assert!(
            j.reasons[0].starts_with("latency_ms (dry run): failed"),
            "{:?}",
            j.reasons
        );
        slow.dry_run = false;
        let j = judge(
            &[slow, errors(&mut rng, 0.01)],
            r#"{"metrics": {"latency_ms": {"dry_run": true}}}"#,
        );
        assert_eq!(j.verdict, Successful, "{:?}", j.reasons);
    }

    /// The false-rollback budget from docs/plugins.md: with the defaults, healthy canaries fail
    /// well under 0.1% of judgements, so 20 judgements stay under 2%.
    #[test]
    fn healthy_canaries_rarely_fail() {
        let mut rng = Lcg(42);
        let trials = 2000;
        let failures = (0..trials)
            .filter(|_| {
                let windows = [latency(&mut rng, 100.0), errors(&mut rng, 0.01)];
                judge(&windows, "{}").verdict == Failed
            })
            .count();
        assert!(
            failures <= 2,
            "{failures} false failures in {trials} healthy judgements"
        );
    }

    #[test]
    fn bad_input_and_config() {
        let nan = MetricWindow {
            name: "latency_ms".into(),
            canary: vec![f64::NAN; 30],
            baseline: vec![1.0; 30],
            ..Default::default()
        };
        assert_eq!(judge(&vec![nan; 5], "{}").verdict, Error);
        let impossible = MetricWindow {
            name: "errors".into(),
            canary_total: 10,
            canary_errors: 11,
            baseline_total: 10,
            ..Default::default()
        };
        assert_eq!(judge(&vec![impossible; 5], "{}").verdict, Error);
        let action = testing::action("deploy", "production", "payments");
        for config in [
            r#"{"alpha": 0}"#,
            r#"{"margin": -1}"#,
            r#"{"min_samples": 1}"#,
            r#"{"metrics": {"x": {"margin": -0.5}}}"#,
        ] {
            let (result, _) = testing::judge::<CanaryRollback>(&action, &[], config);
            assert_eq!(result.unwrap_err().code, "bad_config", "{config}");
        }
        let (result, _) = testing::judge::<CanaryRollback>(&action, &[], r#"{"alpah": 0.1}"#);
        assert_eq!(result.unwrap_err().code, "bad_config");
    }
}
