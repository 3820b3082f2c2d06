//! `/v1/baselines`: how the team's humans work, as the anomaly detectors see it.

use super::auth::{Admins, Allowed, Readers};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Query};
use crate::api::error::{ErrorBody, Result};
use crate::baseline::{BaselineRun, HumanBaseline};
use crate::store::BaselineFilter;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_baselines))
        .routes(routes!(recompute))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct BaselineQuery {
    /// Team.
    team: Option<String>,
    /// Service.
    service: Option<String>,
    /// Action class.
    class: Option<String>,
}

/// The newest baselines and the run that made them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct BaselinePage {
    /// The recompute they come from; null before the first.
    pub run: Option<BaselineRun>,
    /// The baselines, by team, service and class.
    pub baselines: Vec<HumanBaseline>,
}

/// The newest human baselines (admin, service and approver tokens).
#[utoipa::path(get, path = "/v1/baselines", tag = "baselines", params(BaselineQuery), security(("bearer" = [])),
    responses((status = 200, body = BaselinePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_baselines(
    State(state): State<AppState>,
    _: Allowed<Readers>,
    Query(q): Query<BaselineQuery>,
) -> Result<axum::Json<BaselinePage>> {
    let Some(run) = state.store.latest_baseline_run().await? else {
        return Ok(axum::Json(BaselinePage {
            run: None,
            baselines: Vec::new(),
        }));
    };
    let filter = BaselineFilter {
        team: q.team,
        service: q.service,
        class: q.class,
    };
    let baselines = state.store.baselines(run.version, &filter).await?;
    Ok(axum::Json(BaselinePage {
        run: Some(run),
        baselines,
    }))
}

/// Recompute every baseline now (admins); answers with the new run.
#[utoipa::path(post, path = "/v1/baselines/recompute", tag = "baselines", security(("bearer" = [])),
    responses((status = 200, body = BaselineRun), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn recompute(
    State(state): State<AppState>,
    _: Allowed<Admins>,
) -> Result<axum::Json<BaselineRun>> {
    Ok(axum::Json(state.baselines.recompute().await?))
}
