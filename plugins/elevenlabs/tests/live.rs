//! Live tests against api.elevenlabs.io; they run only with `ELEVEN_API_KEY` or `ELEVENLABS_API_KEY` set, and
//! print why they skip otherwise.
#![allow(clippy::expect_used, clippy::print_stdout)] // test helpers: a skip message and setup failures

use agents_core::tts::{SynthesizeOptions, Tts};
use agents_elevenlabs::{ElevenLabsTts, TtsOptions};
use futures::StreamExt;

fn live() -> Option<ElevenLabsTts> {
    match TtsOptions::from_env() {
        Ok(o) => Some(ElevenLabsTts::new(o).expect("valid options")),
        Err(e) => {
            println!("skipping the live ElevenLabs test: {e}");
            None
        }
    }
}

#[tokio::test]
async fn live_streaming_speech_with_word_timings() {
    let Some(tts) = live() else { return };
    let mut s = tts.stream(&SynthesizeOptions::default()).unwrap();
    s.push_text("Hello from the live ").await.unwrap();
    s.push_text("ElevenLabs test.").await.unwrap();
    s.end_input().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = s.next().await {
        chunks.push(c.expect("live audio"));
    }
    assert!(chunks.iter().any(|c| !c.frame.is_empty()));
    assert!(chunks.iter().any(|c| !c.timed_text.is_empty()));
    assert_eq!(chunks.iter().filter(|c| c.is_final).count(), 1);
    tts.aclose().await;
}

#[tokio::test]
async fn live_rest_synthesis() {
    let Some(tts) = live() else { return };
    let s = tts
        .synthesize(
            "Hello from the REST endpoint.",
            &SynthesizeOptions::default(),
        )
        .await
        .expect("live REST");
    let frames = s.collect_frames().await.expect("live audio");
    assert!(frames.iter().any(|f| !f.is_empty()));
}
