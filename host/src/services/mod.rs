//! The use cases, one module each: what happens when a decision is asked for, an approval
//! decided, an outcome reported, signals received, an agent changed, a token minted, a tier
//! reviewed, an event announced, a plugin published. Handlers call these; these call the
//! store, the plugin host and the pure rules of `warden-core`. Nothing here knows HTTP.

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod baselines;
pub mod checkpoints;
pub mod coalesce;
pub mod cutoffs;
pub mod decisions;
pub mod delegations;
pub mod events;
pub mod export;
pub mod guards;
pub mod humans;
pub mod idempotency;
pub mod integrations;
pub mod lanes;
pub mod notify;
pub mod outcomes;
pub mod overruns;
pub mod plugins;
pub mod presented;
pub mod quotas;
pub mod repeats;
pub mod reports;
pub mod rollback;
pub mod sessions;
pub mod tiering;
pub mod tokens;
pub mod violations;
