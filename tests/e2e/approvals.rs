//! Human-in-the-loop approvals: a require_approval verdict creates a request bound to the exact
//! action; a human approves or rejects it; the agent re-submits the same action once.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error};

both_backends!(
    approve_then_execute_exactly_once,
    reject_expire_and_four_eyes,
    who_may_approve_and_races,
    two_replicas_consume_once,
    distinct_approvers_where_configured
);

fn migration(service: &str) -> Value {
    json!({"class": "db_migration", "environment": "production", "service": service,
        "reasoning": "add an index for the slow payments query", "plan": {"steps": ["create index concurrently", "analyze"]}})
}

async fn decide(
    s: &TestServer,
    token: &str,
    action: Value,
    approval_id: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({ "action": action });
    if let Some(id) = approval_id {
        body["approval_id"] = json!(id);
    }
    s.post("/v1/decisions", token, body).await
}

fn codes(answer: &Value) -> Vec<String> {
    answer["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

async fn approve_then_execute_exactly_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("migrator", 2, json!({})).await;
    // These scenarios present misused approvals on purpose: keep the tier controller out of them.
    s.patch("/v1/agents/migrator", &s.admin, json!({"pinned": true}))
        .await;
    let carol = s.approver("carol").await;

    // A production migration at tier 2 waits for a human.
    let (_, asked) = decide(&s, &bot, migration("payments"), None).await;
    assert_eq!(asked["verdict"], "require_approval", "{asked}");
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(asked["approval"]["url"], format!("/v1/approvals/{id}"));
    assert!(asked["approval"]["expires_at"].is_string());
    assert!(
        asked["obligations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "await_approval"),
        "{asked}"
    );

    // The approver sees the plan, the reasoning and the risk; the agent may watch its own.
    let (_, pending) = s.get("/v1/approvals?status=pending", &carol).await;
    assert_eq!(
        pending["approvals"].as_array().unwrap().len(),
        1,
        "{pending}"
    );
    let (status, shown) = s.get(&format!("/v1/approvals/{id}"), &bot).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"], "pending");
    assert_eq!(
        shown["summary"]["request"]["action"]["plan"]["steps"][0],
        "create index concurrently"
    );
    assert_eq!(shown["summary"]["risk"]["level"], "high");
    assert_eq!(shown["decision_id"], asked["decision_id"]);
    // The platform waiting on it may read it too; to another agent it does not exist.
    let platform = s.token("service", None).await;
    let (status, seen) = s.get(&format!("/v1/approvals/{id}"), &platform).await;
    assert_eq!(
        (status, &seen["id"]),
        (StatusCode::OK, &shown["id"]),
        "{seen}"
    );
    let other = s.agent("onlooker", 2, json!({})).await;
    let theirs = s.get(&format!("/v1/approvals/{id}"), &other).await;
    assert_error(&theirs, 404, "unknown_approval");

    // Asking again while it is pending waits on the same approval.
    let (_, again) = decide(&s, &bot, migration("payments"), Some(&id)).await;
    assert_eq!(
        (again["verdict"].as_str(), again["approval"]["id"].as_str()),
        (Some("require_approval"), Some(id.as_str())),
        "{again}"
    );
    assert!(codes(&again).contains(&"approval_pending".to_string()));
    let (_, pending) = s.get("/v1/approvals?status=pending", &carol).await;
    assert_eq!(pending["approvals"].as_array().unwrap().len(), 1);

    let (status, approved) = s
        .post(
            &format!("/v1/approvals/{id}/approve"),
            &carol,
            json!({"comment": "index is safe"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(
        (approved["status"].as_str(), approved["decided_by"].as_str()),
        (Some("approved"), Some("carol"))
    );
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
            .await,
        409,
        "approval_not_pending",
    );

    // The approval allows only the action it was given for: another service is a violation.
    let (_, other) = decide(&s, &bot, migration("ledger"), Some(&id)).await;
    assert_eq!(other["verdict"], "deny", "{other}");
    assert!(
        codes(&other).contains(&"approval_mismatch".to_string()),
        "{other}"
    );

    // Nor another agent.
    let other_bot = s.agent("other-bot", 2, json!({})).await;
    let (_, stolen) = decide(&s, &other_bot, migration("payments"), Some(&id)).await;
    assert_eq!(stolen["verdict"], "deny", "{stolen}");
    assert!(
        codes(&stolen).contains(&"approval_wrong_agent".to_string()),
        "{stolen}"
    );

    // The exact action goes through, once, even if the agent words its reasoning differently.
    let mut reworded = migration("payments");
    reworded["reasoning"] = json!("an index makes the payments query fast");
    let (_, done) = decide(&s, &bot, reworded, Some(&id)).await;
    assert_eq!(done["verdict"], "allow", "{done}");
    assert!(codes(&done).contains(&"approved".to_string()));
    let (_, used) = s.get(&format!("/v1/approvals/{id}"), &carol).await;
    assert_eq!(
        (used["status"].as_str(), used["consumed_by"].as_str()),
        (Some("consumed"), done["decision_id"].as_str()),
        "{used}"
    );
    let (_, reused) = decide(&s, &bot, migration("payments"), Some(&id)).await;
    assert_eq!(reused["verdict"], "deny", "{reused}");
    assert!(codes(&reused).contains(&"approval_reused".to_string()));
    let (_, violations) = s.get("/v1/violations?agent=migrator", &s.admin).await;
    let reasons: Vec<&str> = violations["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["approval_mismatch", "approval_reused"]);

    // Many re-submissions at once: exactly one is allowed.
    let (_, asked) = decide(&s, &bot, migration("orders"), None).await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
        .await;
    let attempts = (0..12).map(|_| decide(&s, &bot, migration("orders"), Some(&id)));
    let results = futures::future::join_all(attempts).await;
    let allowed = results
        .iter()
        .filter(|(status, a)| *status == StatusCode::OK && a["verdict"] == "allow")
        .count();
    assert_eq!(allowed, 1, "{results:?}");
    for (status, answer) in &results {
        assert!(
            (*status == StatusCode::OK
                && (answer["verdict"] == "allow"
                    || codes(answer).contains(&"approval_reused".to_string())))
                || (*status == StatusCode::CONFLICT && answer["error"]["code"] == "approval_used"),
            "{status} {answer}"
        );
    }

    // Every step is in the audit trail, and the chain holds.
    for event in [
        "approval.requested",
        "approval.approved",
        "approval.consumed",
    ] {
        let (_, page) = s
            .get(&format!("/v1/audit?event_type={event}"), &s.admin)
            .await;
        assert!(!page["records"].as_array().unwrap().is_empty(), "{event}");
    }
    assert!(s.warden.state.store.verify_audit().await.unwrap().is_ok());
}

async fn reject_expire_and_four_eyes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config
        .policy
        .approval_ttl_by_class
        .insert("deploy".into(), 1);
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("deployer", 2, json!({"sponsor": "sam"})).await;
    // These scenarios present misused approvals on purpose: keep the tier controller out of them.
    s.patch("/v1/agents/deployer", &s.admin, json!({"pinned": true}))
        .await;
    let carol = s.approver("carol").await;
    let alice = s.approver("alice").await;
    // Alice lets the agent act for her (with her own token), so it may name her.
    let (status, given) = s
        .post(
            "/v1/delegations",
            &alice,
            json!({"agent": "deployer", "hours": 8}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{given}");

    // Rejected: the agent's re-submission is denied.
    let (_, asked) = decide(&s, &bot, migration("payments"), None).await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    let (status, rejected) = s
        .post(
            &format!("/v1/approvals/{id}/reject"),
            &carol,
            json!({"comment": "not during the freeze"}),
        )
        .await;
    assert_eq!(
        (status, rejected["status"].as_str()),
        (StatusCode::OK, Some("rejected")),
        "{rejected}"
    );
    let (_, denied) = decide(&s, &bot, migration("payments"), Some(&id)).await;
    assert_eq!(denied["verdict"], "deny");
    assert!(codes(&denied).contains(&"approval_rejected".to_string()));
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
            .await,
        409,
        "approval_not_pending",
    );

    // Four eyes: the human the agent acts for may not approve, nor its sponsor, nor anyone
    // whose identity is the agent's; another human may.
    let mut body = json!({"action": migration("payments"), "on_behalf_of": "alice"});
    let (_, asked) = s.post("/v1/decisions", &bot, body.clone()).await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    let sam = s.approver("sam").await;
    let itself = s.approver("deployer").await;
    for (who, token) in [("alice", &alice), ("sam", &sam), ("deployer", &itself)] {
        let (status, refused) = s
            .post(&format!("/v1/approvals/{id}/approve"), token, json!({}))
            .await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("self_approval")),
            "{who}: {refused}"
        );
    }
    assert_eq!(
        s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
            .await
            .0,
        StatusCode::OK
    );
    body["approval_id"] = json!(id);
    let (_, done) = s.post("/v1/decisions", &bot, body).await;
    assert_eq!(done["verdict"], "allow", "{done}");
    // An approval given for the agent alone does not cover the same action on alice's behalf
    // (or alice could approve her own request that way).
    let (_, alone) = decide(&s, &bot, migration("payments"), None).await;
    let alone_id = alone["approval"]["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/v1/approvals/{alone_id}/approve"),
        &alice,
        json!({}),
    )
    .await;
    let (_, smuggled) = s.post("/v1/decisions", &bot, json!({"action": migration("payments"), "on_behalf_of": "alice", "approval_id": alone_id})).await;
    assert_eq!(smuggled["verdict"], "deny", "{smuggled}");
    assert!(
        codes(&smuggled).contains(&"approval_mismatch".to_string()),
        "{smuggled}"
    );

    // Expired (the deploy class lapses after a second): too late to approve; asking again opens a new one.
    let deploy = json!({"class": "deploy", "environment": "production", "service": "payments"});
    let (_, asked) = decide(&s, &bot, deploy.clone(), None).await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (_, lapsed) = s.get(&format!("/v1/approvals/{id}"), &carol).await;
    assert_eq!(lapsed["status"], "expired");
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
            .await,
        410,
        "approval_expired",
    );
    let (_, renewed) = decide(&s, &bot, deploy.clone(), Some(&id)).await;
    assert_eq!(renewed["verdict"], "require_approval", "{renewed}");
    assert!(codes(&renewed).contains(&"approval_expired".to_string()));
    assert_ne!(renewed["approval"]["id"].as_str(), Some(id.as_str()));
    let (_, expired) = s.get("/v1/approvals?status=expired", &carol).await;
    assert_eq!(expired["approvals"].as_array().unwrap().len(), 1);
    // Approved but never used before its expiry: expired too.
    let (_, asked) = decide(&s, &bot, deploy.clone(), None).await;
    let unused = asked["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.post(
            &format!("/v1/approvals/{unused}/approve"),
            &carol,
            json!({})
        )
        .await
        .0,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        s.get(&format!("/v1/approvals/{unused}"), &carol).await.1["status"],
        "expired"
    );
    let (_, too_late) = decide(&s, &bot, deploy.clone(), Some(&unused)).await;
    assert_eq!(too_late["verdict"], "require_approval", "{too_late}");
    assert!(codes(&too_late).contains(&"approval_expired".to_string()));

    // Bad input and roles.
    assert_eq!(
        assert_error(
            &s.get("/v1/approvals?status=maybe", &carol).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("status")
    );
    assert_error(
        &s.post("/v1/approvals/nope/approve", &carol, json!({}))
            .await,
        404,
        "unknown_approval",
    );
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/approve"), &bot, json!({}))
            .await,
        403,
        "forbidden_role",
    );
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/approve"), &s.admin, json!({}))
            .await,
        403,
        "forbidden_role",
    );
    // A made-up id, presented again and again (the second time answered from what the first
    // read found): denied every time.
    for _ in 0..3 {
        let (_, unknown) = decide(&s, &bot, migration("payments"), Some("forged-id")).await;
        assert_eq!(unknown["verdict"], "deny", "{unknown}");
        assert!(codes(&unknown).contains(&"approval_unknown".to_string()));
    }
}

async fn who_may_approve_and_races(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("migrator", 2, json!({})).await;
    let carol = s.approver("carol").await;
    let dave = s.approver("dave").await;
    // Erin may approve staging work only: her grants do not cover a production migration.
    let (status, body) = s
        .post(
            "/v1/humans",
            &s.admin,
            json!({"id": "erin", "team": "qa", "grants": [{"class": "*", "environment": "staging", "service": "*", "max_risk": "critical"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let erin = s.token("approver", Some("erin")).await;
    let (_, asked) = decide(&s, &bot, migration("payments"), None).await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/approve"), &erin, json!({}))
            .await,
        403,
        "approver_not_permitted",
    );
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/reject"), &erin, json!({}))
            .await,
        403,
        "approver_not_permitted",
    );

    // Two approvers at once, one approving and one rejecting: exactly one outcome stands.
    let (approve_path, reject_path) = (
        format!("/v1/approvals/{id}/approve"),
        format!("/v1/approvals/{id}/reject"),
    );
    let approve = s.post(&approve_path, &carol, json!({"comment": "yes"}));
    let reject = s.post(&reject_path, &dave, json!({"comment": "no"}));
    let ((a_status, a), (r_status, r)) = tokio::join!(approve, reject);
    let wins: Vec<&Value> = [(&a_status, &a), (&r_status, &r)]
        .into_iter()
        .filter(|(st, _)| **st == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(wins.len(), 1, "{a_status} {a} / {r_status} {r}");
    let loser = if a_status == StatusCode::OK { &r } else { &a };
    assert_eq!(loser["error"]["code"], "approval_not_pending", "{loser}");
    let (_, final_state) = s.get(&format!("/v1/approvals/{id}"), &carol).await;
    assert_eq!(final_state["status"], wins[0]["status"]);
    let (_, decided) = s
        .get("/v1/audit?event_type=approval.approved", &s.admin)
        .await;
    let (_, rejected) = s
        .get("/v1/audit?event_type=approval.rejected", &s.admin)
        .await;
    assert_eq!(
        decided["records"].as_array().unwrap().len()
            + rejected["records"].as_array().unwrap().len(),
        1
    );
}

/// Two `warden serve` replicas on one database: concurrent re-submissions through both use the
/// approval exactly once.
async fn two_replicas_consume_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = db.config();
    let replica_config = config.clone();
    let s = TestServer::start_with(db, config).await;
    let replica = crate::support::Replica::start(replica_config).await;
    let base2 = replica.base.clone();
    let bot = s.agent("migrator", 2, json!({})).await;
    // These scenarios present misused approvals on purpose: keep the tier controller out of them.
    s.patch("/v1/agents/migrator", &s.admin, json!({"pinned": true}))
        .await;
    let carol = s.approver("carol").await;
    for round in 0..3 {
        let (_, asked) = decide(&s, &bot, migration("payments"), None).await;
        let id = asked["approval"]["id"].as_str().unwrap().to_string();
        assert_eq!(
            s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
                .await
                .0,
            StatusCode::OK
        );
        let body = json!({"action": migration("payments"), "approval_id": id});
        let attempts = (0..10).map(|i| {
            let (client, base, bot, body) = (
                s.client.clone(),
                if i % 2 == 0 {
                    s.base.clone()
                } else {
                    base2.clone()
                },
                bot.clone(),
                body.clone(),
            );
            async move {
                let r = client
                    .post(format!("{base}/v1/decisions"))
                    .bearer_auth(bot)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            }
        });
        let results = futures::future::join_all(attempts).await;
        let allowed = results
            .iter()
            .filter(|(st, a)| *st == StatusCode::OK && a["verdict"] == "allow")
            .count();
        assert_eq!(allowed, 1, "round {round}: {results:?}");
        // Used on one replica, it is used on both: each read it before (approved, or already
        // used) and answers from the store or from what it keeps.
        for base in [&s.base, &base2, &s.base, &base2] {
            let r = s
                .client
                .post(format!("{base}/v1/decisions"))
                .bearer_auth(&bot)
                .json(&body)
                .send()
                .await
                .unwrap();
            let answer = r.json::<Value>().await.unwrap();
            assert!(
                codes(&answer).contains(&"approval_reused".to_string()),
                "round {round}: {answer}"
            );
        }
    }
    replica.stop().await;
}

async fn distinct_approvers_where_configured(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config
        .policy
        .approvers_required
        .insert("db_migration".into(), 2);
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("migrator", 2, json!({})).await;
    let carol = s.approver("carol").await;
    let dave = s.approver("dave").await;
    let (_, asked) = decide(&s, &bot, migration("payments"), None).await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();

    // One approval is not enough, and the same approver twice is not two.
    let (status, first) = s
        .post(
            &format!("/v1/approvals/{id}/approve"),
            &carol,
            json!({"comment": "fine by me"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        (first["status"].as_str(), first["approvals_needed"].as_i64()),
        (Some("pending"), Some(2)),
        "{first}"
    );
    assert_eq!(first["approved_by"], json!(["carol"]));
    assert_error(
        &s.post(&format!("/v1/approvals/{id}/approve"), &carol, json!({}))
            .await,
        409,
        "already_approved",
    );
    let (_, early) = decide(&s, &bot, migration("payments"), Some(&id)).await;
    assert_eq!(early["verdict"], "require_approval", "{early}");
    assert!(codes(&early).contains(&"approval_pending".to_string()));

    // A second, distinct approver completes it.
    let (_, second) = s
        .post(&format!("/v1/approvals/{id}/approve"), &dave, json!({}))
        .await;
    assert_eq!(
        (second["status"].as_str(), second["decided_by"].as_str()),
        (Some("approved"), Some("dave")),
        "{second}"
    );
    assert_eq!(second["approved_by"], json!(["carol", "dave"]));
    let (_, done) = decide(&s, &bot, migration("payments"), Some(&id)).await;
    assert_eq!(done["verdict"], "allow", "{done}");
    let (_, steps) = s
        .get("/v1/audit?event_type=approval.approved", &s.admin)
        .await;
    let names: Vec<&str> = steps["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["authorizing_human"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol", "dave"]);
}
