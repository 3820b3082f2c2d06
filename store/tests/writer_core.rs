//! Where SQLite's writer runs: on one core with its connection's thread, or on any. A process of
//! its own (this file's one test), so that no other test's store has threads in it.
#![cfg(target_os = "linux")]

use std::time::Duration;

use warden_store::{Change, Store, StoreOptions};

/// The cores a thread of this process may run on, as the kernel lists them (`0-1`, `3`).
fn allowed(status: &str) -> String {
    let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:"));
    line.unwrap().split_whitespace().nth(1).unwrap().to_owned()
}

/// The allowed cores of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).ok()?;
            let status = std::fs::read_to_string(task.join("status")).ok()?;
            (comm.trim_end() == name).then(|| allowed(&status))
        })
        .collect()
}

async fn store_in(dir: &std::path::Path, share_writer_core: bool) -> Store {
    let store = Store::open(&StoreOptions {
        url: format!("sqlite://{}?mode=rwc", dir.join("warden.db").display()),
        max_connections: 1,
        max_batch: 8,
        cache_ttl: Duration::ZERO,
        share_writer_core,
        coalesce_wal_writes: true,
    })
    .await
    .unwrap();
    // Once a commit is answered the writer has started and opened its connection.
    let nothing = Change {
        writes: vec![],
        audit: vec![],
    };
    store.commit(nothing).await.unwrap();
    store
}

#[tokio::test]
async fn the_writer_and_its_sqlite_thread_share_a_core_unless_told_not_to() {
    let one_core = |cpus: &String| !cpus.contains([',', '-']);
    let everywhere = allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    if one_core(&everywhere) {
        return; // one core only: every thread shares it anyway
    }

    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), false).await;
    let (writers, sqlite) = (
        threads_named("warden-writer"),
        threads_named("sqlx-sqlite-wor"),
    );
    assert_eq!(
        writers,
        std::slice::from_ref(&everywhere),
        "told not to, the writer runs anywhere"
    );
    assert!(
        !sqlite.is_empty() && sqlite.iter().all(|cpus| *cpus == everywhere),
        "told not to, SQLite's threads run anywhere: {sqlite:?}"
    );
    store.close().await;

    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), true).await;
    // The first store's writer has stopped, and its threads with it (or will shortly).
    let writers: Vec<String> = threads_named("warden-writer")
        .into_iter()
        .filter(one_core)
        .collect();
    assert_eq!(writers.len(), 1, "one writer on one core, of {everywhere}");
    let sqlite = threads_named("sqlx-sqlite-wor");
    let on_its_core = sqlite.iter().filter(|cpus| **cpus == writers[0]).count();
    assert_eq!(
        on_its_core, 1,
        "the writer's connection's thread on its core {}: {sqlite:?}",
        writers[0]
    );
    assert!(
        sqlite.contains(&everywhere),
        "the pool's threads run anywhere: {sqlite:?}"
    );
    store.close().await;
}
