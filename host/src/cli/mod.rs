//! The command line: `warden serve`, offline maintenance against the database, and admin
//! commands that talk to a running server.
//!
//! Only bootstrapping (`token`), `migrate`, `config` and `audit verify` touch the database
//! directly; everything else goes through the server's API with the token in `WARDEN_TOKEN`, so
//! that it is authorised and audited like any other call.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::audit::Actor;
use crate::config::{Config, LogFormat};
use crate::server::{Warden, shutdown_signal};

mod activity;
mod agents;
mod audit;
mod client;
mod delegations;
mod import;
mod plugin;
mod replay;
mod report;
mod review;
mod token;

use client::{ServerArgs, call, print_json, show, with_query};

/// Warden: governs AI agents as first-class users of your platform.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the configuration and the database are (for commands that open the database).
#[derive(Debug, Args)]
struct DbArgs {
    /// Configuration file (default: ./warden.toml when it exists, else built-in defaults).
    #[arg(long, global = true, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the embedded SQLite database (default ./warden-data).
    #[arg(long, global = true, env = "WARDEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://… to share one PostgreSQL between replicas, or sqlite://….
    #[arg(long, global = true, env = "WARDEN_DATABASE_URL")]
    database_url: Option<String>,
}

/// What `serve` listens on and how it logs; `config` takes them too, to show what `serve` would use.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "WARDEN_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, env = "WARDEN_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// The configuration file (or the defaults) with these flags and variables over it.
    fn load(&self, db: &DbArgs) -> anyhow::Result<Config> {
        let mut config = load_config(db)?;
        if let Some(l) = self.listen {
            config.server.listen = l;
        }
        if let Some(f) = self.log_format {
            config.log.format = f;
        }
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    #[command(
        after_help = "Example:\n  warden serve --listen 0.0.0.0:8080 --database-url postgres://warden@db/warden --log-format json"
    )]
    Serve(ServeArgs),
    /// Apply database migrations and exit (serve also applies them at start).
    #[command(after_help = "Example:\n  warden migrate --database-url postgres://warden@db/warden")]
    Migrate,
    /// Print the effective configuration as TOML: the file, with the variables and flags `serve`
    /// would apply over it.
    #[command(after_help = "Example:\n  warden config --config warden.toml")]
    Config(ServeArgs),
    /// Create, list and revoke API tokens directly in the database (works offline; bootstrapping).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Query the audit trail (server); verify, export or archive it (offline).
    #[command(subcommand)]
    Audit(Box<audit::AuditCommand>),
    /// Weekly behaviour reports, made from the database (offline).
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Manage agents on a running server.
    #[command(subcommand)]
    Agents(agents::AgentsCommand),
    /// Manage humans on a running server.
    #[command(subcommand)]
    Humans(agents::HumansCommand),
    /// Decide approval requests on a running server.
    #[command(subcommand)]
    Approvals(review::ApprovalsCommand),
    /// Let agents act on your behalf, on a running server (your own approver token).
    #[command(subcommand)]
    Delegations(delegations::DelegationsCommand),
    /// Agents' quotas on a running server.
    #[command(subcommand)]
    Quotas(agents::QuotasCommand),
    /// Agents' trust scores on a running server.
    #[command(subcommand)]
    Trust(agents::TrustCommand),
    /// Review policy violations on a running server.
    #[command(subcommand)]
    Violations(review::ViolationsCommand),
    /// Send activity done outside Warden to a running server.
    #[command(subcommand)]
    Events(activity::EventsCommand),
    /// Human baselines on a running server.
    #[command(subcommand)]
    Baselines(activity::BaselinesCommand),
    /// Ask a running server for a decision.
    #[command(
        after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden decide --agent deploy-bot --class deploy --environment staging --service payments"
    )]
    Decide {
        #[command(flatten)]
        server: ServerArgs,
        /// The agent (omit when WARDEN_TOKEN is the agent's own token).
        #[arg(long)]
        agent: Option<String>,
        /// Action class.
        #[arg(long)]
        class: String,
        /// Environment.
        #[arg(long)]
        environment: String,
        /// Service.
        #[arg(long)]
        service: String,
        /// The human the agent acts for.
        #[arg(long)]
        on_behalf_of: Option<String>,
        /// The agent's reasoning.
        #[arg(long)]
        reasoning: Option<String>,
        /// An approval for exactly this action (from an earlier require_approval answer).
        #[arg(long)]
        approval_id: Option<String>,
    },
    /// Report what happened after an allowed action (the agent, a service or an admin).
    #[command(
        after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden outcome 019ac2… --status succeeded --detail \"rolled out in 4 min\""
    )]
    Outcome {
        #[command(flatten)]
        server: ServerArgs,
        /// The decision.
        decision_id: String,
        /// succeeded, failed or rolled_back.
        #[arg(long)]
        status: String,
        /// What happened, for humans.
        #[arg(long)]
        detail: Option<String>,
        /// What it actually cost, US dollars.
        #[arg(long)]
        actual_cost_usd: Option<f64>,
    },
    /// Write, build and test WebAssembly plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Show the server's effective policy.
    #[command(after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden policy")]
    Policy {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Runs the command line; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The command printed its own result; only the code is left to say.
        Err(e) if e.downcast_ref::<import::Exit>().is_some() => {
            ExitCode::from(e.downcast_ref::<import::Exit>().map_or(1, |x| x.0))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(db: &DbArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(db.config.as_deref())?;
    if let Some(dir) = &db.data_dir {
        config.storage.data_dir = dir.clone();
    }
    if let Some(url) = &db.database_url {
        config.storage.database_url = url.clone();
    }
    Ok(config)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn offline_actor() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "local".into());
    Actor {
        kind: "admin".into(),
        id: format!("cli:{user}"),
        tool: None,
        model: None,
        token_id: None,
        ..Default::default()
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.load(&cli.db)?;
            init_logging(&config);
            let listen = config.server.listen;
            let warden = Warden::open_default(config).await?;
            if let Ok(secret) = std::env::var("WARDEN_BOOTSTRAP_ADMIN_TOKEN") {
                warden.seed_bootstrap_token(&secret).await?;
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, database = %crate::store::redact(&warden.config.database_url()), policy = %warden.state.policy.version, "warden is serving");
            warden.serve(listener, shutdown_signal()).await
        }
        Command::Migrate => {
            let config = load_config(&cli.db)?;
            let warden = Warden::open_default(config).await?;
            warden.state.store.close().await;
            println!(
                "migrations applied to {}",
                crate::store::redact(&warden.config.database_url())
            );
            Ok(())
        }
        Command::Config(args) => {
            let config = args.load(&cli.db)?;
            crate::policy::CompiledPolicy::new(config.policy.apply())
                .context("invalid [policy]")?;
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Audit(cmd) => audit::run(*cmd, &cli.db).await,
        Command::Report(cmd) => report::run(cmd, &cli.db).await,
        Command::Delegations(cmd) => delegations::run(cmd).await,
        Command::Token(cmd) => token::run(cmd, &cli.db).await,
        Command::Approvals(cmd) => review::approvals(cmd).await,
        Command::Violations(cmd) => review::violations(cmd).await,
        Command::Agents(cmd) => agents::agents(cmd).await,
        Command::Humans(cmd) => agents::humans(cmd).await,
        Command::Quotas(cmd) => agents::quotas(cmd).await,
        Command::Trust(cmd) => agents::trust(cmd, &cli.db).await,
        Command::Events(cmd) => activity::events(cmd).await,
        Command::Baselines(cmd) => activity::baselines(cmd).await,
        Command::Decide {
            server,
            agent,
            class,
            environment,
            service,
            on_behalf_of,
            reasoning,
            approval_id,
        } => {
            let mut body =
                json!({"action": {"class": class, "environment": environment, "service": service}});
            if let Some(a) = agent {
                body["agent"] = json!(a);
            }
            if let Some(h) = on_behalf_of {
                body["on_behalf_of"] = json!(h);
            }
            if let Some(r) = reasoning {
                body["action"]["reasoning"] = json!(r);
            }
            if let Some(id) = approval_id {
                body["approval_id"] = json!(id);
            }
            print_json(call(&server, reqwest::Method::POST, "/v1/decisions", Some(body)).await?)
        }
        Command::Outcome {
            server,
            decision_id,
            status,
            detail,
            actual_cost_usd,
        } => {
            let body =
                json!({"status": status, "detail": detail, "actual_cost_usd": actual_cost_usd});
            print_json(
                call(
                    &server,
                    reqwest::Method::POST,
                    &format!("/v1/decisions/{decision_id}/outcome"),
                    Some(body),
                )
                .await?,
            )
        }
        Command::Plugin(cmd) => plugin::run(cmd).await,
        Command::Policy { server } => show(&server, "/v1/policy").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn roles_and_plugin_kinds_are_checked_and_listed_by_the_parser() {
        use clap::Parser;
        for (args, value) in [
            (&["warden", "token", "create", "--role", "root"][..], "root"),
            (
                &["warden", "plugin", "new", "x", "--kind", "detector"][..],
                "detector",
            ),
        ] {
            let err = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(err.contains(&format!("invalid value '{value}'")), "{err}");
            assert!(err.contains("possible values"), "{err}");
        }
        let ok = |args: &[&str]| Cli::try_parse_from(args).map(drop);
        assert!(ok(&["warden", "token", "create", "--role", "approver"]).is_ok());
        assert!(ok(&["warden", "plugin", "new", "x", "--kind", "rollback_trigger"]).is_ok());
    }
}
