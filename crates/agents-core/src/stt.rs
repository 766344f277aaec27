//! The [`Stt`] contract: speech-to-text, one buffer at a time ([`Stt::recognize`]) or streamed ([`Stt::stream`]).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use tokio::time::Instant;

use agents_audio::{AudioFrame, AudioFrameError};

use crate::error::ApiError;
use crate::metrics::SttMetrics;
use crate::retry::ApiConnectOptions;
use crate::stream::{self, FrameInput, FrameStream, StreamClosed, StreamDriver, TryPushError};

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

/// Measures a recognition stream as it is read: audio recognized (from [`SpeechEvent::RecognitionUsage`]), the
/// provider request id (from the transcripts), and how long the stream has been open.
#[derive(Debug)]
struct Meter {
    label: String,
    model: String,
    request_id: Option<String>,
    started: Instant,
    ended: Option<Instant>,
    audio: Duration,
}

impl Meter {
    fn new() -> Self {
        Self {
            label: "unknown".to_owned(),
            model: "unknown".to_owned(),
            request_id: None,
            started: Instant::now(),
            ended: None,
            audio: Duration::ZERO,
        }
    }

    fn observe(&mut self, item: &Poll<Option<Result<SpeechEvent, SttError>>>) {
        match item {
            Poll::Ready(Some(Ok(event))) => match event {
                SpeechEvent::RecognitionUsage(u) => self.audio += u.audio_duration,
                SpeechEvent::InterimTranscript(t)
                | SpeechEvent::PreflightTranscript(t)
                | SpeechEvent::FinalTranscript(t) => {
                    // The latest id wins: a plugin that reconnects serves later audio under a new request.
                    if !t.request_id.is_empty() && self.request_id.as_deref() != Some(&t.request_id)
                    {
                        self.request_id = Some(t.request_id.clone());
                    }
                }
                SpeechEvent::StartOfSpeech | SpeechEvent::EndOfSpeech => {}
            },
            Poll::Ready(Some(Err(_)) | None) => {
                if self.ended.is_none() {
                    self.ended = Some(Instant::now());
                }
            }
            Poll::Pending => {}
        }
    }

    fn metrics(&self) -> SttMetrics {
        let end = self.ended.unwrap_or_else(Instant::now);
        let mut m = SttMetrics::new(self.label.clone());
        m.model.clone_from(&self.model);
        m.request_id.clone_from(&self.request_id);
        m.duration = end.saturating_duration_since(self.started);
        m.audio_duration = self.audio;
        m.streamed = true;
        m
    }
}

/// A recognition stream: push audio in, read [`SpeechEvent`]s out. Dropping it cancels recognition.
///
/// It measures itself as it is read ([`SttStream::metrics`]): the audio the provider reported as recognized
/// ([`SpeechEvent::RecognitionUsage`]), the provider request id carried by the transcripts, and the time the stream
/// has been open.
pub struct SttStream {
    inner: FrameStream<Result<SpeechEvent, SttError>>,
    meter: Meter,
}

impl SttStream {
    /// A stream and its plugin-side driver with the default capacities. The clock of
    /// [`SttMetrics::duration`] starts now; label and model are `"unknown"` until [`SttStream::with_labels`].
    pub fn channel() -> (Self, SttStreamDriver) {
        Self::with_capacity(
            stream::DEFAULT_INPUT_CAPACITY,
            stream::DEFAULT_EVENT_CAPACITY,
        )
    }

    /// A stream and its driver with the given queue capacities.
    pub fn with_capacity(input: usize, events: usize) -> (Self, SttStreamDriver) {
        let (inner, driver) = FrameStream::with_capacity(input, events);
        (
            Self {
                inner,
                meter: Meter::new(),
            },
            driver,
        )
    }

    /// Names the provider (`label`, e.g. `deepgram.STT`) and `model` in the stream's metrics.
    pub fn with_labels(mut self, label: impl Into<String>, model: impl Into<String>) -> Self {
        self.meter.label = label.into();
        self.meter.model = model.into();
        self
    }

    /// Pushes audio, waiting while the plugin is behind.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended (read the stream for why).
    pub async fn push_frame(&self, frame: AudioFrame) -> Result<(), StreamClosed> {
        self.inner.push_frame(frame).await
    }

    /// Pushes audio without waiting; on a full queue the frame is handed back so the caller can drop it.
    ///
    /// # Errors
    /// [`TryPushError`] with the frame.
    pub fn try_push_frame(&self, frame: AudioFrame) -> Result<(), TryPushError<AudioFrame>> {
        self.inner.try_push_frame(frame)
    }

    /// Finalizes what was received so far; the stream stays open.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended.
    pub async fn flush(&self) -> Result<(), StreamClosed> {
        self.inner.flush().await
    }

    /// Ends the input; the stream ends after the last events.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended.
    pub async fn end_input(&self) -> Result<(), StreamClosed> {
        self.inner.end_input().await
    }

    /// Whether the plugin task ended.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Metrics so far: `audio_duration` sums the [`SpeechEvent::RecognitionUsage`] events read, `duration` runs
    /// from the stream's creation to its end (or now, while it is open), `streamed` is true.
    pub fn metrics(&self) -> SttMetrics {
        self.meter.metrics()
    }
}

impl Stream for SttStream {
    type Item = Result<SpeechEvent, SttError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        self.meter.observe(&polled);
        polled
    }
}

/// The stream and its driver cross tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SttStream>();
    assert_send_sync::<SttStreamDriver>();
};

impl fmt::Debug for SttStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SttStream")
            .field("meter", &self.meter)
            .field("closed", &self.inner.is_closed())
            .finish_non_exhaustive()
    }
}

/// Runs [`Stt::recognize`] and measures it: `duration` is the request time, `audio_duration` the length of
/// `audio`, `request_id` the transcript's (when not empty), `streamed` false.
///
/// # Errors
/// The error of [`Stt::recognize`].
pub async fn recognize_with_metrics<S: Stt + ?Sized>(
    stt: &S,
    audio: &[AudioFrame],
    options: &RecognizeOptions,
) -> Result<(Transcript, SttMetrics), SttError> {
    let started = Instant::now();
    let transcript = stt.recognize(audio, options).await?;
    let mut m = SttMetrics::new(stt.label());
    m.model = stt.model().to_owned();
    m.duration = started.elapsed();
    m.audio_duration = audio.iter().map(AudioFrame::duration).sum();
    if !transcript.request_id.is_empty() {
        m.request_id = Some(transcript.request_id.clone());
    }
    m.streamed = false;
    Ok((transcript, m))
}

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
    /// Plugins name themselves in the stream's metrics with [`SttStream::with_labels`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use agents_audio::SampleRate;
    use futures::StreamExt;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn stream_metrics_sum_usage_and_take_the_transcript_request_id() {
        let (stream, mut driver) = SttStream::channel();
        let mut stream = stream.with_labels("fake.STT", "fake-model");
        tokio::spawn(async move {
            // Waits for the end of input, like a provider, then answers over 300 ms of (paused) time.
            while let Some(input) = driver.recv().await {
                if input == FrameInput::EndInput {
                    break;
                }
            }
            let events = [
                SpeechEvent::StartOfSpeech,
                SpeechEvent::InterimTranscript(Transcript::new(
                    "req_a",
                    SpeechData::new("he", 0.5),
                )),
                SpeechEvent::FinalTranscript(Transcript::new(
                    "req_a",
                    SpeechData::new("hello", 0.9),
                )),
                SpeechEvent::RecognitionUsage(RecognitionUsage::new(ms(1500))),
                SpeechEvent::FinalTranscript(Transcript::new("", SpeechData::new("again", 0.9))),
                SpeechEvent::RecognitionUsage(RecognitionUsage::new(ms(250))),
            ];
            for e in events {
                tokio::time::sleep(ms(50)).await;
                if driver.send(Ok(e)).await.is_err() {
                    return;
                }
            }
        });
        let frame = AudioFrame::silence(ms(20), SampleRate::HZ_16000, 1).unwrap();
        stream.push_frame(frame).await.unwrap();
        stream.end_input().await.unwrap();
        let first = stream.next().await;
        assert!(matches!(first, Some(Ok(SpeechEvent::StartOfSpeech))));
        let open = stream.metrics();
        assert_eq!(open.audio_duration, Duration::ZERO);
        assert_eq!(open.request_id, None);
        while let Some(e) = stream.next().await {
            e.unwrap();
        }
        tokio::time::sleep(ms(1000)).await;
        let m = stream.metrics();
        assert_eq!(m.label, "fake.STT");
        assert_eq!(m.model, "fake-model");
        assert!(m.streamed);
        assert_eq!(m.audio_duration, ms(1750));
        assert_eq!(m.request_id.as_deref(), Some("req_a"));
        // Creation to end of stream; the second after the end does not count.
        assert_eq!(m.duration, ms(300));
    }

    #[tokio::test]
    async fn stream_metrics_default_labels_and_error_ends_the_clock() {
        let (mut stream, driver) = SttStream::channel();
        driver
            .send(Err(SttError::UnsupportedSampleRate {
                expected: 16_000,
                actual: 8_000,
            }))
            .await
            .unwrap();
        assert!(matches!(stream.next().await, Some(Err(_))));
        let m1 = stream.metrics();
        assert_eq!(m1.label, "unknown");
        tokio::time::sleep(ms(5)).await;
        assert_eq!(
            stream.metrics().duration,
            m1.duration,
            "the clock stopped at the error"
        );
    }

    struct OneShot;

    #[async_trait]
    impl Stt for OneShot {
        fn label(&self) -> &str {
            "oneshot.STT"
        }
        fn model(&self) -> &str {
            "m1"
        }
        fn capabilities(&self) -> SttCapabilities {
            SttCapabilities::default()
        }
        async fn recognize(
            &self,
            audio: &[AudioFrame],
            _options: &RecognizeOptions,
        ) -> Result<Transcript, SttError> {
            if audio.is_empty() {
                return Err(SttError::Unsupported {
                    label: "oneshot.STT".into(),
                    operation: "empty audio",
                });
            }
            tokio::time::sleep(ms(120)).await;
            Ok(Transcript::new("req_r", SpeechData::new("hi", 1.0)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn recognize_with_metrics_measures_the_request_and_the_audio() {
        let audio = vec![
            AudioFrame::silence(ms(400), SampleRate::HZ_16000, 1).unwrap(),
            AudioFrame::silence(ms(600), SampleRate::HZ_16000, 1).unwrap(),
        ];
        let stt: &dyn Stt = &OneShot;
        let (t, m) = recognize_with_metrics(stt, &audio, &RecognizeOptions::default())
            .await
            .unwrap();
        assert_eq!(t.text(), "hi");
        assert_eq!(m.label, "oneshot.STT");
        assert_eq!(m.model, "m1");
        assert_eq!(m.request_id.as_deref(), Some("req_r"));
        assert_eq!(m.audio_duration, ms(1000));
        assert_eq!(m.duration, ms(120));
        assert!(!m.streamed);
        assert!(
            recognize_with_metrics(stt, &[], &RecognizeOptions::default())
                .await
                .is_err()
        );
    }
}
