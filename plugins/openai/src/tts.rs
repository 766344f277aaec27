//! [`OpenAiTts`]: the [`Tts`] contract over `POST /audio/speech` with `response_format: "pcm"` (24 kHz, 16-bit,
//! mono), streamed as it arrives in frames of a fixed duration.
//!
//! [`Tts::stream`] is the core [`StreamAdapter`]: the pushed text is cut into sentences by
//! `agents_core::tokenize` and each sentence is one request, in order; each flush closes a segment whose last
//! chunk is final.

use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioByteStream, AudioFrame, SampleRate};
use agents_core::ids::short_id;
use agents_core::tokenize::SentenceOptions;
use agents_core::tts::{
    SynthesizeOptions, SynthesizedAudio, Tts, TtsAudioStream, TtsCapabilities, TtsError, TtsStream,
};
use agents_core::{ApiConnectOptions, StreamAdapter};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};

use crate::error::{ConfigError, ProtocolError};
use crate::http::{self, Transport};
use crate::options::ClientOptions;

/// The default speech model (LiveKit's default).
pub const DEFAULT_TTS_MODEL: &str = "gpt-4o-mini-tts";
/// The default voice (LiveKit's default).
pub const DEFAULT_VOICE: &str = "ash";
/// The rate of `response_format: "pcm"`.
pub const TTS_SAMPLE_RATE: SampleRate = SampleRate::HZ_24000;
/// The longest input `/audio/speech` takes, in characters.
pub const MAX_INPUT_CHARS: usize = 4096;
/// Longest request [`Tts::stream`] sends: runs without punctuation are cut at a space below the API limit.
const MAX_STREAM_SENTENCE_CHARS: usize = 4000;

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
    framer: AudioByteStream,
    /// Bytes received, for the error on a response that ends inside a sample.
    received: usize,
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
                                let framer = match AudioByteStream::new(
                                    TTS_SAMPLE_RATE,
                                    1,
                                    request.inner.samples_per_frame,
                                ) {
                                    Ok(f) => f,
                                    Err(e) => {
                                        let e = TtsError::InvalidAudio {
                                            reason: e.to_string(),
                                        };
                                        return Some((Err(e), Phase::Done));
                                    }
                                };
                                phase = Phase::Read(Box::new(SpeechReader {
                                    request,
                                    body: Box::pin(http::body_stream(response)),
                                    framer,
                                    received: 0,
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
                                r.received += bytes.len();
                                r.ready.extend(r.framer.push(&bytes));
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
                                let last = r.framer.flush();
                                if r.framer.dropped_bytes() > 0 {
                                    let reason = ProtocolError::OddAudioLength { len: r.received }
                                        .to_string();
                                    return Some((
                                        Err(TtsError::InvalidAudio { reason }),
                                        Phase::Done,
                                    ));
                                }
                                r.ready.extend(last);
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
        let sentences = SentenceOptions::default()
            .with_min_sentence_len(self.inner.options.min_sentence_chars)
            .with_max_sentence_len(MAX_STREAM_SENTENCE_CHARS);
        StreamAdapter::stream_over(Arc::new(self.clone()), sentences, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthesizes with a server on 127.0.0.1 that answers every `/audio/speech` request with `body`, in 1 ms
    /// frames (24 samples).
    async fn synthesize_body(body: &'static [u8]) -> Vec<Result<SynthesizedAudio, TtsError>> {
        let app = axum::Router::new().route(
            "/v1/audio/speech",
            axum::routing::post(move || async move { body }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = ClientOptions::default()
            .with_api_key("sk-test")
            .with_base_url(format!("http://{addr}/v1"));
        let options = TtsOptions::default().with_frame_duration(Duration::from_millis(1));
        let stream = OpenAiTts::new(client, options)
            .unwrap()
            .synthesize("hi", &SynthesizeOptions::default())
            .await
            .unwrap();
        let chunks = stream.collect().await;
        server.abort();
        chunks
    }

    #[tokio::test]
    async fn frames_carry_half_samples_and_an_odd_end_is_invalid_audio() {
        // 50 whole samples = two frames and a short one.
        static WHOLE: [u8; 100] = [1; 100];
        let chunks = synthesize_body(&WHOLE).await;
        let sizes: Vec<_> = chunks
            .iter()
            .map(|c| c.as_ref().unwrap().frame.samples_per_channel())
            .collect();
        assert_eq!(sizes, [24, 24, 2]);
        assert!(chunks.last().unwrap().as_ref().unwrap().is_final);

        static ODD: [u8; 51] = [1; 51];
        match synthesize_body(&ODD).await.last() {
            Some(Err(TtsError::InvalidAudio { reason })) => {
                assert!(reason.contains("51"), "{reason}");
            }
            other => panic!("expected invalid audio, got {other:?}"),
        }
    }
}
