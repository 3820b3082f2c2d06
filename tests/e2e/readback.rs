//! What Warden accepts, every reader can read back; and a stored document that does not read
//! back (written by an older version, or by hand) costs the readers that document, not the list,
//! until an admin quarantines it.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use warden::clock::{ManualClock, SharedClock};

use crate::both_backends;
use crate::support::{Backend, TestServer, assert_error};

both_backends!(
    an_unreadable_approval_costs_only_itself,
    whatever_decisions_accept_reads_back,
    a_page_of_unreadable_approvals_holds_no_other_up
);

const DAY_US: i64 = 86_400_000_000;

/// Runs the expiry sweeper once, as if `days` had passed.
async fn sweep(s: &TestServer, days: i64) -> Result<(), String> {
    let clock: SharedClock = Arc::new(ManualClock::at(
        s.warden.state.clock.now_micros() + days * DAY_US,
    ));
    warden::services::approvals::announce_expiries(
        &s.warden.state.store,
        &s.warden.state.outbox,
        &clock,
    )
    .await
    .map_err(|e| e.to_string())
}

/// The ids on a page of approvals.
fn listed_ids(page: &Value) -> Vec<&str> {
    page["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect()
}

async fn inbox(s: &TestServer, approver: &str) -> (StatusCode, String) {
    let resp = s
        .client
        .get(format!("{}/ui/approvals", s.base))
        .header("cookie", s.sign_in(approver).await)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn an_unreadable_approval_costs_only_itself(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let carol = s.approver("carol").await;
    let mut ids = Vec::new();
    for service in ["payments", "orders"] {
        let body =
            json!({"action": {"class": "deploy", "environment": "production", "service": service}});
        let (_, answer) = s.post("/v1/decisions", &bot, body).await;
        ids.push(answer["approval"]["id"].as_str().unwrap().to_string());
    }
    let (bad, good) = (&ids[0], &ids[1]);
    let pool = s.db.pool().await;
    sqlx::query("UPDATE approvals SET summary = '{\"risk\": [[[' WHERE id = $1")
        .bind(bad)
        .execute(&pool)
        .await
        .unwrap();

    // The list, the inbox and the sweeper go on with the rest, and say what they left out.
    let (status, page) = s.get("/v1/approvals", &carol).await;
    assert_eq!(status, 200, "{page}");
    let listed = listed_ids(&page);
    assert_eq!(listed, [good.as_str()]);
    assert_eq!(page["unreadable"], json!([bad]));
    let (status, html) = inbox(&s, &carol).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"id="unreadable""#) && html.contains(bad.as_str()));
    assert!(
        html.contains(good.as_str()),
        "the readable approval is still shown"
    );
    let swept = sweep(&s, 2).await.unwrap_err();
    assert!(swept.contains(bad.as_str()), "{swept}");
    let (_, expired) = s
        .get("/v1/audit?event_type=approval.expired", &s.admin)
        .await;
    assert_eq!(
        expired["records"].as_array().unwrap().len(),
        1,
        "the readable approval's expiry was announced: {expired}"
    );
    assert_error(
        &s.get(&format!("/v1/approvals/{bad}"), &carol).await,
        422,
        "unreadable_record",
    );

    // An admin moves it out of the way; nobody else can.
    let path = format!("/v1/approvals/{bad}/quarantine");
    assert_error(
        &s.post(&path, &carol, json!({"reason": "x"})).await,
        403,
        "forbidden_role",
    );
    assert_eq!(
        assert_error(
            &s.post(&path, &s.admin, json!({"reason": " "})).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("reason")
    );
    let (status, _) = s
        .post(
            &path,
            &s.admin,
            json!({"reason": "its summary does not parse"}),
        )
        .await;
    assert_eq!(status, 204);
    assert_error(
        &s.post(&path, &s.admin, json!({"reason": "again"})).await,
        404,
        "unknown_approval",
    );
    let (_, page) = s.get("/v1/approvals", &carol).await;
    assert!(page.get("unreadable").is_none(), "{page}");
    assert_error(
        &s.get(&format!("/v1/approvals/{bad}"), &carol).await,
        404,
        "unknown_approval",
    );
    let (_, inbox_html) = inbox(&s, &carol).await;
    assert!(!inbox_html.contains(r#"id="unreadable""#));
    sweep(&s, 2)
        .await
        .expect("nothing left that does not read back");
    let (_, kept) = s.get("/v1/approvals/quarantined", &s.admin).await;
    assert_eq!(kept[0]["id"], json!(bad));
    assert_eq!(kept[0]["raw"]["summary"], "{\"risk\": [[[");
    assert_eq!(kept[0]["raw"]["service"], "payments");
    assert_eq!(kept[0]["reason"], "its summary does not parse");
    let (_, audit) = s
        .get("/v1/audit?event_type=approval.quarantined", &s.admin)
        .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1);
}

/// A random JSON value: nested up to `depth`, with strings of every kind of character.
fn value(rng: &mut StdRng, depth: usize) -> Value {
    match rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(text(rng, 64)),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (text(rng, 16), value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A random string: ASCII, controls, quotes, markup, and characters from every plane.
fn text(rng: &mut StdRng, max: usize) -> String {
    (0..rng.random_range(0..max))
        .map(|_| match rng.random_range(0..5) {
            0 => rng.random_range(' '..='~'),
            1 => rng.random_range('\u{0}'..='\u{1f}'),
            2 => ['"', '\\', '<', '>', '&', '\'', '\u{2028}', '\u{feff}'][rng.random_range(0..8)],
            3 => rng.random_range('\u{80}'..='\u{d7ff}'),
            _ => rng.random_range('\u{10000}'..='\u{10ffff}'),
        })
        .collect()
}

/// The plan nests as deep as one that is accepted may, and sometimes deeper; the other fields
/// are random too.
fn request(rng: &mut StdRng) -> Value {
    let mut plan = value(rng, 3);
    for _ in 0..rng.random_range(0..40) {
        plan = if rng.random() {
            json!([plan])
        } else {
            Value::Object([(text(rng, 8), plan)].into_iter().collect())
        };
    }
    let mut action = json!({"class": "deploy", "environment": "production", "service": "payments", "plan": plan});
    if rng.random() {
        action["reasoning"] = json!(text(rng, 2000));
    }
    if rng.random() {
        action["resources"] = json!(
            (0..rng.random_range(0..5))
                .map(|_| text(rng, 40))
                .collect::<Vec<_>>()
        );
    }
    if rng.random() {
        let labels: serde_json::Map<String, Value> = (0..rng.random_range(0..5))
            .map(|_| (text(rng, 10), json!(text(rng, 30))))
            .collect();
        action["labels"] = Value::Object(labels);
    }
    json!({ "action": action })
}

async fn whatever_decisions_accept_reads_back(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    s.lift_quotas("bot").await;
    let carol = s.approver("carol").await;
    let seed: u64 = std::env::var("WARDEN_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for case in 0..60 {
        let body = request(&mut rng);
        let (status, answer) = s.post("/v1/decisions", &bot, body.clone()).await;
        match status.as_u16() {
            200 => accepted.push(
                answer["approval"]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("seed {seed} case {case}: {answer}"))
                    .to_string(),
            ),
            400 => {
                assert!(
                    answer["error"]["field"].is_string(),
                    "seed {seed} case {case}: {answer}"
                );
                refused += 1;
            }
            other => panic!("seed {seed} case {case}: {other} {answer} for {body}"),
        }
    }
    // Both kinds happened, or the generator is not testing the limits.
    assert!(
        accepted.len() >= 10 && refused >= 5,
        "seed {seed}: {} accepted, {refused} refused",
        accepted.len()
    );
    let (status, page) = s.get("/v1/approvals?limit=1000", &carol).await;
    assert_eq!(status, 200, "seed {seed}: {page}");
    assert!(page.get("unreadable").is_none(), "seed {seed}: {page}");
    let listed = listed_ids(&page);
    for id in &accepted {
        assert!(
            listed.contains(&id.as_str()),
            "seed {seed}: {id} not listed"
        );
        let (status, _) = s.get(&format!("/v1/approvals/{id}"), &carol).await;
        assert_eq!(status, 200, "seed {seed}: {id}");
    }
    let (status, html) = inbox(&s, &carol).await;
    assert_eq!(status, 200);
    assert!(!html.contains(r#"id="unreadable""#), "seed {seed}");
    sweep(&s, 2)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}

/// More unreadable lapsed approvals than the sweeper reads at once: it pages past them and
/// announces the readable one after them.
async fn a_page_of_unreadable_approvals_holds_no_other_up(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    s.lift_quotas("bot").await;
    for i in 0..101 {
        let body = json!({"action": {"class": "deploy", "environment": "production", "service": format!("svc-{i}")}});
        let (status, answer) = s.post("/v1/decisions", &bot, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    // Ids are time-ordered: every approval but the newest is made unreadable.
    let pool = s.db.pool().await;
    let newest: String = sqlx::query_scalar("SELECT MAX(id) FROM approvals")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE approvals SET summary = 'not json' WHERE id <> $1")
        .bind(&newest)
        .execute(&pool)
        .await
        .unwrap();
    let swept = sweep(&s, 2).await.unwrap_err();
    assert!(swept.contains("lapsed but do not read back"), "{swept}");
    let (_, expired) = s
        .get("/v1/audit?event_type=approval.expired", &s.admin)
        .await;
    let records = expired["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{expired}");
    assert_eq!(records[0]["target"], format!("approval:{newest}"));
}
