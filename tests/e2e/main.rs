//! End-to-end tests: a real Warden HTTP server on a real SQLite file and a real PostgreSQL
//! schema, driven over HTTP. Every scenario runs on both backends.

mod support;

mod activity;
mod agents;
mod approvals;
mod audit;
mod audit_export;
mod authzen;
mod browser;
mod connections;
mod decisions;
mod errors;
mod guards;
mod idempotency;
mod ops;
mod organisation;
mod outcomes;
mod plugins;
mod process;
mod quotas;
mod readback;
mod reports;
mod roles;
mod schema;
mod signals;
mod tiers;
mod tls;
mod trust;
mod ui;
mod violations;
mod webhooks;
