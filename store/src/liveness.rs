//! When a connection is checked before it is used.
//!
//! A connection in steady use is handed out unchecked: a ping is a round trip of its own before
//! every read. One idle long enough for the server to have dropped it is pinged first. And once
//! this process has seen a connection lost (the database restarted or failed over, a session
//! was killed), every connection is pinged before use for as long: the others idle since then
//! are likely dead too, and are then found so and replaced when taken, not by a request's
//! query. (The writer used to find them for the requests, taking its connections from the same
//! pool; its connections are its own now.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a connection may sit idle and still be handed out unchecked, and how long after a
/// lost connection every connection is checked.
pub(crate) const CHECK_IDLE_AFTER: Duration = Duration::from_secs(10);

/// When a connection was last lost, in milliseconds since [`epoch`] plus one (0: never).
static LOST_AT: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Notes `err` if it says the connection it came from is gone.
pub(crate) fn note(err: &sqlx::Error) {
    if lost(err) {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        LOST_AT.fetch_max(now, Ordering::Relaxed);
    }
}

/// Whether a connection idle for `idle_for` is pinged before it is handed out.
pub(crate) fn check(idle_for: Duration) -> bool {
    if idle_for >= CHECK_IDLE_AFTER {
        return true;
    }
    let lost_at = LOST_AT.load(Ordering::Relaxed);
    lost_at != 0
        && epoch().elapsed().as_millis() as u64 + 1 - lost_at < CHECK_IDLE_AFTER.as_millis() as u64
}

/// The errors of a connection that is gone: its socket or thread failed, or the server ended
/// the session (SQLSTATE class 08, connection exception; 57P01–57P03, an administrator's or a
/// crash's shutdown, or a server that cannot take connections yet).
fn lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_has_every_connection_checked_for_a_while() {
        // Another error says nothing of the connection.
        note(&sqlx::Error::RowNotFound);
        note(&sqlx::Error::PoolTimedOut);
        let before = LOST_AT.load(Ordering::Relaxed);
        // (nextest runs each test in a process of its own; `cargo test` shares one among this
        // crate's tests, where another may have noted a loss already.)
        if before == 0 {
            assert!(!check(Duration::from_millis(5)));
        }
        assert!(check(CHECK_IDLE_AFTER));
        note(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(LOST_AT.load(Ordering::Relaxed) > 0);
        assert!(check(Duration::ZERO));
        assert!(lost(&sqlx::Error::WorkerCrashed));
        assert!(!lost(&sqlx::Error::PoolClosed));
    }
}
