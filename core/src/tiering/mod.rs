//! The tier controller (DESIGN.md, "Tier changes"): an agent's tier follows its trust, both
//! ways, slowly up and quickly down, and never past what humans allow.
//!
//! - Up by one tier when every gate holds: the score clears the new tier's bar; enough
//!   *watched* successes — actions the new tier would newly allow alone, done under a human's
//!   approval at the current tier — with a score there that clears the bar too, spread over
//!   enough distinct days and targets; above `self_report_max_tier`, only successes the platform
//!   or a service vouches for count; a minimum time in the current tier; no cool-down running;
//!   no hard trigger in the last `hard_window_days` and no blocked violation in the last
//!   `violation_hold_days`; not above the ceiling or the parent's tier; not pinned; the
//!   change-success error budget not spent. The promotion grants alone only the classes the
//!   agent has `min_class_successes` watched successes in; the tier's other new rights keep
//!   needing approval until it has them (each such success is watched work too).
//! - Down at once on a hard trigger (a critical rollback, a severe anomaly confirmed by the
//!   action failing or being rolled back, a forged or reused approval, a security-policy
//!   violation, repeated blocked violations): to `hard_demotion_tier`.
//! - Down by one tier, after the minimum time in tier, when the score falls below the low-water
//!   mark (`low_water` × the current tier's bar) on at least as much evidence as promotion into
//!   the tier asked for (an agent with little evidence keeps the tier a human gave it).
//! - The error budget: once failed, rolled-back and unreported changes exceed `1 − slo` of the
//!   changes in `slo_window_days`, the agent is capped at `budget_cap_tier` (where production
//!   changes need approval); burning it `fast_burn_rate` times faster than sustainable over the
//!   last `fast_burn_window_hours` suspends the agent until a human resumes it.
//!
//! Everything here is a pure function of its inputs and the time it is given, so a test can
//! simulate months in milliseconds; the service's tier controller does the reading and writing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::{CompiledPolicy, MAX_TIER, RiskLevel};
use crate::records::ViolationReason;
use crate::trust::{Total, weigh};

mod watched;

pub use watched::{Qualifying, Watched, newly_allowed, newly_earned, qualifying};

/// A day in microseconds, for the policy's day-counted settings.
pub const DAY_US: f64 = 86_400e6;

/// Promotion into one tier: the bar and the evidence it asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The tier promoted into, 1–4.
    pub tier: u8,
    /// Score (0–1) the agent must reach overall and on the qualifying work.
    pub bar: f64,
    /// Watched successes needed on qualifying work.
    pub min_successes: u32,
    /// Narrows qualifying work to an environment (a pattern; `*`, the default, for any)…
    #[serde(default = "any_environment")]
    pub environment: String,
    /// …and to this risk or above (default `low`).
    #[serde(default = "low")]
    pub min_risk: RiskLevel,
}

fn any_environment() -> String {
    "*".into()
}
fn low() -> RiskLevel {
    RiskLevel::Low
}

/// How tiers follow trust (part of the policy: `[policy.tiering]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TierPolicy {
    /// Whether Warden changes tiers on its own (admins always can).
    pub enabled: bool,
    /// Promotion into tiers 1 to 4.
    pub steps: Vec<Step>,
    /// Soft demotion below `low_water` × the current tier's bar.
    pub low_water: f64,
    /// Days in a tier before the controller moves the agent either way (hard triggers excepted).
    pub min_days_in_tier: f64,
    /// Days after a demotion before a promotion.
    pub cool_down_days: f64,
    /// Distinct days qualifying successes must be spread over.
    pub min_distinct_days: u32,
    /// Distinct targets (services) qualifying successes must be spread over.
    pub min_distinct_targets: u32,
    /// The tier a hard trigger demotes to (or keeps, if the agent is already lower).
    pub hard_demotion_tier: u8,
    /// Days after a hard trigger during which no promotion happens.
    pub hard_window_days: f64,
    /// Blocked violations within `repeated_violation_days` that count as a hard trigger.
    pub repeated_violations: u32,
    /// The window for `repeated_violations`.
    pub repeated_violation_days: f64,
    /// The tier soft demotion stops at.
    pub soft_floor_tier: u8,
    /// Change-success objective (e.g. 0.95: at most 5% of changes fail, roll back or go unreported).
    pub slo: f64,
    /// The window the objective is measured over, days.
    pub slo_window_days: f64,
    /// Changes in the window before the budget is judged.
    pub slo_min_outcomes: u32,
    /// The tier an agent whose budget is spent is capped at.
    pub budget_cap_tier: u8,
    /// Burn rate (times the sustainable rate) that suspends the agent.
    pub fast_burn_rate: f64,
    /// The window the fast burn is measured over, hours.
    pub fast_burn_window_hours: f64,
    /// Changes in that window before a fast burn is judged.
    pub fast_burn_min_outcomes: u32,
    /// How often each replica reviews every agent (promotions that only waited for time,
    /// demotions as evidence fades), seconds.
    pub review_interval_secs: u64,
    /// Drift from the team's humans (0–1) above which a promotion is held; an agent whose
    /// drift is not computed yet is not held.
    pub max_drift: f64,
    /// Days after a blocked violation during which no promotion happens.
    pub violation_hold_days: f64,
    /// The highest tier self-reported successes can promote into: above it, only successes the
    /// platform or a service vouches for count as watched work.
    pub self_report_max_tier: u8,
    /// Watched successes in a class before a promotion grants that class alone.
    pub min_class_successes: u32,
}

impl Default for TierPolicy {
    fn default() -> TierPolicy {
        let step = |tier, bar, min_successes, environment: &str, min_risk| Step {
            tier,
            bar,
            min_successes,
            environment: environment.into(),
            min_risk,
        };
        TierPolicy {
            enabled: true,
            steps: vec![
                step(1, 0.5, 5, "*", RiskLevel::Low),
                step(2, 0.7, 10, "*", RiskLevel::Low),
                step(3, 0.8, 20, "*", RiskLevel::Low),
                step(4, 0.9, 30, "*", RiskLevel::Low),
            ],
            low_water: 0.9,
            min_days_in_tier: 7.0,
            cool_down_days: 14.0,
            min_distinct_days: 5,
            min_distinct_targets: 2,
            hard_demotion_tier: 1,
            hard_window_days: 30.0,
            repeated_violations: 3,
            repeated_violation_days: 7.0,
            soft_floor_tier: 1,
            slo: 0.95,
            slo_window_days: 28.0,
            slo_min_outcomes: 20,
            budget_cap_tier: 2,
            fast_burn_rate: 14.4,
            fast_burn_window_hours: 1.0,
            fast_burn_min_outcomes: 5,
            review_interval_secs: 3600,
            max_drift: 0.5,
            violation_hold_days: 14.0,
            self_report_max_tier: 2,
            min_class_successes: 3,
        }
    }
}

impl TierPolicy {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        let tiers: Vec<u8> = self.steps.iter().map(|s| s.tier).collect();
        if tiers != (1..=MAX_TIER).collect::<Vec<_>>() {
            return Err(format!(
                "policy.tiering.steps must define promotion into tiers 1 to {MAX_TIER} in order, found {tiers:?}"
            ));
        }
        for s in &self.steps {
            if !(0.0..=1.0).contains(&s.bar) {
                return Err(format!(
                    "policy.tiering.steps[tier {}].bar must be from 0 to 1",
                    s.tier
                ));
            }
        }
        for (name, v) in [("low_water", self.low_water), ("slo", self.slo)] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!(
                    "policy.tiering.{name} must be above 0 and at most 1"
                ));
            }
        }
        let days = [
            ("min_days_in_tier", self.min_days_in_tier),
            ("cool_down_days", self.cool_down_days),
            ("hard_window_days", self.hard_window_days),
            ("repeated_violation_days", self.repeated_violation_days),
            ("slo_window_days", self.slo_window_days),
            ("fast_burn_window_hours", self.fast_burn_window_hours),
            ("fast_burn_rate", self.fast_burn_rate),
            ("violation_hold_days", self.violation_hold_days),
        ];
        for (name, v) in days {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("policy.tiering.{name} must be 0 or more"));
            }
        }
        for (name, t) in [
            ("hard_demotion_tier", self.hard_demotion_tier),
            ("soft_floor_tier", self.soft_floor_tier),
            ("budget_cap_tier", self.budget_cap_tier),
            ("self_report_max_tier", self.self_report_max_tier),
        ] {
            if t > MAX_TIER {
                return Err(format!(
                    "policy.tiering.{name} must be a tier, 0 to {MAX_TIER}"
                ));
            }
        }
        if self.min_class_successes == 0 {
            return Err("policy.tiering.min_class_successes must be at least 1".into());
        }
        if self.review_interval_secs == 0 {
            return Err("policy.tiering.review_interval_secs must be at least 1".into());
        }
        Ok(())
    }

    /// Promotion into `tier`.
    pub fn step(&self, tier: u8) -> Option<&Step> {
        self.steps.iter().find(|s| s.tier == tier)
    }
}

/// What the controller knows about an agent.
#[derive(Debug, Clone)]
pub struct State<'a> {
    /// Current tier.
    pub tier: u8,
    /// Highest tier allowed.
    pub ceiling: u8,
    /// The parent's tier, for a sub-agent.
    pub parent_tier: Option<u8>,
    /// Pinned by an admin: the controller leaves the tier alone.
    pub pinned: bool,
    /// Suspended agents are left alone (a human resumes them).
    pub suspended: bool,
    /// Since when the agent is in its tier, Unix microseconds.
    pub tier_since: i64,
    /// No promotion before this (cool-down after a demotion).
    pub hold_until: Option<i64>,
    /// The last hard trigger.
    pub last_hard_at: Option<i64>,
    /// The agent's running evidence totals.
    pub totals: &'a [Total],
    /// Its drift from its team's humans, once measured.
    pub drift: Option<f64>,
    /// Its latest blocked violation (quota overruns aside), Unix microseconds.
    pub last_blocked_violation: Option<i64>,
}

/// Changes in a recent window, undecayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
// Named apart from the quotas' `Window` in the OpenAPI document, where names are global.
#[schema(as = OutcomeWindow)]
pub struct Window {
    /// Outcomes in the window.
    pub outcomes: u64,
    /// Of which failed, rolled back or never reported.
    pub bad: u64,
}

impl Window {
    fn bad_share(self) -> f64 {
        if self.outcomes == 0 {
            0.0
        } else {
            self.bad as f64 / self.outcomes as f64
        }
    }
}

/// How watched successes are spread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spread {
    /// Distinct days.
    pub days: u32,
    /// Distinct targets.
    pub targets: u32,
}

/// Why the controller acts at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HardTrigger {
    /// A critical-risk action was rolled back.
    CriticalRollback,
    /// The agent presented an unknown (forged) approval, a used one, someone else's, or one for another action.
    ForgedApproval,
    /// A violation on a security-policy change.
    SecurityPolicyViolation,
    /// `repeated_violations` blocked violations within `repeated_violation_days`.
    RepeatedViolations,
    /// An action judged severely anomalous went on to fail or be rolled back.
    ConfirmedAnomaly,
}

impl HardTrigger {
    /// The hard trigger a violation is, if any: its reason code and action class, and how many
    /// blocked violations the agent had in the window (this one included).
    pub fn of_violation(
        reason: ViolationReason,
        class: &str,
        blocked_recently: u64,
        policy: &TierPolicy,
    ) -> Option<HardTrigger> {
        if reason == ViolationReason::QuotaExceeded {
            // A quota overrun is a minor violation, never a hard trigger.
            None
        } else if reason.is_forged_consent() {
            Some(HardTrigger::ForgedApproval)
        } else if class == "security_policy_change" {
            Some(HardTrigger::SecurityPolicyViolation)
        } else if policy.repeated_violations > 0
            && blocked_recently >= u64::from(policy.repeated_violations)
        {
            Some(HardTrigger::RepeatedViolations)
        } else {
            None
        }
    }

    /// Reason code.
    pub fn code(self) -> &'static str {
        match self {
            HardTrigger::CriticalRollback => "critical_rollback",
            HardTrigger::ForgedApproval => "forged_approval",
            HardTrigger::SecurityPolicyViolation => "security_policy_violation",
            HardTrigger::RepeatedViolations => "repeated_violations",
            HardTrigger::ConfirmedAnomaly => "confirmed_severe_anomaly",
        }
    }
}

/// What the controller decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Move {
    /// Tier changes (up or down).
    Tier {
        /// The new tier.
        to: u8,
        /// Reason code.
        reason: String,
        /// A sentence for humans.
        text: String,
        /// Whether a cool-down starts (demotions).
        cool_down: bool,
        /// For a promotion, the classes it grants alone (the rest of the tier's new rights
        /// keep needing approval).
        earned: Option<BTreeSet<String>>,
    },
    /// The agent is suspended (fast error-budget burn).
    Suspend {
        /// A sentence for humans.
        text: String,
    },
}

/// One gate of the next promotion, and where the agent stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Gate {
    /// Gate name (`score`, `qualifying_successes`, `distinct_days`, …).
    pub gate: String,
    /// What it needs.
    pub needs: String,
    /// Where the agent is.
    pub has: String,
    /// Whether it holds.
    pub met: bool,
}

/// The next promotion and what it still needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NextPromotion {
    /// The tier it would be.
    pub tier: u8,
    /// Every gate; the promotion happens once all are met.
    pub gates: Vec<Gate>,
    /// The watched successes it rests on (decision ids), once read.
    pub rests_on: Vec<String>,
    /// The classes it would grant alone, once read.
    pub would_earn: Vec<String>,
}

impl NextPromotion {
    /// Whether every gate holds.
    pub fn ready(&self) -> bool {
        self.gates.iter().all(|g| g.met)
    }
}

fn days(us: i64) -> f64 {
    us as f64 / DAY_US
}

/// The gates of the next promotion. The watched work costs a query, so the caller reads it
/// only once the other gates hold (`None`: not read, not met).
pub fn next_promotion(
    state: &State<'_>,
    budget: Window,
    now: i64,
    policy: &CompiledPolicy,
    work: Option<&[Watched]>,
) -> Option<NextPromotion> {
    let (tp, trust) = (&policy.policy.tiering, &policy.policy.trust);
    let to = state.tier + 1;
    let step = tp.step(to)?;
    let mut gates = Vec::new();
    let mut gate = |gate: &str, needs: String, has: String, met: bool| {
        gates.push(Gate {
            gate: gate.into(),
            needs,
            has,
            met,
        })
    };
    gate(
        "controller",
        "tiering enabled, agent active and not pinned".into(),
        format!(
            "enabled={} suspended={} pinned={}",
            tp.enabled, state.suspended, state.pinned
        ),
        tp.enabled && !state.suspended && !state.pinned,
    );
    gate(
        "ceiling",
        format!("ceiling ≥ {to}"),
        format!("ceiling {}", state.ceiling),
        to <= state.ceiling,
    );
    if let Some(p) = state.parent_tier {
        gate(
            "parent",
            format!("parent's tier ≥ {to}"),
            format!("parent at tier {p}"),
            to <= p,
        );
    }
    let score = weigh(state.totals, now, trust, |_| true).score();
    gate(
        "score",
        format!("score ≥ {:.2}", step.bar),
        format!("{score:.3}"),
        score >= step.bar,
    );
    let in_tier = days(now - state.tier_since);
    gate(
        "time_in_tier",
        format!("{} days in tier {}", tp.min_days_in_tier, state.tier),
        format!("{in_tier:.1} days"),
        in_tier >= tp.min_days_in_tier,
    );
    let held = state.hold_until.is_some_and(|h| now < h);
    gate(
        "cool_down",
        "no cool-down running".into(),
        state
            .hold_until
            .filter(|_| held)
            .map_or("none".into(), |h| format!("{:.1} days left", days(h - now))),
        !held,
    );
    let hard = state
        .last_hard_at
        .is_some_and(|h| days(now - h) < tp.hard_window_days);
    gate(
        "no_hard_trigger",
        format!("no hard trigger in {} days", tp.hard_window_days),
        if hard {
            "one recently".into()
        } else {
            "none".into()
        },
        !hard,
    );
    let violated = state
        .last_blocked_violation
        .filter(|v| days(now - v) < tp.violation_hold_days);
    gate(
        "no_blocked_violation",
        format!("no blocked violation in {} days", tp.violation_hold_days),
        violated.map_or("none".into(), |v| {
            format!("one {:.1} days ago", days(now - v))
        }),
        violated.is_none(),
    );
    gate(
        "drift",
        format!("drift from the team's humans ≤ {:.2}", tp.max_drift),
        state
            .drift
            .map_or("not computed".into(), |d| format!("{d:.3}")),
        state.drift.is_none_or(|d| d <= tp.max_drift),
    );
    let spent = budget_spent(budget, tp);
    gate(
        "error_budget",
        format!(
            "changes failing ≤ {:.0}% over {} days",
            (1.0 - tp.slo) * 100.0,
            tp.slo_window_days
        ),
        format!("{}/{}", budget.bad, budget.outcomes),
        !spent || to <= tp.budget_cap_tier,
    );
    let mut rests_on = Vec::new();
    let mut would_earn = Vec::new();
    let vouched = if to > tp.self_report_max_tier {
        ", confirmed by the platform or a service"
    } else {
        ""
    };
    let scope =
        format!("work tier {to} newly allows alone, done under a human's approval{vouched}");
    match work {
        None => gate(
            "watched_work",
            format!("{} successes on {scope}", step.min_successes),
            "read once the other gates hold".into(),
            false,
        ),
        Some(work) => {
            let q = qualifying(work, to, policy, now);
            gate(
                "watched_successes",
                format!("{} successes on {scope}", step.min_successes),
                q.successes.len().to_string(),
                q.successes.len() >= step.min_successes as usize,
            );
            gate(
                "watched_score",
                format!("score ≥ {:.2} on that work", step.bar),
                format!("{:.3}", q.weight.score()),
                q.weight.score() >= step.bar,
            );
            let earned = q.earned(tp.min_class_successes);
            gate(
                "earned_classes",
                format!(
                    "{} watched successes in at least one class (the promotion grants alone only the classes that have them)",
                    tp.min_class_successes
                ),
                if q.by_class.is_empty() {
                    "none".into()
                } else {
                    q.by_class
                        .iter()
                        .map(|(c, n)| format!("{c} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                !earned.is_empty(),
            );
            gate(
                "distinct_days",
                format!("{} distinct days", tp.min_distinct_days),
                q.spread.days.to_string(),
                q.spread.days >= tp.min_distinct_days,
            );
            gate(
                "distinct_targets",
                format!("{} distinct targets", tp.min_distinct_targets),
                q.spread.targets.to_string(),
                q.spread.targets >= tp.min_distinct_targets,
            );
            would_earn = earned.into_iter().collect();
            rests_on = q.successes;
        }
    }
    Some(NextPromotion {
        tier: to,
        gates,
        rests_on,
        would_earn,
    })
}

fn budget_spent(w: Window, policy: &TierPolicy) -> bool {
    w.outcomes >= u64::from(policy.slo_min_outcomes) && w.bad_share() > 1.0 - policy.slo
}

/// Why the agent is close to a soft demotion, if it is: three quarters or more of its error
/// budget spent, or its score within 5% above the low-water mark (the weekly report's watch
/// list). `None` when it is not close, or cannot be demoted (pinned, suspended, at the floor).
pub fn demotion_warning(
    state: &State<'_>,
    budget: Window,
    now: i64,
    compiled: &CompiledPolicy,
) -> Option<String> {
    let (policy, trust) = (&compiled.policy.tiering, &compiled.policy.trust);
    if !policy.enabled || state.suspended || state.pinned {
        return None;
    }
    let allowed = 1.0 - policy.slo;
    if state.tier > policy.budget_cap_tier
        && budget.outcomes >= u64::from(policy.slo_min_outcomes)
        && allowed > 0.0
        && budget.bad_share() >= 0.75 * allowed
    {
        return Some(format!(
            "{:.0}% of its error budget spent ({} of {} changes bad in {} days)",
            (budget.bad_share() / allowed * 100.0).min(100.0),
            budget.bad,
            budget.outcomes,
            policy.slo_window_days
        ));
    }
    if state.tier <= policy.soft_floor_tier {
        return None;
    }
    let step = policy.step(state.tier)?;
    let w = weigh(state.totals, now, trust, |_| true);
    let low = policy.low_water * step.bar;
    let score = w.score();
    (w.positive + w.negative >= f64::from(step.min_successes) && score < low * 1.05).then(|| {
        format!(
            "score {score:.3} is within 5% of the low-water mark {low:.3} of tier {}",
            state.tier
        )
    })
}

/// What a tier review looks at besides the policies and the time.
#[derive(Debug, Clone, Copy)]
pub struct Review<'a> {
    /// The agent's state.
    pub state: &'a State<'a>,
    /// A hard trigger that set off the review, if one did.
    pub hard: Option<HardTrigger>,
    /// Outcomes over the error budget's window.
    pub budget: Window,
    /// Outcomes over the fast-burn window.
    pub burn: Window,
    /// The agent's watched work, if read.
    pub work: Option<&'a [Watched]>,
}

/// Whether a review after a violation can narrow the agent's tier. It cannot where the
/// controller leaves the agent alone, or where the agent is already at or below every tier such
/// a review moves agents down to: a hard trigger's, the spent error budget's cap and the soft
/// floor (a violation's review never reads the fast burn, so it never suspends). Such a review
/// may still write (a restated hard trigger) or widen, but the agent's next request has nothing
/// to wait for.
pub fn violation_can_narrow(tier: u8, pinned: bool, suspended: bool, policy: &TierPolicy) -> bool {
    let floor = policy
        .hard_demotion_tier
        .min(policy.budget_cap_tier)
        .min(policy.soft_floor_tier);
    policy.enabled && !pinned && !suspended && tier > floor
}

/// Decides whether the agent's tier moves. `hard` is a hard trigger that just happened;
/// `budget` and `burn` are the recent changes over `slo_window_days` and `fast_burn_window_hours`.
#[allow(clippy::too_many_arguments)]
pub fn decide(review: &Review<'_>, now: i64, compiled: &CompiledPolicy) -> Option<Move> {
    let (policy, trust) = (&compiled.policy.tiering, &compiled.policy.trust);
    let Review {
        state,
        hard,
        budget,
        burn,
        work,
    } = *review;
    if !policy.enabled || state.suspended || state.pinned {
        return None;
    }
    if let Some(h) = hard {
        let to = state.tier.min(policy.hard_demotion_tier);
        return (to < state.tier).then(|| Move::Tier {
            to,
            reason: h.code().into(),
            text: format!("hard trigger ({}): down to tier {to} at once", h.code()),
            cool_down: true,
            earned: None,
        });
    }
    let allowed = (1.0 - policy.slo).max(f64::EPSILON);
    if burn.outcomes >= u64::from(policy.fast_burn_min_outcomes)
        && burn.bad_share() / allowed >= policy.fast_burn_rate
    {
        return Some(Move::Suspend {
            text: format!(
                "error budget burning {:.1}× the sustainable rate ({} of {} changes bad in {} h): suspended until a human resumes it",
                burn.bad_share() / allowed,
                burn.bad,
                burn.outcomes,
                policy.fast_burn_window_hours
            ),
        });
    }
    if budget_spent(budget, policy) && state.tier > policy.budget_cap_tier {
        return Some(Move::Tier {
            to: policy.budget_cap_tier,
            reason: "error_budget_exhausted".into(),
            text: format!(
                "{} of {} changes bad in {} days, over the {:.0}% budget",
                budget.bad,
                budget.outcomes,
                policy.slo_window_days,
                (1.0 - policy.slo) * 100.0
            ),
            cool_down: true,
            earned: None,
        });
    }
    let dwelt = days(now - state.tier_since) >= policy.min_days_in_tier;
    if dwelt && state.tier > policy.soft_floor_tier {
        let step = policy.step(state.tier)?;
        let w = weigh(state.totals, now, trust, |_| true);
        let evidence = w.positive + w.negative;
        let low = policy.low_water * step.bar;
        if evidence >= f64::from(step.min_successes) && w.score() < low {
            return Some(Move::Tier {
                to: state.tier - 1,
                reason: "below_low_water".into(),
                text: format!(
                    "score {:.3} below the low-water mark {low:.3} of tier {}",
                    w.score(),
                    state.tier
                ),
                cool_down: true,
                earned: None,
            });
        }
    }
    let next = next_promotion(state, budget, now, compiled, work)?;
    next.ready().then(|| Move::Tier {
        to: next.tier,
        reason: "promotion".into(),
        text: format!(
            "every gate of tier {} holds ({}); granted alone: {}",
            next.tier,
            next.gates
                .iter()
                .map(|g| format!("{} {}", g.gate, g.has))
                .collect::<Vec<_>>()
                .join(", "),
            next.would_earn.join(", ")
        ),
        cool_down: false,
        earned: Some(next.would_earn.iter().cloned().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::records::OutcomeStatus;
    use crate::trust::{Evidence, totals_of};
    use crate::trust::{Kind, Source, TrustPolicy, half_life_us};

    const DAY: i64 = 86_400_000_000;

    fn compiled() -> CompiledPolicy {
        CompiledPolicy::new(Policy::default()).unwrap()
    }

    fn evidence(kind: Kind, env: &str, risk: RiskLevel, n: usize, at: i64) -> Vec<Evidence> {
        vec![
            Evidence {
                kind,
                at,
                environment: env.into(),
                risk
            };
            n
        ]
    }

    /// Thirty successes and ten rollbacks: a score below the low-water mark.
    fn mostly_rollbacks(t: &TrustPolicy) -> Vec<Total> {
        let mut e = evidence(Kind::Success, "production", RiskLevel::Low, 30, 0);
        e.extend(evidence(
            Kind::Rollback,
            "production",
            RiskLevel::Low,
            10,
            0,
        ));
        totals_of(&e, half_life_us(t))
    }

    fn state(tier: u8, totals: &[Total]) -> State<'_> {
        State {
            tier,
            ceiling: 4,
            parent_tier: None,
            pinned: false,
            suspended: false,
            tier_since: 0,
            hold_until: None,
            last_hard_at: None,
            totals,
            drift: None,
            last_blocked_violation: None,
        }
    }

    /// `n` approved actions of one kind with `outcome`, one a day from `first_day`, over
    /// `services` services.
    fn watched(
        class: &str,
        env: &str,
        n: usize,
        first_day: i64,
        services: usize,
        source: Source,
    ) -> Vec<Watched> {
        (0..n)
            .map(|i| Watched {
                decision_id: format!("{class}-{env}-{first_day}-{i}"),
                class: class.into(),
                environment: env.into(),
                service: format!("svc-{}", i % services),
                risk: compiled().table_risk(class, env, false),
                outcome: OutcomeStatus::Succeeded,
                source,
                at: (first_day + i as i64) * DAY,
            })
            .collect()
    }

    fn review<'a>(s: &'a State<'a>, work: Option<&'a [Watched]>) -> Review<'a> {
        Review {
            state: s,
            hard: None,
            budget: Window::default(),
            burn: Window::default(),
            work,
        }
    }

    fn gate(next: &NextPromotion, name: &str) -> Gate {
        next.gates
            .iter()
            .find(|g| g.gate == name)
            .cloned()
            .unwrap_or_else(|| panic!("no gate {name} in {next:?}"))
    }

    #[test]
    fn promotes_only_when_every_gate_holds() {
        let c = compiled();
        let totals = totals_of(
            &evidence(Kind::Success, "staging", RiskLevel::Low, 40, 9 * DAY),
            half_life_us(&c.policy.trust),
        );
        // Approved staging deploys at tier 1: tier 2 deploys to staging alone.
        let work = watched("deploy", "staging", 12, 0, 3, Source::Service);
        let s = state(1, &totals);
        let m = decide(&review(&s, Some(&work)), 12 * DAY, &c);
        let Some(Move::Tier {
            to: 2,
            earned: Some(earned),
            ..
        }) = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(earned, BTreeSet::from(["deploy".to_string()]));
        let next = next_promotion(&s, Window::default(), 12 * DAY, &c, Some(&work)).unwrap();
        assert_eq!(
            next.rests_on.len(),
            12,
            "the evidence lists the watched actions"
        );
        assert_eq!(next.rests_on[0], work[0].decision_id);
        // Drift from the humans within the policy's bound promotes; beyond it holds.
        for (drift, promoted) in [(Some(0.2), true), (Some(0.8), false)] {
            let drifting = State { drift, ..s.clone() };
            assert_eq!(
                decide(&review(&drifting, Some(&work)), 12 * DAY, &c).is_some(),
                promoted,
                "{drift:?}"
            );
        }
        // Too early in the tier, a cool-down, a hard trigger or a blocked violation lately, the
        // ceiling, the parent, a pin: no.
        let holds = [
            State {
                tier_since: 8 * DAY,
                ..s.clone()
            },
            State {
                hold_until: Some(13 * DAY),
                ..s.clone()
            },
            State {
                last_hard_at: Some(DAY),
                ..s.clone()
            },
            State {
                last_blocked_violation: Some(DAY),
                ..s.clone()
            },
            State {
                ceiling: 1,
                ..s.clone()
            },
            State {
                parent_tier: Some(1),
                ..s.clone()
            },
            State {
                pinned: true,
                ..s.clone()
            },
        ];
        for held in &holds {
            assert_eq!(
                decide(&review(held, Some(&work)), 12 * DAY, &c),
                None,
                "{held:?}"
            );
        }
        // The violation hold ends after `violation_hold_days`.
        let old = State {
            last_blocked_violation: Some(DAY),
            ..s.clone()
        };
        assert!(decide(&review(&old, Some(&work)), 16 * DAY, &c).is_some());
        let next = next_promotion(&holds[3], Window::default(), 12 * DAY, &c, Some(&work)).unwrap();
        let g = gate(&next, "no_blocked_violation");
        assert!(!g.met && g.has.starts_with("one 11.0 days ago"), "{g:?}");
        // Narrow work (one day, one service), or work not read: no.
        let narrow = watched("deploy", "staging", 12, 0, 1, Source::Service)
            .into_iter()
            .map(|w| Watched { at: 3 * DAY, ..w })
            .collect::<Vec<_>>();
        assert_eq!(decide(&review(&s, Some(&narrow)), 12 * DAY, &c), None);
        assert_eq!(
            decide(&review(&s, None), 12 * DAY, &c),
            None,
            "unread work is not met"
        );
    }

    #[test]
    fn farmed_work_never_promotes() {
        let c = compiled();
        let totals = totals_of(
            &evidence(Kind::Success, "production", RiskLevel::Low, 500, 20 * DAY),
            half_life_us(&c.policy.trust),
        );
        // Documentation updates in production, even approved ones: tier 1 already allows them
        // alone, so they say nothing about deploying.
        let docs = watched("docs_update", "production", 60, 0, 4, Source::Platform);
        let s = state(2, &totals);
        assert_eq!(decide(&review(&s, Some(&docs)), 21 * DAY, &c), None);
        let next = next_promotion(&s, Window::default(), 21 * DAY, &c, Some(&docs)).unwrap();
        let g = gate(&next, "watched_successes");
        assert!(!g.met && g.has == "0", "{g:?}");
        // The same at tier 1 with staging docs.
        let staging_docs = watched("docs_update", "staging", 60, 0, 4, Source::Platform);
        assert_eq!(
            decide(
                &review(&state(1, &totals), Some(&staging_docs)),
                21 * DAY,
                &c
            ),
            None
        );
        // Approved low-risk production deploys open tier 3, not tier 4 (which newly allows
        // medium-risk production work only).
        let deploys = watched("deploy", "production", 25, 0, 3, Source::Platform);
        assert!(matches!(
            decide(&review(&state(2, &totals), Some(&deploys)), 26 * DAY, &c),
            Some(Move::Tier { to: 3, .. })
        ));
        assert_eq!(
            decide(&review(&state(3, &totals), Some(&deploys)), 26 * DAY, &c),
            None
        );
    }

    #[test]
    fn self_reports_alone_stop_at_self_report_max_tier() {
        let c = compiled();
        let totals = totals_of(
            &evidence(Kind::Success, "production", RiskLevel::Low, 200, 20 * DAY),
            half_life_us(&c.policy.trust),
        );
        let own = |class, env, n| watched(class, env, n, 0, 3, Source::SelfReported);
        // Into tier 2 the agent's own word counts (weighted), into tier 3 it does not.
        assert!(matches!(
            decide(
                &review(&state(1, &totals), Some(&own("deploy", "staging", 25))),
                26 * DAY,
                &c
            ),
            Some(Move::Tier { to: 2, .. })
        ));
        let prod = own("deploy", "production", 40);
        assert_eq!(
            decide(&review(&state(2, &totals), Some(&prod)), 41 * DAY, &c),
            None
        );
        let next = next_promotion(
            &state(2, &totals),
            Window::default(),
            41 * DAY,
            &c,
            Some(&prod),
        )
        .unwrap();
        assert_eq!(gate(&next, "watched_successes").has, "0");
        // A failure counts against the watched score whoever reports it.
        let mut mixed = watched("deploy", "production", 25, 0, 3, Source::Service);
        for w in mixed.iter_mut().take(8) {
            w.outcome = OutcomeStatus::Failed;
            w.source = Source::SelfReported;
        }
        let next = next_promotion(
            &state(2, &totals),
            Window::default(),
            26 * DAY,
            &c,
            Some(&mixed),
        )
        .unwrap();
        assert!(!gate(&next, "watched_score").met, "{next:?}");
    }

    #[test]
    fn a_promotion_grants_alone_only_the_classes_watched_and_more_are_earned_later() {
        let c = compiled();
        let totals = totals_of(
            &evidence(Kind::Success, "production", RiskLevel::Low, 200, 20 * DAY),
            half_life_us(&c.policy.trust),
        );
        let mut work = watched("deploy", "production", 24, 0, 3, Source::Service);
        work.extend(watched(
            "config_change",
            "production",
            1,
            5,
            1,
            Source::Service,
        ));
        let m = decide(&review(&state(2, &totals), Some(&work)), 25 * DAY, &c);
        let Some(Move::Tier {
            to: 3,
            earned: Some(earned),
            ..
        }) = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(earned, BTreeSet::from(["deploy".to_string()]));
        // At tier 3 two more approved config changes make three: the class is earned.
        assert!(newly_earned(&work, 3, &earned, &c, 26 * DAY).is_empty());
        work.extend(watched(
            "config_change",
            "production",
            2,
            26,
            1,
            Source::Service,
        ));
        assert_eq!(
            newly_earned(&work, 3, &earned, &c, 28 * DAY),
            BTreeSet::from(["config_change".to_string()])
        );
    }

    #[test]
    fn hard_triggers_demote_at_once_and_soft_ones_after_the_dwell() {
        let c = compiled();
        let (p, t) = (&c.policy.tiering, &c.policy.trust);
        let totals = totals_of(
            &evidence(Kind::Success, "production", RiskLevel::Low, 100, 0),
            half_life_us(t),
        );
        let s = State {
            tier_since: DAY,
            ..state(3, &totals)
        };
        let m = decide(
            &Review {
                hard: Some(HardTrigger::ForgedApproval),
                ..review(&s, None)
            },
            DAY + 1,
            &c,
        );
        assert!(
            matches!(
                m,
                Some(Move::Tier {
                    to: 1,
                    cool_down: true,
                    ..
                })
            ),
            "{m:?}"
        );
        // Mostly rollbacks: below the low-water mark, but only once the dwell is over.
        let totals = mostly_rollbacks(t);
        let s = state(3, &totals);
        assert_eq!(decide(&review(&s, None), DAY, &c), None);
        assert!(matches!(
            decide(&review(&s, None), 8 * DAY, &c),
            Some(Move::Tier { to: 2, .. })
        ));
        // Little evidence: a human-given tier stays.
        let few = totals_of(
            &evidence(Kind::Failure, "production", RiskLevel::Low, 3, 0),
            half_life_us(t),
        );
        assert_eq!(decide(&review(&state(3, &few), None), 8 * DAY, &c), None);
        assert_eq!(
            HardTrigger::of_violation(ViolationReason::NoGrant, "deploy", 3, p),
            Some(HardTrigger::RepeatedViolations)
        );
        assert_eq!(
            HardTrigger::of_violation(ViolationReason::NoGrant, "deploy", 2, p),
            None
        );
        assert_eq!(
            HardTrigger::of_violation(ViolationReason::ApprovalUnknown, "deploy", 1, p),
            Some(HardTrigger::ForgedApproval)
        );
        assert_eq!(
            HardTrigger::of_violation(ViolationReason::ApprovalReused, "deploy", 1, p),
            Some(HardTrigger::ForgedApproval)
        );
        assert_eq!(
            HardTrigger::of_violation(
                ViolationReason::QuotaExceeded,
                "security_policy_change",
                9,
                p
            ),
            None
        );
    }

    #[test]
    fn the_watch_list_warns_before_a_demotion() {
        let c = compiled();
        let t = &c.policy.trust;
        let strong = totals_of(
            &evidence(Kind::Success, "production", RiskLevel::Low, 100, 0),
            half_life_us(t),
        );
        let s = state(3, &strong);
        // The budget allows 5% bad changes over at least 20: 4 of 100 is 80% of it spent.
        let w = |outcomes, bad| Window { outcomes, bad };
        let warned = demotion_warning(&s, w(100, 4), DAY, &c).unwrap();
        assert!(
            warned.starts_with("80% of its error budget spent"),
            "{warned}"
        );
        assert_eq!(
            demotion_warning(&s, w(100, 3), DAY, &c),
            None,
            "60% spent is not close"
        );
        assert_eq!(
            demotion_warning(&s, w(10, 4), DAY, &c),
            None,
            "too few outcomes to judge"
        );
        // At or below the budget's cap, a spent budget demotes nothing.
        assert_eq!(
            demotion_warning(&state(2, &strong), w(100, 4), DAY, &c),
            None
        );
        // Mostly rollbacks: the score is under the low-water mark, so it is close.
        let weak = mostly_rollbacks(t);
        let warned = demotion_warning(&state(3, &weak), w(0, 0), DAY, &c).unwrap();
        assert!(warned.contains("low-water mark"), "{warned}");
        let pinned = State {
            pinned: true,
            ..state(3, &weak)
        };
        assert_eq!(demotion_warning(&pinned, w(100, 4), DAY, &c), None);
    }

    #[test]
    fn a_violation_review_narrows_only_agents_above_its_floors() {
        let c = compiled();
        let t = &c.policy.trust;
        // Mostly rollbacks, long in the tier: below the low-water mark.
        let totals = mostly_rollbacks(t);
        let spent = Window {
            outcomes: 40,
            bad: 3,
        };
        let floors = [(1, 2, 1), (0, 0, 0), (3, 2, 1), (1, 3, 2), (2, 2, 2)];
        let hards = [None, Some(HardTrigger::RepeatedViolations)];
        let mut narrowed = 0;
        for (hard_tier, cap, soft) in floors {
            let mut policy = c.policy.clone();
            policy.tiering.hard_demotion_tier = hard_tier;
            policy.tiering.budget_cap_tier = cap;
            policy.tiering.soft_floor_tier = soft;
            let c = CompiledPolicy::new(policy).unwrap();
            let p = &c.policy.tiering;
            for tier in 0..=MAX_TIER {
                for (pinned, suspended) in [(false, false), (true, false), (false, true)] {
                    let s = State {
                        pinned,
                        suspended,
                        ..state(tier, &totals)
                    };
                    for (hard, budget) in hards
                        .iter()
                        .flat_map(|h| [(*h, spent), (*h, Window::default())])
                    {
                        let m = decide(
                            &Review {
                                hard,
                                budget,
                                ..review(&s, None)
                            },
                            30 * DAY,
                            &c,
                        );
                        let narrows = match m {
                            Some(Move::Tier { to, .. }) => to < tier,
                            Some(Move::Suspend { .. }) => true,
                            None => false,
                        };
                        if narrows {
                            narrowed += 1;
                            assert!(
                                violation_can_narrow(tier, pinned, suspended, p),
                                "tier {tier}, floors {hard_tier}/{cap}/{soft}: {m:?}"
                            );
                        }
                    }
                }
            }
        }
        assert!(narrowed > 20, "the cases narrow somewhere: {narrowed}");
        let p = &c.policy.tiering;
        assert!(!violation_can_narrow(1, false, false, p));
        assert!(violation_can_narrow(2, false, false, p));
        assert!(!violation_can_narrow(2, true, false, p));
    }

    #[test]
    fn error_budget_caps_and_fast_burn_suspends() {
        let c = compiled();
        let totals = totals_of(
            &evidence(Kind::Success, "production", RiskLevel::Medium, 200, 0),
            half_life_us(&c.policy.trust),
        );
        let s = state(4, &totals);
        let with = |budget, burn| Review {
            budget,
            burn,
            ..review(&s, None)
        };
        let spent = Window {
            outcomes: 40,
            bad: 3,
        };
        assert!(matches!(
            decide(&with(spent, Window::default()), DAY, &c),
            Some(Move::Tier { to: 2, .. })
        ));
        let burning = Window {
            outcomes: 6,
            bad: 5,
        };
        assert!(matches!(
            decide(&with(Window::default(), burning), DAY, &c),
            Some(Move::Suspend { .. })
        ));
        // Within budget: nothing.
        assert_eq!(
            decide(
                &with(
                    Window {
                        outcomes: 40,
                        bad: 2
                    },
                    Window {
                        outcomes: 6,
                        bad: 1
                    }
                ),
                DAY,
                &c
            ),
            None
        );
    }

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(TierPolicy::default().validate(), Ok(()));
        let mut p = TierPolicy::default();
        p.steps.pop();
        assert!(p.validate().unwrap_err().contains("steps"));
        let p = TierPolicy {
            min_class_successes: 0,
            ..TierPolicy::default()
        };
        assert!(p.validate().unwrap_err().contains("min_class_successes"));
    }
}
