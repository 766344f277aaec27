//! Re-chunking: arbitrary PCM16 byte chunks or frames in, fixed-size frames out.
//!
//! Network transports and TTS providers deliver audio in chunks of whatever size the wire
//! produced (an HTTP body chunk can even end in the middle of a sample). The VAD, the STT
//! streams and the playout path want frames of a fixed duration (10 or 20 ms). The two buffers
//! here bridge that gap without losing or reordering a single sample.

use std::time::Duration;

use crate::frame::{AudioFrame, AudioFrameError, SampleRate};

/// Samples per channel in `duration` at `rate` (rounded down), or [`AudioFrameError::ZeroChunkSize`].
fn chunk_len(duration: Duration, rate: SampleRate) -> Result<usize, AudioFrameError> {
    let n = duration.as_nanos() * u128::from(rate.hz()) / 1_000_000_000;
    match usize::try_from(n) {
        Ok(0) => Err(AudioFrameError::ZeroChunkSize),
        Ok(n) => Ok(n),
        Err(_) => Err(AudioFrameError::ZeroChunkSize),
    }
}

/// Little-endian PCM16 bytes in, frames of a fixed number of samples per channel out.
///
/// Chunks of any length are accepted, odd lengths included: a dangling byte (half a sample) is
/// kept until its other half arrives. [`AudioByteStream::flush`] returns what is left as one
/// shorter frame at the end of a stream; bytes that do not make a whole sample on every channel
/// at that point are dropped, logged with `tracing::warn!` and counted in
/// [`AudioByteStream::dropped_bytes`] (a truncated stream should not cost the audio before it).
///
/// ```
/// use agents_audio::{AudioByteStream, SampleRate};
///
/// let mut stream = AudioByteStream::new(SampleRate::HZ_16000, 1, 160)?; // 10 ms frames
/// let frames = stream.push(&[0u8; 333]); // 166 samples and a half
/// assert_eq!(frames.len(), 1);
/// assert_eq!(frames[0].samples_per_channel(), 160);
/// let rest = stream.flush().unwrap();
/// assert_eq!(rest.samples_per_channel(), 6);
/// assert_eq!(stream.dropped_bytes(), 1);
/// # Ok::<(), agents_audio::AudioFrameError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AudioByteStream {
    sample_rate: SampleRate,
    num_channels: u16,
    samples_per_channel: usize,
    pending: Vec<u8>,
    dropped: usize,
}

impl AudioByteStream {
    /// A stream producing frames of `samples_per_channel` samples per channel.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`] or [`AudioFrameError::ZeroChunkSize`].
    pub fn new(
        sample_rate: SampleRate,
        num_channels: u16,
        samples_per_channel: usize,
    ) -> Result<Self, AudioFrameError> {
        check_chunking(num_channels, samples_per_channel)?;
        Ok(Self {
            sample_rate,
            num_channels,
            samples_per_channel,
            pending: Vec::new(),
            dropped: 0,
        })
    }

    /// A stream producing frames of `frame_duration` (for example 10 or 20 ms), rounded down to
    /// whole samples.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`], or [`AudioFrameError::ZeroChunkSize`] when the
    /// duration is shorter than one sample.
    pub fn with_duration(
        sample_rate: SampleRate,
        num_channels: u16,
        frame_duration: Duration,
    ) -> Result<Self, AudioFrameError> {
        Self::new(
            sample_rate,
            num_channels,
            chunk_len(frame_duration, sample_rate)?,
        )
    }

    /// Samples per channel in every full frame.
    pub fn samples_per_channel(&self) -> usize {
        self.samples_per_channel
    }

    /// Bytes buffered, waiting for a full frame.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Bytes dropped by [`AudioByteStream::flush`] because they did not form a whole sample on
    /// every channel, since the stream was created.
    pub fn dropped_bytes(&self) -> usize {
        self.dropped
    }

    fn frame_bytes(&self) -> usize {
        self.samples_per_channel * usize::from(self.num_channels) * 2
    }

    fn frame_from(&self, bytes: &[u8]) -> AudioFrame {
        let data: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        AudioFrame::with_format(data, self.sample_rate, self.num_channels)
    }

    /// Buffers `bytes` and returns every full frame now available, oldest first.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<AudioFrame> {
        let mut out = Vec::new();
        self.push_into(bytes, &mut out);
        out
    }

    /// Like [`AudioByteStream::push`], appending the frames to `out`.
    pub fn push_into(&mut self, bytes: &[u8], out: &mut Vec<AudioFrame>) {
        self.pending.extend_from_slice(bytes);
        let size = self.frame_bytes();
        let mut start = 0;
        while self.pending.len() - start >= size {
            out.push(self.frame_from(&self.pending[start..start + size]));
            start += size;
        }
        self.pending.drain(..start);
    }

    /// Ends the stream: returns the buffered samples as one short frame (`None` when there are
    /// none) and empties the buffer. Trailing bytes that do not make a whole sample on every
    /// channel are dropped and counted (see the type's documentation).
    pub fn flush(&mut self) -> Option<AudioFrame> {
        let group = usize::from(self.num_channels) * 2;
        let whole = self.pending.len() / group * group;
        let dangling = self.pending.len() - whole;
        if dangling > 0 {
            tracing::warn!(
                dangling,
                "audio byte stream ended inside a sample; dropping the incomplete bytes"
            );
            self.dropped += dangling;
        }
        let frame = (whole > 0).then(|| self.frame_from(&self.pending[..whole]));
        self.pending.clear();
        frame
    }
}

/// Frames of any size in, frames of a fixed number of samples per channel out.
///
/// Every sample pushed comes out exactly once, in order; [`FrameBuffer::flush`] returns the
/// remainder as a shorter frame. A frame of another rate or channel count is refused with
/// [`AudioFrameError::FormatMismatch`] and nothing of it is buffered.
#[derive(Debug, Clone)]
pub struct FrameBuffer {
    sample_rate: SampleRate,
    num_channels: u16,
    samples_per_channel: usize,
    pending: Vec<i16>,
}

impl FrameBuffer {
    /// A buffer producing frames of `samples_per_channel` samples per channel.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`] or [`AudioFrameError::ZeroChunkSize`].
    pub fn new(
        sample_rate: SampleRate,
        num_channels: u16,
        samples_per_channel: usize,
    ) -> Result<Self, AudioFrameError> {
        check_chunking(num_channels, samples_per_channel)?;
        Ok(Self {
            sample_rate,
            num_channels,
            samples_per_channel,
            pending: Vec::new(),
        })
    }

    /// A buffer producing frames of `frame_duration`, rounded down to whole samples.
    ///
    /// # Errors
    /// [`AudioFrameError::ZeroChannels`], or [`AudioFrameError::ZeroChunkSize`] when the
    /// duration is shorter than one sample.
    pub fn with_duration(
        sample_rate: SampleRate,
        num_channels: u16,
        frame_duration: Duration,
    ) -> Result<Self, AudioFrameError> {
        Self::new(
            sample_rate,
            num_channels,
            chunk_len(frame_duration, sample_rate)?,
        )
    }

    /// Samples per channel in every full frame.
    pub fn samples_per_channel(&self) -> usize {
        self.samples_per_channel
    }

    /// Samples per channel buffered, waiting for a full frame.
    pub fn pending_samples_per_channel(&self) -> usize {
        self.pending.len() / usize::from(self.num_channels)
    }

    /// Buffers `frame` and returns every full frame now available, oldest first.
    ///
    /// # Errors
    /// [`AudioFrameError::FormatMismatch`]; the buffer is then unchanged.
    pub fn push(&mut self, frame: &AudioFrame) -> Result<Vec<AudioFrame>, AudioFrameError> {
        let mut out = Vec::new();
        self.push_into(frame, &mut out)?;
        Ok(out)
    }

    /// Like [`FrameBuffer::push`], appending the frames to `out`.
    ///
    /// # Errors
    /// [`AudioFrameError::FormatMismatch`]; the buffer and `out` are then unchanged.
    pub fn push_into(
        &mut self,
        frame: &AudioFrame,
        out: &mut Vec<AudioFrame>,
    ) -> Result<(), AudioFrameError> {
        if frame.sample_rate() != self.sample_rate || frame.num_channels() != self.num_channels {
            return Err(AudioFrameError::FormatMismatch {
                expected_rate: self.sample_rate,
                expected_channels: self.num_channels,
                actual_rate: frame.sample_rate(),
                actual_channels: frame.num_channels(),
            });
        }
        self.pending.extend_from_slice(frame.data());
        let size = self.samples_per_channel * usize::from(self.num_channels);
        let mut start = 0;
        while self.pending.len() - start >= size {
            out.push(AudioFrame::with_format(
                self.pending[start..start + size].to_vec(),
                self.sample_rate,
                self.num_channels,
            ));
            start += size;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Ends the stream: returns the buffered samples as one short frame (`None` when empty).
    pub fn flush(&mut self) -> Option<AudioFrame> {
        if self.pending.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.pending);
        Some(AudioFrame::with_format(
            data,
            self.sample_rate,
            self.num_channels,
        ))
    }
}

/// The frame shape both re-chunkers need: at least one channel and one sample per frame.
fn check_chunking(num_channels: u16, samples_per_channel: usize) -> Result<(), AudioFrameError> {
    if num_channels == 0 {
        return Err(AudioFrameError::ZeroChannels);
    }
    if samples_per_channel == 0 {
        return Err(AudioFrameError::ZeroChunkSize);
    }
    Ok(())
}
