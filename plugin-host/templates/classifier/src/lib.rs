//! template-classifier: a Warden classifier plugin.
//!
//! Build:  warden plugin build .
//! Test:   cargo test   (natively)   and   warden plugin test <component> --manifest plugin.toml --fixture fixtures/example.json

use serde::Deserialize;
use warden_sdk::*;

/// The plugin's configuration: the `[config]` table of `plugin.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Services whose production changes are at least high risk.
    pub watched_services: Vec<String>,
}

/// The plugin.
pub struct TemplateClassifier;

impl Classifier for TemplateClassifier {
    type Config = Config;

    fn classify(action: &Action, config: &Config) -> Result<Classification, PluginError> {
        let mut c = Classification::new(action.table_risk);
        if config.watched_services.iter().any(|s| s == &action.service)
            && action.environment == "production"
        {
            c.raise(
                RiskLevel::High,
                "watched_service",
                format!("{} is watched", action.service),
            );
        }
        warden_sdk::log(
            LogLevel::Debug,
            &format!("{} -> {:?}", action.service, c.level),
        );
        Ok(c)
    }
}

warden_sdk::export_classifier!(TemplateClassifier);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_risk_for_watched_services() {
        let action = warden_sdk::testing::action("deploy", "production", "payments");
        let (result, _logs) = warden_sdk::testing::classify::<TemplateClassifier>(
            &action,
            r#"{"watched_services": ["payments"]}"#,
        );
        assert_eq!(result.unwrap().level, RiskLevel::High);
    }
}
