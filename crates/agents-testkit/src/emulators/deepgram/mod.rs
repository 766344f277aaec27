//! The Deepgram emulator: live listen WebSocket (`/v1/listen`), pre-recorded `POST /v1/listen`, Aura speak WebSocket
//! (`/v1/speak`) and `POST /v1/speak`, on one loopback port.
//!
//! It speaks the documented protocol (see `docs/providers/deepgram.md` for the source of each fact) and is scripted
//! per utterance:
//!
//! - **Listen.** Speech is detected by energy in 10 ms frames ([`DeepgramEmulatorConfig::speech_threshold`]). Each
//!   detected utterance takes the next scripted transcript ([`DeepgramEmulator::script_transcript`]); while speech
//!   goes on it sends interim `Results` (with `interim_results=true`, one word more every
//!   [`DeepgramEmulatorConfig::interim_every`] of speech), then a final one (`is_final` and `speech_final`) once
//!   `endpointing` ms of silence followed, with words spread evenly over the speech. `SpeechStarted` is sent at
//!   speech onset with `vad_events=true`, `UtteranceEnd` after `utterance_end_ms` of silence past the last word.
//!   Silence alone is covered by empty final results every [`DeepgramEmulatorConfig::silence_final_after`], as the
//!   real service does, so a client knows which audio is done. `Finalize` finalizes the current utterance at once
//!   (`from_finalize: true`); `CloseStream` finalizes, sends `Metadata` and closes normally; `KeepAlive` (or any
//!   message) keeps the socket open, and [`DeepgramEmulatorConfig::idle_timeout`] (10 s, the provider's rule) without
//!   any closes it with 1011 and the NET-0001 reason. Times are measured in received audio, so results are
//!   deterministic whatever the pace the client sends at; only the idle rule uses the clock.
//! - **Speak.** Audio is a tone whose length follows the text ([`DeepgramEmulatorConfig::tts_per_char`] per
//!   character) at the requested rate, sent in binary chunks after each `Flush`, then `Flushed {sequence_id}`.
//!   `Clear` answers `Cleared`; `Close` synthesizes what is buffered and closes normally. More than
//!   [`DeepgramEmulatorConfig::flush_limit`] flushes within [`DeepgramEmulatorConfig::flush_window`] (20 per 60 s)
//!   get a `Warning` and are not processed.
//! - **Checks.** `Authorization: Token <key>` (else 401), query parameters (unknown names or invalid values: 400 with
//!   `dg-error`, as on the real upgrade), `dg-request-id` on every answer.
//! - **Faults** on demand ([`Fault`]): 401, 429, a socket dropped in the middle of an utterance, a malformed JSON
//!   message, slow first audio.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use agents_testkit::emulators::deepgram::DeepgramEmulator;
//! let dg = DeepgramEmulator::start().await?;
//! dg.script_transcript("hello world");
//! let base_url = dg.http_url(); // point the plugin's base URL here, with dg.api_key()
//! # let _ = base_url; Ok(()) }
//! ```

mod listen;
mod speak;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::EmulatorServer;
use crate::util::lock;

/// Settings of a [`DeepgramEmulator`]; the defaults are the provider's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeepgramEmulatorConfig {
    /// The key accepted in `Authorization: Token <key>`.
    pub api_key: String,
    /// No audio and no text message for this long closes a listen socket with 1011 / NET-0001. Default 10 s.
    pub idle_timeout: Duration,
    /// RMS (normalized to full scale) above which a 10 ms frame is speech.
    pub speech_threshold: f32,
    /// Speech between two interim results (one more word each). Default 300 ms.
    pub interim_every: Duration,
    /// Silence covered by one empty final result, and the endpoint when `endpointing=false`. Default 1 s.
    pub silence_final_after: Duration,
    /// Synthesized audio per character of text. Default 60 ms.
    pub tts_per_char: Duration,
    /// Audio per binary message of the speak socket. Default 100 ms.
    pub tts_chunk: Duration,
    /// Flush messages accepted per [`DeepgramEmulatorConfig::flush_window`] on one speak socket. Default 20.
    pub flush_limit: usize,
    /// Window of the flush limit. Default 60 s.
    pub flush_window: Duration,
}

impl Default for DeepgramEmulatorConfig {
    fn default() -> Self {
        Self {
            api_key: "dg-emulator-key".to_owned(),
            idle_timeout: Duration::from_secs(10),
            speech_threshold: crate::signal::DEFAULT_SPEECH_THRESHOLD,
            interim_every: Duration::from_millis(300),
            silence_final_after: Duration::from_secs(1),
            tts_per_char: Duration::from_millis(60),
            tts_chunk: Duration::from_millis(100),
            flush_limit: 20,
            flush_window: Duration::from_secs(60),
        }
    }
}

impl DeepgramEmulatorConfig {
    /// Sets the idle timeout of listen sockets.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the flush limit of speak sockets: `limit` flushes per `window`.
    #[must_use]
    pub fn with_flush_limit(mut self, limit: usize, window: Duration) -> Self {
        self.flush_limit = limit;
        self.flush_window = window;
        self
    }

    /// Sets the accepted key.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }
}

/// A failure the emulator produces on demand, once, for the next request it applies to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// The next request of any endpoint is refused with 401, whatever its key.
    Unauthorized,
    /// The next request of any endpoint is refused with 429, with `Retry-After` when given.
    RateLimited {
        /// The `Retry-After` header to send.
        retry_after: Option<Duration>,
    },
    /// The next listen socket is dropped (no close frame) once an utterance has this much speech.
    DropMidUtterance {
        /// Speech heard in the current utterance before the drop.
        after_speech: Duration,
    },
    /// The next listen socket sends a truncated JSON text instead of its first `Results`.
    MalformedMessage,
    /// The next speak request (WebSocket or REST) waits this long before its first audio.
    SlowFirstAudio(Duration),
}

impl Fault {
    fn applies_to(&self, endpoint: Endpoint) -> bool {
        match self {
            Self::Unauthorized | Self::RateLimited { .. } => true,
            Self::DropMidUtterance { .. } | Self::MalformedMessage => {
                endpoint == Endpoint::ListenWs
            }
            Self::SlowFirstAudio(_) => matches!(endpoint, Endpoint::SpeakWs | Endpoint::SpeakRest),
        }
    }

    fn is_upgrade_fault(&self) -> bool {
        matches!(self, Self::Unauthorized | Self::RateLimited { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    ListenWs,
    ListenRest,
    SpeakWs,
    SpeakRest,
}

/// How a listen socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// Still open.
    Open,
    /// Closed normally after `CloseStream` (or the client's close frame).
    Normal,
    /// Closed by the emulator with 1011 / NET-0001 after the idle timeout.
    IdleTimeout,
    /// Dropped by a [`Fault::DropMidUtterance`].
    Dropped,
    /// The client went away without a close handshake.
    ClientGone,
}

/// What one listen WebSocket connection received.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenSessionRecord {
    /// The query parameters of the upgrade, in order.
    pub query: Vec<(String, String)>,
    /// `KeepAlive` messages received.
    pub keep_alives: u32,
    /// `Finalize` messages received.
    pub finalizes: u32,
    /// Whether `CloseStream` was received.
    pub close_stream: bool,
    /// Audio received (per channel).
    pub audio: Duration,
    /// Binary messages received.
    pub audio_messages: u32,
    /// Final results with a non-empty transcript sent.
    pub finals_sent: u32,
    /// How the socket ended.
    pub end: SessionEnd,
}

impl ListenSessionRecord {
    /// The value of query parameter `name`, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What one speak WebSocket connection received.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SpeakSessionRecord {
    /// The query parameters of the upgrade.
    pub query: Vec<(String, String)>,
    /// The text of every `Speak` message.
    pub texts: Vec<String>,
    /// `Flush` messages processed.
    pub flushes: u32,
    /// `Flush` messages refused by the flush limit.
    pub rejected_flushes: u32,
    /// `Clear` messages received.
    pub clears: u32,
    /// Whether `Close` was received.
    pub closed: bool,
}

/// One REST request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestRecord {
    /// `"/v1/listen"` or `"/v1/speak"`.
    pub path: &'static str,
    /// The query parameters.
    pub query: Vec<(String, String)>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// Body length in bytes.
    pub body_len: usize,
}

#[derive(Debug, Default)]
struct Records {
    listen: Vec<ListenSessionRecord>,
    speak: Vec<SpeakSessionRecord>,
    rest: Vec<RestRecord>,
    rejected: u32,
}

/// State shared by the handlers and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: DeepgramEmulatorConfig,
    transcripts: Mutex<VecDeque<String>>,
    faults: Mutex<Vec<Fault>>,
    records: Mutex<Records>,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("dg-emu-{n:08x}-0000-4000-8000-{n:012x}")
    }

    /// The transcript the current utterance will get (without taking it).
    pub(crate) fn peek_transcript(&self) -> String {
        lock(&self.transcripts).front().cloned().unwrap_or_default()
    }

    /// Takes the transcript of the utterance being finalized.
    pub(crate) fn take_transcript(&self) -> String {
        lock(&self.transcripts).pop_front().unwrap_or_default()
    }

    pub(crate) fn take_fault(&self, endpoint: Endpoint, upgrade: bool) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults
            .iter()
            .position(|f| f.applies_to(endpoint) && f.is_upgrade_fault() == upgrade)?;
        Some(faults.remove(i))
    }

    pub(crate) fn add_listen(&self, query: Vec<(String, String)>) -> usize {
        let mut r = lock(&self.records);
        r.listen.push(ListenSessionRecord {
            query,
            keep_alives: 0,
            finalizes: 0,
            close_stream: false,
            audio: Duration::ZERO,
            audio_messages: 0,
            finals_sent: 0,
            end: SessionEnd::Open,
        });
        r.listen.len() - 1
    }

    pub(crate) fn with_listen(&self, i: usize, f: impl FnOnce(&mut ListenSessionRecord)) {
        if let Some(rec) = lock(&self.records).listen.get_mut(i) {
            f(rec);
        }
    }

    pub(crate) fn add_speak(&self, query: Vec<(String, String)>) -> usize {
        let mut r = lock(&self.records);
        r.speak.push(SpeakSessionRecord {
            query,
            ..SpeakSessionRecord::default()
        });
        r.speak.len() - 1
    }

    pub(crate) fn with_speak(&self, i: usize, f: impl FnOnce(&mut SpeakSessionRecord)) {
        if let Some(rec) = lock(&self.records).speak.get_mut(i) {
            f(rec);
        }
    }

    pub(crate) fn add_rest(&self, rec: RestRecord) {
        lock(&self.records).rest.push(rec);
    }

    /// Checks the key and the upgrade faults: `Err` is the response to send instead.
    pub(crate) fn admit(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
    ) -> Result<String, Box<Response>> {
        let admitted = self.admit_inner(endpoint, headers);
        if admitted.is_err() {
            lock(&self.records).rejected += 1;
        }
        admitted
    }

    fn admit_inner(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
    ) -> Result<String, Box<Response>> {
        let request_id = self.request_id();
        match self.take_fault(endpoint, true) {
            Some(Fault::Unauthorized) => return Err(Box::new(unauthorized(&request_id))),
            Some(Fault::RateLimited { retry_after }) => {
                let mut resp = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_REQUESTS",
                    "Too many requests. Please try again later.",
                    &request_id,
                );
                if let Some(after) = retry_after
                    && let Ok(v) = HeaderValue::from_str(&after.as_secs().to_string())
                {
                    resp.headers_mut().insert("retry-after", v);
                }
                return Err(Box::new(resp));
            }
            _ => {}
        }
        let expected = format!("Token {}", self.config.api_key);
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return Err(Box::new(unauthorized(&request_id)));
        }
        Ok(request_id)
    }
}

fn unauthorized(request_id: &str) -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        "INVALID_AUTH",
        "Invalid credentials.",
        request_id,
    )
}

/// Deepgram's error answer: `dg-error` and `dg-request-id` headers and the `{err_code, err_msg, request_id}` body.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response {
    let body = serde_json::json!({"err_code": code, "err_msg": message, "request_id": request_id});
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(message) {
        resp.headers_mut().insert("dg-error", v);
    }
    with_request_id(resp, request_id)
}

/// Adds the `dg-request-id` header Deepgram puts on every answer.
pub(crate) fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("dg-request-id", v);
    }
    resp
}

/// Sends one JSON text message; `false` when the socket is gone.
pub(crate) async fn send_json(
    socket: &mut axum::extract::ws::WebSocket,
    v: &serde_json::Value,
) -> bool {
    socket
        .send(axum::extract::ws::Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

/// A 400 for a bad query parameter.
pub(crate) fn bad_request(message: &str, request_id: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "Bad Request", message, request_id)
}

/// A running Deepgram emulator; stops when dropped.
#[derive(Debug)]
pub struct DeepgramEmulator {
    server: EmulatorServer,
    shared: Arc<Shared>,
}

impl DeepgramEmulator {
    /// Starts an emulator with the provider's defaults.
    ///
    /// # Errors
    /// When the loopback port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(DeepgramEmulatorConfig::default()).await
    }

    /// Starts an emulator with `config`.
    ///
    /// # Errors
    /// When the loopback port cannot be bound.
    pub async fn start_with(config: DeepgramEmulatorConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            transcripts: Mutex::new(VecDeque::new()),
            faults: Mutex::new(Vec::new()),
            records: Mutex::new(Records::default()),
            next_id: AtomicU64::new(1),
        });
        let router = axum::Router::new()
            .route(
                "/v1/listen",
                get(listen::ws_handler).post(listen::rest_handler),
            )
            .route(
                "/v1/speak",
                get(speak::ws_handler).post(speak::rest_handler),
            )
            .with_state(shared.clone());
        let server = EmulatorServer::serve(router).await?;
        Ok(Self { server, shared })
    }

    /// The base URL to give the plugin (`http://127.0.0.1:<port>`; the plugin derives `ws://` from it).
    pub fn http_url(&self) -> String {
        self.server.http_url()
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn ws_url(&self) -> String {
        self.server.ws_url()
    }

    /// The key the emulator accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// The settings in use.
    pub fn config(&self) -> &DeepgramEmulatorConfig {
        &self.shared.config
    }

    /// Queues the transcript of the next detected utterance (or of the next pre-recorded request).
    pub fn script_transcript(&self, text: impl Into<String>) {
        lock(&self.shared.transcripts).push_back(text.into());
    }

    /// Scripted transcripts not used yet.
    pub fn remaining_transcripts(&self) -> usize {
        lock(&self.shared.transcripts).len()
    }

    /// Queues a fault for the next request it applies to.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Every listen WebSocket connection so far, in order.
    pub fn listen_sessions(&self) -> Vec<ListenSessionRecord> {
        lock(&self.shared.records).listen.clone()
    }

    /// Every speak WebSocket connection so far, in order.
    pub fn speak_sessions(&self) -> Vec<SpeakSessionRecord> {
        lock(&self.shared.records).speak.clone()
    }

    /// Every REST request that passed authentication, in order.
    pub fn rest_requests(&self) -> Vec<RestRecord> {
        lock(&self.shared.records).rest.clone()
    }

    /// Requests refused with 401 or 429 (bad key or injected fault), all endpoints together.
    pub fn rejected_requests(&self) -> u32 {
        lock(&self.shared.records).rejected
    }

    /// Stops the server and aborts open connections (what an outage looks like).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Seconds as the JSON number Deepgram uses.
pub(crate) fn secs(samples: u64, rate: u32) -> f64 {
    samples as f64 / f64::from(rate.max(1))
}

/// Parses `true` / `false`.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! The emulator's protocol, checked with a raw WebSocket client.

    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    async fn connect(
        dg: &DeepgramEmulator,
        path_and_query: &str,
        key: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::Error,
    > {
        let mut req = format!("{}{}", dg.ws_url(), path_and_query)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Token {key}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
    }

    fn status_of(e: tokio_tungstenite::tungstenite::Error) -> (u16, Option<String>) {
        match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => (
                r.status().as_u16(),
                r.headers()
                    .get("dg-error")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            ),
            other => panic!("expected an HTTP refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn idle_listen_socket_is_closed_with_net0001() {
        let dg = DeepgramEmulator::start_with(
            DeepgramEmulatorConfig::default().with_idle_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap();
        let mut ws = connect(
            &dg,
            "/v1/listen?encoding=linear16&sample_rate=16000",
            dg.api_key(),
        )
        .await
        .unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        let Message::Close(Some(frame)) = msg else {
            panic!("expected a close frame, got {msg:?}")
        };
        assert_eq!(u16::from(frame.code), 1011);
        assert!(frame.reason.contains("net0001"), "{}", frame.reason);
        assert_eq!(dg.listen_sessions()[0].end, SessionEnd::IdleTimeout);
    }

    #[tokio::test]
    async fn keep_alive_holds_the_socket_open() {
        let dg = DeepgramEmulator::start_with(
            DeepgramEmulatorConfig::default().with_idle_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
        let mut ws = connect(&dg, "/v1/listen", dg.api_key()).await.unwrap();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ws.send(Message::text(r#"{"type":"KeepAlive"}"#))
                .await
                .unwrap();
        }
        ws.send(Message::text(r#"{"type":"CloseStream"}"#))
            .await
            .unwrap();
        let mut kinds = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    kinds.push(v["type"].as_str().unwrap().to_owned());
                }
                Message::Close(f) => {
                    assert_eq!(u16::from(f.unwrap().code), 1000);
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(kinds, vec!["Metadata"]);
        let s = &dg.listen_sessions()[0];
        assert_eq!((s.keep_alives, s.end), (5, SessionEnd::Normal));
    }

    #[tokio::test]
    async fn upgrade_checks_key_and_parameters() {
        let dg = DeepgramEmulator::start().await.unwrap();
        let (status, _) = status_of(connect(&dg, "/v1/listen", "wrong").await.unwrap_err());
        assert_eq!(status, 401);
        for (query, error) in [
            ("?bogus=1", "Unknown query parameter 'bogus'."),
            (
                "?utterance_end_ms=999&interim_results=true",
                "Invalid 'utterance_end_ms' value of '999'.",
            ),
            (
                "?encoding=mp9&sample_rate=16000",
                "Invalid 'encoding' value of 'mp9'.",
            ),
            (
                "?interim_results=yes",
                "Invalid 'interim_results' value of 'yes'.",
            ),
            (
                "?model=nova-2&keyterm=x",
                "Keyterm prompting is only available with Nova-3 models.",
            ),
        ] {
            let (status, dg_error) = status_of(
                connect(&dg, &format!("/v1/listen{query}"), dg.api_key())
                    .await
                    .unwrap_err(),
            );
            assert_eq!((status, dg_error.as_deref()), (400, Some(error)), "{query}");
        }
        let (status, _) = status_of(
            connect(&dg, "/v1/speak?sample_rate=22050", dg.api_key())
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 400);
        assert!(dg.listen_sessions().is_empty());
    }

    #[tokio::test]
    async fn speak_flush_limit_answers_a_warning() {
        let dg = DeepgramEmulator::start_with(
            DeepgramEmulatorConfig::default().with_flush_limit(1, Duration::from_secs(60)),
        )
        .await
        .unwrap();
        let mut ws = connect(&dg, "/v1/speak?sample_rate=16000", dg.api_key())
            .await
            .unwrap();
        for m in [
            r#"{"type":"Speak","text":"Hi."}"#,
            r#"{"type":"Flush"}"#,
            r#"{"type":"Speak","text":"Again."}"#,
            r#"{"type":"Flush"}"#,
            r#"{"type":"Clear"}"#,
        ] {
            ws.send(Message::text(m)).await.unwrap();
        }
        let mut texts = Vec::new();
        let mut audio_bytes = 0;
        while texts.len() < 4 {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    texts.push(v["type"].as_str().unwrap().to_owned());
                }
                Message::Binary(b) => audio_bytes += b.len(),
                _ => {}
            }
        }
        assert_eq!(texts, vec!["Metadata", "Flushed", "Warning", "Cleared"]);
        // 3 characters at 60 ms each, 16 kHz, 16-bit.
        assert_eq!(audio_bytes, 180 * 16 * 2);
        let s = &dg.speak_sessions()[0];
        assert_eq!((s.flushes, s.rejected_flushes, s.clears), (1, 1, 1));
    }
}
