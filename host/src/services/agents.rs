//! Agents: registering them and changing them. A change is a compare-and-set on the agent's
//! version, so two admins (or an admin and the tier controller) never overwrite each other.

use crate::audit::{AuditRecord, by_caller};
use crate::clock::{SharedClock, format_micros};
use crate::decision::MAX_PARENT_DEPTH;
use crate::error::{Error, Kind, Result};
use crate::identity::{Agent, AgentCreate, AgentPatch, AgentStatus, Caller, Role};
use crate::records::TierChange;
use crate::services::notify::Outbox;
use crate::services::tiering::tier_changed;
use crate::store::{Change, Conflict, IdentityWrite, Store, Write};

/// Checks that the parent exists and that attaching it makes no loop or over-deep chain.
async fn check_parent(store: &Store, agent: &Agent) -> Result<()> {
    let mut next = agent.parent.clone();
    let mut depth = 0;
    while let Some(id) = next {
        if id == agent.id {
            return Err(Error::field(
                "parent",
                "this parent would make the agent its own ancestor",
            ));
        }
        depth += 1;
        if depth > MAX_PARENT_DEPTH {
            return Err(Error::field(
                "parent",
                format!("parent chains are limited to {MAX_PARENT_DEPTH} levels"),
            ));
        }
        let Some(parent) = store.agent(&id).await? else {
            return Err(Error::field("parent", format!("no agent `{id}`")));
        };
        next = parent.parent.clone();
    }
    Ok(())
}

/// Registers an agent (admins): tier 1 (sandbox) and ceiling 2 unless told otherwise.
pub async fn create(store: &Store, caller: &Caller, req: AgentCreate, now: i64) -> Result<Agent> {
    caller.require(&[Role::Admin])?;
    let agent = Agent {
        id: req.id,
        tool: req.tool,
        model: req.model,
        team: req.team,
        sponsor: req.sponsor,
        tier: req.tier.unwrap_or(1),
        ceiling: req.ceiling.unwrap_or(2),
        parent: req.parent,
        status: AgentStatus::Active,
        shadow: req.shadow.unwrap_or(false),
        pinned: false,
        tier_since: format_micros(now),
        trust_score: None,
        hold_until: None,
        last_hard_at: None,
        quota_overrides: Default::default(),
        earned_classes: Default::default(),
        created_at: format_micros(now),
        updated_at: format_micros(now),
        version: 1,
    };
    agent.validate()?;
    check_parent(store, &agent).await?;
    let record = by_caller(
        caller,
        "agent.created",
        format!("agent:{}", agent.id),
        Some(agent.id.clone()),
        serde_json::json!({ "agent": agent }),
        now,
    );
    store
        .commit(Change {
            writes: vec![Write::Identity(IdentityWrite::InsertAgent(agent.clone()))],
            audit: vec![record],
        })
        .await?;
    Ok(agent)
}

/// Changes an agent (admins): tier, ceiling, parent, status, shadow mode, pin, details. A tier
/// set by a human is history too (`tier.changed`), restarts the time in tier, and comes with
/// all the rights of its grants (no class is left to earn).
pub async fn patch(
    store: &Store,
    clock: &SharedClock,
    outbox: &Outbox,
    caller: &Caller,
    id: &str,
    patch: AgentPatch,
) -> Result<Agent> {
    caller.require(&[Role::Admin])?;
    // A new parent must exist and make no loop.
    if let Some(Some(parent)) = &patch.parent {
        let mut probe = store
            .agent_fresh(id)
            .await?
            .ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{id}`")))?;
        probe.parent = Some(parent.clone());
        check_parent(store, &probe).await?;
    }
    let agent = update(store, clock, id, |before: &Agent, now| {
        let mut after = before.clone();
        after.apply(patch.clone());
        after.validate()?;
        let (mut writes, mut records) = (Vec::new(), Vec::new());
        if after.tier != before.tier {
            after.tier_since = format_micros(now);
            // A tier a human sets comes with all its rights.
            after.earned_classes.clear();
            let change = TierChange {
                id: uuid::Uuid::now_v7().to_string(),
                agent: id.to_string(),
                at: format_micros(now),
                from: before.tier,
                to: after.tier,
                reason: "admin".into(),
                text: format!("set by {}", caller.actor_id()),
                actor: caller.actor_id(),
                score: before.trust_score,
                evidence: serde_json::json!({"trust_score": before.trust_score}),
            };
            let (more, data) = tier_changed(outbox, &change, after.status, now);
            writes = more;
            records.push(by_caller(
                caller,
                "tier.changed",
                format!("agent:{id}"),
                Some(id.to_string()),
                data,
                now,
            ));
        }
        let details = serde_json::json!({ "before": before, "after": after });
        records.insert(
            0,
            by_caller(
                caller,
                "agent.updated",
                format!("agent:{id}"),
                Some(id.to_string()),
                details,
                now,
            ),
        );
        Ok((after, writes, records))
    })
    .await?;
    outbox.notify();
    Ok(agent)
}

/// Changes an agent with a compare-and-set on its version: `edit` computes the new state (and
/// any other writes and audit records) from the current one; a concurrent change makes it start
/// again from the fresh state.
pub async fn update(
    store: &Store,
    clock: &SharedClock,
    id: &str,
    mut edit: impl FnMut(&Agent, i64) -> Result<(Agent, Vec<Write>, Vec<AuditRecord>)>,
) -> Result<Agent> {
    for _ in 0..3 {
        let before = store
            .agent_fresh(id)
            .await?
            .ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{id}`")))?;
        let now = clock.now_micros();
        let (mut after, more, audit) = edit(&before, now)?;
        after.updated_at = format_micros(now);
        after.version = before.version + 1;
        let mut writes = vec![Write::Identity(IdentityWrite::UpdateAgent {
            agent: after.clone(),
            expected_version: before.version,
            at: now,
        })];
        writes.extend(more);
        match store.commit(Change { writes, audit }).await {
            Ok(()) => return Ok(after),
            Err(e) if e.conflict() == Some(Conflict::ChangedConcurrently) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::new(
        Kind::Conflict,
        "changed_concurrently",
        format!("agent `{id}` kept changing underneath this update; retry"),
    ))
}
