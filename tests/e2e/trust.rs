//! The trust score over HTTP: built from reported outcomes and violations, lowered more by a
//! rollback than by success, visible to the agent itself and to humans.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestServer, assert_error};

both_backends!(trust_follows_the_record);

async fn trust_follows_the_record(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("builder", 2, json!({})).await;
    s.lift_quotas("builder").await;
    let other = s.agent("other", 2, json!({})).await;
    let trust = |t: String| {
        let s = &s;
        async move { s.get("/v1/agents/builder/trust", &t).await }
    };

    let (status, none) = trust(s.admin.clone()).await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(
        (none["score"].as_f64(), none["tier"].as_u64()),
        (Some(0.0), Some(2)),
        "no evidence, no trust: {none}"
    );

    // Twenty staging deploys that succeeded, as the deploy pipeline (a service) reports.
    let pipeline = s.token("service", None).await;
    for _ in 0..20 {
        let (_, d) = s.decide(&bot, "deploy", "staging", json!({})).await;
        let path = format!(
            "/v1/decisions/{}/outcome",
            d["decision_id"].as_str().unwrap()
        );
        assert_eq!(
            s.post(&path, &pipeline, json!({"status": "succeeded"}))
                .await
                .0,
            200
        );
    }
    let (_, good) = trust(bot.clone()).await;
    let good_score = good["score"].as_f64().unwrap();
    // The score noted on the agent (what decisions answer with) is the same one.
    let (_, agent) = s.get("/v1/agents/builder", &s.admin).await;
    assert!(
        (agent["trust_score"].as_f64().unwrap() - good_score).abs() < 1e-6,
        "{agent} vs {good}"
    );
    assert!(good_score > 0.8 && good_score < 1.0, "{good}");
    assert_eq!(good["evidence"]["successes"], 20);
    let low = good["by_risk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["risk"] == "low")
        .unwrap();
    assert!(low["score"].as_f64().unwrap() > 0.8);
    let high = good["by_risk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["risk"] == "high")
        .unwrap();
    assert_eq!(high["score"], 0.0, "low-risk work earns no high-risk trust");

    // One rollback costs more than one failure would; a violation shows too.
    let (_, d) = s.decide(&bot, "deploy", "staging", json!({})).await;
    s.post(
        &format!(
            "/v1/decisions/{}/outcome",
            d["decision_id"].as_str().unwrap()
        ),
        &bot,
        json!({"status": "rolled_back"}),
    )
    .await;
    let (_, after_rollback) = trust(s.admin.clone()).await;
    let rolled = after_rollback["score"].as_f64().unwrap();
    assert!(rolled < good_score, "{after_rollback}");
    assert!(after_rollback["rollback_rate"].as_f64().unwrap() > 0.0);
    assert_eq!(
        s.decide(&bot, "security_policy_change", "production", json!({}))
            .await
            .1["verdict"],
        "require_approval"
    );
    s.patch("/v1/agents/builder", &s.admin, json!({"tier": 0}))
        .await;
    assert_eq!(s.verdict(&bot, "deploy", "staging").await, "deny");
    let (_, after_violation) = trust(s.admin.clone()).await;
    assert_eq!(
        after_violation["evidence"]["violations"], 1,
        "{after_violation}"
    );
    assert!(after_violation["score"].as_f64().unwrap() < rolled);
    assert!(after_violation["violation_rate"].as_f64().unwrap() > 0.0);

    // The team's dashboard lists every agent, least trusted first.
    s.agent("elsewhere", 2, json!({"team": "ledger"})).await;
    let (_, team) = s.get("/v1/trust?team=payments", &s.admin).await;
    let names: Vec<&str> = team
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "builder"], "{team}");
    assert_error(&s.get("/v1/trust", &bot).await, 403, "forbidden_role");

    // Another agent may not look; an unknown agent is 404.
    assert_error(
        &s.get("/v1/agents/builder/trust", &other).await,
        404,
        "unknown_agent",
    );
    assert_error(
        &s.get("/v1/agents/nobody/trust", &s.admin).await,
        404,
        "unknown_agent",
    );
}
