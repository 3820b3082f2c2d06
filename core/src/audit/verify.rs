//! Walking the chain: each stored row against the one before it, naming the first record that
//! was edited, deleted, inserted or reordered.

use std::fmt;

use super::{AuditRecord, Columns, GENESIS, chain_hash};

/// A stored row, as the verifier reads it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Sequence number.
    pub seq: i64,
    /// The stored copies of the record's fields.
    pub columns: Columns,
    /// The canonical JSON the hash covers.
    pub record: String,
    /// Stored previous hash.
    pub prev_hash: String,
    /// Stored hash.
    pub hash: String,
}

/// How the chain was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// A record's content no longer matches its hash.
    Edited,
    /// A record was rewritten and its hash recomputed: the next record still links to the original.
    Rewritten,
    /// A record's query columns disagree with the hashed record.
    ColumnsEdited,
    /// Records are missing.
    Deleted,
    /// A record that was never appended sits in the chain.
    Inserted,
    /// A record sits at another record's place.
    Reordered,
    /// Records are missing from the end (the head says more).
    Truncated,
    /// The chain goes on past its stored head.
    Appended,
    /// The record is not an audit record.
    Unreadable,
    /// The records up to a signed checkpoint no longer make its tree.
    CheckpointMismatch,
}

impl Tamper {
    /// The word used in JSON and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Tamper::Edited => "edited",
            Tamper::Rewritten => "rewritten",
            Tamper::ColumnsEdited => "columns_edited",
            Tamper::Deleted => "deleted",
            Tamper::Inserted => "inserted",
            Tamper::Reordered => "reordered",
            Tamper::Truncated => "truncated",
            Tamper::Appended => "appended",
            Tamper::Unreadable => "unreadable",
            Tamper::CheckpointMismatch => "checkpoint_mismatch",
        }
    }
}

/// The first break found: where, how, and what the verifier saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The record (sequence number) at fault.
    pub seq: i64,
    /// How.
    pub tamper: Tamper,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} {}: {}",
            self.seq,
            self.tamper.as_str(),
            self.detail
        )
    }
}

impl std::error::Error for Break {}

/// Walks the chain in order. Feed rows in ascending `seq` to [`Verifier::check`]; call
/// [`Verifier::finish`] with the stored head.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
    /// The hash before `prev_hash`: an inserted record links to it.
    before_prev: Option<String>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::resume(0, GENESIS.to_string())
    }
}

/// How far either side of its place a moved record is looked for.
const REORDER_WINDOW: i64 = 8;

impl Verifier {
    /// A verifier that starts after record `seq` whose hash is `hash` (after a prune, or to
    /// check a range on its own).
    pub fn resume(seq: i64, hash: String) -> Verifier {
        Verifier {
            expected_seq: seq + 1,
            prev_hash: hash,
            before_prev: None,
        }
    }

    /// The last record checked and its hash.
    pub fn position(&self) -> (i64, &str) {
        (self.expected_seq - 1, &self.prev_hash)
    }

    /// Checks the next row; the break names the first record at fault and how.
    pub fn check(&mut self, row: &StoredRow) -> Result<(), Break> {
        let seq = row.seq;
        let at = |tamper, detail: String| Break {
            seq,
            tamper,
            detail,
        };
        if seq > self.expected_seq {
            return Err(Break {
                seq: self.expected_seq,
                tamper: Tamper::Deleted,
                detail: format!(
                    "records {}..{} are missing (record {seq} follows record {})",
                    self.expected_seq,
                    seq - 1,
                    self.expected_seq - 1
                ),
            });
        }
        if seq < self.expected_seq {
            return Err(at(
                Tamper::Inserted,
                format!(
                    "a second record numbered {seq} follows record {}",
                    self.expected_seq - 1
                ),
            ));
        }
        let self_consistent = chain_hash(&row.prev_hash, seq, &row.record) == row.hash;
        if row.prev_hash != self.prev_hash {
            if self.before_prev.as_deref() == Some(row.prev_hash.as_str()) {
                return Err(Break {
                    seq: seq - 1,
                    tamper: Tamper::Inserted,
                    detail: format!(
                        "record {} was never appended: record {seq} links past it to record {}",
                        seq - 1,
                        seq - 2
                    ),
                });
            }
            if let Some(original) = self.moved_from(row) {
                return Err(at(
                    Tamper::Reordered,
                    format!("record {original} was moved to place {seq}"),
                ));
            }
            if self_consistent {
                return Err(Break {
                    seq: seq - 1,
                    tamper: Tamper::Rewritten,
                    detail: format!(
                        "record {} was rewritten with a new hash: record {seq} still links to the original",
                        seq - 1
                    ),
                });
            }
            return Err(at(
                Tamper::Edited,
                "neither its link to the previous record nor its content matches its hash".into(),
            ));
        }
        if !self_consistent {
            if let Some(original) = self.moved_from(row) {
                return Err(at(
                    Tamper::Reordered,
                    format!("record {original} was moved to place {seq}"),
                ));
            }
            return Err(at(
                Tamper::Edited,
                "its content does not match its hash".into(),
            ));
        }
        let record: AuditRecord =
            serde_json::from_str(&row.record).map_err(|e| at(Tamper::Unreadable, e.to_string()))?;
        match record.columns() {
            None => return Err(at(Tamper::Unreadable, "its time is not RFC 3339".into())),
            Some(columns) if columns != row.columns => {
                return Err(at(
                    Tamper::ColumnsEdited,
                    "its query columns no longer match the hashed record".into(),
                ));
            }
            Some(_) => {}
        }
        self.expected_seq += 1;
        self.before_prev = Some(std::mem::replace(&mut self.prev_hash, row.hash.clone()));
        Ok(())
    }

    /// The place a row's record was hashed for, if it is near but not its own.
    fn moved_from(&self, row: &StoredRow) -> Option<i64> {
        (row.seq - REORDER_WINDOW..=row.seq + REORDER_WINDOW)
            .filter(|s| *s != row.seq && *s > 0)
            .find(|s| chain_hash(&row.prev_hash, *s, &row.record) == row.hash)
    }

    /// Checks the chain's end against the stored head; returns the number of the last record.
    pub fn finish(self, head_seq: i64, head_hash: &str) -> Result<i64, Break> {
        let last = self.expected_seq - 1;
        if head_seq > last {
            return Err(Break {
                seq: last + 1,
                tamper: Tamper::Truncated,
                detail: format!(
                    "the chain ends at record {last} but its head says {head_seq}: records were deleted from the end"
                ),
            });
        }
        if head_seq < last {
            return Err(Break {
                seq: head_seq + 1,
                tamper: Tamper::Appended,
                detail: format!(
                    "the chain goes on to record {last} past its head at {head_seq}: records were added outside Warden"
                ),
            });
        }
        if head_hash != self.prev_hash {
            return Err(Break {
                seq: last,
                tamper: Tamper::Rewritten,
                detail: "the last record's hash is not the one the head recorded".into(),
            });
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Actor;

    fn record(n: i64) -> AuditRecord {
        AuditRecord {
            event_type: "agent.created".into(),
            at: "2026-01-01T00:00:00.000000Z".into(),
            actor: Actor {
                kind: "admin".into(),
                id: "root".into(),
                ..Default::default()
            },
            target: format!("agent:a{n}"),
            ..Default::default()
        }
    }

    fn row(seq: i64, prev: &str, rec: &AuditRecord) -> StoredRow {
        let json = serde_json::to_string(rec).unwrap();
        StoredRow {
            seq,
            columns: rec.columns().unwrap(),
            hash: chain_hash(prev, seq, &json),
            record: json,
            prev_hash: prev.into(),
        }
    }

    fn chain(n: i64) -> Vec<StoredRow> {
        let mut rows: Vec<StoredRow> = Vec::new();
        for seq in 1..=n {
            let prev = rows
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS.into());
            rows.push(row(seq, &prev, &record(seq)));
        }
        rows
    }

    fn verify(rows: &[StoredRow], head: (i64, &str)) -> Result<i64, Break> {
        let mut v = Verifier::default();
        for r in rows {
            v.check(r)?;
        }
        v.finish(head.0, head.1)
    }

    fn broken(rows: &[StoredRow], head: (i64, &str)) -> (i64, Tamper) {
        let b = verify(rows, head).unwrap_err();
        (b.seq, b.tamper)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(5);
        assert_eq!(verify(&rows, (5, &rows[4].hash)), Ok(5));
    }

    #[test]
    fn names_the_record_and_how_it_was_tampered_with() {
        let rows = chain(8);
        let head = (8, rows[7].hash.as_str());

        let mut edited = rows.clone();
        edited[2].record = edited[2].record.replace("agent:a3", "agent:zz");
        assert_eq!(broken(&edited, head), (3, Tamper::Edited));

        let mut rewritten = rows.clone();
        rewritten[2] = row(3, &rows[1].hash, &record(99));
        assert_eq!(broken(&rewritten, head), (3, Tamper::Rewritten));

        let mut deleted = rows.clone();
        deleted.remove(3);
        assert_eq!(broken(&deleted, head), (4, Tamper::Deleted));

        // Swapping two rows' contents, seq kept.
        let mut reordered = rows.clone();
        let (a, b) = (reordered[4].clone(), reordered[5].clone());
        reordered[4] = StoredRow { seq: 5, ..b };
        reordered[5] = StoredRow { seq: 6, ..a };
        assert_eq!(broken(&reordered, head), (5, Tamper::Reordered));

        // A forged record at 4, the rest renumbered up by one.
        let mut inserted: Vec<StoredRow> = rows[..3].to_vec();
        inserted.push(row(4, &rows[2].hash, &record(42)));
        for r in &rows[3..] {
            inserted.push(StoredRow {
                seq: r.seq + 1,
                ..r.clone()
            });
        }
        assert_eq!(broken(&inserted, head), (4, Tamper::Inserted));

        assert_eq!(broken(&rows[..6], head), (7, Tamper::Truncated));

        let mut appended = rows.clone();
        appended.push(row(9, &rows[7].hash, &record(9)));
        assert_eq!(broken(&appended, head), (9, Tamper::Appended));

        let mut column = rows.clone();
        column[3].columns.actor_kind = "human".into();
        assert_eq!(broken(&column, head), (4, Tamper::ColumnsEdited));
    }

    #[test]
    fn resumes_after_a_pruned_range() {
        let rows = chain(6);
        let mut v = Verifier::resume(3, rows[2].hash.clone());
        for r in &rows[3..] {
            v.check(r).unwrap();
        }
        assert_eq!(v.finish(6, &rows[5].hash), Ok(6));
        let mut v = Verifier::resume(3, rows[1].hash.clone());
        assert!(v.check(&rows[3]).is_err());
    }
}
