//! A plugin's manifest: who it is, what it sees, its limits, its failure policy, its config.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The contract versions this host serves (same major, and same minor while below 1.0): the
/// version in the WIT package line, the one place it is written.
pub const CONTRACT_VERSION: &str = package_version(include_str!("../../wit/warden-plugin.wit"));

/// The version of the `package warden:plugin@X;` line of a WIT text (at compile time).
const fn package_version(wit: &'static str) -> &'static str {
    let (text, key) = (wit.as_bytes(), b"package warden:plugin@".as_slice());
    let mut i = 0;
    while i + key.len() <= text.len() {
        let mut j = 0;
        while j < key.len() && text[i + j] == key[j] {
            j += 1;
        }
        if j == key.len() {
            let (_, rest) = text.split_at(i + key.len());
            let mut end = 0;
            while end < rest.len() && rest[end] != b';' {
                end += 1;
            }
            let (version, _) = rest.split_at(end);
            return match std::str::from_utf8(version) {
                Ok(v) => v,
                Err(_) => panic!("the WIT package version is not UTF-8"),
            };
        }
        i += 1;
    }
    panic!("the WIT text has no `package warden:plugin@` line")
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// action → risk.
    Classifier,
    /// action + baseline + activity → findings.
    AnomalyDetector,
    /// guarded action + metric windows → judgement.
    RollbackTrigger,
}

impl PluginKind {
    /// The WIT world's name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Classifier => "classifier",
            PluginKind::AnomalyDetector => "anomaly-detector",
            PluginKind::RollbackTrigger => "rollback-trigger",
        }
    }

    /// The function the world exports.
    pub fn export(self) -> &'static str {
        match self {
            PluginKind::Classifier => "classify",
            PluginKind::AnomalyDetector => "detect",
            PluginKind::RollbackTrigger => "judge",
        }
    }
}

pub use warden_core::plugin::FailurePolicy;

/// Resource limits for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (roughly, Wasm instructions) per call.
    pub fuel: u64,
    /// Linear memory per instance, bytes.
    pub memory_bytes: u64,
    /// Size of the component, bytes.
    pub module_bytes: u64,
    /// Serialized size of the input, bytes.
    pub input_bytes: u64,
    /// Size of the output (strings and lists), bytes.
    pub output_bytes: u64,
    /// Log lines kept per call.
    pub log_lines: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: 20_000_000,
            memory_bytes: 16 << 20,
            module_bytes: 8 << 20,
            input_bytes: 256 << 10,
            output_bytes: 64 << 10,
            log_lines: 32,
        }
    }
}

/// The most any manifest may ask for.
pub const MAX_LIMITS: Limits = Limits {
    fuel: 1_000_000_000,
    memory_bytes: 256 << 20,
    module_bytes: 64 << 20,
    input_bytes: 4 << 20,
    output_bytes: 1 << 20,
    log_lines: 1000,
};

/// `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique name (slug).
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// Which world it implements.
    pub kind: PluginKind,
    /// The contract version it was built against.
    #[serde(default = "contract")]
    pub contract: String,
    /// Action classes it sees; empty for all.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Limits per call.
    #[serde(default)]
    pub limits: Limits,
    /// Defaults to `fail_closed` for classifiers and anomaly detectors, `fail_open` for
    /// rollback triggers (a broken trigger pages; it never rolls back blind).
    #[serde(default)]
    pub failure_policy: Option<FailurePolicy>,
    /// Passed to the plugin as JSON on every call.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

fn contract() -> String {
    CONTRACT_VERSION.to_string()
}

impl Manifest {
    /// The failure policy in force.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy.unwrap_or(match self.kind {
            PluginKind::Classifier | PluginKind::AnomalyDetector => FailurePolicy::FailClosed,
            PluginKind::RollbackTrigger => FailurePolicy::FailOpen,
        })
    }

    /// Whether the plugin sees this action class.
    pub fn sees(&self, class: &str) -> bool {
        self.classes.is_empty() || self.classes.iter().any(|c| c == class)
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks names, versions and limits; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let slug = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        };
        if !slug(&self.name) {
            return Err((
                "name".into(),
                format!(
                    "`{}` is not a valid plugin name (1–64 of a-z, 0-9, - _ .)",
                    self.name
                ),
            ));
        }
        if parse_version(&self.version).is_none() {
            return Err((
                "version".into(),
                format!("`{}` is not a semantic version like 1.2.0", self.version),
            ));
        }
        check_contract(&self.contract).map_err(|m| ("contract".to_string(), m))?;
        let l = &self.limits;
        for (field, value, max) in [
            ("fuel", l.fuel, MAX_LIMITS.fuel),
            ("memory_bytes", l.memory_bytes, MAX_LIMITS.memory_bytes),
            ("module_bytes", l.module_bytes, MAX_LIMITS.module_bytes),
            ("input_bytes", l.input_bytes, MAX_LIMITS.input_bytes),
            ("output_bytes", l.output_bytes, MAX_LIMITS.output_bytes),
            (
                "log_lines",
                u64::from(l.log_lines),
                u64::from(MAX_LIMITS.log_lines),
            ),
        ] {
            if value == 0 || value > max {
                return Err((
                    format!("limits.{field}"),
                    format!("must be from 1 to {max}"),
                ));
            }
        }
        Ok(())
    }
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Whether a plugin built against `contract` can run on this host: the same major version and,
/// below 1.0, the same minor; any patch level. Older compatible versions keep being served.
pub fn check_contract(contract: &str) -> Result<(), String> {
    let (have_major, have_minor, _) = parse_version(CONTRACT_VERSION).expect("valid");
    let Some((major, minor, _)) = parse_version(contract) else {
        return Err(format!(
            "`{contract}` is not a contract version like {CONTRACT_VERSION}"
        ));
    };
    let compatible = major == have_major
        && (major > 0 || minor == have_minor)
        && (major, minor) <= (have_major, have_minor);
    if compatible {
        Ok(())
    } else {
        Err(format!(
            "built against warden:plugin@{contract}, but this host serves warden:plugin@{CONTRACT_VERSION}; rebuild the plugin with a matching warden-sdk"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        toml::from_str("name = \"x\"\nversion = \"1.0.0\"\nkind = \"classifier\"").unwrap()
    }

    #[test]
    fn defaults_and_policies() {
        let m = manifest();
        assert_eq!(m.contract, CONTRACT_VERSION);
        assert_eq!(CONTRACT_VERSION, "0.2.0", "read from wit/warden-plugin.wit");
        assert_eq!(m.failure_policy(), FailurePolicy::FailClosed);
        assert!(m.sees("deploy"));
        assert!(m.validate().is_ok());
        let r: Manifest = toml::from_str("name = \"r\"\nversion = \"0.1.0\"\nkind = \"rollback_trigger\"\nclasses = [\"deploy\"]").unwrap();
        assert_eq!(r.failure_policy(), FailurePolicy::FailOpen);
        assert!(!r.sees("read"));
    }

    #[test]
    fn contract_compatibility() {
        assert!(check_contract("0.2.0").is_ok());
        assert!(check_contract("0.2.7").is_ok());
        assert!(
            check_contract("0.1.0")
                .unwrap_err()
                .contains("warden:plugin@0.1.0")
        );
        assert!(check_contract("1.0.0").is_err());
        assert!(check_contract("one").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut m = manifest();
        m.limits.fuel = 0;
        assert_eq!(m.validate().unwrap_err().0, "limits.fuel");
        let mut m = manifest();
        m.version = "v1".into();
        assert_eq!(m.validate().unwrap_err().0, "version");
        assert!(
            toml::from_str::<Manifest>("name = \"x\"\nversion = \"1.0.0\"\nkind = \"oracle\"")
                .is_err()
        );
    }
}
