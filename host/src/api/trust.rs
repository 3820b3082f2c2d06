//! `GET /v1/agents/{id}/trust`: an agent's trust score, tier and what the next promotion still
//! needs. `GET /v1/agents/{id}/trust/history`: its tier changes and daily scores.
//! `GET /v1/trust`: every agent's, for dashboards.

use super::auth::{Allowed, Readers};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Query};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::clock::{format_micros, parse_micros};
use crate::identity::{Agent, AgentStatus, Caller, Role};
use crate::records::{Confirmations, DailyTrust, TierChange};
use crate::tiering::{NextPromotion, Window};
use crate::trust::{Trust, TrustPolicy};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_trust))
        .routes(routes!(trust_history))
        .routes(routes!(list_trust))
}

/// An agent's trust.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct AgentTrust {
    /// The agent.
    pub agent: String,
    /// Its tier.
    pub tier: u8,
    /// The highest tier it may reach.
    pub ceiling: u8,
    /// Active or suspended.
    pub status: AgentStatus,
    /// Whether an admin pinned its tier.
    pub pinned: bool,
    /// In its tier since (RFC 3339).
    pub tier_since: String,
    /// For each tier Warden promoted it into, the classes of the tier's new rights it may use
    /// alone (the others need approval until earned); empty when humans set its tier.
    pub earned_classes: std::collections::BTreeMap<u8, std::collections::BTreeSet<String>>,
    /// The score and its components.
    #[serde(flatten)]
    pub trust: Trust,
    /// Changes over the error budget's window (`policy.tiering.slo_window_days`).
    pub error_budget: Window,
    /// How much of its outcome evidence the platform confirmed, contradicted, or never saw.
    pub confirmations: Confirmations,
    /// The next promotion and every gate it needs (absent at tier 4).
    pub next_promotion: Option<NextPromotion>,
    /// The latest tier changes, newest first.
    pub last_changes: Vec<TierChange>,
    /// How evidence is weighed and forgotten.
    pub policy: TrustPolicy,
    /// When this was computed (RFC 3339).
    pub as_of: String,
}

fn visible(caller: &Caller, id: &str) -> Result<()> {
    if caller.role == Role::Agent && caller.subject.as_deref() != Some(id) {
        return Err(unknown(id));
    }
    Ok(())
}

fn unknown(id: &str) -> Error {
    Error::not_found("unknown_agent", format!("no agent `{id}`"))
}

/// An agent's trust score, components, evidence, tier and what its next promotion still needs
/// (admins, approvers and services; an agent may read its own).
#[utoipa::path(get, path = "/v1/agents/{id}/trust", tag = "agents", params(("id" = String, Path, description = "Agent id")), security(("bearer" = [])),
    responses((status = 200, body = AgentTrust), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_trust(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<AgentTrust>> {
    visible(&caller, &id)?;
    let agent = state.store.agent(&id).await?.ok_or_else(|| unknown(&id))?;
    Ok(axum::Json(
        assess(&state, std::sync::Arc::unwrap_or_clone(agent), true).await?,
    ))
}

async fn assess(state: &AppState, agent: Agent, detail: bool) -> Result<AgentTrust> {
    let tiers = &state.tiers;
    let a = tiers.assess(agent, true, false).await?;
    let (next_promotion, last_changes, confirmations) = if detail {
        (
            tiers.next_promotion(&a).await?,
            state.store.tier_changes(&a.agent.id, 0, 5).await?,
            state.store.confirmations(&a.agent.id).await?,
        )
    } else {
        (None, Vec::new(), Confirmations::default())
    };
    Ok(AgentTrust {
        agent: a.agent.id,
        tier: a.agent.tier,
        ceiling: a.agent.ceiling,
        status: a.agent.status,
        pinned: a.agent.pinned,
        tier_since: a.agent.tier_since,
        earned_classes: a.agent.earned_classes,
        trust: a.trust,
        error_budget: a.budget,
        confirmations,
        next_promotion,
        last_changes,
        policy: state.policy.policy.trust.clone(),
        as_of: format_micros(a.now),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// From this time (RFC 3339); default 90 days ago.
    since: Option<String>,
}

/// An agent's trust history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct TrustHistory {
    /// The agent.
    pub agent: String,
    /// Tier changes, newest first, each with its reason and the evidence behind it.
    pub changes: Vec<TierChange>,
    /// The score and tier at the end of each day with evidence, oldest first.
    pub daily: Vec<DailyTrust>,
}

/// An agent's tier changes and daily scores.
#[utoipa::path(get, path = "/v1/agents/{id}/trust/history", tag = "agents", params(("id" = String, Path, description = "Agent id"), HistoryQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TrustHistory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn trust_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<TrustHistory>> {
    visible(&caller, &id)?;
    state.store.agent(&id).await?.ok_or_else(|| unknown(&id))?;
    let since = match &q.since {
        Some(s) => parse_micros(s)
            .ok_or_else(|| Error::field("since", format!("`{s}` is not an RFC 3339 time")))?,
        None => state.clock.now_micros().saturating_sub(90 * 86_400_000_000),
    };
    let changes = state.store.tier_changes(&id, since, 1000).await?;
    let daily = state.store.trust_daily(&id, since).await?;
    Ok(axum::Json(TrustHistory {
        agent: id,
        changes,
        daily,
    }))
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
async fn list_trust(
    State(state): State<AppState>,
    _: Allowed<Readers>,
    Query(q): Query<TrustQuery>,
) -> Result<axum::Json<Vec<AgentTrust>>> {
    let mut all = Vec::new();
    for agent in state.store.agents(q.team.as_deref()).await? {
        all.push(assess(&state, agent, false).await?);
    }
    all.sort_by(|a, b| {
        a.trust
            .score
            .total_cmp(&b.trust.score)
            .then_with(|| a.agent.cmp(&b.agent))
    });
    Ok(axum::Json(all))
}
