//! What the cascading activity ([`super`]) and the realtime activity ([`crate::realtime`]) share: recognition
//! setup, speech scheduling and interruption, lifecycle hooks, the supervision of speech tasks, and the end of a
//! drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use agents_core::agent::Agent;
use agents_core::chat::{ChatContext, ChatItem};
use agents_core::events::{Component, ErrorEvent, SessionEvent, SpeechSource};
use agents_core::session::{SessionError, SessionHandle};
use agents_core::speech::{SpeechError, SpeechHandle, SpeechOptions};
use agents_core::stream::EventStream;

use super::catch_panic;
use crate::generation::{self, Notice};
use crate::recognition::{
    AudioRecognition, RecognitionError, RecognitionEvent, RecognitionOptions, TurnDetectionMode,
};
use crate::session::{Config, SessionCmd, Shared};
use crate::speech::SpeechQueue;
use crate::tools_exec::ToolStep;

/// Starts the audio recognition in `mode` with the session's endpointing (and the agent's overrides), user-away
/// timeout and turn detector. A failure is reported as a recoverable error event and gives `None`.
pub(crate) fn start_recognition(
    shared: &Shared,
    config: &Config,
    agent: &Agent,
    mode: TurnDetectionMode,
    vad: Option<Arc<dyn agents_core::Vad>>,
    stt: Option<Arc<dyn agents_core::Stt>>,
) -> Option<(AudioRecognition, EventStream<RecognitionEvent>)> {
    let options = &config.options;
    let mut endpointing = options.endpointing;
    let o = agent.turn_overrides();
    if let Some(v) = o.min_endpointing_delay {
        endpointing.min_delay = v;
    }
    if let Some(v) = o.max_endpointing_delay {
        endpointing.max_delay = v;
    }
    let mut rec = RecognitionOptions::new(mode)
        .with_endpointing(endpointing)
        .with_user_away_timeout(options.user_away_timeout);
    if let Some(d) = &options.turn_detector {
        rec = rec.with_turn_detector(Arc::clone(d));
    }
    match AudioRecognition::start(vad, stt, rec) {
        Ok(started) => Some(started),
        Err(e) => {
            recognition_error(shared, &e);
            None
        }
    }
}

/// The STT the recognition streams from: a non-streaming `stt` is wrapped in the VAD-segmented
/// [`StreamAdapter`](crate::StreamAdapter) when there is a VAD (LiveKit's `AgentActivity` does the same); without a
/// VAD it cannot stream, which is reported as [`RecognitionError::SttNotStreaming`] and gives `Err(())` (the
/// activity then runs without recognition).
pub(crate) fn streaming_stt(
    shared: &Shared,
    stt: Option<Arc<dyn agents_core::Stt>>,
    vad: Option<&Arc<dyn agents_core::Vad>>,
) -> Result<Option<Arc<dyn agents_core::Stt>>, ()> {
    let Some(stt) = stt else {
        return Ok(None);
    };
    if stt.capabilities().streaming {
        return Ok(Some(stt));
    }
    match vad {
        Some(vad) => Ok(Some(Arc::new(crate::StreamAdapter::new(
            stt,
            Arc::clone(vad),
        )))),
        None => {
            recognition_error(
                shared,
                &RecognitionError::SttNotStreaming {
                    label: stt.label().to_owned(),
                },
            );
            Err(())
        }
    }
}

/// Reports a recognition failure as a recoverable error event of the component at fault.
pub(crate) fn recognition_error(shared: &Shared, e: &RecognitionError) {
    let component = match e {
        RecognitionError::Vad(_) => Component::Vad,
        RecognitionError::MissingComponent { component, .. }
        | RecognitionError::StreamEnded { component } => *component,
        _ => Component::Stt,
    };
    shared.emit_error(ErrorEvent::new(
        component,
        "audio_recognition",
        e.clone(),
        true,
    ));
}

/// Authorizes the next queued speech when none plays (and the activity is not suspended).
pub(crate) fn schedule(
    shared: &Shared,
    queue: &mut SpeechQueue,
    current: &mut Option<SpeechHandle>,
    suspended: bool,
) {
    if current.is_some() || suspended {
        return;
    }
    if let Some(next) = queue.pop() {
        shared.set_current_speech(Some(next.clone()));
        next.authorize();
        *current = Some(next);
    }
}

/// `session.interrupt()` over `speeches`: every one not done is interrupted, or none when one of them does not
/// allow interruptions.
pub(crate) fn interrupt_speeches<'a>(
    speeches: impl IntoIterator<Item = &'a SpeechHandle>,
) -> Result<(), SessionError> {
    let all: Vec<SpeechHandle> = speeches
        .into_iter()
        .filter(|h| !h.done())
        .cloned()
        .collect();
    if all.iter().any(|h| !h.allow_interruptions()) {
        return Err(SessionError::Speech(SpeechError::NotInterruptible));
    }
    for h in all {
        let _ = h.interrupt();
    }
    Ok(())
}

/// Input is dropped (not buffered) while the current speech cannot be interrupted (LiveKit §5.3).
pub(crate) fn input_blocked(current: Option<&SpeechHandle>) -> bool {
    current.is_some_and(|c| !c.allow_interruptions())
}

/// Ends `speeches` (interrupted and done), so nobody waits for them.
pub(crate) fn finish_speeches(speeches: impl IntoIterator<Item = SpeechHandle>) {
    for h in speeches {
        h.force_interrupt();
        h.mark_done();
    }
}

/// The shutdown of an activity's speeches: they are interrupted, `then` runs, the activity's tasks are aborted
/// and awaited, and the speeches marked done (aborted generations never report).
pub(crate) async fn abort_speeches(
    speeches: Vec<SpeechHandle>,
    then: impl FnOnce(),
    tasks: &mut JoinSet<()>,
) {
    for h in &speeches {
        h.force_interrupt();
    }
    then();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    for h in speeches {
        h.mark_done();
    }
}

/// A lifecycle hook of the agent.
#[derive(Clone, Copy)]
pub(crate) enum Hook {
    Enter,
    Exit,
    UserAway,
}

/// Runs `hook` as a task of the activity, then sends `done` to the activity. A panicking hook is reported and
/// still counted as finished.
pub(crate) fn spawn_hook<M: Send + 'static>(
    tasks: &mut JoinSet<()>,
    agent: &Agent,
    session: &SessionHandle,
    shared: &Arc<Shared>,
    hook: Hook,
    (tx, done): (mpsc::Sender<M>, M),
) {
    let hooks = Arc::clone(agent.hooks());
    let session = session.clone();
    let shared = Arc::clone(shared);
    tasks.spawn(async move {
        match hook {
            Hook::Enter => catch_panic(&shared, "on_enter", hooks.on_enter(&session)).await,
            Hook::Exit => catch_panic(&shared, "on_exit", hooks.on_exit(&session)).await,
            Hook::UserAway => {
                catch_panic(&shared, "on_user_away", hooks.on_user_away(&session)).await
            }
        };
        let _ = tx.send(done).await;
    });
}

/// Runs a speech's task (`what` names it in panic reports) next to the relay of its `notices` into the activity's
/// `internal` channel, then sends [`Notice::Finished`]. A task that panics ends its speech here (interrupted), so
/// the activity schedules the next one.
pub(crate) async fn supervise_speech<M: From<Notice>>(
    shared: &Shared,
    what: &'static str,
    speech: impl Future<Output = ()>,
    (handle, notify): (SpeechHandle, mpsc::Sender<Notice>),
    mut notices: mpsc::Receiver<Notice>,
    internal: &mpsc::Sender<M>,
) {
    let relay = async {
        while let Some(n) = notices.recv().await {
            if internal.send(M::from(n)).await.is_err() {
                return;
            }
        }
    };
    // The clones live inside the block: the relay ends once every notice sender is gone.
    let speech = async move {
        if catch_panic(shared, what, speech).await.is_none() {
            handle.force_interrupt();
            generation::finish_playout(&notify, &handle, None, true, || false).await;
        }
    };
    let ((), ()) = futures::join!(speech, relay);
    let _ = internal.send(M::from(Notice::Finished)).await;
}

/// Appends `item` to the agent's context, and messages to the session history.
pub(crate) fn commit(agent: &mut Agent, shared: &Shared, item: ChatItem) {
    let mut ctx = agent.chat_ctx().clone();
    ctx.push(item.clone());
    agent.update_chat_ctx(&ctx);
    if matches!(item, ChatItem::Message(_)) {
        shared.push_history(item);
    }
}

/// After a tool step: its calls and outputs join the agent's context and `FunctionToolsExecuted` is emitted.
/// Returns the outputs committed, and the handoff the step asks for (none, reported as an error, when several
/// tools asked for one).
pub(crate) fn commit_tool_step(
    agent: &mut Agent,
    shared: &Shared,
    step: &ToolStep,
) -> (Vec<ChatItem>, Option<Agent>) {
    let mut outputs = Vec::new();
    for (call, result) in step.calls.iter().zip(&step.results) {
        commit(agent, shared, ChatItem::FunctionCall(call.clone()));
        if let Some(out) = &result.output {
            commit(agent, shared, ChatItem::FunctionCallOutput(out.clone()));
            outputs.push(ChatItem::FunctionCallOutput(out.clone()));
        }
    }
    shared.emit(SessionEvent::FunctionToolsExecuted {
        calls: step.calls.clone(),
        outputs: step.outputs(),
    });
    let handoff = match step.handoff() {
        Ok(h) => h,
        Err(n) => {
            shared.emit_error(ErrorEvent::new(
                Component::Tool,
                "handoff",
                SessionError::Invalid {
                    reason: format!("{n} tools asked for a handoff in one step; none done"),
                },
                true,
            ));
            None
        }
    };
    (outputs, handoff)
}

/// Asks the session to switch to `agent` (a tool's handoff); true when there is a handoff.
pub(crate) fn request_handoff(session_tx: &mpsc::Sender<SessionCmd>, agent: Option<Agent>) -> bool {
    let Some(agent) = agent else {
        return false;
    };
    if session_tx.try_send(SessionCmd::UpdateAgent(agent)).is_err() {
        tracing::error!("handoff request dropped: session busy");
    }
    true
}

/// The speech that follows a tool step of `parent` (next step index, same interruptibility).
pub(crate) fn follow_up_speech(parent: &SpeechHandle) -> SpeechHandle {
    SpeechHandle::new(
        SpeechOptions::default()
            .with_allow_interruptions(parent.allow_interruptions())
            .with_step_index(parent.step_index() + 1)
            .with_parent_id(parent.id()),
    )
}

/// Announces a speech the activity created itself (`SpeechCreated`, not user-initiated).
pub(crate) fn announce_speech(shared: &Shared, speech: &SpeechHandle, source: SpeechSource) {
    shared.emit(SessionEvent::SpeechCreated {
        speech: speech.clone(),
        source,
        user_initiated: false,
    });
}

/// Suspension by an `AgentTask` and the drain of an activity.
#[derive(Default)]
pub(crate) struct DrainState {
    /// Set once draining; told when drained.
    done: Option<oneshot::Sender<()>>,
    /// `on_exit` was started.
    started: bool,
    /// An `AgentTask` runs in place of this agent: nothing is scheduled.
    pub(crate) suspended: bool,
    /// The session waiting for the current speech to end after a suspension.
    suspend_ack: Option<oneshot::Sender<()>>,
    /// This agent runs as a task: its context is handed back once drained.
    ctx: Option<oneshot::Sender<ChatContext>>,
}

impl DrainState {
    pub(crate) fn is_draining(&self) -> bool {
        self.done.is_some()
    }

    /// Drains (a suspended agent that drains, on session close or handoff, plays its queue out) and tells `done`
    /// when drained. True the first time: the agent's `on_exit` is then due.
    pub(crate) fn drain(&mut self, done: oneshot::Sender<()>) -> bool {
        self.suspended = false;
        self.done = Some(done);
        !std::mem::replace(&mut self.started, true)
    }

    /// The agent's context goes to `ctx` once drained; the returned sender is the drain's `done`.
    pub(crate) fn hand_back(&mut self, ctx: oneshot::Sender<ChatContext>) -> oneshot::Sender<()> {
        self.ctx = Some(ctx);
        oneshot::channel().0
    }

    /// Suspends the activity; `ack` is told once no speech plays.
    pub(crate) fn suspend(&mut self, ack: oneshot::Sender<()>) {
        self.suspended = true;
        self.suspend_ack = Some(ack);
    }

    /// After each step of the activity's loop: a suspension is acknowledged once no speech plays. True when the
    /// loop ends (draining and `idle`).
    pub(crate) fn step_done(&mut self, current: Option<&SpeechHandle>, idle: bool) -> bool {
        if current.is_none()
            && let Some(ack) = self.suspend_ack.take()
        {
            let _ = ack.send(());
        }
        self.is_draining() && idle
    }

    /// Taken before the activity's shutdown, reported after it.
    pub(crate) fn take_report(&mut self) -> DrainReport {
        DrainReport {
            done: self.done.take(),
            ctx: self.ctx.take(),
        }
    }
}

/// Who waits for the end of a drain.
pub(crate) struct DrainReport {
    done: Option<oneshot::Sender<()>>,
    ctx: Option<oneshot::Sender<ChatContext>>,
}

impl DrainReport {
    /// After the activity's shutdown: the agent's context goes back to the task that ran it, and the drain is
    /// reported (the session then drops the activity).
    pub(crate) fn send(self, agent: &Agent) {
        if let Some(ctx) = self.ctx {
            let _ = ctx.send(agent.chat_ctx().clone());
        }
        if let Some(done) = self.done {
            let _ = done.send(());
        }
    }
}

/// Tells the recognition whether the agent speaks (user-away timer). Bounded: the recognition's queue is shared
/// with input frames and its events are read by the activity, so an unbounded wait could deadlock.
pub(crate) async fn tell_agent_speaking(rec: Option<&AudioRecognition>, speaking: bool) {
    if let Some(rec) = rec {
        let sent =
            tokio::time::timeout(Duration::from_millis(200), rec.set_agent_speaking(speaking))
                .await;
        if sent.is_err() {
            tracing::warn!(
                speaking,
                "audio recognition busy: agent-speaking state not delivered"
            );
        }
    }
}

/// The next event of `events`; pending forever when there is no stream.
pub(crate) async fn next_of<T>(events: &mut Option<EventStream<T>>) -> Option<T> {
    match events {
        Some(e) => e.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`; pending forever without one.
pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
