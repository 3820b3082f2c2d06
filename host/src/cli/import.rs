//! `warden events import FILE`: JSON lines or CSV, sent to `POST /v1/events` in batches, with
//! every rejection reported by its line. `--strict` checks the whole file (a dry run of every
//! batch) before storing any of it. Events are stored once per (source, source_id), so an
//! import that stopped halfway can be run again.

use std::io::BufRead as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::{Map, Value, json};

use crate::activity::EventInput;

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A header row naming the fields, then one event per row; `targets` separated by `;`.
    Csv,
}

impl Format {
    /// By the file's extension: `.csv` is CSV, anything else JSON lines.
    pub(super) fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// One event read from the file, by its line (from 1), or why its line is not an event.
pub(super) type Line = (usize, Result<Value, (String, String)>);

/// Reads every event of a file, each with its line.
pub(super) fn read(path: &Path, format: Format) -> anyhow::Result<Vec<Line>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    match format {
        Format::Jsonl => {
            let mut lines = Vec::new();
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("cannot read {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let event = serde_json::from_str::<Value>(&line)
                    .map_err(|e| ("malformed_json".to_string(), e.to_string()));
                lines.push((i + 1, event));
            }
            Ok(lines)
        }
        Format::Csv => read_csv(file),
    }
}

fn read_csv(file: std::fs::File) -> anyhow::Result<Vec<Line>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .context("the CSV file has no header row")?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if let Some(unknown) = header
        .iter()
        .find(|h| !EventInput::FIELDS.contains(&h.as_str()))
    {
        bail!(
            "line 1: unknown column `{unknown}`; known: {}",
            EventInput::FIELDS.join(", ")
        );
    }
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.context("cannot read the CSV file")?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.len() != header.len() {
            let message = format!("{} cells, the header has {}", record.len(), header.len());
            lines.push((line, Err(("invalid_row".to_string(), message))));
            continue;
        }
        let mut event = Map::new();
        for (name, cell) in header.iter().zip(record.iter()) {
            if cell.is_empty() {
                continue;
            }
            let value = match name.as_str() {
                "targets" => json!(cell.split(';').map(str::trim).collect::<Vec<_>>()),
                // A number that does not parse is passed on as text, so the server names it.
                "change_size" => cell
                    .parse::<u64>()
                    .map_or_else(|_| json!(cell), |n| json!(n)),
                _ => json!(cell),
            };
            event.insert(name.clone(), value);
        }
        lines.push((line, Ok(Value::Object(event))));
    }
    Ok(lines)
}

/// Ends the command with this exit code, having printed what it had to.
#[derive(Debug)]
pub(super) struct Exit(pub(super) u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// How a file is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sending {
    /// All or nothing: a dry run of every batch first.
    pub(super) strict: bool,
    /// Events per request.
    pub(super) batch_size: usize,
    /// Requests in flight at once.
    pub(super) parallel: usize,
}

/// Sends a file's events in batches, `parallel` at a time; with `strict`, a dry run of every
/// batch first.
pub(super) async fn run(
    server: &super::ServerArgs,
    file: &std::path::Path,
    format: Format,
    sending: Sending,
) -> anyhow::Result<Value> {
    let Sending {
        strict,
        batch_size,
        parallel,
    } = sending;
    anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(parallel > 0, "--parallel must be at least 1");
    let lines = read(file, format)?;
    let mut rejected = Vec::new();
    let mut good: Vec<(usize, Value)> = Vec::with_capacity(lines.len());
    for (line, event) in lines {
        match event {
            Ok(v) => good.push((line, v)),
            Err((code, message)) => rejected.push(rejection(line, &code, None, &message)),
        }
    }
    let passes: &[bool] = if strict { &[true, false] } else { &[false] };
    let (mut accepted, mut duplicates) = (0, 0);
    for &dry_run in passes {
        if !dry_run && strict && !rejected.is_empty() {
            break;
        }
        let path = if dry_run {
            "/v1/events?dry_run=true"
        } else {
            "/v1/events"
        };
        // Answers come back in order, whatever order the server finishes them in.
        let mut answers = futures::stream::iter(good.chunks(batch_size))
            .map(|batch| async move {
                let events: Vec<&Value> = batch.iter().map(|(_, v)| v).collect();
                let answer = super::call(
                    server,
                    reqwest::Method::POST,
                    path,
                    Some(json!({"events": events})),
                )
                .await;
                (batch, answer)
            })
            .buffered(parallel);
        while let Some((batch, answer)) = answers.next().await {
            let answer = answer?;
            for r in answer["rejected"].as_array().into_iter().flatten() {
                let line = r["index"]
                    .as_u64()
                    .and_then(|i| batch.get(i as usize))
                    .map_or(0, |b| b.0);
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                rejected.push(rejection(
                    line,
                    &text("code"),
                    r["field"].as_str(),
                    &text("message"),
                ));
            }
            if !dry_run {
                accepted += answer["accepted"].as_u64().unwrap_or(0);
                duplicates += answer["duplicates"].as_u64().unwrap_or(0);
            }
        }
    }
    rejected.sort_by_key(|r| r["line"].as_u64());
    Ok(json!({
        "file": file.display().to_string(),
        "stored": !strict || rejected.is_empty(),
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
    }))
}

/// A rejection, by line.
pub(super) fn rejection(line: usize, code: &str, field: Option<&str>, message: &str) -> Value {
    let mut r = json!({"line": line, "code": code, "message": message});
    if let Some(f) = field {
        r["field"] = json!(f);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_lines_and_csv_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("events.jsonl");
        std::fs::write(
            &jsonl,
            "{\"source\": \"a\"}\n\nnot json\n{\"source\": \"b\"}\n",
        )
        .unwrap();
        let lines = read(&jsonl, Format::of(&jsonl)).unwrap();
        let numbers: Vec<usize> = lines.iter().map(|l| l.0).collect();
        assert_eq!(numbers, [1, 3, 4]);
        assert_eq!(lines[1].1.as_ref().unwrap_err().0, "malformed_json");

        let csv = dir.path().join("events.csv");
        std::fs::write(
            &csv,
            "source,source_id,targets,change_size\npipe,1,a;b,40\npipe,2,,x\npipe,3\n",
        )
        .unwrap();
        assert_eq!(Format::of(&csv), Format::Csv);
        let lines = read(&csv, Format::Csv).unwrap();
        assert_eq!(lines[0].0, 2);
        let first = lines[0].1.as_ref().unwrap();
        assert_eq!(first["targets"], json!(["a", "b"]));
        assert_eq!(first["change_size"], json!(40));
        let second = lines[1].1.as_ref().unwrap();
        assert!(second.get("targets").is_none());
        assert_eq!(second["change_size"], json!("x"));
        assert_eq!(lines[2].1.as_ref().unwrap_err().0, "invalid_row");

        std::fs::write(&csv, "source,colour\na,b\n").unwrap();
        let err = read(&csv, Format::Csv).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
