//! template-anomaly-detector: a Warden anomaly-detector plugin.
//!
//! Build:  warden plugin build .
//! Test:   cargo test   (natively)   and   warden plugin test <component> --manifest plugin.toml --fixture fixtures/example.json

use serde::Deserialize;
use warden_sdk::*;

/// The plugin's configuration: the `[config]` table of `plugin.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Flag when the agent acts this many times faster than humans do.
    pub max_ratio: f64,
}

/// The plugin.
pub struct TemplateAnomalyDetector;

impl AnomalyDetector for TemplateAnomalyDetector {
    type Config = Config;

    fn detect(
        _action: &Action,
        baseline: &Baseline,
        activity: &Activity,
        config: &Config,
    ) -> Result<Vec<Finding>, PluginError> {
        let mut findings = Vec::new();
        if baseline.warm
            && f64::from(activity.actions_last_hour)
                > config.max_ratio * baseline.rate_per_hour.max(1.0)
        {
            let message = format!("{} actions in the last hour", activity.actions_last_hour);
            findings.push(Finding {
                detector: "burst".into(),
                severity: 80,
                p_value: None,
                message,
            });
        }
        Ok(findings)
    }
}

warden_sdk::export_anomaly_detector!(TemplateAnomalyDetector);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_bursts() {
        let action = warden_sdk::testing::action("deploy", "staging", "payments");
        let baseline = Baseline {
            warm: true,
            rate_per_hour: 2.0,
            ..Default::default()
        };
        let activity = Activity {
            actions_last_hour: 40,
            ..Default::default()
        };
        let (result, _) = warden_sdk::testing::detect::<TemplateAnomalyDetector>(
            &action,
            &baseline,
            &activity,
            r#"{"max_ratio": 5.0}"#,
        );
        assert_eq!(result.unwrap().len(), 1);
    }
}
