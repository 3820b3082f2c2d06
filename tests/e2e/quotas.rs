//! Quotas over HTTP: exact under concurrency on one node and across two real `warden serve`
//! processes on PostgreSQL, windows that reset exactly at their boundary (a manual clock),
//! approvals charged when used, actual costs correcting the tally, and bad input.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use warden::clock::{ManualClock, parse_micros};

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error};

both_backends!(
    exactly_five_deploys_an_hour,
    windows_reset_at_their_boundary,
    limits_are_set_and_checked
);

fn codes(answer: &Value) -> Vec<String> {
    answer["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

fn quota<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["quotas"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["quota"] == name))
        .unwrap_or_else(|| panic!("no quota {name}: {answer}"))
}

/// Fires `n` decisions at once (spread over `bases`) and returns each answer with its cost;
/// every one must be answered 200.
async fn burst(
    bases: &[String],
    token: &str,
    n: usize,
    class: &str,
    env: &str,
    costs: &[f64],
) -> Vec<(f64, Value)> {
    let answers = flood(bases, token, n, class, env, costs).await;
    answers
        .into_iter()
        .map(|(cost, status, _, answer)| {
            assert_eq!(status, 200, "{answer}");
            (cost, answer)
        })
        .collect()
}

/// Fires `n` decisions at once and returns each answer's cost, status, `Retry-After` and body.
async fn flood(
    bases: &[String],
    token: &str,
    n: usize,
    class: &str,
    env: &str,
    costs: &[f64],
) -> Vec<(f64, u16, Option<u64>, Value)> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, base, token, cost) = (
            client.clone(),
            bases[i % bases.len()].clone(),
            token.to_string(),
            costs[i % costs.len()],
        );
        let body = json!({"action": {"class": class, "environment": env, "service": "payments", "estimated_cost_usd": cost}});
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("{base}/v1/decisions"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (
                cost,
                r.status().as_u16(),
                retry_after,
                r.json::<Value>().await.unwrap(),
            )
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn exactly_five_deploys_an_hour(backend: Backend) {
    // Time stands still, so the burst cannot straddle an hour (or a minute).
    let clock = Arc::new(ManualClock::at(
        parse_micros("2026-11-26T10:00:20Z").unwrap(),
    ));
    let db = TestDb::new(backend).await;
    let config = db.config();
    let s = TestServer::start_clocked(db, config, clock.clone()).await;
    let bot = s.agent("looper", 2, json!({})).await;
    // 200 at once: the first 100 are decided (every request counts against calls_per_minute,
    // denied ones too); the rest find the agent over its rate limit and are refused.
    let answered = flood(
        std::slice::from_ref(&s.base),
        &bot,
        200,
        "deploy",
        "staging",
        &[0.0],
    )
    .await;
    let refused: Vec<_> = answered.iter().filter(|a| a.1 == 429).collect();
    assert_eq!(refused.len(), 100, "100 calls a minute, then cut off");
    for (_, _, retry_after, body) in &refused {
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        assert_eq!(*retry_after, Some(40), "the minute ends in 40 s: {body}");
    }
    let answers: Vec<(f64, Value)> = answered
        .into_iter()
        .filter(|a| a.1 != 429)
        .map(|(cost, status, _, answer)| {
            assert_eq!(status, 200, "{answer}");
            (cost, answer)
        })
        .collect();
    assert_eq!(answers.len(), 100);
    let allowed: Vec<&Value> = answers
        .iter()
        .map(|(_, a)| a)
        .filter(|a| a["verdict"] == "allow")
        .collect();
    assert_eq!(
        allowed.len(),
        5,
        "standard tier: 5 deploys an hour per service"
    );
    for (_, a) in &answers {
        let deploys = quota(a, "deploys_per_hour_per_service");
        assert_eq!(
            (deploys["limit"].as_f64(), deploys["scope"].as_str()),
            (Some(5.0), Some("payments")),
            "{a}"
        );
        if a["verdict"] == "deny" {
            assert_eq!(codes(a), ["grant_allows", "quota_exceeded"], "{a}");
            let text = a["reasons"][1]["text"].as_str().unwrap();
            assert!(
                text.contains("deploys_per_hour_per_service")
                    && text.contains("5 of 5")
                    && text.contains("resets at"),
                "{text}"
            );
            assert_eq!(deploys["remaining"], 0.0);
        }
    }
    // Each answer's count is as of its decision (concurrent ones may have taken more since).
    assert!(allowed.iter().all(|a| {
        (1.0..=5.0).contains(
            &quota(a, "deploys_per_hour_per_service")["used"]
                .as_f64()
                .unwrap(),
        )
    }));
    // Cut off means cut off: even an action that would be allowed is refused, body unread.
    let (status, body) = s
        .call(
            reqwest::Method::POST,
            "/v1/decisions",
            Some(&bot),
            Some(json!({"action": {"class": "read", "environment": "dev", "service": "x"}})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (429, &json!("rate_limited"))
    );
    let garbage = reqwest::Client::new()
        .post(format!("{}/v1/decisions", s.base))
        .bearer_auth(&bot)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 429, "refused before the body is read");
    // Another agent is not affected.
    let other = s.agent("steady", 2, json!({})).await;
    assert_eq!(s.verdict(&other, "deploy", "staging").await, "allow");
    // The burst went through the looper's lane a few at a time (server.agent_concurrency).
    let (_, metrics) = s.call(reqwest::Method::GET, "/metrics", None, None).await;
    let waits: u64 = metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("warden_agent_lane_waits_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no lane waits counted: {metrics}"));
    assert!(waits > 0, "{waits}");

    // Usage now; each denial is a decision with its audit record, and the overrun is one minor
    // violation for the hour, however often the agent tried again.
    let (_, q) = s.get("/v1/agents/looper/quotas", &bot).await;
    let deploys = q["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"] == "deploys_per_hour_per_service")
        .unwrap();
    assert_eq!(
        (
            deploys["usage"][0]["used"].as_f64(),
            deploys["source"].as_str()
        ),
        (Some(5.0), Some("tier")),
        "{q}"
    );
    let calls = q["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"] == "calls_per_minute")
        .unwrap();
    assert_eq!(
        calls["usage"][0]["used"], 100.0,
        "every request counts, denied ones too; refused ones are not decided: {q}"
    );
    let (_, v) = s
        .get("/v1/violations?agent=looper&limit=500", &s.admin)
        .await;
    let list = v["violations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert!(list.iter().all(|v| v["reason"] == "quota_exceeded"), "{v}");
    let (_, denials) = s
        .get(
            "/v1/audit?event_type=decision&agent=looper&verdict=deny&limit=500",
            &s.admin,
        )
        .await;
    assert_eq!(
        denials["records"].as_array().unwrap().len(),
        95,
        "{denials}"
    );
    let (_, trust) = s.get("/v1/agents/looper/trust", &s.admin).await;
    assert_eq!(
        trust["tier"], 2,
        "quota overruns are minor: no hard trigger: {trust}"
    );
    assert_eq!(trust["evidence"]["violations"], 1, "{trust}");
    // The refusals are one audit record and one piece of evidence, once the minute is over.
    let (_, none) = s
        .get("/v1/audit?event_type=agent.rate_limited", &s.admin)
        .await;
    assert_eq!(none["records"], json!([]), "not before the window ends");
    clock.advance(40_000_000);
    let mut records = Vec::new();
    for _ in 0..100 {
        let (_, page) = s
            .get("/v1/audit?event_type=agent.rate_limited", &s.admin)
            .await;
        records = page["records"].as_array().unwrap().clone();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(records.len(), 1, "{records:?}");
    let details = &records[0]["details"];
    assert_eq!(
        (
            &records[0]["agent"],
            &details["quota"],
            &details["limit"],
            &details["refused"],
            &details["window_end"]
        ),
        (
            &json!("looper"),
            &json!("calls_per_minute"),
            &json!(100),
            &json!(102),
            &json!("2026-11-26T10:01:00.000000Z")
        ),
        "{details}"
    );
    let (_, trust) = s.get("/v1/agents/looper/trust", &s.admin).await;
    assert_eq!(
        trust["evidence"]["violations"], 2,
        "one more, for the whole flood: {trust}"
    );
    // A new minute: the agent is heard again (its deploys stay spent for the hour).
    let (_, again) = s
        .decide(
            &bot,
            "deploy",
            "staging",
            json!({"action": {"class": "deploy", "environment": "staging", "service": "payments"}}),
        )
        .await;
    assert_eq!(codes(&again), ["grant_allows", "quota_exceeded"], "{again}");
    // Another service has its own count; a non-deploy is not a deploy.
    assert_eq!(
        s.decide(
            &bot,
            "deploy",
            "staging",
            json!({"action": {"class": "deploy", "environment": "staging", "service": "ledger"}})
        )
        .await
        .1["verdict"],
        "allow"
    );
    assert_eq!(s.verdict(&bot, "config_change", "staging").await, "allow");
}

/// Waits, if need be, until the real clock has at least `margin` seconds left in its current
/// window of `window` seconds, so that a burst counts in one window.
async fn well_inside(window: u64, margin: u64) {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % window;
    if into > window - margin {
        tokio::time::sleep(Duration::from_secs(window + 1 - into)).await;
    }
}

/// Two real `warden serve` processes on one PostgreSQL schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_hold_quotas_exactly() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = "bootstrap-secret-for-tests-0123456789abcdef";
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..2 {
        let port = crate::support::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .current_dir(dir.path())
            .env("WARDEN_DATABASE_URL", &db.url)
            .env("WARDEN_BOOTSTRAP_ADMIN_TOKEN", bootstrap)
            .env_remove("RUST_LOG")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.push(child);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let client = reqwest::Client::new();
    for base in &bases {
        let mut ready = false;
        for _ in 0..300 {
            if client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "{base} did not become ready");
    }
    let post = |base: &str, path: &str, token: &str, body: Value| {
        let req = client
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    // Sets an agent's limits through one replica, then waits until the other replica's read
    // cache (`storage.cache_ttl_ms`, 1 s) has let go of the old ones.
    let set_limits = |base: &str, agent: &str, limits: Value| {
        let req = client
            .put(format!("{base}/v1/agents/{agent}/quotas"))
            .bearer_auth(bootstrap)
            .json(&json!({ "limits": limits }));
        async move {
            assert_eq!(req.send().await.unwrap().status(), 200);
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    };
    // An agent created through one replica, its token through the other.
    let enrol = |id: &'static str, first: usize| {
        let (post, bases) = (&post, &bases);
        async move {
            let agent = json!({"id": id, "tool": "t", "model": "m", "team": "payments", "sponsor": "s", "tier": 2});
            assert_eq!(
                post(&bases[first], "/v1/agents", bootstrap, agent).await.0,
                201
            );
            let subject = json!({"role": "agent", "subject": id});
            let (_, token) = post(&bases[1 - first], "/v1/tokens", bootstrap, subject).await;
            token["token"].as_str().unwrap().to_string()
        }
    };
    let bot = enrol("fleet", 0).await;
    // 400 requests in a minute: the rate limit is round three's subject, not this one's.
    set_limits(&bases[0], "fleet", json!({"calls_per_minute": 100000})).await;
    // Real processes keep real time: start well inside an hour, so one burst counts in one window.
    well_inside(3600, 30).await;

    // Round one: 200 deploys split across the two replicas, each with its own cost.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let costs: Vec<f64> = (0..200)
        .map(|_| rng.random_range(1..1000) as f64 / 100.0)
        .collect();
    let answers = burst(&bases, &bot, 200, "deploy", "staging", &costs).await;
    let allowed: Vec<f64> = answers
        .iter()
        .filter(|(_, a)| a["verdict"] == "allow")
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(allowed.len(), 5, "exactly five deploys across two replicas");

    // Round two: config changes under a $60 daily budget (an admin's override).
    set_limits(
        &bases[0],
        "fleet",
        json!({"cost_per_day": 60, "calls_per_minute": 100000}),
    )
    .await;
    let answers = burst(&bases, &bot, 200, "config_change", "staging", &costs).await;
    let more: Vec<f64> = answers
        .iter()
        .filter(|(_, a)| a["verdict"] == "allow")
        .map(|(c, _)| *c)
        .collect();
    assert!(!more.is_empty());
    let cents = |v: &[f64]| v.iter().map(|c| (c * 100.0).round() as i64).sum::<i64>();
    let spent = cents(&allowed) + cents(&more);
    assert!(spent <= 6000, "the budget held: {spent} cents");
    let r = client
        .get(format!("{}/v1/agents/fleet/quotas", bases[1]))
        .bearer_auth(bootstrap)
        .send()
        .await
        .unwrap();
    let q: Value = r.json().await.unwrap();
    let cost = q["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"] == "cost_per_day")
        .unwrap();
    assert_eq!(
        ((cost["usage"][0]["used"].as_f64().unwrap() * 100.0).round() as i64),
        spent,
        "the tally is the sum of allowed costs, to the cent: {q}"
    );
    assert_eq!(cost["source"], "agent");
    // Every denial said which quota, its limit, the usage and the reset.
    for (_, a) in answers.iter().filter(|(_, a)| a["verdict"] == "deny") {
        assert!(codes(a).contains(&"quota_exceeded".to_string()), "{a}");
        let c = quota(a, "cost_per_day");
        assert!(c["limit"] == 60.0 && c["resets_at"].is_string(), "{a}");
    }

    // Round three: a rate limit of 50 calls a minute, flooded through both replicas at once.
    let sprinter = enrol("sprinter", 1).await;
    set_limits(&bases[1], "sprinter", json!({"calls_per_minute": 50})).await;
    well_inside(60, 15).await;
    let answered = flood(&bases, &sprinter, 120, "read", "production", &[0.0]).await;
    let status = |code| answered.iter().filter(|a| a.1 == code).count();
    assert_eq!(
        (status(200), status(429)),
        (50, 70),
        "exactly 50 decided across two replicas, the rest refused"
    );
    assert!(
        answered
            .iter()
            .filter(|a| a.1 == 429)
            .all(|a| a.2.is_some_and(|s| (1..=60).contains(&s))),
        "every refusal says when to come back"
    );
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn windows_reset_at_their_boundary(backend: Backend) {
    let clock = ManualClock::at(parse_micros("2026-11-26T10:00:00Z").unwrap());
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    let mut quotas = warden::quotas::QuotaPolicy {
        time_zone: "America/New_York".into(),
        ..Default::default()
    };
    quotas.teams.insert(
        "payments".into(),
        [("cost_per_day".to_string(), 20.0)].into(),
    );
    config.policy.quotas = Some(quotas);
    config
        .policy
        .approval_ttl_by_class
        .insert("deploy".into(), 6 * 3600);
    // The test reports few outcomes and moves the clock a day: keep them from going overdue.
    config.policy.outcome_deadline_secs = Some(7 * 24 * 3600);
    let s = TestServer::start_clocked(db, config, Arc::new(clock.clone())).await;
    let bot = s.agent("edge", 2, json!({})).await;
    let deploy = |cost: f64| json!({"action": {"class": "deploy", "environment": "staging", "service": "payments", "estimated_cost_usd": cost}});

    // Five deploys fill the hour, each answer counting down; at 10:59:59.999999 the sixth is still in it.
    for n in 1..=5 {
        let (_, a) = s.post("/v1/decisions", &bot, deploy(1.0)).await;
        assert_eq!(a["verdict"], "allow");
        let d = quota(&a, "deploys_per_hour_per_service");
        assert_eq!(
            (d["used"].as_f64(), d["remaining"].as_f64()),
            (Some(n as f64), Some(5.0 - n as f64)),
            "{a}"
        );
    }
    clock.advance(3_599_999_999);
    let (_, sixth) = s.post("/v1/decisions", &bot, deploy(1.0)).await;
    assert_eq!(sixth["verdict"], "deny", "{sixth}");
    assert_eq!(
        quota(&sixth, "deploys_per_hour_per_service")["resets_at"],
        "2026-11-26T11:00:00.000000Z"
    );
    clock.advance(1);
    assert_eq!(
        s.post("/v1/decisions", &bot, deploy(1.0)).await.1["verdict"],
        "allow",
        "11:00:00 is a new hour"
    );

    // An approval is charged when it is used, not when it is asked for.
    let prod = json!({"action": {"class": "deploy", "environment": "production", "service": "payments", "estimated_cost_usd": 1.0}});
    for _ in 0..4 {
        assert_eq!(
            s.post("/v1/decisions", &bot, deploy(1.0)).await.1["verdict"],
            "allow"
        );
    }
    let (_, asked) = s.post("/v1/decisions", &bot, prod.clone()).await;
    assert_eq!(asked["verdict"], "require_approval", "{asked}");
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    let grants =
        json!([{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]);
    assert_eq!(
        s.post(
            "/v1/humans",
            &s.admin,
            json!({"id": "carol", "team": "platform", "grants": grants})
        )
        .await
        .0,
        201
    );
    let carol = s.token("approver", Some("carol")).await;
    assert_eq!(
        s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
            .await
            .0,
        200
    );
    let mut with_approval = prod.clone();
    with_approval["approval_id"] = json!(id);
    let (_, full) = s.post("/v1/decisions", &bot, with_approval.clone()).await;
    assert_eq!(
        (
            full["verdict"].as_str(),
            codes(&full).last().map(String::as_str)
        ),
        (Some("deny"), Some("quota_exceeded")),
        "{full}"
    );
    let (_, approval) = s.get(&format!("/v1/approvals/{id}"), &carol).await;
    assert_eq!(
        approval["status"], "approved",
        "the approval stays usable: {approval}"
    );
    clock.advance(3_600_000_000);
    let (_, used) = s.post("/v1/decisions", &bot, with_approval).await;
    assert_eq!(
        used["verdict"], "allow",
        "the next hour, the same approval goes through: {used}"
    );

    // Cost per day: the team's $20, days in New York (midnight there is 05:00 UTC).
    let (_, q) = s.get("/v1/agents/edge/quotas", &bot).await;
    let cost = q["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"] == "cost_per_day")
        .unwrap()
        .clone();
    assert_eq!(
        (cost["limit"].as_f64(), cost["source"].as_str()),
        (Some(20.0), Some("team")),
        "{q}"
    );
    assert_eq!(cost["usage"][0]["used"], 11.0, "{q}");
    assert_eq!(cost["usage"][0]["resets_at"], "2026-11-27T05:00:00.000000Z");
    let big = json!({"action": {"class": "config_change", "environment": "staging", "service": "payments", "estimated_cost_usd": 8.5}});
    let (_, ok) = s.post("/v1/decisions", &bot, big.clone()).await;
    assert_eq!(ok["verdict"], "allow", "{ok}");
    assert_eq!(
        s.post("/v1/decisions", &bot, big.clone()).await.1["verdict"],
        "deny",
        "$28 would pass $20"
    );
    // The actual cost corrects the tally: $8.50 estimated, $2.25 spent. The agent's own word
    // cannot lower it; the platform's (a service correcting the report) can.
    let path = format!(
        "/v1/decisions/{}/outcome",
        ok["decision_id"].as_str().unwrap()
    );
    assert_eq!(
        s.post(
            &path,
            &bot,
            json!({"status": "failed", "actual_cost_usd": 2.25})
        )
        .await
        .0,
        200
    );
    let used = |q: &Value| {
        q["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["quota"] == "cost_per_day")
            .unwrap()["usage"][0]["used"]
            .clone()
    };
    assert_eq!(used(&s.get("/v1/agents/edge/quotas", &bot).await.1), 19.5);
    let platform = s.token("service", None).await;
    assert_eq!(
        s.post(
            &path,
            &platform,
            json!({"status": "succeeded", "actual_cost_usd": 2.25})
        )
        .await
        .0,
        200
    );
    let (_, q) = s.get("/v1/agents/edge/quotas", &bot).await;
    let cost = q["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"] == "cost_per_day")
        .unwrap()
        .clone();
    assert_eq!(cost["usage"][0]["used"], 13.25, "{q}");
    assert_eq!(
        s.post("/v1/decisions", &bot, big.clone()).await.1["verdict"],
        "deny",
        "$21.75 would pass $20"
    );
    let small = json!({"action": {"class": "config_change", "environment": "staging", "service": "payments", "estimated_cost_usd": 6.75}});
    assert_eq!(
        s.post("/v1/decisions", &bot, small).await.1["verdict"],
        "allow",
        "exactly $20.00"
    );
    // 04:59:59.999999 UTC is still the same day in New York; 05:00 is the next.
    clock.advance(
        parse_micros("2026-11-27T04:59:59.999999Z").unwrap()
            - parse_micros("2026-11-26T12:00:00Z").unwrap(),
    );
    let tiny = json!({"action": {"class": "config_change", "environment": "staging", "service": "payments", "estimated_cost_usd": 0.01}});
    assert_eq!(
        s.post("/v1/decisions", &bot, tiny.clone()).await.1["verdict"],
        "deny"
    );
    clock.advance(1);
    assert_eq!(
        s.post("/v1/decisions", &bot, tiny).await.1["verdict"],
        "allow"
    );
}

async fn limits_are_set_and_checked(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("tuned", 2, json!({})).await;
    let put = |body: Value| {
        s.call(
            reqwest::Method::PUT,
            "/v1/agents/tuned/quotas",
            Some(&s.admin),
            Some(body),
        )
    };
    let (status, set) =
        put(json!({"limits": {"deploys_per_hour_per_service": 1, "cost_per_day": 12.5}})).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set["overrides"],
        json!({"cost_per_day": 12.5, "deploys_per_hour_per_service": 1.0})
    );
    assert_eq!(s.verdict(&bot, "deploy", "staging").await, "allow");
    assert_eq!(s.verdict(&bot, "deploy", "staging").await, "deny");
    let (_, cleared) = put(json!({"limits": {"deploys_per_hour_per_service": null}})).await;
    assert_eq!(cleared["overrides"], json!({"cost_per_day": 12.5}));
    assert_eq!(
        s.verdict(&bot, "deploy", "staging").await,
        "allow",
        "back to the tier's 5"
    );
    let (_, audit) = s.get("/v1/audit?event_type=quotas.updated", &s.admin).await;
    assert_eq!(
        audit["records"].as_array().map(Vec::len),
        Some(2),
        "{audit}"
    );

    // Bad input names the field; nothing changes.
    for (body, field) in [
        (json!({"limits": {"nope": 1}}), "limits.nope"),
        (
            json!({"limits": {"cost_per_day": -1}}),
            "limits.cost_per_day",
        ),
        (
            json!({"limits": {"cost_per_day": 1e12}}),
            "limits.cost_per_day",
        ),
        (
            json!({"limits": {"cost_per_day": 0.001}}),
            "limits.cost_per_day",
        ),
        (
            json!({"limits": {"calls_per_minute": 2.5}}),
            "limits.calls_per_minute",
        ),
        (
            json!({"limits": {"calls_per_minute": "many"}}),
            "limits.calls_per_minute",
        ),
    ] {
        assert_eq!(
            assert_error(&put(body.clone()).await, 400, "invalid_field").as_deref(),
            Some(field),
            "{body}"
        );
    }
    assert_error(&put(json!({"limit": {}})).await, 400, "invalid_field");
    assert_error(
        &s.call(
            reqwest::Method::PUT,
            "/v1/agents/tuned/quotas",
            Some(&bot),
            Some(json!({"limits": {}})),
        )
        .await,
        403,
        "forbidden_role",
    );
    assert_error(
        &s.call(
            reqwest::Method::PUT,
            "/v1/agents/tuned/quotas",
            None,
            Some(json!({"limits": {}})),
        )
        .await,
        401,
        "missing_token",
    );
    assert_error(
        &s.call(
            reqwest::Method::GET,
            "/v1/agents/tuned/trust/history",
            None,
            None,
        )
        .await,
        401,
        "missing_token",
    );
    let raw = s
        .client
        .put(format!("{}/v1/agents/tuned/quotas", s.base))
        .bearer_auth(&s.admin)
        .header("content-type", "application/json")
        .body("{\"limits\":");
    let resp = raw.send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_json"
    );
    let huge = json!({"limits": {"x".repeat(300_000): 1}});
    assert_eq!(put(huge).await.0, 413, "over the body limit");
    assert_error(
        &s.call(
            reqwest::Method::PUT,
            "/v1/agents/ghost/quotas",
            Some(&s.admin),
            Some(json!({"limits": {}})),
        )
        .await,
        404,
        "unknown_agent",
    );
    let (_, q) = s.get("/v1/agents/tuned/quotas", &s.admin).await;
    assert_eq!(q["overrides"], json!({"cost_per_day": 12.5}), "{q}");
    for cost in [-1.0, 1e10] {
        let body = json!({"action": {"class": "deploy", "environment": "dev", "service": "x", "estimated_cost_usd": cost}});
        assert_eq!(
            assert_error(
                &s.post("/v1/decisions", &bot, body).await,
                400,
                "invalid_field"
            )
            .as_deref(),
            Some("action.estimated_cost_usd")
        );
    }
    // Another agent's quotas are not an agent's business.
    let other = s.agent("other", 2, json!({})).await;
    assert_error(
        &s.get("/v1/agents/tuned/quotas", &other).await,
        404,
        "unknown_agent",
    );
}
