//! Input audio of any rate and channel count reaches the Realtime emulator as 24 kHz mono PCM16.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agents_audio::{AudioFrame, AudioFrameError, SampleRate};
use agents_core::realtime::{
    RealtimeConnection, RealtimeError, RealtimeEvent, RealtimeModel, RealtimeSessionOptions,
};
use agents_openai::ClientOptions;
use agents_openai::realtime::{OpenAiRealtimeModel, RealtimeOptions, ServerVad, TurnDetection};
use agents_testkit::EmulatorServer;
use agents_testkit::emulators::openai_realtime::{OpenAiRealtimeEmulator, ScriptedResponse};
use agents_testkit::signal;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::Value;

const KEY: &str = "sk-test-realtime-key";
const STEP: Duration = Duration::from_secs(10);

async fn open(
    options: RealtimeOptions,
) -> (OpenAiRealtimeEmulator, EmulatorServer, RealtimeConnection) {
    let emu = OpenAiRealtimeEmulator::new().with_api_key(KEY);
    let server = emu.serve().await.unwrap();
    let client = ClientOptions::default()
        .with_api_key(KEY)
        .with_base_url(format!("{}/v1", server.http_url()));
    let model = OpenAiRealtimeModel::new(client, options);
    let conn = tokio::time::timeout(STEP, model.session(RealtimeSessionOptions::default()))
        .await
        .expect("session timed out")
        .expect("session failed");
    (emu, server, conn)
}

fn manual() -> RealtimeOptions {
    RealtimeOptions::default().with_turn_detection(None)
}

fn stereo(frames: Vec<AudioFrame>) -> Vec<AudioFrame> {
    frames.into_iter().map(|f| f.remix(2).unwrap()).collect()
}

/// Every appended sample, decoded.
fn appended(events: &[Value]) -> Vec<i16> {
    events
        .iter()
        .filter_map(|e| e.get("audio").and_then(Value::as_str))
        .flat_map(|a| base64::engine::general_purpose::STANDARD.decode(a).unwrap())
        .collect::<Vec<u8>>()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[tokio::test]
async fn stereo_48k_is_sent_as_24k_mono_and_the_tail_goes_before_commit() {
    let (emu, _server, conn) = open(manual()).await;
    let tone = signal::tone(Duration::from_millis(300), SampleRate::HZ_48000);
    let reference = signal::rms(&AudioFrame::concat(&tone).unwrap());
    for f in stereo(tone) {
        conn.session.push_audio(f).await.unwrap();
    }
    conn.session.commit_audio().await.unwrap();
    let rec = &emu.connections()[0];
    // 300 ms at 24 kHz, the resampler's tail included, all of it before the commit.
    assert_eq!(rec.appended_samples(), 7_200);
    let types: Vec<&str> = rec
        .events
        .iter()
        .filter_map(|e| e.get("type").and_then(Value::as_str))
        .filter(|t| t.starts_with("input_audio_buffer"))
        .collect();
    assert_eq!(types.last(), Some(&"input_audio_buffer.commit"));
    // The tone survived the conversion (same level, not silence or doubled).
    let samples = appended(&rec.events_of("input_audio_buffer.append"));
    let middle = &samples[1_200..6_000];
    let level = signal::rms_of(middle);
    assert!(
        (level - reference).abs() < reference * 0.05,
        "rms {level} vs {reference}"
    );
}

#[tokio::test]
async fn a_16k_turn_is_detected_transcribed_and_answered_by_the_server_vad() {
    let (emu, _server, mut conn) = open(RealtimeOptions::default().with_turn_detection(Some(
        TurnDetection::ServerVad(
            ServerVad::default().with_silence_duration(Duration::from_millis(200)),
        ),
    )))
    .await;
    emu.push_user_transcript("resampled question");
    emu.push_response(ScriptedResponse::text("Heard you."));
    let audio = signal::sequence(
        &[
            (true, Duration::from_millis(400)),
            (false, Duration::from_millis(400)),
        ],
        SampleRate::HZ_16000,
    );
    for f in audio {
        conn.session.push_audio(f).await.unwrap();
    }
    let mut transcript = None;
    let mut text = String::new();
    loop {
        let e = tokio::time::timeout(STEP, conn.events.next())
            .await
            .expect("no event in time")
            .expect("events ended");
        match e {
            RealtimeEvent::InputAudioTranscription {
                transcript: t,
                is_final: true,
                ..
            } => transcript = Some(t),
            RealtimeEvent::TextDelta { delta, .. } => text.push_str(&delta),
            RealtimeEvent::ResponseDone { .. } => break,
            _ => {}
        }
    }
    assert_eq!(transcript.as_deref(), Some("resampled question"));
    assert_eq!(text, "Heard you.");
    // 800 ms of 16 kHz input is 19 200 samples at 24 kHz, less what the resampler still holds (no commit).
    let sent = emu.connections()[0].appended_samples();
    assert!(sent > 18_000 && sent <= 19_200, "{sent}");
}

#[tokio::test]
async fn a_format_change_before_commit_is_a_typed_error_and_a_commit_resets_it() {
    let (emu, _server, conn) = open(manual()).await;
    let at_16k = AudioFrame::silence(Duration::from_millis(200), SampleRate::HZ_16000, 1).unwrap();
    let at_48k = AudioFrame::silence(Duration::from_millis(200), SampleRate::HZ_48000, 1).unwrap();
    conn.session.push_audio(at_16k).await.unwrap();
    let err = conn.session.push_audio(at_48k.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            RealtimeError::InvalidAudio(AudioFrameError::FormatMismatch {
                expected_rate: SampleRate::HZ_16000,
                actual_rate: SampleRate::HZ_48000,
                ..
            })
        ),
        "{err:?}"
    );
    conn.session.commit_audio().await.unwrap();
    // A new turn may use another format.
    conn.session.push_audio(at_48k).await.unwrap();
    conn.session.commit_audio().await.unwrap();
    assert_eq!(
        emu.connections()[0].appended_samples(),
        2 * 4_800,
        "200 ms + 200 ms at 24 kHz"
    );
}

#[tokio::test]
async fn a_rate_the_resampler_refuses_is_a_typed_error_and_nothing_is_sent() {
    let (emu, _server, conn) = open(manual()).await;
    let odd = SampleRate::new(44_101).unwrap();
    let frame = AudioFrame::silence(Duration::from_millis(20), odd, 1).unwrap();
    let err = conn.session.push_audio(frame).await.unwrap_err();
    assert!(matches!(err, RealtimeError::Unsupported { .. }), "{err:?}");
    // The refused frame fixed no format: a supported one is taken next.
    let ok = AudioFrame::silence(Duration::from_millis(200), SampleRate::HZ_16000, 1).unwrap();
    conn.session.push_audio(ok).await.unwrap();
    conn.session.commit_audio().await.unwrap();
    assert_eq!(emu.connections()[0].appended_samples(), 4_800);
}
