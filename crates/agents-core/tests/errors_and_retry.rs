//! Errors and retry: LiveKit behaviours 1-13 (reference section 11) and our deliberate policy (429 rule, delays,
//! timeouts, secrets). Every async test runs on tokio's paused clock, so sleeps are virtual and elapsed times exact.

use std::error::Error as _;
use std::fmt;
use std::future::ready;
use std::time::{Duration, SystemTime};

use agents_core::error::{ApiError, ApiErrorKind};
use agents_core::retry::{
    ApiConnectOptions, Attempt, ConnectOptionsError, RetryableError, parse_retry_after,
};
use serde_json::json;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A plugin-style error enum: one variant in the API family, one outside it.
#[derive(Debug)]
enum PluginError {
    Api(ApiError),
    Config(String),
}

impl RetryableError for PluginError {
    fn api_error(&self) -> Option<&ApiError> {
        match self {
            PluginError::Api(e) => Some(e),
            PluginError::Config(_) => None,
        }
    }

    fn from_api_error(error: ApiError) -> Self {
        PluginError::Api(error)
    }
}

/// Runs `opts.retry` with an operation that fails with `errors[i]` on attempt `i` (and succeeds with `"ok"` once
/// the list is used up). Returns the result, the attempts seen, and the virtual time of each attempt since start.
async fn run<E: RetryableError>(
    opts: ApiConnectOptions,
    operation: &str,
    errors: Vec<E>,
) -> (Result<&'static str, E>, Vec<Attempt>, Vec<Duration>) {
    let start = Instant::now();
    let mut errors = errors.into_iter();
    let mut attempts = Vec::new();
    let mut times = Vec::new();
    let result = opts
        .retry(operation, |attempt| {
            attempts.push(attempt);
            times.push(start.elapsed());
            ready(match errors.next() {
                Some(e) => Err(e),
                None => Ok("ok"),
            })
        })
        .await;
    (result, attempts, times)
}

fn numbered(n: usize) -> Vec<ApiError> {
    (1..=n)
        .map(|i| ApiError::connection(format!("drop {i}")).with_request_id(format!("req-{i}")))
        .collect()
}

fn too_many_requests(retry_after: Option<Duration>) -> ApiError {
    let e = ApiError::status("Too Many Requests", 429);
    match retry_after {
        Some(after) => e.with_retry_after(after),
        None => e,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// LiveKit behaviours 1-13
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn behaviour_01_default_connect_options() {
    let opts = ApiConnectOptions::default();
    assert_eq!(opts.max_retry, 3);
    assert_eq!(opts.retry_interval, SECS(2));
    assert_eq!(opts.timeout, SECS(10));
    assert_eq!(opts.max_retry_after, SECS(5));
    assert_eq!(opts, ApiConnectOptions::DEFAULT);
    assert_eq!(ApiConnectOptions::from_secs(3, 2.0, 10.0), Ok(opts));
}

#[test]
fn behaviour_02_validation_messages() {
    let msg = |r: Result<ApiConnectOptions, ConnectOptionsError>| r.unwrap_err().to_string();
    assert_eq!(
        msg(ApiConnectOptions::from_secs(-1, 2.0, 10.0)),
        "max_retry must be greater than or equal to 0"
    );
    assert_eq!(
        msg(ApiConnectOptions::from_secs(3, -0.5, 10.0)),
        "retry_interval must be greater than or equal to 0"
    );
    assert_eq!(
        msg(ApiConnectOptions::from_secs(3, 2.0, -1.0)),
        "timeout must be greater than or equal to 0"
    );
    assert_eq!(
        ApiConnectOptions::from_secs(3, 2.0, f64::NEG_INFINITY),
        Err(ConnectOptionsError::Negative { field: "timeout" })
    );

    // Zero is accepted for all three.
    let zero = ApiConnectOptions::from_secs(0, 0.0, 0.0).unwrap();
    assert_eq!(zero.max_retry, 0);
    assert_eq!(zero.retry_interval, Duration::ZERO);
    assert_eq!(zero.timeout, Duration::ZERO);
    assert_eq!(zero.max_retry_after, SECS(5));
    assert!(ApiConnectOptions::from_secs(0, -0.0, -0.0).is_ok());

    // Not LiveKit: NaN, infinity and overflow are refused with a clear message, never a panic.
    assert_eq!(
        msg(ApiConnectOptions::from_secs(3, f64::NAN, 10.0)),
        "retry_interval must be a finite number of seconds"
    );
    assert_eq!(
        msg(ApiConnectOptions::from_secs(3, 2.0, f64::INFINITY)),
        "timeout must be a finite number of seconds"
    );
    assert_eq!(
        msg(ApiConnectOptions::from_secs(3, 1e30, 10.0)),
        "retry_interval is too large"
    );
    assert_eq!(
        msg(ApiConnectOptions::from_secs(i64::MAX, 2.0, 10.0)),
        "max_retry is too large"
    );
    let fractional = ApiConnectOptions::from_secs(1, 0.25, 1.5).unwrap();
    assert_eq!(fractional.retry_interval, MS(250));
    assert_eq!(fractional.timeout, MS(1500));
}

#[test]
fn behaviour_03_interval_for_retry() {
    let opts = ApiConnectOptions::default();
    assert_eq!(opts.interval_for_retry(0), MS(100));
    for n in [1, 2, 3, 100, u32::MAX] {
        assert_eq!(opts.interval_for_retry(n), SECS(2));
    }
    let zero = ApiConnectOptions::default().with_retry_interval(Duration::ZERO);
    assert_eq!(zero.interval_for_retry(0), MS(100));
    assert_eq!(zero.interval_for_retry(1), Duration::ZERO);
}

#[test]
fn behaviour_04_4xx_not_retryable_including_408_and_429() {
    for code in [400, 401, 403, 404, 408, 409, 422, 429, 499] {
        let e = ApiError::status("refused", code);
        assert!(!e.is_retryable(), "{code} must not be retryable");
        assert_eq!(e.retryable_override(), None);
        assert_eq!(e.status_code(), Some(code));
        assert_eq!(e.kind(), ApiErrorKind::Status);
    }
    assert!(ApiError::status("unauthorized", 401).is_auth());
    assert!(ApiError::status("forbidden", 403).is_auth());
    assert!(!ApiError::status("too many", 429).is_auth());
}

#[test]
fn behaviour_05_5xx_and_unknown_status_retryable() {
    for code in [500, 502, 503, 504, 599] {
        assert!(ApiError::status("server", code).is_retryable(), "{code}");
    }
    // LiveKit's default status_code=-1.
    let unknown = ApiError::status_unknown("no status");
    assert!(unknown.is_retryable());
    assert_eq!(unknown.status_code(), None);
    assert_eq!(unknown.kind(), ApiErrorKind::Status);
    // Codes outside 400..=499 (nonsense included) follow the same rule.
    for code in [0, 100, 302, 600, u16::MAX] {
        assert!(ApiError::status("odd", code).is_retryable(), "{code}");
    }
}

#[test]
fn behaviour_06_explicit_retryable_overrides_status_both_ways() {
    let e = ApiError::status("bad gateway", 502).with_retryable(false);
    assert!(!e.is_retryable());
    assert_eq!(e.retryable_override(), Some(false));

    let e = ApiError::status("conflict", 409).with_retryable(true);
    assert!(e.is_retryable());
    assert_eq!(e.retryable_override(), Some(true));

    let e = ApiError::status("timeout", 408).with_retryable(true);
    assert!(e.is_retryable());
}

#[test]
fn behaviour_07_default_retryability_and_kind_hierarchy() {
    let api = ApiError::new("provider error");
    let connection = ApiError::connection("socket closed");
    let timeout = ApiError::timeout("slow");
    for e in [&api, &connection, &timeout] {
        assert!(e.is_retryable(), "{e}");
        assert_eq!(e.retryable_override(), None);
    }
    assert_eq!(api.kind(), ApiErrorKind::Api);
    assert!(!api.is_connection() && !api.is_timeout());
    assert_eq!(connection.kind(), ApiErrorKind::Connection);
    assert!(connection.is_connection() && !connection.is_timeout());
    // A timeout is a connection error (which is an API error: every kind is an ApiError).
    assert_eq!(timeout.kind(), ApiErrorKind::Timeout);
    assert!(timeout.is_connection() && timeout.is_timeout());
    // A status error is neither.
    let status = ApiError::status("server", 500);
    assert!(!status.is_connection() && !status.is_timeout());
    // Any kind can be made non-retryable.
    assert!(
        !ApiError::timeout_default()
            .with_retryable(false)
            .is_retryable()
    );
}

#[test]
fn behaviour_08_status_display_format() {
    let e = ApiError::status("Invalid API key", 401)
        .with_request_id("req_123")
        .with_body(json!({"error": "invalid_api_key"}));
    assert_eq!(
        e.to_string(),
        r#"Invalid API key (status_code=401, request_id=req_123, body={"error":"invalid_api_key"})"#
    );
    assert_eq!(e.message(), "Invalid API key");

    assert_eq!(
        ApiError::status("Service Unavailable", 503).to_string(),
        "Service Unavailable (status_code=503, request_id=None, body=None)"
    );
    assert_eq!(
        ApiError::status("gateway", 502)
            .with_body(json!("upstream down"))
            .to_string(),
        "gateway (status_code=502, request_id=None, body=upstream down)"
    );
    assert_eq!(
        ApiError::status_unknown("odd").to_string(),
        "odd (status_code=-1, request_id=None, body=None)"
    );
    // Other kinds display their message alone.
    assert_eq!(
        ApiError::new("boom").with_request_id("r").to_string(),
        "boom"
    );
}

#[test]
fn behaviour_09_default_messages() {
    assert_eq!(
        ApiError::connection_default().to_string(),
        "Connection error."
    );
    assert_eq!(
        ApiError::timeout_default().to_string(),
        "Request timed out."
    );
    assert_eq!(ApiError::timeout_default().message(), "Request timed out.");
}

#[tokio::test(start_paused = true)]
async fn behaviour_10_at_most_max_retry_plus_one_attempts_then_connection_error() {
    let opts = ApiConnectOptions::default();
    let (result, attempts, _) = run(opts, "synthesize", numbered(10)).await;
    let err = result.unwrap_err();

    assert_eq!(attempts.len(), 4);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a.index as usize, i);
        assert_eq!(a.is_last, i == 3);
        assert_eq!(a.timeout, SECS(10));
    }
    assert_eq!(err.kind(), ApiErrorKind::Connection);
    assert_eq!(err.to_string(), "failed to synthesize after 4 attempts");
    assert!(err.is_retryable());
    let source = err.source().unwrap().downcast_ref::<ApiError>().unwrap();
    assert_eq!(source.message(), "drop 4");
    assert_eq!(source.request_id(), Some("req-4"));

    // Through a plugin error type: the exhaustion error goes through `from_api_error`.
    let errors = (1..=5)
        .map(|i| PluginError::Api(ApiError::status(format!("down {i}"), 503)))
        .collect();
    let (result, attempts, _) = run(opts.with_max_retry(1), "recognize", errors).await;
    assert_eq!(attempts.len(), 2);
    let PluginError::Api(err) = result.unwrap_err() else {
        panic!("expected the API variant")
    };
    assert_eq!(err.to_string(), "failed to recognize after 2 attempts");
    let source = err.source().unwrap().downcast_ref::<ApiError>().unwrap();
    assert_eq!(source.message(), "down 2");

    // Success after failures returns the value.
    let (result, attempts, _) = run(opts, "chat", numbered(3)).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(attempts.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn behaviour_11_max_retry_zero_returns_original_error_unchanged() {
    let opts = ApiConnectOptions::default().with_max_retry(0);
    let original = ApiError::status("Service Unavailable", 503)
        .with_request_id("req-9")
        .with_body(json!({"error": "overloaded"}))
        .with_source(std::io::Error::other("reset"));
    let start = Instant::now();
    let (result, attempts, _) = run(opts, "synthesize", vec![original.clone()]).await;
    let err = result.unwrap_err();

    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].is_last);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.to_string(), original.to_string());
    assert_eq!(format!("{err:?}"), format!("{original:?}"));
    assert_eq!(err.kind(), ApiErrorKind::Status);
    assert_eq!(err.source().unwrap().to_string(), "reset");
}

#[tokio::test(start_paused = true)]
async fn behaviour_12_non_api_errors_not_retried() {
    let start = Instant::now();
    let errors = vec![
        PluginError::Config("unknown voice".into()),
        PluginError::Api(ApiError::connection_default()),
    ];
    let (result, attempts, _) = run(ApiConnectOptions::default(), "synthesize", errors).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(matches!(result, Err(PluginError::Config(m)) if m == "unknown voice"));

    // A non-API failure after API retries also propagates at once, unchanged.
    let errors = vec![
        PluginError::Api(ApiError::connection_default()),
        PluginError::Config("bad".into()),
    ];
    let (result, attempts, _) = run(ApiConnectOptions::default(), "synthesize", errors).await;
    assert_eq!(attempts.len(), 2);
    assert!(matches!(result, Err(PluginError::Config(m)) if m == "bad"));
}

#[tokio::test(start_paused = true)]
async fn behaviour_13_non_retryable_errors_not_retried() {
    // Deliberate: LiveKit's STT/TTS loops ignore `retryable`; we honour it for every capability.
    for (operation, error) in [
        ("recognize", ApiError::status("Unauthorized", 401)),
        ("synthesize", ApiError::status("Bad Request", 400)),
        (
            "chat",
            ApiError::connection("tls handshake").with_retryable(false),
        ),
        (
            "chat",
            ApiError::status("Bad Gateway", 502).with_retryable(false),
        ),
    ] {
        let start = Instant::now();
        let (result, attempts, _) = run(
            ApiConnectOptions::default(),
            operation,
            vec![error.clone(), error.clone()],
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(attempts.len(), 1, "{error}");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(err.to_string(), error.to_string());
        assert!(err.source().is_none());
    }

    // A non-retryable error after retries propagates unchanged too (not wrapped in the exhaustion error).
    let errors = vec![
        ApiError::connection_default(),
        ApiError::status("Forbidden", 403),
    ];
    let (result, attempts, _) = run(ApiConnectOptions::default(), "recognize", errors).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(result.unwrap_err().status_code(), Some(403));
}

// ---------------------------------------------------------------------------------------------------------------
// Delays (virtual clock)
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn delays_are_100ms_then_retry_interval() {
    let (_, _, times) = run(ApiConnectOptions::default(), "recognize", numbered(10)).await;
    assert_eq!(times, vec![MS(0), MS(100), MS(2100), MS(4100)]);

    // The same schedule for every operation; LLM included (LiveKit's LLM loop had no 0.1 s first retry).
    let opts = ApiConnectOptions::default()
        .with_max_retry(2)
        .with_retry_interval(MS(500));
    let start = Instant::now();
    let (_, _, times) = run(opts, "chat", numbered(10)).await;
    assert_eq!(times, vec![MS(0), MS(100), MS(600)]);
    // No sleep after the last attempt.
    assert_eq!(start.elapsed(), MS(600));
}

// ---------------------------------------------------------------------------------------------------------------
// 429 and Retry-After
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn too_many_requests_with_retry_after_within_cap_waits_exactly_that_long() {
    let opts = ApiConnectOptions::default();
    let errors = vec![
        too_many_requests(Some(SECS(3))),
        too_many_requests(Some(SECS(5))), // exactly the cap is still accepted
    ];
    let (result, _, times) = run(opts, "synthesize", errors).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(times, vec![MS(0), MS(3000), MS(8000)]);

    // A Retry-After shorter than the interval waits the interval: max(retry_after, interval_for_retry(i)).
    let errors = vec![
        too_many_requests(Some(MS(20))),
        too_many_requests(Some(MS(20))),
    ];
    let (result, _, times) = run(opts, "synthesize", errors).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(times, vec![MS(0), MS(100), MS(2100)]);

    // The cap is configurable.
    let opts = opts.with_max_retry_after(SECS(30));
    let (result, _, times) = run(opts, "chat", vec![too_many_requests(Some(SECS(20)))]).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(times, vec![MS(0), SECS(20)]);

    // 429s are exhausted like any other retried error.
    let opts = ApiConnectOptions::default().with_max_retry(1);
    let errors = vec![
        too_many_requests(Some(SECS(1))),
        too_many_requests(Some(SECS(1))),
    ];
    let (result, _, _) = run(opts, "chat", errors).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "failed to chat after 2 attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_beyond_cap_or_without_retry_after_fails_at_once() {
    for retry_after in [None, Some(MS(5001)), Some(SECS(60))] {
        let start = Instant::now();
        let error = too_many_requests(retry_after);
        let (result, attempts, _) = run(
            ApiConnectOptions::default(),
            "synthesize",
            vec![error.clone()],
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(attempts.len(), 1, "{retry_after:?}");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(err.status_code(), Some(429));
        assert_eq!(err.retry_after(), retry_after);
        assert!(err.source().is_none());
    }
    // A zero cap turns the rule off.
    let opts = ApiConnectOptions::default().with_max_retry_after(Duration::ZERO);
    let (result, attempts, _) = run(opts, "chat", vec![too_many_requests(Some(MS(1)))]).await;
    assert!(result.is_err());
    assert_eq!(attempts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn explicit_retryable_wins_over_the_429_rule() {
    let opts = ApiConnectOptions::default();

    // Explicitly not retryable: fails at once even with a short Retry-After.
    let e = too_many_requests(Some(SECS(1))).with_retryable(false);
    let (result, attempts, _) = run(opts, "chat", vec![e]).await;
    assert!(result.is_err());
    assert_eq!(attempts.len(), 1);

    // Explicitly retryable without Retry-After: retried on the normal schedule.
    let e = too_many_requests(None).with_retryable(true);
    let (result, _, times) = run(opts, "chat", vec![e.clone(), e]).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(times, vec![MS(0), MS(100), MS(2100)]);

    // Explicitly retryable with a Retry-After beyond the cap: retried, waiting no longer than the cap.
    let e = too_many_requests(Some(SECS(60))).with_retryable(true);
    let (result, _, times) = run(opts, "chat", vec![e]).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(times, vec![MS(0), SECS(5)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_other_retryable_errors_raises_the_delay_up_to_the_cap() {
    let opts = ApiConnectOptions::default();
    let errors = vec![
        ApiError::status("Service Unavailable", 503).with_retry_after(SECS(4)),
        ApiError::status("Service Unavailable", 503).with_retry_after(SECS(600)),
        ApiError::status("Service Unavailable", 503).with_retry_after(MS(10)),
    ];
    let (result, _, times) = run(opts, "synthesize", errors).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(times, vec![MS(0), SECS(4), SECS(9), SECS(11)]);
}

#[test]
fn retry_delay_exposes_the_same_decision() {
    let opts = ApiConnectOptions::default();
    assert_eq!(
        opts.retry_delay(&ApiError::connection_default(), 0),
        Some(MS(100))
    );
    assert_eq!(
        opts.retry_delay(&ApiError::connection_default(), 1),
        Some(SECS(2))
    );
    assert_eq!(opts.retry_delay(&ApiError::status("x", 401), 0), None);
    assert_eq!(opts.retry_delay(&too_many_requests(None), 0), None);
    assert_eq!(
        opts.retry_delay(&too_many_requests(Some(SECS(3))), 1),
        Some(SECS(3))
    );
    assert_eq!(opts.retry_delay(&too_many_requests(Some(SECS(6))), 1), None);
}

#[test]
fn parse_retry_after_accepts_delta_seconds_and_http_dates() {
    // 1994-11-06T08:49:37Z
    let now = SystemTime::UNIX_EPOCH + SECS(784_111_777);
    assert_eq!(parse_retry_after("120", now), Some(SECS(120)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("1.5", now), Some(MS(1500)));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(Duration::MAX)
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
        Some(SECS(10))
    );
    // Obsolete formats (RFC 850 and asctime) are accepted too.
    assert_eq!(
        parse_retry_after("Sunday, 06-Nov-94 08:49:40 GMT", now),
        Some(SECS(3))
    );
    assert_eq!(
        parse_retry_after("Sun Nov  6 08:49:38 1994", now),
        Some(SECS(1))
    );
    // A date in the past means "now".
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
        Some(Duration::ZERO)
    );
    for bad in [
        "",
        "  ",
        "-1",
        "+5",
        "1e3",
        ".5",
        "5.",
        "soon",
        "1 2",
        "Sun, 99 Nov 1994 08:49:37 GMT",
    ] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn run_with_timeout_fails_after_exactly_the_timeout() {
    let opts = ApiConnectOptions::default().with_timeout(SECS(3));
    let start = Instant::now();
    let err = opts
        .run_with_timeout(std::future::pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), SECS(3));
    assert!(err.is_timeout() && err.is_connection() && err.is_retryable());
    assert_eq!(err.to_string(), "Request timed out.");

    // A future finishing in time gives its output.
    let start = Instant::now();
    let out = opts
        .run_with_timeout(async {
            tokio::time::sleep(MS(2999)).await;
            7
        })
        .await
        .unwrap();
    assert_eq!(out, 7);
    assert_eq!(start.elapsed(), MS(2999));

    // A zero timeout still lets a ready future through.
    let zero = opts.with_timeout(Duration::ZERO);
    assert_eq!(zero.run_with_timeout(ready(1)).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn timeouts_inside_attempts_are_retried() {
    let opts = ApiConnectOptions::default()
        .with_timeout(SECS(1))
        .with_max_retry(1);
    let start = Instant::now();
    let result: Result<(), ApiError> = opts
        .retry("connect", |attempt| async move {
            assert_eq!(attempt.timeout, SECS(1));
            opts.run_with_timeout(std::future::pending()).await
        })
        .await;
    let err = result.unwrap_err();
    // 1 s timeout, 0.1 s delay, 1 s timeout.
    assert_eq!(start.elapsed(), MS(2100));
    assert_eq!(err.to_string(), "failed to connect after 2 attempts");
    let source = err.source().unwrap().downcast_ref::<ApiError>().unwrap();
    assert!(source.is_timeout());
}

// ---------------------------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------------------------

/// A transport error whose `Debug` would leak a header, but whose `Display` does not.
struct TransportError;

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection reset by peer")
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransportError { authorization: \"Bearer sk-secret-123\" }")
    }
}

impl std::error::Error for TransportError {}

#[test]
fn debug_prints_only_the_error_fields_without_secrets() {
    // Plugins never put keys in messages or bodies (see docs/errors-and-retries.md); given that, Debug and
    // Display print nothing else: no headers, and the source only through its Display.
    let e = ApiError::status("Unauthorized", 401)
        .with_request_id("req_1")
        .with_body(json!({"error": {"message": "Incorrect API key provided"}}))
        .with_source(TransportError);
    let debug = format!("{e:?}");
    assert!(!debug.contains("sk-secret"), "{debug}");
    assert!(!debug.contains("Bearer"), "{debug}");
    assert_eq!(
        debug,
        "ApiError { kind: Status, message: \"Unauthorized\", status: 401, request_id: \"req_1\", \
         body: Object {\"error\": Object {\"message\": String(\"Incorrect API key provided\")}}, \
         retryable: false, source: \"connection reset by peer\" }"
    );
    assert!(!e.to_string().contains("sk-secret"));

    // The exhaustion error keeps that property along the chain.
    let exhausted = ApiError::connection("failed to chat after 4 attempts")
        .with_source(ApiError::connection_default().with_source(TransportError));
    assert!(!format!("{exhausted:?}").contains("sk-secret"));
}

#[test]
fn http_error_responses_map_to_typed_status_errors() {
    use std::time::Duration;

    let openai = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let e = ApiError::from_http_response(401, openai, Some("req_123"), None);
    assert_eq!(e.status_code(), Some(401));
    assert_eq!(e.message(), "Incorrect API key provided");
    assert_eq!(e.request_id(), Some("req_123"));
    assert!(e.is_auth());
    assert!(!e.is_retryable());
    assert_eq!(
        e.body()
            .and_then(|b| b.pointer("/error/code"))
            .and_then(|c| c.as_str()),
        Some("invalid_api_key")
    );

    let deepgram =
        br#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"abc"}"#;
    assert_eq!(
        ApiError::from_http_response(401, deepgram, None, None).message(),
        "Invalid credentials."
    );

    let elevenlabs =
        br#"{"detail":{"status":"quota_exceeded","message":"This request exceeds your quota."}}"#;
    assert_eq!(
        ApiError::from_http_response(401, elevenlabs, None, None).message(),
        "This request exceeds your quota."
    );

    let limited = ApiError::from_http_response(429, b"", None, Some(Duration::from_secs(2)));
    assert_eq!(limited.message(), "Too Many Requests");
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
    assert!(limited.body().is_none());

    let html = "<html>bad gateway ü</html>".repeat(200);
    let e = ApiError::from_http_response(502, html.as_bytes(), None, None);
    assert!(e.is_retryable());
    let body = e.body().and_then(|b| b.as_str()).unwrap_or_default();
    assert!(body.len() <= 2048 && body.starts_with("<html>"));
}
