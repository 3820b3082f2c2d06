//! Outcomes: every allowed write owes a report by a deadline; reports are checked, audited,
//! and an overdue one becomes `unknown`.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_error};

both_backends!(outcomes_are_reported_once_and_overdue_ones_recorded);

async fn outcomes_are_reported_once_and_overdue_ones_recorded(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config
        .policy
        .outcome_deadline_by_class
        .insert("config_change".into(), 1);
    config.notifications.poll_interval_ms = 50;
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("deployer", 2, json!({})).await;
    let other = s.agent("other", 2, json!({})).await;
    let service = s.token("service", None).await;

    // An allowed write owes its outcome; a read does not; a denied action has none.
    let (_, deploy) = s.decide(&bot, "deploy", "staging", json!({})).await;
    let owed = deploy["obligations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "report_outcome")
        .cloned()
        .expect("report_outcome obligation");
    assert!(
        owed["due_at"].is_string() && owed["detail"].as_str().unwrap().contains("/outcome"),
        "{deploy}"
    );
    let (_, read) = s.decide(&bot, "read", "production", json!({})).await;
    assert!(
        read["obligations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["kind"] != "report_outcome"),
        "{read}"
    );
    let (_, pending) = s
        .decide(&bot, "infra_delete", "production", json!({}))
        .await;
    assert_eq!(pending["verdict"], "require_approval", "{pending}");
    let reader = s.agent("reader", 0, json!({})).await;
    let (_, denied) = s.decide(&reader, "deploy", "staging", json!({})).await;
    assert_eq!(denied["verdict"], "deny", "{denied}");
    let id = deploy["decision_id"].as_str().unwrap();
    let path = format!("/v1/decisions/{id}/outcome");

    let (status, due) = s.get(&path, &bot).await;
    assert_eq!(status, StatusCode::OK, "{due}");
    assert!(
        due.get("outcome").is_none() && due["due_at"] == owed["due_at"],
        "{due}"
    );

    // The agent reports; the same report again is fine; a different one conflicts.
    let (status, reported) = s
        .post(
            &path,
            &bot,
            json!({"status": "succeeded", "detail": "rolled out", "actual_cost_usd": 0.35}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reported}");
    assert_eq!(
        (
            reported["outcome"].as_str(),
            reported["reported_by"].as_str()
        ),
        (Some("succeeded"), Some("deployer"))
    );
    assert_eq!(reported["actual_cost_usd"], 0.35);
    assert_eq!(
        s.post(&path, &bot, json!({"status": "succeeded"})).await.0,
        StatusCode::OK
    );
    assert_error(
        &s.post(&path, &bot, json!({"status": "failed"})).await,
        409,
        "outcome_conflict",
    );
    // The platform may correct what the agent said about itself; the agent may not undo that.
    let (status, corrected) = s
        .post(
            &path,
            &service,
            json!({"status": "rolled_back", "detail": "paged: error spike"}),
        )
        .await;
    assert_eq!(
        (status, corrected["outcome"].as_str()),
        (StatusCode::OK, Some("rolled_back")),
        "{corrected}"
    );
    assert_error(
        &s.post(&path, &bot, json!({"status": "succeeded"})).await,
        409,
        "outcome_conflict",
    );
    // A read owes nothing.
    let read_path = format!(
        "/v1/decisions/{}/outcome",
        read["decision_id"].as_str().unwrap()
    );
    assert_error(
        &s.post(&read_path, &bot, json!({"status": "succeeded"}))
            .await,
        422,
        "no_outcome_due",
    );

    // Not for a denied decision; not for someone else's; bad input names the field.
    for (answer, token) in [(&pending, &bot), (&denied, &reader)] {
        let p = format!(
            "/v1/decisions/{}/outcome",
            answer["decision_id"].as_str().unwrap()
        );
        assert_error(
            &s.post(&p, token, json!({"status": "failed"})).await,
            422,
            "decision_not_allowed",
        );
    }
    assert_error(
        &s.post(&path, &other, json!({"status": "failed"})).await,
        404,
        "unknown_decision",
    );
    assert_error(
        &s.post(
            "/v1/decisions/nope/outcome",
            &service,
            json!({"status": "failed"}),
        )
        .await,
        404,
        "unknown_decision",
    );
    let (_, staging) = s.decide(&bot, "deploy", "staging", json!({})).await;
    let fresh = format!(
        "/v1/decisions/{}/outcome",
        staging["decision_id"].as_str().unwrap()
    );
    assert_eq!(
        assert_error(
            &s.post(&fresh, &bot, json!({"status": "great"})).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("status")
    );
    assert_eq!(
        assert_error(
            &s.post(
                &fresh,
                &bot,
                json!({"status": "failed", "actual_cost_usd": -1})
            )
            .await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("actual_cost_usd")
    );
    let (status, _) = s
        .post(&fresh, &bot, json!({"status": "failed", "extra": 1}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A service reports for the agent.
    let (status, by_service) = s
        .post(
            &fresh,
            &service,
            json!({"status": "failed", "detail": "pods crash-looped"}),
        )
        .await;
    assert_eq!(
        (status, by_service["outcome"].as_str()),
        (StatusCode::OK, Some("failed")),
        "{by_service}"
    );

    // Overdue: config changes are due after a second; unreported, the outcome becomes unknown.
    let (_, change) = s.decide(&bot, "config_change", "staging", json!({})).await;
    let late = format!(
        "/v1/decisions/{}/outcome",
        change["decision_id"].as_str().unwrap()
    );
    let mut outcome = json!(null);
    for _ in 0..100 {
        outcome = s.get(&late, &bot).await.1;
        if outcome["outcome"] == "unknown" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(outcome["outcome"], "unknown", "{outcome}");
    let (_, overdue) = s
        .get("/v1/audit?event_type=outcome.overdue", &s.admin)
        .await;
    assert_eq!(overdue["records"].as_array().unwrap().len(), 1);
    // A late report still counts, replacing `unknown`.
    let (status, late_report) = s.post(&late, &bot, json!({"status": "succeeded"})).await;
    assert_eq!(
        (status, late_report["outcome"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{late_report}"
    );
    let (_, reports) = s
        .get("/v1/audit?event_type=outcome.reported", &s.admin)
        .await;
    assert_eq!(reports["records"].as_array().unwrap().len(), 4);
}
