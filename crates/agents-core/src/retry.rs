//! `ApiConnectOptions` and the retry helper every plugin uses (placeholder, replaced by the retry branch).

use std::time::Duration;

/// Connection, timeout and retry policy of provider requests.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ApiConnectOptions {
    /// Retries after the first attempt.
    pub max_retry: u32,
    /// Wait between retries after the first.
    pub retry_interval: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Longest Retry-After honoured.
    pub max_retry_after: Duration,
}

impl Default for ApiConnectOptions {
    fn default() -> Self {
        Self {
            max_retry: 3,
            retry_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(5),
        }
    }
}
