//! `warden delegations`: a human (with their own approver token in `WARDEN_TOKEN`) lets an
//! agent act for them, lists what they gave and revokes it.

use clap::Subcommand;

use super::{ServerArgs, call, print_json, show};

#[derive(Debug, Subcommand)]
pub(super) enum DelegationsCommand {
    /// Let an agent act on your behalf, within a scope, for some hours.
    #[command(
        after_help = "Example:\n  WARDEN_TOKEN=wdn_… warden delegations give chatops --class deploy --environment staging --hours 8"
    )]
    Give {
        #[command(flatten)]
        server: ServerArgs,
        /// The agent.
        agent: String,
        /// An action class (pattern); repeat for more; none for every class.
        #[arg(long = "class")]
        classes: Vec<String>,
        /// An environment (pattern); repeat for more; none for every one.
        #[arg(long = "environment")]
        environments: Vec<String>,
        /// A service (pattern); repeat for more; none for every one.
        #[arg(long = "service")]
        services: Vec<String>,
        /// How long, in hours (at most 2160).
        #[arg(long, default_value_t = 8)]
        hours: i64,
    },
    /// Your delegations (admins: everyone's), newest first.
    #[command(after_help = "Example:\n  warden delegations list --live")]
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only the agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only those neither revoked nor lapsed.
        #[arg(long)]
        live: bool,
    },
    /// Revoke a delegation (yours, or any as an admin).
    #[command(after_help = "Example:\n  warden delegations revoke 019abc…")]
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        /// Delegation id.
        id: String,
    },
}

pub(super) async fn run(cmd: DelegationsCommand) -> anyhow::Result<()> {
    match cmd {
        DelegationsCommand::Give {
            server,
            agent,
            classes,
            environments,
            services,
            hours,
        } => {
            let body = serde_json::json!({"agent": agent, "classes": classes,
                "environments": environments, "services": services, "hours": hours});
            let given = call(
                &server,
                reqwest::Method::POST,
                "/v1/delegations",
                Some(body),
            );
            print_json(given.await?)
        }
        DelegationsCommand::List {
            server,
            agent,
            live,
        } => {
            let mut query = vec![("live", live.to_string())];
            query.extend(agent.map(|a| ("agent", a)));
            let path = format!("/v1/delegations?{}", serde_urlencoded::to_string(&query)?);
            show(&server, &path).await
        }
        DelegationsCommand::Revoke { server, id } => {
            let path = format!("/v1/delegations/{id}/revoke");
            let body = Some(serde_json::json!({}));
            print_json(call(&server, reqwest::Method::POST, &path, body).await?)
        }
    }
}
