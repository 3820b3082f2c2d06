//! The tier controller: reads an agent's record, applies the pure rules of
//! [`warden_core::tiering`], and writes what they decide.

use std::sync::Arc;
use std::time::Duration;

use warden_core::audit::{Actor, AuditRecord};
use warden_core::clock::{SharedClock, format_micros, parse_micros};
use warden_core::error::{Error, Kind as ErrorKind, Result};
use warden_core::identity::{Agent, AgentStatus};
use warden_core::policy::{CompiledPolicy, RiskLevel};
use warden_core::records::{EvidenceDelta, TierChange};
use warden_core::tiering::*;
use warden_core::trust::{Kind, Total, Trust, assess, half_life_us};
use warden_store::{Change, IdentityWrite, Store, TrustWrite, Write};

use crate::records::Event;
use crate::services::notify::Outbox;

/// The writes that record a tier change (its history row, and a `tier.changed` delivery per
/// endpoint that wants it) and the event's data, for the audit record.
pub fn tier_changed(
    outbox: &Outbox,
    change: &TierChange,
    status: AgentStatus,
    now: i64,
) -> Result<(Vec<Write>, serde_json::Value)> {
    let mut data = serde_json::to_value(change).map_err(Error::internal)?;
    data["status"] = serde_json::json!(status);
    let mut writes = outbox.writes(&Event::new("tier.changed", now, data.clone()), now);
    writes.push(Write::Trust(TrustWrite::RecordTierChange(change.clone())));
    Ok((writes, data))
}

/// What set off a review.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// The periodic sweep.
    Sweep,
    /// An outcome (reported or overdue); `bad` when it was not a success.
    Outcome {
        /// Failed, rolled back or never reported.
        bad: bool,
    },
    /// A hard trigger known from the evidence itself (a critical rollback).
    Hard(HardTrigger),
    /// A violation: its reason code and action class.
    Violation {
        /// Reason code.
        reason: String,
        /// Action class.
        class: String,
    },
}

/// Reads an agent's record, applies the tier policy, and writes what it decides: the agent's
/// new tier (compare-and-set on its version, so replicas never apply one change twice), the
/// change in its history, an audit record and a `tier.changed` event, in one transaction.
#[derive(Debug, Clone)]
pub struct Controller {
    store: Store,
    policy: Arc<CompiledPolicy>,
    clock: SharedClock,
    outbox: Arc<Outbox>,
}

/// What the controller sees of an agent now.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The agent.
    pub agent: Agent,
    /// Its running totals.
    pub totals: Vec<Total>,
    /// Its trust.
    pub trust: Trust,
    /// Outcomes over the error budget's window.
    pub budget: Window,
    /// Outcomes over the fast-burn window.
    pub burn: Window,
    /// The parent's tier.
    pub parent_tier: Option<u8>,
    /// As of, Unix microseconds.
    pub now: i64,
}

impl Assessment {
    /// The controller's view of the agent.
    pub fn state(&self) -> State<'_> {
        State {
            tier: self.agent.tier,
            ceiling: self.agent.ceiling,
            parent_tier: self.parent_tier,
            pinned: self.agent.pinned,
            suspended: self.agent.status == AgentStatus::Suspended,
            tier_since: parse_micros(&self.agent.tier_since).unwrap_or(0),
            hold_until: self.agent.hold_until,
            last_hard_at: self.agent.last_hard_at,
            totals: &self.totals,
            drift: self.trust.drift.as_ref().map(|d| d.score),
        }
    }
}

impl Controller {
    /// A controller over the store, with the policy's tier and trust settings.
    pub fn new(
        store: Store,
        policy: Arc<CompiledPolicy>,
        clock: SharedClock,
        outbox: Arc<Outbox>,
    ) -> Controller {
        Controller {
            store,
            policy,
            clock,
            outbox,
        }
    }

    fn tiering(&self) -> &TierPolicy {
        &self.policy.policy.tiering
    }

    /// One piece of evidence (or, with `delta` -1, taking one back) as a write.
    pub fn evidence(
        &self,
        agent: &str,
        environment: &str,
        risk: RiskLevel,
        kind: Kind,
        at: i64,
        delta: i64,
    ) -> EvidenceDelta {
        EvidenceDelta {
            agent_id: agent.to_string(),
            environment: environment.to_string(),
            risk,
            kind,
            at,
            delta,
            half_life_us: half_life_us(&self.policy.policy.trust),
        }
    }

    /// The write noting the agent's score with the evidence written before it in the same
    /// change, so decisions answer with the new score at no extra commit.
    pub fn note(&self, agent: &Agent) -> Write {
        Write::Trust(TrustWrite::NoteTrust {
            agent_id: agent.id.clone(),
            tier: agent.tier,
            at: self.clock.now_micros(),
            policy: self.policy.policy.trust.clone(),
        })
    }

    /// Everything the controller looks at for one agent, as of now. The error budget costs a
    /// query, so unless `budget` asks for it, it is read only where it can matter (the agent is
    /// above the budget's cap, or its score reaches the next tier's bar); the fast burn only when
    /// `burn` asks (after a bad outcome).
    pub async fn assess(&self, agent: Agent, budget: bool, burn: bool) -> Result<Assessment> {
        let now = self.clock.now_micros();
        let tp = self.tiering();
        let totals = self.store.trust_totals(&agent.id).await?;
        let mut trust = assess(&totals, now, &self.policy.policy.trust);
        trust.drift = self.store.latest_drift(&agent.id).await?;
        let ago = |days: f64| now.saturating_sub((days * DAY_US) as i64);
        let matters = agent.tier > tp.budget_cap_tier
            || tp
                .step(agent.tier + 1)
                .is_some_and(|s| trust.score >= s.bar);
        let budget = if budget || matters {
            self.store
                .outcome_window(&agent.id, ago(tp.slo_window_days))
                .await?
        } else {
            Window::default()
        };
        let burn = if burn {
            self.store
                .outcome_window(&agent.id, ago(tp.fast_burn_window_hours / 24.0))
                .await?
        } else {
            Window::default()
        };
        let parent_tier = match &agent.parent {
            Some(p) => self.store.agent(p).await?.map(|a| a.tier),
            None => None,
        };
        Ok(Assessment {
            agent,
            totals,
            trust,
            budget,
            burn,
            parent_tier,
            now,
        })
    }

    /// The next promotion and its gates, with the spread of successes measured when the other gates hold.
    pub async fn next_promotion(&self, a: &Assessment) -> Result<Option<NextPromotion>> {
        let spread = self.measured_spread(a).await?;
        Ok(next_promotion(
            &a.state(),
            a.budget,
            a.now,
            self.tiering(),
            &self.policy.policy.trust,
            spread,
        ))
    }

    /// The spread of qualifying successes for the next promotion, measured (a query) only when
    /// every other gate holds.
    async fn measured_spread(&self, a: &Assessment) -> Result<Option<Spread>> {
        let Some(cheap) = next_promotion(
            &a.state(),
            a.budget,
            a.now,
            self.tiering(),
            &self.policy.policy.trust,
            None,
        ) else {
            return Ok(None);
        };
        if !cheap
            .gates
            .iter()
            .filter(|g| g.gate != "spread")
            .all(|g| g.met)
        {
            return Ok(None);
        }
        let Some(step) = self.tiering().step(cheap.tier) else {
            return Ok(None);
        };
        let risks: Vec<RiskLevel> = [
            RiskLevel::Low,
            RiskLevel::Medium,
            RiskLevel::High,
            RiskLevel::Critical,
        ]
        .into_iter()
        .filter(|r| *r >= step.min_risk)
        .collect();
        // Successes older than three half-lives weigh under an eighth: they no longer spread anything.
        let since = a
            .now
            .saturating_sub((self.policy.policy.trust.half_life_days * 3.0 * DAY_US) as i64);
        Ok(Some(
            self.store
                .success_spread(&a.agent.id, since, &step.environment, &risks)
                .await?,
        ))
    }

    /// Reviews one agent after new evidence or on the periodic sweep, and writes any change.
    /// Returns the change made, if any.
    pub async fn review(&self, agent_id: &str, trigger: Trigger) -> Result<Option<TierChange>> {
        let tp = self.tiering().clone();
        // A concurrent change to the agent (an admin, another replica) makes the write conflict: look again.
        for _ in 0..3 {
            let Some(agent) = self.store.agent_fresh(agent_id).await? else {
                return Ok(None);
            };
            let quiet = !tp.enabled || agent.pinned || agent.status == AgentStatus::Suspended;
            if quiet && matches!(trigger, Trigger::Sweep | Trigger::Outcome { .. }) {
                return Ok(None);
            }
            let a = self
                .assess(agent, false, trigger == Trigger::Outcome { bad: true })
                .await?;
            let hard = match &trigger {
                Trigger::Sweep | Trigger::Outcome { .. } => None,
                Trigger::Hard(h) => Some(*h),
                Trigger::Violation { reason, class } => {
                    let blocked = self
                        .store
                        .blocked_violations(
                            agent_id,
                            a.now
                                .saturating_sub((tp.repeated_violation_days * DAY_US) as i64),
                        )
                        .await?;
                    HardTrigger::of_violation(reason, class, blocked, &tp)
                }
            };
            let spread = if hard.is_some() {
                None
            } else {
                self.measured_spread(&a).await?
            };
            let state = a.state();
            let review = Review {
                state: &state,
                hard,
                budget: a.budget,
                burn: a.burn,
                spread,
            };
            let decided = decide(&review, a.now, &tp, &self.policy.policy.trust);
            match self.write(&a, hard, decided).await {
                Err(e) if e.kind == ErrorKind::Conflict => continue,
                other => return other,
            }
        }
        Ok(None)
    }

    async fn write(
        &self,
        a: &Assessment,
        hard: Option<HardTrigger>,
        decided: Option<Move>,
    ) -> Result<Option<TierChange>> {
        let now = a.now;
        let before = &a.agent;
        let mut after = before.clone();
        if hard.is_some() && self.tiering().enabled {
            after.last_hard_at = Some(now);
        }
        let (reason, text) = match &decided {
            Some(Move::Tier {
                to,
                reason,
                text,
                cool_down,
            }) => {
                after.tier = *to;
                after.tier_since = format_micros(now);
                if *cool_down {
                    after.hold_until =
                        Some(now.saturating_add((self.tiering().cool_down_days * DAY_US) as i64));
                }
                (reason.clone(), text.clone())
            }
            Some(Move::Suspend { text }) => {
                after.status = AgentStatus::Suspended;
                ("fast_burn".to_string(), text.clone())
            }
            None if hard.is_some() => {
                // Already at or below the hard-trigger tier: no change, but no promotion for a while.
                after.hold_until =
                    Some(now.saturating_add((self.tiering().cool_down_days * DAY_US) as i64));
                (
                    hard.map(HardTrigger::code).unwrap_or_default().to_string(),
                    String::new(),
                )
            }
            None => return Ok(None),
        };
        after.updated_at = format_micros(now);
        after.version = before.version + 1;
        let actor = Actor::warden();
        let evidence = serde_json::json!({"trust": a.trust, "error_budget": a.budget, "fast_burn": a.burn, "hard_trigger": hard});
        let mut writes = vec![Write::Identity(IdentityWrite::UpdateAgent {
            agent: after.clone(),
            expected_version: before.version,
            at: now,
        })];
        let mut change = None;
        let record = if decided.is_some() {
            let c = TierChange {
                id: uuid::Uuid::now_v7().to_string(),
                agent: before.id.clone(),
                at: format_micros(now),
                from: before.tier,
                to: after.tier,
                reason,
                text,
                actor: "warden".into(),
                score: Some(a.trust.score),
                evidence,
            };
            let (more, data) = tier_changed(&self.outbox, &c, after.status, now)?;
            writes.extend(more);
            change = Some(c);
            AuditRecord {
                agent: Some(before.id.clone()),
                ..AuditRecord::change(
                    actor,
                    "tier.changed",
                    format!("agent:{}", before.id),
                    data,
                    now,
                )
            }
        } else {
            let details = serde_json::json!({"hard_trigger": reason, "tier": before.tier, "hold_until": after.hold_until.map(format_micros), "evidence": evidence});
            AuditRecord {
                agent: Some(before.id.clone()),
                ..AuditRecord::change(
                    actor,
                    "trust.hard_trigger",
                    format!("agent:{}", before.id),
                    details,
                    now,
                )
            }
        };
        self.store
            .commit(Change {
                writes,
                audit: vec![record],
            })
            .await?;
        if change.is_some() {
            self.outbox.notify();
        }
        Ok(change)
    }

    /// Reviews every active agent: promotions that only waited for time, and demotions as
    /// evidence fades. One step of the periodic task (see [`crate::jobs`]), every
    /// `review_interval_secs`.
    pub async fn sweep(&self) -> Result<()> {
        if !self.tiering().enabled {
            return Ok(());
        }
        for id in self.store.active_agent_ids().await? {
            if let Err(e) = self.review(&id, Trigger::Sweep).await {
                tracing::warn!(agent = %id, error = %e.message, "tier review failed");
            }
        }
        Ok(())
    }

    /// How often the sweep runs.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.tiering().review_interval_secs)
    }
}
