//! The error every rule returns: a kind, a stable code, a message, and the field at fault.
//!
//! Each error carries a stable machine code, a human message, and (for bad input) the field at
//! fault, so that a client can show the caller exactly what to fix. The kind decides the HTTP
//! status, but that mapping lives at the service's edge (`warden::api`): nothing here knows HTTP.

/// What kind of failure, which decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: malformed input or a missing or invalid field.
    BadRequest,
    /// 401: no token, or one that is unknown or revoked.
    Unauthorized,
    /// 403: the caller's role may not do this.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 405: the endpoint exists but does not take this method.
    MethodNotAllowed,
    /// 408: the request's body did not arrive in time.
    RequestTimeout,
    /// 409: the resource exists already or changed underneath.
    Conflict,
    /// 410: the resource existed but has lapsed (an expired approval).
    Gone,
    /// 422: well-formed, but not applicable to the resource's state.
    Unprocessable,
    /// 413: the body is over the configured limit.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 429: the caller is over a rate limit and is refused until its window ends.
    TooManyRequests {
        /// Seconds until the window ends (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// 503: the store cannot be reached; nothing was decided or written.
    Unavailable,
    /// 500: a bug.
    Internal,
}

/// An error with a stable code, a message and optionally the field at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// Decides the HTTP status.
    pub kind: Kind,
    /// Stable, snake_case machine code (e.g. `invalid_field`, `unknown_agent`).
    pub code: &'static str,
    /// What went wrong, for a human.
    pub message: String,
    /// The request field at fault, as a dotted path (`action.class`).
    pub field: Option<String>,
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an error of a kind with a code and message.
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Error {
        Error {
            kind,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            kind: Kind::BadRequest,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// A 404 for an unknown resource.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(Kind::NotFound, code, message)
    }

    /// A 403 for a role that may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(Kind::Forbidden, code, message)
    }

    /// A 503: the store failed, so the request fails closed.
    pub fn unavailable(err: impl std::fmt::Display) -> Error {
        Error::new(
            Kind::Unavailable,
            "store_unavailable",
            format!("the store is unavailable, nothing was decided or written: {err}"),
        )
    }

    /// A 500 for what should not happen.
    pub fn internal(err: impl std::fmt::Display) -> Error {
        Error::new(Kind::Internal, "internal", err.to_string())
    }

    /// Attaches the field at fault.
    pub fn at(mut self, field: impl Into<String>) -> Error {
        self.field = Some(field.into());
        self
    }
}
