//! TTS conformance: synthesized duration grows with the text, audio at `sample_rate()`, streamed segments with
//! `flush`, alignment when announced.

use std::sync::Arc;
use std::time::Duration;

use agents_core::tts::{SynthesizeOptions, SynthesizedAudio, Tts};
use async_trait::async_trait;
use futures::StreamExt;

use super::{must, within};

/// What a plugin provides to run the TTS suite.
#[async_trait]
pub trait TtsHarness: Send + Sync {
    /// The TTS under test (wired to the emulator).
    fn tts(&self) -> Arc<dyn Tts>;
}

const SHORT: &str = "Hello.";
const LONG: &str = "Hello, this is a much longer sentence, with many more words to speak aloud.";

/// Runs every TTS check (stream checks only when the TTS streams).
pub async fn run_all<H: TtsHarness + ?Sized>(h: &H) {
    check_duration_grows_with_text(h).await;
    check_audio_format(h).await;
    if h.tts().capabilities().streaming {
        check_stream_segments(h).await;
    }
    if h.tts().capabilities().aligned_transcript {
        check_alignment(h).await;
    }
}

async fn synthesize(tts: &Arc<dyn Tts>, text: &str, what: &str) -> Vec<SynthesizedAudio> {
    let stream = must(
        within(what, tts.synthesize(text, &SynthesizeOptions::default())).await,
        what,
    );
    let chunks: Vec<_> = within(what, stream.collect::<Vec<_>>()).await;
    chunks.into_iter().map(|c| must(c, what)).collect()
}

fn duration(chunks: &[SynthesizedAudio]) -> Duration {
    chunks.iter().map(|c| c.frame.duration()).sum()
}

/// A longer text gives longer audio; both end with a final chunk.
pub async fn check_duration_grows_with_text<H: TtsHarness + ?Sized>(h: &H) {
    let what = "tts duration_grows_with_text";
    let tts = h.tts();
    let short = synthesize(&tts, SHORT, what).await;
    let long = synthesize(&tts, LONG, what).await;
    let (ds, dl) = (duration(&short), duration(&long));
    assert!(!ds.is_zero(), "{what}: no audio for {SHORT:?}");
    assert!(
        dl > ds,
        "{what}: {dl:?} for the long text is not longer than {ds:?}"
    );
    for chunks in [&short, &long] {
        assert!(
            chunks.last().is_some_and(|c| c.is_final),
            "{what}: the last chunk is not final"
        );
    }
}

/// Every frame has the TTS's rate and channel count.
pub async fn check_audio_format<H: TtsHarness + ?Sized>(h: &H) {
    let what = "tts audio_format";
    let tts = h.tts();
    for c in synthesize(&tts, SHORT, what).await {
        assert_eq!(
            c.frame.sample_rate(),
            tts.sample_rate(),
            "{what}: frame rate"
        );
        assert_eq!(
            c.frame.num_channels(),
            tts.num_channels(),
            "{what}: channels"
        );
    }
}

/// A stream with two flushed segments yields two segments in order, each ending with a final chunk, then ends.
pub async fn check_stream_segments<H: TtsHarness + ?Sized>(h: &H) {
    let what = "tts stream_segments";
    let tts = h.tts();
    let mut stream = must(tts.stream(&SynthesizeOptions::default()), what);
    for t in ["Hello ", "there."] {
        must(within(what, stream.push_text(t)).await, what);
    }
    must(within(what, stream.flush()).await, what);
    must(
        within(what, stream.push_text("How are you today?")).await,
        what,
    );
    must(within(what, stream.flush()).await, what);
    must(within(what, stream.end_input()).await, what);
    let mut chunks = Vec::new();
    while let Some(c) = within(what, stream.next()).await {
        chunks.push(must(c, what));
    }
    let mut segments: Vec<(String, Vec<&SynthesizedAudio>)> = Vec::new();
    for c in &chunks {
        assert_eq!(
            c.frame.sample_rate(),
            tts.sample_rate(),
            "{what}: frame rate"
        );
        match segments.last_mut() {
            Some((id, list)) if *id == c.segment_id => list.push(c),
            _ => {
                assert!(
                    segments.iter().all(|(id, _)| *id != c.segment_id),
                    "{what}: segment {} interleaved with another",
                    c.segment_id
                );
                segments.push((c.segment_id.clone(), vec![c]));
            }
        }
    }
    assert_eq!(
        segments.len(),
        2,
        "{what}: expected 2 segments, got {:?}",
        segments.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (id, list) in &segments {
        assert!(
            list.last().is_some_and(|c| c.is_final),
            "{what}: segment {id} does not end with a final chunk"
        );
        assert_eq!(
            list.iter().filter(|c| c.is_final).count(),
            1,
            "{what}: segment {id} has several final chunks"
        );
    }
}

/// Aligned TTSs give word timings that increase and fit in the audio.
pub async fn check_alignment<H: TtsHarness + ?Sized>(h: &H) {
    let what = "tts alignment";
    let tts = h.tts();
    let chunks = synthesize(&tts, LONG, what).await;
    let timed: Vec<_> = chunks.iter().flat_map(|c| c.timed_text.iter()).collect();
    assert!(!timed.is_empty(), "{what}: no timed text");
    let total = duration(&chunks);
    let mut last = Duration::ZERO;
    for t in timed {
        assert!(
            t.start >= last && t.end >= t.start,
            "{what}: timings not increasing at {t:?}"
        );
        assert!(
            t.end <= total + Duration::from_millis(50),
            "{what}: {t:?} beyond the audio ({total:?})"
        );
        last = t.start;
    }
}
