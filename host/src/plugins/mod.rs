//! WebAssembly plugins: the manifest, the wasmtime runtime, building components, and the set of
//! loaded plugins the decision pipeline consults.
//!
//! The loaded set is swapped atomically: a decision takes a snapshot when it starts, so it
//! finishes on the versions it began with while a new version is installed.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use serde::Serialize;
use utoipa::ToSchema;

pub mod build;
pub mod fixture;
pub mod manifest;
pub mod runtime;
pub mod scaffold;
pub mod spares;

use manifest::{FailurePolicy, Manifest, PluginKind};
use runtime::bindings::types;
use runtime::{CallOutcome, LoadedPlugin, Runtime};

use crate::audit::{Actor, AuditRecord};
use crate::error::{Error, Kind};
use crate::policy::RiskLevel;
use crate::store::{Change, PluginRow, Store, Write};

/// What one plugin said about one decision, as recorded in the answer and the audit trail.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct PluginReport {
    /// `name@version`.
    pub plugin: String,
    /// `ok`, `plugin_error` or `failed`.
    pub outcome: String,
    /// The risk level a classifier gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<RiskLevel>,
    /// Its categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// For failures: `fuel`, `memory`, `output`, `input`, `trap`, `instantiate`, or the plugin's error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What went wrong, naming the plugin and the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `fail_closed` or `fail_open`, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// Fuel used.
    pub fuel_used: u64,
    /// Wall time, microseconds.
    pub duration_us: u64,
    /// Peak linear memory, bytes.
    pub peak_memory: usize,
    /// What the plugin logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// The plugins' merged opinion on one action: classification (stage 3) and anomaly (stage 4).
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    /// The highest level any classifier gave, or `critical` for a fail-closed failure.
    pub level: Option<RiskLevel>,
    /// The highest score.
    pub score: u8,
    /// Categories from all classifiers.
    pub categories: Vec<String>,
    /// Reasons from all classifiers, and failures.
    pub reasons: Vec<(String, String)>,
    /// Whether any anomaly detector ran.
    pub anomaly_checked: bool,
    /// The highest severity (0–100) of any anomaly finding.
    pub anomaly_severity: u8,
    /// Every anomaly finding, with the plugin that made it.
    pub findings: Vec<AnomalyFinding>,
    /// One report per plugin that ran.
    pub reports: Vec<PluginReport>,
}

/// One anomaly detector's finding, as a decision answer carries it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct AnomalyFinding {
    /// `name@version` of the detector plugin.
    pub plugin: String,
    /// Which of its detectors (`burst_rate`, `combined`, …).
    pub detector: String,
    /// 0 (normal) to 100 (certainly anomalous).
    pub severity: u8,
    /// The detector's p-value, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// For humans.
    pub message: String,
}

/// What anomaly detectors compare an action with, loaded only when one will run.
#[derive(Debug, Clone)]
pub struct AnomalyContext {
    /// The human baseline for the action's team, service, class and environment.
    pub baseline: types::Baseline,
    /// The agent's recent activity of the same kind.
    pub activity: types::Activity,
}

/// The loaded plugins and the runtime that runs them.
#[derive(Debug)]
pub struct PluginHost {
    runtime: Runtime,
    loaded: RwLock<Arc<Vec<LoadedPlugin>>>,
}

/// Converts the contract's level to the policy's.
pub fn level_of(l: types::RiskLevel) -> RiskLevel {
    match l {
        types::RiskLevel::Low => RiskLevel::Low,
        types::RiskLevel::Medium => RiskLevel::Medium,
        types::RiskLevel::High => RiskLevel::High,
        types::RiskLevel::Critical => RiskLevel::Critical,
    }
}

/// Converts a policy level to the contract's.
pub fn wit_level(l: RiskLevel) -> types::RiskLevel {
    match l {
        RiskLevel::Low => types::RiskLevel::Low,
        RiskLevel::Medium => types::RiskLevel::Medium,
        RiskLevel::High => types::RiskLevel::High,
        RiskLevel::Critical => types::RiskLevel::Critical,
    }
}

impl PluginHost {
    /// A host with no plugins loaded, keeping the default number of spare instances.
    pub fn new() -> anyhow::Result<PluginHost> {
        PluginHost::with_spares(spares::DEFAULT_PER_PLUGIN)
    }

    /// A host with no plugins loaded, keeping `per_plugin` spare instances of each plugin.
    pub fn with_spares(per_plugin: usize) -> anyhow::Result<PluginHost> {
        Ok(PluginHost { runtime: Runtime::with_spares(per_plugin)?, loaded: RwLock::new(Arc::new(Vec::new())) })
    }

    /// The runtime (for `warden plugin test`).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Publishes every `<dir>/<name>/plugin.toml` with its `plugin.wasm` (see [`Self::publish`]);
    /// returns what changed.
    pub async fn publish_dir(&self, dir: &Path, store: &Store, now: i64) -> anyhow::Result<Vec<String>> {
        let mut changed = Vec::new();
        let actor = Actor { kind: "admin".into(), id: "configuration".into(), tool: None, model: None, token_id: None };
        for (manifest, bytes) in read_dir(dir)? {
            if let Some(id) = self.publish(store, actor.clone(), manifest, bytes, now).await.map_err(|e| anyhow::anyhow!("{}", e.message))? {
                changed.push(id);
            }
        }
        Ok(changed)
    }

    /// Checks, compiles and stores a plugin with an audit record, then installs it here (other
    /// replicas pick it up on their next sync). Returns `name@version` if anything changed, and
    /// nothing if the same component and manifest are already stored.
    pub async fn publish(&self, store: &Store, actor: Actor, manifest: Manifest, bytes: Vec<u8>, now: i64) -> crate::error::Result<Option<String>> {
        let plugin = self.runtime.load(manifest, &bytes).map_err(|e| Error::new(Kind::BadRequest, "invalid_plugin", format!("{e:#}")))?;
        let manifest_json = serde_json::to_string(plugin.manifest.as_ref()).map_err(Error::internal)?;
        let previous = self.snapshot().iter().find(|p| p.manifest.name == plugin.manifest.name).cloned();
        if let Some(prev) = &previous
            && prev.sha256 == plugin.sha256
            && prev.manifest == plugin.manifest
        {
            return Ok(None);
        }
        let id = plugin.manifest.id();
        let event = if previous.is_some() { "plugin.replaced" } else { "plugin.loaded" };
        let details = serde_json::json!({
            "name": plugin.manifest.name, "version": plugin.manifest.version, "kind": plugin.manifest.kind, "sha256": plugin.sha256, "size": plugin.size,
            "failure_policy": plugin.manifest.failure_policy(), "limits": plugin.manifest.limits, "classes": plugin.manifest.classes,
            "previous": previous.as_ref().map(|p| serde_json::json!({"version": p.manifest.version, "sha256": p.sha256})),
        });
        let row = PluginRow {
            name: plugin.manifest.name.clone(),
            version: plugin.manifest.version.clone(),
            kind: plugin.manifest.kind.world().to_string(),
            manifest: manifest_json,
            component: Arc::new(bytes),
            sha256: plugin.sha256.clone(),
            updated_at: now,
        };
        let record = plugin_record(actor, event, &plugin.manifest.name, details, now);
        store.commit(Change { writes: vec![Write::UpsertPlugin(row)], audit: vec![record] }).await?;
        self.install(plugin);
        Ok(Some(id))
    }

    /// Removes a plugin from the store (audited) and from this replica.
    pub async fn unpublish(&self, store: &Store, actor: Actor, name: &str, now: i64) -> crate::error::Result<()> {
        let previous = self.snapshot().iter().find(|p| p.manifest.name == name).cloned();
        let details = serde_json::json!({ "name": name, "version": previous.as_ref().map(|p| p.manifest.version.clone()), "sha256": previous.as_ref().map(|p| p.sha256.clone()) });
        let record = plugin_record(actor, "plugin.removed", name, details, now);
        store.commit(Change { writes: vec![Write::DeletePlugin { name: name.to_string() }], audit: vec![record] }).await?;
        self.remove(name);
        Ok(())
    }

    /// Converges this replica on the store: loads new or changed plugins, drops removed ones.
    pub async fn sync(&self, store: &Store) -> anyhow::Result<()> {
        let stored = store.plugin_hashes().await?;
        let loaded = self.snapshot();
        for (name, sha) in &stored {
            if loaded.iter().any(|p| &p.manifest.name == name && &p.sha256 == sha) {
                continue;
            }
            let Some((manifest_json, bytes)) = store.plugin(name).await? else { continue };
            let manifest: Manifest = serde_json::from_str(&manifest_json)?;
            match self.runtime.load(manifest, &bytes) {
                Ok(plugin) => {
                    tracing::info!(plugin = %plugin.manifest.id(), sha256 = %plugin.sha256, "plugin synced from the store");
                    self.install(plugin);
                }
                Err(e) => tracing::error!(plugin = %name, error = %format!("{e:#}"), "stored plugin does not load here"),
            }
        }
        for plugin in loaded.iter().filter(|p| !stored.iter().any(|(n, _)| n == &p.manifest.name)) {
            tracing::info!(plugin = %plugin.manifest.id(), "plugin removed from the store; unloading");
            self.remove(&plugin.manifest.name);
        }
        Ok(())
    }

    /// Removes a plugin from this replica; in-flight calls finish on their snapshot.
    pub fn remove(&self, name: &str) -> Option<LoadedPlugin> {
        let mut guard = self.loaded.write().expect("plugin lock");
        let old = guard.iter().find(|p| p.manifest.name == name).cloned();
        if old.is_some() {
            *guard = Arc::new(guard.iter().filter(|p| p.manifest.name != name).cloned().collect());
        }
        old
    }

    /// Loads every `<dir>/<name>/plugin.toml` with its `plugin.wasm` into this replica only.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).with_context(|| format!("cannot read plugin directory {}", dir.display()))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            if !path.join("plugin.toml").exists() {
                continue;
            }
            let manifest: Manifest = toml::from_str(&std::fs::read_to_string(path.join("plugin.toml"))?)
                .with_context(|| format!("invalid {}", path.join("plugin.toml").display()))?;
            let bytes = std::fs::read(path.join("plugin.wasm")).with_context(|| format!("no plugin.wasm in {}", path.display()))?;
            let plugin = self.runtime.load(manifest, &bytes)?;
            names.push(plugin.manifest.id());
            self.install(plugin);
        }
        Ok(names)
    }

    /// Installs a plugin, replacing one of the same name; returns the replaced one.
    pub fn install(&self, plugin: LoadedPlugin) -> Option<LoadedPlugin> {
        let mut guard = self.loaded.write().expect("plugin lock");
        let mut next: Vec<LoadedPlugin> = guard.iter().filter(|p| p.manifest.name != plugin.manifest.name).cloned().collect();
        let old = guard.iter().find(|p| p.manifest.name == plugin.manifest.name).cloned();
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
    pub async fn assess<F, Fut>(&self, class: &str, build: impl FnOnce() -> types::Action, context: F) -> crate::error::Result<Assessment>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = crate::error::Result<AnomalyContext>>,
    {
        let plugins = self.snapshot();
        let mut merged = Assessment::default();
        let seen = |kind| plugins.iter().filter(move |p: &&LoadedPlugin| p.manifest.kind == kind && p.manifest.sees(class));
        if seen(PluginKind::Classifier).next().is_none() && seen(PluginKind::AnomalyDetector).next().is_none() {
            return Ok(merged);
        }
        let action = &build();
        let input_bytes = approx_size(action);
        // The context first, so that no instance is held while it loads.
        let context = match seen(PluginKind::AnomalyDetector).next() {
            Some(_) => Some(context().await?),
            None => None,
        };
        let mut calls = self.runtime.calls();
        for plugin in seen(PluginKind::Classifier) {
            let mut call = calls.classify(plugin, action, input_bytes).await;
            let id = plugin.manifest.id();
            let mut report = PluginReport::new(&id, &mut call);
            if let Some(c) = merged.settle(plugin, &mut report, call.outcome) {
                let level = level_of(c.level);
                merged.level = merged.level.max(Some(level));
                merged.score = merged.score.max(c.score.min(100));
                merged.categories.extend(c.categories.iter().cloned());
                merged.reasons.extend(c.reasons.iter().map(|r| (id.clone(), r.clone())));
                report.level = Some(level);
                report.categories = c.categories;
            }
            merged.reports.push(report);
        }
        let Some(context) = context else {
            return Ok(merged);
        };
        let input_bytes = input_bytes + baseline_size(&context.baseline);
        merged.anomaly_checked = true;
        for plugin in seen(PluginKind::AnomalyDetector) {
            let mut call = calls.detect(plugin, action, &context.baseline, &context.activity, input_bytes).await;
            let id = plugin.manifest.id();
            let mut report = PluginReport::new(&id, &mut call);
            if let Some(findings) = merged.settle(plugin, &mut report, call.outcome) {
                for f in findings {
                    let severity = f.severity.min(100);
                    merged.anomaly_severity = merged.anomaly_severity.max(severity);
                    report.categories.push(format!("{}:{severity}", f.detector));
                    merged.findings.push(AnomalyFinding { plugin: id.clone(), detector: f.detector, severity, p_value: f.p_value, message: f.message });
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
    /// `successful`, `failed`, `inconclusive` or `error`: the worst of all triggers (failed,
    /// then error, then inconclusive).
    pub verdict: &'static str,
    /// Every trigger's reasons, prefixed with the trigger.
    pub reasons: Vec<String>,
    /// One report per trigger that ran.
    pub reports: Vec<PluginReport>,
}

impl Judged {
    /// Records a trigger that could not judge: `fail_closed` rolls back, `fail_open` is an error.
    fn failed(&mut self, plugin: &LoadedPlugin, report: &mut PluginReport, code: String, message: String) -> &'static str {
        let policy = plugin.manifest.failure_policy();
        self.reasons.push(format!("{}: {message}", report.plugin));
        report.outcome = "failed".into();
        report.error = Some(code);
        report.message = Some(message);
        report.failure_policy = Some(policy);
        if policy == FailurePolicy::FailClosed { "failed" } else { "error" }
    }
}

impl PluginHost {
    /// Runs every rollback trigger that sees `class` on the windows, each in a fresh instance;
    /// `None` when no trigger sees the class.
    pub async fn judge(&self, class: &str, action: &types::Action, windows: &[types::MetricWindow]) -> Option<Judged> {
        let plugins = self.snapshot();
        let triggers: Vec<&LoadedPlugin> = plugins.iter().filter(|p| p.manifest.kind == PluginKind::RollbackTrigger && p.manifest.sees(class)).collect();
        if triggers.is_empty() {
            return None;
        }
        let rank = |v: &str| ["successful", "inconclusive", "error", "failed"].iter().position(|x| *x == v).unwrap_or(2);
        let input_bytes = approx_size(action) + windows.iter().map(|w| w.name.len() + (w.canary.len() + w.baseline.len()) * 8 + 64).sum::<usize>();
        let mut judged = Judged { verdict: "successful", reasons: Vec::new(), reports: Vec::new() };
        let mut calls = self.runtime.calls();
        for plugin in triggers {
            let mut call = calls.judge(plugin, action, windows, input_bytes).await;
            let id = plugin.manifest.id();
            let mut report = PluginReport::new(&id, &mut call);
            let verdict = match call.outcome {
                CallOutcome::Ok(j) => {
                    judged.reasons.extend(j.reasons.iter().map(|r| format!("{id}: {r}")));
                    match j.verdict {
                        types::JudgementVerdict::Successful => "successful",
                        types::JudgementVerdict::Failed => "failed",
                        types::JudgementVerdict::Inconclusive => "inconclusive",
                        types::JudgementVerdict::Error => "error",
                    }
                }
                CallOutcome::PluginError { code, message } => judged.failed(plugin, &mut report, code, format!("plugin {id} returned an error: {message}")),
                CallOutcome::Failed { limit, message } => judged.failed(plugin, &mut report, limit.to_string(), message),
            };
            report.categories.push(format!("verdict:{verdict}"));
            if rank(verdict) > rank(judged.verdict) {
                judged.verdict = verdict;
            }
            judged.reports.push(report);
        }
        Some(judged)
    }
}

impl PluginReport {
    fn new<T>(id: &str, call: &mut runtime::Call<T>) -> PluginReport {
        PluginReport {
            plugin: id.to_string(),
            outcome: "ok".into(),
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
}

impl Assessment {
    /// Returns a successful call's value; records a failed one under the plugin's failure
    /// policy (`fail_closed` makes the action critical, so it needs a human).
    fn settle<T>(&mut self, plugin: &LoadedPlugin, report: &mut PluginReport, outcome: CallOutcome<T>) -> Option<T> {
        let id = &report.plugin;
        let (code, message) = match outcome {
            CallOutcome::Ok(value) => return Some(value),
            CallOutcome::PluginError { code, message } => {
                report.outcome = "plugin_error".into();
                (code, format!("plugin {id} returned an error: {message}"))
            }
            CallOutcome::Failed { limit, message } => {
                report.outcome = "failed".into();
                (limit.to_string(), message)
            }
        };
        let policy = plugin.manifest.failure_policy();
        tracing::warn!(plugin = %id, error = %code, %message, ?policy, "plugin failed");
        if policy == FailurePolicy::FailClosed {
            self.level = Some(RiskLevel::Critical);
            self.score = self.score.max(RiskLevel::Critical.base_score());
            self.categories.push(format!("plugin_failed:{}", plugin.manifest.name));
        }
        self.reasons.push((id.clone(), message.clone()));
        report.error = Some(code);
        report.message = Some(message);
        report.failure_policy = Some(policy);
        None
    }
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<(Manifest, Vec<u8>)>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("cannot read plugin directory {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.path();
        if !path.join("plugin.toml").exists() {
            continue;
        }
        let manifest: Manifest =
            toml::from_str(&std::fs::read_to_string(path.join("plugin.toml"))?).with_context(|| format!("invalid {}", path.join("plugin.toml").display()))?;
        let bytes = std::fs::read(path.join("plugin.wasm")).with_context(|| format!("no plugin.wasm in {}", path.display()))?;
        out.push((manifest, bytes));
    }
    Ok(out)
}

fn plugin_record(actor: Actor, event: &str, name: &str, details: serde_json::Value, now: i64) -> AuditRecord {
    let authorizing_human = if actor.kind == "admin" && actor.id != "configuration" { Some(actor.id.clone()) } else { None };
    AuditRecord { authorizing_human, ..AuditRecord::change(actor, event, format!("plugin:{name}"), details, now) }
}

/// A cheap estimate of an action's serialized size, for the input limit.
fn baseline_size(b: &types::Baseline) -> usize {
    b.team.len()
        + b.service.len()
        + b.class.len()
        + b.environment.len()
        + b.hour_of_week_counts.len() * 4
        + b.seen_combinations.iter().map(|c| c.len() + 8).sum::<usize>()
        + 64
}

fn approx_size(a: &types::Action) -> usize {
    let strings = a.agent.len() + a.team.len() + a.class.len() + a.environment.len() + a.service.len();
    let resources: usize = a.resources.iter().map(|r| r.len() + 8).sum();
    let paths: usize = a.change.as_ref().map(|c| c.paths.iter().map(|p| p.len() + 8).sum()).unwrap_or(0);
    let labels: usize = a.labels.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
    strings + resources + paths + labels + a.reasoning.as_ref().map_or(0, String::len) + 64
}
