//! Streaming sample-rate conversion over [`rubato`]'s FFT resampler.
//!
//! [`Resampler`] takes interleaved 16-bit (or `f32`) audio in pieces of any size and returns the
//! audio at another rate, continuous across pieces: resampling a signal in 10 ms pieces gives the
//! same samples as resampling it whole, up to `f32` rounding.
//!
//! # Time alignment and delay
//!
//! The anti-aliasing filter looks ahead, so the FFT resampler starts with
//! [`Resampler::delay`] worth of output that precedes the signal. That start-up delay is
//! **trimmed**: output sample `j` is the signal at time `j / output_rate`, exactly as input sample
//! `i` is the signal at `i / input_rate`, so timestamps need no correction. The price is latency:
//! in a live stream the output lags the input by `delay()` plus up to one
//! [`Resampler::chunk_duration`] of buffering (the resampler works on fixed-size blocks).
//! [`Resampler::flush`] at the end of a stream pushes the tail out, and the total output is then
//! `round(input_frames * output_rate / input_rate)` frames.
//!
//! # Quality presets
//!
//! All presets use rubato's `Fft` resampler with a fixed input block (measured fastest and
//! cleanest in `docs/benchmarks.md` and the project's resampler study). They differ in the FFT
//! block length, counted at the lower of the two rates; a longer block puts the filter's cutoff
//! closer to the lower Nyquist frequency and costs latency:
//!
//! | preset | window | block at the lower rate | delay 48k→16k | delay 16k→8k | 3.4 kHz at 48k→8k |
//! |---|---|---|---|---|---|
//! | `Low` | Blackman2 | >= 64 frames | 2 ms | 4 ms | −5.7 dB |
//! | `Medium` | BlackmanHarris2 | >= 128 frames | 4 ms | 8 ms | −0.26 dB |
//! | `High` (default) | BlackmanHarris2 | >= 256 frames | 8 ms | 16 ms | 0.00 dB |
//!
//! All three keep a 1 kHz tone above 135 dB SNR and alias tones above the new Nyquist frequency
//! below −140 dB (f32 path); they differ in how close to Nyquist the passband reaches, which is
//! why `High` is the default. Measured numbers and the command are in `docs/audio.md`.
//! (The block is rounded up to a multiple of `rate / gcd(input, output)` with both block lengths
//! even, so the delay is
//! longer for pairs with a small common divisor: 20 ms for 44.1 kHz or 22.05 kHz to 8 kHz at
//! `High`.) Equal rates pass through untouched with
//! no delay.

use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _, WindowFunction};

use crate::frame::{AudioFrame, SampleRate, f32_to_i16, i16_to_f32};

/// How hard the resampler works against aliasing and passband loss (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ResampleQuality {
    /// Shortest delay; cutoff furthest below the lower Nyquist frequency.
    Low,
    /// Half the delay of `High`.
    Medium,
    /// Best passband and stopband; the default.
    #[default]
    High,
}

impl ResampleQuality {
    /// (window, minimum FFT block in frames at the lower of the two rates).
    fn config(self) -> (WindowFunction, usize) {
        match self {
            Self::Low => (WindowFunction::Blackman2, 64),
            Self::Medium => (WindowFunction::BlackmanHarris2, 128),
            Self::High => (WindowFunction::BlackmanHarris2, 256),
        }
    }
}

/// Why resampling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// A channel count of zero was given.
    #[error("channel count must be greater than zero")]
    ZeroChannels,
    /// The rate pair needs an FFT block longer than 200 ms of input (rates with a tiny greatest
    /// common divisor, such as 44 101 Hz to 48 000 Hz) or longer than 2^20 frames on either side
    /// (extreme rates), which this resampler refuses.
    #[error(
        "resampling {input} to {output} needs an FFT block of {block_frames} input frames, more than 200 ms"
    )]
    UnsupportedRatio {
        /// Input rate.
        input: SampleRate,
        /// Output rate.
        output: SampleRate,
        /// The block length the pair would need.
        block_frames: usize,
    },
    /// Interleaved input whose length is not a multiple of the channel count.
    #[error("{samples} samples cannot be split evenly into {channels} channels")]
    UnevenInput {
        /// Number of interleaved samples given.
        samples: usize,
        /// The resampler's channel count.
        channels: u16,
    },
    /// A frame whose rate or channel count differs from the resampler's input format.
    #[error(
        "format mismatch: resampler takes {expected_rate} x{expected_channels}, frame is {actual_rate} x{actual_channels}"
    )]
    FormatMismatch {
        /// The resampler's input rate.
        expected_rate: SampleRate,
        /// The resampler's channel count.
        expected_channels: u16,
        /// The frame's rate.
        actual_rate: SampleRate,
        /// The frame's channel count.
        actual_channels: u16,
    },
    /// rubato reported an error (a bug in this wrapper if it ever happens).
    #[error("resampler backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> ResampleError {
    ResampleError::Backend(Box::new(e))
}

/// A sample type the resampler reads and writes.
trait Pcm: Copy {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl Pcm for i16 {
    fn to_f32(self) -> f32 {
        i16_to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f32_to_i16(v)
    }
}

impl Pcm for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

struct FftState {
    fft: Fft<f32>,
    /// Input frames per processing call (one FFT block).
    chunk_frames: usize,
    /// Interleaved input waiting for a full block; capacity `chunk_frames * channels`, never grows.
    pending: Vec<f32>,
    /// Interleaved output of one processing call.
    scratch: Vec<f32>,
    /// Start-up delay in output frames.
    delay_frames: usize,
    /// Output frames still to drop at the start of the stream.
    to_trim: usize,
}

/// A streaming resampler for interleaved audio (see the module documentation for delay and
/// quality). `Send`, so it can live inside a task; one instance serves one stream.
pub struct Resampler {
    input_rate: SampleRate,
    output_rate: SampleRate,
    num_channels: u16,
    quality: ResampleQuality,
    /// `None` when the rates are equal (pass-through).
    fft: Option<Box<FftState>>,
    frames_in: u64,
    frames_out: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("num_channels", &self.num_channels)
            .field("quality", &self.quality)
            .field("delay", &self.delay())
            .finish()
    }
}

/// Largest FFT block, in frames on either side, the resampler accepts (4 MiB of `f32` per channel).
const MAX_BLOCK_FRAMES: u64 = 1 << 20;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Resampler {
    /// A resampler from `input_rate` to `output_rate` for `num_channels` interleaved channels.
    ///
    /// # Errors
    /// [`ResampleError::ZeroChannels`], [`ResampleError::UnsupportedRatio`].
    pub fn new(
        input_rate: SampleRate,
        output_rate: SampleRate,
        num_channels: u16,
        quality: ResampleQuality,
    ) -> Result<Self, ResampleError> {
        if num_channels == 0 {
            return Err(ResampleError::ZeroChannels);
        }
        let fft = if input_rate == output_rate {
            None
        } else {
            Some(Box::new(Self::build(
                input_rate,
                output_rate,
                num_channels,
                quality,
            )?))
        };
        Ok(Self {
            input_rate,
            output_rate,
            num_channels,
            quality,
            fft,
            frames_in: 0,
            frames_out: 0,
        })
    }

    fn build(
        input_rate: SampleRate,
        output_rate: SampleRate,
        num_channels: u16,
        quality: ResampleQuality,
    ) -> Result<FftState, ResampleError> {
        let (window, min_low_frames) = quality.config();
        let (rin, rout) = (u64::from(input_rate.hz()), u64::from(output_rate.hz()));
        let g = gcd(rin, rout);
        let (unit_in, unit_out) = (rin / g, rout / g);
        let mut blocks = (min_low_frames as u64)
            .div_ceil(unit_in.min(unit_out))
            .max(1);
        // The filter is centred half a block in: keep both block lengths even so that the delay
        // is a whole number of frames on both sides and the trimmed output is exactly time-aligned
        // (an odd block shifts the output by half a sample).
        if !(blocks * unit_out).is_multiple_of(2) || !(blocks * unit_in).is_multiple_of(2) {
            blocks += blocks % 2;
        }
        let block_in = blocks.saturating_mul(unit_in);
        let block_out = blocks.saturating_mul(unit_out);
        let block_frames = usize::try_from(block_in).unwrap_or(usize::MAX);
        // Refuse blocks longer than 200 ms, and absurd sizes from extreme rates, before
        // allocating anything.
        if block_in.saturating_mul(5) > rin || block_in.max(block_out) > MAX_BLOCK_FRAMES {
            return Err(ResampleError::UnsupportedRatio {
                input: input_rate,
                output: output_rate,
                block_frames,
            });
        }
        let ch = usize::from(num_channels);
        let fft = Fft::<f32>::new_custom(
            input_rate.hz() as usize,
            output_rate.hz() as usize,
            block_frames,
            1,
            ch,
            window,
            FixedSync::Input,
        )
        .map_err(backend)?;
        let chunk_frames = fft.input_frames_next();
        let out_max = fft.output_frames_max();
        let delay_frames = fft.output_delay();
        Ok(FftState {
            fft,
            chunk_frames,
            pending: Vec::with_capacity(chunk_frames * ch),
            scratch: vec![0.0; out_max * ch],
            delay_frames,
            to_trim: delay_frames,
        })
    }

    /// Input sample rate.
    pub fn input_rate(&self) -> SampleRate {
        self.input_rate
    }

    /// Output sample rate.
    pub fn output_rate(&self) -> SampleRate {
        self.output_rate
    }

    /// Number of interleaved channels.
    pub fn num_channels(&self) -> u16 {
        self.num_channels
    }

    /// The quality preset.
    pub fn quality(&self) -> ResampleQuality {
        self.quality
    }

    /// The filter's start-up delay, trimmed from the output (see the module docs): how far the
    /// output lags the input in a live stream, not counting up to one
    /// [`Resampler::chunk_duration`] of block buffering. Zero for equal rates.
    pub fn delay(&self) -> Duration {
        match &self.fft {
            None => Duration::ZERO,
            Some(s) => frames_to_duration(s.delay_frames as u64, self.output_rate),
        }
    }

    /// The delay of [`Resampler::delay`] in output frames.
    pub fn delay_frames(&self) -> usize {
        self.fft.as_ref().map_or(0, |s| s.delay_frames)
    }

    /// Duration of the input block the resampler processes at a time (zero for pass-through):
    /// input shorter than this is buffered until the block is full.
    pub fn chunk_duration(&self) -> Duration {
        match &self.fft {
            None => Duration::ZERO,
            Some(s) => frames_to_duration(s.chunk_frames as u64, self.input_rate),
        }
    }

    /// Input frames pushed since creation or the last flush/reset.
    pub fn input_frames(&self) -> u64 {
        self.frames_in
    }

    /// Output frames produced since creation or the last flush/reset.
    pub fn output_frames(&self) -> u64 {
        self.frames_out
    }

    /// Output frames for `input_frames` input frames once flushed:
    /// `round(input_frames * output_rate / input_rate)`, halves rounded up.
    pub fn expected_output_frames(&self, input_frames: u64) -> u64 {
        let (rin, rout) = (
            u128::from(self.input_rate.hz()),
            u128::from(self.output_rate.hz()),
        );
        let n = (u128::from(input_frames) * rout * 2 + rin) / (rin * 2);
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// Resamples interleaved 16-bit `input`, appending the output to `out`. No allocation happens
    /// once `out` has the capacity (the resampler's own buffers are sized at construction).
    ///
    /// # Errors
    /// [`ResampleError::UnevenInput`] when `input.len()` is not a multiple of the channel count
    /// (nothing is consumed).
    pub fn push_into(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.push_generic(input, out)
    }

    /// [`Resampler::push_into`] for `f32` samples (full scale `[-1.0, 1.0]`), without 16-bit
    /// quantisation.
    ///
    /// # Errors
    /// As [`Resampler::push_into`].
    pub fn push_f32_into(
        &mut self,
        input: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<(), ResampleError> {
        self.push_generic(input, out)
    }

    /// Resamples `frame`; `None` when the resampler is still filling its first block.
    ///
    /// # Errors
    /// [`ResampleError::FormatMismatch`] when the frame's rate or channel count is not the
    /// resampler's input format.
    pub fn push(&mut self, frame: &AudioFrame) -> Result<Option<AudioFrame>, ResampleError> {
        if frame.sample_rate() != self.input_rate || frame.num_channels() != self.num_channels {
            return Err(ResampleError::FormatMismatch {
                expected_rate: self.input_rate,
                expected_channels: self.num_channels,
                actual_rate: frame.sample_rate(),
                actual_channels: frame.num_channels(),
            });
        }
        let mut out = Vec::new();
        self.push_into(frame.data(), &mut out)?;
        Ok(self.wrap(out))
    }

    /// Ends the stream: appends the remaining output to `out`, so the stream's total output is
    /// [`Resampler::expected_output_frames`] of its input, then resets the resampler for a new
    /// stream.
    ///
    /// # Errors
    /// [`ResampleError::Backend`] only.
    pub fn flush_into(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.flush_generic(out)
    }

    /// [`Resampler::flush_into`] for the `f32` path.
    ///
    /// # Errors
    /// [`ResampleError::Backend`] only.
    pub fn flush_f32_into(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        self.flush_generic(out)
    }

    /// Ends the stream (see [`Resampler::flush_into`]); `None` when there was nothing left.
    ///
    /// # Errors
    /// [`ResampleError::Backend`] only.
    pub fn flush(&mut self) -> Result<Option<AudioFrame>, ResampleError> {
        let mut out = Vec::new();
        self.flush_into(&mut out)?;
        Ok(self.wrap(out))
    }

    /// Drops buffered audio and filter state; the next push starts a new stream.
    pub fn reset(&mut self) {
        self.frames_in = 0;
        self.frames_out = 0;
        if let Some(s) = self.fft.as_mut() {
            s.fft.reset();
            s.pending.clear();
            s.to_trim = s.delay_frames;
        }
    }

    fn wrap(&self, data: Vec<i16>) -> Option<AudioFrame> {
        (!data.is_empty())
            .then(|| AudioFrame::with_format(data, self.output_rate, self.num_channels))
    }

    fn push_generic<S: Pcm>(&mut self, input: &[S], out: &mut Vec<S>) -> Result<(), ResampleError> {
        let ch = usize::from(self.num_channels);
        if !input.len().is_multiple_of(ch) {
            return Err(ResampleError::UnevenInput {
                samples: input.len(),
                channels: self.num_channels,
            });
        }
        let frames = (input.len() / ch) as u64;
        let Some(state) = self.fft.as_mut() else {
            out.extend_from_slice(input);
            self.frames_in += frames;
            self.frames_out += frames;
            return Ok(());
        };
        let block = state.chunk_frames * ch;
        let mut rest = input;
        while !rest.is_empty() {
            let take = (block - state.pending.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            state.pending.extend(now.iter().map(|s| s.to_f32()));
            rest = later;
            if state.pending.len() == block {
                let emitted = state.process(ch, None, u64::MAX, out)?;
                self.frames_out += emitted;
            }
        }
        self.frames_in += frames;
        Ok(())
    }

    fn flush_generic<S: Pcm>(&mut self, out: &mut Vec<S>) -> Result<(), ResampleError> {
        let ch = usize::from(self.num_channels);
        let target = self.expected_output_frames(self.frames_in);
        if let Some(state) = self.fft.as_mut() {
            let mut partial = state.pending.len() / ch;
            // Each call yields a block of output minus at most the delay, so this ends after a
            // few iterations; the bound only guards against a backend that stops producing.
            let mut rounds = 0;
            while self.frames_out < target && rounds < 64 {
                let emitted = state.process(ch, Some(partial), target - self.frames_out, out)?;
                self.frames_out += emitted;
                partial = 0;
                rounds += 1;
            }
        }
        self.reset();
        Ok(())
    }
}

impl FftState {
    /// Runs one block (`partial`: the number of valid frames in `pending`, zero-padded, at the end
    /// of a stream), trims the start-up delay and appends at most `limit` frames to `out`.
    fn process<S: Pcm>(
        &mut self,
        ch: usize,
        partial: Option<usize>,
        limit: u64,
        out: &mut Vec<S>,
    ) -> Result<u64, ResampleError> {
        let in_frames = self.pending.len() / ch;
        let input = InterleavedSlice::new(&self.pending[..], ch, in_frames).map_err(backend)?;
        let out_frames = self.scratch.len() / ch;
        let mut output =
            InterleavedSlice::new_mut(&mut self.scratch[..], ch, out_frames).map_err(backend)?;
        let indexing = partial.map(|p| Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len: Some(p),
            active_channels_mask: None,
        });
        let (_, produced) = self
            .fft
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(backend)?;
        self.pending.clear();
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        let available = (produced - skip) as u64;
        let emit = available.min(limit) as usize;
        out.extend(
            self.scratch[skip * ch..(skip + emit) * ch]
                .iter()
                .map(|&v| S::from_f32(v)),
        );
        Ok(emit as u64)
    }
}

fn frames_to_duration(frames: u64, rate: SampleRate) -> Duration {
    let nanos = u128::from(frames) * 1_000_000_000 / u128::from(rate.hz());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Resampler>();
};
