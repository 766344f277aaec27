//! Voice hand-off: an `AgentSession` whose replies come from two `LlmWorker`s over the bus (Pipecat's
//! local-handoff example with a `BusBridgeProcessor`).
//!
//! Run: `cargo run -p workers-voice-handoff`
//! Env vars: none. The LLMs, the TTS and the audio output are the offline fakes of `agents-testkit` (the fake
//! output plays audio in real time, so the run takes a few seconds).
//!
//! What it shows: the session keeps the audio path (TTS, playout) and sends each user turn over the bus through
//! a `VoiceBridge`; only the active worker answers. The greeter's model calls `activate_worker(support)`: its
//! transition line is spoken to the end, then support is activated (greeter deactivated first, never both
//! active), greets the caller through the bridge and answers the next turn.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use agents::chat::{ChatItem, ChatRole};
use agents::events::SessionEvent;
use agents::session::ReplyRequest;
use agents::workers::{
    ACTIVATE_WORKER_TOOL, LlmWorker, LocalBus, VoiceBridge, WorkerRunner, WorkerSpec,
};
use agents::{Agent, AgentSession, SessionControl, SessionIo};
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeTextOutput, FakeTts};
use anyhow::Context;
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    writeln!(
        std::io::stdout(),
        "LLMs, TTS and audio output: offline fakes — no API key needed"
    )?;
    let runner = WorkerRunner::new("voice-app", Arc::new(LocalBus::new()))?;

    // The agents: each an LLM with its own context, bridged to the "voice" bridge.
    let greeter_llm = FakeLlm::new().push_response(
        FakeResponse::text("Let me connect you with our support team.").then_tool_call(
            ACTIVATE_WORKER_TOOL,
            r#"{"target": "support", "reason": "the caller was charged twice"}"#,
        ),
    );
    let support_llm = FakeLlm::new()
        .push_response(FakeResponse::text(
            "Hi, this is support. I see you were charged twice.",
        ))
        .push_response(FakeResponse::text(
            "I have refunded the second charge; you will see it in two days.",
        ));
    let greeter = runner
        .add_worker(
            WorkerSpec::new(
                "greeter",
                LlmWorker::new(Arc::new(greeter_llm))
                    .with_instructions("You greet callers and route them.")
                    .with_bridges(["voice"])
                    .with_handoff_targets(["support"]),
            )
            .active(),
        )
        .await?;
    let support = runner
        .add_worker(WorkerSpec::new(
            "support",
            LlmWorker::new(Arc::new(support_llm))
                .with_instructions("You solve billing problems.")
                .with_bridges(["voice"]),
        ))
        .await?;

    // The voice session: its LLM is the bridge; TTS and playout stay here.
    let bridge = VoiceBridge::new();
    let session = AgentSession::builder()
        .llm(bridge.llm())
        .tts(Arc::new(
            FakeTts::new().with_word_duration(Duration::from_millis(60)),
        ))
        .build();
    bridge.attach(&session);
    runner
        .add_worker(WorkerSpec::new("voice", bridge.clone()))
        .await?;
    let mut events = session.events();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let SessionEvent::ConversationItemAdded {
                item: ChatItem::Message(m),
            } = event
            {
                let who = if m.role == ChatRole::User {
                    "user "
                } else {
                    "agent"
                };
                let _ = writeln!(
                    std::io::stdout(),
                    "{who}: {}",
                    m.text_content().unwrap_or_default()
                );
            }
        }
    });
    let out = Arc::new(FakeAudioOutput::new());
    session
        .start(
            Agent::new(""),
            SessionIo::new()
                .with_audio_output(out.clone())
                .with_text_output(Arc::new(FakeTextOutput::new())),
        )
        .await?;

    // The user's first turn: the greeter answers with its transition line and hands off.
    let reply =
        session.generate_reply(ReplyRequest::new().with_user_input("I was charged twice"))?;
    reply.wait_for_playout().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !support.is_active() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .context("support was not activated")?;
    writeln!(
        std::io::stdout(),
        "-- hand-off done after {} played segment(s): greeter active = {}, support active = {}",
        out.played_segments().len(),
        greeter.is_active(),
        support.is_active()
    )?;
    // Support's greeting is spoken through the bridge; wait for it to play.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Some(speech) = session.current_speech() {
        speech.wait_for_playout().await;
    }

    let reply =
        session.generate_reply(ReplyRequest::new().with_user_input("Can I get a refund?"))?;
    reply.wait_for_playout().await;
    session.close().await?;
    runner.cancel("done").await;
    printer.abort();
    Ok(())
}
