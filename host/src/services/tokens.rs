//! API tokens: minted at random (or from a bootstrap secret), shown once, stored hashed,
//! revoked at once. The API and the offline `warden token` commands share these, so a token
//! made either way is validated and audited the same.

use crate::audit::{Actor, AuditRecord};
use crate::error::{Error, Result};
use crate::identity::{NewToken, Role, TokenRecord, mint_token, validate_text};
use crate::store::{Change, IdentityWrite, Store, Write};

fn token_record(actor: Actor, event: &str, token: &TokenRecord, now: i64) -> AuditRecord {
    let authorizing_human = if actor.kind == "admin" || actor.kind == "human" {
        Some(actor.id.clone())
    } else {
        None
    };
    let agent = if token.role == Role::Agent {
        token.subject.clone()
    } else {
        None
    };
    let details =
        serde_json::json!({ "role": token.role, "subject": token.subject, "note": token.note });
    AuditRecord {
        agent,
        authorizing_human,
        ..AuditRecord::change(actor, event, format!("token:{}", token.id), details, now)
    }
}

/// Validates and stores a new token; `secret` overrides the random one (bootstrap only).
pub async fn issue(
    store: &Store,
    actor: Actor,
    role: Role,
    subject: Option<String>,
    note: String,
    secret: Option<String>,
    now: i64,
) -> Result<NewToken> {
    if !note.is_empty() {
        validate_text("note", &note, 256)?;
    }
    match (role, &subject) {
        (Role::Agent, None) | (Role::Approver, None) => {
            return Err(Error::field(
                "subject",
                format!("a {} token needs a subject", role.as_str()),
            ));
        }
        (Role::Agent, Some(id)) if store.agent(id).await?.is_none() => {
            return Err(Error::field("subject", format!("no agent `{id}`")));
        }
        (Role::Approver, Some(id)) if store.human(id).await?.is_none() => {
            return Err(Error::field("subject", format!("no human `{id}`")));
        }
        (_, Some(s)) => validate_text("subject", s, 128)?,
        _ => {}
    }
    let new = match secret {
        Some(secret) => crate::identity::token_from_secret(secret, role, subject, note, now),
        None => mint_token(role, subject, note, now),
    };
    let record = token_record(actor, "token.created", &new.record, now);
    store
        .commit(Change {
            writes: vec![Write::Identity(IdentityWrite::InsertToken(
                new.record.clone(),
            ))],
            audit: vec![record],
        })
        .await?;
    Ok(new)
}

/// Revokes a token by id.
pub async fn revoke(store: &Store, actor: Actor, id: &str, now: i64) -> Result<()> {
    let token = store
        .token_by_id(id)
        .await?
        .ok_or_else(|| Error::not_found("unknown_token", format!("no token `{id}`")))?;
    let record = token_record(actor, "token.revoked", &token, now);
    store
        .commit(Change {
            writes: vec![Write::Identity(IdentityWrite::RevokeToken {
                id: id.to_string(),
                at: now,
            })],
            audit: vec![record],
        })
        .await?;
    Ok(())
}
