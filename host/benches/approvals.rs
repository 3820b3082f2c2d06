//! Load generator for approvals and the outbox against a real Warden HTTP server (in process,
//! SQLite in a temporary directory, loopback HTTP):
//! - plain decisions vs the approval loop (ask → approve → re-submit with `approval_id`);
//! - the outbox: decisions that each raise a `violation.flagged` event, delivered to a local
//!   receiver, while decisions keep being answered.
//!
//! Run: `cargo bench -p warden --bench approvals` (figures go to BENCHMARKS.md).
#![allow(missing_docs)] // criterion_main! writes an undocumented `main`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden::audit::Actor;
use warden::clock::SystemClock;
use warden::config::{Config, EventType, WebhookConfig, WebhookFormat};
use warden::identity::Role;
use warden::policy::ViolationMode;
use warden::server::Warden;

const CLIENTS: usize = 16;

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, token: &str, body: Value) -> (Duration, Value) {
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let v = r.json().await.expect("json");
        (started.elapsed(), v)
    }
}

fn percentiles(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    println!(
        "{name:48} n={:>6}  p50 {:>7.2} ms  p99 {:>7.2} ms",
        v.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
    at(0.99)
}

/// Runs `f` once per agent, concurrently; returns each series of timings, merged across agents.
async fn run<F, Fut>(
    bots: &[String],
    client: &Arc<Client>,
    approver: &str,
    rounds: usize,
    f: F,
) -> Vec<Vec<Duration>>
where
    F: Fn(Arc<Client>, String, String, usize) -> Fut,
    Fut: std::future::Future<Output = Vec<Vec<Duration>>> + Send + 'static,
{
    let tasks: Vec<_> = bots
        .iter()
        .map(|b| tokio::spawn(f(client.clone(), b.clone(), approver.to_string(), rounds)))
        .collect();
    let mut all: Vec<Vec<Duration>> = Vec::new();
    for t in tasks {
        for (i, part) in t.await.unwrap().into_iter().enumerate() {
            if all.len() <= i {
                all.push(Vec::new());
            }
            all[i].extend(part);
        }
    }
    all
}

async fn token(warden: &Warden, role: Role, subject: &str) -> String {
    let actor = Actor {
        kind: "admin".into(),
        id: "bench".into(),
        tool: None,
        model: None,
        token_id: None,
        ..Default::default()
    };
    let now = warden.state.clock.now_micros();
    warden::services::tokens::issue(
        &warden.state.store,
        actor,
        role,
        Some(subject.into()),
        String::new(),
        None,
        now,
    )
    .await
    .unwrap()
    .secret
}

/// A Warden server on a fresh SQLite database, with a webhook to `receiver` if given: its client,
/// admin and approver tokens, and CLIENTS agents' tokens.
async fn start(
    receiver: Option<std::net::SocketAddr>,
) -> (Arc<Client>, String, String, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().to_path_buf();
    config
        .policy
        .violation_modes
        .insert("docs_update".into(), ViolationMode::Flag);
    // This measures approvals and the outbox: the agents' deploy quotas would deny most of the load.
    config.policy.quotas = Some(warden::quotas::QuotaPolicy {
        enabled: false,
        ..Default::default()
    });
    config.notifications.poll_interval_ms = 200;
    config.webhooks = receiver
        .map(|addr| WebhookConfig {
            name: "receiver".into(),
            url: format!("http://{addr}/hook"),
            format: WebhookFormat::Warden,
            events: vec![EventType::ViolationFlagged],
            secret_env: None,
            secret: Some("bench".into()),
        })
        .into_iter()
        .collect();
    let warden = Warden::open(config, Arc::new(SystemClock)).await.unwrap();
    let admin = token(&warden, Role::Admin, "bench").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warden.clone().serve(listener, std::future::pending()));
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base,
    });
    client
        .post(
            "/v1/humans",
            &admin,
            json!({"id": "carol", "team": "ops", "grants": [{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]}),
        )
        .await;
    let approver = token(&warden, Role::Approver, "carol").await;
    let mut bots = Vec::new();
    for i in 0..CLIENTS {
        let id = format!("bot-{i}");
        client.post("/v1/agents", &admin, json!({"id": id, "tool": "t", "model": "m", "team": "payments", "sponsor": "s", "tier": 2})).await;
        bots.push(token(&warden, Role::Agent, &id).await);
    }
    (client, admin, approver, bots, dir)
}

/// CLIENTS agents at tier 0 each make `n` docs updates in production: no grant, so in flag
/// mode each is allowed and records a violation (and, with a webhook, a `violation.flagged` event).
async fn flagged(client: &Arc<Client>, admin: &str, bots: &[String], n: usize) -> Vec<Duration> {
    for i in 0..CLIENTS {
        let r = client
            .http
            .patch(format!("{}/v1/agents/bot-{i}", client.base))
            .bearer_auth(admin)
            .json(&json!({"tier": 0}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let mut parts = run(bots, client, "", n, |c: Arc<Client>, bot: String, _: String, n: usize| async move {
        let mut v = Vec::new();
        for _ in 0..n {
            let (t, a) = c.post("/v1/decisions", &bot, json!({"action": {"class": "docs_update", "environment": "production", "service": "docs"}})).await;
            assert_eq!(a["verdict"], "allow");
            v.push(t);
        }
        vec![v]
    })
    .await;
    parts.remove(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // A receiver that counts deliveries.
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let receiver = axum::Router::new().fallback(move || {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = rl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rl, receiver).await.unwrap() });

    let (client, admin, approver, bots, _dir) = start(Some(receiver_addr)).await;

    // 1. Plain decisions, then the approval loop, CLIENTS at a time.
    let plain = run(&bots, &client, &approver, 150, |c: Arc<Client>, bot: String, _: String, n: usize| async move {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(c.post("/v1/decisions", &bot, json!({"action": {"class": "deploy", "environment": "staging", "service": "payments"}})).await.0);
        }
        vec![v]
    })
    .await;
    let looped = run(&bots, &client, &approver, 150, |c: Arc<Client>, bot: String, approver: String, n: usize| async move {
        let (mut ask, mut approve, mut resubmit) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let action = json!({"class": "deploy", "environment": "production", "service": "payments", "reasoning": format!("rollout {i}")});
            let (t, asked) = c.post("/v1/decisions", &bot, json!({"action": action})).await;
            ask.push(t);
            let id = asked["approval"]["id"].as_str().expect("an approval").to_string();
            approve.push(c.post(&format!("/v1/approvals/{id}/approve"), &approver, json!({})).await.0);
            let (t, done) = c.post("/v1/decisions", &bot, json!({"action": action, "approval_id": id})).await;
            assert_eq!(done["verdict"], "allow");
            resubmit.push(t);
        }
        vec![ask, approve, resubmit]
    })
    .await;
    println!("## approvals ({CLIENTS} concurrent clients, SQLite)");
    let p99_plain = percentiles("plain decision (allow)", plain[0].clone());
    percentiles(
        "require_approval decision (creates the request)",
        looped[0].clone(),
    );
    percentiles("approve", looped[1].clone());
    let p99_resubmit = percentiles(
        "re-submission with approval_id (allow, consumes)",
        looped[2].clone(),
    );
    println!(
        "re-submission p99 minus plain p99: {:.2} ms",
        (p99_resubmit.as_secs_f64() - p99_plain.as_secs_f64()) * 1e3
    );

    // 2. The outbox: every decision below raises violation.flagged for the receiver.
    let (quiet_client, quiet_admin, _, quiet_bots, _quiet_dir) = start(None).await;
    let quiet = flagged(&quiet_client, &quiet_admin, &quiet_bots, 400).await;
    let before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let flagged = flagged(&client, &admin, &bots, 400).await;
    let decided_in = started.elapsed();
    let events = flagged.len() as u64;
    while received.load(Ordering::Relaxed) - before < events {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "deliveries stalled at {}",
            received.load(Ordering::Relaxed) - before
        );
    }
    let delivered_in = started.elapsed();
    println!("## outbox");
    percentiles("flagged decision, no webhook configured", quiet);
    percentiles("flagged decision, violation.flagged to a webhook", flagged);
    println!(
        "{events} events: decided in {:.2} s ({:.0} decisions/s); all delivered after {:.2} s ({:.0} events/s end to end)",
        decided_in.as_secs_f64(),
        events as f64 / decided_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
        events as f64 / delivered_in.as_secs_f64()
    );
}
