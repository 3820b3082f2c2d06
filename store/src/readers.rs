//! Connections for the decision path's one read, held outside sqlx's pool.
//!
//! sqlx 0.8 pings every connection given back to its pool (to flush a rollback a dropped
//! transaction may have left), a round trip of its own to SQLite's thread or to PostgreSQL after
//! every read. The anomaly stage reads on every decision, so its connections are kept here
//! instead: taken and given back under a lock, at most as many at once as the pool holds, pinged
//! only after sitting idle, like the pool's.

use std::sync::Mutex;
use std::time::Instant;

use sqlx::{AnyConnection, Connection as _};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::dialect::Backend;
use crate::error::{Result, StoreError};

/// Reading connections: at most `keep` at once (more readers wait, as for the pool's), each
/// idle one with the time it was given back.
#[derive(Debug)]
pub(crate) struct Readers {
    url: String,
    backend: Backend,
    permits: Semaphore,
    idle: Mutex<Vec<(Instant, AnyConnection)>>,
}

impl Readers {
    /// At most `keep` connections to `url`.
    pub(crate) fn new(url: &str, backend: Backend, keep: usize) -> Readers {
        Readers {
            url: url.to_owned(),
            backend,
            permits: Semaphore::new(keep),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A turn to read (held until the read is done), and an idle connection (pinged first if it
    /// sat idle long) or a new one; unavailable after the pool's acquire timeout.
    pub(crate) async fn take(&self) -> Result<(SemaphorePermit<'_>, AnyConnection)> {
        let take = async {
            let turn = self
                .permits
                .acquire()
                .await
                .map_err(|_| StoreError::unavailable("the store is closed"))?;
            Ok((turn, self.connection().await?))
        };
        tokio::time::timeout(crate::ACQUIRE_TIMEOUT, take)
            .await
            .map_err(|_| StoreError::unavailable("timed out waiting for a reading connection"))?
    }

    /// The database these connections are to.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    async fn connection(&self) -> Result<AnyConnection> {
        loop {
            let next = self.idle.lock().expect("readers lock").pop();
            match next {
                Some((since, mut conn)) if crate::liveness::check(since.elapsed()) => {
                    // One the server dropped meanwhile is dropped here too.
                    if conn.ping().await.is_ok() {
                        return Ok(conn);
                    }
                }
                Some((_, conn)) => return Ok(conn),
                None => {
                    let mut conn = AnyConnection::connect(&self.url).await?;
                    self.backend.set_up(&mut conn).await?;
                    return Ok(conn);
                }
            }
        }
    }

    /// Gives back a connection whose read succeeded (one that failed is dropped instead, and so
    /// is one read while the store closed).
    pub(crate) fn give_back(&self, conn: AnyConnection) {
        if self.permits.is_closed() {
            return;
        }
        self.idle
            .lock()
            .expect("readers lock")
            .push((Instant::now(), conn));
    }

    /// Drops every idle connection and turns away later readers (the store is closing).
    pub(crate) fn close(&self) {
        self.permits.close();
        self.idle.lock().expect("readers lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Executor as _;

    use super::*;

    /// A connection given back is the next one taken, and a reader beyond `keep` waits for a
    /// turn rather than opening another connection.
    #[tokio::test]
    async fn connections_are_reused_and_bounded() {
        sqlx::any::install_default_drivers();
        // Each connection to `sqlite::memory:` is a database of its own, so a table made on one
        // is seen only on that one.
        let readers = Readers::new("sqlite::memory:", Backend::Sqlite, 1);
        let (turn, mut conn) = readers.take().await.unwrap();
        conn.execute("CREATE TABLE mark (x INTEGER)").await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(50), readers.take()).await;
        assert!(
            second.is_err(),
            "a second reader got a turn beside the first"
        );
        readers.give_back(conn);
        drop(turn);
        let (_turn, mut conn) = readers.take().await.unwrap();
        conn.execute("SELECT x FROM mark").await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_set_turns_readers_away() {
        sqlx::any::install_default_drivers();
        let readers = Readers::new("sqlite::memory:", Backend::Sqlite, 2);
        let (idle_turn, idle) = readers.take().await.unwrap();
        let (turn, in_flight) = readers.take().await.unwrap();
        readers.give_back(idle);
        drop(idle_turn);
        assert_eq!(readers.idle.lock().unwrap().len(), 1);
        readers.close();
        assert!(readers.idle.lock().unwrap().is_empty());
        // A read in flight as the store closed does not leave its connection behind.
        readers.give_back(in_flight);
        drop(turn);
        assert!(readers.idle.lock().unwrap().is_empty());
        assert!(matches!(
            readers.take().await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
