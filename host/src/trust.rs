//! The trust score (DESIGN.md, "After the action"): an agent's track record, weighed and
//! forgotten exponentially, summarized as a lower confidence bound so that little evidence means
//! little trust.
//!
//! Evidence: a reported `succeeded` outcome is a success; `failed` a failure; `rolled_back` a
//! failure that weighs more; a violation a failure weighed by how it was handled (blocked or only
//! flagged); an overdue (`unknown`) outcome a weak failure. Each piece counts
//! `weight × 0.5^(age / half-life)`. The score is the one-sided Wilson lower bound (95%) on the
//! share of successes in the decayed evidence: 0 with no evidence, approaching the success rate
//! as evidence grows, and falling back towards 0 as it ages.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::RiskLevel;

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
        }
    }
}

impl TrustPolicy {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.half_life_days.is_finite() && self.half_life_days > 0.0) {
            return Err("policy.trust.half_life_days must be above 0".into());
        }
        let weights = [self.failure_weight, self.rollback_weight, self.violation_weight, self.flagged_violation_weight, self.unknown_weight];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err("policy.trust weights must be 0 or more".into());
        }
        Ok(())
    }
}

/// What one piece of evidence says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A reported success.
    Success,
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
}

/// One piece of evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// What it says.
    pub kind: Kind,
    /// When, Unix microseconds.
    pub at: i64,
    /// The risk of the action it concerns.
    pub risk: RiskLevel,
}

/// Raw evidence counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Successes.
    pub successes: u64,
    /// Failures.
    pub failures: u64,
    /// Rollbacks.
    pub rollbacks: u64,
    /// Violations (blocked and flagged).
    pub violations: u64,
    /// Outcomes never reported.
    pub unknown: u64,
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
    /// Drift from the human baseline (0 until baselines are computed).
    pub drift: f64,
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

/// Decayed weights, and decayed (unweighted) amounts per kind, of the evidence `keep` selects.
struct Tally {
    weight: Weight,
    success: f64,
    failure: f64,
    rollback: f64,
    violation: f64,
}

fn tally(evidence: &[Evidence], now: i64, policy: &TrustPolicy, keep: impl Fn(&Evidence) -> bool) -> Tally {
    let half_life = policy.half_life_days * 86_400e6;
    let mut t = Tally { weight: Weight::default(), success: 0.0, failure: 0.0, rollback: 0.0, violation: 0.0 };
    for e in evidence.iter().filter(|e| keep(e)) {
        let decay = 0.5f64.powf((now - e.at).max(0) as f64 / half_life);
        let (weight, amount) = match e.kind {
            Kind::Success => {
                t.weight.positive += decay;
                continue;
            }
            Kind::Failure => (policy.failure_weight, &mut t.failure),
            Kind::Rollback => (policy.rollback_weight, &mut t.rollback),
            Kind::Violation => (policy.violation_weight, &mut t.violation),
            Kind::FlaggedViolation => (policy.flagged_violation_weight, &mut t.violation),
            Kind::Unknown => (policy.unknown_weight, &mut t.failure),
        };
        *amount += decay;
        t.weight.negative += weight * decay;
    }
    t.success = t.weight.positive;
    t
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// Assesses an agent's evidence as of `now`.
pub fn assess(evidence: &[Evidence], now: i64, policy: &TrustPolicy) -> Trust {
    let t = tally(evidence, now, policy, |_| true);
    let count = |k: Kind| evidence.iter().filter(|e| e.kind == k).count() as u64;
    let outcomes = t.success + t.failure + t.rollback;
    let by_risk = [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High, RiskLevel::Critical]
        .into_iter()
        .map(|risk| {
            let w = tally(evidence, now, policy, |e| e.risk == risk).weight;
            let successes = evidence.iter().filter(|e| e.risk == risk && e.kind == Kind::Success).count() as u64;
            RiskScore { risk, score: wilson_lower(w.positive, w.positive + w.negative), successes }
        })
        .collect();
    Trust {
        score: wilson_lower(t.weight.positive, t.weight.positive + t.weight.negative),
        success_rate: ratio(t.weight.positive, t.weight.positive + t.weight.negative),
        rollback_rate: ratio(t.rollback, outcomes),
        violation_rate: ratio(t.violation, outcomes + t.violation),
        drift: 0.0,
        weight: t.weight,
        evidence: Counts {
            successes: count(Kind::Success),
            failures: count(Kind::Failure),
            rollbacks: count(Kind::Rollback),
            violations: count(Kind::Violation) + count(Kind::FlaggedViolation),
            unknown: count(Kind::Unknown),
        },
        by_risk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn many(kind: Kind, n: usize, at: i64) -> Vec<Evidence> {
        vec![Evidence { kind, at, risk: RiskLevel::Low }; n]
    }

    #[test]
    fn wilson_matches_known_values() {
        // 95% one-sided = the lower end of the two-sided 90% Wilson interval: 9/10 → 0.6523.
        assert!((wilson_lower(9.0, 10.0) - 0.65228).abs() < 1e-4, "{}", wilson_lower(9.0, 10.0));
        assert_eq!(wilson_lower(0.0, 0.0), 0.0);
        assert_eq!(wilson_lower(1e-310, 2e-310), 0.0, "vanishing evidence is none, never NaN");
        assert!(wilson_lower(100.0, 100.0) < 1.0 && wilson_lower(100.0, 100.0) > 0.97);
    }

    #[test]
    fn no_evidence_no_trust_and_more_evidence_more_confidence() {
        let p = TrustPolicy::default();
        assert_eq!(assess(&[], 0, &p).score, 0.0);
        let few = assess(&many(Kind::Success, 5, 0), 0, &p).score;
        let lots = assess(&many(Kind::Success, 500, 0), 0, &p).score;
        assert!(0.0 < few && few < lots && lots <= 1.0, "{few} {lots}");
    }

    #[test]
    fn monotone_in_successes_and_failures() {
        let p = TrustPolicy::default();
        for s in 0..30 {
            for f in 0..10 {
                let mut e = many(Kind::Success, s, 0);
                e.extend(many(Kind::Failure, f, 0));
                let base = assess(&e, 0, &p).score;
                let mut more_s = e.clone();
                more_s.push(Evidence { kind: Kind::Success, at: 0, risk: RiskLevel::Low });
                let mut more_f = e.clone();
                more_f.push(Evidence { kind: Kind::Failure, at: 0, risk: RiskLevel::Low });
                assert!(assess(&more_s, 0, &p).score >= base, "s={s} f={f}");
                assert!(assess(&more_f, 0, &p).score <= base, "s={s} f={f}");
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
        let (f, r, v) = (assess(&failed, 0, &p).score, assess(&rolled, 0, &p).score, assess(&violated, 0, &p).score);
        assert!(r < f && v < f, "{f} {r} {v}");
    }

    #[test]
    fn trust_decays_toward_no_confidence() {
        let p = TrustPolicy::default();
        let e = many(Kind::Success, 200, 0);
        let fresh = assess(&e, 0, &p).score;
        let month = assess(&e, 30 * DAY, &p).score;
        let year = assess(&e, 365 * DAY, &p).score;
        assert!(fresh > month && month > year && year < 0.1, "{fresh} {month} {year}");
        assert!((assess(&e, 30 * DAY, &p).weight.positive - 100.0).abs() < 1e-6, "one half-life halves the weight");
    }

    #[test]
    fn low_risk_trust_does_not_speak_for_high_risk() {
        let p = TrustPolicy::default();
        let t = assess(&many(Kind::Success, 300, 0), 0, &p);
        assert!(t.score > 0.95);
        let high = t.by_risk.iter().find(|r| r.risk == RiskLevel::High).unwrap();
        assert_eq!((high.score, high.successes), (0.0, 0));
    }
}
