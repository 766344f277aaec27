//! The voice rig shared by `tests/voice.rs` and `tests/voice_redis.rs`: a session over the testkit fakes whose LLM
//! is a `VoiceBridge` on a worker runner.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::time::Duration;

use agents_core::{Agent, SessionIo};
use agents_pipeline::AgentSession;
use agents_testkit::{FakeAudioOutput, FakeTextOutput, FakeTts};
use agents_workers::*;

pub struct VoiceRig {
    pub session: AgentSession,
    pub bridge: VoiceBridge,
    pub tts: Arc<FakeTts>,
    pub out: Arc<FakeAudioOutput>,
    pub text: Arc<FakeTextOutput>,
}

/// A session whose replies come from the bus, with a bridge worker named `bridge_name` on `runner`.
pub async fn voice_rig(runner: &WorkerRunner, bridge_name: &str) -> VoiceRig {
    let bridge = VoiceBridge::new().with_reply_timeout(Duration::from_secs(5));
    let tts = Arc::new(FakeTts::new().with_word_duration(Duration::from_millis(20)));
    let out = Arc::new(FakeAudioOutput::new());
    let text = Arc::new(FakeTextOutput::new());
    let session = AgentSession::builder()
        .llm(bridge.llm())
        .tts(tts.clone())
        .build();
    bridge.attach(&session);
    runner
        .add_worker(WorkerSpec::new(bridge_name, bridge.clone()))
        .await
        .unwrap();
    let io = SessionIo::new()
        .with_audio_output(out.clone())
        .with_text_output(text.clone());
    session.start(Agent::new(""), io).await.unwrap();
    VoiceRig {
        session,
        bridge,
        tts,
        out,
        text,
    }
}

/// Waits (real time, bounded) until `pred` holds.
pub async fn until(what: &str, pred: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pred() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
