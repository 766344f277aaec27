//! The activity of one agent: a task owning the agent's chat context, the speech queue, the audio recognition,
//! the interruption policy and the tool loop.
//!
//! Inputs (one `select!` loop): commands from the session (say, reply, interrupt, drain, close), input frames,
//! recognition events, notices from generations, results of the user-turn hook, and the false-interruption timer.
//! State changes happen only here, so interruption bookkeeping (which speech is current, paused, interrupted,
//! what was committed) cannot race (field lessons 4, 6, 7, 10).

pub(crate) mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use agents_audio::AudioFrame;
use agents_core::agent::{Agent, TurnDecision};
use agents_core::audio_io::{AudioOutput, TextOutput};
use agents_core::chat::{ChatContext, ChatItem, ChatMessage, ChatRole, MessageMetrics};
use agents_core::events::{AgentState, Component, ErrorEvent, SessionEvent, SpeechSource};
use agents_core::llm::{ChatRequest, ToolChoice};
use agents_core::metrics::Metrics;
use agents_core::session::{ReplyRequest, SayRequest, SessionError, SessionHandle};
use agents_core::speech::{SpeechHandle, SpeechOptions};
use agents_core::stream::EventStream;
use agents_core::tools::ToolContext;

use crate::generation::{self, GenerationContext, Notice, Source, TurnTiming};
use crate::interruption::{InterruptionDecision, InterruptionPolicy};
use crate::recognition::{AudioRecognition, EndOfTurn, RecognitionEvent, TurnDetectionMode};
use crate::session::{Config, Shared};
use crate::speech::SpeechQueue;
use crate::tools_exec::ToolStep;

use self::common::Hook;

/// A command to an activity.
pub(crate) enum ActivityCmd {
    Say {
        request: SayRequest,
        handle: SpeechHandle,
    },
    Reply {
        request: ReplyRequest,
        handle: SpeechHandle,
    },
    Interrupt(oneshot::Sender<Result<(), SessionError>>),
    /// Manual turn detection: end the user's turn now (`true`) or forget it (`false`).
    UserTurn(bool),
    /// Run `on_exit`, finish queued speech, then report and stop.
    Drain(oneshot::Sender<()>),
    /// The session closes: commit the user's turn in progress (its final transcript) without replying, then report.
    CloseUserTurn(oneshot::Sender<()>),
    /// The session's outputs were replaced: speeches created from now on use these.
    SetOutputs {
        audio: Option<Arc<dyn AudioOutput>>,
        text: Option<Arc<dyn TextOutput>>,
        sync: Option<Arc<crate::transcription::TranscriptSynchronizer>>,
    },
    Close,
    /// An `AgentTask` takes over (see `session::task`): recognition stops, queued speech waits; acknowledged
    /// once the current speech has ended.
    Suspend(oneshot::Sender<()>),
    /// The task finished: merge its chat items, restart recognition and scheduling, then run `then` (which hands
    /// the task's result to the waiting tool, so the tool's follow-up sees the merged context).
    Resume {
        task_ctx: ChatContext,
        then: Box<dyn FnOnce() + Send>,
    },
    /// As `Drain`, then report the agent's final chat context.
    DrainInto(oneshot::Sender<ChatContext>),
    /// The agent loses control for good while suspended (a handoff during a task): its queued speech is
    /// cancelled, `on_exit` runs, then it reports as `Drain`.
    Abandon(oneshot::Sender<()>),
}

/// What an activity is built from.
pub(crate) struct ActivityDeps {
    /// The activity's id (the origin of its hooks' and tools' requests).
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Config,
    pub(crate) session: SessionHandle,
    /// The session as given to tools (`generate_reply` defaults to no tools).
    pub(crate) tool_session: SessionHandle,
    pub(crate) session_tx: mpsc::Sender<crate::session::SessionCmd>,
    pub(crate) audio_output: Option<Arc<dyn AudioOutput>>,
    pub(crate) text_output: Option<Arc<dyn TextOutput>>,
    pub(crate) transcript_sync: Option<Arc<crate::transcription::TranscriptSynchronizer>>,
}

/// The session's handle on a running activity. Dropping it aborts the activity task; the activity's drop guard
/// (`Drop for Activity`) then finishes every speech handle it owned, so nobody waits forever.
pub(crate) struct ActivityHandle {
    pub(crate) agent_id: String,
    /// Identifies the activity as the origin of requests made by its own hooks and tools.
    pub(crate) id: u64,
    /// Lifecycle commands (suspend, resume, drain, close): a channel of their own, read first, so they are never
    /// lost behind speech requests.
    lifecycle: mpsc::Sender<ActivityCmd>,
    control: mpsc::Sender<ActivityCmd>,
    frames: mpsc::Sender<AudioFrame>,
    task: Option<JoinHandle<()>>,
}

/// Capacity of the lifecycle channel. The session sends at most a few lifecycle commands to one activity (suspend,
/// resume, close-user-turn, drain, close), so this bound is never reached by construction.
const LIFECYCLE_CAPACITY: usize = 16;

/// How long a lifecycle command may wait for room in the lifecycle channel before it is refused.
const LIFECYCLE_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// An activity's two command channels, lifecycle first.
pub(crate) struct Inbox {
    lifecycle: mpsc::Receiver<ActivityCmd>,
    control: mpsc::Receiver<ActivityCmd>,
    lifecycle_open: bool,
    control_open: bool,
}

impl Inbox {
    /// The next command, lifecycle commands first; `None` once both channels are closed.
    pub(crate) async fn recv(&mut self) -> Option<ActivityCmd> {
        loop {
            if !self.lifecycle_open && !self.control_open {
                return None;
            }
            tokio::select! {
                biased;
                cmd = self.lifecycle.recv(), if self.lifecycle_open => match cmd {
                    Some(c) => return Some(c),
                    None => self.lifecycle_open = false,
                },
                cmd = self.control.recv(), if self.control_open => match cmd {
                    Some(c) => return Some(c),
                    None => self.control_open = false,
                },
            }
        }
    }
}

fn is_lifecycle(cmd: &ActivityCmd) -> bool {
    matches!(
        cmd,
        ActivityCmd::Drain(_)
            | ActivityCmd::DrainInto(_)
            | ActivityCmd::CloseUserTurn(_)
            | ActivityCmd::Close
            | ActivityCmd::Suspend(_)
            | ActivityCmd::Resume { .. }
            | ActivityCmd::Abandon(_)
    )
}

/// Fails a command that no activity will run: speech handles are finished (interrupted), waiters are answered.
/// Replies to `Drain`/`Suspend`/`CloseUserTurn` are dropped, which their waiters read as "the activity is gone".
pub(crate) fn reject(cmd: ActivityCmd) {
    match cmd {
        ActivityCmd::Say { handle, .. } | ActivityCmd::Reply { handle, .. } => {
            handle.force_interrupt();
            handle.mark_done();
        }
        ActivityCmd::Interrupt(reply) => {
            let _ = reply.send(Err(SessionError::NotRunning));
        }
        ActivityCmd::Resume { then, .. } => then(),
        ActivityCmd::Drain(_)
        | ActivityCmd::Abandon(_)
        | ActivityCmd::CloseUserTurn(_)
        | ActivityCmd::Suspend(_)
        | ActivityCmd::Close
        | ActivityCmd::UserTurn(_)
        | ActivityCmd::SetOutputs { .. }
        | ActivityCmd::DrainInto(_) => {}
    }
}

/// Runs `fut`, catching a panic (an application bug in a hook, a tool or a node): the panic is reported as an
/// error event and the caller's bookkeeping still runs. Returns `None` when it panicked.
pub(crate) async fn catch_panic<T>(
    shared: &Shared,
    what: &'static str,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(v) => Some(v),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            tracing::error!(what, %message, "panic caught in an agent task");
            shared.emit_error(ErrorEvent::new(
                Component::Agent,
                what,
                SessionError::Invalid {
                    reason: format!("{what} panicked: {message}"),
                },
                true,
            ));
            None
        }
    }
}

/// Adds `d` to `now`; `None` (no deadline) when the sum does not fit (a huge duration means "never").
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

impl ActivityHandle {
    /// Spawns the activity of `agent`; `on_enter` runs first.
    pub(crate) fn spawn(agent: Agent, deps: ActivityDeps) -> Self {
        let capacity = deps.config.options.command_capacity.max(1);
        let (control, control_rx) = mpsc::channel(capacity);
        let (lifecycle, lifecycle_rx) = mpsc::channel(LIFECYCLE_CAPACITY);
        let (frames, frames_rx) = mpsc::channel(capacity);
        let inbox = Inbox {
            lifecycle: lifecycle_rx,
            control: control_rx,
            lifecycle_open: true,
            control_open: true,
        };
        let agent_id = agent.id().to_owned();
        let id = deps.id;
        let task = match crate::realtime::model_for(&agent, &deps.config) {
            Some(model) => tokio::spawn(crate::realtime::run(agent, model, deps, inbox, frames_rx)),
            None => tokio::spawn(Activity::new(agent, deps).run(inbox, frames_rx)),
        };
        Self {
            agent_id,
            id,
            lifecycle,
            control,
            frames,
            task: Some(task),
        }
    }

    /// Sends a command; when the activity cannot take it the request fails cleanly ([`reject`]). Lifecycle
    /// commands go through their own channel; should it ever be full, the send waits (bounded) in the background
    /// rather than dropping the command.
    pub(crate) fn send(&self, cmd: ActivityCmd) {
        let channel = if is_lifecycle(&cmd) {
            &self.lifecycle
        } else {
            &self.control
        };
        match channel.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) if is_lifecycle(&cmd) => {
                let channel = channel.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(LIFECYCLE_SEND_TIMEOUT, channel.reserve()).await {
                        Ok(Ok(permit)) => permit.send(cmd),
                        Ok(Err(_)) | Err(_) => {
                            tracing::error!(
                                "agent activity unresponsive; lifecycle command failed"
                            );
                            reject(cmd);
                        }
                    }
                });
            }
            Err(mpsc::error::TrySendError::Full(cmd) | mpsc::error::TrySendError::Closed(cmd)) => {
                tracing::error!("agent activity unavailable; request dropped");
                reject(cmd);
            }
        }
    }

    /// Offers an input frame; false when it was dropped.
    pub(crate) fn try_frame(&self, frame: AudioFrame) -> bool {
        self.frames.try_send(frame).is_ok()
    }

    /// Stops the activity (bounded wait, then abort; the activity's drop guard finishes its speech handles).
    pub(crate) async fn close(mut self) {
        if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
            // Drained and gone already (the usual end of a handoff).
            return;
        }
        self.send(ActivityCmd::Close);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }

    /// Drains the activity (its `on_exit`, its queue; `abandon`: its queue is cancelled) bounded by `limit`, then
    /// closes it. For activities the session lets go of in the background.
    pub(crate) async fn drain_and_close(self, limit: Duration, abandon: bool) {
        let (tx, rx) = oneshot::channel();
        self.send(if abandon {
            ActivityCmd::Abandon(tx)
        } else {
            ActivityCmd::Drain(tx)
        });
        if tokio::time::timeout(limit, rx).await.is_err() {
            tracing::warn!(agent = %self.agent_id, "agent did not drain in time; cancelled");
        }
        self.close().await;
    }
}

impl Drop for ActivityHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Results of the user-turn hook.
struct TurnHookDone {
    message: ChatMessage,
    decision: TurnDecision,
    turn: EndOfTurn,
    hook_delay: Duration,
}

// Notices are built once per speech event, never on a hot path.
#[allow(clippy::large_enum_variant)]
enum Internal {
    Generation(Notice),
    Hook(HookDone),
}

impl From<Notice> for Internal {
    fn from(notice: Notice) -> Self {
        Self::Generation(notice)
    }
}

enum HookDone {
    Turn(Box<TurnHookDone>),
    /// on_enter / on_exit finished.
    Lifecycle,
}

struct Activity {
    agent: Agent,
    shared: Arc<Shared>,
    config: Config,
    session: SessionHandle,
    tool_session: SessionHandle,
    session_tx: mpsc::Sender<crate::session::SessionCmd>,
    audio_output: Option<Arc<dyn AudioOutput>>,
    text_output: Option<Arc<dyn TextOutput>>,
    transcript_sync: Option<Arc<crate::transcription::TranscriptSynchronizer>>,
    /// When the last agent speech of this activity ended (for `min_consecutive_speech_delay`).
    last_speech_end: Arc<std::sync::Mutex<Option<Instant>>>,
    recognition: Option<AudioRecognition>,
    rec_events: Option<EventStream<RecognitionEvent>>,
    mode: Option<TurnDetectionMode>,
    policy: InterruptionPolicy,
    queue: SpeechQueue,
    current: Option<SpeechHandle>,
    live: Vec<SpeechHandle>,
    paused: bool,
    tasks: JoinSet<()>,
    /// Generations and hooks that have not reported their end yet.
    outstanding: usize,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    /// Suspension and drain.
    drain: common::DrainState,
    frames_dropped: u64,
    /// Final transcripts of the user turn in progress, joined with single spaces.
    turn_transcript: String,
    /// A reply generated before the end of turn (LiveKit 1.7 preemptive generation, §6.4).
    preemptive: Option<Preemptive>,
    /// Set while the session closes: the next end of turn is committed without a reply, then reported here.
    closing_turn: Option<oneshot::Sender<()>>,
    /// Lost control for good (a handoff while suspended under a task): no follow-up, no handoff of its own.
    abandoned: bool,
}

/// A speculative reply: kept only if the turn commits with the same transcript, context and tools.
struct Preemptive {
    handle: SpeechHandle,
    transcript: String,
    /// Ids of the agent's context items when it started.
    ctx_ids: Vec<String>,
    tools: Vec<String>,
    turn: Arc<OnceLock<TurnTiming>>,
}

impl Activity {
    fn new(agent: Agent, deps: ActivityDeps) -> Self {
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let policy = InterruptionPolicy::new(merged_interruption(&deps.config, &agent));
        Self {
            agent,
            shared: deps.shared,
            config: deps.config,
            session: deps.session,
            tool_session: deps.tool_session,
            session_tx: deps.session_tx,
            audio_output: deps.audio_output,
            text_output: deps.text_output,
            transcript_sync: deps.transcript_sync,
            last_speech_end: Arc::default(),
            recognition: None,
            rec_events: None,
            mode: None,
            policy,
            queue: SpeechQueue::new(),
            current: None,
            live: Vec::new(),
            paused: false,
            tasks: JoinSet::new(),
            outstanding: 0,
            internal_tx,
            internal_rx,
            drain: common::DrainState::default(),
            frames_dropped: 0,
            turn_transcript: String::new(),
            preemptive: None,
            closing_turn: None,
            abandoned: false,
        }
    }

    fn stt(&self) -> Option<Arc<dyn agents_core::Stt>> {
        self.agent
            .stt()
            .cloned()
            .or_else(|| self.config.stt.clone())
    }
    fn vad(&self) -> Option<Arc<dyn agents_core::Vad>> {
        self.agent
            .vad()
            .cloned()
            .or_else(|| self.config.vad.clone())
    }
    fn llm(&self) -> Option<Arc<dyn agents_core::Llm>> {
        match self.agent.llm() {
            Some(agents_core::LanguageModel::Llm(l)) => Some(Arc::clone(l)),
            _ => self.config.llm.clone(),
        }
    }
    fn tts(&self) -> Option<Arc<dyn agents_core::Tts>> {
        self.agent
            .tts()
            .cloned()
            .or_else(|| self.config.tts.clone())
    }

    fn start_recognition(&mut self) {
        let (vad, stt) = (self.vad(), self.stt());
        let Ok(stt) = common::streaming_stt(&self.shared, stt, vad.as_ref()) else {
            return;
        };
        // The agent's stt_node sees the STT events before the recognition does.
        let stt = stt.map(|s| -> Arc<dyn agents_core::Stt> {
            Arc::new(crate::recognition::stt_node::HookedStt::new(
                s,
                Arc::clone(self.agent.hooks()),
            ))
        });
        if vad.is_none() && stt.is_none() {
            return;
        }
        let options = &self.config.options;
        let mode = self
            .agent
            .turn_overrides()
            .turn_detection
            .or(options.turn_detection)
            .unwrap_or_else(|| TurnDetectionMode::resolve(false, vad.is_some(), stt.is_some()));
        if let Some((r, events)) =
            common::start_recognition(&self.shared, &self.config, &self.agent, mode, vad, stt)
        {
            self.recognition = Some(r);
            self.rec_events = Some(events);
            self.mode = Some(mode);
        }
    }

    async fn run(mut self, mut control: Inbox, mut frames: mpsc::Receiver<AudioFrame>) {
        self.start_recognition();
        // on_enter runs first, as a lifecycle task.
        self.spawn_hook(Hook::Enter);
        loop {
            let deadline = self.policy.deadline();
            tokio::select! {
                cmd = control.recv() => match cmd {
                    Some(ActivityCmd::Close) | None => break,
                    Some(ActivityCmd::UserTurn(commit)) => self.on_user_turn_command(commit).await,
                    Some(ActivityCmd::CloseUserTurn(done)) => self.on_close_user_turn(done).await,
                    Some(ActivityCmd::Suspend(ack)) => self.suspend(ack).await,
                Some(cmd) => self.on_command(cmd),
                },
                Some(frame) = frames.recv() => self.on_frame(frame),
                ev = common::next_of(&mut self.rec_events) => match ev {
                    Some(ev) => self.on_recognition(ev).await,
                    None => self.rec_events = None,
                },
                Some(internal) = self.internal_rx.recv() => match internal {
                    Internal::Generation(n) => self.on_notice(n).await,
                    Internal::Hook(h) => self.on_hook(h),
                },
                () = common::sleep_until_opt(deadline) => {
                    let d = self.policy.poll(Instant::now());
                    self.apply(d);
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
            self.schedule();
            if self.drain.step_done(self.current.as_ref(), self.idle()) {
                break;
            }
        }
        // The drain is reported after the shutdown: the session drops this activity (aborting its task) as soon
        // as it hears about it, which must not cut the recognition's close short.
        let report = self.drain.take_report();
        self.shutdown().await;
        report.send(&self.agent);
    }

    fn idle(&self) -> bool {
        self.outstanding == 0 && self.current.is_none() && self.queue.is_empty()
    }

    async fn shutdown(&mut self) {
        let mut pending: Vec<SpeechHandle> = self.live.drain(..).collect();
        pending.extend(self.queue.drain());
        pending.extend(self.current.take());
        common::abort_speeches(pending, || {}, &mut self.tasks).await;
        if self.frames_dropped > 0 {
            tracing::debug!(
                dropped = self.frames_dropped,
                "input frames the recognition could not take"
            );
        }
        self.shared.set_current_speech(None);
        if let Some(rec) = self.recognition.take() {
            rec.aclose().await;
        }
    }

    fn spawn_hook(&mut self, hook: Hook) {
        self.outstanding += 1;
        let done = (
            self.internal_tx.clone(),
            Internal::Hook(HookDone::Lifecycle),
        );
        common::spawn_hook(
            &mut self.tasks,
            &self.agent,
            &self.session,
            &self.shared,
            hook,
            done,
        );
    }

    fn on_command(&mut self, cmd: ActivityCmd) {
        match cmd {
            ActivityCmd::Say { request, handle } => {
                let source = Source::Say {
                    text: request.text,
                    audio: request.audio,
                    add_to_chat_ctx: request.add_to_chat_ctx,
                };
                self.spawn_speech(handle, source);
            }
            ActivityCmd::Reply { request, handle } => {
                if let Some(input) = request.user_input.as_deref() {
                    self.commit_user_message(ChatMessage::new(ChatRole::User, input));
                }
                let source = self.reply_source(request.instructions, request.tool_choice);
                self.spawn_speech(handle, source);
            }
            ActivityCmd::Interrupt(reply) => {
                let _ = reply.send(self.interrupt_all());
            }
            ActivityCmd::DrainInto(ctx) => {
                let done = self.drain.hand_back(ctx);
                self.on_command(ActivityCmd::Drain(done));
            }
            ActivityCmd::Resume { task_ctx, then } => self.resume(&task_ctx, then),
            ActivityCmd::Abandon(done) => {
                // A handoff while this agent was suspended under a task: it never speaks again; its queue is
                // cancelled, its `on_exit` runs.
                self.abandoned = true;
                common::finish_speeches(self.queue.drain());
                self.on_command(ActivityCmd::Drain(done));
            }
            ActivityCmd::Drain(done) => {
                // A suspended agent that drains (session closing, handoff) plays its queue out.
                self.cancel_preemptive();
                if self.drain.drain(done) {
                    self.spawn_hook(Hook::Exit);
                }
            }
            ActivityCmd::SetOutputs { audio, text, sync } => {
                self.resume_if_paused();
                self.audio_output = audio;
                self.text_output = text;
                self.transcript_sync = sync;
            }
            ActivityCmd::Suspend(ack) => {
                let _ = ack.send(());
            }
            ActivityCmd::Close | ActivityCmd::UserTurn(_) | ActivityCmd::CloseUserTurn(_) => {}
        }
    }

    /// The session closes: the recognition commits the turn now (STT flushed, its final awaited, bounded by the
    /// recognition's manual commit timeout); `on_end_of_turn` then commits it without a reply.
    async fn on_close_user_turn(&mut self, done: oneshot::Sender<()>) {
        self.cancel_preemptive();
        let Some(rec) = &self.recognition else {
            let _ = done.send(());
            return;
        };
        // Bounded: the recognition's queue is shared with frames and its events are read by this task.
        let limit = self.config.options.session_close_transcript_timeout;
        match tokio::time::timeout(limit, rec.commit_user_turn()).await {
            Ok(Ok(())) => self.closing_turn = Some(done),
            Ok(Err(_)) | Err(_) => {
                tracing::debug!(
                    "audio recognition closed or busy; the user's last turn is not committed"
                );
                let _ = done.send(());
            }
        }
    }

    /// An `AgentTask` takes over: no new speech is scheduled and the recognition stops; the session is told once
    /// the current speech has ended (LiveKit pauses the caller's activity the same way).
    async fn suspend(&mut self, ack: oneshot::Sender<()>) {
        self.cancel_preemptive();
        self.turn_transcript.clear();
        self.rec_events = None;
        if let Some(rec) = self.recognition.take() {
            rec.aclose().await;
        }
        self.drain.suspend(ack);
    }

    /// The task finished: its items join this agent's context (behaviour 122), recognition and scheduling
    /// restart; `on_enter` does not run again.
    fn resume(&mut self, task_ctx: &ChatContext, then: Box<dyn FnOnce() + Send>) {
        let mut ctx = self.agent.chat_ctx().clone();
        agents_core::task::merge_task_context(&mut ctx, task_ctx);
        self.agent.update_chat_ctx(&ctx);
        if self.drain.suspended {
            self.drain.suspended = false;
            self.start_recognition();
        }
        then();
    }

    async fn on_user_turn_command(&mut self, commit: bool) {
        let Some(rec) = &self.recognition else {
            tracing::warn!("commit/clear_user_turn without audio recognition (no VAD and no STT)");
            return;
        };
        // Bounded: the recognition's queue is shared with frames and its events are read by this task, so an
        // unbounded wait could deadlock with a recognition blocked on its full event queue.
        let limit = USER_TURN_COMMAND_TIMEOUT;
        let result = if commit {
            tokio::time::timeout(limit, rec.commit_user_turn()).await
        } else {
            self.turn_transcript.clear();
            tokio::time::timeout(limit, rec.clear_user_turn()).await
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::warn!("audio recognition closed; user turn command ignored"),
            Err(_) => tracing::warn!("audio recognition busy; user turn command dropped"),
        }
        if !commit {
            self.cancel_preemptive();
        }
    }

    /// `session.interrupt()`: the current speech and every queued one (LiveKit §5.4); refused when any of them
    /// does not allow interruptions.
    fn interrupt_all(&mut self) -> Result<(), SessionError> {
        common::interrupt_speeches(self.current.iter().chain(self.queue.iter()))?;
        self.resume_if_paused();
        Ok(())
    }

    fn on_frame(&mut self, frame: AudioFrame) {
        if common::input_blocked(self.current.as_ref()) {
            return;
        }
        if let Some(rec) = &self.recognition
            && rec.try_push_frame(frame).is_err()
        {
            self.frames_dropped += 1;
        }
    }

    async fn on_recognition(&mut self, ev: RecognitionEvent) {
        let now = Instant::now();
        // Interruptibility is read from the handle at decision time (`set_allow_interruptions` may change it).
        if let Some(c) = &self.current {
            self.policy.set_interruptible(c.allow_interruptions());
        }
        match ev {
            RecognitionEvent::UserStartedSpeaking => self.policy.user_speech_started(),
            RecognitionEvent::UserStoppedSpeaking { .. } => self.policy.user_speech_ended(now),
            RecognitionEvent::VadInference(p)
                if p.speaking
                // Interruption by VAD only in VAD mode (LiveKit §5.4).
                && self.mode == Some(TurnDetectionMode::Vad) =>
            {
                let d = self.policy.vad_inference(now, p.speech_duration);
                self.apply(d);
            }
            RecognitionEvent::InterimTranscript(t) => {
                self.emit_transcript(t.text(), false, t.language());
                let d = self.policy.transcript(now, t.text(), false);
                self.apply(d);
            }
            RecognitionEvent::FinalTranscript(t) => {
                self.emit_transcript(t.text(), true, t.language());
                let d = self.policy.transcript(now, t.text(), true);
                self.apply(d);
                let text = t.text().trim();
                if !text.is_empty() {
                    if !self.turn_transcript.is_empty() {
                        self.turn_transcript.push(' ');
                    }
                    self.turn_transcript.push_str(text);
                    let transcript = self.turn_transcript.clone();
                    self.start_preemptive(transcript);
                }
            }
            RecognitionEvent::PreflightTranscript(t) => {
                let text = t.text().trim();
                if !text.is_empty() {
                    let transcript = if self.turn_transcript.is_empty() {
                        text.to_owned()
                    } else {
                        format!("{} {text}", self.turn_transcript)
                    };
                    self.start_preemptive(transcript);
                }
            }
            RecognitionEvent::EndOfTurn(turn) => self.on_end_of_turn(turn),
            RecognitionEvent::UserStateChanged(c) => {
                self.shared.set_user_state(c.new);
                if c.new == agents_core::UserState::Away {
                    self.spawn_hook(Hook::UserAway);
                }
            }
            RecognitionEvent::Error(e) => common::recognition_error(&self.shared, &e),
            _ => {}
        }
    }

    fn emit_transcript(&self, text: &str, is_final: bool, language: Option<&str>) {
        self.shared.emit(SessionEvent::UserInputTranscribed {
            transcript: text.to_owned(),
            is_final,
            language: language.map(str::to_owned),
            speaker_id: None,
        });
    }

    fn apply(&mut self, decision: InterruptionDecision) {
        match decision {
            InterruptionDecision::Interrupt => {
                if let Some(c) = &self.current {
                    let _ = c.interrupt();
                }
                self.resume_if_paused();
            }
            InterruptionDecision::Pause => {
                if let Some(out) = &self.audio_output {
                    out.pause();
                    self.paused = true;
                }
            }
            InterruptionDecision::Resume => {
                self.resume_if_paused();
                self.shared
                    .emit(SessionEvent::AgentFalseInterruption { resumed: true });
            }
            _ => {}
        }
    }

    fn resume_if_paused(&mut self) {
        if self.paused {
            if let Some(out) = &self.audio_output {
                out.resume();
            }
            self.paused = false;
        }
    }

    /// Starts (or restarts) a speculative reply for `transcript`: skipped while agent speech is current, while
    /// draining, or when disabled.
    fn start_preemptive(&mut self, transcript: String) {
        if !self.config.options.preemptive_generation
            || self.current.is_some()
            || self.drain.is_draining()
            || self.llm().is_none()
        {
            return;
        }
        if self
            .preemptive
            .as_ref()
            .is_some_and(|p| p.transcript == transcript)
        {
            return;
        }
        self.cancel_preemptive();
        let handle = SpeechHandle::new(
            SpeechOptions::default().with_allow_interruptions(self.allow_interruptions()),
        );
        let ctx_ids = self.ctx_ids();
        let mut source = self.reply_source(None, None);
        if let Source::Reply { request, .. } = &mut source {
            request
                .chat_ctx
                .push(ChatMessage::new(ChatRole::User, transcript.clone()));
        }
        let turn = match &source {
            Source::Reply { turn, .. } => Arc::clone(turn),
            Source::Say { .. } => Arc::new(OnceLock::new()),
        };
        self.start_generation(handle.clone(), source);
        self.preemptive = Some(Preemptive {
            handle,
            transcript,
            ctx_ids,
            tools: self.agent.tools().names(),
            turn,
        });
    }

    fn cancel_preemptive(&mut self) {
        if let Some(p) = self.preemptive.take() {
            p.handle.force_interrupt();
        }
    }

    fn ctx_ids(&self) -> Vec<String> {
        self.agent
            .chat_ctx()
            .items()
            .iter()
            .map(|i| i.id().to_owned())
            .collect()
    }

    fn on_end_of_turn(&mut self, turn: EndOfTurn) {
        self.turn_transcript.clear();
        if let Some(done) = self.closing_turn.take() {
            let text = turn.transcript.trim();
            if !text.is_empty() {
                self.commit_user_message(ChatMessage::new(ChatRole::User, text));
            }
            let _ = done.send(());
            return;
        }
        if turn.transcript.trim().is_empty() {
            self.cancel_preemptive();
            return;
        }
        if self.drain.is_draining() {
            tracing::warn!("skipping user input, the agent is draining");
            self.cancel_preemptive();
            return;
        }
        let now = Instant::now();
        if let Some(current) = self.current.clone().filter(|_| !self.policy.has_speech()) {
            // The current speech is authorized but has not played its first frame yet ("thinking"): the policy
            // does not know it, so the rule of §5.3 step 3 is applied here (behaviour 56).
            if !current.allow_interruptions() || !self.policy.options().enabled {
                self.cancel_preemptive();
                tracing::debug!(transcript = %turn.transcript, "user turn kept out of the reply path (speech not interruptible)");
                return;
            }
            let _ = current.interrupt();
        } else if let Some(current) = &self.current {
            self.policy.set_interruptible(current.allow_interruptions());
            let verdict = self.policy.user_turn_completed(now, &turn.transcript);
            self.apply(verdict.decision);
            if !verdict.reply {
                self.cancel_preemptive();
                tracing::debug!(transcript = %turn.transcript, "user turn kept out of the reply path");
                return;
            }
        }
        let hooks = Arc::clone(self.agent.hooks());
        let session = self.session.clone();
        let chat_ctx = self.agent.chat_ctx().clone();
        let tx = self.internal_tx.clone();
        let shared = Arc::clone(&self.shared);
        self.outstanding += 1;
        let span = tracing::info_span!("user_turn", agent = %self.agent.id());
        self.tasks.spawn(
            async move {
                let mut message = ChatMessage::new(ChatRole::User, turn.transcript.clone());
                let started = Instant::now();
                let decision = catch_panic(
                    &shared,
                    "on_user_turn_completed",
                    hooks.on_user_turn_completed(&session, &chat_ctx, &mut message),
                )
                .await
                // A panicking hook gets the turn committed without a reply.
                .unwrap_or(TurnDecision::StopResponse);
                let done = TurnHookDone {
                    message,
                    decision,
                    hook_delay: started.elapsed(),
                    turn,
                };
                let _ = tx
                    .send(Internal::Hook(HookDone::Turn(Box::new(done))))
                    .await;
            }
            .instrument(span),
        );
    }

    fn on_hook(&mut self, hook: HookDone) {
        self.outstanding = self.outstanding.saturating_sub(1);
        let HookDone::Turn(done) = hook else {
            return;
        };
        let TurnHookDone {
            mut message,
            decision,
            turn,
            hook_delay,
        } = *done;
        let mut metrics = MessageMetrics::default();
        metrics.transcription_delay = Some(turn.transcription_delay);
        metrics.end_of_turn_delay = Some(turn.end_of_utterance_delay);
        metrics.on_user_turn_completed_delay = Some(hook_delay);
        message.metrics = Some(metrics);
        let ctx_before = self.ctx_ids();
        let preemptive = self.preemptive.take();
        let user_text = message.text_content().unwrap_or_default();
        self.commit_user_message(message);
        let mut eou = turn.eou_metrics();
        eou.on_user_turn_completed_delay = hook_delay;
        let timing = TurnTiming {
            last_speaking_time: turn.last_speaking_time,
            end_of_utterance_delay: turn.end_of_utterance_delay,
            transcription_delay: turn.transcription_delay,
            on_user_turn_completed_delay: hook_delay,
            reported: Arc::default(),
        };
        let reusable = preemptive.filter(|p| {
            let same = p.transcript == user_text
                && p.ctx_ids == ctx_before
                && p.tools == self.agent.tools().names()
                && !p.handle.done();
            if !same {
                tracing::debug!("preemptive reply discarded: transcript, context or tools changed");
                p.handle.force_interrupt();
            }
            same
        });
        if decision == TurnDecision::StopResponse || self.drain.is_draining() {
            if let Some(p) = reusable {
                p.handle.force_interrupt();
            }
            self.shared
                .emit(SessionEvent::MetricsCollected(Metrics::EndOfUtterance(eou)));
            return;
        }
        let (handle, reused) = match reusable {
            Some(p) => {
                let _ = p.turn.set(timing.clone());
                (p.handle, true)
            }
            None => (
                SpeechHandle::new(
                    SpeechOptions::default().with_allow_interruptions(self.allow_interruptions()),
                ),
                false,
            ),
        };
        eou.speech_id = Some(handle.id().to_owned());
        self.shared
            .emit(SessionEvent::MetricsCollected(Metrics::EndOfUtterance(eou)));
        common::announce_speech(&self.shared, &handle, SpeechSource::GenerateReply);
        if reused {
            self.queue.push(handle);
            return;
        }
        let source = self.reply_source(None, None);
        if let Source::Reply { turn, .. } = &source {
            let _ = turn.set(timing);
        }
        self.spawn_speech(handle, source);
    }

    fn allow_interruptions(&self) -> bool {
        self.agent
            .allow_interruptions()
            .unwrap_or(self.config.options.allow_interruptions)
    }

    fn commit_user_message(&mut self, message: ChatMessage) {
        self.commit(ChatItem::Message(message));
    }

    /// Appends `item` to the agent's context, and messages to the session history.
    fn commit(&mut self, item: ChatItem) {
        common::commit(&mut self.agent, &self.shared, item);
    }

    fn reply_source(
        &self,
        instructions: Option<String>,
        tool_choice: Option<ToolChoice>,
    ) -> Source {
        let mut ctx = self.agent.chat_ctx().clone();
        let text = instructions.unwrap_or_else(|| self.agent.instructions().to_owned());
        if !text.is_empty()
            && let Err(e) = ctx.set_instructions(text)
        {
            tracing::warn!(error = %e, "instructions not applied");
        }
        let tools = self.agent.tools();
        let mut request = ChatRequest::new(ctx);
        if !tools.is_empty() {
            request = request.with_tools(tools.definitions());
        }
        if let Some(choice) = tool_choice.clone() {
            request = request.with_tool_choice(choice);
        }
        Source::Reply {
            request,
            tools,
            tool_choice,
            turn: Arc::new(OnceLock::new()),
        }
    }

    /// Queues `handle` and starts its generation.
    fn spawn_speech(&mut self, handle: SpeechHandle, source: Source) {
        self.queue.push(handle.clone());
        self.start_generation(handle, source);
    }

    /// Starts the generation of `handle` (it plays once queued and authorized).
    fn start_generation(&mut self, handle: SpeechHandle, source: Source) {
        self.live.retain(|h| !h.done());
        self.live.push(handle.clone());
        self.outstanding += 1;
        let (tx, rx) = mpsc::channel::<Notice>(16);
        let internal = self.internal_tx.clone();
        // Relay generation notices into the activity's internal channel (and count the generation's end).
        let ctx = GenerationContext {
            handle: handle.clone(),
            hooks: Arc::clone(self.agent.hooks()),
            llm: self.llm(),
            tts: self.tts(),
            audio_output: self.audio_output.clone(),
            text_output: self.text_output.clone(),
            transcript_sync: self.transcript_sync.clone(),
            last_speech_end: Arc::clone(&self.last_speech_end),
            min_consecutive_speech_delay: self.config.options.min_consecutive_speech_delay,
            shared: Arc::clone(&self.shared),
            tool_ctx: ToolContext::new(self.tool_session.clone(), self.shared.userdata(), handle),
            notify: tx,
            text_transforms: self.config.options.tts_text_transforms,
        };
        let span = tracing::info_span!(
            "speech",
            speech_id = %ctx.handle.id(),
            step = ctx.handle.step_index(),
            agent = %self.agent.id()
        );
        let shared = Arc::clone(&self.shared);
        self.tasks.spawn(
            async move {
                let speech = (ctx.handle.clone(), ctx.notify.clone());
                let generation = generation::run(ctx, source);
                common::supervise_speech(
                    &shared,
                    "speech generation",
                    generation,
                    speech,
                    rx,
                    &internal,
                )
                .await;
            }
            .instrument(span),
        );
    }

    /// Authorizes the next speech when none plays.
    fn schedule(&mut self) {
        common::schedule(
            &self.shared,
            &mut self.queue,
            &mut self.current,
            self.drain.suspended,
        );
    }

    async fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::Started { speech_id } => {
                if let Some(c) = self.current.as_ref().filter(|c| c.id() == speech_id) {
                    let can_pause = self
                        .audio_output
                        .as_ref()
                        .is_some_and(|o| o.capabilities().pause);
                    self.policy.agent_speech_started(
                        Instant::now(),
                        c.allow_interruptions(),
                        can_pause,
                    );
                    common::tell_agent_speaking(self.recognition.as_ref(), true).await;
                }
            }
            Notice::PlayoutDone {
                speech_id,
                message,
                interrupted,
                tools_running,
            } => {
                if let Some(m) = message {
                    self.commit(ChatItem::Message(m));
                }
                if self.current.as_ref().is_some_and(|c| c.id() == speech_id) {
                    self.current = None;
                    self.shared.set_current_speech(None);
                    self.policy.agent_speech_ended();
                    self.resume_if_paused();
                    common::tell_agent_speaking(self.recognition.as_ref(), false).await;
                    self.schedule();
                    if self.current.is_none() {
                        self.shared.set_agent_state(if tools_running {
                            AgentState::Thinking
                        } else {
                            AgentState::Listening
                        });
                    }
                }
                let _ = interrupted;
            }
            Notice::ToolsDone {
                handle,
                step,
                tool_choice,
                turn,
            } => self.on_tools_done(&handle, step, tool_choice, turn),
            Notice::Finished => {
                self.outstanding = self.outstanding.saturating_sub(1);
                // A generation (and its tools) ended without scheduling a follow-up: the agent no longer thinks.
                if self.current.is_none()
                    && self.queue.is_empty()
                    && self.shared.agent_state() == AgentState::Thinking
                {
                    self.shared.set_agent_state(AgentState::Listening);
                }
            }
        }
    }

    /// After a tool step: commit calls and outputs, report them, hand off, and follow up (1.7 rules, §6.5).
    fn on_tools_done(
        &mut self,
        parent: &SpeechHandle,
        step: ToolStep,
        tool_choice: Option<ToolChoice>,
        turn: Option<Arc<OnceLock<TurnTiming>>>,
    ) {
        if step.calls.is_empty() {
            return;
        }
        let (_, handoff) = common::commit_tool_step(&mut self.agent, &self.shared, &step);
        if self.abandoned {
            // The waiting tool got its error; the session has moved on to another agent.
            return;
        }
        let handing_off = common::request_handoff(&self.session_tx, handoff);
        if step.stop_response() || !step.has_outputs() {
            return;
        }
        let handle = common::follow_up_speech(parent);
        let step_index = handle.step_index();
        let max = self.config.options.max_tool_steps;
        // The follow-up runs without tools once the step limit is reached ("generating final response"), and
        // during a handoff or drain.
        let choice = if step_index >= max || handing_off || self.drain.is_draining() {
            if step_index >= max {
                tracing::warn!(
                    max,
                    "maximum number of tool steps reached; generating the final response"
                );
            }
            Some(ToolChoice::None)
        } else {
            tool_choice
        };
        common::announce_speech(&self.shared, &handle, SpeechSource::ToolResponse);
        let mut source = self.reply_source(None, choice);
        // The follow-up answers the same user turn: it reports the turn if the parent played nothing.
        if let (Source::Reply { turn: t, .. }, Some(parent_turn)) = (&mut source, turn) {
            *t = parent_turn;
        }
        self.spawn_speech(handle, source);
    }
}

/// How long `commit_user_turn` / `clear_user_turn` may wait for room in the recognition's queue.
const USER_TURN_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The drop guard: an activity dropped without its shutdown (its task aborted) still finishes every speech handle
/// it owned and resumes an output it paused, so no `wait_for_playout` waits forever (after `shutdown` this finds
/// nothing left to do).
impl Drop for Activity {
    fn drop(&mut self) {
        let mut pending: Vec<SpeechHandle> = self.live.drain(..).collect();
        pending.extend(self.queue.drain());
        pending.extend(self.current.take());
        pending.extend(self.preemptive.take().map(|p| p.handle));
        common::finish_speeches(pending);
        self.resume_if_paused();
    }
}

/// The session's interruption options with the agent's overrides.
pub(crate) fn merged_interruption(
    config: &Config,
    agent: &Agent,
) -> crate::interruption::InterruptionOptions {
    let mut o = config.options.interruption.clone();
    let a = agent.turn_overrides();
    if let Some(v) = a.min_interruption_duration {
        o.min_duration = v;
    }
    if let Some(v) = a.min_interruption_words {
        o.min_words = v;
    }
    if let Some(v) = a.resume_false_interruption {
        o.resume_false_interruption = v;
    }
    o
}
