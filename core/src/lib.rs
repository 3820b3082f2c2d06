//! Warden's vocabulary and every pure rule (DESIGN.md, "Layout").
//!
//! Risk levels, identities, policy (tiers, grants, trust, tiering, quotas), the decision types
//! and [`decision::judge`], approvals' binding, records with typed statuses, audit records and
//! the chain hash, and typed errors.
//!
//! This crate may depend on nothing of Warden's and on no I/O: no async runtime, no database,
//! no HTTP, no WebAssembly runtime. Everything here is a function of its inputs and the time it
//! is given, so tests can simulate months in milliseconds. `warden-store`,
//! `warden-plugin-host` and the `warden` service build on it.

pub mod activity;
pub mod approvals;
pub mod audit;
pub mod baseline;
pub mod clock;
pub mod decision;
pub mod delegation;
pub mod error;
pub mod identity;
pub mod plugin;
pub mod policy;
pub mod quotas;
pub mod records;
pub mod replay;
pub mod report;
pub mod tiering;
pub mod trust;
