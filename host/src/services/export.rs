//! Exports of the audit trail that verify offline, archives, and their verification.
//!
//! An export signs a fresh checkpoint, then streams the matching records in chain order a
//! page at a time, each with its inclusion proof, into a temporary file beside the output
//! that is renamed into place only once complete. JSON lines end with the envelope (the
//! checkpoint and the signed manifest); the other formats carry it in `<file>.checkpoint`.

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::audit::checkpoint::{NoteVerifier, Signer};
use crate::audit::export::{
    COLUMNS, Digest256, Envelope, ExportVerifier, Exported, LAYOUT, manifest, manifest_scope,
};
use crate::audit::merkle;
use crate::audit::{Actor, AuditRecord, Break};
use crate::clock::{SharedClock, format_micros};
use crate::store::{
    AuditFilter, AuditOrder, AuditPageRequest, AuditWrite, Change, Store, StoredCheckpoint, Write,
};

/// The formats an export is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Warden's records, one JSON object a line, the envelope last.
    Jsonl,
    /// One row a record; the envelope in `<file>.checkpoint`.
    Csv,
    /// Parquet row groups; the envelope in `<file>.checkpoint`.
    Parquet,
    /// OCSF API Activity (class 6003) events, one a line; the envelope in `<file>.checkpoint`.
    Ocsf,
}

impl Format {
    /// The name used on the command line and in the envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Ocsf => "ocsf",
        }
    }

    /// A format by name.
    pub fn parse(s: &str) -> Option<Format> {
        [Format::Jsonl, Format::Csv, Format::Parquet, Format::Ocsf]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// Where the envelope of a non-JSON-lines export is written.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// What an export wrote.
#[derive(Debug)]
pub struct ExportDone {
    /// Records written.
    pub records: u64,
    /// The checkpoint they are proven against.
    pub checkpoint: StoredCheckpoint,
}

/// Records per page read from the store.
const PAGE: i64 = 1000;

enum Sink {
    Jsonl(BufWriter<File>),
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Parquet(
        Box<warden_analytics::parquet::AuditParquet<BufWriter<File>>>,
        Vec<warden_analytics::parquet::Row>,
    ),
    Ocsf(BufWriter<File>),
}

impl Sink {
    fn open(format: Format, file: File) -> anyhow::Result<Sink> {
        let out = BufWriter::new(file);
        Ok(match format {
            Format::Jsonl => Sink::Jsonl(out),
            Format::Ocsf => Sink::Ocsf(out),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(COLUMNS)?;
                Sink::Csv(Box::new(w))
            }
            Format::Parquet => Sink::Parquet(
                Box::new(warden_analytics::parquet::AuditParquet::new(out)?),
                Vec::new(),
            ),
        })
    }

    fn write(&mut self, e: &Exported) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(out) => {
                serde_json::to_writer(&mut *out, e)?;
                out.write_all(b"\n")?;
            }
            Sink::Ocsf(out) => {
                let event = e
                    .to_ocsf(env!("CARGO_PKG_VERSION"))
                    .context("a stored record does not parse")?;
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")?;
            }
            Sink::Csv(w) => {
                let cells = e.cells().context("a stored record does not parse")?;
                let mut row = vec![e.seq.to_string()];
                row.extend(cells.into_iter().map(Option::unwrap_or_default));
                row.push(e.proof.join(" "));
                w.write_record(&row)?;
            }
            Sink::Parquet(w, rows) => {
                rows.push(warden_analytics::parquet::Row {
                    seq: e.seq,
                    cells: e.cells().context("a stored record does not parse")?,
                    proof: e.proof.join(" "),
                });
                if rows.len() as i64 >= PAGE * 10 {
                    w.write(rows)?;
                    rows.clear();
                }
            }
        }
        Ok(())
    }

    /// Flushes; JSON lines end with the envelope, the others get it beside them.
    fn finish(self, envelope: &Envelope, sidecar_tmp: &Path) -> anyhow::Result<()> {
        let beside = || -> anyhow::Result<()> {
            let mut f = File::create(sidecar_tmp)?;
            serde_json::to_writer_pretty(&mut f, envelope)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            Ok(())
        };
        match self {
            Sink::Jsonl(mut out) => {
                serde_json::to_writer(&mut out, envelope)?;
                out.write_all(b"\n")?;
                out.into_inner()?.sync_all()?;
            }
            Sink::Ocsf(out) => {
                out.into_inner()?.sync_all()?;
                beside()?;
            }
            Sink::Csv(w) => {
                w.into_inner()
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .into_inner()?
                    .sync_all()?;
                beside()?;
            }
            Sink::Parquet(mut w, rows) => {
                if !rows.is_empty() {
                    w.write(&rows)?;
                }
                w.finish()?;
                beside()?;
            }
        }
        Ok(())
    }
}

/// What an export is asked for.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Records matching this filter…
    pub filter: AuditFilter,
    /// …up to this record (default: all, up to a fresh checkpoint).
    pub through: Option<i64>,
    /// The format.
    pub format: Format,
    /// The file.
    pub path: PathBuf,
    /// Whether an existing file at `path` may be replaced (never for archives: the records
    /// they hold are deleted from the database).
    pub replace: bool,
}

/// Writes an export; the output path is checked before any work, and nothing appears at it
/// unless the export completes. The export is itself recorded (`audit.exported`).
pub async fn export(
    store: &Store,
    clock: &SharedClock,
    signer: &Signer,
    actor: Actor,
    request: &ExportRequest,
) -> anyhow::Result<ExportDone> {
    if !request.replace && request.path.exists() {
        bail!(
            "{} exists: an archive never replaces a file",
            request.path.display()
        );
    }
    let tmp = temporary(&request.path);
    let file = File::create(&tmp).with_context(|| {
        format!(
            "cannot write the export to {}: its directory must exist and be writable",
            request.path.display()
        )
    })?;
    let result = write_export(store, clock, signer, request, file, &tmp).await;
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(sidecar(&tmp));
            return Err(e);
        }
    };
    if request.format != Format::Jsonl {
        std::fs::rename(sidecar(&tmp), sidecar(&request.path))?;
    }
    if request.replace {
        std::fs::rename(&tmp, &request.path)?;
    } else {
        // Fails if the file appeared meanwhile: an archive never replaces one.
        std::fs::hard_link(&tmp, &request.path)
            .with_context(|| format!("cannot create {}", request.path.display()))?;
        std::fs::remove_file(&tmp)?;
    }
    // The new name is durable before anything relies on the file (an archive's prune).
    if let Some(dir) = request.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    let details = serde_json::json!({"format": request.format.as_str(), "filter": request.filter,
        "records": done.records, "checkpoint": done.checkpoint.size, "path": request.path.display().to_string()});
    store
        .commit(Change {
            writes: Vec::new(),
            audit: vec![AuditRecord::change(
                actor,
                "audit.exported",
                "audit".into(),
                details,
                clock.now_micros(),
            )],
        })
        .await?;
    Ok(done)
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

async fn write_export(
    store: &Store,
    clock: &SharedClock,
    signer: &Signer,
    request: &ExportRequest,
    file: File,
    tmp: &Path,
) -> anyhow::Result<ExportDone> {
    let checkpoint = match request.through {
        Some(size) => store
            .checkpoint(size)
            .await?
            .with_context(|| format!("there is no checkpoint of {size} records"))?,
        None => super::checkpoints::checkpoint(store, clock, signer)
            .await?
            .context("the audit trail is empty: nothing to export")?,
    };
    let size = checkpoint.size;
    let mut sink = Sink::open(request.format, file)?;
    let mut proofs = store.proofs();
    let mut digest = Digest256::default();
    let mut records = 0u64;
    let mut after = 0i64;
    loop {
        let page = AuditPageRequest {
            filter: AuditFilter {
                through_seq: Some(size),
                ..request.filter.clone()
            },
            order: AuditOrder::Chain,
            after: Some((0, after)),
            limit: PAGE,
        };
        let rows = store.audit_raw(&page).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in rows {
            let proof = proofs
                .inclusion(row.seq, size)
                .await??
                .iter()
                .map(merkle::to_hex)
                .collect();
            let e = Exported {
                seq: row.seq,
                prev_hash: row.prev_hash,
                hash: row.hash,
                record: row.record,
                proof,
            };
            digest.add(e.seq, &e.hash);
            sink.write(&e)?;
            records += 1;
        }
    }
    let time = format_micros(clock.now_micros());
    let filter = serde_json::to_value(&request.filter)?;
    let scope = manifest_scope(size as u64, request.format.as_str(), &filter);
    let envelope = Envelope {
        warden_audit_export: LAYOUT,
        format: request.format.as_str().to_string(),
        filter,
        checkpoint: checkpoint.note.clone(),
        manifest: manifest(signer, records, digest.finish(), scope, &time),
        public_key: signer.vkey(),
    };
    sink.finish(&envelope, &sidecar(tmp))?;
    Ok(ExportDone {
        records,
        checkpoint,
    })
}

/// Archives every record up to the newest checkpoint made at or before `before` (Unix
/// microseconds) into a JSON-lines file, then prunes them; what remains verifies from that
/// checkpoint. Returns the archive's summary, or `None` when nothing is old enough.
pub async fn archive(
    store: &Store,
    clock: &SharedClock,
    signer: &Signer,
    actor: Actor,
    before: i64,
    path: &Path,
) -> anyhow::Result<Option<ExportDone>> {
    let (start, _) = store.audit_start().await?;
    super::checkpoints::checkpoint(store, clock, signer).await?;
    let Some(cp) = store.checkpoint_before(before).await? else {
        return Ok(None);
    };
    if cp.size <= start {
        return Ok(None);
    }
    let request = ExportRequest {
        filter: AuditFilter::default(),
        through: Some(cp.size),
        format: Format::Jsonl,
        path: path.to_path_buf(),
        replace: false,
    };
    let done = export(store, clock, signer, actor.clone(), &request).await?;
    // Read it back before anything is deleted: the archive must verify on its own.
    verify_file(
        path,
        Some(Format::Jsonl),
        &NoteVerifier::parse(&signer.vkey())?,
    )
    .with_context(|| format!("the archive {} does not verify", path.display()))?
    .map_err(|b| anyhow::anyhow!("the archive {} does not verify: {b}", path.display()))?;
    // The prune and the record of it commit together: no prune goes unrecorded.
    let details = serde_json::json!({"through": cp.size, "through_hash": cp.chain_hash,
        "records": done.records, "path": path.display().to_string()});
    store
        .commit(Change {
            writes: vec![Write::Audit(AuditWrite::Prune {
                through: cp.size,
                hash: cp.chain_hash.clone(),
            })],
            audit: vec![AuditRecord::change(
                actor,
                "audit.archived",
                "audit".into(),
                details,
                clock.now_micros(),
            )],
        })
        .await?;
    Ok(Some(done))
}

/// Verifies an export file with nothing but the public key: the outer error is a file that
/// cannot be read, the inner one the first record at fault.
pub fn verify_file(
    path: &Path,
    format: Option<Format>,
    key: &NoteVerifier,
) -> anyhow::Result<Result<(u64, u64), Break>> {
    let format = match format {
        Some(f) => f,
        None => guess(path)?,
    };
    let envelope: Envelope = match format {
        Format::Jsonl => serde_json::from_str(&last_line(path)?)
            .context("the file does not end with an export envelope")?,
        _ => {
            let side = sidecar(path);
            let text = std::fs::read_to_string(&side)
                .with_context(|| format!("cannot read {}", side.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not an export envelope", side.display()))?
        }
    };
    let mut verifier = match ExportVerifier::open(&envelope, key) {
        Ok(v) => v,
        Err(b) => return Ok(Err(b)),
    };
    let size = verifier.checkpoint().size;
    let mut check = |e: Exported| verifier.check(&e);
    let result = match format {
        Format::Jsonl | Format::Ocsf => {
            let reader = BufReader::new(File::open(path)?);
            let mut lines = reader.lines().peekable();
            let mut outcome = Ok(());
            while let Some(line) = lines.next() {
                let line = line?;
                if format == Format::Jsonl && lines.peek().is_none() {
                    break; // the envelope
                }
                let (e, derived) = if format == Format::Jsonl {
                    (serde_json::from_str::<Exported>(&line).ok(), true)
                } else {
                    let event = serde_json::from_str::<serde_json::Value>(&line).ok();
                    let e = event.as_ref().and_then(Exported::from_ocsf);
                    // Every mapped field must be what the hashed record says.
                    let version = event
                        .as_ref()
                        .and_then(|v| v["metadata"]["product"]["version"].as_str())
                        .unwrap_or_default();
                    let derived = e.as_ref().and_then(|e| e.to_ocsf(version)) == event;
                    (e, derived)
                };
                let Some(e) = e else {
                    bail!("a line of {} is not an exported record", path.display());
                };
                let seq = e.seq;
                if let Err(b) = check(e).and_then(|_| mapped(seq, derived)) {
                    outcome = Err(b);
                    break;
                }
            }
            outcome
        }
        Format::Csv => {
            let mut reader = csv::Reader::from_path(path)?;
            if reader.headers()?.iter().ne(COLUMNS) {
                bail!(
                    "{} does not have an export's columns ({})",
                    path.display(),
                    COLUMNS.join(",")
                );
            }
            let mut outcome = Ok(());
            for row in reader.records() {
                let row = row?;
                if row.len() != COLUMNS.len() {
                    bail!(
                        "a row of {} has {} columns, not {}",
                        path.display(),
                        row.len(),
                        COLUMNS.len()
                    );
                }
                let cells: Vec<Option<String>> = row
                    .iter()
                    .map(|c| (!c.is_empty()).then(|| c.to_string()))
                    .collect();
                let seq: i64 = row
                    .get(0)
                    .and_then(|s| s.parse().ok())
                    .context("a row has no seq")?;
                let texts = &cells[1..cells.len() - 1];
                let e = Exported::from_cells(seq, texts, row.get(COLUMNS.len() - 1).unwrap_or(""))
                    .context("a row lacks the record or its hashes")?;
                // CSV has no null: an empty cell is an absent value.
                let derived = e
                    .cells()
                    .map(|c| {
                        c.into_iter()
                            .map(|v| v.filter(|v| !v.is_empty()))
                            .collect::<Vec<_>>()
                    })
                    .as_deref()
                    == Some(texts);
                let seq = e.seq;
                if let Err(b) = check(e).and_then(|_| mapped(seq, derived)) {
                    outcome = Err(b);
                    break;
                }
            }
            outcome
        }
        Format::Parquet => {
            let mut outcome = Ok(());
            for row in warden_analytics::parquet::read_rows(path)? {
                let e = Exported::from_cells(row.seq, &row.cells, &row.proof)
                    .context("a row lacks the record or its hashes")?;
                let derived = e.cells().as_deref() == Some(row.cells.as_slice());
                let seq = e.seq;
                if let Err(b) = check(e).and_then(|_| mapped(seq, derived)) {
                    outcome = Err(b);
                    break;
                }
            }
            outcome
        }
    };
    if let Err(b) = result {
        return Ok(Err(b));
    }
    Ok(verifier.finish().map(|n| (n, size as u64)))
}

/// A row's or event's own fields must be the ones its hashed record gives.
fn mapped(seq: i64, derived: bool) -> Result<(), Break> {
    if derived {
        Ok(())
    } else {
        Err(Break {
            seq,
            tamper: crate::audit::Tamper::ColumnsEdited,
            detail: "its fields no longer say what its hashed record says".into(),
        })
    }
}

fn guess(path: &Path) -> anyhow::Result<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if let Some(f) = Format::parse(ext)
        && f != Format::Jsonl
    {
        return Ok(f);
    }
    // JSON lines: Warden's own end with the envelope; OCSF events have a class.
    let mut first = String::new();
    BufReader::new(File::open(path).with_context(|| format!("cannot read {}", path.display()))?)
        .read_line(&mut first)?;
    Ok(if first.contains("\"class_uid\"") {
        Format::Ocsf
    } else {
        Format::Jsonl
    })
}

/// The last line of a file, read from its end (an export may be larger than memory).
fn last_line(path: &Path) -> anyhow::Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut tail = Vec::new();
    let mut pos = len;
    let chunk = 64 * 1024u64;
    loop {
        let start = pos.saturating_sub(chunk);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0; (pos - start) as usize];
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        let trimmed = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if let Some(i) = trimmed.iter().rposition(|b| *b == b'\n') {
            return Ok(String::from_utf8_lossy(&trimmed[i + 1..]).into_owned());
        }
        if start == 0 {
            return Ok(String::from_utf8_lossy(trimmed).into_owned());
        }
        pos = start;
    }
}
