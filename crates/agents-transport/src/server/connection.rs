//! One WebSocket connection: hello, session creation, the reader loop (audio in, control messages, limits), the
//! event pump (session events → JSON) and the teardown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use agents_core::events::{CloseReason, SessionEvent};
use agents_core::metrics::{Metrics, TurnMetrics};
use agents_core::{SessionControl, SessionHandle, SessionIo};
use agents_pipeline::AgentSession;
use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;
use futures::stream::SplitStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::input::WsAudioInput;
use super::output::{WriterLink, WsAudioOutput, WsTextOutput};
use super::writer::{Outgoing, Written, writer};
use super::{Inner, SessionRequest};
use crate::protocol::{
    ClientMessage, FRAME_MS, Hello, PROTOCOL_VERSION, Ready, ServerMessage, SpeechEventKind,
    TurnReport, close_code, error_code, parse_client_message,
};

const CONTROL_QUEUE: usize = 256;
const AUDIO_QUEUE: usize = 32;

/// Why the reader loop ended.
#[derive(Debug)]
enum End {
    Bye,
    Gone,
    Idle,
    Abuse,
    Shutdown,
    SessionClosed(String),
}

fn close_reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::UserInitiated => "user_initiated",
        CloseReason::ParticipantDisconnected => "participant_disconnected",
        CloseReason::Error => "error",
        CloseReason::Shutdown => "shutdown",
        _ => "closed",
    }
}

fn millis(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn turn_report(t: &TurnMetrics) -> TurnReport {
    TurnReport {
        speech_id: t.speech_id.clone(),
        end_of_utterance_ms: millis(t.end_of_utterance_delay),
        transcription_ms: millis(t.transcription_delay),
        llm_ttft_ms: millis(t.llm_ttft),
        tts_ttfb_ms: millis(t.tts_ttfb),
        e2e_ms: millis(t.e2e_latency),
    }
}

/// A token bucket: `rate` per second, `burst` at most.
struct RateLimiter {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            rate: f64::from(rate),
            burst,
            last: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Errors in a sliding window; reports abuse past the limit.
struct ErrorWindow {
    times: VecDeque<Instant>,
    max: usize,
    window: Duration,
}

impl ErrorWindow {
    /// Records an error; `true` when the limit is exceeded.
    fn record(&mut self, now: Instant) -> bool {
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.times.pop_front();
        }
        self.times.len() > self.max
    }
}

/// Sends to the writer without waiting forever on a client that does not read.
async fn send(control: &mpsc::Sender<Outgoing>, msg: ServerMessage) {
    let _ = control.send(Outgoing::Json(msg)).await;
}

async fn close_with(
    control: &mpsc::Sender<Outgoing>,
    error: Option<ServerMessage>,
    code: u16,
    reason: &str,
) {
    if let Some(e) = error {
        send(control, e).await;
    }
    let _ = control
        .send(Outgoing::Close {
            code,
            reason: reason.to_owned(),
        })
        .await;
}

/// Reads the hello: the first message, text JSON.
async fn read_hello(
    stream: &mut SplitStream<WebSocket>,
    max_bytes: usize,
) -> Result<Hello, String> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) if text.len() > max_bytes => {
                return Err(format!(
                    "hello of {} bytes exceeds the limit of {max_bytes} bytes",
                    text.len()
                ));
            }
            Some(Ok(Message::Text(text))) => {
                return match parse_client_message(text.as_str()) {
                    Ok(ClientMessage::Hello(h)) => h.validate().map(|()| h),
                    Ok(_) => Err("the first message must be a hello".to_owned()),
                    Err(e) => Err(e.to_string()),
                };
            }
            Some(Ok(Message::Binary(_))) => {
                return Err("the first message must be a JSON hello, got audio".to_owned());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => return Err("closed before hello".to_owned()),
            Some(Err(e)) => return Err(format!("read error before hello: {e}")),
        }
    }
}

pub(crate) async fn run(socket: WebSocket, inner: Arc<Inner>) {
    let _conn = inner.connection_guard();
    let limits = inner.limits.clone();
    let (sink, mut stream) = socket.split();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
    let epoch = Arc::new(AtomicU64::new(0));
    let written = Arc::new(Written::default());
    let mut writer_task = inner.tasks.spawn(writer(
        sink,
        control_rx,
        audio_rx,
        epoch.clone(),
        written.clone(),
        limits.ping_interval,
        limits.write_timeout,
    ));
    let finish_writer = |mut task: tokio::task::JoinHandle<()>| async move {
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    };

    // 1. Hello.
    let hello = tokio::select! {
        r = tokio::time::timeout(limits.hello_timeout, read_hello(&mut stream, limits.max_text_bytes)) => match r {
            Ok(Ok(h)) => h,
            Ok(Err(message)) => {
                tracing::debug!(%message, "bad hello");
                let e = ServerMessage::error(error_code::BAD_HELLO, message, true);
                close_with(&control_tx, Some(e), close_code::POLICY, "bad hello").await;
                finish_writer(writer_task).await;
                return;
            }
            Err(_) => {
                let e = ServerMessage::error(error_code::BAD_HELLO, "no hello within the time allowed", true);
                close_with(&control_tx, Some(e), close_code::POLICY, "hello timeout").await;
                finish_writer(writer_task).await;
                return;
            }
        },
        () = inner.shutdown.cancelled() => {
            close_with(&control_tx, None, close_code::GOING_AWAY, "shutdown").await;
            finish_writer(writer_task).await;
            return;
        }
    };

    // 2. The session.
    let session_id = format!("ws_{}", uuid::Uuid::new_v4().simple());
    let request = SessionRequest::from_hello(session_id.clone(), hello.clone());
    let (session, agent) = match (inner.factory)(request).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "session factory failed");
            let e = ServerMessage::error(error_code::SESSION_FAILED, e.to_string(), true);
            close_with(&control_tx, Some(e), close_code::INTERNAL, "session failed").await;
            finish_writer(writer_task).await;
            return;
        }
    };
    let _session_guard = inner.session_guard();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let handle = session.handle();
    let (output, player) = match WsAudioOutput::new(
        hello.output,
        WriterLink {
            audio: audio_tx,
            control: control_tx.clone(),
            epoch,
            written,
        },
        handle.clone(),
        limits.output_lead,
        limits.output_buffer,
    ) {
        Ok(v) => v,
        Err(e) => {
            let e = ServerMessage::error(error_code::SESSION_FAILED, e.to_string(), true);
            close_with(&control_tx, Some(e), close_code::INTERNAL, "session failed").await;
            finish_writer(writer_task).await;
            return;
        }
    };
    let output = Arc::new(output);
    tasks.spawn(inner.tasks.track_future(player));
    let text = Arc::new(WsTextOutput::new(
        control_tx.clone(),
        handle.clone(),
        Some(output.clone()),
    ));
    let (ws_input, input) = match WsAudioInput::new(
        hello.input,
        usize::try_from(limits.input_buffer.as_millis() / u128::from(FRAME_MS))
            .unwrap_or(usize::MAX),
    ) {
        Ok(v) => v,
        Err(e) => {
            let e = ServerMessage::error(error_code::BAD_HELLO, e.to_string(), true);
            close_with(&control_tx, Some(e), close_code::POLICY, "bad hello").await;
            finish_writer(writer_task).await;
            return;
        }
    };
    let events = session.events();
    let io = SessionIo::new()
        .with_audio_input(input)
        .with_audio_output(output.clone())
        .with_text_output(text);
    if let Err(e) = session.start(agent, io).await {
        let e = ServerMessage::error(error_code::SESSION_FAILED, e.to_string(), true);
        close_with(&control_tx, Some(e), close_code::INTERNAL, "session failed").await;
        finish_writer(writer_task).await;
        return;
    }
    send(
        &control_tx,
        ServerMessage::Ready(Ready {
            protocol: PROTOCOL_VERSION,
            session_id: session_id.clone(),
            input: hello.input,
            output: hello.output,
            frame_ms: FRAME_MS,
        }),
    )
    .await;
    tracing::debug!(%session_id, "websocket session started");

    // 3. Events → JSON.
    let (closed_tx, mut closed_rx) = oneshot::channel();
    tasks.spawn(inner.tasks.track_future(pump(
        events,
        control_tx.clone(),
        handle.clone(),
        closed_tx,
        inner.tasks.clone(),
    )));

    // 4. Reader loop.
    let mut reader = Reader {
        session: &session,
        output: &output,
        control: &control_tx,
        input: ws_input,
        limiter: RateLimiter::new(limits.messages_per_second, limits.message_burst),
        errors: ErrorWindow {
            times: VecDeque::new(),
            max: limits.max_errors,
            window: limits.abuse_window,
        },
        last_rate_error: None,
        last_overflow_error: None,
        inner: &inner,
    };
    let end = loop {
        tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, stream.next()) => match r {
                Err(_) => break End::Idle,
                Ok(None | Some(Err(_))) => break End::Gone,
                Ok(Some(Ok(message))) => {
                    if let Some(end) = reader.on_message(message).await {
                        break end;
                    }
                }
            },
            r = &mut closed_rx => break match r {
                Ok(reason) => End::SessionClosed(reason),
                Err(_) => End::SessionClosed("closed".to_owned()),
            },
            () = inner.shutdown.cancelled() => break End::Shutdown,
            _ = &mut writer_task => break End::Gone,
        }
    };
    tracing::debug!(%session_id, ?end, "websocket connection ending");

    // 5. Teardown: close the session, say why, close the socket, free every task.
    let (code, reason, close_as) = match &end {
        End::Bye => (
            close_code::NORMAL,
            "bye".to_owned(),
            Some(CloseReason::ParticipantDisconnected),
        ),
        End::Gone => (
            close_code::NORMAL,
            "participant_disconnected".to_owned(),
            Some(CloseReason::ParticipantDisconnected),
        ),
        End::Idle => (
            close_code::POLICY,
            "idle_timeout".to_owned(),
            Some(CloseReason::ParticipantDisconnected),
        ),
        End::Abuse => (
            close_code::POLICY,
            "abuse".to_owned(),
            Some(CloseReason::ParticipantDisconnected),
        ),
        End::Shutdown => (
            close_code::GOING_AWAY,
            "shutdown".to_owned(),
            Some(CloseReason::Shutdown),
        ),
        End::SessionClosed(r) => (close_code::NORMAL, r.clone(), None),
    };
    if let Some(why) = close_as {
        match tokio::time::timeout(limits.close_timeout, session.close_with_reason(why)).await {
            Ok(Ok(()) | Err(_)) => {}
            Err(_) => tracing::warn!(%session_id, "session close timed out"),
        }
    }
    // The audio input ends only now: ending it first would close the session as "participant disconnected"
    // whatever the reason (`close_on_input_end`).
    drop(reader);
    // The pump forwards the session's `close {reason}` when it sees the Close event.
    let mut close_sent = matches!(end, End::SessionClosed(_));
    if !close_sent {
        close_sent = matches!(
            tokio::time::timeout(Duration::from_secs(2), &mut closed_rx).await,
            Ok(Ok(_))
        );
    }
    if !matches!(end, End::Gone) && !writer_task.is_finished() {
        if !close_sent {
            send(
                &control_tx,
                ServerMessage::Close {
                    reason: reason.clone(),
                },
            )
            .await;
        }
        let _ = control_tx
            .send(Outgoing::Close {
                code,
                reason: reason.clone(),
            })
            .await;
        finish_writer(writer_task).await;
    } else {
        writer_task.abort();
    }
    tasks.shutdown().await;
    drop(output);
    drop(session);
    tracing::debug!(%session_id, "websocket session freed");
}

struct Reader<'a> {
    session: &'a AgentSession,
    output: &'a Arc<WsAudioOutput>,
    control: &'a mpsc::Sender<Outgoing>,
    input: WsAudioInput,
    limiter: RateLimiter,
    errors: ErrorWindow,
    last_rate_error: Option<Instant>,
    last_overflow_error: Option<Instant>,
    inner: &'a Inner,
}

impl Reader<'_> {
    /// Sends an error; `Some(End::Abuse)` once too many errors came in the window.
    async fn error(&mut self, code: &str, message: impl Into<String>) -> Option<End> {
        let now = Instant::now();
        send(self.control, ServerMessage::error(code, message, false)).await;
        if self.errors.record(now) {
            send(
                self.control,
                ServerMessage::error(
                    error_code::ABUSE,
                    "too many errors: closing the connection",
                    true,
                ),
            )
            .await;
            return Some(End::Abuse);
        }
        None
    }

    async fn on_message(&mut self, message: Message) -> Option<End> {
        let limits = &self.inner.limits;
        let (is_text, len) = match &message {
            Message::Text(t) => (true, t.len()),
            Message::Binary(b) => (false, b.len()),
            Message::Close(_) => return Some(End::Bye),
            Message::Ping(_) | Message::Pong(_) => return None,
        };
        let now = Instant::now();
        if !self.limiter.allow(now) {
            // One notice per second at most; each notice counts towards abuse.
            if self
                .last_rate_error
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.last_rate_error = Some(now);
                return self
                    .error(error_code::RATE_LIMITED, "too many messages: dropped")
                    .await;
            }
            return None;
        }
        let max = if is_text {
            limits.max_text_bytes
        } else {
            limits.max_binary_bytes
        };
        if len > max {
            return self
                .error(
                    error_code::MESSAGE_TOO_LARGE,
                    format!("message of {len} bytes exceeds the limit of {max} bytes"),
                )
                .await;
        }
        match message {
            Message::Binary(bytes) => self.on_audio(&bytes).await,
            Message::Text(text) => match parse_client_message(text.as_str()) {
                Ok(m) => self.on_control(m).await,
                Err(e) => self.error(e.code(), e.to_string()).await,
            },
            _ => None,
        }
    }

    async fn on_audio(&mut self, bytes: &[u8]) -> Option<End> {
        let pushed = match self.input.push(bytes) {
            Ok(p) => p,
            Err(e) => return self.error(error_code::BAD_AUDIO, e.to_string()).await,
        };
        if pushed.dropped > 0 {
            let now = Instant::now();
            if self
                .last_overflow_error
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.last_overflow_error = Some(now);
                send(
                    self.control,
                    ServerMessage::error(
                        error_code::INPUT_OVERFLOW,
                        "audio arrives faster than real time: frames dropped",
                        false,
                    ),
                )
                .await;
            }
        }
        None
    }

    async fn request_failed(&mut self, what: &str, e: impl std::fmt::Display) {
        send(
            self.control,
            ServerMessage::error(error_code::REQUEST_FAILED, format!("{what}: {e}"), false),
        )
        .await;
    }

    async fn on_control(&mut self, message: ClientMessage) -> Option<End> {
        match message {
            ClientMessage::Hello(_) => {
                return self
                    .error(error_code::BAD_HELLO, "hello already received")
                    .await;
            }
            ClientMessage::Interrupt => {
                if let Err(e) = SessionControl::interrupt(self.session).await {
                    self.request_failed("interrupt", e).await;
                }
            }
            ClientMessage::Text { text } => {
                if let Err(e) = self.session.send_text_input(text).await {
                    self.request_failed("text", e).await;
                }
            }
            ClientMessage::CommitUserTurn => {
                if let Err(e) = self.session.commit_user_turn() {
                    self.request_failed("commit_user_turn", e).await;
                }
            }
            ClientMessage::ClearUserTurn => {
                if let Err(e) = self.session.clear_user_turn() {
                    self.request_failed("clear_user_turn", e).await;
                }
            }
            ClientMessage::Playback {
                speech_id,
                position_ms,
                finished,
            } => {
                self.output.on_client_playback(
                    speech_id.as_deref(),
                    Duration::from_millis(position_ms),
                    finished,
                );
            }
            ClientMessage::Dtmf { digit } => {
                let valid = digit.len() == 1
                    && digit
                        .chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'));
                if !valid {
                    return self
                        .error(
                            error_code::BAD_JSON,
                            "dtmf digit must be one of 0-9 * # A-D",
                        )
                        .await;
                }
                match &self.inner.dtmf {
                    Some(f) => f(self.session, &digit),
                    None => tracing::debug!(%digit, "dtmf received (no handler)"),
                }
            }
            ClientMessage::Ping { id } => send(self.control, ServerMessage::Pong { id }).await,
            ClientMessage::Bye => return Some(End::Bye),
        }
        None
    }
}

/// Maps session events to JSON until the session closes; reports the close reason.
async fn pump(
    mut events: agents_core::stream::EventStream<SessionEvent>,
    control: mpsc::Sender<Outgoing>,
    session: SessionHandle,
    closed: oneshot::Sender<String>,
    tracker: tokio_util::task::TaskTracker,
) {
    let mut watchers: JoinSet<()> = JoinSet::new();
    let mut reason = "closed".to_owned();
    while let Some(event) = events.next().await {
        while watchers.try_join_next().is_some() {}
        let msg = match event {
            SessionEvent::AgentStateChanged { new, .. } => {
                Some(ServerMessage::AgentState { state: new })
            }
            SessionEvent::UserStateChanged { new, .. } => {
                Some(ServerMessage::UserState { state: new })
            }
            SessionEvent::UserInputTranscribed {
                transcript,
                is_final,
                language,
                ..
            } => Some(ServerMessage::UserTranscript {
                text: transcript,
                is_final,
                language,
            }),
            SessionEvent::AgentStartedSpeaking { .. } => {
                session.current_speech().map(|s| ServerMessage::Speech {
                    speech_id: s.id().to_owned(),
                    event: SpeechEventKind::Started,
                    interrupted: false,
                })
            }
            SessionEvent::SpeechCreated { speech, .. } => {
                let control = control.clone();
                watchers.spawn(tracker.track_future(async move {
                    speech.wait_for_playout().await;
                    let _ = control
                        .send(Outgoing::Json(ServerMessage::Speech {
                            speech_id: speech.id().to_owned(),
                            event: SpeechEventKind::Done,
                            interrupted: speech.interrupted(),
                        }))
                        .await;
                }));
                None
            }
            SessionEvent::FunctionToolsExecuted { calls, outputs } => {
                for (i, call) in calls.iter().enumerate() {
                    let out = outputs.get(i).and_then(Option::as_ref);
                    send(
                        &control,
                        ServerMessage::Tool {
                            name: call.name.clone(),
                            arguments: call.arguments.clone(),
                            output: out.map(|o| o.output.clone()),
                            is_error: out.is_some_and(|o| o.is_error),
                        },
                    )
                    .await;
                }
                None
            }
            SessionEvent::MetricsCollected(Metrics::Turn(t)) => Some(ServerMessage::Metrics {
                turn: turn_report(&t),
            }),
            SessionEvent::Error(e) => Some(ServerMessage::error(
                error_code::SESSION_ERROR,
                format!("{:?} ({}): {}", e.component, e.label, e.error),
                !e.recoverable,
            )),
            SessionEvent::Close { reason: r, .. } => {
                reason = close_reason_name(r).to_owned();
                send(
                    &control,
                    ServerMessage::Close {
                        reason: reason.clone(),
                    },
                )
                .await;
                break;
            }
            _ => None,
        };
        if let Some(msg) = msg {
            send(&control, msg).await;
        }
    }
    let _ = closed.send(reason);
    // Speech watchers end with the session's speeches (every handle completes on close).
    while watchers.join_next().await.is_some() {}
}
