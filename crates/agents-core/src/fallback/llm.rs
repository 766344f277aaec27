//! [`FallbackLlm`]: an [`Llm`] over an ordered list of LLMs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};

use super::{Attempt, Availability, AvailabilityChanged, FallbackError, MemberRequest};
use super::{attempt_budget, availability_api, driven, try_in_order};
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

availability_api!(
    FallbackLlm,
    dyn Llm,
    FallbackLlmOptions,
    "The members, in order."
);

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
        let context = (Arc::clone(self), request.clone());
        self.availability.start_probe(
            index,
            self.options.probe_interval,
            context,
            move |(shared, request)| async move {
                matches!(
                    shared.attempt(index, &request, None, None).await,
                    Outcome::Done
                )
            },
        );
    }
}

/// One `chat` request, tried on the members in order.
struct ChatRun {
    shared: Arc<Shared>,
    request: ChatRequest,
    tx: mpsc::Sender<Result<ChatChunk, LlmError>>,
    served: ServedBySlot,
    ids: RequestIdSlot,
}

impl MemberRequest for ChatRun {
    type Output = ();
    type Error = LlmError;

    fn probe(&self, index: usize) {
        self.shared.start_probe(index, &self.request);
    }

    async fn attempt(&mut self, index: usize) -> Attempt<(), LlmError> {
        let served = Some((&self.served, &self.ids));
        match self
            .shared
            .attempt(index, &self.request, Some(&self.tx), served)
            .await
        {
            Outcome::Done => Attempt::Served(()),
            Outcome::CallerGone => Attempt::Abandoned,
            Outcome::Failed { error, sent } if sent && !self.shared.options.retry_on_chunk_sent => {
                Attempt::Fatal {
                    error,
                    member_fault: true,
                }
            }
            Outcome::Failed { error, .. } => Attempt::Failed(error),
        }
    }
}

impl ChatRun {
    async fn run(mut self) {
        let availability = Arc::clone(&self.shared.availability);
        if let Err(error) = try_in_order(&availability, "LLM", &mut self).await {
            let _ = self.tx.send(Err(error)).await;
        }
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
            ChatRun {
                shared,
                request,
                tx,
                served: run_served,
                ids: run_ids,
            }
            .run()
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
