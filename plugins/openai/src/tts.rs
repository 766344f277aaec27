//! [`OpenAiTts`]: the [`Tts`] contract over `POST /audio/speech` with `response_format: "pcm"` (24 kHz, 16-bit,
//! mono), streamed as it arrives in frames of a fixed duration.
//!
//! [`Tts::stream`] splits the pushed text into sentences (see the sentence splitter) and sends one request per
//! sentence, in order; each flush closes a segment whose last chunk is final.

use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::ApiConnectOptions;
use agents_core::ids::short_id;
use agents_core::tts::{
    SynthesizeOptions, SynthesizedAudio, Tts, TtsAudioStream, TtsCapabilities, TtsError, TtsInput,
    TtsStream,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::error::{ConfigError, ProtocolError};
use crate::http::{self, Transport};
use crate::options::ClientOptions;
use crate::sentence::SentenceSplitter;

/// The default speech model (LiveKit's default).
pub const DEFAULT_TTS_MODEL: &str = "gpt-4o-mini-tts";
/// The default voice (LiveKit's default).
pub const DEFAULT_VOICE: &str = "ash";
/// The rate of `response_format: "pcm"`.
pub const TTS_SAMPLE_RATE: SampleRate = SampleRate::HZ_24000;
/// The longest input `/audio/speech` takes, in characters.
pub const MAX_INPUT_CHARS: usize = 4096;

/// Options of an [`OpenAiTts`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TtsOptions {
    /// `tts-1`, `tts-1-hd` or `gpt-4o-mini-tts`.
    pub model: String,
    /// Voice (`alloy`, `ash`, `ballad`, `coral`, `echo`, `fable`, `nova`, `onyx`, `sage`, `shimmer`, ...).
    pub voice: String,
    /// How to speak (gpt-4o-mini-tts only).
    pub instructions: Option<String>,
    /// Speed, 0.25 to 4.0.
    pub speed: Option<f32>,
    /// Duration of each audio frame produced (the last one of a segment may be shorter).
    pub frame_duration: Duration,
    /// Shortest sentence sent alone by [`Tts::stream`]; shorter ones are merged with the next.
    pub min_sentence_chars: usize,
}

impl Default for TtsOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_TTS_MODEL.to_owned(),
            voice: DEFAULT_VOICE.to_owned(),
            instructions: None,
            speed: None,
            frame_duration: Duration::from_millis(50),
            min_sentence_chars: 20,
        }
    }
}

impl TtsOptions {
    /// Sets the model.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the voice.
    #[must_use]
    pub fn with_voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = voice.into();
        self
    }

    /// Sets the instructions.
    #[must_use]
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Sets the speed.
    #[must_use]
    pub fn with_speed(mut self, speed: f32) -> Self {
        self.speed = Some(speed);
        self
    }

    /// Sets the frame duration.
    #[must_use]
    pub fn with_frame_duration(mut self, d: Duration) -> Self {
        self.frame_duration = d;
        self
    }

    /// Sets the shortest sentence sent alone by streams.
    #[must_use]
    pub fn with_min_sentence_chars(mut self, n: usize) -> Self {
        self.min_sentence_chars = n;
        self
    }
}

/// An OpenAI text-to-speech. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct OpenAiTts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    options: TtsOptions,
    samples_per_frame: usize,
}

impl OpenAiTts {
    /// The label in logs and metrics.
    pub const LABEL: &'static str = "openai.TTS";

    /// A TTS over `client` with `options`.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad base URL or header, a speed outside 0.25..=4.0 or a frame shorter than 1 ms.
    pub fn new(client: ClientOptions, options: TtsOptions) -> Result<Self, ConfigError> {
        if let Some(s) = options.speed
            && !(0.25..=4.0).contains(&s)
        {
            return Err(ConfigError::InvalidOption {
                reason: format!("speed {s} is outside 0.25..=4.0"),
            });
        }
        if options.frame_duration < Duration::from_millis(1) {
            return Err(ConfigError::InvalidOption {
                reason: "the frame duration must be at least 1 ms".to_owned(),
            });
        }
        if options.voice.trim().is_empty() || options.model.trim().is_empty() {
            return Err(ConfigError::InvalidOption {
                reason: "the model and the voice must be set".to_owned(),
            });
        }
        let samples_per_frame =
            (u128::from(TTS_SAMPLE_RATE.hz()) * options.frame_duration.as_micros() / 1_000_000)
                .max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(client)?,
                samples_per_frame: usize::try_from(samples_per_frame).unwrap_or(usize::MAX),
                options,
            }),
        })
    }

    /// A TTS with the key and base URL from the environment and default options.
    ///
    /// # Errors
    /// As [`OpenAiTts::new`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(ClientOptions::from_env(), TtsOptions::default())
    }

    /// The options.
    pub fn options(&self) -> &TtsOptions {
        &self.inner.options
    }
}

fn check_text(text: &str) -> Result<(), TtsError> {
    if text.trim().is_empty() {
        return Err(TtsError::InvalidRequest {
            reason: "the text is empty".to_owned(),
        });
    }
    let n = text.chars().count();
    if n > MAX_INPUT_CHARS {
        return Err(TtsError::InvalidRequest {
            reason: format!(
                "{n} characters is more than the {MAX_INPUT_CHARS} of one request (use stream())"
            ),
        });
    }
    Ok(())
}

/// Bytes to fixed-size frames, carrying half samples across chunks.
#[derive(Debug)]
struct PcmFramer {
    buf: Vec<u8>,
    frame_bytes: usize,
    total: usize,
}

impl PcmFramer {
    fn new(samples_per_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            frame_bytes: samples_per_frame * 2,
            total: 0,
        }
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<AudioFrame>) -> Result<(), TtsError> {
        self.total += bytes.len();
        self.buf.extend_from_slice(bytes);
        let whole = self.buf.len() / self.frame_bytes * self.frame_bytes;
        for chunk in self.buf[..whole].chunks_exact(self.frame_bytes) {
            out.push(frame(chunk)?);
        }
        self.buf.drain(..whole);
        Ok(())
    }

    fn finish(&mut self) -> Result<Option<AudioFrame>, TtsError> {
        if !self.buf.len().is_multiple_of(2) {
            return Err(TtsError::InvalidAudio {
                reason: ProtocolError::OddAudioLength { len: self.total }.to_string(),
            });
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let f = frame(&self.buf)?;
        self.buf.clear();
        Ok(Some(f))
    }
}

fn frame(bytes: &[u8]) -> Result<AudioFrame, TtsError> {
    AudioFrame::from_le_bytes(bytes, TTS_SAMPLE_RATE, 1).map_err(|e| TtsError::InvalidAudio {
        reason: e.to_string(),
    })
}

fn request_body(o: &TtsOptions, text: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(o.model));
    body.insert("input".into(), json!(text));
    body.insert("voice".into(), json!(o.voice));
    body.insert("response_format".into(), json!("pcm"));
    if let Some(i) = &o.instructions {
        body.insert("instructions".into(), json!(i));
    }
    if let Some(s) = o.speed {
        body.insert("speed".into(), json!(s));
    }
    Value::Object(body)
}

type Frames = std::pin::Pin<Box<dyn Stream<Item = Result<(AudioFrame, String), TtsError>> + Send>>;

/// What is needed to (re)send one speech request.
struct SpeechRequest {
    inner: Arc<Inner>,
    body: Bytes,
    conn: ApiConnectOptions,
    /// How often a response that failed before its first frame was requested again.
    reopened: u32,
}

struct SpeechReader {
    request: SpeechRequest,
    body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, agents_core::ApiError>> + Send>>,
    framer: PcmFramer,
    ready: std::collections::VecDeque<AudioFrame>,
    request_id: String,
    ended: bool,
    /// A frame reached the caller: a failure can no longer be retried without repeating audio.
    yielded: bool,
}

enum Phase {
    Connect(SpeechRequest),
    Read(Box<SpeechReader>),
    Done,
}

/// The frames of one request (with its request id), lazily: nothing is sent until polled. A response that breaks
/// before its first frame is requested again (at most `max_retry` times); later failures end the stream.
fn speech_frames(inner: Arc<Inner>, text: &str, conn: ApiConnectOptions) -> Frames {
    let body = Bytes::from(request_body(&inner.options, text).to_string());
    let request = SpeechRequest {
        inner,
        body,
        conn,
        reopened: 0,
    };
    Box::pin(futures::stream::unfold(
        Phase::Connect(request),
        |phase| async move {
            let mut phase = phase;
            loop {
                match phase {
                    Phase::Done => return None,
                    Phase::Connect(request) => {
                        let transport = &request.inner.transport;
                        let sent = request
                            .conn
                            .retry("synthesize", |attempt| {
                                transport.send(
                                    transport.post_json("audio/speech", &request.body),
                                    attempt.timeout,
                                )
                            })
                            .await;
                        match sent {
                            Ok(response) => {
                                let request_id =
                                    http::request_id(&response).unwrap_or_else(|| short_id("req_"));
                                let framer = PcmFramer::new(request.inner.samples_per_frame);
                                phase = Phase::Read(Box::new(SpeechReader {
                                    request,
                                    body: Box::pin(http::body_stream(response)),
                                    framer,
                                    ready: Default::default(),
                                    request_id,
                                    ended: false,
                                    yielded: false,
                                }));
                            }
                            Err(e) => return Some((Err(TtsError::Api(e)), Phase::Done)),
                        }
                    }
                    Phase::Read(mut r) => {
                        if let Some(f) = r.ready.pop_front() {
                            r.yielded = true;
                            let item = Ok((f, r.request_id.clone()));
                            return Some((item, Phase::Read(r)));
                        }
                        if r.ended {
                            return None;
                        }
                        match r.body.next().await {
                            Some(Ok(bytes)) => {
                                let mut out = Vec::new();
                                if let Err(e) = r.framer.push(&bytes, &mut out) {
                                    return Some((Err(e), Phase::Done));
                                }
                                r.ready.extend(out);
                            }
                            Some(Err(e)) => {
                                let delay = (!r.yielded
                                    && r.request.reopened < r.request.conn.max_retry)
                                    .then(|| r.request.conn.retry_delay(&e, r.request.reopened))
                                    .flatten();
                                let Some(delay) = delay else {
                                    return Some((Err(TtsError::Api(e)), Phase::Done));
                                };
                                tracing::warn!(error = %e, retry_in = ?delay, "speech failed before its first frame, retrying");
                                tokio::time::sleep(delay).await;
                                let mut request = r.request;
                                request.reopened += 1;
                                phase = Phase::Connect(request);
                                continue;
                            }
                            None => {
                                r.ended = true;
                                match r.framer.finish() {
                                    Ok(Some(f)) => r.ready.push_back(f),
                                    Ok(None) => {}
                                    Err(e) => return Some((Err(e), Phase::Done)),
                                }
                            }
                        }
                        phase = Phase::Read(r);
                    }
                }
            }
        },
    ))
}

#[async_trait]
impl Tts for OpenAiTts {
    fn label(&self) -> &str {
        Self::LABEL
    }

    fn model(&self) -> &str {
        &self.inner.options.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        let mut c = TtsCapabilities::default();
        c.streaming = true;
        c.aligned_transcript = false;
        c
    }

    fn sample_rate(&self) -> SampleRate {
        TTS_SAMPLE_RATE
    }

    async fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError> {
        check_text(text)?;
        let conn = self.inner.transport.conn_for(&options.conn_options);
        let frames = speech_frames(Arc::clone(&self.inner), text, conn);
        let segment_id = short_id("seg_");
        let state = (frames, None::<(AudioFrame, String)>, false, false);
        let chunks = futures::stream::unfold(state, move |(mut frames, mut held, any, done)| {
            let segment_id = segment_id.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match frames.next().await {
                        Some(Ok(f)) => {
                            if let Some((frame, rid)) = held.replace(f) {
                                let chunk = SynthesizedAudio::new(rid, segment_id, frame);
                                return Some((Ok(chunk), (frames, held, true, false)));
                            }
                        }
                        Some(Err(e)) => return Some((Err(e), (frames, None, any, true))),
                        None => {
                            return match held.take() {
                                Some((frame, rid)) => {
                                    let chunk = SynthesizedAudio::new(rid, segment_id, frame)
                                        .with_final(true);
                                    Some((Ok(chunk), (frames, None, true, true)))
                                }
                                None if !any => Some((
                                    Err(TtsError::InvalidAudio {
                                        reason: "the server sent no audio".to_owned(),
                                    }),
                                    (frames, None, any, true),
                                )),
                                None => None,
                            };
                        }
                    }
                }
            }
        });
        Ok(TtsAudioStream::new(Self::LABEL, text, chunks))
    }

    fn stream(&self, options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| TtsError::InvalidRequest {
                reason: "stream() must be called inside a tokio runtime".to_owned(),
            })?;
        let (stream, driver) = TtsStream::channel(Self::LABEL);
        let (input, events) = driver.into_parts();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(16);
        let conn = self.inner.transport.conn_for(&options.conn_options);
        handle.spawn(split_input(
            input,
            jobs_tx,
            self.inner.options.min_sentence_chars,
        ));
        handle.spawn(synthesize_jobs(
            Arc::clone(&self.inner),
            conn,
            jobs_rx,
            events,
        ));
        Ok(stream)
    }
}

/// Work for the synthesis task of a stream.
#[derive(Debug)]
enum Job {
    /// Synthesize one sentence of a segment.
    Sentence { segment: String, text: String },
    /// The segment is complete: its last chunk is final.
    End,
}

async fn split_input(
    mut input: mpsc::Receiver<TtsInput>,
    jobs: mpsc::Sender<Job>,
    min_chars: usize,
) {
    let mut splitter = SentenceSplitter::new(min_chars);
    let mut segment = short_id("seg_");
    let mut has_text = false;
    while let Some(item) = input.recv().await {
        let (sentences, end_segment, end_input) = match item {
            TtsInput::Text(t) => (splitter.push(&t), false, false),
            TtsInput::Flush => (splitter.flush().into_iter().collect(), true, false),
            TtsInput::EndInput => (splitter.flush().into_iter().collect(), true, true),
            _ => (Vec::new(), false, false),
        };
        for text in sentences {
            has_text = true;
            let job = Job::Sentence {
                segment: segment.clone(),
                text,
            };
            if jobs.send(job).await.is_err() {
                return;
            }
        }
        if end_segment && has_text {
            if jobs.send(Job::End).await.is_err() {
                return;
            }
            segment = short_id("seg_");
            has_text = false;
        }
        if end_input {
            return;
        }
    }
}

async fn synthesize_jobs(
    inner: Arc<Inner>,
    conn: ApiConnectOptions,
    mut jobs: mpsc::Receiver<Job>,
    events: mpsc::Sender<Result<SynthesizedAudio, TtsError>>,
) {
    let mut held: Option<SynthesizedAudio> = None;
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Sentence { segment, text } => {
                let mut frames = speech_frames(Arc::clone(&inner), &text, conn);
                loop {
                    let next = tokio::select! {
                        () = events.closed() => return,
                        n = frames.next() => n,
                    };
                    match next {
                        Some(Ok((frame, rid))) => {
                            let chunk = SynthesizedAudio::new(rid, segment.clone(), frame);
                            if let Some(prev) = held.replace(chunk)
                                && events.send(Ok(prev)).await.is_err()
                            {
                                return;
                            }
                        }
                        Some(Err(e)) => {
                            let _ = events.send(Err(e)).await;
                            return;
                        }
                        None => break,
                    }
                }
            }
            Job::End => {
                if let Some(last) = held.take()
                    && events.send(Ok(last.with_final(true))).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_carries_half_samples_and_rejects_an_odd_end() {
        let mut f = PcmFramer::new(2);
        let mut out = Vec::new();
        f.push(&[1, 0, 2], &mut out).unwrap();
        assert!(out.is_empty());
        f.push(&[0, 3, 0], &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data(), &[1, 2]);
        let last = f.finish().unwrap().unwrap();
        assert_eq!(last.data(), &[3]);
        f.push(&[4, 5, 6], &mut out).unwrap();
        assert!(matches!(f.finish(), Err(TtsError::InvalidAudio { .. })));
    }
}
