//! Watched work: the outcomes of actions an agent did under a human's approval, and which of
//! them count towards promotion into a tier (the actions that tier newly allows alone).

use std::collections::{BTreeMap, BTreeSet};

use super::{DAY_US, Spread};
use crate::policy::{CompiledPolicy, Permission, RiskLevel, glob_match};
use crate::records::OutcomeStatus;
use crate::trust::{Kind, Source, Weight, half_life_us};

/// An outcome of an action the agent did under a human's approval: the work promotions rest on.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// The decision that allowed it (with the approval).
    pub decision_id: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// Risk it was judged at.
    pub risk: RiskLevel,
    /// What happened.
    pub outcome: OutcomeStatus,
    /// Who vouches for the outcome.
    pub source: Source,
    /// When the outcome was reported, Unix microseconds.
    pub at: i64,
}

/// Whether tier `to` newly allows this action alone: it allows it, the tier below does not.
pub fn newly_allowed(
    policy: &CompiledPolicy,
    to: u8,
    class: &str,
    environment: &str,
    service: &str,
    risk: RiskLevel,
) -> bool {
    to >= 1
        && policy.permission(to, class, environment, service, risk) == Permission::Allowed
        && policy.permission(to - 1, class, environment, service, risk) != Permission::Allowed
}

/// The watched work that counts towards promotion into one tier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Qualifying {
    /// The successes counted, as their decision ids, in the order given.
    pub successes: Vec<String>,
    /// Successes per action class.
    pub by_class: BTreeMap<String, u32>,
    /// Decayed weight of the qualifying outcomes: successes by their source, the rest against.
    pub weight: Weight,
    /// How the successes are spread.
    pub spread: Spread,
}

impl Qualifying {
    /// The classes with at least `min` successes: the rights a promotion grants alone.
    pub fn earned(&self, min: u32) -> BTreeSet<String> {
        self.by_class
            .iter()
            .filter(|(_, n)| **n >= min)
            .map(|(c, _)| c.clone())
            .collect()
    }
}

/// Of `work`, what counts towards promotion into tier `to`: outcomes of actions that `to` newly
/// allows alone (and that its step's environment and risk admit). Above
/// `self_report_max_tier`, a success counts only when the platform or a service vouches for it;
/// a failure always counts, whoever reports it.
pub fn qualifying(work: &[Watched], to: u8, policy: &CompiledPolicy, now: i64) -> Qualifying {
    let (tp, trust) = (&policy.policy.tiering, &policy.policy.trust);
    let mut q = Qualifying::default();
    let Some(step) = tp.step(to) else {
        return q;
    };
    let h = half_life_us(trust);
    let confirmed_only = to > tp.self_report_max_tier;
    let (mut days, mut targets) = (BTreeSet::new(), BTreeSet::new());
    for w in work {
        if w.risk < step.min_risk
            || !glob_match(&step.environment, &w.environment)
            || !newly_allowed(policy, to, &w.class, &w.environment, &w.service, w.risk)
        {
            continue;
        }
        let decayed = 0.5f64.powf((now - w.at).max(0) as f64 / h);
        let kind = Kind::of_outcome(w.outcome, w.source);
        if w.outcome != OutcomeStatus::Succeeded {
            q.weight.negative += kind.weight_against(w.risk, trust) * decayed;
            continue;
        }
        if confirmed_only && w.source == Source::SelfReported {
            continue;
        }
        q.weight.positive += trust.success_weights.of(w.source) * decayed;
        q.successes.push(w.decision_id.clone());
        *q.by_class.entry(w.class.clone()).or_default() += 1;
        days.insert(w.at.div_euclid(DAY_US as i64));
        targets.insert(w.service.as_str());
    }
    q.spread = Spread {
        days: u32::try_from(days.len()).unwrap_or(u32::MAX),
        targets: u32::try_from(targets.len()).unwrap_or(u32::MAX),
    };
    q
}

/// The classes of `work` the agent has now earned at its tier `tier` beyond `earned`: rights of
/// the tier it got alone after the promotion that granted only some of them.
pub fn newly_earned(
    work: &[Watched],
    tier: u8,
    earned: &BTreeSet<String>,
    policy: &CompiledPolicy,
    now: i64,
) -> BTreeSet<String> {
    qualifying(work, tier, policy, now)
        .earned(policy.policy.tiering.min_class_successes)
        .difference(earned)
        .cloned()
        .collect()
}
