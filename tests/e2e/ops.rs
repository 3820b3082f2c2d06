//! Operations endpoints: health, readiness, metrics, OpenAPI, policy.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestServer};

both_backends!(operations_endpoints, policy_changes_are_audited);

async fn policy_changes_are_audited(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, page) = s.get("/v1/audit?event_type=policy.loaded", &s.admin).await;
    let (_, policy) = s.get("/v1/policy", &s.admin).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!(page["records"][0]["policy_version"], policy["version"]);
    // Opening again with the same policy records nothing; a changed policy is recorded.
    let same = warden::server::Warden::open_default(s.db.config())
        .await
        .unwrap();
    let mut changed = s.db.config();
    changed.policy.mode = Some(warden::policy::PolicyMode::Shadow);
    let other = warden::server::Warden::open_default(changed).await.unwrap();
    let (_, page) = s.get("/v1/audit?event_type=policy.loaded", &s.admin).await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["details"]["mode"], "shadow");
    assert_ne!(records[1]["policy_version"], policy["version"]);
    same.state.store.close().await;
    other.state.store.close().await;
}

async fn operations_endpoints(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(
        s.call(reqwest::Method::GET, "/healthz", None, None).await.0,
        200
    );
    assert_eq!(
        s.call(reqwest::Method::GET, "/readyz", None, None).await.0,
        200
    );
    let bot = s.agent("bot", 2, json!({})).await;
    s.verdict(&bot, "deploy", "staging").await;
    s.verdict(&bot, "deploy", "production").await;
    s.verdict(&bot, "deploy", "staging").await;
    let (_, metrics) = s.call(reqwest::Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("warden_decisions_total{verdict=\"allow\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_decisions_total{verdict=\"require_approval\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_decision_duration_seconds_count 3"),
        "{metrics}"
    );
    // Where the time went: every phase of every decision, adding up to no more than the whole,
    // and the commit (a durable write) never nothing.
    // A sample's value (seconds, or a count).
    let value = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let mut phases = 0.0;
    for phase in [
        "lane", "read", "plugins", "quota", "judge", "commit", "review",
    ] {
        let count = format!("warden_decision_phase_seconds_count{{phase=\"{phase}\"}} 3");
        assert!(metrics.contains(&count), "{count} in {metrics}");
        phases += value(&format!(
            "warden_decision_phase_seconds_sum{{phase=\"{phase}\"}} "
        ));
    }
    let whole = value("warden_decision_duration_seconds_sum ");
    assert!(
        phases > 0.0 && phases <= whole,
        "phases {phases} s, whole {whole} s"
    );
    assert!(value("warden_decision_phase_seconds_sum{phase=\"commit\"} ") > 0.0);
    // The writer's counts: the three decisions and the set-up before them, committed in one
    // transaction or more and made durable by at least one flush of the log (a file, or
    // PostgreSQL's).
    let count = |name: &str| value(name) as u64;
    let (commits, changes) = (
        count("warden_store_commits_total "),
        count("warden_store_committed_changes_total "),
    );
    assert!(
        changes >= 3 && (1..=changes).contains(&commits),
        "{commits} commits of {changes} changes"
    );
    assert!(count("warden_store_flushes_total ") >= 1, "{metrics}");
    // And their times: every batch the writer took, every flush (failed ones included).
    assert!(count("warden_store_batch_seconds_count ") >= 1, "{metrics}");
    assert!(
        count("warden_store_flush_seconds_count ") >= count("warden_store_flushes_total "),
        "{metrics}"
    );
    // The OpenAPI document is generated from the handlers.
    let (_, doc) = s
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/decisions",
        "/access/v1/evaluation",
        "/access/v1/evaluations",
        "/v1/agents",
        "/v1/agents/{id}",
        "/v1/humans",
        "/v1/tokens",
        "/v1/audit",
        "/v1/policy",
        "/healthz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("DecisionAnswer").is_some());
    // The effective policy and its version.
    let (_, p) = s.get("/v1/policy", &bot).await;
    assert_eq!(p["policy"]["tiers"].as_array().unwrap().len(), 5);
    let (_, a) = s.decide(&bot, "read", "dev", json!({})).await;
    assert_eq!(a["policy_version"], p["version"]);
    // A graceful stop drains the writer and closes the store.
    let store = s.warden.state.store.clone();
    s.stop().await;
    assert!(matches!(
        store.commit(Default::default()).await.unwrap_err(),
        warden::store::StoreError::Unavailable(_)
    ));
}
