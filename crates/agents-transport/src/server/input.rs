//! [`WsAudioInput`]: the user's audio from binary WebSocket messages to the session's `AudioInput`.

use std::fmt;
use std::time::Duration;

use agents_audio::{AudioByteStream, AudioFrame, SampleRate};
use agents_core::AudioInput;
use tokio::sync::mpsc;

use crate::protocol::{AudioFormat, FRAME_MS};

/// Why a binary message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The message's length is not a whole number of PCM16 samples on every channel; it was dropped.
    #[error(
        "audio message of {len} bytes is not a multiple of {group} (2 bytes x {channels} channel(s)): dropped"
    )]
    BadLength {
        /// The message length.
        len: usize,
        /// Bytes per sample on every channel.
        group: usize,
        /// Channels of the negotiated format.
        channels: u16,
    },
    /// The format cannot be used (zero rate or channels).
    #[error("unusable input format {0:?}")]
    BadFormat(AudioFormat),
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Pushed {
    /// Frames handed to the session.
    pub frames: usize,
    /// Frames dropped because the session's input queue was full (the client sends faster than real time).
    pub dropped: usize,
}

/// Re-chunks the client's PCM16 messages (any length that is a whole number of samples) into 20 ms frames, mixed
/// down to mono, and feeds them to the session's [`AudioInput`] through a bounded queue (never waiting: a frame
/// the session cannot take is dropped and counted). Dropping it ends the `AudioInput`.
pub struct WsAudioInput {
    chunker: AudioByteStream,
    format: AudioFormat,
    tx: mpsc::Sender<AudioFrame>,
}

impl fmt::Debug for WsAudioInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsAudioInput")
            .field("format", &self.format)
            .field("pending_bytes", &self.chunker.pending_bytes())
            .finish_non_exhaustive()
    }
}

impl WsAudioInput {
    /// An input for `format` with a queue of `capacity` frames (20 ms each), and the session's end of it.
    ///
    /// # Errors
    /// [`InputError::BadFormat`].
    pub fn new(format: AudioFormat, capacity: usize) -> Result<(Self, AudioInput), InputError> {
        let rate =
            SampleRate::new(format.sample_rate).map_err(|_| InputError::BadFormat(format))?;
        let chunker = AudioByteStream::with_duration(
            rate,
            format.channels,
            Duration::from_millis(u64::from(FRAME_MS)),
        )
        .map_err(|_| InputError::BadFormat(format))?;
        let (tx, input) = AudioInput::channel("websocket", capacity.max(1));
        Ok((
            Self {
                chunker,
                format,
                tx,
            },
            input,
        ))
    }

    /// Takes one binary message.
    ///
    /// # Errors
    /// [`InputError::BadLength`]: nothing of the message was taken.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Pushed, InputError> {
        let group = self.format.bytes_per_sample_group();
        if !bytes.len().is_multiple_of(group) {
            return Err(InputError::BadLength {
                len: bytes.len(),
                group,
                channels: self.format.channels,
            });
        }
        let mut pushed = Pushed::default();
        for frame in self.chunker.push(bytes) {
            let frame = if frame.num_channels() > 1 {
                frame.to_mono()
            } else {
                frame
            };
            match self.tx.try_send(frame) {
                Ok(()) => pushed.frames += 1,
                Err(mpsc::error::TrySendError::Full(_)) => pushed.dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        Ok(pushed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn odd_lengths_are_rejected_and_the_rest_is_rechunked_to_20_ms_mono() {
        let (mut input, mut stream) = WsAudioInput::new(AudioFormat::new(16000, 2), 16).unwrap();
        // 2 bytes is half a stereo sample group.
        assert!(matches!(
            input.push(&[0, 0]),
            Err(InputError::BadLength {
                len: 2,
                group: 4,
                channels: 2
            })
        ));
        // 30 ms of stereo (480 groups of 4 bytes): one frame now, 10 ms pending.
        let mut bytes = Vec::new();
        for i in 0..480_i16 {
            bytes.extend_from_slice(&i.to_le_bytes()); // left
            bytes.extend_from_slice(&(-i).to_le_bytes()); // right
        }
        assert_eq!(
            input.push(&bytes).unwrap(),
            Pushed {
                frames: 1,
                dropped: 0
            }
        );
        assert_eq!(input.push(&bytes[..1280]).unwrap().frames, 1); // + 10 ms: the second frame
        let f = stream.next().await.unwrap();
        assert_eq!(
            (
                f.num_channels(),
                f.samples_per_channel(),
                f.sample_rate().hz()
            ),
            (1, 320, 16000)
        );
        assert!(
            f.data().iter().all(|s| *s == 0),
            "left and right cancel out in the mix"
        );
        drop(input);
        assert!(stream.next().await.is_some());
        assert!(
            stream.next().await.is_none(),
            "dropping the input ends the stream"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (mut input, _stream) = WsAudioInput::new(AudioFormat::new(8000, 1), 2).unwrap();
        let bytes = vec![0_u8; 320 * 5]; // 5 frames of 20 ms at 8 kHz
        assert_eq!(
            input.push(&bytes).unwrap(),
            Pushed {
                frames: 2,
                dropped: 3
            }
        );
    }
}
