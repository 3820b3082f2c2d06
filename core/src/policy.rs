//! Tiers, grants and the built-in action-class risk table: policy as data.
//!
//! The effective policy is the built-in default (DESIGN.md's tier table) with any section the
//! operator sets in `warden.toml` replacing the default section of the same name. Its version is a
//! hash of its canonical JSON, so two replicas with the same policy report the same version.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Risk levels, ordered from least to most risky.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
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
    /// The score (0–100) a level maps to when nothing finer is known.
    pub fn base_score(self) -> u8 {
        match self {
            RiskLevel::Low => 10,
            RiskLevel::Medium => 40,
            RiskLevel::High => 70,
            RiskLevel::Critical => 90,
        }
    }

    /// The wire name of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<RiskLevel> {
        [
            RiskLevel::Low,
            RiskLevel::Medium,
            RiskLevel::High,
            RiskLevel::Critical,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a grant does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The agent may act alone.
    Allow,
    /// The agent may act once a human approves.
    Approve,
    /// The agent may not act. An explicit deny wins over every allow.
    Deny,
}

/// How a denied action of a class is handled (DESIGN.md, pipeline step 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationMode {
    /// Deny the action.
    Block,
    /// Allow it, and record a violation for human review.
    Flag,
    /// Allow it, record a violation, and arm an automatic-rollback watch.
    Guard,
}

impl ViolationMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationMode::Block => "block",
            ViolationMode::Flag => "flag",
            ViolationMode::Guard => "guard",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<ViolationMode> {
        [
            ViolationMode::Block,
            ViolationMode::Flag,
            ViolationMode::Guard,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// Enforce decisions, or only record them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// Verdicts are enforced.
    Enforce,
    /// Verdicts are computed and recorded, but every answer allows.
    Shadow,
}

/// A grant: which actions it covers (with `*` wildcards) up to which risk, and its effect.
///
/// Humans' grants use the same shape without `effect` (a human's grant always allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Action class, or `*`.
    pub class: String,
    /// Environment name or pattern (`prod*`), or `*`; case-insensitive.
    #[serde(deserialize_with = "crate::policy::environment_name")]
    pub environment: String,
    /// Service name or pattern (`pay*`), or `*`.
    #[serde(default = "star")]
    pub service: String,
    /// The highest risk level this grant covers.
    pub max_risk: RiskLevel,
    /// What the grant does; humans' grants always allow.
    #[serde(default = "allow", skip_serializing_if = "is_allow")]
    pub effect: Effect,
}

fn star() -> String {
    "*".to_string()
}
fn allow() -> Effect {
    Effect::Allow
}
fn is_allow(e: &Effect) -> bool {
    *e == Effect::Allow
}

impl Grant {
    fn new(class: &str, environment: &str, max_risk: RiskLevel, effect: Effect) -> Grant {
        Grant {
            class: class.into(),
            environment: environment.into(),
            service: star(),
            max_risk,
            effect,
        }
    }

    /// Whether the grant covers this action at this risk.
    pub fn covers(&self, class: &str, environment: &str, service: &str, risk: RiskLevel) -> bool {
        risk <= self.max_risk
            && glob_match(&self.class, class)
            && glob_match(&self.environment, environment)
            && glob_match(&self.service, service)
    }

    /// Checks the grant's patterns; `what` names it in the error (e.g. `grants[2]`).
    pub fn validate(&self, what: &str) -> Result<(), (String, String)> {
        for (name, value) in [
            ("class", &self.class),
            ("environment", &self.environment),
            ("service", &self.service),
        ] {
            if value.is_empty()
                || value.len() > 128
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.*/:".contains(c))
            {
                return Err((
                    format!("{what}.{name}"),
                    format!(
                        "`{value}` is not a valid pattern (1–128 of a-z, 0-9, - _ . / : and *)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Environment names (and patterns) are case-insensitive: `Production` is production. They are
/// kept in lower case from the moment they are read, so every comparison is a plain one.
pub fn environment_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let mut name = String::deserialize(d)?;
    name.make_ascii_lowercase();
    Ok(name)
}

/// Matches `value` against a pattern where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if !pattern.contains('*') {
        return pattern == value;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// One permission tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// 0–4.
    pub tier: u8,
    /// Human name (observe, sandbox, standard, trusted, autonomous).
    pub name: String,
    /// Whether this tier also has every grant of the tier below it.
    #[serde(default = "yes")]
    pub inherit: bool,
    /// The tier's own grants.
    pub grants: Vec<Grant>,
}

fn yes() -> bool {
    true
}

fn same_violation_secs() -> u64 {
    60
}

/// The effective policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `enforce` or `shadow`.
    pub mode: PolicyMode,
    /// Risk of each action class per environment (its keys are the action classes Warden knows;
    /// a request naming another class is a 400); the `*` column applies to environments not
    /// named (it should be as strict as production, since unknown environments may be one).
    #[schema(value_type = BTreeMap<String, BTreeMap<String, RiskLevel>>)]
    pub risk: BTreeMap<String, BTreeMap<String, RiskLevel>>,
    /// Risk floor for an action marked as a breaking change.
    pub breaking_change_risk: RiskLevel,
    /// Violation handling per action class; classes not named use `default_violation_mode`.
    pub violation_modes: BTreeMap<String, ViolationMode>,
    /// Violation handling for classes not in `violation_modes`.
    pub default_violation_mode: ViolationMode,
    /// How long a blocked violation stays on record as the same one, seconds: an agent that
    /// tries the same thing again (class, environment, service and reason) within it is denied
    /// every time, each a decision with its audit record, but the violation is recorded once.
    /// 0 records every one. A violation let through (`flag`, `guard`) is an action that
    /// happened and is always recorded.
    #[serde(default = "same_violation_secs")]
    pub same_violation_secs: u64,
    /// The five tiers, 0 to 4.
    pub tiers: Vec<Tier>,
    /// Anomaly severity (0–100) from which an action is severely anomalous.
    pub severe_anomaly: u8,
    /// The highest tier a severely anomalous action is judged at. With the default, 2, a severely
    /// anomalous production action waits for a human rather than being denied outright.
    pub severe_anomaly_tier_cap: u8,
    /// How long a human has to decide an approval request, seconds.
    pub approval_ttl_secs: u64,
    /// Per action class, overriding `approval_ttl_secs`.
    pub approval_ttl_by_class: BTreeMap<String, u64>,
    /// Distinct approvers an approval needs, per action class (1 for classes not named).
    pub approvers_required: BTreeMap<String, u8>,
    /// How long after an allowed write its outcome must be reported, seconds.
    pub outcome_deadline_secs: u64,
    /// Per action class, overriding `outcome_deadline_secs`.
    pub outcome_deadline_by_class: BTreeMap<String, u64>,
    /// How evidence weighs in the trust score.
    pub trust: crate::trust::TrustPolicy,
    /// How tiers follow trust (the tier controller).
    pub tiering: crate::tiering::TierPolicy,
    /// Quotas and rate limits.
    pub quotas: crate::quotas::QuotaPolicy,
    /// The watch over guarded actions.
    #[serde(default)]
    pub guard: GuardPolicy,
}

/// What a watch that ends without usable signals means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSilence {
    /// Roll the action back: nothing showed it healthy.
    Rollback,
    /// Ask a human (a review in the approvals inbox).
    Ask,
}

/// The watch over a guarded action (`[policy.guard]`): a class in `guard` mode lets a
/// violation through under a watch; rollback-trigger plugins judge the signals sent for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GuardPolicy {
    /// How long a guarded action is watched, seconds.
    pub watch_secs: u64,
    /// Per action class, overriding `watch_secs`.
    pub watch_by_class: BTreeMap<String, u64>,
    /// A watch that ends with no signals (or only failed judgements of them): roll back, or ask.
    pub on_silence: OnSilence,
    /// Trigger errors in a row on one watch before `rollback_trigger.failing` goes out.
    pub error_limit: u32,
}

impl Default for GuardPolicy {
    fn default() -> GuardPolicy {
        GuardPolicy {
            watch_secs: 1800,
            watch_by_class: BTreeMap::new(),
            on_silence: OnSilence::Rollback,
            error_limit: 3,
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        use RiskLevel::*;
        let risk_row = |dev, staging, production| -> BTreeMap<String, RiskLevel> {
            [
                ("dev", dev),
                ("staging", staging),
                ("production", production),
                ("*", production),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        };
        let risk: BTreeMap<String, BTreeMap<String, RiskLevel>> = [
            ("read", risk_row(Low, Low, Low)),
            ("run_tests", risk_row(Low, Low, Low)),
            ("docs_update", risk_row(Low, Low, Low)),
            ("api_call", risk_row(Low, Low, Medium)),
            ("deploy", risk_row(Low, Low, Low)),
            ("config_change", risk_row(Low, Low, Low)),
            ("infra_create", risk_row(Low, Low, Medium)),
            ("infra_delete", risk_row(Low, Medium, High)),
            ("db_migration", risk_row(Medium, High, High)),
            ("security_policy_change", risk_row(Medium, High, Critical)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let g = Grant::new;
        let tiers = vec![
            Tier {
                tier: 0,
                name: "observe".into(),
                inherit: false,
                grants: vec![g("read", "*", Critical, Effect::Allow)],
            },
            Tier {
                tier: 1,
                name: "sandbox".into(),
                inherit: true,
                grants: vec![
                    g("run_tests", "*", Low, Effect::Allow),
                    g("docs_update", "*", Low, Effect::Allow),
                    g("*", "dev", Medium, Effect::Allow),
                    g("*", "staging", Critical, Effect::Approve),
                ],
            },
            Tier {
                tier: 2,
                name: "standard".into(),
                inherit: true,
                grants: vec![
                    g("*", "dev", High, Effect::Allow),
                    g("*", "staging", Medium, Effect::Allow),
                    g("*", "*", Critical, Effect::Approve),
                ],
            },
            Tier {
                tier: 3,
                name: "trusted".into(),
                inherit: true,
                grants: vec![g("*", "production", Low, Effect::Allow)],
            },
            Tier {
                tier: 4,
                name: "autonomous".into(),
                inherit: true,
                grants: vec![g("*", "production", Medium, Effect::Allow)],
            },
        ];
        Policy {
            mode: PolicyMode::Enforce,
            risk,
            breaking_change_risk: High,
            violation_modes: BTreeMap::new(),
            default_violation_mode: ViolationMode::Block,
            same_violation_secs: same_violation_secs(),
            tiers,
            severe_anomaly: 70,
            severe_anomaly_tier_cap: 2,
            approval_ttl_secs: 3600,
            approval_ttl_by_class: BTreeMap::new(),
            approvers_required: BTreeMap::new(),
            outcome_deadline_secs: 3600,
            outcome_deadline_by_class: BTreeMap::new(),
            trust: crate::trust::TrustPolicy::default(),
            tiering: crate::tiering::TierPolicy::default(),
            quotas: crate::quotas::QuotaPolicy::default(),
            guard: GuardPolicy::default(),
        }
    }
}

/// The highest tier number.
pub const MAX_TIER: u8 = 4;

/// Why the permission stage decided as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// A grant allows the action.
    Allowed,
    /// A grant allows it with a human's approval.
    NeedsApproval,
    /// An explicit deny grant matched.
    ExplicitDeny,
    /// No grant of the tier covers the action.
    NoGrant,
}

/// A policy checked once, with each tier's grants flattened, ready for the hot path.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// The policy as configured.
    pub policy: Policy,
    /// `p-` and the first 16 hex digits of the SHA-256 of the policy's canonical JSON.
    pub version: String,
    tier_grants: Vec<Vec<Grant>>,
    /// The time zone of daily quota windows.
    pub quota_zone: jiff::tz::TimeZone,
}

/// Why a policy does not compile, naming the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Fails with a [`PolicyError`] unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(PolicyError(format!($($fmt)+)));
        }
    };
}

impl CompiledPolicy {
    /// Validates and compiles a policy.
    pub fn new(mut policy: Policy) -> Result<CompiledPolicy, PolicyError> {
        // Built in code rather than read, the table may name an environment in capitals.
        for (class, row) in &mut policy.risk {
            let columns = row.len();
            *row = std::mem::take(row)
                .into_iter()
                .map(|(env, risk)| (env.to_ascii_lowercase(), risk))
                .collect();
            ensure!(
                row.len() == columns,
                "policy.risk.{class} names an environment twice (names are case-insensitive)"
            );
        }
        let mut tiers = policy.tiers.clone();
        tiers.sort_by_key(|t| t.tier);
        let numbers: Vec<u8> = tiers.iter().map(|t| t.tier).collect();
        ensure!(
            numbers == (0..=MAX_TIER).collect::<Vec<_>>(),
            "policy.tiers must define tiers 0 to 4 exactly once each, found {numbers:?}"
        );
        ensure!(
            policy.severe_anomaly <= 100,
            "policy.severe_anomaly must be 0 to 100, not {}",
            policy.severe_anomaly
        );
        ensure!(
            policy.severe_anomaly_tier_cap <= MAX_TIER,
            "policy.severe_anomaly_tier_cap must be a tier, 0 to {MAX_TIER}, not {}",
            policy.severe_anomaly_tier_cap
        );
        for (what, ttl) in
            std::iter::once(("approval_ttl_secs".to_string(), policy.approval_ttl_secs))
                .chain(
                    policy
                        .approval_ttl_by_class
                        .iter()
                        .map(|(c, t)| (format!("approval_ttl_by_class.{c}"), *t)),
                )
                .chain(std::iter::once((
                    "outcome_deadline_secs".to_string(),
                    policy.outcome_deadline_secs,
                )))
                .chain(
                    policy
                        .outcome_deadline_by_class
                        .iter()
                        .map(|(c, t)| (format!("outcome_deadline_by_class.{c}"), *t)),
                )
        {
            ensure!(
                (1..=7 * 24 * 3600).contains(&ttl),
                "policy.{what} must be from 1 second to 7 days, not {ttl}"
            );
        }
        policy.trust.validate().map_err(PolicyError)?;
        policy.tiering.validate().map_err(PolicyError)?;
        policy.quotas.validate().map_err(PolicyError)?;
        let quota_zone = policy.quotas.zone().map_err(PolicyError)?;
        for (class, n) in &policy.approvers_required {
            ensure!(
                policy.risk.contains_key(class),
                "policy.approvers_required names action class `{class}` that has no row in policy.risk"
            );
            ensure!(
                (1..=5).contains(n),
                "policy.approvers_required.{class} must be from 1 to 5, not {n}"
            );
        }
        for (class, secs) in std::iter::once(("*", &policy.guard.watch_secs)).chain(
            policy
                .guard
                .watch_by_class
                .iter()
                .map(|(c, s)| (c.as_str(), s)),
        ) {
            ensure!(
                (60..=7 * 24 * 3600).contains(secs),
                "policy.guard watch for `{class}` must be from 60 seconds to 7 days, not {secs}"
            );
        }
        ensure!(
            policy.same_violation_secs <= 3600,
            "policy.same_violation_secs must be at most 3600 (an hour), not {}",
            policy.same_violation_secs
        );
        ensure!(
            policy.guard.error_limit >= 1,
            "policy.guard.error_limit must be at least 1"
        );
        for class in policy
            .approval_ttl_by_class
            .keys()
            .chain(policy.outcome_deadline_by_class.keys())
            .chain(policy.guard.watch_by_class.keys())
        {
            ensure!(
                policy.risk.contains_key(class),
                "policy names action class `{class}` (approval_ttl_by_class, outcome_deadline_by_class or guard.watch_by_class) that has no row in policy.risk"
            );
        }
        for class in policy.violation_modes.keys() {
            ensure!(
                policy.risk.contains_key(class),
                "policy.violation_modes names action class `{class}` that has no row in policy.risk"
            );
        }
        for (class, row) in &policy.risk {
            ensure!(
                row.contains_key("*"),
                "policy.risk.{class} needs a `*` column for environments it does not name"
            );
        }
        let mut tier_grants: Vec<Vec<Grant>> = Vec::new();
        for tier in &tiers {
            for (i, grant) in tier.grants.iter().enumerate() {
                grant
                    .validate(&format!("policy.tiers[{}].grants[{i}]", tier.tier))
                    .map_err(|(f, m)| PolicyError(format!("{f}: {m}")))?;
            }
            let mut grants = if tier.inherit {
                tier_grants.last().cloned().unwrap_or_default()
            } else {
                Vec::new()
            };
            grants.extend(tier.grants.iter().cloned());
            tier_grants.push(grants);
        }
        // Plain data with string keys: serializing it cannot fail.
        let canonical = serde_json::to_vec(&policy).map_err(|e| PolicyError(e.to_string()))?;
        let version = format!("p-{}", &hex::encode(Sha256::digest(&canonical))[..16]);
        Ok(CompiledPolicy {
            policy,
            version,
            tier_grants,
            quota_zone,
        })
    }

    /// Whether the class is one the policy knows.
    pub fn knows_class(&self, class: &str) -> bool {
        self.policy.risk.contains_key(class)
    }

    /// Risk from the built-in table (class × environment), raised for breaking changes.
    pub fn table_risk(&self, class: &str, environment: &str, breaking: bool) -> RiskLevel {
        let row = &self.policy.risk[class];
        let base = row
            .get(environment)
            .or_else(|| row.get("*"))
            .copied()
            .unwrap_or(RiskLevel::Critical);
        if breaking {
            base.max(self.policy.breaking_change_risk)
        } else {
            base
        }
    }

    /// What the grants of `tier` say about this action. Deny wins, then allow, then approve.
    pub fn permission(
        &self,
        tier: u8,
        class: &str,
        environment: &str,
        service: &str,
        risk: RiskLevel,
    ) -> Permission {
        let grants = &self.tier_grants[usize::from(tier.min(MAX_TIER))];
        let (mut allow, mut approve) = (false, false);
        for g in grants
            .iter()
            .filter(|g| g.covers(class, environment, service, risk))
        {
            match g.effect {
                Effect::Deny => return Permission::ExplicitDeny,
                Effect::Allow => allow = true,
                Effect::Approve => approve = true,
            }
        }
        if allow {
            Permission::Allowed
        } else if approve {
            Permission::NeedsApproval
        } else {
            Permission::NoGrant
        }
    }

    /// How long an approval request for `class` stays open, microseconds.
    pub fn approval_ttl_micros(&self, class: &str) -> i64 {
        let secs = self
            .policy
            .approval_ttl_by_class
            .get(class)
            .copied()
            .unwrap_or(self.policy.approval_ttl_secs);
        i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000) * 1_000_000
    }

    /// How long after an allowed `class` action its outcome is due, microseconds.
    pub fn outcome_deadline_micros(&self, class: &str) -> i64 {
        let secs = self
            .policy
            .outcome_deadline_by_class
            .get(class)
            .copied()
            .unwrap_or(self.policy.outcome_deadline_secs);
        i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000) * 1_000_000
    }

    /// How long a guarded `class` action is watched, microseconds.
    pub fn guard_watch_micros(&self, class: &str) -> i64 {
        let secs = self
            .policy
            .guard
            .watch_by_class
            .get(class)
            .copied()
            .unwrap_or(self.policy.guard.watch_secs);
        i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000) * 1_000_000
    }

    /// How long a blocked violation stays on record as the same one, microseconds (0: not at all).
    pub fn same_violation_micros(&self) -> i64 {
        // At most an hour, by `compile`.
        i64::try_from(self.policy.same_violation_secs).unwrap_or(3600) * 1_000_000
    }

    /// How many distinct approvers an approval for `class` needs.
    pub fn approvers_required(&self, class: &str) -> u8 {
        self.policy
            .approvers_required
            .get(class)
            .copied()
            .unwrap_or(1)
    }

    /// The violation mode for a class.
    pub fn violation_mode(&self, class: &str) -> ViolationMode {
        self.policy
            .violation_modes
            .get(class)
            .copied()
            .unwrap_or(self.policy.default_violation_mode)
    }

    /// The name of a tier.
    pub fn tier_name(&self, tier: u8) -> &str {
        self.policy
            .tiers
            .iter()
            .find(|t| t.tier == tier)
            .map(|t| t.name.as_str())
            .unwrap_or("unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RiskLevel::*;

    fn compiled() -> CompiledPolicy {
        CompiledPolicy::new(Policy::default()).unwrap()
    }

    #[test]
    fn glob_matches_prefix_suffix_and_middle() {
        assert!(glob_match("pay*", "payments"));
        assert!(glob_match("*-api", "orders-api"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abde"));
        assert!(!glob_match("pay*", "repay"));
        assert!(glob_match("payments", "payments"));
        assert!(!glob_match("payments", "payment"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn default_tier_table_matches_design() {
        let p = compiled();
        let perm = |tier, class: &str, env: &str| {
            p.permission(tier, class, env, "svc", p.table_risk(class, env, false))
        };
        // observe: reads only.
        assert_eq!(perm(0, "read", "production"), Permission::Allowed);
        assert_eq!(perm(0, "docs_update", "dev"), Permission::NoGrant);
        // sandbox: dev writes, staging with approval, never production.
        assert_eq!(perm(1, "deploy", "dev"), Permission::Allowed);
        assert_eq!(perm(1, "deploy", "staging"), Permission::NeedsApproval);
        assert_eq!(perm(1, "deploy", "production"), Permission::NoGrant);
        // standard: staging alone, production and risky changes with approval.
        assert_eq!(perm(2, "deploy", "staging"), Permission::Allowed);
        assert_eq!(perm(2, "deploy", "production"), Permission::NeedsApproval);
        assert_eq!(
            perm(2, "db_migration", "staging"),
            Permission::NeedsApproval
        );
        assert_eq!(
            perm(2, "security_policy_change", "staging"),
            Permission::NeedsApproval
        );
        // trusted: low-risk production alone, medium and above approved.
        assert_eq!(perm(3, "deploy", "production"), Permission::Allowed);
        assert_eq!(
            perm(3, "infra_create", "production"),
            Permission::NeedsApproval
        );
        assert_eq!(
            perm(3, "db_migration", "production"),
            Permission::NeedsApproval
        );
        // autonomous: medium production alone, high and critical approved.
        assert_eq!(perm(4, "infra_create", "production"), Permission::Allowed);
        assert_eq!(
            perm(4, "db_migration", "production"),
            Permission::NeedsApproval
        );
        assert_eq!(
            perm(4, "security_policy_change", "production"),
            Permission::NeedsApproval
        );
    }

    #[test]
    fn unknown_environment_is_as_strict_as_production() {
        let p = compiled();
        assert_eq!(
            p.table_risk("db_migration", "prod-eu", false),
            p.table_risk("db_migration", "production", false)
        );
        // A tier-3 production grant names `production`, so `prod-eu` needs approval.
        assert_eq!(
            p.permission(3, "deploy", "prod-eu", "svc", Low),
            Permission::NeedsApproval
        );
    }

    #[test]
    fn breaking_change_raises_risk_never_lowers() {
        let p = compiled();
        assert_eq!(p.table_risk("deploy", "production", true), High);
        assert_eq!(
            p.table_risk("security_policy_change", "production", true),
            Critical
        );
    }

    #[test]
    fn explicit_deny_wins_over_allow() {
        let mut policy = Policy::default();
        policy.tiers[4].grants.push(Grant {
            service: "payments".into(),
            ..Grant::new("deploy", "*", Critical, Effect::Deny)
        });
        let p = CompiledPolicy::new(policy).unwrap();
        assert_eq!(
            p.permission(4, "deploy", "production", "payments", Low),
            Permission::ExplicitDeny
        );
        assert_eq!(
            p.permission(4, "deploy", "production", "orders", Low),
            Permission::Allowed
        );
    }

    #[test]
    fn anomaly_settings_are_checked() {
        assert!(
            CompiledPolicy::new(Policy {
                severe_anomaly: 101,
                ..Policy::default()
            })
            .is_err()
        );
        let err = CompiledPolicy::new(Policy {
            severe_anomaly_tier_cap: 5,
            ..Policy::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("severe_anomaly_tier_cap"), "{err}");
    }

    #[test]
    fn version_changes_with_policy_and_is_stable() {
        let a = compiled().version;
        assert_eq!(a, compiled().version);
        let changed = Policy {
            breaking_change_risk: Critical,
            ..Policy::default()
        };
        assert_ne!(a, CompiledPolicy::new(changed).unwrap().version);
    }

    #[test]
    fn guard_watches_are_checked() {
        let c = compiled();
        assert_eq!(c.guard_watch_micros("deploy"), 1_800_000_000);
        let with = |guard: GuardPolicy| {
            CompiledPolicy::new(Policy {
                guard,
                ..Policy::default()
            })
            .map(|c| c.guard_watch_micros("db_migration"))
        };
        let by_class = GuardPolicy {
            watch_by_class: [("db_migration".to_string(), 7200)].into(),
            ..GuardPolicy::default()
        };
        assert_eq!(with(by_class), Ok(7_200_000_000));
        let short = GuardPolicy {
            watch_secs: 5,
            ..GuardPolicy::default()
        };
        assert!(with(short).unwrap_err().0.contains("60 seconds to 7 days"));
        let unknown = GuardPolicy {
            watch_by_class: [("teleport".to_string(), 600)].into(),
            ..GuardPolicy::default()
        };
        assert!(with(unknown).unwrap_err().0.contains("`teleport`"));
        let never = GuardPolicy {
            error_limit: 0,
            ..GuardPolicy::default()
        };
        assert!(with(never).unwrap_err().0.contains("error_limit"));
    }

    #[test]
    fn the_same_violation_window_is_at_most_an_hour() {
        let with = |secs: u64| {
            CompiledPolicy::new(Policy {
                same_violation_secs: secs,
                ..Policy::default()
            })
            .map(|c| c.same_violation_micros())
        };
        assert_eq!(with(60), Ok(60_000_000));
        assert_eq!(Policy::default().same_violation_secs, 60);
        assert_eq!(with(0), Ok(0));
        assert_eq!(with(3600), Ok(3_600_000_000));
        assert!(
            with(3601)
                .unwrap_err()
                .0
                .contains("policy.same_violation_secs")
        );
        // A policy written before the setting existed reads with the default.
        let mut older = serde_json::to_value(Policy::default()).unwrap();
        older.as_object_mut().unwrap().remove("same_violation_secs");
        let older: Policy = serde_json::from_value(older).unwrap();
        assert_eq!(older.same_violation_secs, 60);
    }

    #[test]
    fn rejects_incomplete_tiers_and_unknown_classes() {
        let mut p = Policy::default();
        p.tiers.pop();
        assert!(
            CompiledPolicy::new(p)
                .unwrap_err()
                .to_string()
                .contains("tiers 0 to 4")
        );
        let mut p = Policy::default();
        p.violation_modes
            .insert("teleport".into(), ViolationMode::Flag);
        assert!(
            CompiledPolicy::new(p)
                .unwrap_err()
                .to_string()
                .contains("teleport")
        );
    }
}
