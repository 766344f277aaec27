//! Awaitable sub-agents: [`AgentTask`] (an agent run like a function that returns a typed result) and
//! [`TaskGroup`] (an ordered sequence of tasks the user may go back through).
//!
//! A task is an [`Agent`] plus the receiving end of a one-shot result. The agent's tools or hooks hold the
//! [`TaskCompleter`] and call [`TaskCompleter::complete`] once the goal is reached. A tool or hook of the *calling*
//! agent runs the task with [`SessionHandle::run_task`]: the caller's activity pauses, the task's activity runs
//! (its `on_enter` first) until the task completes, then the task's chat items are merged into the caller's
//! context and the caller resumes without running `on_enter` again (LiveKit Agents 1.7 `AgentTask`, behaviour
//! 122 of `livekit-agents-behaviours.md`).
//!
//! ```no_run
//! use agents_core::task::{AgentTask, TaskError, completion};
//! use agents_core::tools::{FunctionTool, RunContext, ToolError, ToolOutcome};
//! use agents_core::Agent;
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! /// Record the email address the user gave.
//! #[derive(Deserialize, JsonSchema)]
//! struct EmailArgs {
//!     /// The address, e.g. "ada@example.com".
//!     email: String,
//! }
//!
//! fn email_task() -> Result<AgentTask<String>, agents_core::tools::ToolDefinitionError> {
//!     let (completer, result) = completion::<String>();
//!     let record = FunctionTool::builder(move |args: EmailArgs| {
//!         let completer = completer.clone();
//!         async move {
//!             completer
//!                 .complete(Ok(args.email))
//!                 .map_err(|e| ToolError::new(e.to_string()))?;
//!             Ok::<_, ToolError>(ToolOutcome::stop_response())
//!         }
//!     })
//!     .name("record_email")
//!     .build()?;
//!     let agent = Agent::builder("Ask the user for their email address.").tool(record).build()?;
//!     Ok(AgentTask::new(agent, result))
//! }
//!
//! /// Collect the user's email.
//! #[derive(Deserialize, JsonSchema)]
//! struct NoArgs {}
//!
//! async fn collect_email(ctx: RunContext, _args: NoArgs) -> Result<String, ToolError> {
//!     let task = email_task().map_err(|e| ToolError::new(e.to_string()))?;
//!     let email: String = ctx
//!         .session()
//!         .run_task(task)
//!         .await
//!         .map_err(|e: TaskError| ToolError::new(e.to_string()))?;
//!     Ok(format!("the email is {email}"))
//! }
//! ```

use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::oneshot;

use crate::agent::Agent;
use crate::chat::{ChatContext, ChatItem, CopyOptions};
use crate::session::{SessionError, SessionHandle};
use crate::tools::{FunctionTool, ToolDefinitionError, ToolError, ToolOutcome};

/// Why a task did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task completed with an error (`complete(Err(..))`).
    #[error("task failed: {message}")]
    Failed {
        /// What the task reported.
        message: String,
    },
    /// `complete` was called on a task that is already done (LiveKit: "… is already done").
    #[error("the task is already done")]
    AlreadyDone,
    /// The task's activity ended (it was closed, or everything holding its completer was dropped) before
    /// `complete` was called.
    #[error("the task ended without being completed")]
    NotCompleted,
    /// A task was run while another task is running. Tasks do not nest: run them one after another from the
    /// caller (or with a [`TaskGroup`]).
    #[error("a task is already running; tasks cannot be nested")]
    Nested,
    /// The session handed the conversation to another agent while the task ran; the caller does not resume.
    #[error("the session handed off to another agent while the task was running")]
    HandedOff,
    /// The session was not running, or it closed while the task ran.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Inside a [`TaskGroup`]: the user asked to go back to these earlier tasks (the group handles it; seen only
    /// when the group's `out_of_scope` tool is used outside a group).
    #[error("the user asked to go back to tasks {task_ids:?}")]
    Regressed {
        /// Ids of the tasks to run again, in order.
        task_ids: Vec<String>,
    },
    /// The value of a task had another type than the one awaited (a [`TaskGroupResults::take`] with the
    /// wrong type).
    #[error("the task's result has another type than {expected}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
    },
}

impl TaskError {
    /// A failure with `message`, for `complete(Err(TaskError::failed(..)))`.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
        }
    }
}

impl From<ToolError> for TaskError {
    fn from(e: ToolError) -> Self {
        Self::failed(e.to_string())
    }
}

/// A task's value, type-erased while it crosses the session.
pub type ErasedValue = Box<dyn Any + Send>;

type Outcome = Result<ErasedValue, TaskError>;

struct Slot {
    sender: Option<oneshot::Sender<Outcome>>,
}

/// The sending side of a task's result: held by the task's tools and hooks. Cheap to clone; the first
/// [`complete`](Self::complete) wins.
pub struct TaskCompleter<T> {
    slot: Arc<Mutex<Slot>>,
    _type: PhantomData<fn(T)>,
}

impl<T> Clone for TaskCompleter<T> {
    fn clone(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for TaskCompleter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCompleter")
            .field("done", &self.is_done())
            .finish()
    }
}

fn complete_slot(slot: &Mutex<Slot>, outcome: Outcome) -> Result<(), TaskError> {
    let sender = slot.lock().unwrap_or_else(|p| p.into_inner()).sender.take();
    match sender {
        // The receiver may be gone (the task was abandoned): the task is done all the same.
        Some(s) => {
            let _ = s.send(outcome);
            Ok(())
        }
        None => Err(TaskError::AlreadyDone),
    }
}

impl<T: Send + 'static> TaskCompleter<T> {
    /// Resolves the task with its value, or with an error the caller receives as `Err`.
    ///
    /// # Errors
    /// [`TaskError::AlreadyDone`] when the task was already completed.
    pub fn complete(&self, result: Result<T, TaskError>) -> Result<(), TaskError> {
        complete_slot(&self.slot, result.map(|v| Box::new(v) as ErasedValue))
    }
}

impl<T> TaskCompleter<T> {
    /// Whether the task was completed.
    pub fn is_done(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sender
            .is_none()
    }
}

/// The receiving side of a task's result, given to [`AgentTask::new`].
pub struct TaskResult<T> {
    receiver: oneshot::Receiver<Outcome>,
    slot: Arc<Mutex<Slot>>,
    _type: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for TaskResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskResult").finish_non_exhaustive()
    }
}

/// A completer and the result it resolves.
pub fn completion<T: Send + 'static>() -> (TaskCompleter<T>, TaskResult<T>) {
    let (sender, receiver) = oneshot::channel();
    let slot = Arc::new(Mutex::new(Slot {
        sender: Some(sender),
    }));
    (
        TaskCompleter {
            slot: Arc::clone(&slot),
            _type: PhantomData,
        },
        TaskResult {
            receiver,
            slot,
            _type: PhantomData,
        },
    )
}

/// An agent awaited like a function: [`SessionHandle::run_task`] returns the `T` its tools or hooks pass to
/// [`TaskCompleter::complete`].
pub struct AgentTask<T> {
    agent: Agent,
    result: TaskResult<T>,
}

impl<T: Send + 'static> AgentTask<T> {
    /// A task run by `agent`, resolved through the completer paired with `result` (see [`completion`]).
    pub fn new(agent: Agent, result: TaskResult<T>) -> Self {
        Self { agent, result }
    }

    /// The task's agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The task's agent, to edit before running it (tools, chat context).
    pub fn agent_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }

    /// The type-erased form the session runs.
    pub fn into_erased(self) -> ErasedTask {
        ErasedTask {
            agent: self.agent,
            result: self.result.receiver,
            slot: self.result.slot,
        }
    }
}

impl<T> fmt::Debug for AgentTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTask")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

/// A task with its value type erased: what [`SessionControl::run_task_erased`](crate::SessionControl) receives.
pub struct ErasedTask {
    agent: Agent,
    result: oneshot::Receiver<Outcome>,
    slot: Arc<Mutex<Slot>>,
}

impl ErasedTask {
    /// The task's agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Splits the task into its agent and the receiver of its outcome (for session implementations).
    pub fn into_parts(self) -> (Agent, TaskOutcome) {
        (
            self.agent,
            TaskOutcome {
                receiver: self.result,
            },
        )
    }

    fn handle(&self) -> Arc<Mutex<Slot>> {
        Arc::clone(&self.slot)
    }
}

impl fmt::Debug for ErasedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasedTask")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

/// The future outcome of a running task (for session implementations).
pub struct TaskOutcome {
    receiver: oneshot::Receiver<Outcome>,
}

impl TaskOutcome {
    /// Waits for `complete`; [`TaskError::NotCompleted`] when every completer was dropped first.
    pub async fn wait(&mut self) -> Result<ErasedValue, TaskError> {
        (&mut self.receiver)
            .await
            .unwrap_or(Err(TaskError::NotCompleted))
    }
}

impl fmt::Debug for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskOutcome").finish_non_exhaustive()
    }
}

/// What a finished task returns through the session: its value and its final chat context.
#[non_exhaustive]
pub struct TaskOutput {
    /// The value given to `complete`.
    pub value: ErasedValue,
    /// The task agent's chat context when its activity closed (every item, function calls included).
    pub chat_ctx: ChatContext,
}

impl TaskOutput {
    /// A value and a context.
    pub fn new(value: ErasedValue, chat_ctx: ChatContext) -> Self {
        Self { value, chat_ctx }
    }
}

impl fmt::Debug for TaskOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskOutput")
            .field("chat_items", &self.chat_ctx.len())
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    /// Runs `task` and returns its value: the calling agent pauses (its current speech plays out, its recognition
    /// stops), the task's agent runs until a tool or hook completes it, its chat items are merged into the
    /// caller's context and the caller resumes (without `on_enter`). Call it from a tool or a hook of the
    /// running agent.
    ///
    /// # Errors
    /// [`TaskError`]: the task failed, ended without completing, a task is already running, a handoff or the
    /// session's close interrupted it.
    pub async fn run_task<T: Send + 'static>(&self, task: AgentTask<T>) -> Result<T, TaskError> {
        let output = self.run_task_with_context(task).await?;
        Ok(output.0)
    }

    /// [`run_task`](Self::run_task), also returning the task's final chat context.
    ///
    /// # Errors
    /// As [`run_task`](Self::run_task).
    pub async fn run_task_with_context<T: Send + 'static>(
        &self,
        task: AgentTask<T>,
    ) -> Result<(T, ChatContext), TaskError> {
        let output = self.run_task_erased(task.into_erased()).await?;
        let value = output
            .value
            .downcast::<T>()
            .map_err(|_| TaskError::WrongType {
                expected: std::any::type_name::<T>(),
            })?;
        Ok((*value, output.chat_ctx))
    }
}

/// Merges the items of a finished task's context into `caller` (LiveKit `ChatContext.merge` with
/// `exclude_function_call` and `exclude_instructions`): items already in `caller` (same id), function calls and
/// outputs, and system / developer messages are skipped; the others are inserted in creation-time order.
pub fn merge_task_context(caller: &mut ChatContext, task: &ChatContext) {
    let known: HashSet<String> = caller.items().iter().map(|i| i.id().to_owned()).collect();
    let wanted = task.copy(
        &CopyOptions::default()
            .with_exclude_function_calls(true)
            .with_exclude_instructions(true),
    );
    for item in wanted.into_items() {
        if known.contains(item.id()) {
            continue;
        }
        let at = item.created_at();
        let items = caller.items();
        let index = items
            .iter()
            .rposition(|i| i.created_at() <= at)
            .map_or(0, |i| i + 1);
        // Keep the instructions first whatever the clocks say.
        let index = if index == 0 && items.first().is_some_and(is_instructions) {
            1
        } else {
            index
        };
        caller.insert(index, item);
    }
}

fn is_instructions(item: &ChatItem) -> bool {
    item.as_message().is_some_and(|m| m.role.is_instructions())
}

/// Builds a fresh task each time the group runs (or re-runs) that step.
pub type TaskFactory = Box<dyn Fn() -> Result<ErasedTask, TaskError> + Send + Sync>;

struct Step {
    id: String,
    description: String,
    factory: TaskFactory,
}

/// Options of a [`TaskGroup`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TaskGroupOptions {
    /// Keep going when a task fails: its error goes into the results and the next task runs (LiveKit
    /// `return_exceptions`). Default false: the first failure ends the group with that error.
    pub return_errors: bool,
    /// Start every task from this context (the group's shared context grows with each finished task).
    pub chat_ctx: Option<ChatContext>,
}

impl TaskGroupOptions {
    /// Sets [`return_errors`](Self::return_errors).
    pub fn with_return_errors(mut self, v: bool) -> Self {
        self.return_errors = v;
        self
    }
    /// Sets [`chat_ctx`](Self::chat_ctx).
    pub fn with_chat_ctx(mut self, ctx: ChatContext) -> Self {
        self.chat_ctx = Some(ctx);
        self
    }
}

/// The results of a [`TaskGroup`], by task id.
#[derive(Default)]
pub struct TaskGroupResults {
    values: BTreeMap<String, Result<ErasedValue, TaskError>>,
    order: Vec<String>,
}

impl TaskGroupResults {
    /// Takes the value of task `id`: `None` when the task did not run, `Some(Err(..))` when it failed (with
    /// `return_errors`) or the value has another type.
    pub fn take<T: 'static>(&mut self, id: &str) -> Option<Result<T, TaskError>> {
        let value = self.values.remove(id)?;
        Some(value.and_then(|v| {
            v.downcast::<T>()
                .map(|b| *b)
                .map_err(|_| TaskError::WrongType {
                    expected: std::any::type_name::<T>(),
                })
        }))
    }

    /// Ids of the finished tasks, in the order they last finished.
    pub fn ids(&self) -> &[String] {
        &self.order
    }

    /// Whether task `id` finished with an error.
    pub fn is_error(&self, id: &str) -> bool {
        matches!(self.values.get(id), Some(Err(_)))
    }

    fn set(&mut self, id: &str, value: Result<ErasedValue, TaskError>) {
        self.order.retain(|o| o != id);
        self.order.push(id.to_owned());
        self.values.insert(id.to_owned(), value);
    }
}

impl fmt::Debug for TaskGroupResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroupResults")
            .field("ids", &self.order)
            .finish_non_exhaustive()
    }
}

/// An ordered sequence of tasks run one after another, returning all their results (LiveKit Agents'
/// `beta.workflows.TaskGroup`). Once a step has been visited, the later tasks get an `out_of_scope` tool: when
/// the user wants to change an earlier answer, the model calls it with the ids of the tasks to redo, the current task
/// is abandoned, those tasks run again (fresh instances from their factories), then the current one.
///
/// Every task starts from the group's shared context: the options' `chat_ctx`, plus the items of every task that
/// finished so far (function calls included), so later tasks know what was said. LiveKit runs the group as a task
/// itself and summarizes its context with the LLM at the end; here the group runs from the caller's tool (each
/// task merged into the caller as it finishes, the caller resuming briefly in between) and nothing is summarized.
pub struct TaskGroup {
    steps: Vec<Step>,
    options: TaskGroupOptions,
    on_completed: Option<OnTaskCompleted>,
}

/// Called after each task of a group finished with a value: its id and the value.
pub type OnTaskCompleted = Box<dyn Fn(&str, &(dyn Any + Send)) + Send + Sync>;

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskGroup {
    /// An empty group.
    pub fn new() -> Self {
        Self {
            steps: Vec::new(),
            options: TaskGroupOptions::default(),
            on_completed: None,
        }
    }

    /// Calls `f` with the id and value of each task as it finishes (LiveKit `on_task_completed`), e.g. to save
    /// progress. A task run again after the user went back reports again.
    pub fn on_task_completed(
        mut self,
        f: impl Fn(&str, &(dyn Any + Send)) + Send + Sync + 'static,
    ) -> Self {
        self.on_completed = Some(Box::new(f));
        self
    }

    /// Sets the options.
    pub fn with_options(mut self, options: TaskGroupOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a task: `factory` builds it (again, when the user goes back to it), `id` names its result,
    /// `description` tells the model when to go back to it. A second task with the same id replaces the first.
    pub fn add<T, F>(
        mut self,
        id: impl Into<String>,
        description: impl Into<String>,
        factory: F,
    ) -> Self
    where
        T: Send + 'static,
        F: Fn() -> Result<AgentTask<T>, TaskError> + Send + Sync + 'static,
    {
        let id = id.into();
        self.steps.retain(|s| s.id != id);
        self.steps.push(Step {
            id,
            description: description.into(),
            factory: Box::new(move || factory().map(AgentTask::into_erased)),
        });
        self
    }

    /// Ids of the tasks, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.id.as_str()).collect()
    }

    /// Runs the tasks in order through `session` and returns their results.
    ///
    /// # Errors
    /// The first task error (unless `return_errors`), or a session error ([`TaskError::Session`],
    /// [`TaskError::HandedOff`], [`TaskError::Nested`]), which always ends the group.
    pub async fn run(&self, session: &SessionHandle) -> Result<TaskGroupResults, TaskError> {
        let mut pending: Vec<String> = self.steps.iter().map(|s| s.id.clone()).collect();
        let mut visited: Vec<String> = Vec::new();
        let mut results = TaskGroupResults::default();
        let mut shared = self.options.chat_ctx.clone().unwrap_or_default();
        while !pending.is_empty() {
            let id = pending.remove(0);
            let Some(step) = self.steps.iter().find(|s| s.id == id) else {
                continue;
            };
            let mut task = (step.factory)()?;
            let mut ctx = shared.clone();
            for item in task.agent.chat_ctx().items() {
                if ctx.get_by_id(item.id()).is_none() {
                    ctx.push(item.clone());
                }
            }
            task.agent.update_chat_ctx(&ctx);
            if let Some(tool) = self.out_of_scope_tool(&id, &visited, task.handle())? {
                let mut tools = task_given_tools(&task.agent);
                tools.push(tool);
                task.agent
                    .update_tools(tools)
                    .map_err(|e| TaskError::failed(e.to_string()))?;
                task.agent.update_chat_ctx(&ctx);
            }
            if !visited.contains(&id) {
                visited.push(id.clone());
            }
            match session.run_task_erased(task).await {
                Ok(output) => {
                    for item in output.chat_ctx.items() {
                        if !is_instructions(item) && shared.get_by_id(item.id()).is_none() {
                            shared.push(item.clone());
                        }
                    }
                    if let Some(f) = &self.on_completed {
                        f(&id, output.value.as_ref());
                    }
                    results.set(&id, Ok(output.value));
                }
                Err(TaskError::Regressed { task_ids }) => {
                    let mut again: Vec<String> = task_ids
                        .into_iter()
                        .filter(|t| visited.contains(t) && *t != id)
                        .collect();
                    again.dedup();
                    again.push(id);
                    for (i, t) in again.into_iter().enumerate() {
                        pending.retain(|p| *p != t);
                        pending.insert(i, t);
                    }
                }
                Err(
                    e @ (TaskError::Session(_)
                    | TaskError::HandedOff
                    | TaskError::Nested
                    | TaskError::NotCompleted),
                ) => return Err(e),
                Err(e) if self.options.return_errors => results.set(&id, Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    /// LiveKit's `out_of_scope` tool: offered once some other step was visited; completes the running task with
    /// [`TaskError::Regressed`].
    fn out_of_scope_tool(
        &self,
        active: &str,
        visited: &[String],
        slot: Arc<Mutex<Slot>>,
    ) -> Result<Option<FunctionTool>, TaskError> {
        let targets: Vec<(&str, &str)> = self
            .steps
            .iter()
            .filter(|s| s.id != active && visited.contains(&s.id))
            .map(|s| (s.id.as_str(), s.description.as_str()))
            .collect();
        if targets.is_empty() {
            return Ok(None);
        }
        let ids: Vec<String> = targets.iter().map(|(id, _)| (*id).to_owned()).collect();
        let described: BTreeMap<&str, &str> = targets.into_iter().collect();
        let description = format!(
            "Call when the user wants to change something collected by an earlier step: pass the ids of the \
             steps to go back to, in the order the user asked. Steps (id: what it collected): {}",
            serde_json::to_string(&described).unwrap_or_default()
        );
        let schema = json!({
            "type": "object",
            "properties": {
                "task_ids": {
                    "type": "array",
                    "description": "The ids of the steps to go back to.",
                    "items": {"type": "string", "enum": ids},
                }
            },
            "required": ["task_ids"],
        });
        let allowed = ids;
        let tool = FunctionTool::raw("out_of_scope", description, schema, move |_ctx, args| {
            let slot = Arc::clone(&slot);
            let allowed = allowed.clone();
            async move {
                let task_ids: Vec<String> = args
                    .get("task_ids")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .ok_or_else(|| ToolError::new("task_ids must be a list of step ids"))?;
                if let Some(bad) = task_ids.iter().find(|t| !allowed.contains(t)) {
                    return Err(ToolError::new(format!(
                        "unable to go back, invalid step id {bad}"
                    )));
                }
                let _ = complete_slot(&slot, Err(TaskError::Regressed { task_ids }));
                Ok(ToolOutcome::stop_response())
            }
        })
        .map_err(|e: ToolDefinitionError| TaskError::failed(e.to_string()))?;
        Ok(Some(tool))
    }
}

/// The tools given to an agent without its hooks' own (those stay with the hooks).
fn task_given_tools(agent: &Agent) -> Vec<FunctionTool> {
    let own: Vec<String> = agent
        .hooks()
        .tools()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    agent
        .tools()
        .iter()
        .filter(|t| !own.iter().any(|o| o == t.name()))
        .cloned()
        .collect()
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("ids", &self.ids())
            .field("options", &self.options)
            .field("on_task_completed", &self.on_completed.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::chat::{ChatMessage, ChatRole, FunctionCall, FunctionCallOutput};

    #[tokio::test]
    async fn the_first_complete_wins_and_a_second_is_refused() {
        let (completer, result) = completion::<u32>();
        let (_agent, mut outcome) = AgentTask::new(Agent::new("t"), result)
            .into_erased()
            .into_parts();
        assert!(!completer.is_done());
        completer.complete(Ok(7)).unwrap();
        assert!(completer.clone().is_done());
        assert_eq!(completer.complete(Ok(8)), Err(TaskError::AlreadyDone));
        let v = outcome.wait().await.unwrap();
        assert_eq!(*v.downcast::<u32>().unwrap(), 7);
    }

    #[tokio::test]
    async fn a_task_whose_completers_are_all_dropped_reads_as_not_completed() {
        let (completer, result) = completion::<u32>();
        let (_agent, mut outcome) = AgentTask::new(Agent::new("t"), result)
            .into_erased()
            .into_parts();
        drop(completer);
        assert_eq!(outcome.wait().await.err(), Some(TaskError::NotCompleted));
    }

    #[tokio::test]
    async fn an_error_completion_reaches_the_caller_as_the_error() {
        let (completer, result) = completion::<u32>();
        let (_agent, mut outcome) = AgentTask::new(Agent::new("t"), result)
            .into_erased()
            .into_parts();
        completer
            .complete(Err(ToolError::new("no consent").into()))
            .unwrap();
        assert_eq!(
            outcome.wait().await.err(),
            Some(TaskError::failed("no consent"))
        );
        assert_eq!(
            TaskError::failed("no consent").to_string(),
            "task failed: no consent"
        );
    }

    #[test]
    fn merge_keeps_new_messages_only_without_function_items_or_instructions() {
        let mut caller = ChatContext::new();
        caller.set_instructions("caller").unwrap();
        let shared = ChatMessage::new(ChatRole::User, "hello");
        caller.push(shared.clone());
        let mut task = ChatContext::new();
        task.set_instructions("task").unwrap();
        task.push(shared.clone());
        task.push(ChatMessage::new(ChatRole::Assistant, "your email?"));
        task.push(FunctionCall::new("c1", "record", "{}"));
        task.push(FunctionCallOutput::new("c1", "record", "ok", false));
        task.push(ChatMessage::new(ChatRole::User, "ada@example.com"));
        merge_task_context(&mut caller, &task);
        let texts: Vec<(ChatRole, String)> = caller
            .items()
            .iter()
            .map(|i| {
                let m = i.as_message().unwrap();
                (m.role, m.text_content().unwrap())
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                (ChatRole::System, "caller".to_owned()),
                (ChatRole::User, "hello".to_owned()),
                (ChatRole::Assistant, "your email?".to_owned()),
                (ChatRole::User, "ada@example.com".to_owned()),
            ]
        );
    }

    /// One task run: its instructions, the messages it started from, its tools.
    type Run = (String, Vec<String>, Vec<String>);

    /// A session that "runs" each task by answering from a script: `Ok(text)` completes it with `text` and adds a
    /// user message `text` to its context; an error fails it. It records what each task started from.
    #[derive(Default)]
    struct Scripted {
        script: Mutex<std::collections::VecDeque<Result<&'static str, TaskError>>>,
        runs: Mutex<Vec<Run>>,
    }

    #[async_trait::async_trait]
    impl crate::SessionControl for Scripted {
        fn say(&self, _: crate::session::SayRequest) -> Result<crate::SpeechHandle, SessionError> {
            Err(SessionError::NotRunning)
        }
        fn generate_reply(
            &self,
            _: crate::session::ReplyRequest,
        ) -> Result<crate::SpeechHandle, SessionError> {
            Err(SessionError::NotRunning)
        }
        async fn interrupt(&self) -> Result<(), SessionError> {
            Ok(())
        }
        fn update_agent(&self, _: Agent) -> Result<(), SessionError> {
            Ok(())
        }
        fn history(&self) -> ChatContext {
            ChatContext::new()
        }
        fn agent_state(&self) -> crate::AgentState {
            crate::AgentState::Listening
        }
        fn user_state(&self) -> crate::UserState {
            crate::UserState::Listening
        }
        fn current_speech(&self) -> Option<crate::SpeechHandle> {
            None
        }
        async fn close(&self) -> Result<(), SessionError> {
            Ok(())
        }
        async fn run_task_erased(&self, task: ErasedTask) -> Result<TaskOutput, TaskError> {
            let agent = task.agent().clone();
            let seen: Vec<String> = agent
                .chat_ctx()
                .messages()
                .filter_map(|m| m.text_content())
                .collect();
            self.runs.lock().unwrap().push((
                agent.instructions().to_owned(),
                seen,
                agent.tools().names(),
            ));
            let next = self.script.lock().unwrap().pop_front().unwrap();
            let text = next?;
            let mut ctx = agent.chat_ctx().clone();
            ctx.add_message(ChatRole::User, text);
            Ok(TaskOutput::new(Box::new(text.to_owned()), ctx))
        }
    }

    fn named(what: &'static str) -> Result<AgentTask<String>, TaskError> {
        let (_c, r) = completion::<String>();
        Ok(AgentTask::new(Agent::new(what), r))
    }

    fn scripted(script: Vec<Result<&'static str, TaskError>>) -> (Arc<Scripted>, SessionHandle) {
        let s = Arc::new(Scripted {
            script: Mutex::new(script.into()),
            ..Scripted::default()
        });
        (Arc::clone(&s), SessionHandle::new(s))
    }

    #[tokio::test]
    async fn a_group_runs_in_order_shares_context_and_goes_back_on_request() {
        let (fake, session) = scripted(vec![
            Ok("Ada"),
            // In "email" the user asks to change the name.
            Err(TaskError::Regressed {
                task_ids: vec!["name".to_owned()],
            }),
            Ok("Ada Lovelace"),
            Ok("ada@example.com"),
        ]);
        let completed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&completed);
        let mut results = TaskGroup::new()
            .add("name", "Collect the name", || named("name"))
            .add("email", "Collect the email", || named("email"))
            .on_task_completed(move |id, v| {
                let v = v.downcast_ref::<String>().cloned().unwrap_or_default();
                seen.lock().unwrap().push(format!("{id}={v}"));
            })
            .run(&session)
            .await
            .unwrap();
        let runs = fake.runs.lock().unwrap().clone();
        let order: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(order, ["name", "email", "name", "email"]);
        // The first task has no way back; later ones can go back to visited steps only.
        assert_eq!(runs[0].2, Vec::<String>::new());
        assert_eq!(runs[1].2, ["out_of_scope"]);
        assert_eq!(
            runs[2].2,
            ["out_of_scope"],
            "back in name, email was visited"
        );
        // Each task starts from what the finished ones said.
        assert_eq!(runs[1].1, ["Ada"]);
        assert_eq!(runs[3].1, ["Ada", "Ada Lovelace"]);
        assert_eq!(results.ids(), ["name", "email"]);
        assert_eq!(
            results.take::<String>("name"),
            Some(Ok("Ada Lovelace".to_owned()))
        );
        assert_eq!(
            results.take::<String>("email"),
            Some(Ok("ada@example.com".to_owned()))
        );
        assert_eq!(
            completed.lock().unwrap().clone(),
            ["name=Ada", "name=Ada Lovelace", "email=ada@example.com"]
        );
    }

    #[tokio::test]
    async fn a_failing_task_ends_the_group_unless_errors_are_returned() {
        let (_fake, session) = scripted(vec![Err(TaskError::failed("no")), Ok("x")]);
        let group = TaskGroup::new()
            .add("a", "A", || named("a"))
            .add("b", "B", || named("b"));
        assert_eq!(
            group.run(&session).await.err(),
            Some(TaskError::failed("no"))
        );

        let (fake, session) = scripted(vec![Err(TaskError::failed("no")), Ok("x")]);
        let mut results = group
            .with_options(TaskGroupOptions::default().with_return_errors(true))
            .run(&session)
            .await
            .unwrap();
        assert_eq!(fake.runs.lock().unwrap().len(), 2);
        assert!(results.is_error("a"));
        assert_eq!(
            results.take::<String>("a"),
            Some(Err(TaskError::failed("no")))
        );
        assert_eq!(results.take::<String>("b"), Some(Ok("x".to_owned())));

        // Session errors always end the group.
        let (_fake, session) = scripted(vec![Err(TaskError::HandedOff), Ok("x")]);
        let group = TaskGroup::new()
            .with_options(TaskGroupOptions::default().with_return_errors(true))
            .add("a", "A", || named("a"))
            .add("b", "B", || named("b"));
        assert_eq!(group.run(&session).await.err(), Some(TaskError::HandedOff));
    }

    #[test]
    fn task_group_results_are_typed_and_report_wrong_types() {
        let mut results = TaskGroupResults::default();
        results.set("a", Ok(Box::new(1_u8)));
        results.set("b", Err(TaskError::failed("x")));
        results.set("a", Ok(Box::new(2_u8)));
        assert_eq!(results.ids(), ["b", "a"]);
        assert!(results.is_error("b"));
        assert_eq!(
            results
                .take::<String>("a")
                .unwrap()
                .err()
                .map(|e| e.to_string()),
            Some(format!(
                "the task's result has another type than {}",
                std::any::type_name::<String>()
            ))
        );
        assert_eq!(results.take::<u8>("a"), None, "taken once");
        assert_eq!(results.take::<u8>("c"), None);
    }
}
