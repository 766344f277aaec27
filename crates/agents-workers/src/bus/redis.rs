//! A bus over Redis pub/sub: every message is JSON on one channel, and every bus instance on the channel
//! (one per runner/process) receives every message and fans it out to its local subscribers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::MultiplexedConnection;

use super::{Bus, BusConfig, Subscribers, Subscription};
use crate::error::BusError;
use crate::message::BusMessage;

/// Pipecat's default channel name.
pub const DEFAULT_REDIS_CHANNEL: &str = "pipecat:bus";

struct ReaderGuard {
    task: tokio::task::AbortHandle,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Redis pub/sub bus (Pipecat's `RedisBus`). Local-only messages never leave the process; all other messages are
/// published and delivered to local subscribers when they come back from Redis, so every process sees one order.
///
/// A lost connection is re-established: the reader resubscribes with backoff (100 ms doubling to 5 s), and a failed
/// publish reconnects once and retries. Pub/sub is at-most-once, so messages published while a connection is down
/// are lost; jobs recover through their timeouts. Cheap to clone; the reader task stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct RedisBus {
    channel: String,
    client: redis::Client,
    publisher: Arc<Mutex<MultiplexedConnection>>,
    subscribers: Arc<Subscribers>,
    _reader: Arc<ReaderGuard>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

fn transport(e: redis::RedisError) -> BusError {
    BusError::Transport(e.to_string())
}

async fn subscribe(client: &redis::Client, channel: &str) -> Result<redis::aio::PubSub, BusError> {
    let mut pubsub = client.get_async_pubsub().await.map_err(transport)?;
    pubsub.subscribe(channel).await.map_err(transport)?;
    Ok(pubsub)
}

async fn read(pubsub: redis::aio::PubSub, subscribers: &Subscribers, channel: &str) {
    let mut stream = pubsub.into_on_message();
    while let Some(msg) = stream.next().await {
        let decoded = std::str::from_utf8(msg.get_payload_bytes())
            .map_err(|e| e.to_string())
            .and_then(|t| BusMessage::from_json(t).map_err(|e| e.to_string()));
        match decoded {
            Ok(message) => subscribers.deliver(message).await,
            Err(error) => {
                tracing::warn!(%channel, %error, "ignoring a malformed bus message from Redis")
            }
        }
    }
}

impl RedisBus {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`) on [`DEFAULT_REDIS_CHANNEL`].
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        Self::connect_with(url, DEFAULT_REDIS_CHANNEL, BusConfig::default()).await
    }

    /// Connects on a given channel with explicit queue sizes. Returns once the subscription is confirmed, so no
    /// message published afterwards is missed.
    pub async fn connect_with(
        url: &str,
        channel: &str,
        config: BusConfig,
    ) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(transport)?;
        let publisher = client
            .get_multiplexed_async_connection()
            .await
            .map_err(transport)?;
        let first = subscribe(&client, channel).await?;
        let subscribers = Subscribers::new(config);
        let task = {
            let subscribers = subscribers.clone();
            let channel = channel.to_owned();
            let client = client.clone();
            tokio::spawn(async move {
                let mut pubsub = Some(first);
                let mut backoff = Duration::from_millis(100);
                loop {
                    if let Some(p) = pubsub.take() {
                        read(p, &subscribers, &channel).await;
                        tracing::warn!(%channel, "Redis subscription lost; reconnecting");
                        backoff = Duration::from_millis(100);
                    }
                    match subscribe(&client, &channel).await {
                        Ok(p) => {
                            tracing::info!(%channel, "Redis subscription re-established");
                            pubsub = Some(p);
                        }
                        Err(error) => {
                            tracing::warn!(%channel, %error, ?backoff, "Redis resubscribe failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            })
        };
        Ok(Self {
            channel: channel.to_owned(),
            client,
            publisher: Arc::new(Mutex::new(publisher)),
            subscribers,
            _reader: Arc::new(ReaderGuard {
                task: task.abort_handle(),
            }),
        })
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    async fn publish(&self, payload: &str) -> Result<(), redis::RedisError> {
        let mut conn = self
            .publisher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    fn subscribe(&self, name: &str) -> Result<Subscription, BusError> {
        self.subscribers.subscribe(name)
    }

    async fn send(&self, message: BusMessage) -> Result<(), BusError> {
        if message.local_only {
            self.subscribers.deliver(message).await;
            return Ok(());
        }
        let payload = message.to_json()?;
        match self.publish(&payload).await {
            Ok(()) => Ok(()),
            Err(first)
                if first.is_io_error()
                    || first.is_connection_dropped()
                    || first.is_unrecoverable_error() =>
            {
                tracing::warn!(channel = %self.channel, error = %first, "Redis publish failed; reconnecting once");
                let conn = self
                    .client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(transport)?;
                *self.publisher.lock().unwrap_or_else(|p| p.into_inner()) = conn;
                self.publish(&payload).await.map_err(transport)
            }
            Err(e) => Err(transport(e)),
        }
    }

    fn dropped(&self) -> u64 {
        self.subscribers.dropped()
    }
}
