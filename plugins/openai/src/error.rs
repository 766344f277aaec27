//! The plugin's own error types: bad configuration, and protocol violations by the server (attached as the
//! [`source`](std::error::Error::source) of the [`ApiError`](agents_core::ApiError) a capability returns).

/// A plugin could not be built from its options.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A header name or value cannot be sent (the value is never printed: it may be a key).
    #[error("invalid header `{name}`: names must be tokens and values visible ASCII")]
    InvalidHeader {
        /// The header name.
        name: String,
    },
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid option: {reason}")]
    InvalidOption {
        /// What is wrong.
        reason: String,
    },
    /// A required environment variable is unset or empty.
    #[error("environment variable {var} is not set")]
    MissingEnv {
        /// The variable.
        var: &'static str,
    },
    /// The HTTP client could not be built (TLS backend).
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The server broke the protocol; the [`ApiError`](agents_core::ApiError) a call returns carries this as its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A line of the event stream is not `data:`, `event:`, `id:`, `retry:` or a comment.
    #[error("malformed server-sent events line: {line:?}")]
    MalformedSseLine {
        /// The line (cut to 120 characters).
        line: String,
    },
    /// The event stream is not UTF-8.
    #[error("the event stream is not valid UTF-8")]
    InvalidUtf8,
    /// An SSE line grew beyond the limit without ending.
    #[error("an event stream line exceeds {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A payload is not the JSON expected.
    #[error("invalid JSON in {what}: {reason}")]
    InvalidJson {
        /// What was parsed.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The stream ended before the response was complete.
    #[error("the stream ended before {what}")]
    Truncated {
        /// What was missing.
        what: String,
    },
    /// A tool call arrived without a function name.
    #[error("tool call {call_id:?} has no function name")]
    ToolCallWithoutName {
        /// The call id.
        call_id: String,
    },
    /// Audio bytes do not form whole 16-bit samples.
    #[error("the audio stream ended on half a sample ({len} bytes)")]
    OddAudioLength {
        /// Total bytes received.
        len: usize,
    },
}
