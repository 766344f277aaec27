//! VAD conformance: speech found in a speech-with-pause signal, none in silence, events in audio time, rate
//! changes refused.

use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::vad::{Vad, VadError, VadEvent, VadEventKind};
use futures::StreamExt;

use super::{must, within};
use crate::signal;

/// What a plugin provides to run the VAD suite.
pub trait VadHarness: Send + Sync {
    /// The VAD under test.
    fn vad(&self) -> Arc<dyn Vad>;
    /// Rate of the audio the checks send.
    fn sample_rate(&self) -> SampleRate {
        SampleRate::HZ_16000
    }
    /// `duration` of audio the VAD must hear as speech (default: the test tone; a model-based VAD returns recorded
    /// speech).
    fn speech(&self, duration: Duration) -> Vec<AudioFrame> {
        signal::tone(duration, self.sample_rate())
    }
    /// How far an event may be from the signal's edge (default 700 ms: min speech or min silence plus a window).
    fn tolerance(&self) -> Duration {
        Duration::from_millis(700)
    }
}

/// Runs every VAD check.
pub async fn run_all<H: VadHarness + ?Sized>(h: &H) {
    check_speech_with_pause(h).await;
    check_silence_has_no_speech(h).await;
    check_sample_rate_change_refused(h).await;
}

async fn run(h: &(impl VadHarness + ?Sized), frames: Vec<AudioFrame>, what: &str) -> Vec<VadEvent> {
    let vad = h.vad();
    let mut stream = must(vad.stream(), what);
    let mut events = Vec::new();
    for f in frames {
        must(within(what, stream.push_frame(f)).await, what);
        // Read what is ready so a bounded event queue never blocks the VAD.
        while let Some(Some(e)) = futures::FutureExt::now_or_never(stream.next()) {
            events.push(must(e, what));
        }
    }
    must(within(what, stream.end_input()).await, what);
    while let Some(e) = within(what, stream.next()).await {
        events.push(must(e, what));
    }
    events
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// 1 s silence, 1.5 s speech, 1.5 s silence, 1.5 s speech, 1.5 s silence: two segments, starts and ends near the
/// edges, frames attached, every window reported.
pub async fn check_speech_with_pause<H: VadHarness + ?Sized>(h: &H) {
    let what = "vad speech_with_pause";
    let rate = h.sample_rate();
    let s = Duration::from_millis(1500);
    let mut frames = signal::silence(Duration::from_secs(1), rate);
    frames.extend(h.speech(s));
    frames.extend(signal::silence(s, rate));
    frames.extend(h.speech(s));
    frames.extend(signal::silence(s, rate));
    let events = run(h, frames, what).await;
    let marks: Vec<&VadEvent> = events
        .iter()
        .filter(|e| e.kind != VadEventKind::InferenceDone)
        .collect();
    let kinds: Vec<VadEventKind> = marks.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            VadEventKind::StartOfSpeech,
            VadEventKind::EndOfSpeech,
            VadEventKind::StartOfSpeech,
            VadEventKind::EndOfSpeech
        ],
        "{what}: events"
    );
    let tol = h.tolerance();
    let edges = [1000u64, 2500, 4000, 5500].map(Duration::from_millis);
    for (e, edge) in marks.iter().zip(edges) {
        assert!(
            e.timestamp >= edge && e.timestamp <= edge + tol,
            "{what}: {:?} at {} ms, expected within {} ms after {} ms",
            e.kind,
            ms(e.timestamp),
            ms(tol),
            ms(edge)
        );
        assert!(!e.frames.is_empty(), "{what}: {:?} without frames", e.kind);
    }
    let inference = events
        .iter()
        .filter(|e| e.kind == VadEventKind::InferenceDone)
        .count();
    let interval = h.vad().capabilities().update_interval;
    if !interval.is_zero() {
        let expected = (Duration::from_millis(7000).as_nanos() / interval.as_nanos()) as usize;
        assert!(
            inference + 2 >= expected && inference <= expected + 2,
            "{what}: {inference} inference events for 7 s at {interval:?} per window"
        );
    }
    let mut last = Duration::ZERO;
    for e in &events {
        assert!(e.timestamp >= last, "{what}: timestamps go back at {e:?}");
        last = e.timestamp;
    }
}

/// Silence has no speech.
pub async fn check_silence_has_no_speech<H: VadHarness + ?Sized>(h: &H) {
    let what = "vad silence_has_no_speech";
    let events = run(
        h,
        signal::silence(Duration::from_secs(3), h.sample_rate()),
        what,
    )
    .await;
    assert!(
        events
            .iter()
            .all(|e| e.kind == VadEventKind::InferenceDone && !e.speaking),
        "{what}: speech found in silence"
    );
    assert!(!events.is_empty(), "{what}: no inference events");
}

/// A frame of another rate mid-stream is refused with [`VadError::SampleRateChanged`].
pub async fn check_sample_rate_change_refused<H: VadHarness + ?Sized>(h: &H) {
    let what = "vad sample_rate_change_refused";
    let rate = h.sample_rate();
    let other = if rate == SampleRate::HZ_8000 {
        SampleRate::HZ_16000
    } else {
        SampleRate::HZ_8000
    };
    let vad = h.vad();
    let mut stream = must(vad.stream(), what);
    for f in signal::silence(Duration::from_millis(100), rate) {
        must(within(what, stream.push_frame(f)).await, what);
    }
    // The push may fail once the VAD task has ended: the error is in the stream.
    for f in signal::silence(Duration::from_millis(100), other) {
        if within(what, stream.push_frame(f)).await.is_err() {
            break;
        }
    }
    let _ = within(what, stream.end_input()).await;
    let mut refused = false;
    while let Some(e) = within(what, stream.next()).await {
        if let Err(e) = e {
            assert!(
                matches!(e, VadError::SampleRateChanged { expected, actual } if expected == rate.hz() && actual == other.hz()),
                "{what}: unexpected error {e:?}"
            );
            refused = true;
        }
    }
    assert!(
        refused,
        "{what}: frames of {other} after {rate} were accepted"
    );
}
