//! Activity in: `POST /v1/events` (batches, per-event rejections, idempotence), the GitHub
//! receiver with real `@octokit/webhooks-examples` payloads, the Kubernetes audit receiver with
//! real `EventList` documents, and the baselines and drift computed from what came in.

use std::path::Path;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use warden::clock::{Clock as _, SystemClock, format_micros};

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error};

both_backends!(
    events_are_checked_one_by_one_and_stored_once,
    github_deliveries_are_verified_mapped_and_deduplicated,
    kubernetes_audit_writes_become_activity,
    baselines_and_drift_come_from_the_activity,
    the_platform_confirms_or_contradicts_outcomes,
);

const HOUR: i64 = 3_600_000_000;

fn event(id: &str, actor: &str, at: i64) -> Value {
    json!({
        "source": "pipeline", "source_id": id, "actor_kind": "human", "actor_id": actor,
        "team": "payments", "class": "deploy", "environment": "staging", "service": "payments",
        "targets": ["deployment/payments"], "change_size": 40, "time": format_micros(at),
    })
}

async fn events_are_checked_one_by_one_and_stored_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.events.max_batch = 50;
    // A small limit, so that an oversized body still fits the socket's buffers: the client
    // finishes sending before the server answers 413 and closes.
    config.events.body_limit_bytes = 64 << 10;
    let s = TestServer::start_with(db, config).await;
    let now = SystemClock.now_micros();
    let mut bad_class = event("e3", "bob", now - HOUR);
    bad_class["class"] = json!("deplyo");
    let mut unknown_field = event("e4", "bob", now - HOUR);
    unknown_field["colour"] = json!("red");
    let batch = json!({"events": [
        event("e1", "alice", now - 2 * HOUR),
        event("e2", "bob", now - HOUR),
        bad_class,
        unknown_field,
        "not an event",
        event("e1", "alice", now - 2 * HOUR),
    ]});
    let (status, body) = s.post("/v1/events", &s.admin, batch.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    let rejected: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(rejected, [(2, "class"), (3, "colour"), (4, "")], "{body}");
    // Sent again: nothing new is stored, nothing fails.
    let (_, again) = s.post("/v1/events", &s.admin, batch).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    // A dry run checks without storing.
    let (_, dry) = s
        .post(
            "/v1/events?dry_run=true",
            &s.admin,
            json!({"events": [event("e9", "carol", now)]}),
        )
        .await;
    assert_eq!(dry["accepted"], 1, "{dry}");
    let (_, after) = s
        .post(
            "/v1/events",
            &s.admin,
            json!({"events": [event("e9", "carol", now)]}),
        )
        .await;
    assert_eq!(after["accepted"], 1, "the dry run stored nothing: {after}");

    // Bad input on the endpoint itself.
    let many: Vec<Value> = (0..51).map(|i| event(&format!("m{i}"), "x", now)).collect();
    let (status, body) = s
        .post("/v1/events", &s.admin, json!({"events": many}))
        .await;
    assert_error(
        &(status, body.clone()),
        StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
        "batch_too_large",
    );
    let (status, body) = s
        .post("/v1/events", &s.admin, json!({"events": [], "extra": 1}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "extra", "{body}");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/events", s.base))
        .bearer_auth(&s.admin)
        .header("content-type", "application/json")
        .body("{\"events\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json", "{body}");
    let huge = "x".repeat(100 << 10);
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/events", s.base))
        .bearer_auth(&s.admin)
        .header("content-type", "application/json")
        .body(format!("{{\"events\": [\"{huge}\"]}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Agents may not write the platform's activity.
    let bot = s.agent("bot", 1, json!({})).await;
    let (status, body) = s.post("/v1/events", &bot, json!({"events": []})).await;
    assert_error(
        &(status, body.clone()),
        StatusCode::FORBIDDEN.as_u16(),
        "forbidden_role",
    );
    // The batch is audited.
    let (_, page) = s
        .get("/v1/audit?event_type=events.ingested", &s.admin)
        .await;
    assert_eq!(page["records"].as_array().unwrap().len(), 2, "{page}");
}

fn fixture(dir: &str, name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(dir)
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

const SECRET: &str = "It's a Secret to Everybody";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver(
    s: &TestServer,
    event: &str,
    delivery: &str,
    payload: &Value,
    signature: Option<String>,
) -> (StatusCode, Value) {
    let body = serde_json::to_vec(payload).unwrap();
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/integrations/github", s.base))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery);
    if let Some(sig) = signature.or_else(|| Some(sign(&body))) {
        req = req.header("x-hub-signature-256", sig);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn github_deliveries_are_verified_mapped_and_deduplicated(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.integrations.github_secret = Some(SECRET.into());
    // Small, as above; the largest real fixture is well under it.
    config.events.body_limit_bytes = 256 << 10;
    let s = TestServer::start_with(db, config).await;

    // Every fixture is accepted, mapped as far as it goes, and never a 5xx.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/github");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut stored = 0;
    for (i, name) in names.iter().enumerate() {
        let payload = fixture("github", name);
        // `ghes-3.5.deployment.json` → `deployment`; `push.tag-created.json` → `push`.
        let event = name
            .trim_start_matches("ghes-3.5.")
            .split('.')
            .next()
            .unwrap();
        let (status, body) = deliver(&s, event, &format!("delivery-{i}"), &payload, None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert!(
            body["rejected"].as_array().unwrap().is_empty(),
            "{name}: {body}"
        );
        stored += body["accepted"].as_u64().unwrap();
        // Altered copies: every top-level field removed in turn, or null: still never a 5xx.
        for key in payload.as_object().unwrap().keys() {
            for altered in [
                {
                    let mut p = payload.clone();
                    p.as_object_mut().unwrap().remove(key);
                    p
                },
                {
                    let mut p = payload.clone();
                    p[key.as_str()] = Value::Null;
                    p
                },
            ] {
                let (status, body) =
                    deliver(&s, event, &format!("altered-{i}-{key}"), &altered, None).await;
                assert_eq!(status, StatusCode::OK, "{name} without {key}: {body}");
            }
        }
    }
    assert!(
        stored >= 15,
        "only {stored} events from {} fixtures",
        names.len()
    );

    // A real deployment: a human's deploy to production, stored once however often delivered.
    let deployment = fixture("github", "deployment.created.json");
    let (_, first) = deliver(&s, "deployment", "dup-1", &deployment, None).await;
    assert_eq!(first["accepted"], 1, "{first}");
    let (_, again) = deliver(&s, "deployment", "dup-1", &deployment, None).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{again}"
    );
    // An unmapped event type is accepted and stores nothing.
    let (status, star) = deliver(
        &s,
        "star",
        "star-1",
        &fixture("github", "star.created.json"),
        None,
    )
    .await;
    assert_eq!(
        (status, star["accepted"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{star}"
    );

    // Wrong or missing signatures: 401, nothing stored.
    let (status, body) = deliver(
        &s,
        "deployment",
        "forged",
        &deployment,
        Some("sha256=00ff".into()),
    )
    .await;
    assert_error(
        &(status, body.clone()),
        StatusCode::UNAUTHORIZED.as_u16(),
        "invalid_signature",
    );
    let (status, body) = deliver(
        &s,
        "deployment",
        "forged",
        &deployment,
        Some("md5=abc".into()),
    )
    .await;
    assert_error(
        &(status, body.clone()),
        StatusCode::UNAUTHORIZED.as_u16(),
        "invalid_signature",
    );
    let mut tampered = deployment.clone();
    tampered["deployment"]["environment"] = json!("tampered");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/integrations/github", s.base))
        .header("x-github-event", "deployment")
        .header("x-github-delivery", "tampered")
        .header(
            "x-hub-signature-256",
            sign(&serde_json::to_vec(&deployment).unwrap()),
        )
        .body(serde_json::to_vec(&tampered).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Over the receivers' body limit: 413 before anything is read.
    let huge = format!("{{\"padding\": \"{}\"}}", "x".repeat(300 << 10));
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/integrations/github", s.base))
        .header("x-github-event", "push")
        .header("x-github-delivery", "huge")
        .header("x-hub-signature-256", sign(huge.as_bytes()))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Malformed JSON, correctly signed: 400.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/integrations/github", s.base))
        .header("x-github-event", "push")
        .header("x-github-delivery", "broken")
        .header("x-hub-signature-256", sign(b"{nope"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

async fn kubernetes_audit_writes_become_activity(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.integrations.kubernetes = serde_json::from_value(json!({
        "default": {"team": "platform", "service": "cluster", "environment": "production"},
    }))
    .unwrap();
    let s = TestServer::start_with(db, config).await;
    let service = s.token("service", Some("kube-apiserver")).await;
    let list = fixture("kubernetes", "eventlist.json");
    let (status, body) = s
        .post("/v1/integrations/kubernetes", &service, list.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let accepted = body["accepted"].as_u64().unwrap();
    let writes = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| {
            ["create", "update", "patch", "delete"].contains(&e["verb"].as_str().unwrap_or(""))
        })
        .count() as u64;
    assert!(
        accepted >= 1 && accepted <= writes,
        "{accepted} of {writes} writes: {body}"
    );
    // The API server retries a batch it is unsure of: nothing twice.
    let (_, again) = s.post("/v1/integrations/kubernetes", &service, list).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(accepted)),
        "{again}"
    );
    // Not an EventList: 400 naming the field.
    let (status, body) = s
        .post(
            "/v1/integrations/kubernetes",
            &service,
            json!({"kind": "Pod", "apiVersion": "v1"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "kind", "{body}");
    let (status, _) = s
        .call(
            reqwest::Method::POST,
            "/v1/integrations/kubernetes",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn baselines_and_drift_come_from_the_activity(backend: Backend) {
    let s = TestServer::start(backend).await;
    let now = SystemClock.now_micros();
    // Six humans deploy payments to staging, one a day each, for two weeks.
    let events: Vec<Value> = (0..84)
        .map(|i| {
            event(
                &format!("h{i}"),
                &format!("human-{}", i % 6),
                now - (i64::from(i) * 4 + 1) * HOUR,
            )
        })
        .collect();
    let (_, stored) = s
        .post("/v1/events", &s.admin, json!({"events": events}))
        .await;
    assert_eq!(stored["accepted"], 84, "{stored}");
    // An agent's own platform activity: a new environment the humans never used.
    let bot = s.agent("bot", 1, json!({})).await;
    drop(bot);
    let agent_events: Vec<Value> = (0..25)
        .map(|i| {
            let mut e = event(&format!("a{i}"), "bot", now - (i64::from(i) + 1) * HOUR);
            e["actor_kind"] = json!("agent");
            e["environment"] = json!("production");
            e
        })
        .collect();
    let (_, stored) = s
        .post("/v1/events", &s.admin, json!({"events": agent_events}))
        .await;
    assert_eq!(stored["accepted"], 25, "{stored}");

    // Before any recompute: drift is null, not 0.
    let (_, trust) = s.get("/v1/agents/bot/trust", &s.admin).await;
    assert_eq!(trust["drift"], Value::Null, "{trust}");

    let (status, run) = s.post("/v1/baselines/recompute", &s.admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(
        (run["events"].as_u64(), run["baselines"].as_u64()),
        (Some(84), Some(1)),
        "{run}"
    );
    let (_, page) = s
        .get("/v1/baselines?team=payments&class=deploy", &s.admin)
        .await;
    let b = &page["baselines"][0];
    assert_eq!(
        (b["humans"].as_u64(), b["events"].as_u64()),
        (Some(6), Some(84)),
        "{page}"
    );
    assert_eq!(b["scope"], "team");
    assert_eq!(b["environments"][0]["name"], "staging");
    assert_eq!(page["run"]["version"], run["version"]);
    let (_, none) = s.get("/v1/baselines?class=db_migration", &s.admin).await;
    assert_eq!(none["baselines"], json!([]));
    let (status, body) = s.get("/v1/baselines?colour=red", &s.admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let agent_token = s.token("agent", Some("bot")).await;
    let (status, _) = s.get("/v1/baselines", &agent_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The agent works somewhere its humans never do: high drift, shown in the trust API.
    let (_, trust) = s.get("/v1/agents/bot/trust", &s.admin).await;
    let drift = &trust["drift"];
    assert!(drift["score"].as_f64().unwrap() > 0.5, "{trust}");
    assert_eq!(drift["mix"].as_f64(), Some(1.0), "{trust}");
    assert_eq!(drift["actions"], 25, "{trust}");
}

/// GitHub's deployment statuses about deployments Warden allowed (their payload names the
/// decision): the same outcome as the agent's report confirms it; another contradicts it,
/// replaces it and is a violation; without a report, the platform's stands as the outcome.
async fn the_platform_confirms_or_contradicts_outcomes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.integrations.github_secret = Some(SECRET.into());
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("bot", 3, json!({})).await;
    s.lift_quotas("bot").await;
    let decision = || async {
        let (_, answer) = s.decide(&bot, "deploy", "production", json!({})).await;
        assert_eq!(answer["verdict"], "allow", "{answer}");
        answer["decision_id"].as_str().unwrap().to_string()
    };
    let (said_ok, lied, silent) = (decision().await, decision().await, decision().await);
    for id in [&said_ok, &lied] {
        let path = format!("/v1/decisions/{id}/outcome");
        let (status, body) = s.post(&path, &bot, json!({"status": "succeeded"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let real = fixture("github", "deployment_status.created.success.json");
    let status_for = |id: &str, state: &str| {
        let mut p = real.clone();
        p["deployment"]["payload"] = json!({"warden_decision_id": id});
        p["deployment_status"]["state"] = json!(state);
        p
    };
    let (_, body) = deliver(
        &s,
        "deployment_status",
        "st-1",
        &status_for(&said_ok, "success"),
        None,
    )
    .await;
    assert_eq!(
        (body["confirmed"].as_u64(), body["contradicted"].as_u64()),
        (Some(1), Some(0)),
        "{body}"
    );
    let (_, body) = deliver(
        &s,
        "deployment_status",
        "st-2",
        &status_for(&lied, "failure"),
        None,
    )
    .await;
    assert_eq!(body["contradicted"], 1, "{body}");
    let (_, body) = deliver(
        &s,
        "deployment_status",
        "st-3",
        &status_for(&silent, "success"),
        None,
    )
    .await;
    assert_eq!(body["confirmed"], 1, "{body}");
    // Redelivered: stored once, confirmed once.
    let (_, body) = deliver(
        &s,
        "deployment_status",
        "st-2",
        &status_for(&lied, "failure"),
        None,
    )
    .await;
    assert_eq!(
        (body["duplicates"].as_u64(), body["contradicted"].as_u64()),
        (Some(1), Some(0)),
        "{body}"
    );

    let outcome = |id: String| {
        let s = &s;
        async move {
            s.get(&format!("/v1/decisions/{id}/outcome"), &s.admin)
                .await
                .1
        }
    };
    let ok = outcome(said_ok.clone()).await;
    assert_eq!(
        (
            ok["outcome"].as_str(),
            ok["confirmation"]["status"].as_str()
        ),
        (Some("succeeded"), Some("confirmed")),
        "{ok}"
    );
    let lie = outcome(lied.clone()).await;
    assert_eq!(
        (
            lie["outcome"].as_str(),
            lie["confirmation"]["status"].as_str()
        ),
        (Some("failed"), Some("contradicted")),
        "{lie}"
    );
    assert_eq!(lie["confirmation"]["by"], "github:st-2", "{lie}");
    let first = outcome(silent.clone()).await;
    assert_eq!(
        (first["outcome"].as_str(), first["reported_by"].as_str()),
        (Some("succeeded"), Some("platform:github")),
        "{first}"
    );
    // The contradiction is a violation, and the trust view shows the mix.
    let (_, violations) = s.get("/v1/violations?agent=bot", &s.admin).await;
    let reasons: Vec<&str> = violations["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["outcome_contradicted"], "{violations}");
    let (_, trust) = s.get("/v1/agents/bot/trust", &s.admin).await;
    assert_eq!(
        trust["confirmations"],
        json!({"confirmed": 2, "contradicted": 1, "self_reported": 0}),
        "{trust}"
    );
    assert_eq!(trust["evidence"]["violations"], 1, "{trust}");
}
