//! The [`Stt`] contract: speech-to-text, one buffer at a time ([`Stt::recognize`]) or streamed ([`Stt::stream`]).

use std::time::Duration;

use async_trait::async_trait;

use agents_audio::{AudioFrame, AudioFrameError};

use crate::error::ApiError;
use crate::retry::ApiConnectOptions;
use crate::stream::{FrameInput, FrameStream, StreamDriver};

/// A recognized word with its timing (relative to the start of the stream or buffer).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TimedWord {
    /// The word as recognized.
    pub text: String,
    /// Start time.
    pub start: Duration,
    /// End time.
    pub end: Duration,
    /// Confidence in `[0, 1]`, when given.
    pub confidence: Option<f32>,
    /// Speaker label when diarization is on.
    pub speaker_id: Option<String>,
}

impl TimedWord {
    /// A word from `start` to `end`.
    pub fn new(text: impl Into<String>, start: Duration, end: Duration) -> Self {
        Self {
            text: text.into(),
            start,
            end,
            confidence: None,
            speaker_id: None,
        }
    }
}

/// One recognition hypothesis.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct SpeechData {
    /// The text.
    pub text: String,
    /// Language (BCP-47 or the provider's code), when known.
    pub language: Option<String>,
    /// Confidence in `[0, 1]`.
    pub confidence: f32,
    /// Start of the recognized audio, relative to the stream start.
    pub start_time: Duration,
    /// End of the recognized audio, relative to the stream start.
    pub end_time: Duration,
    /// Speaker label when diarization is on.
    pub speaker_id: Option<String>,
    /// Words with timings, when the provider gives them.
    pub words: Vec<TimedWord>,
}

impl SpeechData {
    /// A hypothesis with text and confidence.
    pub fn new(text: impl Into<String>, confidence: f32) -> Self {
        Self {
            text: text.into(),
            confidence,
            ..Self::default()
        }
    }

    /// Sets the language.
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Sets start and end times.
    pub fn with_times(mut self, start: Duration, end: Duration) -> Self {
        self.start_time = start;
        self.end_time = end;
        self
    }

    /// Sets the words.
    pub fn with_words(mut self, words: Vec<TimedWord>) -> Self {
        self.words = words;
        self
    }
}

/// A transcript: the provider's hypotheses, best first.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Transcript {
    /// Provider request id, when known.
    pub request_id: String,
    /// Hypotheses, best first (at least one for a non-empty result).
    pub alternatives: Vec<SpeechData>,
}

impl Transcript {
    /// A transcript with one hypothesis.
    pub fn new(request_id: impl Into<String>, best: SpeechData) -> Self {
        Self {
            request_id: request_id.into(),
            alternatives: vec![best],
        }
    }

    /// The best hypothesis' text, or `""`.
    pub fn text(&self) -> &str {
        self.alternatives.first().map_or("", |a| a.text.as_str())
    }

    /// The best hypothesis' language.
    pub fn language(&self) -> Option<&str> {
        self.alternatives
            .first()
            .and_then(|a| a.language.as_deref())
    }
}

/// Audio processed, for billing and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecognitionUsage {
    /// Audio duration recognized.
    pub audio_duration: Duration,
}

impl RecognitionUsage {
    /// Usage of `audio_duration`.
    pub fn new(audio_duration: Duration) -> Self {
        Self { audio_duration }
    }
}

/// An event of a recognition stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SpeechEvent {
    /// The provider detected the start of speech.
    StartOfSpeech,
    /// A hypothesis that may still change.
    InterimTranscript(Transcript),
    /// An early final hypothesis usable for preemptive generation; a final transcript still follows.
    PreflightTranscript(Transcript),
    /// A final hypothesis for a stretch of audio; later finals continue the turn.
    FinalTranscript(Transcript),
    /// The provider detected the end of speech (end of utterance).
    EndOfSpeech,
    /// Audio processed so far.
    RecognitionUsage(RecognitionUsage),
}

/// What an STT offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SttCapabilities {
    /// [`Stt::stream`] is supported; otherwise the pipeline segments audio with a VAD and calls `recognize`.
    pub streaming: bool,
    /// Interim transcripts are emitted.
    pub interim_results: bool,
    /// Words carry timings.
    pub aligned_transcript: bool,
    /// Speakers are labelled.
    pub diarization: bool,
}

/// Options of one recognition.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RecognizeOptions {
    /// Language hint; `None` uses the plugin's configured language.
    pub language: Option<String>,
    /// Connection, timeout and retry policy.
    pub conn_options: ApiConnectOptions,
}

impl RecognizeOptions {
    /// Sets the language.
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }
    /// Sets the connection policy.
    pub fn with_conn_options(mut self, conn_options: ApiConnectOptions) -> Self {
        self.conn_options = conn_options;
        self
    }
}

/// Options of one recognition stream.
pub type SttStreamOptions = RecognizeOptions;

/// Why recognition failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SttError {
    /// The provider API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The audio cannot be used (format, rate, channels).
    #[error("invalid audio for speech-to-text")]
    InvalidAudio(#[from] AudioFrameError),
    /// The audio's sample rate does not match the stream's.
    #[error("unsupported sample rate: expected {expected} Hz, got {actual} Hz")]
    UnsupportedSampleRate {
        /// Expected rate.
        expected: u32,
        /// Rate received.
        actual: u32,
    },
    /// This STT does not support the operation.
    #[error("{label} does not support {operation}")]
    Unsupported {
        /// The STT's label.
        label: String,
        /// What was asked.
        operation: &'static str,
    },
}

/// Input of a recognition stream, as the plugin receives it (`Flush` finalizes what was heard so far).
pub type SttInput = FrameInput;

/// Provider side of an [`SttStream`].
pub type SttStreamDriver = StreamDriver<FrameInput, Result<SpeechEvent, SttError>>;

/// A recognition stream: push audio in, read [`SpeechEvent`]s out. Dropping it cancels recognition.
pub type SttStream = FrameStream<Result<SpeechEvent, SttError>>;

/// A speech-to-text provider. Object safe: held as `Arc<dyn Stt>`.
#[async_trait]
pub trait Stt: Send + Sync + 'static {
    /// Provider label for logs and metrics, e.g. `deepgram.STT`.
    fn label(&self) -> &str;

    /// Model name.
    fn model(&self) -> &str {
        "unknown"
    }

    /// What this STT offers.
    fn capabilities(&self) -> SttCapabilities;

    /// Recognizes one buffer of audio (all frames of one format).
    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError>;

    /// Opens a recognition stream. Must be called inside a tokio runtime (plugins spawn their task).
    ///
    /// # Errors
    /// [`SttError::Unsupported`] by default: non-streaming STTs are wrapped by the pipeline with VAD segmentation.
    fn stream(&self, options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let _ = options;
        Err(SttError::Unsupported {
            label: self.label().to_owned(),
            operation: "streaming",
        })
    }

    /// Releases connections.
    async fn aclose(&self) {}
}
