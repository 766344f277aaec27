//! Shared driver of the end-to-end suites (`e2e_*.rs`): a real `AgentSession` with the real Silero VAD and the
//! plugins under test pointed at the `agents-testkit` provider emulators on 127.0.0.1. Recorded user lines
//! (espeak-ng, 16 kHz mono, the voice demo's fixtures) are streamed in real time, silence in between, as a
//! microphone would; the agent's audio plays in real time into a `FakeAudioOutput` that records what was heard.
//!
//! Each suite checks, on both sides, that a turn went through every stage: the provider emulators saw the
//! requests the protocol asks for, and the session committed the user's words, ran the tools, played the reply
//! and reported the turn's metrics.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers; each suite uses part of them"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents::audio::{AudioFrame, SampleRate, read_wav};
use agents::core::audio_io::AudioInput;
use agents::core::events::CloseReason;
use agents::core::metrics::{Metrics, TurnMetrics};
use agents::pipeline::{AgentSession, SessionOptions, TurnDetectionMode};
use agents::tools::{FunctionTool, ToolError};
use agents::{Agent, AgentState, ChatItem, ChatRole, Llm, SessionEvent, SessionIo, Stt, Tts, Vad};
use agents_testkit::FakeAudioOutput;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

const FRAME: Duration = Duration::from_millis(20);

/// The voice demo's recorded user lines: `(path, words)`.
pub fn line(n: usize) -> (PathBuf, &'static str) {
    let text = [
        "What's the weather in Paris?",
        "And what time is it in Tokyo?",
        "Thank you, goodbye.",
    ][n - 1];
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../examples/voice-demo/fixtures/user{n}.wav"));
    (path, text)
}

/// 20 ms frames of a 16 kHz mono recording.
pub fn frames(path: &Path) -> Vec<AudioFrame> {
    let audio = read_wav(path).expect("read the fixture");
    assert_eq!(
        (audio.sample_rate(), audio.num_channels()),
        (SampleRate::HZ_16000, 1)
    );
    audio.chunks(320).expect("split the fixture")
}

/// Look up the current weather in a city.
#[derive(Deserialize, JsonSchema)]
pub struct WeatherArgs {
    /// City name.
    pub city: String,
}

async fn get_weather(args: WeatherArgs) -> Result<String, ToolError> {
    match args.city.as_str() {
        "Paris" => Ok("18 degrees and partly cloudy".to_owned()),
        other => Err(ToolError::new(format!("no weather for {other}"))),
    }
}

/// An agent with the `get_weather` tool.
pub fn weather_agent() -> Agent {
    Agent::builder("You are a voice assistant. Use get_weather for the weather.")
        .id("assistant")
        .tool(FunctionTool::new(get_weather).unwrap())
        .build()
        .unwrap()
}

/// The Silero VAD (loaded once per suite).
pub fn silero() -> Arc<dyn Vad> {
    Arc::new(agents_silero::SileroVad::load().expect("load the Silero model"))
}

/// What a conversation produced.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Committed user messages.
    pub users: Vec<String>,
    /// Committed agent messages (non-empty), with their interrupted flag.
    pub replies: Vec<(String, bool)>,
    /// Tool calls: name, arguments, output, is_error.
    pub tools: Vec<(String, String, String, bool)>,
    /// Turn reports.
    pub turns: Vec<TurnMetrics>,
    /// Error events.
    pub errors: Vec<String>,
    /// Audio heard by the user (all segments).
    pub heard: Duration,
    /// Number of played segments, and how many were interrupted.
    pub segments: (usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    replies: usize,
    state: AgentState,
}

/// Runs a conversation: for each recorded line, stream it (then 400 ms of silence), commit the turn when `mode`
/// is manual, and wait until the agent's reply played out and it listens again. `before_line(i)` runs before line
/// `i` is streamed (to script the emulators).
pub async fn converse(
    stt: Arc<dyn Stt>,
    llm: Arc<dyn Llm>,
    tts: Arc<dyn Tts>,
    mode: TurnDetectionMode,
    agent: Agent,
    lines: &[PathBuf],
    mut before_line: impl FnMut(usize),
) -> Outcome {
    let session = AgentSession::builder()
        .stt(stt)
        .vad(silero())
        .llm(llm)
        .tts(tts)
        .turn_detection(mode)
        .options(SessionOptions::default().with_close_on_input_end(false))
        .build();
    let (tx, input) = AudioInput::channel("e2e-user", 50);
    let output = Arc::new(FakeAudioOutput::new().with_sample_rate(Some(SampleRate::HZ_24000)));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let (progress_tx, mut progress) = watch::channel(Progress {
        replies: 0,
        state: AgentState::Initializing,
    });
    let mut events = session.events();
    let collector = {
        let outcome = outcome.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut o = outcome.lock().unwrap();
                match &event {
                    SessionEvent::ConversationItemAdded {
                        item: ChatItem::Message(m),
                    } => {
                        let text = m.text_content().unwrap_or_default();
                        match m.role {
                            ChatRole::User => o.users.push(text),
                            ChatRole::Assistant if !text.trim().is_empty() => {
                                o.replies.push((text, m.interrupted));
                                progress_tx.send_modify(|p| p.replies += 1);
                            }
                            _ => {}
                        }
                    }
                    SessionEvent::FunctionToolsExecuted { calls, outputs } => {
                        for (c, out) in calls.iter().zip(outputs) {
                            let (text, err) = out
                                .as_ref()
                                .map(|o| (o.output.clone(), o.is_error))
                                .unwrap_or_default();
                            o.tools
                                .push((c.name.clone(), c.arguments.clone(), text, err));
                        }
                    }
                    SessionEvent::MetricsCollected(Metrics::Turn(t)) => o.turns.push(t.clone()),
                    SessionEvent::Error(e) => o.errors.push(format!("{e:?}")),
                    SessionEvent::AgentStateChanged { new, .. } => {
                        progress_tx.send_modify(|p| p.state = *new);
                    }
                    SessionEvent::Close { .. } => break,
                    _ => {}
                }
            }
        })
    };
    session
        .start(
            agent,
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(output.clone()),
        )
        .await
        .unwrap();

    let silence = AudioFrame::silence(FRAME, SampleRate::HZ_16000, 1).unwrap();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let trailing = 400 / 20;
    for (i, path) in lines.iter().enumerate() {
        before_line(i);
        for frame in frames(path)
            .into_iter()
            .chain(std::iter::repeat_n(silence.clone(), trailing))
        {
            tick.tick().await;
            tx.send(frame).await.unwrap();
        }
        if mode == TurnDetectionMode::Manual {
            session.commit_user_turn().unwrap();
        }
        // Keep the microphone open (silence) until the reply played out.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let p = *progress.borrow_and_update();
            if p.replies > i && p.state == AgentState::Listening {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reply to line {} within 20 s: {:?}",
                i + 1,
                outcome.lock().unwrap()
            );
            tick.tick().await;
            tx.send(silence.clone()).await.unwrap();
        }
    }
    session
        .close_with_reason(CloseReason::UserInitiated)
        .await
        .unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), collector)
        .await
        .expect("the session closes")
        .unwrap();
    let mut o = outcome.lock().unwrap().clone();
    let played = output.played_segments();
    o.heard = played.iter().map(|s| s.position).sum();
    o.segments = (
        played.len(),
        played.iter().filter(|s| s.interrupted).count(),
    );
    o
}
