//! Voice integration on the in-process bus: a session bridged to LLM workers (Pipecat behaviours 40–44, 47, 48) and
//! a job group run from a session tool. The shared suite is `suite/voice.rs`; the idle-timeout tests (paused clock,
//! which needs a bus without sockets) are here only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod voice_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents_core::chat::ChatItem;
use agents_core::session::ReplyRequest;
use agents_core::{Agent, ChatRole, SessionControl, SessionIo};
use agents_pipeline::AgentSession;
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeTextOutput, FakeTts};
use agents_workers::*;
use common::*;
use serde_json::{Value, json};
use voice_common::*;

async fn new_bus() -> Option<Arc<dyn Bus>> {
    Some(Arc::new(LocalBus::new()))
}

fn local_runner() -> (Arc<dyn Bus>, WorkerRunner) {
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let runner = runner_on("R", &bus);
    (bus, runner)
}

include!("suite/voice.rs");

fn idle_bridge(runner_cancels: bool) -> (VoiceBridge, AgentSession) {
    let bridge = VoiceBridge::new()
        .with_idle_timeout(Some(Duration::from_secs(3)))
        .with_cancel_runner_on_idle_timeout(runner_cancels);
    let session = AgentSession::builder()
        .llm(bridge.llm())
        .tts(Arc::new(FakeTts::new()))
        .build();
    bridge.attach(&session);
    (bridge, session)
}

fn fake_io() -> SessionIo {
    SessionIo::new()
        .with_audio_output(Arc::new(FakeAudioOutput::new()))
        .with_text_output(Arc::new(FakeTextOutput::new()))
}

// 47: an idle conversation ends: the session is closed and (cancel_runner_on_idle_timeout, the default) the runner
// and every peer are cancelled.
#[tokio::test(start_paused = true)]
async fn b47_idle_timeout_closes_the_session_and_cancels_the_runner() {
    let (_bus, runner) = local_runner();
    let peer = runner
        .add_worker(WorkerSpec::new("peer", LlmWorker::new(llm_with(vec![]))))
        .await
        .unwrap();
    let (bridge, session) = idle_bridge(true);
    let b = runner
        .add_worker(WorkerSpec::new("voice", bridge))
        .await
        .unwrap();
    session.start(Agent::new(""), fake_io()).await.unwrap();
    let started = tokio::time::Instant::now();
    within("runner cancelled", runner.run(false)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the idle timeout"
    );
    assert!(b.is_finished() && peer.is_finished());
    assert!(
        session.say_text("anyone?").is_err(),
        "the session was closed"
    );
}

// 47: activity keeps the conversation alive; without cancel_runner_on_idle_timeout only the bridge ends.
#[tokio::test(start_paused = true)]
async fn b47_activity_defers_idle_and_peers_survive_without_runner_cancel() {
    let (_bus, runner) = local_runner();
    let agent_llm = Arc::new(FakeLlm::new().with_responder(|_| FakeResponse::text("Yes.")));
    let peer = runner
        .add_worker(
            WorkerSpec::new("agent", LlmWorker::new(agent_llm).with_bridges(["voice"])).active(),
        )
        .await
        .unwrap();
    let (bridge, session) = idle_bridge(false);
    let b = runner
        .add_worker(WorkerSpec::new("voice", bridge))
        .await
        .unwrap();
    session.start(Agent::new(""), fake_io()).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let h = session
            .generate_reply(ReplyRequest::new().with_user_input("still there?"))
            .unwrap();
        h.wait_for_playout().await;
        assert!(
            !b.is_finished(),
            "activity every 2 s keeps a 3 s idle timeout away"
        );
    }
    within("bridge ends", b.finished()).await;
    assert!(!peer.is_finished(), "peers keep running");
    assert!(session.say_text("bye").is_err());
}
