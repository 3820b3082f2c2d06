//! Properties of promotion over random agents and histories, simulated day by day with the
//! pure rules (the default policy): an agent acts within its tier (alone where the tier allows,
//! under a human's approval where it asks for one), now and then attempts something forbidden,
//! and the controller reviews it every evening.
//!
//! - No promotion rests on anything but watched work: every class a promotion grants alone has
//!   `min_class_successes` successes the agent did under approval, of the kind the new tier newly
//!   allows (and, above `self_report_max_tier`, vouched for by the platform or a service). So
//!   any amount of low-risk or unwatched success promotes nobody.
//! - No agent with a blocked violation within `violation_hold_days` is promoted.

use proptest::prelude::*;
use warden_core::policy::{CompiledPolicy, Permission, Policy};
use warden_core::records::OutcomeStatus;
use warden_core::tiering::{Move, Review, State, Watched, Window, decide, newly_allowed};
use warden_core::trust::{Kind, Source, Total, add, half_life_us};

const DAY: i64 = 86_400_000_000;
const CLASSES: [&str; 7] = [
    "docs_update",
    "run_tests",
    "deploy",
    "config_change",
    "infra_create",
    "db_migration",
    "api_call",
];
const ENVS: [&str; 3] = ["dev", "staging", "production"];
const OUTCOMES: [OutcomeStatus; 4] = [
    OutcomeStatus::Succeeded,
    OutcomeStatus::Succeeded,
    OutcomeStatus::Succeeded,
    OutcomeStatus::Failed,
];

/// One thing the agent does: what, where, how it went, who vouches, and whether it tries it
/// even when its tier forbids it.
#[derive(Debug, Clone)]
struct Act {
    class: usize,
    env: usize,
    service: usize,
    outcome: usize,
    source: usize,
    forbidden_attempt: bool,
}

fn act() -> impl Strategy<Value = Act> {
    (
        0..CLASSES.len(),
        0..ENVS.len(),
        0..4usize,
        0..OUTCOMES.len(),
        0..3usize,
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(class, env, service, outcome, source, forbidden_attempt)| Act {
                class,
                env,
                service,
                outcome,
                source,
                forbidden_attempt,
            },
        )
}

/// A history: the starting tier and each day's acts.
fn history() -> impl Strategy<Value = (u8, Vec<Vec<Act>>)> {
    (
        1u8..=3,
        prop::collection::vec(prop::collection::vec(act(), 0..10), 20..70),
    )
}

/// A promotion the simulation saw, and everything the agent had done under approval by then.
struct Promotion {
    at: i64,
    to: u8,
    earned: Vec<String>,
    work: Vec<Watched>,
    last_blocked_violation: Option<i64>,
}

/// Runs a history; with `approvals` false no human approves anything (what needs approval is
/// not done).
fn simulate(
    policy: &CompiledPolicy,
    tier: u8,
    days: &[Vec<Act>],
    approvals: bool,
) -> Vec<Promotion> {
    let h = half_life_us(&policy.policy.trust);
    let mut tier = tier;
    let (mut tier_since, mut hold_until) = (0i64, None);
    let mut totals: Vec<Total> = Vec::new();
    let mut work: Vec<Watched> = Vec::new();
    let mut last_blocked_violation = None;
    let mut promotions = Vec::new();
    for (day, acts) in days.iter().enumerate() {
        let day = day as i64;
        for (i, a) in acts.iter().enumerate() {
            let at = day * DAY + (9 + i as i64 % 8) * 3_600_000_000;
            let (class, env) = (CLASSES[a.class], ENVS[a.env]);
            let service = format!("svc-{}", a.service);
            let risk = policy.table_risk(class, env, false);
            let outcome = OUTCOMES[a.outcome];
            let source = Source::ALL[a.source];
            match policy.permission(tier, class, env, &service, risk) {
                Permission::Allowed => {
                    add(
                        &mut totals,
                        env,
                        risk,
                        Kind::of_outcome(outcome, source),
                        at,
                        1,
                        h,
                    );
                }
                Permission::NeedsApproval if !approvals => {}
                Permission::NeedsApproval => {
                    add(
                        &mut totals,
                        env,
                        risk,
                        Kind::of_outcome(outcome, source),
                        at,
                        1,
                        h,
                    );
                    work.push(Watched {
                        decision_id: format!("d{day}-{i}"),
                        class: class.into(),
                        environment: env.into(),
                        service,
                        risk,
                        outcome,
                        source,
                        at,
                    });
                }
                Permission::NoGrant | Permission::ExplicitDeny if a.forbidden_attempt => {
                    add(&mut totals, env, risk, Kind::Violation, at, 1, h);
                    last_blocked_violation = Some(at);
                }
                Permission::NoGrant | Permission::ExplicitDeny => {}
            }
        }
        let now = day * DAY + 20 * 3_600_000_000;
        let state = State {
            tier,
            ceiling: 4,
            parent_tier: None,
            pinned: false,
            suspended: false,
            tier_since,
            hold_until,
            last_hard_at: None,
            totals: &totals,
            drift: None,
            last_blocked_violation,
        };
        let review = Review {
            state: &state,
            hard: None,
            budget: Window::default(),
            burn: Window::default(),
            work: Some(&work),
        };
        match decide(&review, now, policy) {
            Some(Move::Tier { to, earned, .. }) if to > tier => {
                promotions.push(Promotion {
                    at: now,
                    to,
                    earned: earned.unwrap_or_default().into_iter().collect(),
                    work: work.clone(),
                    last_blocked_violation,
                });
                tier = to;
                tier_since = now;
            }
            Some(Move::Tier { to, cool_down, .. }) => {
                tier = to;
                tier_since = now;
                if cool_down {
                    hold_until =
                        Some(now + (policy.policy.tiering.cool_down_days * DAY as f64) as i64);
                }
            }
            Some(Move::Suspend { .. }) => break,
            None => {}
        }
    }
    promotions
}

fn check(policy: &CompiledPolicy, p: &Promotion) -> Result<(), TestCaseError> {
    let tp = &policy.policy.tiering;
    prop_assert!(
        !p.earned.is_empty(),
        "promoted to {} granting nothing",
        p.to
    );
    for class in &p.earned {
        let watched = p
            .work
            .iter()
            .filter(|w| {
                &w.class == class
                    && w.outcome == OutcomeStatus::Succeeded
                    && (p.to <= tp.self_report_max_tier || w.source != Source::SelfReported)
                    && newly_allowed(policy, p.to, &w.class, &w.environment, &w.service, w.risk)
            })
            .count();
        prop_assert!(
            watched >= tp.min_class_successes as usize,
            "tier {} granted `{class}` alone on {watched} watched successes",
            p.to
        );
    }
    if let Some(v) = p.last_blocked_violation {
        prop_assert!(
            (p.at - v) as f64 >= tp.violation_hold_days * DAY as f64,
            "promoted to {} {:.1} days after a blocked violation",
            p.to,
            (p.at - v) as f64 / DAY as f64
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn promotions_rest_on_watched_work_and_wait_out_violations((tier, days) in history()) {
        let policy = CompiledPolicy::new(Policy::default()).unwrap();
        for p in simulate(&policy, tier, &days, true) {
            check(&policy, &p)?;
        }
    }

    #[test]
    fn low_risk_and_unwatched_success_alone_promotes_nobody(
        tier in 1u8..=3,
        days in prop::collection::vec(prop::collection::vec(act(), 0..12), 20..90),
    ) {
        // Only what the tier allows alone (no approvals, no attempts): however much of it.
        let policy = CompiledPolicy::new(Policy::default()).unwrap();
        let alone: Vec<Vec<Act>> = days
            .into_iter()
            .map(|acts| acts.into_iter().map(|a| Act { forbidden_attempt: false, ..a }).collect())
            .collect();
        prop_assert!(simulate(&policy, tier, &alone, false).is_empty());
    }
}

/// The simulation can promote at all: an agent that deploys to staging under approval every
/// day, on several services, is promoted to tier 2 granting deploys alone. (Without this the
/// properties above could hold because nothing is ever promoted.) The same history with one
/// forbidden production deploy on day 3 waits out the violation hold.
#[test]
fn an_agent_watched_at_its_work_is_promoted() {
    let policy = CompiledPolicy::new(Policy::default()).unwrap();
    let deploy = |env, service, forbidden_attempt| Act {
        class: 2,
        env,
        service,
        outcome: 0,
        source: 0,
        forbidden_attempt,
    };
    let days: Vec<Vec<Act>> = (0..30)
        .map(|d| vec![deploy(1, d % 3, false), deploy(1, (d + 1) % 3, false)])
        .collect();
    let promotions = simulate(&policy, 1, &days, true);
    assert_eq!(promotions.len(), 1, "one promotion, into tier 2");
    assert_eq!(promotions[0].to, 2);
    assert_eq!(promotions[0].earned, vec!["deploy".to_string()]);
    assert!(promotions[0].at < 10 * DAY, "{}", promotions[0].at / DAY);
    let mut tried = days.clone();
    tried[3].push(deploy(2, 0, true));
    let later = simulate(&policy, 1, &tried, true);
    assert_eq!(later.len(), 1);
    assert!(later[0].at >= 17 * DAY, "{}", later[0].at / DAY);
}
