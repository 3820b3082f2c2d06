//! `warden events` and `baselines`: what humans do outside Warden, and the baselines made
//! from it, on a running server.

use std::path::PathBuf;

use clap::Subcommand;

use super::import;
use super::{ServerArgs, call, print_json, show};

#[derive(Debug, Subcommand)]
pub(super) enum EventsCommand {
    /// Import events from JSON lines or CSV (a header row naming the fields; `targets`
    /// separated by `;`). Prints what was stored and every rejected line; re-importing stores
    /// nothing twice. Exits 2 when some lines were rejected.
    #[command(
        after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden events import deploys.jsonl --strict\n\nFields: source, source_id, actor_kind (human|agent), actor_id, team, class, environment,\nservice, targets, change_size, time (RFC 3339), outcome, decision_id"
    )]
    Import {
        #[command(flatten)]
        server: ServerArgs,
        /// The file.
        file: PathBuf,
        /// jsonl or csv (default: by the file's extension).
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// All or nothing: check the whole file first and store nothing if any line is bad.
        #[arg(long)]
        strict: bool,
        /// Events per request.
        #[arg(long, default_value_t = 5000)]
        batch_size: usize,
        /// Requests in flight at once (the server parses one batch while it stores another).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum BaselinesCommand {
    /// The newest human baselines, and the run that made them.
    #[command(after_help = "Example:\n  warden baselines show --team payments --class deploy")]
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Team.
        #[arg(long)]
        team: Option<String>,
        /// Service.
        #[arg(long)]
        service: Option<String>,
        /// Action class.
        #[arg(long)]
        class: Option<String>,
    },
    /// Recompute every baseline now.
    #[command(after_help = "Example:\n  warden baselines recompute")]
    Recompute {
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(super) async fn events(cmd: EventsCommand) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::Import {
            server,
            file,
            format,
            strict,
            batch_size,
            parallel,
        } => {
            let format = format.unwrap_or_else(|| import::Format::of(&file));
            let sending = import::Sending {
                strict,
                batch_size,
                parallel,
            };
            let summary = import::run(&server, &file, format, sending).await?;
            let rejected = summary["rejected"].as_array().map_or(0, Vec::len);
            print_json(summary)?;
            if rejected > 0 {
                return Err(import::Exit(2).into());
            }
            Ok(())
        }
    }
}

pub(super) async fn baselines(cmd: BaselinesCommand) -> anyhow::Result<()> {
    match cmd {
        BaselinesCommand::Show {
            server,
            team,
            service,
            class,
        } => {
            let query: Vec<(&str, String)> =
                [("team", team), ("service", service), ("class", class)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
            let query = serde_urlencoded::to_string(query)?;
            show(&server, &format!("/v1/baselines?{query}")).await
        }
        BaselinesCommand::Recompute { server } => print_json(
            call(
                &server,
                reqwest::Method::POST,
                "/v1/baselines/recompute",
                None,
            )
            .await?,
        ),
    }
}
