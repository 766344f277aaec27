//! The session as seen from tools and hooks: [`SessionHandle`] over the [`SessionControl`] trait that the
//! pipeline's `AgentSession` implements, the requests it accepts and the exact errors of misuse.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::agent::Agent;
use crate::chat::ChatContext;
use crate::events::{AgentState, UserState};
use crate::llm::ToolChoice;
use crate::speech::{SpeechError, SpeechHandle, SpeechPriority};
use crate::stream::EventStream;
use crate::task::{ErasedTask, TaskError, TaskOutput};
use agents_audio::AudioFrame;

/// Application state shared with tools (`RunContext::userdata`), type-erased for storage in the session.
pub type Userdata = Arc<dyn Any + Send + Sync>;

/// Misuse of a session, with LiveKit's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session was not started, or is closed.
    #[error("AgentSession isn't running")]
    NotRunning,
    /// The session is closing and no next agent will take the request.
    #[error("AgentSession is closing, cannot use {operation}()")]
    Closing {
        /// `say` or `generate_reply`.
        operation: &'static str,
    },
    /// `say` with text but the session has no TTS and no audio was given.
    #[error("trying to generate speech from text without a TTS model")]
    NoTts,
    /// The speech cannot be interrupted.
    #[error(transparent)]
    Speech(#[from] SpeechError),
    /// Reading userdata that was never set.
    #[error("VoiceAgent userdata is not set")]
    UserdataNotSet,
    /// A bounded command queue of the session is full (the session task is behind); the request was not taken.
    #[error("the session's {queue} queue is full")]
    QueueFull {
        /// Which queue: `command` (the session task's).
        queue: &'static str,
    },
    /// The request is invalid in this session's configuration.
    #[error("{reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
}

/// Who decides that the user's turn is over. Set on the session (`SessionOptions::turn_detection`) or per agent
/// ([`crate::agent::TurnOverrides::turn_detection`], applied when the agent's activity starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TurnDetectionMode {
    /// VAD end of speech (plus the optional turn detector). Needs a VAD.
    Vad,
    /// The STT's end of speech (plus the optional turn detector). Needs an STT.
    Stt,
    /// The application, with `commit_user_turn` / `clear_user_turn`.
    Manual,
    /// A realtime model's server-side turn detection: no local decision.
    RealtimeLlm,
}

impl TurnDetectionMode {
    /// The mode LiveKit picks when none is given (behaviour 115): realtime_llm → vad → stt → manual.
    pub fn resolve(realtime_turn_detection: bool, has_vad: bool, has_stt: bool) -> Self {
        if realtime_turn_detection {
            Self::RealtimeLlm
        } else if has_vad {
            Self::Vad
        } else if has_stt {
            Self::Stt
        } else {
            Self::Manual
        }
    }
}

/// Pre-rendered audio for `say` (skips the TTS).
pub type SayAudio = EventStream<AudioFrame>;

/// A `say` request.
#[non_exhaustive]
pub struct SayRequest {
    /// The text to speak (and to show as transcript).
    pub text: String,
    /// Audio to play instead of synthesizing `text`.
    pub audio: Option<SayAudio>,
    /// Override of the agent's or session's interruption setting.
    pub allow_interruptions: Option<bool>,
    /// Whether to add the text to the chat context as an assistant message (default true).
    pub add_to_chat_ctx: bool,
    /// Scheduling priority (default normal): higher plays first, FIFO within a level.
    pub priority: SpeechPriority,
}

impl SayRequest {
    /// Say `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            audio: None,
            allow_interruptions: None,
            add_to_chat_ctx: true,
            priority: SpeechPriority::Normal,
        }
    }
    /// Plays `audio` instead of synthesizing.
    pub fn with_audio(mut self, audio: SayAudio) -> Self {
        self.audio = Some(audio);
        self
    }
    /// Sets `allow_interruptions`.
    pub fn with_allow_interruptions(mut self, allow: bool) -> Self {
        self.allow_interruptions = Some(allow);
        self
    }
    /// Sets `add_to_chat_ctx`.
    pub fn with_add_to_chat_ctx(mut self, add: bool) -> Self {
        self.add_to_chat_ctx = add;
        self
    }
    /// Sets the scheduling priority.
    pub fn with_priority(mut self, priority: SpeechPriority) -> Self {
        self.priority = priority;
        self
    }
}

impl fmt::Debug for SayRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SayRequest")
            .field("text", &self.text)
            .field("audio", &self.audio.is_some())
            .field("allow_interruptions", &self.allow_interruptions)
            .field("add_to_chat_ctx", &self.add_to_chat_ctx)
            .field("priority", &self.priority)
            .finish()
    }
}

/// A `generate_reply` request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReplyRequest {
    /// User input to add before replying.
    pub user_input: Option<String>,
    /// Instructions for this reply only (the stored instructions are unchanged).
    pub instructions: Option<String>,
    /// Tool choice for this reply.
    pub tool_choice: Option<ToolChoice>,
    /// Override of the agent's or session's interruption setting.
    pub allow_interruptions: Option<bool>,
    /// Scheduling priority (default normal).
    pub priority: SpeechPriority,
}

impl ReplyRequest {
    /// A reply with defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the user input.
    pub fn with_user_input(mut self, text: impl Into<String>) -> Self {
        self.user_input = Some(text.into());
        self
    }
    /// Sets one-off instructions.
    pub fn with_instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions = Some(text.into());
        self
    }
    /// Sets the tool choice.
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }
    /// Sets `allow_interruptions`.
    pub fn with_allow_interruptions(mut self, allow: bool) -> Self {
        self.allow_interruptions = Some(allow);
        self
    }
    /// Sets the scheduling priority.
    pub fn with_priority(mut self, priority: SpeechPriority) -> Self {
        self.priority = priority;
        self
    }
}

/// What tools and hooks may ask of a running session. Implemented by the pipeline's `AgentSession`.
#[async_trait]
pub trait SessionControl: Send + Sync + 'static {
    /// Speaks text (or pre-rendered audio).
    fn say(&self, request: SayRequest) -> Result<SpeechHandle, SessionError>;
    /// Generates a reply with the LLM.
    fn generate_reply(&self, request: ReplyRequest) -> Result<SpeechHandle, SessionError>;
    /// Interrupts the current speech and every queued speech.
    async fn interrupt(&self) -> Result<(), SessionError>;
    /// Hands the conversation to `agent` (after the current agent's queued speech).
    fn update_agent(&self, agent: Agent) -> Result<(), SessionError>;
    /// The whole conversation so far (a copy).
    fn history(&self) -> ChatContext;
    /// The agent's state.
    fn agent_state(&self) -> AgentState;
    /// The user's state.
    fn user_state(&self) -> UserState;
    /// The speech playing now.
    fn current_speech(&self) -> Option<SpeechHandle>;
    /// Closes the session after draining queued speech (bounded).
    async fn close(&self) -> Result<(), SessionError>;
    /// Runs a type-erased task (see [`SessionHandle::run_task`], the typed entry point). The default refuses
    /// with [`SessionError::NotRunning`]: implementations that cannot run tasks need not override it.
    async fn run_task_erased(&self, task: ErasedTask) -> Result<TaskOutput, TaskError> {
        drop(task);
        Err(TaskError::Session(SessionError::NotRunning))
    }
}

/// A cheap, clonable handle to a running session.
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<dyn SessionControl>,
}

impl SessionHandle {
    /// A handle over a session implementation.
    pub fn new(control: Arc<dyn SessionControl>) -> Self {
        Self { inner: control }
    }

    /// A handle to no session: every request fails with [`SessionError::NotRunning`]. For running tools outside a
    /// session (tests, scripts).
    pub fn detached() -> Self {
        Self::new(Arc::new(Detached))
    }
}

impl std::ops::Deref for SessionHandle {
    type Target = dyn SessionControl;
    fn deref(&self) -> &Self::Target {
        self.inner.as_ref()
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("agent_state", &self.inner.agent_state())
            .finish_non_exhaustive()
    }
}

struct Detached;

#[async_trait]
impl SessionControl for Detached {
    fn say(&self, _: SayRequest) -> Result<SpeechHandle, SessionError> {
        Err(SessionError::NotRunning)
    }
    fn generate_reply(&self, _: ReplyRequest) -> Result<SpeechHandle, SessionError> {
        Err(SessionError::NotRunning)
    }
    async fn interrupt(&self) -> Result<(), SessionError> {
        Err(SessionError::NotRunning)
    }
    fn update_agent(&self, _: Agent) -> Result<(), SessionError> {
        Err(SessionError::NotRunning)
    }
    fn history(&self) -> ChatContext {
        ChatContext::new()
    }
    fn agent_state(&self) -> AgentState {
        AgentState::Initializing
    }
    fn user_state(&self) -> UserState {
        UserState::Listening
    }
    fn current_speech(&self) -> Option<SpeechHandle> {
        None
    }
    async fn close(&self) -> Result<(), SessionError> {
        Err(SessionError::NotRunning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn detached_session_refuses_with_livekit_messages() {
        let s = SessionHandle::detached();
        let e = s.say(SayRequest::new("hi")).unwrap_err();
        assert_eq!(e.to_string(), "AgentSession isn't running");
        assert_eq!(s.interrupt().await, Err(SessionError::NotRunning));
        assert_eq!(
            SessionError::Closing { operation: "say" }.to_string(),
            "AgentSession is closing, cannot use say()"
        );
        assert_eq!(
            SessionError::Closing {
                operation: "generate_reply"
            }
            .to_string(),
            "AgentSession is closing, cannot use generate_reply()"
        );
        assert_eq!(
            SessionError::NoTts.to_string(),
            "trying to generate speech from text without a TTS model"
        );
        assert_eq!(
            SessionError::QueueFull { queue: "command" }.to_string(),
            "the session's command queue is full"
        );
    }

    #[test]
    fn turn_detection_mode_resolves_realtime_then_vad_then_stt_then_manual() {
        use TurnDetectionMode as M;
        assert_eq!(M::resolve(true, false, false), M::RealtimeLlm);
        assert_eq!(M::resolve(false, true, false), M::Vad);
        assert_eq!(M::resolve(false, false, true), M::Stt);
        assert_eq!(M::resolve(false, false, false), M::Manual);
        assert_eq!(
            serde_json::to_string(&M::RealtimeLlm).unwrap(),
            "\"realtime_llm\""
        );
        let o = crate::agent::TurnOverrides::new().with_turn_detection(M::Manual);
        assert_eq!(o.turn_detection, Some(M::Manual));
    }
}
