//! Matrix-style error responses (`{"errcode": "...", "error": "..."}`) as lk-jwt-service sends them.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to a client: an HTTP status, a Matrix error code and a message.
///
/// The message is shown to clients: it never contains a token, a secret or a server-side detail
/// that would help an attacker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {errcode}: {message}")]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The Matrix error code, such as `M_BAD_JSON`.
    pub errcode: &'static str,
    /// A human-readable message.
    pub message: Cow<'static, str>,
    /// When to try again (`Retry-After`, and `retry_after_ms` in the body).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        errcode: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self { status, errcode, message: message.into(), retry_after: None }
    }

    /// `429 M_LIMIT_EXCEEDED`: too many requests from this client or for this homeserver.
    pub fn limit_exceeded(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", "Too many requests")
        }
    }

    /// `503 M_UNKNOWN` with `Retry-After`: the service is too busy to start the work now.
    pub fn busy(retry_after: Duration) -> Self {
        Self { retry_after: Some(retry_after), ..Self::unavailable("The service is busy") }
    }

    /// `400 M_NOT_JSON`: the body is not JSON of the expected shape (malformed, unknown field,
    /// wrong type). The message is the fixed one lk-jwt-service sends.
    pub fn not_json() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Error reading request")
    }

    /// `400 M_BAD_JSON`: a required field is missing or empty.
    pub fn bad_json(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", message)
    }

    /// `401 M_UNAUTHORIZED`: the OpenID token could not be verified or names another user.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "The request could not be authorised.",
        )
    }

    /// `403 M_FORBIDDEN`: the user may not do this.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", message)
    }

    /// `413 M_TOO_LARGE`: the request body exceeds the configured limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "M_TOO_LARGE",
            format!("The request body exceeds {limit} bytes"),
        )
    }

    /// `404 M_UNRECOGNIZED`: no such route.
    pub fn unrecognized() -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request")
    }

    /// `405 M_UNRECOGNIZED`: the route exists but not with this method.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED", "Method not allowed")
    }

    /// `503 M_UNKNOWN`: the service cannot take this now.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", message)
    }

    /// `500 M_UNKNOWN`.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "errcode": self.errcode, "error": self.message });
        if let Some(retry_after) = self.retry_after {
            body["retry_after_ms"] =
                u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).into();
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(retry_after) = self.retry_after {
            // Whole seconds, rounded up: a client that waits that long finds a token.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
