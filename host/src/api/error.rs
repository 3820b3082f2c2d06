//! The error at the edge: every rule returns `warden_core`'s [`Error`] (or the store's), and
//! only here does its kind become an HTTP status and its fields the JSON body
//! `{"error": {"code", "message", "field"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use warden_core::error::{Error, Kind};
use warden_store::StoreError;

/// A handler's error: a core error on its way to becoming a response.
///
/// It has the core error's constructors, so handlers read `Error::field(..)` whichever they
/// build, and `?` turns core and store errors into it.
#[derive(Debug, Clone)]
pub struct ApiError(pub Error);

/// Shorthand for handlers' results.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl std::ops::Deref for ApiError {
    type Target = Error;

    fn deref(&self) -> &Error {
        &self.0
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        ApiError(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        ApiError(err.into())
    }
}

impl ApiError {
    /// An error of a kind with a code and message.
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(Error::new(kind, code, message))
    }

    /// A 400 naming the field at fault.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError(Error::field(field, message))
    }

    /// A 404 for an unknown resource.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(Error::not_found(code, message))
    }

    /// A 403 for a role that may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(Error::forbidden(code, message))
    }

    /// A 500 for what should not happen.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        ApiError(Error::internal(err))
    }

    /// Attaches the field at fault.
    pub fn at(self, field: impl Into<String>) -> ApiError {
        ApiError(self.0.at(field))
    }
}

/// The HTTP status for an error's kind.
pub fn status(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::Gone => StatusCode::GONE,
        Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Kind::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON error body: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Error {
            kind,
            code,
            message,
            field,
        } = self.0;
        if kind == Kind::Internal || kind == Kind::Unavailable {
            tracing::error!(code, message = %message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                field,
            },
        };
        let mut response = (status(kind), axum::Json(body)).into_response();
        if let Kind::TooManyRequests { retry_after_secs } = kind {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}
