//! Agents and humans: create, read, change, with every change audited.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestServer, assert_error};

both_backends!(agent_lifecycle, humans_and_parents);

async fn agent_lifecycle(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, a) =
        s.post("/v1/agents", &s.admin, json!({"id": "bot", "tool": "claude-code", "model": "opus", "team": "payments", "sponsor": "alice"})).await;
    assert_eq!(status, 201);
    // Defaults: sandbox tier, standard ceiling, active, enforcing.
    assert_eq!(
        (
            a["tier"].as_u64(),
            a["ceiling"].as_u64(),
            a["status"].as_str(),
            a["shadow"].as_bool()
        ),
        (Some(1), Some(2), Some("active"), Some(false))
    );
    // Never above the ceiling, on create or on change.
    assert_eq!(
        assert_error(
            &s.patch("/v1/agents/bot", &s.admin, json!({"tier": 3}))
                .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("tier")
    );
    let (status, a) = s
        .patch("/v1/agents/bot", &s.admin, json!({"ceiling": 3, "tier": 3}))
        .await;
    assert_eq!((status.as_u16(), a["tier"].as_u64()), (200, Some(3)), "{a}");
    assert_eq!(
        assert_error(
            &s.patch("/v1/agents/bot", &s.admin, json!({"ceiling": 2}))
                .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("tier")
    );
    // Lists filter by team.
    s.post(
        "/v1/agents",
        &s.admin,
        json!({"id": "ops-bot", "tool": "t", "model": "m", "team": "infra", "sponsor": "s"}),
    )
    .await;
    assert_eq!(
        s.get("/v1/agents", &s.admin)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.get("/v1/agents?team=infra", &s.admin).await.1[0]["id"],
        "ops-bot"
    );
    // Every change is audited with before and after.
    let (_, page) = s
        .get("/v1/audit?event_type=agent.updated&agent=bot", &s.admin)
        .await;
    let rec = &page["records"][0];
    assert_eq!(
        (
            rec["details"]["before"]["tier"].as_u64(),
            rec["details"]["after"]["tier"].as_u64()
        ),
        (Some(1), Some(3))
    );
    assert_eq!(rec["actor"]["kind"], "admin");
    assert_eq!(rec["authorizing_human"], "root");
}

async fn humans_and_parents(backend: Backend) {
    let s = TestServer::start(backend).await;
    let human = json!({"id": "alice", "team": "payments", "grants": [{"class": "deploy", "environment": "prod*", "service": "pay*", "max_risk": "medium"}]});
    assert_eq!(s.post("/v1/humans", &s.admin, human.clone()).await.0, 201);
    let (_, got) = s.get("/v1/humans/alice", &s.admin).await;
    assert_eq!(got["grants"], human["grants"]);
    assert_eq!(
        s.get("/v1/humans", &s.admin)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Parents: must exist, and no loops.
    s.post(
        "/v1/agents",
        &s.admin,
        json!({"id": "a", "tool": "t", "model": "m", "team": "core", "sponsor": "s"}),
    )
    .await;
    s.post("/v1/agents", &s.admin, json!({"id": "b", "tool": "t", "model": "m", "team": "core", "sponsor": "s", "parent": "a"})).await;
    assert_eq!(
        assert_error(
            &s.patch("/v1/agents/a", &s.admin, json!({"parent": "b"}))
                .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("parent")
    );
    assert_eq!(
        s.patch("/v1/agents/b", &s.admin, json!({"parent": null}))
            .await
            .1["parent"],
        serde_json::Value::Null
    );
}
