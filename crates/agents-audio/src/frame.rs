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
