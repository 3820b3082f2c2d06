//! The Merkle tree over the audit chain (leaf i = record i+1): checkpoints with the tree's
//! right edge, the roots of perfect subtrees of 256 leaves and more (so a proof reads at most
//! one block of 256 records), inclusion and consistency proofs, and retention.
//!
//! Checkpoints need no lock across replicas: the chain has one order, so two replicas that
//! checkpoint the same size compute the same rows, and `ON CONFLICT DO NOTHING` keeps one.

use std::collections::HashMap;

use sqlx::Row as _;
use warden_core::audit::merkle::{self, Frontier, Hash};

use crate::Store;
use crate::error::{Result, StoreError};
use crate::writer::multi_insert;

/// Perfect subtrees at least this large are stored; smaller ones are hashed from the records.
pub const BLOCK: u64 = 256;

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    /// Records covered (the tree's size).
    pub size: i64,
    /// When it was made, Unix microseconds.
    pub at: i64,
    /// The tree's root.
    pub root: Hash,
    /// The chain hash of record `size` (the chain's head at that size).
    pub chain_hash: String,
    /// The tree's right edge at that size.
    pub frontier: Frontier,
    /// The signed note.
    pub note: String,
}

/// A tree extended to the chain's head, ready to be signed and stored.
#[derive(Debug, Clone)]
pub struct Extended {
    /// The tree's right edge at the new size.
    pub frontier: Frontier,
    /// The chain hash of the last record.
    pub chain_hash: String,
    /// Perfect subtrees of [`BLOCK`] leaves and more completed on the way.
    nodes: Vec<Subtree>,
}

/// How the audit trail's retention is applied.
#[derive(Debug, Clone)]
pub enum AuditWrite {
    /// Deletes the records through a checkpoint's size, which an archive holds; the chain
    /// resumes from the checkpoint's chain hash. Commit it with the `audit.archived` record
    /// that says so, so that no prune goes unrecorded.
    Prune {
        /// The checkpoint's size.
        through: i64,
        /// The checkpoint's chain hash.
        hash: String,
    },
}

pub(crate) async fn apply(
    conn: &mut sqlx::AnyConnection,
    write: &AuditWrite,
) -> crate::writer::Applied {
    match write {
        AuditWrite::Prune { through, hash } => {
            // Only forwards: a second prune of an earlier range is a no-op.
            sqlx::query(
                "UPDATE audit_retention SET through_seq = $1, through_hash = $2 WHERE id = 1 AND through_seq < $1",
            )
            .bind(through)
            .bind(hash)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                .bind(through)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM audit_people WHERE seq <= $1")
                .bind(through)
                .execute(&mut *conn)
                .await?;
            Ok(Ok(()))
        }
    }
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The records under it were archived and pruned.
    #[error("record {0} was pruned; its proof is in the archive made with it")]
    Pruned(i64),
    /// Past the tree's size.
    #[error("record {seq} is not in a tree of {size} records")]
    OutOfRange {
        /// The record.
        seq: i64,
        /// The tree's size.
        size: i64,
    },
}

fn checkpoint_of(r: &sqlx::any::AnyRow) -> Result<StoredCheckpoint> {
    let frontier: String = r.try_get("frontier")?;
    let root: String = r.try_get("root")?;
    Ok(StoredCheckpoint {
        size: r.try_get("size")?,
        at: r.try_get("at")?,
        root: merkle::from_hex(&root).ok_or_else(|| StoreError::bug("a stored root is not hex"))?,
        chain_hash: r.try_get("chain_hash")?,
        frontier: serde_json::from_str(&frontier).map_err(StoreError::bug)?,
        note: r.try_get("note")?,
    })
}

const CHECKPOINT_COLUMNS: &str = "size, at, root, chain_hash, frontier, note";

impl Store {
    /// The public key the checkpoints are signed with: the stored one, or `public_key` when
    /// none is stored yet (then stored).
    pub async fn claim_audit_key(&self, public_key: &str) -> Result<String> {
        sqlx::query("INSERT INTO audit_key (id, public_key) VALUES (1, $1) ON CONFLICT DO NOTHING")
            .bind(public_key)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT public_key FROM audit_key WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("public_key")?)
    }

    /// The newest checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_of).transpose()
    }

    /// The checkpoint of exactly `size` records.
    pub async fn checkpoint(&self, size: i64) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE size = $1"
        ))
        .bind(size)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_of).transpose()
    }

    /// The largest checkpoint made before `at` (Unix microseconds).
    pub async fn checkpoint_before(&self, at: i64) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE at < $1 ORDER BY size DESC LIMIT 1"
        ))
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_of).transpose()
    }

    /// Checkpoints of more than `after` records, smallest first, at most `limit`.
    pub async fn checkpoints_after(&self, after: i64, limit: i64) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE size > $1 ORDER BY size LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_of).collect()
    }

    /// The checkpoints of sizes `after + 1 ..= through`, by size.
    pub(crate) async fn checkpoints_through(
        &self,
        after: i64,
        through: i64,
    ) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE size > $1 AND size <= $2 ORDER BY size"
        ))
        .bind(after)
        .bind(through)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_of).collect()
    }

    /// The tree from the newest checkpoint extended to the chain's head, reading the new
    /// records 2,000 at a time; `None` when the head is the newest checkpoint. Minutes of
    /// records are read and hashed apart from the request threads (`apart`), in short reads:
    /// reads of 20,000 doubled decisions' p99 while a checkpoint extended a long tree
    /// (BENCHMARKS.md).
    pub async fn extend_tree(&self) -> Result<Option<Extended>> {
        self.apart(|store| async move { store.extend_tree_here().await })
            .await
    }

    async fn extend_tree_here(&self) -> Result<Option<Extended>> {
        let (head, head_hash) = self.audit_head().await?;
        let latest = self.latest_checkpoint().await?;
        let mut frontier = latest
            .as_ref()
            .map(|c| c.frontier.clone())
            .unwrap_or_default();
        if frontier.size() as i64 >= head {
            return Ok(None);
        }
        let mut nodes = Vec::new();
        let mut after = frontier.size() as i64;
        while after < head {
            let rows = sqlx::query(
                "SELECT seq, hash FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 2000",
            )
            .bind(after)
            .bind(head)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Err(StoreError::bug(format!(
                    "the chain's head is {head} but records after {after} are missing"
                )));
            }
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let hash: String = r.try_get("hash")?;
                if seq != after + 1 {
                    return Err(StoreError::bug(format!(
                        "record {} is missing from the chain",
                        after + 1
                    )));
                }
                let leaf = merkle::leaf_hash(&hash)
                    .ok_or_else(|| StoreError::bug(format!("record {seq}'s hash is not hex")))?;
                nodes.extend(
                    frontier
                        .push(leaf)
                        .into_iter()
                        .filter(|(_, size, _)| *size >= BLOCK),
                );
                after = seq;
            }
        }
        Ok(Some(Extended {
            frontier,
            chain_hash: head_hash,
            nodes,
        }))
    }

    /// Stores a checkpoint of an extended tree with its signed note; a checkpoint of the same
    /// size made by another replica wins (they are the same tree).
    pub async fn add_checkpoint(&self, tree: &Extended, at: i64, note: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let backend = self.backend;
        for chunk in tree.nodes.chunks(crate::writer::ROWS_PER_INSERT) {
            let sql = format!(
                "{} ON CONFLICT DO NOTHING",
                multi_insert(backend, "audit_nodes (size, start, hash)", 3, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for (start, size, hash) in chunk {
                q = q
                    .bind(*size as i64)
                    .bind(*start as i64)
                    .bind(merkle::to_hex(hash));
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query(&format!(
            "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
        ))
        .bind(tree.frontier.size() as i64)
        .bind(at)
        .bind(merkle::to_hex(&tree.frontier.root()))
        .bind(&tree.chain_hash)
        .bind(serde_json::to_string(&tree.frontier).map_err(StoreError::bug)?)
        .bind(note)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A proof reader with its caches (use one per export or batch of proofs).
    pub fn proofs(&self) -> Proofs<'_> {
        Proofs {
            store: self,
            nodes: HashMap::new(),
            pruned: None,
            block: None,
        }
    }
}

/// A perfect subtree: its first leaf, its size, its root.
type Subtree = (u64, u64, Hash);

/// Makes proofs against stored checkpoints, caching stored subtrees and the last block of
/// leaves read (an export walks records in order, so consecutive proofs share them).
pub struct Proofs<'a> {
    store: &'a Store,
    nodes: HashMap<(u64, u64), Hash>,
    /// The first leaf still stored, and the roots of the subtrees that stand for the pruned
    /// ones before it (the tree's right edge at that size, as its checkpoint kept it).
    pruned: Option<(u64, Vec<Subtree>)>,
    /// A block: the index of its first stored leaf, and its stored leaves.
    block: Option<(u64, Vec<Hash>)>,
}

impl Proofs<'_> {
    /// The inclusion proof of record `seq` in the tree of `size` records.
    pub async fn inclusion(
        &mut self,
        seq: i64,
        size: i64,
    ) -> Result<std::result::Result<Vec<Hash>, ProofError>> {
        if seq < 1 || seq > size {
            return Ok(Err(ProofError::OutOfRange { seq, size }));
        }
        self.proof(
            merkle::inclusion_ranges(seq as u64 - 1, size as u64),
            size as u64,
        )
        .await
    }

    /// The consistency proof between trees of `old` and `new` records.
    pub async fn consistency(
        &mut self,
        old: i64,
        new: i64,
    ) -> Result<std::result::Result<Vec<Hash>, ProofError>> {
        if old < 0 || old > new {
            return Ok(Err(ProofError::OutOfRange {
                seq: old,
                size: new,
            }));
        }
        self.proof(
            merkle::consistency_ranges(old as u64, new as u64),
            new as u64,
        )
        .await
    }

    async fn proof(
        &mut self,
        ranges: Vec<(u64, u64)>,
        size: u64,
    ) -> Result<std::result::Result<Vec<Hash>, ProofError>> {
        let mut proof = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            let mut parts = Vec::new();
            for (start, len) in merkle::decompose(a, b) {
                match self.perfect(start, len, size).await? {
                    Ok(h) => parts.push(h),
                    Err(e) => return Ok(Err(e)),
                }
            }
            proof.push(merkle::fold(&parts));
        }
        Ok(Ok(proof))
    }

    /// Where pruning left the tree: the first stored leaf and the subtrees before it.
    async fn pruned(&mut self) -> Result<&(u64, Vec<Subtree>)> {
        if self.pruned.is_none() {
            let (through, _) = self.store.audit_start().await?;
            let pieces = if through == 0 {
                Vec::new()
            } else {
                let cp = self.store.checkpoint(through).await?.ok_or_else(|| {
                    StoreError::bug(format!(
                        "records up to {through} were pruned without their checkpoint"
                    ))
                })?;
                merkle::decompose(0, through as u64)
                    .into_iter()
                    .zip(cp.frontier.hashes().iter().copied())
                    .map(|((start, len), h)| (start, len, h))
                    .collect()
            };
            self.pruned = Some((through as u64, pieces));
        }
        Ok(self.pruned.as_ref().expect("just set"))
    }

    /// The root of the perfect subtree [start, start+len): stored when large; else hashed from
    /// its block's leaves, with the subtrees standing for pruned leaves where it reaches them.
    async fn perfect(
        &mut self,
        start: u64,
        len: u64,
        size: u64,
    ) -> Result<std::result::Result<Hash, ProofError>> {
        if len >= BLOCK {
            if let Some(h) = self.nodes.get(&(start, len)) {
                return Ok(Ok(*h));
            }
            let row = sqlx::query("SELECT hash FROM audit_nodes WHERE size = $1 AND start = $2")
                .bind(len as i64)
                .bind(start as i64)
                .fetch_optional(&self.store.pool)
                .await?;
            let Some(row) = row else {
                return Err(StoreError::bug(format!(
                    "the tree's subtree of {len} at {start} was never stored"
                )));
            };
            let hash: String = row.try_get("hash")?;
            let h = merkle::from_hex(&hash)
                .ok_or_else(|| StoreError::bug("a stored node is not hex"))?;
            self.nodes.insert((start, len), h);
            return Ok(Ok(h));
        }
        let (through, pieces) = self.pruned().await?.clone();
        let end = start + len;
        // Pruned leaves are stood for by the right edge's subtrees of the pruned range.
        let standing: Vec<Hash> = pieces
            .iter()
            .filter(|(s, l, _)| *s >= start && s + l <= end)
            .map(|(_, _, h)| *h)
            .collect();
        if start < through && pieces.iter().all(|(s, _, _)| *s != start) {
            // Inside one of those subtrees: its leaves are in the archive only.
            return Ok(Err(ProofError::Pruned(start as i64 + 1)));
        }
        let from = start.max(through).min(end);
        let mut tree = match merkle::Frontier::from_parts(from - start, standing) {
            Some(f) => f,
            None => return Ok(Err(ProofError::Pruned(start as i64 + 1))),
        };
        if from < end {
            let first = from / BLOCK * BLOCK;
            let block_from = first.max(through);
            let want = (first + BLOCK).min(size);
            let cached = matches!(&self.block, Some((f, leaves)) if *f == block_from && *f + leaves.len() as u64 >= want);
            if !cached {
                let rows = sqlx::query(
                    "SELECT seq, hash FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(block_from as i64)
                .bind(want as i64)
                .fetch_all(&self.store.pool)
                .await?;
                if rows.len() as u64 != want - block_from {
                    return Ok(Err(ProofError::Pruned(block_from as i64 + 1)));
                }
                let mut leaves = Vec::with_capacity(rows.len());
                for r in &rows {
                    let hash: String = r.try_get("hash")?;
                    leaves.push(
                        merkle::leaf_hash(&hash)
                            .ok_or_else(|| StoreError::bug("a stored chain hash is not hex"))?,
                    );
                }
                self.block = Some((block_from, leaves));
            }
            let (block_from, leaves) = self.block.as_ref().expect("just read");
            let a = (from - block_from) as usize;
            for leaf in &leaves[a..a + (end - from) as usize] {
                tree.push(*leaf);
            }
        }
        Ok(Ok(tree.root()))
    }
}
