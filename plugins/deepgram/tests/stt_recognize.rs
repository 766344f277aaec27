//! Pre-recorded recognition (`POST /v1/listen`) against the emulator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions"
)]

mod common;

use std::time::Duration;

use agents_core::stt::{RecognizeOptions, Stt, SttError};
use agents_deepgram::SttOptions;
use agents_testkit::emulators::deepgram::{DeepgramEmulator, Fault};
use common::*;

#[tokio::test]
async fn recognize_posts_raw_linear16_and_maps_the_response() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("Recorded words, timed.");
    let stt = stt(&dg, SttOptions::default().with_language("en-GB"));
    let frames = audio(&[(false, 400), (true, 1200), (false, 400)]);
    let t = stt
        .recognize(&frames, &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "Recorded words, timed.");
    assert!(!t.request_id.is_empty());
    assert_eq!(t.language(), Some("en-GB"));
    let best = &t.alternatives[0];
    assert_eq!(best.words.len(), 3);
    assert!(best.words[0].start >= ms(390) && best.words[0].start <= ms(420));
    assert!(best.end_time <= ms(1610));
    let req = &dg.rest_requests()[0];
    assert_eq!(req.path, "/v1/listen");
    assert_eq!(req.body_len, 2 * 16_000 * 2);
    let get = |k: &str| {
        req.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("encoding"), Some("linear16"));
    assert_eq!(get("sample_rate"), Some("16000"));
    assert_eq!(get("channels"), Some("1"));
    assert_eq!(get("model"), Some("nova-3"));
    assert_eq!(get("interim_results"), None);
}

#[tokio::test]
async fn recognize_of_silence_is_an_empty_transcript() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("unused");
    let stt = stt(&dg, SttOptions::default());
    let t = stt
        .recognize(&audio(&[(false, 500)]), &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "");
    assert_eq!(dg.remaining_transcripts(), 1);
}

#[tokio::test]
async fn recognize_with_a_bad_key_fails_without_retrying() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let client = agents_deepgram::ClientOptions::new("nope")
        .with_base_url(dg.http_url())
        .unwrap();
    let stt = agents_deepgram::DeepgramStt::new(client, SttOptions::default()).unwrap();
    let err = stt
        .recognize(&audio(&[(true, 200)]), &RecognizeOptions::default())
        .await
        .unwrap_err();
    let SttError::Api(e) = err else {
        panic!("expected an API error")
    };
    assert_eq!(e.status_code(), Some(401));
    assert!(!e.is_retryable());
    assert_eq!(dg.rejected_requests(), 1);
}

#[tokio::test]
async fn recognize_retries_a_429_with_a_short_retry_after() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("second try");
    dg.inject_fault(Fault::RateLimited {
        retry_after: Some(Duration::from_secs(1)),
    });
    let stt = stt(&dg, SttOptions::default());
    let t = stt
        .recognize(
            &audio(&[(false, 200), (true, 500)]),
            &RecognizeOptions::default().with_conn_options(fast_conn()),
        )
        .await
        .unwrap();
    assert_eq!(t.text(), "second try");
    assert_eq!(dg.rejected_requests(), 1);
    assert_eq!(dg.rest_requests().len(), 1);
}

#[tokio::test]
async fn recognize_of_a_429_without_retry_after_fails_at_once() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.inject_fault(Fault::RateLimited { retry_after: None });
    let stt = stt(&dg, SttOptions::default());
    let err = stt
        .recognize(
            &audio(&[(true, 200)]),
            &RecognizeOptions::default().with_conn_options(fast_conn()),
        )
        .await
        .unwrap_err();
    let SttError::Api(e) = err else {
        panic!("expected an API error")
    };
    assert_eq!(e.status_code(), Some(429));
    assert_eq!(dg.rejected_requests(), 1);
}
