//! Aura text-to-speech against the emulator: REST synthesis, the speak WebSocket, the flush limit and errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions"
)]

mod common;

use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::tts::{SynthesizeOptions, SynthesizedAudio, Tts, TtsError};
use agents_deepgram::TtsOptions;
use agents_testkit::emulators::deepgram::{DeepgramEmulator, DeepgramEmulatorConfig, Fault};
use common::*;
use futures::StreamExt;

fn total(chunks: &[SynthesizedAudio]) -> Duration {
    chunks.iter().map(|c| c.frame.duration()).sum()
}

/// The emulator speaks 60 ms per character.
fn expected(text: &str) -> Duration {
    ms(60) * u32::try_from(text.chars().count()).unwrap()
}

#[tokio::test]
async fn synthesize_returns_raw_linear16_at_the_requested_rate() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let tts = tts(
        &dg,
        TtsOptions::default().with_sample_rate(SampleRate::HZ_16000),
    );
    let mut stream = tts
        .synthesize("Good evening.", &SynthesizeOptions::default())
        .await
        .unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = stream.next().await {
        chunks.push(c.unwrap());
    }
    assert_eq!(total(&chunks), expected("Good evening."));
    assert!(
        chunks
            .iter()
            .all(|c| c.frame.sample_rate() == SampleRate::HZ_16000)
    );
    assert_eq!(chunks.iter().filter(|c| c.is_final).count(), 1);
    assert!(chunks.last().unwrap().is_final);
    assert!(!chunks[0].request_id.is_empty());
    let m = stream.metrics();
    assert!(!m.cancelled && m.ttfb.is_some());
    assert_eq!(m.characters_count, 13);
    assert_eq!(m.audio_duration, expected("Good evening."));
    let req = &dg.rest_requests()[0];
    assert_eq!(req.path, "/v1/speak");
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    for kv in [
        ("model", "aura-2-thalia-en"),
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("container", "none"),
    ] {
        assert!(
            req.query.contains(&(kv.0.to_owned(), kv.1.to_owned())),
            "{:?}",
            req.query
        );
    }
}

#[tokio::test]
async fn slow_first_audio_times_out_and_the_retry_succeeds() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.inject_fault(Fault::SlowFirstAudio(Duration::from_secs(3)));
    let tts = tts(&dg, TtsOptions::default());
    let conn = fast_conn().with_timeout(ms(300));
    let stream = tts
        .synthesize("Hi.", &SynthesizeOptions::default().with_conn_options(conn))
        .await
        .unwrap();
    let frames = stream.collect_frames().await.unwrap();
    let d: Duration = frames.iter().map(|f| f.duration()).sum();
    assert_eq!(d, expected("Hi."));
    assert_eq!(dg.rest_requests().len(), 2);
}

#[tokio::test]
async fn synthesize_with_a_bad_key_is_a_non_retryable_401() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let client = agents_deepgram::ClientOptions::new("bad")
        .with_base_url(dg.http_url())
        .unwrap();
    let tts = agents_deepgram::DeepgramTts::new(client, TtsOptions::default()).unwrap();
    let err = tts
        .synthesize("Hi.", &SynthesizeOptions::default())
        .await
        .unwrap_err();
    let TtsError::Api(e) = err else {
        panic!("expected an API error")
    };
    assert_eq!(e.status_code(), Some(401));
    assert!(!e.is_retryable());
    assert_eq!(dg.rejected_requests(), 1);
    assert!(matches!(
        tts.synthesize("  ", &SynthesizeOptions::default()).await,
        Err(TtsError::InvalidRequest { .. })
    ));
}

async fn read_all(stream: &mut agents_core::tts::TtsStream) -> Vec<SynthesizedAudio> {
    let mut out = Vec::new();
    while let Some(c) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the stream did not end")
    {
        out.push(c.unwrap());
    }
    out
}

fn segments(chunks: &[SynthesizedAudio]) -> Vec<(String, Duration, usize)> {
    let mut out: Vec<(String, Duration, usize)> = Vec::new();
    for c in chunks {
        match out.last_mut() {
            Some((id, d, finals)) if *id == c.segment_id => {
                *d += c.frame.duration();
                *finals += usize::from(c.is_final);
            }
            _ => out.push((
                c.segment_id.clone(),
                c.frame.duration(),
                usize::from(c.is_final),
            )),
        }
    }
    out
}

#[tokio::test]
async fn stream_sends_speak_and_flush_and_splits_segments_on_flushed() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let tts = tts(&dg, TtsOptions::default());
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    stream.push_text("One two ").await.unwrap();
    stream.push_text("three.").await.unwrap();
    stream.flush().await.unwrap();
    stream.push_text("Four.").await.unwrap();
    stream.flush().await.unwrap();
    stream.end_input().await.unwrap();
    let chunks = read_all(&mut stream).await;
    let segs = segments(&chunks);
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(segs[0].1, expected("One two three."));
    assert_eq!(segs[1].1, expected("Four."));
    assert!(segs.iter().all(|s| s.2 == 1));
    assert!(
        chunks
            .iter()
            .all(|c| c.frame.sample_rate() == SampleRate::HZ_24000)
    );
    let s = &dg.speak_sessions()[0];
    assert_eq!(s.texts, vec!["One two ", "three.", "Four."]);
    assert_eq!(s.flushes, 2);
    assert_eq!(s.rejected_flushes, 0);
    for kv in [
        ("model", "aura-2-thalia-en"),
        ("encoding", "linear16"),
        ("sample_rate", "24000"),
    ] {
        assert!(s.query.contains(&(kv.0.to_owned(), kv.1.to_owned())));
    }
    let m = stream.metrics();
    assert_eq!(m.audio_duration, expected("One two three.Four."));
    assert!(m.streamed);
}

/// Deepgram processes at most 20 flushes per minute (the emulator answers a Warning to the others). Scaled down
/// on both sides to 2 per second: 4 quick flushes give 2 at once, then the other 2 coalesced into one when the
/// window allows, and no flush is refused.
#[tokio::test]
async fn flush_limit_is_respected_by_coalescing() {
    let config = DeepgramEmulatorConfig::default().with_flush_limit(2, Duration::from_secs(1));
    let dg = DeepgramEmulator::start_with(config).await.unwrap();
    let tts = tts(
        &dg,
        TtsOptions::default().with_flush_limit(2, Duration::from_secs(1)),
    );
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    for t in ["A.", "Bb.", "Ccc.", "Dddd."] {
        stream.push_text(t).await.unwrap();
        stream.flush().await.unwrap();
    }
    // Wait for the coalesced flush before ending, so `Close` does not generate the rest.
    let mut chunks = Vec::new();
    while segments(&chunks).iter().filter(|s| s.2 == 1).count() < 3 {
        let c = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("no audio")
            .unwrap()
            .unwrap();
        chunks.push(c);
    }
    stream.end_input().await.unwrap();
    chunks.extend(read_all(&mut stream).await);
    let segs = segments(&chunks);
    assert_eq!(segs.len(), 3, "{segs:?}");
    assert_eq!(segs[0].1, expected("A."));
    assert_eq!(segs[1].1, expected("Bb."));
    assert_eq!(segs[2].1, expected("Ccc.Dddd."));
    let s = &dg.speak_sessions()[0];
    assert_eq!(s.flushes, 3);
    assert_eq!(s.rejected_flushes, 0);
}

#[tokio::test]
async fn emulator_refuses_flushes_beyond_the_limit() {
    // The emulator side of the rule, with a client configured to ignore it.
    let config = DeepgramEmulatorConfig::default().with_flush_limit(1, Duration::from_secs(60));
    let dg = DeepgramEmulator::start_with(config).await.unwrap();
    let tts = tts(
        &dg,
        TtsOptions::default().with_flush_limit(5, Duration::from_secs(60)),
    );
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    stream.push_text("First.").await.unwrap();
    stream.flush().await.unwrap();
    stream.push_text("Second.").await.unwrap();
    stream.flush().await.unwrap();
    stream.end_input().await.unwrap();
    let chunks = read_all(&mut stream).await;
    let s = &dg.speak_sessions()[0];
    assert_eq!((s.flushes, s.rejected_flushes), (1, 1));
    assert!(s.closed);
    // `Close` still generated the refused segment's text.
    assert_eq!(total(&chunks), expected("First.Second."));
}

#[tokio::test]
async fn stream_with_a_bad_key_fails_at_once() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let client = agents_deepgram::ClientOptions::new("bad")
        .with_base_url(dg.http_url())
        .unwrap();
    let tts = agents_deepgram::DeepgramTts::new(client, TtsOptions::default()).unwrap();
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    let first = stream.next().await.unwrap();
    let Err(TtsError::Api(e)) = first else {
        panic!("expected an API error, got {first:?}")
    };
    assert_eq!(e.status_code(), Some(401));
    assert!(!e.is_retryable());
    assert_eq!(dg.rejected_requests(), 1);
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn dropping_the_stream_clears_and_closes() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let tts = tts(&dg, TtsOptions::default());
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    stream.push_text("Interrupted speech.").await.unwrap();
    stream.flush().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.frame.duration() > Duration::ZERO);
    drop(stream);
    let mut cleared = false;
    for _ in 0..100 {
        if dg.speak_sessions()[0].clears == 1 {
            cleared = true;
            break;
        }
        tokio::time::sleep(ms(20)).await;
    }
    assert!(cleared, "{:?}", dg.speak_sessions());
}
