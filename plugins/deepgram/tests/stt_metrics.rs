//! `SttMetrics` of the Deepgram STT, against the emulator: a stream and a pre-recorded request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions"
)]

mod common;

use std::time::Duration;

use agents_core::stt::{RecognizeOptions, SpeechEvent, Stt, recognize_with_metrics};
use agents_deepgram::SttOptions;
use agents_testkit::emulators::deepgram::DeepgramEmulator;
use common::*;

#[tokio::test]
async fn a_stream_reports_the_recognized_audio_and_request_id() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("Metrics are real.");
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt
        .stream(&RecognizeOptions::default().with_conn_options(fast_conn()))
        .unwrap();
    push(&stream, audio(&[(false, 400), (true, 1500), (false, 600)])).await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    assert_eq!(finals(&events), vec!["Metrics are real."]);
    let usage: Duration = events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::RecognitionUsage(u) => Some(u.audio_duration),
            _ => None,
        })
        .sum();
    let request_id = events
        .iter()
        .find_map(|e| match e {
            SpeechEvent::FinalTranscript(t) => Some(t.request_id.clone()),
            _ => None,
        })
        .unwrap();

    let m = stream.metrics();
    assert_eq!(m.label, "deepgram.STT");
    assert_eq!(m.model, "nova-3");
    assert!(m.streamed);
    // Every pushed sample was sent and reported: 2.5 s.
    assert_eq!(usage, ms(2500));
    assert_eq!(m.audio_duration, ms(2500));
    assert!(!request_id.is_empty());
    assert_eq!(m.request_id.as_deref(), Some(request_id.as_str()));
    assert!(m.duration > Duration::ZERO);
    let later = stream.metrics();
    assert_eq!(
        later.duration, m.duration,
        "the stream ended: its clock stopped"
    );
}

#[tokio::test]
async fn recognize_with_metrics_reports_the_buffer_and_request_id() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("Measured once.");
    let stt = stt(&dg, SttOptions::default());
    let frames = audio(&[(false, 300), (true, 900), (false, 300)]);
    let (t, m) = recognize_with_metrics(&stt, &frames, &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "Measured once.");
    assert_eq!(m.label, "deepgram.STT");
    assert_eq!(m.model, "nova-3");
    assert!(!m.streamed);
    assert_eq!(m.audio_duration, ms(1500));
    assert_eq!(m.request_id.as_deref(), Some(t.request_id.as_str()));
    assert!(!t.request_id.is_empty());
    assert!(m.duration > Duration::ZERO);
}
