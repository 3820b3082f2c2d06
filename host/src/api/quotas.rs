//! `GET /v1/agents/{id}/quotas`: an agent's quotas and what it has used of them now.
//! `PUT /v1/agents/{id}/quotas`: an admin's per-agent limits.

use super::auth::{Admins, Allowed};
use std::collections::BTreeMap;

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::identity::{Agent, Caller, Role};
use crate::quotas::{Charge, Counting, Headroom, Unit, Window, limit_of, window_at};
use crate::services::quotas;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_quotas, put_quotas))
}

/// One quota of an agent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct AgentQuota {
    /// Quota name.
    pub quota: String,
    /// `calls` or `usd`.
    pub unit: Unit,
    /// `allowed` (actions allowed) or `requests` (every request: a rate limit).
    pub counts: Counting,
    /// `minute`, `hour` or `day` (calendar, in the policy's time zone).
    pub window: Window,
    /// The limit, or null for none.
    pub limit: Option<f64>,
    /// Where the limit comes from: `tier`, `team` or `agent`.
    pub source: String,
    /// Use in the current window, per scope (`*`, or each service for per-service quotas).
    pub usage: Vec<Headroom>,
}

/// An agent's quotas.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct AgentQuotas {
    /// The agent.
    pub agent: String,
    /// Its tier (the tier's limits apply unless overridden).
    pub tier: u8,
    /// Whether quotas are enforced.
    pub enabled: bool,
    /// The time zone of daily windows.
    pub time_zone: String,
    /// Every quota.
    pub quotas: Vec<AgentQuota>,
    /// The agent's own limits.
    pub overrides: BTreeMap<String, f64>,
}

/// An agent's quotas, limits and use now (admins, approvers and services; an agent may read its own).
#[utoipa::path(get, path = "/v1/agents/{id}/quotas", tag = "agents", params(("id" = String, Path, description = "Agent id")), security(("bearer" = [])),
    responses((status = 200, body = AgentQuotas), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_quotas(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<AgentQuotas>> {
    let unknown = || Error::not_found("unknown_agent", format!("no agent `{id}`"));
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(id.as_str()) {
        return Err(unknown());
    }
    let agent = state.store.agent(&id).await?.ok_or_else(unknown)?;
    Ok(axum::Json(
        view(&state, std::sync::Arc::unwrap_or_clone(agent)).await?,
    ))
}

async fn view(state: &AppState, agent: Agent) -> Result<AgentQuotas> {
    let policy = &state.policy;
    let q = &policy.policy.quotas;
    let now = state.clock.now_micros();
    let mut quotas = Vec::new();
    for quota in &q.quotas {
        let (limit, source) = limit_of(
            quota,
            agent.tier,
            q.teams.get(&agent.team),
            &agent.quota_overrides,
        );
        let window = window_at(quota.window, now, &policy.quota_zone);
        let mut usage = Vec::new();
        if let Some(limit) = limit {
            let mut scopes = state
                .store
                .quota_scopes(&agent.id, &quota.name, window.0)
                .await?;
            if scopes.is_empty() && !quota.per_service {
                scopes.push(("*".into(), 0));
            }
            for (scope, used) in scopes {
                let charge = Charge {
                    quota: quota.name.clone(),
                    scope,
                    window,
                    amount: 0,
                    limit,
                    unit: quota.unit,
                    counts: quota.counts,
                };
                usage.push(charge.headroom(used));
            }
        }
        let show = |l: i64| {
            if quota.unit == Unit::Usd {
                l as f64 / 100.0
            } else {
                l as f64
            }
        };
        quotas.push(AgentQuota {
            quota: quota.name.clone(),
            unit: quota.unit,
            counts: quota.counts,
            window: quota.window,
            limit: limit.map(show),
            source: source.into(),
            usage,
        });
    }
    Ok(AgentQuotas {
        agent: agent.id,
        tier: agent.tier,
        enabled: q.enabled,
        time_zone: q.time_zone.clone(),
        quotas,
        overrides: agent.quota_overrides,
    })
}

/// `PUT /v1/agents/{id}/quotas`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaOverrides {
    /// Quota name → the agent's own limit (calls, or US dollars), or null to fall back to the
    /// team's or the tier's. Quotas not named keep their current override.
    #[schema(value_type = BTreeMap<String, Option<f64>>)]
    pub limits: serde_json::Map<String, serde_json::Value>,
}

/// Set an agent's own limits (admins). Every change is an audit event.
#[utoipa::path(put, path = "/v1/agents/{id}/quotas", tag = "agents", params(("id" = String, Path, description = "Agent id")), request_body = QuotaOverrides,
    security(("bearer" = [])),
    responses((status = 200, body = AgentQuotas), (status = 400, description = "An unknown quota or a bad limit; `field` names it", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn put_quotas(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<String>,
    Json(body): Json<QuotaOverrides>,
) -> Result<axum::Json<AgentQuotas>> {
    let agent = quotas::set_overrides(
        &state.store,
        &state.clock,
        &state.policy,
        &caller,
        &id,
        &body.limits,
    )
    .await?;
    Ok(axum::Json(view(&state, agent).await?))
}
