//! The tier controller over HTTP, with a clock the test moves: sixty simulated days with three
//! agent personas; hard triggers, pins, history, the `tier.changed` event; and the running
//! totals rebuilt when the half-life changes.

use std::sync::Arc;

use serde_json::{Value, json};
use warden::clock::{Clock as _, ManualClock, parse_micros};
use warden::config::{Config, EventType};

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error, unanswered_hook};

const MINUTE: i64 = 60_000_000;
const DAY: i64 = 24 * 60 * MINUTE;

both_backends!(
    hard_triggers_pins_and_history,
    a_repeated_hard_trigger_still_narrows_above_the_floor,
    at_the_floor_only_blocked_violations_make_a_repeat,
    totals_follow_a_new_half_life
);

/// A server on a manual clock, with an approver who may approve anything and a deploy
/// pipeline (a service) that reports what it saw happen.
struct Sim {
    s: TestServer,
    clock: ManualClock,
    approver: String,
    ci: String,
}

impl Sim {
    async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Sim {
        let clock = ManualClock::at(parse_micros("2026-01-05T09:00:00Z").unwrap());
        let db = TestDb::new(backend).await;
        let mut config = db.config();
        tweak(&mut config);
        let s = TestServer::start_clocked(db, config, Arc::new(clock.clone())).await;
        let grants =
            json!([{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]);
        let (status, body) = s
            .post(
                "/v1/humans",
                &s.admin,
                json!({"id": "carol", "team": "platform", "grants": grants}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let approver = s.token("approver", Some("carol")).await;
        let ci = s.token("service", None).await;
        Sim {
            s,
            clock,
            approver,
            ci,
        }
    }

    /// Asks for an action, goes through an approval when one is needed, and reports `outcome`
    /// (the agent itself) when the action is allowed. Returns the last answer.
    async fn act(
        &self,
        token: &str,
        class: &str,
        env: &str,
        service: &str,
        outcome: &str,
    ) -> Value {
        self.act_reported(token, token, class, env, service, outcome)
            .await
    }

    /// [`Sim::act`] with the outcome reported by `reporter`.
    async fn act_reported(
        &self,
        token: &str,
        reporter: &str,
        class: &str,
        env: &str,
        service: &str,
        outcome: &str,
    ) -> Value {
        self.clock.advance(10 * MINUTE);
        let body = json!({"action": {"class": class, "environment": env, "service": service}});
        let (status, mut answer) = self.s.post("/v1/decisions", token, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        if answer["verdict"] == "require_approval" {
            let id = answer["approval"]["id"].as_str().unwrap().to_string();
            let (status, approved) = self
                .s
                .post(
                    &format!("/v1/approvals/{id}/approve"),
                    &self.approver,
                    json!({}),
                )
                .await;
            assert_eq!(status, 200, "{approved}");
            let mut again = body;
            again["approval_id"] = json!(id);
            answer = self.s.post("/v1/decisions", token, again).await.1;
        }
        if answer["verdict"] == "allow" {
            let path = format!(
                "/v1/decisions/{}/outcome",
                answer["decision_id"].as_str().unwrap()
            );
            let (status, reported) = self
                .s
                .post(&path, reporter, json!({"status": outcome}))
                .await;
            assert_eq!(status, 200, "{reported}");
        }
        answer
    }

    async fn agent(&self, id: &str) -> Value {
        self.s
            .get(&format!("/v1/agents/{id}"), &self.s.admin)
            .await
            .1
    }

    async fn history(&self, id: &str) -> Vec<Value> {
        let (status, h) = self
            .s
            .get(
                &format!("/v1/agents/{id}/trust/history?since=2025-01-01T00:00:00Z"),
                &self.s.admin,
            )
            .await;
        assert_eq!(status, 200, "{h}");
        let mut changes = h["changes"].as_array().unwrap().clone();
        changes.reverse();
        changes
    }
}

fn tier(agent: &Value) -> u64 {
    agent["tier"].as_u64().unwrap()
}

/// Sixty days, three personas: a reliable agent that does its work and asks for approval for
/// the next tier's; a flaky one whose every tenth change is rolled back; a rogue one that
/// presents forged approvals and tries what its tier does not allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_days_three_personas() {
    let sim = Sim::start(Backend::Sqlite, |_| {}).await;
    let s = &sim.s;
    let reliable = s.agent("reliable", 1, json!({"ceiling": 4})).await;
    let flaky = s.agent("flaky", 2, json!({"ceiling": 3})).await;
    let rogue = s.agent("rogue", 2, json!({"ceiling": 4})).await;
    let services = ["payments", "ledger", "search"];
    let (mut flaky_changes, mut rogue_violations, mut rogue_narrowed_at) = (0, 0, None);
    for day in 0..60usize {
        let svc = |i: usize| services[(day + i) % services.len()];
        // The reliable agent: its own tier's work alone, the next tier's under approval; the
        // deploy pipeline reports how each went.
        match tier(&sim.agent("reliable").await) {
            1 => {
                sim.act_reported(&reliable, &sim.ci, "deploy", "dev", svc(0), "succeeded")
                    .await;
                for i in 0..2 {
                    sim.act_reported(&reliable, &sim.ci, "deploy", "staging", svc(i), "succeeded")
                        .await;
                }
            }
            2 => {
                sim.act_reported(&reliable, &sim.ci, "deploy", "staging", svc(0), "succeeded")
                    .await;
                for i in 0..2 {
                    sim.act_reported(
                        &reliable,
                        &sim.ci,
                        "deploy",
                        "production",
                        svc(i),
                        "succeeded",
                    )
                    .await;
                }
            }
            _ => {
                sim.act_reported(
                    &reliable,
                    &sim.ci,
                    "deploy",
                    "production",
                    svc(0),
                    "succeeded",
                )
                .await;
                for i in 0..3 {
                    let answer = sim
                        .act_reported(
                            &reliable,
                            &sim.ci,
                            "api_call",
                            "production",
                            svc(i),
                            "succeeded",
                        )
                        .await;
                    assert_eq!(answer["risk"]["level"], "medium");
                }
            }
        }
        // The flaky agent works the same way; every tenth change rolls back.
        let envs = if tier(&sim.agent("flaky").await) >= 2 {
            ["staging", "staging", "production"]
        } else {
            ["dev", "dev", "staging"]
        };
        for (i, env) in envs.into_iter().enumerate() {
            flaky_changes += 1;
            let outcome = if flaky_changes % 10 == 0 {
                "rolled_back"
            } else {
                "succeeded"
            };
            sim.act(&flaky, "deploy", env, svc(i), outcome).await;
        }
        // The rogue agent: some honest work, and every other day something it may not do.
        sim.act(&rogue, "deploy", "dev", svc(0), "succeeded").await;
        if day % 2 == 1 {
            let before = tier(&sim.agent("rogue").await);
            let forged = json!({"approval_id": "0190aaaa-0000-7000-8000-000000000000"});
            let (_, answer) = if before >= 2 {
                s.decide(&rogue, "deploy", "production", forged).await
            } else {
                s.decide(&rogue, "db_migration", "production", json!({}))
                    .await
            };
            assert_eq!(answer["verdict"], "deny", "{answer}");
            rogue_violations += 1;
            if rogue_narrowed_at.is_none() && tier(&sim.agent("rogue").await) < 2 {
                rogue_narrowed_at = Some(rogue_violations);
            }
        }
        // Nobody ever exceeds a ceiling.
        for id in ["reliable", "flaky", "rogue"] {
            let a = sim.agent(id).await;
            assert!(tier(&a) <= a["ceiling"].as_u64().unwrap(), "day {day}: {a}");
        }
        sim.clock.advance(DAY - 80 * MINUTE);
    }

    let reliable_end = sim.agent("reliable").await;
    assert_eq!(
        tier(&reliable_end),
        4,
        "the reliable agent climbs, one tier at a time: {reliable_end}"
    );
    let flaky_end = sim.agent("flaky").await;
    assert!(
        tier(&flaky_end) <= 2,
        "a 10% rollback rate earns no promotion: {flaky_end}"
    );
    let flaky_history = sim.history("flaky").await;
    assert!(
        flaky_history
            .first()
            .is_some_and(|c| c["to"].as_u64() < c["from"].as_u64()),
        "the flaky agent is demoted first: {flaky_history:?}"
    );
    let narrowed = rogue_narrowed_at.expect("the rogue agent was narrowed");
    assert!(narrowed <= 3, "narrowed at its violation #{narrowed}");
    assert!(tier(&sim.agent("rogue").await) <= 1);

    // No flapping: at most one move in each direction per dwell period, and a cool-down
    // between a demotion and the next promotion.
    for id in ["reliable", "flaky", "rogue"] {
        let changes = sim.history(id).await;
        let at = |c: &Value| parse_micros(c["at"].as_str().unwrap()).unwrap();
        let up = |c: &Value| c["to"].as_u64() > c["from"].as_u64();
        for pair in changes.windows(2) {
            let gap = at(&pair[1]) - at(&pair[0]);
            if up(&pair[0]) == up(&pair[1]) {
                assert!(
                    gap >= 7 * DAY,
                    "{id} moved twice the same way within a dwell period: {pair:?}"
                );
            }
            if !up(&pair[0]) && up(&pair[1]) {
                assert!(
                    gap >= 14 * DAY,
                    "{id} was promoted during its cool-down: {pair:?}"
                );
            }
        }
        for c in &changes {
            assert!(
                c["to"].as_u64() <= Some(4)
                    && !c["reason"].as_str().unwrap().is_empty()
                    && c["evidence"].is_object(),
                "{c}"
            );
        }
    }
    let reliable_history = sim.history("reliable").await;
    assert!(
        reliable_history
            .iter()
            .all(|c| c["reason"] == "promotion" && c["actor"] == "warden"),
        "{reliable_history:?}"
    );
    assert!(
        sim.history("rogue")
            .await
            .iter()
            .all(|c| c["to"].as_u64() < c["from"].as_u64()),
        "the rogue agent is never promoted"
    );
    // The decision answers carry the score the agent had then.
    let answer = sim
        .act(&reliable, "deploy", "production", "payments", "succeeded")
        .await;
    assert!(answer["trust_score"].as_f64().unwrap() > 0.9, "{answer}");
}

/// The gate of an agent's next promotion named `name`, from the trust API.
async fn gate(sim: &Sim, id: &str, name: &str) -> Value {
    let (status, trust) = sim
        .s
        .get(&format!("/v1/agents/{id}/trust"), &sim.s.admin)
        .await;
    assert_eq!(status, 200, "{trust}");
    trust["next_promotion"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no gate {name}: {trust}"))
}

/// Trying to earn rights one should not have, over three weeks: farming documentation updates,
/// a slow-burn rogue that tries a forbidden production deploy every twentieth action, and an
/// agent's own word against a pipeline's. An honest agent doing the same work under approval
/// is the control: it is promoted, and gets alone only the class it was watched at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farmed_slow_burn_and_self_reported_work_earns_nothing() {
    let sim = Sim::start(Backend::Sqlite, |_| {}).await;
    let s = &sim.s;
    let farmer2 = s.agent("farmer-2", 2, json!({"ceiling": 4})).await;
    let farmer1 = s.agent("farmer-1", 1, json!({"ceiling": 4})).await;
    let rogue = s.agent("slow-burn", 1, json!({"ceiling": 4})).await;
    let honest = s.agent("honest", 1, json!({"ceiling": 4})).await;
    for id in ["farmer-2", "farmer-1", "slow-burn", "honest"] {
        s.lift_quotas(id).await;
    }
    let services = ["payments", "ledger", "search"];
    let mut rogue_actions = 0;
    for day in 0..21usize {
        let svc = |i: usize| services[(day + i) % services.len()];
        for i in 0..8 {
            // Confirmed by the pipeline, even: documentation says nothing about deploying.
            sim.act_reported(
                &farmer2,
                &sim.ci,
                "docs_update",
                "production",
                svc(i),
                "succeeded",
            )
            .await;
            sim.act_reported(
                &farmer1,
                &sim.ci,
                "docs_update",
                "staging",
                svc(i),
                "succeeded",
            )
            .await;
        }
        for (who, token) in [("slow-burn", &rogue), ("honest", &honest)] {
            if tier(&sim.agent(who).await) > 1 {
                continue;
            }
            for i in 0..5 {
                // Dev deploys alone; staging deploys under approval.
                let env = if i == 0 { "dev" } else { "staging" };
                let answer = sim
                    .act_reported(token, &sim.ci, "deploy", env, svc(i), "succeeded")
                    .await;
                assert_eq!(answer["verdict"], "allow", "{answer}");
                if who == "slow-burn" {
                    rogue_actions += 1;
                    if rogue_actions % 20 == 0 {
                        let (_, denied) = s.decide(token, "deploy", "production", json!({})).await;
                        assert_eq!(denied["verdict"], "deny", "{denied}");
                    }
                }
            }
        }
        sim.clock.advance(DAY - 240 * MINUTE);
    }
    // 168 farmed documentation updates each: no promotion, and the trust API says why.
    for id in ["farmer-2", "farmer-1"] {
        let agent = sim.agent(id).await;
        assert!(
            tier(&agent) <= 2 && sim.history(id).await.is_empty(),
            "{agent}"
        );
        let g = gate(&sim, id, "watched_successes").await;
        assert_eq!(
            (g["met"].as_bool(), g["has"].as_str()),
            (Some(false), Some("0")),
            "{g}"
        );
    }
    // The slow-burn rogue: the same honest work, and the violations hold every promotion.
    assert_eq!(tier(&sim.agent("slow-burn").await), 1);
    assert!(sim.history("slow-burn").await.is_empty());
    let g = gate(&sim, "slow-burn", "no_blocked_violation").await;
    assert_eq!(g["met"], false, "{g}");
    // One attempt every four days is below `repeated_violations`: no hard trigger, only the hold.
    assert_eq!(
        gate(&sim, "slow-burn", "no_hard_trigger").await["met"],
        true
    );
    assert_eq!(
        gate(&sim, "slow-burn", "watched_successes").await["met"],
        true
    );
    assert!(g["has"].as_str().unwrap().starts_with("one "), "{g}");
    // The control: promoted once, resting on its watched staging deploys, granted deploys.
    let honest_history = sim.history("honest").await;
    assert_eq!(honest_history.len(), 1, "{honest_history:?}");
    let promotion = &honest_history[0];
    assert_eq!(
        (promotion["from"].as_u64(), promotion["to"].as_u64()),
        (Some(1), Some(2))
    );
    let watched = &promotion["evidence"]["watched"];
    assert!(
        watched["decisions"].as_array().unwrap().len() >= 10,
        "{promotion}"
    );
    assert_eq!(watched["granted_alone"], json!(["deploy"]), "{promotion}");
    assert_eq!(
        sim.agent("honest").await["earned_classes"],
        json!({"2": ["deploy"]})
    );
    // A right of tier 2 it was never watched at still needs a human, until it has been watched
    // three times.
    let (_, answer) = s
        .decide(&honest, "config_change", "staging", json!({}))
        .await;
    assert_eq!(answer["verdict"], "require_approval", "{answer}");
    assert!(
        answer["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "class_not_earned"),
        "{answer}"
    );
    for service in services {
        sim.act_reported(
            &honest,
            &sim.ci,
            "config_change",
            "staging",
            service,
            "succeeded",
        )
        .await;
    }
    assert_eq!(
        sim.agent("honest").await["earned_classes"],
        json!({"2": ["config_change", "deploy"]})
    );
    assert_eq!(
        s.verdict(&honest, "config_change", "staging").await,
        "allow"
    );

    // What-if: the same three weeks replayed from the store. Under today's policy, the record
    // says what happened; under a proposal with no violation hold, the slow-burn rogue would
    // have been promoted too.
    let store = &s.warden.state.store;
    let (from, now) = (
        parse_micros("2026-01-05T00:00:00Z").unwrap(),
        sim.clock.now_micros(),
    );
    let tier_of = |replayed: &[warden::replay::Replayed], id: &str| {
        replayed
            .iter()
            .find(|r| r.agent == id)
            .map(|r| (r.from_tier, r.tier))
    };
    let today = warden::services::tiering::replay(store, &s.warden.state.policy, from, now, None)
        .await
        .unwrap();
    assert_eq!(tier_of(&today, "honest"), Some((1, 2)), "{today:?}");
    assert_eq!(tier_of(&today, "slow-burn"), Some((1, 1)));
    assert_eq!(tier_of(&today, "farmer-2"), Some((2, 2)));
    let mut lenient = warden::config::Config::default().policy.apply();
    lenient.tiering.violation_hold_days = 0.0;
    let lenient = warden::policy::CompiledPolicy::new(lenient).unwrap();
    let replayed = warden::services::tiering::replay(store, &lenient, from, now, Some("slow-burn"))
        .await
        .unwrap();
    assert_eq!(
        tier_of(&replayed, "slow-burn"),
        Some((1, 2)),
        "{replayed:?}"
    );
    assert_eq!(replayed[0].moves[0].reason, "promotion");

    // Seven successes on the agent's own word weigh less than seven a pipeline reported.
    let own = s.agent("own-word", 1, json!({})).await;
    let vouched = s.agent("vouched", 1, json!({})).await;
    for i in 0..7 {
        sim.act(&own, "deploy", "dev", services[i % 3], "succeeded")
            .await;
        sim.act_reported(
            &vouched,
            &sim.ci,
            "deploy",
            "dev",
            services[i % 3],
            "succeeded",
        )
        .await;
    }
    let trust = |id: &'static str| async move {
        s.get(&format!("/v1/agents/{id}/trust"), &s.admin).await.1
    };
    let (own_trust, vouched_trust) = (trust("own-word").await, trust("vouched").await);
    let score = |t: &Value| t["score"].as_f64().unwrap();
    assert!(score(&own_trust) < 0.6, "{own_trust}");
    assert!(
        score(&own_trust) < score(&vouched_trust) - 0.1,
        "{own_trust} {vouched_trust}"
    );
    assert_eq!(
        own_trust["evidence"]["successes_by_source"],
        json!({"platform": 0, "service": 0, "self_reported": 7})
    );
    assert_eq!(
        vouched_trust["evidence"]["successes_by_source"]["service"],
        7
    );
}

async fn hard_triggers_pins_and_history(backend: Backend) {
    // Tier changes go out as events: to an endpoint that is down, so they wait as deliveries.
    let sim = Sim::start(backend, |c| {
        c.webhooks = vec![unanswered_hook("ops", vec![EventType::TierChanged])];
    })
    .await;
    let s = &sim.s;
    let bot = s.agent("trusted-bot", 3, json!({"ceiling": 4})).await;

    // A forged approval: down to tier 1 at once, with the reason and the evidence.
    let forged = json!({"approval_id": "0190aaaa-0000-7000-8000-000000000000"});
    assert_eq!(
        s.decide(&bot, "deploy", "production", forged.clone())
            .await
            .1["verdict"],
        "deny"
    );
    let agent = sim.agent("trusted-bot").await;
    assert_eq!(tier(&agent), 1, "{agent}");
    let changes = sim.history("trusted-bot").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            changes[0]["from"].as_u64(),
            changes[0]["to"].as_u64(),
            changes[0]["reason"].as_str()
        ),
        (Some(3), Some(1), Some("forged_approval"))
    );
    assert_eq!(
        changes[0]["evidence"]["trust"]["evidence"]["violations"], 1,
        "{}",
        changes[0]
    );
    let (_, audit) = s.get("/v1/audit?event_type=tier.changed", &s.admin).await;
    assert_eq!(
        audit["records"].as_array().map(Vec::len),
        Some(1),
        "{audit}"
    );
    let deliveries = s.documented_deliveries("ops").await;
    assert!(
        deliveries.iter().any(|d| d["type"] == "tier.changed"),
        "{deliveries:?}"
    );

    // The trust view says what the next promotion needs: the hard trigger blocks it for 30 days.
    let (_, trust) = s.get("/v1/agents/trusted-bot/trust", &bot).await;
    let gates = trust["next_promotion"]["gates"].as_array().unwrap();
    let gate = |name: &str| {
        gates
            .iter()
            .find(|g| g["gate"] == name)
            .unwrap_or_else(|| panic!("no gate {name}: {trust}"))
            .clone()
    };
    assert_eq!(
        (
            trust["next_promotion"]["tier"].as_u64(),
            gate("no_hard_trigger")["met"].as_bool()
        ),
        (Some(2), Some(false)),
        "{trust}"
    );
    assert_eq!(gate("cool_down")["met"], false);
    assert_eq!(trust["last_changes"][0]["reason"], "forged_approval");

    // An admin puts it back and pins it: a second forged approval is a violation, but the tier holds.
    let (status, pinned) = s
        .patch(
            "/v1/agents/trusted-bot",
            &s.admin,
            json!({"tier": 3, "pinned": true}),
        )
        .await;
    assert_eq!(status, 200, "{pinned}");
    assert_eq!(pinned["pinned"], true);
    sim.clock.advance(DAY);
    assert_eq!(
        s.decide(&bot, "deploy", "production", forged).await.1["verdict"],
        "deny"
    );
    assert_eq!(tier(&sim.agent("trusted-bot").await), 3);
    let changes = sim.history("trusted-bot").await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        (changes[1]["reason"].as_str(), changes[1]["to"].as_u64()),
        (Some("admin"), Some(3))
    );

    // Daily scores are in the history; bad queries are 4xx naming the field.
    let (_, h) = s
        .get(
            "/v1/agents/trusted-bot/trust/history?since=2025-01-01T00:00:00Z",
            &s.admin,
        )
        .await;
    assert!(!h["daily"].as_array().unwrap().is_empty(), "{h}");
    assert_eq!(
        assert_error(
            &s.get(
                "/v1/agents/trusted-bot/trust/history?since=yesterday",
                &s.admin
            )
            .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("since")
    );
    let other = s.agent("other", 1, json!({})).await;
    assert_error(
        &s.get("/v1/agents/trusted-bot/trust/history", &other).await,
        404,
        "unknown_agent",
    );

    // Unpinned, a sub-agent is never promoted past its parent.
    s.patch("/v1/agents/trusted-bot", &s.admin, json!({"pinned": false}))
        .await;
    let child = s
        .agent("child", 1, json!({"parent": "other", "ceiling": 4}))
        .await;
    for day in 0..12 {
        for svc in ["payments", "ledger"] {
            sim.act(&child, "deploy", "staging", svc, "succeeded").await;
        }
        sim.clock.advance(DAY);
        assert!(
            tier(&sim.agent("child").await) <= 1,
            "day {day}: the parent is at tier 1"
        );
    }
    let (_, trust) = s.get("/v1/agents/child/trust", &s.admin).await;
    let parent_gate = trust["next_promotion"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "parent")
        .unwrap()
        .clone();
    assert_eq!(parent_gate["met"], false, "{trust}");
}

/// Within the hour of a hard trigger, a violation by an agent at the floor is not reviewed
/// again (the review could only restate it); one by an agent above the floor still narrows it
/// before its next request.
async fn a_repeated_hard_trigger_still_narrows_above_the_floor(backend: Backend) {
    let sim = Sim::start(backend, |_| {}).await;
    let s = &sim.s;
    let bot = s.agent("again-bot", 3, json!({"ceiling": 4})).await;
    let forged = json!({"approval_id": "0190aaaa-0000-7000-8000-000000000000"});
    let deny = |body: Value| async {
        let (status, answer) = s.decide(&bot, "deploy", "production", body).await;
        assert_eq!(
            (status.as_u16(), answer["verdict"].as_str()),
            (200, Some("deny")),
            "{answer}"
        );
    };
    deny(forged.clone()).await;
    assert_eq!(tier(&sim.agent("again-bot").await), 1);
    // At the floor, ten minutes on: restated, nothing written.
    sim.clock.advance(10 * MINUTE);
    deny(forged.clone()).await;
    assert_eq!(sim.history("again-bot").await.len(), 1);
    // An admin puts it back above the floor; the same trigger within the hour narrows it again.
    let (status, body) = s
        .patch("/v1/agents/again-bot", &s.admin, json!({"tier": 3}))
        .await;
    assert_eq!(status, 200, "{body}");
    sim.clock.advance(10 * MINUTE);
    deny(forged.clone()).await;
    assert_eq!(tier(&sim.agent("again-bot").await), 1);
    let changes = sim.history("again-bot").await;
    assert_eq!(
        changes
            .iter()
            .map(|c| (c["to"].as_u64(), c["reason"].as_str()))
            .collect::<Vec<_>>(),
        vec![
            (Some(1), Some("forged_approval")),
            (Some(3), Some("admin")),
            (Some(1), Some("forged_approval")),
        ]
    );
}

/// At the floor, a violation allowed in `flag` mode is no hard trigger and is not reviewed
/// (only blocked violations make a repeat); the third blocked one within the window is a hard
/// trigger, recorded once, and flagged ones after it within the hour restate it.
async fn at_the_floor_only_blocked_violations_make_a_repeat(backend: Backend) {
    let sim = Sim::start(backend, |c| {
        c.policy
            .violation_modes
            .insert("config_change".into(), warden::policy::ViolationMode::Flag);
    })
    .await;
    let s = &sim.s;
    let bot = s.agent("flag-bot", 1, json!({"ceiling": 4})).await;
    let hard_triggers = || async {
        let (status, page) = s
            .get("/v1/audit?event_type=trust.hard_trigger", &s.admin)
            .await;
        assert_eq!(status, 200, "{page}");
        page["records"].as_array().unwrap().clone()
    };
    let flagged = || async {
        let (status, answer) = s
            .decide(&bot, "config_change", "production", json!({}))
            .await;
        assert_eq!(
            (status.as_u16(), answer["verdict"].as_str()),
            (200, Some("allow")),
            "{answer}"
        );
        assert!(
            answer["reasons"].to_string().contains("violation"),
            "{answer}"
        );
    };
    for _ in 0..5 {
        flagged().await;
        sim.clock.advance(MINUTE);
    }
    assert!(hard_triggers().await.is_empty());
    for blocked in 1..=3 {
        // A flagged one in the same second leaves a count short of a repeat behind; the
        // blocked one is still counted afresh.
        flagged().await;
        let (status, answer) = s.decide(&bot, "deploy", "production", json!({})).await;
        assert_eq!(
            (status.as_u16(), answer["verdict"].as_str()),
            (200, Some("deny")),
            "{answer}"
        );
        sim.clock.advance(MINUTE);
        assert_eq!(hard_triggers().await.len(), usize::from(blocked == 3));
    }
    let records = hard_triggers().await;
    assert_eq!(
        records[0]["details"]["hard_trigger"], "repeated_violations",
        "{records:?}"
    );
    flagged().await;
    assert_eq!(hard_triggers().await.len(), 1);
    assert_eq!(tier(&sim.agent("flag-bot").await), 1);
    assert!(sim.history("flag-bot").await.is_empty());
}

async fn totals_follow_a_new_half_life(backend: Backend) {
    let sim = Sim::start(backend, |_| {}).await;
    let bot = sim.s.agent("steady", 2, json!({})).await;
    // Reported by the pipeline: each success weighs 1.
    for svc in ["payments", "ledger", "search", "payments"] {
        sim.act_reported(&bot, &sim.ci, "deploy", "staging", svc, "succeeded")
            .await;
    }
    sim.act_reported(&bot, &sim.ci, "deploy", "staging", "payments", "failed")
        .await;
    let (_, before) = sim.s.get("/v1/agents/steady/trust", &sim.s.admin).await;
    assert!(
        (before["weight"]["positive"].as_f64().unwrap() - 4.0).abs() < 0.01,
        "{before}"
    );

    // Ten days on, restarted with a ten-day half-life: the totals are rebuilt from the evidence.
    sim.clock.advance(10 * DAY);
    let mut config = sim.s.db.config();
    config.policy.trust = Some(warden::trust::TrustPolicy {
        half_life_days: 10.0,
        ..Default::default()
    });
    let clock = sim.clock.clone();
    let s = sim.s.restart_clocked(config, Arc::new(clock)).await;
    let (_, after) = s.get("/v1/agents/steady/trust", &s.admin).await;
    assert_eq!(after["evidence"], before["evidence"], "{after}");
    let positive = after["weight"]["positive"].as_f64().unwrap();
    assert!(
        (positive - 2.0).abs() < 0.01,
        "four successes, one half-life old: {after}"
    );
    assert!(
        (after["weight"]["negative"].as_f64().unwrap() - 0.5).abs() < 0.01,
        "{after}"
    );
}
