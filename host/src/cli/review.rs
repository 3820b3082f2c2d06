//! `warden approvals` and `violations`: what humans decide and review, on a running server.

use clap::Subcommand;

use super::{ServerArgs, call, print_json, show, with_query};

#[derive(Debug, Subcommand)]
pub(super) enum ApprovalsCommand {
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
pub(super) enum ViolationsCommand {
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

pub(super) async fn approvals(cmd: ApprovalsCommand) -> anyhow::Result<()> {
    match cmd {
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
        ApprovalsCommand::Show { server, id } => {
            show(&server, &format!("/v1/approvals/{id}")).await
        }
        ApprovalsCommand::Approve {
            server,
            id,
            comment,
        } => answer(&server, &id, "approve", comment).await,
        ApprovalsCommand::Reject {
            server,
            id,
            comment,
        } => answer(&server, &id, "reject", comment).await,
    }
}

/// Approves or rejects (`verb`) an approval request, with the approver's comment.
async fn answer(
    server: &ServerArgs,
    id: &str,
    verb: &str,
    comment: Option<String>,
) -> anyhow::Result<()> {
    let body = serde_json::json!({ "comment": comment });
    let path = format!("/v1/approvals/{id}/{verb}");
    print_json(call(server, reqwest::Method::POST, &path, Some(body)).await?)
}

pub(super) async fn violations(cmd: ViolationsCommand) -> anyhow::Result<()> {
    match cmd {
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
            show(&server, &with_query("/v1/violations", limit, filters)?).await
        }
        ViolationsCommand::Show { server, id } => {
            show(&server, &format!("/v1/violations/{id}")).await
        }
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
    }
}
