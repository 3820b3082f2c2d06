//! Which blocked violations are on record (docs/policy.md, "Violations tried again"). An agent
//! that tries what it may not do again and again is denied every time, each denial a decision
//! with its audit record, but the attempt is one violation (with its evidence, its audit record
//! and its review) per `policy.same_violation_secs`: the first denial this process judges claims
//! it and records it, and the ones after it know. As with quota overruns, a replica knows only
//! its own and a restart forgets, so a window can hold one such violation per replica and start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::records::{ViolationReason, ViolationRow};

/// A violation on record: what the attempt was, and when its window ends (Unix microseconds).
#[derive(Debug)]
struct OnRecord {
    class: String,
    environment: String,
    service: String,
    reason: ViolationReason,
    until: i64,
}

impl OnRecord {
    fn is(&self, class: &str, environment: &str, service: &str) -> bool {
        self.class == class && self.environment == environment && self.service == service
    }
}

/// The blocked violations recorded by this process whose windows have not ended.
#[derive(Debug, Clone, Default)]
pub struct Repeats {
    recorded: Arc<Mutex<Recorded>>,
}

/// The violations on record by agent, and when ended windows were last forgotten.
#[derive(Debug, Default)]
struct Recorded {
    by_agent: HashMap<String, Vec<OnRecord>>,
    swept_at: i64,
}

/// How often a claim forgets every agent's ended windows, microseconds: often enough to keep
/// the map small, seldom enough that many agents' claims do not each walk all of it.
const SWEEP_EVERY: i64 = 1_000_000;

impl Repeats {
    /// The reasons `agent`'s blocked violations of this class, environment and service are on
    /// record for at `now`.
    pub fn on_record(
        &self,
        agent: &str,
        (class, environment, service): (&str, &str, &str),
        now: i64,
    ) -> Vec<ViolationReason> {
        let recorded = self.recorded.lock().expect("repeats lock");
        let Some(kept) = recorded.by_agent.get(agent) else {
            return Vec::new();
        };
        kept.iter()
            .filter(|r| r.until > now && r.is(class, environment, service))
            .map(|r| r.reason)
            .collect()
    }

    /// Claims the recording of blocked violation `v` for `window` microseconds from `now`,
    /// forgetting the windows that ended (the agent's at once, everyone's once a second): true
    /// for the first claim, which records it (or gives the claim back if its commit fails),
    /// false once another has.
    pub fn claim(&self, v: &ViolationRow, window: i64, now: i64) -> bool {
        let mut recorded = self.recorded.lock().expect("repeats lock");
        if now.saturating_sub(recorded.swept_at) >= SWEEP_EVERY {
            recorded.by_agent.retain(|_, kept| {
                kept.retain(|r| r.until > now);
                !kept.is_empty()
            });
            recorded.swept_at = now;
        }
        let kept = recorded.by_agent.entry(v.agent_id.clone()).or_default();
        kept.retain(|r| r.until > now);
        if kept
            .iter()
            .any(|r| r.reason == v.reason && r.is(&v.class, &v.environment, &v.service))
        {
            return false;
        }
        kept.push(OnRecord {
            class: v.class.clone(),
            environment: v.environment.clone(),
            service: v.service.clone(),
            reason: v.reason,
            until: now.saturating_add(window),
        });
        true
    }

    /// Gives a claim back: its decision was not committed, so the next attempt records it.
    pub fn release(&self, v: &ViolationRow) {
        let mut recorded = self.recorded.lock().expect("repeats lock");
        if let Some(kept) = recorded.by_agent.get_mut(&v.agent_id) {
            kept.retain(|r| !(r.reason == v.reason && r.is(&v.class, &v.environment, &v.service)));
            if kept.is_empty() {
                recorded.by_agent.remove(&v.agent_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ViolationMode;

    fn violation(agent: &str, service: &str, reason: ViolationReason) -> ViolationRow {
        ViolationRow {
            id: "v".into(),
            at: 0,
            decision_id: "d".into(),
            agent_id: agent.into(),
            class: "deploy".into(),
            environment: "staging".into(),
            service: service.into(),
            mode: ViolationMode::Block,
            reason,
        }
    }

    const ACTION: (&str, &str, &str) = ("deploy", "staging", "payments");

    #[test]
    fn a_violation_is_claimed_once_for_its_agent_action_and_reason_in_its_window() {
        let repeats = Repeats::default();
        let no_grant = violation("a", "payments", ViolationReason::NoGrant);
        assert!(repeats.on_record("a", ACTION, 0).is_empty());
        assert!(repeats.claim(&no_grant, 100, 10));
        assert!(!repeats.claim(&no_grant, 100, 20), "claimed once");
        assert_eq!(
            repeats.on_record("a", ACTION, 20),
            [ViolationReason::NoGrant]
        );
        // Another agent, service or reason is another violation.
        assert!(repeats.on_record("b", ACTION, 20).is_empty());
        assert!(
            repeats
                .on_record("a", ("deploy", "staging", "billing"), 20)
                .is_empty()
        );
        assert!(repeats.claim(
            &violation("a", "billing", ViolationReason::NoGrant),
            100,
            20
        ));
        assert!(repeats.claim(
            &violation("a", "payments", ViolationReason::ExplicitDeny),
            100,
            20
        ));
        assert_eq!(repeats.on_record("a", ACTION, 30).len(), 2);
        // A claim given back (its commit failed) can be made again.
        repeats.release(&no_grant);
        assert_eq!(
            repeats.on_record("a", ACTION, 30),
            [ViolationReason::ExplicitDeny]
        );
        assert!(repeats.claim(&no_grant, 100, 30));
    }

    #[test]
    fn ended_windows_are_forgotten() {
        let repeats = Repeats::default();
        let no_grant = violation("a", "payments", ViolationReason::NoGrant);
        assert!(repeats.claim(&no_grant, 100, 10));
        // The window is the claim's own: 100 µs from its first attempt.
        assert_eq!(repeats.on_record("a", ACTION, 109).len(), 1);
        assert!(repeats.on_record("a", ACTION, 110).is_empty());
        assert!(repeats.claim(&no_grant, 100, 110), "the next window's");
        assert_eq!(repeats.recorded.lock().unwrap().by_agent["a"].len(), 1);
        // Other agents' ended windows go once a second, with a claim.
        let other = violation("b", "payments", ViolationReason::NoGrant);
        assert!(repeats.claim(&other, 100, 300));
        assert_eq!(repeats.recorded.lock().unwrap().by_agent.len(), 2);
        assert!(repeats.claim(&other, 100, SWEEP_EVERY + 300));
        let recorded = repeats.recorded.lock().unwrap();
        assert_eq!(recorded.by_agent.len(), 1, "agent a's ended window is gone");
        assert!(recorded.by_agent.contains_key("b"));
    }
}
