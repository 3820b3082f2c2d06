//! The tier controller: reads an agent's record, applies the pure rules of
//! [`warden_core::tiering`], and writes what they decide.

use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_core::audit::{Actor, AuditRecord};
use warden_core::clock::{SharedClock, format_micros, parse_micros};
use warden_core::error::{Error, Kind as ErrorKind, Result};
use warden_core::identity::{Agent, AgentStatus};
use warden_core::policy::{CompiledPolicy, RiskLevel, ViolationMode};
use warden_core::records::{EvidenceDelta, TierChange};
use warden_core::replay::{Record, Replayed};
use warden_core::tiering::*;
use warden_core::trust::{Kind, Total, Trust, assess, half_life_us};
use warden_store::{Change, IdentityWrite, Store, TrustWrite, Write};

use crate::records::{Event, EventData, ViolationReason};
use crate::services::coalesce::Coalesce;
use crate::services::notify::Outbox;

/// The writes that record a tier change (its history row, and a `tier.changed` delivery per
/// endpoint that wants it) and the event's data, for the audit record.
pub fn tier_changed(
    outbox: &Outbox,
    change: &TierChange,
    status: AgentStatus,
    now: i64,
) -> (Vec<Write>, serde_json::Value) {
    let event = Event::new(
        now,
        EventData::TierChanged {
            change: change.clone(),
            status,
        },
    );
    let mut writes = outbox.writes(&event, now);
    writes.push(Write::Trust(TrustWrite::RecordTierChange(change.clone())));
    (writes, event.data.to_value())
}

/// How long after a hard trigger that moved nothing the same again is not recorded (an hour).
const HARD_TRIGGER_RESTATED: i64 = 3_600_000_000;

/// Whether a hard trigger now only restates the agent's last, within the hour.
fn restated(agent: &Agent, now: i64) -> bool {
    agent
        .last_hard_at
        .is_some_and(|at| (0..HARD_TRIGGER_RESTATED).contains(&(now - at)))
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
        /// Why it was one.
        reason: ViolationReason,
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
    /// Reviews after a violation, one at a time per agent, reason, class and mode.
    after_violations: Arc<Coalesce<(String, ViolationReason, String, ViolationMode)>>,
    /// At the floor, agents' recent counts of blocked violations short of a repeat.
    short_of_repeat: Arc<ShortOfRepeat>,
}

/// How long a count of an agent's blocked violations short of a repeat answers for the
/// violations it commits that are not blocked (a second: the store's cache of agents is as old).
const SHORT_OF_REPEAT_FOR: i64 = 1_000_000;

/// Agents' counts kept before they are all dropped (a crude bound, as the store's caches have).
const SHORT_OF_REPEAT_CAPACITY: usize = 100_000;

/// Recent counts of agents' blocked violations that were short of a repeat. Only a blocked
/// violation adds to that count (the window only drops old ones), so until the agent commits
/// one, a count stays an upper bound, and a violation allowed in `flag` or `guard` mode at the
/// floor need not count again: an agent flagged thousands of times a second made a count for
/// each batch of them. A blocked violation forgets the agent's count and is always counted
/// afresh, and a count that began before it is not kept. Another replica's blocked violations
/// are reviewed there; here a count is trusted for [`SHORT_OF_REPEAT_FOR`] at most.
#[derive(Debug, Default)]
struct ShortOfRepeat {
    counts: Mutex<HashMap<String, (i64, u64)>>,
    /// Bumped by every forgotten count, so a count read across it is not kept.
    forgotten: AtomicU64,
}

impl ShortOfRepeat {
    /// The agent's count, when made within [`SHORT_OF_REPEAT_FOR`] of `now`.
    fn recent(&self, agent: &str, now: i64) -> Option<u64> {
        let counts = self.counts.lock().expect("short-of-repeat lock");
        counts
            .get(agent)
            .filter(|(at, _)| (0..SHORT_OF_REPEAT_FOR).contains(&(now - at)))
            .map(|(_, n)| *n)
    }

    /// What [`ShortOfRepeat::keep`] is given to tell whether a count began after any forgetting.
    fn epoch(&self) -> u64 {
        self.forgotten.load(Ordering::SeqCst)
    }

    /// Keeps a count made at `now` that began at `epoch`, unless a count was forgotten since.
    fn keep(&self, agent: &str, now: i64, blocked: u64, epoch: u64) {
        let mut counts = self.counts.lock().expect("short-of-repeat lock");
        if self.forgotten.load(Ordering::SeqCst) != epoch {
            return;
        }
        if counts.len() >= SHORT_OF_REPEAT_CAPACITY {
            counts.clear();
        }
        counts.insert(agent.to_string(), (now, blocked));
    }

    /// Forgets the agent's count: it has just committed a blocked violation.
    fn forget(&self, agent: &str) {
        let mut counts = self.counts.lock().expect("short-of-repeat lock");
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        counts.remove(agent);
    }
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
    /// Its latest blocked violation, Unix microseconds.
    pub last_blocked_violation: Option<i64>,
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
            last_blocked_violation: self.last_blocked_violation,
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
            after_violations: Arc::default(),
            short_of_repeat: Arc::default(),
        }
    }

    /// Reviews an agent after a violation it committed: returns once a review that began after
    /// the call has finished, so a hard trigger has narrowed the tier before the agent's next
    /// request. The same violation committed again meanwhile (an agent retrying what it may not
    /// do) shares that review instead of queueing one of its own. An agent that no such review
    /// can narrow ([`violation_can_narrow`]) is not reviewed when its last hard trigger is
    /// within the hour (the review would only restate it, and a trigger is not recorded twice
    /// in an hour), nor when this violation is no hard trigger (one allowed in `flag` mode, say,
    /// with fewer blocked ones in the window than make a repeat; see [`ShortOfRepeat`] for when
    /// that is known without counting): the review could then only widen, and what it could
    /// widen waits for the sweep. A failed review is logged.
    pub async fn review_violation(
        &self,
        agent: &Agent,
        reason: ViolationReason,
        class: &str,
        mode: ViolationMode,
    ) {
        let suspended = agent.status == AgentStatus::Suspended;
        let floor = !violation_can_narrow(agent.tier, agent.pinned, suspended, self.tiering());
        if floor && restated(agent, self.clock.now_micros()) {
            return;
        }
        let key = (agent.id.clone(), reason, class.to_string(), mode);
        self.after_violations
            .run(key, || async {
                let now = self.clock.now_micros();
                // A count that cannot be read leaves the review to look.
                if floor
                    && matches!(
                        self.floor_trigger(&agent.id, reason, class, mode, now).await,
                        Ok(None)
                    )
                {
                    return;
                }
                let trigger = Trigger::Violation {
                    reason,
                    class: class.to_string(),
                };
                if let Err(e) = self.review(&agent.id, trigger).await {
                    tracing::warn!(agent = %agent.id, error = %e.message, "tier review after a violation failed");
                }
            })
            .await
    }

    /// [`Controller::violation_trigger`] at the floor, for a violation committed in `mode`:
    /// one that is not blocked takes a recent count short of a repeat as it is.
    async fn floor_trigger(
        &self,
        agent: &str,
        reason: ViolationReason,
        class: &str,
        mode: ViolationMode,
        now: i64,
    ) -> Result<Option<HardTrigger>> {
        let tp = self.tiering();
        if mode == ViolationMode::Block {
            self.short_of_repeat.forget(agent);
        } else if let Some(blocked) = self.short_of_repeat.recent(agent, now) {
            return Ok(HardTrigger::of_violation(reason, class, blocked, tp));
        }
        let epoch = self.short_of_repeat.epoch();
        let blocked = self.blocked_recently(agent, now).await?;
        if blocked < u64::from(tp.repeated_violations) {
            self.short_of_repeat.keep(agent, now, blocked, epoch);
        }
        Ok(HardTrigger::of_violation(reason, class, blocked, tp))
    }

    /// The hard trigger a violation the agent committed now is, if any: its reason, its class
    /// and how many blocked violations the agent has in the window.
    async fn violation_trigger(
        &self,
        agent: &str,
        reason: ViolationReason,
        class: &str,
        now: i64,
    ) -> Result<Option<HardTrigger>> {
        let blocked = self.blocked_recently(agent, now).await?;
        Ok(HardTrigger::of_violation(
            reason,
            class,
            blocked,
            self.tiering(),
        ))
    }

    /// The agent's blocked violations in the repeat window, counted up to a repeat.
    async fn blocked_recently(&self, agent: &str, now: i64) -> Result<u64> {
        let tp = self.tiering();
        let since = now.saturating_sub((tp.repeated_violation_days * DAY_US) as i64);
        Ok(self
            .store
            .blocked_violations(agent, since, u64::from(tp.repeated_violations))
            .await?)
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
        let last_blocked_violation = self.store.last_blocked_violation(&agent.id).await?;
        Ok(Assessment {
            agent,
            totals,
            trust,
            budget,
            burn,
            parent_tier,
            last_blocked_violation,
            now,
        })
    }

    /// The next promotion and its gates, with the watched work read.
    pub async fn next_promotion(&self, a: &Assessment) -> Result<Option<NextPromotion>> {
        let work = self.watched_work(&a.agent.id, a.now).await?;
        Ok(next_promotion(
            &a.state(),
            a.budget,
            a.now,
            &self.policy,
            Some(&work),
        ))
    }

    /// Why the agent is close to a soft demotion, if it is.
    pub fn demotion_warning(&self, a: &Assessment) -> Option<String> {
        crate::tiering::demotion_warning(&a.state(), a.budget, a.now, &self.policy)
    }

    /// The agent's watched work that still weighs: older than three half-lives, a success
    /// weighs under an eighth and spreads nothing.
    async fn watched_work(&self, agent: &str, now: i64) -> Result<Vec<Watched>> {
        let since =
            now.saturating_sub((self.policy.policy.trust.half_life_days * 3.0 * DAY_US) as i64);
        Ok(self.store.watched_work(agent, since).await?)
    }

    /// The watched work, read (a query) only when every other gate of the next promotion
    /// holds, or when the agent has rights of its tier still to earn.
    async fn work_if_needed(&self, a: &Assessment) -> Result<Option<Vec<Watched>>> {
        let to_earn = a.agent.earned_classes.keys().any(|t| *t <= a.agent.tier);
        let promotable = next_promotion(&a.state(), a.budget, a.now, &self.policy, None)
            .is_some_and(|next| {
                next.gates
                    .iter()
                    .filter(|g| g.gate != "watched_work")
                    .all(|g| g.met)
            });
        if !(to_earn || promotable) {
            return Ok(None);
        }
        Ok(Some(self.watched_work(&a.agent.id, a.now).await?))
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
            let now = self.clock.now_micros();
            let hard = match &trigger {
                Trigger::Sweep | Trigger::Outcome { .. } => None,
                Trigger::Hard(h) => Some(*h),
                Trigger::Violation { reason, class } => {
                    self.violation_trigger(agent_id, *reason, class, now)
                        .await?
                }
            };
            // A hard trigger that cannot move the agent, within the hour of its last: the
            // review would write nothing (see `write`), so it reads nothing more either.
            let unmoved = quiet || agent.tier <= tp.hard_demotion_tier;
            if hard.is_some() && unmoved && restated(&agent, now) {
                return Ok(None);
            }
            let a = self
                .assess(agent, false, trigger == Trigger::Outcome { bad: true })
                .await?;
            let work = if hard.is_some() {
                None
            } else {
                self.work_if_needed(&a).await?
            };
            let state = a.state();
            let review = Review {
                state: &state,
                hard,
                budget: a.budget,
                burn: a.burn,
                work: work.as_deref(),
            };
            let decided = decide(&review, a.now, &self.policy);
            // No move: a restricted tier (this one, or one below it whose rights the agent
            // skipped) may have earned more of its classes meanwhile.
            let earned: BTreeMap<u8, BTreeSet<String>> = match (&decided, &work) {
                (None, Some(work)) => a
                    .agent
                    .earned_classes
                    .iter()
                    .filter(|(t, _)| **t <= a.agent.tier)
                    .map(|(t, have)| (*t, newly_earned(work, *t, have, &self.policy, a.now)))
                    .filter(|(_, more)| !more.is_empty())
                    .collect(),
                _ => BTreeMap::new(),
            };
            if !earned.is_empty() {
                match self.earn(&a, earned).await {
                    Err(e) if e.kind == ErrorKind::Conflict => continue,
                    other => return other.map(|()| None),
                }
            }
            match self.write(&a, hard, decided, work.as_deref()).await {
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
        work: Option<&[Watched]>,
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
                earned,
            }) => {
                after.tier = *to;
                after.tier_since = format_micros(now);
                // Rights of tiers above the new one go with them; a promotion grants its
                // tier's new rights only for the classes it earned.
                after.earned_classes.retain(|tier, _| tier <= to);
                if let Some(earned) = earned {
                    after.earned_classes.insert(*to, earned.clone());
                }
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
            // The same trigger again within the hour of the last one (an agent repeating what
            // it may not do): the hold would move by under an hour of its days, and each
            // violation is on record already, so nothing is written.
            None if hard.is_some() && restated(before, now) => return Ok(None),
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
        // A promotion rests on the watched work the review read.
        let watched = match (&decided, work) {
            (Some(Move::Tier { to, earned, .. }), Some(work)) if *to > before.tier => Some(
                serde_json::json!({"decisions": qualifying(work, *to, &self.policy, now).successes, "granted_alone": earned}),
            ),
            _ => None,
        };
        let evidence = serde_json::json!({"trust": a.trust, "error_budget": a.budget, "fast_burn": a.burn, "hard_trigger": hard,
            "watched": watched});
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
            let (more, data) = tier_changed(&self.outbox, &c, after.status, now);
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

    /// Records classes the agent has now earned at its restricted tiers: an agent update and
    /// an audit record (`tier.classes_earned`), in one transaction.
    async fn earn(&self, a: &Assessment, more: BTreeMap<u8, BTreeSet<String>>) -> Result<()> {
        let now = a.now;
        let before = &a.agent;
        let mut after = before.clone();
        for (tier, classes) in &more {
            after
                .earned_classes
                .entry(*tier)
                .or_default()
                .extend(classes.iter().cloned());
        }
        after.updated_at = format_micros(now);
        after.version = before.version + 1;
        let details = serde_json::json!({"tier": before.tier, "earned": more, "now_alone": after.earned_classes});
        let record = AuditRecord {
            agent: Some(before.id.clone()),
            ..AuditRecord::change(
                Actor::warden(),
                "tier.classes_earned",
                format!("agent:{}", before.id),
                details,
                now,
            )
        };
        self.store
            .commit(Change {
                writes: vec![Write::Identity(IdentityWrite::UpdateAgent {
                    agent: after,
                    expected_version: before.version,
                    at: now,
                })],
                audit: vec![record],
            })
            .await?;
        Ok(())
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

/// Replays every agent's record (or one agent's) from `since` to `now` under `proposed`: where
/// each would stand and why ([`warden_core::replay`]). Reads only. Evidence from three
/// half-lives before `since` is read too: it is part of where an agent stood when the period
/// began, from the tier it had then (its first change in the period says).
pub async fn replay(
    store: &Store,
    proposed: &CompiledPolicy,
    since: i64,
    now: i64,
    agent: Option<&str>,
) -> Result<Vec<Replayed>> {
    let agents = match agent {
        Some(id) => vec![
            store
                .agent(id)
                .await?
                .map(Arc::unwrap_or_clone)
                .ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{id}`")))?,
        ],
        None => store.agents(None).await?,
    };
    let lookback =
        since.saturating_sub((proposed.policy.trust.half_life_days * 3.0 * DAY_US) as i64);
    let mut replayed = Vec::with_capacity(agents.len());
    for a in agents {
        let record = Record {
            tier: store.tier_at(&a.id, since).await?.unwrap_or(a.tier),
            ceiling: a.ceiling,
            pinned: a.pinned,
            outcomes: store.recorded_outcomes(&a.id, lookback).await?,
            violations: store.recorded_violations(&a.id, lookback).await?,
            watched: store.watched_work(&a.id, lookback).await?,
            agent: a.id,
        };
        replayed.push(warden_core::replay::replay(&record, since, now, proposed));
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_short_of_a_repeat_answers_for_a_second() {
        let short = ShortOfRepeat::default();
        let epoch = short.epoch();
        short.keep("a1", 10_000_000, 2, epoch);
        assert_eq!(short.recent("a1", 10_000_000), Some(2));
        assert_eq!(short.recent("a1", 10_999_999), Some(2));
        assert_eq!(short.recent("a1", 11_000_000), None);
        // A clock that went back does not make an old count new.
        assert_eq!(short.recent("a1", 9_999_999), None);
        assert_eq!(short.recent("a2", 10_000_000), None);
    }

    #[test]
    fn a_blocked_violation_forgets_and_a_count_across_it_is_not_kept() {
        let short = ShortOfRepeat::default();
        short.keep("a1", 10, 1, short.epoch());
        short.keep("a2", 10, 1, short.epoch());
        // A count begins, a blocked violation is forgotten meanwhile, the count ends.
        let epoch = short.epoch();
        short.forget("a1");
        short.keep("a1", 20, 1, epoch);
        assert_eq!(short.recent("a1", 20), None);
        assert_eq!(short.recent("a2", 20), Some(1));
        // A count that began after it is kept.
        short.keep("a1", 30, 2, short.epoch());
        assert_eq!(short.recent("a1", 30), Some(2));
    }
}
