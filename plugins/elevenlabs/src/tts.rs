//! [`ElevenLabsTts`]: streaming synthesis over the shared multi-context socket, one-shot synthesis over REST.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::ApiError;
use agents_core::tts::TimedText;
use agents_core::tts::{
    SynthesizeOptions, SynthesizedAudio, Tts, TtsAudioStream, TtsCapabilities, TtsError, TtsInput,
    TtsStream, TtsStreamDriver,
};
use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{Mutex, mpsc};

use crate::connection::{Connection, CtxEvent};
use crate::options::{ConfigError, TtsOptions};
use crate::protocol::{self, WordAligner, WordChunker};

const LABEL: &str = "elevenlabs.TTS";

/// ElevenLabs text-to-speech: [`Tts::stream`] over the multi-context WebSocket (one socket per TTS, one context
/// per segment), [`Tts::synthesize`] over the REST streaming endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ElevenLabsTts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: TtsOptions,
    http: reqwest::Client,
    connection: Mutex<Option<Connection>>,
    connects: AtomicU64,
    next_id: AtomicU64,
}

impl ElevenLabsTts {
    /// A TTS with `options`.
    ///
    /// # Errors
    /// [`ConfigError`] when a setting is outside what the API accepts (see [`TtsOptions::validate`]).
    pub fn new(options: TtsOptions) -> Result<Self, ConfigError> {
        options.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                opts: options,
                http: reqwest::Client::new(),
                connection: Mutex::new(None),
                connects: AtomicU64::new(0),
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// A TTS from the environment (see [`TtsOptions::from_env`]).
    ///
    /// # Errors
    /// [`ConfigError::MissingApiKey`] when no key variable is set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(TtsOptions::from_env()?)
    }

    /// The options.
    pub fn options(&self) -> &TtsOptions {
        &self.inner.opts
    }

    /// The voices of the account (`GET /v1/voices`), with the retries of `TtsOptions::conn`.
    ///
    /// # Errors
    /// [`TtsError::Api`] for HTTP and connection failures and an answer of an unknown shape.
    pub async fn list_voices(&self) -> Result<Vec<Voice>, TtsError> {
        let inner = &self.inner;
        let url = inner.opts.http_url("v1/voices");
        let key = inner
            .opts
            .api_key
            .as_ref()
            .map(|k| k.expose().to_owned())
            .unwrap_or_default();
        let (url, key) = (&url, &key);
        let response = inner
            .opts
            .conn
            .retry("list ElevenLabs voices", |attempt| async move {
                let send = inner.http.get(url).header("xi-api-key", key).send();
                let response = send_with_timeout(send, attempt.timeout).await?;
                check_status(response).await
            })
            .await?;
        let bytes = response.bytes().await.map_err(|e| {
            let e = e.without_url();
            TtsError::Api(
                ApiError::connection(format!("cannot read the voices: {e}")).with_source(e),
            )
        })?;
        let list: VoiceList = serde_json::from_slice(&bytes).map_err(|e| {
            TtsError::Api(
                ApiError::new(format!(
                    "ElevenLabs sent a voice list of an unknown shape: {e}"
                ))
                .with_retryable(false),
            )
        })?;
        Ok(list.voices)
    }

    /// WebSocket connections opened so far (one, unless the socket dropped or idled out).
    pub fn connections_opened(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn new_id(&self, kind: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{kind}_{nanos:08x}{n:04x}")
    }

    /// The shared socket, opened (or reopened) on demand.
    async fn connection(&self) -> Result<Connection, ApiError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        let c = Connection::connect(&self.opts).await?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        *slot = Some(c.clone());
        Ok(c)
    }

    fn rate(&self) -> SampleRate {
        self.opts.output_format.sample_rate()
    }
}

#[async_trait]
impl Tts for ElevenLabsTts {
    fn label(&self) -> &str {
        LABEL
    }

    fn model(&self) -> &str {
        &self.inner.opts.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        let mut c = TtsCapabilities::default();
        c.streaming = true;
        c.aligned_transcript = self.inner.opts.sync_alignment;
        c
    }

    fn sample_rate(&self) -> SampleRate {
        self.inner.rate()
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
        let response = rest_request(&self.inner, text, options).await?;
        let (tx, mut rx) = mpsc::channel(32);
        let inner = Arc::clone(&self.inner);
        let request_id = inner.new_id("req");
        tokio::spawn(read_rest_body(inner, response, request_id, tx));
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(TtsAudioStream::new(LABEL, text, stream))
    }

    fn stream(&self, _options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        let (stream, driver) = TtsStream::channel(LABEL);
        tokio::spawn(run_stream(Arc::clone(&self.inner), driver));
        Ok(stream)
    }

    async fn aclose(&self) {
        let conn = self.inner.connection.lock().await.take();
        if let Some(c) = conn {
            c.shutdown().await;
        }
    }
}

/// A voice of the account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Voice {
    /// The id to pass to [`TtsOptions::with_voice`].
    pub voice_id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// `premade`, `cloned`, `generated`, `professional`...
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VoiceList {
    voices: Vec<Voice>,
}

// ---------------------------------------------------------------------------------------------------------------
// Streaming

/// The context of the segment being synthesized.
struct Active {
    id: String,
    conn: Connection,
    events: mpsc::Receiver<CtxEvent>,
    chunker: WordChunker,
    /// Text messages sent so far, replayed if the socket dies before any audio.
    sent: Vec<String>,
    flushed: bool,
    samples: u64,
    carry: Option<u8>,
    aligner: WordAligner,
    replayed: bool,
}

impl Active {
    async fn push(&mut self, text: &str) {
        if let Some(chunk) = self.chunker.push(text) {
            self.send_text(chunk).await;
        }
    }

    async fn send_text(&mut self, chunk: String) {
        self.conn
            .send(&self.id, protocol::text_message(&self.id, &chunk))
            .await;
        self.sent.push(chunk);
    }

    /// Sends the rest of the text, `flush`, then `close_context`: the server finishes the audio and answers
    /// `isFinal`.
    async fn flush(&mut self) {
        if let Some(rest) = self.chunker.finish() {
            self.send_text(rest).await;
        }
        self.conn
            .send(&self.id, protocol::flush_message(&self.id))
            .await;
        self.conn.close_context(&self.id).await;
        self.flushed = true;
    }
}

/// Text of a later segment, waiting for the current one to finish.
struct Pending {
    text: String,
    flushed: bool,
}

enum Step {
    Continue,
    End,
}

async fn run_stream(inner: Arc<Inner>, driver: TtsStreamDriver) {
    let request_id = inner.new_id("req");
    let (mut input, out) = driver.into_parts();
    let mut active: Option<Active> = None;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut input_done = false;
    loop {
        if out.is_closed() {
            // Dropped while idle or connecting: nothing more to open.
            if let Some(a) = active.take() {
                a.conn.close_context(&a.id).await;
            }
            return;
        }
        if active.is_none() {
            match start_next(&inner, &mut pending).await {
                Ok(a) => active = a,
                Err(e) => {
                    let _ = out.send(Err(TtsError::Api(e))).await;
                    return;
                }
            }
        }
        if input_done && active.is_none() && pending.is_empty() {
            return;
        }
        let step = tokio::select! {
            () = out.closed() => Step::End,
            item = input.recv(), if !input_done => match item {
                None => Step::End,
                Some(TtsInput::Text(t)) => {
                    match active.as_mut() {
                        Some(a) if !a.flushed => a.push(&t).await,
                        _ => match pending.back_mut() {
                            Some(p) if !p.flushed => p.text.push_str(&t),
                            _ if !t.trim().is_empty() => pending.push_back(Pending { text: t, flushed: false }),
                            _ => {}
                        },
                    }
                    Step::Continue
                }
                Some(TtsInput::Flush) => {
                    flush(&mut active, &mut pending).await;
                    Step::Continue
                }
                Some(TtsInput::EndInput) => {
                    flush(&mut active, &mut pending).await;
                    input_done = true;
                    Step::Continue
                }
                Some(_) => Step::Continue,
            },
            event = next_event(&mut active) => {
                match on_event(&inner, &request_id, &mut active, event, &out).await {
                    Ok(step) => step,
                    Err(e) => {
                        let _ = out.send(Err(e)).await;
                        Step::End
                    }
                }
            }
        };
        if let Step::End = step {
            // Barge-in (the stream was dropped) or a failure: stop the context, keep the socket.
            if let Some(a) = active.take() {
                a.conn.close_context(&a.id).await;
            }
            return;
        }
    }
}

async fn flush(active: &mut Option<Active>, pending: &mut VecDeque<Pending>) {
    match active.as_mut() {
        Some(a) if !a.flushed => a.flush().await,
        _ => {
            if let Some(p) = pending.back_mut().filter(|p| !p.flushed) {
                p.flushed = true;
            }
        }
    }
}

async fn next_event(active: &mut Option<Active>) -> Option<CtxEvent> {
    match active.as_mut() {
        Some(a) => a.events.recv().await,
        None => std::future::pending().await,
    }
}

/// Opens the context of the next waiting segment that has text.
async fn start_next(
    inner: &Arc<Inner>,
    pending: &mut VecDeque<Pending>,
) -> Result<Option<Active>, ApiError> {
    while let Some(p) = pending.front() {
        if p.text.trim().is_empty() {
            if p.flushed {
                pending.pop_front();
                continue;
            }
            return Ok(None);
        }
        let Some(p) = pending.pop_front() else {
            break;
        };
        let id = inner.new_id("ctx");
        let conn = inner.connection().await?;
        let events = conn
            .open(&id, protocol::init_message(&inner.opts, &id))
            .await?;
        let mut a = Active {
            id,
            conn,
            events,
            chunker: WordChunker::default(),
            sent: Vec::new(),
            flushed: false,
            samples: 0,
            carry: None,
            aligner: WordAligner::default(),
            replayed: false,
        };
        a.push(&p.text).await;
        if p.flushed {
            a.flush().await;
        }
        return Ok(Some(a));
    }
    Ok(None)
}

async fn on_event(
    inner: &Arc<Inner>,
    request_id: &str,
    active: &mut Option<Active>,
    event: Option<CtxEvent>,
    out: &mpsc::Sender<Result<SynthesizedAudio, TtsError>>,
) -> Result<Step, TtsError> {
    let Some(a) = active.as_mut() else {
        return Ok(Step::Continue);
    };
    let rate = inner.rate();
    let event = event.unwrap_or_else(|| {
        CtxEvent::Error(ApiError::connection(
            "the ElevenLabs connection closed mid-utterance",
        ))
    });
    match event {
        CtxEvent::Audio { audio, alignment } => {
            let frame = protocol::decode_pcm(&audio, &mut a.carry, rate)
                .map_err(|reason| TtsError::InvalidAudio { reason })?;
            let offset = samples_to_duration(a.samples, rate);
            let words = match alignment {
                Some(al) => a
                    .aligner
                    .push(&al.chars, &al.starts_ms, &al.durations_ms, offset),
                None => Vec::new(),
            };
            a.samples += frame.samples_per_channel() as u64;
            if frame.is_empty() && words.is_empty() {
                return Ok(Step::Continue);
            }
            let chunk =
                SynthesizedAudio::new(request_id, a.id.clone(), frame).with_timed_text(words);
            Ok(send(out, chunk).await)
        }
        CtxEvent::Final => {
            let words: Vec<TimedText> = a.aligner.finish().into_iter().collect();
            let frame =
                protocol::empty_frame(rate).map_err(|reason| TtsError::InvalidAudio { reason })?;
            let chunk = SynthesizedAudio::new(request_id, a.id.clone(), frame)
                .with_final(true)
                .with_timed_text(words);
            *active = None;
            Ok(send(out, chunk).await)
        }
        CtxEvent::Error(e) => {
            // The socket died before this segment produced audio: replay it once on a fresh socket. Once audio
            // was delivered a replay would repeat it, so the error goes to the caller (retryable).
            if e.is_connection() && a.samples == 0 && !a.replayed {
                tracing::info!(context_id = %a.id, error = %e, "elevenlabs socket lost before audio, replaying");
                let conn = inner.connection().await.map_err(TtsError::Api)?;
                a.events = conn
                    .open(&a.id, protocol::init_message(&inner.opts, &a.id))
                    .await
                    .map_err(TtsError::Api)?;
                a.conn = conn;
                a.replayed = true;
                for chunk in &a.sent {
                    a.conn
                        .send(&a.id, protocol::text_message(&a.id, chunk))
                        .await;
                }
                if a.flushed {
                    a.conn.send(&a.id, protocol::flush_message(&a.id)).await;
                    a.conn.close_context(&a.id).await;
                }
                return Ok(Step::Continue);
            }
            *active = None;
            Err(TtsError::Api(e))
        }
    }
}

async fn send(
    out: &mpsc::Sender<Result<SynthesizedAudio, TtsError>>,
    chunk: SynthesizedAudio,
) -> Step {
    match out.send(Ok(chunk)).await {
        Ok(()) => Step::Continue,
        Err(_) => Step::End,
    }
}

fn samples_to_duration(samples: u64, rate: SampleRate) -> Duration {
    let hz = u64::from(rate.hz());
    Duration::from_secs(samples / hz) + Duration::from_nanos((samples % hz) * 1_000_000_000 / hz)
}

// ---------------------------------------------------------------------------------------------------------------
// REST

async fn rest_request(
    inner: &Inner,
    text: &str,
    options: &SynthesizeOptions,
) -> Result<reqwest::Response, TtsError> {
    let opts = &inner.opts;
    let mut body = serde_json::json!({
        "text": text,
        "model_id": opts.model,
        "apply_text_normalization": opts.text_normalization.as_str(),
    });
    if let Some(vs) = &opts.voice_settings {
        body["voice_settings"] = serde_json::json!(vs);
    }
    if let Some(lang) = &opts.language {
        body["language_code"] = serde_json::json!(lang);
    }
    let body = body.to_string();
    let url = opts.rest_stream_url();
    let key = opts
        .api_key
        .as_ref()
        .map(|k| k.expose().to_owned())
        .unwrap_or_default();
    let (body, url, key) = (&body, &url, &key);
    options
        .conn_options
        .retry("synthesize with ElevenLabs", |attempt| async move {
            let send = inner
                .http
                .post(url)
                .header("xi-api-key", key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send();
            let response = send_with_timeout(send, attempt.timeout).await?;
            check_status(response).await
        })
        .await
}

/// Sends a request, bounding the wait for the response head by `timeout`.
async fn send_with_timeout(
    send: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    timeout: Duration,
) -> Result<reqwest::Response, TtsError> {
    match tokio::time::timeout(timeout, send).await {
        Err(_) => Err(TtsError::Api(ApiError::timeout_default())),
        Ok(Err(e)) if e.is_timeout() => Err(TtsError::Api(ApiError::timeout_default())),
        Ok(Err(e)) => {
            let e = e.without_url();
            Err(TtsError::Api(
                ApiError::connection(format!("cannot reach ElevenLabs: {e}")).with_source(e),
            ))
        }
        Ok(Ok(r)) => Ok(r),
    }
}

/// A success response, or the [`ApiError`] of its status and body.
async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, TtsError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header("request-id").or_else(|| header("x-request-id"));
    let retry_after = header("retry-after").and_then(|v: String| {
        agents_core::retry::parse_retry_after(&v, std::time::SystemTime::now())
    });
    let bytes = response.bytes().await.unwrap_or_default();
    Err(TtsError::Api(ApiError::from_http_response(
        status,
        &bytes,
        request_id.as_deref(),
        retry_after,
    )))
}

/// One line of `/stream/with-timestamps`.
#[derive(Debug, Deserialize)]
struct TimestampChunk {
    #[serde(default)]
    audio_base64: Option<String>,
    #[serde(default)]
    alignment: Option<RestAlignment>,
    #[serde(default)]
    normalized_alignment: Option<RestAlignment>,
}

#[derive(Debug, Deserialize)]
struct RestAlignment {
    #[serde(default)]
    characters: Vec<String>,
    #[serde(default)]
    character_start_times_seconds: Vec<f64>,
    #[serde(default)]
    character_end_times_seconds: Vec<f64>,
}

struct RestState {
    rate: SampleRate,
    request_id: String,
    segment_id: String,
    carry: Option<u8>,
    samples: u64,
    aligner: WordAligner,
    last_end: Duration,
}

impl RestState {
    fn chunk(&mut self, bytes: &[u8], words: Vec<TimedText>) -> Result<SynthesizedAudio, TtsError> {
        let frame = protocol::pcm_frame(bytes, &mut self.carry, self.rate)
            .map_err(|reason| TtsError::InvalidAudio { reason })?;
        self.samples += frame.samples_per_channel() as u64;
        Ok(SynthesizedAudio::new(&self.request_id, &self.segment_id, frame).with_timed_text(words))
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<SynthesizedAudio>, TtsError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let c: TimestampChunk =
            serde_json::from_slice(line).map_err(|e| TtsError::InvalidAudio {
                reason: format!("malformed timestamps chunk from ElevenLabs: {e}"),
            })?;
        let audio = match c.audio_base64.as_deref() {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| TtsError::InvalidAudio {
                    reason: format!("audio is not valid base64: {e}"),
                })?,
            None => Vec::new(),
        };
        let words = match c.alignment.or(c.normalized_alignment) {
            Some(al) => {
                let offset = samples_to_duration(self.samples, self.rate);
                let mut starts: Vec<Duration> = al
                    .character_start_times_seconds
                    .iter()
                    .map(|s| protocol::secs(*s))
                    .collect();
                let mut ends: Vec<Duration> = al
                    .character_end_times_seconds
                    .iter()
                    .map(|s| protocol::secs(*s))
                    .collect();
                // Times run from the start of the request's audio (as Pipecat reads them); a chunk whose times
                // restart below the audio already received is taken as chunk-relative and offset.
                if starts.first().is_some_and(|s| {
                    *s + Duration::from_millis(1) < self.last_end && !offset.is_zero()
                }) {
                    starts.iter_mut().for_each(|s| *s += offset);
                    ends.iter_mut().for_each(|e| *e += offset);
                }
                if let Some(e) = ends.iter().max() {
                    self.last_end = self.last_end.max(*e);
                }
                self.aligner.push_absolute(&al.characters, &starts, &ends)
            }
            None => Vec::new(),
        };
        if audio.is_empty() && words.is_empty() {
            return Ok(None);
        }
        self.chunk(&audio, words).map(Some)
    }
}

async fn read_rest_body(
    inner: Arc<Inner>,
    response: reqwest::Response,
    request_id: String,
    tx: mpsc::Sender<Result<SynthesizedAudio, TtsError>>,
) {
    let timestamps = inner.opts.sync_alignment;
    let mut state = RestState {
        rate: inner.rate(),
        segment_id: request_id.clone(),
        request_id,
        carry: None,
        samples: 0,
        aligner: WordAligner::default(),
        last_end: Duration::ZERO,
    };
    let mut body = response.bytes_stream();
    let mut lines: Vec<u8> = Vec::new();
    while let Some(part) = body.next().await {
        let bytes = match part {
            Ok(b) => b,
            Err(e) => {
                let e = ApiError::connection(format!(
                    "the ElevenLabs response broke off: {}",
                    e.without_url()
                ));
                let _ = tx.send(Err(TtsError::Api(e))).await;
                return;
            }
        };
        let chunks: Vec<Result<Option<SynthesizedAudio>, TtsError>> = if timestamps {
            lines.extend_from_slice(&bytes);
            let mut done = Vec::new();
            while let Some(pos) = lines.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = lines.drain(..=pos).collect();
                done.push(state.line(&line));
            }
            done
        } else {
            vec![state.chunk(&bytes, Vec::new()).map(Some)]
        };
        for c in chunks {
            match c {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
    if timestamps {
        match state.line(&lines) {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
    let words: Vec<TimedText> = state.aligner.finish().into_iter().collect();
    match protocol::empty_frame(state.rate) {
        Ok(frame) => {
            let last = SynthesizedAudio::new(&state.request_id, &state.segment_id, frame)
                .with_final(true)
                .with_timed_text(words);
            let _ = tx.send(Ok(last)).await;
        }
        Err(reason) => {
            let _ = tx.send(Err(TtsError::InvalidAudio { reason })).await;
        }
    }
}
