//! Automatic rollback: metric samples for an allowed action judged by the reference
//! canary-rollback plugin in the real runtime; a failure requests a rollback once.

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden::config::EventType;

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error, unanswered_hook};

both_backends!(a_failing_canary_requests_a_rollback_once);

fn window(slower: f64, canary_errors: u64) -> Value {
    let baseline: Vec<f64> = (0..300).map(|i| 100.0 + f64::from(i % 30)).collect();
    let canary: Vec<f64> = baseline.iter().map(|v| v * slower).collect();
    json!({"name": "latency_ms", "canary": canary, "baseline": baseline,
        "canary_errors": canary_errors, "canary_total": 5000, "baseline_errors": 50, "baseline_total": 5000})
}

async fn a_failing_canary_requests_a_rollback_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("canary-rollback");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(plugin.join("plugin.toml"), "name = \"canary-rollback\"\nversion = \"0.1.0\"\nkind = \"rollback_trigger\"\nclasses = [\"deploy\"]\n")
        .unwrap();
    std::fs::write(
        plugin.join("plugin.wasm"),
        crate::plugins::component("plugins/canary-rollback"),
    )
    .unwrap();
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.plugins.dir = Some(dir.path().to_path_buf());
    config.webhooks = vec![unanswered_hook("pager", vec![EventType::RollbackRequested])];
    config.notifications.initial_backoff_ms = 60_000;
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("deployer", 2, json!({})).await;
    let other = s.agent("other", 2, json!({})).await;
    let (_, deploy) = s.decide(&bot, "deploy", "staging", json!({})).await;
    let path = format!(
        "/v1/decisions/{}/signals",
        deploy["decision_id"].as_str().unwrap()
    );

    // Healthy: nothing happens.
    let (status, healthy) = s
        .post(&path, &bot, json!({"windows": [window(1.0, 52)]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{healthy}");
    assert_eq!(
        (
            healthy["verdict"].as_str(),
            healthy["rollback_requested"].as_bool()
        ),
        (Some("successful"), Some(false)),
        "{healthy}"
    );
    assert_eq!(healthy["plugins"][0]["plugin"], "canary-rollback@0.1.0");

    // 50% slower: failed, and a rollback is requested, once.
    let (_, slow) = s
        .post(&path, &bot, json!({"windows": [window(1.5, 52)]}))
        .await;
    assert_eq!(
        (
            slow["verdict"].as_str(),
            slow["rollback_requested"].as_bool(),
            slow["measurements"].as_u64()
        ),
        (Some("failed"), Some(true), Some(2)),
        "{slow}"
    );
    assert!(
        slow["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("latency_ms: failed")),
        "{slow}"
    );
    let (_, again) = s
        .post(&path, &s.admin, json!({"windows": [window(1.6, 300)]}))
        .await;
    assert_eq!(
        (
            again["verdict"].as_str(),
            again["rollback_requested"].as_bool()
        ),
        (Some("failed"), Some(true))
    );
    // After a requested rollback the agent cannot report success.
    let outcome = format!(
        "/v1/decisions/{}/outcome",
        deploy["decision_id"].as_str().unwrap()
    );
    assert_error(
        &s.post(&outcome, &bot, json!({"status": "succeeded"})).await,
        409,
        "rollback_requested",
    );
    assert_eq!(
        s.post(&outcome, &bot, json!({"status": "rolled_back"}))
            .await
            .0,
        StatusCode::OK
    );
    let (_, audit) = s
        .get("/v1/audit?event_type=rollback.requested", &s.admin)
        .await;
    assert_eq!(
        audit["records"].as_array().unwrap().len(),
        1,
        "requested once"
    );
    let deliveries = s.documented_deliveries("pager").await;
    let types: Vec<&str> = deliveries
        .iter()
        .map(|d| d["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["rollback.requested"]);

    // Where no trigger judges, for actions not allowed, for others, and bad input: clear errors.
    let (_, config_change) = s.decide(&bot, "config_change", "staging", json!({})).await;
    let unjudged = format!(
        "/v1/decisions/{}/signals",
        config_change["decision_id"].as_str().unwrap()
    );
    assert_error(
        &s.post(&unjudged, &bot, json!({"windows": [window(1.0, 0)]}))
            .await,
        422,
        "no_rollback_trigger",
    );
    let (_, pending) = s
        .decide(&bot, "infra_delete", "production", json!({}))
        .await;
    let not_allowed = format!(
        "/v1/decisions/{}/signals",
        pending["decision_id"].as_str().unwrap()
    );
    assert_error(
        &s.post(&not_allowed, &bot, json!({"windows": [window(1.0, 0)]}))
            .await,
        422,
        "decision_not_allowed",
    );
    assert_error(
        &s.post(&path, &other, json!({"windows": [window(1.0, 0)]}))
            .await,
        404,
        "unknown_decision",
    );
    assert_eq!(
        assert_error(
            &s.post(&path, &bot, json!({"windows": []})).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("windows")
    );
    let huge: Vec<f64> = vec![1.0; 30_000];
    let too_many = json!({"windows": [{"name": "latency_ms", "canary": huge, "baseline": [1.0]}]});
    assert_eq!(
        assert_error(&s.post(&path, &bot, too_many).await, 400, "invalid_field").as_deref(),
        Some("windows")
    );
    let mut impossible = window(1.0, 0);
    impossible["canary_errors"] = json!(9999);
    assert_eq!(
        assert_error(
            &s.post(&path, &bot, json!({"windows": [impossible]})).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("windows[0].canary_errors")
    );
}
