//! Every error case: status, code and the field at fault.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestServer, assert_error};

both_backends!(
    bad_input_is_400_naming_the_field,
    auth_errors,
    not_found_and_conflicts,
    size_and_content_type,
    methods_trailing_data_names_and_cases
);

async fn bad_input_is_400_naming_the_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let d = |body| s.post("/v1/decisions", &bot, body);
    assert_eq!(
        assert_error(
            &d(json!({"action": {"environment": "dev", "service": "x"}})).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("action.class")
    );
    assert_eq!(
        assert_error(
            &d(json!({"action": {"class": "teleport", "environment": "dev", "service": "x"}}))
                .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("action.class")
    );
    assert_eq!(
        assert_error(&d(json!({"action": {"class": "deploy", "environment": "dev", "service": "x", "estimated_cost_usd": -5}})).await, 400, "invalid_field")
            .as_deref(),
        Some("action.estimated_cost_usd")
    );
    assert_eq!(
        assert_error(&d(json!({"action": {"class": "deploy", "environment": "dev", "service": "x", "resources": ["a", 7]}})).await, 400, "invalid_field")
            .as_deref(),
        Some("action.resources[1]")
    );
    assert_eq!(
        assert_error(&d(json!({"action": {"class": "deploy", "environment": "dev", "service": "x", "surprise": 1}})).await, 400, "invalid_field").as_deref(),
        Some("action.surprise")
    );
    assert_eq!(
        assert_error(&d(json!({})).await, 400, "invalid_field").as_deref(),
        Some("action")
    );
    // Malformed JSON.
    let resp = s
        .client
        .post(format!("{}/v1/decisions", s.base))
        .bearer_auth(&bot)
        .header("content-type", "application/json")
        .body("{\"action\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "malformed_json"
    );
    // A service token must name the agent.
    let svc = s.token("service", Some("platform")).await;
    assert_eq!(
        assert_error(
            &s.decide(&svc, "deploy", "dev", json!({})).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("agent")
    );
    // Agents: tier above ceiling, bad id, unknown tier, unknown field.
    let a = |body| s.post("/v1/agents", &s.admin, body);
    let base = json!({"id": "x", "tool": "t", "model": "m", "team": "core", "sponsor": "s"});
    let with = |k: &str, v| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    assert_eq!(
        assert_error(&a(with("tier", json!(3))).await, 400, "invalid_field").as_deref(),
        Some("tier")
    );
    assert_eq!(
        assert_error(
            &a(with("id", json!("Not A Slug"))).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("id")
    );
    assert_eq!(
        assert_error(&a(with("ceiling", json!(9))).await, 400, "invalid_field").as_deref(),
        Some("ceiling")
    );
    assert_eq!(
        assert_error(&a(with("tier", json!(-1))).await, 400, "invalid_field").as_deref(),
        Some("tier")
    );
    assert_eq!(
        assert_error(&a(with("colour", json!("red"))).await, 400, "invalid_field").as_deref(),
        Some("colour")
    );
    assert_eq!(
        assert_error(
            &a(with("parent", json!("nobody"))).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("parent")
    );
    // Humans: bad grant.
    let h = json!({"id": "eve", "team": "core", "grants": [{"class": "deploy", "environment": "prod", "max_risk": "extreme"}]});
    assert_eq!(
        assert_error(
            &s.post("/v1/humans", &s.admin, h).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("grants[0].max_risk")
    );
    // Audit query.
    assert_eq!(
        assert_error(
            &s.get("/v1/audit?since=yesterday", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("since")
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/audit?limit=abc", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("limit")
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/audit?actor_kind=robot", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("actor_kind")
    );
    // A plan nested deeper than an approval can be read back with (#19's poisoned approvals):
    // refused before anything is stored, naming the field; the approvals stay readable.
    let mut plan = json!("deploy");
    for _ in 0..125 {
        plan = json!([plan]);
    }
    let body = json!({"action": {"class": "deploy", "environment": "production", "service": "payments", "plan": plan}});
    assert_eq!(
        assert_error(&d(body).await, 400, "invalid_field").as_deref(),
        Some("action.plan")
    );
    let (status, pending) = s.get("/v1/approvals", &s.admin).await;
    assert_eq!(status, 200, "{pending}");
}

async fn auth_errors(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    s.agent("other", 2, json!({})).await;
    let body = json!({"action": {"class": "read", "environment": "dev", "service": "x"}});
    assert_error(
        &s.call(Method::POST, "/v1/decisions", None, Some(body.clone()))
            .await,
        401,
        "missing_token",
    );
    assert_error(
        &s.call(
            Method::POST,
            "/v1/decisions",
            Some("wdn_not-a-real-token"),
            Some(body.clone()),
        )
        .await,
        401,
        "invalid_token",
    );
    // Revoked tokens stop working at once.
    let (_, created) = s
        .post(
            "/v1/tokens",
            &s.admin,
            json!({"role": "service", "subject": "ci"}),
        )
        .await;
    let (svc, id) = (
        created["token"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    );
    assert_eq!(s.get("/v1/agents", &svc).await.0, 200);
    assert_eq!(
        s.call(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Some(&s.admin),
            None
        )
        .await
        .0,
        204
    );
    assert_error(&s.get("/v1/agents", &svc).await, 401, "token_revoked");
    assert_error(
        &s.call(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Some(&s.admin),
            None,
        )
        .await,
        404,
        "unknown_token",
    );
    // Roles.
    let agent_create =
        json!({"id": "y", "tool": "t", "model": "m", "team": "core", "sponsor": "s"});
    assert_error(
        &s.post("/v1/agents", &bot, agent_create.clone()).await,
        403,
        "forbidden_role",
    );
    assert_error(
        &s.post("/v1/agents", &svc, agent_create).await,
        401,
        "token_revoked",
    );
    assert_error(
        &s.patch("/v1/agents/bot", &bot, json!({"tier": 4})).await,
        403,
        "forbidden_role",
    );
    // An agent reads its own audit records only; verifying the whole chain is an admin's.
    assert_error(
        &s.get("/v1/audit/verify", &bot).await,
        403,
        "forbidden_role",
    );
    assert_error(
        &s.post("/v1/tokens", &bot, json!({"role": "admin"})).await,
        403,
        "forbidden_role",
    );
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "carol", "team": "core", "grants": []}),
    )
    .await;
    let approver = s.token("approver", Some("carol")).await;
    assert_error(
        &s.post("/v1/decisions", &approver, body.clone()).await,
        403,
        "forbidden_role",
    );
    // An agent acting for another agent.
    let mut other = body.clone();
    other["agent"] = json!("other");
    assert_eq!(
        assert_error(
            &s.post("/v1/decisions", &bot, other).await,
            403,
            "acting_for_another_agent"
        )
        .as_deref(),
        Some("agent")
    );
    // To an agent another agent does not exist, as on every read.
    assert_error(&s.get("/v1/agents/other", &bot).await, 404, "unknown_agent");
    assert_eq!(s.get("/v1/agents/bot", &bot).await.0, 200);
    // Tokens need real subjects.
    assert_eq!(
        assert_error(
            &s.post(
                "/v1/tokens",
                &s.admin,
                json!({"role": "agent", "subject": "ghost"})
            )
            .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("subject")
    );
}

async fn not_found_and_conflicts(backend: Backend) {
    let s = TestServer::start(backend).await;
    let svc = s.token("service", Some("platform")).await;
    assert_eq!(
        assert_error(
            &s.decide(&svc, "read", "dev", json!({"agent": "ghost"}))
                .await,
            404,
            "unknown_agent"
        )
        .as_deref(),
        Some("agent")
    );
    s.agent("bot", 2, json!({})).await;
    assert_eq!(
        assert_error(
            &s.decide(
                &svc,
                "read",
                "dev",
                json!({"agent": "bot", "on_behalf_of": "nobody"})
            )
            .await,
            404,
            "unknown_human"
        )
        .as_deref(),
        Some("on_behalf_of")
    );
    assert_error(
        &s.get("/v1/agents/ghost", &s.admin).await,
        404,
        "unknown_agent",
    );
    assert_error(
        &s.patch("/v1/agents/ghost", &s.admin, json!({"tier": 1}))
            .await,
        404,
        "unknown_agent",
    );
    assert_error(
        &s.get("/v1/humans/ghost", &s.admin).await,
        404,
        "unknown_human",
    );
    assert_error(
        &s.get("/v1/decisions/nope", &s.admin).await,
        404,
        "unknown_decision",
    );
    assert_error(&s.get("/v1/no/such/thing", &s.admin).await, 404, "no_route");
    let dup = json!({"id": "bot", "tool": "t", "model": "m", "team": "core", "sponsor": "s"});
    assert_error(
        &s.post("/v1/agents", &s.admin, dup).await,
        409,
        "agent_exists",
    );
    let human = json!({"id": "dana", "team": "core", "grants": []});
    assert_eq!(s.post("/v1/humans", &s.admin, human.clone()).await.0, 201);
    assert_error(
        &s.post("/v1/humans", &s.admin, human).await,
        409,
        "human_exists",
    );
    // A rejected change writes no audit record.
    let (_, page) = s.get("/v1/audit?event_type=agent.created", &s.admin).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    let (_, page) = s.get("/v1/audit?event_type=human.created", &s.admin).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
}

async fn size_and_content_type(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let big = json!({"action": {"class": "deploy", "environment": "dev", "service": "x", "reasoning": "a".repeat(300 * 1024)}});
    assert_error(
        &s.post("/v1/decisions", &bot, big).await,
        413,
        "payload_too_large",
    );
    let resp = s
        .client
        .post(format!("{}/v1/decisions", s.base))
        .bearer_auth(&bot)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "unsupported_media_type"
    );
    // Under the body limit but over a field limit: 400 naming the field.
    let long = json!({"action": {"class": "deploy", "environment": "dev", "service": "x", "reasoning": "a".repeat(20 * 1024)}});
    assert_eq!(
        assert_error(
            &s.post("/v1/decisions", &bot, long).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("action.reasoning")
    );
}

async fn methods_trailing_data_names_and_cases(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    // A route that exists, with a method it does not take.
    let (status, body) = s
        .call(Method::DELETE, "/v1/decisions", Some(&bot), None)
        .await;
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (405, &json!("method_not_allowed"))
    );
    // One JSON document and nothing after it.
    for tail in ["garbage", " {}", "]"] {
        let resp = s
            .client
            .post(format!("{}/v1/decisions", s.base))
            .bearer_auth(&bot)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"action": {{"class": "read", "environment": "dev", "service": "x"}}}}{tail}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{tail}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "malformed_json", "{tail}");
    }
    // Names of other things are bounded.
    let long = "a".repeat(129);
    for field in ["approval_id", "on_behalf_of"] {
        assert_eq!(
            assert_error(
                &s.decide(&bot, "deploy", "production", json!({field: long}))
                    .await,
                400,
                "invalid_field"
            )
            .as_deref(),
            Some(field)
        );
    }
    assert_eq!(
        assert_error(
            &s.decide(
                &bot,
                "deploy",
                "production",
                json!({"approval_id": "apr 1; drop"})
            )
            .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("approval_id")
    );
    // Environments are case-insensitive: `Production` is production, not an unnamed one.
    let (status, upper) = s.decide(&bot, "deploy", "Production", json!({})).await;
    assert_eq!(status, 200, "{upper}");
    let (_, lower) = s.decide(&bot, "deploy", "production", json!({})).await;
    assert_eq!(upper["verdict"], lower["verdict"]);
    assert_eq!(upper["risk"]["level"], lower["risk"]["level"]);
    let id = upper["approval"]["id"]
        .as_str()
        .expect("production needs approval at tier 2");
    let (_, approval) = s.get(&format!("/v1/approvals/{id}"), &s.admin).await;
    assert_eq!(approval["environment"], "production");
}
