//! The command line: `warden serve`, offline maintenance against the database, and admin
//! commands that talk to a running server.
//!
//! Only bootstrapping (`token`), `migrate`, `config` and `audit verify` touch the database
//! directly; everything else goes through the server's API with the token in `WARDEN_TOKEN`, so
//! that it is authorised and audited like any other call.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::audit::Actor;
use crate::config::{Config, LogFormat};
use crate::identity::Role;
use crate::server::{Warden, shutdown_signal};

mod audit;
mod delegations;
mod import;
mod replay;
mod report;

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

/// A running server to talk to.
#[derive(Debug, Args)]
struct ServerArgs {
    /// The server's base URL (`https://…` behind TLS).
    #[arg(long, env = "WARDEN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A PEM file of certificate authorities to trust besides the built-in ones (a private CA).
    #[arg(long, env = "WARDEN_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    #[command(
        after_help = "Example:\n  warden serve --listen 0.0.0.0:8080 --database-url postgres://warden@db/warden --log-format json"
    )]
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, env = "WARDEN_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Log format.
        #[arg(long, value_enum, env = "WARDEN_LOG_FORMAT")]
        log_format: Option<LogFormat>,
    },
    /// Apply database migrations and exit (serve also applies them at start).
    #[command(after_help = "Example:\n  warden migrate --database-url postgres://warden@db/warden")]
    Migrate,
    /// Print the effective configuration as TOML.
    #[command(after_help = "Example:\n  warden config --config warden.toml")]
    Config,
    /// Create, list and revoke API tokens directly in the database (works offline; bootstrapping).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Query the audit trail (server); verify, export or archive it (offline).
    #[command(subcommand)]
    Audit(Box<audit::AuditCommand>),
    /// Weekly behaviour reports, made from the database (offline).
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Manage agents on a running server.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Manage humans on a running server.
    #[command(subcommand)]
    Humans(HumansCommand),
    /// Decide approval requests on a running server.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Let agents act on your behalf, on a running server (your own approver token).
    #[command(subcommand)]
    Delegations(delegations::DelegationsCommand),
    /// Agents' quotas on a running server.
    #[command(subcommand)]
    Quotas(QuotasCommand),
    /// Agents' trust scores on a running server.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Review policy violations on a running server.
    #[command(subcommand)]
    Violations(ViolationsCommand),
    /// Send activity done outside Warden to a running server.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Human baselines on a running server.
    #[command(subcommand)]
    Baselines(BaselinesCommand),
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
    Plugin(PluginCommand),
    /// Show the server's effective policy.
    #[command(after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden policy")]
    Policy {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Scaffold a standalone plugin crate that depends on warden-sdk.
    #[command(
        after_help = "Example:\n  warden plugin new risky-paths --kind classifier && cd risky-paths && cargo test"
    )]
    New {
        /// Crate name (a-z, 0-9, -).
        name: String,
        /// classifier, anomaly_detector or rollback_trigger.
        #[arg(long, default_value = "classifier")]
        kind: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path to warden-sdk (default: the SDK this binary was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Build a plugin crate into a component (wasm32-unknown-unknown, then componentized: no WASI).
    #[command(after_help = "Example:\n  warden plugin build ./risky-paths")]
    Build {
        /// The plugin crate's directory.
        dir: PathBuf,
        /// Cargo target directory.
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Run a built component against a JSON fixture in the real runtime and report verdict, fuel, memory, size, time and logs.
    #[command(
        after_help = "Example:\n  warden plugin test target/wasm32-unknown-unknown/release/risky_paths.component.wasm --manifest plugin.toml --fixture fixtures/example.json"
    )]
    Test {
        /// The component.
        component: PathBuf,
        /// The plugin's manifest (plugin.toml).
        #[arg(long, default_value = "plugin.toml")]
        manifest: PathBuf,
        /// The fixture: {"action": {...}, "config"?, "baseline"?, "activity"?, "windows"?}.
        #[arg(long)]
        fixture: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret once.
    #[command(
        after_help = "Examples:\n  warden token create --role admin --subject alice\n  warden token create --role agent --subject deploy-bot"
    )]
    Create {
        /// admin, approver, service or agent.
        #[arg(long)]
        role: String,
        /// The agent's id (agent), the human's id (approver), or a name.
        #[arg(long)]
        subject: Option<String>,
        /// A note.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Revoke a token by id.
    #[command(after_help = "Example:\n  warden token revoke tok_3f2a9c81d0e4")]
    Revoke {
        /// Token id (from `warden token list`).
        id: String,
    },
    /// List tokens (never their secrets).
    #[command(after_help = "Example:\n  warden token list")]
    List,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Register an agent.
    #[command(
        after_help = "Example:\n  warden agents create --id deploy-bot --tool claude-code --model claude-opus --team payments --sponsor alice --tier 2"
    )]
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Slug id.
        #[arg(long)]
        id: String,
        /// Tool it runs in.
        #[arg(long)]
        tool: String,
        /// Model behind it.
        #[arg(long)]
        model: String,
        /// Owning team.
        #[arg(long)]
        team: String,
        /// Accountable human.
        #[arg(long)]
        sponsor: String,
        /// Starting tier (default 1).
        #[arg(long)]
        tier: Option<u8>,
        /// Ceiling (default 2).
        #[arg(long)]
        ceiling: Option<u8>,
        /// Parent agent.
        #[arg(long)]
        parent: Option<String>,
        /// Start in shadow mode.
        #[arg(long)]
        shadow: bool,
    },
    /// List agents.
    #[command(after_help = "Example:\n  warden agents list --team payments")]
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this team.
        #[arg(long)]
        team: Option<String>,
    },
    /// Show one agent.
    #[command(after_help = "Example:\n  warden agents get deploy-bot")]
    Get {
        #[command(flatten)]
        server: ServerArgs,
        /// Agent id.
        id: String,
    },
    /// Change an agent.
    #[command(
        after_help = "Examples:\n  warden agents update deploy-bot --ceiling 3 --tier 3\n  warden agents update deploy-bot --status suspended\n  warden agents update deploy-bot --pinned true"
    )]
    Update {
        #[command(flatten)]
        server: ServerArgs,
        /// Agent id.
        id: String,
        /// New tier.
        #[arg(long)]
        tier: Option<u8>,
        /// New ceiling.
        #[arg(long)]
        ceiling: Option<u8>,
        /// New parent.
        #[arg(long, conflicts_with = "no_parent")]
        parent: Option<String>,
        /// Detach from the parent.
        #[arg(long)]
        no_parent: bool,
        /// active or suspended.
        #[arg(long)]
        status: Option<String>,
        /// Shadow mode on or off.
        #[arg(long)]
        shadow: Option<bool>,
        /// Pin the tier (the tier controller leaves it alone) or unpin it.
        #[arg(long)]
        pinned: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// List approvals, oldest first.
    #[command(after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden approvals list --status pending")]
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// pending, approved, rejected, expired or consumed.
        #[arg(long)]
        status: Option<String>,
        /// The agent.
        #[arg(long)]
        agent: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one approval: the agent's plan and reasoning, the action, its risk.
    #[command(after_help = "Example:\n  warden approvals show 019abc…")]
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Approval id.
        id: String,
    },
    /// Approve a pending approval.
    #[command(
        after_help = "Example:\n  warden approvals approve 019abc… --comment 'checked the migration plan'"
    )]
    Approve {
        #[command(flatten)]
        server: ServerArgs,
        /// Approval id.
        id: String,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a pending approval.
    #[command(
        after_help = "Example:\n  warden approvals reject 019abc… --comment 'not during the freeze'"
    )]
    Reject {
        #[command(flatten)]
        server: ServerArgs,
        /// Approval id.
        id: String,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum QuotasCommand {
    /// One agent's quotas: limits, where they come from, and use in the current windows.
    #[command(after_help = "Example:\n  warden quotas show deploy-bot")]
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Agent id.
        id: String,
    },
    /// Set (or clear) an agent's own limits (admins).
    #[command(
        after_help = "Example:\n  warden quotas set deploy-bot --limit cost_per_day=250 --limit deploys_per_hour_per_service=10 --clear calls_per_minute"
    )]
    Set {
        #[command(flatten)]
        server: ServerArgs,
        /// Agent id.
        id: String,
        /// NAME=LIMIT (calls, or US dollars); repeat for several.
        #[arg(long = "limit")]
        limits: Vec<String>,
        /// A quota whose override to remove; repeat for several.
        #[arg(long = "clear")]
        clear: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
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
enum BaselinesCommand {
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

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// One agent's score, components and evidence.
    #[command(after_help = "Example:\n  warden trust show deploy-bot")]
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Agent id.
        id: String,
    },
    /// One agent's tier changes and daily scores.
    #[command(
        after_help = "Example:\n  warden trust history deploy-bot --since 2026-10-01T00:00:00Z"
    )]
    History {
        #[command(flatten)]
        server: ServerArgs,
        /// Agent id.
        id: String,
        /// From this time (RFC 3339); default 90 days ago.
        #[arg(long)]
        since: Option<String>,
    },
    /// Every agent's score, least trusted first.
    #[command(after_help = "Example:\n  warden trust list --team payments")]
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this team's agents.
        #[arg(long)]
        team: Option<String>,
    },
    /// What-if: replay the recorded evidence under the `[policy.trust]` and `[policy.tiering]`
    /// of `--config` (a copy of warden.toml with the proposed policy) and print where each
    /// agent would stand, and why. Reads the database (applying pending migrations, as every
    /// command that opens it does) and changes nothing else.
    #[command(
        after_help = "Example:\n  cp warden.toml proposed.toml   # edit [policy.tiering] in proposed.toml\n  warden trust replay --config proposed.toml --since 90d"
    )]
    Replay {
        /// The period: `90d` (days before now) or an RFC 3339 time.
        #[arg(long, default_value = "90d")]
        since: String,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ViolationsCommand {
    /// List violations, oldest first.
    #[command(
        after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden violations list --status open --agent deploy-bot"
    )]
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// open or acknowledged.
        #[arg(long)]
        status: Option<String>,
        /// The agent.
        #[arg(long)]
        agent: Option<String>,
        /// Action class.
        #[arg(long)]
        class: Option<String>,
        /// Environment.
        #[arg(long)]
        environment: Option<String>,
        /// At or after (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one violation.
    #[command(after_help = "Example:\n  warden violations show 019abc…")]
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Violation id.
        id: String,
    },
    /// Acknowledge a violation after review.
    #[command(
        after_help = "Example:\n  warden violations ack 019abc… --comment 'talked to the team; grant widened'"
    )]
    Ack {
        #[command(flatten)]
        server: ServerArgs,
        /// Violation id.
        id: String,
        /// What you found or did.
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum HumansCommand {
    /// Register a human with grants `class:environment:service:max_risk` (`*` wildcards).
    #[command(
        after_help = "Example:\n  warden humans create --id alice --team payments --grant '*:staging:*:critical' --grant 'deploy:production:pay*:medium'"
    )]
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Id.
        #[arg(long)]
        id: String,
        /// Team.
        #[arg(long)]
        team: String,
        /// A grant, `class:environment:service:max_risk`; repeat for more.
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
    /// List humans.
    #[command(after_help = "Example:\n  warden humans list")]
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one human.
    #[command(after_help = "Example:\n  warden humans get alice")]
    Get {
        #[command(flatten)]
        server: ServerArgs,
        /// Id.
        id: String,
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

/// `path?limit=…&k=v…` with the filters that are set.
fn with_query<const N: usize>(
    path: &str,
    limit: i64,
    filters: [(&str, Option<String>); N],
) -> anyhow::Result<String> {
    let mut query = vec![("limit", limit.to_string())];
    query.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    Ok(format!("{path}?{}", serde_urlencoded::to_string(&query)?))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { listen, log_format } => {
            let mut config = load_config(&cli.db)?;
            if let Some(l) = listen {
                config.server.listen = l;
            }
            if let Some(f) = log_format {
                config.log.format = f;
            }
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
        Command::Config => {
            let config = load_config(&cli.db)?;
            crate::policy::CompiledPolicy::new(config.policy.apply())
                .context("invalid [policy]")?;
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Token(cmd) => {
            let warden = Warden::open_default(load_config(&cli.db)?).await?;
            let store = &warden.state.store;
            let now = warden.state.clock.now_micros();
            let result = match cmd {
                TokenCommand::Create {
                    role,
                    subject,
                    note,
                } => {
                    let role = Role::parse(&role).with_context(|| {
                        format!("unknown role `{role}`: use admin, approver, service or agent")
                    })?;
                    let new = crate::services::tokens::issue(
                        store,
                        offline_actor(),
                        role,
                        subject,
                        note,
                        None,
                        now,
                    )
                    .await?;
                    eprintln!(
                        "token {} ({}) created; the secret below is shown only once:",
                        new.record.id,
                        role.as_str()
                    );
                    println!("{}", new.secret);
                    Ok(())
                }
                TokenCommand::Revoke { id } => {
                    crate::services::tokens::revoke(store, offline_actor(), &id, now).await?;
                    println!("revoked {id}");
                    Ok(())
                }
                TokenCommand::List => {
                    let tokens: Vec<crate::api::tokens::TokenInfo> =
                        store.tokens().await?.into_iter().map(Into::into).collect();
                    println!("{}", serde_json::to_string_pretty(&tokens)?);
                    Ok(())
                }
            };
            store.close().await;
            result
        }
        Command::Audit(cmd) => audit::run(*cmd, &cli.db).await,
        Command::Report(cmd) => report::run(cmd, &cli.db).await,
        Command::Delegations(cmd) => delegations::run(cmd).await,
        Command::Approvals(cmd) => match cmd {
            ApprovalsCommand::List {
                server,
                status,
                agent,
                limit,
            } => print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &with_query(
                        "/v1/approvals",
                        limit,
                        [("status", status), ("agent", agent)],
                    )?,
                    None,
                )
                .await?,
            ),
            ApprovalsCommand::Show { server, id } => print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/approvals/{id}"),
                    None,
                )
                .await?,
            ),
            ApprovalsCommand::Approve {
                server,
                id,
                comment,
            } => print_json(
                call(
                    &server,
                    reqwest::Method::POST,
                    &format!("/v1/approvals/{id}/approve"),
                    Some(serde_json::json!({ "comment": comment })),
                )
                .await?,
            ),
            ApprovalsCommand::Reject {
                server,
                id,
                comment,
            } => print_json(
                call(
                    &server,
                    reqwest::Method::POST,
                    &format!("/v1/approvals/{id}/reject"),
                    Some(serde_json::json!({ "comment": comment })),
                )
                .await?,
            ),
        },
        Command::Quotas(cmd) => match cmd {
            QuotasCommand::Show { server, id } => print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/agents/{id}/quotas"),
                    None,
                )
                .await?,
            ),
            QuotasCommand::Set {
                server,
                id,
                limits,
                clear,
            } => {
                let mut map = serde_json::Map::new();
                for l in limits {
                    let (name, value) = l
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--limit `{l}`: use NAME=LIMIT"))?;
                    let value: f64 = value
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--limit `{l}`: `{value}` is not a number"))?;
                    map.insert(name.to_string(), json!(value));
                }
                for name in clear {
                    map.insert(name, Value::Null);
                }
                print_json(
                    call(
                        &server,
                        reqwest::Method::PUT,
                        &format!("/v1/agents/{id}/quotas"),
                        Some(json!({"limits": map})),
                    )
                    .await?,
                )
            }
        },
        Command::Trust(cmd) => match cmd {
            TrustCommand::Show { server, id } => print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/agents/{id}/trust"),
                    None,
                )
                .await?,
            ),
            TrustCommand::History { server, id, since } => {
                let query = since
                    .map(|s| serde_urlencoded::to_string([("since", s)]))
                    .transpose()?
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                print_json(
                    call(
                        &server,
                        reqwest::Method::GET,
                        &format!("/v1/agents/{id}/trust/history{query}"),
                        None,
                    )
                    .await?,
                )
            }
            TrustCommand::Replay { since, agent, json } => {
                replay::run(load_config(&cli.db)?, &since, agent.as_deref(), json).await
            }
            TrustCommand::List { server, team } => {
                let path = match team {
                    Some(t) => format!("/v1/trust?{}", serde_urlencoded::to_string([("team", t)])?),
                    None => "/v1/trust".into(),
                };
                print_json(call(&server, reqwest::Method::GET, &path, None).await?)
            }
        },
        Command::Events(EventsCommand::Import {
            server,
            file,
            format,
            strict,
            batch_size,
            parallel,
        }) => {
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
        Command::Baselines(BaselinesCommand::Show {
            server,
            team,
            service,
            class,
        }) => {
            let query: Vec<(&str, String)> =
                [("team", team), ("service", service), ("class", class)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
            let query = serde_urlencoded::to_string(query)?;
            print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/baselines?{query}"),
                    None,
                )
                .await?,
            )
        }
        Command::Baselines(BaselinesCommand::Recompute { server }) => print_json(
            call(
                &server,
                reqwest::Method::POST,
                "/v1/baselines/recompute",
                None,
            )
            .await?,
        ),
        Command::Violations(cmd) => match cmd {
            ViolationsCommand::List {
                server,
                status,
                agent,
                class,
                environment,
                since,
                limit,
            } => {
                let filters = [
                    ("status", status),
                    ("agent", agent),
                    ("class", class),
                    ("environment", environment),
                    ("since", since),
                ];
                print_json(
                    call(
                        &server,
                        reqwest::Method::GET,
                        &with_query("/v1/violations", limit, filters)?,
                        None,
                    )
                    .await?,
                )
            }
            ViolationsCommand::Show { server, id } => print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/violations/{id}"),
                    None,
                )
                .await?,
            ),
            ViolationsCommand::Ack {
                server,
                id,
                comment,
            } => {
                let body = serde_json::json!({ "comment": comment });
                print_json(
                    call(
                        &server,
                        reqwest::Method::POST,
                        &format!("/v1/violations/{id}/ack"),
                        Some(body),
                    )
                    .await?,
                )
            }
        },
        Command::Agents(cmd) => match cmd {
            AgentsCommand::Create {
                server,
                id,
                tool,
                model,
                team,
                sponsor,
                tier,
                ceiling,
                parent,
                shadow,
            } => {
                let body = json!({"id": id, "tool": tool, "model": model, "team": team, "sponsor": sponsor, "tier": tier, "ceiling": ceiling, "parent": parent, "shadow": shadow});
                print_json(call(&server, reqwest::Method::POST, "/v1/agents", Some(body)).await?)
            }
            AgentsCommand::List { server, team } => {
                let path = match team {
                    Some(t) => {
                        format!("/v1/agents?{}", serde_urlencoded::to_string([("team", t)])?)
                    }
                    None => "/v1/agents".into(),
                };
                print_json(call(&server, reqwest::Method::GET, &path, None).await?)
            }
            AgentsCommand::Get { server, id } => print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/agents/{id}"),
                    None,
                )
                .await?,
            ),
            AgentsCommand::Update {
                server,
                id,
                tier,
                ceiling,
                parent,
                no_parent,
                status,
                shadow,
                pinned,
            } => {
                let mut body = serde_json::Map::new();
                for (k, v) in [
                    ("tier", tier.map(|t| json!(t))),
                    ("ceiling", ceiling.map(|t| json!(t))),
                    ("parent", parent.map(|p| json!(p))),
                    ("status", status.map(|s| json!(s))),
                    ("shadow", shadow.map(|s| json!(s))),
                    ("pinned", pinned.map(|p| json!(p))),
                ] {
                    if let Some(v) = v {
                        body.insert(k.into(), v);
                    }
                }
                if no_parent {
                    body.insert("parent".into(), Value::Null);
                }
                print_json(
                    call(
                        &server,
                        reqwest::Method::PATCH,
                        &format!("/v1/agents/{id}"),
                        Some(Value::Object(body)),
                    )
                    .await?,
                )
            }
        },
        Command::Humans(cmd) => match cmd {
            HumansCommand::Create {
                server,
                id,
                team,
                grants,
            } => {
                let grants = grants
                    .iter()
                    .map(|g| parse_grant(g))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                print_json(
                    call(
                        &server,
                        reqwest::Method::POST,
                        "/v1/humans",
                        Some(json!({"id": id, "team": team, "grants": grants})),
                    )
                    .await?,
                )
            }
            HumansCommand::List { server } => {
                print_json(call(&server, reqwest::Method::GET, "/v1/humans", None).await?)
            }
            HumansCommand::Get { server, id } => print_json(
                call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/humans/{id}"),
                    None,
                )
                .await?,
            ),
        },
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
        Command::Plugin(cmd) => plugin_command(cmd).await,
        Command::Policy { server } => {
            print_json(call(&server, reqwest::Method::GET, "/v1/policy", None).await?)
        }
    }
}

async fn plugin_command(cmd: PluginCommand) -> anyhow::Result<()> {
    use crate::plugins::{build, fixture, manifest::Manifest, scaffold};
    match cmd {
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk_path,
        } => {
            let kind = serde_json::from_value(json!(kind)).map_err(|_| {
                anyhow::anyhow!(
                    "unknown kind `{kind}`: use classifier, anomaly_detector or rollback_trigger"
                )
            })?;
            let root = scaffold::new_plugin(
                &dir,
                &name,
                kind,
                &sdk_path.unwrap_or_else(scaffold::default_sdk_path),
            )?;
            println!(
                "created {}\n  cd {0} && cargo test && warden plugin build .",
                root.display()
            );
            Ok(())
        }
        PluginCommand::Build { dir, target_dir } => {
            let out = tokio::task::spawn_blocking(move || {
                build::build_crate(&dir, target_dir.as_deref())
            })
            .await??;
            let bytes = std::fs::read(&out)?;
            use sha2::Digest as _;
            println!(
                "{}\n  size {} bytes, sha256 {}",
                out.display(),
                bytes.len(),
                hex::encode(sha2::Sha256::digest(&bytes))
            );
            Ok(())
        }
        PluginCommand::Test {
            component,
            manifest,
            fixture: fixture_path,
        } => {
            let manifest: Manifest = toml::from_str(
                &std::fs::read_to_string(&manifest)
                    .with_context(|| format!("cannot read {}", manifest.display()))?,
            )
            .with_context(|| format!("invalid {}", manifest.display()))?;
            let bytes = std::fs::read(&component)
                .with_context(|| format!("cannot read {}", component.display()))?;
            let fx: fixture::Fixture =
                serde_json::from_str(&std::fs::read_to_string(&fixture_path)?)
                    .with_context(|| format!("invalid fixture {}", fixture_path.display()))?;
            let host = crate::plugins::PluginHost::new()?;
            let report = fixture::run(host.runtime(), manifest, &bytes, fx).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.verdict.get("failed").is_some() {
                bail!("the plugin failed");
            }
            if report.expected == Some(false) {
                bail!("the verdict does not hold the fixture's `expect`");
            }
            Ok(())
        }
    }
}

/// Parses `class:environment:service:max_risk` into a grant's JSON.
fn parse_grant(s: &str) -> anyhow::Result<Value> {
    let parts: Vec<&str> = s.split(':').collect();
    let [class, environment, service, max_risk] = parts[..] else {
        bail!(
            "grant `{s}` must be class:environment:service:max_risk, e.g. deploy:staging:*:medium"
        );
    };
    Ok(
        json!({"class": class, "environment": environment, "service": service, "max_risk": max_risk}),
    )
}

fn print_json(v: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// Calls the server with `WARDEN_TOKEN`; a non-2xx answer becomes an error with its message.
async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let token = std::env::var("WARDEN_TOKEN")
        .context("set WARDEN_TOKEN to an API token (create one with `warden token create`)")?;
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let mut client = reqwest::Client::builder();
    if let Some(path) = &server.ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificates in {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificates", path.display()))?
        {
            client = client.add_root_certificate(cert);
        }
    }
    let mut req = client.build()?.request(method, &url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        let e = &value["error"];
        let field = e["field"]
            .as_str()
            .map(|f| format!(" (field `{f}`)"))
            .unwrap_or_default();
        bail!(
            "{status}: {}{field}: {}",
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or(&value.to_string())
        );
    }
    Ok(value)
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
    fn grants_parse() {
        assert_eq!(
            parse_grant("deploy:staging:*:medium").unwrap()["max_risk"],
            "medium"
        );
        assert!(parse_grant("deploy:staging").is_err());
    }
}
