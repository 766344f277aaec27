//! Fallback adapters: one [`Llm`](crate::Llm), [`Stt`](crate::Stt) or [`Tts`](crate::Tts) over an ordered list of
//! providers, switching to the next one when a provider fails (LiveKit's `FallbackAdapter`s).
//!
//! - [`FallbackLlm`]: tries each member in order; a member that fails *before* sending any content is replaced by
//!   the next one, a member that fails *after* sending content is not (unless
//!   [`FallbackLlmOptions::retry_on_chunk_sent`]) and the error reaches the caller.
//! - [`FallbackStt`]: `recognize` tries each member in order; a recognition stream that fails is replaced by the
//!   next member, which first receives the audio heard since the last final transcript (a bounded replay buffer).
//! - [`FallbackTts`]: `synthesize` and `stream` try each member in order until one produces audio; the output rate
//!   is the highest member rate and lower-rate members are resampled.
//!
//! # Availability
//!
//! Every member is *available* at first. A member that fails a request is marked unavailable, later requests skip
//! it, and a background probe (a tokio task) repeats the failed request against it every
//! `probe_interval` until it succeeds, which marks the member available again. When every member is unavailable a
//! request still tries them all, in order, once. A member that serves a real request successfully is also marked
//! available again. Each change is announced to the receivers of `subscribe()` as an [`AvailabilityChanged`].
//! Probes stop when the adapter is closed (`aclose`) or dropped.
//!
//! # Errors
//!
//! When every member failed, the request fails with a retryable [`ApiError`] of kind `Connection` whose message
//! reads `all LLMs failed ([labels]) after 1.2s` and whose [`source`](std::error::Error::source) is an
//! [`AllMembersFailed`] listing each member's error. Construction fails with a [`FallbackError`].
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use agents_core::fallback::{FallbackLlm, FallbackLlmOptions};
//! use agents_core::{ChatContext, ChatRequest, Llm};
//!
//! # async fn demo(primary: Arc<dyn Llm>, backup: Arc<dyn Llm>) -> Result<(), Box<dyn std::error::Error>> {
//! let llm = FallbackLlm::with_options(vec![primary, backup], FallbackLlmOptions::default())?;
//! let mut changes = llm.subscribe();
//! tokio::spawn(async move {
//!     while let Ok(change) = changes.recv().await {
//!         tracing::warn!(member = %change.label, available = change.available, "LLM availability changed");
//!     }
//! });
//! let reply = llm.chat(ChatRequest::new(ChatContext::new())).collect().await?;
//! println!("{} answered: {}", reply.metrics.map(|m| m.label).unwrap_or_default(), reply.text);
//! # Ok(()) }
//! ```
//!
//! See `docs/fallback.md` for the rules, the defaults and where they come from.

mod llm;
mod stt;
mod tts;

pub use llm::{FallbackLlm, FallbackLlmOptions};
pub use stt::{FallbackStt, FallbackSttOptions};
pub use tts::{FallbackTts, FallbackTtsOptions};

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::retry::ApiConnectOptions;

/// Capacity of the [`AvailabilityChanged`] channel; a receiver that falls further behind sees
/// [`broadcast::error::RecvError::Lagged`] and misses the oldest changes.
pub const AVAILABILITY_CHANNEL_CAPACITY: usize = 64;

/// A member of a fallback adapter became available or unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AvailabilityChanged {
    /// The member's position in the adapter's list.
    pub index: usize,
    /// The member's label, e.g. `openai.LLM`.
    pub label: String,
    /// Whether it is available now.
    pub available: bool,
}

/// A fallback adapter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FallbackError {
    /// The member list is empty.
    #[error("at least one {kind} instance must be provided.")]
    NoMembers {
        /// `LLM`, `STT` or `TTS`.
        kind: &'static str,
    },
    /// TTS members produce different channel counts.
    #[error("all TTS must have the same number of channels (got {channels:?})")]
    ChannelMismatch {
        /// `(label, channels)` of every member.
        channels: Vec<(String, u16)>,
    },
    /// STT members cannot stream and no stream adapter was given.
    #[error(
        "STTs do not support streaming: {}. Provide a VAD to enable stt.StreamAdapter automatically or wrap them \
         with stt.StreamAdapter before using this adapter (FallbackStt::with_stream_adapter with \
         agents_pipeline::StreamAdapter and a VAD).",
        labels.join(", ")
    )]
    NonStreamingStt {
        /// Labels of the members that cannot stream.
        labels: Vec<String>,
    },
    /// A member's rate cannot be resampled to the output rate.
    #[error("cannot resample {label} from {from} Hz to {to} Hz: {reason}")]
    Resample {
        /// The member.
        label: String,
        /// Its rate.
        from: u32,
        /// The output rate.
        to: u32,
        /// The resampler's error.
        reason: String,
    },
}

/// One member's failure, inside [`AllMembersFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberFailure {
    /// The member's position.
    pub index: usize,
    /// The member's label.
    pub label: String,
    /// The error's `Display`.
    pub error: String,
}

/// Every member of a fallback adapter failed one request; the source of the request's [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("all {kind}s failed ({}) after {elapsed:.2?}", failures.iter().map(|f| format!("{}: {}", f.label, f.error)).collect::<Vec<_>>().join("; "))]
#[non_exhaustive]
pub struct AllMembersFailed {
    /// `LLM`, `STT` or `TTS`.
    pub kind: &'static str,
    /// What each member tried said, in order.
    pub failures: Vec<MemberFailure>,
    /// Time from the start of the request to the last failure.
    pub elapsed: Duration,
}

impl AllMembersFailed {
    /// The retryable connection error a request fails with: `all {kind}s failed ([labels]) after {elapsed}`.
    pub(crate) fn into_api_error(self, labels: &[String]) -> ApiError {
        let message = format!(
            "all {}s failed ([{}]) after {:.2?}",
            self.kind,
            labels.join(", "),
            self.elapsed
        );
        ApiError::connection(message).with_source(self)
    }
}

/// Availability of the members of one adapter, its change notifications and its background probes.
pub(crate) struct Availability {
    kind: &'static str,
    labels: Vec<String>,
    available: Vec<AtomicBool>,
    probes: Mutex<Vec<Option<AbortHandle>>>,
    events: broadcast::Sender<AvailabilityChanged>,
    closed: AtomicBool,
}

impl fmt::Debug for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Availability")
            .field("labels", &self.labels)
            .field("available", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl Availability {
    pub(crate) fn new(kind: &'static str, labels: Vec<String>) -> Arc<Self> {
        let n = labels.len();
        let (events, _) = broadcast::channel(AVAILABILITY_CHANNEL_CAPACITY);
        Arc::new(Self {
            kind,
            labels,
            available: (0..n).map(|_| AtomicBool::new(true)).collect(),
            probes: Mutex::new(vec![None; n]),
            events,
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn labels(&self) -> &[String] {
        &self.labels
    }

    pub(crate) fn label(&self, index: usize) -> &str {
        self.labels.get(index).map_or("unknown", String::as_str)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AvailabilityChanged> {
        self.events.subscribe()
    }

    pub(crate) fn is_available(&self, index: usize) -> bool {
        self.available
            .get(index)
            .is_some_and(|a| a.load(Ordering::SeqCst))
    }

    pub(crate) fn snapshot(&self) -> Vec<bool> {
        self.available
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect()
    }

    pub(crate) fn all_unavailable(&self) -> bool {
        self.available.iter().all(|a| !a.load(Ordering::SeqCst))
    }

    /// Whether a request should try member `index`: it is available, or every member was down when the request
    /// started.
    pub(crate) fn should_try(&self, index: usize, all_failed: bool) -> bool {
        all_failed || self.is_available(index)
    }

    fn set(&self, index: usize, available: bool) {
        let Some(flag) = self.available.get(index) else {
            return;
        };
        if flag.swap(available, Ordering::SeqCst) != available {
            if available {
                tracing::info!(
                    kind = self.kind,
                    member = self.label(index),
                    "fallback member recovered"
                );
            } else {
                tracing::warn!(
                    kind = self.kind,
                    member = self.label(index),
                    "fallback member marked unavailable"
                );
            }
            // No receiver is not an error: nobody listens.
            let _ = self.events.send(AvailabilityChanged {
                index,
                label: self.label(index).to_owned(),
                available,
            });
        }
    }

    pub(crate) fn mark_available(&self, index: usize) {
        self.set(index, true);
    }

    pub(crate) fn mark_unavailable(&self, index: usize) {
        self.set(index, false);
    }

    /// Starts the background probe of member `index` unless one runs, the adapter is closed, or there is no tokio
    /// runtime. The probe waits `interval`, runs `attempt` on a clone of `context` (what the failed request
    /// needs to be repeated), and repeats until an attempt succeeds (the member is then marked available) or the
    /// member became available another way.
    pub(crate) fn start_probe<C, F, Fut>(
        self: &Arc<Self>,
        index: usize,
        interval: Duration,
        context: C,
        attempt: F,
    ) where
        C: Clone + Send + Sync + 'static,
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        if self.closed.load(Ordering::SeqCst) || self.is_available(index) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut probes = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = probes.get_mut(index) else {
            return;
        };
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let this = Arc::clone(self);
        let task = runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if this.closed.load(Ordering::SeqCst) || this.is_available(index) {
                    return;
                }
                if attempt(context.clone()).await {
                    this.mark_available(index);
                    return;
                }
                tracing::debug!(
                    kind = this.kind,
                    member = this.label(index),
                    "recovery probe failed"
                );
            }
        });
        *slot = Some(task.abort_handle());
    }

    /// Whether a probe of member `index` is running.
    pub(crate) fn is_probing(&self, index: usize) -> bool {
        self.probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|h| !h.is_finished())
    }

    /// Stops every probe; no new one starts.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut probes = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        for handle in probes.iter_mut().filter_map(Option::take) {
            handle.abort();
        }
    }
}

/// How one member's attempt at a request ended, for [`try_in_order`].
pub(crate) enum Attempt<T, E> {
    /// The member served the request: it is marked available and the request ends with `T`.
    Served(T),
    /// The caller went away: the request ends and no member is marked.
    Abandoned,
    /// The member failed: it is marked unavailable and probed, and the next member is tried.
    Failed(E),
    /// The request ends with `error` and no other member is tried. `member_fault`: the member is to blame (it
    /// failed after its output reached the caller) and is marked unavailable and probed; otherwise the caller's
    /// input was wrong and nobody is marked.
    Fatal {
        /// What the caller receives.
        error: E,
        /// Whether the member is to blame.
        member_fault: bool,
    },
}

/// One request of a fallback adapter, tried on the members in order by [`try_in_order`].
pub(crate) trait MemberRequest {
    /// What a served request ends with.
    type Output;
    /// The adapter's error type.
    type Error: fmt::Display + From<ApiError>;
    /// Starts the recovery probe of member `index` (skipped as unavailable, or just failed).
    fn probe(&self, index: usize);
    /// Runs the request on member `index`.
    fn attempt(
        &mut self,
        index: usize,
    ) -> impl Future<Output = Attempt<Self::Output, Self::Error>> + Send;
}

/// Runs `request` on the members in order, skipping (and probing) unavailable ones unless every member is
/// unavailable, until one serves it. `what` names the request in logs (`LLM`, `STT stream`...).
///
/// Ends with `Ok(Some(output))` when a member served it, `Ok(None)` when the caller went away, and the error of a
/// fatal attempt or, when every member failed, the retryable [`AllMembersFailed`] connection error.
pub(crate) async fn try_in_order<R: MemberRequest>(
    availability: &Arc<Availability>,
    what: &'static str,
    request: &mut R,
) -> Result<Option<R::Output>, R::Error> {
    let started = Instant::now();
    let all_failed = availability.all_unavailable();
    if all_failed {
        tracing::error!(
            "all {}s are unavailable, trying each once",
            availability.kind
        );
    }
    let mut failures = Vec::new();
    for index in 0..availability.labels.len() {
        if !availability.should_try(index, all_failed) {
            request.probe(index);
            continue;
        }
        match request.attempt(index).await {
            Attempt::Served(output) => {
                availability.mark_available(index);
                return Ok(Some(output));
            }
            Attempt::Abandoned => return Ok(None),
            Attempt::Fatal {
                error,
                member_fault,
            } => {
                if member_fault {
                    availability.mark_unavailable(index);
                    request.probe(index);
                    tracing::error!(
                        member = availability.label(index), %error,
                        "{what} failed after its output reached the caller; not switching"
                    );
                }
                return Err(error);
            }
            Attempt::Failed(error) => {
                let label = availability.label(index).to_owned();
                tracing::warn!(member = %label, %error, "{what} failed, switching to the next one");
                availability.mark_unavailable(index);
                request.probe(index);
                failures.push(MemberFailure {
                    index,
                    label,
                    error: error.to_string(),
                });
            }
        }
    }
    let failed = AllMembersFailed {
        kind: availability.kind,
        failures,
        elapsed: started.elapsed(),
    };
    Err(failed.into_api_error(availability.labels()).into())
}

/// The availability accessors every adapter offers, and its `Drop` (which stops the probes). `$adapter` has a
/// field `shared` with fields `members: Vec<Arc<$member>>`, `options: $options` and `availability`.
macro_rules! availability_api {
    ($adapter:ident, $member:ty, $options:ty, $members_doc:literal) => {
        impl $adapter {
            /// Receives every availability change from now on.
            pub fn subscribe(&self) -> broadcast::Receiver<AvailabilityChanged> {
                self.shared.availability.subscribe()
            }

            /// Whether member `index` is available (false for an unknown index).
            pub fn is_available(&self, index: usize) -> bool {
                self.shared.availability.is_available(index)
            }

            /// Availability of every member, in order.
            pub fn availability(&self) -> Vec<bool> {
                self.shared.availability.snapshot()
            }

            /// Whether a recovery probe of member `index` is running.
            pub fn is_probing(&self, index: usize) -> bool {
                self.shared.availability.is_probing(index)
            }

            #[doc = $members_doc]
            pub fn members(&self) -> &[Arc<$member>] {
                &self.shared.members
            }

            /// The options.
            pub fn options(&self) -> $options {
                self.shared.options
            }
        }

        impl Drop for $adapter {
            fn drop(&mut self) {
                self.shared.availability.close();
            }
        }
    };
}
use availability_api;

/// The longest a member may take for its first result: `timeout` per attempt, `max_retry + 1` attempts, and the
/// delays between them (the member's own retry loop).
pub(crate) fn attempt_budget(conn: &ApiConnectOptions) -> Duration {
    let attempts = conn.max_retry.saturating_add(1);
    let mut budget = conn.timeout.saturating_mul(attempts);
    for i in 0..conn.max_retry {
        budget = budget.saturating_add(conn.interval_for_retry(i));
    }
    budget
}

/// A stream of what `driver` sends, produced as the stream is polled (no task is spawned; dropping the stream
/// drops the driver).
pub(crate) fn driven<T, F, Fut>(
    capacity: usize,
    driver: F,
) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let driver = driver(tx);
    let items = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let driver = futures::stream::once(driver).filter_map(|()| futures::future::ready(None));
    futures::stream::select(items, driver)
}
