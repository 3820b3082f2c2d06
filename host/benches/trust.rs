//! Trust at scale: 10,000 agents and 10 million pieces of evidence (reported outcomes) in SQLite,
//! then a real Warden HTTP server on that database.
//! - the one-time rebuild of the running totals from the evidence (what a new half-life costs);
//! - `GET /v1/agents/{id}/trust` latency over random agents (16 concurrent clients);
//! - what trust adds to an outcome report: the commit of the report alone vs with its evidence
//!   and score, and the tier review that follows (in process);
//! - `POST /v1/decisions/{id}/outcome` end to end.
//!
//! Run: `cargo bench -p warden --bench trust` (WARDEN_BENCH_EVIDENCE=1000000 for a quick run;
//! figures go to BENCHMARKS.md).
#![allow(missing_docs)] // criterion_main! writes an undocumented `main`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use sqlx::Executor as _;
use warden::audit::Actor;
use warden::clock::SystemClock;
use warden::config::Config;
use warden::identity::Role;
use warden::server::Warden;
use warden::services::tiering::Trigger;
use warden::store::{Change, OutcomeWrite, TrustWrite, Write};
use warden::trust::Kind;

const AGENTS: usize = 10_000;
const CLIENTS: usize = 16;
const DAY: i64 = 86_400_000_000;

fn percentiles(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    println!(
        "{name:58} n={:>6}  p50 {:>7.3} ms  p99 {:>7.3} ms",
        v.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = dir.to_path_buf();
    config
}

/// Fills the database: AGENTS agents, `evidence` outcomes spread over the last 180 days.
async fn fill(url: &str, evidence: usize, now: i64) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    conn.execute("PRAGMA synchronous = OFF").await.unwrap();
    conn.execute("BEGIN").await.unwrap();
    for chunk in (0..AGENTS).collect::<Vec<_>>().chunks(500) {
        let mut sql = String::from(
            "INSERT INTO agents (id, tool, model, team, sponsor, tier, ceiling, parent, status, shadow, version, created_at, updated_at) VALUES ",
        );
        for (i, a) in chunk.iter().enumerate() {
            sql.push_str(&format!(
                "{}('agent-{a}', 'bench', 'm', 'team-{}', 's', 2, 4, NULL, 'active', 0, 1, {now}, {now})",
                if i > 0 { ", " } else { "" },
                a % 50
            ));
        }
        conn.execute(sql.as_str()).await.unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let envs = ["dev", "staging", "production"];
    let risks = ["low", "low", "medium", "high"];
    let started = Instant::now();
    // Agent by agent, oldest first: the indexes on (agent, time) grow at their ends.
    let per_agent = evidence / AGENTS;
    let mut i = 0usize;
    for agent in 0..AGENTS {
        let mut times: Vec<i64> = (0..per_agent)
            .map(|_| now - rng.random_range(0..180 * DAY))
            .collect();
        times.sort_unstable();
        for chunk in times.chunks(400) {
            let mut sql = String::from(
                "INSERT INTO decisions (id, at, agent_id, class, environment, service, verdict, risk_level, tier, policy_version, request, answer, outcome, outcome_at) VALUES ",
            );
            for (j, at) in chunk.iter().enumerate() {
                let roll: u32 = rng.random_range(0..100);
                let outcome = if roll < 95 {
                    "succeeded"
                } else if roll < 98 {
                    "failed"
                } else {
                    "rolled_back"
                };
                sql.push_str(&format!(
                    "{}('e{agent:05}-{i:08}', {at}, 'agent-{agent}', 'deploy', '{}', 'svc-{}', 'allow', '{}', 2, 'p', '', '', '{outcome}', {})",
                    if j > 0 { ", " } else { "" },
                    envs[rng.random_range(0..3)],
                    rng.random_range(0..5),
                    risks[rng.random_range(0..4)],
                    at + 60_000_000
                ));
                i += 1;
            }
            conn.execute(sql.as_str()).await.unwrap();
        }
        if agent % 1000 == 999 {
            println!(
                "  … {i} evidence rows ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    conn.execute("DELETE FROM trust_meta").await.unwrap();
    conn.execute("COMMIT").await.unwrap();
    drop(conn);
    pool.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let evidence: usize = std::env::var("WARDEN_BENCH_EVIDENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().unwrap();
    // Create the schema, then fill it behind Warden's back.
    Warden::open(config(dir.path()), Arc::new(SystemClock))
        .await
        .unwrap()
        .state
        .store
        .close()
        .await;
    let url = config(dir.path()).database_url();
    let now = warden::clock::Clock::now_micros(&SystemClock);
    let started = Instant::now();
    fill(&url, evidence, now).await;
    println!(
        "filled {AGENTS} agents and {evidence} outcomes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Opening finds no totals for this half-life and rebuilds them.
    let started = Instant::now();
    let warden = Warden::open(config(dir.path()), Arc::new(SystemClock))
        .await
        .unwrap();
    println!(
        "open + rebuild of the running totals from {evidence} outcomes: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let actor = Actor {
        kind: "admin".into(),
        id: "bench".into(),
        tool: None,
        model: None,
        token_id: None,
        ..Default::default()
    };
    let admin = warden::services::tokens::issue(
        &warden.state.store,
        actor,
        Role::Admin,
        Some("bench".into()),
        String::new(),
        None,
        now,
    )
    .await
    .unwrap()
    .secret;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warden.clone().serve(listener, std::future::pending::<()>()));
    let http = reqwest::Client::new();

    // GET trust over random agents: one client (latency), then 16 (under load).
    for clients in [1, CLIENTS] {
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
                let mut times = Vec::new();
                for _ in 0..300 {
                    let id = rng.random_range(0..AGENTS);
                    let started = Instant::now();
                    let r = http
                        .get(format!("{base}/v1/agents/agent-{id}/trust"))
                        .bearer_auth(&admin)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    let body: serde_json::Value = r.json().await.unwrap();
                    times.push(started.elapsed());
                    assert!(body["evidence"]["successes"].as_u64().unwrap() > 0);
                }
                times
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await.unwrap());
        }
        percentiles(
            &format!("GET /v1/agents/{{id}}/trust ({clients} client(s))"),
            times,
        );
    }

    // What trust adds to recording an outcome, one at a time, in process.
    let store = &warden.state.store;
    let tiers = &warden.state.tiers;
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let (mut plain, mut with_trust, mut note, mut review) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..2000 {
        let agent = store
            .agent(&format!("agent-{}", rng.random_range(0..AGENTS)))
            .await
            .unwrap()
            .unwrap();
        let n = rng.random_range(0..evidence);
        let id = format!("e{:05}-{n:08}", n / (evidence / AGENTS));
        let expected = store.outcome(&id).await.unwrap().unwrap().outcome;
        let at = warden::clock::Clock::now_micros(&SystemClock);
        let report = Write::Outcome(OutcomeWrite::ReportOutcome {
            decision_id: id,
            outcome: warden::records::OutcomeStatus::Succeeded,
            at,
            by: "bench".into(),
            detail: None,
            actual_cost_usd: None,
            expected,
        });
        if round % 2 == 0 {
            let started = Instant::now();
            store
                .commit(Change {
                    writes: vec![report],
                    audit: vec![],
                })
                .await
                .unwrap();
            plain.push(started.elapsed());
        } else {
            let started = Instant::now();
            let e = tiers.evidence(
                &agent.id,
                "production",
                warden::policy::RiskLevel::Low,
                Kind::Success,
                at,
                1,
            );
            let n = tiers.note(&agent);
            note.push(started.elapsed());
            store
                .commit(Change {
                    writes: vec![report, Write::Trust(TrustWrite::AddEvidence(e)), n],
                    audit: vec![],
                })
                .await
                .unwrap();
            with_trust.push(started.elapsed());
            let started = Instant::now();
            tiers
                .review(&agent.id, Trigger::Outcome { bad: false })
                .await
                .unwrap();
            review.push(started.elapsed());
        }
    }
    percentiles("commit an outcome alone", plain);
    percentiles("…with its evidence and score (reads + commit)", with_trust);
    percentiles("  of which reading the totals for the score", note);
    percentiles(
        "tier review after it (reads; writes only on a change)",
        review,
    );

    // End to end over HTTP: register decisions to report on, then report.
    let bot = {
        let actor = Actor {
            kind: "admin".into(),
            id: "bench".into(),
            tool: None,
            model: None,
            token_id: None,
            ..Default::default()
        };
        warden::services::tokens::issue(
            &warden.state.store,
            actor,
            Role::Agent,
            Some("agent-1".into()),
            String::new(),
            None,
            now,
        )
        .await
        .unwrap()
        .secret
    };
    let lift =
        json!({"limits": {"deploys_per_hour_per_service": 1000000, "calls_per_minute": 1000000}});
    assert!(
        http.put(format!("{base}/v1/agents/agent-1/quotas"))
            .bearer_auth(&admin)
            .json(&lift)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let mut times = Vec::new();
    for _ in 0..500 {
        let body =
            json!({"action": {"class": "deploy", "environment": "dev", "service": "payments"}});
        let d: serde_json::Value = http
            .post(format!("{base}/v1/decisions"))
            .bearer_auth(&bot)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let path = format!(
            "{base}/v1/decisions/{}/outcome",
            d["decision_id"].as_str().unwrap()
        );
        let started = Instant::now();
        let r = http
            .post(path)
            .bearer_auth(&bot)
            .json(&json!({"status": "succeeded"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        times.push(started.elapsed());
    }
    percentiles("POST /v1/decisions/{id}/outcome (1 client)", times);
}
