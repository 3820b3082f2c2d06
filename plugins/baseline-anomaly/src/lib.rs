//! Warden's reference anomaly detector: compares an agent's action and recent activity with how
//! humans of the same team do the same kind of action.
//!
//! Detectors, each giving a p-value (how surprising the observation is if the agent behaved like
//! the humans):
//! - `burst_rate`: actions in the last hour against how many a human does in an hour when active
//!   (Poisson upper tail);
//! - `change_size`: lines changed against the human median, as a robust z-score on a log scale
//!   (change sizes are skewed: a change twice the median is as ordinary as one half of it);
//! - `rare_hour`: the hour of the week against the histogram of human activity, with one
//!   pseudo-action spread over the week so that an hour no human ever worked is rare, not
//!   impossible; `unworked_hour` when no human of the team ever acted in that hour or the hours
//!   either side of it;
//! - `first_seen`: a class/environment/service combination neither humans nor the agent have done;
//! - `first_target`: a resource the team's humans never touched (where their activity names
//!   targets at all).
//!
//! The measured tests are reported below `report_p`; a novelty (`unworked_hour`, `first_seen`,
//! `first_target`) is reported whenever found, with the rule-of-succession p-value 1/(n+1) after n human actions
//! that never did it. The p-values are combined conservatively (Bonferroni) into one `combined`
//! finding whose severity (0–100) grows by `severity_per_decade` for every factor of ten of
//! surprise. Judged only once the baseline is warm.

use serde::Deserialize;
use warden_sdk::stats::{normal_upper_tail, poisson_upper_tail};
use warden_sdk::{Action, Activity, AnomalyDetector, Baseline, Finding, PluginError};

/// Configuration; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Report a detector's finding when its p-value is below this.
    pub report_p: f64,
    /// Floor for the human hourly rate (a rate of zero would make any action infinitely surprising).
    pub min_rate_per_hour: f64,
    /// Floor for the median absolute deviation of change size, in lines.
    pub mad_floor: f64,
    /// Pseudo-count added to every hour of the week before normalising.
    pub hour_pseudo_count: f64,
    /// Severity added per factor of ten of surprise (p = 0.1 → 1×, 0.01 → 2×, …).
    pub severity_per_decade: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // One ordinary action in a thousand may be reported: an agent doing a few dozen
            // actions a week like its humans goes weeks without a finding.
            report_p: 0.001,
            min_rate_per_hour: 0.1,
            mad_floor: 1.0,
            hour_pseudo_count: 1.0 / 168.0,
            severity_per_decade: 20.0,
        }
    }
}

fn severity(p: f64, config: &Config) -> u8 {
    if p >= 1.0 {
        return 0;
    }
    (-p.max(1e-300).log10() * config.severity_per_decade)
        .clamp(0.0, 100.0)
        .round() as u8
}

fn finding(detector: &str, p: f64, message: String, config: &Config) -> Finding {
    Finding {
        detector: detector.into(),
        severity: severity(p, config),
        p_value: Some(p),
        message,
    }
}

/// One detector's name, p-value, and its message, made on demand.
type Test<'a> = (&'static str, f64, Box<dyn Fn() -> String + 'a>);

/// Novelties are reported whenever found; measured tests only below `report_p`.
fn novelty(detector: &str) -> bool {
    matches!(detector, "first_seen" | "first_target" | "unworked_hour")
}

/// The detector.
pub struct BaselineAnomaly;

impl AnomalyDetector for BaselineAnomaly {
    type Config = Config;

    fn detect(
        action: &Action,
        baseline: &Baseline,
        activity: &Activity,
        config: &Config,
    ) -> Result<Vec<Finding>, PluginError> {
        if !(config.report_p > 0.0 && config.report_p < 1.0) {
            return Err(PluginError::new(
                "bad_config",
                "report_p must be between 0 and 1",
            ));
        }
        // Nothing to compare with yet: a cold baseline never produces findings.
        if !baseline.warm || baseline.sample_size == 0 {
            return Ok(Vec::new());
        }
        // Each detector's p-value, with its message made only if the finding is reported
        // (formatting floats costs more than the statistics).
        let mut tests: Vec<Test> = Vec::new();

        let lambda = baseline.rate_per_hour.max(config.min_rate_per_hour);
        let k = activity.actions_last_hour;
        tests.push((
            "burst_rate",
            poisson_upper_tail(k, lambda),
            Box::new(move || format!("{k} actions in the last hour; humans average {lambda:.2}")),
        ));

        if let Some(change) = &action.change {
            let size = f64::from(change.lines_added) + f64::from(change.lines_deleted);
            let median = baseline.change_size_median.max(1.0);
            let mad = baseline.change_size_mad.max(config.mad_floor);
            // On a log scale a change m·e^{±s} is s away; the raw MAD of a log-normal size is
            // about m·sinh(0.6745 σ), so σ ≈ asinh(MAD/m) / 0.6745.
            let sigma = ((mad / median).asinh() / 0.6745).max(1e-3);
            let z = (size.max(1.0) / median).ln() / sigma;
            tests.push((
                "change_size",
                normal_upper_tail(z),
                Box::new(move || {
                    format!("{size} lines changed; humans' median {median} (robust z {z:.1})")
                }),
            ));
        }

        if baseline.hour_of_week_counts.len() == 168 {
            let counts = &baseline.hour_of_week_counts;
            let hour = usize::from(action.hour_of_week) % 168;
            let here = counts[hour];
            // The mass of hours at least as rare as this one (a count no higher than this
            // hour's), smoothed by a pseudo-count: small when humans almost never act now.
            let (mut total, mut rarer, mut rarer_hours) = (0u64, 0u64, 0u32);
            for &c in counts {
                total += u64::from(c);
                if c <= here {
                    rarer += u64::from(c);
                    rarer_hours += 1;
                }
            }
            let total = total as f64 + 168.0 * config.hour_pseudo_count;
            let share = (f64::from(here) + config.hour_pseudo_count) / total;
            let p = (rarer as f64 + f64::from(rarer_hours) * config.hour_pseudo_count) / total;
            // An hour in which no human of the team ever acted, nor in the hours either side of
            // it, is a novelty of its own (a quiet hour amid busy ones is only rare: a class
            // with few actions leaves gaps in the working day).
            let around = |d: usize| counts[(hour + d) % 168];
            let unworked = here == 0 && around(1) == 0 && around(167) == 0;
            let detector = if unworked {
                "unworked_hour"
            } else {
                "rare_hour"
            };
            tests.push((
                detector,
                p.min(1.0),
                Box::new(move || {
                    format!(
                        "hour {hour} of the week; humans act then {:.2}% of the time",
                        share * 100.0
                    )
                }),
            ));
        }

        // `class/environment/service`, compared in place rather than formatted for every call.
        let parts = [
            action.class.as_str(),
            action.environment.as_str(),
            action.service.as_str(),
        ];
        let [class, environment, service] = parts.map(str::as_bytes);
        let is_this = |seen: &String| {
            let s = seen.as_bytes();
            s.len() == class.len() + environment.len() + service.len() + 2
                && s.starts_with(class)
                && s[class.len()] == b'/'
                && s[class.len() + 1..].starts_with(environment)
                && s[class.len() + 1 + environment.len()] == b'/'
                && s.ends_with(service)
        };
        if !baseline.seen_combinations.iter().any(is_this)
            && !activity.seen_combinations.iter().any(is_this)
        {
            let p = 1.0 / (f64::from(baseline.sample_size) + 1.0);
            tests.push((
                "first_seen",
                p,
                Box::new(move || {
                    format!(
                        "{} was never done by this team's humans or this agent",
                        parts.join("/")
                    )
                }),
            ));
        }

        // Resources the humans never touched, where their activity names targets at all.
        if baseline.targets_tracked {
            let new: Vec<&str> = action
                .resources
                .iter()
                .filter(|r| !baseline.targets_seen.contains(r))
                .map(String::as_str)
                .collect();
            if !new.is_empty() {
                let p = 1.0 / (f64::from(baseline.sample_size) + 1.0);
                let list = new.join(", ");
                tests.push((
                    "first_target",
                    p,
                    Box::new(move || format!("{list}: never touched by this team's humans")),
                ));
            }
        }

        let m = tests.len() as f64;
        let p_min = tests.iter().map(|t| t.1).fold(1.0, f64::min);
        let combined = (p_min * m).min(1.0);
        let mut findings: Vec<Finding> = tests
            .into_iter()
            .filter(|t| t.1 < config.report_p || novelty(t.0))
            .map(|(detector, p, message)| finding(detector, p, message(), config))
            .collect();
        if combined < config.report_p {
            findings.push(finding(
                "combined",
                combined,
                format!("Bonferroni over {m} detectors"),
                config,
            ));
        }
        Ok(findings)
    }
}

warden_sdk::export_anomaly_detector!(BaselineAnomaly);

#[cfg(test)]
mod tests {
    use super::*;
    use warden_sdk::ChangeSummary;
    use warden_sdk::testing::{action, detect};

    fn baseline() -> Baseline {
        // Humans deploy payments to staging about twice an hour, on weekday business hours.
        let mut counts = vec![0u32; 168];
        for day in 0..5 {
            for hour in 9..18 {
                counts[day * 24 + hour] = 40;
            }
        }
        Baseline {
            team: "payments".into(),
            service: "payments".into(),
            class: "deploy".into(),
            environment: "staging".into(),
            sample_size: 1800,
            warm: true,
            rate_per_hour: 2.0,
            change_size_median: 80.0,
            change_size_mad: 40.0,
            hour_of_week_counts: counts,
            seen_combinations: vec!["deploy/staging/payments".into()],
            ..Baseline::default()
        }
    }

    fn normal_action() -> Action {
        let mut a = action("deploy", "staging", "payments");
        a.hour_of_week = 24 + 10; // Tuesday 10:00
        a.change = Some(ChangeSummary {
            files_changed: 3,
            lines_added: 60,
            lines_deleted: 20,
            paths: vec![],
            breaking: false,
        });
        a
    }

    fn run(a: &Action, activity: &Activity) -> Vec<Finding> {
        detect::<BaselineAnomaly>(a, &baseline(), activity, "")
            .0
            .unwrap()
    }

    #[test]
    fn ordinary_behaviour_raises_nothing() {
        let activity = Activity {
            actions_last_hour: 2,
            seen_combinations: vec![],
        };
        assert_eq!(run(&normal_action(), &activity), vec![]);
    }

    #[test]
    fn a_burst_is_severe() {
        let f = run(
            &normal_action(),
            &Activity {
                actions_last_hour: 30,
                seen_combinations: vec![],
            },
        );
        let burst = f
            .iter()
            .find(|f| f.detector == "burst_rate")
            .expect("burst finding");
        assert!(
            burst.severity >= 90 && burst.p_value.unwrap() < 1e-10,
            "{burst:?}"
        );
        assert!(f.iter().any(|f| f.detector == "combined"));
    }

    #[test]
    fn huge_changes_rare_hours_and_new_targets() {
        let calm = Activity {
            actions_last_hour: 1,
            seen_combinations: vec![],
        };
        let mut a = normal_action();
        a.change.as_mut().unwrap().lines_added = 4000;
        assert!(
            run(&a, &calm)
                .iter()
                .any(|f| f.detector == "change_size" && f.severity > 50)
        );
        let mut a = normal_action();
        a.hour_of_week = 6 * 24 + 3; // Sunday 03:00
        let rare = run(&a, &calm)
            .into_iter()
            .find(|f| f.detector == "unworked_hour")
            .expect("an hour no human worked");
        // 123 empty hours of 168, each with a pseudo-count of 1/168, over 1800 + 1.
        assert!(
            (rare.p_value.unwrap() - (123.0 / 168.0) / 1801.0).abs() < 1e-12,
            "{rare:?}"
        );
        let a = action("db_migration", "production", "ledger");
        let f = run(&a, &calm);
        assert!(f.iter().any(|f| f.detector == "first_seen"), "{f:?}");
    }

    #[test]
    fn a_cold_baseline_judges_nothing() {
        let mut cold = baseline();
        cold.warm = false;
        let (f, _) = detect::<BaselineAnomaly>(
            &normal_action(),
            &cold,
            &Activity {
                actions_last_hour: 500,
                seen_combinations: vec![],
            },
            "",
        );
        assert_eq!(f.unwrap(), vec![]);
    }

    #[test]
    fn bad_config_is_an_error() {
        let (r, _) = detect::<BaselineAnomaly>(
            &normal_action(),
            &baseline(),
            &Activity::default(),
            r#"{"report_p": 2}"#,
        );
        assert_eq!(r.unwrap_err().code, "bad_config");
    }
}
