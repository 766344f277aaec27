//! The OpenAI HTTP emulator: `POST /v1/chat/completions` (streamed as server-sent events, or whole),
//! `POST /v1/audio/speech` (raw 24 kHz PCM) and `POST /v1/audio/transcriptions` (multipart upload).
//!
//! It speaks the wire format documented in `docs/providers/openai.md` (OpenAI's OpenAPI spec, checked against the
//! official Python SDK and LiveKit's plugin), validates what the client sends the way the real service does
//! (auth header, required fields, unknown fields, message roles and order, tool-message linkage, tool schemas) and
//! answers invalid requests with OpenAI's status and error body `{"error": {"message", "type", "param", "code"}}`.
//!
//! Each endpoint has a queue of scripted responses, consumed one per valid request, and a default used when the
//! queue is empty. Every request (valid or not) is recorded for assertions. Faults are part of a script
//! ([`Fault`]): error statuses, `Retry-After`, a slow first byte, a connection dropped mid-stream, a malformed SSE
//! line.
//!
//! [`OpenAiEmulator::serve_with_realtime`] serves this emulator and the
//! [Realtime emulator](super::openai_realtime) on one port, under one base URL, as the real API does.
//!
//! The Azure OpenAI paths (`/openai/deployments/{deployment}/...?api-version=...`, `api-key` header) are served
//! by the same handlers; there the body's `model` is optional and a missing `api-version` is a 404.
//!
//! ```
//! # async fn demo() -> std::io::Result<()> {
//! use agents_testkit::emulators::openai::{ChatScript, OpenAiEmulator};
//!
//! let emulator = OpenAiEmulator::new().with_api_key("sk-test");
//! emulator.push_chat(ChatScript::text(["Hel", "lo"]));
//! let server = emulator.serve().await?;
//! let base_url = format!("{}/v1", server.http_url()); // point the client here
//! # let _ = base_url;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::post;

use super::EmulatorServer;
use super::openai_realtime::OpenAiRealtimeEmulator;

mod audio;
mod chat;
mod http;
mod multipart;

/// A failure the emulator produces on purpose, instead of (or in the middle of) a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this HTTP status and OpenAI's error body for it, with an optional `Retry-After` header value.
    Status {
        /// The status (400, 401, 429, 500, 503...).
        status: u16,
        /// The `Retry-After` header value, e.g. `"1"`.
        retry_after: Option<String>,
    },
    /// Wait this long before sending the response head, then answer normally.
    SlowFirstByte(Duration),
    /// Send this many SSE events (chat) or audio chunks (speech), then drop the connection without ending the body.
    DropMidStream {
        /// Events or chunks sent before the drop.
        after: usize,
    },
    /// Send this many SSE events, then a line that is not server-sent events, then the rest of the stream.
    MalformedSseLine {
        /// Events sent before the bad line.
        after: usize,
    },
    /// Send this many SSE events, then an event whose data is not valid JSON, then the rest of the stream.
    InvalidJsonEvent {
        /// Events sent before the bad event.
        after: usize,
    },
    /// Send this many SSE events, then an error event `data: {"error": {...}}` (a server error during generation),
    /// and end the stream.
    StreamError {
        /// Events sent before the error.
        after: usize,
    },
}

impl Fault {
    /// An error status without `Retry-After`.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            retry_after: None,
        }
    }

    /// A 429 with `Retry-After: <secs>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(retry_after_secs.to_string()),
        }
    }
}

/// One step of a scripted chat reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatStep {
    /// One content delta.
    Text(String),
    /// A tool call: a first delta with the id and name, then one delta per argument fragment.
    ToolCall(ScriptedToolCall),
}

/// A scripted tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScriptedToolCall {
    /// The call id (`call_<n>` when `None`).
    pub id: Option<String>,
    /// The function name.
    pub name: String,
    /// The arguments, in the fragments they are streamed in (they concatenate to the arguments text).
    pub fragments: Vec<String>,
}

impl ScriptedToolCall {
    /// A call whose arguments arrive in one fragment.
    pub fn new(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self {
            id: None,
            name: name.into(),
            fragments: vec![arguments.into()],
        }
    }

    /// A call whose arguments arrive in these fragments.
    pub fn split(name: impl Into<String>, fragments: &[&str]) -> Self {
        Self {
            id: None,
            name: name.into(),
            fragments: fragments.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    /// Sets the call id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// The scripted answer to one chat completions request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatScript {
    /// The reply, delta by delta.
    pub steps: Vec<ChatStep>,
    /// The finish reason; `None` derives it: `tool_calls` when the reply has tool calls, else `stop`.
    pub finish_reason: Option<String>,
    /// `(prompt_tokens, completion_tokens)`; `None` computes them from the request and the reply.
    pub usage: Option<(u32, u32)>,
    /// Pause before each SSE event.
    pub chunk_delay: Duration,
    /// Give every tool call `index: 0` and tell them apart by `id` only (as Ollama does).
    pub reuse_index_zero: bool,
    /// Repeat the call id on every argument delta (as some compatible servers do).
    pub repeat_ids: bool,
    /// A failure instead of (or during) the reply.
    pub fault: Option<Fault>,
}

impl Default for ChatScript {
    fn default() -> Self {
        Self::text(["Hello", " from", " the", " emulator."])
    }
}

impl ChatScript {
    /// A text reply streamed as these content deltas.
    pub fn text<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::steps(
            chunks
                .into_iter()
                .map(|c| ChatStep::Text(c.into()))
                .collect(),
        )
    }

    /// A reply of these tool calls `(name, arguments)`, in order, each with its arguments in one fragment.
    pub fn tool_calls(calls: &[(&str, &str)]) -> Self {
        Self::steps(
            calls
                .iter()
                .map(|(n, a)| ChatStep::ToolCall(ScriptedToolCall::new(*n, *a)))
                .collect(),
        )
    }

    /// A reply of one tool call whose arguments are not valid JSON (cut off mid-object), as models sometimes
    /// write them.
    pub fn tool_call_with_invalid_arguments(name: &str) -> Self {
        Self::tool_calls(&[(name, r#"{"city": "Par"#)])
    }

    /// A reply of these steps.
    pub fn steps(steps: Vec<ChatStep>) -> Self {
        Self {
            steps,
            finish_reason: None,
            usage: None,
            chunk_delay: Duration::ZERO,
            reuse_index_zero: false,
            repeat_ids: false,
            fault: None,
        }
    }

    /// A reply that is only this failure.
    pub fn fault(fault: Fault) -> Self {
        Self::steps(Vec::new()).with_fault(fault)
    }

    /// An error status.
    pub fn error(status: u16) -> Self {
        Self::fault(Fault::status(status))
    }

    /// Sets the fault.
    #[must_use]
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Sets the finish reason.
    #[must_use]
    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = Some(reason.into());
        self
    }

    /// Sets the usage.
    #[must_use]
    pub fn with_usage(mut self, prompt_tokens: u32, completion_tokens: u32) -> Self {
        self.usage = Some((prompt_tokens, completion_tokens));
        self
    }

    /// Sets the pause before each event.
    #[must_use]
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Gives every tool call index 0 (calls told apart by id only).
    #[must_use]
    pub fn with_index_zero_reuse(mut self) -> Self {
        self.reuse_index_zero = true;
        self
    }

    /// Repeats the call id on every argument delta.
    #[must_use]
    pub fn with_repeated_ids(mut self) -> Self {
        self.repeat_ids = true;
        self
    }
}

/// The scripted answer to one `/audio/speech` request.
///
/// The audio is deterministic and its length follows the text: `ms_per_char` milliseconds per character of
/// `input`, divided by `speed`. Each character is a short sine whose pitch depends on the character.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpeechScript {
    /// Audio milliseconds per input character.
    pub ms_per_char: u32,
    /// Size of each body chunk in bytes (odd by default, so clients must carry half samples across chunks).
    pub chunk_bytes: usize,
    /// Pause before each chunk.
    pub chunk_delay: Duration,
    /// A failure instead of (or during) the audio.
    pub fault: Option<Fault>,
}

impl Default for SpeechScript {
    fn default() -> Self {
        Self {
            ms_per_char: 40,
            chunk_bytes: 4801,
            chunk_delay: Duration::ZERO,
            fault: None,
        }
    }
}

impl SpeechScript {
    /// A failure.
    pub fn fault(fault: Fault) -> Self {
        Self {
            fault: Some(fault),
            ..Self::default()
        }
    }

    /// Sets the chunk size.
    #[must_use]
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }

    /// Sets the pause before each chunk.
    #[must_use]
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Sets the fault.
    #[must_use]
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }
}

/// The scripted answer to one `/audio/transcriptions` request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TranscriptionScript {
    /// The transcript.
    pub text: String,
    /// The language reported by `verbose_json` when the request named none.
    pub language: String,
    /// A failure instead of the transcript.
    pub fault: Option<Fault>,
}

impl Default for TranscriptionScript {
    fn default() -> Self {
        Self::text("hello from the emulator")
    }
}

impl TranscriptionScript {
    /// A transcript.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            language: "english".to_owned(),
            fault: None,
        }
    }

    /// A failure.
    pub fn fault(fault: Fault) -> Self {
        Self {
            fault: Some(fault),
            ..Self::default()
        }
    }

    /// Sets the language `verbose_json` reports when the request named none.
    #[must_use]
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = language.into();
        self
    }
}

/// The format of an uploaded WAV file, as the emulator decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WavInfo {
    /// Sample rate.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// Samples per channel in the data chunk.
    pub frames: u64,
}

impl WavInfo {
    /// The audio duration.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.frames as f64 / f64::from(self.sample_rate))
    }
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedFile {
    /// The part's file name.
    pub filename: Option<String>,
    /// The part's content type.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub len: usize,
    /// The WAV format, when the file parsed as WAV.
    pub wav: Option<WavInfo>,
}

/// The body of a recorded request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecordedBody {
    /// A JSON body.
    Json(serde_json::Value),
    /// A multipart form: text fields and the uploaded file.
    Multipart {
        /// Text fields by name.
        fields: BTreeMap<String, String>,
        /// The `file` part.
        file: Option<RecordedFile>,
    },
    /// A body that could not be parsed, kept raw.
    Raw(Vec<u8>),
}

/// A request the emulator received.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The request id the emulator answered with (`x-request-id`).
    pub request_id: String,
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: RecordedBody,
}

impl RecordedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body, if the body was JSON.
    pub fn json(&self) -> Option<&serde_json::Value> {
        match &self.body {
            RecordedBody::Json(v) => Some(v),
            _ => None,
        }
    }

    /// A text field of a multipart body.
    pub fn form_field(&self, name: &str) -> Option<&str> {
        match &self.body {
            RecordedBody::Multipart { fields, .. } => fields.get(name).map(String::as_str),
            _ => None,
        }
    }

    /// The uploaded file of a multipart body.
    pub fn file(&self) -> Option<&RecordedFile> {
        match &self.body {
            RecordedBody::Multipart { file, .. } => file.as_ref(),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    api_key: Option<String>,
    allow_unknown_fields: bool,
    chat: VecDeque<ChatScript>,
    default_chat: ChatScript,
    speech: VecDeque<SpeechScript>,
    default_speech: SpeechScript,
    transcription: VecDeque<TranscriptionScript>,
    default_transcription: TranscriptionScript,
    requests: Vec<RecordedRequest>,
    next_id: u64,
}

/// The emulator's shared state: scripts and recorded requests. Cheap to clone; every clone is the same emulator.
#[derive(Debug, Clone, Default)]
pub struct OpenAiEmulator {
    state: Arc<Mutex<State>>,
}

impl OpenAiEmulator {
    /// An emulator that accepts any (or no) key and answers with the default scripts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires this key, as `Authorization: Bearer <key>` or (Azure) `api-key: <key>`.
    #[must_use]
    pub fn with_api_key(self, key: impl Into<String>) -> Self {
        self.lock().api_key = Some(key.into());
        self
    }

    /// Accepts unknown top-level request fields (an OpenAI-compatible server that ignores them) instead of the
    /// real service's 400.
    #[must_use]
    pub fn with_unknown_fields_allowed(self) -> Self {
        self.lock().allow_unknown_fields = true;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written in a way that matters to a test.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the answer to the next valid chat request.
    pub fn push_chat(&self, script: ChatScript) {
        self.lock().chat.push_back(script);
    }

    /// Sets the answer to chat requests when the queue is empty.
    pub fn set_default_chat(&self, script: ChatScript) {
        self.lock().default_chat = script;
    }

    /// Queues the answer to the next valid speech request.
    pub fn push_speech(&self, script: SpeechScript) {
        self.lock().speech.push_back(script);
    }

    /// Sets the answer to speech requests when the queue is empty.
    pub fn set_default_speech(&self, script: SpeechScript) {
        self.lock().default_speech = script;
    }

    /// Queues the answer to the next valid transcription request.
    pub fn push_transcription(&self, script: TranscriptionScript) {
        self.lock().transcription.push_back(script);
    }

    /// Sets the answer to transcription requests when the queue is empty.
    pub fn set_default_transcription(&self, script: TranscriptionScript) {
        self.lock().default_transcription = script;
    }

    /// Empties every queue (defaults stay).
    pub fn clear_scripts(&self) {
        let mut s = self.lock();
        s.chat.clear();
        s.speech.clear();
        s.transcription.clear();
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The requests whose path ends with `suffix` (e.g. `"/chat/completions"`).
    pub fn requests_to(&self, suffix: &str) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// The router serving this emulator (to mount next to others on one server).
    pub fn router(&self) -> Router {
        router(self.clone())
    }

    /// Serves the router on a fresh loopback port; the OpenAI base URL is `{server.http_url()}/v1`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn serve(&self) -> std::io::Result<EmulatorServer> {
        EmulatorServer::serve(self.router()).await
    }

    /// This emulator's routes and `realtime`'s (`GET /v1/realtime`) in one router, as the real API serves both
    /// under one base URL.
    pub fn router_with_realtime(&self, realtime: &OpenAiRealtimeEmulator) -> Router {
        self.router().merge(realtime.router())
    }

    /// Serves this emulator and `realtime` on one loopback port: one base URL (`{server.http_url()}/v1`) for chat,
    /// audio and Realtime clients alike. Each emulator keeps its own scripts and records.
    ///
    /// ```
    /// # async fn demo() -> std::io::Result<()> {
    /// use agents_testkit::emulators::openai::OpenAiEmulator;
    /// use agents_testkit::emulators::openai_realtime::OpenAiRealtimeEmulator;
    ///
    /// let http = OpenAiEmulator::new().with_api_key("sk-test");
    /// let realtime = OpenAiRealtimeEmulator::new().with_api_key("sk-test");
    /// let server = http.serve_with_realtime(&realtime).await?;
    /// let base_url = format!("{}/v1", server.http_url()); // for OpenAiLlm and OpenAiRealtimeModel alike
    /// # let _ = base_url;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn serve_with_realtime(
        &self,
        realtime: &OpenAiRealtimeEmulator,
    ) -> std::io::Result<EmulatorServer> {
        EmulatorServer::serve(self.router_with_realtime(realtime)).await
    }

    fn record(&self, mut request: RecordedRequest) -> String {
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("req_emu{:08x}", s.next_id);
        request.request_id.clone_from(&id);
        s.requests.push(request);
        id
    }

    fn api_key(&self) -> Option<String> {
        self.lock().api_key.clone()
    }

    fn allow_unknown_fields(&self) -> bool {
        self.lock().allow_unknown_fields
    }

    fn next_chat(&self) -> ChatScript {
        let mut s = self.lock();
        match s.chat.pop_front() {
            Some(c) => c,
            None => s.default_chat.clone(),
        }
    }

    fn next_speech(&self) -> SpeechScript {
        let mut s = self.lock();
        match s.speech.pop_front() {
            Some(c) => c,
            None => s.default_speech.clone(),
        }
    }

    fn next_transcription(&self) -> TranscriptionScript {
        let mut s = self.lock();
        match s.transcription.pop_front() {
            Some(c) => c,
            None => s.default_transcription.clone(),
        }
    }
}

/// The router of an OpenAI emulator: the public API paths under `/v1` and the Azure deployment paths.
pub fn router(state: OpenAiEmulator) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/audio/speech", post(audio::speech))
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(chat::handle),
        )
        .route(
            "/openai/deployments/{deployment}/audio/speech",
            post(audio::speech),
        )
        .route(
            "/openai/deployments/{deployment}/audio/transcriptions",
            post(audio::transcriptions),
        )
        .with_state(state)
}
