//! Where SQLite's writer runs: on one core with its connection's thread, or on any. A process of
//! its own (this file's one test), so that no other test's store has threads in it.
#![cfg(target_os = "linux")]

mod support;

use support::{cores, store_in};

/// The allowed cores of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<String> {
    support::threads_named(name)
        .into_iter()
        .map(|(_, cpus)| cpus)
        .collect()
}

#[tokio::test]
async fn the_writer_and_its_sqlite_thread_share_a_core_unless_told_not_to() {
    let one_core = |cpus: &String| !cpus.contains([',', '-']);
    let everywhere = cores("/proc/self".as_ref()).unwrap();
    if one_core(&everywhere) {
        return; // one core only: every thread shares it anyway
    }

    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path(), false, true).await;
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
    let store = store_in(dir.path(), true, true).await;
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
