//! What plugins see and say, in Warden's own terms: the action as plugins see it, the human
//! baseline and recent activity they compare it with, metric windows, and the merged reports.
//!
//! The WIT contract's generated types stay private to `warden-plugin-host`, which converts
//! between them and these in one file.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::decision::BaselineRef;
use crate::decision::{Action, ChangeSummary};
use crate::identity::Agent;
use crate::policy::RiskLevel;
use crate::records::Baseline;

/// What happens when a plugin traps, hits a limit or returns an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Treat the action as critical: it needs a human's approval at least.
    FailClosed,
    /// Record the failure and go on without the plugin's opinion.
    FailOpen,
}

/// How one plugin call ended, as a report records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// The plugin answered.
    Ok,
    /// The plugin returned one of its expected errors.
    PluginError,
    /// The plugin trapped or hit a limit.
    Failed,
}

impl CallStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::PluginError => "plugin_error",
            CallStatus::Failed => "failed",
        }
    }
}

/// What one plugin said about one decision, as recorded in the answer and the audit trail.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct PluginReport {
    /// `name@version`.
    pub plugin: String,
    /// `ok`, `plugin_error` or `failed`.
    pub outcome: CallStatus,
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
    /// Whether the anomaly detectors judged the action, and against which baseline.
    pub anomaly: AnomalyCheck,
    /// The highest severity (0–100) of any anomaly finding.
    pub anomaly_severity: u8,
    /// Every anomaly finding, with the plugin that made it.
    pub findings: Vec<AnomalyFinding>,
    /// One report per plugin that ran.
    pub reports: Vec<PluginReport>,
}

/// Whether the anomaly stage ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum AnomalyCheck {
    /// No anomaly detector sees the action's class.
    #[default]
    NoDetector,
    /// No warm human baseline for the action's team, service and class: detectors not asked.
    NoBaseline,
    /// The detectors judged the action against this baseline.
    Checked(BaselineRef),
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

/// The action as plugins see it (the WIT `action` record).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginAction {
    /// The agent's id.
    pub agent: String,
    /// The agent's team.
    pub team: String,
    /// Action class.
    pub class: String,
    /// Target environment.
    pub environment: String,
    /// Target service.
    pub service: String,
    /// Resources touched.
    pub resources: Vec<String>,
    /// The change, for code and config changes.
    pub change: Option<ChangeSummary>,
    /// Estimated cost in US dollars.
    pub estimated_cost_usd: Option<f64>,
    /// The agent's stated reasoning.
    pub reasoning: Option<String>,
    /// Free-form labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// Hour of the week of the request, 0 = Monday 00:00 UTC (plugins have no clock).
    pub hour_of_week: u16,
    /// The risk from the built-in table; a classifier may raise it, never lower it.
    pub table_risk: RiskLevel,
}

impl PluginAction {
    /// The action as plugins see it, asked by `agent` at `now` with the table's risk.
    pub fn new(
        action: &Action,
        agent: &Agent,
        table_risk: RiskLevel,
        now: i64,
        tz: &jiff::tz::TimeZone,
    ) -> PluginAction {
        // Plugins have no clock: they get the hour of the week in the baselines' time zone.
        let hour_of_week = crate::baseline::local_time(now, tz).hour_of_week;
        PluginAction {
            agent: agent.id.clone(),
            team: agent.team.clone(),
            class: action.class.clone(),
            environment: action.environment.clone(),
            service: action.service.clone(),
            resources: action.resources.clone(),
            change: action.change.clone(),
            estimated_cost_usd: action.estimated_cost_usd,
            reasoning: action.reasoning.clone(),
            labels: action
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            hour_of_week,
            table_risk,
        }
    }
}

/// The agent's own recent activity of one kind (the WIT `activity` record).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentActivity {
    /// Actions of the same kind in the last hour, including this one, counted up to a cap: at
    /// least 100, and at least four times the humans' hourly rate and 50 more.
    pub actions_last_hour: u32,
    /// `class/environment/service` combinations this agent has done before.
    pub seen_combinations: Vec<String>,
}

/// What anomaly detectors compare an action with, loaded only when one will run.
#[derive(Debug, Clone)]
pub struct AnomalyContext {
    /// The human baseline for the action's team, service, class and environment.
    pub baseline: Baseline,
    /// The agent's recent activity of the same kind.
    pub activity: RecentActivity,
}

/// One metric over one window, canary against baseline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricWindow {
    /// Metric name (`latency_ms`, `errors`, …).
    pub name: String,
    /// Canary samples.
    #[serde(default)]
    pub canary: Vec<f64>,
    /// Baseline samples.
    #[serde(default)]
    pub baseline: Vec<f64>,
    /// Canary errors.
    #[serde(default)]
    pub canary_errors: u64,
    /// Canary requests.
    #[serde(default)]
    pub canary_total: u64,
    /// Baseline errors.
    #[serde(default)]
    pub baseline_errors: u64,
    /// Baseline requests.
    #[serde(default)]
    pub baseline_total: u64,
    /// Judged and reported, never decides.
    #[serde(default)]
    pub dry_run: bool,
}

/// A rollback trigger's verdict on a guarded action, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JudgementVerdict {
    /// The canary is as good as the baseline.
    Successful,
    /// Not enough to say.
    Inconclusive,
    /// The trigger could not judge (missing telemetry, a fail-open failure); never rolls back.
    Error,
    /// The canary is worse: roll back.
    Failed,
}

impl JudgementVerdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JudgementVerdict::Successful => "successful",
            JudgementVerdict::Inconclusive => "inconclusive",
            JudgementVerdict::Error => "error",
            JudgementVerdict::Failed => "failed",
        }
    }
}

/// A classifier's judgement (the WIT `classification` record).
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Its risk level.
    pub level: RiskLevel,
    /// 0–100.
    pub score: u8,
    /// What makes the action risky.
    pub categories: Vec<String>,
    /// Why, for humans.
    pub reasons: Vec<String>,
}

/// One anomaly detector's finding, before the host names the plugin (the WIT `finding` record).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Which of its detectors.
    pub detector: String,
    /// 0 (normal) to 100 (certainly anomalous).
    pub severity: u8,
    /// The detector's p-value, where it has one.
    pub p_value: Option<f64>,
    /// For humans.
    pub message: String,
}

/// A rollback trigger's judgement (the WIT `judgement` record).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Its verdict.
    pub verdict: JudgementVerdict,
    /// Why, per metric.
    pub reasons: Vec<String>,
}
