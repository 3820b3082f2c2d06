//! Warden: an adaptive risk engine that governs AI agents as first-class users of a platform.
//!
//! Agents ask Warden before they act; Warden answers allow, require approval or deny, records
//! why in a hash-chained audit log, and widens or narrows each agent's tier from its record. See `DESIGN.md` for the architecture. Data flows one way:
//! `api` → `engine` → (`policy`, …) → `store`/`audit`.

pub mod api;
pub mod approvals;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod outbox;
pub mod outcomes;
pub mod plugins;
pub mod policy;
pub mod quotas;
pub mod rollback;
pub mod server;
pub mod store;
pub mod tiers;
pub mod trust;
