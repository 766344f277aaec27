//! Failures: bad key, HTTP statuses on the upgrade, dropped sockets, malformed and error messages, slow audio.

mod common;

use std::time::Duration;

use agents_core::tts::{SynthesizeOptions, Tts, TtsError};
use agents_testkit::emulators::elevenlabs::{ElevenLabsConfig, Fault};
use common::*;
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn a_bad_key_fails_at_once_with_a_non_retryable_error() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let t = tts(options(&emu).with_api_key("wrong-key"));
    let Err(TtsError::Api(e)) = speak(&t, "Hello.").await else {
        panic!("a bad key must fail");
    };
    assert_eq!(e.status_code(), Some(401));
    assert!(!e.is_retryable());
    assert!(e.is_auth());
    assert_eq!(e.message(), "Invalid API key");
    assert_eq!(emu.auth_failures(), 1, "no retry after a 401");
    assert!(
        !format!("{e} {e:?}").contains("wrong-key"),
        "the key never shows"
    );

    let Err(TtsError::Api(e)) = t.synthesize("Hello.", &SynthesizeOptions::default()).await else {
        panic!("REST with a bad key must fail");
    };
    assert_eq!(e.status_code(), Some(401));
    assert_eq!(emu.auth_failures(), 2);
}

#[tokio::test]
async fn a_server_error_on_the_upgrade_is_retried() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    emu.push_fault(Fault::HttpStatus {
        status: 503,
        body: json!({"detail": {"status": "busy", "message": "try again"}}),
    });
    let t = tts(options(&emu));
    let chunks = speak(&t, "Hello.").await.unwrap();
    assert_eq!(duration(&chunks), expected(6));
    assert_eq!(emu.connections(), 1);
}

#[tokio::test]
async fn rate_limited_upgrade_gives_a_typed_429() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    emu.push_fault(Fault::HttpStatus {
        status: 429,
        body: json!({"detail": {"status": "too_many_concurrent_requests", "message": "Too many requests"}}),
    });
    let t = tts(options(&emu));
    let Err(TtsError::Api(e)) = speak(&t, "Hello.").await else {
        panic!("429 must fail");
    };
    assert_eq!(e.status_code(), Some(429));
    assert_eq!(e.message(), "Too many requests");
    // The next speech connects normally.
    assert!(speak(&t, "Hello.").await.is_ok());
}

#[tokio::test]
async fn a_socket_dropped_mid_utterance_fails_retryably_and_the_next_speech_reconnects() {
    let emu = emulator(
        ElevenLabsConfig::default()
            .with_chars_per_chunk(4)
            .with_chunk_interval(Duration::from_millis(5)),
    )
    .await;
    emu.push_fault(Fault::DropAfterAudio(2));
    let t = tts(options(&emu));
    let mut s = t.stream(&SynthesizeOptions::default()).unwrap();
    s.push_text("This sentence will be cut off by the provider.")
        .await
        .unwrap();
    s.end_input().await.unwrap();
    let mut audio = 0;
    let err = loop {
        match tokio::time::timeout(LIMIT, s.next()).await.unwrap() {
            Some(Ok(c)) => audio += c.frame.samples_per_channel(),
            Some(Err(e)) => break e,
            None => panic!("the stream ended normally after a dropped socket"),
        }
    };
    assert!(audio > 0, "audio arrived before the drop");
    let TtsError::Api(e) = err else {
        panic!("{err:?}")
    };
    assert!(e.is_retryable() && e.is_connection(), "{e:?}");

    let chunks = speak(&t, "Back again.").await.unwrap();
    assert_eq!(duration(&chunks), expected("Back again.".len()));
    assert_eq!(emu.connections(), 2);
}

#[tokio::test]
async fn a_socket_dropped_before_any_audio_is_replayed_on_a_new_socket() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    emu.push_fault(Fault::DropAfterAudio(0));
    let t = tts(options(&emu));
    let chunks = speak(&t, "Replayed in full.").await.unwrap();
    assert_eq!(duration(&chunks), expected("Replayed in full.".len()));
    let words: Vec<String> = chunks
        .iter()
        .flat_map(|c| c.timed_text.iter().map(|w| w.text.clone()))
        .collect();
    assert_eq!(words, ["Replayed", "in", "full."]);
    assert_eq!(emu.connections(), 2);
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}

#[tokio::test]
async fn malformed_json_from_the_server_is_a_typed_error() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    emu.push_fault(Fault::MalformedJson);
    let t = tts(options(&emu));
    let Err(TtsError::Api(e)) = speak(&t, "Hello.").await else {
        panic!("malformed JSON must fail the speech");
    };
    assert!(e.message().contains("not JSON"), "{e}");
    // The broken socket is replaced for the next speech.
    assert!(speak(&t, "Hello.").await.is_ok());
    assert_eq!(emu.connections(), 2);
}

#[tokio::test]
async fn a_socket_error_message_maps_to_a_non_retryable_error() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    emu.push_fault(Fault::SocketError {
        error: "quota_exceeded".to_owned(),
        message: "This request exceeds your quota.".to_owned(),
    });
    let t = tts(options(&emu));
    let Err(TtsError::Api(e)) = speak(&t, "Hello.").await else {
        panic!("a quota error must fail the speech");
    };
    assert!(!e.is_retryable());
    assert!(e.message().contains("quota_exceeded"), "{e}");
    assert_eq!(
        e.body().and_then(|b| b.get("error")),
        Some(&json!("quota_exceeded"))
    );
}

#[tokio::test]
async fn slow_first_audio_is_waited_for_and_measured() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    emu.push_fault(Fault::SlowFirstAudio(Duration::from_millis(300)));
    let t = tts(options(&emu));
    let mut s = t.stream(&SynthesizeOptions::default()).unwrap();
    s.push_text("Slow start.").await.unwrap();
    s.end_input().await.unwrap();
    let chunks = read_all(&mut s).await.unwrap();
    assert_eq!(duration(&chunks), expected("Slow start.".len()));
    let m = s.metrics();
    assert!(
        m.ttfb.is_some_and(|t| t >= Duration::from_millis(300)),
        "{m:?}"
    );
    assert_eq!(m.characters_count, "Slow start.".len());
    assert_eq!(m.audio_duration, expected("Slow start.".len()));
    assert!(!m.cancelled);
}
