//! One Realtime session: the connection (with its handshake and replay), the task that owns the socket, and the
//! control handle.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agents_audio::{AudioFrame, AudioFrameError, ResampleQuality, Resampler, SampleRate};
use agents_core::chat::{ChatContext, ChatItem};
use agents_core::llm::ToolChoice;
use agents_core::metrics::{RealtimeMetrics, tokens_per_second};
use agents_core::realtime::{RealtimeError, RealtimeEvent, RealtimeSession, ResponseStatus};
use agents_core::tools::ToolDefinition;
use agents_core::{ApiConnectOptions, ApiError};
use async_trait::async_trait;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::LABEL;
use super::options::{Protocol, RealtimeOptions};
use super::protocol::{self, LiveConfig, client_event, normalize};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Capacity of the command queue of a session.
const COMMAND_CAPACITY: usize = 64;
/// Capacity of the event queue of a session.
pub(crate) const EVENT_CAPACITY: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    /// Authorization and the other headers; never printed.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) protocol: Protocol,
    pub(crate) conn: ApiConnectOptions,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// An `error` server event as an [`ApiError`]: `session_expired` is retryable, the others are not.
fn api_error_of(v: &Value) -> (ApiError, Option<String>, String) {
    let err = v.get("error").cloned().unwrap_or(Value::Null);
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let event_id = err
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let text = if code.is_empty() {
        format!("OpenAI Realtime error: {message}")
    } else {
        format!("OpenAI Realtime error ({code}): {message}")
    };
    let e = ApiError::new(text)
        .with_body(err)
        .with_retryable(code == "session_expired");
    (e, event_id, code)
}

async fn connect(ep: &Endpoint) -> Result<Ws, RealtimeError> {
    let mut req = ep.url.as_str().into_client_request().map_err(|e| {
        ApiError::connection(format!("invalid Realtime URL: {e}")).with_retryable(false)
    })?;
    for (name, value) in &ep.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ApiError::new(format!("invalid header name {name:?}")).with_retryable(false)
        })?;
        // The value may be the key: never put it in the error.
        let value = HeaderValue::from_str(value).map_err(|_| {
            ApiError::new(format!("invalid value for header {name}")).with_retryable(false)
        })?;
        req.headers_mut().insert(name, value);
    }
    if ep.protocol == Protocol::Beta {
        req.headers_mut()
            .insert("OpenAI-Beta", HeaderValue::from_static("realtime=v1"));
    }
    match ep
        .conn
        .run_with_timeout(tokio_tungstenite::connect_async(req))
        .await?
    {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let request_id = resp
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.body().clone().unwrap_or_default();
            Err(ApiError::from_http_response(
                resp.status().as_u16(),
                &body,
                request_id.as_deref(),
                None,
            )
            .into())
        }
        Err(e) => Err(ApiError::connection(format!(
            "cannot connect to the OpenAI Realtime API: {e}"
        ))
        .into()),
    }
}

async fn send(ws: &mut Ws, v: &Value) -> Result<(), tungstenite::Error> {
    ws.send(Message::text(v.to_string())).await
}

/// Reads until an event satisfying `pred`; an `error` event fails.
async fn wait_for(
    ws: &mut Ws,
    pred: impl Fn(&str, &Value) -> bool,
) -> Result<Value, RealtimeError> {
    loop {
        let msg = ws.next().await;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return Err(ApiError::connection(format!(
                    "the Realtime API closed the connection during setup ({})",
                    frame.map(|f| f.to_string()).unwrap_or_default()
                ))
                .into());
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(
                    ApiError::connection(format!("Realtime connection failed: {e}")).into(),
                );
            }
            None => {
                return Err(ApiError::connection("Realtime connection closed during setup").into());
            }
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let ty = normalize(v.get("type").and_then(Value::as_str).unwrap_or_default());
        if ty == "error" {
            return Err(api_error_of(&v).0.into());
        }
        if pred(ty, &v) {
            return Ok(v);
        }
    }
}

/// Connects, configures the session and re-creates `items` in order. Returns the socket and the items the server
/// now holds.
pub(crate) async fn open(
    ep: &Endpoint,
    options: &RealtimeOptions,
    live: &LiveConfig,
    items: &[ChatItem],
) -> Result<(Ws, Vec<ChatItem>), RealtimeError> {
    let mut ws = connect(ep).await?;
    let setup = async {
        wait_for(&mut ws, |ty, _| ty == "session.created").await?;
        let (_, update) = client_event(
            "session.update",
            json!({"session": protocol::session_json(options, live)}),
        );
        send(&mut ws, &update).await.map_err(lost)?;
        wait_for(&mut ws, |ty, _| ty == "session.updated").await?;
        let mut replayed = Vec::new();
        let mut previous: Option<String> = None;
        for item in items {
            let Some(j) = protocol::item_json(item, ep.protocol) else {
                continue;
            };
            let mut fields = json!({"item": j});
            if let Some(p) = &previous {
                fields["previous_item_id"] = Value::String(p.clone());
            }
            let (_, ev) = client_event("conversation.item.create", fields);
            send(&mut ws, &ev).await.map_err(lost)?;
            let id = item.id().to_owned();
            wait_for(&mut ws, |ty, v| {
                ty == "conversation.item.added"
                    && v.pointer("/item/id").and_then(Value::as_str) == Some(id.as_str())
            })
            .await?;
            replayed.push(item.clone());
            previous = Some(id);
        }
        Ok::<_, RealtimeError>(replayed)
    };
    let replayed = ep.conn.run_with_timeout(setup).await??;
    Ok((ws, replayed))
}

fn lost(e: tungstenite::Error) -> RealtimeError {
    ApiError::connection(format!("Realtime connection lost: {e}")).into()
}

/// State shared by the control handle and the socket task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Mirror of the server conversation.
    pub(crate) ctx: Mutex<ChatContext>,
    /// Instructions, tools and tool choice (replayed on reconnect).
    pub(crate) live: Mutex<LiveConfig>,
    /// Whether a response is in progress.
    pub(crate) responding: AtomicBool,
}

/// What a call waits for before it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Created(String),
    Deleted(String),
    Truncated(String),
    Committed,
    SessionUpdated,
    ResponseCreated(String),
}

enum Cmd {
    Send(Value),
    Call {
        events: Vec<(String, Value)>,
        expect: Vec<Expect>,
        done: oneshot::Sender<Result<(), RealtimeError>>,
    },
    Close(oneshot::Sender<()>),
}

struct Pending {
    event_ids: Vec<String>,
    expect: Vec<Expect>,
    done: Option<oneshot::Sender<Result<(), RealtimeError>>>,
}

struct Response {
    id: String,
    started: Instant,
    first: Option<Instant>,
}

enum Outcome {
    Closed,
    Lost(String),
}

/// The task that owns the socket.
pub(crate) struct Actor {
    ep: Endpoint,
    options: Arc<RealtimeOptions>,
    shared: Arc<Shared>,
    events: mpsc::Sender<RealtimeEvent>,
    label: String,
    pending: Vec<Pending>,
    response: Option<Response>,
}

impl Actor {
    /// Starts the task over an open socket; returns the control handle.
    pub(crate) fn spawn(
        ws: Ws,
        ep: Endpoint,
        options: Arc<RealtimeOptions>,
        shared: Arc<Shared>,
        events: mpsc::Sender<RealtimeEvent>,
        label: String,
    ) -> OpenAiRealtimeSession {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
        let timeout = ep.conn.timeout;
        let actor = Actor {
            ep,
            options: options.clone(),
            shared: shared.clone(),
            events,
            label,
            pending: Vec::new(),
            response: None,
        };
        tokio::spawn(actor.run(ws, cmd_rx));
        OpenAiRealtimeSession {
            cmd: cmd_tx,
            shared,
            options,
            timeout,
            input: tokio::sync::Mutex::new(InputAudio::default()),
        }
    }

    async fn emit(&self, e: RealtimeEvent) {
        let _ = self.events.send(e).await;
    }

    async fn run(mut self, mut ws: Ws, mut cmd_rx: mpsc::Receiver<Cmd>) {
        let mut connected_at = Instant::now();
        loop {
            match self.serve(&mut ws, &mut cmd_rx, connected_at).await {
                Outcome::Closed => {
                    let _ = ws.close(None).await;
                    self.fail_pending(RealtimeError::SessionClosed);
                    return;
                }
                Outcome::Lost(reason) => {
                    tracing::info!(label = %self.label, %reason, "realtime connection lost, reconnecting");
                    let _ = ws.close(None).await;
                    self.fail_pending(
                        ApiError::connection(format!("Realtime connection lost: {reason}")).into(),
                    );
                    self.shared.responding.store(false, Ordering::SeqCst);
                    if let Some(r) = self.response.take() {
                        self.emit(RealtimeEvent::ResponseDone {
                            response_id: r.id,
                            status: ResponseStatus::Failed(reason.clone()),
                            metrics: None,
                        })
                        .await;
                    }
                    let items = lock(&self.shared.ctx).items().to_vec();
                    let live = lock(&self.shared.live).clone();
                    let (ep, options) = (self.ep.clone(), self.options.clone());
                    let reopened = self
                        .ep
                        .conn
                        .retry("reconnect to the OpenAI Realtime API", |_| {
                            open(&ep, &options, &live, &items)
                        })
                        .await;
                    match reopened {
                        Ok((new_ws, replayed)) => {
                            ws = new_ws;
                            // What could not be re-created (audio without a transcript) left the conversation.
                            let dropped: Vec<String> = items
                                .iter()
                                .filter(|i| !replayed.iter().any(|r| r.id() == i.id()))
                                .map(|i| i.id().to_owned())
                                .collect();
                            *lock(&self.shared.ctx) = ChatContext::from_items(replayed);
                            connected_at = Instant::now();
                            for item_id in dropped {
                                self.emit(RealtimeEvent::ConversationItemDeleted { item_id })
                                    .await;
                            }
                            self.emit(RealtimeEvent::Reconnected).await;
                        }
                        Err(error) => {
                            self.emit(RealtimeEvent::Error {
                                error,
                                recoverable: false,
                            })
                            .await;
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn serve(
        &mut self,
        ws: &mut Ws,
        cmd_rx: &mut mpsc::Receiver<Cmd>,
        connected_at: Instant,
    ) -> Outcome {
        let lifetime = self.options.max_session_duration;
        loop {
            let idle = self.response.is_none();
            let expiry = async {
                match lifetime {
                    Some(d) => tokio::time::sleep_until(connected_at + d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    None => return Outcome::Closed,
                    Some(Cmd::Close(done)) => {
                        let _ = ws.close(None).await;
                        self.fail_pending(RealtimeError::SessionClosed);
                        let _ = done.send(());
                        return Outcome::Closed;
                    }
                    Some(Cmd::Send(v)) => {
                        if let Err(e) = send(ws, &v).await {
                            return Outcome::Lost(e.to_string());
                        }
                    }
                    Some(Cmd::Call { events, expect, done }) => {
                        let event_ids = events.iter().map(|(id, _)| id.clone()).collect();
                        if expect.is_empty() {
                            let _ = done.send(Ok(()));
                        } else {
                            self.pending.push(Pending { event_ids, expect, done: Some(done) });
                        }
                        for (_, v) in events {
                            if let Err(e) = send(ws, &v).await {
                                return Outcome::Lost(e.to_string());
                            }
                        }
                    }
                },
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(o) = self.on_server_event(t.as_str()).await {
                            return o;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Outcome::Lost(format!(
                            "closed by the server ({})",
                            frame.map(|f| f.to_string()).unwrap_or_default()
                        ));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Outcome::Lost(e.to_string()),
                    None => return Outcome::Lost("connection closed".into()),
                },
                () = expiry, if idle => {
                    return Outcome::Lost("session lifetime reached".into());
                }
                () = self.events.closed() => return Outcome::Closed,
            }
        }
    }

    fn fail_pending(&mut self, error: RealtimeError) {
        for mut p in self.pending.drain(..) {
            if let Some(done) = p.done.take() {
                let _ = done.send(Err(error.clone()));
            }
        }
    }

    /// Marks one expectation met; a call whose expectations are all met returns.
    fn resolve(&mut self, what: &Expect) {
        self.pending
            .retain(|p| p.done.as_ref().is_some_and(|d| !d.is_closed()));
        if let Some(p) = self.pending.iter_mut().find(|p| p.expect.contains(what)) {
            if let Some(i) = p.expect.iter().position(|e| e == what) {
                p.expect.remove(i);
            }
            if p.expect.is_empty()
                && let Some(done) = p.done.take()
            {
                let _ = done.send(Ok(()));
            }
        }
        self.pending.retain(|p| p.done.is_some());
    }

    fn mirror_upsert(&self, item: &Value, previous: Option<&str>) -> Option<ChatItem> {
        let mut ctx = lock(&self.shared.ctx);
        let chat_item = protocol::chat_item(item, &ctx)?;
        if let Some(existing) = ctx.get_mut_by_id(chat_item.id()) {
            // Keep what the server did not send again (e.g. a transcript completed earlier).
            let keep = match (&*existing, &chat_item) {
                (ChatItem::Message(old), ChatItem::Message(new)) => {
                    new.content.is_empty() && !old.content.is_empty()
                }
                _ => false,
            };
            if !keep {
                *existing = chat_item;
            }
            return None;
        }
        let at = previous
            .and_then(|p| ctx.index_by_id(p))
            .map_or(ctx.len(), |i| i + 1);
        ctx.insert(at, chat_item.clone());
        Some(chat_item)
    }

    fn first_delta(&mut self) -> String {
        match &mut self.response {
            Some(r) => {
                if r.first.is_none() {
                    r.first = Some(Instant::now());
                }
                r.id.clone()
            }
            None => String::new(),
        }
    }

    async fn on_server_event(&mut self, text: &str) -> Option<Outcome> {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.emit(RealtimeEvent::Error {
                    error: RealtimeError::Protocol {
                        reason: format!("server event is not JSON: {e}"),
                    },
                    recoverable: true,
                })
                .await;
                return None;
            }
        };
        let s = |ptr: &str| {
            v.pointer(ptr)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let ty = normalize(v.get("type").and_then(Value::as_str).unwrap_or_default());
        match ty {
            "session.updated" => self.resolve(&Expect::SessionUpdated),
            "input_audio_buffer.speech_started" => {
                self.emit(RealtimeEvent::InputSpeechStarted).await;
            }
            "input_audio_buffer.speech_stopped" => {
                self.emit(RealtimeEvent::InputSpeechStopped {
                    user_transcription_enabled: self.options.input_transcription.is_some(),
                })
                .await;
            }
            "input_audio_buffer.committed" => self.resolve(&Expect::Committed),
            "conversation.item.added" | "conversation.item.done" => {
                let item = v.get("item")?;
                let previous = v.get("previous_item_id").and_then(Value::as_str);
                if let Some(created) = self.mirror_upsert(item, previous) {
                    self.emit(RealtimeEvent::ConversationItemCreated { item: created })
                        .await;
                }
                if ty == "conversation.item.added"
                    && let Some(id) = item.get("id").and_then(Value::as_str)
                {
                    self.resolve(&Expect::Created(id.to_owned()));
                }
            }
            "conversation.item.deleted" => {
                let id = s("/item_id");
                let removed = lock(&self.shared.ctx).remove_by_id(&id).is_some();
                self.resolve(&Expect::Deleted(id.clone()));
                if removed {
                    self.emit(RealtimeEvent::ConversationItemDeleted { item_id: id })
                        .await;
                }
            }
            "conversation.item.truncated" => {
                let id = s("/item_id");
                if let Some(ChatItem::Message(m)) = lock(&self.shared.ctx).get_mut_by_id(&id) {
                    m.interrupted = true;
                }
                self.resolve(&Expect::Truncated(id));
            }
            "conversation.item.input_audio_transcription.delta" => {
                self.emit(RealtimeEvent::InputAudioTranscription {
                    item_id: s("/item_id"),
                    transcript: s("/delta"),
                    is_final: false,
                })
                .await;
            }
            "conversation.item.input_audio_transcription.completed" => {
                let item_id = s("/item_id");
                let transcript = s("/transcript");
                if let Some(ChatItem::Message(m)) = lock(&self.shared.ctx).get_mut_by_id(&item_id) {
                    m.content = vec![transcript.clone().into()];
                }
                self.emit(RealtimeEvent::InputAudioTranscription {
                    item_id,
                    transcript,
                    is_final: true,
                })
                .await;
            }
            "conversation.item.input_audio_transcription.failed" => {
                let message = s("/error/message");
                self.emit(RealtimeEvent::Error {
                    error: ApiError::new(format!(
                        "input audio transcription failed for {}: {message}",
                        s("/item_id")
                    ))
                    .with_retryable(false)
                    .into(),
                    recoverable: true,
                })
                .await;
            }
            "response.created" => {
                let id = s("/response/id");
                let client_event = s("/response/metadata/client_event_id");
                let expect = Expect::ResponseCreated(client_event);
                let user_initiated = self.pending.iter().any(|p| p.expect.contains(&expect));
                self.resolve(&expect);
                self.response = Some(Response {
                    id: id.clone(),
                    started: Instant::now(),
                    first: None,
                });
                self.shared.responding.store(true, Ordering::SeqCst);
                self.emit(RealtimeEvent::ResponseCreated {
                    response_id: id,
                    user_initiated,
                })
                .await;
            }
            "response.output_audio.delta" => {
                let response_id = self.first_delta();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(s("/delta"))
                    .map_err(|e| format!("audio delta is not base64: {e}"))
                    .and_then(|b| {
                        AudioFrame::from_le_bytes(&b, SampleRate::HZ_24000, 1)
                            .map_err(|e| format!("audio delta is not PCM16: {e}"))
                    });
                match decoded {
                    Ok(frame) => {
                        self.emit(RealtimeEvent::AudioDelta {
                            response_id,
                            item_id: s("/item_id"),
                            frame,
                        })
                        .await;
                    }
                    Err(reason) => {
                        self.emit(RealtimeEvent::Error {
                            error: RealtimeError::Protocol { reason },
                            recoverable: true,
                        })
                        .await;
                    }
                }
            }
            "response.output_audio_transcript.delta" | "response.output_text.delta" => {
                let response_id = self.first_delta();
                self.emit(RealtimeEvent::TextDelta {
                    response_id,
                    item_id: s("/item_id"),
                    delta: s("/delta"),
                })
                .await;
            }
            "response.output_item.done" => {
                let item = v.get("item")?;
                if let Some(created) = self.mirror_upsert(item, None) {
                    self.emit(RealtimeEvent::ConversationItemCreated { item: created })
                        .await;
                }
                if item.get("type").and_then(Value::as_str) == Some("function_call")
                    && item.get("status").and_then(Value::as_str) != Some("incomplete")
                {
                    let call = protocol::chat_item(item, &ChatContext::new());
                    if let Some(ChatItem::FunctionCall(call)) = call {
                        self.emit(RealtimeEvent::FunctionCall {
                            response_id: s("/response_id"),
                            call,
                        })
                        .await;
                    }
                }
            }
            "response.done" => {
                let status = match s("/response/status").as_str() {
                    "completed" => ResponseStatus::Completed,
                    "cancelled" => ResponseStatus::Cancelled,
                    "incomplete" => {
                        ResponseStatus::Incomplete(s("/response/status_details/reason"))
                    }
                    other => {
                        let msg = s("/response/status_details/error/message");
                        ResponseStatus::Failed(if msg.is_empty() {
                            other.to_owned()
                        } else {
                            msg
                        })
                    }
                };
                let id = s("/response/id");
                let started = self.response.take().filter(|r| r.id == id);
                self.shared.responding.store(false, Ordering::SeqCst);
                let tokens = |k: &str| {
                    v.pointer(&format!("/response/usage/{k}"))
                        .and_then(Value::as_u64)
                        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
                };
                let mut m = RealtimeMetrics::new(self.label.clone());
                m.request_id = Some(id.clone());
                if let Some(r) = &started {
                    m.duration = r.started.elapsed();
                    m.ttft = r.first.map(|f| f.duration_since(r.started));
                }
                m.cancelled = status == ResponseStatus::Cancelled;
                m.input_tokens = tokens("input_tokens");
                m.output_tokens = tokens("output_tokens");
                m.total_tokens = tokens("total_tokens");
                m.tokens_per_second = tokens_per_second(m.output_tokens, m.duration);
                self.emit(RealtimeEvent::ResponseDone {
                    response_id: id,
                    status,
                    metrics: Some(m),
                })
                .await;
            }
            "rate_limits.updated" => {
                let limits = v.get("rate_limits").cloned().unwrap_or_default();
                tracing::debug!(label = %self.label, rate_limits = %limits, "rate limits updated");
            }
            "error" => {
                let (error, event_id, code) = api_error_of(&v);
                if code == "session_expired" {
                    return Some(Outcome::Lost("session expired".into()));
                }
                let owner = event_id.as_ref().and_then(|id| {
                    self.pending
                        .iter_mut()
                        .find(|p| p.event_ids.contains(id))
                        .and_then(|p| p.done.take())
                });
                match owner {
                    Some(done) => {
                        let _ = done.send(Err(error.into()));
                        self.pending.retain(|p| p.done.is_some());
                    }
                    None => {
                        self.emit(RealtimeEvent::Error {
                            error: error.into(),
                            recoverable: true,
                        })
                        .await;
                    }
                }
            }
            _ => {}
        }
        None
    }
}

/// Converts pushed audio to the model's 24 kHz mono PCM16.
///
/// The first frame after the session started (or after a commit or clear) fixes the input format; a frame of
/// another format before the next commit or clear is refused with [`RealtimeError::InvalidAudio`].
#[derive(Default)]
struct InputAudio {
    format: Option<(SampleRate, u16)>,
    /// `None` while the input is already 24 kHz.
    resampler: Option<Resampler>,
}

impl InputAudio {
    /// `frame` as 24 kHz mono samples (possibly none while the resampler fills its first block).
    fn convert(&mut self, frame: &AudioFrame) -> Result<Vec<i16>, RealtimeError> {
        let (rate, channels) = (frame.sample_rate(), frame.num_channels());
        match self.format {
            None => {
                self.resampler = if rate == SampleRate::HZ_24000 {
                    None
                } else {
                    Some(
                        Resampler::new(rate, SampleRate::HZ_24000, 1, ResampleQuality::default())
                            .map_err(|e| {
                            tracing::debug!(error = %e, "no resampler for this input rate");
                            RealtimeError::Unsupported {
                                label: LABEL.to_owned(),
                                operation: "input audio at this sample rate",
                            }
                        })?,
                    )
                };
                self.format = Some((rate, channels));
            }
            Some((expected_rate, expected_channels))
                if expected_rate != rate || expected_channels != channels =>
            {
                return Err(RealtimeError::InvalidAudio(
                    AudioFrameError::FormatMismatch {
                        expected_rate,
                        expected_channels,
                        actual_rate: rate,
                        actual_channels: channels,
                    },
                ));
            }
            Some(_) => {}
        }
        let mono = frame.to_mono();
        match self.resampler.as_mut() {
            None => Ok(mono.data().to_vec()),
            Some(r) => {
                let mut out = Vec::with_capacity(mono.data().len());
                r.push_into(mono.data(), &mut out)
                    .map_err(resample_failed)?;
                Ok(out)
            }
        }
    }

    /// Ends the current input: the resampler's tail, and the next frame may have another format.
    fn finish(&mut self) -> Result<Vec<i16>, RealtimeError> {
        self.format = None;
        let mut out = Vec::new();
        if let Some(mut r) = self.resampler.take() {
            r.flush_into(&mut out).map_err(resample_failed)?;
        }
        Ok(out)
    }

    /// Drops buffered audio; the next frame may have another format.
    fn reset(&mut self) {
        self.format = None;
        self.resampler = None;
    }
}

fn resample_failed(e: agents_audio::ResampleError) -> RealtimeError {
    RealtimeError::Api(
        ApiError::new(format!("resampling the input audio failed: {e}")).with_retryable(false),
    )
}

fn append_event(samples: &[i16]) -> Value {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let audio = base64::engine::general_purpose::STANDARD.encode(bytes);
    client_event("input_audio_buffer.append", json!({"audio": audio})).1
}

/// The control handle of an OpenAI Realtime session.
pub struct OpenAiRealtimeSession {
    cmd: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    options: Arc<RealtimeOptions>,
    timeout: Duration,
    /// Held while a pushed frame is converted and queued, so concurrent pushes keep their order.
    input: tokio::sync::Mutex<InputAudio>,
}

impl fmt::Debug for OpenAiRealtimeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiRealtimeSession")
            .field("model", &self.options.model)
            .field("closed", &self.cmd.is_closed())
            .finish_non_exhaustive()
    }
}

impl OpenAiRealtimeSession {
    async fn send(&self, v: Value) -> Result<(), RealtimeError> {
        self.cmd
            .send(Cmd::Send(v))
            .await
            .map_err(|_| RealtimeError::SessionClosed)
    }

    async fn call(
        &self,
        events: Vec<(String, Value)>,
        expect: Vec<Expect>,
    ) -> Result<(), RealtimeError> {
        let (done, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Call {
                events,
                expect,
                done,
            })
            .await
            .map_err(|_| RealtimeError::SessionClosed)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(RealtimeError::SessionClosed),
            Err(_) => Err(ApiError::timeout("the Realtime API did not acknowledge in time").into()),
        }
    }

    async fn update_session(&self, field: &str, value: Value) -> Result<(), RealtimeError> {
        let ev = client_event(
            "session.update",
            json!({"session": protocol::partial_session(self.options.protocol, field, value)}),
        );
        self.call(vec![ev], vec![Expect::SessionUpdated]).await
    }
}

#[async_trait]
impl RealtimeSession for OpenAiRealtimeSession {
    fn input_sample_rate(&self) -> SampleRate {
        SampleRate::HZ_24000
    }

    fn output_sample_rate(&self) -> SampleRate {
        SampleRate::HZ_24000
    }

    /// Takes any rate and channel count: frames are downmixed to mono and resampled to 24 kHz (the first frame
    /// fixes the input format until the next commit or clear; another format before that is
    /// [`RealtimeError::InvalidAudio`]).
    async fn push_audio(&self, frame: AudioFrame) -> Result<(), RealtimeError> {
        let mut input = self.input.lock().await;
        let samples = input.convert(&frame)?;
        if samples.is_empty() {
            return Ok(());
        }
        self.send(append_event(&samples)).await
    }

    /// Sends the resampler's tail, then commits.
    async fn commit_audio(&self) -> Result<(), RealtimeError> {
        {
            let mut input = self.input.lock().await;
            let tail = input.finish()?;
            if !tail.is_empty() {
                self.send(append_event(&tail)).await?;
            }
        }
        let ev = client_event("input_audio_buffer.commit", json!({}));
        self.call(vec![ev], vec![Expect::Committed]).await
    }

    async fn clear_audio(&self) -> Result<(), RealtimeError> {
        self.input.lock().await.reset();
        let (_, ev) = client_event("input_audio_buffer.clear", json!({}));
        self.send(ev).await
    }

    async fn generate_reply(&self, instructions: Option<String>) -> Result<(), RealtimeError> {
        let id = protocol::event_id();
        let mut response = json!({"metadata": {"client_event_id": id}});
        if let Some(i) = instructions {
            response["instructions"] = Value::String(i);
        }
        let ev = json!({"type": "response.create", "event_id": id, "response": response});
        self.call(vec![(id.clone(), ev)], vec![Expect::ResponseCreated(id)])
            .await
    }

    async fn interrupt(&self) -> Result<(), RealtimeError> {
        if !self.shared.responding.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (_, ev) = client_event("response.cancel", json!({}));
        self.send(ev).await
    }

    async fn truncate(&self, message_id: &str, audio_end: Duration) -> Result<(), RealtimeError> {
        let ms = u64::try_from(audio_end.as_millis()).unwrap_or(u64::MAX);
        let ev = client_event(
            "conversation.item.truncate",
            json!({"item_id": message_id, "content_index": 0, "audio_end_ms": ms}),
        );
        self.call(vec![ev], vec![Expect::Truncated(message_id.to_owned())])
            .await
    }

    async fn update_instructions(&self, instructions: &str) -> Result<(), RealtimeError> {
        lock(&self.shared.live).instructions = Some(instructions.to_owned());
        self.update_session("instructions", Value::String(instructions.to_owned()))
            .await
    }

    async fn update_tools(&self, tools: Vec<ToolDefinition>) -> Result<(), RealtimeError> {
        let value = protocol::tools_value(&tools);
        lock(&self.shared.live).tools = tools;
        self.update_session("tools", value).await
    }

    async fn update_tool_choice(&self, tool_choice: ToolChoice) -> Result<(), RealtimeError> {
        let value = protocol::tool_choice_value(&tool_choice);
        lock(&self.shared.live).tool_choice = Some(tool_choice);
        self.update_session("tool_choice", value).await
    }

    async fn update_chat_ctx(&self, chat_ctx: &ChatContext) -> Result<(), RealtimeError> {
        let diff = {
            let mirror = lock(&self.shared.ctx);
            protocol::diff(&mirror, chat_ctx, self.options.protocol)
        };
        let mut events = Vec::new();
        let mut expect = Vec::new();
        for id in diff.delete {
            events.push(client_event(
                "conversation.item.delete",
                json!({"item_id": id}),
            ));
            expect.push(Expect::Deleted(id));
        }
        for (previous, item) in diff.create {
            let Some(j) = protocol::item_json(&item, self.options.protocol) else {
                continue;
            };
            let previous = previous.unwrap_or_else(|| "root".to_owned());
            events.push(client_event(
                "conversation.item.create",
                json!({"previous_item_id": previous, "item": j}),
            ));
            expect.push(Expect::Created(item.id().to_owned()));
        }
        if events.is_empty() {
            return Ok(());
        }
        self.call(events, expect).await
    }

    fn chat_ctx(&self) -> ChatContext {
        lock(&self.shared.ctx).clone()
    }

    async fn close(&self) -> Result<(), RealtimeError> {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Close(done)).await.is_err() {
            return Ok(());
        }
        let _ = tokio::time::timeout(self.timeout, rx).await;
        Ok(())
    }
}
