//! Text-to-speech with Aura: the speak WebSocket ([`Tts::stream`]) and `POST /v1/speak` ([`Tts::synthesize`]).
//!
//! # The flush limit
//!
//! Deepgram processes at most 20 `Flush` messages per 60 s on a speak socket and answers a `Warning` to the others
//! without processing them. The stream keeps a sliding window of the flushes it sent: while the window is full, a
//! flushed segment waits, and segments flushed meanwhile are coalesced with it (their text is already in
//! Deepgram's buffer); one `Flush` goes out as soon as the window allows. The audio of coalesced segments is
//! delivered as one segment, under the id of the first. The window is counted from when each `Flush` was sent
//! plus a margin of a tenth of the window (at most 2 s), since Deepgram counts from when it received them.
//! `end_input` never waits: `Close` makes Deepgram generate what is buffered, and the waiting segments end with
//! it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::tts::{
    SynthesizeOptions, SynthesizedAudio, Tts, TtsAudioStream, TtsCapabilities, TtsError, TtsInput,
    TtsStream, TtsStreamDriver,
};
use agents_core::{ApiConnectOptions, ApiError};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::net::{self, Socket};
use crate::options::{ClientOptions, ConfigError, with_query};

/// The label used in logs and metrics.
pub const TTS_LABEL: &str = "deepgram.TTS";

/// Sample rates Deepgram produces for linear16.
pub const LINEAR16_SAMPLE_RATES: [u32; 5] = [8_000, 16_000, 24_000, 32_000, 48_000];

/// Options of the Deepgram TTS.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TtsOptions {
    /// Voice model, e.g. `aura-2-thalia-en`. Default `aura-2-thalia-en`.
    pub model: String,
    /// Rate of the linear16 audio (8, 16, 24, 32 or 48 kHz). Default 24 kHz.
    pub sample_rate: SampleRate,
    /// Opt out of the Model Improvement Program (`mip_opt_out`). Default false.
    pub mip_opt_out: bool,
    /// Flushes allowed per [`TtsOptions::flush_window`] on one socket: Deepgram's limit, 20.
    pub flush_limit: usize,
    /// Window of the flush limit: 60 s.
    pub flush_window: Duration,
}

impl Default for TtsOptions {
    fn default() -> Self {
        Self {
            model: "aura-2-thalia-en".to_owned(),
            sample_rate: SampleRate::HZ_24000,
            mip_opt_out: false,
            flush_limit: 20,
            flush_window: Duration::from_secs(60),
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

    /// Sets the sample rate.
    #[must_use]
    pub fn with_sample_rate(mut self, rate: SampleRate) -> Self {
        self.sample_rate = rate;
        self
    }

    /// Sets the flush limit (for a deployment with another limit, or tests).
    #[must_use]
    pub fn with_flush_limit(mut self, limit: usize, window: Duration) -> Self {
        self.flush_limit = limit;
        self.flush_window = window;
        self
    }

    /// Checks what the provider would refuse.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] naming the option.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.model.trim().is_empty() {
            return Err(ConfigError::InvalidOption {
                name: "model",
                reason: "must not be empty".to_owned(),
            });
        }
        if !LINEAR16_SAMPLE_RATES.contains(&self.sample_rate.hz()) {
            return Err(ConfigError::InvalidOption {
                name: "sample_rate",
                reason: format!(
                    "{} Hz is not one of {LINEAR16_SAMPLE_RATES:?}",
                    self.sample_rate.hz()
                ),
            });
        }
        if self.flush_limit == 0 {
            return Err(ConfigError::InvalidOption {
                name: "flush_limit",
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }

    fn query(&self, rest: bool) -> Vec<(String, String)> {
        let mut q = vec![
            ("model".to_owned(), self.model.clone()),
            ("encoding".to_owned(), "linear16".to_owned()),
            ("sample_rate".to_owned(), self.sample_rate.hz().to_string()),
        ];
        if rest {
            q.push(("container".to_owned(), "none".to_owned()));
        }
        if self.mip_opt_out {
            q.push(("mip_opt_out".to_owned(), "true".to_owned()));
        }
        q
    }
}

#[derive(Debug)]
struct TtsShared {
    client: ClientOptions,
    options: TtsOptions,
    http: reqwest::Client,
}

/// The Deepgram Aura text-to-speech provider. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeepgramTts {
    shared: Arc<TtsShared>,
}

impl DeepgramTts {
    /// A provider with `client` and `options`.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] when the options would be refused by Deepgram.
    pub fn new(client: ClientOptions, options: TtsOptions) -> Result<Self, ConfigError> {
        options.validate()?;
        Ok(Self {
            shared: Arc::new(TtsShared {
                client,
                options,
                http: reqwest::Client::new(),
            }),
        })
    }

    /// A provider from `DEEPGRAM_API_KEY` (and `DEEPGRAM_BASE_URL`) with the default options.
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when the key is unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(ClientOptions::from_env()?, TtsOptions::default())
    }

    /// The options.
    pub fn options(&self) -> &TtsOptions {
        &self.shared.options
    }
}

/// Turns PCM16 bytes into frames, carrying an odd byte to the next chunk, holding the last frame back so it can be
/// marked final.
#[derive(Debug)]
struct Framer {
    rate: SampleRate,
    carry: Option<u8>,
}

impl Framer {
    fn frame(&mut self, bytes: &[u8]) -> Result<Option<AudioFrame>, TtsError> {
        let mut buf = Vec::with_capacity(bytes.len() + 1);
        if let Some(b) = self.carry.take() {
            buf.push(b);
        }
        buf.extend_from_slice(bytes);
        if buf.len() % 2 == 1 {
            self.carry = buf.pop();
        }
        if buf.is_empty() {
            return Ok(None);
        }
        AudioFrame::from_le_bytes(&buf, self.rate, 1)
            .map(Some)
            .map_err(|e| TtsError::InvalidAudio {
                reason: e.to_string(),
            })
    }

    /// Checks that no half sample is left at the end of a segment.
    fn finish(&mut self) -> Result<(), TtsError> {
        match self.carry.take() {
            Some(_) => Err(TtsError::InvalidAudio {
                reason: "the audio ended in the middle of a 16-bit sample".to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// The empty frame that closes a segment whose audio was all delivered.
fn empty_frame(rate: SampleRate) -> Result<AudioFrame, TtsError> {
    AudioFrame::new(Vec::new(), rate, 1).map_err(|e| TtsError::InvalidAudio {
        reason: e.to_string(),
    })
}

#[async_trait]
impl Tts for DeepgramTts {
    fn label(&self) -> &str {
        TTS_LABEL
    }

    fn model(&self) -> &str {
        &self.shared.options.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        let mut c = TtsCapabilities::default();
        c.streaming = true;
        c.aligned_transcript = false;
        c
    }

    fn sample_rate(&self) -> SampleRate {
        self.shared.options.sample_rate
    }

    async fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError> {
        if text.trim().is_empty() {
            return Err(TtsError::InvalidRequest {
                reason: "the text is empty".to_owned(),
            });
        }
        let shared = self.shared.clone();
        let url = with_query(
            &shared.client.http_url("/v1/speak"),
            &shared.options.query(true),
        );
        let body = Bytes::from(serde_json::json!({ "text": text }).to_string());
        let conn = options.conn_options;
        let response = conn
            .retry("synthesize", |_attempt| {
                let (shared, url, body) = (&shared, url.clone(), body.clone());
                async move {
                    let send = async {
                        let resp = shared
                            .http
                            .post(&url)
                            .header(http::header::AUTHORIZATION, shared.client.authorization())
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(body)
                            .send()
                            .await
                            .map_err(|e| net::reqwest_error(&e))?;
                        let status = resp.status().as_u16();
                        if !(200..300).contains(&status) {
                            let headers = resp.headers().clone();
                            let bytes = resp.bytes().await.unwrap_or_default();
                            return Err(net::status_error(status, &headers, &bytes));
                        }
                        Ok(resp)
                    };
                    conn.run_with_timeout(send).await?.map_err(TtsError::Api)
                }
            })
            .await?;
        let request_id = response
            .headers()
            .get(net::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let audio = rest_audio(response, request_id, shared.options.sample_rate);
        Ok(TtsAudioStream::new(TTS_LABEL, text, audio))
    }

    fn stream(&self, options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        let (stream, driver) = TtsStream::channel(TTS_LABEL);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TtsError::Unsupported {
            label: TTS_LABEL.to_owned(),
            operation: "streaming outside a tokio runtime",
        })?;
        runtime.spawn(run_stream(
            driver,
            self.shared.clone(),
            options.conn_options,
        ));
        Ok(stream)
    }
}

/// The body of a `POST /v1/speak` as frames, the last one final.
fn rest_audio(
    response: reqwest::Response,
    request_id: String,
    rate: SampleRate,
) -> impl Stream<Item = Result<SynthesizedAudio, TtsError>> + Send + 'static {
    struct St {
        body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        framer: Framer,
        held: Option<AudioFrame>,
        done: bool,
        request_id: String,
    }
    let st = St {
        body: response.bytes_stream().boxed(),
        framer: Framer { rate, carry: None },
        held: None,
        done: false,
        request_id,
    };
    futures::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.body.next().await {
                Some(Ok(bytes)) => match st.framer.frame(&bytes) {
                    Ok(Some(frame)) => {
                        if let Some(prev) = st.held.replace(frame) {
                            let chunk = SynthesizedAudio::new(
                                st.request_id.clone(),
                                st.request_id.clone(),
                                prev,
                            );
                            return Some((Ok(chunk), st));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                },
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(TtsError::Api(net::reqwest_error(&e))), st));
                }
                None => {
                    st.done = true;
                    if let Err(e) = st.framer.finish() {
                        return Some((Err(e), st));
                    }
                    let last = match st.held.take() {
                        Some(f) => f,
                        None => match empty_frame(rate) {
                            Ok(f) => f,
                            Err(e) => return Some((Err(e), st)),
                        },
                    };
                    let chunk =
                        SynthesizedAudio::new(st.request_id.clone(), st.request_id.clone(), last)
                            .with_final(true);
                    return Some((Ok(chunk), st));
                }
            }
        }
    })
}

/// A server text message of the speak socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum SpeakMessage {
    Metadata {
        #[serde(default)]
        request_id: Option<String>,
    },
    Flushed {},
    Cleared {},
    Warning {
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        code: Option<String>,
    },
    #[serde(other)]
    Other,
}

/// Segments flushed together: audio goes to the first id.
#[derive(Debug)]
struct Group {
    id: String,
    held: Option<AudioFrame>,
}

struct SpeakTask {
    shared: Arc<TtsShared>,
    input: mpsc::Receiver<TtsInput>,
    events: mpsc::Sender<Result<SynthesizedAudio, TtsError>>,
    request_id: String,
    next_segment: u64,
    /// The segment receiving text (not flushed yet).
    open: Option<String>,
    /// Segments flushed by the caller whose `Flush` waits for the window.
    waiting: Vec<String>,
    /// Flushes sent, their audio pending or arriving.
    inflight: VecDeque<Group>,
    flush_times: VecDeque<Instant>,
    framer: Framer,
    ending: bool,
}

async fn run_stream(driver: TtsStreamDriver, shared: Arc<TtsShared>, conn: ApiConnectOptions) {
    let (input, events) = driver.into_parts();
    let url = with_query(
        &shared.client.ws_url("/v1/speak"),
        &shared.options.query(false),
    );
    let client = shared.client.clone();
    let connected = tokio::select! {
        r = conn.retry("connect to the Deepgram TTS stream", |_| {
            let (client, url) = (&client, url.clone());
            async move { net::connect(client, &url, conn.timeout).await.map_err(TtsError::Api) }
        }) => r,
        () = events.closed() => return,
    };
    let (socket, request_id) = match connected {
        Ok(c) => c,
        Err(e) => {
            let _ = events.send(Err(e)).await;
            return;
        }
    };
    let rate = shared.options.sample_rate;
    let mut task = SpeakTask {
        shared,
        input,
        events,
        request_id: request_id.unwrap_or_default(),
        next_segment: 0,
        open: None,
        waiting: Vec::new(),
        inflight: VecDeque::new(),
        flush_times: VecDeque::new(),
        framer: Framer { rate, carry: None },
        ending: false,
    };
    if let Err(e) = task.run(socket).await {
        let _ = task.events.send(Err(e)).await;
    }
}

impl SpeakTask {
    async fn emit(&self, chunk: SynthesizedAudio) -> bool {
        self.events.send(Ok(chunk)).await.is_ok()
    }

    /// When the flush window allows the next `Flush`.
    ///
    /// The window is counted from when each `Flush` was sent, plus a margin (a tenth of the window, at most 2 s):
    /// Deepgram counts from when it received them, and two messages do not travel equally fast.
    fn next_flush_slot(&mut self) -> Instant {
        let now = Instant::now();
        let window = self.shared.options.flush_window;
        let window = window + (window / 10).min(Duration::from_secs(2));
        while self
            .flush_times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.flush_times.pop_front();
        }
        if self.flush_times.len() < self.shared.options.flush_limit {
            now
        } else {
            self.flush_times.front().map_or(now, |t| *t + window)
        }
    }

    /// Sends one `Flush` for every waiting segment when the window allows.
    async fn try_flush(&mut self, socket: &mut Socket) -> Result<(), TtsError> {
        if self.waiting.is_empty() || self.next_flush_slot() > Instant::now() {
            return Ok(());
        }
        send(socket, "Flush", None).await?;
        self.flush_times.push_back(Instant::now());
        let ids = std::mem::take(&mut self.waiting);
        if ids.len() > 1 {
            tracing::debug!(
                segments = ids.len(),
                "Deepgram TTS: flush limit reached, segments coalesced"
            );
        }
        if let Some(first) = ids.into_iter().next() {
            self.inflight.push_back(Group {
                id: first,
                held: None,
            });
        }
        Ok(())
    }

    /// The front group is complete: its held chunk (or an empty one) goes out as final.
    async fn complete_front(&mut self) -> Result<bool, TtsError> {
        let Some(group) = self.inflight.pop_front() else {
            return Ok(true);
        };
        self.framer.finish()?;
        let frame = match group.held {
            Some(f) => f,
            None => empty_frame(self.shared.options.sample_rate)?,
        };
        let chunk =
            SynthesizedAudio::new(self.request_id.clone(), group.id, frame).with_final(true);
        Ok(self.emit(chunk).await)
    }

    async fn on_audio(&mut self, bytes: &[u8]) -> Result<bool, TtsError> {
        let Some(frame) = self.framer.frame(bytes)? else {
            return Ok(true);
        };
        let Some(group) = self.inflight.front_mut() else {
            tracing::warn!("Deepgram TTS: audio without a pending flush, dropped");
            return Ok(true);
        };
        let Some(prev) = group.held.replace(frame) else {
            return Ok(true);
        };
        let chunk = SynthesizedAudio::new(self.request_id.clone(), group.id.clone(), prev);
        Ok(self.emit(chunk).await)
    }

    fn done(&self) -> bool {
        self.ending && self.open.is_none() && self.waiting.is_empty() && self.inflight.is_empty()
    }

    async fn run(&mut self, mut socket: Socket) -> Result<(), TtsError> {
        loop {
            let slot = if self.waiting.is_empty() {
                None
            } else {
                Some(self.next_flush_slot())
            };
            tokio::select! {
                msg = socket.next() => {
                    match msg {
                        Some(Ok(Message::Binary(b))) => {
                            if !self.on_audio(&b).await? {
                                return Ok(());
                            }
                        }
                        Some(Ok(Message::Text(t))) => {
                            let m: SpeakMessage = serde_json::from_str(t.as_str()).map_err(|e| {
                                TtsError::Api(ApiError::new(format!("malformed message from Deepgram: {e}")))
                            })?;
                            match m {
                                SpeakMessage::Metadata { request_id } => {
                                    if let Some(id) = request_id {
                                        self.request_id = id;
                                    }
                                }
                                SpeakMessage::Flushed {} => {
                                    if !self.complete_front().await? {
                                        return Ok(());
                                    }
                                    if self.done() {
                                        let _ = socket.close(None).await;
                                        return Ok(());
                                    }
                                }
                                SpeakMessage::Warning { description, code } => {
                                    tracing::warn!(
                                        code = code.as_deref().unwrap_or(""),
                                        description = description.as_deref().unwrap_or(""),
                                        "Deepgram TTS warning"
                                    );
                                }
                                SpeakMessage::Cleared {} | SpeakMessage::Other => {}
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let normal = frame.as_ref().is_none_or(|f| f.code == CloseCode::Normal);
                            if self.ending && normal {
                                while !self.inflight.is_empty() {
                                    if !self.complete_front().await? {
                                        return Ok(());
                                    }
                                }
                                return Ok(());
                            }
                            let reason = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                            return Err(TtsError::Api(ApiError::connection(format!(
                                "Deepgram closed the TTS stream: {reason}"
                            ))));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            return Err(TtsError::Api(ApiError::connection(format!(
                                "the Deepgram TTS socket broke: {e}"
                            ))));
                        }
                        None => {
                            return Err(TtsError::Api(ApiError::connection(
                                "the Deepgram TTS socket ended without a close frame",
                            )));
                        }
                    }
                }
                item = self.input.recv(), if !self.ending => {
                    match item {
                        Some(TtsInput::Text(text)) => {
                            if text.is_empty() {
                                continue;
                            }
                            if self.open.is_none() {
                                self.open = Some(format!("{}-{}", self.request_id, self.next_segment));
                                self.next_segment += 1;
                            }
                            send(&mut socket, "Speak", Some(&text)).await?;
                        }
                        Some(TtsInput::Flush) => {
                            if let Some(id) = self.open.take() {
                                self.waiting.push(id);
                                self.try_flush(&mut socket).await?;
                            }
                        }
                        Some(TtsInput::EndInput) => {
                            self.ending = true;
                            if let Some(id) = self.open.take() {
                                self.waiting.push(id);
                            }
                            self.try_flush(&mut socket).await?;
                            if !self.waiting.is_empty() {
                                // `Close` generates the buffered text; its audio completes the waiting segments.
                                let ids = std::mem::take(&mut self.waiting);
                                if let Some(first) = ids.into_iter().next() {
                                    self.inflight.push_back(Group { id: first, held: None });
                                }
                            }
                            if self.inflight.is_empty() {
                                let _ = socket.close(None).await;
                                return Ok(());
                            }
                            send(&mut socket, "Close", None).await?;
                        }
                        Some(_) => {}
                        None => {
                            // The caller dropped the stream: drop what is buffered and leave.
                            let _ = send(&mut socket, "Clear", None).await;
                            let _ = socket.close(None).await;
                            return Ok(());
                        }
                    }
                }
                () = async { if let Some(s) = slot { sleep_until(s).await } else { std::future::pending().await } } => {
                    self.try_flush(&mut socket).await?;
                }
                () = self.events.closed() => {
                    let _ = send(&mut socket, "Clear", None).await;
                    let _ = socket.close(None).await;
                    return Ok(());
                }
            }
        }
    }
}

async fn send(socket: &mut Socket, kind: &str, text: Option<&str>) -> Result<(), TtsError> {
    let msg = match text {
        Some(t) => serde_json::json!({ "type": kind, "text": t }),
        None => serde_json::json!({ "type": kind }),
    };
    socket
        .send(Message::text(msg.to_string()))
        .await
        .map_err(|e| {
            TtsError::Api(ApiError::connection(format!(
                "the Deepgram TTS socket broke: {e}"
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_carries_odd_bytes() {
        let mut f = Framer {
            rate: SampleRate::HZ_24000,
            carry: None,
        };
        assert!(f.frame(&[1]).unwrap().is_none());
        let fr = f.frame(&[0, 2, 0]).unwrap().unwrap();
        assert_eq!(fr.data(), &[1, 2]);
        assert!(f.finish().is_ok());
        let _ = f.frame(&[1, 0, 3]).unwrap();
        assert!(matches!(f.finish(), Err(TtsError::InvalidAudio { .. })));
    }

    #[test]
    fn stream_outside_a_runtime_is_an_error_not_a_panic() {
        let tts = DeepgramTts::new(ClientOptions::new("k"), TtsOptions::default()).unwrap();
        assert!(matches!(
            tts.stream(&SynthesizeOptions::default()),
            Err(TtsError::Unsupported { .. })
        ));
    }

    #[test]
    fn options_are_validated() {
        let bad = TtsOptions::default().with_sample_rate(SampleRate::HZ_22050);
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::InvalidOption {
                name: "sample_rate",
                ..
            })
        ));
        assert!(TtsOptions::default().validate().is_ok());
        let q = TtsOptions::default().query(true);
        assert!(q.contains(&("container".to_owned(), "none".to_owned())));
    }
}
