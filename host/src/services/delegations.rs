//! Delegations: a human, with their own credentials (an approver token that names them),
//! lets an agent act for them; they or an admin revoke it. A decision that names a human is
//! proven by such a delegation, or by a trusted service vouching for the human in the same
//! call (`[delegation] vouching_services`); the rule on an unproven claim is in the core.

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditRecord};
use crate::delegation::{Delegation, DelegationRequest, HumanProof};
use crate::error::{Error, Result};
use crate::identity::{Caller, Role};
use crate::store::{Change, DelegationWrite, Store, Write};

/// `[delegation]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelegationConfig {
    /// Service tokens (by subject) trusted to vouch for the human they name: the chat
    /// platform's integration, which has authenticated the human itself.
    pub vouching_services: Vec<String>,
}

/// A human delegates to an agent: only the human, with their own approver token.
pub async fn give(
    store: &Store,
    caller: &Caller,
    request: DelegationRequest,
    now: i64,
) -> Result<Delegation> {
    caller.require(&[Role::Approver])?;
    let who = caller.subject.clone().unwrap_or_default();
    store.human(&who).await?.ok_or_else(|| {
        Error::forbidden(
            "delegator_unknown",
            format!("only a registered human delegates; `{who}` is not one"),
        )
    })?;
    let delegation = request.delegation(uuid::Uuid::now_v7().to_string(), &who, now)?;
    store.agent(&delegation.agent).await?.ok_or_else(|| {
        Error::not_found("unknown_agent", format!("no agent `{}`", delegation.agent)).at("agent")
    })?;
    let record = AuditRecord {
        agent: Some(delegation.agent.clone()),
        ..AuditRecord::change(
            Actor::of(caller),
            "delegation.given",
            format!("delegation:{}", delegation.id),
            serde_json::to_value(&delegation).map_err(Error::internal)?,
            now,
        )
    };
    store
        .commit(Change {
            writes: vec![Write::Delegation(DelegationWrite::Insert {
                delegation: delegation.clone(),
                at: now,
            })],
            audit: vec![record],
        })
        .await?;
    Ok(delegation)
}

/// Delegations a caller may see: a human their own, an agent those to it, admins all.
pub async fn list(
    store: &Store,
    caller: &Caller,
    human: Option<String>,
    agent: Option<String>,
    live_at: Option<i64>,
) -> Result<Vec<Delegation>> {
    let own = caller.subject.clone();
    let (human, agent) = match caller.role {
        Role::Admin => (human, agent),
        Role::Approver => (own, agent),
        Role::Agent => (human, own),
        Role::Service => {
            return Err(Error::forbidden(
                "forbidden_role",
                "a service token may not list delegations",
            ));
        }
    };
    Ok(store
        .delegations(human.as_deref(), agent.as_deref(), live_at, 1000)
        .await?)
}

/// Revokes a delegation: the human who gave it, or an admin.
pub async fn revoke(store: &Store, caller: &Caller, id: &str, now: i64) -> Result<Delegation> {
    caller.require(&[Role::Approver, Role::Admin])?;
    let unknown = || Error::not_found("unknown_delegation", format!("no delegation `{id}`"));
    let delegation = store.delegation(id).await?.ok_or_else(unknown)?;
    if caller.role == Role::Approver && caller.subject.as_deref() != Some(&delegation.human) {
        // Another human's delegation does not exist for this caller.
        return Err(unknown());
    }
    let record = AuditRecord {
        agent: Some(delegation.agent.clone()),
        ..AuditRecord::change(
            Actor::of(caller),
            "delegation.revoked",
            format!("delegation:{id}"),
            serde_json::json!({"delegation_id": id, "human": delegation.human, "agent": delegation.agent}),
            now,
        )
    };
    store
        .commit(Change {
            writes: vec![Write::Delegation(DelegationWrite::Revoke {
                id: id.to_string(),
                by: caller.actor_id(),
                at: now,
            })],
            audit: vec![record],
        })
        .await?;
    Ok(store.delegation(id).await?.unwrap_or(delegation))
}

/// What proves that `agent`, asked about by `caller`, acts for `human` in this action.
pub async fn prove(
    store: &Store,
    config: &DelegationConfig,
    caller: &Caller,
    (human, agent): (&str, &str),
    action: (&str, &str, &str),
    now: i64,
) -> Result<HumanProof> {
    if caller.role == Role::Service
        && let Some(service) = caller
            .subject
            .as_ref()
            .filter(|s| config.vouching_services.contains(s))
    {
        return Ok(HumanProof::Vouched(service.clone()));
    }
    let live = store
        .delegations(Some(human), Some(agent), Some(now), 1000)
        .await?;
    Ok(live
        .into_iter()
        .find(|d| d.covers(action, now))
        .map_or(HumanProof::Unproven, |d| HumanProof::Delegated(d.id)))
}
