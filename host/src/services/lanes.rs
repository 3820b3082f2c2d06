//! One lane per agent (docs/quotas.md, "Rate limits"): at most `width` of an agent's decisions
//! are judged and written at once in this process; the rest wait their turn in arrival order.
//! An agent is one loop, perhaps with a few sub-agents; a runaway one sending on many
//! connections at once would otherwise fill the writer's batches with its own decisions (at the
//! start of each rate-limit window, before it is cut off) and the other agents would wait behind
//! them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// Every agent's lane in this process.
#[derive(Debug, Clone)]
pub struct Lanes {
    width: usize,
    // Only agents with a decision in flight or waiting have an entry.
    open: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// A decision's turn in its agent's lane, given back when dropped (also while still waiting:
/// a caller that goes away leaves no trace).
#[derive(Debug)]
pub struct Turn {
    lane: Arc<Semaphore>,
    held: bool,
    waited: bool,
    agent: String,
    lanes: Lanes,
}

impl Lanes {
    /// Lanes `width` decisions wide (at least one).
    pub fn new(width: usize) -> Lanes {
        Lanes {
            width: width.max(1),
            open: Arc::default(),
        }
    }

    /// Waits for a turn in `agent`'s lane.
    pub async fn enter(&self, agent: &str) -> Turn {
        // The semaphore is cloned under the lock, so its count tells how many hold or await it.
        let lane = {
            let mut open = self.open.lock().expect("lanes lock");
            open.entry(agent.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.width)))
                .clone()
        };
        let mut turn = Turn {
            lane,
            held: false,
            waited: false,
            agent: agent.to_owned(),
            lanes: self.clone(),
        };
        // A waiter is the `Turn` itself, so a dropped wait clears the lane like a finished one.
        match turn.lane.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => {
                turn.waited = true;
                turn.lane
                    .acquire()
                    .await
                    .expect("lanes are never closed")
                    .forget();
            }
        }
        turn.held = true;
        turn
    }

    /// How many agents have a decision in flight or waiting.
    pub fn busy(&self) -> usize {
        self.open.lock().expect("lanes lock").len()
    }
}

impl Turn {
    /// Whether this turn had to wait for another of the agent's decisions to finish.
    pub fn waited(&self) -> bool {
        self.waited
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut open = self.lanes.open.lock().expect("lanes lock");
        if self.held {
            self.lane.add_permits(1);
        }
        // The map's reference and this one are the last: nobody else holds or awaits the lane.
        if Arc::strong_count(&self.lane) == 2 {
            open.remove(&self.agent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_agent_waits_for_its_own_lane_only() {
        let lanes = Lanes::new(2);
        let a1 = lanes.enter("a").await;
        let a2 = lanes.enter("a").await;
        assert!(!a1.waited() && !a2.waited());
        // A third turn for `a` waits; `b` goes at once.
        let third = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.enter("a").await }
        });
        let b = tokio::time::timeout(Duration::from_secs(5), lanes.enter("b"))
            .await
            .expect("another agent's lane is free");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a third decision of `a` waits");
        drop(a1);
        let a3 = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("a freed turn is taken")
            .expect("task");
        assert!(a3.waited() && !b.waited());
        assert_eq!(lanes.busy(), 2);
        drop((a2, a3, b));
        assert_eq!(lanes.busy(), 0, "idle lanes are forgotten");
    }

    #[tokio::test]
    async fn turns_are_taken_in_arrival_order() {
        let lanes = Lanes::new(1);
        let first = lanes.enter("a").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for n in 0..5 {
            let (lanes, order) = (lanes.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = lanes.enter("a").await;
                order.lock().unwrap().push(n);
            }));
            // Each is queued before the next arrives.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(lanes.busy(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_while_waiting_leaves_no_lane() {
        let lanes = Lanes::new(1);
        let first = lanes.enter("a").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), lanes.enter("a")).await;
        assert!(gave_up.is_err(), "the second waits");
        drop(first);
        assert_eq!(lanes.busy(), 0);
        let _again = tokio::time::timeout(Duration::from_secs(5), lanes.enter("a"))
            .await
            .expect("the lane is whole again");
    }
}
