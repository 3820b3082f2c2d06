//! A full baseline recompute over a million human events on the embedded SQLite store: read
//! every event of the window, compute every baseline and every agent's drift with polars, and
//! write the new version. Prints the time of each part and the process's peak memory during
//! the recompute (VmHWM, reset before it). Also prints how fast the million events went into
//! the store through the writer, the import path's floor.
//!
//! `cargo bench -p warden --bench recompute` (`WARDEN_BENCH_EVENTS` to change the count).

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use warden::activity::{ActivityEvent, ActorKind};
use warden::clock::ManualClock;
use warden::services::baselines::{Baselines, BaselinesConfig};
use warden::store::{Change, EventWrite, Store, StoreOptions, Write};

const HOUR: i64 = 3_600_000_000;
const CLASSES: [&str; 6] = [
    "deploy",
    "config_change",
    "db_migration",
    "run_tests",
    "infra_create",
    "api_call",
];
const ENVS: [&str; 3] = ["dev", "staging", "production"];

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: u64 = std::env::var("WARDEN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    tracing_subscriber::fmt()
        .with_env_filter("warden=info")
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // `WARDEN_BENCH_DB=<file>` keeps the database between runs (filled once).
    let db = std::env::var("WARDEN_BENCH_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("w.db"));
    let fill = !db.exists();
    let now = 1_780_000_000_000_000;
    rt.block_on(async {
        let store = Store::open(&StoreOptions {
            url: format!("sqlite://{}?mode=rwc", db.display()),
            max_connections: 4,
            max_batch: 64,
            cache_ttl: std::time::Duration::ZERO,
            share_writer_core: true,
            coalesce_wal_writes: true,
        })
        .await
        .unwrap();
        // 200 humans in 20 teams, 5 services and 6 classes each, over the last 27 days, with a
        // pseudo-random but repeatable spread; 500 targets.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let started = Instant::now();
        let mut batch = Vec::with_capacity(10_000);
        for i in (0..n).filter(|_| fill) {
            let r = next();
            let human = r % 200;
            let team = human % 20;
            batch.push(ActivityEvent {
                source: "bench".into(),
                source_id: i.to_string(),
                actor_kind: ActorKind::Human,
                actor_id: format!("human-{human}"),
                team: format!("team-{team}"),
                class: CLASSES[(r >> 8) as usize % CLASSES.len()].into(),
                environment: ENVS[(r >> 16) as usize % ENVS.len()].into(),
                service: format!("svc-{team}-{}", (r >> 20) % 5),
                targets: vec![format!("deployment/t{}", (r >> 24) % 500)],
                change_size: Some(((r >> 32) % 400) as u32 + 1),
                at: now - 1 - ((r >> 40) as i64 % (27 * 24 * HOUR)),
                outcome: None,
                decision_id: None,
            });
            if batch.len() == 10_000 || i + 1 == n {
                store
                    .commit(Change {
                        writes: vec![Write::Event(EventWrite::InsertEvents {
                            events: std::mem::take(&mut batch),
                            received_at: now,
                        })],
                        audit: Vec::new(),
                    })
                    .await
                    .unwrap();
            }
        }
        let stored = started.elapsed();
        if fill {
            println!(
                "stored {n} events in {:.2} s: {:.0} events/s through the writer",
                stored.as_secs_f64(),
                n as f64 / stored.as_secs_f64()
            );
        }

        // The store's part alone: every row read and decoded, nothing done with it.
        let started = Instant::now();
        let mut rows = 0u64;
        store
            .scan_events(None, 0, now + 1, |_| rows += 1)
            .await
            .unwrap();
        println!(
            "scan alone: {rows} rows in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let clock = Arc::new(ManualClock::at(now));
        let baselines = Baselines::new(store.clone(), clock, BaselinesConfig::default()).unwrap();
        // Forget the insertion phase's peak, so the figure is the recompute's own.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = peak_kib();
        let started = Instant::now();
        let run = baselines.recompute().await.unwrap();
        let took = started.elapsed();
        println!(
            "recompute: {} events, {} baselines in {:.2} s; peak memory {} MiB (before: {} MiB)",
            run.events,
            run.baselines,
            took.as_secs_f64(),
            peak_kib() / 1024,
            before / 1024
        );
        store.close().await;
    });
}
