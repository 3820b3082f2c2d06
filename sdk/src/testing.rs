//! The native test harness: run a plugin's logic in `cargo test`, without Wasm, exactly as the
//! export macros call it, and read what it logged.
//!
//! ```ignore
//! let (result, logs) = warden_sdk::testing::classify::<MyPlugin>(&action, r#"{"threshold": 3}"#);
//! ```

use std::cell::RefCell;

use crate::{
    Action, Activity, AnomalyDetector, Baseline, Classification, Classifier, Finding, Judgement,
    LogLevel, MetricWindow, PluginError, RiskLevel, RollbackTrigger,
};

thread_local! {
    static LOGS: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    LOGS.with(|l| l.borrow_mut().push((level, message.to_string())));
}

fn take_logs() -> Vec<(LogLevel, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// What a plugin logged during one call.
pub type Logs = Vec<(LogLevel, String)>;

/// Runs a classifier natively with a JSON config.
pub fn classify<P: Classifier>(
    action: &Action,
    config: &str,
) -> (Result<Classification, PluginError>, Logs) {
    take_logs();
    let result = crate::__private::classify::<P>(action, config);
    (result, take_logs())
}

/// Runs an anomaly detector natively with a JSON config.
pub fn detect<P: AnomalyDetector>(
    action: &Action,
    baseline: &Baseline,
    activity: &Activity,
    config: &str,
) -> (Result<Vec<Finding>, PluginError>, Logs) {
    take_logs();
    let result = crate::__private::detect::<P>(action, baseline, activity, config);
    (result, take_logs())
}

/// Runs a rollback trigger natively with a JSON config.
pub fn judge<P: RollbackTrigger>(
    action: &Action,
    windows: &[MetricWindow],
    config: &str,
) -> (Result<Judgement, PluginError>, Logs) {
    take_logs();
    let result = crate::__private::judge::<P>(action, windows, config);
    (result, take_logs())
}

/// A plain action for fixtures: `class` in `environment` on `service`, low table risk.
pub fn action(class: &str, environment: &str, service: &str) -> Action {
    Action {
        agent: "test-agent".into(),
        team: "test-team".into(),
        class: class.into(),
        environment: environment.into(),
        service: service.into(),
        resources: Vec::new(),
        change: None,
        estimated_cost_usd: None,
        reasoning: None,
        labels: Vec::new(),
        hour_of_week: 34,
        table_risk: RiskLevel::Low,
    }
}
