//! Running an `AgentTask` (core [`agents_core::task`]) inside the session actor.
//!
//! Stages, driven from the session task's `select!` loop:
//!
//! 1. **Suspending**: the caller's activity is told to suspend (recognition stops, nothing new is scheduled) and
//!    answers once its current speech has ended. Requests meanwhile still reach the caller (queued there).
//! 2. **Running**: the task's agent gets its own activity (its `on_enter` runs), which becomes the session's
//!    current activity: input audio, `say`, `generate_reply` and `interrupt` go to it. The session waits for the
//!    task's outcome (`complete`, or every completer dropped).
//! 3. **Finishing**: the task's activity drains (its `on_exit`, its queued speech) bounded by the close timeout,
//!    and reports its final chat context.
//! 4. The caller becomes current again: it merges the task's items, restarts its recognition and scheduling
//!    (without `on_enter`) and only then hands the result to the waiting tool.
//!
//! Handoff records (`AgentHandoff` items) are added to the session history when the task starts and ends.

use tokio::sync::oneshot;
use tokio::time::Instant;

use agents_core::agent::Agent;
use agents_core::chat::ChatContext;
use agents_core::session::SessionError;
use agents_core::task::{ErasedTask, ErasedValue, TaskError, TaskOutcome, TaskOutput};

use super::{AgentSession, Phase, SessionActor, SessionCmd};
use crate::activity::{ActivityCmd, ActivityHandle};

type Reply = oneshot::Sender<Result<TaskOutput, TaskError>>;

/// `SessionCmd::RunTask`: the task and where its result goes.
pub(crate) struct TaskRequest {
    task: ErasedTask,
    reply: Reply,
}

/// A task the session is running.
pub(super) struct RunningTask {
    reply: Reply,
    /// The suspended caller (set once it acknowledged the suspension).
    caller: Option<ActivityHandle>,
    caller_agent: Option<Agent>,
    stage: Stage,
    /// `say` / `generate_reply` made while the task's agent drains: they go to the caller once it resumes (as
    /// requests made during a handoff go to the next agent).
    pub(super) pending: Vec<ActivityCmd>,
}

enum Stage {
    Suspending {
        ack: oneshot::Receiver<()>,
        agent: Option<Box<Agent>>,
        outcome: Option<TaskOutcome>,
    },
    Running {
        outcome: TaskOutcome,
    },
    Finishing {
        result: Option<Result<ErasedValue, TaskError>>,
        ctx: oneshot::Receiver<ChatContext>,
        /// `None`: the close timeout is too large for the clock (no bound).
        deadline: Option<Instant>,
    },
}

/// What moved a running task forward.
pub(super) enum Progress {
    Suspended,
    Completed(Result<ErasedValue, TaskError>),
    Finished(Option<ChatContext>),
}

/// Waits for the next step of the running task (pending when none runs).
pub(super) async fn progress(task: &mut Option<RunningTask>) -> Progress {
    let Some(task) = task else {
        return std::future::pending().await;
    };
    match &mut task.stage {
        Stage::Suspending { ack, .. } => {
            // A caller that went away counts as suspended: the task runs all the same.
            let _ = ack.await;
            Progress::Suspended
        }
        Stage::Running { outcome } => Progress::Completed(outcome.wait().await),
        Stage::Finishing { ctx, deadline, .. } => {
            let received = match *deadline {
                Some(at) => tokio::time::timeout_at(at, ctx).await,
                None => Ok(ctx.await),
            };
            match received {
                Ok(Ok(ctx)) => Progress::Finished(Some(ctx)),
                Ok(Err(_)) => Progress::Finished(None),
                Err(_) => {
                    tracing::warn!("the task's agent did not drain before the close timeout");
                    Progress::Finished(None)
                }
            }
        }
    }
}

impl SessionActor {
    /// `SessionCmd::RunTask`.
    pub(super) fn start_task(&mut self, request: TaskRequest) {
        let TaskRequest { task, reply } = request;
        if self.task.is_some() {
            let _ = reply.send(Err(TaskError::Nested));
            return;
        }
        if self.draining.is_some() {
            let _ = reply.send(Err(TaskError::HandedOff));
            return;
        }
        let Some(caller) = &self.activity else {
            let _ = reply.send(Err(TaskError::Session(SessionError::NotRunning)));
            return;
        };
        let (tx, ack) = oneshot::channel();
        caller.send(ActivityCmd::Suspend(tx));
        let (agent, outcome) = task.into_parts();
        self.task = Some(RunningTask {
            reply,
            caller: None,
            caller_agent: self.shared.with(|s| s.agent.clone()),
            pending: Vec::new(),
            stage: Stage::Suspending {
                ack,
                agent: Some(Box::new(agent)),
                outcome: Some(outcome),
            },
        });
    }

    /// Moves the running task to its next stage.
    pub(super) fn on_task_progress(&mut self, progress: Progress) {
        let Some(mut task) = self.task.take() else {
            return;
        };
        match progress {
            Progress::Suspended => {
                let (agent, outcome) = match &mut task.stage {
                    Stage::Suspending { agent, outcome, .. } => (agent.take(), outcome.take()),
                    _ => (None, None),
                };
                let (Some(agent), Some(outcome)) = (agent, outcome) else {
                    return;
                };
                let agent = *agent;
                task.caller = self.activity.take();
                self.record_handoff(task.caller.as_ref().map(|c| c.agent_id.clone()), &agent);
                self.shared.set_agent(agent.clone());
                self.activity = Some(ActivityHandle::spawn(agent, self.deps()));
                task.stage = Stage::Running { outcome };
                self.task = Some(task);
            }
            Progress::Completed(result) => {
                let (tx, ctx) = oneshot::channel();
                match &self.activity {
                    Some(a) => a.send(ActivityCmd::DrainInto(tx)),
                    None => drop(tx),
                }
                task.stage = Stage::Finishing {
                    result: Some(result),
                    ctx,
                    deadline: crate::activity::deadline_after(
                        Instant::now(),
                        self.config.options.close_timeout,
                    ),
                };
                self.task = Some(task);
            }
            Progress::Finished(ctx) => {
                let result = match &mut task.stage {
                    Stage::Finishing { result, .. } => result.take(),
                    _ => None,
                }
                .unwrap_or(Err(TaskError::NotCompleted));
                let finished = self.activity.take();
                let task_id = finished.as_ref().map(|a| a.agent_id.clone());
                if let Some(finished) = finished {
                    // Drained already, or out of time: closed (bounded) in the background.
                    tokio::spawn(finished.close());
                }
                let Some(caller) = task.caller.take() else {
                    let _ = task.reply.send(Err(TaskError::NotCompleted));
                    task.pending.into_iter().for_each(crate::activity::reject);
                    return;
                };
                if let Some(agent) = task.caller_agent.take() {
                    self.record_handoff(task_id, &agent);
                    self.shared.set_agent(agent);
                }
                let ctx = ctx.unwrap_or_default();
                let output = result.map(|value| TaskOutput::new(value, ctx.clone()));
                let reply = task.reply;
                caller.send(ActivityCmd::Resume {
                    task_ctx: ctx,
                    then: Box::new(move || {
                        let _ = reply.send(output);
                    }),
                });
                for cmd in task.pending.drain(..) {
                    caller.send(cmd);
                }
                self.activity = Some(caller);
            }
        }
    }

    /// Keeps a speech request made while the task's agent drains for the caller; gives it back otherwise. The
    /// draining task agent's own requests (its `on_exit`, its tools) go to it, so they play before it finishes.
    pub(super) fn hold_for_caller(
        &mut self,
        cmd: ActivityCmd,
        origin: Option<u64>,
    ) -> Option<ActivityCmd> {
        match &mut self.task {
            Some(task) if matches!(task.stage, Stage::Finishing { .. }) => {
                if let Some(a) = self.activity.as_ref().filter(|a| Some(a.id) == origin) {
                    a.send(cmd);
                } else {
                    task.pending.push(cmd);
                }
                None
            }
            _ => Some(cmd),
        }
    }

    /// Ends the running task with `error` (a handoff or the close): the waiting tool gets the error; the
    /// suspended caller, if any, is returned for the caller of this function to close.
    pub(super) fn abandon_task(&mut self, error: TaskError) -> Option<ActivityHandle> {
        let task = self.task.take()?;
        let _ = task.reply.send(Err(error));
        // Requests parked for the caller, which will not resume.
        task.pending.into_iter().for_each(crate::activity::reject);
        task.caller
    }

    fn record_handoff(&self, old: Option<String>, new: &Agent) {
        let mut record = ChatContext::new();
        record.add_agent_handoff(old, new.id().to_owned());
        for item in record.into_items() {
            self.shared.push_history(item);
        }
    }
}

impl AgentSession {
    /// `SessionControl::run_task_erased`, first half: hands the task to the session task. The receiver is awaited
    /// without holding the session, so a tool waiting for a task never keeps a dropped session alive.
    pub(super) async fn submit_task(
        &self,
        task: ErasedTask,
    ) -> Result<oneshot::Receiver<Result<TaskOutput, TaskError>>, TaskError> {
        match self.owner.shared.with(|s| s.phase) {
            Phase::Running => {}
            Phase::Closing => {
                return Err(TaskError::Session(SessionError::Closing {
                    operation: "run_task",
                }));
            }
            Phase::NotStarted | Phase::Closed => {
                return Err(TaskError::Session(SessionError::NotRunning));
            }
        }
        let (tx, rx) = oneshot::channel();
        self.owner
            .commands
            .send(SessionCmd::RunTask(TaskRequest { task, reply: tx }))
            .await
            .map_err(|_| TaskError::Session(SessionError::NotRunning))?;
        Ok(rx)
    }
}

/// `SessionControl::run_task_erased`, second half: the task's result (the session ending first reads as
/// `NotRunning`).
pub(super) async fn task_result(
    rx: oneshot::Receiver<Result<TaskOutput, TaskError>>,
) -> Result<TaskOutput, TaskError> {
    rx.await
        .unwrap_or(Err(TaskError::Session(SessionError::NotRunning)))
}
