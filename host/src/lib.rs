//! Warden: an adaptive risk engine that governs AI agents as first-class users of a platform.
//!
//! Agents ask Warden before they act; Warden answers allow, require approval or deny, records
//! why in a hash-chained audit log, and widens or narrows each agent's tier from its record.
//! See `DESIGN.md` for the architecture.
//!
//! This crate is the service and the `warden` binary. Dependencies point one way:
//! `api` (axum handlers: extract, call a service, answer) → `services` (the use cases:
//! decisions, approvals, outcomes, rollback, agents, tokens, tiering, notify, plugins) →
//! the crates below: `warden-store`, `warden-plugin-host` and `warden-core`. No service imports
//! `api`; `config` composes each crate's settings and only `server` and `cli` read it; `jobs`
//! runs every periodic task; `serve` is the connection loop beneath the router. The crates below are re-exported under their domain names so
//! that `warden::policy`, `warden::store` and the rest read as one library.

pub mod api;
pub mod cli;
pub mod config;
pub mod jobs;
pub mod metrics;
mod serve;
pub mod server;
pub mod services;

pub use warden_core::{
    activity, approvals, audit, baseline, clock, decision, delegation, error, identity, plugin,
    policy, quotas, records, replay, report, tiering, trust,
};
pub use warden_plugin_host as plugins;
pub use warden_store as store;
