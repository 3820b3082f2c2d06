//! Activity in (DESIGN.md, "Human baselines, anomaly and drift"): batches of events from
//! `POST /v1/events`, `warden events import` and the platform receivers, checked one by one,
//! stored once per (source, source id), and counted towards the next baseline recompute.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::activity::{self, ActivityEvent, EventInput, Rejected};
use crate::audit::{Actor, AuditRecord};
use crate::clock::SharedClock;
use crate::error::{Error, Kind, Result};
use crate::identity::{Caller, Role};
use crate::policy::CompiledPolicy;
use crate::records::ConfirmationStatus;
use crate::services::baselines::Baselines;
use crate::services::outcomes::{self, Reporting};
use crate::services::tiering::Controller;
use crate::store::{Change, EventWrite, Store, Write};

/// `[events]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Most events in one `POST /v1/events` (more is a 413).
    pub max_batch: usize,
    /// Largest `POST /v1/events` or receiver body, bytes (more is a 413).
    pub body_limit_bytes: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_batch: 10_000,
            body_limit_bytes: 16 << 20,
        }
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ingested {
    /// Events stored now.
    pub accepted: usize,
    /// Events already stored under the same (source, source id), or repeated in the batch.
    pub duplicates: usize,
    /// Events turned away, each with its index and the field at fault.
    pub rejected: Vec<Rejected>,
    /// Agents' outcomes the platform's events confirmed (or reported first).
    #[serde(default)]
    pub confirmed: usize,
    /// Agents' outcomes the platform's events contradicted (each a violation).
    #[serde(default)]
    pub contradicted: usize,
}

/// Checks each event of a batch; an event that fails is rejected alone.
pub fn check(
    policy: &CompiledPolicy,
    items: Vec<serde_json::Value>,
    now: i64,
) -> (Vec<ActivityEvent>, Vec<Rejected>) {
    let mut good = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match activity::parse_json(item)
            .and_then(|input| activity::validate(input, |c| policy.knows_class(c), now))
        {
            Ok(e) => good.push(e),
            Err(e) => rejected.push(Rejected::new(i, e)),
        }
    }
    (good, rejected)
}

/// Checks typed inputs (an import's parsed lines): the same rules as [`check`].
pub fn check_inputs(
    policy: &CompiledPolicy,
    inputs: Vec<(usize, EventInput)>,
    now: i64,
) -> (Vec<ActivityEvent>, Vec<Rejected>) {
    let mut good = Vec::with_capacity(inputs.len());
    let mut rejected = Vec::new();
    for (i, input) in inputs {
        match activity::validate(input, |c| policy.knows_class(c), now) {
            Ok(e) => good.push(e),
            Err(e) => rejected.push(Rejected::new(i, e)),
        }
    }
    (good, rejected)
}

/// The activity service.
#[derive(Debug, Clone)]
pub struct Events {
    /// The store.
    pub store: Store,
    /// Time.
    pub clock: SharedClock,
    /// Baselines, told how many events came in.
    pub baselines: Baselines,
    /// The policy (what an outcome the platform reports weighs).
    pub policy: Arc<CompiledPolicy>,
    /// The tier controller, which reacts to confirmed and contradicted outcomes.
    pub tiers: Controller,
}

impl Events {
    /// A posted batch (service and admin tokens): at most `max_batch` events (more is a 413),
    /// each checked alone; with `dry_run`, checked and counted, nothing stored.
    pub async fn post(
        &self,
        caller: &Caller,
        items: Vec<serde_json::Value>,
        dry_run: bool,
        max_batch: usize,
    ) -> Result<Ingested> {
        caller.require(&[Role::Service, Role::Admin])?;
        if items.len() > max_batch {
            return Err(Error::new(
                Kind::PayloadTooLarge,
                "batch_too_large",
                format!(
                    "{} events, over the limit of {max_batch} per call (events.max_batch); split the batch",
                    items.len()
                ),
            ));
        }
        let (good, rejected) = check(&self.policy, items, self.clock.now_micros());
        let mut ingested = if dry_run {
            Ingested {
                accepted: good.len(),
                ..Ingested::default()
            }
        } else {
            self.store(Actor::of(caller), good).await?
        };
        ingested.rejected = rejected;
        Ok(ingested)
    }

    /// Stores checked events once each, with one audit record for the batch, and says how
    /// many were new. Nothing is acknowledged before it is durable.
    pub async fn store(&self, actor: Actor, events: Vec<ActivityEvent>) -> Result<Ingested> {
        // Events about an action Warden allowed, with how it ended: the platform's word on it.
        // Duplicates too: a redelivery after a failed confirmation confirms then (a decision
        // already confirmed is skipped).
        let about_decisions: Vec<ActivityEvent> = events
            .iter()
            .filter(|e| e.decision_id.is_some() && e.outcome.is_some())
            .cloned()
            .collect();
        let mut seen = HashSet::with_capacity(events.len());
        let mut fresh: Vec<ActivityEvent> = Vec::with_capacity(events.len());
        let mut duplicates = 0;
        for e in events {
            if seen.insert((e.source.clone(), e.source_id.clone())) {
                fresh.push(e);
            } else {
                duplicates += 1;
            }
        }
        let keys: Vec<(&str, &str)> = fresh
            .iter()
            .map(|e| (e.source.as_str(), e.source_id.as_str()))
            .collect();
        let known = self.store.known_events(&keys).await?;
        drop(keys);
        if !known.is_empty() {
            let before = fresh.len();
            fresh.retain(|e| !known.contains(&(e.source.clone(), e.source_id.clone())));
            duplicates += before - fresh.len();
        }
        let accepted = fresh.len();
        if accepted > 0 {
            let now = self.clock.now_micros();
            let mut sources: Vec<&str> = fresh.iter().map(|e| e.source.as_str()).collect();
            sources.sort_unstable();
            sources.dedup();
            let humans = fresh
                .iter()
                .filter(|e| e.actor_kind == activity::ActorKind::Human)
                .count();
            let details = serde_json::json!({
                "accepted": accepted, "duplicates": duplicates, "humans": humans,
                "agents": accepted - humans, "sources": sources,
            });
            let record =
                AuditRecord::change(actor, "events.ingested", "events".into(), details, now);
            self.store
                .commit(Change {
                    writes: vec![Write::Event(EventWrite::InsertEvents {
                        events: fresh,
                        received_at: now,
                    })],
                    audit: vec![record],
                })
                .await?;
            self.baselines.note_events(accepted as u64);
        }
        let mut ingested = Ingested {
            accepted,
            duplicates,
            ..Ingested::default()
        };
        let reporting = Reporting {
            store: &self.store,
            policy: &self.policy,
            tiers: &self.tiers,
            clock: &self.clock,
        };
        // The events are stored: a confirmation that fails is logged, and the platform's
        // redelivery (or the same event posted again) makes it again.
        for e in &about_decisions {
            match outcomes::confirm(&reporting, e).await {
                Ok(Some(ConfirmationStatus::Confirmed)) => ingested.confirmed += 1,
                Ok(Some(ConfirmationStatus::Contradicted)) => ingested.contradicted += 1,
                Ok(None) => {}
                Err(err) => tracing::warn!(
                    decision = e.decision_id.as_deref().unwrap_or_default(),
                    error = %err.message,
                    "the platform's outcome could not be recorded; a redelivery will try again"
                ),
            }
        }
        Ok(ingested)
    }
}
