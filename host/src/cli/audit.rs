//! `warden audit …`: query a running server (`query`, `summary`), and work on the database or
//! on files with no server (`verify`, `export`, `archive`, `public-key`, `checkpoint`).

use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{DbArgs, ServerArgs, call, load_config, offline_actor};
use crate::audit::checkpoint::NoteVerifier;
use crate::server::Warden;
use crate::services::export::{self, ExportRequest, Format};
use crate::store::AuditFilter;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Query the audit trail on a running server: a table by default, or JSON, JSON lines, CSV.
    #[command(
        visible_alias = "list",
        after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden audit query --actor-kind agent --environment production --since 30d"
    )]
    Query {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        filters: Filters,
        /// `oldest` first (default) or `newest` first.
        #[arg(long)]
        order: Option<String>,
        /// Records to print at most (pages are followed).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// table, json, jsonl or csv.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Counts of matching records grouped by agent, day, class, environment, verdict or event type.
    #[command(
        after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden audit summary --group-by agent --environment production --since 30d"
    )]
    Summary {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        filters: Filters,
        /// agent, day, class, environment, verdict or event_type.
        #[arg(long, default_value = "day")]
        group_by: String,
    },
    /// Verify the database's chain, tree and signed checkpoints (offline), or an export file
    /// with only the public key (`--file … --public-key …`, no database).
    #[command(
        after_help = "Examples:\n  warden audit verify --data-dir ./warden-data\n  warden audit verify --file audit.jsonl --public-key 'warden-audit+1a2b3c4d+AW…'"
    )]
    Verify {
        /// An export file to verify instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The public key (as `warden audit public-key` prints it), or a file holding it.
        #[arg(long, requires = "file")]
        public_key: Option<String>,
        /// The file's format (default: from its name and content).
        #[arg(long)]
        format: Option<String>,
    },
    /// Export matching records with a signed checkpoint and proofs (offline, on the database).
    #[command(
        after_help = "Example:\n  warden audit export --format ocsf --output audit.ocsf.jsonl --actor-kind agent --since 30d"
    )]
    Export {
        /// jsonl, csv, parquet or ocsf.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// The file to write (replaced only once the export is complete).
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        filters: Filters,
    },
    /// Archive records older than a time to a JSON-lines file with their checkpoint, then
    /// delete them from the database (offline); what remains still verifies.
    #[command(
        after_help = "Example:\n  warden audit archive --before 365d --output audit-2025.jsonl"
    )]
    Archive {
        /// Records signed into a checkpoint before this time (RFC 3339 or a span: 365d).
        #[arg(long)]
        before: String,
        /// The archive file.
        #[arg(long)]
        output: PathBuf,
    },
    /// Print the public key that verifies the checkpoints (creates the key on first use).
    #[command(after_help = "Example:\n  warden audit public-key > warden-audit.pub")]
    PublicKey,
    /// Sign a checkpoint of everything appended so far and print it (offline).
    #[command(after_help = "Example:\n  warden audit checkpoint")]
    Checkpoint,
}

/// The filters `GET /v1/audit` takes.
#[derive(Debug, Clone, Default, Args)]
pub(super) struct Filters {
    /// agent, human, service or admin.
    #[arg(long)]
    actor_kind: Option<String>,
    /// Records concerning this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Records naming this human (acting, acted for, authorising or approving).
    #[arg(long)]
    human: Option<String>,
    /// The agent's team.
    #[arg(long)]
    team: Option<String>,
    /// Environment.
    #[arg(long)]
    environment: Option<String>,
    /// Service.
    #[arg(long)]
    service: Option<String>,
    /// Action class.
    #[arg(long)]
    action_class: Option<String>,
    /// allow, require_approval or deny.
    #[arg(long)]
    verdict: Option<String>,
    /// succeeded, failed, rolled_back or unknown.
    #[arg(long)]
    outcome: Option<String>,
    /// low, medium, high or critical.
    #[arg(long)]
    risk: Option<String>,
    /// Event type.
    #[arg(long)]
    event_type: Option<String>,
    /// At or after (RFC 3339, or a span before now: 30d, 12h, 15m).
    #[arg(long)]
    since: Option<String>,
    /// Before (RFC 3339, or a span before now).
    #[arg(long)]
    until: Option<String>,
    /// Text in the agent's reasoning or plan.
    #[arg(long)]
    q: Option<String>,
}

impl Filters {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let f = self.clone();
        [
            ("actor_kind", f.actor_kind),
            ("agent", f.agent),
            ("human", f.human),
            ("team", f.team),
            ("environment", f.environment),
            ("service", f.service),
            ("action_class", f.action_class),
            ("verdict", f.verdict),
            ("outcome", f.outcome),
            ("risk", f.risk),
            ("event_type", f.event_type),
            ("since", f.since),
            ("until", f.until),
            ("q", f.q),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// As a store filter, for offline exports: checked as the API checks it.
    fn to_filter(&self, now: i64) -> anyhow::Result<AuditFilter> {
        crate::api::audit::filter_of(self.pairs(), now).map_err(|e| match &e.field {
            Some(field) => anyhow!("--{}: {}", field.replace('_', "-"), e.message),
            None => anyhow!("{}", e.message),
        })
    }
}

pub(super) async fn run(cmd: AuditCommand, db: &DbArgs) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Query {
            server,
            filters,
            order,
            limit,
            format,
        } => query(&server, &filters, order, limit, &format).await,
        AuditCommand::Summary {
            server,
            filters,
            group_by,
        } => {
            let mut pairs = filters.pairs();
            pairs.push(("group_by", group_by));
            let path = format!("/v1/audit/summary?{}", serde_urlencoded::to_string(&pairs)?);
            let v = call(&server, reqwest::Method::GET, &path, None).await?;
            let mut out = String::new();
            for g in v["groups"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:>10}  {}\n",
                    g["count"],
                    g["key"].as_str().unwrap_or("(none)")
                ));
            }
            out.push_str(&format!("{:>10}  total\n", v["total"]));
            print!("{out}");
            Ok(())
        }
        AuditCommand::Verify {
            file: Some(file),
            public_key,
            format,
        } => {
            let key = public_key.context(
                "--public-key is needed to verify a file (warden audit public-key prints it)",
            )?;
            let key = match std::fs::read_to_string(&key) {
                Ok(text) => text.trim().to_string(),
                Err(_) => key,
            };
            let key = NoteVerifier::parse(&key).context("--public-key")?;
            let format = format
                .map(|f| {
                    Format::parse(&f).with_context(|| {
                        format!("--format: `{f}` is not jsonl, csv, parquet or ocsf")
                    })
                })
                .transpose()?;
            match export::verify_file(&file, format, &key)? {
                Ok((records, size)) => {
                    println!(
                        "export intact: {records} records, each proven in the signed checkpoint of {size} records"
                    );
                    Ok(())
                }
                Err(b) => bail!("export broken: {b}"),
            }
        }
        AuditCommand::Verify { file: None, .. } => {
            let warden = Warden::open_default(load_config(db)?).await?;
            let state = &warden.state;
            let (start, _) = state.store.audit_start().await?;
            let outcome =
                crate::services::checkpoints::verify_all(&state.store, &state.audit_key).await?;
            state.store.close().await;
            match outcome {
                Ok((n, checkpoints)) => {
                    println!(
                        "audit chain intact: records {}..{n}, {checkpoints} signed checkpoints verified",
                        start + 1
                    );
                    Ok(())
                }
                Err(b) => bail!("audit chain broken: {b}"),
            }
        }
        AuditCommand::Export {
            format,
            output,
            filters,
        } => {
            let format = Format::parse(&format).with_context(|| {
                format!("--format: `{format}` is not jsonl, csv, parquet or ocsf")
            })?;
            let warden = Warden::open_default(load_config(db)?).await?;
            let state = &warden.state;
            let request = ExportRequest {
                filter: filters.to_filter(state.clock.now_micros())?,
                through: None,
                format,
                path: output.clone(),
                replace: true,
            };
            let done = export::export(
                &state.store,
                &state.clock,
                &state.signer,
                offline_actor(),
                &request,
            )
            .await;
            state.store.close().await;
            let done = done?;
            println!(
                "exported {} records to {} (checkpoint of {} records{})",
                done.records,
                output.display(),
                done.checkpoint.size,
                if format == Format::Jsonl {
                    String::new()
                } else {
                    format!("; envelope in {}", export::sidecar(&output).display())
                }
            );
            Ok(())
        }
        AuditCommand::Archive { before, output } => {
            let warden = Warden::open_default(load_config(db)?).await?;
            let state = &warden.state;
            let now = state.clock.now_micros();
            let before = crate::clock::parse_moment(&before, now).with_context(|| {
                format!("--before: `{before}` is neither RFC 3339 nor a span such as 365d")
            })?;
            let done = export::archive(
                &state.store,
                &state.clock,
                &state.signer,
                offline_actor(),
                before,
                &output,
            )
            .await;
            state.store.close().await;
            match done? {
                Some(done) => println!(
                    "archived {} records through {} to {} and pruned them",
                    done.records,
                    done.checkpoint.size,
                    output.display()
                ),
                None => println!("no checkpoint older than that: nothing archived"),
            }
            Ok(())
        }
        AuditCommand::PublicKey => {
            let config = load_config(db)?;
            let signer = config.audit.signer(&config.storage.data_dir)?;
            println!("{}", signer.vkey());
            Ok(())
        }
        AuditCommand::Checkpoint => {
            let warden = Warden::open_default(load_config(db)?).await?;
            let state = &warden.state;
            let cp =
                crate::services::checkpoints::checkpoint(&state.store, &state.clock, &state.signer)
                    .await;
            state.store.close().await;
            match cp? {
                Some(cp) => print!("{}", cp.note),
                None => println!("the audit trail is empty"),
            }
            Ok(())
        }
    }
}

async fn query(
    server: &ServerArgs,
    filters: &Filters,
    order: Option<String>,
    limit: usize,
    format: &str,
) -> anyhow::Result<()> {
    if !["table", "json", "jsonl", "csv"].contains(&format) {
        bail!("--format: `{format}` is not table, json, jsonl or csv");
    }
    let mut records: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    while records.len() < limit {
        let mut pairs = filters.pairs();
        if let Some(o) = &order {
            pairs.push(("order", o.clone()));
        }
        pairs.push(("limit", (limit - records.len()).min(1000).to_string()));
        if let Some(c) = &cursor {
            pairs.push(("cursor", c.clone()));
        }
        let path = format!("/v1/audit?{}", serde_urlencoded::to_string(&pairs)?);
        let page = call(server, reqwest::Method::GET, &path, None).await?;
        records.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let text = match format {
        "json" => serde_json::to_string_pretty(&records)? + "\n",
        "jsonl" => records.iter().map(|r| r.to_string() + "\n").collect(),
        "csv" => csv_of(&records)?,
        _ => table(&records),
    };
    print!("{text}");
    Ok(())
}

/// The columns a reader scans: when, who, for whom, what, where, the result, who approved.
const SHOWN: [(&str, &str); 10] = [
    ("seq", "SEQ"),
    ("at", "AT"),
    ("event_type", "EVENT"),
    ("actor", "ACTOR"),
    ("on_behalf_of", "FOR"),
    ("action_class", "CLASS"),
    ("environment", "ENV"),
    ("target", "TARGET"),
    ("outcome", "RESULT"),
    ("approvers", "APPROVED BY"),
];

fn cell(r: &Value, key: &str) -> String {
    match key {
        "actor" => format!(
            "{}:{}",
            r["actor"]["kind"].as_str().unwrap_or(""),
            r["actor"]["id"].as_str().unwrap_or("")
        ),
        "at" => r["at"].as_str().unwrap_or("").chars().take(19).collect(),
        "approvers" => r["approvers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => match &r[key] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            v => v.to_string(),
        },
    }
}

fn table(records: &[Value]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| SHOWN.iter().map(|(k, _)| cell(r, k)).collect())
        .collect();
    let widths: Vec<usize> = SHOWN
        .iter()
        .enumerate()
        .map(|(i, (_, h))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
                .min(40)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(*w).collect();
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(SHOWN.iter().map(|(_, h)| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out.push_str(&format!("({} records)\n", records.len()));
    out
}

fn csv_of(records: &[Value]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = SHOWN.iter().map(|(k, _)| *k).collect();
    header.extend(["reasoning", "decision_id", "hash"]);
    w.write_record(&header)?;
    for r in records {
        let row: Vec<String> = header.iter().map(|k| cell(r, k)).collect();
        w.write_record(&row)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_lines_up_and_names_the_approvers() {
        let records = vec![
            serde_json::json!({"seq": 7, "at": "2026-11-30T10:00:00.123456Z", "event_type": "decision",
            "actor": {"kind": "agent", "id": "deploy-bot"}, "action_class": "deploy", "environment": "production",
            "target": "service:payments", "outcome": "allow", "approvers": ["alice", "bob"]}),
        ];
        let t = table(&records);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("SEQ  AT"), "{t}");
        assert!(
            lines[1].contains("agent:deploy-bot") && lines[1].contains("alice,bob"),
            "{t}"
        );
        assert_eq!(lines[0].find("EVENT"), lines[1].find("decision"), "{t}");
        assert_eq!(lines[2], "(1 records)");
        let csv = csv_of(&records).unwrap();
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("7,2026-11-30T10:00:00,decision,agent:deploy-bot"),
            "{csv}"
        );
    }
}
