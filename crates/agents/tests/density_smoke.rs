//! Smoke test of the density harness (`benches/density`): two sessions with the real Silero VAD, fed the speech
//! fixture in real time, complete user turns and start replies, and no input frame is dropped. No timing
//! assertion. It runs for 6 s: the fixture's first utterance ends at 2.3 s, so a shorter run ends no turn.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/density/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn two_sessions_take_turns_and_reply_without_drops() {
    let vad: Arc<dyn agents::core::Vad> = Arc::new(agents::silero::SileroVad::load().unwrap());
    let frames = Arc::new(harness::load_frames(&harness::fixture_path()));
    let config = harness::Config {
        sessions: 2,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(6),
        // 1 s of input: a loaded test machine that stalls the process for a moment must not drop frames (the
        // feeder catches up in a burst); the benchmark uses 200 ms.
        input_capacity: 50,
    };
    let r = harness::run(&config, &vad, frames, None).await;
    assert!(
        r.turns >= 2,
        "each session ends at least one user turn: {r:?}"
    );
    assert!(
        r.replies >= 2,
        "each session starts at least one reply: {r:?}"
    );
    assert_eq!(r.dropped_frames, 0, "no input frame dropped: {r:?}");
    assert!(
        r.fed_frames >= 2 * 250,
        "the feeders ran in real time: {r:?}"
    );
    assert_eq!(r.latencies.len() as u64, r.replies);
}
