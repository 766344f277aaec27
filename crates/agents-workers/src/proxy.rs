//! A point-to-point WebSocket link between two buses (Pipecat's `WebSocketProxyClient` / `WebSocketProxyServer`,
//! `pipecat-ai/pipecat`, `src/pipecat/workers/proxy/websocket/{client,server}.py`).
//!
//! Each side subscribes to its own bus **under the name of the worker on the other side**, so messages addressed
//! to that worker reach the proxy, which forwards them over the WebSocket (JSON text frames, the same encoding as
//! the Redis bus). What crosses is restricted (behaviour 36):
//!
//! - client → server: messages targeted at `remote_worker`, plus messages whose type is listed in
//!   `forward_types` when their source is `local_worker`;
//! - server → client: messages from `worker` targeted at `remote_worker`, plus `forward_types` from `worker`;
//! - inbound on either side: messages targeted at that side's local worker, plus `forward_types`; the client also
//!   accepts registry snapshots (worker discovery). Anything else is dropped with a warning, and process-local
//!   messages never leave.
//!
//! The server announces its worker to the client with a registry snapshot as soon as the worker is registered and
//! then every second (the runner heartbeat does not cross the proxy), so the client's runner registers it as a
//! remote worker and expires it when the connection dies.

use std::sync::Arc;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::bus::{Bus, Subscription};
use crate::error::BusError;
use crate::message::{BusMessage, MessageBody};
use crate::registry::WorkerRegistry;
use crate::types::WorkerRegistryEntry;

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The WebSocket connection or handshake failed.
    #[error("WebSocket proxy connection failed: {0}")]
    Connect(String),
    /// The bus refused the subscription (e.g. a subscriber of that name already exists).
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The `"type"` of a message as it appears in JSON (`"custom"`, `"job_request"`, …).
pub fn message_type(message: &BusMessage) -> String {
    serde_json::to_value(&message.body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_owned)))
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Rules {
    /// This side's worker.
    local: String,
    /// The worker on the other side (the name this proxy subscribes under).
    remote: String,
    forward_types: Vec<String>,
    /// Server side: only messages from `local` leave.
    outbound_from_local_only: bool,
    /// Client side: accept registry snapshots.
    accept_registry: bool,
}

impl Rules {
    fn forwards(&self, m: &BusMessage) -> bool {
        if m.local_only {
            return false;
        }
        let from_local = m.source == self.local;
        if self.outbound_from_local_only && !from_local {
            return false;
        }
        m.target.as_deref() == Some(self.remote.as_str())
            || (from_local && self.forward_types.contains(&message_type(m)))
    }

    fn accepts(&self, m: &BusMessage) -> bool {
        (self.accept_registry && matches!(m.body, MessageBody::WorkerRegistry { .. }))
            || self.forward_types.contains(&message_type(m))
            || m.target.as_deref() == Some(self.local.as_str())
    }
}

/// A running proxy link. Dropping it closes the link.
#[derive(Debug)]
pub struct ProxyHandle {
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// Waits until the link ends (the peer closed it or the connection failed).
    pub async fn closed(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Whether the link ended.
    pub fn is_closed(&self) -> bool {
        self.task.is_finished()
    }

    /// Closes the link.
    pub fn close(&self) {
        self.task.abort();
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump<S>(
    bus: Arc<dyn Bus>,
    mut sub: Subscription,
    mut ws: S,
    rules: Rules,
    announce: Option<(WorkerRegistry, String)>,
) where
    S: Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registry_watch = announce.as_ref().map(|(r, _)| r.subscribe_changes());
    loop {
        let announce_now = async {
            match &mut registry_watch {
                Some(w) => {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = w.changed() => {}
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outbound = sub.recv() => {
                let Some(m) = outbound else { break };
                if !rules.forwards(&m) {
                    continue;
                }
                let Ok(json) = m.to_json() else { continue };
                if let Err(e) = ws.send(Message::text(json)).await {
                    tracing::warn!(error = %e, "WebSocket proxy: send failed; closing");
                    break;
                }
            }
            inbound = ws.next() => {
                let text = match inbound {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "WebSocket proxy: connection lost");
                        break;
                    }
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => continue,
                };
                let m = match BusMessage::from_json(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "WebSocket proxy: malformed message dropped");
                        continue;
                    }
                };
                if !rules.accepts(&m) {
                    tracing::warn!(target = ?m.target, kind = %message_type(&m), "WebSocket proxy: inbound message dropped");
                    continue;
                }
                if let Err(e) = bus.send(m).await {
                    tracing::warn!(error = %e, "WebSocket proxy: bus refused an inbound message");
                }
            }
            _ = announce_now => {
                if let Some((registry, proxy_name)) = &announce
                    && let Some(data) = registry.get(&rules.local)
                {
                    let body = MessageBody::WorkerRegistry {
                        runner: data.runner,
                        workers: vec![WorkerRegistryEntry::new(rules.local.clone())],
                    };
                    let m = BusMessage::new(proxy_name.clone(), None, body);
                    let Ok(json) = m.to_json() else { continue };
                    if let Err(e) = ws.send(Message::text(json)).await {
                        tracing::warn!(error = %e, "WebSocket proxy: send failed; closing");
                        break;
                    }
                }
            }
        }
    }
    let _ = ws.close().await;
}

impl Rules {
    /// The rules of one end: `local` here, `remote` on the other side, no forwarded types yet.
    fn new(local: String, remote: String, server: bool) -> Self {
        Self {
            local,
            remote,
            forward_types: Vec::new(),
            outbound_from_local_only: server,
            accept_registry: !server,
        }
    }

    fn set_forward_types<I, S>(&mut self, types: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.forward_types = types.into_iter().map(Into::into).collect();
    }

    /// Subscribes to `bus` under the remote worker's name and starts forwarding over `ws`.
    fn start<S>(
        &self,
        bus: Arc<dyn Bus>,
        ws: S,
        announce: Option<(WorkerRegistry, String)>,
    ) -> Result<ProxyHandle, ProxyError>
    where
        S: Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
            + Unpin
            + Send
            + 'static,
    {
        let sub = bus.subscribe(&self.remote)?;
        Ok(ProxyHandle {
            task: tokio::spawn(pump(bus, sub, ws, self.clone(), announce)),
        })
    }
}

/// The client end (Pipecat's `WebSocketProxyClient`): links `local_worker` on this bus to `remote_worker` behind
/// a [`WebSocketProxyServer`].
#[derive(Debug, Clone)]
pub struct WebSocketProxyClient {
    url: String,
    rules: Rules,
}

impl WebSocketProxyClient {
    /// A client for `url` (`ws://…`) linking `local_worker` here to `remote_worker` there.
    pub fn new(
        url: impl Into<String>,
        local_worker: impl Into<String>,
        remote_worker: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            rules: Rules::new(local_worker.into(), remote_worker.into(), false),
        }
    }

    /// Also forwards messages of these JSON types (e.g. `"custom"`) from `local_worker`, whatever their target.
    pub fn with_forward_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.set_forward_types(types);
        self
    }

    /// Connects and starts forwarding.
    ///
    /// # Errors
    /// [`ProxyError::Connect`] when the connection fails, [`ProxyError::Bus`] when `remote_worker` is already a
    /// subscriber of `bus`.
    pub async fn connect(&self, bus: Arc<dyn Bus>) -> Result<ProxyHandle, ProxyError> {
        let (ws, _) = tokio_tungstenite::connect_async(self.url.as_str())
            .await
            .map_err(|e| ProxyError::Connect(e.to_string()))?;
        self.rules.start(bus, ws, None)
    }
}

/// The server end (Pipecat's `WebSocketProxyServer`): serves one accepted connection, linking `worker` on this
/// bus to `remote_worker` on the client's bus.
#[derive(Debug, Clone)]
pub struct WebSocketProxyServer {
    name: String,
    rules: Rules,
}

impl WebSocketProxyServer {
    /// A server end named `name` (the source of its registry announcements) for `worker` here and `remote_worker`
    /// on the client side.
    pub fn new(
        name: impl Into<String>,
        worker: impl Into<String>,
        remote_worker: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            rules: Rules::new(worker.into(), remote_worker.into(), true),
        }
    }

    /// Also forwards messages of these JSON types from `worker`, whatever their target.
    pub fn with_forward_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.set_forward_types(types);
        self
    }

    /// Performs the WebSocket handshake on an accepted TCP connection and starts forwarding. `registry` is the
    /// registry of the runner hosting `worker` (for the announcements).
    ///
    /// # Errors
    /// [`ProxyError::Connect`] when the handshake fails, [`ProxyError::Bus`] when `remote_worker` is already a
    /// subscriber of `bus`.
    pub async fn accept(
        &self,
        bus: Arc<dyn Bus>,
        registry: WorkerRegistry,
        stream: TcpStream,
    ) -> Result<ProxyHandle, ProxyError> {
        let ws = tokio_tungstenite::accept_async(stream)
            .await
            .map_err(|e| ProxyError::Connect(e.to_string()))?;
        let announce = Some((registry, format!("@proxy/{}", self.name)));
        self.rules.start(bus, ws, announce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn custom(source: &str, target: Option<&str>) -> BusMessage {
        BusMessage::new(
            source,
            target.map(str::to_owned),
            MessageBody::Custom {
                name: "n".into(),
                data: json!(1),
            },
        )
    }

    fn rules(server: bool, forward: &[&str]) -> Rules {
        Rules {
            local: "me".into(),
            remote: "far".into(),
            forward_types: forward.iter().map(|s| (*s).to_owned()).collect(),
            outbound_from_local_only: server,
            accept_registry: !server,
        }
    }

    #[test]
    fn b36_client_forwards_targeted_and_configured_types_only() {
        let r = rules(false, &[]);
        assert!(r.forwards(&custom("anyone", Some("far"))));
        assert!(!r.forwards(&custom("me", None)));
        assert!(!r.forwards(&custom("me", Some("other"))));
        assert!(!r.forwards(&custom("me", Some("far")).local()));
        let r = rules(false, &["custom"]);
        assert!(r.forwards(&custom("me", None)));
        assert!(
            !r.forwards(&custom("other", None)),
            "forward types only from the local worker"
        );
    }

    #[test]
    fn b36_server_forwards_only_from_its_worker() {
        let r = rules(true, &[]);
        assert!(r.forwards(&custom("me", Some("far"))));
        assert!(!r.forwards(&custom("other", Some("far"))));
        assert!(!r.forwards(&custom("me", None)));
    }

    #[test]
    fn b36_inbound_accepts_local_target_registry_on_client_and_forward_types() {
        let client = rules(false, &[]);
        let server = rules(true, &["custom"]);
        let registry = BusMessage::new(
            "@proxy/x",
            None,
            MessageBody::WorkerRegistry {
                runner: "S".into(),
                workers: vec![],
            },
        );
        assert!(client.accepts(&custom("far", Some("me"))));
        assert!(!client.accepts(&custom("far", Some("other"))));
        assert!(!client.accepts(&custom("far", None)));
        assert!(client.accepts(&registry));
        assert!(!server.accepts(&registry));
        assert!(server.accepts(&custom("far", None)));
        assert_eq!(message_type(&registry), "worker_registry");
    }
}
