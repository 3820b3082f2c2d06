//! The seed scenarios of the decision pipeline.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error};

both_backends!(
    standard_agent,
    observe_agent_is_denied_every_write,
    chatops_agent_bounded_by_human,
    shadow_mode_never_blocks,
    sub_agent_capped_by_parent,
    suspended_agent_is_denied,
    flag_mode_allows_and_records
);

const WRITE_CLASSES: [&str; 9] = [
    "run_tests",
    "docs_update",
    "api_call",
    "deploy",
    "config_change",
    "infra_create",
    "infra_delete",
    "db_migration",
    "security_policy_change",
];

async fn standard_agent(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("deploy-bot", 2, json!({})).await;
    assert_eq!(s.verdict(&bot, "deploy", "staging").await, "allow");
    assert_eq!(
        s.verdict(&bot, "deploy", "production").await,
        "require_approval"
    );
    assert_eq!(
        s.verdict(&bot, "db_migration", "production").await,
        "require_approval"
    );
    assert_eq!(
        s.verdict(&bot, "db_migration", "staging").await,
        "require_approval"
    );
    assert_eq!(
        s.verdict(&bot, "security_policy_change", "production")
            .await,
        "require_approval"
    );
    assert_eq!(
        s.verdict(&bot, "security_policy_change", "staging").await,
        "require_approval"
    );
    // The answer carries what DESIGN.md promises.
    let (_, a) = s
        .decide(
            &bot,
            "deploy",
            "production",
            json!({"action": {"class": "deploy", "environment": "production", "service": "payments", "reasoning": "ship fix"}}),
        )
        .await;
    assert_eq!(a["tier"], 2);
    assert_eq!(a["risk"]["level"], "low");
    assert!(a["policy_version"].as_str().unwrap().starts_with("p-"));
    assert_eq!(a["reasons"][0]["code"], "approval_required");
    assert!(a["decision_id"].as_str().is_some());
    // A breaking change is riskier.
    let (_, a) = s.decide(&bot, "deploy", "staging", json!({"action": {"class": "deploy", "environment": "staging", "service": "payments", "change": {"files_changed": 3, "lines_added": 10, "lines_deleted": 2, "paths": ["api.proto"], "breaking": true}}})).await;
    assert_eq!(
        (a["risk"]["level"].as_str(), a["verdict"].as_str()),
        (Some("high"), Some("require_approval")),
        "{a}"
    );
}

async fn observe_agent_is_denied_every_write(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("watcher", 0, json!({})).await;
    for env in ["dev", "staging", "production"] {
        assert_eq!(s.verdict(&bot, "read", env).await, "allow", "read in {env}");
        for class in WRITE_CLASSES {
            let (status, a) = s.decide(&bot, class, env, json!({})).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(a["verdict"], "deny", "{class} in {env}: {a}");
            assert_eq!(a["reasons"][0]["code"], "no_grant");
        }
    }
}

async fn chatops_agent_bounded_by_human(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.delegation.vouching_services = vec!["chat-bridge".into()];
    let s = TestServer::start_with(db, config).await;
    let (status, _) = s
        .post("/v1/humans", &s.admin, json!({"id": "bob", "team": "payments", "grants": [{"class": "*", "environment": "staging", "service": "*", "max_risk": "critical"}, {"class": "read", "environment": "*", "max_risk": "critical"}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let bob = s.token("approver", Some("bob")).await;
    // Tier 4 alone may deploy to production...
    let bot = s.agent("chatops", 4, json!({})).await;
    assert_eq!(s.verdict(&bot, "deploy", "production").await, "allow");
    // Bob lets it act for him, with his own credentials (an admin cannot do it for him).
    let scope = json!({"agent": "chatops", "classes": ["deploy", "read"], "environments": ["Staging", "production"], "hours": 8});
    assert_error(
        &s.post("/v1/delegations", &s.admin, scope.clone()).await,
        403,
        "forbidden_role",
    );
    let (status, given) = s.post("/v1/delegations", &bob, scope).await;
    assert_eq!(status, StatusCode::CREATED, "{given}");
    assert_eq!(given["environments"], json!(["staging", "production"]));
    let delegation = given["id"].as_str().unwrap().to_string();
    // ...but not for bob, who has no production rights.
    let (status, a) = s
        .decide(&bot, "deploy", "production", json!({"on_behalf_of": "bob"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a["verdict"], "deny", "{a}");
    assert!(
        a["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "on_behalf_of_not_permitted"),
        "{a}"
    );
    // Within bob's rights the agent's own tier decides.
    let (_, a) = s
        .decide(&bot, "deploy", "staging", json!({"on_behalf_of": "bob"}))
        .await;
    assert_eq!(a["verdict"], "allow", "{a}");
    // The audit record names both the agent and the human, and what proves the claim.
    let (_, page) = s
        .get("/v1/audit?event_type=decision&agent=chatops", &s.admin)
        .await;
    let rec = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["on_behalf_of"] == "bob" && r["outcome"] == "allow")
        .expect("a decision on behalf of bob");
    assert_eq!(rec["actor"]["kind"], "agent");
    assert_eq!(rec["actor"]["id"], "chatops");
    assert_eq!(rec["actor"]["tool"], "claude-code");
    assert_eq!(
        rec["details"]["on_behalf_of_proof"]["delegation"],
        json!(delegation)
    );

    // Who sees which delegations.
    let (_, mine) = s.get("/v1/delegations", &bob).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let (_, its) = s.get("/v1/delegations", &bot).await;
    assert_eq!(its[0]["human"], "bob");
    let carol = s.approver("carol").await;
    let (_, hers) = s.get("/v1/delegations?human=bob", &carol).await;
    assert_eq!(hers, json!([]), "a human sees only their own");
    assert_error(
        &s.post(
            &format!("/v1/delegations/{delegation}/revoke"),
            &carol,
            json!({}),
        )
        .await,
        404,
        "unknown_delegation",
    );

    // A trusted service vouches for the human in the same call; another service cannot.
    let helper = "helper";
    s.agent(helper, 4, json!({})).await;
    let bridge = s.token("service", Some("chat-bridge")).await;
    let other = s.token("service", Some("cron")).await;
    let ask = json!({"agent": helper, "on_behalf_of": "bob", "action": {"class": "deploy", "environment": "staging", "service": "payments"}});
    let (_, vouched) = s.post("/v1/decisions", &bridge, ask.clone()).await;
    assert_eq!(vouched["verdict"], "allow", "{vouched}");
    let (_, unvouched) = s.post("/v1/decisions", &other, ask).await;
    assert_eq!(unvouched["verdict"], "deny", "{unvouched}");
    assert_eq!(
        unvouched["reasons"][unvouched["reasons"].as_array().unwrap().len() - 1]["code"],
        "on_behalf_of_unproven"
    );

    // Out of the delegation's scope, or after bob revokes it: refused, and a violation.
    let (_, outside) = s
        .decide(
            &bot,
            "config_change",
            "staging",
            json!({"on_behalf_of": "bob"}),
        )
        .await;
    assert_eq!(outside["verdict"], "deny", "{outside}");
    let (status, revoked) = s
        .post(
            &format!("/v1/delegations/{delegation}/revoke"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let (_, after) = s
        .decide(&bot, "read", "staging", json!({"on_behalf_of": "bob"}))
        .await;
    assert_eq!(after["verdict"], "deny", "{after}");
    let (_, violations) = s.get("/v1/violations?agent=chatops", &s.admin).await;
    let reasons: Vec<&str> = violations["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "on_behalf_of_unproven")
            .count(),
        2,
        "{reasons:?}"
    );
    let (_, audit) = s
        .get("/v1/audit?event_type=delegation.revoked", &s.admin)
        .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1);
}

async fn shadow_mode_never_blocks(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("trial", 0, json!({"shadow": true})).await;
    let (_, a) = s
        .decide(&bot, "db_migration", "production", json!({}))
        .await;
    assert_eq!(
        (a["verdict"].as_str(), a["shadow_verdict"].as_str()),
        (Some("allow"), Some("deny")),
        "{a}"
    );
    let id = a["decision_id"].as_str().unwrap();
    // Recorded with the would-be verdict, in the decision and in the audit trail.
    let (status, stored) = s.get(&format!("/v1/decisions/{id}"), &s.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["shadow_verdict"], "deny");
    let (_, page) = s
        .get("/v1/audit?event_type=decision&agent=trial", &s.admin)
        .await;
    assert_eq!(page["records"][0]["details"]["shadow_verdict"], "deny");
    // Turning shadow off enforces.
    let (status, _) = s
        .patch("/v1/agents/trial", &s.admin, json!({"shadow": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.verdict(&bot, "db_migration", "production").await, "deny");
}

async fn sub_agent_capped_by_parent(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.agent("orchestrator", 1, json!({})).await;
    let child = s
        .agent("worker", 3, json!({"parent": "orchestrator"}))
        .await;
    let (_, a) = s.decide(&child, "deploy", "production", json!({})).await;
    assert_eq!(
        (
            a["verdict"].as_str(),
            a["tier"].as_u64(),
            a["agent_tier"].as_u64()
        ),
        (Some("deny"), Some(1), Some(3)),
        "{a}"
    );
    s.patch("/v1/agents/orchestrator", &s.admin, json!({"tier": 4}))
        .await;
    assert_eq!(s.verdict(&child, "deploy", "production").await, "allow");
}

async fn suspended_agent_is_denied(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("rogue", 4, json!({})).await;
    let (status, _) = s
        .patch("/v1/agents/rogue", &s.admin, json!({"status": "suspended"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a) = s.decide(&bot, "read", "dev", json!({})).await;
    assert_eq!(
        (a["verdict"].as_str(), a["reasons"][0]["code"].as_str()),
        (Some("deny"), Some("agent_suspended"))
    );
    s.patch("/v1/agents/rogue", &s.admin, json!({"status": "active"}))
        .await;
    assert_eq!(s.verdict(&bot, "read", "dev").await, "allow");
}

async fn flag_mode_allows_and_records(backend: Backend) {
    let db = crate::support::TestDb::new(backend).await;
    let mut config = db.config();
    config
        .policy
        .violation_modes
        .insert("docs_update".into(), warden::policy::ViolationMode::Flag);
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("scribe", 0, json!({})).await;
    let (_, a) = s.decide(&bot, "docs_update", "production", json!({})).await;
    assert_eq!(a["verdict"], "allow", "{a}");
    assert!(
        a["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "violation_flagged")
    );
    let pool = s.db.pool().await;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM violations WHERE agent_id = 'scribe' AND mode = 'flag'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
}
