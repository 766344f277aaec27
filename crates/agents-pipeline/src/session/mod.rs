//! [`AgentSession`]: the voice session, as actors.
//!
//! - The **session task** owns the I/O and the current activity: it forwards input audio frames to the activity,
//!   routes `say` / `generate_reply` / `interrupt`, runs handoffs (old agent drained, then the new one started),
//!   I/O replacement after start, and the bounded close with its [`CloseReason`] (application close, shutdown, the
//!   end of the audio input, an unrecoverable error), which first gives the user's turn in progress up to
//!   [`SessionOptions::session_close_transcript_timeout`] for its final transcript.
//! - One **activity task** per agent (the private `activity` module) owns the speech queue, audio recognition, the
//!   interruption policy, the agent's chat context and the tool loop.
//! - One **generation task** per speech ([`crate::generation`]) runs LLM → TTS → output.
//!
//! Commands travel on bounded channels; the few values readable from any thread (states, history, current speech)
//! sit behind a `std` mutex that is never held across an `.await`. Every task is owned: dropping the last
//! [`AgentSession`] clone aborts the session task, whose drop aborts the activity, whose drop aborts its
//! generations.

mod task;

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use agents_audio::AudioFrame;
use agents_core::agent::Agent;
use agents_core::audio_io::{AudioInput, AudioOutput, SessionIo, TextOutput};
use agents_core::chat::{ChatContext, ChatItem};
use agents_core::events::{
    AgentState, CloseReason, ErrorEvent, SessionEvent, SpeechSource, UserState,
};
use agents_core::llm::{Llm, ToolChoice};
use agents_core::realtime::RealtimeModel;
use agents_core::session::{
    ReplyRequest, SayRequest, SessionControl, SessionError, SessionHandle, Userdata,
};
use agents_core::speech::{SpeechHandle, SpeechOptions};
use agents_core::stream::EventStream;
use agents_core::stt::Stt;
use agents_core::task::{ErasedTask, TaskError, TaskOutput};
use agents_core::tts::Tts;
use agents_core::vad::Vad;

use crate::activity::{ActivityCmd, ActivityDeps, ActivityHandle};
use crate::interruption::InterruptionOptions;
use crate::recognition::{EndpointingOptions, TurnDetectionMode, TurnDetector};

/// Options of a session (LiveKit 1.7 defaults unless noted).
#[derive(Clone)]
#[non_exhaustive]
pub struct SessionOptions {
    /// Whether speech may be interrupted by default (agents and requests may override). Default true.
    pub allow_interruptions: bool,
    /// Interruption policy options (min duration 0.5 s, false-interruption resume after 2 s...).
    pub interruption: InterruptionOptions,
    /// Endpointing delays.
    pub endpointing: EndpointingOptions,
    /// Turn detection mode; `None` resolves vad → stt → manual from the components given.
    pub turn_detection: Option<TurnDetectionMode>,
    /// End-of-turn model.
    pub turn_detector: Option<Arc<dyn TurnDetector>>,
    /// Tool steps before the final answer is forced without tools. Default 3.
    pub max_tool_steps: u32,
    /// Silence after which the user is away; `None` disables. Default 15 s.
    pub user_away_timeout: Option<Duration>,
    /// How long `close()` lets queued speech drain before cancelling it. Default 10 s.
    pub close_timeout: Duration,
    /// On close, how long the user's turn in progress gets for its final transcript to be committed to the
    /// history (no reply is generated). Default 2 s (LiveKit 1.7 `session_close_transcript_timeout`).
    pub session_close_transcript_timeout: Duration,
    /// Close the session (`CloseReason::ParticipantDisconnected`) when the audio input ends by itself. Default
    /// true, as LiveKit RoomIO's `close_on_disconnect`. Replacing or detaching the input never closes.
    pub close_on_input_end: bool,
    /// Start the LLM on a final transcript before the turn is committed, and reuse the reply when the committed
    /// turn has the same transcript, context and tools (LiveKit 1.7 §6.4). Default false (see docs/turn-taking.md).
    pub preemptive_generation: bool,
    /// Strip markdown and emoji from the text sent to the TTS (LiveKit 1.7 `tts_text_transforms`). Default true.
    pub tts_text_transforms: bool,
    /// Release the agent's text to the text output in step with its audio playback (LiveKit
    /// `use_tts_aligned_transcript` / `sync_transcription`, §6.9). Default true; with false the text goes out as fast
    /// as it arrives. Either way the words committed for an interrupted speech are those the transcript
    /// synchronizer counts as played (see docs/session.md, "Output path").
    pub sync_transcription: bool,
    /// Minimum gap between the end of one agent speech and the start of the next (LiveKit 1.7
    /// `min_consecutive_speech_delay`). Default zero.
    pub min_consecutive_speech_delay: Duration,
    /// Capacity of the command channels. Default 64.
    pub command_capacity: usize,
    /// Capacity of the event broadcast (slow subscribers skip what they missed). Default 512.
    pub event_capacity: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            allow_interruptions: true,
            interruption: InterruptionOptions::default(),
            endpointing: EndpointingOptions::default(),
            turn_detection: None,
            turn_detector: None,
            max_tool_steps: 3,
            user_away_timeout: Some(Duration::from_secs(15)),
            close_timeout: Duration::from_secs(10),
            session_close_transcript_timeout: Duration::from_secs(2),
            close_on_input_end: true,
            preemptive_generation: false,
            tts_text_transforms: true,
            sync_transcription: true,
            min_consecutive_speech_delay: Duration::ZERO,
            command_capacity: 64,
            event_capacity: 512,
        }
    }
}

impl SessionOptions {
    /// Sets `allow_interruptions`.
    pub fn with_allow_interruptions(mut self, v: bool) -> Self {
        self.allow_interruptions = v;
        self
    }
    /// Sets the interruption options.
    pub fn with_interruption(mut self, v: InterruptionOptions) -> Self {
        self.interruption = v;
        self
    }
    /// Sets the endpointing options.
    pub fn with_endpointing(mut self, v: EndpointingOptions) -> Self {
        self.endpointing = v;
        self
    }
    /// Sets the turn detection mode.
    pub fn with_turn_detection(mut self, v: TurnDetectionMode) -> Self {
        self.turn_detection = Some(v);
        self
    }
    /// Sets the end-of-turn model.
    pub fn with_turn_detector(mut self, v: Arc<dyn TurnDetector>) -> Self {
        self.turn_detector = Some(v);
        self
    }
    /// Sets `max_tool_steps`.
    pub fn with_max_tool_steps(mut self, v: u32) -> Self {
        self.max_tool_steps = v;
        self
    }
    /// Sets the user-away timeout.
    pub fn with_user_away_timeout(mut self, v: Option<Duration>) -> Self {
        self.user_away_timeout = v;
        self
    }
    /// Enables preemptive generation.
    pub fn with_preemptive_generation(mut self, v: bool) -> Self {
        self.preemptive_generation = v;
        self
    }
    /// Enables or disables the default text transforms before TTS.
    pub fn with_tts_text_transforms(mut self, v: bool) -> Self {
        self.tts_text_transforms = v;
        self
    }
    /// Enables or disables transcript synchronization with playback.
    pub fn with_sync_transcription(mut self, v: bool) -> Self {
        self.sync_transcription = v;
        self
    }
    /// Sets the minimum gap between consecutive agent speeches.
    pub fn with_min_consecutive_speech_delay(mut self, v: Duration) -> Self {
        self.min_consecutive_speech_delay = v;
        self
    }
    /// Sets the close drain bound.
    pub fn with_close_timeout(mut self, v: Duration) -> Self {
        self.close_timeout = v;
        self
    }
    /// Sets how long the user's turn in progress gets for its final transcript on close.
    pub fn with_session_close_transcript_timeout(mut self, v: Duration) -> Self {
        self.session_close_transcript_timeout = v;
        self
    }
    /// Sets whether the end of the audio input closes the session.
    pub fn with_close_on_input_end(mut self, v: bool) -> Self {
        self.close_on_input_end = v;
        self
    }
}

impl fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionOptions")
            .field("allow_interruptions", &self.allow_interruptions)
            .field("interruption", &self.interruption)
            .field("endpointing", &self.endpointing)
            .field("turn_detection", &self.turn_detection)
            .field("max_tool_steps", &self.max_tool_steps)
            .field("user_away_timeout", &self.user_away_timeout)
            .field("close_timeout", &self.close_timeout)
            .field(
                "session_close_transcript_timeout",
                &self.session_close_transcript_timeout,
            )
            .field("close_on_input_end", &self.close_on_input_end)
            .field("preemptive_generation", &self.preemptive_generation)
            .field("sync_transcription", &self.sync_transcription)
            .field(
                "min_consecutive_speech_delay",
                &self.min_consecutive_speech_delay,
            )
            .finish_non_exhaustive()
    }
}

/// The models and options of a session, shared by its activities.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) stt: Option<Arc<dyn Stt>>,
    pub(crate) vad: Option<Arc<dyn Vad>>,
    pub(crate) llm: Option<Arc<dyn Llm>>,
    pub(crate) tts: Option<Arc<dyn Tts>>,
    /// Session-wide realtime model (agents without their own language model run with it).
    pub(crate) realtime: Option<Arc<dyn RealtimeModel>>,
    pub(crate) options: SessionOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running,
    Closing,
    Closed,
}

struct State {
    phase: Phase,
    agent_state: AgentState,
    user_state: UserState,
    current_speech: Option<SpeechHandle>,
    history: ChatContext,
    agent: Option<Agent>,
}

/// A close the session asks of itself (unrecoverable error).
struct CloseRequest {
    reason: CloseReason,
    error: Option<ErrorEvent>,
}

/// What every task of a session may read or report: states, history, the event broadcast.
pub(crate) struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<SessionEvent>,
    userdata: Option<Userdata>,
    /// Self-close requests to the session task (capacity 1: when full, a close is already pending).
    close_requests: mpsc::Sender<CloseRequest>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Broadcasts an event (dropped when nobody listens).
    pub(crate) fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(event);
    }

    /// Reports an error; an unrecoverable one (`recoverable == false`) also closes the session with
    /// `CloseReason::Error`, as LiveKit does.
    pub(crate) fn emit_error(&self, error: ErrorEvent) {
        tracing::warn!(component = ?error.component, label = %error.label, error = %error.error,
            recoverable = error.recoverable, "session error");
        let fatal = !error.recoverable;
        self.emit(SessionEvent::Error(error.clone()));
        if fatal
            && self
                .close_requests
                .try_send(CloseRequest {
                    reason: CloseReason::Error,
                    error: Some(error),
                })
                .is_err()
        {
            tracing::debug!("unrecoverable error while a close is already pending");
        }
    }

    /// Sets the agent state, emitting `AgentStateChanged` on change only, then `AgentStartedSpeaking` /
    /// `AgentStoppedSpeaking` when the change enters / leaves `Speaking`. Emitted under the state lock, so the
    /// events are in the order of the changes.
    pub(crate) fn set_agent_state(&self, new: AgentState) {
        self.with(|s| {
            let old = std::mem::replace(&mut s.agent_state, new);
            if old == new {
                return;
            }
            let _ = self
                .events
                .send(SessionEvent::AgentStateChanged { old, new });
            let at = SystemTime::now();
            if new == AgentState::Speaking {
                let _ = self.events.send(SessionEvent::AgentStartedSpeaking { at });
            } else if old == AgentState::Speaking {
                let _ = self.events.send(SessionEvent::AgentStoppedSpeaking { at });
            }
        });
    }

    /// Sets the user state, emitting `UserStateChanged` on change only, then `UserStartedSpeaking` /
    /// `UserStoppedSpeaking` when the change enters / leaves `Speaking` (under the state lock, in order).
    pub(crate) fn agent_state(&self) -> AgentState {
        self.with(|s| s.agent_state)
    }

    pub(crate) fn set_user_state(&self, new: UserState) {
        self.with(|s| {
            let old = std::mem::replace(&mut s.user_state, new);
            if old == new {
                return;
            }
            let _ = self
                .events
                .send(SessionEvent::UserStateChanged { old, new });
            let at = SystemTime::now();
            if new == UserState::Speaking {
                let _ = self.events.send(SessionEvent::UserStartedSpeaking { at });
            } else if old == UserState::Speaking {
                let _ = self.events.send(SessionEvent::UserStoppedSpeaking { at });
            }
        });
    }

    /// Appends an item to the session history and emits `ConversationItemAdded`.
    pub(crate) fn push_history(&self, item: ChatItem) {
        self.with(|s| s.history.push(item.clone()));
        self.emit(SessionEvent::ConversationItemAdded { item });
    }

    /// Sets the speech playing now.
    pub(crate) fn set_current_speech(&self, speech: Option<SpeechHandle>) {
        self.with(|s| s.current_speech = speech);
    }

    fn set_agent(&self, agent: Agent) {
        self.with(|s| s.agent = Some(agent));
    }

    /// The session's userdata.
    pub(crate) fn userdata(&self) -> Option<Userdata> {
        self.userdata.clone()
    }
}

/// Commands to the session task.
pub(crate) enum SessionCmd {
    Start {
        agent: Agent,
        io: SessionIo,
    },
    /// A request for the current agent; `origin`: the activity whose own hook or tool made it.
    Speech {
        cmd: ActivityCmd,
        origin: Option<u64>,
    },
    Interrupt(oneshot::Sender<Result<(), SessionError>>),
    UpdateAgent(Agent),
    SetAudioInput(Option<AudioInput>),
    SetAudioOutput(Option<Arc<dyn AudioOutput>>),
    SetTextOutput(Option<Arc<dyn TextOutput>>),
    Close {
        reason: CloseReason,
        reply: oneshot::Sender<()>,
    },
    RunTask(task::TaskRequest),
}

struct Owner {
    shared: Arc<Shared>,
    config: Config,
    commands: mpsc::Sender<SessionCmd>,
    receiver: Mutex<Option<(mpsc::Receiver<SessionCmd>, mpsc::Receiver<CloseRequest>)>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// A voice session: STT/VAD → turn detection → LLM (+ tools) → TTS → audio output, for one agent at a time.
/// Cheap to clone; every clone drives the same session. Dropping the last clone cancels everything.
///
/// ```no_run
/// # async fn demo(llm: std::sync::Arc<dyn agents_core::Llm>, tts: std::sync::Arc<dyn agents_core::Tts>,
/// #               io: agents_core::SessionIo) -> Result<(), agents_core::SessionError> {
/// use agents_core::{Agent, SessionControl};
/// use agents_pipeline::AgentSession;
///
/// let session = AgentSession::builder().llm(llm).tts(tts).build();
/// let mut events = session.events();
/// session.start(Agent::new("You are a helpful assistant."), io).await?;
/// let greeting = session.say_text("Hello!")?;
/// greeting.wait_for_playout().await;
/// session.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AgentSession {
    owner: Arc<Owner>,
}

/// Builder of an [`AgentSession`].
#[derive(Default)]
pub struct AgentSessionBuilder {
    stt: Option<Arc<dyn Stt>>,
    vad: Option<Arc<dyn Vad>>,
    llm: Option<Arc<dyn Llm>>,
    tts: Option<Arc<dyn Tts>>,
    realtime: Option<Arc<dyn RealtimeModel>>,
    options: SessionOptions,
    userdata: Option<Userdata>,
}

impl AgentSessionBuilder {
    /// Sets the STT.
    pub fn stt(mut self, stt: Arc<dyn Stt>) -> Self {
        self.stt = Some(stt);
        self
    }
    /// Sets the VAD.
    pub fn vad(mut self, vad: Arc<dyn Vad>) -> Self {
        self.vad = Some(vad);
        self
    }
    /// Sets the LLM.
    pub fn llm(mut self, llm: Arc<dyn Llm>) -> Self {
        self.llm = Some(llm);
        self
    }
    /// Sets the TTS.
    pub fn tts(mut self, tts: Arc<dyn Tts>) -> Self {
        self.tts = Some(tts);
        self
    }
    /// Sets a session-wide realtime (speech-to-speech) model: agents without their own language model run the
    /// realtime path (see [`crate::realtime`]) instead of STT → LLM → TTS. An agent's own chat LLM or realtime
    /// model takes precedence.
    pub fn realtime(mut self, model: Arc<dyn RealtimeModel>) -> Self {
        self.realtime = Some(model);
        self
    }
    /// Sets the turn detection mode.
    pub fn turn_detection(mut self, mode: TurnDetectionMode) -> Self {
        self.options.turn_detection = Some(mode);
        self
    }
    /// Sets the options.
    pub fn options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self
    }
    /// Sets typed userdata, reachable from tools (`RunContext::userdata`) and [`AgentSession::userdata`].
    pub fn userdata<T: Any + Send + Sync>(mut self, userdata: T) -> Self {
        self.userdata = Some(Arc::new(userdata));
        self
    }
    /// Builds the session (nothing runs until [`AgentSession::start`]).
    pub fn build(self) -> AgentSession {
        let capacity = self.options.command_capacity.max(1);
        let (events, _) = broadcast::channel(self.options.event_capacity.max(1));
        let (tx, rx) = mpsc::channel(capacity);
        let (close_tx, close_rx) = mpsc::channel(1);
        AgentSession {
            owner: Arc::new(Owner {
                shared: Arc::new(Shared {
                    state: Mutex::new(State {
                        phase: Phase::NotStarted,
                        agent_state: AgentState::Initializing,
                        user_state: UserState::Listening,
                        current_speech: None,
                        history: ChatContext::new(),
                        agent: None,
                    }),
                    events,
                    userdata: self.userdata,
                    close_requests: close_tx,
                }),
                config: Config {
                    stt: self.stt,
                    vad: self.vad,
                    llm: self.llm,
                    tts: self.tts,
                    realtime: self.realtime,
                    options: self.options,
                },
                commands: tx,
                receiver: Mutex::new(Some((rx, close_rx))),
                task: Mutex::new(None),
            }),
        }
    }
}

impl fmt::Debug for AgentSessionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSessionBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AgentSession {
    /// A builder.
    pub fn builder() -> AgentSessionBuilder {
        AgentSessionBuilder::default()
    }

    /// Starts the session with `agent` on `io`: state `initializing`, the agent's activity starts (its `on_enter`
    /// runs), state `listening`. A second call does nothing (as in LiveKit). Must be called inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`SessionError::NotRunning`] when the session was closed; [`SessionError::Invalid`] when the agent's realtime
    /// model cannot run in this session ([`crate::RealtimeSetupError`]).
    pub async fn start(&self, agent: Agent, io: SessionIo) -> Result<(), SessionError> {
        crate::realtime::validate(&agent, &self.owner.config).map_err(|e| {
            SessionError::Invalid {
                reason: e.to_string(),
            }
        })?;
        let (receiver, close_rx) = {
            let phase = self.owner.shared.with(|s| s.phase);
            match phase {
                Phase::NotStarted => {}
                Phase::Running => return Ok(()),
                Phase::Closing | Phase::Closed => return Err(SessionError::NotRunning),
            }
            let mut guard = self
                .owner
                .receiver
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match guard.take() {
                Some(r) => r,
                None => return Ok(()),
            }
        };
        let actor = SessionActor {
            shared: Arc::clone(&self.owner.shared),
            config: self.owner.config.clone(),
            weak: Arc::downgrade(&self.owner),
            rx: receiver,
            close_rx,
            self_tx: self.owner.commands.clone(),
            audio_input: None,
            audio_output: None,
            text_output: None,
            transcript_sync: None,
            raw_outputs: (None, None),
            activity: None,
            draining: None,
            frames_dropped: 0,
            task: None,
            next_activity_id: 0,
        };
        self.owner.shared.set_agent(agent.clone());
        self.owner.shared.set_agent_state(AgentState::Initializing);
        let task = tokio::spawn(actor.run());
        *self.owner.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        // `Start` is queued before the session reads as running, so no request can be queued ahead of it.
        self.owner
            .commands
            .send(SessionCmd::Start { agent, io })
            .await
            .map_err(|_| SessionError::NotRunning)?;
        self.owner.shared.with(|s| {
            if s.phase == Phase::NotStarted {
                s.phase = Phase::Running;
            }
        });
        Ok(())
    }

    /// Subscribes to the session's events (from now on; subscribe before `start` to see everything).
    pub fn events(&self) -> EventStream<SessionEvent> {
        let rx = self.owner.shared.events.subscribe();
        EventStream::new(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((e, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "session event subscriber lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// The typed userdata.
    ///
    /// # Errors
    /// [`SessionError::UserdataNotSet`] when none was set or it has another type.
    pub fn userdata<T: Any + Send + Sync>(&self) -> Result<Arc<T>, SessionError> {
        self.owner
            .shared
            .userdata()
            .and_then(|u| u.downcast::<T>().ok())
            .ok_or(SessionError::UserdataNotSet)
    }

    /// A [`SessionHandle`] for tools and hooks (does not keep the session alive).
    pub fn handle(&self) -> SessionHandle {
        SessionHandle::new(Arc::new(WeakSession {
            owner: Arc::downgrade(&self.owner),
            origin: None,
        }))
    }

    /// The agent running now (the handoff target once a handoff was requested and started).
    pub fn current_agent(&self) -> Option<Agent> {
        self.owner.shared.with(|s| s.agent.clone())
    }

    fn check_running(&self, operation: &'static str) -> Result<(), SessionError> {
        match self.owner.shared.with(|s| s.phase) {
            Phase::Running => Ok(()),
            Phase::Closing => Err(SessionError::Closing { operation }),
            Phase::NotStarted | Phase::Closed => Err(SessionError::NotRunning),
        }
    }

    fn allow_interruptions(&self, requested: Option<bool>) -> bool {
        let agent = self
            .owner
            .shared
            .with(|s| s.agent.as_ref().and_then(Agent::allow_interruptions));
        requested
            .or(agent)
            .unwrap_or(self.owner.config.options.allow_interruptions)
    }

    fn send(&self, cmd: SessionCmd) -> Result<(), SessionError> {
        self.owner.commands.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SessionError::QueueFull { queue: "command" },
            mpsc::error::TrySendError::Closed(_) => SessionError::NotRunning,
        })
    }

    /// Manual turn detection: ends the user's turn now (the STT is flushed and its final transcript awaited, then
    /// the turn goes through the hook to a reply), as LiveKit's `commit_user_turn`.
    ///
    /// # Errors
    /// [`SessionError::NotRunning`] when the session is not running.
    pub fn commit_user_turn(&self) -> Result<(), SessionError> {
        self.check_running("commit_user_turn")?;
        self.send(SessionCmd::Speech {
            cmd: ActivityCmd::UserTurn(true),
            origin: None,
        })
    }

    /// Manual turn detection: forgets the user's turn in progress (transcript and pending end of turn).
    ///
    /// # Errors
    /// [`SessionError::NotRunning`] when the session is not running.
    pub fn clear_user_turn(&self) -> Result<(), SessionError> {
        self.check_running("clear_user_turn")?;
        self.send(SessionCmd::Speech {
            cmd: ActivityCmd::UserTurn(false),
            origin: None,
        })
    }

    /// Replaces the audio input after start (`None` detaches it); the forwarding loop goes on with the new input
    /// (LiveKit behaviour 39). The old input is dropped. Detaching or replacing never closes the session, even with
    /// [`SessionOptions::close_on_input_end`].
    ///
    /// # Errors
    /// [`SessionError::NotRunning`] when the session is not running; [`SessionError::QueueFull`] when the session
    /// task is behind (the input is dropped).
    pub fn set_audio_input(&self, input: Option<AudioInput>) -> Result<(), SessionError> {
        self.check_running("set_audio_input")?;
        self.send(SessionCmd::SetAudioInput(input))
    }

    /// Replaces the audio output after start (`None` detaches it). Speech created from now on plays on the new
    /// output; a speech already being generated keeps the output it started with.
    ///
    /// # Errors
    /// As [`AgentSession::set_audio_input`].
    pub fn set_audio_output(
        &self,
        output: Option<Arc<dyn AudioOutput>>,
    ) -> Result<(), SessionError> {
        self.check_running("set_audio_output")?;
        self.send(SessionCmd::SetAudioOutput(output))
    }

    /// Replaces the text (transcription) output after start (`None` detaches it), like
    /// [`AgentSession::set_audio_output`].
    ///
    /// # Errors
    /// As [`AgentSession::set_audio_input`].
    pub fn set_text_output(&self, output: Option<Arc<dyn TextOutput>>) -> Result<(), SessionError> {
        self.check_running("set_text_output")?;
        self.send(SessionCmd::SetTextOutput(output))
    }

    /// Text typed by the user (a transport's chat message), as LiveKit's default text input callback (behaviour
    /// 84): interrupts the current and queued speech, then `generate_reply` with `text` as user input. A speech that
    /// does not allow interruptions keeps playing and the reply is queued after it.
    ///
    /// # Errors
    /// As [`SessionControl::generate_reply`].
    pub async fn send_text_input(
        &self,
        text: impl Into<String>,
    ) -> Result<SpeechHandle, SessionError> {
        self.check_running("send_text_input")?;
        match SessionControl::interrupt(self).await {
            Ok(()) | Err(SessionError::Speech(_)) => {}
            Err(e) => return Err(e),
        }
        SessionControl::generate_reply(self, ReplyRequest::new().with_user_input(text))
    }

    /// Closes the session with `reason`: the user's turn in progress gets up to
    /// [`SessionOptions::session_close_transcript_timeout`] for its final transcript, queued speech drains (bounded
    /// by [`SessionOptions::close_timeout`]; interrupted at once for `ParticipantDisconnected` and `Error`), then
    /// `Close { reason, error: None }` is emitted.
    ///
    /// # Errors
    /// [`SessionError::NotRunning`] when the session is not running (never started, closing or closed).
    pub async fn close_with_reason(&self, reason: CloseReason) -> Result<(), SessionError> {
        let phase = self.owner.shared.with(|s| {
            let p = s.phase;
            if p == Phase::Running {
                s.phase = Phase::Closing;
            }
            p
        });
        if phase != Phase::Running {
            return Err(SessionError::NotRunning);
        }
        let (tx, rx) = oneshot::channel();
        if self
            .owner
            .commands
            .send(SessionCmd::Close { reason, reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        let task = self
            .owner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }

    /// Closes the session because the process shuts down (`CloseReason::Shutdown`).
    ///
    /// # Errors
    /// As [`AgentSession::close_with_reason`].
    pub async fn shutdown(&self) -> Result<(), SessionError> {
        self.close_with_reason(CloseReason::Shutdown).await
    }

    /// Reports an error of a component outside the pipeline (a transport, an application task) on the event
    /// stream. An unrecoverable one (`recoverable == false`) closes the session with `CloseReason::Error` and the
    /// error in the `Close` event, as LiveKit closes on unrecoverable errors.
    pub fn report_error(&self, error: ErrorEvent) {
        self.owner.shared.emit_error(error);
    }

    /// Speaks `text` (shorthand for [`SessionControl::say`] with a plain [`SayRequest`]).
    ///
    /// # Errors
    /// As [`SessionControl::say`].
    pub fn say_text(&self, text: impl Into<String>) -> Result<SpeechHandle, SessionError> {
        SessionControl::say(self, SayRequest::new(text))
    }
}

impl fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (phase, agent_state, user_state) = self
            .owner
            .shared
            .with(|s| (s.phase, s.agent_state, s.user_state));
        f.debug_struct("AgentSession")
            .field("phase", &phase)
            .field("agent_state", &agent_state)
            .field("user_state", &user_state)
            .field("options", &self.owner.config.options)
            .finish_non_exhaustive()
    }
}

impl AgentSession {
    /// `say`, made by the activity `origin` (its hook or tool) when given.
    fn say_from(
        &self,
        request: SayRequest,
        origin: Option<u64>,
    ) -> Result<SpeechHandle, SessionError> {
        self.check_running("say")?;
        if request.audio.is_none() {
            let agent_tts = self
                .owner
                .shared
                .with(|s| s.agent.as_ref().is_some_and(|a| a.tts().is_some()));
            if self.owner.config.tts.is_none() && !agent_tts {
                return Err(SessionError::NoTts);
            }
        }
        let handle = SpeechHandle::new(
            SpeechOptions::default()
                .with_allow_interruptions(self.allow_interruptions(request.allow_interruptions))
                .with_priority(request.priority),
        );
        self.send(SessionCmd::Speech {
            cmd: ActivityCmd::Say {
                request,
                handle: handle.clone(),
            },
            origin,
        })?;
        self.owner.shared.emit(SessionEvent::SpeechCreated {
            speech: handle.clone(),
            source: SpeechSource::Say,
            user_initiated: true,
        });
        Ok(handle)
    }

    /// `generate_reply`, made by the activity `origin` (its hook or tool) when given.
    fn generate_reply_from(
        &self,
        request: ReplyRequest,
        origin: Option<u64>,
    ) -> Result<SpeechHandle, SessionError> {
        self.check_running("generate_reply")?;
        let handle = SpeechHandle::new(
            SpeechOptions::default()
                .with_allow_interruptions(self.allow_interruptions(request.allow_interruptions))
                .with_priority(request.priority),
        );
        self.send(SessionCmd::Speech {
            cmd: ActivityCmd::Reply {
                request,
                handle: handle.clone(),
            },
            origin,
        })?;
        self.owner.shared.emit(SessionEvent::SpeechCreated {
            speech: handle.clone(),
            source: SpeechSource::GenerateReply,
            user_initiated: true,
        });
        Ok(handle)
    }

    /// A close asked from inside the session (a hook or a tool): the session starts closing and this returns at
    /// once. Waiting would deadlock: the close drains the activity, which waits for that very hook or tool.
    async fn request_close(&self) -> Result<(), SessionError> {
        let phase = self.owner.shared.with(|s| {
            let p = s.phase;
            if p == Phase::Running {
                s.phase = Phase::Closing;
            }
            p
        });
        if phase != Phase::Running {
            return Err(SessionError::NotRunning);
        }
        let (tx, _rx) = oneshot::channel();
        self.owner
            .commands
            .send(SessionCmd::Close {
                reason: CloseReason::UserInitiated,
                reply: tx,
            })
            .await
            .map_err(|_| SessionError::NotRunning)
    }
}

#[async_trait]
impl SessionControl for AgentSession {
    fn say(&self, request: SayRequest) -> Result<SpeechHandle, SessionError> {
        self.say_from(request, None)
    }

    fn generate_reply(&self, request: ReplyRequest) -> Result<SpeechHandle, SessionError> {
        self.generate_reply_from(request, None)
    }

    async fn interrupt(&self) -> Result<(), SessionError> {
        match self.owner.shared.with(|s| s.phase) {
            Phase::Running => {}
            // The close interrupts or drains everything itself; its actor does not read commands meanwhile.
            Phase::Closing => {
                return Err(SessionError::Closing {
                    operation: "interrupt",
                });
            }
            Phase::NotStarted | Phase::Closed => return Err(SessionError::NotRunning),
        }
        let (tx, rx) = oneshot::channel();
        self.owner
            .commands
            .send(SessionCmd::Interrupt(tx))
            .await
            .map_err(|_| SessionError::NotRunning)?;
        rx.await.map_err(|_| SessionError::NotRunning)?
    }

    fn update_agent(&self, agent: Agent) -> Result<(), SessionError> {
        if self.owner.shared.with(|s| s.phase) != Phase::Running {
            return Err(SessionError::NotRunning);
        }
        self.send(SessionCmd::UpdateAgent(agent))
    }

    fn history(&self) -> ChatContext {
        self.owner.shared.with(|s| s.history.clone())
    }

    fn agent_state(&self) -> AgentState {
        self.owner.shared.with(|s| s.agent_state)
    }

    fn user_state(&self) -> UserState {
        self.owner.shared.with(|s| s.user_state)
    }

    fn current_speech(&self) -> Option<SpeechHandle> {
        self.owner.shared.with(|s| s.current_speech.clone())
    }

    async fn run_task_erased(&self, task: ErasedTask) -> Result<TaskOutput, TaskError> {
        task::task_result(self.submit_task(task).await?).await
    }

    async fn close(&self) -> Result<(), SessionError> {
        self.close_with_reason(CloseReason::UserInitiated).await
    }
}

/// A session handle that does not keep the session alive (given to tools and hooks).
struct WeakSession {
    owner: Weak<Owner>,
    /// The activity whose hooks and tools hold this handle (`None`: the application's [`AgentSession::handle`]).
    /// Its speech requests go to that activity while it drains, and its `close` does not wait for itself.
    origin: Option<u64>,
}

impl WeakSession {
    fn get(&self) -> Option<AgentSession> {
        self.owner.upgrade().map(|owner| AgentSession { owner })
    }
}

#[async_trait]
impl SessionControl for WeakSession {
    fn say(&self, request: SayRequest) -> Result<SpeechHandle, SessionError> {
        self.get()
            .ok_or(SessionError::NotRunning)?
            .say_from(request, self.origin)
    }
    fn generate_reply(&self, request: ReplyRequest) -> Result<SpeechHandle, SessionError> {
        self.get()
            .ok_or(SessionError::NotRunning)?
            .generate_reply_from(request, self.origin)
    }
    async fn interrupt(&self) -> Result<(), SessionError> {
        let s = self.get().ok_or(SessionError::NotRunning)?;
        s.interrupt().await
    }
    fn update_agent(&self, agent: Agent) -> Result<(), SessionError> {
        self.get()
            .ok_or(SessionError::NotRunning)?
            .update_agent(agent)
    }
    fn history(&self) -> ChatContext {
        self.get().map(|s| s.history()).unwrap_or_default()
    }
    fn agent_state(&self) -> AgentState {
        self.get().map(|s| s.agent_state()).unwrap_or_default()
    }
    fn user_state(&self) -> UserState {
        self.get().map(|s| s.user_state()).unwrap_or_default()
    }
    fn current_speech(&self) -> Option<SpeechHandle> {
        self.get().and_then(|s| s.current_speech())
    }
    async fn close(&self) -> Result<(), SessionError> {
        let s = self.get().ok_or(SessionError::NotRunning)?;
        if self.origin.is_some() {
            s.request_close().await
        } else {
            s.close().await
        }
    }
    async fn run_task_erased(&self, task: ErasedTask) -> Result<TaskOutput, TaskError> {
        let s = self
            .get()
            .ok_or(TaskError::Session(SessionError::NotRunning))?;
        let rx = s.submit_task(task).await?;
        drop(s);
        task::task_result(rx).await
    }
}

/// The session as seen from a running tool: as [`WeakSession`], but `generate_reply` without a tool choice uses
/// `ToolChoice::None` (LiveKit behaviour 52: a reply asked for inside a tool must not call tools again).
struct ToolSession(WeakSession);

#[async_trait]
impl SessionControl for ToolSession {
    fn say(&self, request: SayRequest) -> Result<SpeechHandle, SessionError> {
        self.0.say(request)
    }
    fn generate_reply(&self, mut request: ReplyRequest) -> Result<SpeechHandle, SessionError> {
        if request.tool_choice.is_none() {
            request.tool_choice = Some(ToolChoice::None);
        }
        self.0.generate_reply(request)
    }
    async fn interrupt(&self) -> Result<(), SessionError> {
        self.0.interrupt().await
    }
    fn update_agent(&self, agent: Agent) -> Result<(), SessionError> {
        self.0.update_agent(agent)
    }
    fn history(&self) -> ChatContext {
        self.0.history()
    }
    fn agent_state(&self) -> AgentState {
        self.0.agent_state()
    }
    fn user_state(&self) -> UserState {
        self.0.user_state()
    }
    fn current_speech(&self) -> Option<SpeechHandle> {
        self.0.current_speech()
    }
    async fn close(&self) -> Result<(), SessionError> {
        self.0.close().await
    }
    async fn run_task_erased(&self, task: ErasedTask) -> Result<TaskOutput, TaskError> {
        self.0.run_task_erased(task).await
    }
}

/// The audio and text outputs as given to the session.
type RawOutputs = (Option<Arc<dyn AudioOutput>>, Option<Arc<dyn TextOutput>>);

struct Draining {
    old: ActivityHandle,
    done: oneshot::Receiver<()>,
    /// The drain's bound (`close_timeout`); `None` when the timeout is too large for the clock.
    deadline: Option<tokio::time::Instant>,
    next: Agent,
    pending: VecDeque<ActivityCmd>,
}

struct SessionActor {
    shared: Arc<Shared>,
    config: Config,
    weak: Weak<Owner>,
    rx: mpsc::Receiver<SessionCmd>,
    close_rx: mpsc::Receiver<CloseRequest>,
    self_tx: mpsc::Sender<SessionCmd>,
    audio_input: Option<AudioInput>,
    audio_output: Option<Arc<dyn AudioOutput>>,
    text_output: Option<Arc<dyn TextOutput>>,
    transcript_sync: Option<Arc<crate::transcription::TranscriptSynchronizer>>,
    /// The outputs as given (before the transcript synchronizer wraps them), kept to re-wrap on replacement.
    raw_outputs: RawOutputs,
    activity: Option<ActivityHandle>,
    draining: Option<Draining>,
    frames_dropped: u64,
    /// An `AgentTask` in progress (`task.rs`).
    task: Option<task::RunningTask>,
    /// The id of the next activity.
    next_activity_id: u64,
}

async fn next_frame(input: &mut Option<AudioInput>) -> Option<AudioFrame> {
    match input {
        Some(i) => i.next().await,
        None => std::future::pending().await,
    }
}

/// The draining agent reported, or its drain ran out of time (`close_timeout`, F2): either way the handoff goes on.
async fn drained(draining: &mut Option<Draining>) {
    match draining {
        Some(d) => match d.deadline {
            Some(at) => {
                if tokio::time::timeout_at(at, &mut d.done).await.is_err() {
                    tracing::warn!(agent = %d.old.agent_id, "the agent did not drain before the close timeout; handing off");
                }
            }
            None => {
                let _ = (&mut d.done).await;
            }
        },
        None => std::future::pending().await,
    }
}

impl SessionActor {
    async fn run(mut self) {
        loop {
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(SessionCmd::Close { reason, reply }) => {
                        self.close(reason, None).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                Some(request) = self.close_rx.recv() => {
                    self.close(request.reason, request.error).await;
                    return;
                }
                frame = next_frame(&mut self.audio_input) => match frame {
                    Some(frame) => self.forward_frame(frame),
                    None => {
                        tracing::info!("audio input ended");
                        self.audio_input = None;
                        if self.config.options.close_on_input_end {
                            self.close(CloseReason::ParticipantDisconnected, None).await;
                            return;
                        }
                    }
                },
                () = drained(&mut self.draining) => self.finish_handoff(),
                p = task::progress(&mut self.task) => self.on_task_progress(p),
            }
        }
    }

    fn deps(&mut self) -> ActivityDeps {
        let id = self.next_activity_id;
        self.next_activity_id += 1;
        let weak = || WeakSession {
            owner: self.weak.clone(),
            origin: Some(id),
        };
        ActivityDeps {
            id,
            shared: Arc::clone(&self.shared),
            config: self.config.clone(),
            session: SessionHandle::new(Arc::new(weak())),
            tool_session: SessionHandle::new(Arc::new(ToolSession(weak()))),
            session_tx: self.self_tx.clone(),
            audio_output: self.audio_output.clone(),
            text_output: self.text_output.clone(),
            transcript_sync: self.transcript_sync.clone(),
        }
    }

    fn handle(&mut self, cmd: SessionCmd) {
        match cmd {
            SessionCmd::Start { agent, io } => {
                if io.audio_output.is_none() && io.text_output.is_none() {
                    tracing::warn!("session starts without output");
                }
                self.audio_input = io.audio_input;
                self.raw_outputs = (io.audio_output, io.text_output);
                self.wrap_outputs();
                self.activity = Some(ActivityHandle::spawn(agent, self.deps()));
                self.shared.set_agent_state(AgentState::Listening);
            }
            SessionCmd::Speech { cmd, origin } => {
                if let Some(d) = &self.draining
                    && origin == Some(d.old.id)
                {
                    // The draining agent's own `on_exit` or tool speaks: it plays before the handoff (as LiveKit
                    // runs `on_exit` inside the old activity).
                    d.old.send(cmd);
                    return;
                }
                let Some(cmd) = self.hold_for_caller(cmd, origin) else {
                    return;
                };
                if let Some(d) = &mut self.draining {
                    // Requests made while the old agent drains go to the next agent (LiveKit §4.3).
                    d.pending.push_back(cmd);
                } else if let Some(a) = &self.activity {
                    a.send(cmd);
                } else {
                    crate::activity::reject(cmd);
                }
            }
            SessionCmd::Interrupt(reply) => {
                // Requests parked for the next agent (or for a task's caller) are interrupted too (behaviour 54).
                let parked = self
                    .draining
                    .iter_mut()
                    .flat_map(|d| d.pending.iter_mut())
                    .chain(self.task.iter_mut().flat_map(|t| t.pending.iter_mut()));
                for cmd in parked {
                    if let ActivityCmd::Say { handle, .. } | ActivityCmd::Reply { handle, .. } = cmd
                        && handle.allow_interruptions()
                    {
                        handle.force_interrupt();
                        handle.mark_done();
                    }
                }
                let target = self
                    .draining
                    .as_ref()
                    .map(|d| &d.old)
                    .or(self.activity.as_ref());
                match target {
                    Some(a) => a.send(ActivityCmd::Interrupt(reply)),
                    None => {
                        let _ = reply.send(Err(SessionError::NotRunning));
                    }
                }
            }
            SessionCmd::RunTask(request) => self.start_task(request),
            SessionCmd::UpdateAgent(agent) => {
                // A handoff ends a running task; its suspended caller does not come back (as in LiveKit): it runs
                // its `on_exit` and its queued speech is cancelled, in the background (bounded by close_timeout).
                if let Some(caller) = self.abandon_task(TaskError::HandedOff) {
                    tokio::spawn(caller.drain_and_close(self.config.options.close_timeout, true));
                }
                if let Some(d) = &mut self.draining {
                    // A handoff is under way: the latest requested agent is the one started after it.
                    d.next = agent;
                    return;
                }
                match self.activity.take() {
                    Some(old) => {
                        let (tx, rx) = oneshot::channel();
                        old.send(ActivityCmd::Drain(tx));
                        self.draining = Some(Draining {
                            old,
                            done: rx,
                            deadline: crate::activity::deadline_after(
                                tokio::time::Instant::now(),
                                self.config.options.close_timeout,
                            ),
                            next: agent,
                            pending: VecDeque::new(),
                        });
                    }
                    None => {
                        self.activity = Some(ActivityHandle::spawn(agent.clone(), self.deps()));
                        self.shared.set_agent(agent);
                    }
                }
            }
            SessionCmd::SetAudioInput(input) => {
                tracing::info!(attached = input.is_some(), "audio input replaced");
                self.audio_input = input;
            }
            SessionCmd::SetAudioOutput(output) => {
                self.raw_outputs.0 = output;
                self.wrap_outputs();
                self.push_outputs();
            }
            SessionCmd::SetTextOutput(output) => {
                self.raw_outputs.1 = output;
                self.wrap_outputs();
                self.push_outputs();
            }
            SessionCmd::Close { .. } => {}
        }
    }

    /// Puts the outputs through a transcript synchronizer when both exist (generation::output_path).
    fn wrap_outputs(&mut self) {
        (self.audio_output, self.text_output, self.transcript_sync) =
            crate::generation::output_path(
                self.raw_outputs.0.clone(),
                self.raw_outputs.1.clone(),
                self.config.options.sync_transcription,
            );
    }

    /// Gives the current outputs to the running (and draining) activity, for its next speeches.
    fn push_outputs(&self) {
        for a in self
            .activity
            .iter()
            .chain(self.draining.as_ref().map(|d| &d.old))
        {
            a.send(ActivityCmd::SetOutputs {
                audio: self.audio_output.clone(),
                text: self.text_output.clone(),
                sync: self.transcript_sync.clone(),
            });
        }
    }

    fn finish_handoff(&mut self) {
        let Some(d) = self.draining.take() else {
            return;
        };
        let old_id = d.old.agent_id.clone();
        // Usually done already; after a drain timeout the old agent is closed (bounded) in the background, its
        // speech handles finished by its shutdown or drop guard.
        tokio::spawn(d.old.close());
        let new_id = d.next.id().to_owned();
        let mut history_item = ChatContext::new();
        history_item.add_agent_handoff(Some(old_id.clone()), new_id);
        for item in history_item.into_items() {
            self.shared.push_history(item);
        }
        self.shared.set_agent(d.next.clone());
        let activity = ActivityHandle::spawn(d.next, self.deps());
        for cmd in d.pending {
            activity.send(cmd);
        }
        self.activity = Some(activity);
    }

    fn forward_frame(&mut self, frame: AudioFrame) {
        let Some(a) = self
            .activity
            .as_ref()
            .or(self.draining.as_ref().map(|d| &d.old))
        else {
            return;
        };
        if !a.try_frame(frame) {
            self.frames_dropped += 1;
            if self.frames_dropped.is_power_of_two() {
                tracing::debug!(
                    dropped = self.frames_dropped,
                    "input frames dropped (activity busy)"
                );
            }
        }
    }

    /// Closes: input detached; the user's turn in progress gets its final transcript committed (bounded, skipped
    /// on `Error`); queued speech drains (bounded; not for `ParticipantDisconnected` / `Error`, where nobody
    /// listens or a component broke); activities closed; `Close` emitted last.
    async fn close(&mut self, reason: CloseReason, error: Option<ErrorEvent>) {
        self.shared.with(|s| {
            if s.phase == Phase::Running {
                s.phase = Phase::Closing;
            }
        });
        tracing::info!(?reason, "closing the session");
        self.audio_input = None;
        let options = &self.config.options;
        if reason != CloseReason::Error
            && let Some(a) = self
                .activity
                .as_ref()
                .or(self.draining.as_ref().map(|d| &d.old))
        {
            let (tx, rx) = oneshot::channel();
            a.send(ActivityCmd::CloseUserTurn(tx));
            if tokio::time::timeout(options.session_close_transcript_timeout, rx)
                .await
                .is_err()
            {
                tracing::debug!("the user's last transcript did not arrive before the close");
            }
        }
        let drain = matches!(reason, CloseReason::UserInitiated | CloseReason::Shutdown);
        let deadline =
            crate::activity::deadline_after(tokio::time::Instant::now(), options.close_timeout);
        let mut activities = Vec::new();
        if let Some(d) = self.draining.take() {
            activities.push(d.old);
            // Requests parked for a next agent that will never start.
            d.pending.into_iter().for_each(crate::activity::reject);
        }
        if let Some(a) = self.activity.take() {
            activities.push(a);
        }
        activities.extend(self.abandon_task(TaskError::Session(SessionError::Closing {
            operation: "run_task",
        })));
        for a in activities {
            if drain {
                let (tx, rx) = oneshot::channel();
                a.send(ActivityCmd::Drain(tx));
                let drained = match deadline {
                    Some(at) => tokio::time::timeout_at(at, rx).await.is_ok(),
                    None => {
                        let _ = rx.await;
                        true
                    }
                };
                if !drained {
                    tracing::warn!(
                        "queued speech did not drain before the close timeout; cancelled"
                    );
                }
            }
            a.close().await;
        }
        self.shared.set_current_speech(None);
        // Speech cut by the close ends here: every `*StartedSpeaking` gets its `*StoppedSpeaking` before `Close`.
        if self.shared.with(|s| s.agent_state) == AgentState::Speaking {
            self.shared.set_agent_state(AgentState::Listening);
        }
        if self.shared.with(|s| s.user_state) == UserState::Speaking {
            self.shared.set_user_state(UserState::Listening);
        }
        self.shared.with(|s| s.phase = Phase::Closed);
        self.shared.emit(SessionEvent::Close { reason, error });
    }
}
