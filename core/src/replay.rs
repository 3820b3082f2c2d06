//! What-if for trust policy (`warden trust replay`): an agent's recorded evidence over a period
//! replayed through the trust engine and the tier controller under another policy, day by day,
//! from the tier it had when the period began. Pure: the caller reads the record, nothing is
//! written.
//!
//! Replayed: outcomes (with who vouched for them), violations (and the hard triggers they are),
//! rolled-back critical actions, watched work, time in tier, cool-downs and the error budget.
//! Not replayed: drift (it is measured from activity, not policy), anomaly confirmations, the
//! fast burn (a suspension waits for a human), and admins' own tier changes during the period.

use serde::Serialize;

use crate::policy::{CompiledPolicy, RiskLevel, ViolationMode};
use crate::records::{OutcomeStatus, ViolationReason};
use crate::tiering::{
    DAY_US, HardTrigger, Move, NextPromotion, Review, State, Watched, Window, decide,
    next_promotion,
};
use crate::trust::{Kind, Source, Total, add, half_life_us, weigh};

/// An outcome in the record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedOutcome {
    /// What happened.
    pub outcome: OutcomeStatus,
    /// Who vouches for it.
    pub source: Source,
    /// The action's environment.
    pub environment: String,
    /// Its risk.
    pub risk: RiskLevel,
    /// When it was reported, Unix microseconds.
    pub at: i64,
}

/// A violation in the record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedViolation {
    /// Why it was one.
    pub reason: ViolationReason,
    /// How it was handled.
    pub mode: ViolationMode,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Risk of what was attempted.
    pub risk: RiskLevel,
    /// When, Unix microseconds.
    pub at: i64,
}

/// One agent's record over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The agent.
    pub agent: String,
    /// Its tier when the period began.
    pub tier: u8,
    /// Its ceiling.
    pub ceiling: u8,
    /// Pinned by an admin (the controller leaves it alone).
    pub pinned: bool,
    /// Outcomes, any order.
    pub outcomes: Vec<RecordedOutcome>,
    /// Violations, any order.
    pub violations: Vec<RecordedViolation>,
    /// Watched work, any order.
    pub watched: Vec<Watched>,
}

/// A tier move the replay made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayedMove {
    /// When (RFC 3339).
    pub at: String,
    /// From tier.
    pub from: u8,
    /// To tier.
    pub to: u8,
    /// Reason code.
    pub reason: String,
    /// A sentence for humans.
    pub text: String,
}

/// Where an agent would stand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    /// The agent.
    pub agent: String,
    /// Its tier when the period began.
    pub from_tier: u8,
    /// The tier it would stand at now.
    pub tier: u8,
    /// Its score now under the policy.
    pub score: f64,
    /// Whether a fast error-budget burn would have suspended it (the replay stops there).
    pub suspended: bool,
    /// Every move, oldest first.
    pub moves: Vec<ReplayedMove>,
    /// The next promotion's gates as of the end (absent at tier 4).
    pub next_promotion: Option<NextPromotion>,
}

/// Replays `record` from `from` to `to` (Unix microseconds) under `policy`.
pub fn replay(record: &Record, from: i64, to: i64, policy: &CompiledPolicy) -> Replayed {
    let (tp, trust) = (&policy.policy.tiering, &policy.policy.trust);
    let h = half_life_us(trust);
    let mut outcomes = record.outcomes.clone();
    outcomes.sort_by_key(|o| o.at);
    let mut violations = record.violations.clone();
    violations.sort_by_key(|v| v.at);
    let mut watched = record.watched.clone();
    watched.sort_by_key(|w| w.at);

    let mut tier = record.tier;
    let (mut tier_since, mut hold_until, mut last_hard_at) = (from, None, None);
    let mut last_blocked_violation = None;
    let mut totals: Vec<Total> = Vec::new();
    let mut moves = Vec::new();
    let mut suspended = false;
    // Evidence before the period still weighs (decayed): it is part of where the agent stood.
    let (mut next_outcome, mut next_violation) = (0, 0);

    // Each day's evidence is folded in order; hard triggers act when they happen, the rest at
    // the day's end (the service reviews after each outcome and every hour, so a day is the
    // coarsest a move can be late by).
    let mut now = from;
    while now < to && !suspended {
        let day_end = (now + DAY_US as i64).min(to);
        let mut hard_at: Option<(HardTrigger, i64)> = None;
        while let Some(o) = outcomes.get(next_outcome).filter(|o| o.at < day_end) {
            add(
                &mut totals,
                &o.environment,
                o.risk,
                Kind::of_outcome(o.outcome, o.source),
                o.at,
                1,
                h,
            );
            if o.outcome == OutcomeStatus::RolledBack
                && o.risk == RiskLevel::Critical
                && o.at >= from
            {
                hard_at.get_or_insert((HardTrigger::CriticalRollback, o.at));
            }
            next_outcome += 1;
        }
        while let Some(v) = violations.get(next_violation).filter(|v| v.at < day_end) {
            let kind = Kind::of_violation(v.mode, v.reason);
            add(&mut totals, &v.environment, v.risk, kind, v.at, 1, h);
            if kind == Kind::Violation {
                last_blocked_violation = Some(v.at);
            }
            // As the controller does: every violation is looked at (a forged approval, a
            // security-policy change in flag mode), with the blocked ones of the window counted.
            let window = v.at - (tp.repeated_violation_days * DAY_US) as i64;
            let blocked = violations[..=next_violation]
                .iter()
                .filter(|w| {
                    w.at >= window && Kind::of_violation(w.mode, w.reason) == Kind::Violation
                })
                .count() as u64;
            if v.at >= from
                && let Some(t) = HardTrigger::of_violation(v.reason, &v.class, blocked, tp)
            {
                hard_at.get_or_insert((t, v.at));
            }
            next_violation += 1;
        }
        let at = match hard_at {
            Some((_, at)) => at,
            None => day_end,
        };
        let budget = window(&outcomes, at - (tp.slo_window_days * DAY_US) as i64, at);
        // The controller reads watched work of the last three half-lives.
        let oldest = at - (trust.half_life_days * 3.0 * DAY_US) as i64;
        let work: Vec<Watched> = watched
            .iter()
            .filter(|w| w.at <= at && w.at >= oldest)
            .cloned()
            .collect();
        let state = State {
            tier,
            ceiling: record.ceiling,
            parent_tier: None,
            pinned: record.pinned,
            suspended: false,
            tier_since,
            hold_until,
            last_hard_at,
            totals: &totals,
            drift: None,
            last_blocked_violation,
        };
        let review = Review {
            state: &state,
            hard: hard_at.map(|(t, _)| t),
            budget,
            burn: Window::default(),
            work: Some(&work),
        };
        let decided = decide(&review, at, policy);
        if hard_at.is_some() && tp.enabled && !record.pinned {
            last_hard_at = Some(at);
            hold_until = Some(at + (tp.cool_down_days * DAY_US) as i64);
        }
        match decided {
            Some(Move::Tier {
                to: new,
                reason,
                text,
                cool_down,
                ..
            }) => {
                moves.push(ReplayedMove {
                    at: crate::clock::format_micros(at),
                    from: tier,
                    to: new,
                    reason,
                    text,
                });
                tier = new;
                tier_since = at;
                if cool_down {
                    hold_until = Some(at + (tp.cool_down_days * DAY_US) as i64);
                }
            }
            Some(Move::Suspend { text }) => {
                moves.push(ReplayedMove {
                    at: crate::clock::format_micros(at),
                    from: tier,
                    to: tier,
                    reason: "fast_burn".into(),
                    text,
                });
                suspended = true;
            }
            None => {}
        }
        now = day_end;
    }
    let state = State {
        tier,
        ceiling: record.ceiling,
        parent_tier: None,
        pinned: record.pinned,
        suspended,
        tier_since,
        hold_until,
        last_hard_at,
        totals: &totals,
        drift: None,
        last_blocked_violation,
    };
    let budget = window(&outcomes, to - (tp.slo_window_days * DAY_US) as i64, to);
    let oldest = to - (trust.half_life_days * 3.0 * DAY_US) as i64;
    let recent: Vec<Watched> = watched.into_iter().filter(|w| w.at >= oldest).collect();
    Replayed {
        agent: record.agent.clone(),
        from_tier: record.tier,
        tier,
        score: weigh(&totals, to, trust, |_| true).score(),
        suspended,
        moves,
        next_promotion: next_promotion(&state, budget, to, policy, Some(&recent)),
    }
}

/// Outcomes and bad ones with `since <= at <= until`.
fn window(outcomes: &[RecordedOutcome], since: i64, until: i64) -> Window {
    let recent = outcomes.iter().filter(|o| o.at >= since && o.at <= until);
    let (mut w, mut n) = (Window::default(), 0);
    for o in recent {
        n += 1;
        if o.outcome != OutcomeStatus::Succeeded {
            w.bad += 1;
        }
    }
    w.outcomes = n;
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    const DAY: i64 = 86_400_000_000;

    fn compiled(tweak: impl FnOnce(&mut Policy)) -> CompiledPolicy {
        let mut p = Policy::default();
        tweak(&mut p);
        CompiledPolicy::new(p).unwrap()
    }

    /// Two approved staging deploys a day for three weeks, each with a success `source` vouches
    /// for; a forbidden production deploy on `violation_day` if given.
    fn record(source: Source, violation_day: Option<i64>) -> Record {
        let mut r = Record {
            agent: "bot".into(),
            tier: 1,
            ceiling: 4,
            pinned: false,
            outcomes: Vec::new(),
            violations: Vec::new(),
            watched: Vec::new(),
        };
        for day in 0..21 {
            for i in 0..2 {
                let at = day * DAY + (10 + i) * 3_600_000_000;
                r.outcomes.push(RecordedOutcome {
                    outcome: OutcomeStatus::Succeeded,
                    source,
                    environment: "staging".into(),
                    risk: RiskLevel::Low,
                    at,
                });
                r.watched.push(Watched {
                    decision_id: format!("d{day}-{i}"),
                    class: "deploy".into(),
                    environment: "staging".into(),
                    service: format!("svc-{}", (day + i) % 3),
                    risk: RiskLevel::Low,
                    outcome: OutcomeStatus::Succeeded,
                    source,
                    at,
                });
            }
        }
        if let Some(day) = violation_day {
            r.violations.push(RecordedViolation {
                reason: ViolationReason::NoGrant,
                mode: ViolationMode::Block,
                class: "deploy".into(),
                environment: "production".into(),
                risk: RiskLevel::Low,
                at: day * DAY,
            });
        }
        r
    }

    #[test]
    fn the_same_record_under_another_policy() {
        let current = compiled(|_| {});
        let r = record(Source::SelfReported, Some(2));
        // Today's policy: promoted once the violation's hold is over.
        let now = replay(&r, 0, 21 * DAY, &current);
        assert_eq!((now.from_tier, now.tier), (1, 2), "{now:?}");
        assert_eq!(now.moves.len(), 1);
        assert!(now.moves[0].at.as_str() >= "1970-01-17", "{:?}", now.moves);
        // A proposal that holds promotions 30 days after a violation: not yet.
        let strict = compiled(|p| p.tiering.violation_hold_days = 30.0);
        let held = replay(&r, 0, 21 * DAY, &strict);
        assert_eq!(held.tier, 1);
        let gate = held
            .next_promotion
            .as_ref()
            .unwrap()
            .gates
            .iter()
            .find(|g| g.gate == "no_blocked_violation")
            .unwrap()
            .clone();
        assert!(!gate.met, "{gate:?}");
        // A proposal where self-reports never count towards a promotion: no watched work.
        let no_self = compiled(|p| p.tiering.self_report_max_tier = 0);
        assert_eq!(replay(&r, 0, 21 * DAY, &no_self).tier, 1);
        // The same work vouched for by a pipeline, under that proposal: promoted.
        let vouched = record(Source::Service, None);
        assert_eq!(replay(&vouched, 0, 21 * DAY, &no_self).tier, 2);
    }

    #[test]
    fn hard_triggers_replay_at_once() {
        let policy = compiled(|_| {});
        let mut r = record(Source::Service, None);
        r.tier = 3;
        for i in 0..3 {
            r.violations.push(RecordedViolation {
                reason: ViolationReason::NoGrant,
                mode: ViolationMode::Block,
                class: "db_migration".into(),
                environment: "production".into(),
                risk: RiskLevel::High,
                at: 5 * DAY + i * 3_600_000_000,
            });
        }
        let replayed = replay(&r, 0, 21 * DAY, &policy);
        assert_eq!(
            replayed.moves[0].reason, "repeated_violations",
            "{replayed:?}"
        );
        assert_eq!((replayed.moves[0].from, replayed.moves[0].to), (3, 1));
        assert!(replayed.tier <= 2);
        // Pinned: the controller would have left it alone.
        r.pinned = true;
        assert!(replay(&r, 0, 21 * DAY, &policy).moves.is_empty());
    }
}
