//! # warden-sdk
//!
//! Write Warden plugins in plain Rust: implement one trait, call one export macro, build with
//! `cargo build --target wasm32-unknown-unknown --release` and `warden plugin build` (or plain
//! `--target wasm32-wasip2`). No WIT or wit-bindgen knowledge is needed.
//!
//! ```ignore
//! use warden_sdk::{Action, Classification, Classifier, PluginError, RiskLevel};
//!
//! struct Paranoid;
//!
//! impl Classifier for Paranoid {
//!     type Config = ();
//!     fn classify(action: &Action, _: &()) -> Result<Classification, PluginError> {
//!         let level = if action.environment == "production" { RiskLevel::High } else { action.table_risk };
//!         Ok(Classification::new(level).because("production is sacred"))
//!     }
//! }
//!
//! warden_sdk::export_classifier!(Paranoid);
//! ```
//!
//! The same logic runs natively in `cargo test` through [`testing`].
//!
//! Every call runs in a fresh instance with no filesystem, network, clock or environment: all
//! a plugin knows is what the call passes in. The default `arena` feature gives the plugin a
//! bump allocator over a static arena, so a fresh instance does not grow its memory for
//! ordinary inputs; that is most of what makes instantiation cheap.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod arena;
pub mod stats;
pub mod testing;

include!(concat!(env!("OUT_DIR"), "/wit_macro.rs"));

/// Risk levels, least to most risky.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum RiskLevel {
    /// Routine, easily reversed.
    Low,
    /// Visible impact, reversible with effort.
    Medium,
    /// Production impact or hard to reverse.
    High,
    /// Irreversible or security-relevant.
    Critical,
}

impl RiskLevel {
    /// The score (0–100) Warden gives the level when nothing finer is known.
    pub fn base_score(self) -> u8 {
        match self {
            RiskLevel::Low => 10,
            RiskLevel::Medium => 40,
            RiskLevel::High => 70,
            RiskLevel::Critical => 90,
        }
    }
}

/// The size and shape of a code or config change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChangeSummary {
    /// Files changed.
    pub files_changed: u32,
    /// Lines added.
    pub lines_added: u32,
    /// Lines deleted.
    pub lines_deleted: u32,
    /// Paths changed.
    pub paths: Vec<String>,
    /// Whether the change breaks other services' contracts.
    pub breaking: bool,
}

/// The action an agent asks about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The agent's id.
    pub agent: String,
    /// The agent's team.
    pub team: String,
    /// Action class (`deploy`, `db_migration`, …).
    pub class: String,
    /// Target environment.
    pub environment: String,
    /// Target service.
    pub service: String,
    /// Resources touched.
    #[serde(default)]
    pub resources: Vec<String>,
    /// The change, for code and config changes.
    #[serde(default)]
    pub change: Option<ChangeSummary>,
    /// Estimated cost in US dollars.
    #[serde(default)]
    pub estimated_cost_usd: Option<f64>,
    /// The agent's stated reasoning.
    #[serde(default)]
    pub reasoning: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// Hour of the week of the request, 0 = Monday 00:00 UTC.
    #[serde(default)]
    pub hour_of_week: u16,
    /// The risk from Warden's built-in table; a classifier may raise it, never lower it.
    pub table_risk: RiskLevel,
}

impl Action {
    /// The value of a label, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A classifier's judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// The risk level.
    pub level: RiskLevel,
    /// 0–100.
    pub score: u8,
    /// What makes the action risky.
    pub categories: Vec<String>,
    /// Why, for humans.
    pub reasons: Vec<String>,
}

impl Classification {
    /// A classification at `level` with the level's base score.
    pub fn new(level: RiskLevel) -> Classification {
        Classification {
            level,
            score: level.base_score(),
            categories: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// Adds a reason.
    pub fn because(mut self, reason: impl Into<String>) -> Classification {
        self.reasons.push(reason.into());
        self
    }

    /// Raises the level (never lowers it), adding a category and a reason.
    pub fn raise(
        &mut self,
        level: RiskLevel,
        category: impl Into<String>,
        reason: impl Into<String>,
    ) {
        if level > self.level {
            self.level = level;
            self.score = self.score.max(level.base_score());
        }
        self.categories.push(category.into());
        self.reasons.push(reason.into());
    }
}

/// How humans of the same team do this kind of action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Baseline {
    /// Team.
    pub team: String,
    /// Service.
    pub service: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Human actions observed.
    pub sample_size: u32,
    /// Whether there is enough history to judge against.
    pub warm: bool,
    /// Mean human actions per hour of this kind.
    pub rate_per_hour: f64,
    /// Median human change size (lines added + deleted).
    pub change_size_median: f64,
    /// Median absolute deviation of human change size.
    pub change_size_mad: f64,
    /// Human actions per hour of the week (168 buckets, Monday 00:00 UTC first).
    pub hour_of_week_counts: Vec<u32>,
    /// `class/environment/service` combinations humans of the team have done.
    pub seen_combinations: Vec<String>,
    /// Whether the humans' activity names its targets at all (if not, `targets_seen` says
    /// nothing about the action's resources).
    pub targets_tracked: bool,
    /// Of the action's resources, those the humans have touched before.
    pub targets_seen: Vec<String>,
    /// Humans in the reference group.
    pub humans: u32,
    /// Whether the reference is the organisation's humans (the team has too few).
    pub organisation: bool,
}

/// The agent's own recent activity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Activity {
    /// Actions of the same kind in the last hour, including this one, counted up to a cap: at
    /// least 100, and at least four times the humans' hourly rate and 50 more.
    pub actions_last_hour: u32,
    /// `class/environment/service` combinations this agent has done before.
    pub seen_combinations: Vec<String>,
}

/// One anomaly finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Which detector.
    pub detector: String,
    /// 0 (normal) to 100 (certainly anomalous).
    pub severity: u8,
    /// The detector's p-value, where it has one.
    pub p_value: Option<f64>,
    /// For humans.
    pub message: String,
}

/// Metric samples for canary and baseline over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricWindow {
    /// Metric name.
    pub name: String,
    /// Canary samples.
    pub canary: Vec<f64>,
    /// Baseline samples.
    pub baseline: Vec<f64>,
    /// Canary errors.
    pub canary_errors: u64,
    /// Canary requests.
    pub canary_total: u64,
    /// Baseline errors.
    pub baseline_errors: u64,
    /// Baseline requests.
    pub baseline_total: u64,
    /// Judged and reported, but never fails the action.
    pub dry_run: bool,
}

/// A rollback trigger's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum JudgementVerdict {
    /// The canary is healthy.
    Successful,
    /// Roll back.
    Failed,
    /// Not enough signal; hold for a human.
    Inconclusive,
    /// The judgement itself failed (e.g. missing telemetry).
    Error,
}

/// A rollback trigger's judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// The verdict.
    pub verdict: JudgementVerdict,
    /// Why.
    pub reasons: Vec<String>,
}

/// An expected failure, returned instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    /// Stable code (`bad_config`, `missing_metric`, …).
    pub code: String,
    /// For humans.
    pub message: String,
}

impl PluginError {
    /// An error with a code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> PluginError {
        PluginError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LogLevel {
    /// Detail.
    Debug,
    /// Normal.
    Info,
    /// Suspicious.
    Warn,
    /// Wrong.
    Error,
}

/// Writes a line to the plugin's log, which the host keeps per call (bounded).
pub fn log(level: LogLevel, message: &str) {
    __private::log_interface::log(level, message)
}

/// Judges an action's risk.
pub trait Classifier {
    /// The plugin's configuration (the manifest's `config` table); `()` for none.
    type Config: DeserializeOwned + Default;
    /// Classifies the action. The host keeps the highest of this and its own table.
    fn classify(action: &Action, config: &Self::Config) -> Result<Classification, PluginError>;
}

/// Compares an action and the agent's recent activity with the human baseline.
pub trait AnomalyDetector {
    /// The plugin's configuration.
    type Config: DeserializeOwned + Default;
    /// Returns the findings (none when the action looks normal).
    fn detect(
        action: &Action,
        baseline: &Baseline,
        activity: &Activity,
        config: &Self::Config,
    ) -> Result<Vec<Finding>, PluginError>;
}

/// Judges a guarded action from canary and baseline metrics.
pub trait RollbackTrigger {
    /// The plugin's configuration.
    type Config: DeserializeOwned + Default;
    /// Judges the windows.
    fn judge(
        action: &Action,
        windows: &[MetricWindow],
        config: &Self::Config,
    ) -> Result<Judgement, PluginError>;
}

impl RiskLevel {
    /// Lifts the canonical-ABI discriminant (used by the generated bindings).
    #[doc(hidden)]
    pub unsafe fn _lift(val: u8) -> RiskLevel {
        match val {
            0 => RiskLevel::Low,
            1 => RiskLevel::Medium,
            2 => RiskLevel::High,
            3 => RiskLevel::Critical,
            _ => panic!("invalid RiskLevel discriminant {val}"),
        }
    }
}

impl JudgementVerdict {
    /// Lifts the canonical-ABI discriminant (used by the generated bindings).
    #[doc(hidden)]
    pub unsafe fn _lift(val: u8) -> JudgementVerdict {
        match val {
            0 => JudgementVerdict::Successful,
            1 => JudgementVerdict::Failed,
            2 => JudgementVerdict::Inconclusive,
            3 => JudgementVerdict::Error,
            _ => panic!("invalid JudgementVerdict discriminant {val}"),
        }
    }
}

impl LogLevel {
    /// Lifts the canonical-ABI discriminant (used by the generated bindings).
    #[doc(hidden)]
    pub unsafe fn _lift(val: u8) -> LogLevel {
        match val {
            0 => LogLevel::Debug,
            1 => LogLevel::Info,
            2 => LogLevel::Warn,
            3 => LogLevel::Error,
            _ => panic!("invalid LogLevel discriminant {val}"),
        }
    }
}

/// Parses a plugin's JSON configuration; empty or `null` gives the default.
pub fn parse_config<C: DeserializeOwned + Default>(json: &str) -> Result<C, PluginError> {
    let trimmed = json.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(C::default());
    }
    match serde_json::from_str(trimmed) {
        Ok(c) => Ok(c),
        // An empty table configures a plugin that takes no configuration (`Config = ()`).
        Err(_) if trimmed == "{}" => Ok(C::default()),
        Err(e) => Err(PluginError::new(
            "bad_config",
            format!("invalid plugin config: {e}"),
        )),
    }
}

/// Exports a [`Classifier`] as the plugin's `classify` function.
#[macro_export]
macro_rules! export_classifier {
    ($plugin:ty) => {
        $crate::__warden_bindings!("classifier");
        #[doc(hidden)]
        pub struct __WardenExport;
        impl Guest for __WardenExport {
            fn classify(
                action: $crate::Action,
                config: String,
            ) -> Result<$crate::Classification, $crate::PluginError> {
                let result = $crate::__private::classify::<$plugin>(&action, &config);
                $crate::__private::discard((action, config));
                result
            }
        }
        export!(__WardenExport);
    };
}

/// Exports an [`AnomalyDetector`] as the plugin's `detect` function.
#[macro_export]
macro_rules! export_anomaly_detector {
    ($plugin:ty) => {
        $crate::__warden_bindings!("anomaly-detector");
        #[doc(hidden)]
        pub struct __WardenExport;
        impl Guest for __WardenExport {
            fn detect(
                action: $crate::Action,
                baseline: $crate::Baseline,
                activity: $crate::Activity,
                config: String,
            ) -> Result<Vec<$crate::Finding>, $crate::PluginError> {
                let result =
                    $crate::__private::detect::<$plugin>(&action, &baseline, &activity, &config);
                $crate::__private::discard((action, baseline, activity, config));
                result
            }
        }
        export!(__WardenExport);
    };
}

/// Exports a [`RollbackTrigger`] as the plugin's `judge` function.
#[macro_export]
macro_rules! export_rollback_trigger {
    ($plugin:ty) => {
        $crate::__warden_bindings!("rollback-trigger");
        #[doc(hidden)]
        pub struct __WardenExport;
        impl Guest for __WardenExport {
            fn judge(
                action: $crate::Action,
                windows: Vec<$crate::MetricWindow>,
                config: String,
            ) -> Result<$crate::Judgement, $crate::PluginError> {
                let result = $crate::__private::judge::<$plugin>(&action, &windows, &config);
                $crate::__private::discard((action, windows, config));
                result
            }
        }
        export!(__WardenExport);
    };
}

#[doc(hidden)]
pub mod __private {
    //! Used by the export macros; not part of the API.
    pub use wit_bindgen;

    use super::*;

    pub fn classify<P: Classifier>(
        action: &Action,
        config: &str,
    ) -> Result<Classification, PluginError> {
        let config = parse_config(config)?;
        let result = P::classify(action, &config);
        discard(config);
        result
    }

    pub fn detect<P: AnomalyDetector>(
        action: &Action,
        baseline: &Baseline,
        activity: &Activity,
        config: &str,
    ) -> Result<Vec<Finding>, PluginError> {
        let config = parse_config(config)?;
        let result = P::detect(action, baseline, activity, &config);
        discard(config);
        result
    }

    pub fn judge<P: RollbackTrigger>(
        action: &Action,
        windows: &[MetricWindow],
        config: &str,
    ) -> Result<Judgement, PluginError> {
        let config = parse_config(config)?;
        let result = P::judge(action, windows, &config);
        discard(config);
        result
    }

    /// Drops a value natively; in a plugin instance, skips the drop: the instance is thrown
    /// away after this one call, so walking the value to free its memory is wasted work.
    pub fn discard<T>(value: T) {
        #[cfg(target_arch = "wasm32")]
        core::mem::forget(value);
        #[cfg(not(target_arch = "wasm32"))]
        drop(value);
    }

    /// The `warden:plugin/log` import, written by hand against the canonical ABI so that the
    /// SDK can log without generated bindings; natively it writes to the test harness.
    pub mod log_interface {
        /// The WIT `level` enum.
        pub type Level = crate::LogLevel;

        #[cfg(target_arch = "wasm32")]
        #[link(wasm_import_module = "warden:plugin/log@0.2.0")]
        unsafe extern "C" {
            #[link_name = "log"]
            fn import_log(level: i32, ptr: *const u8, len: usize);
        }

        /// Logs through the host.
        #[cfg(target_arch = "wasm32")]
        pub fn log(level: Level, message: &str) {
            // SAFETY: the canonical ABI passes an enum as its discriminant and a string as a
            // pointer and byte length into this instance's memory, valid for the call.
            unsafe { import_log(level as i32, message.as_ptr(), message.len()) }
        }

        /// Logs into the native test harness.
        #[cfg(not(target_arch = "wasm32"))]
        pub fn log(level: Level, message: &str) {
            crate::testing::record_log(level, message);
        }
    }
}
