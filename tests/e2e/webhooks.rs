//! The notification outbox against a real HTTP receiver: signed deliveries, retries after
//! errors, parking, filters and formats, and delivery after a restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use warden::config::{Config, EventType, WebhookConfig, WebhookFormat};

use crate::both_backends;
use crate::support::{Backend, TestDb, TestServer, assert_documented_event};

both_backends!(
    deliveries_are_signed_retried_and_parked,
    delivery_survives_a_restart,
    lapsed_approvals_are_announced_once
);

/// What the receiver saw: path, headers, body.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// A webhook receiver on `addr` (or any port) that answers 500 to the first `fail` requests to `/ops`.
async fn receiver(addr: Option<SocketAddr>, fail: usize) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let failures = Arc::new(Mutex::new(fail));
    let (s, f) = (seen.clone(), failures.clone());
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                let mut left = f.lock().unwrap();
                if uri.path() == "/ops" && *left > 0 {
                    *left -= 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                s.lock()
                    .unwrap()
                    .push((uri.path().to_string(), headers, body));
                StatusCode::NO_CONTENT
            }
        },
    );
    let listener =
        tokio::net::TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn hook(name: &str, url: String, format: WebhookFormat, events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        format,
        events: events
            .iter()
            .map(|e| EventType::parse(e).unwrap())
            .collect(),
        secret_env: None,
        secret: Some(format!("{name}-secret")),
    }
}

fn fast(config: &mut Config, hooks: Vec<WebhookConfig>) {
    config.webhooks = hooks;
    config.notifications.initial_backoff_ms = 20;
    config.notifications.max_backoff_ms = 100;
    config.notifications.poll_interval_ms = 20;
    config.notifications.max_attempts = 4;
    config.notifications.timeout_ms = 300;
    config.notifications.public_url = "https://warden.example.com".into();
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn verify(headers: &HeaderMap, body: &str, secret: &str) {
    let ts: i64 = headers["x-warden-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = warden::services::notify::signature(secret, ts, body);
    assert_eq!(headers["x-warden-signature"].to_str().unwrap(), expected);
    // Independently: HMAC-SHA256 over "{timestamp}.{body}".
    let mac =
        warden::services::notify::hmac_sha256(secret.as_bytes(), format!("{ts}.{body}").as_bytes());
    assert_eq!(expected, format!("v1={}", hex::encode(mac)));
    assert!(warden::services::notify::signature("wrong", ts, body) != expected);
}

async fn deliveries_are_signed_retried_and_parked(backend: Backend) {
    let (addr, seen) = receiver(None, 2).await;
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    fast(
        &mut config,
        vec![
            hook(
                "ops",
                format!("http://{addr}/ops"),
                WebhookFormat::Warden,
                &[],
            ),
            hook(
                "slack",
                format!("http://{addr}/slack"),
                WebhookFormat::Slack,
                &["approval.requested"],
            ),
            WebhookConfig {
                secret: None,
                ..hook(
                    "slack-unsigned",
                    format!("http://{addr}/slack-unsigned"),
                    WebhookFormat::Slack,
                    &["approval.requested"],
                )
            },
            hook(
                "dead",
                "http://127.0.0.1:9/nothing-listens".into(),
                WebhookFormat::Warden,
                &[],
            ),
        ],
    );
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("deployer", 2, json!({})).await;
    let body = json!({"action": {"class": "deploy", "environment": "production", "service": "payments", "reasoning": "retry fix", "plan": "roll out 10% first"}});
    let (_, asked) = s.post("/v1/decisions", &bot, body).await;
    let approval = asked["approval"]["id"].as_str().unwrap().to_string();

    // The live endpoints get the event (ops after two 500s); the dead one does not hold them up.
    wait_for("three deliveries", || seen.lock().unwrap().len() >= 3).await;
    let got = seen.lock().unwrap().clone();
    let ops = got
        .iter()
        .find(|(p, ..)| p == "/ops")
        .expect("ops delivery");
    let event: Value = serde_json::from_str(&ops.2).unwrap();
    assert_eq!(
        (
            event["type"].as_str(),
            event["data"]["approval_id"].as_str()
        ),
        (Some("approval.requested"), Some(approval.as_str())),
        "{event}"
    );
    assert_eq!(event["data"]["plan"], "roll out 10% first");
    assert_eq!(ops.1["x-warden-event"], "approval.requested");
    verify(&ops.1, &ops.2, "ops-secret");
    let slack = got
        .iter()
        .find(|(p, ..)| p == "/slack")
        .expect("slack delivery");
    let message: Value = serde_json::from_str(&slack.2).unwrap();
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("Approval needed"),
        "{message}"
    );
    assert!(
        slack.2.contains(&format!(
            "https://warden.example.com/ui/approvals#{approval}"
        )),
        "{message}"
    );
    verify(&slack.1, &slack.2, "slack-secret");
    // A Slack endpoint without a secret gets the message unsigned, not signed with an empty key.
    let unsigned = got
        .iter()
        .find(|(p, ..)| p == "/slack-unsigned")
        .expect("unsigned slack delivery");
    assert!(
        unsigned.1.get("x-warden-signature").is_none(),
        "{:?}",
        unsigned.1
    );
    assert_eq!(unsigned.1["x-warden-event"], "approval.requested");

    // approval.decided goes to ops only (slack listens to approval.requested alone).
    let carol = {
        s.post(
            "/v1/humans",
            &s.admin,
            json!({"id": "carol", "team": "ops", "grants": [{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]}),
        )
        .await;
        s.token("approver", Some("carol")).await
    };
    s.post(
        &format!("/v1/approvals/{approval}/approve"),
        &carol,
        json!({"comment": "ok"}),
    )
    .await;
    wait_for("approval.decided", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, h, _)| h["x-warden-event"] == "approval.decided")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let decided: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, h, _)| h["x-warden-event"] == "approval.decided")
        .map(|(p, ..)| p.clone())
        .collect();
    assert_eq!(decided, ["/ops"]);
    // What ops received holds the documented fields, type by type.
    for (_, _, body) in seen.lock().unwrap().iter().filter(|(p, ..)| p == "/ops") {
        assert_documented_event(&serde_json::from_str(body).unwrap());
    }

    // The deliveries API shows what happened, including the parked dead endpoint.
    let (_, ops_page) = s
        .get("/v1/webhooks/deliveries?endpoint=ops", &s.admin)
        .await;
    let first = &ops_page["deliveries"][0];
    assert_eq!(
        (first["status"].as_str(), first["attempts"].as_i64()),
        (Some("delivered"), Some(3)),
        "{ops_page}"
    );
    let admin = s.admin.clone();
    let mut parked = Value::Null;
    for _ in 0..250 {
        let (_, page) = s.get("/v1/webhooks/deliveries?status=parked", &admin).await;
        if page["deliveries"].as_array().unwrap().len() == 2 {
            parked = page;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = parked["deliveries"]
        .as_array()
        .expect("two parked deliveries");
    assert!(
        list.iter()
            .all(|d| d["endpoint"] == "dead" && d["attempts"] == 4 && d["last_error"].is_string()),
        "{parked}"
    );
    assert_eq!(
        s.get("/v1/webhooks/deliveries?status=lost", &s.admin)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (_, agent_view) = s.get("/v1/webhooks/deliveries", &bot).await;
    assert_eq!(agent_view["error"]["code"], "forbidden_role");
}

async fn delivery_survives_a_restart(backend: Backend) {
    // A port with nothing listening yet: deliveries fail and wait.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    fast(
        &mut config,
        vec![hook(
            "ops",
            format!("http://{addr}/ops"),
            WebhookFormat::Warden,
            &[],
        )],
    );
    config.notifications.max_attempts = 1000;
    let s = TestServer::start_with(db, config.clone()).await;
    let bot = s.agent("deployer", 2, json!({})).await;
    let (_, asked) = s.post("/v1/decisions", &bot, json!({"action": {"class": "deploy", "environment": "production", "service": "payments"}})).await;
    let approval = asked["approval"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, pending) = s
        .get("/v1/webhooks/deliveries?status=pending", &s.admin)
        .await;
    assert_eq!(
        pending["deliveries"].as_array().unwrap().len(),
        1,
        "{pending}"
    );
    assert!(pending["deliveries"][0]["attempts"].as_i64().unwrap() >= 1);

    // Warden restarts; the receiver comes up; the event arrives, once.
    let s = s.restart(config).await;
    let (_, seen) = receiver(Some(addr), 0).await;
    wait_for("the delivery after the restart", || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let event: Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(
        event["data"]["approval_id"].as_str(),
        Some(approval.as_str())
    );
    let (_, delivered) = s
        .get("/v1/webhooks/deliveries?status=delivered", &s.admin)
        .await;
    assert_eq!(delivered["deliveries"].as_array().unwrap().len(), 1);
}

async fn lapsed_approvals_are_announced_once(backend: Backend) {
    let (addr, seen) = receiver(None, 0).await;
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    fast(
        &mut config,
        vec![hook(
            "ops",
            format!("http://{addr}/ops"),
            WebhookFormat::Warden,
            &["approval.expired"],
        )],
    );
    config
        .policy
        .approval_ttl_by_class
        .insert("deploy".into(), 1);
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("deployer", 2, json!({})).await;
    let (_, asked) = s.post("/v1/decisions", &bot, json!({"action": {"class": "deploy", "environment": "production", "service": "payments"}})).await;
    let approval = asked["approval"]["id"].as_str().unwrap().to_string();
    wait_for("approval.expired", || !seen.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "announced once");
    let event: Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(
        (
            event["type"].as_str(),
            event["data"]["approval_id"].as_str()
        ),
        (Some("approval.expired"), Some(approval.as_str()))
    );
    assert_documented_event(&event);
    let (_, audit) = s
        .get("/v1/audit?event_type=approval.expired", &s.admin)
        .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1);
    assert_eq!(audit["records"][0]["actor"]["kind"], "service");
}
