//! The realtime (speech-to-speech) path of an agent's activity.
//!
//! When the agent's language model is a [`RealtimeModel`] (`Agent::builder().realtime_model(..)`), or the session's
//! is ([`AgentSessionBuilder::realtime`](crate::AgentSessionBuilder::realtime)) and the agent does not override it
//! with a chat LLM, the activity runs this actor instead of the cascading STT → LLM → TTS one. It keeps the same
//! contract towards the session (commands, speech handles and their queue, agent/user states, events, handoff):
//!
//! - **Session.** On start, a realtime session is opened with the agent's instructions, tools and chat context; on
//!   close or handoff it is closed. Input frames go to `push_audio` (the plugin resamples).
//! - **Turn detection** (behaviour 115, realtime_llm → vad → stt → manual): with the model's server turn detection
//!   its speech-started/stopped events drive the user state and barge-in, its transcriptions become
//!   `UserInputTranscribed` events and user messages. Otherwise a local VAD/STT [`AudioRecognition`] decides the end
//!   of turn, and the activity commits the input audio (`commit_audio`) and asks for a reply (`generate_reply`).
//!   Server turn detection with `allow_interruptions = false` is refused ([`RealtimeSetupError`], behaviour 66).
//! - **Responses.** Each model response is one speech (the private `response` module): queued, authorized, audio
//!   played through the session's audio output (resampled to its rate), text to the text output; the assistant
//!   message is committed with the model's item id. `say()` needs a TTS (or given audio) and runs through the cascading generation;
//!   `generate_reply(instructions)` maps to the model's `generate_reply`. Preemptive generation never runs.
//! - **Interruption.** User speech (server event, or local VAD per the interruption policy) interrupts the current
//!   speech: output cleared, response cancelled, assistant item truncated to the played audio, played text only
//!   committed.
//! - **Tools.** Calls run through [`crate::tools_exec`] once the speech is authorized; outputs go back into the
//!   model's context and a follow-up response is requested (`max_tool_steps` applies: the last one is asked with
//!   tool choice `none`). A handoff tool closes this realtime session once the activity drained.
//! - **Metrics and errors** become `MetricsCollected(Metrics::Realtime)` and `Error` events; the session keeps
//!   running after a recoverable error.

mod response;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use agents_audio::AudioFrame;
use agents_core::LanguageModel;
use agents_core::agent::Agent;
use agents_core::audio_io::{AudioOutput, TextOutput};
use agents_core::chat::{ChatContext, ChatItem, ChatMessage, ChatRole};
use agents_core::events::{AgentState, Component, ErrorEvent, SessionEvent, SpeechSource};
use agents_core::llm::ToolChoice;
use agents_core::metrics::Metrics;
use agents_core::realtime::{
    RealtimeCapabilities, RealtimeError, RealtimeEvent, RealtimeModel, RealtimeSession,
    RealtimeSessionOptions,
};
use agents_core::session::{SessionError, SessionHandle};
use agents_core::speech::{SpeechHandle, SpeechOptions};
use agents_core::stream::EventStream;
use agents_core::tools::ToolContext;

use crate::activity::common::{self, Hook};
use crate::activity::{ActivityCmd, ActivityDeps, Inbox};
use crate::generation::{self, GenerationContext, Notice, Source};
use crate::interruption::{InterruptionDecision, InterruptionPolicy};
use crate::recognition::{AudioRecognition, EndOfTurn, RecognitionEvent, TurnDetectionMode};
use crate::session::{Config, Shared};
use crate::speech::SpeechQueue;
use crate::tools_exec::ToolStep;

use self::response::{ResponseContext, ResponseInput};

/// How long a requested reply waits for the model to create its response before it is given up (LiveKit waits
/// 5 s for `generation_created`).
const REPLY_CREATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Capacity of one response's inbox (deltas buffered while the speech waits for its turn).
const RESPONSE_INBOX: usize = 4096;

/// Capacity of the input audio pump to the realtime session (20 ms frames: about 1.3 s).
const AUDIO_PUMP: usize = 64;

/// Why a realtime activity cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RealtimeSetupError {
    /// The model detects turns on the server, where barge-in cannot be refused (LiveKit behaviour 66).
    #[error(
        "the realtime model {label} uses server-side turn detection, which requires allow_interruptions=true; \
         disable the model's turn detection or allow interruptions"
    )]
    InterruptionsRequired {
        /// The model's label.
        label: String,
    },
}

/// The realtime model `agent` runs with: its own, or the session's unless the agent sets a chat LLM.
pub(crate) fn model_for(agent: &Agent, config: &Config) -> Option<Arc<dyn RealtimeModel>> {
    match agent.llm() {
        Some(LanguageModel::Realtime(m)) => Some(Arc::clone(m)),
        Some(_) => None,
        None => config.realtime.clone(),
    }
}

/// Checks that `agent` can run with its realtime model (if any) in this session.
///
/// # Errors
/// [`RealtimeSetupError::InterruptionsRequired`] when the model uses server turn detection and interruptions are
/// not allowed.
pub(crate) fn validate(agent: &Agent, config: &Config) -> Result<(), RealtimeSetupError> {
    let Some(model) = model_for(agent, config) else {
        return Ok(());
    };
    let allow = agent
        .allow_interruptions()
        .unwrap_or(config.options.allow_interruptions);
    if model.capabilities().turn_detection && !allow {
        return Err(RealtimeSetupError::InterruptionsRequired {
            label: model.label().to_owned(),
        });
    }
    Ok(())
}

// Notices are built once per speech event, never on a hot path.
#[allow(clippy::large_enum_variant)]
enum Internal {
    Notice(Notice),
    /// A lifecycle hook (on_enter, on_exit, on_user_away) finished.
    Lifecycle,
}

impl From<Notice> for Internal {
    fn from(notice: Notice) -> Self {
        Self::Notice(notice)
    }
}

/// A reply asked of the model, waiting for its `ResponseCreated`.
struct PendingReply {
    handle: SpeechHandle,
    asked_at: Instant,
    user_stopped_at: Option<Instant>,
}

/// A response being routed to its task.
struct Route {
    inbox: mpsc::Sender<ResponseInput>,
    dropped: u64,
}

/// Runs the realtime activity of `agent` with `model` until closed.
pub(crate) async fn run(
    agent: Agent,
    model: Arc<dyn RealtimeModel>,
    deps: ActivityDeps,
    control: Inbox,
    frames: mpsc::Receiver<AudioFrame>,
) {
    if let Err(e) = validate(&agent, &deps.config) {
        deps.shared.emit_error(ErrorEvent::new(
            Component::Realtime,
            model.label(),
            e,
            false,
        ));
        return;
    }
    let mut activity = RealtimeActivity::new(agent, model, deps);
    activity.run(control, frames).await;
}

struct RealtimeActivity {
    agent: Agent,
    model: Arc<dyn RealtimeModel>,
    caps: RealtimeCapabilities,
    shared: Arc<Shared>,
    config: Config,
    session: SessionHandle,
    session_tx: mpsc::Sender<crate::session::SessionCmd>,
    audio_output: Option<Arc<dyn AudioOutput>>,
    text_output: Option<Arc<dyn TextOutput>>,
    /// The session's transcript synchronizer (over the outputs above), for `say` speeches.
    transcript_sync: Option<Arc<crate::transcription::TranscriptSynchronizer>>,
    /// When the last agent speech of this activity ended (for `min_consecutive_speech_delay`).
    last_speech_end: Arc<std::sync::Mutex<Option<Instant>>>,
    rt: Option<Arc<dyn RealtimeSession>>,
    rt_events: Option<EventStream<RealtimeEvent>>,
    audio_pump: Option<mpsc::Sender<AudioFrame>>,
    /// The model's server turn detection decides turns.
    server_turns: bool,
    recognition: Option<AudioRecognition>,
    rec_events: Option<EventStream<RecognitionEvent>>,
    mode: Option<TurnDetectionMode>,
    policy: InterruptionPolicy,
    queue: SpeechQueue,
    current: Option<SpeechHandle>,
    live: Vec<SpeechHandle>,
    pending: VecDeque<PendingReply>,
    routes: HashMap<String, Route>,
    /// Speeches spoken by `say` (their message is also sent into the model's context).
    said: HashSet<String>,
    /// A speech asked with tool choice `none` (last tool step); the agent's choice is restored after it.
    restore_tool_choice: Option<String>,
    /// When the user's last turn ended (local or server turn detection).
    user_stopped_at: Option<Instant>,
    tasks: JoinSet<()>,
    outstanding: usize,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    /// Suspension and drain.
    drain: common::DrainState,
    frames_dropped: u64,
}

impl RealtimeActivity {
    fn new(agent: Agent, model: Arc<dyn RealtimeModel>, deps: ActivityDeps) -> Self {
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let policy =
            InterruptionPolicy::new(crate::activity::merged_interruption(&deps.config, &agent));
        let caps = model.capabilities();
        Self {
            agent,
            model,
            caps,
            shared: deps.shared,
            config: deps.config,
            session: deps.session,
            session_tx: deps.session_tx,
            audio_output: deps.audio_output,
            text_output: deps.text_output,
            transcript_sync: deps.transcript_sync,
            last_speech_end: Arc::default(),
            rt: None,
            rt_events: None,
            audio_pump: None,
            server_turns: false,
            recognition: None,
            rec_events: None,
            mode: None,
            policy,
            queue: SpeechQueue::new(),
            current: None,
            live: Vec::new(),
            pending: VecDeque::new(),
            routes: HashMap::new(),
            said: HashSet::new(),
            restore_tool_choice: None,
            user_stopped_at: None,
            tasks: JoinSet::new(),
            outstanding: 0,
            internal_tx,
            internal_rx,
            drain: common::DrainState::default(),
            frames_dropped: 0,
        }
    }

    fn label(&self) -> String {
        self.model.label().to_owned()
    }

    fn allow_interruptions(&self) -> bool {
        self.agent
            .allow_interruptions()
            .unwrap_or(self.config.options.allow_interruptions)
    }

    fn report(&self, e: RealtimeError, recoverable: bool) {
        self.shared.emit_error(ErrorEvent::new(
            Component::Realtime,
            self.label(),
            e,
            recoverable,
        ));
    }

    /// Opens the realtime session with the agent's instructions, tools and context.
    async fn open(&mut self) {
        let mut options = RealtimeSessionOptions::default();
        let instructions = self.agent.instructions();
        if !instructions.is_empty() {
            options.instructions = Some(instructions.to_owned());
        }
        options.tools = self.agent.tools().definitions();
        options.chat_ctx = self.agent.chat_ctx().clone();
        match self.model.session(options).await {
            Ok(conn) => {
                let rt = conn.session;
                let (tx, mut rx) = mpsc::channel::<AudioFrame>(AUDIO_PUMP);
                let pump_rt = Arc::clone(&rt);
                let shared = Arc::clone(&self.shared);
                let label = self.label();
                // Input audio goes to the model from its own task, so a slow socket never stalls the activity.
                self.tasks.spawn(async move {
                    let mut reported = false;
                    while let Some(frame) = rx.recv().await {
                        match pump_rt.push_audio(frame).await {
                            Ok(()) => {}
                            Err(RealtimeError::SessionClosed) => return,
                            Err(e) if !reported => {
                                reported = true;
                                shared.emit_error(ErrorEvent::new(
                                    Component::Realtime,
                                    label.clone(),
                                    e,
                                    true,
                                ));
                            }
                            Err(e) => tracing::debug!(error = %e, "realtime push_audio"),
                        }
                    }
                });
                self.audio_pump = Some(tx);
                self.rt = Some(rt);
                self.rt_events = Some(conn.events);
            }
            Err(e) => self.report(e, false),
        }
    }

    /// Turn detection (behaviour 115): the model's server detection when it has one and no other mode was asked,
    /// otherwise local VAD/STT recognition (vad → stt → manual).
    fn start_recognition(&mut self) {
        let vad = self
            .agent
            .vad()
            .cloned()
            .or_else(|| self.config.vad.clone());
        let stt = self
            .agent
            .stt()
            .cloned()
            .or_else(|| self.config.stt.clone());
        let options = &self.config.options;
        let mode = match options.turn_detection {
            Some(m) => m,
            None => TurnDetectionMode::resolve(
                self.caps.turn_detection && self.rt.is_some(),
                vad.is_some(),
                stt.is_some(),
            ),
        };
        if mode == TurnDetectionMode::RealtimeLlm {
            if self.caps.turn_detection {
                self.server_turns = true;
                self.mode = Some(mode);
            } else {
                tracing::warn!(
                    model = %self.model.label(),
                    "turn detection realtime_llm but the model has no server turn detection; none used"
                );
            }
            return;
        }
        if self.caps.turn_detection {
            tracing::warn!(
                ?mode,
                "the realtime model's server turn detection stays on; the local mode is also used"
            );
        }
        self.mode = Some(mode);
        if vad.is_none() && stt.is_none() {
            return;
        }
        let Ok(stt) = common::streaming_stt(&self.shared, stt, vad.as_ref()) else {
            return;
        };
        if let Some((r, events)) =
            common::start_recognition(&self.shared, &self.config, &self.agent, mode, vad, stt)
        {
            self.recognition = Some(r);
            self.rec_events = Some(events);
        }
    }

    async fn run(&mut self, mut control: Inbox, mut frames: mpsc::Receiver<AudioFrame>) {
        self.open().await;
        self.start_recognition();
        self.spawn_hook(Hook::Enter);
        loop {
            let reply_deadline = self
                .pending
                .front()
                .map(|p| p.asked_at + REPLY_CREATION_TIMEOUT);
            tokio::select! {
                cmd = control.recv() => match cmd {
                    Some(ActivityCmd::Close) | None => break,
                    Some(cmd) => self.on_command(cmd).await,
                },
                Some(frame) = frames.recv() => self.on_frame(frame),
                ev = common::next_of(&mut self.rt_events) => match ev {
                    Some(ev) => self.on_realtime(ev).await,
                    None => self.on_realtime_ended(),
                },
                ev = common::next_of(&mut self.rec_events) => match ev {
                    Some(ev) => self.on_recognition(ev).await,
                    None => self.rec_events = None,
                },
                Some(internal) = self.internal_rx.recv() => match internal {
                    Internal::Notice(n) => self.on_notice(n).await,
                    Internal::Lifecycle => self.outstanding = self.outstanding.saturating_sub(1),
                },
                () = common::sleep_until_opt(reply_deadline) => self.expire_pending(),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
            self.schedule();
            if self.drain.step_done(self.current.as_ref(), self.idle()) {
                break;
            }
        }
        // The realtime session is closed before the drain is reported: the session drops this activity (and
        // starts the next agent) as soon as it hears about it.
        let report = self.drain.take_report();
        self.shutdown().await;
        report.send(&self.agent);
    }

    fn idle(&self) -> bool {
        self.outstanding == 0
            && self.current.is_none()
            && self.queue.is_empty()
            && self.pending.is_empty()
    }

    async fn shutdown(&mut self) {
        let mut all: Vec<SpeechHandle> = self.live.drain(..).collect();
        all.extend(self.queue.drain());
        all.extend(self.current.take());
        all.extend(self.pending.drain(..).map(|p| p.handle));
        let close_inputs = || {
            self.routes.clear();
            self.audio_pump = None;
        };
        common::abort_speeches(all, close_inputs, &mut self.tasks).await;
        self.shared.set_current_speech(None);
        if let Some(rt) = self.rt.take() {
            match tokio::time::timeout(Duration::from_secs(2), rt.close()).await {
                Ok(Ok(())) | Ok(Err(RealtimeError::SessionClosed)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "realtime session close"),
                Err(_) => tracing::warn!("realtime session did not close in 2 s"),
            }
        }
        self.rt_events = None;
        if let Some(rec) = self.recognition.take() {
            rec.aclose().await;
        }
        if self.frames_dropped > 0 {
            tracing::debug!(
                dropped = self.frames_dropped,
                "input frames the realtime session could not take"
            );
        }
    }

    fn spawn_hook(&mut self, hook: Hook) {
        self.outstanding += 1;
        let done = (self.internal_tx.clone(), Internal::Lifecycle);
        common::spawn_hook(
            &mut self.tasks,
            &self.agent,
            &self.session,
            &self.shared,
            hook,
            done,
        );
    }

    async fn on_command(&mut self, cmd: ActivityCmd) {
        match cmd {
            ActivityCmd::Say { request, handle } => {
                let tts = self
                    .agent
                    .tts()
                    .cloned()
                    .or_else(|| self.config.tts.clone());
                if request.audio.is_none() && tts.is_none() {
                    // The session refuses this already; an agent switched under the request lands here.
                    self.shared.emit_error(ErrorEvent::new(
                        Component::Tts,
                        "none",
                        SessionError::NoTts,
                        true,
                    ));
                    common::finish_speeches([handle]);
                    return;
                }
                self.said.insert(handle.id().to_owned());
                let source = Source::Say {
                    text: request.text,
                    audio: request.audio,
                    add_to_chat_ctx: request.add_to_chat_ctx,
                };
                self.queue.push(handle.clone());
                self.start_say(handle, source);
            }
            ActivityCmd::Reply { request, handle } => {
                if let Some(input) = request.user_input.as_deref() {
                    let message = ChatMessage::new(ChatRole::User, input);
                    self.commit(ChatItem::Message(message.clone()));
                    self.sync_to_model(vec![ChatItem::Message(message)]).await;
                }
                if let Some(choice) = request.tool_choice {
                    self.set_tool_choice(choice, handle.id()).await;
                }
                self.ask_reply(handle, request.instructions).await;
            }
            ActivityCmd::Interrupt(reply) => {
                let result = self.interrupt_all();
                let _ = reply.send(result);
            }
            ActivityCmd::UserTurn(commit) => self.on_user_turn_command(commit).await,
            ActivityCmd::Abandon(done) => {
                // A handoff while suspended under a task: this agent never speaks again.
                common::finish_speeches(self.queue.drain());
                common::finish_speeches(self.pending.drain(..).map(|p| p.handle));
                Box::pin(self.on_command(ActivityCmd::Drain(done))).await;
            }
            ActivityCmd::Drain(done) => {
                // A suspended agent that drains (session closing, handoff) plays its queue out.
                if self.drain.drain(done) {
                    self.spawn_hook(Hook::Exit);
                }
            }
            ActivityCmd::DrainInto(ctx) => {
                let done = self.drain.hand_back(ctx);
                Box::pin(self.on_command(ActivityCmd::Drain(done))).await;
            }
            ActivityCmd::Suspend(ack) => {
                self.drain.suspend(ack);
            }
            ActivityCmd::Resume { task_ctx, then } => {
                let before: std::collections::HashSet<String> = self
                    .agent
                    .chat_ctx()
                    .items()
                    .iter()
                    .map(|i| i.id().to_owned())
                    .collect();
                let mut ctx = self.agent.chat_ctx().clone();
                agents_core::task::merge_task_context(&mut ctx, &task_ctx);
                let added: Vec<ChatItem> = ctx
                    .items()
                    .iter()
                    .filter(|i| !before.contains(i.id()))
                    .cloned()
                    .collect();
                self.agent.update_chat_ctx(&ctx);
                // The model's server-side conversation learns what the task collected.
                self.sync_to_model(added).await;
                self.drain.suspended = false;
                then();
            }
            ActivityCmd::SetOutputs { audio, text, sync } => {
                self.audio_output = audio;
                self.text_output = text;
                self.transcript_sync = sync;
            }
            // The model transcribes the user's audio itself; there is no local turn to commit on close.
            ActivityCmd::CloseUserTurn(done) => {
                let _ = done.send(());
            }
            ActivityCmd::Close => {}
        }
    }

    /// Asks the model for a response that will play as `handle`.
    async fn ask_reply(&mut self, handle: SpeechHandle, instructions: Option<String>) {
        let Some(rt) = self.rt.clone() else {
            self.report(RealtimeError::SessionClosed, true);
            handle.force_interrupt();
            handle.mark_done();
            return;
        };
        match model_call(rt.generate_reply(instructions)).await {
            Ok(()) => self.pending.push_back(PendingReply {
                handle,
                asked_at: Instant::now(),
                user_stopped_at: self.user_stopped_at,
            }),
            Err(e) => {
                self.report(e, true);
                handle.force_interrupt();
                handle.mark_done();
            }
        }
    }

    async fn set_tool_choice(&mut self, choice: ToolChoice, speech_id: &str) {
        if let Some(rt) = &self.rt {
            match model_call(rt.update_tool_choice(choice)).await {
                Ok(()) => self.restore_tool_choice = Some(speech_id.to_owned()),
                Err(e) => self.report(e, true),
            }
        }
    }

    /// Replies asked but never created by the model are given up.
    fn expire_pending(&mut self) {
        let now = Instant::now();
        while let Some(p) = self
            .pending
            .front()
            .filter(|p| now >= p.asked_at + REPLY_CREATION_TIMEOUT)
        {
            tracing::warn!(speech_id = %p.handle.id(), "generate_reply timed out waiting for the model's response");
            if let Some(p) = self.pending.pop_front() {
                p.handle.force_interrupt();
                p.handle.mark_done();
                self.report(
                    RealtimeError::Protocol {
                        reason: "generate_reply timed out waiting for the response to be created"
                            .to_owned(),
                    },
                    true,
                );
            }
        }
    }

    async fn on_user_turn_command(&mut self, commit: bool) {
        if let Some(rec) = &self.recognition {
            let result = if commit {
                rec.commit_user_turn().await
            } else {
                rec.clear_user_turn().await
            };
            if result.is_err() {
                tracing::warn!("audio recognition closed; user turn command ignored");
            }
            if commit {
                return;
            }
        }
        let Some(rt) = self.rt.clone() else {
            tracing::warn!("commit/clear_user_turn without a realtime session");
            return;
        };
        if commit {
            self.user_stopped_at = Some(Instant::now());
            self.commit_turn_and_reply(&rt).await;
        } else if let Err(e) = model_call(rt.clear_audio()).await {
            self.report(e, true);
        }
    }

    /// Local end of turn: interrupt what plays, commit the buffered audio, ask for a reply.
    async fn commit_turn_and_reply(&mut self, rt: &Arc<dyn RealtimeSession>) {
        if let Some(c) = &self.current {
            if !c.allow_interruptions() {
                tracing::warn!(
                    "skipping reply to user input, current speech generation cannot be interrupted"
                );
                return;
            }
            let _ = c.interrupt();
        }
        if !self.routes.is_empty() {
            // A response is still active on the server: cancel it now, or the reply asked below is refused.
            if let Err(e) = model_call(rt.interrupt()).await {
                tracing::debug!(error = %e, "realtime interrupt before a new turn");
            }
        }
        if let Err(e) = model_call(rt.commit_audio()).await {
            self.report(e, true);
            return;
        }
        let handle = SpeechHandle::new(
            SpeechOptions::default().with_allow_interruptions(self.allow_interruptions()),
        );
        common::announce_speech(&self.shared, &handle, SpeechSource::GenerateReply);
        self.ask_reply(handle, None).await;
    }

    /// `session.interrupt()`: every speech (current, queued, awaiting its response), refused when one of them does
    /// not allow interruptions.
    fn interrupt_all(&mut self) -> Result<(), SessionError> {
        common::interrupt_speeches(
            self.current
                .iter()
                .chain(self.queue.iter())
                .chain(self.pending.iter().map(|p| &p.handle)),
        )
    }

    /// Barge-in: interrupts the current speech and the queued ones that allow it.
    fn barge_in(&mut self) {
        let all: Vec<SpeechHandle> = self
            .current
            .iter()
            .chain(self.queue.iter())
            .filter(|h| !h.done() && h.allow_interruptions())
            .cloned()
            .collect();
        for h in all {
            let _ = h.interrupt();
        }
    }

    fn on_frame(&mut self, frame: AudioFrame) {
        if common::input_blocked(self.current.as_ref()) {
            return;
        }
        if let Some(rec) = &self.recognition
            && rec.try_push_frame(frame.clone()).is_err()
        {
            self.frames_dropped += 1;
        }
        if let Some(pump) = &self.audio_pump
            && pump.try_send(frame).is_err()
        {
            self.frames_dropped += 1;
        }
    }

    async fn on_realtime(&mut self, ev: RealtimeEvent) {
        match ev {
            RealtimeEvent::InputSpeechStarted if self.server_turns => {
                self.shared.set_user_state(agents_core::UserState::Speaking);
                self.barge_in();
            }
            RealtimeEvent::InputSpeechStopped {
                user_transcription_enabled,
            } => {
                if self.server_turns {
                    self.user_stopped_at = Some(Instant::now());
                    self.shared
                        .set_user_state(agents_core::UserState::Listening);
                }
                if user_transcription_enabled {
                    // LiveKit sends an empty interim so UIs show the user turn is being transcribed.
                    self.emit_transcript(String::new(), false);
                }
            }
            RealtimeEvent::InputAudioTranscription {
                item_id,
                transcript,
                is_final,
            } => {
                self.emit_transcript(transcript.clone(), is_final);
                if is_final && !transcript.trim().is_empty() {
                    let mut message = ChatMessage::new(ChatRole::User, transcript);
                    message.id = item_id;
                    self.commit(ChatItem::Message(message));
                }
            }
            RealtimeEvent::ResponseCreated {
                response_id,
                user_initiated,
            } => self.on_response_created(response_id, user_initiated),
            RealtimeEvent::TextDelta {
                response_id,
                item_id,
                delta,
            } => self.route(&response_id, ResponseInput::Text { item_id, delta }),
            RealtimeEvent::AudioDelta {
                response_id,
                item_id,
                frame,
            } => self.route(&response_id, ResponseInput::Audio { item_id, frame }),
            RealtimeEvent::FunctionCall { response_id, call } => {
                self.route(&response_id, ResponseInput::Call(call));
            }
            RealtimeEvent::ResponseDone {
                response_id,
                status,
                metrics,
            } => {
                self.route(&response_id, ResponseInput::Done(status));
                if let Some(route) = self.routes.remove(&response_id)
                    && route.dropped > 0
                {
                    tracing::warn!(
                        dropped = route.dropped,
                        %response_id,
                        "realtime deltas dropped: the response could not keep up"
                    );
                }
                if let Some(m) = metrics {
                    self.shared
                        .emit(SessionEvent::MetricsCollected(Metrics::Realtime(m)));
                }
            }
            RealtimeEvent::Reconnected => {
                tracing::info!(model = %self.model.label(), "realtime session reconnected");
            }
            RealtimeEvent::Error { error, recoverable } => self.report(error, recoverable),
            _ => {}
        }
    }

    fn on_realtime_ended(&mut self) {
        self.rt_events = None;
        self.routes.clear();
        self.audio_pump = None;
        if self.rt.take().is_some() {
            self.report(RealtimeError::SessionClosed, false);
        }
        for p in self.pending.drain(..) {
            p.handle.force_interrupt();
            p.handle.mark_done();
        }
    }

    fn emit_transcript(&self, transcript: String, is_final: bool) {
        self.shared.emit(SessionEvent::UserInputTranscribed {
            transcript,
            is_final,
            language: None,
            speaker_id: None,
        });
    }

    fn route(&mut self, response_id: &str, input: ResponseInput) {
        if let Some(route) = self.routes.get_mut(response_id)
            && route.inbox.try_send(input).is_err()
        {
            route.dropped += 1;
        }
    }

    fn on_response_created(&mut self, response_id: String, user_initiated: bool) {
        let Some(rt) = self.rt.clone() else {
            return;
        };
        // A reply we asked for (generate_reply, end of turn, tool follow-up) takes its response in order; one the
        // server started by itself (server turn detection, auto tool reply) gets a new speech.
        let asked = if user_initiated || !self.server_turns {
            self.pending.pop_front()
        } else {
            None
        };
        let (handle, user_stopped_at) = match asked {
            Some(p) => (p.handle, p.user_stopped_at),
            None => {
                let handle = SpeechHandle::new(
                    SpeechOptions::default().with_allow_interruptions(self.allow_interruptions()),
                );
                common::announce_speech(&self.shared, &handle, SpeechSource::GenerateReply);
                (handle, self.user_stopped_at)
            }
        };
        let (inbox, rx) = mpsc::channel(RESPONSE_INBOX);
        self.routes
            .insert(response_id.clone(), Route { inbox, dropped: 0 });
        self.live.retain(|h| !h.done());
        self.live.push(handle.clone());
        self.queue.push(handle.clone());
        self.outstanding += 1;
        let (tx, notices) = mpsc::channel::<Notice>(16);
        let ctx = ResponseContext {
            handle: handle.clone(),
            rt,
            label: self.label(),
            truncation: self.caps.message_truncation,
            audio_output: self.audio_output.clone(),
            text_output: self.text_output.clone(),
            shared: Arc::clone(&self.shared),
            tools: self.agent.tools(),
            tool_ctx: ToolContext::new(self.session.clone(), self.shared.userdata(), handle),
            notify: tx,
            user_stopped_at,
        };
        let internal = self.internal_tx.clone();
        let shared = Arc::clone(&self.shared);
        let span =
            tracing::info_span!("realtime_response", %response_id, speech_id = %ctx.handle.id());
        self.tasks.spawn(
            async move {
                let speech = (ctx.handle.clone(), ctx.notify.clone());
                let response = response::run(ctx, rx);
                common::supervise_speech(
                    &shared,
                    "realtime response",
                    response,
                    speech,
                    notices,
                    &internal,
                )
                .await;
            }
            .instrument(span),
        );
    }

    /// `say` with a TTS (or given audio): the cascading generation plays it.
    fn start_say(&mut self, handle: SpeechHandle, source: Source) {
        self.live.retain(|h| !h.done());
        self.live.push(handle.clone());
        self.outstanding += 1;
        let (tx, rx) = mpsc::channel::<Notice>(16);
        let internal = self.internal_tx.clone();
        let ctx = GenerationContext {
            handle: handle.clone(),
            hooks: Arc::clone(self.agent.hooks()),
            llm: None,
            tts: self
                .agent
                .tts()
                .cloned()
                .or_else(|| self.config.tts.clone()),
            audio_output: self.audio_output.clone(),
            text_output: self.text_output.clone(),
            shared: Arc::clone(&self.shared),
            tool_ctx: ToolContext::new(self.session.clone(), self.shared.userdata(), handle),
            notify: tx,
            text_transforms: self.config.options.tts_text_transforms,
            transcript_sync: self.transcript_sync.clone(),
            last_speech_end: Arc::clone(&self.last_speech_end),
            min_consecutive_speech_delay: self.config.options.min_consecutive_speech_delay,
        };
        let shared = Arc::clone(&self.shared);
        self.tasks.spawn(async move {
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
        });
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
                    // Realtime audio cannot be paused and resumed: a barge-in always interrupts.
                    self.policy.agent_speech_started(
                        Instant::now(),
                        c.allow_interruptions(),
                        false,
                    );
                    if let Some(rec) = &self.recognition {
                        common::tell_agent_speaking(Some(rec), true).await;
                    }
                }
            }
            Notice::PlayoutDone {
                speech_id,
                message,
                interrupted: _,
                tools_running,
            } => {
                // Removed on every playout end (committed or not), so the set never grows.
                let said = self.said.remove(&speech_id);
                if let Some(m) = message {
                    self.commit(ChatItem::Message(m.clone()));
                    if said {
                        self.sync_to_model(vec![ChatItem::Message(m)]).await;
                    }
                }
                if self.restore_tool_choice.as_deref() == Some(speech_id.as_str()) {
                    self.restore_tool_choice = None;
                    if let Some(rt) = &self.rt
                        && let Err(e) = model_call(rt.update_tool_choice(ToolChoice::Auto)).await
                    {
                        self.report(e, true);
                    }
                }
                if self.current.as_ref().is_some_and(|c| c.id() == speech_id) {
                    self.current = None;
                    self.shared.set_current_speech(None);
                    self.policy.agent_speech_ended();
                    if let Some(rec) = &self.recognition {
                        common::tell_agent_speaking(Some(rec), false).await;
                    }
                    self.schedule();
                    if self.current.is_none() {
                        self.shared.set_agent_state(if tools_running {
                            AgentState::Thinking
                        } else {
                            AgentState::Listening
                        });
                    }
                }
            }
            Notice::ToolsDone { handle, step, .. } => self.on_tools_done(&handle, step).await,
            Notice::Finished => {
                self.outstanding = self.outstanding.saturating_sub(1);
                // A response (and its tools) ended without a follow-up: the agent no longer thinks.
                if self.current.is_none()
                    && self.queue.is_empty()
                    && self.pending.is_empty()
                    && self.shared.agent_state() == AgentState::Thinking
                {
                    self.shared.set_agent_state(AgentState::Listening);
                }
            }
        }
    }

    /// After a tool step: commit calls and outputs, hand the outputs to the model, hand off, follow up.
    async fn on_tools_done(&mut self, parent: &SpeechHandle, step: ToolStep) {
        if step.calls.is_empty() {
            return;
        }
        let (outputs, handoff) = common::commit_tool_step(&mut self.agent, &self.shared, &step);
        let handing_off = common::request_handoff(&self.session_tx, handoff);
        if !outputs.is_empty() {
            self.sync_to_model(outputs).await;
        }
        // The new agent speaks after a handoff; the model replies by itself when it says so.
        if step.stop_response()
            || !step.has_outputs()
            || handing_off
            || self.drain.is_draining()
            || self.caps.auto_tool_reply_generation
        {
            return;
        }
        let handle = common::follow_up_speech(parent);
        if handle.step_index() >= self.config.options.max_tool_steps {
            tracing::warn!(
                max = self.config.options.max_tool_steps,
                "maximum number of tool steps reached; generating the final response"
            );
            self.set_tool_choice(ToolChoice::None, handle.id()).await;
        }
        common::announce_speech(&self.shared, &handle, SpeechSource::ToolResponse);
        self.ask_reply(handle, None).await;
    }

    /// Adds `items` to the model's conversation (its mirror plus the items).
    async fn sync_to_model(&mut self, items: Vec<ChatItem>) {
        let Some(rt) = self.rt.clone() else {
            return;
        };
        let mut ctx: ChatContext = rt.chat_ctx();
        for item in items {
            if !ctx.items().iter().any(|i| i.id() == item.id()) {
                ctx.push(item);
            }
        }
        if let Err(e) = model_call(rt.update_chat_ctx(&ctx)).await {
            self.report(e, true);
        }
    }

    /// Appends `item` to the agent's context, and messages to the session history.
    fn commit(&mut self, item: ChatItem) {
        common::commit(&mut self.agent, &self.shared, item);
    }

    async fn on_recognition(&mut self, ev: RecognitionEvent) {
        let now = Instant::now();
        match ev {
            RecognitionEvent::UserStartedSpeaking => self.policy.user_speech_started(),
            RecognitionEvent::UserStoppedSpeaking { .. } => self.policy.user_speech_ended(now),
            RecognitionEvent::VadInference(p)
                if p.speaking && self.mode == Some(TurnDetectionMode::Vad) =>
            {
                let d = self.policy.vad_inference(now, p.speech_duration);
                self.apply(d);
            }
            RecognitionEvent::InterimTranscript(t) => {
                // The model's own transcription is reported instead when it has one.
                if !self.caps.user_transcription {
                    self.emit_transcript(t.text().to_owned(), false);
                }
                let d = self.policy.transcript(now, t.text(), false);
                self.apply(d);
            }
            RecognitionEvent::FinalTranscript(t) => {
                if !self.caps.user_transcription {
                    self.emit_transcript(t.text().to_owned(), true);
                }
                let d = self.policy.transcript(now, t.text(), true);
                self.apply(d);
            }
            RecognitionEvent::EndOfTurn(turn) => self.on_end_of_turn(turn).await,
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

    fn apply(&mut self, decision: InterruptionDecision) {
        if matches!(
            decision,
            InterruptionDecision::Interrupt | InterruptionDecision::Pause
        ) && let Some(c) = &self.current
        {
            let _ = c.interrupt();
        }
    }

    async fn on_end_of_turn(&mut self, turn: EndOfTurn) {
        if self.drain.is_draining() {
            tracing::warn!("skipping user input, the agent is draining");
            return;
        }
        self.user_stopped_at = Some(turn.last_speaking_time);
        let mut eou = turn.eou_metrics();
        eou.speech_id = None;
        self.shared
            .emit(SessionEvent::MetricsCollected(Metrics::EndOfUtterance(eou)));
        // Without the model's transcription, the local STT's transcript is the user message.
        if !self.caps.user_transcription && !turn.transcript.trim().is_empty() {
            self.commit(ChatItem::Message(ChatMessage::new(
                ChatRole::User,
                turn.transcript.clone(),
            )));
        }
        if self.mode == Some(TurnDetectionMode::Manual) && !turn.manual {
            return;
        }
        let Some(rt) = self.rt.clone() else {
            return;
        };
        self.commit_turn_and_reply(&rt).await;
    }
}

/// How long one call to the realtime model (generate, interrupt, commit, context or tool-choice update) may hold
/// the activity's loop, which is also the only reader of the model's events.
const MODEL_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A model call bounded by [`MODEL_CALL_TIMEOUT`]; running out of time reads as a protocol error.
async fn model_call(
    call: impl std::future::Future<Output = Result<(), RealtimeError>>,
) -> Result<(), RealtimeError> {
    tokio::time::timeout(MODEL_CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(RealtimeError::Protocol {
                reason: format!(
                    "the realtime model did not answer within {} s",
                    MODEL_CALL_TIMEOUT.as_secs()
                ),
            })
        })
}

/// The drop guard: an activity dropped without its shutdown (its task aborted) still finishes its speech handles.
impl Drop for RealtimeActivity {
    fn drop(&mut self) {
        let mut all: Vec<SpeechHandle> = self.live.drain(..).collect();
        all.extend(self.queue.drain());
        all.extend(self.current.take());
        all.extend(self.pending.drain(..).map(|p| p.handle));
        common::finish_speeches(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_error_names_the_model_and_the_fix() {
        let e = RealtimeSetupError::InterruptionsRequired {
            label: "openai.realtime".to_owned(),
        };
        let text = e.to_string();
        assert!(text.contains("openai.realtime"));
        assert!(text.contains("allow_interruptions=true"));
    }
}
