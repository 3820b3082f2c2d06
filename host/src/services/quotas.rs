//! Quotas: an agent's own limits, and upkeep (counts of windows long over are deleted). Checking
//! and charging quotas is part of deciding (the rules are in [`warden_core::quotas`]).

use crate::audit::by_caller;
use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::identity::{Agent, Caller, Role};
use crate::policy::CompiledPolicy;
use crate::quotas::check_limit;
use crate::services::agents;
use crate::store::{Store, StoreError};

/// How long counts are kept after their window starts: the longest window is a day, in any time
/// zone, so each is kept two days at least after it ends.
const KEEP_US: i64 = 3 * 86_400_000_000;

/// Deletes counts of windows that started over three days ago: one step of an hourly task.
pub async fn prune(store: &Store, clock: &SharedClock) -> std::result::Result<(), StoreError> {
    store
        .prune_quota_usage(clock.now_micros().saturating_sub(KEEP_US))
        .await
        .map(drop)
}

/// Sets (a number) or removes (null) an agent's own quota limits, over its tier's and team's
/// (admins). Every limit is checked before anything changes.
pub async fn set_overrides(
    store: &Store,
    clock: &SharedClock,
    policy: &CompiledPolicy,
    caller: &Caller,
    id: &str,
    limits: &serde_json::Map<String, serde_json::Value>,
) -> Result<Agent> {
    caller.require(&[Role::Admin])?;

    // Check everything before changing anything.
    let mut changes: Vec<(String, Option<f64>)> = Vec::new();
    for (name, value) in limits {
        let field = format!("limits.{name}");
        let quota = policy.policy.quotas.quota(name).ok_or_else(|| {
            let known: Vec<&str> = policy
                .policy
                .quotas
                .quotas
                .iter()
                .map(|q| q.name.as_str())
                .collect();
            Error::field(
                &field,
                format!("no quota `{name}`; known: {}", known.join(", ")),
            )
        })?;
        let limit = match value {
            serde_json::Value::Null => None,
            v => Some(v.as_f64().ok_or_else(|| {
                Error::field(&field, "must be a number (or null to remove the override)")
            })?),
        };
        if let Some(l) = limit {
            check_limit(quota, l).map_err(|e| Error::field(&field, e))?;
        }
        changes.push((name.clone(), limit));
    }
    agents::update(store, clock, id, |before: &Agent, now| {
        let mut after = before.clone();
        for (name, limit) in &changes {
            match limit {
                Some(l) => after.quota_overrides.insert(name.clone(), *l),
                None => after.quota_overrides.remove(name),
            };
        }
        let details =
            serde_json::json!({"before": before.quota_overrides, "after": after.quota_overrides});
        let record = by_caller(
            caller,
            "quotas.updated",
            format!("agent:{id}"),
            Some(id.to_string()),
            details,
            now,
        );
        Ok((after, Vec::new(), vec![record]))
    })
    .await
}
