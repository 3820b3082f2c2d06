//! The set of loaded plugins the decision pipeline consults, and how their answers merge.
//!
//! The loaded set is swapped atomically: a decision takes a snapshot when it starts, so it
//! finishes on the versions it began with while a new version is installed.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use warden_core::baseline::BaselineScope;
use warden_core::decision::BaselineRef;
use warden_core::plugin::{
    AnomalyCheck, AnomalyContext, AnomalyFinding, Assessment, CallStatus, FailurePolicy,
    JudgementVerdict, MetricWindow, PluginAction, PluginReport,
};
use warden_core::policy::RiskLevel;

use crate::manifest::{Manifest, PluginKind};
use crate::reset::MemoryReset;
use crate::runtime::bindings::types;
use crate::runtime::{self, CallOutcome, LoadedPlugin, Runtime};
use crate::spares;

/// The loaded plugins and the runtime that runs them.
#[derive(Debug)]
pub struct PluginHost {
    runtime: Runtime,
    loaded: RwLock<Arc<Vec<LoadedPlugin>>>,
}

impl PluginHost {
    /// A host with no plugins loaded, keeping the default number of spare instances.
    pub fn new() -> anyhow::Result<PluginHost> {
        PluginHost::with_spares(spares::DEFAULT_PER_PLUGIN)
    }

    /// A host with no plugins loaded, keeping `per_plugin` spare instances of each plugin.
    pub fn with_spares(per_plugin: usize) -> anyhow::Result<PluginHost> {
        PluginHost::configured(per_plugin, MemoryReset::Auto)
    }

    /// A host with no plugins loaded, `per_plugin` spares of each plugin and used memories
    /// reset as `reset` says (`[plugins] memory_reset`).
    pub fn configured(per_plugin: usize, reset: MemoryReset) -> anyhow::Result<PluginHost> {
        Ok(PluginHost {
            runtime: Runtime::configured(per_plugin, reset)?,
            loaded: RwLock::new(Arc::new(Vec::new())),
        })
    }

    /// The runtime (for `warden plugin test`).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Removes a plugin from this replica; in-flight calls finish on their snapshot.
    pub fn remove(&self, name: &str) -> Option<LoadedPlugin> {
        let mut guard = self.loaded.write().expect("plugin lock");
        let old = guard.iter().find(|p| p.manifest.name == name).cloned();
        if old.is_some() {
            *guard = Arc::new(
                guard
                    .iter()
                    .filter(|p| p.manifest.name != name)
                    .cloned()
                    .collect(),
            );
        }
        old
    }

    /// Loads every `<dir>/<name>/plugin.toml` with its `plugin.wasm` into this replica only.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for (manifest, bytes) in read_dir(dir)? {
            let plugin = self.runtime.load(manifest, &bytes)?;
            names.push(plugin.id.clone());
            self.install(plugin);
        }
        Ok(names)
    }

    /// Installs a plugin, replacing one of the same name; returns the replaced one.
    pub fn install(&self, plugin: LoadedPlugin) -> Option<LoadedPlugin> {
        let mut guard = self.loaded.write().expect("plugin lock");
        let mut next: Vec<LoadedPlugin> = guard
            .iter()
            .filter(|p| p.manifest.name != plugin.manifest.name)
            .cloned()
            .collect();
        let old = guard
            .iter()
            .find(|p| p.manifest.name == plugin.manifest.name)
            .cloned();
        next.push(plugin);
        next.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        *guard = Arc::new(next);
        old
    }

    /// A snapshot of the loaded plugins.
    pub fn snapshot(&self) -> Arc<Vec<LoadedPlugin>> {
        self.loaded.read().expect("plugin lock").clone()
    }

    /// Runs every classifier and then every anomaly detector that sees `class`, each in a fresh
    /// instance, on one snapshot of the loaded plugins. `build` makes the plugins' view of the
    /// action and `context` loads the baseline and activity; each runs only when a plugin needs
    /// it, so the common no-plugin path copies and loads nothing. The calls share one store
    /// (each in its own fresh instance), made after the context has loaded so that no instance
    /// waits on the database.
    pub async fn assess<F, Fut, E>(
        &self,
        class: &str,
        build: impl FnOnce() -> PluginAction,
        context: F,
    ) -> Result<Assessment, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<AnomalyContext>, E>>,
    {
        let plugins = self.snapshot();
        let mut merged = Assessment::default();
        let seen = |kind| {
            plugins
                .iter()
                .filter(move |p: &&LoadedPlugin| p.manifest.kind == kind && p.manifest.sees(class))
        };
        if seen(PluginKind::Classifier).next().is_none()
            && seen(PluginKind::AnomalyDetector).next().is_none()
        {
            return Ok(merged);
        }
        let action = &types::Action::from(build());
        let input_bytes = approx_size(action);
        // The context first, so that no instance is held while it loads.
        // Without a warm baseline the detectors are not asked: "not computed" is not "normal".
        let context = match seen(PluginKind::AnomalyDetector).next() {
            Some(_) => match context().await? {
                Some(AnomalyContext { baseline, activity }) => {
                    merged.anomaly = AnomalyCheck::Checked(BaselineRef {
                        team: baseline.team.clone(),
                        service: baseline.service.clone(),
                        class: baseline.class.clone(),
                        scope: if baseline.organisation {
                            BaselineScope::Organisation
                        } else {
                            BaselineScope::Team
                        },
                        humans: baseline.humans,
                        events: baseline.sample_size,
                    });
                    Some((
                        types::Baseline::from(baseline),
                        types::Activity::from(activity),
                    ))
                }
                None => {
                    merged.anomaly = AnomalyCheck::NoBaseline;
                    None
                }
            },
            None => None,
        };
        let mut calls = self.runtime.calls();
        for plugin in seen(PluginKind::Classifier) {
            let mut call = calls.classify_wit(plugin, action, input_bytes).await;
            let id = &plugin.id;
            let mut report = report_of(id, &mut call);
            if let Some(c) = settle(&mut merged, plugin, &mut report, call.outcome) {
                let level = RiskLevel::from(c.level);
                merged.level = merged.level.max(Some(level));
                merged.score = merged.score.max(c.score.min(100));
                merged.categories.extend(c.categories.iter().cloned());
                merged
                    .reasons
                    .extend(c.reasons.iter().map(|r| (id.clone(), r.clone())));
                report.level = Some(level);
                report.categories = c.categories;
            }
            merged.reports.push(report);
        }
        let Some(context) = context else {
            return Ok(merged);
        };
        let (baseline, activity) = &context;
        let input_bytes = input_bytes + baseline_size(baseline);
        for plugin in seen(PluginKind::AnomalyDetector) {
            let mut call = calls
                .detect_wit(plugin, action, baseline, activity, input_bytes)
                .await;
            let id = &plugin.id;
            let mut report = report_of(id, &mut call);
            if let Some(findings) = settle(&mut merged, plugin, &mut report, call.outcome) {
                for f in findings {
                    let severity = f.severity.min(100);
                    merged.anomaly_severity = merged.anomaly_severity.max(severity);
                    report.categories.push(format!("{}:{severity}", f.detector));
                    merged.findings.push(AnomalyFinding {
                        plugin: id.clone(),
                        detector: f.detector,
                        severity,
                        p_value: f.p_value,
                        message: f.message,
                    });
                }
            }
            merged.reports.push(report);
        }
        Ok(merged)
    }
}

/// The rollback triggers' combined judgement of a guarded action.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The worst of all triggers' verdicts (failed, then error, then inconclusive).
    pub verdict: JudgementVerdict,
    /// Every trigger's reasons, prefixed with the trigger.
    pub reasons: Vec<String>,
    /// One report per trigger that ran.
    pub reports: Vec<PluginReport>,
}

impl Judged {
    /// Records a trigger that could not judge: `fail_closed` rolls back, `fail_open` is an error.
    fn failed(
        &mut self,
        plugin: &LoadedPlugin,
        report: &mut PluginReport,
        code: String,
        message: String,
    ) -> JudgementVerdict {
        let policy = plugin.manifest.failure_policy();
        self.reasons.push(format!("{}: {message}", report.plugin));
        report.outcome = CallStatus::Failed;
        report.error = Some(code);
        report.message = Some(message);
        report.failure_policy = Some(policy);
        if policy == FailurePolicy::FailClosed {
            JudgementVerdict::Failed
        } else {
            JudgementVerdict::Error
        }
    }
}

impl PluginHost {
    /// Runs every rollback trigger that sees `class` on the windows, each in a fresh instance;
    /// `None` when no trigger sees the class.
    pub async fn judge(
        &self,
        class: &str,
        action: PluginAction,
        windows: Vec<MetricWindow>,
    ) -> Option<Judged> {
        let plugins = self.snapshot();
        let triggers: Vec<&LoadedPlugin> = plugins
            .iter()
            .filter(|p| p.manifest.kind == PluginKind::RollbackTrigger && p.manifest.sees(class))
            .collect();
        if triggers.is_empty() {
            return None;
        }
        let action = &types::Action::from(action);
        let windows: Vec<types::MetricWindow> = windows.into_iter().map(Into::into).collect();
        let input_bytes = approx_size(action)
            + windows
                .iter()
                .map(|w| w.name.len() + (w.canary.len() + w.baseline.len()) * 8 + 64)
                .sum::<usize>();
        let mut judged = Judged {
            verdict: JudgementVerdict::Successful,
            reasons: Vec::new(),
            reports: Vec::new(),
        };
        let mut calls = self.runtime.calls();
        for plugin in triggers {
            let mut call = calls.judge_wit(plugin, action, &windows, input_bytes).await;
            let id = &plugin.id;
            let mut report = report_of(id, &mut call);
            let verdict = match call.outcome {
                CallOutcome::Ok(j) => {
                    judged
                        .reasons
                        .extend(j.reasons.iter().map(|r| format!("{id}: {r}")));
                    JudgementVerdict::from(j.verdict)
                }
                CallOutcome::PluginError { code, message } => judged.failed(
                    plugin,
                    &mut report,
                    code,
                    format!("plugin {id} returned an error: {message}"),
                ),
                CallOutcome::Failed { limit, message } => {
                    judged.failed(plugin, &mut report, limit.to_string(), message)
                }
            };
            report
                .categories
                .push(format!("verdict:{}", verdict.as_str()));
            judged.verdict = judged.verdict.max(verdict);
            judged.reports.push(report);
        }
        Some(judged)
    }
}

/// A report of a call, before its outcome is settled.
fn report_of<T>(id: &str, call: &mut runtime::Call<T>) -> PluginReport {
    PluginReport {
        plugin: id.to_string(),
        outcome: CallStatus::Ok,
        level: None,
        categories: Vec::new(),
        error: None,
        message: None,
        failure_policy: None,
        fuel_used: call.fuel_used,
        duration_us: call.duration_us,
        peak_memory: call.peak_memory,
        logs: std::mem::take(&mut call.logs),
    }
}

/// Returns a successful call's value; records a failed one under the plugin's failure
/// policy (`fail_closed` makes the action critical, so it needs a human).
fn settle<T>(
    merged: &mut Assessment,
    plugin: &LoadedPlugin,
    report: &mut PluginReport,
    outcome: CallOutcome<T>,
) -> Option<T> {
    let id = &report.plugin;
    let (code, message) = match outcome {
        CallOutcome::Ok(value) => return Some(value),
        CallOutcome::PluginError { code, message } => {
            report.outcome = CallStatus::PluginError;
            (code, format!("plugin {id} returned an error: {message}"))
        }
        CallOutcome::Failed { limit, message } => {
            report.outcome = CallStatus::Failed;
            (limit.to_string(), message)
        }
    };
    let policy = plugin.manifest.failure_policy();
    tracing::warn!(plugin = %id, error = %code, %message, ?policy, "plugin failed");
    if policy == FailurePolicy::FailClosed {
        merged.level = Some(RiskLevel::Critical);
        merged.score = merged.score.max(RiskLevel::Critical.base_score());
        merged
            .categories
            .push(format!("plugin_failed:{}", plugin.manifest.name));
    }
    merged.reasons.push((id.clone(), message.clone()));
    report.error = Some(code);
    report.message = Some(message);
    report.failure_policy = Some(policy);
    None
}

/// Reads every `<dir>/<name>/plugin.toml` with its `plugin.wasm`, in name order.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<(Manifest, Vec<u8>)>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read plugin directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.path();
        if !path.join("plugin.toml").exists() {
            continue;
        }
        let manifest: Manifest =
            toml::from_str(&std::fs::read_to_string(path.join("plugin.toml"))?)
                .with_context(|| format!("invalid {}", path.join("plugin.toml").display()))?;
        let bytes = std::fs::read(path.join("plugin.wasm"))
            .with_context(|| format!("no plugin.wasm in {}", path.display()))?;
        out.push((manifest, bytes));
    }
    Ok(out)
}

/// A cheap estimate of an action's serialized size, for the input limit.
fn baseline_size(b: &types::Baseline) -> usize {
    b.team.len()
        + b.service.len()
        + b.class.len()
        + b.environment.len()
        + b.hour_of_week_counts.len() * 4
        + b.seen_combinations
            .iter()
            .chain(&b.targets_seen)
            .map(|c| c.len() + 8)
            .sum::<usize>()
        + 64
}

fn approx_size(a: &types::Action) -> usize {
    let strings =
        a.agent.len() + a.team.len() + a.class.len() + a.environment.len() + a.service.len();
    let resources: usize = a.resources.iter().map(|r| r.len() + 8).sum();
    let paths: usize = a
        .change
        .as_ref()
        .map(|c| c.paths.iter().map(|p| p.len() + 8).sum())
        .unwrap_or(0);
    let labels: usize = a.labels.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
    strings + resources + paths + labels + a.reasoning.as_ref().map_or(0, String::len) + 64
}
