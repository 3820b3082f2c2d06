//! `/v1/agents`: agents as service accounts of their own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json, Query};
use crate::audit::{Actor, AuditRecord};
use crate::clock::format_micros;
use crate::engine::MAX_PARENT_DEPTH;
use crate::error::{Error, ErrorBody, Kind, Result};
use crate::identity::{Agent, AgentCreate, AgentPatch, AgentStatus, Caller, Role};
use crate::store::{Change, TierChange, Write};
use crate::tiers::tier_changed;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_agent, list_agents)).routes(routes!(get_agent, patch_agent))
}

/// The audit actor for an admin or other human-held token.
pub(super) fn actor(caller: &Caller) -> Actor {
    Actor { kind: caller.role.actor_kind().to_string(), id: caller.actor_id(), tool: None, model: None, token_id: Some(caller.token_id.clone()) }
}

/// An audit record for an identity change made by `caller`.
pub(super) fn change_record(caller: &Caller, event: &str, target: String, agent: Option<String>, details: serde_json::Value, now: i64) -> AuditRecord {
    AuditRecord { agent, authorizing_human: caller.subject.clone(), ..AuditRecord::change(actor(caller), event, target, details, now) }
}

/// Checks that the parent exists and that attaching it makes no loop or over-deep chain.
async fn check_parent(state: &AppState, agent: &Agent) -> Result<()> {
    let mut next = agent.parent.clone();
    let mut depth = 0;
    while let Some(id) = next {
        if id == agent.id {
            return Err(Error::field("parent", "this parent would make the agent its own ancestor"));
        }
        depth += 1;
        if depth > MAX_PARENT_DEPTH {
            return Err(Error::field("parent", format!("parent chains are limited to {MAX_PARENT_DEPTH} levels")));
        }
        let parent = state.store.agent(&id).await?;
        let Some(parent) = parent else {
            return Err(Error::field("parent", format!("no agent `{id}`")));
        };
        next = parent.parent;
    }
    Ok(())
}

/// Register an agent. It starts at tier 1 (sandbox) unless told otherwise, never above its ceiling.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentCreate, security(("bearer" = [])),
    responses((status = 201, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "The id exists", body = ErrorBody)))]
async fn create_agent(State(state): State<AppState>, caller: Caller, Json(req): Json<AgentCreate>) -> Result<(StatusCode, axum::Json<Agent>)> {
    caller.require(&[Role::Admin])?;
    let now = state.clock.now_micros();
    let agent = Agent {
        id: req.id,
        tool: req.tool,
        model: req.model,
        team: req.team,
        sponsor: req.sponsor,
        tier: req.tier.unwrap_or(1),
        ceiling: req.ceiling.unwrap_or(2),
        parent: req.parent,
        status: AgentStatus::Active,
        shadow: req.shadow.unwrap_or(false),
        pinned: false,
        tier_since: format_micros(now),
        trust_score: None,
        hold_until: None,
        last_hard_at: None,
        quota_overrides: Default::default(),
        created_at: format_micros(now),
        updated_at: format_micros(now),
        version: 1,
    };
    agent.validate()?;
    check_parent(&state, &agent).await?;
    let record = change_record(&caller, "agent.created", format!("agent:{}", agent.id), Some(agent.id.clone()), serde_json::json!({ "agent": agent }), now);
    state.store.commit(Change { writes: vec![Write::InsertAgent(agent.clone())], audit: vec![record] }).await?;
    Ok((StatusCode::CREATED, axum::Json(agent)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListAgents {
    /// Only this team's agents.
    team: Option<String>,
}

/// List agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(ListAgents), security(("bearer" = [])),
    responses((status = 200, body = [Agent]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_agents(State(state): State<AppState>, caller: Caller, Query(q): Query<ListAgents>) -> Result<axum::Json<Vec<Agent>>> {
    caller.require(&[Role::Admin, Role::Approver, Role::Service])?;
    Ok(axum::Json(state.store.agents(q.team.as_deref()).await?))
}

/// One agent. An agent's token may read only itself.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_agent(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<axum::Json<Agent>> {
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(id.as_str()) {
        return Err(Error::forbidden("acting_for_another_agent", "an agent may only read itself"));
    }
    let agent = state.store.agent(&id).await?.ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{id}`")))?;
    Ok(axum::Json(agent))
}

/// Change an agent: tier, ceiling, parent, status (suspend/resume), shadow mode, details.
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)), request_body = AgentPatch, security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Changed concurrently; retry", body = ErrorBody)))]
async fn patch_agent(State(state): State<AppState>, caller: Caller, Path(id): Path<String>, Json(patch): Json<AgentPatch>) -> Result<axum::Json<Agent>> {
    caller.require(&[Role::Admin])?;
    // A new parent must exist and make no loop.
    if let Some(Some(parent)) = &patch.parent {
        let mut probe = state.store.agent_fresh(&id).await?.ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{id}`")))?;
        probe.parent = Some(parent.clone());
        check_parent(&state, &probe).await?;
    }
    let agent = update_agent(&state, &id, |before: &Agent, now| {
        let mut after = before.clone();
        after.apply(patch.clone());
        after.validate()?;
        let (mut writes, mut records) = (Vec::new(), Vec::new());
        if after.tier != before.tier {
            // A human's tier change is history too, and restarts the time in tier.
            after.tier_since = format_micros(now);
            let change = TierChange {
                id: uuid::Uuid::now_v7().to_string(),
                agent: id.clone(),
                at: format_micros(now),
                from: before.tier,
                to: after.tier,
                reason: "admin".into(),
                text: format!("set by {}", caller.actor_id()),
                actor: caller.actor_id(),
                score: before.trust_score,
                evidence: serde_json::json!({"trust_score": before.trust_score}),
            };
            let (more, data) = tier_changed(state.engine.outbox(), &change, after.status, now)?;
            writes = more;
            records.push(change_record(&caller, "tier.changed", format!("agent:{id}"), Some(id.clone()), data, now));
        }
        let details = serde_json::json!({ "before": before, "after": after });
        records.insert(0, change_record(&caller, "agent.updated", format!("agent:{id}"), Some(id.clone()), details, now));
        Ok((after, writes, records))
    })
    .await?;
    state.engine.outbox().notify();
    Ok(axum::Json(agent))
}

/// Changes an agent with a compare-and-set on its version: `edit` computes the new state (and
/// any other writes and audit records) from the current one; a concurrent change makes it start
/// again from the fresh state.
pub(super) async fn update_agent(
    state: &AppState,
    id: &str,
    mut edit: impl FnMut(&Agent, i64) -> Result<(Agent, Vec<Write>, Vec<AuditRecord>)>,
) -> Result<Agent> {
    for _ in 0..3 {
        let before = state.store.agent_fresh(id).await?.ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{id}`")))?;
        let now = state.clock.now_micros();
        let (mut after, more, audit) = edit(&before, now)?;
        after.updated_at = format_micros(now);
        after.version = before.version + 1;
        let mut writes = vec![Write::UpdateAgent { agent: after.clone(), expected_version: before.version, at: now }];
        writes.extend(more);
        match state.store.commit(Change { writes, audit }).await {
            Ok(()) => return Ok(after),
            Err(e) if e.kind == Kind::Conflict => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::new(Kind::Conflict, "changed_concurrently", format!("agent `{id}` kept changing underneath this update; retry")))
}
