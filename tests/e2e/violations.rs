//! Violations for human review: recorded with their decision, listed with filters and paging,
//! acknowledged once, and audited.

use reqwest::StatusCode;
use serde_json::json;
use warden::config::EventType;

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error, unanswered_hook};

both_backends!(
    violations_are_reviewed_and_acknowledged_once,
    the_same_blocked_attempt_is_one_violation_in_its_window
);

/// A server whose policy puts `docs_update` in `flag` mode.
async fn docs_flagged(backend: Backend) -> TestServer {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config
        .policy
        .violation_modes
        .insert("docs_update".into(), warden::policy::ViolationMode::Flag);
    config.webhooks = vec![unanswered_hook("ops", vec![EventType::ViolationFlagged])];
    TestServer::start_with(db, config).await
}

async fn violations_are_reviewed_and_acknowledged_once(backend: Backend) {
    let s = docs_flagged(backend).await;
    let scribe = s.agent("scribe", 0, json!({})).await;
    let other = s.agent("other", 0, json!({})).await;
    let (status, carol) = s
        .post(
            "/v1/humans",
            &s.admin,
            json!({"id": "carol", "team": "platform", "grants": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{carol}");
    let approver = s.token("approver", Some("carol")).await;

    // Tier 0 may only read: a production deploy is blocked, a docs update flagged (allowed).
    assert_eq!(s.verdict(&scribe, "deploy", "production").await, "deny");
    assert_eq!(
        s.verdict(&scribe, "docs_update", "production").await,
        "allow"
    );
    assert_eq!(s.verdict(&other, "deploy", "staging").await, "deny");
    assert_eq!(s.verdict(&scribe, "read", "production").await, "allow");

    let (status, all) = s.get("/v1/violations", &approver).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let list = all["violations"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{all}");
    assert_eq!(
        (
            list[0]["agent"].as_str(),
            list[0]["class"].as_str(),
            list[0]["mode"].as_str(),
            list[0]["reason"].as_str(),
            list[0]["status"].as_str()
        ),
        (
            Some("scribe"),
            Some("deploy"),
            Some("block"),
            Some("no_grant"),
            Some("open")
        ),
        "{all}"
    );
    assert!(all["next_after"].is_null());
    let (_, flagged) = s.get("/v1/violations?mode=flag", &approver).await;
    assert_eq!(flagged["violations"].as_array().unwrap().len(), 1);
    assert_eq!(flagged["violations"][0]["class"], "docs_update");
    // The flagged one was announced (a blocked one is not), with the documented fields.
    let announced = s.documented_deliveries("ops").await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(
        announced[0]["data"]["violation_id"], flagged["violations"][0]["id"],
        "{announced:?}"
    );
    let (_, theirs) = s.get("/v1/violations?agent=other", &s.admin).await;
    assert_eq!(theirs["violations"].as_array().unwrap().len(), 1);

    // Paging: one at a time, in order, without repeats.
    let mut seen = Vec::new();
    let mut path = "/v1/violations?limit=1".to_string();
    loop {
        let (_, page) = s.get(&path, &approver).await;
        seen.extend(
            page["violations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string()),
        );
        match page["next_after"].as_str() {
            Some(after) => path = format!("/v1/violations?limit=1&after={after}"),
            None => break,
        }
    }
    let ids: Vec<String> = list
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ids);

    // Acknowledge once; the second time is a conflict.
    let id = &ids[0];
    let (status, acked) = s
        .post(
            &format!("/v1/violations/{id}/ack"),
            &approver,
            json!({"comment": "grant was missing; fixed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(
        (acked["status"].as_str(), acked["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some("carol")),
        "{acked}"
    );
    assert_eq!(acked["comment"], "grant was missing; fixed");
    assert!(acked["acknowledged_at"].is_string());
    assert_error(
        &s.post(&format!("/v1/violations/{id}/ack"), &approver, json!({}))
            .await,
        409,
        "violation_not_open",
    );
    let (_, open) = s.get("/v1/violations?status=open", &approver).await;
    assert_eq!(open["violations"].as_array().unwrap().len(), 2);
    let (status, one) = s.get(&format!("/v1/violations/{id}"), &approver).await;
    assert_eq!(
        (status, one["status"].as_str()),
        (StatusCode::OK, Some("acknowledged"))
    );

    // Bad input names the field; agents may not review; unknown ids are 404.
    assert_eq!(
        assert_error(
            &s.get("/v1/violations?status=closed", &approver).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("status")
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/violations?limit=0", &approver).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("limit")
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/violations?since=yesterday", &approver).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("since")
    );
    let long = "x".repeat(5000);
    assert_eq!(
        assert_error(
            &s.post(
                &format!("/v1/violations/{}/ack", ids[1]),
                &approver,
                json!({"comment": long})
            )
            .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("comment")
    );
    assert_error(
        &s.get("/v1/violations", &scribe).await,
        403,
        "forbidden_role",
    );
    assert_error(
        &s.post("/v1/violations/nope/ack", &approver, json!({}))
            .await,
        404,
        "unknown_violation",
    );

    // Each violation and the acknowledgement are audit events of their own.
    let (_, recorded) = s
        .get("/v1/audit?event_type=violation.recorded", &s.admin)
        .await;
    let recorded = recorded["records"].as_array().unwrap();
    assert_eq!(recorded.len(), 3);
    assert_eq!(
        recorded[0]["details"]["violation_id"].as_str(),
        Some(ids[0].as_str()),
        "{recorded:?}"
    );
    let (_, acks) = s
        .get("/v1/audit?event_type=violation.acknowledged", &s.admin)
        .await;
    assert_eq!(acks["records"].as_array().unwrap().len(), 1);
    assert_eq!(acks["records"][0]["authorizing_human"], "carol");
}

/// An agent that tries what it may not do again and again is denied every time, each denial a
/// decision with its audit record, but the attempt is one violation (one audit record of its
/// own, one piece of trust evidence) per `policy.same_violation_secs`; a violation let through
/// is an action that happened and is recorded every time; 0 records every attempt.
async fn the_same_blocked_attempt_is_one_violation_in_its_window(backend: Backend) {
    let s = docs_flagged(backend).await;
    let looper = s.agent("looper", 0, json!({})).await;
    for _ in 0..4 {
        assert_eq!(s.verdict(&looper, "deploy", "staging").await, "deny");
    }
    // Another service is another attempt; a flagged one is recorded each time.
    let (status, answer) = s
        .post(
            "/v1/decisions",
            &looper,
            json!({"action": {"class": "deploy", "environment": "staging", "service": "ledger"}}),
        )
        .await;
    assert_eq!(
        (status, answer["verdict"].as_str()),
        (StatusCode::OK, Some("deny"))
    );
    for _ in 0..2 {
        assert_eq!(s.verdict(&looper, "docs_update", "staging").await, "allow");
    }
    let count = |path: String, key: &'static str| {
        let s = &s;
        async move {
            let (status, page) = s.get(&path, &s.admin).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page[key].as_array().unwrap().len()
        }
    };
    assert_eq!(
        count(
            "/v1/violations?agent=looper&mode=block".into(),
            "violations"
        )
        .await,
        2
    );
    assert_eq!(
        count("/v1/violations?agent=looper&mode=flag".into(), "violations").await,
        2
    );
    assert_eq!(
        count(
            "/v1/audit?event_type=violation.recorded&agent=looper".into(),
            "records"
        )
        .await,
        4
    );
    assert_eq!(
        count(
            "/v1/audit?event_type=decision&agent=looper".into(),
            "records"
        )
        .await,
        7,
        "every attempt is a decision on record"
    );
    let (_, trust) = s.get("/v1/agents/looper/trust", &s.admin).await;
    assert_eq!(trust["evidence"]["violations"], 4, "{trust}");
    drop(s);

    // With the window at 0, every attempt is a violation.
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.policy.same_violation_secs = Some(0);
    let s = TestServer::start_with(db, config).await;
    let looper = s.agent("looper", 0, json!({})).await;
    for _ in 0..3 {
        assert_eq!(s.verdict(&looper, "deploy", "staging").await, "deny");
    }
    let (_, all) = s.get("/v1/violations?agent=looper", &s.admin).await;
    assert_eq!(all["violations"].as_array().unwrap().len(), 3, "{all}");
}
