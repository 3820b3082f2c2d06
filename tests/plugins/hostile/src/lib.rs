//! A classifier that misbehaves as its config says: `{"mode": "loop" | "busy" | "grow" | "panic" |
//! "huge_output" | "error" | "remember" | "ok"}`. Used only by Warden's tests of the plugin sandbox.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use warden_sdk::{Action, Classification, Classifier, LogLevel, PluginError, RiskLevel};

/// What to do.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The misbehaviour.
    #[serde(default)]
    pub mode: String,
}

/// The hostile classifier.
pub struct Hostile;

impl Classifier for Hostile {
    type Config = Config;

    fn classify(action: &Action, config: &Config) -> Result<Classification, PluginError> {
        warden_sdk::log(LogLevel::Info, &format!("mode {}", config.mode));
        match config.mode.as_str() {
            "loop" => {
                let mut x: u64 = action.hour_of_week.into();
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            // Busy but finite: needs more fuel than a call's fast path allows, less than its limit.
            "busy" => {
                let mut x: u64 = action.hour_of_week.into();
                for _ in 0..300_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                Ok(Classification::new(RiskLevel::Low).because(format!("busy {x}")))
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "huge_output" => Ok(Classification {
                level: RiskLevel::Low,
                score: 0,
                categories: vec!["x".repeat(1024); 4096],
                reasons: Vec::new(),
            }),
            "error" => Err(PluginError::new(
                "refused",
                "hostile plugin refuses on purpose",
            )),
            // Tries to carry state from one call (one agent's action) to the next.
            "remember" => {
                static CALLS: AtomicU32 = AtomicU32::new(0);
                static PREVIOUS: Mutex<String> = Mutex::new(String::new());
                let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                let previous = std::mem::replace(
                    &mut *PREVIOUS.lock().unwrap_or_else(|e| e.into_inner()),
                    action.agent.clone(),
                );
                Ok(Classification::new(RiskLevel::Low)
                    .because(format!("call {n}"))
                    .because(format!("previous agent: {previous:?}")))
            }
            // Tries to lower the risk below the table's: the host must not let it.
            _ => Ok(Classification::new(RiskLevel::Low).because("everything is fine")),
        }
    }
}

warden_sdk::export_classifier!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_that_return_natively() {
        let a = warden_sdk::testing::action("deploy", "production", "x");
        assert_eq!(
            warden_sdk::testing::classify::<Hostile>(&a, r#"{"mode": "error"}"#)
                .0
                .unwrap_err()
                .code,
            "refused"
        );
        let (ok, logs) = warden_sdk::testing::classify::<Hostile>(&a, r#"{"mode": "ok"}"#);
        assert_eq!(ok.unwrap().level, RiskLevel::Low);
        assert_eq!(logs[0].1, "mode ok");
    }
}
