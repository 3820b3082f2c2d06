//! The store's error: a logical conflict, something not found, a database that failed, or a
//! bug. Callers match on the variant, never on a message; the service maps each to HTTP.

use warden_core::error::{Error, Kind};

/// Shorthand for results carrying [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a write was refused: the row is not in the state the write expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// An agent with this id exists.
    AgentExists,
    /// A human with this id exists.
    HumanExists,
    /// A token with this secret exists.
    TokenExists,
    /// The row changed after it was read (optimistic concurrency).
    ChangedConcurrently,
    /// Another replica announced the approval's expiry first.
    ExpiryNoted,
    /// Another worker holds the delivery, or it is not due.
    DeliveryTaken,
    /// The claim under which a delivery was attempted has lapsed.
    ClaimLost,
    /// The approval is no longer pending (decided, expired).
    ApprovalNotPending,
    /// Another approver changed the approval meanwhile.
    ApprovalChanged,
    /// The approval is not approved and unused (single use).
    ApprovalUsed,
    /// A different outcome is recorded already.
    OutcomeReported,
    /// A rollback was requested already.
    RollbackRequested,
    /// The violation is not open any more.
    ViolationNotOpen,
    /// A charge would take a quota past its limit.
    QuotaExceeded,
    /// The decision's anomaly was confirmed already.
    AnomalyConfirmed,
    /// The platform's word on the decision's outcome was recorded already.
    OutcomeConfirmed,
    /// The guard's watch moved on meanwhile (closed, or held for a human).
    GuardMoved,
    /// A report for the week and scope is kept already.
    ReportKept,
    /// Another request holds the idempotency key, or its answer is kept.
    IdempotencyKeyTaken,
}

impl Conflict {
    /// The stable code the API answers with.
    pub fn code(self) -> &'static str {
        match self {
            Conflict::AgentExists => "agent_exists",
            Conflict::HumanExists => "human_exists",
            Conflict::TokenExists => "token_exists",
            Conflict::ChangedConcurrently => "changed_concurrently",
            Conflict::ExpiryNoted => "expiry_noted",
            Conflict::DeliveryTaken => "delivery_taken",
            Conflict::ClaimLost => "claim_lost",
            Conflict::ApprovalNotPending => "approval_not_pending",
            Conflict::ApprovalChanged => "approval_changed",
            Conflict::ApprovalUsed => "approval_used",
            Conflict::OutcomeReported => "outcome_reported",
            Conflict::RollbackRequested => "rollback_requested",
            Conflict::ViolationNotOpen => "violation_not_open",
            Conflict::QuotaExceeded => "quota_exceeded",
            Conflict::AnomalyConfirmed => "anomaly_confirmed",
            Conflict::OutcomeConfirmed => "outcome_confirmed",
            Conflict::GuardMoved => "guard_moved",
            Conflict::ReportKept => "report_kept",
            Conflict::IdempotencyKeyTaken => "idempotency_key_in_use",
        }
    }
}

/// What a write found missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No such token, or it is revoked already.
    Token,
    /// No such plugin.
    Plugin,
    /// No such approval.
    Approval,
    /// No such live delegation.
    Delegation,
}

impl Missing {
    /// The stable code the API answers with.
    pub fn code(self) -> &'static str {
        match self {
            Missing::Token => "unknown_token",
            Missing::Plugin => "unknown_plugin",
            Missing::Approval => "unknown_approval",
            Missing::Delegation => "unknown_delegation",
        }
    }
}

/// A failed read or write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The write conflicts with what is stored; nothing was written.
    #[error("{1}")]
    Conflict(Conflict, String),
    /// The write's target does not exist; nothing was written.
    #[error("{1}")]
    NotFound(Missing, String),
    /// The database cannot be reached or failed; nothing was written.
    #[error("the store is unavailable, nothing was decided or written: {0}")]
    Unavailable(String),
    /// The write was committed but the disk failed to flush it: it may not survive a power
    /// loss, and no later write is vouched for until Warden restarts.
    #[error("the write may not be durable, the disk failed to flush it: {0}")]
    Undurable(String),
    /// A bug: a row that does not decode, a missing column, a value that does not serialize.
    #[error("store bug: {0}")]
    Bug(String),
    /// One stored document that does not read back, named; the rest of the store is fine.
    #[error("{0}")]
    Unreadable(String),
}

impl StoreError {
    /// A bug, from anything that displays.
    pub fn bug(err: impl std::fmt::Display) -> StoreError {
        StoreError::Bug(err.to_string())
    }

    /// An outage, from anything that displays.
    pub fn unavailable(err: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(err.to_string())
    }

    /// The conflict, if this is one.
    pub fn conflict(&self) -> Option<Conflict> {
        match self {
            StoreError::Conflict(c, _) => Some(*c),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        crate::liveness::note(&err);
        match err {
            // The schema and the code disagree: a bug, not an outage, and retrying will not help.
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::RowNotFound => StoreError::Bug(err.to_string()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Error {
        match err {
            StoreError::Conflict(c, message) => Error::new(Kind::Conflict, c.code(), message),
            StoreError::NotFound(m, message) => Error::new(Kind::NotFound, m.code(), message),
            StoreError::Unavailable(message) => Error::unavailable(message),
            StoreError::Bug(message) => Error::internal(message),
            err @ StoreError::Undurable(_) => {
                Error::new(Kind::Unavailable, "store_undurable", err.to_string())
            }
            StoreError::Unreadable(message) => {
                Error::new(Kind::Unprocessable, "unreadable_record", message)
            }
        }
    }
}
