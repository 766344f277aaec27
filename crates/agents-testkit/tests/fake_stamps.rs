//! Opt-in timestamps of the fakes (`agents_testkit::stamps`) and their history switches.

use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::audio_io::AudioOutput;
use agents_core::chat::{ChatContext, ChatRole};
use agents_core::llm::{ChatRequest, Llm};
use agents_core::tts::{SynthesizeOptions, Tts};
use agents_testkit::signal::tone;
use agents_testkit::stamps::{Stamp, Stamps, first_of};
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeTts};
use futures::StreamExt;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn request() -> ChatRequest {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "hi");
    ChatRequest::new(ctx)
}

#[tokio::test(start_paused = true)]
async fn llm_stamps_the_request_and_the_first_chunk_after_ttft() {
    let stamps = Stamps::new();
    let llm = FakeLlm::new()
        .with_ttft(MS(200))
        .with_inter_token_delay(MS(50))
        .with_stamps(stamps.clone())
        .push_response(FakeResponse::text("one two three").chunked_words());
    let start = Instant::now();
    let response = llm.chat(request()).collect().await.unwrap();
    assert_eq!(response.text, "one two three");
    let log = stamps.take();
    // One request stamp and one first-chunk stamp, however many chunks followed.
    assert_eq!(
        log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![Stamp::LlmRequest, Stamp::LlmFirstChunk]
    );
    assert_eq!(first_of(&log, Stamp::LlmRequest), Some(start));
    assert_eq!(first_of(&log, Stamp::LlmFirstChunk), Some(start + MS(200)));
    assert!(stamps.is_empty(), "take drains the log");
}

#[tokio::test(start_paused = true)]
async fn llm_without_request_log_still_counts() {
    let llm = FakeLlm::new()
        .without_request_log()
        .with_responder(|_| FakeResponse::text("ok"));
    for _ in 0..3 {
        llm.chat(request()).collect().await.unwrap();
    }
    assert_eq!(llm.request_count(), 3);
    assert!(llm.requests().is_empty());
    assert!(llm.last_request().is_none());
}

#[tokio::test(start_paused = true)]
async fn tts_stamps_the_first_input_and_each_segments_first_audio() {
    let stamps = Stamps::new();
    let tts = FakeTts::new()
        .with_ttfb(MS(120))
        .with_stamps(stamps.clone());
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    let start = Instant::now();
    stream.push_text("Hello").await.unwrap();
    stream.push_text(" world").await.unwrap();
    stream.flush().await.unwrap();
    stream.push_text("Again").await.unwrap();
    stream.end_input().await.unwrap();
    let chunks: Vec<_> = stream.collect().await;
    assert!(chunks.iter().all(Result::is_ok));
    let log = stamps.take();
    let kinds: Vec<_> = log.iter().map(|(s, _)| *s).collect();
    // One first input per stream, one first audio per segment (two segments).
    assert_eq!(
        kinds,
        vec![
            Stamp::TtsFirstInput,
            Stamp::TtsFirstAudio,
            Stamp::TtsFirstAudio
        ]
    );
    assert_eq!(first_of(&log, Stamp::TtsFirstInput), Some(start));
    assert_eq!(first_of(&log, Stamp::TtsFirstAudio), Some(start + MS(120)));
}

#[tokio::test(start_paused = true)]
async fn output_stamps_the_first_frame_of_each_segment() {
    let stamps = Stamps::new();
    let out = FakeAudioOutput::new()
        .with_max_buffer(Duration::from_secs(10))
        .with_stamps(stamps.clone());
    for f in tone(MS(100), SampleRate::HZ_24000) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    tokio::time::sleep(MS(50)).await;
    let second = Instant::now();
    for f in tone(MS(100), SampleRate::HZ_24000) {
        out.capture_frame(f).await.unwrap();
    }
    let log = stamps.all();
    assert_eq!(
        log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![Stamp::OutputFirstFrame, Stamp::OutputFirstFrame]
    );
    assert_eq!(log[1].1, second);
}

#[tokio::test(start_paused = true)]
async fn output_without_audio_log_plays_the_same_but_keeps_no_frames() {
    let out = FakeAudioOutput::new()
        .with_max_buffer(Duration::from_secs(10))
        .without_audio_log();
    for f in tone(MS(300), SampleRate::HZ_24000) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    let done = out.wait_for_playout().await.unwrap();
    assert_eq!(done.playback_position, MS(300));
    assert!(out.captured_frames().is_empty());
    let played = out.played_segments();
    assert_eq!(played.len(), 1);
    assert_eq!(played[0].position, MS(300));
    assert!(played[0].frames.is_empty());
}
