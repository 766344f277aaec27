//! One multi-context WebSocket shared by every stream of a TTS: a task owns the socket, writes the streams'
//! messages, routes server messages to the stream of their `contextId`, and keeps open contexts alive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agents_core::ApiError;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::options::TtsOptions;
use crate::protocol::{self, Alignment, ServerMessage};

/// The server allows 5 simultaneous contexts per socket (`max_active_conversations`); a sixth waits for a slot.
pub(crate) const MAX_CONTEXTS: usize = 5;
const COMMAND_CAPACITY: usize = 64;
/// Messages buffered per context. The socket task waits when a context's buffer is full, which would hold up every
/// other context on the socket; a speech generated ahead of playback (not read yet) must not do that, so the bound
/// is far above one segment's audio (ElevenLabs sends chunks of ~0.1–0.5 s; 1024 of them is minutes). Tokio
/// allocates channel blocks lazily, so an idle bound costs nothing.
const EVENT_CAPACITY: usize = 1024;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the socket says about one context.
#[derive(Debug)]
pub(crate) enum CtxEvent {
    /// A chunk of base64 audio with its character timings.
    Audio {
        audio: String,
        alignment: Option<Alignment>,
    },
    /// `isFinal`: the context is done (after `close_context`).
    Final,
    /// The context (or the whole socket) failed.
    Error(ApiError),
}

#[derive(Debug)]
enum Command {
    Open {
        context_id: String,
        init: String,
        events: mpsc::Sender<CtxEvent>,
        permit: OwnedSemaphorePermit,
    },
    Send {
        context_id: String,
        message: String,
    },
    /// `close_context`: the server finishes a flushed context or stops an unflushed one, then sends `isFinal`.
    Close {
        context_id: String,
    },
    Shutdown,
}

/// A handle on the socket task; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    commands: mpsc::Sender<Command>,
    permits: Arc<Semaphore>,
}

impl Connection {
    /// Opens the socket (with the retries of `opts.conn`) and starts its task.
    pub(crate) async fn connect(opts: &TtsOptions) -> Result<Self, ApiError> {
        let ws = opts
            .conn
            .retry("connect to ElevenLabs", |attempt| async move {
                match tokio::time::timeout(attempt.timeout, connect_once(opts)).await {
                    Ok(r) => r,
                    Err(_) => Err(ApiError::timeout("timed out connecting to ElevenLabs")),
                }
            })
            .await?;
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        tokio::spawn(run(ws, rx, opts.keepalive_interval, opts.idle_keepalive));
        Ok(Self {
            commands: tx,
            permits: Arc::new(Semaphore::new(MAX_CONTEXTS)),
        })
    }

    /// The socket task still runs.
    pub(crate) fn is_alive(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Opens a context (waiting for a free slot) with its first message; returns its events.
    pub(crate) async fn open(
        &self,
        context_id: &str,
        init: String,
    ) -> Result<mpsc::Receiver<CtxEvent>, ApiError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        self.commands
            .send(Command::Open {
                context_id: context_id.to_owned(),
                init,
                events: tx,
                permit,
            })
            .await
            .map_err(|_| closed())?;
        Ok(rx)
    }

    /// Sends a message of a context. A dead socket is reported on the context's events.
    pub(crate) async fn send(&self, context_id: &str, message: String) {
        let _ = self
            .commands
            .send(Command::Send {
                context_id: context_id.to_owned(),
                message,
            })
            .await;
    }

    /// Closes a context (barge-in when it was not flushed).
    pub(crate) async fn close_context(&self, context_id: &str) {
        let _ = self
            .commands
            .send(Command::Close {
                context_id: context_id.to_owned(),
            })
            .await;
    }

    /// Sends `close_socket` and ends the task.
    pub(crate) async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

fn closed() -> ApiError {
    ApiError::connection("the ElevenLabs connection closed")
}

async fn connect_once(opts: &TtsOptions) -> Result<Ws, ApiError> {
    let url = opts.multi_stream_url();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ApiError::connection("invalid ElevenLabs WebSocket URL").with_source(e))?;
    if let Some(key) = &opts.api_key {
        let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
            ApiError::connection("the API key is not a valid header value").with_retryable(false)
        })?;
        value.set_sensitive(true);
        request.headers_mut().insert("xi-api-key", value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let request_id = header("request-id").or_else(|| header("x-request-id"));
            let retry_after = header("retry-after").and_then(|v| {
                agents_core::retry::parse_retry_after(&v, std::time::SystemTime::now())
            });
            let body = response.body().clone().unwrap_or_default();
            Err(ApiError::from_http_response(
                response.status().as_u16(),
                &body,
                request_id.as_deref(),
                retry_after,
            ))
        }
        Err(e) => {
            Err(ApiError::connection(format!("cannot connect to ElevenLabs: {e}")).with_source(e))
        }
    }
}

struct Ctx {
    events: mpsc::Sender<CtxEvent>,
    last_sent: Instant,
    closing: bool,
    _permit: OwnedSemaphorePermit,
}

/// The socket task. Ends on `Shutdown` (after `close_socket`), when every handle is gone, or when the socket
/// fails; then every context still open gets the failure.
async fn run(
    ws: Ws,
    mut commands: mpsc::Receiver<Command>,
    keepalive: Duration,
    idle_keepalive: bool,
) {
    let (mut sink, mut stream) = ws.split();
    let mut last_sent = Instant::now();
    let mut contexts: HashMap<String, Ctx> = HashMap::new();
    let mut tick = tokio::time::interval((keepalive / 4).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failure = loop {
        tokio::select! {
            command = commands.recv() => {
                let message = match command {
                    None | Some(Command::Shutdown) => {
                        let _ = sink.send(Message::text(protocol::close_socket_message())).await;
                        let _ = sink.close().await;
                        break ApiError::connection("the ElevenLabs connection was shut down");
                    }
                    Some(Command::Open { context_id, init, events, permit }) => {
                        contexts.insert(context_id, Ctx {
                            events,
                            last_sent: Instant::now(),
                            closing: false,
                            _permit: permit,
                        });
                        init
                    }
                    Some(Command::Send { context_id, message }) => {
                        if let Some(c) = contexts.get_mut(&context_id) {
                            c.last_sent = Instant::now();
                        }
                        message
                    }
                    Some(Command::Close { context_id }) => match contexts.get_mut(&context_id) {
                        Some(c) if !c.closing => {
                            c.closing = true;
                            protocol::close_context_message(&context_id)
                        }
                        _ => continue,
                    },
                };
                if let Err(e) = sink.send(Message::text(message)).await {
                    break ApiError::connection(format!("the ElevenLabs socket failed while sending: {e}"))
                        .with_source(e);
                }
                last_sent = Instant::now();
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Err(e) = route(text.as_str(), &mut contexts).await {
                        break e;
                    }
                }
                Some(Ok(Message::Close(frame))) => break close_error(frame.as_ref()),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    break ApiError::connection(format!("the ElevenLabs socket failed: {e}")).with_source(e);
                }
                None => break ApiError::connection("the ElevenLabs socket closed"),
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let due: Vec<String> = contexts
                    .iter()
                    .filter(|(_, c)| !c.closing && now.saturating_duration_since(c.last_sent) >= keepalive)
                    .map(|(id, _)| id.clone())
                    .collect();
                let mut failed = None;
                let idle = contexts.values().all(|c| c.closing);
                if idle && idle_keepalive && now.saturating_duration_since(last_sent) >= keepalive {
                    tracing::debug!("elevenlabs idle keep-alive");
                    if let Err(e) = sink.send(Message::text(protocol::idle_keepalive_message())).await {
                        break ApiError::connection(format!("the ElevenLabs socket failed while sending: {e}")).with_source(e);
                    }
                    last_sent = now;
                }
                for id in due {
                    tracing::debug!(context_id = %id, "elevenlabs keep-alive");
                    if let Err(e) = sink.send(Message::text(protocol::keepalive_message(&id))).await {
                        failed = Some(ApiError::connection(format!("the ElevenLabs socket failed while sending: {e}")).with_source(e));
                        break;
                    }
                    if let Some(c) = contexts.get_mut(&id) {
                        c.last_sent = now;
                    }
                    last_sent = now;
                }
                if let Some(e) = failed {
                    break e;
                }
            }
        }
    };
    // Handles see the socket as dead before the contexts hear of it, so a retry opens a new socket.
    commands.close();
    if !contexts.is_empty() {
        tracing::warn!(error = %failure, contexts = contexts.len(), "elevenlabs socket ended with contexts in flight");
    }
    for (_, c) in contexts.drain() {
        let _ = c.events.send(CtxEvent::Error(failure.clone())).await;
    }
}

fn close_error(frame: Option<&CloseFrame>) -> ApiError {
    match frame {
        Some(f) => {
            let code = u16::from(f.code);
            let reason = f.reason.as_str();
            // The server puts its error JSON in the close reason on some paths.
            match serde_json::from_str::<serde_json::Value>(reason) {
                Ok(v) if v.is_object() => protocol::socket_error(&v),
                _ => {
                    ApiError::connection(format!("ElevenLabs closed the socket ({code}): {reason}"))
                }
            }
        }
        None => ApiError::connection("ElevenLabs closed the socket"),
    }
}

/// Routes one server message; an error that concerns the whole socket is returned.
async fn route(text: &str, contexts: &mut HashMap<String, Ctx>) -> Result<(), ApiError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        ApiError::new("ElevenLabs sent a message that is not JSON")
            .with_source(e)
            .with_retryable(true)
    })?;
    let message: ServerMessage = serde_json::from_value(value.clone()).map_err(|e| {
        ApiError::new("ElevenLabs sent a message of an unknown shape")
            .with_body(value.clone())
            .with_source(e)
            .with_retryable(true)
    })?;
    let is_error = message.error.as_ref().is_some_and(|e| !e.is_null())
        || (message.audio.is_none() && message.is_final.is_none() && message.message.is_some());
    let context = message
        .context_id
        .as_deref()
        .and_then(|id| contexts.get(id).map(|_| id.to_owned()));
    if is_error {
        let error = protocol::socket_error(&value);
        return match context {
            Some(id) => {
                if let Some(c) = contexts.remove(&id) {
                    let _ = c.events.send(CtxEvent::Error(error)).await;
                }
                Ok(())
            }
            None => Err(error),
        };
    }
    let Some(id) = context else {
        tracing::debug!(context_id = ?message.context_id, "elevenlabs message for no open context");
        return Ok(());
    };
    if let Some(audio) = message.audio.filter(|a| !a.is_empty())
        && let Some(c) = contexts.get(&id)
    {
        let alignment = message.alignment.or(message.normalized_alignment);
        let _ = c.events.send(CtxEvent::Audio { audio, alignment }).await;
    }
    if message.is_final == Some(true)
        && let Some(c) = contexts.remove(&id)
    {
        let _ = c.events.send(CtxEvent::Final).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(sem: &Arc<Semaphore>) -> (Ctx, mpsc::Receiver<CtxEvent>) {
        let (tx, rx) = mpsc::channel(8);
        let permit = Arc::clone(sem).try_acquire_owned().unwrap();
        (
            Ctx {
                events: tx,
                last_sent: Instant::now(),
                closing: false,
                _permit: permit,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn routes_by_context_and_isolates_context_errors() {
        let sem = Arc::new(Semaphore::new(MAX_CONTEXTS));
        let mut contexts = HashMap::new();
        let (a, mut ra) = ctx(&sem);
        let (b, mut rb) = ctx(&sem);
        contexts.insert("a".to_owned(), a);
        contexts.insert("b".to_owned(), b);

        route(
            r#"{"audio":"AAA=","contextId":"a","alignment":null}"#,
            &mut contexts,
        )
        .await
        .unwrap();
        assert!(
            matches!(ra.try_recv(), Ok(CtxEvent::Audio { audio, alignment: None }) if audio == "AAA=")
        );
        route(r#"{"audio":"AAA=","contextId":"zzz"}"#, &mut contexts)
            .await
            .unwrap();
        assert!(rb.try_recv().is_err(), "unknown contexts are ignored");

        route(
            r#"{"message":"bad voice","error":"invalid_voice","code":1008,"contextId":"b"}"#,
            &mut contexts,
        )
        .await
        .unwrap();
        let Ok(CtxEvent::Error(e)) = rb.try_recv() else {
            panic!("b gets its error")
        };
        assert!(!e.is_retryable());
        assert!(!contexts.contains_key("b") && contexts.contains_key("a"));
        assert_eq!(
            sem.available_permits(),
            MAX_CONTEXTS - 1,
            "b's slot is free"
        );

        route(r#"{"isFinal":true,"contextId":"a"}"#, &mut contexts)
            .await
            .unwrap();
        assert!(matches!(ra.try_recv(), Ok(CtxEvent::Final)));
        assert!(contexts.is_empty());

        let global = route(
            r#"{"message":"quota","error":"quota_exceeded","code":1008}"#,
            &mut contexts,
        )
        .await;
        assert!(global.is_err_and(|e| !e.is_retryable()));
        assert!(route("{oops", &mut contexts).await.is_err());
        assert!(route(r#"{"audio": 5}"#, &mut contexts).await.is_err());
    }

    #[test]
    fn close_frames_become_errors() {
        let frame = CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Policy,
            reason: r#"{"message":"idle","error":"input_timeout_exceeded","code":1008}"#.into(),
        };
        let e = close_error(Some(&frame));
        assert!(e.message().contains("input_timeout_exceeded") && e.is_retryable());
        let plain = CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "going away".into(),
        };
        let e = close_error(Some(&plain));
        assert!(e.is_connection() && e.message().contains("1001"));
    }
}
