//! The trust score (DESIGN.md, "After the action"): an agent's track record, weighed and
//! forgotten exponentially, summarized as a lower confidence bound so that little evidence means
//! little trust.
//!
//! Evidence: a reported `succeeded` outcome is a success, weighed by its source (confirmed by
//! the platform, reported by a service or an admin, or only the agent's own word); `failed` a
//! failure; `rolled_back` a failure that weighs more; a violation a failure weighed by how it
//! was handled (blocked or only flagged) and by the risk of what was attempted; an overdue
//! (`unknown`) outcome a weak failure. Each piece counts `weight × 0.5^(age / half-life)`. The score is the one-sided Wilson lower bound (95%) on the
//! share of successes in the decayed evidence: 0 with no evidence, approaching the success rate
//! as evidence grows, and falling back towards 0 as it ages.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::baseline::AgentDrift;
use crate::policy::{RiskLevel, ViolationMode};
use crate::records::{OutcomeStatus, ViolationReason};

/// How evidence weighs (part of the policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrustPolicy {
    /// Evidence loses half its weight every this many days.
    pub half_life_days: f64,
    /// Weight of a failed outcome.
    pub failure_weight: f64,
    /// Weight of a rolled-back outcome.
    pub rollback_weight: f64,
    /// Weight of a blocked violation (denied for lack of a grant, a forged approval, …).
    pub violation_weight: f64,
    /// Weight of a violation allowed in `flag` or `guard` mode.
    pub flagged_violation_weight: f64,
    /// Weight of an outcome never reported (`unknown`).
    pub unknown_weight: f64,
    /// Weight of an action denied for going over a quota.
    pub quota_overrun_weight: f64,
    /// Weight of a confirmed severe anomaly (over the outcome's own evidence).
    pub confirmed_anomaly_weight: f64,
    /// Weight of a success by who vouches for it.
    pub success_weights: SourceWeights,
    /// A violation's weight is multiplied by the risk of what was attempted.
    pub violation_risk_factors: RiskFactors,
}

/// Who vouches for an outcome.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The platform itself (a deployment status, a rollback) confirmed it.
    Platform,
    /// A service or an admin reported it.
    Service,
    /// Only the agent's own report.
    SelfReported,
}

impl Source {
    /// Every source, most trusted first.
    pub const ALL: [Source; 3] = [Source::Platform, Source::Service, Source::SelfReported];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Platform => "platform",
            Source::Service => "service",
            Source::SelfReported => "self_reported",
        }
    }

    /// The source of an outcome from who reported it and whether the platform confirmed it:
    /// `reported_by` is the reporter's id (the agent's own, a service's or an admin's, or
    /// `platform:<source>`).
    pub fn of_report(agent: &str, reported_by: Option<&str>, confirmed: bool) -> Source {
        match reported_by {
            _ if confirmed => Source::Platform,
            Some(by) if by.starts_with("platform:") => Source::Platform,
            Some(by) if by == agent => Source::SelfReported,
            Some(_) => Source::Service,
            // Overdue outcomes have no reporter; they are never successes.
            None => Source::SelfReported,
        }
    }
}

/// A success's weight per source (`[policy.trust.success_weights]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SourceWeights {
    /// Confirmed by the platform.
    pub platform: f64,
    /// Reported by a service or an admin.
    pub service: f64,
    /// The agent's own word, unconfirmed.
    pub self_reported: f64,
}

impl Default for SourceWeights {
    fn default() -> SourceWeights {
        SourceWeights {
            platform: 1.0,
            service: 1.0,
            self_reported: 0.5,
        }
    }
}

impl SourceWeights {
    /// The weight of a success from `source`.
    pub fn of(&self, source: Source) -> f64 {
        match source {
            Source::Platform => self.platform,
            Source::Service => self.service,
            Source::SelfReported => self.self_reported,
        }
    }
}

/// A multiplier per risk level (`[policy.trust.violation_risk_factors]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RiskFactors {
    /// Low risk.
    pub low: f64,
    /// Medium risk.
    pub medium: f64,
    /// High risk.
    pub high: f64,
    /// Critical risk.
    pub critical: f64,
}

impl Default for RiskFactors {
    fn default() -> RiskFactors {
        RiskFactors {
            low: 1.0,
            medium: 2.0,
            high: 4.0,
            critical: 8.0,
        }
    }
}

impl RiskFactors {
    /// The factor for `risk`.
    pub fn of(&self, risk: RiskLevel) -> f64 {
        match risk {
            RiskLevel::Low => self.low,
            RiskLevel::Medium => self.medium,
            RiskLevel::High => self.high,
            RiskLevel::Critical => self.critical,
        }
    }
}

impl Default for TrustPolicy {
    fn default() -> TrustPolicy {
        TrustPolicy {
            half_life_days: 30.0,
            failure_weight: 1.0,
            rollback_weight: 3.0,
            violation_weight: 2.0,
            flagged_violation_weight: 1.0,
            unknown_weight: 0.25,
            quota_overrun_weight: 0.25,
            confirmed_anomaly_weight: 2.0,
            success_weights: SourceWeights::default(),
            violation_risk_factors: RiskFactors::default(),
        }
    }
}

impl TrustPolicy {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.half_life_days.is_finite() && self.half_life_days > 0.0) {
            return Err("policy.trust.half_life_days must be above 0".into());
        }
        let weights = [
            self.failure_weight,
            self.rollback_weight,
            self.violation_weight,
            self.flagged_violation_weight,
            self.unknown_weight,
            self.quota_overrun_weight,
            self.confirmed_anomaly_weight,
            self.success_weights.platform,
            self.success_weights.service,
            self.success_weights.self_reported,
            self.violation_risk_factors.low,
            self.violation_risk_factors.medium,
            self.violation_risk_factors.high,
            self.violation_risk_factors.critical,
        ];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err("policy.trust weights and factors must be 0 or more".into());
        }
        Ok(())
    }
}

/// What one piece of evidence says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A success reported by a service or an admin.
    Success,
    /// A success the platform confirmed (or reported itself).
    PlatformSuccess,
    /// A success only the agent reported.
    SelfReportedSuccess,
    /// A reported failure.
    Failure,
    /// A rollback.
    Rollback,
    /// A violation that was blocked.
    Violation,
    /// A violation allowed in flag or guard mode.
    FlaggedViolation,
    /// An outcome never reported.
    Unknown,
    /// An action denied for going over a quota.
    QuotaOverrun,
    /// A severe anomaly confirmed: a human marked its finding real, or the action failed or
    /// was rolled back.
    ConfirmedAnomaly,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 10] = [
        Kind::Success,
        Kind::PlatformSuccess,
        Kind::SelfReportedSuccess,
        Kind::Failure,
        Kind::Rollback,
        Kind::Violation,
        Kind::FlaggedViolation,
        Kind::Unknown,
        Kind::QuotaOverrun,
        Kind::ConfirmedAnomaly,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Success => "success",
            Kind::PlatformSuccess => "platform_success",
            Kind::SelfReportedSuccess => "self_reported_success",
            Kind::Failure => "failure",
            Kind::Rollback => "rollback",
            Kind::Violation => "violation",
            Kind::FlaggedViolation => "flagged_violation",
            Kind::Unknown => "unknown",
            Kind::QuotaOverrun => "quota_overrun",
            Kind::ConfirmedAnomaly => "confirmed_anomaly",
        }
    }

    /// The kind a stored name stands for.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The evidence an outcome is (`succeeded`, `failed`, `rolled_back`, `unknown`); a
    /// success by who vouches for it. (An agent reporting its own failure is believed.)
    pub fn of_outcome(outcome: OutcomeStatus, source: Source) -> Kind {
        match outcome {
            OutcomeStatus::Succeeded => Kind::success(source),
            OutcomeStatus::Failed => Kind::Failure,
            OutcomeStatus::RolledBack => Kind::Rollback,
            OutcomeStatus::Unknown => Kind::Unknown,
        }
    }

    /// A success from `source`.
    pub fn success(source: Source) -> Kind {
        match source {
            Source::Platform => Kind::PlatformSuccess,
            Source::Service => Kind::Success,
            Source::SelfReported => Kind::SelfReportedSuccess,
        }
    }

    /// Whether this is a success, and from whom.
    pub fn success_source(self) -> Option<Source> {
        match self {
            Kind::PlatformSuccess => Some(Source::Platform),
            Kind::Success => Some(Source::Service),
            Kind::SelfReportedSuccess => Some(Source::SelfReported),
            _ => None,
        }
    }

    /// The evidence a violation is, by its mode and reason.
    pub fn of_violation(mode: ViolationMode, reason: ViolationReason) -> Kind {
        match (mode, reason) {
            (_, ViolationReason::QuotaExceeded) => Kind::QuotaOverrun,
            (ViolationMode::Block, _) => Kind::Violation,
            _ => Kind::FlaggedViolation,
        }
    }

    /// How much one piece weighs against the agent, at the risk of the action it concerns.
    pub fn weight_against(self, risk: RiskLevel, policy: &TrustPolicy) -> f64 {
        let factor = policy.violation_risk_factors.of(risk);
        match self {
            Kind::Success | Kind::PlatformSuccess | Kind::SelfReportedSuccess => 0.0,
            Kind::Failure => policy.failure_weight,
            Kind::Rollback => policy.rollback_weight,
            Kind::Violation => policy.violation_weight * factor,
            Kind::FlaggedViolation => policy.flagged_violation_weight * factor,
            Kind::Unknown => policy.unknown_weight,
            Kind::QuotaOverrun => policy.quota_overrun_weight,
            Kind::ConfirmedAnomaly => policy.confirmed_anomaly_weight,
        }
    }
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// What it says.
    pub kind: Kind,
    /// When, Unix microseconds.
    pub at: i64,
    /// The environment of the action it concerns.
    pub environment: String,
    /// The risk of the action it concerns.
    pub risk: RiskLevel,
}

/// An exponentially forgotten amount, as of a moment: adding to it and reading it are O(1),
/// whatever the order evidence arrives in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decayed {
    /// The amount as of `as_of`.
    pub amount: f64,
    /// Unix microseconds.
    pub as_of: i64,
}

impl Decayed {
    /// Adds `delta` (negative to take evidence back) dated `at`.
    pub fn add(self, delta: f64, at: i64, half_life_us: f64) -> Decayed {
        if at >= self.as_of {
            Decayed {
                amount: self.amount * decay(at - self.as_of, half_life_us) + delta,
                as_of: at,
            }
        } else {
            Decayed {
                amount: self.amount + delta * decay(self.as_of - at, half_life_us),
                as_of: self.as_of,
            }
        }
    }

    /// The amount as of `now` (never negative: taking evidence back may leave rounding dust).
    pub fn at(self, now: i64, half_life_us: f64) -> f64 {
        (self.amount * decay(now - self.as_of, half_life_us)).max(0.0)
    }
}

fn decay(elapsed_us: i64, half_life_us: f64) -> f64 {
    0.5f64.powf(elapsed_us.max(0) as f64 / half_life_us)
}

/// The running total of one kind of evidence in one environment at one risk level.
#[derive(Debug, Clone, PartialEq)]
pub struct Total {
    /// Environment of the actions.
    pub environment: String,
    /// Their risk.
    pub risk: RiskLevel,
    /// The kind of evidence.
    pub kind: Kind,
    /// Its decayed amount.
    pub decayed: Decayed,
    /// How many pieces, undecayed.
    pub count: i64,
}

/// Adds (or takes back, with a negative `delta`) one piece of evidence to running totals.
pub fn add(
    totals: &mut Vec<Total>,
    environment: &str,
    risk: RiskLevel,
    kind: Kind,
    at: i64,
    delta: i64,
    half_life_us: f64,
) {
    let i = match totals
        .iter()
        .position(|t| t.environment == environment && t.risk == risk && t.kind == kind)
    {
        Some(i) => i,
        None => {
            totals.push(Total {
                environment: environment.to_string(),
                risk,
                kind,
                decayed: Decayed {
                    amount: 0.0,
                    as_of: at,
                },
                count: 0,
            });
            totals.len() - 1
        }
    };
    totals[i].decayed = totals[i].decayed.add(delta as f64, at, half_life_us);
    totals[i].count += delta;
}

/// Folds evidence into running totals (what the store keeps, here in memory).
pub fn totals_of(evidence: &[Evidence], half_life_us: f64) -> Vec<Total> {
    let mut totals = Vec::new();
    for e in evidence {
        add(
            &mut totals,
            &e.environment,
            e.risk,
            e.kind,
            e.at,
            1,
            half_life_us,
        );
    }
    totals
}

/// Raw evidence counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Successes.
    pub successes: u64,
    /// The successes by who vouches for them.
    #[serde(default)]
    pub successes_by_source: BySource,
    /// Failures.
    pub failures: u64,
    /// Rollbacks.
    pub rollbacks: u64,
    /// Violations (blocked and flagged).
    pub violations: u64,
    /// Outcomes never reported.
    pub unknown: u64,
    /// Severe anomalies confirmed.
    #[serde(default)]
    pub confirmed_anomalies: u64,
}

/// Successes by who vouches for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BySource {
    /// Confirmed by the platform.
    pub platform: u64,
    /// Reported by a service or an admin.
    pub service: u64,
    /// Only the agent's own word.
    pub self_reported: u64,
}

/// An agent's trust, as of a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Trust {
    /// 0–1: the lower confidence bound on the decayed success share.
    pub score: f64,
    /// Decayed success share (successes / all evidence), 0 with none.
    pub success_rate: f64,
    /// Decayed rollbacks per outcome reported.
    pub rollback_rate: f64,
    /// Decayed violations per decision evidence.
    pub violation_rate: f64,
    /// Drift from the team's humans, as of the newest day measured; null until computed.
    pub drift: Option<AgentDrift>,
    /// Decayed weight of successes and of failures.
    pub weight: Weight,
    /// Raw counts.
    pub evidence: Counts,
    /// Scores over evidence at each risk level, lowest first (`low`, `medium`, `high`, `critical`).
    pub by_risk: Vec<RiskScore>,
}

/// Decayed evidence weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Weight {
    /// Successes.
    pub positive: f64,
    /// Failures, rollbacks, violations and unknowns, weighted.
    pub negative: f64,
}

impl Weight {
    /// The lower confidence bound on the success share.
    pub fn score(self) -> f64 {
        wilson_lower(self.positive, self.positive + self.negative)
    }
}

/// The score over the evidence at one risk level: trust earned on low-risk work does not
/// speak for higher-risk work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskScore {
    /// The risk level.
    pub risk: RiskLevel,
    /// The lower confidence bound at that level.
    pub score: f64,
    /// Successes at that level (raw count).
    pub successes: u64,
}

/// One-sided 95% z.
const Z: f64 = 1.644_853_626_951_472_2;

/// The Wilson score interval's lower bound for `positive` successes out of `total` (both may be
/// fractional, as decayed weights are); 0 when there is nothing.
pub fn wilson_lower(positive: f64, total: f64) -> f64 {
    // So little (or so decayed) evidence is none; this also keeps the bound finite.
    if total.is_nan() || total < 1e-9 {
        return 0.0;
    }
    let p = (positive / total).clamp(0.0, 1.0);
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * total);
    let margin = Z * (p * (1.0 - p) / total + z2 / (4.0 * total * total)).sqrt();
    ((centre - margin) / (1.0 + z2 / total)).clamp(0.0, 1.0)
}

/// The policy's half-life in microseconds.
pub fn half_life_us(policy: &TrustPolicy) -> f64 {
    policy.half_life_days * 86_400e6
}

/// Decayed weight of the totals `keep` selects, as of `now`.
pub fn weigh(
    totals: &[Total],
    now: i64,
    policy: &TrustPolicy,
    keep: impl Fn(&Total) -> bool,
) -> Weight {
    let h = half_life_us(policy);
    let mut w = Weight::default();
    for t in totals.iter().filter(|t| keep(t)) {
        let amount = t.decayed.at(now, h);
        match t.kind.success_source() {
            Some(source) => w.positive += policy.success_weights.of(source) * amount,
            None => w.negative += t.kind.weight_against(t.risk, policy) * amount,
        }
    }
    w
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// Assesses an agent's running totals as of `now`.
pub fn assess(totals: &[Total], now: i64, policy: &TrustPolicy) -> Trust {
    let h = half_life_us(policy);
    // (An empty f64 sum is -0.0; adding 0.0 keeps "-0" out of the answers.)
    let amount = |kinds: &[Kind]| -> f64 {
        totals
            .iter()
            .filter(|t| kinds.contains(&t.kind))
            .map(|t| t.decayed.at(now, h))
            .sum::<f64>()
            + 0.0
    };
    let count = |kinds: &[Kind]| -> u64 {
        totals
            .iter()
            .filter(|t| kinds.contains(&t.kind))
            .map(|t| t.count.max(0) as u64)
            .sum()
    };
    let weight = weigh(totals, now, policy, |_| true);
    const SUCCESSES: [Kind; 3] = [
        Kind::PlatformSuccess,
        Kind::Success,
        Kind::SelfReportedSuccess,
    ];
    let outcomes = amount(&SUCCESSES) + amount(&[Kind::Failure, Kind::Rollback, Kind::Unknown]);
    let violations = amount(&[Kind::Violation, Kind::FlaggedViolation, Kind::QuotaOverrun]);
    let by_risk = [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ]
    .into_iter()
    .map(|risk| RiskScore {
        risk,
        score: weigh(totals, now, policy, |t| t.risk == risk).score(),
        successes: totals
            .iter()
            .filter(|t| t.risk == risk && t.kind.success_source().is_some())
            .map(|t| t.count.max(0) as u64)
            .sum(),
    })
    .collect();
    Trust {
        score: weight.score(),
        success_rate: ratio(weight.positive, weight.positive + weight.negative),
        rollback_rate: ratio(amount(&[Kind::Rollback]), outcomes),
        violation_rate: ratio(violations, outcomes + violations),
        drift: None,
        weight,
        evidence: Counts {
            successes: count(&SUCCESSES),
            successes_by_source: BySource {
                platform: count(&[Kind::PlatformSuccess]),
                service: count(&[Kind::Success]),
                self_reported: count(&[Kind::SelfReportedSuccess]),
            },
            failures: count(&[Kind::Failure]),
            rollbacks: count(&[Kind::Rollback]),
            violations: count(&[Kind::Violation, Kind::FlaggedViolation, Kind::QuotaOverrun]),
            unknown: count(&[Kind::Unknown]),
            confirmed_anomalies: count(&[Kind::ConfirmedAnomaly]),
        },
        by_risk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn many(kind: Kind, n: usize, at: i64) -> Vec<Evidence> {
        vec![
            Evidence {
                kind,
                at,
                environment: "dev".into(),
                risk: RiskLevel::Low
            };
            n
        ]
    }

    /// Assesses evidence through the running totals, as the store keeps them.
    fn assess_all(evidence: &[Evidence], now: i64, p: &TrustPolicy) -> Trust {
        assess(&totals_of(evidence, half_life_us(p)), now, p)
    }

    #[test]
    fn wilson_matches_known_values() {
        // 95% one-sided = the lower end of the two-sided 90% Wilson interval: 9/10 → 0.6523.
        assert!(
            (wilson_lower(9.0, 10.0) - 0.65228).abs() < 1e-4,
            "{}",
            wilson_lower(9.0, 10.0)
        );
        assert_eq!(wilson_lower(0.0, 0.0), 0.0);
        assert_eq!(
            wilson_lower(1e-310, 2e-310),
            0.0,
            "vanishing evidence is none, never NaN"
        );
        assert!(wilson_lower(100.0, 100.0) < 1.0 && wilson_lower(100.0, 100.0) > 0.97);
    }

    #[test]
    fn a_success_weighs_by_who_vouches_for_it() {
        let p = TrustPolicy::default();
        let score = |kind| assess_all(&many(kind, 7, 0), 0, &p).score;
        let (platform, service, own) = (
            score(Kind::PlatformSuccess),
            score(Kind::Success),
            score(Kind::SelfReportedSuccess),
        );
        assert_eq!(platform, service, "both weigh 1 by default");
        assert!(own < service - 0.1, "own word {own} vs service {service}");
        let t = assess_all(
            &[
                many(Kind::PlatformSuccess, 2, 0),
                many(Kind::Success, 3, 0),
                many(Kind::SelfReportedSuccess, 4, 0),
            ]
            .concat(),
            0,
            &p,
        );
        assert_eq!(t.evidence.successes, 9);
        assert_eq!(
            t.evidence.successes_by_source,
            BySource {
                platform: 2,
                service: 3,
                self_reported: 4
            }
        );
        // Self-reports can be switched off entirely.
        let mut none = p.clone();
        none.success_weights.self_reported = 0.0;
        assert_eq!(
            assess_all(&many(Kind::SelfReportedSuccess, 50, 0), 0, &none).score,
            0.0
        );
    }

    #[test]
    fn a_violation_weighs_by_the_risk_of_what_was_attempted() {
        let p = TrustPolicy::default();
        let with = |risk| {
            let mut e = many(Kind::Success, 19, 0);
            e.push(Evidence {
                kind: Kind::Violation,
                at: 0,
                environment: "production".into(),
                risk,
            });
            assess_all(&e, 0, &p).score
        };
        let (low, high, critical) = (
            with(RiskLevel::Low),
            with(RiskLevel::High),
            with(RiskLevel::Critical),
        );
        assert!(low > high && high > critical, "{low} {high} {critical}");
    }

    #[test]
    fn no_evidence_no_trust_and_more_evidence_more_confidence() {
        let p = TrustPolicy::default();
        assert_eq!(assess_all(&[], 0, &p).score, 0.0);
        let few = assess_all(&many(Kind::Success, 5, 0), 0, &p).score;
        let lots = assess_all(&many(Kind::Success, 500, 0), 0, &p).score;
        assert!(0.0 < few && few < lots && lots <= 1.0, "{few} {lots}");
    }

    #[test]
    fn monotone_in_successes_and_failures() {
        let p = TrustPolicy::default();
        for s in 0..30 {
            for f in 0..10 {
                let mut e = many(Kind::Success, s, 0);
                e.extend(many(Kind::Failure, f, 0));
                let base = assess_all(&e, 0, &p).score;
                let mut more_s = e.clone();
                more_s.push(Evidence {
                    kind: Kind::Success,
                    at: 0,
                    environment: "dev".into(),
                    risk: RiskLevel::Low,
                });
                let mut more_f = e.clone();
                more_f.push(Evidence {
                    kind: Kind::Failure,
                    at: 0,
                    environment: "dev".into(),
                    risk: RiskLevel::Low,
                });
                assert!(assess_all(&more_s, 0, &p).score >= base, "s={s} f={f}");
                assert!(assess_all(&more_f, 0, &p).score <= base, "s={s} f={f}");
                assert!((0.0..=1.0).contains(&base));
            }
        }
    }

    #[test]
    fn rollbacks_and_violations_weigh_more() {
        let p = TrustPolicy::default();
        let mut failed = many(Kind::Success, 50, 0);
        failed.extend(many(Kind::Failure, 3, 0));
        let mut rolled = many(Kind::Success, 50, 0);
        rolled.extend(many(Kind::Rollback, 3, 0));
        let mut violated = many(Kind::Success, 50, 0);
        violated.extend(many(Kind::Violation, 3, 0));
        let (f, r, v) = (
            assess_all(&failed, 0, &p).score,
            assess_all(&rolled, 0, &p).score,
            assess_all(&violated, 0, &p).score,
        );
        assert!(r < f && v < f, "{f} {r} {v}");
    }

    #[test]
    fn trust_decays_toward_no_confidence() {
        let p = TrustPolicy::default();
        let e = many(Kind::Success, 200, 0);
        let fresh = assess_all(&e, 0, &p).score;
        let month = assess_all(&e, 30 * DAY, &p).score;
        let year = assess_all(&e, 365 * DAY, &p).score;
        assert!(
            fresh > month && month > year && year < 0.1,
            "{fresh} {month} {year}"
        );
        assert!(
            (assess_all(&e, 30 * DAY, &p).weight.positive - 100.0).abs() < 1e-6,
            "one half-life halves the weight"
        );
    }

    /// Properties over random records: the score is bounded, never falls with one more success
    /// (whenever it happened), never rises with one more failure, rollback or violation, and only
    /// falls as time passes without new evidence, towards no confidence.
    #[test]
    fn score_properties_over_random_records() {
        use rand::{Rng as _, SeedableRng as _};
        let p = TrustPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let envs = ["dev", "staging", "production"];
        let risks = [
            RiskLevel::Low,
            RiskLevel::Medium,
            RiskLevel::High,
            RiskLevel::Critical,
        ];
        let random = |rng: &mut rand::rngs::StdRng, kind: Kind| Evidence {
            kind,
            at: rng.random_range(0..90 * DAY),
            environment: envs[rng.random_range(0..3)].into(),
            risk: risks[rng.random_range(0..4)],
        };
        for _ in 0..300 {
            let mut e = Vec::new();
            for _ in 0..rng.random_range(0..60) {
                let kind = Kind::ALL[rng.random_range(0..Kind::ALL.len())];
                e.push(random(&mut rng, kind));
            }
            let now = 90 * DAY;
            let base = assess_all(&e, now, &p).score;
            assert!((0.0..=1.0).contains(&base), "{base}");
            let mut more = e.clone();
            more.push(random(&mut rng, Kind::Success));
            assert!(
                assess_all(&more, now, &p).score >= base - 1e-12,
                "a success lowered the score"
            );
            for kind in [
                Kind::Failure,
                Kind::Rollback,
                Kind::Violation,
                Kind::FlaggedViolation,
                Kind::Unknown,
                Kind::QuotaOverrun,
            ] {
                let mut worse = e.clone();
                worse.push(random(&mut rng, kind));
                assert!(
                    assess_all(&worse, now, &p).score <= base + 1e-12,
                    "{kind:?} raised the score"
                );
            }
            let later = assess_all(&e, now + rng.random_range(1..60 * DAY), &p).score;
            assert!(
                later <= base + 1e-12,
                "time alone raised the score: {base} → {later}"
            );
            assert!(
                assess_all(&e, now + 3650 * DAY, &p).score < 1e-6,
                "ten years on, no confidence is left"
            );
        }
    }

    #[test]
    fn running_totals_do_not_depend_on_arrival_order_and_take_back_exactly() {
        let h = 30.0 * DAY as f64;
        let at = [5 * DAY, 0, 40 * DAY, 12 * DAY, 3];
        let forward = at.iter().fold(Decayed::default(), |d, t| d.add(1.0, *t, h));
        let backward = at
            .iter()
            .rev()
            .fold(Decayed::default(), |d, t| d.add(1.0, *t, h));
        let now = 60 * DAY;
        let direct: f64 = at.iter().map(|t| 0.5f64.powf((now - t) as f64 / h)).sum();
        assert!(
            (forward.at(now, h) - direct).abs() < 1e-9
                && (backward.at(now, h) - direct).abs() < 1e-9
        );
        let back = forward.add(-1.0, 12 * DAY, h);
        assert!((back.at(now, h) - (direct - 0.5f64.powf(48.0 / 30.0))).abs() < 1e-9);
        assert_eq!(
            Decayed::default().add(-1.0, 0, h).at(0, h),
            0.0,
            "never negative"
        );
    }

    #[test]
    fn low_risk_trust_does_not_speak_for_high_risk() {
        let p = TrustPolicy::default();
        let t = assess_all(&many(Kind::Success, 300, 0), 0, &p);
        assert!(t.score > 0.95);
        let high = t
            .by_risk
            .iter()
            .find(|r| r.risk == RiskLevel::High)
            .unwrap();
        assert_eq!((high.score, high.successes), (0.0, 0));
    }
}
