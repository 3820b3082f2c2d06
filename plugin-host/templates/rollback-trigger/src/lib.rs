//! template-rollback-trigger: a Warden rollback-trigger plugin.
//!
//! Build:  warden plugin build .
//! Test:   cargo test   (natively)   and   warden plugin test <component> --manifest plugin.toml --fixture fixtures/example.json

use serde::Deserialize;
use warden_sdk::*;

/// The plugin's configuration: the `[config]` table of `plugin.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Fail when the canary's error rate exceeds the baseline's by this much.
    pub max_error_rate_increase: f64,
}

/// The plugin.
pub struct TemplateRollbackTrigger;

impl RollbackTrigger for TemplateRollbackTrigger {
    type Config = Config;

    fn judge(
        _action: &Action,
        windows: &[MetricWindow],
        config: &Config,
    ) -> Result<Judgement, PluginError> {
        let rate = |errors: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                errors as f64 / total as f64
            }
        };
        for w in windows {
            if !w.dry_run
                && rate(w.canary_errors, w.canary_total)
                    > rate(w.baseline_errors, w.baseline_total) + config.max_error_rate_increase
            {
                return Ok(Judgement {
                    verdict: JudgementVerdict::Failed,
                    reasons: vec![format!("{}: canary error rate too high", w.name)],
                });
            }
        }
        Ok(Judgement {
            verdict: JudgementVerdict::Successful,
            reasons: Vec::new(),
        })
    }
}

warden_sdk::export_rollback_trigger!(TemplateRollbackTrigger);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_on_error_spike() {
        let action = warden_sdk::testing::action("deploy", "production", "payments");
        let w = MetricWindow {
            name: "errors".into(),
            canary_errors: 50,
            canary_total: 100,
            baseline_errors: 1,
            baseline_total: 100,
            ..Default::default()
        };
        let (result, _) = warden_sdk::testing::judge::<TemplateRollbackTrigger>(
            &action,
            &[w],
            r#"{"max_error_rate_increase": 0.05}"#,
        );
        assert_eq!(result.unwrap().verdict, JudgementVerdict::Failed);
    }
}
