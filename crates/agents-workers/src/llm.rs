//! An LLM worker: a worker holding a [`ChatContext`] and an [`Llm`], activated with
//! [`LlmWorkerActivationArgs`] (Pipecat's `LLMWorker`).
//!
//! It starts **inactive**. On activation the args' messages are appended to its context and, when
//! [`LlmWorkerActivationArgs::should_run_llm`] says so, the LLM runs and its reply is appended, sent to the output
//! channel and, for a bridged worker, spoken through its bridge(s). While active it serves the `"chat"` job
//! (payload `{"text": …}`, response `{"text": reply}`).
//!
//! **Bridged** ([`LlmWorker::with_bridges`]): the worker answers the turns of a voice session's
//! [`VoiceBridge`](crate::VoiceBridge) (see [`crate::voice`]). Turns reaching an inactive worker are dropped
//! (Pipecat behaviour 40); a worker bridged to named bridges ignores the others (41).
//!
//! **Hand-off** ([`LlmWorker::with_handoff_targets`]): the model gets the tool [`ACTIVATE_WORKER_TOOL`]
//! (`{"target", "reason"}`). When it calls it during a bridged turn, the reply text (or a default transition
//! line) is streamed to the session, the tool call is completed in the context **without a new LLM run**, the
//! worker defers the turns that arrive meanwhile, waits until the session reports that the reply was played out
//! (or interrupted), and only then activates the target with `deactivate_self = true`, a developer message
//! carrying the reason and the deferred user texts (behaviour 44). The target is never active before this worker
//! was deactivated (38).
//!
//! The `with_*` settings apply only before the worker is shared (e.g. put in an `Arc`); later calls keep the old
//! values.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agents_core::chat::FunctionCall;
use agents_core::llm::ToolChoice;
use agents_core::session::{SessionHandle, Userdata};
use agents_core::speech::{SpeechHandle, SpeechOptions};
use agents_core::tools::{FunctionTool, ToolCallResult, ToolContext, ToolDefinition, ToolSet};
use agents_core::{ChatChunk, ChatContext, ChatRequest, ChatRole, Llm, LlmError};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::BusError;
use crate::message::BusMessage;
use crate::types::{ActivationArgs, ActivationMessage, LlmWorkerActivationArgs};
use crate::voice::BridgeFrame;
use crate::worker::{Job, JobFailure, JobHandlers, JobResult, Worker, WorkerContext};

/// Name of the job an [`LlmWorker`] serves.
pub const CHAT_JOB: &str = "chat";

/// Name of the hand-off tool an [`LlmWorker`] with hand-off targets gives its model.
pub const ACTIVATE_WORKER_TOOL: &str = "activate_worker";

/// One reply produced by an [`LlmWorker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmWorkerOutput {
    /// The worker that spoke.
    pub worker: String,
    /// The reply text.
    pub text: String,
}

#[derive(Default)]
struct BridgeState {
    /// Running bridged turns, by turn id.
    turns: HashMap<String, tokio::task::AbortHandle>,
    /// Hand-offs waiting for the session's playout confirmation, by turn id.
    playouts: HashMap<String, oneshot::Sender<()>>,
    /// The bridge that sent the last turn (where activation replies go when no bridge is named).
    last_bridge: Option<String>,
    /// A hand-off is under way: new turns are answered empty and their text deferred to the target.
    handing_off: bool,
    /// User texts of the turns that arrived during the hand-off, passed to the target on activation.
    deferred: Vec<String>,
    /// Turns dropped because the worker was inactive or handing off.
    dropped: u64,
}

struct Inner {
    llm: Arc<dyn Llm>,
    chat_ctx: Mutex<ChatContext>,
    output: Option<mpsc::Sender<LlmWorkerOutput>>,
    bridges: Option<Vec<String>>,
    handoff_targets: Vec<String>,
    playout_timeout: Duration,
    tools: ToolSet,
    tool_options: HashMap<String, ToolOptions>,
    max_tool_steps: u32,
    state: std::sync::Mutex<BridgeState>,
}

/// Per-tool options of an [`LlmWorker`]'s tools (Pipecat's `@tool(cancel_on_interruption=True,
/// timeout_secs=None)` defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolOptions {
    /// Whether a barge-in (the session dropping the reply) cancels the running tool. Default `true`.
    pub cancel_on_interruption: bool,
    /// How long the tool may run before it fails with a timeout error for the model. Default none.
    pub timeout: Option<Duration>,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self {
            cancel_on_interruption: true,
            timeout: None,
        }
    }
}

impl ToolOptions {
    /// Sets [`cancel_on_interruption`](Self::cancel_on_interruption).
    pub fn with_cancel_on_interruption(mut self, cancel: bool) -> Self {
        self.cancel_on_interruption = cancel;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A worker that answers with an LLM. See the module docs.
pub struct LlmWorker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LlmWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmWorker")
            .field("llm", &self.inner.llm.label())
            .field("bridges", &self.inner.bridges)
            .field("handoff_targets", &self.inner.handoff_targets)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LlmWorker {
    /// A worker over `llm` with an empty context; not bridged, no hand-off tool.
    pub fn new(llm: Arc<dyn Llm>) -> Self {
        Self {
            inner: Arc::new(Inner {
                llm,
                chat_ctx: Mutex::new(ChatContext::new()),
                output: None,
                bridges: None,
                handoff_targets: Vec::new(),
                playout_timeout: Duration::from_secs(60),
                tools: ToolSet::new(),
                tool_options: HashMap::new(),
                max_tool_steps: 3,
                state: std::sync::Mutex::new(BridgeState::default()),
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                f(&mut inner);
                Self {
                    inner: Arc::new(inner),
                }
            }
            // Builders run before the worker is shared; a shared worker keeps its settings.
            Err(inner) => Self { inner },
        }
    }

    /// Starts with these instructions as the system message.
    pub fn with_instructions(self, instructions: impl Into<String>) -> Self {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::System, instructions.into());
        self.edit(|i| i.chat_ctx = Mutex::new(ctx))
    }

    /// Sends every reply to `output` (bounded; a full channel delays the worker, never drops).
    pub fn with_output(self, output: mpsc::Sender<LlmWorkerOutput>) -> Self {
        self.edit(|i| i.output = Some(output))
    }

    /// Makes the worker bridged: it answers the turns of the [`VoiceBridge`](crate::VoiceBridge) workers named in
    /// `bridges`, or of any bridge when `bridges` is empty (Pipecat's `bridged=()`).
    pub fn with_bridges<I, S>(self, bridges: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list = bridges.into_iter().map(Into::into).collect();
        self.edit(|i| i.bridges = Some(list))
    }

    /// Gives the model the [`ACTIVATE_WORKER_TOOL`] tool, allowed to hand the conversation to these workers.
    pub fn with_handoff_targets<I, S>(self, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list = targets.into_iter().map(Into::into).collect();
        self.edit(|i| i.handoff_targets = list)
    }

    /// How long a hand-off waits for the session's playout confirmation before activating the target anyway
    /// (default 60 s; a session that died must not block the hand-off forever).
    pub fn with_playout_timeout(self, timeout: Duration) -> Self {
        self.edit(|i| i.playout_timeout = timeout)
    }

    /// Gives the model a tool for bridged turns. Its handler may take `RunContext<WorkerToolContext>` to reach the
    /// bus (jobs, job groups) through `ctx.userdata()` (it derefs to the [`WorkerContext`]) and to speak progress
    /// lines inside the current reply ([`WorkerToolContext::say_progress`]); the session handle it sees is
    /// detached (the session is on the other side of the bridge). A tool whose name is taken is not added.
    pub fn with_tool(self, tool: FunctionTool) -> Self {
        self.edit(|i| {
            if let Err(e) = i.tools.add(tool) {
                tracing::warn!(error = %e, "tool not added");
            }
        })
    }

    /// Options of the tool named `name` (defaults: cancelled on interruption, no timeout).
    pub fn with_tool_options(self, name: impl Into<String>, options: ToolOptions) -> Self {
        let name = name.into();
        self.edit(|i| {
            i.tool_options.insert(name, options);
        })
    }

    /// How many LLM follow-ups tool results may trigger in one bridged turn (default 3; the last one runs with
    /// `tool_choice = none`).
    pub fn with_max_tool_steps(self, steps: u32) -> Self {
        self.edit(|i| i.max_tool_steps = steps)
    }

    /// A copy of the context.
    pub async fn chat_context(&self) -> ChatContext {
        self.inner.chat_ctx.lock().await.clone()
    }

    /// How many bridged turns this worker dropped because it was inactive or handing off.
    pub fn dropped_turns(&self) -> u64 {
        lock(&self.inner.state).dropped
    }

    /// Runs the LLM on the context, appends the reply and sends it to the output.
    pub async fn generate(&self, worker_name: &str) -> Result<String, LlmError> {
        self.inner.generate(worker_name).await
    }

    async fn chat(self: Arc<Self>, job: Job) -> JobResult {
        if !job.context().is_active() {
            return Err(JobFailure::Failed(json!({"error": "worker is not active"})));
        }
        let text = job
            .payload()
            .and_then(|p| p.get("text"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| JobFailure::Error("payload must be {\"text\": string}".to_owned()))?
            .to_owned();
        self.inner
            .chat_ctx
            .lock()
            .await
            .add_message(ChatRole::User, text);
        let reply = self
            .generate(job.context().name())
            .await
            .map_err(|e| JobFailure::Error(e.to_string()))?;
        Ok(json!({ "text": reply }))
    }
}

/// What a worker tool sees as userdata (`RunContext<WorkerToolContext>`): the worker's context (through `Deref`)
/// and the bridged turn it runs in.
#[derive(Debug, Clone)]
pub struct WorkerToolContext {
    worker: WorkerContext,
    bridge: String,
    turn_id: String,
}

impl WorkerToolContext {
    /// The worker running the tool.
    pub fn worker(&self) -> &WorkerContext {
        &self.worker
    }

    /// The bridge (voice session) of the turn.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Speaks `text` now, inside the current reply (e.g. a progress line while a job group runs). It is spoken,
    /// not added to the worker's context.
    pub async fn say_progress(&self, text: impl Into<String>) -> Result<(), BusError> {
        let frame = BridgeFrame::TextDelta {
            turn_id: self.turn_id.clone(),
            text: text.into(),
        };
        frame.send(&self.worker, Some(&self.bridge)).await
    }
}

impl std::ops::Deref for WorkerToolContext {
    type Target = WorkerContext;
    fn deref(&self) -> &WorkerContext {
        &self.worker
    }
}

/// What the model asked for with the hand-off tool.
struct HandoffRequest {
    call: FunctionCall,
    target: String,
    reason: String,
}

impl Inner {
    fn accepts_bridge(&self, bridge: &str) -> bool {
        match &self.bridges {
            None => false,
            Some(list) => list.is_empty() || list.iter().any(|b| b == bridge),
        }
    }

    fn tool_definitions(&self) -> Vec<ToolDefinition> {
        let mut defs = self.tools.definitions();
        defs.extend(self.handoff_tool());
        defs
    }

    fn handoff_tool(&self) -> Vec<ToolDefinition> {
        if self.handoff_targets.is_empty() {
            return Vec::new();
        }
        let def = ToolDefinition::new(
            ACTIVATE_WORKER_TOOL,
            "Hand the conversation over to another agent. Say a short transition line to the user first.",
            json!({
                "type": "object",
                "properties": {
                    "target": {"type": "string", "enum": self.handoff_targets, "description": "The agent to hand over to."},
                    "reason": {"type": "string", "description": "Why, for the next agent."}
                },
                "required": ["target"]
            }),
        );
        match def {
            Ok(d) => vec![d],
            Err(e) => {
                tracing::warn!(error = %e, "hand-off tool definition rejected");
                Vec::new()
            }
        }
    }

    async fn generate(&self, worker_name: &str) -> Result<String, LlmError> {
        let mut ctx = self.chat_ctx.lock().await;
        let response = self
            .llm
            .chat(ChatRequest::new(ctx.clone()))
            .collect()
            .await?;
        ctx.add_message(ChatRole::Assistant, response.text.clone());
        drop(ctx);
        if let Some(out) = &self.output {
            let _ = out
                .send(LlmWorkerOutput {
                    worker: worker_name.to_owned(),
                    text: response.text.clone(),
                })
                .await;
        }
        Ok(response.text)
    }

    /// Where an unsolicited line (an activation reply) is spoken.
    fn say_targets(&self) -> Vec<String> {
        match &self.bridges {
            None => Vec::new(),
            Some(list) if !list.is_empty() => list.clone(),
            Some(_) => lock(&self.state).last_bridge.iter().cloned().collect(),
        }
    }

    fn parse_handoff(&self, me: &str, call: &FunctionCall) -> Result<(String, String), String> {
        let args: Value = serde_json::from_str(&call.arguments)
            .map_err(|e| format!("invalid arguments for {ACTIVATE_WORKER_TOOL}: {e}"))?;
        let target = args
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{ACTIVATE_WORKER_TOOL} needs a string `target`"))?;
        if target == me || !self.handoff_targets.iter().any(|t| t == target) {
            return Err(format!("cannot hand over to {target:?}"));
        }
        let reason = args
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Ok((target.to_owned(), reason))
    }

    /// Runs one tool call with its options (timeout; a tool that must survive barge-in runs in its own task).
    async fn invoke_tool(
        self: &Arc<Self>,
        ctx: &WorkerContext,
        bridge: &str,
        turn_id: &str,
        call: FunctionCall,
    ) -> (FunctionCall, String, bool) {
        let Some(tool) = self.tools.get(&call.name).cloned() else {
            let msg = format!("unknown tool {:?}", call.name);
            return (call, msg, true);
        };
        let options = self
            .tool_options
            .get(&call.name)
            .cloned()
            .unwrap_or_default();
        let userdata: Userdata = Arc::new(WorkerToolContext {
            worker: ctx.clone(),
            bridge: bridge.to_owned(),
            turn_id: turn_id.to_owned(),
        });
        let tool_ctx = ToolContext::new(
            SessionHandle::detached(),
            Some(userdata),
            SpeechHandle::new(SpeechOptions::default()),
        );
        let run = {
            let call = call.clone();
            async move {
                let invoke = tool.invoke(call.clone(), tool_ctx);
                match options.timeout {
                    Some(t) => match tokio::time::timeout(t, invoke).await {
                        Ok(r) => r,
                        Err(_) => {
                            ToolCallResult::error(call, format!("the tool timed out after {t:?}"))
                        }
                    },
                    None => invoke.await,
                }
            }
        };
        let result = if options.cancel_on_interruption {
            run.await
        } else {
            // Not cancelled with the turn: the tool finishes even if the user barges in (its result is then
            // only logged, the turn being gone).
            match tokio::spawn(run).await {
                Ok(r) => r,
                Err(e) => ToolCallResult::error(call.clone(), format!("the tool failed: {e}")),
            }
        };
        match result.output {
            Some(out) => (call, out.output, out.is_error),
            None => (call, String::new(), false),
        }
    }

    /// One bridged turn: run the LLM (and the worker's tools, up to `max_tool_steps` follow-ups), stream the text
    /// to the bridge, then hand off if the model asked to.
    async fn run_turn(
        self: Arc<Self>,
        ctx: WorkerContext,
        bridge: String,
        turn_id: String,
        text: Option<String>,
        instructions: Option<String>,
    ) {
        let me = ctx.name().to_owned();
        let mut chat = self.chat_ctx.lock().await;
        if let Some(t) = &text {
            chat.add_message(ChatRole::User, t.clone());
        }
        let mut reply = String::new();
        let mut handoff: Option<HandoffRequest> = None;
        let mut step = 0_u32;
        loop {
            let mut request_ctx = chat.clone();
            if text.is_none()
                && let Some(i) = &instructions
            {
                request_ctx.add_message(ChatRole::Developer, i.clone());
            }
            let mut request = ChatRequest::new(request_ctx).with_tools(self.tool_definitions());
            if step >= self.max_tool_steps && !self.tools.is_empty() {
                request = request.with_tool_choice(ToolChoice::None);
            }
            let mut stream = self.llm.chat(request);
            let mut step_text = String::new();
            let mut rejected: Vec<(FunctionCall, String)> = Vec::new();
            let mut tool_calls: Vec<FunctionCall> = Vec::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ChatChunk::Text(t)) => {
                        step_text.push_str(&t);
                        let frame = BridgeFrame::TextDelta {
                            turn_id: turn_id.clone(),
                            text: t,
                        };
                        if let Err(e) = frame.send(&ctx, Some(&bridge)).await {
                            tracing::warn!(worker = %me, error = %e, "reply text not sent to the bridge");
                        }
                    }
                    Ok(ChatChunk::ToolCall(call)) if call.name == ACTIVATE_WORKER_TOOL => {
                        match (self.parse_handoff(&me, &call), &handoff) {
                            (Ok((target, reason)), None) => {
                                handoff = Some(HandoffRequest {
                                    call,
                                    target,
                                    reason,
                                })
                            }
                            (Ok(_), Some(_)) => {
                                rejected.push((call, "only one hand-off per reply".to_owned()))
                            }
                            (Err(e), _) => rejected.push((call, e)),
                        }
                    }
                    Ok(ChatChunk::ToolCall(call)) if self.tools.contains(&call.name) => {
                        tool_calls.push(call)
                    }
                    Ok(ChatChunk::ToolCall(call)) => {
                        let msg = format!("unknown tool {:?}", call.name);
                        rejected.push((call, msg));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        drop(chat);
                        let frame = BridgeFrame::ReplyError {
                            turn_id: turn_id.clone(),
                            error: e.to_string(),
                        };
                        let _ = frame.send(&ctx, Some(&bridge)).await;
                        lock(&self.state).turns.remove(&turn_id);
                        return;
                    }
                }
            }
            // The worker's tools run concurrently; their frames (the follow-up text) are released only once
            // every tool of the step finished.
            let results = futures::future::join_all(
                tool_calls
                    .into_iter()
                    .map(|call| self.invoke_tool(&ctx, &bridge, &turn_id, call)),
            )
            .await;
            if let Some(h) = &handoff
                && step_text.trim().is_empty()
                && reply.trim().is_empty()
            {
                // The model called the hand-off without a transition line: speak a default one.
                let line = format!("One moment, I'm handing you over to {}.", h.target);
                step_text.push_str(&line);
                let frame = BridgeFrame::TextDelta {
                    turn_id: turn_id.clone(),
                    text: line,
                };
                let _ = frame.send(&ctx, Some(&bridge)).await;
            }
            if !step_text.is_empty() {
                chat.add_message(ChatRole::Assistant, step_text.clone());
                reply.push_str(&step_text);
            }
            // Complete every tool call in the context.
            for (call, error) in &rejected {
                chat.add_function_call(&call.call_id, &call.name, &call.arguments);
                chat.add_function_output(&call.call_id, &call.name, error, true);
            }
            let ran_tools = !results.is_empty();
            for (call, output, is_error) in &results {
                chat.add_function_call(&call.call_id, &call.name, &call.arguments);
                chat.add_function_output(&call.call_id, &call.name, output, *is_error);
            }
            if let Some(h) = &handoff {
                chat.add_function_call(&h.call.call_id, &h.call.name, &h.call.arguments);
                chat.add_function_output(
                    &h.call.call_id,
                    &h.call.name,
                    format!("Handed over to {}.", h.target),
                    false,
                );
            }
            // A hand-off completes the turn without a new LLM run; so does a step without (working) tools.
            if handoff.is_some() || !ran_tools || step >= self.max_tool_steps {
                break;
            }
            step += 1;
        }
        drop(chat);
        if let Some(out) = &self.output
            && !reply.is_empty()
        {
            let _ = out
                .send(LlmWorkerOutput {
                    worker: me.clone(),
                    text: reply,
                })
                .await;
        }
        let playout = handoff.as_ref().map(|_| {
            let (tx, rx) = oneshot::channel();
            let mut st = lock(&self.state);
            st.handing_off = true;
            st.playouts.insert(turn_id.clone(), tx);
            rx
        });
        let end = BridgeFrame::ReplyEnd {
            turn_id: turn_id.clone(),
            handoff: handoff.as_ref().map(|h| h.target.clone()),
        };
        if let Err(e) = end.send(&ctx, Some(&bridge)).await {
            tracing::warn!(worker = %me, error = %e, "reply end not sent to the bridge");
        }
        lock(&self.state).turns.remove(&turn_id);
        let (Some(h), Some(rx)) = (handoff, playout) else {
            return;
        };
        if tokio::time::timeout(self.playout_timeout, rx)
            .await
            .is_err()
        {
            tracing::warn!(worker = %me, target = %h.target, "no playout confirmation from the session; handing over anyway");
        }
        lock(&self.state).playouts.remove(&turn_id);
        let reason = if h.reason.is_empty() {
            format!("The conversation was handed over to you by {me}.")
        } else {
            format!(
                "The conversation was handed over to you by {me}: {}",
                h.reason
            )
        };
        let mut messages = vec![ActivationMessage::new(ChatRole::Developer, reason)];
        let deferred = std::mem::take(&mut lock(&self.state).deferred);
        messages.extend(
            deferred
                .into_iter()
                .map(|t| ActivationMessage::new(ChatRole::User, t)),
        );
        let args = LlmWorkerActivationArgs::with_messages(messages);
        let result = match ActivationArgs::encode(&args) {
            Ok(args) => ctx
                .activate_worker(&h.target, args, true)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        lock(&self.state).handing_off = false;
        if let Err(e) = result {
            tracing::warn!(worker = %me, target = %h.target, error = %e, "hand-off failed");
        }
    }
}

#[async_trait::async_trait]
impl Worker for LlmWorker {
    fn job_handlers(&self) -> JobHandlers<Self> {
        JobHandlers::new().sequential_job(CHAT_JOB, LlmWorker::chat)
    }

    async fn on_activated(&self, ctx: &WorkerContext, args: ActivationArgs) {
        let args: LlmWorkerActivationArgs = match args.decode() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(worker = %ctx.name(), error = %e, "invalid LLM activation args");
                return;
            }
        };
        let run = args.should_run_llm();
        if let Some(messages) = args.messages {
            let mut chat = self.inner.chat_ctx.lock().await;
            for m in messages {
                chat.add_message(m.role, m.content);
            }
        }
        if !run {
            return;
        }
        match self.inner.generate(ctx.name()).await {
            Ok(text) if !text.is_empty() => {
                for bridge in self.inner.say_targets() {
                    let frame = BridgeFrame::Say { text: text.clone() };
                    if let Err(e) = frame.send(ctx, Some(&bridge)).await {
                        tracing::warn!(worker = %ctx.name(), error = %e, "activation reply not sent to the bridge");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(worker = %ctx.name(), error = %e, "LLM run on activation failed")
            }
        }
    }

    async fn on_bus_message(&self, ctx: &WorkerContext, message: &BusMessage) {
        let frame = match BridgeFrame::from_message(message) {
            None => return,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                tracing::warn!(worker = %ctx.name(), from = %message.source, error = %e, "malformed bridge frame");
                return;
            }
        };
        match frame {
            BridgeFrame::UserTurn {
                turn_id,
                text,
                instructions,
            } => {
                if !self.inner.accepts_bridge(&message.source) {
                    return;
                }
                let mut st = lock(&self.inner.state);
                if !ctx.is_active() {
                    st.dropped += 1;
                    tracing::debug!(worker = %ctx.name(), turn = %turn_id, "bridged turn dropped: not active");
                    return;
                }
                if st.handing_off {
                    // The caller spoke during the transition: answer nothing now and pass the words on, so the
                    // target's first reply addresses them (Pipecat defers frames queued while tools run).
                    st.deferred.extend(text);
                    let (ctx, bridge) = (ctx.clone(), message.source.clone());
                    tokio::spawn(async move {
                        let end = BridgeFrame::ReplyEnd {
                            turn_id,
                            handoff: None,
                        };
                        let _ = end.send(&ctx, Some(&bridge)).await;
                    });
                    return;
                }
                st.last_bridge = Some(message.source.clone());
                let task = tokio::spawn(Arc::clone(&self.inner).run_turn(
                    ctx.clone(),
                    message.source.clone(),
                    turn_id.clone(),
                    text,
                    instructions,
                ));
                st.turns.insert(turn_id, task.abort_handle());
            }
            BridgeFrame::CancelTurn { turn_id } => {
                if !self.inner.accepts_bridge(&message.source) {
                    return;
                }
                if let Some(task) = lock(&self.inner.state).turns.remove(&turn_id) {
                    task.abort();
                }
            }
            BridgeFrame::PlayoutDone { turn_id } => {
                if let Some(tx) = lock(&self.inner.state).playouts.remove(&turn_id) {
                    let _ = tx.send(());
                }
            }
            BridgeFrame::TextDelta { .. }
            | BridgeFrame::ReplyEnd { .. }
            | BridgeFrame::ReplyError { .. }
            | BridgeFrame::Say { .. } => {}
        }
    }
}
