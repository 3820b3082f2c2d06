//! Warden's analytics on polars: human baselines from activity, each agent's drift from its
//! team's humans (DESIGN.md, "Human baselines, anomaly and drift"), and weekly behaviour
//! reports ("Weekly behaviour reports").
//!
//! Pure functions from frames to frames: the caller reads rows into an [`Activity`] (strings
//! interned to integer codes, so that a million events group in well under a second) and
//! writes the results. Nothing here does I/O or reads a clock.

mod activity;
mod baselines;
mod drift;
pub mod parquet;
mod report;

pub use activity::Activity;
pub use baselines::baselines;
pub use drift::{DriftScore, drift};
pub use report::weekly;

/// Why a computation failed: polars refused a frame (a bug here, never bad input).
#[derive(Debug, thiserror::Error)]
#[error("analytics: {0}")]
pub struct Error(#[from] polars::error::PolarsError);

/// Shorthand for results carrying [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
