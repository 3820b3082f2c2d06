//! Commits made durable beside the writer, not inside it (SQLite).
//!
//! The writer's own connection commits with `synchronous = NORMAL`: SQLite writes a batch's WAL
//! frames but does not wait for the disk. This thread then flushes the WAL file and only then
//! answers the callers of every batch whose commit returned before the flush began: their
//! frames were written before it, so it covers them. Meanwhile the writer commits the next
//! batch, so a commit's work and the disk's wait overlap instead of adding up, and one flush
//! covers every batch that queued behind the last.
//!
//! A reader on another connection can see a batch up to one flush before it is on disk. That
//! matters only if the machine loses power (a killed process leaves its writes in the kernel's
//! cache), and no caller is answered before.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::{Result, StoreError};

/// A caller's reply and what to send it once its batch is on disk.
pub(crate) type Reply = (oneshot::Sender<Result<()>>, Result<()>);

enum Msg {
    Answer(Vec<Reply>),
    /// Answered once everything sent before it has been answered.
    Drain(oneshot::Sender<()>),
}

/// The flushing thread's end in the writer.
pub(crate) struct WalSync {
    tx: mpsc::Sender<Msg>,
}

impl WalSync {
    /// Starts the thread that flushes the WAL file at `wal`.
    pub(crate) fn start(wal: PathBuf) -> io::Result<WalSync> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("warden-wal-sync".into())
            .spawn(move || {
                run(
                    Wal {
                        path: wal,
                        file: None,
                    },
                    rx,
                )
            })?;
        Ok(WalSync { tx })
    }

    /// Sends each reply once the WAL holding its batch is on disk.
    pub(crate) fn answer(&self, replies: Vec<Reply>) {
        if let Err(mpsc::SendError(Msg::Answer(replies))) = self.tx.send(Msg::Answer(replies)) {
            // The thread is gone (it never panics by design): nothing can vouch for the disk.
            for (reply, _) in replies {
                let _ = reply.send(Err(StoreError::Undurable(
                    "the WAL flushing thread has stopped".into(),
                )));
            }
        }
    }

    /// Returns once every reply sent before has been answered.
    pub(crate) async fn drain(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Drain(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

fn run(mut wal: Wal, rx: mpsc::Receiver<Msg>) {
    // After a failed flush the kernel may have dropped the dirty pages and a later flush can
    // succeed without them (PostgreSQL's "fsyncgate"): no later write is vouched for either.
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut msgs = vec![first];
        msgs.extend(rx.try_iter());
        let owed = msgs.iter().any(|m| match m {
            Msg::Answer(replies) => replies.iter().any(|(_, r)| r.is_ok()),
            Msg::Drain(_) => false,
        });
        if owed
            && failed.is_none()
            && let Err(e) = wal.sync()
        {
            tracing::error!(error = %e, wal = %wal.path.display(), "cannot flush the WAL to disk; every write from now on fails until Warden restarts");
            failed = Some(format!("flushing {}: {e}", wal.path.display()));
        }
        for msg in msgs {
            match msg {
                Msg::Answer(replies) => {
                    for (reply, result) in replies {
                        let result = match (&failed, result) {
                            (Some(e), Ok(())) => Err(StoreError::Undurable(e.clone())),
                            (_, result) => result,
                        };
                        let _ = reply.send(result);
                    }
                }
                Msg::Drain(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }
}

/// The WAL file, opened again whenever SQLite has made a new one (the path names another file).
struct Wal {
    path: PathBuf,
    file: Option<(File, FileId)>,
}

impl Wal {
    fn sync(&mut self) -> io::Result<()> {
        let now = file_id(&std::fs::metadata(&self.path)?);
        if self.file.as_ref().is_none_or(|(_, id)| *id != now) {
            let file = OpenOptions::new().write(true).open(&self.path)?;
            let id = file_id(&file.metadata()?);
            // A new file's name must reach the disk too, or a power loss can take the file.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                sync_dir(dir)?;
            }
            self.file = Some((file, id));
        }
        let (file, _) = self.file.as_ref().expect("opened above");
        file.sync_data()
    }
}

#[cfg(unix)]
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

// Elsewhere a file has no cheap identity: the file is opened again for every flush.
#[cfg(not(unix))]
type FileId = u128;

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> FileId {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> (oneshot::Sender<Result<()>>, oneshot::Receiver<Result<()>>) {
        oneshot::channel()
    }

    #[tokio::test]
    async fn answers_after_flushing_and_keeps_logical_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        std::fs::write(&path, b"frames").unwrap();
        let sync = WalSync::start(path).unwrap();
        let (ok, ok_rx) = reply();
        let (bad, bad_rx) = reply();
        let conflict = StoreError::Conflict(crate::Conflict::AgentExists, "taken".into());
        sync.answer(vec![(ok, Ok(())), (bad, Err(conflict))]);
        assert!(ok_rx.await.unwrap().is_ok());
        assert!(matches!(
            bad_rx.await.unwrap(),
            Err(StoreError::Conflict(..))
        ));
    }

    #[tokio::test]
    async fn a_failed_flush_fails_that_write_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        // No WAL file where the store said it would be: the flush fails.
        let sync = WalSync::start(path.clone()).unwrap();
        let (first, first_rx) = reply();
        sync.answer(vec![(first, Ok(()))]);
        assert!(
            matches!(first_rx.await.unwrap(), Err(StoreError::Undurable(m)) if m.contains("db-wal"))
        );
        // The file appearing later does not make later writes trustworthy again.
        std::fs::write(&path, b"frames").unwrap();
        let (later, later_rx) = reply();
        sync.answer(vec![(later, Ok(()))]);
        assert!(matches!(
            later_rx.await.unwrap(),
            Err(StoreError::Undurable(_))
        ));
    }

    #[tokio::test]
    async fn a_replaced_wal_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        std::fs::write(&path, b"frames").unwrap();
        let mut wal = Wal {
            path: path.clone(),
            file: None,
        };
        wal.sync().unwrap();
        let first = wal.file.as_ref().unwrap().1;
        // SQLite deletes the WAL when its last connection closes and makes a new one later.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"new frames").unwrap();
        wal.sync().unwrap();
        assert_ne!(wal.file.as_ref().unwrap().1, first);
    }

    #[tokio::test]
    async fn drain_waits_for_earlier_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        std::fs::write(&path, b"frames").unwrap();
        let sync = WalSync::start(path).unwrap();
        let (a, mut a_rx) = reply();
        sync.answer(vec![(a, Ok(()))]);
        sync.drain().await;
        assert!(matches!(a_rx.try_recv(), Ok(Ok(()))));
    }
}
