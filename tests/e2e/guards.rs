//! Guard mode on a server as `warden serve` starts it (the reference plugins on, the canary
//! trigger among them): a violation let through under a watch; a failed canary judgement rolls
//! it back and costs trust; silence past the deadline rolls back; a healthy watch lets the
//! success count only once it ends; an inconclusive one goes to a human in the approvals inbox;
//! trigger errors in a row page someone.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warden::clock::{Clock as _, ManualClock, format_micros, parse_micros};
use warden::config::EventType;
use warden::policy::{GuardPolicy, ViolationMode};

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, unanswered_hook};

both_backends!(guarded_actions_are_watched);

const MINUTE: i64 = 60_000_000;

fn window(slower: f64, samples: usize) -> Value {
    let baseline: Vec<f64> = (0..samples).map(|i| 100.0 + (i % 30) as f64).collect();
    let canary: Vec<f64> = baseline.iter().map(|v| v * slower).collect();
    json!({"name": "latency_ms", "canary": canary, "baseline": baseline})
}

/// The decision's outcome and watch, once `done` holds (the periodic sweep runs on its own).
async fn outcome_when(s: &TestServer, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let (_, o) = s
            .get(&format!("/v1/decisions/{id}/outcome"), &s.admin)
            .await;
        if done(&o) {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("decision {id} never got there");
}

async fn trust(s: &TestServer) -> Value {
    s.get("/v1/agents/canary-bot/trust", &s.admin).await.1
}

async fn guarded_actions_are_watched(backend: Backend) {
    let clock = ManualClock::at(parse_micros("2026-03-02T10:00:00Z").unwrap());
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.plugins.reference = true;
    config
        .policy
        .violation_modes
        .insert("deploy".into(), ViolationMode::Guard);
    config.policy.guard = Some(GuardPolicy {
        watch_secs: 600,
        error_limit: 2,
        ..GuardPolicy::default()
    });
    config.notifications.poll_interval_ms = 20;
    config.notifications.initial_backoff_ms = 60_000;
    config.webhooks = vec![unanswered_hook(
        "pager",
        vec![
            EventType::RollbackRequested,
            EventType::GuardReviewRequested,
            EventType::RollbackTriggerFailing,
        ],
    )];
    let s = TestServer::start_clocked(db, config, Arc::new(clock.clone())).await;
    let bot = s.agent("canary-bot", 1, json!({})).await;
    s.lift_quotas("canary-bot").await;
    let human = json!({"id": "olga", "team": "payments", "grants": [{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]});
    assert_eq!(s.post("/v1/humans", &s.admin, human).await.0, 201);
    let approver = s.token("approver", Some("olga")).await;
    let guarded = || async {
        // Tier 1 has no grant for production: in guard mode that is allowed under a watch.
        let (status, answer) = s.decide(&bot, "deploy", "production", json!({})).await;
        assert_eq!(
            (status.as_u16(), answer["verdict"].as_str()),
            (200, Some("allow")),
            "{answer}"
        );
        let id = answer["decision_id"].as_str().unwrap().to_string();
        let guard = answer["obligations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == "rollback_guard")
            .unwrap_or_else(|| panic!("{answer}"))
            .clone();
        assert!(
            guard["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("/v1/decisions/{id}/signals")),
            "{guard}"
        );
        assert!(
            guard["due_at"].as_str().unwrap() > answer["decided_at"].as_str().unwrap(),
            "{guard}"
        );
        id
    };
    let signals = |id: &str, w: Value| {
        let path = format!("/v1/decisions/{id}/signals");
        let bot = bot.clone();
        let s = &s;
        async move { s.post(&path, &bot, json!({"windows": [w]})).await.1 }
    };
    let report = |id: &str, status: &str| {
        let path = format!("/v1/decisions/{id}/outcome");
        let (bot, status) = (bot.clone(), status.to_string());
        let s = &s;
        async move { s.post(&path, &bot, json!({"status": status})).await }
    };

    // 1. A success reported while the watch runs waits; a failed canary rolls the action back.
    let failing = guarded().await;
    assert_eq!(report(&failing, "succeeded").await.0, 200);
    let o = outcome_when(&s, &failing, |_| true).await;
    assert_eq!(o["guard"]["status"], "watching", "{o}");
    assert_eq!(
        trust(&s).await["evidence"]["successes"],
        0,
        "the success waits for the watch"
    );
    let judged = signals(&failing, window(1.5, 300)).await;
    assert_eq!(
        (
            judged["verdict"].as_str(),
            judged["rollback_requested"].as_bool()
        ),
        (Some("failed"), Some(true)),
        "{judged}"
    );
    let o = outcome_when(&s, &failing, |o| o["outcome"] == "rolled_back").await;
    assert_eq!(o["guard"]["status"], "rolled_back", "{o}");
    assert_eq!(o["reported_by"], "warden:guard", "{o}");
    let after_failure = trust(&s).await;
    assert_eq!(after_failure["evidence"]["rollbacks"], 1, "{after_failure}");
    assert_eq!(after_failure["evidence"]["successes"], 0, "{after_failure}");

    // 2. Silence until the deadline: rolled back by policy.
    let silent = guarded().await;
    clock.advance(11 * MINUTE);
    // The watch closes first; the outcome follows in a change of its own.
    let o = outcome_when(&s, &silent, |o| o["outcome"] == "rolled_back").await;
    assert_eq!(o["guard"]["status"], "rolled_back", "{o}");
    assert_eq!(trust(&s).await["evidence"]["rollbacks"], 2);

    // 3. Healthy signals, a reported success the platform confirms: it counts once, as the
    // platform's, when the watch ends clean.
    let healthy = guarded().await;
    assert_eq!(
        signals(&healthy, window(1.0, 300)).await["verdict"],
        "successful"
    );
    assert_eq!(report(&healthy, "succeeded").await.0, 200);
    let deployed = json!({"events": [{"source": "pipeline", "source_id": "deploy-1", "actor_kind": "agent",
        "actor_id": "canary-bot", "team": "payments", "class": "deploy", "environment": "production",
        "service": "payments", "time": format_micros(clock.now_micros()), "outcome": "succeeded", "decision_id": healthy}]});
    let (status, stored) = s.post("/v1/events", &s.admin, deployed).await;
    assert_eq!(status, 200, "{stored}");
    let o = outcome_when(&s, &healthy, |o| o["confirmation"]["status"] == "confirmed").await;
    assert_eq!(o["guard"]["status"], "watching", "{o}");
    assert_eq!(trust(&s).await["evidence"]["successes"], 0);
    clock.advance(11 * MINUTE);
    let o = outcome_when(&s, &healthy, |o| o["guard"]["status"] == "clean").await;
    assert_eq!(o["outcome"], "succeeded", "{o}");
    let after_clean = trust(&s).await;
    assert_eq!(
        after_clean["evidence"]["successes_by_source"],
        json!({"platform": 1, "service": 0, "self_reported": 0}),
        "{after_clean}"
    );
    assert!(after_clean["score"].as_f64().unwrap() >= after_failure["score"].as_f64().unwrap());

    // 4. Too few samples to judge: inconclusive, so a human decides in the approvals inbox.
    let unsure = guarded().await;
    assert_eq!(
        signals(&unsure, window(1.0, 5)).await["verdict"],
        "inconclusive"
    );
    let o = outcome_when(&s, &unsure, |o| o["guard"]["status"] == "held").await;
    let review = o["guard"]["review"].as_str().unwrap().to_string();
    let (_, pending) = s.get("/v1/approvals?status=pending", &s.admin).await;
    let card = pending["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == review.as_str())
        .unwrap_or_else(|| panic!("{pending}"))
        .clone();
    assert_eq!(
        card["summary"]["guard_review"]["decision_id"],
        unsure.as_str(),
        "{card}"
    );
    assert_eq!(report(&unsure, "succeeded").await.0, 200);
    // Presenting the review as an approval for an action never works.
    let (_, misuse) = s
        .decide(&bot, "deploy", "production", json!({"approval_id": review}))
        .await;
    assert_eq!(misuse["verdict"], "deny", "{misuse}");
    let (status, decided) = s
        .post(
            &format!("/v1/approvals/{review}/approve"),
            &approver,
            json!({"comment": "dashboards look fine"}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let o = outcome_when(&s, &unsure, |o| o["guard"]["status"] == "kept").await;
    assert_eq!(o["outcome"], "succeeded");
    assert_eq!(trust(&s).await["evidence"]["successes"], 2);

    // 5. Missing telemetry, judgement after judgement (the first ones inconclusive: held for a
    // human, and still judged): `rollback_trigger.failing`, once.
    let blind = guarded().await;
    let mut errors = 0;
    for _ in 0..12 {
        let w = json!({"name": "latency_ms", "canary": [], "baseline": [100.0, 101.0]});
        if signals(&blind, w).await["verdict"] == "error" {
            errors += 1;
        }
    }
    assert!(errors >= 2, "{errors} error judgements");
    let (_, failing_audit) = s
        .get("/v1/audit?event_type=rollback_trigger.failing", &s.admin)
        .await;
    assert_eq!(
        failing_audit["records"].as_array().unwrap().len(),
        1,
        "{failing_audit}"
    );

    // Every move is audited, and the pager heard what it asked for (two reviews: the
    // inconclusive canary and the blind one).
    for event in [
        "guard.rolled_back",
        "guard.clean",
        "guard.held",
        "guard.kept",
    ] {
        let (_, a) = s
            .get(&format!("/v1/audit?event_type={event}"), &s.admin)
            .await;
        assert!(!a["records"].as_array().unwrap().is_empty(), "no {event}");
    }
    let (_, deliveries) = s
        .get("/v1/webhooks/deliveries?endpoint=pager", &s.admin)
        .await;
    let mut types: Vec<&str> = deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "guard.review_requested",
            "guard.review_requested",
            "rollback.requested",
            "rollback.requested",
            "rollback_trigger.failing"
        ]
    );
    // The bodies hold the documented fields; both rollback events give their reasons as a list
    // of texts, whichever path sent them.
    for body in s.documented_deliveries("pager").await {
        if body["type"] != "guard.review_requested" {
            let reasons = body["data"]["reasons"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}"));
            assert!(
                !reasons.is_empty() && reasons.iter().all(Value::is_string),
                "{body}"
            );
        }
    }
}
