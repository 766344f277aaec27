//! Resampler behaviour: lengths, continuity, delay, stopband and passband for every rate pair.
//!
//! Quality checks (SNR, stopband) use the `f32` path: the 16-bit quantisation floor of a
//! full-scale sine is about 98 dB, so an int16 check could not tell a 90 dB filter from a
//! 140 dB one. One test checks the int16 path against that floor instead.

#![allow(
    clippy::unwrap_used,
    clippy::needless_range_loop,
    reason = "test helpers: a failed step is a failed test; the 3x3 solver reads best with indices"
)]

use std::f64::consts::PI;

use agents_audio::{AudioFrame, ResampleError, ResampleQuality, Resampler, SampleRate};

const RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

fn rate(hz: u32) -> SampleRate {
    SampleRate::new(hz).unwrap()
}

fn pairs() -> impl Iterator<Item = (u32, u32)> {
    RATES
        .iter()
        .flat_map(|&a| RATES.iter().filter(move |&&b| b != a).map(move |&b| (a, b)))
}

/// `frames` frames of a sine at `freq` Hz (amplitude `amp`), the same on every channel except
/// that channel `c` is scaled by `1 - 0.25 c` so channels cannot be swapped unnoticed.
fn sine(freq: f64, hz: u32, frames: usize, channels: usize, amp: f64) -> Vec<f32> {
    let mut v = Vec::with_capacity(frames * channels);
    for n in 0..frames {
        let s = amp * (2.0 * PI * freq * n as f64 / f64::from(hz)).sin();
        for c in 0..channels {
            v.push((s * (1.0 - 0.25 * c as f64)) as f32);
        }
    }
    v
}

/// Streams `input` through `r` in pieces of `piece` frames, then flushes.
fn stream_f32(r: &mut Resampler, input: &[f32], piece: usize) -> Vec<f32> {
    let ch = usize::from(r.num_channels());
    let mut out = Vec::new();
    for chunk in input.chunks(piece * ch) {
        r.push_f32_into(chunk, &mut out).unwrap();
    }
    r.flush_f32_into(&mut out).unwrap();
    out
}

/// Least-squares fit of `a sin(wt) + b cos(wt) + c` at `freq` to channel `ch` of `x`, over
/// frames `skip..len-skip`. Returns (a, b, residual rms, signal rms).
fn fit_sine(
    x: &[f32],
    channels: usize,
    ch: usize,
    freq: f64,
    hz: u32,
    skip: usize,
) -> (f64, f64, f64) {
    let frames = x.len() / channels;
    let idx: Vec<usize> = (skip..frames - skip).collect();
    let w = 2.0 * PI * freq / f64::from(hz);
    // Normal equations for [sin, cos, 1].
    let mut m = [[0.0f64; 3]; 3];
    let mut r = [0.0f64; 3];
    for &n in &idx {
        let basis = [(w * n as f64).sin(), (w * n as f64).cos(), 1.0];
        let y = f64::from(x[n * channels + ch]);
        for i in 0..3 {
            r[i] += basis[i] * y;
            for j in 0..3 {
                m[i][j] += basis[i] * basis[j];
            }
        }
    }
    let coef = solve3(m, r);
    let mut err = 0.0;
    for &n in &idx {
        let fit = coef[0] * (w * n as f64).sin() + coef[1] * (w * n as f64).cos() + coef[2];
        let y = f64::from(x[n * channels + ch]);
        err += (y - fit).powi(2);
    }
    (coef[0], coef[1], (err / idx.len() as f64).sqrt())
}

fn solve3(mut m: [[f64; 3]; 3], mut r: [f64; 3]) -> [f64; 3] {
    for i in 0..3 {
        let p = m[i][i];
        for j in 0..3 {
            m[i][j] /= p;
        }
        r[i] /= p;
        for k in 0..3 {
            if k != i {
                let f = m[k][i];
                for j in 0..3 {
                    m[k][j] -= f * m[i][j];
                }
                r[k] -= f * r[i];
            }
        }
    }
    r
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

#[test]
fn output_length_after_flush_is_rounded_ratio_for_every_pair() {
    for (a, b) in pairs() {
        for ch in [1u16, 2] {
            // An awkward length that is no multiple of any block.
            let frames = f64::from(a) as usize * 3 / 10 + 7;
            let input = vec![0.1f32; frames * usize::from(ch)];
            let mut r = Resampler::new(rate(a), rate(b), ch, ResampleQuality::default()).unwrap();
            let out = stream_f32(&mut r, &input, f64::from(a) as usize / 100);
            let expected =
                (frames as u128 * u128::from(b) * 2 + u128::from(a)) / (2 * u128::from(a));
            assert_eq!(
                out.len() as u128,
                expected * u128::from(ch),
                "{a}->{b} x{ch}"
            );
            assert_eq!(r.input_frames(), 0, "flush resets the stream counters");
        }
    }
}

#[test]
fn ten_ms_pieces_equal_one_shot_for_every_pair() {
    for (a, b) in pairs() {
        for ch in [1u16, 2] {
            let frames = a as usize / 2 + 13;
            let input = sine(440.0, a, frames, ch.into(), 0.5);
            let mut r = Resampler::new(rate(a), rate(b), ch, ResampleQuality::default()).unwrap();
            let whole = stream_f32(&mut r, &input, frames);
            // 10 ms pieces (22.05 kHz: 220 frames), and an irregular piece size too.
            let pieces = stream_f32(&mut r, &input, a as usize / 100);
            let odd = stream_f32(&mut r, &input, 37);
            assert_eq!(whole.len(), pieces.len());
            let max = whole
                .iter()
                .zip(&pieces)
                .chain(whole.iter().zip(&odd))
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(max <= 1e-6, "{a}->{b} x{ch}: max difference {max}");
        }
    }
}

#[test]
fn output_is_time_aligned_and_reported_delay_matches_the_measured_lag() {
    for (a, b) in pairs() {
        for ch in [1u16, 2] {
            let mut r = Resampler::new(rate(a), rate(b), ch, ResampleQuality::default()).unwrap();
            let delay_frames = r.delay_frames() as u64;
            assert!(delay_frames > 0);
            assert_eq!(
                r.delay().as_nanos(),
                u128::from(delay_frames) * 1_000_000_000 / u128::from(b)
            );
            // A 1 kHz tone: the fitted phase at the output rate must match the input's
            // (pure sine, so the cosine coefficient is ~0): the trimmed output is time-aligned.
            let frames = a as usize / 2;
            let input = sine(1000.0, a, frames, ch.into(), 0.5);
            // One frame at a time, so the lag is seen right after every block completes.
            let piece = 1;
            let mut out = Vec::new();
            let mut min_lag = u64::MAX;
            let mut max_lag = 0;
            for chunk in input.chunks(piece * usize::from(ch)) {
                r.push_f32_into(chunk, &mut out).unwrap();
                let lag = r.expected_output_frames(r.input_frames()) - r.output_frames();
                if r.output_frames() > 0 {
                    min_lag = min_lag.min(lag);
                    max_lag = max_lag.max(lag);
                }
            }
            // Measured lag of the live stream: never less than the reported delay (within one
            // output frame of rounding), never more than delay + one processing block.
            let block_out = (r.chunk_duration().as_secs_f64() * f64::from(b)).ceil() as u64;
            assert!(
                min_lag + 1 >= delay_frames && min_lag <= delay_frames + 1,
                "{a}->{b}: min lag {min_lag}, delay {delay_frames}"
            );
            assert!(
                max_lag <= delay_frames + block_out + 1,
                "{a}->{b}: max lag {max_lag}"
            );
            r.flush_f32_into(&mut out).unwrap();
            let skip = b as usize / 20;
            let (sin_c, cos_c, _) = fit_sine(&out, ch.into(), 0, 1000.0, b, skip);
            let phase_error_samples = cos_c.atan2(sin_c) / (2.0 * PI * 1000.0) * f64::from(b);
            assert!(
                phase_error_samples.abs() < 0.01,
                "{a}->{b}: output shifted by {phase_error_samples} samples"
            );
        }
    }
}

#[test]
fn impulse_lands_at_its_time_in_the_output() {
    for (a, b) in [
        (48_000, 16_000),
        (16_000, 48_000),
        (44_100, 16_000),
        (8_000, 24_000),
    ] {
        let mut r = Resampler::new(rate(a), rate(b), 1, ResampleQuality::default()).unwrap();
        let k = a as usize / 10; // 100 ms in
        let mut input = vec![0.0f32; a as usize / 4];
        input[k] = 0.5;
        let out = stream_f32(&mut r, &input, a as usize / 100);
        let peak = out
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
            .unwrap()
            .0;
        let expected = (k as f64 * f64::from(b) / f64::from(a)).round() as usize;
        assert!(
            peak.abs_diff(expected) <= 1,
            "{a}->{b}: peak {peak}, expected {expected}"
        );
    }
}

#[test]
fn one_khz_survives_with_snr_above_90_db_for_every_pair() {
    for (a, b) in pairs() {
        for ch in [1u16, 2] {
            let input = sine(1000.0, a, a as usize / 2, ch.into(), 0.5);
            let mut r = Resampler::new(rate(a), rate(b), ch, ResampleQuality::default()).unwrap();
            let out = stream_f32(&mut r, &input, a as usize / 100);
            for c in 0..usize::from(ch) {
                let (s, co, resid) = fit_sine(&out, ch.into(), c, 1000.0, b, b as usize / 20);
                let amp = s.hypot(co);
                let expected_amp = 0.5 * (1.0 - 0.25 * c as f64);
                assert!(
                    (amp - expected_amp).abs() < 1e-3,
                    "{a}->{b} ch{c}: amplitude {amp}"
                );
                let snr = db(amp / 2f64.sqrt() / resid);
                assert!(snr > 90.0, "{a}->{b} x{ch} ch{c}: SNR {snr:.1} dB");
            }
        }
    }
}

#[test]
fn tones_above_the_new_nyquist_are_suppressed_by_90_db() {
    // (input, output, tone): the tone lies above the output Nyquist frequency.
    for (a, b, tone) in [
        (48_000, 16_000, 10_000.0),
        (48_000, 16_000, 12_000.0),
        (44_100, 8_000, 5_000.0),
        (44_100, 8_000, 10_000.0),
        (24_000, 16_000, 9_000.0),
        (22_050, 8_000, 6_000.0),
    ] {
        let input = sine(tone, a, a as usize / 2, 1, 0.5);
        let mut r = Resampler::new(rate(a), rate(b), 1, ResampleQuality::High).unwrap();
        let out = stream_f32(&mut r, &input, a as usize / 100);
        let skip = b as usize / 20;
        let body = &out[skip..out.len() - skip];
        let rms =
            (body.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / body.len() as f64).sqrt();
        let level = db(rms / (0.5 / 2f64.sqrt()));
        assert!(
            level < -90.0,
            "{a}->{b}, {tone} Hz: aliasing at {level:.1} dB"
        );
    }
}

#[test]
fn int16_path_reaches_the_quantisation_floor() {
    // int16 in and out: two quantisations of a -1 dBFS sine put the floor near 95 dB, so 85 dB
    // shows the int16 conversion adds no error beyond rounding.
    let (a, b) = (48_000, 16_000);
    let x: Vec<i16> = sine(1000.0, a, 24_000, 1, 0.89)
        .iter()
        .map(|&v| (v * 32768.0).round() as i16)
        .collect();
    let mut r = Resampler::new(rate(a), rate(b), 1, ResampleQuality::default()).unwrap();
    let mut out = Vec::new();
    for chunk in x.chunks(480) {
        r.push_into(chunk, &mut out).unwrap();
    }
    r.flush_into(&mut out).unwrap();
    assert_eq!(out.len(), 8_000);
    let f: Vec<f32> = out.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let (s, c, resid) = fit_sine(&f, 1, 0, 1000.0, b, 800);
    let snr = db(s.hypot(c) / 2f64.sqrt() / resid);
    assert!(snr > 85.0, "int16 SNR {snr:.1} dB");
}

#[test]
fn frames_api_checks_format_and_matches_the_sample_api() {
    let mut r = Resampler::new(
        SampleRate::HZ_48000,
        SampleRate::HZ_16000,
        1,
        ResampleQuality::default(),
    )
    .unwrap();
    let wrong_rate = AudioFrame::silence_samples(480, SampleRate::HZ_44100, 1).unwrap();
    assert!(matches!(
        r.push(&wrong_rate),
        Err(ResampleError::FormatMismatch { actual_rate, expected_channels: 1, .. }) if actual_rate == SampleRate::HZ_44100
    ));
    let wrong_channels = AudioFrame::silence_samples(480, SampleRate::HZ_48000, 2).unwrap();
    assert!(matches!(
        r.push(&wrong_channels),
        Err(ResampleError::FormatMismatch {
            actual_channels: 2,
            ..
        })
    ));
    let mut stereo = Resampler::new(
        SampleRate::HZ_48000,
        SampleRate::HZ_16000,
        2,
        ResampleQuality::default(),
    )
    .unwrap();
    assert!(matches!(
        stereo.push_into(&[0; 3], &mut Vec::new()),
        Err(ResampleError::UnevenInput {
            samples: 3,
            channels: 2
        })
    ));
    assert_eq!(stereo.input_frames(), 0, "refused input is not consumed");

    let samples: Vec<i16> = (0..4800).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
    let mut by_frames = Vec::new();
    for chunk in samples.chunks(480) {
        let frame = AudioFrame::new(chunk.to_vec(), SampleRate::HZ_48000, 1).unwrap();
        if let Some(out) = r.push(&frame).unwrap() {
            assert_eq!(out.sample_rate(), SampleRate::HZ_16000);
            by_frames.extend_from_slice(out.data());
        }
    }
    by_frames.extend_from_slice(r.flush().unwrap().unwrap().data());
    let mut by_samples = Vec::new();
    r.push_into(&samples, &mut by_samples).unwrap();
    r.flush_into(&mut by_samples).unwrap();
    assert!(by_frames == by_samples, "frame and sample APIs differ");
    assert_eq!(by_frames.len(), 1600);
    assert_eq!(r.flush().unwrap(), None, "nothing left after a flush");
}

#[test]
fn equal_rates_pass_through_untouched() {
    let mut r = Resampler::new(
        SampleRate::HZ_16000,
        SampleRate::HZ_16000,
        2,
        ResampleQuality::Low,
    )
    .unwrap();
    assert_eq!(r.delay(), std::time::Duration::ZERO);
    let samples: Vec<i16> = (0..640)
        .map(|i| (i * 101 % 65_536 - 32_768) as i16)
        .collect();
    let mut out = Vec::new();
    r.push_into(&samples, &mut out).unwrap();
    r.flush_into(&mut out).unwrap();
    assert_eq!(out, samples);
}

#[test]
fn bad_configurations_are_typed_errors() {
    assert!(matches!(
        Resampler::new(
            SampleRate::HZ_16000,
            SampleRate::HZ_48000,
            0,
            ResampleQuality::High
        ),
        Err(ResampleError::ZeroChannels)
    ));
    assert!(matches!(
        Resampler::new(rate(44_101), SampleRate::HZ_48000, 1, ResampleQuality::High),
        Err(ResampleError::UnsupportedRatio { .. })
    ));
    // Extreme but valid rates: refused before allocating gigabytes.
    assert!(matches!(
        Resampler::new(
            SampleRate::HZ_8000,
            rate(4_000_000_000),
            1,
            ResampleQuality::High
        ),
        Err(ResampleError::UnsupportedRatio { .. })
    ));
}

#[test]
fn reset_discards_buffered_audio() {
    let mut r = Resampler::new(
        SampleRate::HZ_48000,
        SampleRate::HZ_16000,
        1,
        ResampleQuality::Medium,
    )
    .unwrap();
    let mut out = Vec::new();
    r.push_into(&[10_000; 100], &mut out).unwrap();
    r.reset();
    r.push_into(&[0; 4800], &mut out).unwrap();
    r.flush_into(&mut out).unwrap();
    assert_eq!(out.len(), 1600);
    assert!(
        out.iter().all(|&s| s == 0),
        "audio from before the reset leaked"
    );
}

#[test]
fn every_quality_preset_resamples_every_pair() {
    for q in [
        ResampleQuality::Low,
        ResampleQuality::Medium,
        ResampleQuality::High,
    ] {
        let mut last_delay = None;
        for (a, b) in pairs() {
            let input = sine(300.0, a, a as usize / 5, 1, 0.5);
            let mut r = Resampler::new(rate(a), rate(b), 1, q).unwrap();
            let out = stream_f32(&mut r, &input, a as usize / 100);
            let (s, c, resid) = fit_sine(&out, 1, 0, 300.0, b, b as usize / 40);
            let snr = db(s.hypot(c) / 2f64.sqrt() / resid);
            assert!(snr > 60.0, "{q:?} {a}->{b}: SNR {snr:.1}");
            if (a, b) == (48_000, 16_000) {
                last_delay = Some(r.delay());
            }
        }
        assert!(last_delay.is_some());
    }
    let d = |q| {
        Resampler::new(SampleRate::HZ_48000, SampleRate::HZ_16000, 1, q)
            .unwrap()
            .delay()
    };
    assert!(d(ResampleQuality::Low) < d(ResampleQuality::Medium));
    assert!(d(ResampleQuality::Medium) < d(ResampleQuality::High));
}
