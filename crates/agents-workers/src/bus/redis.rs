//! A bus over Redis pub/sub: every message is JSON on one channel, and every bus instance on the channel
//! (one per runner/process) receives every message and fans it out to its local subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
/// Cheap to clone; the reader task stops when the last clone is dropped.
#[derive(Clone)]
pub struct RedisBus {
    channel: String,
    publisher: MultiplexedConnection,
    subscribers: Arc<Subscribers>,
    alive: Arc<AtomicBool>,
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
        let mut pubsub = client.get_async_pubsub().await.map_err(transport)?;
        pubsub.subscribe(channel).await.map_err(transport)?;
        let subscribers = Subscribers::new(config);
        let alive = Arc::new(AtomicBool::new(true));
        let task = {
            let subscribers = subscribers.clone();
            let alive = alive.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move {
                let mut stream = pubsub.into_on_message();
                while let Some(msg) = stream.next().await {
                    match std::str::from_utf8(msg.get_payload_bytes())
                        .map_err(|e| e.to_string())
                        .and_then(|t| BusMessage::from_json(t).map_err(|e| e.to_string()))
                    {
                        Ok(message) => subscribers.deliver(message).await,
                        Err(error) => {
                            tracing::warn!(%channel, %error, "ignoring a malformed bus message from Redis")
                        }
                    }
                }
                alive.store(false, Ordering::Release);
                tracing::error!(%channel, "Redis subscription closed");
            })
        };
        Ok(Self {
            channel: channel.to_owned(),
            publisher,
            subscribers,
            alive,
            _reader: Arc::new(ReaderGuard {
                task: task.abort_handle(),
            }),
        })
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
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
        if !self.alive.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let payload = message.to_json()?;
        let mut conn = self.publisher.clone();
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(transport)?;
        Ok(())
    }

    fn dropped(&self) -> u64 {
        self.subscribers.dropped()
    }
}
