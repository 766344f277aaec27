//! The OpenAI Realtime emulator: a WebSocket server at `GET /v1/realtime` speaking the Realtime event protocol.
//!
//! It speaks the GA event names by default and the beta names (`response.audio.delta`, `conversation.item.created`,
//! ...) when the client upgrades with `OpenAI-Beta: realtime=v1`. What it does, per connection:
//!
//! - checks `Authorization: Bearer <key>` at the upgrade when [`OpenAiRealtimeEmulator::with_api_key`] is set
//!   (401 with an OpenAI error body otherwise, as the upgrade of the real endpoint fails);
//! - sends `session.created`, answers `session.update` with `session.updated` (the update deep-merged into the
//!   session; GA requires `session.type = "realtime"`);
//! - validates every client event and answers a bad one with an `error` event shaped like OpenAI's
//!   (`{"type":"error","error":{"type":"invalid_request_error","code","message","param","event_id"}}`): unknown
//!   event types, missing fields, tools whose schema is not a function with an object `parameters`, a repeated
//!   `event_id`, a truncate of an unknown item or beyond the audio sent for it, a `function_call_output` whose
//!   `call_id` was never called, `previous_item_id`s that do not exist, a `response.create` while a response is
//!   active, a `response.cancel` without one, a commit of less than 100 ms of audio;
//! - plays scripted responses ([`ScriptedResponse`], a FIFO shared by all connections; an empty FIFO gives an empty
//!   response): for text, per word, a transcript delta (`response.output_audio_transcript.delta`) then an audio delta
//!   of [`AUDIO_MS_PER_CHAR`] ms of a 220 Hz tone per character (or `response.output_text.delta` when the session's
//!   output modalities are text only), each word [`OpenAiRealtimeEmulator::with_pace`] apart; function calls as a
//!   `function_call` item with `response.function_call_arguments.delta/.done`; then `response.done` with usage
//!   (`output_tokens` = words + argument characters / 4, `input_tokens` = 10 per conversation item), then
//!   `rate_limits.updated`; a response reaching the session's `max_output_tokens` stops there, `incomplete`
//!   with reason `max_output_tokens`;
//! - with `server_vad` / `semantic_vad` turn detection (the default, as OpenAI), detects speech in the appended audio
//!   by energy (10 ms windows, RMS ≥ [`DEFAULT_SPEECH_THRESHOLD`]):
//!   `input_audio_buffer.speech_started` (cancelling the active response when `interrupt_response`), then after
//!   `silence_duration_ms` of silence `speech_stopped`, `committed`, the user item, its transcription (when
//!   configured: the next [`OpenAiRealtimeEmulator::push_user_transcript`] as word deltas and `completed`, or
//!   `failed` when none is scripted) and a response (when `create_response`);
//! - faults on demand ([`Fault`]): 401 at the upgrade, an `error` event instead of the next response, closing the
//!   socket mid-response, a slow first delta, and at any time [`OpenAiRealtimeEmulator::expire_sessions`] (the
//!   `session_expired` error then a close, as OpenAI does at the session's maximum duration) or
//!   [`OpenAiRealtimeEmulator::drop_connections`] (an abrupt TCP close).
//!
//! Everything a client sent is recorded per connection ([`ConnectionRecord`]).
//!
//! To serve it next to the HTTP emulator under one base URL, as the real API does, use
//! [`OpenAiEmulator::serve_with_realtime`](super::openai::OpenAiEmulator::serve_with_realtime).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::emulators::EmulatorServer;
use crate::signal::{DEFAULT_SPEECH_THRESHOLD, TONE_AMPLITUDE, TONE_FREQUENCY, rms_of};
use crate::util::lock;

/// Sample rate of the audio the emulator takes and produces (PCM16 mono).
pub const SAMPLE_RATE: u32 = 24_000;
/// Milliseconds of output audio per character of text.
pub const AUDIO_MS_PER_CHAR: u64 = 15;
/// The message of the `session_expired` error (OpenAI's wording for the 60-minute limit).
pub const SESSION_EXPIRED_MESSAGE: &str = "Your session hit the maximum duration of 60 minutes.";

const KNOWN_EVENTS: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
];

/// One step of a scripted response.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ScriptedStep {
    /// An assistant message: its transcript (or text) and its audio.
    Text(String),
    /// A function call.
    FunctionCall {
        /// Tool name.
        name: String,
        /// Arguments, JSON text.
        arguments: String,
    },
}

/// A scripted response: its steps in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptedResponse {
    steps: Vec<ScriptedStep>,
}

impl ScriptedResponse {
    /// A spoken reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self::default().then_text(text)
    }

    /// A reply made of one function call.
    pub fn function_call(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self::default().then_function_call(name, arguments)
    }

    /// Appends speech.
    #[must_use]
    pub fn then_text(mut self, text: impl Into<String>) -> Self {
        self.steps.push(ScriptedStep::Text(text.into()));
        self
    }

    /// Appends a function call.
    #[must_use]
    pub fn then_function_call(
        mut self,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        self.steps.push(ScriptedStep::FunctionCall {
            name: name.into(),
            arguments: arguments.into(),
        });
        self
    }

    /// The steps.
    pub fn steps(&self) -> &[ScriptedStep] {
        &self.steps
    }
}

/// A fault, consumed by the next occasion it applies to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// The next upgrade is refused with 401 and OpenAI's `invalid_api_key` body.
    Unauthorized,
    /// The next `response.create` is answered with this `error` event instead of a response.
    ErrorEvent {
        /// Error type, e.g. `server_error`.
        error_type: String,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The next response closes the socket (no close frame) right after its first delta.
    CloseMidResponse,
    /// The next response waits this long before its first delta.
    SlowFirstDelta(Duration),
}

/// What one connection received.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectionRecord {
    /// The `model` query parameter.
    pub model: Option<String>,
    /// Whether the client asked for the beta protocol (`OpenAI-Beta: realtime=v1`).
    pub beta: bool,
    /// Whether the `Authorization` header carried the expected key (true when no key is expected).
    pub authorized: bool,
    /// The request headers, `Authorization` excluded.
    pub headers: Vec<(String, String)>,
    /// Every client event, in order, as received (audio payloads included).
    pub events: Vec<Value>,
}

impl ConnectionRecord {
    /// The events of type `ty`.
    pub fn events_of(&self, ty: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some(ty))
            .cloned()
            .collect()
    }

    /// The PCM16 samples appended with `input_audio_buffer.append` over the connection.
    pub fn appended_samples(&self) -> usize {
        self.events_of("input_audio_buffer.append")
            .iter()
            .filter_map(|e| e.get("audio").and_then(Value::as_str))
            .filter_map(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
            .map(|b| b.len() / 2)
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    Expire,
    Drop,
}

#[derive(Default)]
struct EmuState {
    api_key: Option<String>,
    responses: VecDeque<ScriptedResponse>,
    user_transcripts: VecDeque<String>,
    faults: VecDeque<Fault>,
    connections: Vec<ConnectionRecord>,
    live: Vec<mpsc::Sender<Ctl>>,
    pace: Duration,
}

/// The OpenAI Realtime emulator (see the [module documentation](self)). Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct OpenAiRealtimeEmulator {
    state: Arc<Mutex<EmuState>>,
    ids: Arc<AtomicU64>,
}

impl std::fmt::Debug for OpenAiRealtimeEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("OpenAiRealtimeEmulator")
            .field("connections", &s.connections.len())
            .field("queued_responses", &s.responses.len())
            .finish_non_exhaustive()
    }
}

impl Default for OpenAiRealtimeEmulator {
    fn default() -> Self {
        Self::new()
    }
}

/// The emulator's routes (`GET /v1/realtime`) over `emulator`'s state.
pub fn router(emulator: OpenAiRealtimeEmulator) -> Router {
    Router::new()
        .route("/v1/realtime", get(upgrade))
        .with_state(emulator)
}

impl OpenAiRealtimeEmulator {
    /// An emulator accepting any key, pacing words 20 ms apart.
    pub fn new() -> Self {
        let state = EmuState {
            pace: Duration::from_millis(20),
            ..EmuState::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            ids: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Requires `Authorization: Bearer <key>` at the upgrade.
    #[must_use]
    pub fn with_api_key(self, key: impl Into<String>) -> Self {
        lock(&self.state).api_key = Some(key.into());
        self
    }

    /// Sets the time between two words of a response (default 20 ms).
    #[must_use]
    pub fn with_pace(self, pace: Duration) -> Self {
        lock(&self.state).pace = pace;
        self
    }

    /// The routes over this emulator's state.
    pub fn router(&self) -> Router {
        router(self.clone())
    }

    /// Serves the emulator on a fresh loopback port until the handle is dropped.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn serve(&self) -> std::io::Result<EmulatorServer> {
        EmulatorServer::serve(self.router()).await
    }

    /// Queues a response.
    pub fn push_response(&self, response: ScriptedResponse) {
        lock(&self.state).responses.push_back(response);
    }

    /// Queues the transcript of the next user turn.
    pub fn push_user_transcript(&self, text: impl Into<String>) {
        lock(&self.state).user_transcripts.push_back(text.into());
    }

    /// Queues a fault.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// Sends `session_expired` then closes every open connection.
    pub fn expire_sessions(&self) {
        self.control(Ctl::Expire);
    }

    /// Closes every open connection abruptly (no close frame).
    pub fn drop_connections(&self) {
        self.control(Ctl::Drop);
    }

    fn control(&self, ctl: Ctl) {
        let live = lock(&self.state).live.clone();
        for tx in live {
            let _ = tx.try_send(ctl);
        }
    }

    /// The record of every connection, in order.
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        lock(&self.state).connections.clone()
    }

    /// Responses still queued.
    pub fn remaining_responses(&self) -> usize {
        lock(&self.state).responses.len()
    }

    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    fn take_fault(&self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut s = lock(&self.state);
        let i = s.faults.iter().position(pred)?;
        s.faults.remove(i)
    }

    fn record(&self, conn: usize, event: &Value) {
        if let Some(c) = lock(&self.state).connections.get_mut(conn) {
            c.events.push(event.clone());
        }
    }
}

async fn upgrade(
    State(emu): State<OpenAiRealtimeEmulator>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = lock(&emu.state).api_key.clone();
    let authorized = match &expected {
        Some(k) => auth == format!("Bearer {k}"),
        None => true,
    };
    let forced = emu
        .take_fault(|f| matches!(f, Fault::Unauthorized))
        .is_some();
    let beta = headers
        .get("openai-beta")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("realtime=v1"));
    let model = query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "model")
            .map(|(_, v)| v.to_owned())
    });
    let record = ConnectionRecord {
        model: model.clone(),
        beta,
        authorized,
        headers: headers
            .iter()
            .filter(|(k, _)| k.as_str() != "authorization")
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        events: Vec::new(),
    };
    let index = {
        let mut s = lock(&emu.state);
        s.connections.push(record);
        s.connections.len() - 1
    };
    if !authorized || forced {
        let body = json!({"error": {
            "message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let model = model.unwrap_or_else(|| "gpt-realtime".to_owned());
    ws.on_upgrade(move |socket| async move {
        Connection::run(emu, socket, index, beta, model).await;
    })
}

/// An outgoing message of a connection.
enum Out {
    Event(Value),
    /// A close frame, then the end of the connection.
    Close(u16, String),
    /// The end of the connection without a close frame.
    Abort,
}

enum VadAction {
    Event(&'static str, Value),
    Commit { samples: usize, item_id: String },
}

struct Item {
    id: String,
    value: Value,
    /// Milliseconds of assistant audio sent for this item.
    audio_ms: u64,
}

#[derive(Default)]
struct Conv {
    session: Value,
    items: Vec<Item>,
    seen_event_ids: HashSet<String>,
    input: Vec<i16>,
    input_total: u64,
    vad_window: Vec<i16>,
    speaking: bool,
    silence_samples: u64,
    speech_item: Option<String>,
    active: Option<(String, Arc<AtomicBool>)>,
}

impl Conv {
    fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    fn turn_detection(&self, beta: bool) -> Option<Value> {
        let td = if beta {
            self.session.get("turn_detection")
        } else {
            self.session.pointer("/audio/input/turn_detection")
        };
        td.filter(|v| !v.is_null()).cloned()
    }

    fn transcription(&self, beta: bool) -> bool {
        let t = if beta {
            self.session.get("input_audio_transcription")
        } else {
            self.session.pointer("/audio/input/transcription")
        };
        t.is_some_and(|v| !v.is_null())
    }

    fn audio_output(&self, beta: bool) -> bool {
        let m = if beta {
            self.session.get("modalities")
        } else {
            self.session.get("output_modalities")
        };
        match m.and_then(Value::as_array) {
            Some(list) => list.iter().any(|v| v.as_str() == Some("audio")),
            None => true,
        }
    }

    fn last_id(&self) -> Option<String> {
        self.items.last().map(|i| i.id.clone())
    }
}

#[derive(Clone)]
struct Connection {
    emu: OpenAiRealtimeEmulator,
    index: usize,
    beta: bool,
    out: mpsc::Sender<Out>,
    conv: Arc<Mutex<Conv>>,
}

fn default_session(id: &str, model: &str, beta: bool) -> Value {
    let td = json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                    "silence_duration_ms": 500, "create_response": true, "interrupt_response": true});
    if beta {
        json!({"id": id, "object": "realtime.session", "model": model, "modalities": ["text", "audio"],
               "instructions": "", "voice": "alloy", "input_audio_format": "pcm16", "output_audio_format": "pcm16",
               "input_audio_transcription": null, "turn_detection": td, "tools": [], "tool_choice": "auto",
               "temperature": 0.8, "max_response_output_tokens": "inf"})
    } else {
        json!({"id": id, "object": "realtime.session", "type": "realtime", "model": model,
               "output_modalities": ["audio"], "instructions": "",
               "audio": {"input": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "transcription": null,
                                   "turn_detection": td},
                         "output": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "voice": "alloy",
                                    "speed": 1.0}},
               "tools": [], "tool_choice": "auto", "max_output_tokens": "inf"})
    }
}

fn merge(into: &mut Value, update: &Value) {
    match (into, update) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// An `error` event's details.
struct Reject {
    code: &'static str,
    message: String,
    param: Option<String>,
}

fn reject(code: &'static str, message: impl Into<String>) -> Reject {
    Reject {
        code,
        message: message.into(),
        param: None,
    }
}

fn missing(param: &str) -> Reject {
    Reject {
        code: "missing_required_parameter",
        message: format!("Missing required parameter: '{param}'."),
        param: Some(param.to_owned()),
    }
}

fn str_field<'a>(v: &'a Value, key: &str, param: &str) -> Result<&'a str, Reject> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| missing(param))
}

fn validate_tools(tools: &Value) -> Result<(), Reject> {
    let Some(list) = tools.as_array() else {
        return Err(Reject {
            code: "invalid_type",
            message: "Invalid type for 'session.tools': expected an array.".into(),
            param: Some("session.tools".into()),
        });
    };
    for (i, t) in list.iter().enumerate() {
        let param = format!("session.tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(Reject {
                code: "invalid_value",
                message: format!("Invalid value for '{param}.type': expected 'function'."),
                param: Some(format!("{param}.type")),
            });
        }
        let name = t.get("name").and_then(Value::as_str).unwrap_or("");
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Reject {
                code: "invalid_value",
                message: format!(
                    "Invalid '{param}.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
                ),
                param: Some(format!("{param}.name")),
            });
        }
        if let Some(p) = t.get("parameters") {
            let object = p.get("type").and_then(Value::as_str) == Some("object");
            let props_ok = p.get("properties").is_none_or(Value::is_object);
            if !object || !props_ok {
                return Err(Reject {
                    code: "invalid_function_parameters",
                    message: format!(
                        "Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'."
                    ),
                    param: Some(format!("{param}.parameters")),
                });
            }
        }
    }
    Ok(())
}

fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in text.split_whitespace().enumerate() {
        if i == 0 {
            out.push(w.to_owned());
        } else {
            out.push(format!(" {w}"));
        }
    }
    out
}

fn tone_b64(ms: u64, phase: &mut u64) -> String {
    let n = (ms * u64::from(SAMPLE_RATE) / 1000) as usize;
    let mut bytes = Vec::with_capacity(n * 2);
    for _ in 0..n {
        let t = *phase as f32 / SAMPLE_RATE as f32;
        let s = (TONE_AMPLITUDE
            * (2.0 * std::f32::consts::PI * TONE_FREQUENCY * t).sin()
            * f32::from(i16::MAX)) as i16;
        bytes.extend_from_slice(&s.to_le_bytes());
        *phase += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Connection {
    async fn run(
        emu: OpenAiRealtimeEmulator,
        socket: WebSocket,
        index: usize,
        beta: bool,
        model: String,
    ) {
        let (mut sink, mut stream) = socket.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Out>(256);
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<Ctl>(4);
        lock(&emu.state).live.push(ctl_tx.clone());
        let session_id = emu.next_id("sess_");
        let conn = Connection {
            emu: emu.clone(),
            index,
            beta,
            out: out_tx,
            conv: Arc::new(Mutex::new(Conv {
                session: default_session(&session_id, &model, beta),
                ..Conv::default()
            })),
        };
        let mut writer = tokio::spawn(async move {
            while let Some(o) = out_rx.recv().await {
                match o {
                    Out::Event(v) => {
                        if sink
                            .send(Message::Text(v.to_string().into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Out::Close(code, reason) => {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        return;
                    }
                    Out::Abort => return,
                }
            }
        });
        let session = lock(&conn.conv).session.clone();
        conn.send("session.created", json!({"session": session}))
            .await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => conn.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        conn.error(reject("invalid_request_error", "binary frames are not supported"), None).await;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                ctl = ctl_rx.recv() => match ctl {
                    Some(Ctl::Expire) => {
                        conn.send_error_typed("invalid_request_error", "session_expired", SESSION_EXPIRED_MESSAGE, None, None).await;
                        // OpenAI closes with 1001 (going away) after this error.
                        let _ = conn.out.send(Out::Close(1001, String::new())).await;
                    }
                    Some(Ctl::Drop) => {
                        let _ = conn.out.send(Out::Abort).await;
                    }
                    None => break,
                },
                _ = &mut writer => break,
            }
        }
        writer.abort();
        if let Some((_, cancel)) = &lock(&conn.conv).active {
            cancel.store(true, Ordering::SeqCst);
        }
        lock(&emu.state).live.retain(|t| !t.same_channel(&ctl_tx));
    }

    async fn send(&self, ty: &str, fields: Value) {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(ty.to_owned()));
        m.insert("event_id".into(), Value::String(self.emu.next_id("event_")));
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        let _ = self.out.send(Out::Event(Value::Object(m))).await;
    }

    async fn send_error_typed(
        &self,
        error_type: &str,
        code: &str,
        message: &str,
        param: Option<String>,
        event_id: Option<String>,
    ) {
        self.send(
            "error",
            json!({"error": {"type": error_type, "code": code, "message": message, "param": param,
                             "event_id": event_id}}),
        )
        .await;
    }

    async fn error(&self, r: Reject, event_id: Option<String>) {
        self.send_error_typed(
            "invalid_request_error",
            r.code,
            &r.message,
            r.param,
            event_id,
        )
        .await;
    }

    fn name(&self, ga: &'static str, beta: &'static str) -> &'static str {
        if self.beta { beta } else { ga }
    }

    async fn on_text(&self, text: &str) {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.error(
                    reject(
                        "invalid_json",
                        format!("The server had trouble parsing your JSON: {e}"),
                    ),
                    None,
                )
                .await;
                return;
            }
        };
        self.emu.record(self.index, &v);
        let event_id = v.get("event_id").and_then(Value::as_str).map(str::to_owned);
        if let Some(id) = &event_id {
            let fresh = lock(&self.conv).seen_event_ids.insert(id.clone());
            if !fresh {
                self.error(
                    Reject {
                        code: "duplicate_event_id",
                        message: format!(
                            "Duplicate event_id '{id}': every client event_id must be unique."
                        ),
                        param: Some("event_id".into()),
                    },
                    event_id.clone(),
                )
                .await;
                return;
            }
        }
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        if ty.is_empty() {
            self.error(missing("type"), event_id).await;
            return;
        }
        if !KNOWN_EVENTS.contains(&ty) {
            self.error(
                Reject {
                    code: "invalid_value",
                    message: format!(
                        "Invalid value: '{ty}'. Supported values are: {}.",
                        KNOWN_EVENTS.join(", ")
                    ),
                    param: Some("type".into()),
                },
                event_id,
            )
            .await;
            return;
        }
        let result = match ty {
            "session.update" => self.session_update(&v).await,
            "input_audio_buffer.append" => self.append(&v).await,
            "input_audio_buffer.commit" => self.commit(None).await,
            "input_audio_buffer.clear" => {
                lock(&self.conv).input.clear();
                self.send("input_audio_buffer.cleared", json!({})).await;
                Ok(())
            }
            "conversation.item.create" => self.item_create(&v).await,
            "conversation.item.retrieve" => self.item_retrieve(&v).await,
            "conversation.item.truncate" => self.truncate(&v).await,
            "conversation.item.delete" => self.item_delete(&v).await,
            "response.create" => self.response_create(&v).await,
            "response.cancel" => self.response_cancel(),
            _ => Ok(()),
        };
        if let Err(r) = result {
            self.error(r, event_id).await;
        }
    }

    async fn session_update(&self, v: &Value) -> Result<(), Reject> {
        let Some(update) = v.get("session").filter(|s| s.is_object()) else {
            return Err(missing("session"));
        };
        if !self.beta && update.get("type").and_then(Value::as_str) != Some("realtime") {
            return Err(missing("session.type"));
        }
        if let Some(tools) = update.get("tools") {
            validate_tools(tools)?;
        }
        let td = if self.beta {
            update.get("turn_detection")
        } else {
            update.pointer("/audio/input/turn_detection")
        };
        if let Some(td) = td.filter(|t| !t.is_null()) {
            let ty = td.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(ty, "server_vad" | "semantic_vad") {
                return Err(Reject {
                    code: "invalid_value",
                    message: format!(
                        "Invalid value: '{ty}'. Supported values are: 'server_vad' and 'semantic_vad'."
                    ),
                    param: Some("session.audio.input.turn_detection.type".into()),
                });
            }
        }
        for ptr in ["/audio/input/format/rate", "/audio/output/format/rate"] {
            if let Some(rate) = update.pointer(ptr).and_then(Value::as_u64)
                && rate != u64::from(SAMPLE_RATE)
            {
                return Err(Reject {
                    code: "invalid_value",
                    message: format!("Invalid value: {rate}. Supported values are: 24000."),
                    param: Some(format!("session{}", ptr.replace('/', "."))),
                });
            }
        }
        let session = {
            let mut c = lock(&self.conv);
            merge(&mut c.session, update);
            c.session.clone()
        };
        self.send("session.updated", json!({"session": session}))
            .await;
        Ok(())
    }

    async fn append(&self, v: &Value) -> Result<(), Reject> {
        let audio = str_field(v, "audio", "audio")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(audio)
            .map_err(|_| Reject {
                code: "invalid_value",
                message: "Invalid 'audio'. Expected base64-encoded audio bytes.".into(),
                param: Some("audio".into()),
            })?;
        if bytes.len() % 2 != 0 {
            return Err(Reject {
                code: "invalid_value",
                message: "Invalid 'audio': PCM16 audio must have an even number of bytes.".into(),
                param: Some("audio".into()),
            });
        }
        let samples: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // Server VAD over 10 ms windows; a turn commits the buffer up to where it ended.
        let mut actions: Vec<VadAction> = Vec::new();
        {
            let mut c = lock(&self.conv);
            let base = c.input.len();
            c.input.extend_from_slice(&samples);
            let td = c.turn_detection(self.beta);
            let Some(td) = td else {
                c.input_total += samples.len() as u64;
                return Ok(());
            };
            let silence_ms = td
                .get("silence_duration_ms")
                .and_then(Value::as_u64)
                .unwrap_or(500);
            let interrupt = td
                .get("interrupt_response")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            const WINDOW: usize = (SAMPLE_RATE / 100) as usize;
            let mut committed = 0usize;
            for (i, s) in samples.into_iter().enumerate() {
                c.vad_window.push(s);
                c.input_total += 1;
                if c.vad_window.len() < WINDOW {
                    continue;
                }
                let voiced = rms_of(&c.vad_window) >= DEFAULT_SPEECH_THRESHOLD;
                c.vad_window.clear();
                let now_ms = c.input_total * 1000 / u64::from(SAMPLE_RATE);
                if voiced {
                    c.silence_samples = 0;
                    if !c.speaking {
                        c.speaking = true;
                        let item_id = self.emu.next_id("item_");
                        c.speech_item = Some(item_id.clone());
                        actions.push(VadAction::Event(
                            "input_audio_buffer.speech_started",
                            json!({"audio_start_ms": now_ms.saturating_sub(10), "item_id": item_id}),
                        ));
                        if interrupt && let Some((_, cancel)) = &c.active {
                            cancel.store(true, Ordering::SeqCst);
                        }
                    }
                } else if c.speaking {
                    c.silence_samples += WINDOW as u64;
                    if c.silence_samples * 1000 / u64::from(SAMPLE_RATE) >= silence_ms {
                        c.speaking = false;
                        let item_id = c.speech_item.take().unwrap_or_default();
                        actions.push(VadAction::Event(
                            "input_audio_buffer.speech_stopped",
                            json!({"audio_end_ms": now_ms, "item_id": item_id}),
                        ));
                        let upto = base + i + 1;
                        actions.push(VadAction::Commit {
                            samples: upto - committed,
                            item_id,
                        });
                        committed = upto;
                    }
                }
            }
        }
        for a in actions {
            match a {
                VadAction::Event(ty, fields) => self.send(ty, fields).await,
                VadAction::Commit { samples, item_id } => {
                    self.commit(Some((samples, item_id))).await?;
                }
            }
        }
        Ok(())
    }

    /// Commits the input buffer: all of it (a client commit), or its first samples as the turn server VAD ended.
    async fn commit(&self, by_vad: Option<(usize, String)>) -> Result<(), Reject> {
        let (item, previous, transcribe, respond) = {
            let mut c = lock(&self.conv);
            let ms = c.input.len() as u64 * 1000 / u64::from(SAMPLE_RATE);
            if by_vad.is_none() && ms < 100 {
                return Err(reject(
                    "input_audio_buffer_commit_empty",
                    format!(
                        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {ms}.00ms of audio."
                    ),
                ));
            }
            let id = match &by_vad {
                Some((n, id)) => {
                    let n = (*n).min(c.input.len());
                    c.input.drain(..n);
                    id.clone()
                }
                None => {
                    c.input.clear();
                    c.speaking = false;
                    c.silence_samples = 0;
                    c.speech_item
                        .take()
                        .unwrap_or_else(|| self.emu.next_id("item_"))
                }
            };
            let previous = c.last_id();
            let item = json!({"id": id, "object": "realtime.item", "type": "message", "status": "completed",
                              "role": "user", "content": [{"type": "input_audio", "transcript": null}]});
            c.items.push(Item {
                id,
                value: item.clone(),
                audio_ms: 0,
            });
            let respond = by_vad.is_some()
                && c.turn_detection(self.beta)
                    .and_then(|t| t.get("create_response").and_then(Value::as_bool))
                    .unwrap_or(true);
            (item, previous, c.transcription(self.beta), respond)
        };
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.send(
            "input_audio_buffer.committed",
            json!({"previous_item_id": previous, "item_id": id}),
        )
        .await;
        self.item_added(&item, previous).await;
        if transcribe {
            let text = lock(&self.emu.state).user_transcripts.pop_front();
            match text {
                Some(text) => {
                    for w in words(&text) {
                        self.send(
                            "conversation.item.input_audio_transcription.delta",
                            json!({"item_id": id, "content_index": 0, "delta": w}),
                        )
                        .await;
                    }
                    {
                        let mut c = lock(&self.conv);
                        if let Some(it) = c.items.iter_mut().find(|i| i.id == id) {
                            it.value["content"][0]["transcript"] = Value::String(text.clone());
                        }
                    }
                    self.send(
                        "conversation.item.input_audio_transcription.completed",
                        json!({"item_id": id, "content_index": 0, "transcript": text}),
                    )
                    .await;
                }
                None => {
                    self.send(
                        "conversation.item.input_audio_transcription.failed",
                        json!({"item_id": id, "content_index": 0,
                               "error": {"type": "transcription_error", "code": "audio_unintelligible",
                                         "message": "No transcript was scripted for this turn.", "param": null}}),
                    )
                    .await;
                }
            }
        }
        if respond {
            self.start_response(None).await?;
        }
        Ok(())
    }

    async fn item_added(&self, item: &Value, previous: Option<String>) {
        if self.beta {
            self.send(
                "conversation.item.created",
                json!({"previous_item_id": previous, "item": item}),
            )
            .await;
        } else {
            self.send(
                "conversation.item.added",
                json!({"previous_item_id": previous, "item": item}),
            )
            .await;
            self.send(
                "conversation.item.done",
                json!({"previous_item_id": previous, "item": item}),
            )
            .await;
        }
    }

    async fn item_create(&self, v: &Value) -> Result<(), Reject> {
        let Some(item) = v.get("item").filter(|i| i.is_object()) else {
            return Err(missing("item"));
        };
        let ty = str_field(item, "type", "item.type")?;
        {
            let c = lock(&self.conv);
            match ty {
                "message" => {
                    let role = str_field(item, "role", "item.role")?;
                    if !matches!(role, "user" | "assistant" | "system") {
                        return Err(Reject {
                            code: "invalid_value",
                            message: format!(
                                "Invalid value: '{role}'. Supported values are: 'user', 'assistant', and 'system'."
                            ),
                            param: Some("item.role".into()),
                        });
                    }
                    let content = item
                        .get("content")
                        .and_then(Value::as_array)
                        .ok_or_else(|| missing("item.content"))?;
                    let allowed: &[&str] = match (role, self.beta) {
                        ("assistant", false) => &["output_text", "output_audio"],
                        ("assistant", true) => &["text", "audio"],
                        (_, _) => &["input_text", "input_audio"],
                    };
                    for (i, part) in content.iter().enumerate() {
                        let pty = part.get("type").and_then(Value::as_str).unwrap_or("");
                        if !allowed.contains(&pty) {
                            return Err(Reject {
                                code: "invalid_value",
                                message: format!(
                                    "Invalid value: '{pty}'. Supported values are: {}.",
                                    allowed.join(", ")
                                ),
                                param: Some(format!("item.content[{i}].type")),
                            });
                        }
                    }
                }
                "function_call" => {
                    str_field(item, "call_id", "item.call_id")?;
                    str_field(item, "name", "item.name")?;
                    str_field(item, "arguments", "item.arguments")?;
                }
                "function_call_output" => {
                    let call_id = str_field(item, "call_id", "item.call_id")?;
                    str_field(item, "output", "item.output")?;
                    let known = c.items.iter().any(|i| {
                        i.value.get("type").and_then(Value::as_str) == Some("function_call")
                            && i.value.get("call_id").and_then(Value::as_str) == Some(call_id)
                    });
                    if !known {
                        return Err(Reject {
                            code: "invalid_value",
                            message: format!(
                                "No tool call found for function call output with call_id {call_id}."
                            ),
                            param: Some("item.call_id".into()),
                        });
                    }
                }
                other => {
                    return Err(Reject {
                        code: "invalid_value",
                        message: format!(
                            "Invalid value: '{other}'. Supported values are: 'message', 'function_call', and 'function_call_output'."
                        ),
                        param: Some("item.type".into()),
                    });
                }
            }
            if let Some(id) = item.get("id").and_then(Value::as_str)
                && c.item(id).is_some()
            {
                return Err(reject(
                    "item_already_exists",
                    format!("Item with id '{id}' already exists."),
                ));
            }
            if let Some(prev) = v.get("previous_item_id").and_then(Value::as_str)
                && prev != "root"
                && c.item(prev).is_none()
            {
                return Err(Reject {
                    code: "invalid_value",
                    message: format!("Previous item with id '{prev}' not found."),
                    param: Some("previous_item_id".into()),
                });
            }
        }
        let mut stored = item.clone();
        let id = match item.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => self.emu.next_id("item_"),
        };
        stored["id"] = Value::String(id.clone());
        stored["object"] = Value::String("realtime.item".into());
        stored["status"] = Value::String("completed".into());
        let previous = {
            let mut c = lock(&self.conv);
            let entry = Item {
                id,
                value: stored.clone(),
                audio_ms: 0,
            };
            match v.get("previous_item_id").and_then(Value::as_str) {
                Some("root") => {
                    c.items.insert(0, entry);
                    None
                }
                Some(prev) => {
                    let at = c
                        .items
                        .iter()
                        .position(|i| i.id == prev)
                        .map_or(0, |p| p + 1);
                    c.items.insert(at, entry);
                    Some(prev.to_owned())
                }
                None => {
                    let prev = c.last_id();
                    c.items.push(entry);
                    prev
                }
            }
        };
        self.item_added(&stored, previous).await;
        Ok(())
    }

    async fn item_retrieve(&self, v: &Value) -> Result<(), Reject> {
        let id = str_field(v, "item_id", "item_id")?;
        let item = lock(&self.conv).item(id).map(|i| i.value.clone());
        match item {
            Some(item) => {
                self.send("conversation.item.retrieved", json!({"item": item}))
                    .await;
                Ok(())
            }
            None => Err(not_found(id)),
        }
    }

    async fn item_delete(&self, v: &Value) -> Result<(), Reject> {
        let id = str_field(v, "item_id", "item_id")?.to_owned();
        let removed = {
            let mut c = lock(&self.conv);
            let before = c.items.len();
            c.items.retain(|i| i.id != id);
            before != c.items.len()
        };
        if !removed {
            return Err(not_found(&id));
        }
        self.send("conversation.item.deleted", json!({"item_id": id}))
            .await;
        Ok(())
    }

    async fn truncate(&self, v: &Value) -> Result<(), Reject> {
        let id = str_field(v, "item_id", "item_id")?.to_owned();
        let content_index = v
            .get("content_index")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("content_index"))?;
        let end = v
            .get("audio_end_ms")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("audio_end_ms"))?;
        {
            let mut c = lock(&self.conv);
            let Some(item) = c.items.iter_mut().find(|i| i.id == id) else {
                return Err(not_found(&id));
            };
            let assistant = item.value.get("role").and_then(Value::as_str) == Some("assistant");
            if !assistant || content_index != 0 {
                return Err(Reject {
                    code: "invalid_value",
                    message: "Only the audio content of an assistant message can be truncated."
                        .into(),
                    param: Some("content_index".into()),
                });
            }
            if end > item.audio_ms {
                return Err(Reject {
                    code: "invalid_value",
                    message: format!(
                        "Audio content of {}ms is already shorter than {end}ms",
                        item.audio_ms
                    ),
                    param: Some("audio_end_ms".into()),
                });
            }
            item.audio_ms = end;
            // As OpenAI, the transcript of truncated audio is removed.
            if let Some(part) = item.value.pointer_mut("/content/0")
                && let Some(o) = part.as_object_mut()
            {
                o.insert("transcript".into(), Value::String(String::new()));
            }
        }
        self.send(
            "conversation.item.truncated",
            json!({"item_id": id, "content_index": content_index, "audio_end_ms": end}),
        )
        .await;
        Ok(())
    }

    async fn response_create(&self, v: &Value) -> Result<(), Reject> {
        if let Some(active) = lock(&self.conv).active.as_ref().map(|a| a.0.clone()) {
            return Err(reject(
                "conversation_already_has_active_response",
                format!(
                    "Conversation already has an active response in progress: {active}. Wait until the response is finished before creating a new response."
                ),
            ));
        }
        if let Some(Fault::ErrorEvent {
            error_type,
            code,
            message,
        }) = self
            .emu
            .take_fault(|f| matches!(f, Fault::ErrorEvent { .. }))
        {
            let event_id = v.get("event_id").and_then(Value::as_str).map(str::to_owned);
            self.send_error_typed(&error_type, &code, &message, None, event_id)
                .await;
            return Ok(());
        }
        let metadata = v.pointer("/response/metadata").cloned();
        self.start_response(metadata).await
    }

    fn response_cancel(&self) -> Result<(), Reject> {
        match &lock(&self.conv).active {
            Some((_, cancel)) => {
                cancel.store(true, Ordering::SeqCst);
                Ok(())
            }
            None => Err(reject(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
            )),
        }
    }

    async fn start_response(&self, metadata: Option<Value>) -> Result<(), Reject> {
        let id = self.emu.next_id("resp_");
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut c = lock(&self.conv);
            if let Some((active, _)) = &c.active {
                return Err(reject(
                    "conversation_already_has_active_response",
                    format!("Conversation already has an active response in progress: {active}."),
                ));
            }
            c.active = Some((id.clone(), cancel.clone()));
        }
        let script = lock(&self.emu.state)
            .responses
            .pop_front()
            .unwrap_or_default();
        let close_mid = self
            .emu
            .take_fault(|f| matches!(f, Fault::CloseMidResponse))
            .is_some();
        let slow = match self
            .emu
            .take_fault(|f| matches!(f, Fault::SlowFirstDelta(_)))
        {
            Some(Fault::SlowFirstDelta(d)) => d,
            _ => Duration::ZERO,
        };
        self.send(
            "response.created",
            json!({"response": {"id": id, "object": "realtime.response", "status": "in_progress",
                                "output": [], "metadata": metadata}}),
        )
        .await;
        let this = self.clone();
        tokio::spawn(async move {
            this.play(id, script, cancel, close_mid, slow).await;
        });
        Ok(())
    }

    async fn play(
        &self,
        response_id: String,
        script: ScriptedResponse,
        cancel: Arc<AtomicBool>,
        close_mid: bool,
        slow: Duration,
    ) {
        let pace = lock(&self.emu.state).pace;
        let audio = lock(&self.conv).audio_output(self.beta);
        let mut output = Vec::new();
        let mut output_tokens = 0u64;
        let mut first = true;
        let mut phase = 0u64;
        let max_tokens = {
            let c = lock(&self.conv);
            let key = if self.beta {
                "max_response_output_tokens"
            } else {
                "max_output_tokens"
            };
            c.session.get(key).and_then(Value::as_u64)
        };
        let limit_hit = AtomicBool::new(false);
        let cancel_requested = || cancel.load(Ordering::SeqCst);
        let cancelled = || cancel_requested() || limit_hit.load(Ordering::SeqCst);
        'steps: for (output_index, step) in script.steps.iter().enumerate() {
            if cancelled() {
                break;
            }
            let item_id = self.emu.next_id("item_");
            let mut item = match step {
                ScriptedStep::Text(_) => {
                    json!({"id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
                           "role": "assistant", "content": []})
                }
                ScriptedStep::FunctionCall { name, .. } => {
                    json!({"id": item_id, "object": "realtime.item", "type": "function_call",
                           "status": "in_progress", "call_id": self.emu.next_id("call_"), "name": name,
                           "arguments": ""})
                }
            };
            let previous = {
                let mut c = lock(&self.conv);
                let prev = c.last_id();
                c.items.push(Item {
                    id: item_id.clone(),
                    value: item.clone(),
                    audio_ms: 0,
                });
                prev
            };
            self.send(
                "response.output_item.added",
                json!({"response_id": response_id, "output_index": output_index, "item": item}),
            )
            .await;
            if self.beta {
                self.send(
                    "conversation.item.created",
                    json!({"previous_item_id": previous, "item": item}),
                )
                .await;
            } else {
                self.send(
                    "conversation.item.added",
                    json!({"previous_item_id": previous, "item": item}),
                )
                .await;
            }
            let ids = json!({"response_id": response_id, "item_id": item_id, "output_index": output_index,
                             "content_index": 0});
            let with = |extra: Value| {
                let mut v = ids.clone();
                merge(&mut v, &extra);
                v
            };
            match step {
                ScriptedStep::Text(text) => {
                    let part_type = match (audio, self.beta) {
                        (true, false) => "output_audio",
                        (true, true) => "audio",
                        (false, false) => "output_text",
                        (false, true) => "text",
                    };
                    let text_key = if audio { "transcript" } else { "text" };
                    self.send(
                        "response.content_part.added",
                        with(json!({"part": {"type": part_type, text_key: ""}})),
                    )
                    .await;
                    let mut said = String::new();
                    for w in words(text) {
                        if first {
                            first = false;
                            if !slow.is_zero() {
                                tokio::time::sleep(slow).await;
                            }
                        } else if !pace.is_zero() {
                            tokio::time::sleep(pace).await;
                        }
                        if max_tokens.is_some_and(|m| output_tokens >= m) {
                            limit_hit.store(true, Ordering::SeqCst);
                        }
                        if cancelled() {
                            break;
                        }
                        said.push_str(&w);
                        output_tokens += 1;
                        if audio {
                            self.send(
                                self.name(
                                    "response.output_audio_transcript.delta",
                                    "response.audio_transcript.delta",
                                ),
                                with(json!({"delta": w})),
                            )
                            .await;
                            let ms = w.trim().chars().count() as u64 * AUDIO_MS_PER_CHAR;
                            self.send(
                                self.name("response.output_audio.delta", "response.audio.delta"),
                                with(json!({"delta": tone_b64(ms, &mut phase)})),
                            )
                            .await;
                            if let Some(it) =
                                lock(&self.conv).items.iter_mut().find(|i| i.id == item_id)
                            {
                                it.audio_ms += ms;
                            }
                        } else {
                            self.send(
                                self.name("response.output_text.delta", "response.text.delta"),
                                with(json!({"delta": w})),
                            )
                            .await;
                        }
                        if close_mid {
                            let _ = self.out.send(Out::Abort).await;
                            return;
                        }
                    }
                    let part = json!({"type": part_type, text_key: said});
                    if !cancelled() {
                        if audio {
                            self.send(
                                self.name("response.output_audio.done", "response.audio.done"),
                                with(json!({})),
                            )
                            .await;
                            self.send(
                                self.name(
                                    "response.output_audio_transcript.done",
                                    "response.audio_transcript.done",
                                ),
                                with(json!({"transcript": said})),
                            )
                            .await;
                        } else {
                            self.send(
                                self.name("response.output_text.done", "response.text.done"),
                                with(json!({"text": said})),
                            )
                            .await;
                        }
                        self.send("response.content_part.done", with(json!({"part": part})))
                            .await;
                    }
                    item["content"] = json!([part]);
                }
                ScriptedStep::FunctionCall { name, arguments } => {
                    if first {
                        first = false;
                        if !slow.is_zero() {
                            tokio::time::sleep(slow).await;
                        }
                    }
                    if cancelled() {
                        item["status"] = Value::String("incomplete".into());
                        self.finish_item(&response_id, output_index, &item).await;
                        output.push(item);
                        break 'steps;
                    }
                    let call_id = item.get("call_id").cloned().unwrap_or(Value::Null);
                    self.send(
                        "response.function_call_arguments.delta",
                        json!({"response_id": response_id, "item_id": item_id, "output_index": output_index,
                               "call_id": call_id, "delta": arguments}),
                    )
                    .await;
                    if close_mid {
                        let _ = self.out.send(Out::Abort).await;
                        return;
                    }
                    self.send(
                        "response.function_call_arguments.done",
                        json!({"response_id": response_id, "item_id": item_id, "output_index": output_index,
                               "call_id": call_id, "name": name, "arguments": arguments}),
                    )
                    .await;
                    item["arguments"] = Value::String(arguments.clone());
                    output_tokens += (arguments.len() as u64).div_ceil(4);
                }
            }
            item["status"] = Value::String(
                if cancelled() {
                    "incomplete"
                } else {
                    "completed"
                }
                .into(),
            );
            self.finish_item(&response_id, output_index, &item).await;
            output.push(item);
        }
        let status = if cancel_requested() {
            "cancelled"
        } else if limit_hit.load(Ordering::SeqCst) {
            "incomplete"
        } else {
            "completed"
        };
        let input_tokens = {
            let mut c = lock(&self.conv);
            c.active = None;
            c.items.len() as u64 * 10
        };
        let details = match status {
            "cancelled" => json!({"type": "cancelled", "reason": "client_cancelled"}),
            "incomplete" => json!({"type": "incomplete", "reason": "max_output_tokens"}),
            _ => Value::Null,
        };
        self.send(
            "response.done",
            json!({"response": {"id": response_id, "object": "realtime.response", "status": status,
                                "status_details": details, "output": output,
                                "usage": {"total_tokens": input_tokens + output_tokens,
                                          "input_tokens": input_tokens, "output_tokens": output_tokens}}}),
        )
        .await;
        // As OpenAI, the rate limits follow each response.
        self.send(
            "rate_limits.updated",
            json!({"rate_limits": [
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 400_000,
                 "remaining": 400_000u64.saturating_sub(input_tokens + output_tokens), "reset_seconds": 0.5},
            ]}),
        )
        .await;
    }

    async fn finish_item(&self, response_id: &str, output_index: usize, item: &Value) {
        if let Some(id) = item.get("id").and_then(Value::as_str)
            && let Some(it) = lock(&self.conv).items.iter_mut().find(|i| i.id == id)
        {
            it.value = item.clone();
        }
        self.send(
            "response.output_item.done",
            json!({"response_id": response_id, "output_index": output_index, "item": item}),
        )
        .await;
        if !self.beta {
            self.send("conversation.item.done", json!({"item": item}))
                .await;
        }
    }
}

fn not_found(id: &str) -> Reject {
    Reject {
        code: "item_not_found",
        message: format!("Item with item_id not found: {id}"),
        param: Some("item_id".into()),
    }
}
