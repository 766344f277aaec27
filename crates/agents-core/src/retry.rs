//! Connection options and the one retry helper every provider plugin uses.
//!
//! [`ApiConnectOptions`] mirrors LiveKit's `APIConnectOptions` (`max_retry = 3`, `retry_interval = 2 s`,
//! `timeout = 10 s`) and adds [`ApiConnectOptions::max_retry_after`], the longest provider `Retry-After` we are willing
//! to wait (5 s by default). [`ApiConnectOptions::retry`] runs an operation with the policy below, so that every
//! plugin and every capability (STT, TTS, LLM, realtime) retries the same way.
//!
//! # Retry policy
//!
//! - At most `max_retry + 1` attempts.
//! - Only failures of the API error family ([`RetryableError::api_error`] returns `Some`) are retried; any other
//!   failure propagates at once, unchanged.
//! - Retryability is honoured for every capability: an error that is not retryable propagates at once, unchanged.
//!   (LiveKit's STT/TTS loops ignore the flag; its LLM loop honours it. We honour it everywhere.)
//! - **429.** A 429 is not retryable by the status rule, but when the provider sent a `Retry-After` no longer than
//!   [`ApiConnectOptions::max_retry_after`] the helper waits exactly `max(retry_after, interval_for_retry(i))` and
//!   retries. A 429 with a longer or missing `Retry-After` fails at once, so that a fallback provider can take over
//!   instead of leaving the user in silence.
//! - An explicit [`ApiError::with_retryable`] always wins over both the status rule and the 429 rule.
//! - With `max_retry == 0` the original error propagates unchanged.
//! - When the attempts are exhausted the result is
//!   `ApiError::connection("failed to {operation} after {n} attempts")` (retryable, as in LiveKit) whose
//!   [`source`](std::error::Error::source) is the last error, converted through [`RetryableError::from_api_error`].
//! - Between attempts the helper sleeps [`ApiConnectOptions::interval_for_retry`]: 0.1 s before the first retry,
//!   then `retry_interval`, for every capability alike (LiveKit's LLM loop sleeps a constant `retry_interval`; we do
//!   not copy that). A `Retry-After` on a retried error raises the delay, capped at `max_retry_after`.
//! - Every retry logs a `tracing::warn!` with the operation, the attempt and the error's `Display`; never headers or
//!   keys (see the secrets note in [`crate::error`]).
//!
//! See `docs/errors-and-retries.md` for how plugins map HTTP and WebSocket failures to [`ApiError`].

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::error::ApiError;

/// The delay before the first retry, whatever `retry_interval` is.
const FIRST_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Per-request connection policy of a provider plugin: how often to retry, how long to wait, and the timeout.
///
/// Build it with [`ApiConnectOptions::default`] and the `with_*` builders, or from LiveKit-style numbers with
/// [`ApiConnectOptions::from_secs`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ApiConnectOptions {
    /// How many times a failed attempt is retried (so at most `max_retry + 1` attempts). Default 3.
    pub max_retry: u32,
    /// The delay between retries after the first one (the first retry waits 0.1 s). Default 2 s.
    pub retry_interval: Duration,
    /// The timeout a plugin applies to each attempt, e.g. with [`ApiConnectOptions::run_with_timeout`]. Default 10 s.
    pub timeout: Duration,
    /// The longest provider `Retry-After` the retry helper is willing to wait. A 429 asking for longer fails at once;
    /// any other retried error waits at most this long for its `Retry-After`. Default 5 s.
    pub max_retry_after: Duration,
}

impl ApiConnectOptions {
    /// The defaults: `max_retry = 3`, `retry_interval = 2 s`, `timeout = 10 s`, `max_retry_after = 5 s`.
    pub const DEFAULT: Self = Self {
        max_retry: 3,
        retry_interval: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
        max_retry_after: Duration::from_secs(5),
    };

    /// Builds options from LiveKit-style numbers (seconds as floats), validating them like LiveKit.
    ///
    /// Zero is accepted for all three. `max_retry_after` keeps its default.
    ///
    /// # Errors
    ///
    /// In this order: a negative `max_retry`, `retry_interval` or `timeout` gives the LiveKit message
    /// `"{field} must be greater than or equal to 0"`; NaN or infinite seconds give
    /// [`ConnectOptionsError::NotFinite`]; a `max_retry` above `u32::MAX` or seconds too large for a
    /// [`Duration`] give [`ConnectOptionsError::TooLarge`].
    pub fn from_secs(
        max_retry: i64,
        retry_interval: f64,
        timeout: f64,
    ) -> Result<Self, ConnectOptionsError> {
        if max_retry < 0 {
            return Err(ConnectOptionsError::Negative { field: "max_retry" });
        }
        let max_retry = u32::try_from(max_retry)
            .map_err(|_| ConnectOptionsError::TooLarge { field: "max_retry" })?;
        let retry_interval = secs_to_duration("retry_interval", retry_interval)?;
        let timeout = secs_to_duration("timeout", timeout)?;
        Ok(Self {
            max_retry,
            retry_interval,
            timeout,
            ..Self::DEFAULT
        })
    }

    /// Sets [`ApiConnectOptions::max_retry`].
    #[must_use]
    pub fn with_max_retry(mut self, max_retry: u32) -> Self {
        self.max_retry = max_retry;
        self
    }

    /// Sets [`ApiConnectOptions::retry_interval`].
    #[must_use]
    pub fn with_retry_interval(mut self, retry_interval: Duration) -> Self {
        self.retry_interval = retry_interval;
        self
    }

    /// Sets [`ApiConnectOptions::timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ApiConnectOptions::max_retry_after`].
    #[must_use]
    pub fn with_max_retry_after(mut self, max_retry_after: Duration) -> Self {
        self.max_retry_after = max_retry_after;
        self
    }

    /// The delay before retry number `num_retries + 1`: 0.1 s when `num_retries == 0` (the first retry is almost
    /// immediate), otherwise `retry_interval`.
    pub fn interval_for_retry(&self, num_retries: u32) -> Duration {
        if num_retries == 0 {
            FIRST_RETRY_INTERVAL
        } else {
            self.retry_interval
        }
    }

    /// Whether `error`, the failure of attempt `num_retries` (0-based), should be retried, and after how long.
    ///
    /// `None` means "do not retry". The decision ignores `max_retry`; [`ApiConnectOptions::retry`] applies it. Use
    /// this when a plugin must write its own loop (e.g. a stream that reconnects) so it keeps the same policy:
    ///
    /// 1. An explicit [`ApiError::with_retryable`] decides.
    /// 2. Otherwise a 429 is retried only when its `Retry-After` is at most `max_retry_after`.
    /// 3. Otherwise [`ApiError::is_retryable`] decides.
    ///
    /// The delay is `interval_for_retry(num_retries)`, raised to the error's `Retry-After` (itself capped at
    /// `max_retry_after`) when it has one.
    pub fn retry_delay(&self, error: &ApiError, num_retries: u32) -> Option<Duration> {
        let retry = match error.retryable_override() {
            Some(explicit) => explicit,
            None if error.status_code() == Some(429) => {
                matches!(error.retry_after(), Some(after) if after <= self.max_retry_after)
            }
            None => error.is_retryable(),
        };
        if !retry {
            return None;
        }
        let interval = self.interval_for_retry(num_retries);
        Some(match error.retry_after() {
            Some(after) => after.min(self.max_retry_after).max(interval),
            None => interval,
        })
    }

    /// Runs `f` with the retry policy of this module (see the [module documentation](self)).
    ///
    /// `f` is called with the [`Attempt`] about to run. `operation` names what is attempted, in the infinitive
    /// (e.g. `"synthesize"`, `"recognize"`, `"connect to the STT stream"`); it appears in the logs and in the
    /// exhaustion error `"failed to {operation} after {n} attempts"`.
    ///
    /// The helper does not impose [`ApiConnectOptions::timeout`] itself: the attempt decides which part is bounded
    /// (typically the connection or the first response, not a whole stream), with [`Attempt::timeout`] or
    /// [`ApiConnectOptions::run_with_timeout`]. For a stream, retry only what happens before any output reached the
    /// caller, or the caller would hear it twice.
    ///
    /// # Errors
    ///
    /// - a failure outside the API error family, at once and unchanged;
    /// - an error that is not to be retried (see [`ApiConnectOptions::retry_delay`]), at once and unchanged;
    /// - any error when `max_retry == 0`, unchanged;
    /// - after `max_retry + 1` failed attempts, a retryable connection error
    ///   `"failed to {operation} after {n} attempts"` whose source is the last API error.
    pub async fn retry<T, E, F, Fut>(&self, operation: &str, mut f: F) -> Result<T, E>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: RetryableError,
    {
        let max_attempts = u64::from(self.max_retry) + 1;
        let mut index: u32 = 0;
        loop {
            let attempt = Attempt {
                index,
                is_last: index >= self.max_retry,
                timeout: self.timeout,
            };
            let error = match f(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let Some(api_error) = error.api_error() else {
                return Err(error);
            };
            let Some(delay) = self.retry_delay(api_error, index) else {
                return Err(error);
            };
            if self.max_retry == 0 {
                return Err(error);
            }
            if attempt.is_last {
                let exhausted = ApiError::connection(format!(
                    "failed to {operation} after {max_attempts} attempts"
                ))
                .with_source(api_error.clone());
                return Err(E::from_api_error(exhausted));
            }
            tracing::warn!(
                operation,
                attempt = u64::from(index) + 1,
                max_attempts,
                retry_in = ?delay,
                error = %api_error,
                "failed to {operation}, retrying",
            );
            tokio::time::sleep(delay).await;
            index += 1;
        }
    }

    /// Runs `fut` with [`ApiConnectOptions::timeout`]; when it elapses first, `fut` is dropped and the result is
    /// [`ApiError::timeout_default`] (`"Request timed out."`, retryable).
    ///
    /// A zero timeout only lets through a future that is ready on its first poll.
    ///
    /// # Errors
    ///
    /// [`ApiError::timeout_default`] when the timeout elapses.
    pub async fn run_with_timeout<T, Fut>(&self, fut: Fut) -> Result<T, ApiError>
    where
        Fut: Future<Output = T>,
    {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_elapsed| ApiError::timeout_default())
    }
}

impl Default for ApiConnectOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Converts seconds to a [`Duration`], rejecting negative, NaN, infinite and too large values.
fn secs_to_duration(field: &'static str, secs: f64) -> Result<Duration, ConnectOptionsError> {
    if secs.is_nan() {
        return Err(ConnectOptionsError::NotFinite { field });
    }
    if secs < 0.0 {
        return Err(ConnectOptionsError::Negative { field });
    }
    if secs.is_infinite() {
        return Err(ConnectOptionsError::NotFinite { field });
    }
    Duration::try_from_secs_f64(secs).map_err(|_| ConnectOptionsError::TooLarge { field })
}

/// Why [`ApiConnectOptions::from_secs`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectOptionsError {
    /// The value was negative (LiveKit's message).
    #[error("{field} must be greater than or equal to 0")]
    Negative {
        /// `"max_retry"`, `"retry_interval"` or `"timeout"`.
        field: &'static str,
    },
    /// The number of seconds was NaN or infinite.
    #[error("{field} must be a finite number of seconds")]
    NotFinite {
        /// `"retry_interval"` or `"timeout"`.
        field: &'static str,
    },
    /// The value does not fit (`max_retry` above `u32::MAX`, or seconds beyond a [`Duration`]).
    #[error("{field} is too large")]
    TooLarge {
        /// `"max_retry"`, `"retry_interval"` or `"timeout"`.
        field: &'static str,
    },
}

/// An error type that [`ApiConnectOptions::retry`] can retry: it tells whether a failure belongs to the API error
/// family, and can carry the exhaustion error.
///
/// A plugin error enum typically has one variant wrapping [`ApiError`]:
///
/// ```
/// use agents_core::error::ApiError;
/// use agents_core::retry::RetryableError;
///
/// enum TtsError {
///     Api(ApiError),
///     InvalidVoice(String),
/// }
///
/// impl RetryableError for TtsError {
///     fn api_error(&self) -> Option<&ApiError> {
///         match self {
///             TtsError::Api(e) => Some(e),
///             TtsError::InvalidVoice(_) => None,
///         }
///     }
///     fn from_api_error(error: ApiError) -> Self {
///         TtsError::Api(error)
///     }
/// }
/// ```
pub trait RetryableError: Sized {
    /// The API error inside, if this failure belongs to the API error family (only those are retried).
    fn api_error(&self) -> Option<&ApiError>;

    /// Builds this error type from the exhaustion error.
    fn from_api_error(error: ApiError) -> Self;
}

impl RetryableError for ApiError {
    fn api_error(&self) -> Option<&ApiError> {
        Some(self)
    }

    fn from_api_error(error: ApiError) -> Self {
        error
    }
}

/// The attempt [`ApiConnectOptions::retry`] is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// 0 for the first attempt, 1 for the first retry, and so on.
    pub index: u32,
    /// Whether a failure of this attempt will not be retried because the attempts are exhausted.
    pub is_last: bool,
    /// The timeout the attempt should apply ([`ApiConnectOptions::timeout`]).
    pub timeout: Duration,
}

/// Parses an HTTP `Retry-After` value into the delay to wait from `now`.
///
/// Accepts delta-seconds (`"120"`; a decimal such as `"1.5"` is tolerated although RFC 9110 only allows integers)
/// and an HTTP-date in any of the three formats of RFC 9110 (e.g. `"Sun, 06 Nov 1994 08:49:37 GMT"`); a date in the
/// past gives zero. Surrounding whitespace is ignored. Values too large for a [`Duration`] saturate to
/// [`Duration::MAX`]. Anything else (negative numbers, garbage, empty) gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if all_digits(value) {
        // Only overflow can make this parse fail.
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    if let Some((whole, fraction)) = value.split_once('.')
        && all_digits(whole)
        && all_digits(fraction)
    {
        let secs: f64 = value.parse().ok()?;
        return Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}
