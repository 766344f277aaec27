//! Shared helpers for the Silero tests: fixtures, truth file, running a stream.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::vad::{Vad, VadError, VadEvent, VadEventKind};
use agents_silero::SileroVad;
use futures::StreamExt;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Interleaved samples, rate and channels of a fixture.
pub fn read_wav(name: &str) -> (Vec<i16>, SampleRate, u16) {
    let path = fixture_path(name);
    let mut reader = match hound::WavReader::open(&path) {
        Ok(r) => r,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let spec = reader.spec();
    let samples: Result<Vec<i16>, _> = reader.samples::<i16>().collect();
    let samples = match samples {
        Ok(s) => s,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let rate = match SampleRate::new(spec.sample_rate) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    (samples, rate, spec.channels)
}

/// Splits interleaved samples into 10 ms frames.
pub fn frames(samples: &[i16], rate: SampleRate, channels: u16) -> Vec<AudioFrame> {
    let per = (rate.hz() / 100) as usize * usize::from(channels);
    samples
        .chunks(per)
        .map(|c| match AudioFrame::new(c.to_vec(), rate, channels) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        })
        .collect()
}

pub fn fixture_frames(name: &str) -> Vec<AudioFrame> {
    let (s, r, c) = read_wav(name);
    frames(&s, r, c)
}

/// Utterance boundaries [start, end) from truth.json, as durations.
pub fn truth() -> Vec<(Duration, Duration)> {
    let text = match std::fs::read_to_string(fixture_path("truth.json")) {
        Ok(t) => t,
        Err(e) => panic!("truth.json: {e}"),
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!("truth.json: {e}"),
    };
    let rate = v["sample_rate"].as_u64().unwrap_or(0) as f64;
    assert!(rate > 0.0, "truth.json: sample_rate");
    let Some(utts) = v["utterances"].as_array() else {
        panic!("truth.json: utterances")
    };
    utts.iter()
        .map(|u| {
            let s = u[0].as_u64().unwrap_or(0) as f64 / rate;
            let e = u[1].as_u64().unwrap_or(0) as f64 / rate;
            (Duration::from_secs_f64(s), Duration::from_secs_f64(e))
        })
        .collect()
}

/// LiveKit's segments for `fixture` from livekit_reference.json.
pub fn livekit_reference(fixture: &str) -> Vec<(Duration, Duration)> {
    let text = match std::fs::read_to_string(fixture_path("livekit_reference.json")) {
        Ok(t) => t,
        Err(e) => panic!("livekit_reference.json: {e}"),
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!("livekit_reference.json: {e}"),
    };
    let Some(segs) = v[fixture].as_array() else {
        panic!("livekit_reference.json: no {fixture}")
    };
    segs.iter()
        .map(|s| {
            let a = s[0].as_f64().unwrap_or(-1.0);
            let b = s[1].as_f64().unwrap_or(-1.0);
            assert!(
                a >= 0.0 && b >= a,
                "livekit_reference.json: bad segment {s}"
            );
            (Duration::from_secs_f64(a), Duration::from_secs_f64(b))
        })
        .collect()
}

/// One model for all tests of a binary (loading takes ~150 ms in debug builds).
pub fn vad() -> SileroVad {
    static VAD: OnceLock<SileroVad> = OnceLock::new();
    VAD.get_or_init(|| match SileroVad::load() {
        Ok(v) => v,
        Err(e) => panic!("load: {e:?}"),
    })
    .clone()
}

/// Pushes every frame, ends the input and collects every event or error.
pub async fn run(vad: &dyn Vad, frames: Vec<AudioFrame>) -> Vec<Result<VadEvent, VadError>> {
    let mut stream = match vad.stream() {
        Ok(s) => s,
        Err(e) => panic!("stream: {e}"),
    };
    let mut out = Vec::new();
    for f in frames {
        if stream.push_frame(f).await.is_err() {
            break;
        }
        while let Some(Some(e)) = futures::FutureExt::now_or_never(stream.next()) {
            out.push(e);
        }
    }
    let _ = stream.end_input().await;
    while let Some(e) = stream.next().await {
        out.push(e);
    }
    out
}

pub fn events(results: Vec<Result<VadEvent, VadError>>) -> Vec<VadEvent> {
    results
        .into_iter()
        .map(|r| match r {
            Ok(e) => e,
            Err(e) => panic!("VAD error: {e}"),
        })
        .collect()
}

/// Detected segments: (start, end) with start = StartOfSpeech time minus the speech run that triggered it and
/// end = EndOfSpeech time minus the silence run that ended it.
pub fn segments(events: &[VadEvent]) -> Vec<(Duration, Duration)> {
    let mut out = Vec::new();
    let mut start = None;
    for e in events {
        match e.kind {
            VadEventKind::StartOfSpeech => {
                start = Some(e.timestamp.saturating_sub(e.speech_duration));
            }
            VadEventKind::EndOfSpeech => {
                if let Some(s) = start.take() {
                    out.push((s, e.timestamp.saturating_sub(e.silence_duration)));
                }
            }
            _ => {}
        }
    }
    out
}

pub fn shared(vad: SileroVad) -> Arc<dyn Vad> {
    Arc::new(vad)
}

/// Detected starts must be within 100 ms of the utterance starts in truth.json.
pub const TOLERANCE: Duration = Duration::from_millis(100);
/// Detected ends lag the sox-trimmed ends by 57-104 ms on these fixtures: the state machine measures the closing
/// silence from the last window the model scored as speech, but Silero's probability itself decays over a couple
/// of windows after speech stops, which leaves one segment at 104 ms at 24/48 kHz (see docs/vad.md).
pub const END_TOLERANCE: Duration = Duration::from_millis(120);
/// One 32 ms window.
pub const WINDOW: Duration = Duration::from_millis(32);

pub fn assert_segments_match_truth(found: &[(Duration, Duration)], what: &str) {
    let truth = truth();
    assert_eq!(
        found.len(),
        truth.len(),
        "{what}: found {found:?}, truth {truth:?}"
    );
    for ((s, e), (ts, te)) in found.iter().zip(&truth) {
        let ds = s.abs_diff(*ts);
        let de = e.abs_diff(*te);
        assert!(
            ds <= TOLERANCE && de <= END_TOLERANCE,
            "{what}: segment {s:?}..{e:?} vs truth {ts:?}..{te:?} (start off by {ds:?}, end off by {de:?})"
        );
        // Ends are never early: the VAD cannot end speech before it stops.
        assert!(*e >= *te, "{what}: end {e:?} before the truth {te:?}");
    }
}

/// Same segments as LiveKit's Python plugin on the same file, within one window.
pub fn assert_segments_match_livekit(found: &[(Duration, Duration)], fixture: &str) {
    let reference = livekit_reference(fixture);
    assert_eq!(
        found.len(),
        reference.len(),
        "{fixture}: {found:?} vs LiveKit {reference:?}"
    );
    for ((s, e), (ls, le)) in found.iter().zip(&reference) {
        assert!(
            s.abs_diff(*ls) <= WINDOW && e.abs_diff(*le) <= WINDOW,
            "{fixture}: {s:?}..{e:?} vs LiveKit {ls:?}..{le:?}"
        );
    }
}
