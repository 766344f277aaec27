//! Voice integration: a [`VoiceBridge`] worker that bridges an [`AgentSession`]'s conversation onto the bus, and
//! [`job_group_tool`], a session tool that runs a job group and speaks its progress.
//!
//! This is the Rust counterpart of Pipecat's `BusBridgeProcessor` plus bridged `LLMWorker`s
//! (`pipecat-ai/pipecat`, `src/pipecat/bus/bridge_processor.py`, `src/pipecat/workers/llm/llm_worker.py`).
//!
//! # What crosses the bus ("frames")
//!
//! Pipecat tees pipeline frames onto the bus. Here the session keeps its audio path (VAD, STT, turn detection,
//! TTS, playout) in its own process, and only the *conversation* crosses the bus, as [`BridgeFrame`]s carried in
//! [`MessageBody::Custom`] messages named [`BRIDGE_MESSAGE`]:
//!
//! - session → workers (broadcast): [`BridgeFrame::UserTurn`] (the user's committed turn, or a reply request with
//!   one-off instructions) and [`BridgeFrame::CancelTurn`] (barge-in: the session dropped the reply);
//! - worker → session (to the bridge): [`BridgeFrame::TextDelta`], [`BridgeFrame::ReplyEnd`] (optionally naming a
//!   hand-off target), [`BridgeFrame::ReplyError`], [`BridgeFrame::Say`] (an unsolicited line, e.g. the greeting a
//!   worker produces when it is activated);
//! - session → worker: [`BridgeFrame::PlayoutDone`] (the reply that announced a hand-off was fully played).
//!
//! Audio never crosses the bus, and neither do lifecycle signals (Pipecat's `StartFrame`, `EndFrame`,
//! `CancelFrame`, `StopFrame`, behaviour 42): session start and close, agent/user state changes and metrics stay
//! in the session's process. This holds by construction, since [`BridgeFrame`] cannot express them.
//!
//! # How a turn flows
//!
//! The session is built with [`VoiceBridge::llm`] as its LLM. When the session wants a reply, the bridge LLM
//! broadcasts a `UserTurn`; every [`LlmWorker`](crate::LlmWorker) bridged to this bridge receives it, inactive
//! ones drop it (behaviour 40), ones bridged to other bridges ignore it (41), and the active one runs its own LLM
//! with its own context and tools and streams its text back. The session speaks the text as it arrives. Dropping
//! the reply stream before its end (barge-in) sends `CancelTurn`, which aborts the worker's turn and its tools
//! (Pipecat's `@tool(cancel_on_interruption=True)` default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agents_core::chat::ChatItem;
use agents_core::events::SessionEvent;
use agents_core::session::SessionHandle;
use agents_core::speech::SpeechHandle;
use agents_core::tools::{FunctionTool, ToolDefinitionError, ToolError, ToolOutcome};
use agents_core::{ApiError, ChatChunk, ChatRequest, ChatRole, Llm, LlmError, LlmStream};
use agents_pipeline::AgentSession;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::message::{BusMessage, MessageBody};
use crate::types::{JobEventKind, JobGroupParams};
use crate::worker::{Worker, WorkerContext};

/// Default idle timeout of a [`VoiceBridge`] (Pipecat's `PipelineWorker.IDLE_TIMEOUT_SECS`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Name of the [`MessageBody::Custom`] messages that carry [`BridgeFrame`]s.
pub const BRIDGE_MESSAGE: &str = "bridge_frame";

/// The conversation traffic between a session and its agent workers. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BridgeFrame {
    /// The session wants a reply (bridge → every bridged worker).
    UserTurn {
        /// Id of this reply.
        turn_id: String,
        /// The user's committed turn, if this reply answers one.
        text: Option<String>,
        /// One-off instructions for this reply (e.g. `generate_reply(instructions)`), when there is no user text.
        instructions: Option<String>,
    },
    /// The session no longer wants this reply (barge-in) (bridge → every bridged worker).
    CancelTurn {
        /// The reply.
        turn_id: String,
    },
    /// A piece of the reply text (worker → bridge).
    TextDelta {
        /// The reply.
        turn_id: String,
        /// The text.
        text: String,
    },
    /// The reply is complete (worker → bridge). With `handoff`, the worker waits for [`BridgeFrame::PlayoutDone`]
    /// and then activates that worker.
    ReplyEnd {
        /// The reply.
        turn_id: String,
        /// The worker the conversation is handed to after this reply played.
        handoff: Option<String>,
    },
    /// The reply failed (worker → bridge).
    ReplyError {
        /// The reply.
        turn_id: String,
        /// Description.
        error: String,
    },
    /// A line to speak that answers no turn, e.g. a worker's greeting on activation (worker → bridge).
    Say {
        /// The text.
        text: String,
    },
    /// The reply that announced a hand-off was played out (or interrupted) (bridge → worker).
    PlayoutDone {
        /// The reply.
        turn_id: String,
    },
}

impl BridgeFrame {
    /// Decodes the frame of a bus message; `None` for other messages, an error for a malformed frame.
    pub fn from_message(message: &BusMessage) -> Option<Result<Self, serde_json::Error>> {
        match &message.body {
            MessageBody::Custom { name, data } if name == BRIDGE_MESSAGE => {
                Some(serde_json::from_value(data.clone()))
            }
            _ => None,
        }
    }

    /// The JSON payload of the carrying message.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Sends this frame from `ctx`'s worker to `target` (or broadcasts it).
    pub async fn send(
        &self,
        ctx: &WorkerContext,
        target: Option<&str>,
    ) -> Result<(), crate::BusError> {
        ctx.send_message(target, BRIDGE_MESSAGE, self.to_value())
            .await
    }
}

struct OpenTurn {
    tx: mpsc::Sender<TurnEvent>,
    owner: Option<String>,
}

/// What a reply stream receives.
enum TurnEvent {
    Text(String),
    End,
    Error(String),
}

struct BridgeShared {
    ctx: OnceLock<WorkerContext>,
    ready: Notify,
    /// Open replies: their channel, and the worker answering (the first one that sent a frame for it).
    turns: Mutex<HashMap<String, OpenTurn>>,
    session: OnceLock<SessionHandle>,
    speeches: Arc<Mutex<Vec<SpeechHandle>>>,
    reply_timeout: Duration,
    ready_timeout: Duration,
    idle_timeout: Option<Duration>,
    cancel_runner_on_idle_timeout: bool,
    /// Last conversation activity (session events, bridged frames).
    activity: Mutex<tokio::time::Instant>,
    activity_notify: Notify,
}

impl BridgeShared {
    fn touch(&self) {
        *lock(&self.activity) = tokio::time::Instant::now();
        self.activity_notify.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The worker that bridges a voice session onto the bus (Pipecat's `BusBridgeProcessor`). Its worker name is the
/// bridge name that [`LlmWorker::with_bridges`](crate::LlmWorker::with_bridges) filters on.
///
/// Use: build the session with [`VoiceBridge::llm`] as its LLM, [`attach`](Self::attach) the session before
/// starting it, and add the bridge to a runner (`WorkerSpec::new(name, bridge.clone())`). The `with_*` settings
/// apply only before the bridge is shared (before `llm`, `attach` or `clone`); later calls keep the old values.
#[derive(Clone)]
pub struct VoiceBridge {
    shared: Arc<BridgeShared>,
}

impl std::fmt::Debug for VoiceBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceBridge")
            .field("name", &self.shared.ctx.get().map(WorkerContext::name))
            .finish_non_exhaustive()
    }
}

impl Default for VoiceBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceBridge {
    /// A bridge with a 15 s reply timeout (time to the first reply frame) and a 10 s wait for the bridge worker to
    /// be running.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(BridgeShared {
                ctx: OnceLock::new(),
                ready: Notify::new(),
                turns: Mutex::new(HashMap::new()),
                session: OnceLock::new(),
                speeches: Arc::new(Mutex::new(Vec::new())),
                reply_timeout: Duration::from_secs(15),
                ready_timeout: Duration::from_secs(10),
                idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
                cancel_runner_on_idle_timeout: true,
                activity: Mutex::new(tokio::time::Instant::now()),
                activity_notify: Notify::new(),
            }),
        }
    }

    /// How long a reply may go without a frame from the active worker before it fails with a timeout (e.g. no
    /// worker is active, or the active one's process died).
    pub fn with_reply_timeout(self, timeout: Duration) -> Self {
        self.rebuild(|s| s.reply_timeout = timeout)
    }

    /// Ends the bridge when the conversation was idle (no session event, no bridged frame) for `timeout`:
    /// the session is closed and, with [`with_cancel_runner_on_idle_timeout`](Self::with_cancel_runner_on_idle_timeout)
    /// (default `true`), the whole runner is cancelled. Default 300 s (Pipecat's `IDLE_TIMEOUT_SECS`); `None`
    /// turns it off.
    pub fn with_idle_timeout(self, timeout: Option<Duration>) -> Self {
        self.rebuild(|s| s.idle_timeout = timeout)
    }

    /// Whether an idle timeout cancels the runner and all its workers (default `true`) or ends only the bridge.
    pub fn with_cancel_runner_on_idle_timeout(self, cancel: bool) -> Self {
        self.rebuild(|s| s.cancel_runner_on_idle_timeout = cancel)
    }

    fn rebuild(self, f: impl FnOnce(&mut BridgeShared)) -> Self {
        match Arc::try_unwrap(self.shared) {
            Ok(mut shared) => {
                f(&mut shared);
                Self {
                    shared: Arc::new(shared),
                }
            }
            Err(shared) => {
                tracing::warn!("VoiceBridge setting ignored: the bridge is already shared");
                Self { shared }
            }
        }
    }

    /// The LLM to give the session: each request becomes a bridged turn answered by the active worker.
    pub fn llm(&self) -> Arc<dyn Llm> {
        Arc::new(BridgeLlm {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Attaches the session: `Say` frames are spoken through it and hand-offs wait for its speech to play out.
    /// Call it once, before `session.start` (later calls are ignored).
    pub fn attach(&self, session: &AgentSession) {
        if self.shared.session.set(session.handle()).is_err() {
            tracing::warn!("VoiceBridge::attach called twice; keeping the first session");
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        let mut events = session.events();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Some(shared) = shared.upgrade() else {
                    break;
                };
                match event {
                    SessionEvent::SpeechCreated { speech, .. } => {
                        let mut list = lock(&shared.speeches);
                        list.retain(|s| !s.done());
                        list.push(speech);
                    }
                    SessionEvent::MetricsCollected(_) | SessionEvent::Error(_) => continue,
                    _ => {}
                }
                shared.touch();
            }
        });
    }

    /// The bridge's worker context once it runs.
    pub fn context(&self) -> Option<&WorkerContext> {
        self.shared.ctx.get()
    }

    /// Returns once the conversation was idle for the idle timeout (never when it is off).
    async fn idle(&self) {
        let Some(timeout) = self.shared.idle_timeout else {
            return std::future::pending().await;
        };
        loop {
            let notified = self.shared.activity_notify.notified();
            let deadline = *lock(&self.shared.activity) + timeout;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if *lock(&self.shared.activity) + timeout <= tokio::time::Instant::now() {
                        return;
                    }
                }
                _ = notified => {}
            }
        }
    }

    async fn wait_for_playout(&self) {
        // Every speech created so far (the reply that announced the hand-off was created before its LLM request was
        // sent over the bus), then whatever is still current.
        loop {
            let pending: Vec<SpeechHandle> = lock(&self.shared.speeches)
                .iter()
                .filter(|s| !s.done())
                .cloned()
                .collect();
            let current = self
                .shared
                .session
                .get()
                .and_then(|s| s.current_speech())
                .filter(|s| !s.done());
            if pending.is_empty() && current.is_none() {
                return;
            }
            for speech in pending.iter().chain(current.iter()) {
                speech.wait_for_playout().await;
            }
        }
    }
}

#[async_trait::async_trait]
impl Worker for VoiceBridge {
    async fn run(&self, ctx: &WorkerContext) -> Result<(), crate::WorkerError> {
        let _ = self.shared.ctx.set(ctx.clone());
        self.shared.ready.notify_waiters();
        self.shared.touch();
        tokio::select! {
            _ = ctx.stopped() => {}
            _ = self.idle() => {
                let timeout = self.shared.idle_timeout.unwrap_or_default();
                tracing::info!(bridge = %ctx.name(), ?timeout, "conversation idle: ending");
                if let Some(session) = self.shared.session.get()
                    && let Err(e) = session.close().await
                {
                    tracing::debug!(error = %e, "session already closed");
                }
                if self.shared.cancel_runner_on_idle_timeout {
                    ctx.cancel_runner("idle timeout").await;
                }
            }
        }
        // End every open reply so the session does not wait for its timeout.
        for (_, tx) in lock(&self.shared.turns).drain() {
            let _ = tx
                .tx
                .try_send(TurnEvent::Error("voice bridge stopped".to_owned()));
        }
        Ok(())
    }

    async fn on_bus_message(&self, ctx: &WorkerContext, message: &BusMessage) {
        let frame = match BridgeFrame::from_message(message) {
            None => return,
            Some(Ok(f)) => {
                self.shared.touch();
                f
            }
            Some(Err(e)) => {
                tracing::warn!(bridge = %ctx.name(), from = %message.source, error = %e, "malformed bridge frame");
                return;
            }
        };
        // A reply belongs to the first worker that answers it; frames from another worker (two workers active by
        // mistake) are ignored.
        let route = |turn_id: &str, event: TurnEvent, last: bool| {
            let mut turns = lock(&self.shared.turns);
            let open = turns.get_mut(turn_id)?;
            match &open.owner {
                Some(owner) if *owner != message.source => {
                    tracing::warn!(turn = %turn_id, owner = %owner, from = %message.source,
                        "reply frame from a second worker ignored");
                    return None;
                }
                Some(_) => {}
                None => open.owner = Some(message.source.clone()),
            }
            let tx = open.tx.clone();
            if last {
                turns.remove(turn_id);
            }
            Some((tx, event))
        };
        match frame {
            BridgeFrame::TextDelta { turn_id, text } => {
                if let Some((tx, ev)) = route(&turn_id, TurnEvent::Text(text), false) {
                    // Bounded: a reader that stopped (barge-in) just drops the rest.
                    let _ = tx.send(ev).await;
                }
            }
            BridgeFrame::ReplyEnd { turn_id, handoff } => {
                if let Some((tx, ev)) = route(&turn_id, TurnEvent::End, true) {
                    let _ = tx.send(ev).await;
                }
                if handoff.is_some() {
                    let bridge = self.clone();
                    let ctx = ctx.clone();
                    let worker = message.source.clone();
                    tokio::spawn(async move {
                        bridge.wait_for_playout().await;
                        let done = BridgeFrame::PlayoutDone { turn_id };
                        if let Err(e) = done.send(&ctx, Some(&worker)).await {
                            tracing::warn!(error = %e, "could not confirm the hand-off playout");
                        }
                    });
                }
            }
            BridgeFrame::ReplyError { turn_id, error } => {
                if let Some((tx, ev)) = route(&turn_id, TurnEvent::Error(error), true) {
                    let _ = tx.send(ev).await;
                }
            }
            BridgeFrame::Say { text } => match self.shared.session.get() {
                Some(session) => {
                    if let Err(e) = session.say(agents_core::session::SayRequest::new(text)) {
                        tracing::warn!(bridge = %ctx.name(), error = %e, "could not speak a bridged line");
                    }
                }
                None => {
                    tracing::warn!(bridge = %ctx.name(), "bridged line dropped: no session attached")
                }
            },
            // Frames travelling the other way (from another bridge) are not for us.
            BridgeFrame::UserTurn { .. }
            | BridgeFrame::CancelTurn { .. }
            | BridgeFrame::PlayoutDone { .. } => {}
        }
    }
}

/// The session-side LLM of a [`VoiceBridge`].
struct BridgeLlm {
    shared: Arc<BridgeShared>,
}

/// Sends `CancelTurn` when a reply stream is dropped before its end.
struct TurnGuard {
    shared: Arc<BridgeShared>,
    turn_id: String,
    finished: bool,
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        lock(&self.shared.turns).remove(&self.turn_id);
        if self.finished {
            return;
        }
        let Some(ctx) = self.shared.ctx.get().cloned() else {
            return;
        };
        let frame = BridgeFrame::CancelTurn {
            turn_id: std::mem::take(&mut self.turn_id),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = frame.send(&ctx, None).await;
            });
        }
    }
}

fn bridge_error(message: impl Into<String>) -> LlmError {
    LlmError::Api(ApiError::new(message).with_retryable(false))
}

/// The user's text when the request answers a user turn (the last item is a user message), else the request's
/// instructions.
fn turn_of(request: &ChatRequest) -> (Option<String>, Option<String>) {
    let last_user = match request.chat_ctx.items().last() {
        Some(ChatItem::Message(m)) if m.role == ChatRole::User => m.text_content(),
        _ => None,
    };
    match last_user {
        Some(text) => (Some(text), None),
        None => (
            None,
            request
                .chat_ctx
                .instructions()
                .and_then(|m| m.text_content())
                .filter(|t| !t.trim().is_empty()),
        ),
    }
}

impl Llm for BridgeLlm {
    fn label(&self) -> &str {
        "workers.VoiceBridge"
    }

    fn model(&self) -> &str {
        "bus"
    }

    fn chat(&self, request: ChatRequest) -> LlmStream {
        let shared = Arc::clone(&self.shared);
        let (text, instructions) = turn_of(&request);
        let turn_id = uuid::Uuid::new_v4().to_string();
        let stream = reply_stream(shared, turn_id, text, instructions);
        LlmStream::new("workers.VoiceBridge", "bus", stream)
    }
}

enum ReplyState {
    Start {
        shared: Arc<BridgeShared>,
        turn_id: String,
        text: Option<String>,
        instructions: Option<String>,
    },
    Reading {
        rx: mpsc::Receiver<TurnEvent>,
        guard: TurnGuard,
        timeout: Duration,
    },
    Done,
}

async fn bridge_context(shared: &BridgeShared) -> Option<WorkerContext> {
    if let Some(c) = shared.ctx.get() {
        return Some(c.clone());
    }
    let notified = shared.ready.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if let Some(c) = shared.ctx.get() {
        return Some(c.clone());
    }
    let _ = tokio::time::timeout(shared.ready_timeout, notified).await;
    shared.ctx.get().cloned()
}

async fn reply_step(state: ReplyState) -> Option<(Result<ChatChunk, LlmError>, ReplyState)> {
    let (mut rx, mut guard, timeout) = match state {
        ReplyState::Done => return None,
        ReplyState::Reading { rx, guard, timeout } => (rx, guard, timeout),
        ReplyState::Start {
            shared,
            turn_id,
            text,
            instructions,
        } => {
            let Some(ctx) = bridge_context(&shared).await else {
                return Some((
                    Err(bridge_error(
                        "voice bridge is not running on a worker runner",
                    )),
                    ReplyState::Done,
                ));
            };
            let (tx, rx) = mpsc::channel(256);
            lock(&shared.turns).insert(turn_id.clone(), OpenTurn { tx, owner: None });
            let timeout = shared.reply_timeout;
            let mut guard = TurnGuard {
                shared,
                turn_id: turn_id.clone(),
                finished: false,
            };
            let frame = BridgeFrame::UserTurn {
                turn_id,
                text,
                instructions,
            };
            if let Err(e) = frame.send(&ctx, None).await {
                guard.finished = true;
                return Some((
                    Err(bridge_error(format!(
                        "could not send the turn to the bus: {e}"
                    ))),
                    ReplyState::Done,
                ));
            }
            (rx, guard, timeout)
        }
    };
    match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(TurnEvent::Text(text))) => Some((
            Ok(ChatChunk::Text(text)),
            ReplyState::Reading { rx, guard, timeout },
        )),
        Ok(Some(TurnEvent::End)) => {
            guard.finished = true;
            None
        }
        Ok(Some(TurnEvent::Error(error))) => {
            guard.finished = true;
            Some((
                Err(bridge_error(format!("the agent worker failed: {error}"))),
                ReplyState::Done,
            ))
        }
        Ok(None) => {
            guard.finished = true;
            Some((
                Err(bridge_error("the voice bridge stopped during the reply")),
                ReplyState::Done,
            ))
        }
        // The guard is dropped unfinished: the worker is told to cancel the turn.
        Err(_) => Some((
            Err(LlmError::Api(ApiError::timeout(format!(
                "no reply from an active agent worker within {timeout:?}"
            )))),
            ReplyState::Done,
        )),
    }
}

fn reply_stream(
    shared: Arc<BridgeShared>,
    turn_id: String,
    text: Option<String>,
    instructions: Option<String>,
) -> impl futures::Stream<Item = Result<ChatChunk, LlmError>> + Send + 'static {
    futures::stream::unfold(
        ReplyState::Start {
            shared,
            turn_id,
            text,
            instructions,
        },
        reply_step,
    )
}

/// A session tool that asks several workers in parallel (one job group), speaks their progress and returns the
/// combined result to the model. See [`job_group_tool`].
#[derive(Debug, Clone)]
pub struct JobGroupTool {
    name: String,
    description: String,
    workers: Vec<String>,
    job_name: Option<String>,
    timeout: Duration,
    speak_progress: bool,
}

impl JobGroupTool {
    /// A tool named `name` asking `workers`; 30 s timeout (ready-wait included), progress spoken.
    pub fn new<I, S>(name: impl Into<String>, description: impl Into<String>, workers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            description: description.into(),
            workers: workers.into_iter().map(Into::into).collect(),
            job_name: None,
            timeout: Duration::from_secs(30),
            speak_progress: true,
        }
    }

    /// The job handler name the workers run.
    pub fn with_job_name(mut self, job_name: impl Into<String>) -> Self {
        self.job_name = Some(job_name.into());
        self
    }

    /// The group's timeout (covers the wait for the workers to be ready and the jobs).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether progress updates carrying text are spoken (default true).
    pub fn with_speak_progress(mut self, speak: bool) -> Self {
        self.speak_progress = speak;
        self
    }
}

/// The text of a progress update: a JSON string, or the `"text"` field of an object.
fn progress_text(data: Option<&Value>) -> Option<String> {
    match data? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("text").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Builds the tool of [`JobGroupTool`] over `ctx`, the worker that requests the jobs (e.g. the session's
/// [`VoiceBridge`] context or any worker of the session's runner).
///
/// The model calls it with `{"query": string}`; every worker gets the payload `{"query": …}`. Progress updates
/// whose data is a string (or has a `"text"` field) are spoken with `say` as they arrive; the tool's output is
/// the JSON object `{worker: response}`, which the model answers from. A failed or timed-out group is returned to
/// the model as a tool error.
///
/// # Errors
/// [`ToolDefinitionError`] for an invalid tool name.
pub fn job_group_tool(
    ctx: WorkerContext,
    tool: JobGroupTool,
) -> Result<FunctionTool, ToolDefinitionError> {
    let spec = Arc::new(tool);
    let parameters = json!({
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to ask the specialists."}},
        "required": ["query"],
    });
    FunctionTool::raw(
        spec.name.clone(),
        spec.description.clone(),
        parameters,
        move |run, args| {
            let ctx = ctx.clone();
            let spec = Arc::clone(&spec);
            async move {
                let query = args
                    .get("query")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ToolError::new("`query` must be a string"))?
                    .to_owned();
                let mut params = JobGroupParams::new()
                    .with_payload(json!({ "query": query }))
                    .with_timeout(spec.timeout);
                if let Some(job) = &spec.job_name {
                    params = params.with_name(job.clone());
                }
                let mut group = ctx
                    .job_group(spec.workers.iter().map(String::as_str), params)
                    .await
                    .map_err(|e| ToolError::new(format!("the specialists are unavailable: {e}")))?;
                while let Some(event) = group.next().await {
                    if event.kind != JobEventKind::Update || !spec.speak_progress {
                        continue;
                    }
                    if let Some(text) = progress_text(event.data.as_ref())
                        && let Err(e) = run
                            .session()
                            .say(agents_core::session::SayRequest::new(text))
                    {
                        tracing::debug!(error = %e, "progress line not spoken");
                    }
                }
                let responses = group
                    .responses()
                    .await
                    .map_err(|e| ToolError::new(format!("the specialists failed: {e}")))?;
                let combined = serde_json::to_string(&responses).map_err(ToolError::internal)?;
                Ok(ToolOutcome::Output(combined))
            }
        },
    )
}
