//! `warden agents`, `humans`, `quotas` and `trust`: who may act and how far, on a running
//! server.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use super::{DbArgs, load_config, replay};
use super::{ServerArgs, call, print_json, show};

#[derive(Debug, Subcommand)]
pub(super) enum AgentsCommand {
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
pub(super) enum HumansCommand {
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

#[derive(Debug, Subcommand)]
pub(super) enum QuotasCommand {
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
pub(super) enum TrustCommand {
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

pub(super) async fn agents(cmd: AgentsCommand) -> anyhow::Result<()> {
    match cmd {
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
            show(&server, &path).await
        }
        AgentsCommand::Get { server, id } => show(&server, &format!("/v1/agents/{id}")).await,
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
    }
}

pub(super) async fn humans(cmd: HumansCommand) -> anyhow::Result<()> {
    match cmd {
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
        HumansCommand::List { server } => show(&server, "/v1/humans").await,
        HumansCommand::Get { server, id } => show(&server, &format!("/v1/humans/{id}")).await,
    }
}

pub(super) async fn quotas(cmd: QuotasCommand) -> anyhow::Result<()> {
    match cmd {
        QuotasCommand::Show { server, id } => {
            show(&server, &format!("/v1/agents/{id}/quotas")).await
        }
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
    }
}

pub(super) async fn trust(cmd: TrustCommand, db: &DbArgs) -> anyhow::Result<()> {
    match cmd {
        TrustCommand::Show { server, id } => show(&server, &format!("/v1/agents/{id}/trust")).await,
        TrustCommand::History { server, id, since } => {
            let query = since
                .map(|s| serde_urlencoded::to_string([("since", s)]))
                .transpose()?
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            show(&server, &format!("/v1/agents/{id}/trust/history{query}")).await
        }
        TrustCommand::Replay { since, agent, json } => {
            replay::run(load_config(db)?, &since, agent.as_deref(), json).await
        }
        TrustCommand::List { server, team } => {
            let path = match team {
                Some(t) => format!("/v1/trust?{}", serde_urlencoded::to_string([("team", t)])?),
                None => "/v1/trust".into(),
            };
            show(&server, &path).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse() {
        assert_eq!(
            parse_grant("deploy:staging:*:medium").unwrap()["max_risk"],
            "medium"
        );
        assert!(parse_grant("deploy:staging").is_err());
    }
}
