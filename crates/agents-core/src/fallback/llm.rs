//! [`FallbackLlm`]: an [`Llm`] over an ordered list of LLMs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::{AllMembersFailed, Availability, AvailabilityChanged, FallbackError, MemberFailure};
use super::{attempt_budget, driven};
use crate::error::ApiError;
use crate::llm::{
    ChatChunk, ChatRequest, Llm, LlmCapabilities, LlmError, LlmStream, RequestIdSlot, ServedBySlot,
};

/// Chunks buffered between the member being read and the caller.
const CHUNK_QUEUE: usize = 16;

/// Options of a [`FallbackLlm`]; the defaults are LiveKit's.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FallbackLlmOptions {
    /// Per-attempt timeout given to the members (`conn_options.timeout`), and the longest the adapter waits for
    /// each chunk of a member's stream (for the first one, for every attempt the member's retries may make).
    /// Default 5 s.
    pub attempt_timeout: Duration,
    /// Retries each member makes itself before the adapter moves on (`conn_options.max_retry`). Default 0: use
    /// the next member instead of retrying.
    pub max_retry_per_llm: u32,
    /// Delay between a member's own retries (`conn_options.retry_interval`). Default 0.5 s.
    pub retry_interval: Duration,
    /// Whether a member that fails after sending content is replaced by the next one (the caller then sees the
    /// content of both). Default false: the error reaches the caller.
    pub retry_on_chunk_sent: bool,
    /// Delay before each background recovery probe of an unavailable member. Default 5 s.
    pub probe_interval: Duration,
}

impl Default for FallbackLlmOptions {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            max_retry_per_llm: 0,
            retry_interval: Duration::from_millis(500),
            retry_on_chunk_sent: false,
            probe_interval: Duration::from_secs(5),
        }
    }
}

impl FallbackLlmOptions {
    /// Sets [`FallbackLlmOptions::attempt_timeout`].
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets [`FallbackLlmOptions::max_retry_per_llm`].
    #[must_use]
    pub fn with_max_retry_per_llm(mut self, max_retry: u32) -> Self {
        self.max_retry_per_llm = max_retry;
        self
    }

    /// Sets [`FallbackLlmOptions::retry_interval`].
    #[must_use]
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// Sets [`FallbackLlmOptions::retry_on_chunk_sent`].
    #[must_use]
    pub fn with_retry_on_chunk_sent(mut self, retry: bool) -> Self {
        self.retry_on_chunk_sent = retry;
        self
    }

    /// Sets [`FallbackLlmOptions::probe_interval`].
    #[must_use]
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }
}

struct Shared {
    members: Vec<Arc<dyn Llm>>,
    options: FallbackLlmOptions,
    availability: Arc<Availability>,
}

/// An [`Llm`] that answers with the first member that works (see the [module documentation](super)).
///
/// Its streams' metrics carry the label and model of the member that answered.
pub struct FallbackLlm {
    shared: Arc<Shared>,
}

impl fmt::Debug for FallbackLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLlm")
            .field("availability", &self.shared.availability)
            .field("options", &self.shared.options)
            .finish()
    }
}

impl FallbackLlm {
    /// An adapter over `members` (tried in this order) with the default options.
    ///
    /// # Errors
    /// [`FallbackError::NoMembers`] when `members` is empty.
    pub fn new(members: Vec<Arc<dyn Llm>>) -> Result<Self, FallbackError> {
        Self::with_options(members, FallbackLlmOptions::default())
    }

    /// An adapter over `members` (tried in this order).
    ///
    /// # Errors
    /// [`FallbackError::NoMembers`] when `members` is empty.
    pub fn with_options(
        members: Vec<Arc<dyn Llm>>,
        options: FallbackLlmOptions,
    ) -> Result<Self, FallbackError> {
        if members.is_empty() {
            return Err(FallbackError::NoMembers { kind: "LLM" });
        }
        let labels = members.iter().map(|m| m.label().to_owned()).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                members,
                options,
                availability: Availability::new("LLM", labels),
            }),
        })
    }

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

    /// The members, in order.
    pub fn members(&self) -> &[Arc<dyn Llm>] {
        &self.shared.members
    }

    /// The options.
    pub fn options(&self) -> FallbackLlmOptions {
        self.shared.options
    }

    /// The first available member, or the first one when none is.
    fn next_member(&self) -> &Arc<dyn Llm> {
        let a = &self.shared.availability;
        let members = &self.shared.members;
        members
            .iter()
            .enumerate()
            .find(|(i, _)| a.is_available(*i))
            .map_or(&members[0], |(_, m)| m)
    }
}

impl Drop for FallbackLlm {
    fn drop(&mut self) {
        self.shared.availability.close();
    }
}

/// How one member's attempt ended.
enum Outcome {
    /// The stream ended normally.
    Done,
    /// The caller dropped the stream.
    CallerGone,
    /// The member failed; `sent` tells whether content reached the caller.
    Failed { error: LlmError, sent: bool },
}

impl Shared {
    fn member_request(&self, request: &ChatRequest) -> ChatRequest {
        let o = &self.options;
        let conn = request
            .conn_options
            .with_max_retry(o.max_retry_per_llm)
            .with_timeout(o.attempt_timeout)
            .with_retry_interval(o.retry_interval);
        request.clone().with_conn_options(conn)
    }

    /// Reads one member's stream into `tx` (`tx` is `None` for a probe).
    async fn attempt(
        &self,
        index: usize,
        request: &ChatRequest,
        tx: Option<&mpsc::Sender<Result<ChatChunk, LlmError>>>,
        served: Option<(&ServedBySlot, &RequestIdSlot)>,
    ) -> Outcome {
        let Some(member) = self.members.get(index) else {
            return Outcome::Done;
        };
        let member_request = self.member_request(request);
        let first_wait = attempt_budget(&member_request.conn_options);
        let mut stream = member.chat(member_request);
        let mut sent = false;
        let mut first = true;
        loop {
            let wait = if first {
                first_wait
            } else {
                self.options.attempt_timeout
            };
            let item = match tokio::time::timeout(wait, stream.next()).await {
                Ok(item) => item,
                Err(_) => {
                    let error = ApiError::timeout(format!(
                        "{} sent nothing for {wait:.2?}",
                        member.label()
                    ));
                    return Outcome::Failed {
                        error: error.into(),
                        sent,
                    };
                }
            };
            match item {
                None => {
                    if let Some((_, ids)) = served
                        && let Some(id) = stream.request_id()
                    {
                        ids.set(id);
                    }
                    return Outcome::Done;
                }
                Some(Err(error)) => return Outcome::Failed { error, sent },
                Some(Ok(chunk)) => {
                    if first {
                        first = false;
                        if let Some((slot, _)) = served {
                            slot.set(member.label(), member.model());
                        }
                    }
                    if matches!(chunk, ChatChunk::Text(_) | ChatChunk::ToolCall(_)) {
                        sent = true;
                    }
                    if let Some(tx) = tx
                        && tx.send(Ok(chunk)).await.is_err()
                    {
                        return Outcome::CallerGone;
                    }
                }
            }
        }
    }

    fn start_probe(self: &Arc<Self>, index: usize, request: &ChatRequest) {
        let shared = Arc::clone(self);
        let request = request.clone();
        self.availability
            .start_probe(index, self.options.probe_interval, move || {
                let shared = Arc::clone(&shared);
                let request = request.clone();
                Box::pin(async move {
                    matches!(
                        shared.attempt(index, &request, None, None).await,
                        Outcome::Done
                    )
                })
            });
    }

    async fn run(
        self: Arc<Self>,
        request: ChatRequest,
        tx: mpsc::Sender<Result<ChatChunk, LlmError>>,
        served: ServedBySlot,
        ids: RequestIdSlot,
    ) {
        let started = Instant::now();
        let availability = &self.availability;
        let all_failed = availability.all_unavailable();
        if all_failed {
            tracing::error!("all LLMs are unavailable, trying each once");
        }
        let mut failures = Vec::new();
        for index in 0..self.members.len() {
            if !availability.should_try(index, all_failed) {
                self.start_probe(index, &request);
                continue;
            }
            match self
                .attempt(index, &request, Some(&tx), Some((&served, &ids)))
                .await
            {
                Outcome::Done => {
                    availability.mark_available(index);
                    return;
                }
                Outcome::CallerGone => return,
                Outcome::Failed { error, sent } => {
                    let label = availability.label(index).to_owned();
                    availability.mark_unavailable(index);
                    self.start_probe(index, &request);
                    if sent && !self.options.retry_on_chunk_sent {
                        tracing::error!(
                            member = %label, %error,
                            "LLM failed after sending content; not switching (retry_on_chunk_sent is false)"
                        );
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                    tracing::warn!(member = %label, %error, "LLM failed, switching to the next one");
                    failures.push(MemberFailure {
                        index,
                        label,
                        error: error.to_string(),
                    });
                }
            }
        }
        let failed = AllMembersFailed {
            kind: "LLM",
            failures,
            elapsed: started.elapsed(),
        };
        let error = failed.into_api_error(availability.labels());
        let _ = tx.send(Err(error.into())).await;
    }
}

#[async_trait]
impl Llm for FallbackLlm {
    fn label(&self) -> &str {
        "fallback.LLM"
    }

    /// The model of the member expected to serve next (the first available one).
    fn model(&self) -> &str {
        self.next_member().model()
    }

    /// What every member offers.
    fn capabilities(&self) -> LlmCapabilities {
        let members = &self.shared.members;
        LlmCapabilities {
            tools: members.iter().all(|m| m.capabilities().tools),
            vision: members.iter().all(|m| m.capabilities().vision),
        }
    }

    fn chat(&self, request: ChatRequest) -> LlmStream {
        let served = ServedBySlot::new();
        let ids = RequestIdSlot::new();
        let shared = Arc::clone(&self.shared);
        let (run_served, run_ids) = (served.clone(), ids.clone());
        let stream = driven(CHUNK_QUEUE, move |tx| {
            shared.run(request, tx, run_served, run_ids)
        });
        LlmStream::new(self.label(), self.model(), stream)
            .with_served_by(served)
            .with_request_id_slot(ids)
    }

    async fn aclose(&self) {
        self.shared.availability.close();
        for member in &self.shared.members {
            member.aclose().await;
        }
    }
}
