//! `warden plugin new`: a standalone plugin crate that builds into a loadable component.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::manifest::PluginKind;

/// The SDK this binary was built with (a path dependency for new plugins by default).
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// Writes a new plugin crate `name` of `kind` into `dir/name`; returns its path.
pub fn new_plugin(dir: &Path, name: &str, kind: PluginKind, sdk: &Path) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || !name.as_bytes()[0].is_ascii_lowercase()
    {
        bail!("`{name}` is not a valid plugin name: use a-z, 0-9 and -, starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} exists already", root.display());
    }
    let sdk = std::fs::canonicalize(sdk)
        .with_context(|| format!("cannot find warden-sdk at {}", sdk.display()))?;
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::create_dir_all(root.join("fixtures"))?;
    let ty = name
        .split('-')
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect::<String>();
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
warden-sdk = {{ path = "{sdk}" }}

# A plugin is its own workspace, even inside another repository.
[workspace]
"#,
        sdk = sdk.display()
    );
    let (trait_name, macro_name, body, test) = match kind {
        PluginKind::Classifier => (
            "Classifier",
            "export_classifier",
            r#"    fn classify(action: &Action, config: &Config) -> Result<Classification, PluginError> {
        let mut c = Classification::new(action.table_risk);
        if config.watched_services.iter().any(|s| s == &action.service) && action.environment == "production" {
            c.raise(RiskLevel::High, "watched_service", format!("{} is watched", action.service));
        }
        warden_sdk::log(LogLevel::Debug, &format!("{} -> {:?}", action.service, c.level));
        Ok(c)
    }"#.to_string(),
            format!(
                r##"    #[test]
    fn raises_risk_for_watched_services() {{
        let action = warden_sdk::testing::action("deploy", "production", "payments");
        let (result, _logs) = warden_sdk::testing::classify::<{ty}>(&action, r#"{{"watched_services": ["payments"]}}"#);
        assert_eq!(result.unwrap().level, RiskLevel::High);
    }}"##
            ),
        ),
        PluginKind::AnomalyDetector => (
            "AnomalyDetector",
            "export_anomaly_detector",
            r#"    fn detect(_action: &Action, baseline: &Baseline, activity: &Activity, config: &Config) -> Result<Vec<Finding>, PluginError> {
        let mut findings = Vec::new();
        if baseline.warm && f64::from(activity.actions_last_hour) > config.max_ratio * baseline.rate_per_hour.max(1.0) {
            findings.push(Finding { detector: "burst".into(), severity: 80, p_value: None, message: format!("{} actions in the last hour", activity.actions_last_hour) });
        }
        Ok(findings)
    }"#
            .to_string(),
            format!(
                r##"    #[test]
    fn flags_bursts() {{
        let action = warden_sdk::testing::action("deploy", "staging", "payments");
        let baseline = Baseline {{ warm: true, rate_per_hour: 2.0, ..Default::default() }};
        let activity = Activity {{ actions_last_hour: 40, ..Default::default() }};
        let (result, _) = warden_sdk::testing::detect::<{ty}>(&action, &baseline, &activity, r#"{{"max_ratio": 5.0}}"#);
        assert_eq!(result.unwrap().len(), 1);
    }}"##
            ),
        ),
        PluginKind::RollbackTrigger => (
            "RollbackTrigger",
            "export_rollback_trigger",
            r#"    fn judge(_action: &Action, windows: &[MetricWindow], config: &Config) -> Result<Judgement, PluginError> {
        for w in windows {
            let rate = |errors: u64, total: u64| if total == 0 { 0.0 } else { errors as f64 / total as f64 };
            if !w.dry_run && rate(w.canary_errors, w.canary_total) > rate(w.baseline_errors, w.baseline_total) + config.max_error_rate_increase {
                return Ok(Judgement { verdict: JudgementVerdict::Failed, reasons: vec![format!("{}: canary error rate too high", w.name)] });
            }
        }
        Ok(Judgement { verdict: JudgementVerdict::Successful, reasons: Vec::new() })
    }"#
            .to_string(),
            format!(
                r##"    #[test]
    fn fails_on_error_spike() {{
        let action = warden_sdk::testing::action("deploy", "production", "payments");
        let w = MetricWindow {{ name: "errors".into(), canary_errors: 50, canary_total: 100, baseline_errors: 1, baseline_total: 100, ..Default::default() }};
        let (result, _) = warden_sdk::testing::judge::<{ty}>(&action, &[w], r#"{{"max_error_rate_increase": 0.05}}"#);
        assert_eq!(result.unwrap().verdict, JudgementVerdict::Failed);
    }}"##
            ),
        ),
    };
    let config_fields = match kind {
        PluginKind::Classifier => {
            "    /// Services whose production changes are at least high risk.\n    pub watched_services: Vec<String>,"
        }
        PluginKind::AnomalyDetector => {
            "    /// Flag when the agent acts this many times faster than humans do.\n    pub max_ratio: f64,"
        }
        PluginKind::RollbackTrigger => {
            "    /// Fail when the canary's error rate exceeds the baseline's by this much.\n    pub max_error_rate_increase: f64,"
        }
    };
    let lib = format!(
        r#"//! {name}: a Warden {kind:?} plugin.
//!
//! Build:  warden plugin build .
//! Test:   cargo test   (natively)   and   warden plugin test <component> --manifest plugin.toml --fixture fixtures/example.json

use serde::Deserialize;
#[allow(unused_imports)]
use warden_sdk::*;

/// The plugin's configuration: the `[config]` table of `plugin.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {{
{config_fields}
}}

/// The plugin.
pub struct {ty};

impl {trait_name} for {ty} {{
    type Config = Config;

{body}
}}

warden_sdk::{macro_name}!({ty});

#[cfg(test)]
mod tests {{
    use super::*;

{test}
}}
"#
    );
    let manifest = format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\n# classes = [\"deploy\"]   # action classes it sees; all when absent\n# failure_policy = \"fail_closed\"\n\n[limits]\nfuel = 20000000\nmemory_bytes = 16777216\n\n[config]\n{config}\n",
        kind = serde_json::to_value(kind)?.as_str().unwrap_or_default(),
        config = match kind {
            PluginKind::Classifier => "watched_services = [\"payments\"]",
            PluginKind::AnomalyDetector => "max_ratio = 5.0",
            PluginKind::RollbackTrigger => "max_error_rate_increase = 0.05",
        }
    );
    let fixture = r#"{
  "action": {
    "agent": "deploy-bot", "team": "payments", "class": "deploy", "environment": "production", "service": "payments",
    "table_risk": "low"
  },
  "baseline": {"warm": true, "rate_per_hour": 2.0},
  "activity": {"actions_last_hour": 40},
  "windows": [{"name": "errors", "canary_errors": 50, "canary_total": 100, "baseline_errors": 1, "baseline_total": 100}]
}
"#;
    std::fs::write(root.join("Cargo.toml"), cargo)?;
    std::fs::write(root.join("src/lib.rs"), lib)?;
    std::fs::write(root.join("plugin.toml"), manifest)?;
    std::fs::write(root.join("fixtures/example.json"), fixture)?;
    std::fs::write(root.join(".gitignore"), "/target\n")?;
    Ok(root)
}
