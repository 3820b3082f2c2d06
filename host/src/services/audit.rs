//! Reading the audit trail: pages, summaries and verification. Every read is itself an audit
//! record (who asked, with which filter), written before the answer leaves.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::audit::checkpoint::NoteVerifier;
use crate::audit::{Actor, AuditEntry, AuditRecord, Break};
use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::identity::{Caller, Role};
use crate::store::{
    AuditFilter, AuditGroup, AuditOrder, AuditPageRequest, AuditScope, Change, Store,
};

/// What the caller's role may read: admins everything; approvers what names them and what
/// waits for approval; an agent its own records. Platform services read nothing.
pub fn scope_of(caller: &Caller) -> Result<AuditScope> {
    match caller.role {
        Role::Admin => Ok(AuditScope::All),
        Role::Approver => Ok(AuditScope::Approver(caller.actor_id())),
        Role::Agent => Ok(AuditScope::Agent(caller.actor_id())),
        Role::Service => Err(Error::forbidden(
            "forbidden_role",
            "the audit trail is read by admins, approvers and agents (their own records)",
        )),
    }
}

/// A page asked for.
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// What to select (the caller's scope is added).
    pub filter: AuditFilter,
    /// Which way.
    pub order: AuditOrder,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// `since` and `until` as given: a span such as `30d` means the moment the first page was
    /// read, which the cursor carries to the next pages.
    pub times_as_given: [Option<String>; 2],
    /// Page size.
    pub limit: i64,
}

/// A page of records.
#[derive(Debug)]
pub struct Page {
    /// The records.
    pub records: Vec<AuditEntry>,
    /// For the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// The identity of a query, so a cursor is refused by any other: its filters, with the times
/// as given (a span resolves anew at each request; the cursor keeps the first page's moments).
fn fingerprint(filter: &AuditFilter, order: AuditOrder, times: &[Option<String>; 2]) -> String {
    let untimed = AuditFilter {
        since: None,
        until: None,
        ..filter.clone()
    };
    let text = serde_json::to_string(&(untimed, order, times)).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Where a page ends, and the moments its query's times meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    at: i64,
    seq: i64,
    since: Option<i64>,
    until: Option<i64>,
}

/// A cursor, tied to the query that produced it.
fn encode_cursor(c: Cursor, fingerprint: &str) -> String {
    let time = |t: Option<i64>| t.map_or("-".to_string(), |t| t.to_string());
    URL_SAFE_NO_PAD.encode(format!(
        "{}.{}.{}.{}.{fingerprint}",
        c.at,
        c.seq,
        time(c.since),
        time(c.until)
    ))
}

fn decode_cursor(cursor: &str, fingerprint: &str) -> Result<Cursor> {
    let bad = || Error::field("cursor", "not a cursor this API returned");
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let parts: Vec<&str> = text.split('.').collect();
    let [at, seq, since, until, fp] = parts.as_slice() else {
        return Err(bad());
    };
    let time = |t: &str| -> Result<Option<i64>> {
        match t {
            "-" => Ok(None),
            t => t.parse().map(Some).map_err(|_| bad()),
        }
    };
    let c = Cursor {
        at: at.parse().map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
        since: time(since)?,
        until: time(until)?,
    };
    if *fp != fingerprint {
        return Err(Error::field(
            "cursor",
            "this cursor belongs to another query: repeat the filters it was made with",
        ));
    }
    Ok(c)
}

/// One page of the trail, in the caller's scope; the read is recorded.
pub async fn page(
    store: &Store,
    clock: &SharedClock,
    caller: &Caller,
    mut query: PageQuery,
) -> Result<Page> {
    query.filter.scope = scope_of(caller)?;
    let fp = fingerprint(&query.filter, query.order, &query.times_as_given);
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, &fp))
        .transpose()?;
    if let Some(c) = cursor {
        query.filter.since = c.since;
        query.filter.until = c.until;
    }
    let after = cursor.map(|c| (c.at, c.seq));
    let (since, until) = (query.filter.since, query.filter.until);
    let request = AuditPageRequest {
        filter: query.filter,
        order: query.order,
        after,
        // One more than asked tells whether another page exists.
        limit: query.limit + 1,
    };
    let mut records = store.audit(&request).await?;
    let next_cursor = if records.len() as i64 > query.limit {
        records.truncate(query.limit as usize);
        records.last().and_then(|e| {
            let at = crate::clock::parse_micros(&e.record.at)?;
            let c = Cursor {
                at,
                seq: e.seq,
                since,
                until,
            };
            Some(encode_cursor(c, &fp))
        })
    } else {
        None
    };
    let details = serde_json::json!({"filter": request.filter, "order": request.order,
        "cursor": request.after.is_some(), "returned": records.len()});
    record_read(store, clock, caller, "audit.read", details).await?;
    Ok(Page {
        records,
        next_cursor,
    })
}

/// Counts grouped by one field, in the caller's scope; the read is recorded.
pub async fn summary(
    store: &Store,
    clock: &SharedClock,
    caller: &Caller,
    mut filter: AuditFilter,
    group: AuditGroup,
    group_name: &str,
) -> Result<Vec<(Option<String>, i64)>> {
    filter.scope = scope_of(caller)?;
    let counts = store.audit_summary(&filter, group).await?;
    let details = serde_json::json!({"filter": filter, "group_by": group_name});
    record_read(store, clock, caller, "audit.summarised", details).await?;
    Ok(counts)
}

/// Records that `caller` read the trail (or exported or verified it).
pub async fn record_read(
    store: &Store,
    clock: &SharedClock,
    caller: &Caller,
    event: &str,
    details: serde_json::Value,
) -> Result<()> {
    let mut record = AuditRecord::change(
        Actor::of(caller),
        event,
        "audit".into(),
        details,
        clock.now_micros(),
    );
    if caller.role == Role::Agent {
        record.agent = Some(caller.actor_id());
    }
    store
        .commit(Change {
            writes: Vec::new(),
            audit: vec![record],
        })
        .await?;
    Ok(())
}

/// What verifying the stored chain found.
#[derive(Debug)]
pub struct Verified {
    /// The first record still stored (after any pruned range).
    pub from: i64,
    /// The last record checked.
    pub through: i64,
    /// The first break, if any.
    pub broken: Option<Break>,
}

/// Verifies the stored chain a chunk at a time, the tree against each checkpoint, and each
/// checkpoint's signature with `key` (admins only); the check is recorded.
pub async fn verify(
    store: &Store,
    clock: &SharedClock,
    caller: &Caller,
    key: &NoteVerifier,
) -> Result<Verified> {
    caller.require(&[Role::Admin])?;
    let (start, _) = store.audit_start().await?;
    let outcome = super::checkpoints::verify_all(store, key)
        .await?
        .map(|(last, _)| last);
    let (through, broken) = match outcome {
        Ok(last) => (last, None),
        Err(b) => (b.seq, Some(b)),
    };
    let details = serde_json::json!({"from": start + 1, "through": through,
        "broken": broken.as_ref().map(|b| serde_json::json!({"seq": b.seq, "tamper": b.tamper.as_str()}))});
    record_read(store, clock, caller, "audit.verified", details).await?;
    Ok(Verified {
        from: start + 1,
        through,
        broken,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_refused_by_another_query() {
        let a = AuditFilter {
            environment: Some("production".into()),
            ..Default::default()
        };
        let b = AuditFilter {
            environment: Some("staging".into()),
            ..Default::default()
        };
        let given = [Some("30d".to_string()), None];
        let fa = fingerprint(&a, AuditOrder::Oldest, &given);
        let c = Cursor {
            at: 10,
            seq: 3,
            since: Some(7),
            until: None,
        };
        let cursor = encode_cursor(c, &fa);
        assert_eq!(decode_cursor(&cursor, &fa).unwrap(), c);
        // A span resolves anew at every request: the same query still matches.
        let later = AuditFilter {
            since: Some(8),
            ..a.clone()
        };
        assert_eq!(fingerprint(&later, AuditOrder::Oldest, &given), fa);
        assert!(decode_cursor(&cursor, &fingerprint(&b, AuditOrder::Oldest, &given)).is_err());
        assert!(decode_cursor(&cursor, &fingerprint(&a, AuditOrder::Newest, &given)).is_err());
        assert!(
            decode_cursor(
                &cursor,
                &fingerprint(&a, AuditOrder::Oldest, &[Some("7d".into()), None])
            )
            .is_err()
        );
        assert!(decode_cursor("not-a-cursor", &fa).is_err());
    }
}
