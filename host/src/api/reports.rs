//! `/v1/reports`: weekly behaviour reports, as JSON, HTML, Markdown or CSV.

use super::auth::{Allowed, Readers};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Query};
use crate::api::error::{ErrorBody, Result};
use crate::clock::format_micros;
use crate::report::WeeklyReport;
use crate::services::reports::{self, Format};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(weekly_report))
        .routes(routes!(kept_reports))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct WeeklyQuery {
    /// The ISO week, `2026-W48`; by default the last finished week.
    week: Option<String>,
    /// One team's agents, beside that team's humans.
    team: Option<String>,
    /// One agent, beside its team's humans.
    agent: Option<String>,
    /// `json` (default), `html`, `md` or `csv`.
    format: Option<Format>,
    /// With `format=csv`: the table (`agents`, `outcomes`, … see docs/reports.md).
    table: Option<String>,
}

/// A weekly behaviour report (admins, approvers and services): every figure beside the
/// previous week's. A finished week's kept report is served as it was announced; any other is
/// made now. `format=html` is one self-contained page, `md` Markdown, `csv` one table.
#[utoipa::path(get, path = "/v1/reports/weekly", tag = "reports", params(WeeklyQuery), security(("bearer" = [])),
    responses((status = 200, body = WeeklyReport, description = "The report (JSON; HTML, Markdown or CSV with `format`)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn weekly_report(
    State(state): State<AppState>,
    _: Allowed<Readers>,
    Query(q): Query<WeeklyQuery>,
) -> Result<Response> {
    let week = state.reports.week_of(q.week.as_deref())?;
    let scope = reports::scope_of(q.team, q.agent)?;
    let report = state.reports.report(week, &scope).await?;
    let r = reports::render(&report, q.format.unwrap_or_default(), q.table.as_deref())?;
    let disposition = format!("inline; filename=\"{}\"", r.file_name);
    Ok((
        [
            (CONTENT_TYPE, r.content_type.to_string()),
            (CACHE_CONTROL, "no-store".to_string()),
            (CONTENT_DISPOSITION, disposition),
        ],
        r.body,
    )
        .into_response())
}

/// A kept report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct KeptReport {
    /// The ISO week.
    pub week: String,
    /// `organisation`, `team:<id>` or `agent:<id>`.
    pub scope: String,
    /// When it was made, RFC 3339.
    pub generated_at: String,
}

/// The reports kept by the schedule, newest week first (admins, approvers and services).
#[utoipa::path(get, path = "/v1/reports", tag = "reports", security(("bearer" = [])),
    responses((status = 200, body = Vec<KeptReport>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn kept_reports(
    State(state): State<AppState>,
    _: Allowed<Readers>,
) -> Result<axum::Json<Vec<KeptReport>>> {
    let kept = state.reports.kept(200).await?;
    Ok(axum::Json(
        kept.into_iter()
            .map(|(week, scope, at)| KeptReport {
                week,
                scope,
                generated_at: format_micros(at),
            })
            .collect(),
    ))
}
