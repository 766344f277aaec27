//! The provider API error family, shared by every plugin.
//!
//! Mirrors LiveKit's `APIError` / `APIConnectionError` / `APITimeoutError` / `APIStatusError` as one struct with a
//! [`ApiErrorKind`], so a caller can always ask [`ApiError::is_retryable`], [`ApiError::status_code`] or
//! [`ApiError::is_timeout`] without downcasting. See [`crate::retry`] and `docs/errors-and-retries.md` for the retry
//! rules (notably the 429 rule, which the retry helper applies on top of [`ApiError::is_retryable`]).
//!
//! # Secrets
//!
//! `Display`, `Debug` and the retry logs print the message, status, request id, body and the *Display* of the
//! source. None of them can tell a secret from other text, so a plugin must never put an API key, a token, an
//! `Authorization` header or a signed URL into a message, a body or a source error's `Display`.

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
pub struct ApiError(Box<Inner>);

/// The fields of an [`ApiError`], boxed so `Result<T, ApiError>` stays small.
#[derive(Clone)]
struct Inner {
    kind: ApiErrorKind,
    message: String,
    status: Option<u16>,
    request_id: Option<String>,
    body: Option<serde_json::Value>,
    retryable: bool,
    /// Whether `retryable` was set with [`ApiError::with_retryable`] rather than derived from the kind or status.
    retryable_explicit: bool,
    retry_after: Option<Duration>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl ApiError {
    /// A generic provider error; retryable unless told otherwise.
    pub fn new(message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind: ApiErrorKind::Api,
            message: message.into(),
            status: None,
            request_id: None,
            body: None,
            retryable: true,
            retryable_explicit: false,
            retry_after: None,
            source: None,
        }))
    }

    fn with_kind(mut self, kind: ApiErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// A connection error with a message; retryable unless told otherwise.
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(message).with_kind(ApiErrorKind::Connection)
    }

    /// A connection error with the default message `"Connection error."`.
    pub fn connection_default() -> Self {
        Self::connection("Connection error.")
    }

    /// A timeout with a message; retryable unless told otherwise.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(message).with_kind(ApiErrorKind::Timeout)
    }

    /// A timeout with the default message `"Request timed out."`.
    pub fn timeout_default() -> Self {
        Self::timeout("Request timed out.")
    }

    /// An error status from the provider. Retryable unless `400..=499` (so 408 and 429 are not retryable, as in
    /// LiveKit); see [`ApiError::with_retryable`] to override, and [`crate::retry`] for the rule that still retries
    /// a 429 whose `Retry-After` is short.
    pub fn status(message: impl Into<String>, status: u16) -> Self {
        let mut e = Self::new(message).with_kind(ApiErrorKind::Status);
        e.0.status = Some(status);
        e.0.retryable = !(400..=499).contains(&status);
        e
    }

    /// A status error whose code is unknown (LiveKit's default `status_code=-1`); retryable unless told otherwise.
    ///
    /// Displays `status_code=-1`, and [`ApiError::status_code`] is `None`.
    pub fn status_unknown(message: impl Into<String>) -> Self {
        Self::new(message).with_kind(ApiErrorKind::Status)
    }

    /// Sets the provider's request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.0.request_id = Some(request_id.into());
        self
    }

    /// Sets the decoded response body.
    pub fn with_body(mut self, body: serde_json::Value) -> Self {
        self.0.body = Some(body);
        self
    }

    /// Overrides retryability, whatever the kind or status.
    ///
    /// An explicit value also wins over the retry helper's 429 rule (see [`crate::retry`]).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.0.retryable = retryable;
        self.0.retryable_explicit = true;
        self
    }

    /// Records the provider's `Retry-After` delay.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.0.retry_after = Some(retry_after);
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.0.source = Some(Arc::new(source));
        self
    }

    /// The error for an HTTP error response: status, decoded body, request id and `Retry-After`.
    ///
    /// Every plugin maps a provider's error status through here, so they agree on what is retryable and how the
    /// error reads. The message is taken from the common provider error shapes (`{"error": {"message"}}` of
    /// OpenAI, `{"err_msg"}` of Deepgram, `{"detail": {"message"}}` of ElevenLabs, `{"message"}`, `{"error": "..."}`,
    /// `{"detail": "..."}`), falling back to the status' reason phrase. A body that is not JSON is kept as a string,
    /// cut to 2 KiB. 401 and 403 are never retryable, whatever the caller sets later with the retry helper.
    pub fn from_http_response(
        status: u16,
        body: &[u8],
        request_id: Option<&str>,
        retry_after: Option<Duration>,
    ) -> Self {
        const MAX_BODY: usize = 2048;
        let json = serde_json::from_slice::<serde_json::Value>(body).ok();
        let message = json
            .as_ref()
            .and_then(provider_error_message)
            .unwrap_or_else(|| reason_phrase(status).to_owned());
        let mut e = Self::status(message, status);
        if matches!(status, 401 | 403) {
            e = e.with_retryable(false);
        }
        match json {
            Some(v) => e = e.with_body(v),
            None if !body.is_empty() => {
                let text = String::from_utf8_lossy(body);
                let mut end = text.len().min(MAX_BODY);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                e = e.with_body(serde_json::Value::String(text[..end].to_owned()));
            }
            None => {}
        }
        if let Some(id) = request_id {
            e = e.with_request_id(id);
        }
        if let Some(d) = retry_after {
            e = e.with_retry_after(d);
        }
        e
    }

    /// The family member.
    pub fn kind(&self) -> ApiErrorKind {
        self.0.kind
    }

    /// The message, without status details.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The HTTP (or WebSocket close) status, when the provider gave one.
    pub fn status_code(&self) -> Option<u16> {
        self.0.status
    }

    /// The provider's request id.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// The decoded error body.
    pub fn body(&self) -> Option<&serde_json::Value> {
        self.0.body.as_ref()
    }

    /// The provider's `Retry-After`, when given.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// Whether trying again may succeed.
    ///
    /// This is the flag alone; the retry helper additionally retries a 429 with a short `Retry-After` (see
    /// [`crate::retry::ApiConnectOptions::retry_delay`]).
    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    /// The retryability set with [`ApiError::with_retryable`], or `None` when it comes from the kind or status
    /// rule.
    pub fn retryable_override(&self) -> Option<bool> {
        self.0.retryable_explicit.then_some(self.0.retryable)
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ApiErrorKind::Timeout
    }

    /// Whether this is a connection error (timeouts included).
    pub fn is_connection(&self) -> bool {
        matches!(
            self.0.kind,
            ApiErrorKind::Connection | ApiErrorKind::Timeout
        )
    }

    /// Whether the provider refused the credentials (401 or 403).
    pub fn is_auth(&self) -> bool {
        matches!(self.0.status, Some(401 | 403))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.kind {
            ApiErrorKind::Status => {
                write!(f, "{} (status_code=", self.0.message)?;
                match self.0.status {
                    Some(s) => write!(f, "{s}")?,
                    None => f.write_str("-1")?,
                }
                f.write_str(", request_id=")?;
                match &self.0.request_id {
                    Some(r) => f.write_str(r)?,
                    None => f.write_str("None")?,
                }
                f.write_str(", body=")?;
                match &self.0.body {
                    Some(serde_json::Value::String(s)) => f.write_str(s)?,
                    Some(b) => write!(f, "{b}")?,
                    None => f.write_str("None")?,
                }
                f.write_str(")")
            }
            _ => f.write_str(&self.0.message),
        }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ApiError");
        d.field("kind", &self.0.kind)
            .field("message", &self.0.message);
        if let Some(s) = self.0.status {
            d.field("status", &s);
        }
        if let Some(r) = &self.0.request_id {
            d.field("request_id", r);
        }
        if let Some(b) = &self.0.body {
            d.field("body", b);
        }
        d.field("retryable", &self.0.retryable);
        if let Some(r) = self.0.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &self.0.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// The human message inside a provider's JSON error body, for the shapes the plugins meet.
fn provider_error_message(v: &serde_json::Value) -> Option<String> {
    let str_at = |ptr: &str| v.pointer(ptr).and_then(|m| m.as_str()).map(str::to_owned);
    str_at("/error/message")
        .or_else(|| str_at("/err_msg"))
        .or_else(|| str_at("/detail/message"))
        .or_else(|| str_at("/message"))
        .or_else(|| str_at("/error"))
        .or_else(|| str_at("/detail"))
        .filter(|m| !m.is_empty())
}

/// The reason phrase of the statuses providers answer with.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "HTTP error",
    }
}

/// Implements [`crate::retry::RetryableError`] for a capability error with an `Api(ApiError)` variant.
macro_rules! retryable_via_api_variant {
    ($($t:ty),*) => {$(
        impl crate::retry::RetryableError for $t {
            fn api_error(&self) -> Option<&ApiError> {
                match self {
                    Self::Api(e) => Some(e),
                    _ => None,
                }
            }
            fn from_api_error(error: ApiError) -> Self {
                Self::Api(error)
            }
        }
    )*};
}

retryable_via_api_variant!(
    crate::llm::LlmError,
    crate::stt::SttError,
    crate::tts::TtsError,
    crate::realtime::RealtimeError
);
