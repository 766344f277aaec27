//! Latency the session adds with zero-latency fakes: `generate_reply` → the first audio frame forwarded to the
//! output (agent state `speaking`). The path covers the activity command, the LLM stage (request and first token),
//! the TTS stage (first input and first audio) and forwarding.
//!
//! `cargo bench -p agents-pipeline --bench session_latency`. Besides criterion's timing it prints p50/p99 over
//! 2,000 sequential replies.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;

use agents_core::events::{AgentState, SessionEvent};
use agents_core::llm::{ChatChunk, ChatRequest, FinishReason, Llm, LlmStream};
use agents_core::session::ReplyRequest;
use agents_core::stream::EventStream;
use agents_core::{Agent, SessionControl, SessionIo};
use agents_pipeline::AgentSession;
use agents_testkit::{FakeAudioOutput, FakeTts};

/// A zero-latency LLM that keeps nothing (the testkit's FakeLlm records every request, which grows over thousands
/// of iterations).
struct InstantLlm;

impl Llm for InstantLlm {
    fn label(&self) -> &str {
        "bench.LLM"
    }
    fn model(&self) -> &str {
        "instant"
    }
    fn chat(&self, _request: ChatRequest) -> LlmStream {
        LlmStream::new(
            "bench.LLM",
            "instant",
            futures::stream::iter([
                Ok(ChatChunk::Text("Hello there, how can I help?".to_owned())),
                Ok(ChatChunk::Finished(FinishReason::Stop)),
            ]),
        )
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn session() -> (AgentSession, EventStream<SessionEvent>) {
    let session = AgentSession::builder()
        .llm(Arc::new(InstantLlm))
        .tts(Arc::new(FakeTts::new()))
        .build();
    let events = session.events();
    session
        .start(
            Agent::new("bench"),
            SessionIo::new().with_audio_output(Arc::new(FakeAudioOutput::new())),
        )
        .await
        .unwrap();
    (session, events)
}

/// One reply: time to the first forwarded frame, then interrupt it so the next starts from listening.
async fn one_reply(session: &AgentSession, events: &mut EventStream<SessionEvent>) -> Duration {
    let start = Instant::now();
    let handle = session.generate_reply(ReplyRequest::new()).unwrap();
    while let Some(e) = events.next().await {
        if matches!(
            e,
            SessionEvent::AgentStateChanged {
                new: AgentState::Speaking,
                ..
            }
        ) {
            break;
        }
    }
    let elapsed = start.elapsed();
    session.interrupt().await.unwrap();
    handle.wait_for_playout().await;
    elapsed
}

fn reply_latency(c: &mut Criterion) {
    let rt = rt();
    let (session, mut events) = rt.block_on(session());
    let mut samples: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::with_capacity(2000);
        for _ in 0..2000 {
            v.push(one_reply(&session, &mut events).await);
        }
        v
    });
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "generate_reply -> first frame forwarded: p50 {:?}, p99 {:?}, p99.9 {:?}",
        p(0.5),
        p(0.99),
        p(0.999)
    );
    c.bench_function("generate_reply_to_first_frame", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += one_reply(&session, &mut events).await;
                }
                total
            })
        });
    });
    rt.block_on(session.close()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = reply_latency
}
criterion_main!(benches);
