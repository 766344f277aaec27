//! Conformance suites: the behaviour every provider plugin must show, checked against the plugin's real
//! implementation (wired to an emulator) by the plugin's own tests.
//!
//! Each suite is a harness trait that the plugin implements (how to build the provider and how to script the
//! emulator) plus an async `run_all(&harness)` and one public function per check. Checks panic with a message
//! naming the suite and the check on failure: they are test helpers. They use `tokio::time` only, so they run on a
//! paused clock when the provider under test does not use real sockets.
//!
//! ```no_run
//! # async fn demo(harness: impl agents_testkit::conformance::llm::LlmHarness) {
//! agents_testkit::conformance::llm::run_all(&harness).await;
//! # }
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

pub mod llm;
pub mod realtime;
pub mod stt;
pub mod tts;
pub mod vad;

/// How long a check waits for one provider step before failing.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Unwraps a result or panics with `what`.
#[track_caller]
pub(crate) fn must<T, E: Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// Awaits `fut` for at most [`STEP_TIMEOUT`], panicking with `what` on timeout.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: timed out after {STEP_TIMEOUT:?}"),
    }
}
