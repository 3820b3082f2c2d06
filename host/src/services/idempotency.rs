//! Idempotent requests. A caller that sends `Idempotency-Key` with a request may send it again
//! (its connection dropped, it timed out): within the window the retry gets the first answer
//! and changes nothing; the same key with another request is refused. A key is claimed while
//! its request is in flight, so a retry that overtakes the first waits its turn instead of
//! acting twice; a claim whose process died lapses after [`CLAIM_LEASE`].

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result};
use crate::store::{Change, Conflict, IdempotencyKey, IdempotencyWrite, Kept, Store, Write};

/// How long a claim holds a key without an answer before a retry may take it over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A key this request holds until it is answered.
#[derive(Debug, Clone)]
pub struct Claim {
    key: IdempotencyKey,
    /// When it was made: which claim this is, should a retry take the key over.
    at: i64,
}

impl Claim {
    /// The write that keeps `body` as the answer: put it in the change that makes the answer
    /// true, so that the answer and what it says are kept together or not at all. It fails
    /// (and the change with it) if this claim no longer holds the key.
    pub fn answer(&self, status: u16, body: String) -> Write {
        Write::Idempotency(IdempotencyWrite::Answer {
            key: self.key.clone(),
            claimed_at: self.at,
            status,
            response: body,
        })
    }
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begun {
    /// Run it: the key is claimed.
    Fresh(Claim),
    /// Answer it as the first time: status and body.
    Replay(u16, String),
}

/// A request's fingerprint: what it asks, byte for byte.
pub fn request_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Checks a key: 1 to 255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

/// Looks the key up and claims it, or says how the first request was answered.
pub async fn begin(
    store: &Store,
    key: IdempotencyKey,
    request_hash: String,
    now: i64,
    window: Duration,
) -> Result<Begun> {
    let lease = i64::try_from(CLAIM_LEASE.as_micros()).unwrap_or(i64::MAX);
    let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    // Twice at most: a claim that lapses between the read and the write is taken the second time.
    for _ in 0..2 {
        match store.idempotency_key(&key, now).await? {
            Some(Kept {
                request_hash: first,
                ..
            }) if first != request_hash => {
                return Err(Error::new(
                    Kind::Unprocessable,
                    "idempotency_key_reused",
                    format!(
                        "Idempotency-Key `{}` was sent with another request; use a new key for a new request",
                        key.key
                    ),
                ));
            }
            Some(Kept {
                answer: Some((status, body)),
                ..
            }) => return Ok(Begun::Replay(status, body)),
            _ => {}
        }
        let claim = IdempotencyWrite::Claim {
            key: key.clone(),
            request_hash: request_hash.clone(),
            at: now,
            expires_at: now.saturating_add(window),
            stale_before: now.saturating_sub(lease),
        };
        let change = Change {
            writes: vec![claim.into()],
            audit: vec![],
        };
        match store.commit(change).await {
            Ok(()) => return Ok(Begun::Fresh(Claim { key, at: now })),
            Err(e) if e.conflict() == Some(Conflict::IdempotencyKeyTaken) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::new(
        Kind::Conflict,
        "idempotency_key_in_flight",
        format!(
            "a request with Idempotency-Key `{}` is still being answered; retry shortly",
            key.key
        ),
    ))
}

/// Keeps a successful answer, or gives the key up after a failure, so that a retry runs
/// afresh. An answer the request's own change kept already is left as it is.
pub async fn finish(store: &Store, claim: Claim, answer: Option<(u16, String)>) -> Result<()> {
    let write = match answer {
        Some((status, body)) => claim.answer(status, body),
        None => Write::Idempotency(IdempotencyWrite::Release {
            key: claim.key,
            claimed_at: claim.at,
        }),
    };
    let change = Change {
        writes: vec![write],
        audit: vec![],
    };
    match store.commit(change).await {
        // Kept by the request's own change, or (its claim having lapsed) by a retry's.
        Err(e) if e.conflict() == Some(Conflict::IdempotencyKeyTaken) => Ok(()),
        other => Ok(other?),
    }
}
