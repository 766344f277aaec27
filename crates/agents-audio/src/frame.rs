//! Interleaved 16-bit PCM frames.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// A sample rate in hertz; never zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRate(NonZeroU32);

impl SampleRate {
    /// 8 kHz (telephony).
    pub const HZ_8000: Self = Self::from_const(8_000);
    /// 16 kHz (speech recognition, Silero VAD).
    pub const HZ_16000: Self = Self::from_const(16_000);
    /// 22.05 kHz.
    pub const HZ_22050: Self = Self::from_const(22_050);
    /// 24 kHz (OpenAI audio, the default room rate).
    pub const HZ_24000: Self = Self::from_const(24_000);
    /// 44.1 kHz.
    pub const HZ_44100: Self = Self::from_const(44_100);
    /// 48 kHz (WebRTC).
    pub const HZ_48000: Self = Self::from_const(48_000);

    const fn from_const(hz: u32) -> Self {
        match NonZeroU32::new(hz) {
            Some(v) => Self(v),
            None => panic!("sample rate constants are non-zero"),
        }
    }

    /// A sample rate of `hz` hertz.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroSampleRate`] when `hz` is zero.
    pub const fn new(hz: u32) -> Result<Self, AudioFrameError> {
        match NonZeroU32::new(hz) {
            Some(v) => Ok(Self(v)),
            None => Err(AudioFrameError::ZeroSampleRate),
        }
    }

    /// The rate in hertz.
    pub const fn hz(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Debug for SampleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz", self.0)
    }
}

impl fmt::Display for SampleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz", self.0)
    }
}

impl TryFrom<u32> for SampleRate {
    type Error = AudioFrameError;
    fn try_from(hz: u32) -> Result<Self, Self::Error> {
        Self::new(hz)
    }
}

/// Why an [`AudioFrame`] could not be built or combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioFrameError {
    /// A sample rate of zero was given.
    #[error("sample rate must be greater than zero")]
    ZeroSampleRate,
    /// A channel count of zero was given.
    #[error("channel count must be greater than zero")]
    ZeroChannels,
    /// The sample count is not a multiple of the channel count.
    #[error("{samples} samples cannot be split evenly into {channels} channels")]
    UnevenChannels {
        /// Number of interleaved samples given.
        samples: usize,
        /// Number of channels given.
        channels: u16,
    },
    /// A byte buffer of odd length cannot hold 16-bit samples.
    #[error("{len} bytes is not a whole number of 16-bit samples")]
    OddByteLength {
        /// Length of the byte buffer.
        len: usize,
    },
    /// A split point beyond the end of the frame was given.
    #[error("split at {at} samples per channel, but the frame has {len}")]
    SplitOutOfRange {
        /// Requested split point, in samples per channel.
        at: usize,
        /// Samples per channel in the frame.
        len: usize,
    },
    /// A chunk size of zero samples was requested.
    #[error("chunk size must be greater than zero samples per channel")]
    ZeroChunkSize,
    /// [`AudioFrame::concat`] was given no frames, so the format is unknown.
    #[error("cannot concatenate an empty list of frames")]
    NoFrames,
    /// Channel remixing between these channel counts is not defined.
    #[error("cannot remix {from} channels to {to}")]
    UnsupportedRemix {
        /// Channels of the frame.
        from: u16,
        /// Channels requested.
        to: u16,
    },
    /// Two frames of different formats were combined.
    #[error(
        "format mismatch: expected {expected_rate} x{expected_channels}, got {actual_rate} x{actual_channels}"
    )]
    FormatMismatch {
        /// Rate of the first frame.
        expected_rate: SampleRate,
        /// Channels of the first frame.
        expected_channels: u16,
        /// Rate of the offending frame.
        actual_rate: SampleRate,
        /// Channels of the offending frame.
        actual_channels: u16,
    },
}

/// A block of interleaved signed 16-bit PCM audio.
#[derive(Clone, PartialEq, Eq)]
pub struct AudioFrame {
    data: Vec<i16>,
    sample_rate: SampleRate,
    num_channels: u16,
}

impl AudioFrame {
    /// A frame over interleaved `data`.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`] or [`AudioFrameError::UnevenChannels`].
    pub fn new(
        data: Vec<i16>,
        sample_rate: SampleRate,
        num_channels: u16,
    ) -> Result<Self, AudioFrameError> {
        if num_channels == 0 {
            return Err(AudioFrameError::ZeroChannels);
        }
        if !data.len().is_multiple_of(usize::from(num_channels)) {
            return Err(AudioFrameError::UnevenChannels {
                samples: data.len(),
                channels: num_channels,
            });
        }
        Ok(Self {
            data,
            sample_rate,
            num_channels,
        })
    }

    /// A frame from little-endian PCM16 bytes.
    ///
    /// # Errors
    /// [`AudioFrameError::OddByteLength`] and the errors of [`AudioFrame::new`].
    pub fn from_le_bytes(
        bytes: &[u8],
        sample_rate: SampleRate,
        num_channels: u16,
    ) -> Result<Self, AudioFrameError> {
        if !bytes.len().is_multiple_of(2) {
            return Err(AudioFrameError::OddByteLength { len: bytes.len() });
        }
        let data = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        Self::new(data, sample_rate, num_channels)
    }

    /// `duration` of digital silence (rounded down to whole samples).
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`].
    pub fn silence(
        duration: Duration,
        sample_rate: SampleRate,
        num_channels: u16,
    ) -> Result<Self, AudioFrameError> {
        let per_channel = samples_for(duration, sample_rate);
        Self::new(
            vec![0; per_channel * usize::from(num_channels)],
            sample_rate,
            num_channels,
        )
    }

    /// The interleaved samples.
    pub fn data(&self) -> &[i16] {
        &self.data
    }

    /// The interleaved samples, mutably (the length cannot change).
    pub fn data_mut(&mut self) -> &mut [i16] {
        &mut self.data
    }

    /// Consumes the frame, returning its samples.
    pub fn into_data(self) -> Vec<i16> {
        self.data
    }

    /// The samples as little-endian bytes.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.data.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// Sample rate.
    pub fn sample_rate(&self) -> SampleRate {
        self.sample_rate
    }

    /// Number of interleaved channels.
    pub fn num_channels(&self) -> u16 {
        self.num_channels
    }

    /// Samples per channel.
    pub fn samples_per_channel(&self) -> usize {
        self.data.len() / usize::from(self.num_channels)
    }

    /// Whether the frame holds no samples.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Playback duration.
    pub fn duration(&self) -> Duration {
        let n = self.samples_per_channel() as u64;
        let hz = u64::from(self.sample_rate.hz());
        Duration::from_nanos(n.saturating_mul(1_000_000_000) / hz)
    }

    /// Whether `other` has the same rate and channel count.
    pub fn same_format(&self, other: &Self) -> bool {
        self.sample_rate == other.sample_rate && self.num_channels == other.num_channels
    }

    /// A frame from interleaved `f32` samples in `[-1.0, 1.0]`.
    ///
    /// Each sample is multiplied by 32768, rounded to the nearest integer (halves away from zero) and
    /// clamped to `[-32768, 32767]`; NaN becomes 0. The scale is the same 32768 that
    /// [`AudioFrame::to_f32`] divides by, so `from_f32(to_f32(x)) == x` for every frame.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`] or [`AudioFrameError::UnevenChannels`].
    pub fn from_f32(
        samples: &[f32],
        sample_rate: SampleRate,
        num_channels: u16,
    ) -> Result<Self, AudioFrameError> {
        let data = samples.iter().map(|&s| f32_to_i16(s)).collect();
        Self::new(data, sample_rate, num_channels)
    }

    /// The interleaved samples as `f32`, each divided by 32768: `-32768` maps to exactly `-1.0` and
    /// `32767` to `0.999969...`. The inverse of [`AudioFrame::from_f32`].
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&s| i16_to_f32(s)).collect()
    }

    /// `samples_per_channel` samples per channel of digital silence.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`].
    pub fn silence_samples(
        samples_per_channel: usize,
        sample_rate: SampleRate,
        num_channels: u16,
    ) -> Result<Self, AudioFrameError> {
        Self::new(
            vec![0; samples_per_channel.saturating_mul(usize::from(num_channels))],
            sample_rate,
            num_channels,
        )
    }

    /// The frames joined end to end, in order.
    ///
    /// # Errors
    /// [`AudioFrameError::NoFrames`] for an empty slice, [`AudioFrameError::FormatMismatch`] when a
    /// frame's rate or channel count differs from the first frame's.
    pub fn concat(frames: &[AudioFrame]) -> Result<AudioFrame, AudioFrameError> {
        let first = frames.first().ok_or(AudioFrameError::NoFrames)?;
        let mut data = Vec::with_capacity(frames.iter().map(|f| f.data.len()).sum());
        for frame in frames {
            first.check_format(frame)?;
            data.extend_from_slice(&frame.data);
        }
        Ok(AudioFrame {
            data,
            sample_rate: first.sample_rate,
            num_channels: first.num_channels,
        })
    }

    /// Appends `other` to this frame.
    ///
    /// # Errors
    /// [`AudioFrameError::FormatMismatch`] when the formats differ (this frame is left unchanged).
    pub fn append(&mut self, other: &AudioFrame) -> Result<(), AudioFrameError> {
        self.check_format(other)?;
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    /// Splits the frame in two: the first `samples_per_channel` samples per channel, and the rest.
    ///
    /// # Errors
    /// [`AudioFrameError::SplitOutOfRange`] when `samples_per_channel` exceeds the frame's length.
    pub fn split_at(
        &self,
        samples_per_channel: usize,
    ) -> Result<(AudioFrame, AudioFrame), AudioFrameError> {
        let len = self.samples_per_channel();
        if samples_per_channel > len {
            return Err(AudioFrameError::SplitOutOfRange {
                at: samples_per_channel,
                len,
            });
        }
        let (head, tail) = self
            .data
            .split_at(samples_per_channel * usize::from(self.num_channels));
        Ok((self.with_data(head.to_vec()), self.with_data(tail.to_vec())))
    }

    /// The frame cut into consecutive frames of `samples_per_channel` samples per channel; the last
    /// one is shorter when the length is not a multiple. An empty frame gives no chunks.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChunkSize`].
    pub fn chunks(&self, samples_per_channel: usize) -> Result<Vec<AudioFrame>, AudioFrameError> {
        if samples_per_channel == 0 {
            return Err(AudioFrameError::ZeroChunkSize);
        }
        let step = samples_per_channel.saturating_mul(usize::from(self.num_channels));
        Ok(self
            .data
            .chunks(step)
            .map(|c| self.with_data(c.to_vec()))
            .collect())
    }

    /// The frame with `num_channels` channels.
    ///
    /// - same count: a copy;
    /// - mono to N channels: the mono sample is duplicated into every channel;
    /// - N channels to mono: the average of the channels, rounded to the nearest integer with
    ///   halves rounded away from zero (`(1 + 2) / 2 -> 2`, `(-1 + -2) / 2 -> -2`); the average of
    ///   16-bit values always fits, so nothing clips.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`], or [`AudioFrameError::UnsupportedRemix`] between two
    /// different multi-channel layouts (for example stereo to 5.1), which have no single obvious
    /// mapping.
    pub fn remix(&self, num_channels: u16) -> Result<AudioFrame, AudioFrameError> {
        if num_channels == 0 {
            return Err(AudioFrameError::ZeroChannels);
        }
        let from = self.num_channels;
        let data = if from == num_channels {
            self.data.clone()
        } else if from == 1 {
            let n = usize::from(num_channels);
            let mut out = Vec::with_capacity(self.data.len() * n);
            for &s in &self.data {
                out.extend(std::iter::repeat_n(s, n));
            }
            out
        } else if num_channels == 1 {
            let n = i64::from(from);
            self.data
                .chunks_exact(usize::from(from))
                .map(|c| {
                    let sum: i64 = c.iter().map(|&s| i64::from(s)).sum();
                    // Round half away from zero: shift the numerator by half the divisor.
                    let avg = if sum >= 0 {
                        (2 * sum + n) / (2 * n)
                    } else {
                        (2 * sum - n) / (2 * n)
                    };
                    // The average of i16 values is within i16's range.
                    i16::try_from(avg).unwrap_or(if avg < 0 { i16::MIN } else { i16::MAX })
                })
                .collect()
        } else {
            return Err(AudioFrameError::UnsupportedRemix {
                from,
                to: num_channels,
            });
        };
        Ok(AudioFrame {
            data,
            sample_rate: self.sample_rate,
            num_channels,
        })
    }

    /// The frame down-mixed to one channel (see [`AudioFrame::remix`] for the rounding).
    pub fn to_mono(&self) -> AudioFrame {
        match self.remix(1) {
            Ok(frame) => frame,
            // remix to one channel from any channel count is always defined.
            Err(_) => self.clone(),
        }
    }

    /// `FormatMismatch` unless `other` has this frame's format.
    pub(crate) fn check_format(&self, other: &AudioFrame) -> Result<(), AudioFrameError> {
        if self.same_format(other) {
            Ok(())
        } else {
            Err(AudioFrameError::FormatMismatch {
                expected_rate: self.sample_rate,
                expected_channels: self.num_channels,
                actual_rate: other.sample_rate,
                actual_channels: other.num_channels,
            })
        }
    }

    /// A frame over `data`, whose length the caller keeps a multiple of `num_channels` (non-zero).
    pub(crate) fn with_format(data: Vec<i16>, sample_rate: SampleRate, num_channels: u16) -> Self {
        AudioFrame {
            data,
            sample_rate,
            num_channels,
        }
    }

    /// A frame of this format over `data` (whose length the caller keeps a multiple of the
    /// channel count).
    pub(crate) fn with_data(&self, data: Vec<i16>) -> AudioFrame {
        AudioFrame {
            data,
            sample_rate: self.sample_rate,
            num_channels: self.num_channels,
        }
    }
}

/// Converts a 16-bit sample to `f32` in `[-1.0, 1.0)` (divides by 32768).
pub fn i16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32_768.0
}

/// Converts an `f32` sample to 16 bits: multiplies by 32768, rounds half away from zero and clamps
/// to `[-32768, 32767]`; NaN gives 0.
pub fn f32_to_i16(sample: f32) -> i16 {
    let scaled = (sample * 32_768.0).round();
    if scaled.is_nan() {
        0
    } else {
        // `as` saturates at the i16 bounds, which is the clamping wanted here.
        scaled as i16
    }
}

impl fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioFrame")
            .field("sample_rate", &self.sample_rate)
            .field("num_channels", &self.num_channels)
            .field("samples_per_channel", &self.samples_per_channel())
            .finish()
    }
}

/// Whole samples per channel in `duration` at `rate` (rounded down).
fn samples_for(duration: Duration, rate: SampleRate) -> usize {
    let n = duration.as_nanos() * u128::from(rate.hz()) / 1_000_000_000;
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_uneven_channels_and_zero_rate() {
        assert_eq!(
            AudioFrame::new(vec![0; 3], SampleRate::HZ_16000, 2),
            Err(AudioFrameError::UnevenChannels {
                samples: 3,
                channels: 2
            })
        );
        assert_eq!(SampleRate::new(0), Err(AudioFrameError::ZeroSampleRate));
        assert_eq!(
            AudioFrame::new(vec![], SampleRate::HZ_16000, 0),
            Err(AudioFrameError::ZeroChannels)
        );
    }

    #[test]
    fn duration_and_bytes_round_trip() {
        let f = AudioFrame::new(vec![1, -2, 3, -4], SampleRate::HZ_8000, 2).unwrap();
        assert_eq!(f.samples_per_channel(), 2);
        assert_eq!(f.duration(), Duration::from_micros(250));
        let g = AudioFrame::from_le_bytes(&f.to_le_bytes(), SampleRate::HZ_8000, 2).unwrap();
        assert_eq!(f, g);
        assert_eq!(
            AudioFrame::from_le_bytes(&[0, 1, 2], SampleRate::HZ_8000, 1),
            Err(AudioFrameError::OddByteLength { len: 3 })
        );
    }

    #[test]
    fn silence_has_requested_duration() {
        let f = AudioFrame::silence(Duration::from_millis(20), SampleRate::HZ_48000, 1).unwrap();
        assert_eq!(f.samples_per_channel(), 960);
        assert!(f.data().iter().all(|&s| s == 0));
    }
}
