//! Which quota overruns are on record (docs/quotas.md, the end of "Rate limits"). An agent
//! that keeps asking past a spent quota is denied every time, each denial a decision with its
//! audit record, but the overrun is one violation (and one piece of trust evidence) per window:
//! the first denial this process judges claims it and records it, and the ones after it know.
//! A replica knows only its own, and a restart forgets, so a window can have one such violation
//! per replica and per start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::quotas::Charge;

/// A window of one agent's quota: agent, quota, scope and the window's start.
type Key = (String, String, String, i64);

/// The overruns recorded by this process whose windows have not ended.
#[derive(Debug, Clone, Default)]
pub struct Overruns {
    // Each key's window end, Unix microseconds.
    recorded: Arc<Mutex<HashMap<Key, i64>>>,
}

fn key(agent: &str, charge: &Charge) -> Key {
    (
        agent.to_string(),
        charge.quota.clone(),
        charge.scope.clone(),
        charge.window.0,
    )
}

impl Overruns {
    /// For each of `charges`, whether `agent`'s overrun of it in its window is on record.
    pub fn recorded(&self, agent: &str, charges: &[Charge]) -> Vec<bool> {
        let recorded = self.recorded.lock().expect("overruns lock");
        if recorded.is_empty() {
            return Vec::new();
        }
        charges
            .iter()
            .map(|c| recorded.contains_key(&key(agent, c)))
            .collect()
    }

    /// Claims the recording of `agent`'s overrun of `charge` in its window, forgetting the
    /// windows that ended before `now`: true for the first claim, which records it (or gives
    /// the claim back if its commit fails), false once another has.
    pub fn claim(&self, agent: &str, charge: &Charge, now: i64) -> bool {
        let mut recorded = self.recorded.lock().expect("overruns lock");
        recorded.retain(|_, end| *end > now);
        let key = key(agent, charge);
        if recorded.contains_key(&key) {
            return false;
        }
        recorded.insert(key, charge.window.1);
        true
    }

    /// Gives a claim back: its decision was not committed, so the next denial records it.
    pub fn release(&self, agent: &str, charge: &Charge) {
        let mut recorded = self.recorded.lock().expect("overruns lock");
        recorded.remove(&key(agent, charge));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quotas::{Counting, Unit};

    fn charge(quota: &str, scope: &str, window: (i64, i64)) -> Charge {
        Charge {
            quota: quota.into(),
            scope: scope.into(),
            window,
            amount: 1,
            limit: 5,
            unit: Unit::Calls,
            counts: Counting::Allowed,
        }
    }

    #[test]
    fn an_overrun_is_claimed_once_for_its_agent_quota_scope_and_window() {
        let overruns = Overruns::default();
        let deploys = charge("deploys", "payments", (0, 100));
        assert!(
            overruns
                .recorded("a", std::slice::from_ref(&deploys))
                .is_empty()
        );
        assert!(overruns.claim("a", &deploys, 10));
        assert!(!overruns.claim("a", &deploys, 20), "claimed once");
        let others = [
            deploys.clone(),
            charge("deploys", "billing", (0, 100)),
            charge("cost", "payments", (0, 100)),
            charge("deploys", "payments", (100, 200)),
        ];
        assert_eq!(overruns.recorded("a", &others), [true, false, false, false]);
        assert_eq!(overruns.recorded("b", &others), [false; 4]);
        // A claim given back (its commit failed) can be made again.
        overruns.release("a", &deploys);
        assert!(!overruns.recorded("a", &others).contains(&true));
        assert!(overruns.claim("a", &deploys, 30));
    }

    #[test]
    fn ended_windows_are_forgotten() {
        let overruns = Overruns::default();
        let first = charge("deploys", "payments", (0, 100));
        assert!(overruns.claim("a", &first, 10));
        // The next window's overrun, claimed once the first has ended.
        let next = charge("deploys", "payments", (100, 200));
        assert!(overruns.claim("a", &next, 150));
        assert_eq!(overruns.recorded("a", &[first, next]), [false, true]);
        assert_eq!(overruns.recorded.lock().unwrap().len(), 1);
    }
}
