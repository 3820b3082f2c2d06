//! `warden token`: API tokens made, listed and revoked straight in the database (it works
//! before any token exists: bootstrapping).

use clap::Subcommand;
use clap::builder::TypedValueParser as _;

use super::{DbArgs, load_config, offline_actor};
use crate::identity::Role;
use crate::server::Warden;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Create a token and print its secret once.
    #[command(
        after_help = "Examples:\n  warden token create --role admin --subject alice\n  warden token create --role agent --subject deploy-bot"
    )]
    Create {
        /// What the token may do.
        #[arg(long, value_parser = role_parser())]
        role: Role,
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

/// The roles' wire names, listed by `--help` and checked by clap.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    clap::builder::PossibleValuesParser::new(["admin", "approver", "service", "agent"])
        .try_map(|name| Role::parse(&name).ok_or("not a role"))
}

pub(super) async fn run(cmd: TokenCommand, db: &DbArgs) -> anyhow::Result<()> {
    let warden = Warden::open_default(load_config(db)?).await?;
    let store = &warden.state.store;
    let now = warden.state.clock.now_micros();
    let result = match cmd {
        TokenCommand::Create {
            role,
            subject,
            note,
        } => {
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
