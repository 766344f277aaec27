//! [`SpeechHandle`]: one agent utterance, the unit of speech scheduling.
//!
//! A handle is created by the session for every `say`, `generate_reply` and tool follow-up. The application holds
//! it to wait for playout or interrupt; the runtime uses the runtime-side methods ([`SpeechHandle::authorize`],
//! [`SpeechHandle::mark_done`]) to drive it. All methods are cheap and never block.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::ids::short_id;

/// Scheduling priority of a speech: higher plays first, FIFO within a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SpeechPriority {
    /// Plays after everything else (LiveKit `SPEECH_PRIORITY_LOW = 0`).
    Low = 0,
    /// The default (LiveKit `SPEECH_PRIORITY_NORMAL = 5`).
    #[default]
    Normal = 5,
    /// Plays before normal speech (LiveKit `SPEECH_PRIORITY_HIGH = 10`).
    High = 10,
}

/// Why a speech could not be interrupted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpeechError {
    /// The speech was created with `allow_interruptions = false`.
    #[error("This generation handle does not allow interruptions")]
    NotInterruptible,
}

/// Options for a new [`SpeechHandle`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SpeechOptions {
    /// Whether the user (or `interrupt()`) may stop this speech.
    pub allow_interruptions: bool,
    /// Scheduling priority.
    pub priority: SpeechPriority,
    /// 0 for a reply to the user, n+1 for the follow-up of a reply at step n.
    pub step_index: u32,
    /// The speech whose tool calls caused this one.
    pub parent_id: Option<String>,
}

impl Default for SpeechOptions {
    fn default() -> Self {
        Self {
            allow_interruptions: true,
            priority: SpeechPriority::Normal,
            step_index: 0,
            parent_id: None,
        }
    }
}

impl SpeechOptions {
    /// Sets `allow_interruptions`.
    pub fn with_allow_interruptions(mut self, allow: bool) -> Self {
        self.allow_interruptions = allow;
        self
    }
    /// Sets the priority.
    pub fn with_priority(mut self, priority: SpeechPriority) -> Self {
        self.priority = priority;
        self
    }
    /// Sets the step index.
    pub fn with_step_index(mut self, step_index: u32) -> Self {
        self.step_index = step_index;
        self
    }
    /// Sets the parent speech id.
    pub fn with_parent_id(mut self, parent: impl Into<String>) -> Self {
        self.parent_id = Some(parent.into());
        self
    }
}

struct Inner {
    id: String,
    priority: SpeechPriority,
    step_index: u32,
    parent_id: Option<String>,
    allow_interruptions: AtomicBool,
    interrupted: watch::Sender<bool>,
    authorized: watch::Sender<bool>,
    done: watch::Sender<bool>,
}

/// One agent utterance. Cheap to clone; every clone refers to the same speech.
#[derive(Clone)]
pub struct SpeechHandle {
    inner: Arc<Inner>,
}

impl SpeechHandle {
    /// A new, pending speech with an id prefixed `speech_`.
    pub fn new(options: SpeechOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: short_id("speech_"),
                priority: options.priority,
                step_index: options.step_index,
                parent_id: options.parent_id,
                allow_interruptions: AtomicBool::new(options.allow_interruptions),
                interrupted: watch::channel(false).0,
                authorized: watch::channel(false).0,
                done: watch::channel(false).0,
            }),
        }
    }

    /// The speech id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Scheduling priority.
    pub fn priority(&self) -> SpeechPriority {
        self.inner.priority
    }

    /// 0 for a direct reply; n+1 for the follow-up to tool calls made at step n.
    pub fn step_index(&self) -> u32 {
        self.inner.step_index
    }

    /// The speech whose tool calls produced this one.
    pub fn parent_id(&self) -> Option<&str> {
        self.inner.parent_id.as_deref()
    }

    /// Whether this speech may be interrupted.
    pub fn allow_interruptions(&self) -> bool {
        self.inner.allow_interruptions.load(Ordering::Acquire)
    }

    /// Changes whether this speech may be interrupted (e.g. make a critical sentence uninterruptible mid-way).
    pub fn set_allow_interruptions(&self, allow: bool) {
        self.inner
            .allow_interruptions
            .store(allow, Ordering::Release);
    }

    /// Whether an interruption was requested.
    pub fn interrupted(&self) -> bool {
        *self.inner.interrupted.borrow()
    }

    /// Whether playout finished (played out, interrupted, or abandoned).
    pub fn done(&self) -> bool {
        *self.inner.done.borrow()
    }

    /// Requests an interruption. A no-op when the speech is already done.
    ///
    /// # Errors
    /// [`SpeechError::NotInterruptible`] when the speech does not allow interruptions.
    pub fn interrupt(&self) -> Result<(), SpeechError> {
        if self.done() {
            return Ok(());
        }
        if !self.allow_interruptions() {
            return Err(SpeechError::NotInterruptible);
        }
        self.inner.interrupted.send_replace(true);
        Ok(())
    }

    /// Waits until playout is done and returns whether the speech was interrupted.
    pub async fn wait_for_playout(&self) -> bool {
        let mut rx = self.inner.done.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail here.
        let _ = rx.wait_for(|d| *d).await;
        self.interrupted()
    }

    /// Waits until an interruption is requested.
    pub async fn wait_for_interruption(&self) {
        let mut rx = self.inner.interrupted.subscribe();
        let _ = rx.wait_for(|i| *i).await;
    }

    /// Runtime side: forces an interruption even when not allowed (session shutdown). No-op when done.
    pub fn force_interrupt(&self) {
        if !self.done() {
            self.inner.interrupted.send_replace(true);
        }
    }

    /// Runtime side: allows this speech to play out.
    pub fn authorize(&self) {
        self.inner.authorized.send_replace(true);
    }

    /// Whether playout was authorized.
    pub fn is_authorized(&self) -> bool {
        *self.inner.authorized.borrow()
    }

    /// Runtime side: waits for authorization (returns at once when already authorized).
    pub async fn wait_for_authorization(&self) {
        let mut rx = self.inner.authorized.subscribe();
        let _ = rx.wait_for(|a| *a).await;
    }

    /// Runtime side: marks playout done. Idempotent.
    pub fn mark_done(&self) {
        self.inner.done.send_replace(true);
    }
}

impl PartialEq for SpeechHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for SpeechHandle {}

impl fmt::Debug for SpeechHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpeechHandle")
            .field("id", &self.inner.id)
            .field("priority", &self.inner.priority)
            .field("step_index", &self.inner.step_index)
            .field("allow_interruptions", &self.allow_interruptions())
            .field("interrupted", &self.interrupted())
            .field("done", &self.done())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_high_first() {
        assert!(SpeechPriority::High > SpeechPriority::Normal);
        assert!(SpeechPriority::Normal > SpeechPriority::Low);
        assert_eq!(SpeechPriority::High as u8, 10);
        assert_eq!(SpeechPriority::Normal as u8, 5);
        assert_eq!(SpeechPriority::Low as u8, 0);
    }

    #[test]
    fn interrupt_rules() {
        let h = SpeechHandle::new(SpeechOptions::default().with_allow_interruptions(false));
        assert!(h.id().starts_with("speech_"));
        assert_eq!(h.interrupt(), Err(SpeechError::NotInterruptible));
        assert!(!h.interrupted());
        h.mark_done();
        // On a done handle interrupt is a no-op, even when not allowed.
        assert_eq!(h.interrupt(), Ok(()));
        assert!(!h.interrupted());

        let h = SpeechHandle::new(SpeechOptions::default());
        h.interrupt().unwrap();
        assert!(h.interrupted());
        h.set_allow_interruptions(false);
        assert!(!h.allow_interruptions());
    }

    #[tokio::test]
    async fn wait_for_playout_resolves_on_done() {
        let h = SpeechHandle::new(SpeechOptions::default());
        let h2 = h.clone();
        let waiter = tokio::spawn(async move { h2.wait_for_playout().await });
        h.interrupt().unwrap();
        h.mark_done();
        h.mark_done(); // idempotent
        assert!(waiter.await.unwrap());
        assert!(h.done());
    }

    #[tokio::test]
    async fn authorization() {
        let h = SpeechHandle::new(SpeechOptions::default());
        assert!(!h.is_authorized());
        h.authorize();
        h.wait_for_authorization().await;
        assert!(h.is_authorized());
    }
}
