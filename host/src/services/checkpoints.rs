//! Signed checkpoints of the audit chain's Merkle tree: made on a schedule (and before every
//! export and archive), signed with the Ed25519 key from the configuration, so an exported
//! range verifies with nothing but the public key.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::audit::checkpoint::{Checkpoint, NoteVerifier, Signer};
use crate::audit::merkle;
use crate::clock::{SharedClock, format_micros};
use crate::store::{Store, StoreError, StoredCheckpoint};

/// `[audit]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The signing key (`PRIVATE+KEY+…`, Go's note format), in a file readable only by Warden.
    /// Default: `<data_dir>/audit-signing.key`, created on first start.
    pub signing_key_file: Option<PathBuf>,
    /// The key's name, which is also the log's origin line (used only when a key is created).
    pub key_name: String,
    /// How often a checkpoint is signed, if records were added since the last.
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key_file: None,
            key_name: "warden-audit".into(),
            checkpoint_interval_secs: 300,
        }
    }
}

impl AuditConfig {
    /// The key file: the configured one, or the default under `data_dir`.
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("audit-signing.key"))
    }

    /// Reads the signing key, creating it (mode 0600) when the default file does not exist yet.
    pub fn signer(&self, data_dir: &Path) -> anyhow::Result<Signer> {
        let path = self.key_path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Signer::parse(text.trim())
                .with_context(|| format!("{} is not a signing key", path.display())),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && self.signing_key_file.is_none() =>
            {
                let signer = Signer::generate(&self.key_name)
                    .with_context(|| format!("`{}` cannot name a key", self.key_name))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_private(&path, &signer.to_skey())
                    .with_context(|| format!("cannot write the signing key {}", path.display()))?;
                tracing::info!(path = %path.display(), public_key = %signer.vkey(), "created the audit signing key");
                Ok(signer)
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot read the signing key {}", path.display()))
            }
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Signs a checkpoint of everything appended since the last one; returns the newest
/// checkpoint (new or not), or `None` while the chain is empty.
pub async fn checkpoint(
    store: &Store,
    clock: &SharedClock,
    signer: &Signer,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    if let Some(tree) = store.extend_tree().await? {
        let now = clock.now_micros();
        let cp = Checkpoint {
            origin: signer.name().to_string(),
            size: tree.frontier.size(),
            root: tree.frontier.root(),
            time: format_micros(now),
            chain: tree.chain_hash.clone(),
        };
        store.add_checkpoint(&tree, now, &signer.sign(&cp)).await?;
    }
    store.latest_checkpoint().await
}

/// Opens a stored checkpoint's note with `key` and checks it says what the row says.
pub fn check_note(key: &NoteVerifier, stored: &StoredCheckpoint) -> Result<Checkpoint, String> {
    let cp = key.open(&stored.note).map_err(|e| e.to_string())?;
    if cp.size as i64 != stored.size || cp.root != stored.root || cp.chain != stored.chain_hash {
        return Err(format!(
            "checkpoint {} does not say what its signed note says",
            stored.size
        ));
    }
    if stored.frontier.root() != stored.root {
        return Err(format!(
            "checkpoint {}'s stored tree edge does not make its root {}",
            stored.size,
            merkle::to_hex(&stored.root)
        ));
    }
    Ok(cp)
}

/// Checks every stored checkpoint's signature with `key`; the break names the first that
/// fails.
pub async fn verify_notes(
    store: &Store,
    key: &NoteVerifier,
) -> Result<Result<usize, crate::audit::Break>, StoreError> {
    let (mut after, mut checked) = (0, 0);
    loop {
        let batch = store.checkpoints_after(after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.size;
        for cp in &batch {
            if let Err(why) = check_note(key, cp) {
                return Ok(Err(crate::audit::Break {
                    seq: cp.size,
                    tamper: crate::audit::Tamper::CheckpointMismatch,
                    detail: why,
                }));
            }
            checked += 1;
        }
    }
    Ok(Ok(checked))
}

/// Verifies the whole stored trail: the chain and the tree against every checkpoint, then
/// every checkpoint's signature. Returns the last record and the checkpoints verified.
pub async fn verify_all(
    store: &Store,
    key: &NoteVerifier,
) -> Result<Result<(i64, usize), crate::audit::Break>, StoreError> {
    Ok(match store.verify_audit().await? {
        Ok(last) => verify_notes(store, key).await?.map(|n| (last, n)),
        Err(b) => Err(b),
    })
}

/// The newest checkpoint; not found while none is signed.
pub async fn latest(store: &Store) -> crate::error::Result<StoredCheckpoint> {
    checkpoint_of(store, None).await
}

/// A proof, with the checkpoint it is against.
#[derive(Debug)]
pub struct Proven {
    /// The checkpoint (of `size` records).
    pub checkpoint: StoredCheckpoint,
    /// The proof's hashes, in RFC 9162 order.
    pub proof: Vec<merkle::Hash>,
}

fn no_checkpoint(size: Option<i64>) -> crate::error::Error {
    match size {
        Some(n) => {
            crate::error::Error::field("size", format!("there is no checkpoint of {n} records"))
        }
        None => crate::error::Error::not_found(
            "no_checkpoint",
            "no checkpoint has been signed yet (POST /v1/audit/checkpoints makes one)",
        ),
    }
}

async fn checkpoint_of(store: &Store, size: Option<i64>) -> crate::error::Result<StoredCheckpoint> {
    let cp = match size {
        Some(n) => store.checkpoint(n).await?,
        None => store.latest_checkpoint().await?,
    };
    cp.ok_or_else(|| no_checkpoint(size))
}

fn refused(e: crate::store::ProofError) -> crate::error::Error {
    match e {
        crate::store::ProofError::Pruned(_) => {
            crate::error::Error::new(crate::error::Kind::Conflict, "pruned", e.to_string())
        }
        crate::store::ProofError::OutOfRange { .. } => {
            crate::error::Error::field("seq", e.to_string())
        }
    }
}

/// The inclusion proof of record `seq` in the checkpoint of `size` records (default: the
/// newest).
pub async fn inclusion(store: &Store, seq: i64, size: Option<i64>) -> crate::error::Result<Proven> {
    let checkpoint = checkpoint_of(store, size).await?;
    let proof = store
        .proofs()
        .inclusion(seq, checkpoint.size)
        .await?
        .map_err(refused)?;
    Ok(Proven { checkpoint, proof })
}

/// The consistency proof from the checkpoint of `old` records to the one of `new` (default:
/// the newest).
pub async fn consistency(
    store: &Store,
    old: i64,
    new: Option<i64>,
) -> crate::error::Result<Proven> {
    store.checkpoint(old).await?.ok_or_else(|| {
        crate::error::Error::field("old", format!("there is no checkpoint of {old} records"))
    })?;
    let checkpoint = checkpoint_of(store, new).await?;
    if old > checkpoint.size {
        return Err(crate::error::Error::field(
            "old",
            "must not be larger than new",
        ));
    }
    let proof = store
        .proofs()
        .consistency(old, checkpoint.size)
        .await?
        .map_err(refused)?;
    Ok(Proven { checkpoint, proof })
}
