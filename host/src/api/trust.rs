//! `GET /v1/agents/{id}/trust`: an agent's trust score and what it rests on.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Query};
use crate::clock::format_micros;
use crate::error::{Error, ErrorBody, Result};
use crate::identity::{Caller, Role};
use crate::trust::{Trust, TrustPolicy};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_trust)).routes(routes!(list_trust))
}

/// An agent's trust.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentTrust {
    /// The agent.
    pub agent: String,
    /// Its tier.
    pub tier: u8,
    /// The highest tier it may reach.
    pub ceiling: u8,
    /// The score and its components.
    #[serde(flatten)]
    pub trust: Trust,
    /// How evidence is weighed and forgotten.
    pub policy: TrustPolicy,
    /// When this was computed (RFC 3339).
    pub as_of: String,
}

/// An agent's trust score, components and evidence (admins, approvers and services; an agent
/// may read its own).
#[utoipa::path(get, path = "/v1/agents/{id}/trust", tag = "agents", params(("id" = String, Path, description = "Agent id")), security(("bearer" = [])),
    responses((status = 200, body = AgentTrust), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_trust(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<axum::Json<AgentTrust>> {
    let unknown = || Error::not_found("unknown_agent", format!("no agent `{id}`"));
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(id.as_str()) {
        return Err(unknown());
    }
    let agent = state.store.agent(&id).await?.ok_or_else(unknown)?;
    Ok(axum::Json(assess(&state, agent).await?))
}

async fn assess(state: &AppState, agent: crate::identity::Agent) -> Result<AgentTrust> {
    let policy = state.engine.policy().policy.trust.clone();
    let now = state.clock.now_micros();
    // Evidence twenty half-lives old weighs under a millionth: leave it unread.
    let since = now.saturating_sub((policy.half_life_days * 20.0 * 86_400e6) as i64);
    let evidence = state.store.trust_evidence(&agent.id, since).await?;
    let trust = crate::trust::assess(&evidence, now, &policy);
    Ok(AgentTrust { agent: agent.id, tier: agent.tier, ceiling: agent.ceiling, trust, policy, as_of: format_micros(now) })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct TrustQuery {
    /// Only this team's agents.
    team: Option<String>,
}

/// Every agent's trust, for dashboards (admins, approvers and services), lowest score first.
#[utoipa::path(get, path = "/v1/trust", tag = "agents", params(TrustQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<AgentTrust>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_trust(State(state): State<AppState>, caller: Caller, Query(q): Query<TrustQuery>) -> Result<axum::Json<Vec<AgentTrust>>> {
    caller.require(&[Role::Admin, Role::Approver, Role::Service])?;
    let mut all = Vec::new();
    for agent in state.store.agents(q.team.as_deref()).await? {
        all.push(assess(&state, agent).await?);
    }
    all.sort_by(|a, b| a.trust.score.total_cmp(&b.trust.score).then_with(|| a.agent.cmp(&b.agent)));
    Ok(axum::Json(all))
}
