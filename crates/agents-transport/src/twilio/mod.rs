//! Telephony through Twilio Media Streams: a phone call becomes an [`AgentSession`].
//!
//! [`router`] serves two routes:
//!
//! - `GET /twilio`: the Media Streams WebSocket. Twilio connects it when a call executes
//!   `<Connect><Stream url="wss://.../twilio"/></Connect>` (a *bidirectional* stream). The connection waits for
//!   Twilio's `start` message, asks the application's [`CallHandler`] for a session and an agent for that call
//!   ([`CallInfo`] carries the call and stream ids and the TwiML `<Parameter>`s), and starts the session with this
//!   call as its audio input and output.
//! - `POST /twilio/voice`: a TwiML webhook answering every call with that `<Connect><Stream>`; point the phone
//!   number's "A call comes in" webhook at it. The stream URL is [`TwilioOptions::with_public_url`], or
//!   `wss://<Host header>/twilio`.
//!
//! What happens on the call:
//!
//! - Caller audio (`media`, base64 µ-law 8 kHz) is decoded ([`mulaw`]) and resampled to
//!   [`TwilioOptions::input_sample_rate`] (16 kHz by default) for the session's VAD and STT.
//! - Agent audio goes out through [`TwilioAudioOutput`]: 20 ms `media` messages, a `mark` after each speech
//!   segment (its echo finishes the segment's playout), and `clear` when the session interrupts the agent.
//! - Keys (`dtmf`) are collected as Pipecat's `DTMFAggregator` does (see [`DtmfOptions`]) and reach the session as
//!   a typed user message, `"DTMF: 123"`, through `AgentSession::send_text_input`; the first key of a sequence
//!   interrupts the agent.
//! - `stop`, or the socket closing, ends the session with `CloseReason::ParticipantDisconnected`. When the session
//!   closes first (the application hangs up), the socket is closed after the queued audio is sent: with
//!   `<Connect><Stream>`, Twilio then goes on with the next TwiML verb, or ends the call when there is none.
//!   Hanging up through Twilio's REST API is not done here.
//! - Malformed messages (bad JSON, unknown events, bad base64, invalid keys, binary frames) are logged and
//!   reported as recoverable `Error` events (`Component::Transport`); the call goes on.
//!
//! Protocol sources and the choices made are in `docs/transports/twilio.md`.

mod call;
pub mod mulaw;
mod output;
pub mod protocol;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::future::BoxFuture;

use agents_audio::SampleRate;
use agents_core::{Agent, SessionError, TextOutput};
use agents_pipeline::AgentSession;

pub use output::TwilioAudioOutput;

/// A boxed error of an application's [`CallHandler`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a Twilio call could not be served, or a message was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TwilioError {
    /// A text frame that is not a valid Media Streams message.
    #[error("malformed Twilio message")]
    Malformed(#[source] serde_json::Error),
    /// An event this transport does not know (ignored).
    #[error("unknown Twilio event `{0}`")]
    UnknownEvent(String),
    /// A `media` payload that is not base64.
    #[error("Twilio media payload is not valid base64")]
    InvalidPayload(#[source] base64::DecodeError),
    /// A `dtmf` digit that is not a phone key.
    #[error("invalid DTMF digit `{0}`")]
    InvalidDigit(String),
    /// A binary WebSocket frame (Twilio only sends JSON text).
    #[error("unexpected binary WebSocket frame (Media Streams messages are JSON text)")]
    BinaryFrame,
    /// A message that needs the stream's `start` came before it.
    #[error("Twilio `{0}` message before `start`")]
    BeforeStart(&'static str),
    /// The stream's audio is not µ-law 8 kHz mono.
    #[error(
        "unsupported Twilio media format {encoding} at {sample_rate} Hz with {channels} channel(s) \
         (expected audio/x-mulaw, 8000 Hz, mono)"
    )]
    UnsupportedMediaFormat {
        /// Encoding announced.
        encoding: String,
        /// Rate announced.
        sample_rate: u32,
        /// Channels announced.
        channels: u16,
    },
    /// No `start` arrived in time.
    #[error("no Twilio `start` message within {0:?}")]
    StartTimeout(Duration),
    /// The stream ended before `start`.
    #[error("the Twilio stream ended before `start`")]
    EndedBeforeStart,
    /// Caller audio could not be resampled.
    #[error("caller audio could not be resampled")]
    Resample(#[source] agents_audio::ResampleError),
    /// The application's [`CallHandler`] failed.
    #[error("the call handler failed")]
    Handler(#[source] BoxError),
    /// The session did not start.
    #[error("the session did not start")]
    Session(#[source] SessionError),
}

/// The call a Media Stream belongs to (from Twilio's `start` message).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallInfo {
    /// The stream's id.
    pub stream_sid: String,
    /// The call's id.
    pub call_sid: Option<String>,
    /// The account's id.
    pub account_sid: Option<String>,
    /// Tracks streamed (`inbound`, `outbound`).
    pub tracks: Vec<String>,
    /// `<Parameter name=".." value=".."/>`s of the `<Stream>` noun (e.g. the caller's number, put there by the
    /// TwiML webhook).
    pub custom_parameters: std::collections::HashMap<String, String>,
}

/// What the application gives for one call: a session (built, not started) and its first agent.
pub struct CallSetup {
    session: AgentSession,
    agent: Agent,
    text_output: Option<Arc<dyn TextOutput>>,
}

impl CallSetup {
    /// A call answered by `agent` in `session`.
    pub fn new(session: AgentSession, agent: Agent) -> Self {
        Self {
            session,
            agent,
            text_output: None,
        }
    }

    /// Also sends the agent's transcript to `output` (in step with the call's playback).
    pub fn with_text_output(mut self, output: Arc<dyn TextOutput>) -> Self {
        self.text_output = Some(output);
        self
    }
}

impl fmt::Debug for CallSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSetup")
            .field(
                "text_output",
                &self.text_output.as_ref().map(|t| t.label().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

/// Builds the session of each call. Implemented by any `Fn(CallInfo) -> impl Future<Output = Result<CallSetup,
/// BoxError>>`.
pub trait CallHandler: Send + Sync + 'static {
    /// The session and agent for `call`.
    fn setup(&self, call: CallInfo) -> BoxFuture<'static, Result<CallSetup, BoxError>>;
}

impl<F, Fut> CallHandler for F
where
    F: Fn(CallInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CallSetup, BoxError>> + Send + 'static,
{
    fn setup(&self, call: CallInfo) -> BoxFuture<'static, Result<CallSetup, BoxError>> {
        Box::pin(self(call))
    }
}

/// How keypad presses reach the session (Pipecat `DTMFAggregator` defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DtmfOptions {
    /// Deliver keys at all (default `true`).
    pub enabled: bool,
    /// A sequence is sent after this long without a new key (default 2 s).
    pub timeout: Duration,
    /// A key that sends the sequence at once, itself included (default `#`).
    pub termination_key: Option<char>,
    /// Text before the keys in the user message (default `"DTMF: "`).
    pub prefix: String,
    /// The first key of a sequence interrupts the agent (default `true`).
    pub interrupt: bool,
}

impl Default for DtmfOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: Duration::from_secs(2),
            termination_key: Some('#'),
            prefix: String::from("DTMF: "),
            interrupt: true,
        }
    }
}

impl DtmfOptions {
    /// Keys are ignored.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
    /// Sets the idle timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets (or removes) the termination key.
    pub fn with_termination_key(mut self, key: Option<char>) -> Self {
        self.termination_key = key;
        self
    }
    /// Sets the message prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Whether the first key interrupts the agent.
    pub fn with_interrupt(mut self, interrupt: bool) -> Self {
        self.interrupt = interrupt;
        self
    }
}

/// Options of the Twilio routes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TwilioOptions {
    /// Rate of the caller audio given to the session (default 16 kHz; 8 kHz skips resampling).
    pub input_sample_rate: SampleRate,
    /// How long to wait for `start` after the socket opens (default 10 s).
    pub start_timeout: Duration,
    /// How long after a segment's estimated end its mark may be late before the segment is taken as played
    /// (default 2 s).
    pub mark_timeout: Duration,
    /// Outgoing messages buffered per call before agent audio waits (default 50: one second of 20 ms chunks).
    pub output_queue: usize,
    /// Caller audio frames buffered before the oldest are dropped (default 50: one second).
    pub input_queue: usize,
    /// Keypad handling.
    pub dtmf: DtmfOptions,
    /// The `wss://` URL of the Media Streams route put in the TwiML answer (default: from the Host header).
    pub public_url: Option<String>,
}

impl Default for TwilioOptions {
    fn default() -> Self {
        Self {
            input_sample_rate: SampleRate::HZ_16000,
            start_timeout: Duration::from_secs(10),
            mark_timeout: Duration::from_secs(2),
            output_queue: 50,
            input_queue: 50,
            dtmf: DtmfOptions::default(),
            public_url: None,
        }
    }
}

impl TwilioOptions {
    /// Sets the rate of the caller audio given to the session.
    pub fn with_input_sample_rate(mut self, rate: SampleRate) -> Self {
        self.input_sample_rate = rate;
        self
    }
    /// Sets the `start` timeout.
    pub fn with_start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = d;
        self
    }
    /// Sets the mark timeout.
    pub fn with_mark_timeout(mut self, d: Duration) -> Self {
        self.mark_timeout = d;
        self
    }
    /// Sets the outgoing queue length (messages).
    pub fn with_output_queue(mut self, n: usize) -> Self {
        self.output_queue = n.max(1);
        self
    }
    /// Sets the caller audio queue length (frames).
    pub fn with_input_queue(mut self, n: usize) -> Self {
        self.input_queue = n.max(1);
        self
    }
    /// Sets the keypad handling.
    pub fn with_dtmf(mut self, dtmf: DtmfOptions) -> Self {
        self.dtmf = dtmf;
        self
    }
    /// Sets the stream URL given in the TwiML answer, e.g. `wss://agent.example.com/twilio`.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }
}

struct Shared {
    handler: Arc<dyn CallHandler>,
    options: Arc<TwilioOptions>,
}

/// The Twilio routes (`GET /twilio` WebSocket, `POST /twilio/voice` TwiML) with default options.
pub fn router(handler: impl CallHandler) -> Router {
    router_with_options(handler, TwilioOptions::default())
}

/// The Twilio routes with `options`.
pub fn router_with_options(handler: impl CallHandler, options: TwilioOptions) -> Router {
    let shared = Arc::new(Shared {
        handler: Arc::new(handler),
        options: Arc::new(options),
    });
    Router::new()
        .route("/twilio", get(media_stream))
        .route("/twilio/voice", post(twiml))
        .with_state(shared)
}

async fn media_stream(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let handler = shared.handler.clone();
    let options = shared.options.clone();
    ws.on_upgrade(move |socket| call::serve(socket, handler, options))
}

async fn twiml(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let url = match &shared.options.public_url {
        Some(url) => url.clone(),
        None => match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => format!("wss://{host}/twilio"),
            None => {
                return (
                    http::StatusCode::BAD_REQUEST,
                    "no Host header: set TwilioOptions::with_public_url",
                )
                    .into_response();
            }
        },
    };
    (
        [(header::CONTENT_TYPE, "text/xml")],
        connect_stream_twiml(&url),
    )
        .into_response()
}

/// The TwiML answering a call with a bidirectional Media Stream to `url`.
pub fn connect_stream_twiml(url: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream url=\"{}\"/></Connect></Response>",
        xml_escape(url)
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_connects_a_stream_and_escapes_the_url() {
        assert_eq!(
            connect_stream_twiml("wss://a.example/twilio?x=1&y=\"2\""),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream \
             url=\"wss://a.example/twilio?x=1&amp;y=&quot;2&quot;\"/></Connect></Response>"
        );
    }
}
