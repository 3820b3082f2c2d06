//! An agent's recent activity of one kind of action, from Warden's decisions and from the
//! platform's events. The anomaly stage asks on every decision, so both tables are read in one
//! statement: one hand-off to the database, not two.
//!
//! The answer is then kept for the store's cache TTL ([`ActivityCache`]), and this process's own
//! commits are counted into it as they land, so that a busy agent's next decisions of the kind
//! do not read at all. Each read also reads the audit chain's head in its snapshot; a commit is
//! counted in only if it moved the head past that point, so nothing is counted twice or missed.
//! Another replica's decisions and events come in with the next read, within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Row as _;
use warden_core::activity::ActorKind;
use warden_core::decision::Verdict;
use warden_core::records::{Activity, DecisionRow};

use crate::error::Result;
use crate::{CACHE_CAPACITY, EventWrite, Store, Write};

/// An agent's activity of one kind from the platform's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventActivity {
    /// Events since the window start.
    pub recent: u32,
    /// Whether the agent did this kind of action before the window.
    pub done_before: bool,
}

/// An agent's activity of one kind, as each table tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentActivity {
    /// From Warden's decisions.
    pub decided: Activity,
    /// From the platform's events.
    pub done: EventActivity,
}

// Each count stops at `$6` (LIMIT inside, COUNT outside) and each "before" at its first row, so
// a busy agent's decision reads no more of its history than the cap. Decisions answer from the
// index on (agent, kind, verdict, time): the count names every verdict so that it seeks each
// one's range from `$5`, and "ever allowed" is one seek. Events answer from the partial index
// of agents' events.
const SQL: &str = "SELECT \
    (SELECT COUNT(*) FROM (SELECT 1 FROM decisions WHERE agent_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND verdict IN ('allow', 'require_approval', 'deny') AND at >= $5 LIMIT $6) AS dr) AS decided_recent, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM decisions WHERE agent_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND verdict = 'allow' LIMIT 1) AS da) AS decided_allowed, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE actor_kind = 'agent' AND actor_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND at >= $5 LIMIT $6) AS er) AS done_recent, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE actor_kind = 'agent' AND actor_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
     AND at < $5 LIMIT 1) AS eb) AS done_before, \
    (SELECT seq FROM audit_head WHERE id = 1) AS head";

// The count above names every verdict: a new one does not compile here until it is named there.
const _: () = match Verdict::Allow {
    Verdict::Allow | Verdict::RequireApproval | Verdict::Deny => (),
};

impl Store {
    /// An agent's activity of one kind (class, environment, service) since `since` (Unix
    /// microseconds): in decisions, how many since then, counted up to `at_most`, and whether it
    /// was ever allowed the kind; in events, how many since then, up to `at_most`, and whether
    /// it did the kind before then.
    pub async fn activity(
        &self,
        agent: &str,
        class: &str,
        environment: &str,
        service: &str,
        since: i64,
        at_most: u32,
    ) -> Result<AgentActivity> {
        let kind = Kind::new(agent, class, environment, service);
        let ticket = match self.cache.activity.get(&kind, since, at_most) {
            Lookup::Known(activity) => return Ok(activity),
            Lookup::Read(ticket) => ticket,
        };
        let (head, read) = self.read_activity(&kind, since, at_most).await?;
        if let Some(ticket) = ticket {
            ticket.fill(head, read);
        }
        Ok(read.activity)
    }

    /// The database's answer, and the audit chain's head in the same snapshot.
    async fn read_activity(&self, kind: &Kind, since: i64, at_most: u32) -> Result<(i64, Read)> {
        let (_turn, mut conn) = self.readers.take().await?;
        let row = sqlx::query(SQL)
            .bind(&kind.agent)
            .bind(&kind.action.class)
            .bind(&kind.action.environment)
            .bind(&kind.action.service)
            .bind(since)
            .bind(i64::from(at_most))
            .fetch_one(&mut conn)
            .await?;
        self.readers.give_back(conn);
        let count = |column: &str| -> Result<u32> {
            let n: i64 = row.try_get(column)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        let activity = AgentActivity {
            decided: Activity {
                recent: count("decided_recent")?,
                done_before: count("decided_allowed")? > 0,
            },
            done: EventActivity {
                recent: count("done_recent")?,
                done_before: count("done_before")? > 0,
            },
        };
        let read = Read {
            since,
            at_most,
            activity,
        };
        Ok((row.try_get("head")?, read))
    }
}

/// Which agent and kind of action an answer is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Kind {
    agent: String,
    action: Action,
}

/// A kind of action: class, environment and service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Action {
    class: String,
    environment: String,
    service: String,
}

impl Kind {
    fn new(agent: &str, class: &str, environment: &str, service: &str) -> Kind {
        Kind {
            agent: agent.to_owned(),
            action: Action {
                class: class.to_owned(),
                environment: environment.to_owned(),
                service: service.to_owned(),
            },
        }
    }
}

/// A decision this process committed, as the cache counts it.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    kind: Kind,
    at: i64,
    allowed: bool,
}

impl Decided {
    pub(crate) fn of(row: &DecisionRow) -> Decided {
        Decided {
            kind: Kind::new(&row.agent_id, &row.class, &row.environment, &row.service),
            at: row.at,
            allowed: row.verdict == Verdict::Allow,
        }
    }
}

/// The agents whose own events a write stores: what they did changes their activity's answer.
pub(crate) fn acting_agents(write: &Write) -> impl Iterator<Item = &str> {
    let events = match write {
        Write::Event(EventWrite::InsertEvents { events, .. }) => events.as_slice(),
        _ => &[],
    };
    events
        .iter()
        .filter(|e| e.actor_kind == ActorKind::Agent)
        .map(|e| e.actor_id.as_str())
}

/// One read's question and answer.
#[derive(Debug, Clone, Copy)]
struct Read {
    since: i64,
    at_most: u32,
    activity: AgentActivity,
}

impl Read {
    /// Counts a committed decision in, as the read would have had it been made after it.
    fn count(&mut self, at: i64, allowed: bool) {
        let decided = &mut self.activity.decided;
        if at >= self.since {
            decided.recent = decided.recent.saturating_add(1).min(self.at_most);
        }
        decided.done_before |= allowed;
    }
}

/// An answer kept, with when it was read and the audit chain's head in its snapshot.
#[derive(Debug)]
struct Known {
    read_at: Instant,
    head: i64,
    read: Read,
}

/// A kind's kept answer, and the decisions committed while a read of it is under way.
#[derive(Debug, Default)]
struct Slot {
    known: Option<Known>,
    /// Set while a read is under way: its number (a read started against another set, or
    /// against a slot since forgotten, does not fill this one) and each decision this process
    /// committed meanwhile.
    reading: Option<Reading>,
}

/// A read under way: its number, and the decisions committed meanwhile.
#[derive(Debug)]
struct Reading {
    read: u64,
    meanwhile: Vec<Landed>,
}

/// A decision committed while a read was under way, with the chain's head after its commit.
#[derive(Debug)]
struct Landed {
    head: i64,
    at: i64,
    allowed: bool,
}

/// What a read under way may hold before its slot is dropped.
const MEANWHILE_CAPACITY: usize = 4096;

/// The slots by agent (its events forget all of its kinds at once), and the last read's number.
#[derive(Debug, Default)]
struct Slots {
    next: u64,
    agents: HashMap<String, HashMap<Action, Slot>>,
    /// Slots over all agents: at [`CACHE_CAPACITY`] all are dropped (the TTL keeps the rest
    /// fresh; a crude bound, as for the other cached reads).
    len: usize,
}

impl Slots {
    fn slot(&mut self, kind: &Kind) -> Option<&mut Slot> {
        self.agents.get_mut(&kind.agent)?.get_mut(&kind.action)
    }

    fn remove(&mut self, kind: &Kind) {
        if let Some(actions) = self.agents.get_mut(&kind.agent)
            && actions.remove(&kind.action).is_some()
        {
            self.len -= 1;
        }
    }

    fn forget(&mut self, agent: &str) {
        if let Some(actions) = self.agents.remove(agent) {
            self.len -= actions.len();
        }
    }
}

/// The activity answers kept per kind for `ttl`; zero keeps none.
#[derive(Debug)]
pub(crate) struct ActivityCache {
    ttl: Duration,
    slots: Mutex<Slots>,
}

/// What [`ActivityCache::get`] found: a kept answer, or a read to make (and a ticket to keep
/// its answer with, unless the cache is off).
pub(crate) enum Lookup<'a> {
    Known(AgentActivity),
    Read(Option<Ticket<'a>>),
}

/// Which read is filling which slot. Dropped unfilled (the read failed or was cancelled), it
/// ends the slot's read, so that what is committed meanwhile is not kept for nothing.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    cache: &'a ActivityCache,
    kind: Kind,
    read: u64,
}

impl ActivityCache {
    pub(crate) fn new(ttl: Duration) -> ActivityCache {
        ActivityCache {
            ttl,
            slots: Mutex::new(Slots::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().expect("cache lock")
    }

    /// The kept answer for the kind, if it is fresh and answers the same question (the window
    /// may have moved by the TTL at most); otherwise a ticket to read with.
    pub(crate) fn get(&self, kind: &Kind, since: i64, at_most: u32) -> Lookup<'_> {
        if self.ttl.is_zero() {
            return Lookup::Read(None);
        }
        let ttl_us = i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX);
        let mut slots = self.lock();
        if slots.slot(kind).is_none() && slots.len >= CACHE_CAPACITY {
            slots.agents.clear();
            slots.len = 0;
        }
        let Slots { next, agents, len } = &mut *slots;
        if !agents.contains_key(&kind.agent) {
            agents.insert(kind.agent.clone(), HashMap::new());
        }
        let actions = agents.get_mut(&kind.agent).expect("inserted above");
        if !actions.contains_key(&kind.action) {
            actions.insert(kind.action.clone(), Slot::default());
            *len += 1;
        }
        let slot = actions.get_mut(&kind.action).expect("inserted above");
        if let Some(known) = &slot.known {
            let read = &known.read;
            if known.read_at.elapsed() < self.ttl
                && read.at_most == at_most
                && (0..=ttl_us).contains(&(since - read.since))
            {
                return Lookup::Known(read.activity);
            }
        }
        let read = match &slot.reading {
            Some(reading) => reading.read,
            None => {
                *next += 1;
                slot.reading = Some(Reading {
                    read: *next,
                    meanwhile: Vec::new(),
                });
                *next
            }
        };
        Lookup::Read(Some(Ticket {
            cache: self,
            kind: kind.clone(),
            read,
        }))
    }

    /// The decisions a commit wrote, the chain's head at `head` after it: counted into the kept
    /// answers whose snapshot it is not in, and noted for the reads under way. A commit that
    /// did not move the head cannot be placed against a snapshot: its kinds are read again.
    pub(crate) fn committed(&self, head: Option<i64>, decided: &[Decided]) {
        if self.ttl.is_zero() || decided.is_empty() {
            return;
        }
        let mut slots = self.lock();
        let Some(head) = head else {
            for d in decided {
                slots.remove(&d.kind);
            }
            return;
        };
        for d in decided {
            let Some(slot) = slots.slot(&d.kind) else {
                continue;
            };
            if let Some(known) = &mut slot.known
                && head > known.head
            {
                known.read.count(d.at, d.allowed);
            }
            let full = match &mut slot.reading {
                Some(Reading { meanwhile, .. }) if meanwhile.len() < MEANWHILE_CAPACITY => {
                    meanwhile.push(Landed {
                        head,
                        at: d.at,
                        allowed: d.allowed,
                    });
                    false
                }
                Some(_) => true,
                None => false,
            };
            if full {
                slots.remove(&d.kind);
            }
        }
    }

    /// Forgets every kind of these agents (their events changed), with the reads under way.
    pub(crate) fn forget<'a>(&self, agents: impl IntoIterator<Item = &'a str>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut agents = agents.into_iter().peekable();
        if agents.peek().is_none() {
            return;
        }
        let mut slots = self.lock();
        for agent in agents {
            slots.forget(agent);
        }
    }
}

impl Ticket<'_> {
    /// Keeps the read's answer, with what was committed since its snapshot counted in; the
    /// first of several reads under way fills the slot.
    fn fill(self, head: i64, read: Read) {
        let mut slots = self.cache.lock();
        let Some(slot) = slots.slot(&self.kind) else {
            return;
        };
        let Some(Reading { meanwhile, .. }) = slot.reading.take_if(|r| r.read == self.read) else {
            return;
        };
        let mut read = read;
        for landed in meanwhile {
            if landed.head > head {
                read.count(landed.at, landed.allowed);
            }
        }
        slot.known = Some(Known {
            read_at: Instant::now(),
            head,
            read,
        });
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut slots = self.cache.lock();
        if let Some(slot) = slots.slot(&self.kind) {
            slot.reading.take_if(|r| r.read == self.read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite_tests::{migrated, plan};

    /// Both reads of decisions seek the agent's kind and a verdict in the index: "ever allowed"
    /// once walked a never-allowed kind's whole history, reading each row for its verdict.
    #[tokio::test]
    async fn decisions_are_read_by_kind_and_verdict() {
        let seek = "USING COVERING INDEX decisions_agent_kind_verdict_at (agent_id=? AND class=? \
                    AND environment=? AND service=? AND verdict=?";
        let now = plan(&migrated(i64::MAX).await, SQL).await;
        assert_eq!(
            now.iter().filter(|step| step.contains(seek)).count(),
            2,
            "{now:?}"
        );
        let before = plan(&migrated(25).await, SQL).await;
        assert!(!before.iter().any(|step| step.contains(seek)), "{before:?}");
    }

    fn kind() -> Kind {
        Kind::new("bot", "deploy", "staging", "payments")
    }

    fn fill(ticket: Option<Ticket<'_>>, head: i64, read: Read) {
        ticket.expect("a ticket").fill(head, read);
    }

    fn decided(allowed: bool) -> Decided {
        Decided {
            kind: kind(),
            at: SINCE + 1,
            allowed,
        }
    }

    const SINCE: i64 = 1_000_000_000;

    fn read(recent: u32, done_before: bool) -> Read {
        Read {
            since: SINCE,
            at_most: 100,
            activity: AgentActivity {
                decided: Activity {
                    recent,
                    done_before,
                },
                done: EventActivity::default(),
            },
        }
    }

    fn cache() -> ActivityCache {
        ActivityCache::new(Duration::from_secs(3600))
    }

    fn ticket(cache: &ActivityCache) -> Option<Ticket<'_>> {
        match cache.get(&kind(), SINCE, 100) {
            Lookup::Read(ticket) => ticket,
            Lookup::Known(a) => panic!("kept already: {a:?}"),
        }
    }

    fn known(cache: &ActivityCache) -> Option<Activity> {
        match cache.get(&kind(), SINCE, 100) {
            Lookup::Known(a) => Some(a.decided),
            Lookup::Read(_) => None,
        }
    }

    fn activity(recent: u32, done_before: bool) -> Option<Activity> {
        Some(Activity {
            recent,
            done_before,
        })
    }

    /// A commit that lands while a read is under way is counted in if the read's snapshot
    /// does not have it, and not again if it does; later commits are counted as they land.
    #[test]
    fn a_commit_is_counted_once_whichever_side_of_the_read_it_lands() {
        let behind = cache();
        let t = ticket(&behind);
        behind.committed(Some(11), &[decided(true)]);
        fill(t, 10, read(2, false));
        assert_eq!(known(&behind), activity(3, true));
        behind.committed(Some(12), &[decided(false), decided(false)]);
        assert_eq!(known(&behind), activity(5, true));

        let ahead = cache();
        let t = ticket(&ahead);
        ahead.committed(Some(11), &[decided(true)]);
        fill(t, 11, read(3, true));
        assert_eq!(known(&ahead), activity(3, true));
        // The writer's note of a commit the read already saw arrives late: not counted again.
        ahead.committed(Some(11), &[decided(false)]);
        assert_eq!(known(&ahead), activity(3, true));

        // A decision before the window counts for "ever allowed" only; the count stops at the
        // question's cap.
        let edges = cache();
        let t = ticket(&edges);
        fill(t, 10, read(99, false));
        let old = Decided {
            at: SINCE - 1,
            ..decided(true)
        };
        edges.committed(Some(11), &[old]);
        assert_eq!(known(&edges), activity(99, true));
        edges.committed(Some(12), &[decided(false), decided(false)]);
        assert_eq!(known(&edges), activity(100, true));
    }

    /// Of two reads under way at once, the first to finish fills; the other's answer, from an
    /// older or newer snapshot, is not kept over it.
    #[test]
    fn the_first_of_two_reads_fills() {
        let c = cache();
        let (first, second) = (ticket(&c), ticket(&c));
        fill(second, 20, read(7, false));
        fill(first, 19, read(6, false));
        assert_eq!(known(&c), activity(7, false));
    }

    /// Forgetting an agent (its events landed) drops its kept answers and the reads under way.
    #[test]
    fn a_forgotten_agent_is_read_again() {
        let c = cache();
        let t = ticket(&c);
        c.forget(["bot"]);
        fill(t, 10, read(2, false));
        assert_eq!(known(&c), None);
        let t = ticket(&c);
        fill(t, 10, read(2, false));
        assert_eq!(known(&c), activity(2, false));
        c.forget(["other"]);
        assert_eq!(known(&c), activity(2, false));
        c.forget(["bot"]);
        assert_eq!(known(&c), None);
        // A commit that did not move the chain's head cannot be placed: read again.
        let t = ticket(&c);
        fill(t, 10, read(2, false));
        c.committed(None, &[decided(true)]);
        assert_eq!(known(&c), None);
    }

    /// A kept answer answers only its own question: another cap, or a window that moved by
    /// more than the TTL, is read again; with no TTL nothing is kept.
    #[test]
    fn another_question_is_read_again() {
        let c = ActivityCache::new(Duration::from_secs(1));
        let t = ticket(&c);
        fill(t, 10, read(2, false));
        assert!(matches!(c.get(&kind(), SINCE, 100), Lookup::Known(_)));
        assert!(matches!(
            c.get(&kind(), SINCE + 1_000_000, 100),
            Lookup::Known(_)
        ));
        assert!(matches!(
            c.get(&kind(), SINCE + 1_000_001, 100),
            Lookup::Read(Some(_))
        ));
        assert!(matches!(
            c.get(&kind(), SINCE - 1, 100),
            Lookup::Read(Some(_))
        ));
        assert!(matches!(c.get(&kind(), SINCE, 50), Lookup::Read(Some(_))));
        let off = ActivityCache::new(Duration::ZERO);
        assert!(matches!(off.get(&kind(), SINCE, 100), Lookup::Read(None)));
    }

    /// A read that fails or is cancelled ends its slot's read; one that falls too far behind
    /// the commits (reads failing while the kind keeps being decided) loses its slot.
    #[test]
    fn a_read_that_never_fills_keeps_nothing() {
        let c = cache();
        let reading = |c: &ActivityCache| {
            c.lock()
                .slot(&kind())
                .is_some_and(|slot| slot.reading.is_some())
        };
        let t = ticket(&c);
        assert!(reading(&c));
        drop(t);
        assert!(!reading(&c));
        let t = ticket(&c);
        for head in 0..MEANWHILE_CAPACITY as i64 {
            c.committed(Some(head), &[decided(false)]);
        }
        assert!(reading(&c));
        c.committed(Some(MEANWHILE_CAPACITY as i64), &[decided(false)]);
        assert!(!reading(&c));
        fill(t, 0, read(1, false));
        assert_eq!(known(&c), None);
    }

    /// On a real database and its writer: a decision committed after a read's snapshot but
    /// before its answer is kept is counted in; one the snapshot has is not counted again.
    #[tokio::test]
    async fn the_writers_commits_are_placed_against_the_reads_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::test_store(dir.path(), 2, Duration::from_secs(3600)).await;
        let cache = &store.cache.activity;
        let decide = |id: &str, verdict: Verdict| {
            let row = DecisionRow {
                id: id.into(),
                at: SINCE + 1,
                agent_id: "bot".into(),
                on_behalf_of: None,
                class: "deploy".into(),
                environment: "staging".into(),
                service: "payments".into(),
                verdict,
                shadow_verdict: None,
                risk_level: warden_core::policy::RiskLevel::Low,
                tier: 2,
                policy_version: "p".into(),
                request: "{}".into(),
                answer: "{}".into(),
                outcome_due_at: None,
                notable: false,
            };
            let record = warden_core::audit::AuditRecord::change(
                warden_core::audit::Actor::warden(),
                "decision",
                "agent:bot".into(),
                serde_json::json!({}),
                SINCE + 1,
            );
            store.commit(crate::Change {
                writes: vec![Write::Decision(crate::DecisionWrite::InsertDecision(row))],
                audit: vec![record],
            })
        };
        let kept = || async {
            store
                .activity("bot", "deploy", "staging", "payments", SINCE, 100)
                .await
                .unwrap()
                .decided
        };
        let database = || async { store.read_activity(&kind(), SINCE, 100).await.unwrap() };

        // Behind: the read's snapshot is taken, then a decision commits, then the answer is
        // kept.
        decide("d1", Verdict::Deny).await.unwrap();
        let t = ticket(cache);
        let (head, read) = database().await;
        assert_eq!(read.activity.decided.recent, 1);
        decide("d2", Verdict::Allow).await.unwrap();
        fill(t, head, read);
        assert_eq!(kept().await, activity(2, true).unwrap());

        // Ahead: a decision commits, then the read's snapshot (which has it) is taken.
        cache.forget(["bot"]);
        let t = ticket(cache);
        decide("d3", Verdict::Deny).await.unwrap();
        let (head, read) = database().await;
        fill(t, head, read);
        assert_eq!(kept().await, activity(3, true).unwrap());
        // And later ones as they commit.
        decide("d4", Verdict::RequireApproval).await.unwrap();
        assert_eq!(kept().await, activity(4, true).unwrap());
        assert_eq!(database().await.1.activity.decided, kept().await);
        store.close().await;
    }

    /// The slots over all agents are bounded: the one past the capacity drops them all, and
    /// forgetting an agent gives its slots back to the count.
    #[test]
    fn the_slots_are_bounded() {
        let c = cache();
        let len = |c: &ActivityCache| c.lock().len;
        for i in 0..CACHE_CAPACITY {
            let agent = format!("a{}", i % 100);
            let _ = c.get(
                &Kind::new(&agent, "deploy", &format!("env{i}"), "s"),
                SINCE,
                100,
            );
        }
        assert_eq!(len(&c), CACHE_CAPACITY);
        c.forget(["a7"]);
        assert_eq!(len(&c), CACHE_CAPACITY - CACHE_CAPACITY / 100);
        let _ = c.get(&Kind::new("a7", "deploy", "env7", "s"), SINCE, 100);
        assert_eq!(len(&c), CACHE_CAPACITY - CACHE_CAPACITY / 100 + 1);
        let _ = c.get(&Kind::new("a7", "deploy", "env7", "s"), SINCE, 100);
        assert_eq!(
            len(&c),
            CACHE_CAPACITY - CACHE_CAPACITY / 100 + 1,
            "the same kind again"
        );
        for i in 0.. {
            if len(&c) == CACHE_CAPACITY {
                break;
            }
            let _ = c.get(
                &Kind::new("b", "deploy", &format!("env{i}"), "s"),
                SINCE,
                100,
            );
        }
        let _ = c.get(&kind(), SINCE, 100);
        assert_eq!(len(&c), 1, "all dropped for the one past the capacity");
        c.lock().remove(&kind());
        assert_eq!(len(&c), 0);
    }
}
