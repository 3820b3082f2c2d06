//! Cutting a flooding agent off (docs/quotas.md, "Rate limits"). Once a request finds its
//! agent over a quota that counts every request (`calls_per_minute`), the agent is refused with
//! a 429 until the window ends, without being judged or written: a runaway loop costs a map
//! lookup per request, not a transaction. Each window's refusals become one audit record
//! (`agent.rate_limited`, with their count) and one piece of trust evidence when it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{Actor, AuditRecord};
use crate::clock::{SharedClock, format_micros};
use crate::error::{Error, Kind, Result};
use crate::identity::Agent;
use crate::metrics::Metrics;
use crate::policy::RiskLevel;
use crate::quotas::Charge;
use crate::services::tiering::Controller;
use crate::store::{Change, Store, TrustWrite, Write};
use crate::trust::Kind as Evidence;

/// How long the edge holds a refusal before sending it (never past the window's end).
pub const HOLD: Duration = Duration::from_secs(1);

/// The agents cut off in this process, and their refusals so far.
#[derive(Debug, Clone)]
pub struct Cutoffs {
    open: Arc<Mutex<Open>>,
    store: Store,
    tiers: Controller,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

/// The windows not yet recorded: each agent's latest, and earlier ones that have ended.
#[derive(Debug, Default)]
struct Open {
    latest: HashMap<String, Cutoff>,
    ended: Vec<Cutoff>,
}

/// One agent's refusals in one window.
#[derive(Debug, Clone)]
struct Cutoff {
    agent: Agent,
    quota: String,
    limit: i64,
    window: (i64, i64),
    environment: String,
    refused: u64,
    first: i64,
    last: i64,
}

impl Cutoff {
    /// The 429 an agent gets while cut off.
    fn refusal(&self, now: i64) -> Error {
        let secs = (self.window.1 - now)
            .max(1)
            .unsigned_abs()
            .div_ceil(1_000_000);
        Error::new(
            Kind::TooManyRequests {
                retry_after_secs: secs,
            },
            "rate_limited",
            format!(
                "agent `{}` used its {} calls of quota `{}` in this window: every request is refused until {}",
                self.agent.id,
                self.limit,
                self.quota,
                format_micros(self.window.1)
            ),
        )
    }

    /// The window's one audit record.
    fn record(&self) -> AuditRecord {
        AuditRecord {
            agent: Some(self.agent.id.clone()),
            team: Some(self.agent.team.clone()),
            ..AuditRecord::change(
                Actor::warden(),
                "agent.rate_limited",
                format!("agent:{}", self.agent.id),
                serde_json::json!({
                    "quota": self.quota,
                    "limit": self.limit,
                    "window_start": format_micros(self.window.0),
                    "window_end": format_micros(self.window.1),
                    "refused": self.refused,
                    "first_refused_at": format_micros(self.first),
                    "last_refused_at": format_micros(self.last),
                }),
                self.window.1,
            )
        }
    }
}

impl Cutoffs {
    /// No agent cut off yet.
    pub fn new(
        store: Store,
        tiers: Controller,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Cutoffs {
        Cutoffs {
            open: Arc::default(),
            store,
            tiers,
            clock,
            metrics,
        }
    }

    /// The 429 for an agent cut off now, counted, and how long until its window ends; `None`
    /// if it is not cut off.
    pub fn refused(&self, agent: &str, now: i64) -> Option<(Error, Duration)> {
        let mut open = self.open.lock().expect("cutoffs lock");
        let cutoff = open.latest.get_mut(agent).filter(|c| now < c.window.1)?;
        cutoff.refused += 1;
        cutoff.last = now;
        self.metrics.rate_limited();
        let until = Duration::from_micros((cutoff.window.1 - now).unsigned_abs());
        Some((cutoff.refusal(now), until))
    }

    /// Cuts `agent` off for the rest of `charge`'s window (the request found it `used` up) and
    /// answers the request that found it.
    pub fn cut(&self, agent: &Agent, charge: &Charge, environment: &str, now: i64) -> Error {
        let mut open = self.open.lock().expect("cutoffs lock");
        let Open { latest, ended } = &mut *open;
        if let Some(old) = latest.remove(&agent.id) {
            if old.window.1 <= now {
                ended.push(old);
            } else {
                // Another request found the same window full meanwhile.
                latest.insert(agent.id.clone(), old);
            }
        }
        let cutoff = latest.entry(agent.id.clone()).or_insert_with(|| Cutoff {
            agent: agent.clone(),
            quota: charge.quota.clone(),
            limit: charge.limit,
            window: charge.window,
            environment: environment.to_string(),
            refused: 0,
            first: now,
            last: now,
        });
        cutoff.refused += 1;
        cutoff.last = now;
        self.metrics.rate_limited();
        cutoff.refusal(now)
    }

    /// Records every window that has ended (all of them with `all`, at shutdown): one audit
    /// record and one piece of trust evidence each, in one transaction per agent. A window whose
    /// commit fails is kept for the next step.
    pub async fn close(&self, all: bool) -> Result<usize> {
        let now = self.clock.now_micros();
        let ended: Vec<Cutoff> = {
            let mut open = self.open.lock().expect("cutoffs lock");
            let Open { latest, ended } = &mut *open;
            latest.retain(|_, c| {
                let done = all || c.window.1 <= now;
                if done {
                    ended.push(c.clone());
                }
                !done
            });
            std::mem::take(ended)
        };
        let mut failed = None;
        let count = ended.len();
        for cutoff in ended {
            let evidence = self.tiers.evidence(
                &cutoff.agent.id,
                &cutoff.environment,
                RiskLevel::Low,
                Evidence::QuotaOverrun,
                cutoff.window.1.min(now),
                1,
            );
            let change = Change {
                writes: vec![
                    Write::Trust(TrustWrite::AddEvidence(evidence)),
                    self.tiers.note(&cutoff.agent),
                ],
                audit: vec![cutoff.record()],
            };
            if let Err(e) = self.store.commit(change).await {
                tracing::warn!(agent = %cutoff.agent.id, error = %e, "cannot record a rate-limited window yet");
                self.open.lock().expect("cutoffs lock").ended.push(cutoff);
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(count),
        }
    }
}
