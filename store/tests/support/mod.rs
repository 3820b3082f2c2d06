//! What the store's single-test binaries (`writer_core.rs`, `wal_writes.rs`) share: a store
//! whose writer has connected, and this process's threads as `/proc` shows them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_store::{Change, Store, StoreOptions};

/// A store on a fresh SQLite file in `dir`, once its writer has opened its connection (after a
/// commit is answered).
pub(crate) async fn store_in(
    dir: &Path,
    share_writer_core: bool,
    coalesce_wal_writes: bool,
) -> Store {
    let store = Store::open(&StoreOptions {
        url: format!("sqlite://{}?mode=rwc", dir.join("warden.db").display()),
        max_connections: 1,
        max_batch: 8,
        cache_ttl: Duration::ZERO,
        share_writer_core,
        coalesce_wal_writes,
    })
    .await
    .unwrap();
    let nothing = Change {
        writes: vec![],
        audit: vec![],
    };
    store.commit(nothing).await.unwrap();
    store
}

/// A line of a `/proc` file of a process or thread (`task`), after its `key`; `None` if the
/// thread has ended.
pub(crate) fn proc_field(task: &Path, file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(task.join(file)).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(key))?;
    Some(line.trim().to_owned())
}

/// The cores a process or thread may run on, as the kernel lists them (`0-1`, `3`).
pub(crate) fn cores(task: &Path) -> Option<String> {
    proc_field(task, "status", "Cpus_allowed_list:")
}

/// This process's threads named `name`, with the cores each may run on (threads that end
/// meanwhile are left out).
pub(crate) fn threads_named(name: &str) -> Vec<(PathBuf, String)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?.path();
            let comm = std::fs::read_to_string(task.join("comm")).ok()?;
            let cpus = cores(&task)?;
            (comm.trim_end() == name).then_some((task, cpus))
        })
        .collect()
}
