//! `Idempotency-Key`: an agent whose connection dropped retries and gets the answer it already
//! had, instead of acting twice (or being punished for re-using its approval).

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestServer, assert_error};

both_backends!(a_retry_gets_the_first_answer, concurrent_retries_act_once);

async fn keyed(
    s: &TestServer,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> (u16, HeaderMap, Value) {
    let resp = s
        .client
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

async fn decisions_of(s: &TestServer, agent: &str) -> i64 {
    let pool = s.db.pool().await;
    sqlx::query_scalar("SELECT COUNT(*) FROM decisions WHERE agent_id = $1")
        .bind(agent)
        .fetch_one(&pool)
        .await
        .unwrap()
}

async fn a_retry_gets_the_first_answer(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let carol = s.approver("carol").await;
    let deploy =
        json!({"action": {"class": "deploy", "environment": "production", "service": "payments"}});
    let (_, asked) = s.post("/v1/decisions", &bot, deploy.clone()).await;
    let approval = asked["approval"]["id"].as_str().unwrap().to_string();
    let (status, _) = s
        .post(
            &format!("/v1/approvals/{approval}/approve"),
            &carol,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // The approved action, re-submitted with a key; the answer is lost on the way; the retry.
    let mut resubmit = deploy.clone();
    resubmit["approval_id"] = json!(approval);
    let (status, first_headers, first) =
        keyed(&s, "/v1/decisions", &bot, "deploy-42", &resubmit).await;
    assert_eq!(
        (status, first["verdict"].as_str()),
        (200, Some("allow")),
        "{first}"
    );
    assert!(first_headers.get("idempotent-replayed").is_none());
    let before = decisions_of(&s, "bot").await;
    let (status, headers, again) = keyed(&s, "/v1/decisions", &bot, "deploy-42", &resubmit).await;
    assert_eq!(status, 200);
    assert_eq!(
        again, first,
        "the retry gets the first answer, the same decision"
    );
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(
        decisions_of(&s, "bot").await,
        before,
        "nothing new is written"
    );
    let (_, violations) = s.get("/v1/violations?agent=bot", &s.admin).await;
    assert_eq!(violations["violations"], json!([]), "no approval_reused");
    let (_, agent) = s.get("/v1/agents/bot", &s.admin).await;
    assert_eq!(agent["tier"], 2);

    // The same key for another request is refused; a key is the caller's own.
    assert_error(
        &{
            let (status, _, body) = keyed(&s, "/v1/decisions", &bot, "deploy-42", &deploy).await;
            (reqwest::StatusCode::from_u16(status).unwrap(), body)
        },
        422,
        "idempotency_key_reused",
    );
    let other = s.agent("other", 2, json!({})).await;
    let (status, _, theirs) = keyed(&s, "/v1/decisions", &other, "deploy-42", &deploy).await;
    assert_eq!(status, 200);
    assert_ne!(theirs["decision_id"], first["decision_id"]);
    for bad in ["", "has space", &"k".repeat(256)] {
        let (status, _, body) = keyed(&s, "/v1/decisions", &bot, bad, &deploy).await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (400, &json!("Idempotency-Key")),
            "{bad:?}"
        );
    }
    // A failure is not kept: the same key runs afresh once the request is right.
    let broken = json!({"action": {"class": "teleport", "environment": "dev", "service": "x"}});
    assert_eq!(
        keyed(&s, "/v1/decisions", &bot, "fresh", &broken).await.0,
        400
    );
    let read = json!({"action": {"class": "read", "environment": "dev", "service": "x"}});
    assert_eq!(
        keyed(&s, "/v1/decisions", &bot, "fresh-2", &read).await.0,
        200
    );

    // Outcomes take a key too (signals the same way, through the same layer).
    let id = first["decision_id"].as_str().unwrap();
    let path = format!("/v1/decisions/{id}/outcome");
    let report = json!({"status": "succeeded"});
    let (status, _, reported) = keyed(&s, &path, &bot, "outcome-1", &report).await;
    assert_eq!(status, 200, "{reported}");
    let (status, headers, again) = keyed(&s, &path, &bot, "outcome-1", &report).await;
    assert_eq!((status, &again), (200, &reported));
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, _, body) = keyed(&s, &path, &bot, "outcome-1", &json!({"status": "failed"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("idempotency_key_reused"))
    );

    // Without a key, the same re-submission is what it always was: a re-used approval.
    let (_, reused) = s.post("/v1/decisions", &bot, resubmit).await;
    assert_eq!(reused["verdict"], "deny", "{reused}");
}

async fn concurrent_retries_act_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let body =
        json!({"action": {"class": "deploy", "environment": "staging", "service": "payments"}});
    let before = decisions_of(&s, "bot").await;
    let tries = (0..6).map(|_| keyed(&s, "/v1/decisions", &bot, "same", &body));
    let answers = futures::future::join_all(tries).await;
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(status, _, _)| *status == 200)
        .map(|(_, _, body)| body)
        .collect();
    for (status, _, body) in &answers {
        assert!(
            *status == 200
                || (*status == 409 && body["error"]["code"] == "idempotency_key_in_flight"),
            "{status} {body}"
        );
    }
    assert!(!ok.is_empty());
    assert!(ok.iter().all(|b| b["decision_id"] == ok[0]["decision_id"]));
    assert_eq!(
        decisions_of(&s, "bot").await,
        before + 1,
        "one decision, however many tries"
    );
}
