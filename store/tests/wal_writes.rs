//! With `coalesce_wal_writes`, SQLite's writer writes each commit's WAL frames in one write
//! rather than two a frame. Counted as the write calls (`syscw` in `/proc/<tid>/io`) of the
//! writer's connection's thread, found as the one SQLite thread that shares the writer's core
//! (`share_writer_core`); in a test binary of its own, so that no other store's threads are in
//! the process.
#![cfg(target_os = "linux")]

mod support;

use support::{cores, proc_field, store_in, threads_named};
use warden_core::audit::{Actor, AuditRecord};
use warden_core::decision::Verdict;
use warden_core::policy::RiskLevel;
use warden_core::records::DecisionRow;
use warden_store::{Change, DecisionWrite, Write};

/// The writer's connection's thread: the SQLite thread on the writer's one core.
fn writers_sqlite_thread() -> std::path::PathBuf {
    let writers = threads_named("warden-writer");
    let [(_, core)] = &writers[..] else {
        panic!("one writer: {writers:?}")
    };
    let mut on_its_core: Vec<_> = threads_named("sqlx-sqlite-wor")
        .into_iter()
        .filter(|(_, cpus)| cpus == core)
        .collect();
    assert_eq!(on_its_core.len(), 1, "{on_its_core:?} on {core}");
    on_its_core.remove(0).0
}

fn write_calls(task: &std::path::Path) -> u64 {
    proc_field(task, "io", "syscw:").unwrap().parse().unwrap()
}

/// The writer's connection's write calls a commit of one decision with its audit record, over
/// `commits` commits one after another (too few for the writer's own checkpoint, at 1,000
/// pages).
async fn write_calls_a_commit(coalesce_wal_writes: bool, commits: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), true, coalesce_wal_writes).await;
    let thread = writers_sqlite_thread();
    let before = write_calls(&thread);
    for i in 0..commits {
        let id = format!("decision-{i:04}");
        // A request and an answer of a few pages each: a commit of a dozen frames or more.
        let row = DecisionRow {
            id: id.clone(),
            at: 1_900_000_000_000_000 + i as i64,
            agent_id: "bot".into(),
            on_behalf_of: None,
            class: "deploy".into(),
            environment: "staging".into(),
            service: "payments".into(),
            verdict: Verdict::Allow,
            shadow_verdict: None,
            risk_level: RiskLevel::Low,
            tier: 2,
            policy_version: "p".into(),
            request: format!("{{\"pad\":\"{}\"}}", "r".repeat(6000)),
            answer: format!("{{\"pad\":\"{}\"}}", "a".repeat(6000)),
            outcome_due_at: None,
            notable: false,
        };
        let record = AuditRecord {
            agent: Some("bot".into()),
            decision_id: Some(id),
            ..AuditRecord::change(
                Actor::warden(),
                "decision",
                "agent:bot".into(),
                serde_json::json!({}),
                1_900_000_000_000_000,
            )
        };
        store
            .commit(Change {
                writes: vec![Write::Decision(DecisionWrite::InsertDecision(row))],
                audit: vec![record],
            })
            .await
            .unwrap();
    }
    let calls = write_calls(&thread) - before;
    assert_eq!(store.verify_audit().await.unwrap(), Ok(commits as i64));
    store.close().await;
    calls as f64 / commits as f64
}

#[tokio::test]
async fn a_commit_writes_its_wal_frames_at_once() {
    let one_core = |cpus: &str| !cpus.contains([',', '-']);
    if one_core(&cores("/proc/self".as_ref()).unwrap()) {
        return; // one core only: the writer's connection's thread cannot be told apart
    }
    let held = write_calls_a_commit(true, 40).await;
    let apart = write_calls_a_commit(false, 40).await;
    // Apart: two writes a frame, a dozen frames or more a commit. At once: one a commit. Both
    // also count the thread's wake-ups of the writer (an eventfd's write a statement).
    assert!(
        apart - held >= 20.0 && held * 3.0 <= apart,
        "{held} write calls a commit at once against {apart} apart"
    );
}
