//! The [`Tts`] contract: text-to-speech, one text at a time ([`Tts::synthesize`]) or streamed ([`Tts::stream`]).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use tokio::time::Instant;

use agents_audio::{AudioFrame, SampleRate};

use crate::error::ApiError;
use crate::metrics::TtsMetrics;
use crate::retry::ApiConnectOptions;
use crate::stream::{self, BoxStream, Duplex, StreamClosed, StreamDriver};

/// A piece of text with the time it is spoken, relative to the start of its segment's audio.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TimedText {
    /// The text (a word, or a character for character alignment).
    pub text: String,
    /// When it starts being spoken.
    pub start: Duration,
    /// When it ends.
    pub end: Duration,
}

impl TimedText {
    /// Text spoken from `start` to `end`.
    pub fn new(text: impl Into<String>, start: Duration, end: Duration) -> Self {
        Self {
            text: text.into(),
            start,
            end,
        }
    }
}

/// A chunk of synthesized audio.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SynthesizedAudio {
    /// Provider request id.
    pub request_id: String,
    /// The segment (one flush of a stream, or the whole text of `synthesize`).
    pub segment_id: String,
    /// The audio, at the TTS's sample rate.
    pub frame: AudioFrame,
    /// The last chunk of its segment.
    pub is_final: bool,
    /// Word (or character) timings for text spoken in this chunk, when the provider aligns.
    pub timed_text: Vec<TimedText>,
}

impl SynthesizedAudio {
    /// A chunk of `frame` for `segment_id`.
    pub fn new(
        request_id: impl Into<String>,
        segment_id: impl Into<String>,
        frame: AudioFrame,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            segment_id: segment_id.into(),
            frame,
            is_final: false,
            timed_text: Vec::new(),
        }
    }

    /// Marks the chunk as the last of its segment.
    pub fn with_final(mut self, is_final: bool) -> Self {
        self.is_final = is_final;
        self
    }

    /// Attaches timings.
    pub fn with_timed_text(mut self, timed_text: Vec<TimedText>) -> Self {
        self.timed_text = timed_text;
        self
    }
}

/// What a TTS offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TtsCapabilities {
    /// [`Tts::stream`] is supported; otherwise the pipeline feeds `synthesize` sentence by sentence.
    pub streaming: bool,
    /// Chunks carry word or character timings.
    pub aligned_transcript: bool,
}

/// Options of one synthesis.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SynthesizeOptions {
    /// Connection, timeout and retry policy.
    pub conn_options: ApiConnectOptions,
}

impl SynthesizeOptions {
    /// Sets the connection policy.
    pub fn with_conn_options(mut self, conn_options: ApiConnectOptions) -> Self {
        self.conn_options = conn_options;
        self
    }
}

/// Why synthesis failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TtsError {
    /// The provider API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The provider sent audio that cannot be decoded as announced.
    #[error("invalid audio from the provider: {reason}")]
    InvalidAudio {
        /// What is wrong.
        reason: String,
    },
    /// The text or options cannot be synthesized.
    #[error("invalid synthesis request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// This TTS does not support the operation.
    #[error("{label} does not support {operation}")]
    Unsupported {
        /// The TTS's label.
        label: String,
        /// What was asked.
        operation: &'static str,
    },
}

/// Measures a TTS output as it is read: time to first audio, audio produced.
#[derive(Debug)]
struct Meter {
    label: String,
    request_id: Option<String>,
    started: Instant,
    first_audio: Option<Instant>,
    ended: Option<Instant>,
    audio: Duration,
    characters: usize,
    streamed: bool,
}

impl Meter {
    fn new(label: String, characters: usize, streamed: bool) -> Self {
        Self {
            label,
            request_id: None,
            started: Instant::now(),
            first_audio: None,
            ended: None,
            audio: Duration::ZERO,
            characters,
            streamed,
        }
    }

    fn observe(&mut self, item: &Poll<Option<Result<SynthesizedAudio, TtsError>>>) {
        match item {
            Poll::Ready(Some(Ok(a))) => {
                if self.first_audio.is_none() {
                    self.first_audio = Some(Instant::now());
                }
                if self.request_id.is_none() {
                    self.request_id = Some(a.request_id.clone());
                }
                self.audio += a.frame.duration();
            }
            Poll::Ready(Some(Err(_)) | None) => {
                if self.ended.is_none() {
                    self.ended = Some(Instant::now());
                }
            }
            Poll::Pending => {}
        }
    }

    fn metrics(&self) -> TtsMetrics {
        let end = self.ended.unwrap_or_else(Instant::now);
        let mut m = TtsMetrics::new(self.label.clone());
        m.request_id.clone_from(&self.request_id);
        m.ttfb = self
            .first_audio
            .map(|t| t.saturating_duration_since(self.started));
        m.duration = end.saturating_duration_since(self.started);
        m.audio_duration = self.audio;
        m.characters_count = self.characters;
        m.cancelled = self.ended.is_none();
        m.streamed = self.streamed;
        m
    }
}

/// The audio of one [`Tts::synthesize`] call, measuring itself as it is read.
pub struct TtsAudioStream {
    inner: BoxStream<Result<SynthesizedAudio, TtsError>>,
    meter: Meter,
}

impl TtsAudioStream {
    /// Wraps a plugin's audio stream for `text`. The clock for `ttfb` starts now.
    pub fn new(
        label: impl Into<String>,
        text: &str,
        stream: impl Stream<Item = Result<SynthesizedAudio, TtsError>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(stream),
            meter: Meter::new(label.into(), text.chars().count(), false),
        }
    }

    /// Metrics so far; `cancelled` until the stream ended.
    pub fn metrics(&self) -> TtsMetrics {
        self.meter.metrics()
    }

    /// Reads all audio; the first error ends it.
    ///
    /// # Errors
    /// The first error of the stream.
    pub async fn collect_frames(mut self) -> Result<Vec<AudioFrame>, TtsError> {
        use futures::StreamExt;
        let mut frames = Vec::new();
        while let Some(chunk) = self.next().await {
            frames.push(chunk?.frame);
        }
        Ok(frames)
    }
}

impl Stream for TtsAudioStream {
    type Item = Result<SynthesizedAudio, TtsError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        self.meter.observe(&polled);
        polled
    }
}

impl fmt::Debug for TtsAudioStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtsAudioStream")
            .field("meter", &self.meter)
            .finish_non_exhaustive()
    }
}

/// Input of a synthesis stream, as the plugin receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TtsInput {
    /// Text to speak (any chunking; the plugin or provider segments it).
    Text(String),
    /// Close the current segment: synthesize everything pushed so far.
    Flush,
    /// No more text: finish the last segment, then end the stream.
    EndInput,
}

/// Provider side of a [`TtsStream`].
pub type TtsStreamDriver = StreamDriver<TtsInput, Result<SynthesizedAudio, TtsError>>;

/// A synthesis stream: push text in, read audio out. Dropping it cancels synthesis (barge-in).
pub struct TtsStream {
    inner: Duplex<TtsInput, Result<SynthesizedAudio, TtsError>>,
    meter: Meter,
}

impl TtsStream {
    /// A stream and its plugin-side driver with the default capacities.
    pub fn channel(label: impl Into<String>) -> (Self, TtsStreamDriver) {
        let (inner, driver) = stream::duplex(
            stream::DEFAULT_INPUT_CAPACITY,
            stream::DEFAULT_EVENT_CAPACITY,
        );
        (
            Self {
                inner,
                meter: Meter::new(label.into(), 0, true),
            },
            driver,
        )
    }

    /// Pushes text.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended (read the stream for why).
    pub async fn push_text(&mut self, text: impl Into<String>) -> Result<(), StreamClosed> {
        let text = text.into();
        self.meter.characters += text.chars().count();
        self.inner.push(TtsInput::Text(text)).await
    }

    /// Closes the current segment.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended.
    pub async fn flush(&self) -> Result<(), StreamClosed> {
        self.inner.push(TtsInput::Flush).await
    }

    /// Ends the input; the stream ends after the last audio.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended.
    pub async fn end_input(&self) -> Result<(), StreamClosed> {
        self.inner.push(TtsInput::EndInput).await
    }

    /// Metrics so far (ttfb from the stream's creation).
    pub fn metrics(&self) -> TtsMetrics {
        self.meter.metrics()
    }
}

impl Stream for TtsStream {
    type Item = Result<SynthesizedAudio, TtsError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        self.meter.observe(&polled);
        polled
    }
}

impl fmt::Debug for TtsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtsStream")
            .field("meter", &self.meter)
            .finish_non_exhaustive()
    }
}

/// A text-to-speech provider. Object safe: held as `Arc<dyn Tts>`.
#[async_trait]
pub trait Tts: Send + Sync + 'static {
    /// Provider label for logs and metrics, e.g. `elevenlabs.TTS`.
    fn label(&self) -> &str;

    /// Model name.
    fn model(&self) -> &str {
        "unknown"
    }

    /// What this TTS offers.
    fn capabilities(&self) -> TtsCapabilities;

    /// Rate of the audio produced.
    fn sample_rate(&self) -> SampleRate;

    /// Channels of the audio produced.
    fn num_channels(&self) -> u16 {
        1
    }

    /// Synthesizes `text`. Connection errors (after the retries of `options.conn_options`) are returned or
    /// arrive in the stream.
    async fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError>;

    /// Opens a synthesis stream. Must be called inside a tokio runtime (plugins spawn their task).
    ///
    /// # Errors
    /// [`TtsError::Unsupported`] by default: the pipeline then feeds `synthesize` sentence by sentence.
    fn stream(&self, options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        let _ = options;
        Err(TtsError::Unsupported {
            label: self.label().to_owned(),
            operation: "streaming",
        })
    }

    /// Releases connections.
    async fn aclose(&self) {}
}
