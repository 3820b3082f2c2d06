//! A generated organisation: humans with daily rhythms and on-call nights, agents that work like
//! them, and agents with injected anomalies (a burst, off-hours production changes, first-ever
//! targets, oversized changes, a new environment). Four weeks of human activity go in through
//! `POST /v1/events`, the baselines are recomputed, and then a week of agent actions is decided
//! by the real server with the reference plugins it runs by default, on a moving clock. The test
//! prints the precision and recall of the findings and holds both to 0.9, and holds the
//! human-like agents to no finding at all.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use warden::clock::{Clock as _, ManualClock, format_micros, parse_micros};

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer};

both_backends!(anomalies_are_found_and_human_like_agents_are_left_alone);

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
const TARGETS: [&str; 4] = [
    "deployment/payments-api",
    "deployment/payments-worker",
    "deployment/payments-cron",
    "configmap/payments",
];

/// What a human or a human-like agent does: a class and environment by the team's mix, a
/// known target, and a change size from the team's (log-normal) distribution.
fn ordinary(rng: &mut StdRng) -> (&'static str, &'static str, &'static str, u32) {
    let (class, env) = match rng.random_range(0..10) {
        0..5 => ("deploy", "staging"),
        5..7 => ("deploy", "production"),
        7..9 => ("config_change", "staging"),
        _ => ("config_change", "production"),
    };
    let target = TARGETS[rng.random_range(0..TARGETS.len())];
    // Box–Muller: median 80 lines, σ 0.5 on the log scale.
    let (u, v): (f64, f64) = (rng.random_range(1e-9..1.0), rng.random_range(0.0..1.0));
    let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
    let size = (80.0 * (0.5 * z).exp()).round().max(1.0) as u32;
    (class, env, target, size)
}

/// A time on a weekday between 09:00 and 18:00.
fn office_hours(day_start: i64, rng: &mut StdRng) -> i64 {
    day_start + 9 * HOUR + rng.random_range(0..9 * HOUR)
}

/// One agent action to decide, and whether it is anomalous (`None`: not scored, the first
/// actions of a burst, which humans also do).
struct Planned {
    at: i64,
    agent: String,
    class: &'static str,
    env: &'static str,
    target: String,
    size: u32,
    anomalous: Option<bool>,
}

async fn anomalies_are_found_and_human_like_agents_are_left_alone(backend: Backend) {
    // Monday 2026-11-02 00:00 UTC; the humans' history is the four weeks before.
    let week = parse_micros("2026-11-02T00:00:00Z").unwrap();
    let clock = ManualClock::at(week);
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.plugins.reference = true;
    let s = TestServer::start_clocked(db, config, Arc::new(clock.clone())).await;
    let mut rng = StdRng::seed_from_u64(15);

    // Eight humans: two to four actions each weekday, in office hours; one of them on call
    // each weekday night, deploying to production half the nights.
    let mut events = Vec::new();
    for day in 0..28 {
        let start = week - 28 * DAY + day * DAY;
        if day % 7 >= 5 {
            continue;
        }
        for h in 0..8 {
            for _ in 0..rng.random_range(2..=4) {
                let (class, env, target, size) = ordinary(&mut rng);
                let at = office_hours(start, &mut rng);
                events.push((format!("human-{h}"), class, env, target, size, at));
            }
        }
        if rng.random_bool(0.5) {
            let at = start + rng.random_range(HOUR..5 * HOUR);
            let on_call = format!("human-{}", day % 8);
            events.push((on_call, "deploy", "production", TARGETS[0], 20, at));
        }
    }
    let events: Vec<Value> = events
        .into_iter()
        .enumerate()
        .map(|(i, (actor, class, env, target, size, at))| {
            json!({
                "source": "ci", "source_id": format!("run-{i}"), "actor_kind": "human",
                "actor_id": actor, "team": "payments", "class": class, "environment": env,
                "service": "payments", "targets": [target], "change_size": size,
                "time": format_micros(at),
            })
        })
        .collect();
    let humans = events.len();
    let (status, stored) = s
        .post("/v1/events", &s.admin, json!({"events": events}))
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["accepted"].as_u64(), Some(humans as u64), "{stored}");
    let (status, run) = s.post("/v1/baselines/recompute", &s.admin, json!({})).await;
    assert_eq!(status, 200, "{run}");

    // A week of agents: three work like the humans; five do too, with one anomaly each.
    let mut plan = Vec::new();
    let like = ["like-1", "like-2", "like-3"];
    let odd = ["burst", "night", "target", "oversized", "newenv"];
    for agent in like.iter().chain(&odd) {
        for day in 0..5 {
            // The burst agent's Wednesday is its burst.
            if *agent == "burst" && day == 2 {
                continue;
            }
            for _ in 0..4 {
                let (class, env, target, size) = ordinary(&mut rng);
                let at = office_hours(week + day * DAY, &mut rng);
                plan.push(Planned {
                    at,
                    agent: agent.to_string(),
                    class,
                    env,
                    target: target.into(),
                    size,
                    anomalous: Some(false),
                });
            }
        }
    }
    let mut odd_one = |agent: &str, at: i64, class, env, target: &str, size, anomalous| {
        plan.push(Planned {
            at,
            agent: agent.into(),
            class,
            env,
            target: target.into(),
            size,
            anomalous,
        });
    };
    // Twenty staging deploys a minute apart on Wednesday at 14:00: from the sixth in the
    // hour on, more than any human does; the fifth is not scored either way.
    for i in 0..20 {
        let label = match i + 1 {
            ..=4 => Some(false),
            5 => None,
            _ => Some(true),
        };
        odd_one(
            "burst",
            week + 2 * DAY + 14 * HOUR + i * 60_000_000,
            "deploy",
            "staging",
            TARGETS[0],
            60,
            label,
        );
    }
    // Production deploys at 03:00 on Saturday and Sunday nights: no human works then.
    for at in [
        week + 5 * DAY + 3 * HOUR,
        week + 6 * DAY + 3 * HOUR,
        week + 6 * DAY + 4 * HOUR,
    ] {
        odd_one(
            "night",
            at,
            "deploy",
            "production",
            TARGETS[1],
            60,
            Some(true),
        );
    }
    for day in 0..3 {
        let at = week + day * DAY + 11 * HOUR + 17 * 60_000_000;
        odd_one(
            "target",
            at,
            "deploy",
            "staging",
            "deployment/payments-legacy",
            60,
            Some(true),
        );
        odd_one(
            "oversized",
            at,
            "deploy",
            "staging",
            TARGETS[2],
            6000,
            Some(true),
        );
        // An environment no human of the team ever used (and the agent was never allowed).
        odd_one(
            "newenv",
            at,
            "deploy",
            "prod-eu",
            TARGETS[0],
            60,
            Some(true),
        );
    }
    plan.sort_by_key(|p| p.at);

    for agent in like.iter().chain(&odd) {
        s.agent(agent, 4, json!({})).await;
        s.lift_quotas(agent).await;
    }
    let (mut tp, mut fp, mut fn_, mut like_findings) = (0, 0, 0, Vec::new());
    let (mut night_decision, mut quiet_decision) = (None, None);
    for p in &plan {
        let now = clock.now_micros();
        assert!(p.at >= now, "the plan is in time order");
        clock.advance(p.at - now);
        let body = json!({
            "agent": p.agent,
            "action": {
                "class": p.class, "environment": p.env, "service": "payments",
                "resources": [p.target],
                "change": {"files_changed": 2, "lines_added": p.size / 2, "lines_deleted": p.size - p.size / 2},
            },
        });
        let (status, answer) = s.post("/v1/decisions", &s.admin, body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["anomaly"]["status"], "checked", "{answer}");
        let findings = answer["anomaly"]["findings"].as_array().unwrap();
        let found = !findings.is_empty();
        let id = answer["decision_id"].as_str().unwrap().to_string();
        match (p.agent.as_str(), found) {
            ("night", true) => night_decision = Some(id),
            ("like-1", false) => quiet_decision = Some(id),
            _ => {}
        }
        if like.contains(&p.agent.as_str()) && found {
            like_findings.push(answer["anomaly"].clone());
        }
        match (p.anomalous, found) {
            (Some(true), true) => tp += 1,
            (Some(false), true) => {
                fp += 1;
                eprintln!(
                    "false positive: {} {} {} at {}: {}",
                    p.agent,
                    p.class,
                    p.env,
                    format_micros(p.at),
                    answer["anomaly"]
                );
            }
            (Some(true), false) => {
                fn_ += 1;
                eprintln!(
                    "missed: {} {} {} at {}: {}",
                    p.agent,
                    p.class,
                    p.env,
                    format_micros(p.at),
                    answer["anomaly"]
                );
            }
            _ => {}
        }
    }
    let precision = f64::from(tp) / f64::from((tp + fp).max(1));
    let recall = f64::from(tp) / f64::from((tp + fn_).max(1));
    println!(
        "generated organisation ({backend:?}): {humans} human events, {} agent actions; \
         precision {precision:.3}, recall {recall:.3} ({tp} found, {fp} false, {fn_} missed)",
        plan.len()
    );
    assert!(tp >= 20, "only {tp} anomalies found");
    assert!(precision >= 0.9, "precision {precision:.3}");
    assert!(recall >= 0.9, "recall {recall:.3}");
    assert!(
        like_findings.is_empty(),
        "findings for human-like agents: {like_findings:?}"
    );

    // A human marks the night deploy's findings real: evidence of its own, once; a decision
    // without findings has nothing to confirm.
    let night = night_decision.unwrap();
    let path = format!("/v1/decisions/{night}/anomaly/confirm");
    let (status, body) = s
        .post(&path, &s.admin, json!({"comment": "nobody deploys at 3am"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.post(&path, &s.admin, json!({})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("anomaly_confirmed")),
        "{body}"
    );
    let quiet = quiet_decision.unwrap();
    let (status, body) = s
        .post(
            &format!("/v1/decisions/{quiet}/anomaly/confirm"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (422, Some("no_anomaly")),
        "{body}"
    );
    let (_, trust) = s.get("/v1/agents/night/trust", &s.admin).await;
    assert_eq!(trust["evidence"]["confirmed_anomalies"], 1, "{trust}");
}
