//! OpenID AuthZEN 1.0 endpoints on the same pipeline.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestServer, assert_error};

both_backends!(authzen_evaluation, authzen_batch);

fn eval(agent: &str, class: &str, env: &str) -> serde_json::Value {
    json!({"subject": {"type": "agent", "id": agent}, "action": {"name": class}, "resource": {"type": "service", "id": "payments", "properties": {"environment": env}}})
}

async fn authzen_evaluation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let (status, a) = s
        .post(
            "/access/v1/evaluation",
            &bot,
            eval("bot", "deploy", "staging"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (a["decision"].as_bool(), a["context"]["verdict"].as_str()),
        (Some(true), Some("allow")),
        "{a}"
    );
    // require_approval is `false` with the verdict in context.
    let (_, a) = s
        .post(
            "/access/v1/evaluation",
            &bot,
            eval("bot", "deploy", "production"),
        )
        .await;
    assert_eq!(
        (a["decision"].as_bool(), a["context"]["verdict"].as_str()),
        (Some(false), Some("require_approval"))
    );
    // The decision is recorded like a native one.
    let id = a["context"]["decision_id"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/v1/decisions/{id}"), &s.admin).await.1["verdict"],
        "require_approval"
    );
    // On behalf of a human, through subject properties.
    s.post("/v1/humans", &s.admin, json!({"id": "bob", "team": "core", "grants": [{"class": "*", "environment": "dev", "max_risk": "critical"}]})).await;
    let mut obo = eval("bot", "deploy", "staging");
    obo["subject"]["properties"] = json!({"on_behalf_of": "bob"});
    let (_, a) = s.post("/access/v1/evaluation", &bot, obo).await;
    assert_eq!(a["context"]["verdict"], "deny");
    // Errors name AuthZEN fields.
    let mut bad = eval("bot", "deploy", "staging");
    bad["resource"]["properties"] = json!({});
    assert_eq!(
        assert_error(
            &s.post("/access/v1/evaluation", &bot, bad).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("resource.properties.environment")
    );
    let mut user = eval("bot", "deploy", "staging");
    user["subject"]["type"] = json!("user");
    assert_eq!(
        assert_error(
            &s.post("/access/v1/evaluation", &bot, user).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("subject.type")
    );
    assert_eq!(
        assert_error(
            &s.post(
                "/access/v1/evaluation",
                &bot,
                eval("bot", "teleport", "dev")
            )
            .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("action.name")
    );
    assert_error(
        &s.post(
            "/access/v1/evaluation",
            &bot,
            eval("someone-else", "read", "dev"),
        )
        .await,
        403,
        "acting_for_another_agent",
    );
    assert_error(
        &s.call(
            reqwest::Method::POST,
            "/access/v1/evaluation",
            None,
            Some(eval("bot", "read", "dev")),
        )
        .await,
        401,
        "missing_token",
    );
}

async fn authzen_batch(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let batch = |semantic: Option<&str>| {
        let mut b = json!({
            "subject": {"type": "agent", "id": "bot"},
            "resource": {"type": "service", "id": "payments", "properties": {"environment": "staging"}},
            "evaluations": [
                {"action": {"name": "deploy"}},
                {"action": {"name": "deploy"}, "resource": {"type": "service", "id": "payments", "properties": {"environment": "production"}}},
                {"action": {"name": "teleport"}},
                {"action": {"name": "read"}}
            ]
        });
        if let Some(sem) = semantic {
            b["options"] = json!({"evaluations_semantic": sem});
        }
        b
    };
    let (status, r) = s.post("/access/v1/evaluations", &bot, batch(None)).await;
    assert_eq!(status, 200, "{r}");
    let evals = r["evaluations"].as_array().unwrap();
    assert_eq!(evals.len(), 4);
    assert_eq!(
        evals
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        vec![true, false, false, true]
    );
    assert_eq!(evals[1]["context"]["verdict"], "require_approval");
    assert_eq!(evals[2]["context"]["error"]["status"], 400);
    assert_eq!(
        evals[2]["context"]["error"]["field"],
        "evaluations[2].action.name"
    );
    let (_, r) = s
        .post(
            "/access/v1/evaluations",
            &bot,
            batch(Some("deny_on_first_deny")),
        )
        .await;
    assert_eq!(r["evaluations"].as_array().unwrap().len(), 2);
    let (_, r) = s
        .post(
            "/access/v1/evaluations",
            &bot,
            batch(Some("permit_on_first_permit")),
        )
        .await;
    assert_eq!(r["evaluations"].as_array().unwrap().len(), 1);
    assert_eq!(
        assert_error(
            &s.post("/access/v1/evaluations", &bot, batch(Some("whatever")))
                .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("options.evaluations_semantic")
    );
    // No evaluations array: a single evaluation of the defaults.
    let (_, r) = s.post("/access/v1/evaluations", &bot, json!({"subject": {"type": "agent", "id": "bot"}, "action": {"name": "read"}, "resource": {"type": "service", "id": "x", "properties": {"environment": "dev"}}})).await;
    assert_eq!(r["decision"], true);
}
