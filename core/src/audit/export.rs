//! What an export carries so it verifies with nothing but the public key: every record's
//! text exactly as hashed, its chain hashes and its inclusion proof in a signed checkpoint,
//! and a signed manifest of which records the export holds (so none can be dropped).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::{Checkpoint, NoteVerifier, Signer};
use super::merkle::{self, Hash};
use super::{AuditRecord, Break, Tamper, chain_hash};

/// The version of the export layout.
pub const LAYOUT: u32 = 1;

/// What travels beside the records: the checkpoint they are proven against and the manifest.
/// The first line of a JSON-lines export; a `.checkpoint` file beside the other formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`LAYOUT`].
    pub warden_audit_export: u32,
    /// `jsonl`, `csv`, `parquet` or `ocsf`.
    pub format: String,
    /// The filter the export was made with, as the API names it.
    pub filter: serde_json::Value,
    /// The signed checkpoint (a signed note).
    pub checkpoint: String,
    /// The signed manifest (a signed note; see [`manifest`]).
    pub manifest: String,
    /// The public key that signed both, for convenience: verify with a key you got elsewhere.
    pub public_key: String,
}

/// One exported record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exported {
    /// Its place in the chain.
    pub seq: i64,
    /// The previous record's hash.
    pub prev_hash: String,
    /// Its hash.
    pub hash: String,
    /// The record's JSON exactly as hashed.
    pub record: String,
    /// Its inclusion proof in the checkpoint's tree (hex, in RFC 9162 order).
    pub proof: Vec<String>,
}

/// The running digest of the records an export holds, in order.
#[derive(Debug, Clone, Default)]
pub struct Digest256(Sha256);

impl Digest256 {
    /// Adds a record.
    pub fn add(&mut self, seq: i64, hash: &str) {
        self.0.update(format!("{seq}:{hash}\n").as_bytes());
    }

    /// The digest.
    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

/// What the manifest's `chain` line says: the size of the tree the records are proven
/// against, and a digest of the export's format and filter (so neither can be edited to claim
/// the file holds something else).
pub fn manifest_scope(tree_size: u64, format: &str, filter: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(format.as_bytes());
    h.update(b"\n");
    // A JSON value's object keys serialize sorted: one text per filter.
    h.update(filter.to_string().as_bytes());
    format!("{tree_size}.{}", hex::encode(&h.finalize()[..16]))
}

/// The manifest: a note in the checkpoint format whose origin is `<log>/export`, whose size
/// is the number of records, whose root is the digest of their (seq, hash) list, and whose
/// `chain` line is [`manifest_scope`].
pub fn manifest(signer: &Signer, records: u64, digest: Hash, scope: String, time: &str) -> String {
    signer.sign(&Checkpoint {
        origin: format!("{}/export", signer.name()),
        size: records,
        root: digest,
        time: time.to_string(),
        chain: scope,
    })
}

/// Checks an export record by record with no database.
#[derive(Debug)]
pub struct ExportVerifier {
    checkpoint: Checkpoint,
    manifest: Checkpoint,
    digest: Digest256,
    count: u64,
    last: Option<(i64, String)>,
}

impl ExportVerifier {
    /// Opens the envelope's checkpoint and manifest with `key`; the break says which failed.
    pub fn open(envelope: &Envelope, key: &NoteVerifier) -> Result<ExportVerifier, Break> {
        let at = |detail: String| Break {
            seq: 0,
            tamper: Tamper::CheckpointMismatch,
            detail,
        };
        if envelope.warden_audit_export != LAYOUT {
            return Err(at(format!(
                "export layout {} is not {LAYOUT}",
                envelope.warden_audit_export
            )));
        }
        let checkpoint = key
            .open(&envelope.checkpoint)
            .map_err(|e| at(format!("the checkpoint: {e}")))?;
        let manifest = key
            .open(&envelope.manifest)
            .map_err(|e| at(format!("the manifest: {e}")))?;
        if manifest.origin != format!("{}/export", checkpoint.origin) {
            return Err(at("the manifest belongs to another log".into()));
        }
        if manifest.chain != manifest_scope(checkpoint.size, &envelope.format, &envelope.filter) {
            return Err(at(
                "the manifest was signed for another checkpoint, format or filter".into(),
            ));
        }
        Ok(ExportVerifier {
            checkpoint,
            manifest,
            digest: Digest256::default(),
            count: 0,
            last: None,
        })
    }

    /// The checkpoint the records are proven against.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Checks the next record.
    pub fn check(&mut self, r: &Exported) -> Result<(), Break> {
        let seq = r.seq;
        let at = |tamper, detail: String| Break {
            seq,
            tamper,
            detail,
        };
        if let Some((last, last_hash)) = &self.last {
            if seq <= *last {
                return Err(at(
                    Tamper::Reordered,
                    format!("record {seq} comes after record {last}"),
                ));
            }
            if seq == last + 1 && r.prev_hash != *last_hash {
                return Err(at(
                    Tamper::Edited,
                    format!("record {seq} does not link to record {last} before it"),
                ));
            }
        }
        if chain_hash(&r.prev_hash, seq, &r.record) != r.hash {
            return Err(at(
                Tamper::Edited,
                "its content does not match its hash".into(),
            ));
        }
        serde_json::from_str::<AuditRecord>(&r.record)
            .map_err(|e| at(Tamper::Unreadable, e.to_string()))?;
        let proof: Option<Vec<Hash>> = r.proof.iter().map(|h| merkle::from_hex(h)).collect();
        let leaf = merkle::leaf_hash(&r.hash);
        let proven = match (seq, proof, leaf) {
            (1.., Some(proof), Some(leaf)) => merkle::verify_inclusion(
                &leaf,
                seq as u64 - 1,
                self.checkpoint.size,
                &proof,
                &self.checkpoint.root,
            ),
            _ => false,
        };
        if !proven {
            return Err(at(
                Tamper::Inserted,
                format!(
                    "it is not record {seq} of the signed tree of {} records",
                    self.checkpoint.size
                ),
            ));
        }
        self.digest.add(seq, &r.hash);
        self.count += 1;
        self.last = Some((seq, r.hash.clone()));
        Ok(())
    }

    /// Checks that the export holds exactly the records its manifest lists; returns how many.
    pub fn finish(self) -> Result<u64, Break> {
        let seq = self.last.as_ref().map(|(s, _)| s + 1).unwrap_or(0);
        if self.count != self.manifest.size || self.digest.finish() != self.manifest.root {
            return Err(Break {
                seq,
                tamper: Tamper::Deleted,
                detail: format!(
                    "the export holds {} records but its signed manifest lists {} (or others)",
                    self.count, self.manifest.size
                ),
            });
        }
        Ok(self.count)
    }
}

/// The columns of a CSV or Parquet export: `seq`, the record's query fields, the record's
/// exact text, its chain hashes, and its proof (hex hashes separated by spaces).
pub const COLUMNS: [&str; 20] = [
    "seq",
    "at",
    "event_type",
    "actor_kind",
    "actor_id",
    "agent",
    "on_behalf_of",
    "approvers",
    "team",
    "environment",
    "service",
    "action_class",
    "verdict",
    "outcome",
    "risk",
    "decision_id",
    "record",
    "prev_hash",
    "hash",
    "proof",
];

impl Exported {
    /// The text cells between `seq` and `proof` in [`COLUMNS`]; `None` if the record does
    /// not parse (never for records read from the chain).
    pub fn cells(&self) -> Option<Vec<Option<String>>> {
        let r: AuditRecord = serde_json::from_str(&self.record).ok()?;
        let c = r.columns()?;
        let approvers = (!r.approvers.is_empty()).then(|| r.approvers.join(" "));
        Some(vec![
            Some(r.at.clone()),
            Some(c.event_type),
            Some(c.actor_kind),
            Some(c.actor_id),
            c.agent_id,
            c.on_behalf_of,
            approvers,
            c.team,
            c.environment,
            c.service,
            c.action_class,
            c.verdict,
            c.outcome,
            c.risk,
            c.decision_id,
            Some(self.record.clone()),
            Some(self.prev_hash.clone()),
            Some(self.hash.clone()),
        ])
    }

    /// Reads a record back from a row's `seq`, text cells and proof.
    pub fn from_cells(seq: i64, cells: &[Option<String>], proof: &str) -> Option<Exported> {
        let cell = |name: &str| {
            let i = COLUMNS.iter().position(|c| *c == name)? - 1;
            cells.get(i).cloned().flatten()
        };
        Some(Exported {
            seq,
            record: cell("record")?,
            prev_hash: cell("prev_hash")?,
            hash: cell("hash")?,
            proof: proof.split_whitespace().map(str::to_string).collect(),
        })
    }

    /// The record as an OCSF API Activity event, its proof under `unmapped.inclusion_proof`.
    pub fn to_ocsf(&self, product_version: &str) -> Option<serde_json::Value> {
        let entry = super::AuditEntry {
            seq: self.seq,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            record: serde_json::from_str(&self.record).ok()?,
        };
        let mut event = super::ocsf::api_activity(&entry, Some(&self.record), product_version);
        let object = event.as_object_mut()?;
        let unmapped = object
            .entry("unmapped")
            .or_insert_with(|| serde_json::json!({}));
        unmapped
            .as_object_mut()?
            .insert("inclusion_proof".into(), serde_json::json!(self.proof));
        Some(event)
    }

    /// Reads a record back from an OCSF event written by [`Exported::to_ocsf`].
    pub fn from_ocsf(event: &serde_json::Value) -> Option<Exported> {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let seq = event["metadata"]["sequence"].as_i64()?;
        let attestation = &event["attestation"];
        let prev_hash = match &attestation["prev_event"]["fingerprint"]["value"] {
            serde_json::Value::Null => super::GENESIS.to_string(),
            v => text(v)?,
        };
        Some(Exported {
            seq,
            prev_hash,
            hash: text(&attestation["fingerprint"]["value"])?,
            record: text(&event["raw_data"])?,
            proof: event["unmapped"]["inclusion_proof"]
                .as_array()?
                .iter()
                .map(text)
                .collect::<Option<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, GENESIS};

    /// A chain of `n` records, its tree, a signer and a signed export of records `picked`.
    fn exported(n: i64, picked: &[i64]) -> (Envelope, Vec<Exported>, Signer) {
        let signer = Signer::generate("test-log").unwrap();
        let mut rows = Vec::new();
        let mut prev = GENESIS.to_string();
        for seq in 1..=n {
            let record = AuditRecord {
                event_type: "decision".into(),
                at: "2026-01-01T00:00:00.000000Z".into(),
                actor: Actor {
                    kind: "agent".into(),
                    id: "bot".into(),
                    ..Default::default()
                },
                target: format!("service:s{seq}"),
                outcome: Some("allow".into()),
                ..Default::default()
            };
            let json = serde_json::to_string(&record).unwrap();
            let hash = chain_hash(&prev, seq, &json);
            rows.push((seq, prev.clone(), hash.clone(), json));
            prev = hash;
        }
        let leaves: Vec<Hash> = rows
            .iter()
            .map(|r| merkle::leaf_hash(&r.2).unwrap())
            .collect();
        let cp = Checkpoint {
            origin: "test-log".into(),
            size: n as u64,
            root: merkle::root(&leaves),
            time: "2026-01-02T00:00:00.000000Z".into(),
            chain: prev.clone(),
        };
        let mut digest = Digest256::default();
        let mut out = Vec::new();
        for &seq in picked {
            let (s, p, h, json) = rows[seq as usize - 1].clone();
            let proof = merkle::inclusion_ranges(seq as u64 - 1, n as u64)
                .into_iter()
                .map(|(a, b)| merkle::to_hex(&merkle::root(&leaves[a as usize..b as usize])))
                .collect();
            digest.add(s, &h);
            out.push(Exported {
                seq: s,
                prev_hash: p,
                hash: h,
                record: json,
                proof,
            });
        }
        let envelope = Envelope {
            warden_audit_export: LAYOUT,
            format: "jsonl".into(),
            filter: serde_json::json!({}),
            checkpoint: signer.sign(&cp),
            manifest: manifest(
                &signer,
                out.len() as u64,
                digest.finish(),
                manifest_scope(n as u64, "jsonl", &serde_json::json!({})),
                &cp.time,
            ),
            public_key: signer.vkey(),
        };
        (envelope, out, signer)
    }

    fn verify(envelope: &Envelope, records: &[Exported], key: &str) -> Result<u64, Break> {
        let key = NoteVerifier::parse(key).unwrap();
        let mut v = ExportVerifier::open(envelope, &key)?;
        for r in records {
            v.check(r)?;
        }
        v.finish()
    }

    #[test]
    fn an_export_verifies_with_the_public_key_alone() {
        let (envelope, records, signer) = exported(37, &[2, 3, 4, 17, 36, 37]);
        assert_eq!(verify(&envelope, &records, &signer.vkey()), Ok(6));
        // The filter is signed: an export cannot claim to hold something else.
        let mut widened = envelope.clone();
        widened.filter = serde_json::json!({"agent": "bot"});
        assert_eq!(
            verify(&widened, &records, &signer.vkey())
                .unwrap_err()
                .tamper,
            Tamper::CheckpointMismatch
        );
        let other = Signer::generate("test-log").unwrap();
        assert_eq!(
            verify(&envelope, &records, &other.vkey())
                .unwrap_err()
                .tamper,
            Tamper::CheckpointMismatch
        );
    }

    #[test]
    fn a_tampered_export_names_the_record() {
        let (envelope, records, signer) = exported(20, &[1, 2, 3, 9, 10]);
        let key = signer.vkey();
        let mut edited = records.clone();
        edited[3].record = edited[3].record.replace("allow", "deny");
        let b = verify(&envelope, &edited, &key).unwrap_err();
        assert_eq!((b.seq, b.tamper), (9, Tamper::Edited));

        // Re-hashed to match: the proof no longer puts it in the signed tree.
        let mut rehashed = edited.clone();
        rehashed[3].hash = chain_hash(&rehashed[3].prev_hash, 9, &rehashed[3].record);
        let b = verify(&envelope, &rehashed, &key).unwrap_err();
        assert_eq!((b.seq, b.tamper), (9, Tamper::Inserted));

        let mut dropped = records.clone();
        dropped.remove(2);
        let b = verify(&envelope, &dropped, &key).unwrap_err();
        assert_eq!(b.tamper, Tamper::Deleted);

        let mut swapped = records.clone();
        swapped.swap(3, 4);
        let b = verify(&envelope, &swapped, &key).unwrap_err();
        assert_eq!((b.seq, b.tamper), (9, Tamper::Reordered));
    }

    #[test]
    fn rows_and_ocsf_events_carry_everything_verification_needs() {
        let (_, records, _) = exported(5, &[1, 4]);
        for r in &records {
            let cells = r.cells().unwrap();
            assert_eq!(cells.len(), COLUMNS.len() - 2);
            assert_eq!(
                Exported::from_cells(r.seq, &cells, &r.proof.join(" ")).as_ref(),
                Some(r)
            );
            let event = r.to_ocsf("test").unwrap();
            assert_eq!(Exported::from_ocsf(&event).as_ref(), Some(r));
        }
    }
}
