//! Added latency of each step of a voice turn, with zero-latency fakes (issue 6: "under 1 ms each at p99"):
//!
//! 1. end-of-turn decision → LLM request: `commit_user_turn()` (manual turn detection) to the fake LLM's `chat`;
//! 2. first LLM token → first TTS input: the fake LLM hands out its first chunk → the fake TTS stream gets its first
//!    text;
//! 3. first TTS audio → output: the fake TTS hands out its first audio chunk → the fake audio output's
//!    `capture_frame` gets the first frame of the segment;
//!
//! and the whole path (commit → first output frame). Timestamps come from the testkit fakes' opt-in
//! [`Stamps`](agents_testkit::stamps::Stamps). A custom harness (criterion reports means): it prints p50 / p99 /
//! p99.9 / max over `SESSIONS × TURNS` sequential turns, each session a fresh one (a conversation of `TURNS` turns;
//! the chat context grows with it).
//!
//! `cargo bench -p agents-pipeline --bench session_steps` (optional arguments: `--sessions N --turns N`).
//!
//! Each turn: 300 ms of tone + 400 ms of silence go into the session's audio input (the fake STT works in audio
//! time, so no real-time wait), the fake STT's final transcript arrives, then the bench stamps and calls
//! `commit_user_turn`; once the agent is speaking it interrupts the reply and waits for `listening`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::audio_io::AudioInput;
use agents_core::events::{AgentState, SessionEvent};
use agents_core::stream::EventStream;
use agents_core::{Agent, SessionControl, SessionIo};
use agents_pipeline::{AgentSession, TurnDetectionMode};
use agents_testkit::stamps::{Stamp, Stamps, first_of};
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeStt, FakeTts, signal};

const REPLY: &str = "Sure, I can help with that.";
const USER: &str = "hello there";

struct Turn {
    commit_to_request: Duration,
    request_to_token: Duration,
    tts_input_to_audio: Duration,
    token_to_tts_input: Duration,
    tts_audio_to_output: Duration,
    commit_to_output: Duration,
}

struct Bench {
    session: AgentSession,
    events: EventStream<SessionEvent>,
    audio: mpsc::Sender<AudioFrame>,
    stt: FakeStt,
    stamps: Stamps,
    utterance: Vec<AudioFrame>,
}

async fn start() -> Bench {
    let stamps = Stamps::new();
    let stt = FakeStt::new();
    let llm = FakeLlm::new()
        .with_responder(|_| FakeResponse::text(REPLY).chunked_words())
        .without_request_log()
        .with_stamps(stamps.clone());
    let tts = FakeTts::new().with_stamps(stamps.clone());
    let output = FakeAudioOutput::new()
        .without_audio_log()
        .with_stamps(stamps.clone());
    let session = AgentSession::builder()
        .stt(Arc::new(stt.clone()))
        .llm(Arc::new(llm))
        .tts(Arc::new(tts))
        .turn_detection(TurnDetectionMode::Manual)
        .build();
    let events = session.events();
    let (audio, input) = AudioInput::channel("bench.input", 64);
    session
        .start(
            Agent::new("You are a benchmark."),
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(Arc::new(output)),
        )
        .await
        .unwrap();
    let utterance = signal::sequence(
        &[
            (true, Duration::from_millis(300)),
            (false, Duration::from_millis(400)),
        ],
        SampleRate::HZ_16000,
    );
    Bench {
        session,
        events,
        audio,
        stt,
        stamps,
        utterance,
    }
}

impl Bench {
    async fn wait_for(&mut self, mut pred: impl FnMut(&SessionEvent) -> bool) {
        while let Some(e) = self.events.next().await {
            if pred(&e) {
                return;
            }
        }
        panic!("session events ended");
    }

    async fn turn(&mut self) -> Turn {
        self.stt.push_transcript(USER);
        for f in &self.utterance {
            self.audio.send(f.clone()).await.unwrap();
        }
        self.wait_for(|e| matches!(e, SessionEvent::UserInputTranscribed { is_final: true, .. }))
            .await;
        self.stamps.take();
        let t0 = Instant::now();
        self.session.commit_user_turn().unwrap();
        self.wait_for(|e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Speaking,
                    ..
                }
            )
        })
        .await;
        let log = self.stamps.take();
        let at = |s: Stamp| first_of(&log, s).unwrap_or_else(|| panic!("no {s:?} stamp"));
        let turn = Turn {
            commit_to_request: at(Stamp::LlmRequest) - t0,
            request_to_token: at(Stamp::LlmFirstChunk) - at(Stamp::LlmRequest),
            tts_input_to_audio: at(Stamp::TtsFirstAudio) - at(Stamp::TtsFirstInput),
            token_to_tts_input: at(Stamp::TtsFirstInput) - at(Stamp::LlmFirstChunk),
            tts_audio_to_output: at(Stamp::OutputFirstFrame) - at(Stamp::TtsFirstAudio),
            commit_to_output: at(Stamp::OutputFirstFrame) - t0,
        };
        self.session.interrupt().await.unwrap();
        self.wait_for(|e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Listening,
                    ..
                }
            )
        })
        .await;
        turn
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<38} p50 {:>9.1?}  p99 {:>9.1?}  p99.9 {:>9.1?}  max {:>9.1?}",
        p(0.5),
        p(0.99),
        p(0.999),
        v[v.len() - 1]
    );
}

fn main() {
    let sessions = arg("--sessions", 10);
    let turns = arg("--turns", 100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all: Vec<Turn> = rt.block_on(async {
        let mut all = Vec::with_capacity(sessions * turns);
        for _ in 0..sessions {
            let mut b = start().await;
            // Warm-up turn (first allocations, lazy initialisation), not counted.
            b.turn().await;
            for _ in 0..turns {
                all.push(b.turn().await);
            }
            b.session.close().await.unwrap();
        }
        all
    });
    println!(
        "session_steps: {} turns ({sessions} sessions x {turns} turns), current_thread runtime, zero-latency fakes",
        all.len()
    );
    report(
        "end of turn (commit) -> LLM request",
        all.iter().map(|t| t.commit_to_request).collect(),
    );
    report(
        "(LLM request -> first token, in fake)",
        all.iter().map(|t| t.request_to_token).collect(),
    );
    report(
        "first LLM token -> first TTS input",
        all.iter().map(|t| t.token_to_tts_input).collect(),
    );
    report(
        "(first TTS input -> first TTS audio)",
        all.iter().map(|t| t.tts_input_to_audio).collect(),
    );
    report(
        "first TTS audio -> output capture",
        all.iter().map(|t| t.tts_audio_to_output).collect(),
    );
    report(
        "end of turn (commit) -> first output",
        all.iter().map(|t| t.commit_to_output).collect(),
    );
}
