//! Warden's reference classifier.
//!
//! Raises an action's risk (never lowers it) for: writes in production, risky action classes,
//! large changes, sensitive paths (migrations, CI workflows, IAM and security policy,
//! infrastructure code), changes reaching into other services, and breaking changes. Every rule
//! is configurable through the plugin's `config`.

use std::borrow::Cow;

use serde::Deserialize;
use warden_sdk::{Action, Classification, Classifier, PluginError, RiskLevel};

/// Text in the configuration: the defaults are borrowed, so building them allocates nothing.
type Text = Cow<'static, str>;

/// A path rule: a path matching `pattern` (`*` matches any run of characters; without `*`, a
/// substring match) raises the risk to at least `level`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    /// Pattern.
    pub pattern: Text,
    /// Category reported (`migrations`, `ci_workflow`, …).
    pub category: Text,
    /// Risk floor for a matching change.
    pub level: RiskLevel,
}

/// The classifier's configuration; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Environments treated as production (patterns).
    pub production_environments: Vec<Text>,
    /// Risk floor for any write in production.
    pub production_write_floor: RiskLevel,
    /// Action classes with a risk floor of their own, in production.
    pub production_class_floors: Vec<(Text, RiskLevel)>,
    /// Lines added + deleted from which a change counts as large (raises one level).
    pub large_change_lines: u32,
    /// Lines from which a change counts as huge (at least high).
    pub huge_change_lines: u32,
    /// Sensitive paths.
    pub sensitive_paths: Vec<PathRule>,
    /// Label that marks a change as reaching into other services.
    pub cross_service_label: Text,
    /// Risk floor for cross-service changes.
    pub cross_service_level: RiskLevel,
    /// Risk floor for breaking changes (critical in production).
    pub breaking_level: RiskLevel,
}

impl Default for Config {
    fn default() -> Config {
        let rule = |pattern: &'static str, category: &'static str, level| PathRule {
            pattern: pattern.into(),
            category: category.into(),
            level,
        };
        Config {
            production_environments: vec!["production".into(), "prod*".into()],
            production_write_floor: RiskLevel::Low,
            production_class_floors: vec![
                ("db_migration".into(), RiskLevel::High),
                ("security_policy_change".into(), RiskLevel::Critical),
                ("infra_delete".into(), RiskLevel::High),
            ],
            large_change_lines: 500,
            huge_change_lines: 2000,
            sensitive_paths: vec![
                rule("migrations/", "migrations", RiskLevel::High),
                rule("*.sql", "migrations", RiskLevel::Medium),
                rule(".github/workflows/", "ci_workflow", RiskLevel::High),
                rule(".gitlab-ci", "ci_workflow", RiskLevel::High),
                rule("iam", "iam", RiskLevel::High),
                rule("security", "security_policy", RiskLevel::High),
                rule("policy", "security_policy", RiskLevel::Medium),
                rule("*.tf", "infrastructure_code", RiskLevel::Medium),
                rule("terraform/", "infrastructure_code", RiskLevel::Medium),
                rule("helm/", "infrastructure_code", RiskLevel::Medium),
            ],
            cross_service_label: "cross_service".into(),
            cross_service_level: RiskLevel::High,
            breaking_level: RiskLevel::High,
        }
    }
}

/// `*` matches any run of characters; a pattern without `*` matches as a substring.
///
/// Byte by byte, without allocating: every call runs in a fresh instance, so this runs for
/// every rule and path of every action, and a general substring search's set-up costs more
/// than these short strings do (hence no `contains`, which searches with `memchr`).
#[allow(clippy::manual_contains)]
fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    if !p.iter().any(|&b| b == b'*') {
        return contains(t, p);
    }
    // Greedy glob with one backtrack point (the last `*`): linear for patterns like these.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, usize::MAX, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = pi;
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if star != usize::MAX {
            pi = star + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let Some(last) = haystack.len().checked_sub(needle.len()) else {
        return false;
    };
    (0..=last).any(|i| haystack[i] == first && &haystack[i + 1..i + needle.len()] == rest)
}

fn one_up(level: RiskLevel) -> RiskLevel {
    match level {
        RiskLevel::Low => RiskLevel::Medium,
        RiskLevel::Medium => RiskLevel::High,
        RiskLevel::High | RiskLevel::Critical => RiskLevel::Critical,
    }
}

/// `parts` joined, without the formatting machinery (which costs more than the rules).
fn text(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|p| s.push_str(p));
    s
}

fn name(level: RiskLevel) -> &'static str {
    match level {
        RiskLevel::Low => "low",
        RiskLevel::Medium => "medium",
        RiskLevel::High => "high",
        RiskLevel::Critical => "critical",
    }
}

/// The classifier.
pub struct ActionClassifier;

impl Classifier for ActionClassifier {
    type Config = Config;

    fn classify(action: &Action, config: &Config) -> Result<Classification, PluginError> {
        let mut c = Classification::new(action.table_risk);
        let production = config.production_environments.iter().any(|p| {
            if p.contains('*') {
                matches(p, &action.environment)
            } else {
                *p == action.environment
            }
        });
        let write = action.class != "read";
        if production && write {
            c.raise(
                config.production_write_floor,
                "production",
                text(&[&action.class, " in production"]),
            );
            if let Some((_, floor)) = config
                .production_class_floors
                .iter()
                .find(|(class, _)| *class == action.class)
            {
                c.raise(
                    *floor,
                    text(&["class:", &action.class]),
                    text(&[&action.class, " in production is at least ", name(*floor)]),
                );
            }
        }
        if let Some(change) = &action.change {
            let lines = change.lines_added.saturating_add(change.lines_deleted);
            if lines >= config.huge_change_lines {
                c.raise(
                    RiskLevel::High.max(one_up(c.level)),
                    "huge_change",
                    format!(
                        "{lines} lines changed (huge from {})",
                        config.huge_change_lines
                    ),
                );
            } else if lines >= config.large_change_lines {
                c.raise(
                    one_up(action.table_risk),
                    "large_change",
                    format!(
                        "{lines} lines changed (large from {})",
                        config.large_change_lines
                    ),
                );
            }
            for path in &change.paths {
                for rule in config
                    .sensitive_paths
                    .iter()
                    .filter(|r| matches(&r.pattern, path))
                {
                    c.raise(
                        rule.level,
                        text(&["sensitive_path:", &rule.category]),
                        text(&["touches ", path, " (", &rule.category, ")"]),
                    );
                }
            }
            if change.breaking {
                let level = if production {
                    RiskLevel::Critical
                } else {
                    config.breaking_level
                };
                c.raise(
                    level,
                    "breaking_change",
                    "a breaking change for other services",
                );
            }
        }
        let other_services = action
            .resources
            .iter()
            .filter(|r| r.contains('/') && !contains(r.as_bytes(), action.service.as_bytes()))
            .count();
        if action
            .label(&config.cross_service_label)
            .is_some_and(|v| v == "true")
            || other_services > 0
        {
            c.raise(
                config.cross_service_level,
                "cross_service",
                format!(
                    "reaches beyond {} ({other_services} foreign resources)",
                    action.service
                ),
            );
        }
        Ok(c)
    }
}

warden_sdk::export_classifier!(ActionClassifier);

#[cfg(test)]
mod tests {
    use super::*;
    use warden_sdk::ChangeSummary;
    use warden_sdk::testing::{action, classify};

    fn level(a: &Action, config: &str) -> RiskLevel {
        classify::<ActionClassifier>(a, config).0.unwrap().level
    }

    #[test]
    fn never_lowers_the_table_risk() {
        let mut a = action("docs_update", "dev", "docs");
        a.table_risk = RiskLevel::High;
        assert_eq!(level(&a, ""), RiskLevel::High);
    }

    #[test]
    fn production_classes_and_breaking_changes() {
        assert_eq!(
            level(&action("db_migration", "production", "payments"), ""),
            RiskLevel::High
        );
        assert_eq!(
            level(&action("security_policy_change", "prod-eu", "iam"), ""),
            RiskLevel::Critical
        );
        assert_eq!(
            level(&action("read", "production", "payments"), ""),
            RiskLevel::Low
        );
        let mut a = action("deploy", "production", "payments");
        a.change = Some(ChangeSummary {
            breaking: true,
            ..Default::default()
        });
        assert_eq!(level(&a, ""), RiskLevel::Critical);
        a.environment = "staging".into();
        assert_eq!(level(&a, ""), RiskLevel::High);
    }

    #[test]
    fn sensitive_paths_and_size() {
        let mut a = action("deploy", "staging", "payments");
        a.change = Some(ChangeSummary {
            files_changed: 1,
            lines_added: 10,
            lines_deleted: 0,
            paths: vec!["db/migrations/0042_add_index.sql".into()],
            breaking: false,
        });
        let (result, logs) = classify::<ActionClassifier>(&a, "");
        let c = result.unwrap();
        assert_eq!(c.level, RiskLevel::High);
        assert!(
            c.categories
                .contains(&"sensitive_path:migrations".to_string()),
            "{c:?}"
        );
        // It never logs: its reasons say it all, and a plugin that calls `log` imports it, which
        // costs every call two more core instances (wit-component's shim for the import).
        assert!(logs.is_empty(), "{logs:?}");
        a.change = Some(ChangeSummary {
            files_changed: 30,
            lines_added: 600,
            lines_deleted: 10,
            paths: vec!["src/lib.rs".into()],
            breaking: false,
        });
        assert_eq!(level(&a, ""), RiskLevel::Medium);
        a.change.as_mut().unwrap().lines_added = 5000;
        assert_eq!(level(&a, ""), RiskLevel::High);
    }

    #[test]
    fn cross_service_by_label_or_foreign_resources() {
        let mut a = action("config_change", "staging", "payments");
        a.resources = vec!["k8s/orders/configmap".into()];
        assert_eq!(level(&a, ""), RiskLevel::High);
        a.resources = vec!["k8s/payments/configmap".into()];
        assert_eq!(level(&a, ""), RiskLevel::Low);
        a.labels = vec![("cross_service".into(), "true".into())];
        assert_eq!(level(&a, ""), RiskLevel::High);
    }

    #[test]
    fn configurable_and_strict_about_config() {
        let a = action("deploy", "production", "payments");
        assert_eq!(
            level(&a, r#"{"production_write_floor": "medium"}"#),
            RiskLevel::Medium
        );
        let (result, _) =
            classify::<ActionClassifier>(&a, r#"{"production_write_flor": "medium"}"#);
        assert_eq!(result.unwrap_err().code, "bad_config");
    }

    #[test]
    fn glob() {
        assert!(matches("*.tf", "infra/main.tf"));
        assert!(matches("prod*", "prod-eu"));
        assert!(!matches("prod*", "preprod"));
        assert!(matches("iam", "policies/iam/role.json"));
        assert!(matches("iam", "iam"));
        assert!(!matches("iam", "ia"));
        assert!(matches("*.sql", "db/0042.sql"));
        assert!(!matches("*.sql", "db/0042.sql.bak"));
        assert!(matches("src/*/mod.rs", "src/a/b/mod.rs"));
        assert!(!matches("src/*/mod.rs", "lib/a/mod.rs"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXcYb"));
        assert!(matches("*", ""));
        assert!(!matches("x*", ""));
    }
}
