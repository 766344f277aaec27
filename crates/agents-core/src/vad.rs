//! The [`Vad`] contract: voice activity detection over a stream of audio frames.

use std::time::Duration;

use agents_audio::{AudioFrame, AudioFrameError};

use crate::stream::{FrameInput, FrameStream, StreamDriver};

/// What a VAD event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VadEventKind {
    /// Speech started (after the minimum speech duration).
    StartOfSpeech,
    /// One inference window was processed (emitted for every window).
    InferenceDone,
    /// Speech ended (after the minimum silence duration).
    EndOfSpeech,
}

/// A VAD event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VadEvent {
    /// What happened.
    pub kind: VadEventKind,
    /// Index of the first sample after this event's window, counted from the stream start at the VAD's rate.
    pub samples_index: u64,
    /// Stream time of this event (audio pushed so far).
    pub timestamp: Duration,
    /// Speech accumulated in the current (or just ended) speech segment.
    pub speech_duration: Duration,
    /// Silence accumulated since speech last stopped.
    pub silence_duration: Duration,
    /// Speech probability of the last window, in `[0, 1]`.
    pub probability: f32,
    /// Time spent in inference for this window.
    pub inference_duration: Duration,
    /// Whether the VAD is in the speaking state.
    pub speaking: bool,
    /// Audio: for `StartOfSpeech` and `EndOfSpeech`, the speech so far including the prefix padding;
    /// for `InferenceDone`, the window's frames.
    pub frames: Vec<AudioFrame>,
}

impl VadEvent {
    /// An event of `kind` at `timestamp` with everything else zero.
    pub fn new(kind: VadEventKind, timestamp: Duration) -> Self {
        Self {
            kind,
            samples_index: 0,
            timestamp,
            speech_duration: Duration::ZERO,
            silence_duration: Duration::ZERO,
            probability: 0.0,
            inference_duration: Duration::ZERO,
            speaking: false,
            frames: Vec::new(),
        }
    }
}

/// What a VAD offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VadCapabilities {
    /// How often an `InferenceDone` event is emitted (the window length).
    pub update_interval: Duration,
}

impl VadCapabilities {
    /// Capabilities with the given window length.
    pub fn new(update_interval: Duration) -> Self {
        Self { update_interval }
    }
}

/// Why voice activity detection failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VadError {
    /// A frame could not be used.
    #[error("invalid audio for VAD")]
    InvalidAudio(#[from] AudioFrameError),
    /// Frames of different rates were pushed into one stream.
    #[error("sample rate changed mid-stream: expected {expected} Hz, got {actual} Hz")]
    SampleRateChanged {
        /// Rate of the first frame.
        expected: u32,
        /// Rate received.
        actual: u32,
    },
    /// The model failed.
    #[error("VAD model failed: {reason}")]
    Model {
        /// What failed.
        reason: String,
    },
}

/// Input of a VAD stream, as the plugin receives it.
pub type VadInput = FrameInput;

/// Provider side of a [`VadStream`].
pub type VadStreamDriver = StreamDriver<FrameInput, Result<VadEvent, VadError>>;

/// A VAD stream: push frames in, read events out.
pub type VadStream = FrameStream<Result<VadEvent, VadError>>;

/// A voice activity detector. Object safe: held as `Arc<dyn Vad>`; one instance serves many streams.
pub trait Vad: Send + Sync + 'static {
    /// Label for logs and metrics, e.g. `silero.VAD`.
    fn label(&self) -> &str;

    /// What this VAD offers.
    fn capabilities(&self) -> VadCapabilities;

    /// Opens a stream. Must be called inside a tokio runtime (plugins spawn their task).
    ///
    /// # Errors
    /// [`VadError::Model`] when the model cannot serve another stream.
    fn stream(&self) -> Result<VadStream, VadError>;
}
