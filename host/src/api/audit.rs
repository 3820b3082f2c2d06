//! `GET /v1/audit`: the audit trail, filtered.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Query};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::audit::AuditEntry;
use crate::clock::parse_moment;
use crate::identity::{Caller, Role};
use crate::store::AuditFilter;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// `agent`, `human`, `service` or `admin`.
    actor_kind: Option<String>,
    /// Records concerning this agent.
    agent: Option<String>,
    /// Environment of the action.
    environment: Option<String>,
    /// Action class.
    action_class: Option<String>,
    /// Event type (`decision`, `agent.created`, …).
    event_type: Option<String>,
    /// At or after this time (RFC 3339, or a span before now: `30d`, `12h`, `15m`).
    since: Option<String>,
    /// Before this time (RFC 3339, or a span before now).
    until: Option<String>,
    /// Page after this sequence number (use the previous page's `next_after`).
    after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    limit: Option<i64>,
}

/// A page of audit records.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct AuditPage {
    /// Records in chain order.
    pub records: Vec<serde_json::Value>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// An optional time query parameter (RFC 3339, or a span before now: `30d`, `12h`, `15m`) as
/// Unix microseconds; 400 naming the field if malformed.
pub(super) fn time(field: &str, value: &Option<String>, now: i64) -> Result<Option<i64>> {
    value
        .as_deref()
        .map(|v| {
            parse_moment(v, now).ok_or_else(|| {
                Error::field(
                    field,
                    format!("`{v}` is neither an RFC 3339 time nor a span such as 30d, 12h or 15m"),
                )
            })
        })
        .transpose()
}

/// Query the audit trail (admins and approvers).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>> {
    caller.require(&[Role::Admin, Role::Approver])?;
    super::one_of(
        "actor_kind",
        &q.actor_kind,
        &["agent", "human", "service", "admin"],
    )?;
    let limit = super::page_limit(q.limit)?;
    let filter = AuditFilter {
        actor_kind: q.actor_kind,
        agent: q.agent,
        environment: q.environment,
        action_class: q.action_class,
        event_type: q.event_type,
        since: time("since", &q.since, state.clock.now_micros())?,
        until: time("until", &q.until, state.clock.now_micros())?,
        after_seq: q.after,
        // One more than asked tells whether another page exists.
        limit: limit + 1,
    };
    let mut entries: Vec<AuditEntry> = state.store.audit(&filter).await?;
    let next_after = super::next_page(&mut entries, limit, |e| e.seq);
    let records = entries
        .into_iter()
        .map(|e| serde_json::to_value(e).map_err(Error::internal))
        .collect::<Result<_>>()?;
    Ok(axum::Json(AuditPage {
        records,
        next_after,
    }))
}
