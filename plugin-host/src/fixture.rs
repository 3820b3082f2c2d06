//! `warden plugin test`: run a built component against a JSON fixture in the real runtime.
//!
//! A fixture is the SDK's types as JSON: `{"action": {...}, "config": {...}}`, plus `baseline`
//! and `activity` for anomaly detectors and `windows` for rollback triggers.

use serde::Deserialize;
use warden_sdk as sdk;

use crate::manifest::{Manifest, PluginKind};
use crate::runtime::bindings::types as wit;
use crate::runtime::{Call, CallOutcome, Runtime};

/// A test fixture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// The action.
    pub action: sdk::Action,
    /// Overrides the manifest's config.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// For anomaly detectors.
    #[serde(default)]
    pub baseline: sdk::Baseline,
    /// For anomaly detectors.
    #[serde(default)]
    pub activity: sdk::Activity,
    /// For rollback triggers.
    #[serde(default)]
    pub windows: Vec<sdk::MetricWindow>,
    /// What the verdict must contain: every key of an object and every item of a list, matched
    /// recursively (`{"findings": [{"detector": "burst_rate"}]}`), or the same scalar.
    #[serde(default)]
    pub expect: Option<serde_json::Value>,
}

/// What a test run printed.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// `name@version`.
    pub plugin: String,
    /// The verdict, the plugin's error, or the failure.
    pub verdict: serde_json::Value,
    /// Fuel used.
    pub fuel_used: u64,
    /// Peak linear memory, bytes.
    pub peak_memory: usize,
    /// Component size, bytes.
    pub module_size: usize,
    /// Wall time, microseconds (one fresh instance and one call).
    pub duration_us: u64,
    /// The plugin's log lines.
    pub logs: Vec<String>,
    /// Whether the verdict holds what the fixture expects (absent: it expects nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<bool>,
}

/// Whether `actual` holds `expected`: an object every expected key (recursively), a list an
/// item holding each expected item (an empty list: nothing), a scalar the same value.
pub fn holds(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            e.iter().all(|(k, v)| a.get(k).is_some_and(|x| holds(x, v)))
        }
        (Value::Array(a), Value::Array(e)) if e.is_empty() => a.is_empty(),
        (Value::Array(a), Value::Array(e)) => e.iter().all(|v| a.iter().any(|x| holds(x, v))),
        (a, e) => a == e,
    }
}

fn report<T>(
    plugin: String,
    module_size: usize,
    call: Call<T>,
    show: impl Fn(&T) -> serde_json::Value,
) -> Report {
    let verdict = match &call.outcome {
        CallOutcome::Ok(v) => show(v),
        CallOutcome::PluginError { code, message } => {
            serde_json::json!({"plugin_error": {"code": code, "message": message}})
        }
        CallOutcome::Failed { limit, message } => {
            serde_json::json!({"failed": {"limit": limit, "message": message}})
        }
    };
    Report {
        plugin,
        verdict,
        fuel_used: call.fuel_used,
        peak_memory: call.peak_memory,
        module_size,
        duration_us: call.duration_us,
        logs: call.logs,
        expected: None,
    }
}

/// Loads `component` with `manifest` and runs the fixture once, in a fresh instance.
pub async fn run(
    runtime: &Runtime,
    mut manifest: Manifest,
    component: &[u8],
    fixture: Fixture,
) -> anyhow::Result<Report> {
    if let Some(config) = fixture.config {
        manifest.config = config;
    }
    let plugin = runtime.load(manifest, component)?;
    let id = plugin.manifest.id();
    let a: wit::Action = fixture.action.into();
    let expect = fixture.expect;
    let mut report = match plugin.manifest.kind {
        PluginKind::Classifier => {
            let call = runtime.calls().classify_wit(&plugin, &a, 0).await;
            report(
                id,
                plugin.size,
                call,
                |c| serde_json::json!({"level": warden_core::policy::RiskLevel::from(c.level).as_str(), "score": c.score, "categories": c.categories, "reasons": c.reasons}),
            )
        }
        PluginKind::AnomalyDetector => {
            let (baseline, activity) = (fixture.baseline.into(), fixture.activity.into());
            let call = runtime
                .calls()
                .detect_wit(&plugin, &a, &baseline, &activity, 0)
                .await;
            report(
                id,
                plugin.size,
                call,
                |f| serde_json::json!({"findings": f.iter().map(|f| serde_json::json!({"detector": f.detector, "severity": f.severity, "p_value": f.p_value, "message": f.message})).collect::<Vec<_>>()}),
            )
        }
        PluginKind::RollbackTrigger => {
            let windows: Vec<wit::MetricWindow> =
                fixture.windows.into_iter().map(Into::into).collect();
            let call = runtime.calls().judge_wit(&plugin, &a, &windows, 0).await;
            report(
                id,
                plugin.size,
                call,
                |j| serde_json::json!({"verdict": warden_core::plugin::JudgementVerdict::from(j.verdict).as_str(), "reasons": j.reasons}),
            )
        }
    };
    report.expected = expect.map(|e| holds(&report.verdict, &e));
    Ok(report)
}
