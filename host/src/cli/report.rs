//! `warden report weekly`: a weekly behaviour report made from the database, with no server
//! (the same figures `GET /v1/reports/weekly` answers with), printed or written to a directory.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::{DbArgs, load_config};
use crate::server::Warden;
use crate::services::reports::{self, Format, csv};

#[derive(Debug, Subcommand)]
pub(super) enum ReportCommand {
    /// One ISO week's report for the organisation, a team or an agent, each figure beside the
    /// week before's: HTML (self-contained, with charts), Markdown, JSON or CSV.
    #[command(
        after_help = "Examples:\n  warden report weekly --week 2026-W48 --format html --out reports/\n  warden report weekly --team payments --format md\n  warden report weekly --format csv --out reports/   (one file per table)"
    )]
    Weekly {
        /// The ISO week (default: the last finished week).
        #[arg(long)]
        week: Option<String>,
        /// One team's agents, beside that team's humans.
        #[arg(long)]
        team: Option<String>,
        /// One agent, beside its team's humans.
        #[arg(long)]
        agent: Option<String>,
        /// html, md, json or csv.
        #[arg(long, value_enum, default_value = "json")]
        format: CliFormat,
        /// With csv and no --out: the table to print.
        #[arg(long)]
        table: Option<String>,
        /// Write into this directory (created if missing) instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum CliFormat {
    Html,
    Md,
    Json,
    Csv,
}

impl From<CliFormat> for Format {
    fn from(f: CliFormat) -> Format {
        match f {
            CliFormat::Html => Format::Html,
            CliFormat::Md => Format::Md,
            CliFormat::Json => Format::Json,
            CliFormat::Csv => Format::Csv,
        }
    }
}

pub(super) async fn run(cmd: ReportCommand, db: &DbArgs) -> anyhow::Result<()> {
    let ReportCommand::Weekly {
        week,
        team,
        agent,
        format,
        table,
        out,
    } = cmd;
    let format = Format::from(format);
    if format == Format::Csv && out.is_none() && table.is_none() {
        anyhow::bail!(
            "CSV is one file per table: give --out DIR for all of them, or --table (one of {})",
            csv::TABLES.join(", ")
        );
    }
    let warden = Warden::open_default(load_config(db)?).await?;
    let service = &warden.state.reports;
    let week = service.week_of(week.as_deref()).map_err(flag)?;
    let scope = reports::scope_of(team, agent).map_err(flag)?;
    // The kept report when the schedule made one, as the API serves it.
    let report = service.report(week, &scope).await.map_err(flag)?;
    let rendered = match (format, &out, table.as_deref()) {
        (Format::Csv, Some(_), None) => csv::TABLES
            .iter()
            .map(|t| reports::render(&report, format, Some(t)))
            .collect::<Result<Vec<_>, _>>(),
        _ => reports::render(&report, format, table.as_deref()).map(|r| vec![r]),
    }
    .map_err(flag)?;
    warden.state.store.close().await;
    let Some(dir) = out else {
        for r in rendered {
            print!("{}", r.body);
        }
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for r in rendered {
        let path = dir.join(&r.file_name);
        // Written beside, then renamed: a reader never sees half a report.
        let partial = dir.join(format!(".{}.partial", r.file_name));
        std::fs::write(&partial, &r.body)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A service's error as the CLI says it: a bad field is the flag of the same name.
fn flag(e: crate::error::Error) -> anyhow::Error {
    match e.field {
        Some(f) => anyhow::anyhow!("--{f}: {}", e.message),
        None => anyhow::anyhow!("{}", e.message),
    }
}
