//! The in-process bus.

use std::sync::Arc;

use super::{Bus, BusConfig, Subscribers, Subscription};
use crate::error::BusError;
use crate::message::BusMessage;

/// An in-process bus (Pipecat's `AsyncQueueBus`): messages go straight into the subscribers' bounded queues.
/// Cheap to clone.
#[derive(Clone)]
pub struct LocalBus {
    subscribers: Arc<Subscribers>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus").finish_non_exhaustive()
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBus {
    /// A bus with the default [`BusConfig`].
    pub fn new() -> Self {
        Self::with_config(BusConfig::default())
    }

    /// A bus with explicit queue sizes.
    pub fn with_config(config: BusConfig) -> Self {
        Self {
            subscribers: Subscribers::new(config),
        }
    }
}

#[async_trait::async_trait]
impl Bus for LocalBus {
    fn subscribe(&self, name: &str) -> Result<Subscription, BusError> {
        self.subscribers.subscribe(name)
    }

    async fn send(&self, message: BusMessage) -> Result<(), BusError> {
        self.subscribers.deliver(message).await;
        Ok(())
    }

    fn dropped(&self) -> u64 {
        self.subscribers.dropped()
    }
}
