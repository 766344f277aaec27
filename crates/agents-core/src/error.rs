//! The provider API error family, shared by every plugin.
//!
//! Mirrors LiveKit's `APIError` / `APIConnectionError` / `APITimeoutError` / `APIStatusError` as one struct with a
//! [`ApiErrorKind`], so a caller can always ask [`ApiError::is_retryable`], [`ApiError::status`] or
//! [`ApiError::is_timeout`] without downcasting. See `docs/errors-and-retries.md` for the retry rules.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which member of the API error family an [`ApiError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// A provider error without an HTTP status (e.g. an error event on a WebSocket).
    Api,
    /// The connection could not be made or broke (includes timeouts).
    Connection,
    /// The request timed out (a kind of connection error).
    Timeout,
    /// The provider answered with an error status.
    Status,
}

/// An error from a provider API.
///
/// Cheap to clone; the optional cause is reached through [`std::error::Error::source`].
#[derive(Clone)]
pub struct ApiError {
    kind: ApiErrorKind,
    message: String,
    status: Option<u16>,
    request_id: Option<String>,
    body: Option<serde_json::Value>,
    retryable: bool,
    retry_after: Option<Duration>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl ApiError {
    /// A generic provider error; retryable unless told otherwise.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: ApiErrorKind::Api,
            message: message.into(),
            status: None,
            request_id: None,
            body: None,
            retryable: true,
            retry_after: None,
            source: None,
        }
    }

    /// A connection error with a message; retryable unless told otherwise.
    pub fn connection(message: impl Into<String>) -> Self {
        Self {
            kind: ApiErrorKind::Connection,
            ..Self::new(message)
        }
    }

    /// A connection error with the default message `"Connection error."`.
    pub fn connection_default() -> Self {
        Self::connection("Connection error.")
    }

    /// A timeout with a message; retryable unless told otherwise.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self {
            kind: ApiErrorKind::Timeout,
            ..Self::new(message)
        }
    }

    /// A timeout with the default message `"Request timed out."`.
    pub fn timeout_default() -> Self {
        Self::timeout("Request timed out.")
    }

    /// An error status from the provider. Retryable unless `400..=499`; see [`ApiError::with_retryable`] to
    /// override and `docs/errors-and-retries.md` for 429.
    pub fn status(message: impl Into<String>, status: u16) -> Self {
        Self {
            kind: ApiErrorKind::Status,
            status: Some(status),
            retryable: !(400..=499).contains(&status),
            ..Self::new(message)
        }
    }

    /// Sets the provider's request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the decoded response body.
    pub fn with_body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Overrides retryability, whatever the kind or status.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Records the provider's `Retry-After` delay.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The family member.
    pub fn kind(&self) -> ApiErrorKind {
        self.kind
    }

    /// The message, without status details.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP (or WebSocket close) status, when the provider gave one.
    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// The provider's request id.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The decoded error body.
    pub fn body(&self) -> Option<&serde_json::Value> {
        self.body.as_ref()
    }

    /// The provider's `Retry-After`, when given.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == ApiErrorKind::Timeout
    }

    /// Whether this is a connection error (timeouts included).
    pub fn is_connection(&self) -> bool {
        matches!(self.kind, ApiErrorKind::Connection | ApiErrorKind::Timeout)
    }

    /// Whether the provider refused the credentials (401 or 403).
    pub fn is_auth(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ApiErrorKind::Status => {
                write!(f, "{} (status_code=", self.message)?;
                match self.status {
                    Some(s) => write!(f, "{s}")?,
                    None => f.write_str("-1")?,
                }
                f.write_str(", request_id=")?;
                match &self.request_id {
                    Some(r) => f.write_str(r)?,
                    None => f.write_str("None")?,
                }
                f.write_str(", body=")?;
                match &self.body {
                    Some(serde_json::Value::String(s)) => f.write_str(s)?,
                    Some(b) => write!(f, "{b}")?,
                    None => f.write_str("None")?,
                }
                f.write_str(")")
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ApiError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = self.status {
            d.field("status", &s);
        }
        if let Some(r) = &self.request_id {
            d.field("request_id", r);
        }
        if let Some(b) = &self.body {
            d.field("body", b);
        }
        d.field("retryable", &self.retryable);
        if let Some(r) = self.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &self.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}
