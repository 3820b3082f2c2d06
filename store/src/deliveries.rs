//! The store's part for webhook deliveries (the outbox): reads, and how each of its writes is applied.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::records::{Delivery, DeliveryStatus, EventType};

use crate::error::{Conflict, Result};
use crate::writer::{Applied, affected};
use crate::{Arg, Filters, Store, Write, wire};

/// A write to webhook deliveries (the outbox).
#[derive(Debug, Clone)]
pub enum DeliveryWrite {
    /// Queue a webhook delivery (written with the change that caused its event).
    InsertDelivery(Delivery),
    /// Take a due delivery for an attempt until `until`; 409 if another worker has it or it is not due.
    ClaimDelivery {
        /// Delivery id.
        id: String,
        /// Now, Unix microseconds.
        now: i64,
        /// End of the claim, Unix microseconds.
        until: i64,
    },
    /// Record an attempt's result.
    DeliveryAttempted {
        /// Delivery id.
        id: String,
        /// `pending` (retry at `next_attempt_at`), `delivered` or `parked`.
        status: DeliveryStatus,
        /// Attempts so far.
        attempts: i64,
        /// When to retry, Unix microseconds.
        next_attempt_at: i64,
        /// What went wrong, if it did.
        last_error: Option<String>,
        /// When, Unix microseconds.
        at: i64,
        /// The claim this attempt was made under; a result from a lapsed claim is dropped.
        claim: i64,
    },
}

impl From<DeliveryWrite> for Write {
    fn from(w: DeliveryWrite) -> Write {
        Write::Delivery(w)
    }
}

const DELIVERY_COLUMNS: &str = "SELECT id, event_id, event_type, endpoint, body, status, attempts, next_attempt_at, last_error, created_at, delivered_at FROM deliveries";

fn delivery_of(r: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        event_type: wire(r, "event_type", EventType::parse)?,
        endpoint: r.try_get("endpoint")?,
        body: r.try_get("body")?,
        status: wire(r, "status", DeliveryStatus::parse)?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

impl Store {
    /// Deliveries to `endpoints` due now (pending, retry time reached, not claimed), oldest first.
    pub async fn due_deliveries(
        &self,
        now: i64,
        endpoints: &[String],
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = Filters::new(DELIVERY_COLUMNS);
        w.cond(
            "status",
            "=",
            Arg::Text(DeliveryStatus::Pending.as_str().into()),
        );
        w.int("next_attempt_at", "<=", Some(now));
        w.int("claimed_until", "<=", Some(now));
        let first = w.args.len() + 1;
        let placeholders: Vec<String> = (first..first + endpoints.len())
            .map(|i| format!("${i}"))
            .collect();
        w.sql
            .push_str(&format!(" AND endpoint IN ({})", placeholders.join(", ")));
        w.args.extend(endpoints.iter().cloned().map(Arg::Text));
        let rows = w
            .fetch_all(
                &format!(" ORDER BY id LIMIT {}", limit.clamp(1, 1000)),
                &self.pool,
            )
            .await?;
        rows.iter().map(delivery_of).collect()
    }

    /// Deliveries by status and endpoint, oldest first, after an id.
    pub async fn deliveries(
        &self,
        status: Option<&str>,
        endpoint: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let mut w = Filters::new(DELIVERY_COLUMNS);
        w.text("status", &status.map(String::from));
        w.text("endpoint", &endpoint.map(String::from));
        w.text_op("id", ">", after);
        let rows = w
            .fetch_all(
                &format!(" ORDER BY id LIMIT {}", limit.clamp(1, 1001)),
                &self.pool,
            )
            .await?;
        rows.iter().map(delivery_of).collect()
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &DeliveryWrite) -> Applied {
    Ok(match write {
        DeliveryWrite::InsertDelivery(d) => {
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, event_type, endpoint, body, status, attempts, next_attempt_at, claimed_until, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, 0, $7)",
            )
            .bind(&d.id)
            .bind(&d.event_id)
            .bind(d.event_type.as_str())
            .bind(&d.endpoint)
            .bind(&d.body)
            .bind(d.next_attempt_at)
            .bind(d.created_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        DeliveryWrite::ClaimDelivery { id, now, until } => {
            let n =
                sqlx::query("UPDATE deliveries SET claimed_until = $1 WHERE id = $2 AND status = 'pending' AND next_attempt_at <= $3 AND claimed_until <= $3")
                    .bind(*until)
                    .bind(id)
                    .bind(*now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            affected(
                n,
                Conflict::DeliveryTaken,
                format!("delivery `{id}` is not due or another worker has it"),
            )
        }
        DeliveryWrite::DeliveryAttempted {
            id,
            status,
            attempts,
            next_attempt_at,
            last_error,
            at,
            claim,
        } => {
            let n = sqlx::query(
                "UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4, claimed_until = 0, \
                 delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END WHERE id = $6 AND claimed_until = $7",
            )
            .bind(status.as_str())
            .bind(*attempts)
            .bind(*next_attempt_at)
            .bind(last_error)
            .bind(*at)
            .bind(id)
            .bind(*claim)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::ClaimLost,
                format!(
                    "delivery `{id}` was claimed by another worker after this attempt's claim lapsed"
                ),
            )
        }
    })
}
