//! Humans: registered with grants of their own, which bound the agents that act for them.

use crate::audit::by_caller;
use crate::clock::{SharedClock, format_micros};
use crate::error::Result;
use crate::identity::{Caller, Human, Role};
use crate::store::{Change, IdentityWrite, Store, Write};

/// Registers a human and their grants (admins).
pub async fn create(
    store: &Store,
    clock: &SharedClock,
    caller: &Caller,
    mut human: Human,
) -> Result<Human> {
    caller.require(&[Role::Admin])?;
    human.validate()?;
    let now = clock.now_micros();
    human.created_at = format_micros(now);
    let record = by_caller(
        caller,
        "human.created",
        format!("human:{}", human.id),
        None,
        serde_json::json!({ "human": human }),
        now,
    );
    store
        .commit(Change {
            writes: vec![Write::Identity(IdentityWrite::InsertHuman(
                human.clone(),
                now,
            ))],
            audit: vec![record],
        })
        .await?;
    Ok(human)
}
