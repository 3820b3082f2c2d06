//! `/v1/webhooks/deliveries`: what the outbox sent, is retrying, or parked.

use super::auth::{Admins, Allowed};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Query};
use crate::api::error::{ErrorBody, Result};
use crate::records::Delivery;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_deliveries))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    /// `pending`, `delivered` or `parked`.
    status: Option<String>,
    /// The endpoint's name.
    endpoint: Option<String>,
    /// Page after this delivery id (use the previous page's `next_after`).
    after: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<i64>,
}

/// A page of deliveries, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct DeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<Delivery>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// List webhook deliveries (admins).
#[utoipa::path(get, path = "/v1/webhooks/deliveries", tag = "webhooks", params(DeliveryQuery), security(("bearer" = [])),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_deliveries(
    State(state): State<AppState>,
    _: Allowed<Admins>,
    Query(q): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryPage>> {
    super::one_of("status", &q.status, &["pending", "delivered", "parked"])?;
    let limit = super::page_limit(q.limit)?;
    let mut deliveries = state
        .store
        .deliveries(
            q.status.as_deref(),
            q.endpoint.as_deref(),
            q.after.as_deref(),
            limit + 1,
        )
        .await?;
    let next_after = super::next_page(&mut deliveries, limit, |d| d.id.clone());
    Ok(axum::Json(DeliveryPage {
        deliveries,
        next_after,
    }))
}
