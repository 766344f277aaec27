//! Live tests against the real Deepgram API. They run when `DEEPGRAM_API_KEY` is set (and `DEEPGRAM_BASE_URL`, if
//! set, points elsewhere) and are skipped with a printed message otherwise.
//!
//! ```sh
//! DEEPGRAM_API_KEY=... cargo test -p agents-deepgram --test live -- --nocapture
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions"
)]

use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::stt::{RecognizeOptions, SpeechEvent, Stt, SttError};
use agents_core::tts::{SynthesizeOptions, Tts};
use agents_deepgram::{ClientOptions, DeepgramStt, DeepgramTts, SttOptions, TtsOptions};
use futures::StreamExt;

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";

fn live_client(test: &str) -> Option<ClientOptions> {
    match ClientOptions::from_env() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("skipped {test}: {e}");
            None
        }
    }
}

async fn speech(client: &ClientOptions) -> Vec<AudioFrame> {
    let tts = DeepgramTts::new(
        client.clone(),
        TtsOptions::default().with_sample_rate(SampleRate::HZ_16000),
    )
    .unwrap();
    let frames = tts
        .synthesize(SENTENCE, &SynthesizeOptions::default())
        .await
        .unwrap()
        .collect_frames()
        .await
        .unwrap();
    let d: Duration = frames.iter().map(AudioFrame::duration).sum();
    assert!(d > Duration::from_secs(1), "only {d:?} of audio");
    frames
}

#[tokio::test]
async fn live_synthesize_then_recognize() {
    let Some(client) = live_client("live_synthesize_then_recognize") else {
        return;
    };
    let frames = speech(&client).await;
    let stt = DeepgramStt::new(client, SttOptions::default()).unwrap();
    let t = stt
        .recognize(&frames, &RecognizeOptions::default())
        .await
        .unwrap();
    let text = t.text().to_lowercase();
    assert!(text.contains("fox") && text.contains("lazy dog"), "{text}");
    assert!(!t.request_id.is_empty());
    assert!(!t.alternatives[0].words.is_empty());
}

#[tokio::test]
async fn live_stream_recognition() {
    let Some(client) = live_client("live_stream_recognition") else {
        return;
    };
    let mut frames = speech(&client).await;
    frames.push(AudioFrame::silence(Duration::from_secs(1), SampleRate::HZ_16000, 1).unwrap());
    let stt = DeepgramStt::new(client, SttOptions::default()).unwrap();
    let mut stream = stt.stream(&RecognizeOptions::default()).unwrap();
    for f in frames {
        stream.push_frame(f).await.unwrap();
    }
    stream.end_input().await.unwrap();
    let mut finals = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the stream did not end")
    {
        if let SpeechEvent::FinalTranscript(t) = e.unwrap() {
            finals.push(t.text().to_owned());
        }
    }
    let text = finals.join(" ").to_lowercase();
    assert!(text.contains("fox") && text.contains("lazy dog"), "{text}");
}

#[tokio::test]
async fn live_tts_stream_segments() {
    let Some(client) = live_client("live_tts_stream_segments") else {
        return;
    };
    let tts = DeepgramTts::new(client, TtsOptions::default()).unwrap();
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    stream.push_text("Hello there. ").await.unwrap();
    stream.flush().await.unwrap();
    stream.push_text("How are you today?").await.unwrap();
    stream.flush().await.unwrap();
    stream.end_input().await.unwrap();
    let mut finals = 0;
    let mut audio = Duration::ZERO;
    while let Some(c) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the stream did not end")
    {
        let c = c.unwrap();
        audio += c.frame.duration();
        finals += usize::from(c.is_final);
    }
    assert_eq!(finals, 2);
    assert!(audio > Duration::from_millis(500), "{audio:?}");
}

#[tokio::test]
async fn live_bad_key_is_refused() {
    let Some(client) = live_client("live_bad_key_is_refused") else {
        return;
    };
    let bad = ClientOptions::new("0000000000000000000000000000000000000000")
        .with_base_url(client.base_url)
        .unwrap();
    let stt = DeepgramStt::new(bad, SttOptions::default()).unwrap();
    let mut stream = stt.stream(&RecognizeOptions::default()).unwrap();
    match stream.next().await {
        Some(Err(SttError::Api(e))) => {
            assert!(e.is_auth(), "{e:?}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}
