//! ElevenLabs emulator: the multi-context TTS WebSocket (`/v1/text-to-speech/{voice_id}/multi-stream-input`), the
//! REST streaming endpoints (`POST /v1/text-to-speech/{voice_id}/stream` and `/stream/with-timestamps`) and the
//! voice list (`GET /v1/voices`).
//!
//! Audio is deterministic: [`ElevenLabsConfig::ms_per_char`] of PCM16 per character at the requested
//! `output_format` rate, sent in chunks of [`ElevenLabsConfig::chars_per_chunk`] characters with character
//! alignment (times relative to the chunk, as the API documents). The emulator checks what the client sends and
//! records every deviation in [`ElevenLabsEmulator::violations`]:
//!
//! - the `xi-api-key` header (401 with the provider's body otherwise), `model_id`, `output_format` (PCM rates
//!   only), `inactivity_timeout` (1..=180), the boolean query flags;
//! - a context's first message is `{"text": " "}` (voice settings and generation config allowed there only: later
//!   they close the socket with 1008, as the service does); text chunks end with a space; every message carries a
//!   `context_id` (except the context-less keep-alive `{"text": ""}`); no message for a closed or unknown context; at most 5 open contexts
//!   (`max_active_conversations`).
//!
//! Generation follows `chunk_length_schedule` (default `[120, 160, 250, 290]`) unless `auto_mode` is on (then
//! sentence ends trigger it); `flush` generates the buffer; `close_context` answers `{"isFinal": true}` after the
//! flushed audio, or at once, discarding the rest, for a context that was not flushed (barge-in); `close_socket`
//! closes with 1000. With no client message for `inactivity_timeout` the socket gets the provider's
//! `input_timeout_exceeded` error and a 1008 close. Faults are queued with [`ElevenLabsEmulator::push_fault`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::EmulatorServer;

/// The provider's idle error text (livekit/agents#218, elevenlabs/elevenlabs-docs#426).
pub const INACTIVITY_MESSAGE: &str = "Have not received a new text input within the timeout of {secs} seconds. Streaming input terminated. Please make sure to either feed the input in the timely manner, or to send the end of input text (empty string \"\") when done.";
/// The provider's error for unparseable input (elevenlabs/elevenlabs-python#167).
pub const INVALID_INPUT_MESSAGE: &str = "Could not parse input message, make sure it is a json and follows the schema outlined in protocol.";
/// The provider's error for a sixth context (livekit/agents-js#1985).
pub const MAX_CONTEXTS_MESSAGE: &str = "Maximum simultaneous contexts per WebSocket connection exceeded (5). Please close an existing context before opening a new one.";

const PCM_RATES: [u32; 5] = [8_000, 16_000, 22_050, 24_000, 44_100];

/// Time constants and identity of the emulator. Defaults are the provider's where it has one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ElevenLabsConfig {
    /// The key clients must send in `xi-api-key`.
    pub api_key: String,
    /// Audio per character of text.
    pub ms_per_char: u32,
    /// Characters per audio message.
    pub chars_per_chunk: usize,
    /// Pause between two audio messages (0 = as fast as the socket takes them).
    pub chunk_interval: Duration,
    /// Enforced idle timeout; `None` uses the client's `inactivity_timeout` query value (default 20 s).
    pub inactivity_timeout: Option<Duration>,
    /// Maximum open contexts per socket.
    pub max_contexts: usize,
}

impl Default for ElevenLabsConfig {
    fn default() -> Self {
        Self {
            api_key: "test-eleven-key".to_owned(),
            ms_per_char: 50,
            chars_per_chunk: 16,
            chunk_interval: Duration::ZERO,
            inactivity_timeout: None,
            max_contexts: 5,
        }
    }
}

impl ElevenLabsConfig {
    /// Sets the expected key.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    /// Sets the pause between audio messages.
    #[must_use]
    pub fn with_chunk_interval(mut self, d: Duration) -> Self {
        self.chunk_interval = d;
        self
    }

    /// Overrides the enforced idle timeout.
    #[must_use]
    pub fn with_inactivity_timeout(mut self, d: Duration) -> Self {
        self.inactivity_timeout = Some(d);
        self
    }

    /// Sets the audio per character.
    #[must_use]
    pub fn with_ms_per_char(mut self, ms: u32) -> Self {
        self.ms_per_char = ms;
        self
    }

    /// Sets the characters per audio message.
    #[must_use]
    pub fn with_chars_per_chunk(mut self, n: usize) -> Self {
        self.chars_per_chunk = n.max(1);
        self
    }
}

/// A misbehaviour, applied to the next connection or request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer the next upgrade or REST request with this status and JSON body (e.g. 429, 500).
    HttpStatus {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Value,
    },
    /// Drop the next socket (no close frame) after it sent this many audio messages.
    DropAfterAudio(usize),
    /// On the next socket, answer the first text message with a frame that is not JSON.
    MalformedJson,
    /// On the next socket, wait this long before the first audio message of each context.
    SlowFirstAudio(Duration),
    /// On the next socket, answer the first text message with this error (`{"message", "error", "code": 1008}`)
    /// and close 1008, as the service does for `quota_exceeded` or an invalid voice.
    SocketError {
        /// The `error` code.
        error: String,
        /// The `message`.
        message: String,
    },
}

/// What a client sent, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Received {
    /// 1-based connection number.
    pub connection: u64,
    /// The message.
    pub message: Value,
}

#[derive(Debug, Default)]
struct Log {
    connections: u64,
    violations: Vec<String>,
    received: Vec<Received>,
    queries: Vec<HashMap<String, String>>,
    rest_bodies: Vec<Value>,
    idle_closes: u64,
    auth_failures: u64,
}

#[derive(Debug)]
struct Shared {
    config: ElevenLabsConfig,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Log>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn violation(&self, v: impl Into<String>) {
        let v = v.into();
        tracing::warn!(violation = %v, "elevenlabs emulator: client violated the protocol");
        self.log().violations.push(v);
    }

    fn take_fault(&self, pick: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut q = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = q.iter().position(pick)?;
        q.remove(i)
    }
}

/// A running ElevenLabs emulator.
#[derive(Debug)]
pub struct ElevenLabsEmulator {
    server: EmulatorServer,
    shared: Arc<Shared>,
}

impl ElevenLabsEmulator {
    /// Starts an emulator with the default config.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::with_config(ElevenLabsConfig::default()).await
    }

    /// Starts an emulator with `config`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn with_config(config: ElevenLabsConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            faults: Mutex::new(VecDeque::new()),
            log: Mutex::new(Log::default()),
        });
        let router = Router::new()
            .route(
                "/v1/text-to-speech/{voice_id}/multi-stream-input",
                get(ws_handler),
            )
            .route("/v1/text-to-speech/{voice_id}/stream", post(rest_handler))
            .route(
                "/v1/text-to-speech/{voice_id}/stream/with-timestamps",
                post(rest_timestamps_handler),
            )
            .route("/v1/voices", get(voices_handler))
            .with_state(Arc::clone(&shared));
        let server = EmulatorServer::serve(router).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:<port>`: the base URL for the plugin.
    pub fn base_url(&self) -> String {
        self.server.http_url()
    }

    /// The key the emulator accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// Queues a fault.
    pub fn push_fault(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(fault);
    }

    /// WebSocket connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.log().connections
    }

    /// Protocol violations seen so far (empty for a well-behaved client).
    pub fn violations(&self) -> Vec<String> {
        self.shared.log().violations.clone()
    }

    /// Every JSON message clients sent on the sockets.
    pub fn received(&self) -> Vec<Received> {
        self.shared.log().received.clone()
    }

    /// The query parameters of every accepted socket.
    pub fn queries(&self) -> Vec<HashMap<String, String>> {
        self.shared.log().queries.clone()
    }

    /// Bodies of the REST requests.
    pub fn rest_bodies(&self) -> Vec<Value> {
        self.shared.log().rest_bodies.clone()
    }

    /// Sockets closed for inactivity.
    pub fn idle_closes(&self) -> u64 {
        self.shared.log().idle_closes
    }

    /// Requests refused with 401 (wrong or missing key).
    pub fn auth_failures(&self) -> u64 {
        self.shared.log().auth_failures
    }

    /// Stops the server (open sockets are dropped).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn error_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            ("content-type", "application/json"),
            ("request-id", "emu-req"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn unauthorized() -> Response {
    error_response(
        401,
        json!({"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}),
    )
}

fn validation_error(loc: &str, msg: &str) -> Response {
    error_response(
        422,
        json!({"detail": [{"loc": ["query", loc], "msg": msg, "type": "value_error"}]}),
    )
}

/// Applies a queued HTTP fault, then checks the key.
fn check_auth(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if let Some(Fault::HttpStatus { status, body }) =
        shared.take_fault(|f| matches!(f, Fault::HttpStatus { .. }))
    {
        return Err(Box::new(error_response(status, body)));
    }
    let key = headers.get("xi-api-key").and_then(|v| v.to_str().ok());
    if key != Some(shared.config.api_key.as_str()) {
        if key.is_none() {
            shared.violation("no xi-api-key header");
        }
        shared.log().auth_failures += 1;
        return Err(Box::new(unauthorized()));
    }
    Ok(())
}

/// The voices `GET /v1/voices` lists.
pub const VOICES: [(&str, &str, &str); 2] = [
    ("EXAVITQu4vr4xnSDxMaL", "Sarah", "premade"),
    ("emu-cloned-voice", "Emulated clone", "cloned"),
];

async fn voices_handler(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_auth(&shared, &headers) {
        return *r;
    }
    let voices: Vec<Value> = VOICES
        .iter()
        .map(|(id, name, category)| {
            json!({"voice_id": id, "name": name, "category": category, "labels": {}, "settings": null})
        })
        .collect();
    (
        [("content-type", "application/json")],
        json!({"voices": voices}).to_string(),
    )
        .into_response()
}

/// Checks auth and the common query; returns the output rate.
fn check_request(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<u32, Box<Response>> {
    check_auth(shared, headers)?;
    let format = query.get("output_format").map(String::as_str);
    let Some(rate) = format
        .and_then(|f| f.strip_prefix("pcm_"))
        .and_then(|r| r.parse::<u32>().ok())
        .filter(|r| PCM_RATES.contains(r))
    else {
        shared.violation(format!("output_format {format:?} is not a PCM format"));
        return Err(Box::new(validation_error(
            "output_format",
            "the emulator serves pcm_8000/16000/22050/24000/44100",
        )));
    };
    Ok(rate)
}

async fn ws_handler(
    State(shared): State<Arc<Shared>>,
    Path(_voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let rate = match check_request(&shared, &headers, &query) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if query.get("model_id").is_none_or(|m| m.is_empty()) {
        shared.violation("no model_id");
        return validation_error("model_id", "field required");
    }
    for flag in [
        "auto_mode",
        "sync_alignment",
        "enable_ssml_parsing",
        "enable_logging",
    ] {
        if let Some(v) = query.get(flag)
            && v != "true"
            && v != "false"
        {
            shared.violation(format!("{flag}={v} is not a boolean"));
            return validation_error(flag, "value is not a valid boolean");
        }
    }
    if let Some(n) = query.get("apply_text_normalization")
        && !["auto", "on", "off"].contains(&n.as_str())
    {
        shared.violation(format!("apply_text_normalization={n}"));
        return validation_error("apply_text_normalization", "auto, on or off");
    }
    let timeout_secs = match query.get("inactivity_timeout").map(|t| t.parse::<u64>()) {
        None => 20,
        Some(Ok(t)) if (1..=180).contains(&t) => t,
        Some(_) => {
            shared.violation("inactivity_timeout outside 1..=180");
            return validation_error("inactivity_timeout", "must be between 1 and 180");
        }
    };
    let connection = {
        let mut log = shared.log();
        log.connections += 1;
        log.queries.push(query.clone());
        log.connections
    };
    let session = Session {
        connection,
        rate,
        auto_mode: query.get("auto_mode").is_some_and(|v| v == "true"),
        alignment: query.get("sync_alignment").is_some_and(|v| v == "true"),
        timeout_secs,
        timeout: shared
            .config
            .inactivity_timeout
            .unwrap_or(Duration::from_secs(timeout_secs)),
        drop_after: None,
        malformed: false,
        slow_first: Duration::ZERO,
        socket_error: None,
        audio_sent: 0,
        contexts: HashMap::new(),
        closed: HashSet::new(),
        outbox: VecDeque::new(),
        shared: Arc::clone(&shared),
    };
    upgrade.on_upgrade(move |socket| session.run(socket))
}

#[derive(Debug, Default)]
struct Context {
    buffer: String,
    schedule: Vec<usize>,
    generations: usize,
    flushed: bool,
    first_audio_sent: bool,
}

#[derive(Debug)]
struct Outgoing {
    context_id: String,
    text: String,
    audio: bool,
    is_final: bool,
}

struct Session {
    connection: u64,
    rate: u32,
    auto_mode: bool,
    alignment: bool,
    timeout_secs: u64,
    timeout: Duration,
    drop_after: Option<usize>,
    malformed: bool,
    slow_first: Duration,
    socket_error: Option<(String, String)>,
    audio_sent: usize,
    contexts: HashMap<String, Context>,
    closed: HashSet<String>,
    outbox: VecDeque<Outgoing>,
    shared: Arc<Shared>,
}

enum Flow {
    Continue,
    Close(u16, String),
}

impl Session {
    async fn run(mut self, mut socket: WebSocket) {
        match self
            .shared
            .take_fault(|f| !matches!(f, Fault::HttpStatus { .. }))
        {
            Some(Fault::DropAfterAudio(n)) => self.drop_after = Some(n),
            Some(Fault::MalformedJson) => self.malformed = true,
            Some(Fault::SlowFirstAudio(d)) => self.slow_first = d,
            Some(Fault::SocketError { error, message }) => {
                self.socket_error = Some((error, message))
            }
            _ => {}
        }
        let mut deadline = Instant::now() + self.timeout;
        let mut next_send = Instant::now();
        loop {
            let head_delay = self.outbox.front().map(|o| {
                let first = o.audio
                    && self
                        .contexts
                        .get(&o.context_id)
                        .is_some_and(|c| !c.first_audio_sent);
                if first && !self.slow_first.is_zero() {
                    self.slow_first
                } else {
                    self.shared.config.chunk_interval
                }
            });
            let flow = tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        deadline = Instant::now() + self.timeout;
                        self.on_text(text.as_str())
                    }
                    Some(Ok(Message::Binary(_))) => {
                        self.shared.violation("binary frame");
                        Flow::Close(1008, INVALID_INPUT_MESSAGE.to_owned())
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => Flow::Continue,
                },
                () = tokio::time::sleep_until(next_send.max(Instant::now()) + head_delay.unwrap_or_default()), if head_delay.is_some() => {
                    let Some(o) = self.outbox.pop_front() else { continue };
                    if o.audio {
                        if let Some(c) = self.contexts.get_mut(&o.context_id) {
                            c.first_audio_sent = true;
                        }
                        if self.drop_after.is_some_and(|n| self.audio_sent >= n) {
                            // A provider outage: the TCP connection ends without a close frame.
                            return;
                        }
                        self.audio_sent += 1;
                    }
                    if o.is_final {
                        self.contexts.remove(&o.context_id);
                    }
                    if socket.send(Message::Text(o.text.into())).await.is_err() {
                        return;
                    }
                    next_send = Instant::now();
                    Flow::Continue
                },
                () = tokio::time::sleep_until(deadline) => {
                    self.shared.log().idle_closes += 1;
                    let text = INACTIVITY_MESSAGE.replace("{secs}", &format!("{:.1}", self.timeout_secs as f64));
                    Flow::Close(1008, error_json("input_timeout_exceeded", &text).to_string())
                }
            };
            if let Flow::Close(code, reason) = flow {
                if code != 1000 {
                    let _ = socket.send(Message::Text(reason.clone().into())).await;
                }
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: close_reason(&reason).into(),
                    })))
                    .await;
                return;
            }
        }
    }

    fn on_text(&mut self, text: &str) -> Flow {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            self.shared.violation(format!("not JSON: {text:?}"));
            return Flow::Close(
                1008,
                error_json("invalid_input_message", INVALID_INPUT_MESSAGE).to_string(),
            );
        };
        self.shared.log().received.push(Received {
            connection: self.connection,
            message: msg.clone(),
        });
        if self.malformed {
            self.malformed = false;
            self.outbox.push_front(Outgoing {
                context_id: String::new(),
                text: "{\"audio\": \"AAAA\", \"contextId\": ".to_owned(),
                audio: false,
                is_final: false,
            });
            return Flow::Continue;
        }
        if let Some((error, message)) = self.socket_error.take() {
            return Flow::Close(1008, error_json(&error, &message).to_string());
        }
        if msg.get("close_socket") == Some(&Value::Bool(true)) {
            return Flow::Close(1000, String::new());
        }
        let Some(id) = msg
            .get("context_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            // A context-less `{"text": ""}` keeps the socket alive (Pipecat's idle keep-alive); anything else
            // needs a context.
            if msg != json!({"text": ""}) {
                self.shared
                    .violation(format!("message without context_id: {msg}"));
            }
            return Flow::Continue;
        };
        if self.closed.contains(&id) {
            self.shared.violation(format!(
                "message for context {id} after close_context: {msg}"
            ));
            return Flow::Continue;
        }
        let text_field = msg.get("text").and_then(Value::as_str);
        let has_settings =
            msg.get("voice_settings").is_some() || msg.get("generation_config").is_some();
        if !self.contexts.contains_key(&id) {
            if text_field != Some(" ") {
                self.shared.violation(format!(
                    "first message of context {id} is not {{\"text\": \" \"}}: {msg}"
                ));
                if text_field.is_none() {
                    return Flow::Continue;
                }
            }
            if self.contexts.len() >= self.shared.config.max_contexts {
                return Flow::Close(
                    1008,
                    error_json("max_active_conversations", MAX_CONTEXTS_MESSAGE).to_string(),
                );
            }
            let schedule = msg
                .pointer("/generation_config/chunk_length_schedule")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_f64)
                        .map(|v| v as usize)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_else(|| vec![120, 160, 250, 290]);
            let mut ctx = Context {
                schedule,
                ..Context::default()
            };
            if let Some(t) = text_field.filter(|t| *t != " ") {
                ctx.buffer.push_str(t);
            }
            self.contexts.insert(id, ctx);
            return Flow::Continue;
        }
        if has_settings {
            self.shared
                .violation(format!("voice_settings after the first message of {id}"));
            return Flow::Close(
                1008,
                error_json(
                    "invalid_input_message",
                    "voice_settings field must be provided in the first message of a context",
                )
                .to_string(),
            );
        }
        let auto_mode = self.auto_mode;
        let mut generate = false;
        let mut flush = false;
        if let Some(ctx) = self.contexts.get_mut(&id) {
            if let Some(t) = text_field.filter(|t| !t.is_empty()) {
                if !t.ends_with(' ') {
                    self.shared
                        .violation(format!("text chunk does not end with a space: {t:?}"));
                }
                if ctx.flushed && !ctx.buffer.is_empty() {
                    ctx.flushed = false;
                }
                ctx.buffer.push_str(t);
                generate = if auto_mode {
                    let trimmed = ctx.buffer.trim_end();
                    trimmed.ends_with(['.', '!', '?'])
                } else {
                    let idx = ctx.generations.min(ctx.schedule.len().saturating_sub(1));
                    let threshold = ctx.schedule.get(idx).copied().unwrap_or(120);
                    ctx.buffer.chars().count() >= threshold
                };
            }
            if msg.get("flush") == Some(&Value::Bool(true)) {
                ctx.flushed = true;
                generate = true;
                flush = true;
            }
        }
        if generate {
            self.generate(&id, flush);
        }
        if msg.get("close_context") == Some(&Value::Bool(true)) {
            let flushed = self.contexts.get(&id).is_some_and(|c| c.flushed);
            if !flushed {
                // Barge-in: what was not sent yet is dropped.
                self.outbox.retain(|o| o.context_id != id);
                if let Some(c) = self.contexts.get_mut(&id) {
                    c.buffer.clear();
                }
            }
            self.closed.insert(id.clone());
            self.outbox.push_back(Outgoing {
                context_id: id.clone(),
                text: json!({"isFinal": true, "contextId": id}).to_string(),
                audio: false,
                is_final: true,
            });
        }
        Flow::Continue
    }

    /// Turns the buffer into queued audio messages; a flush also drops the trailing space of the last chunk.
    fn generate(&mut self, id: &str, flush: bool) {
        let Some(ctx) = self.contexts.get_mut(id) else {
            return;
        };
        let buffered = std::mem::take(&mut ctx.buffer);
        let text = if ctx.generations == 0 {
            buffered.trim_start()
        } else {
            buffered.as_str()
        };
        let text = if flush { text.trim_end() } else { text };
        if text.trim().is_empty() {
            return;
        }
        ctx.generations += 1;
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(self.shared.config.chars_per_chunk.max(1)) {
            let message = audio_message(
                piece,
                self.rate,
                self.shared.config.ms_per_char,
                self.alignment.then_some(id),
                id,
            );
            self.outbox.push_back(Outgoing {
                context_id: id.to_owned(),
                text: message.to_string(),
                audio: true,
                is_final: false,
            });
        }
    }
}

fn close_reason(reason: &str) -> String {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

fn error_json(error: &str, message: &str) -> Value {
    json!({"message": message, "error": error, "code": 1008})
}

/// PCM16LE for `n_chars` characters: a deterministic ramp, so audio is never silent.
fn pcm_for(chars: usize, rate: u32, ms_per_char: u32) -> Vec<u8> {
    let samples = (chars as u64 * u64::from(ms_per_char) * u64::from(rate) / 1000) as usize;
    let mut out = Vec::with_capacity(samples * 2);
    for i in 0..samples {
        let v = ((i % 200) as i16 - 100) * 100;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn audio_message(piece: &[char], rate: u32, ms: u32, aligned: Option<&str>, id: &str) -> Value {
    let audio = base64::engine::general_purpose::STANDARD.encode(pcm_for(piece.len(), rate, ms));
    let alignment = aligned.map(|_| {
        let chars: Vec<String> = piece.iter().map(|c| c.to_string()).collect();
        let starts: Vec<u64> = (0..piece.len() as u64).map(|i| i * u64::from(ms)).collect();
        let durations = vec![ms; piece.len()];
        json!({"chars": chars, "charStartTimesMs": starts, "charDurationsMs": durations})
    });
    json!({
        "audio": audio,
        "isFinal": null,
        "normalizedAlignment": alignment,
        "alignment": alignment,
        "contextId": id,
    })
}

/// Validates a REST request; returns (rate, text).
fn rest_common(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &str,
) -> Result<(u32, String), Box<Response>> {
    let rate = check_request(shared, headers, query)?;
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        shared.violation("REST body is not JSON");
        return Err(Box::new(error_response(
            400,
            json!({"detail": {"status": "invalid_json", "message": "body is not JSON"}}),
        )));
    };
    shared.log().rest_bodies.push(json.clone());
    let Some(text) = json
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
    else {
        shared.violation("REST body without text");
        return Err(Box::new(error_response(
            422,
            json!({"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "value_error.missing"}]}),
        )));
    };
    Ok((rate, text.to_owned()))
}

async fn rest_handler(
    State(shared): State<Arc<Shared>>,
    Path(_voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (rate, text) = match rest_common(&shared, &headers, &query, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let n = shared.config.chars_per_chunk.max(1);
    let chars: Vec<char> = text.chars().collect();
    let ms = shared.config.ms_per_char;
    // Odd-sized pieces, so clients must carry half samples across network chunks.
    let pcm = pcm_for(chars.len(), rate, ms);
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = pcm
        .chunks((n * 2 * 100).max(3) | 1)
        .map(|c| Ok(c.to_vec()))
        .collect();
    (
        [("content-type", "audio/pcm")],
        Body::from_stream(futures::stream::iter(pieces)),
    )
        .into_response()
}

async fn rest_timestamps_handler(
    State(shared): State<Arc<Shared>>,
    Path(_voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (rate, text) = match rest_common(&shared, &headers, &query, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let n = shared.config.chars_per_chunk.max(1);
    let ms = f64::from(shared.config.ms_per_char) / 1000.0;
    let chars: Vec<char> = text.chars().collect();
    let mut lines = Vec::new();
    for (k, piece) in chars.chunks(n).enumerate() {
        let base = (k * n) as f64;
        let characters: Vec<String> = piece.iter().map(|c| c.to_string()).collect();
        let starts: Vec<f64> = (0..piece.len()).map(|i| (base + i as f64) * ms).collect();
        let ends: Vec<f64> = starts.iter().map(|s| s + ms).collect();
        let alignment = json!({
            "characters": characters,
            "character_start_times_seconds": starts,
            "character_end_times_seconds": ends,
        });
        let line = json!({
            "audio_base64": base64::engine::general_purpose::STANDARD
                .encode(pcm_for(piece.len(), rate, shared.config.ms_per_char)),
            "alignment": alignment,
            "normalized_alignment": alignment,
        });
        lines.push(Ok::<_, std::io::Error>(format!("{line}\n").into_bytes()));
    }
    (
        [("content-type", "application/json")],
        Body::from_stream(futures::stream::iter(lines)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    const QUERY: &str = "model_id=eleven_flash_v2_5&output_format=pcm_16000&sync_alignment=true";

    async fn connect(
        emu: &ElevenLabsEmulator,
        query: &str,
        key: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        let url = format!(
            "{}/v1/text-to-speech/v/multi-stream-input?{query}",
            emu.base_url().replace("http://", "ws://")
        );
        let mut req = url.into_client_request()?;
        if let Some(k) = key {
            req.headers_mut().insert("xi-api-key", k.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
            .await
            .map(|(ws, _)| ws)
    }

    async fn send(ws: &mut Client, v: Value) {
        ws.send(WsMessage::text(v.to_string())).await.unwrap();
    }

    /// The next text frame as JSON, or `None` at a close.
    async fn next(ws: &mut Client) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()?;
            match m {
                Ok(WsMessage::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn close_code(ws: &mut Client) -> Option<u16> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()?
            {
                Ok(WsMessage::Close(f)) => return f.map(|f| u16::from(f.code)),
                Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    #[tokio::test]
    async fn upgrade_checks_key_and_format() {
        let emu = ElevenLabsEmulator::start().await.unwrap();
        match connect(&emu, QUERY, Some("wrong")).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 401),
            other => panic!("{other:?}"),
        }
        let mp3 = "model_id=m&output_format=mp3_44100_128";
        match connect(&emu, mp3, Some(emu.api_key())).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 422),
            other => panic!("{other:?}"),
        }
        assert_eq!(emu.auth_failures(), 1);
        assert_eq!(emu.connections(), 0);
        assert_eq!(emu.violations().len(), 1, "{:?}", emu.violations());
    }

    #[tokio::test]
    async fn generates_aligned_audio_and_acknowledges_close_context() {
        let emu = ElevenLabsEmulator::start().await.unwrap();
        let mut ws = connect(&emu, QUERY, Some(emu.api_key())).await.unwrap();
        send(
            &mut ws,
            json!({"text": " ", "context_id": "a", "voice_settings": {"speed": 1.0}}),
        )
        .await;
        send(&mut ws, json!({"text": "Hi there ", "context_id": "a"})).await;
        send(&mut ws, json!({"context_id": "a", "flush": true})).await;
        send(&mut ws, json!({"context_id": "a", "close_context": true})).await;
        let audio = next(&mut ws).await.unwrap();
        assert_eq!(audio["contextId"], "a");
        let pcm = base64::engine::general_purpose::STANDARD
            .decode(audio["audio"].as_str().unwrap())
            .unwrap();
        assert_eq!(pcm.len(), 8 * 50 * 16 * 2, "8 chars x 50 ms at 16 kHz");
        assert_eq!(audio["alignment"]["chars"].as_array().unwrap().len(), 8);
        assert_eq!(audio["alignment"]["charStartTimesMs"][1], 50);
        assert_eq!(
            next(&mut ws).await.unwrap(),
            json!({"isFinal": true, "contextId": "a"})
        );
        assert!(emu.violations().is_empty(), "{:?}", emu.violations());
    }

    #[tokio::test]
    async fn close_context_stops_only_that_context() {
        let emu = ElevenLabsEmulator::with_config(
            ElevenLabsConfig::default()
                .with_chars_per_chunk(2)
                .with_chunk_interval(Duration::from_millis(20)),
        )
        .await
        .unwrap();
        let mut ws = connect(&emu, QUERY, Some(emu.api_key())).await.unwrap();
        let text = "one two three four five six seven eight nine ten eleven twelve ";
        // "b" generates through its 50-character schedule, without a flush; "a" is flushed.
        send(&mut ws, json!({"text": " ", "context_id": "b", "generation_config": {"chunk_length_schedule": [50]}})).await;
        send(&mut ws, json!({"text": text, "context_id": "b"})).await;
        send(&mut ws, json!({"text": " ", "context_id": "a"})).await;
        send(
            &mut ws,
            json!({"text": "one two three four five six ", "context_id": "a", "flush": true}),
        )
        .await;
        let first = next(&mut ws).await.unwrap();
        assert_eq!(first["contextId"], "b");
        send(&mut ws, json!({"context_id": "b", "close_context": true})).await;
        let (mut a_audio, mut b_audio) = (0, 1);
        let mut b_final = false;
        while let Some(m) = next(&mut ws).await {
            match (m["contextId"].as_str(), m["isFinal"] == true) {
                (Some("b"), true) => {
                    b_final = true;
                    send(&mut ws, json!({"context_id": "a", "close_context": true})).await;
                }
                (Some("a"), true) => break,
                (Some("a"), false) => a_audio += 1,
                (Some("b"), false) => b_audio += 1,
                _ => panic!("unexpected {m}"),
            }
        }
        assert!(b_final, "close_context is acknowledged with isFinal");
        assert!(
            b_audio < text.trim_start().len().div_ceil(2),
            "b stopped early ({b_audio} chunks)"
        );
        assert_eq!(a_audio, 14, "context a kept all its audio (27 chars / 2)");
        assert!(emu.violations().is_empty(), "{:?}", emu.violations());
    }

    #[tokio::test]
    async fn records_protocol_violations() {
        let emu = ElevenLabsEmulator::start().await.unwrap();
        let mut ws = connect(&emu, QUERY, Some(emu.api_key())).await.unwrap();
        send(&mut ws, json!({"text": "Hello ", "context_id": "x"})).await; // no " " first
        send(&mut ws, json!({"text": "no space", "context_id": "x"})).await;
        send(&mut ws, json!({"text": "orphan "})).await; // no context_id
        send(&mut ws, json!({"context_id": "x", "close_context": true})).await;
        send(&mut ws, json!({"text": "late ", "context_id": "x"})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = emu.violations();
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].contains("first message"));
        assert!(v[1].contains("end with a space"));
        assert!(v[2].contains("without context_id"));
        assert!(v[3].contains("after close_context"));
        send(&mut ws, json!({"text": " ", "context_id": "y"})).await;
        send(
            &mut ws,
            json!({"text": "x ", "context_id": "y", "voice_settings": {}}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await.unwrap(),
            json!({"isFinal": true, "contextId": "x"})
        );
        let err = next(&mut ws).await.unwrap();
        assert!(err["message"].as_str().unwrap().contains("first message"));
        assert_eq!(close_code(&mut ws).await, Some(1008));
    }

    #[tokio::test]
    async fn a_sixth_context_is_refused() {
        let emu = ElevenLabsEmulator::start().await.unwrap();
        let mut ws = connect(&emu, QUERY, Some(emu.api_key())).await.unwrap();
        for i in 0..6 {
            send(&mut ws, json!({"text": " ", "context_id": format!("c{i}")})).await;
        }
        let err = next(&mut ws).await.unwrap();
        assert_eq!(err["error"], "max_active_conversations");
        assert_eq!(err["message"], MAX_CONTEXTS_MESSAGE);
        assert_eq!(close_code(&mut ws).await, Some(1008));
    }

    #[tokio::test]
    async fn idle_sockets_and_bad_json_are_closed_with_the_provider_errors() {
        let emu = ElevenLabsEmulator::with_config(
            ElevenLabsConfig::default().with_inactivity_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        let mut ws = connect(&emu, QUERY, Some(emu.api_key())).await.unwrap();
        let err = next(&mut ws).await.unwrap();
        assert_eq!(err["error"], "input_timeout_exceeded");
        assert!(
            err["message"].as_str().unwrap().starts_with(
                "Have not received a new text input within the timeout of 20.0 seconds"
            )
        );
        assert_eq!(close_code(&mut ws).await, Some(1008));
        assert_eq!(emu.idle_closes(), 1);

        let mut ws = connect(&emu, QUERY, Some(emu.api_key())).await.unwrap();
        ws.send(WsMessage::text("{not json")).await.unwrap();
        let err = next(&mut ws).await.unwrap();
        assert_eq!(err["error"], "invalid_input_message");
        assert_eq!(err["message"], INVALID_INPUT_MESSAGE);
    }
}
