//! Deterministic test signals and energy measurement.
//!
//! The fakes agree on one convention: a *tone* (a sine wave of amplitude [`TONE_AMPLITUDE`], RMS ≈ 0.07 of full
//! scale) is "speech" and digital silence is not. Energy thresholds ([`DEFAULT_SPEECH_THRESHOLD`]) are RMS values
//! normalized to full scale (`1.0` = `i16::MAX`).

use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};

/// Amplitude of [`tone`] as a fraction of full scale (low, but far above every default threshold).
pub const TONE_AMPLITUDE: f32 = 0.1;
/// Frequency of [`tone`], in hertz.
pub const TONE_FREQUENCY: f32 = 220.0;
/// Default RMS threshold (normalized) above which the energy-based fakes consider audio speech (≈ -40 dBFS).
pub const DEFAULT_SPEECH_THRESHOLD: f32 = 0.01;
/// Length of the frames the helpers produce.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// Whole samples per channel in `duration` at `rate` (rounded down).
pub fn samples_for(duration: Duration, rate: SampleRate) -> usize {
    let n = duration.as_nanos() * u128::from(rate.hz()) / 1_000_000_000;
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Duration of `samples` samples per channel at `rate`.
pub fn duration_of(samples: u64, rate: SampleRate) -> Duration {
    let nanos = u128::from(samples) * 1_000_000_000 / u128::from(rate.hz());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The sample of the test tone at index `i` (per channel) at `rate`.
pub(crate) fn tone_sample(i: u64, rate: SampleRate) -> i16 {
    let t = i as f64 / f64::from(rate.hz());
    let v = (2.0 * std::f64::consts::PI * f64::from(TONE_FREQUENCY) * t).sin()
        * f64::from(TONE_AMPLITUDE)
        * f64::from(i16::MAX);
    v.round() as i16
}

/// Mono samples of the tone from sample `start` (per channel), `n` samples long.
pub(crate) fn tone_samples(start: u64, n: usize, rate: SampleRate) -> Vec<i16> {
    (0..n as u64)
        .map(|k| tone_sample(start + k, rate))
        .collect()
}

/// Splits `n` mono samples produced by `f(start, len)` into frames of [`FRAME_DURATION`] (the last may be shorter).
fn framed(
    total: usize,
    rate: SampleRate,
    mut f: impl FnMut(u64, usize) -> Vec<i16>,
) -> Vec<AudioFrame> {
    let per_frame = samples_for(FRAME_DURATION, rate).max(1);
    let mut frames = Vec::new();
    let mut start = 0usize;
    while start < total {
        let len = per_frame.min(total - start);
        let data = f(start as u64, len);
        if let Ok(frame) = AudioFrame::new(data, rate, 1) {
            frames.push(frame);
        }
        start += len;
    }
    frames
}

/// `duration` of the test tone (mono) in 20 ms frames.
pub fn tone(duration: Duration, rate: SampleRate) -> Vec<AudioFrame> {
    framed(samples_for(duration, rate), rate, |s, n| {
        tone_samples(s, n, rate)
    })
}

/// `duration` of digital silence (mono) in 20 ms frames.
pub fn silence(duration: Duration, rate: SampleRate) -> Vec<AudioFrame> {
    framed(samples_for(duration, rate), rate, |_, n| vec![0; n])
}

/// A signal alternating silence and tone: `parts` is a list of `(is_speech, duration)` (mono, 20 ms frames; each
/// part starts on a fresh frame).
pub fn sequence(parts: &[(bool, Duration)], rate: SampleRate) -> Vec<AudioFrame> {
    parts
        .iter()
        .flat_map(|&(speech, d)| {
            if speech {
                tone(d, rate)
            } else {
                silence(d, rate)
            }
        })
        .collect()
}

/// Total duration of `frames`.
pub fn total_duration(frames: &[AudioFrame]) -> Duration {
    frames.iter().map(AudioFrame::duration).sum()
}

/// RMS of `samples`, normalized to full scale (`0.0` for no samples).
pub fn rms_of(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    ((sum / samples.len() as f64).sqrt() / f64::from(i16::MAX)) as f32
}

/// RMS of a frame (all channels), normalized to full scale.
pub fn rms(frame: &AudioFrame) -> f32 {
    rms_of(frame.data())
}
