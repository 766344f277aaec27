//! The bus: a [`Bus`] trait, per-subscriber two-lane bounded queues, an in-process [`LocalBus`] and a
//! Redis pub/sub [`RedisBus`].
//!
//! Overflow policy (Pipecat's queues are unbounded; ours are not):
//! - each subscriber has a **system** lane and a **data** lane, both bounded ([`BusConfig`]);
//! - a full lane applies **back-pressure**: the sender waits for room;
//! - a data-lane message that still finds no room after [`BusConfig::stall_timeout`] is **dropped for that
//!   subscriber only** (logged, counted by [`Bus::dropped`]), so one stalled subscriber cannot stop delivery to the
//!   others; system messages are **never dropped** (the sender waits);
//! - a subscriber whose [`Subscription`] was dropped is removed; delivery to the others continues.

mod local;
mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::BusError;
use crate::message::{BusMessage, Priority};

pub use local::LocalBus;
pub use redis::{DEFAULT_REDIS_CHANNEL, RedisBus};

/// A message bus shared by the workers of one or more runners.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Adds a named subscriber. Messages targeted at `name`, and broadcasts not sent by `name`, reach it.
    fn subscribe(&self, name: &str) -> Result<Subscription, BusError>;

    /// Sends a message: local-only messages are delivered in this process; others go through the transport.
    async fn send(&self, message: BusMessage) -> Result<(), BusError>;

    /// Data-lane messages dropped so far because a subscriber stalled (see the module docs).
    fn dropped(&self) -> u64;
}

/// Queue sizes and the stall timeout of each subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusConfig {
    /// Capacity of the system lane. Default 256.
    pub system_capacity: usize,
    /// Capacity of the data lane. Default 1024.
    pub data_capacity: usize,
    /// How long a data message waits for room before it is dropped for a stalled subscriber. Default 5 s.
    pub stall_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            system_capacity: 256,
            data_capacity: 1024,
            stall_timeout: Duration::from_secs(5),
        }
    }
}

impl BusConfig {
    /// Sets the lane capacities (at least 1 each).
    pub fn with_capacities(mut self, system: usize, data: usize) -> Self {
        self.system_capacity = system.max(1);
        self.data_capacity = data.max(1);
        self
    }
    /// Sets the stall timeout.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }
}

struct Entry {
    id: u64,
    name: String,
    system: mpsc::Sender<Arc<BusMessage>>,
    data: mpsc::Sender<Arc<BusMessage>>,
}

/// The in-process fan-out shared by every bus implementation: per-subscriber two-lane bounded queues.
pub(crate) struct Subscribers {
    config: BusConfig,
    entries: Mutex<Vec<Arc<Entry>>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

impl Subscribers {
    pub(crate) fn new(config: BusConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            entries: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        })
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn subscribe(self: &Arc<Self>, name: &str) -> Result<Subscription, BusError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| !e.data.is_closed());
        if entries.iter().any(|e| e.name == name) {
            return Err(BusError::DuplicateSubscriber(name.to_owned()));
        }
        let (system, system_rx) = mpsc::channel(self.config.system_capacity);
        let (data, data_rx) = mpsc::channel(self.config.data_capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        entries.push(Arc::new(Entry {
            id,
            name: name.to_owned(),
            system,
            data,
        }));
        Ok(Subscription {
            name: name.to_owned(),
            id,
            system: system_rx,
            data: data_rx,
            owner: Arc::downgrade(self),
        })
    }

    fn remove(&self, id: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| e.id != id);
    }

    /// Delivers to every matching subscriber, applying the overflow policy.
    pub(crate) async fn deliver(&self, message: BusMessage) {
        let targets: Vec<Arc<Entry>> = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .iter()
                .filter(|e| message.is_for(&e.name))
                .cloned()
                .collect()
        };
        if targets.is_empty() {
            return;
        }
        let priority = message.priority();
        let message = Arc::new(message);
        for entry in targets {
            match priority {
                Priority::System => {
                    if entry.system.send(message.clone()).await.is_err() {
                        self.remove(entry.id);
                    }
                }
                Priority::Data => match entry.data.try_send(message.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => self.remove(entry.id),
                    Err(mpsc::error::TrySendError::Full(m)) => {
                        match entry.data.send_timeout(m, self.config.stall_timeout).await {
                            Ok(()) => {}
                            Err(mpsc::error::SendTimeoutError::Closed(_)) => self.remove(entry.id),
                            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                                self.dropped.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(subscriber = %entry.name, "bus subscriber stalled: data message dropped");
                            }
                        }
                    }
                },
            }
        }
    }
}

/// One subscriber's queues. Dropping it unsubscribes.
pub struct Subscription {
    name: String,
    id: u64,
    system: mpsc::Receiver<Arc<BusMessage>>,
    data: mpsc::Receiver<Arc<BusMessage>>,
    owner: Weak<Subscribers>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The subscriber name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message: any queued system message first, then data messages in order. `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Arc<BusMessage>> {
        tokio::select! {
            biased;
            Some(m) = self.system.recv() => Some(m),
            Some(m) = self.data.recv() => Some(m),
            else => None,
        }
    }

    /// A queued message without waiting (system lane first).
    pub fn try_recv(&mut self) -> Option<Arc<BusMessage>> {
        self.system
            .try_recv()
            .ok()
            .or_else(|| self.data.try_recv().ok())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageBody;
    use serde_json::json;

    fn custom(source: &str, target: Option<&str>, n: i64) -> BusMessage {
        BusMessage::new(
            source,
            target.map(str::to_owned),
            MessageBody::Custom {
                name: "n".into(),
                data: json!(n),
            },
        )
    }

    fn n(m: &BusMessage) -> i64 {
        match &m.body {
            MessageBody::Custom { data, .. } => data.as_i64().unwrap(),
            MessageBody::Cancel { .. } => -1,
            _ => -2,
        }
    }

    // Behaviour 28: system before data, FIFO within a lane.
    #[tokio::test]
    async fn system_lane_first_fifo_within_lanes() {
        let subs = Subscribers::new(BusConfig::default());
        let mut s = subs.subscribe("b").unwrap();
        for i in 0..3 {
            subs.deliver(custom("a", Some("b"), i)).await;
        }
        subs.deliver(BusMessage::new(
            "a",
            Some("b".into()),
            MessageBody::Cancel { reason: "x".into() },
        ))
        .await;
        subs.deliver(custom("a", Some("b"), 3)).await;
        let mut got = Vec::new();
        while let Some(m) = s.try_recv() {
            got.push(n(&m));
        }
        assert_eq!(got, vec![-1, 0, 1, 2, 3]);
    }

    // Behaviour 29: addressing by name.
    #[tokio::test]
    async fn targeted_and_broadcast() {
        let subs = Subscribers::new(BusConfig::default());
        let mut a = subs.subscribe("a").unwrap();
        let mut b = subs.subscribe("b").unwrap();
        let mut c = subs.subscribe("c").unwrap();
        subs.deliver(custom("a", Some("b"), 1)).await;
        subs.deliver(custom("a", None, 2)).await;
        assert_eq!(
            a.try_recv().map(|m| n(&m)),
            None,
            "the sender does not get its own broadcast"
        );
        assert_eq!(b.try_recv().map(|m| n(&m)), Some(1));
        assert_eq!(b.try_recv().map(|m| n(&m)), Some(2));
        assert_eq!(c.try_recv().map(|m| n(&m)), Some(2));
        assert!(c.try_recv().is_none());
        assert!(matches!(
            subs.subscribe("a"),
            Err(BusError::DuplicateSubscriber(_))
        ));
    }

    // Overflow: a stalled subscriber's data messages are dropped after the stall timeout; others still get them.
    #[tokio::test(start_paused = true)]
    async fn stalled_subscriber_drops_data_but_not_system() {
        let subs = Subscribers::new(
            BusConfig::default()
                .with_capacities(4, 1)
                .with_stall_timeout(Duration::from_millis(10)),
        );
        let mut slow = subs.subscribe("slow").unwrap();
        let mut fast = subs.subscribe("fast").unwrap();
        for i in 0..3 {
            subs.deliver(custom("x", None, i)).await;
            assert_eq!(fast.try_recv().map(|m| n(&m)), Some(i));
        }
        assert_eq!(subs.dropped(), 2);
        subs.deliver(BusMessage::new(
            "x",
            None,
            MessageBody::Cancel { reason: "r".into() },
        ))
        .await;
        assert_eq!(slow.try_recv().map(|m| n(&m)), Some(-1));
        assert_eq!(slow.try_recv().map(|m| n(&m)), Some(0));
        assert!(slow.try_recv().is_none());
    }

    // When the bus goes away, `recv` drains what is queued and then ends (no busy loop).
    #[tokio::test]
    async fn recv_ends_when_the_bus_is_gone() {
        let subs = Subscribers::new(BusConfig::default());
        let mut s = subs.subscribe("s").unwrap();
        subs.deliver(custom("x", None, 1)).await;
        drop(subs);
        assert_eq!(s.recv().await.map(|m| n(&m)), Some(1));
        let end = tokio::time::timeout(Duration::from_secs(1), s.recv()).await;
        assert!(matches!(end, Ok(None)), "recv ends instead of spinning");
    }

    // Behaviour 30 (bus side): a dropped subscriber is removed and does not stop delivery to others.
    #[tokio::test]
    async fn dead_subscriber_is_removed() {
        let subs = Subscribers::new(BusConfig::default());
        let dead = subs.subscribe("dead").unwrap();
        let mut live = subs.subscribe("live").unwrap();
        drop(dead);
        subs.deliver(custom("x", None, 7)).await;
        assert_eq!(live.try_recv().map(|m| n(&m)), Some(7));
        assert!(subs.subscribe("dead").is_ok());
    }
}
