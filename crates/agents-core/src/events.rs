//! Agent and user states, and the typed event stream of a session.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::chat::{ChatItem, FunctionCall, FunctionCallOutput};
use crate::metrics::Metrics;
use crate::speech::SpeechHandle;

/// What the agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Starting.
    #[default]
    Initializing,
    /// Waiting for the user.
    Listening,
    /// Generating a reply or running tools.
    Thinking,
    /// Playing audio.
    Speaking,
}

/// What the user is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Talking.
    Speaking,
    /// Silent, present.
    #[default]
    Listening,
    /// Silent for longer than the user-away timeout.
    Away,
}

/// Where a speech came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SpeechSource {
    /// `session.say(...)`.
    Say,
    /// `session.generate_reply(...)` or a user turn.
    GenerateReply,
    /// The follow-up to tool outputs.
    ToolResponse,
}

/// Which part of the session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Component {
    /// Speech-to-text.
    Stt,
    /// The LLM.
    Llm,
    /// Text-to-speech.
    Tts,
    /// Voice activity detection.
    Vad,
    /// The realtime model.
    Realtime,
    /// The transport (audio input/output).
    Transport,
    /// A tool.
    Tool,
    /// The agent's own code (a hook such as `on_enter`, or a node), e.g. a panic caught there.
    Agent,
}

/// An error reported on the event stream.
#[derive(Clone)]
#[non_exhaustive]
pub struct ErrorEvent {
    /// The failing component.
    pub component: Component,
    /// Its label, e.g. `deepgram.STT`.
    pub label: String,
    /// The error.
    pub error: Arc<dyn std::error::Error + Send + Sync + 'static>,
    /// Whether the session goes on (e.g. after a provider retry, or by skipping the turn).
    pub recoverable: bool,
}

impl ErrorEvent {
    /// An error event.
    pub fn new(
        component: Component,
        label: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
        recoverable: bool,
    ) -> Self {
        Self {
            component,
            label: label.into(),
            error: Arc::new(error),
            recoverable,
        }
    }
}

impl fmt::Debug for ErrorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorEvent")
            .field("component", &self.component)
            .field("label", &self.label)
            .field("error", &self.error.to_string())
            .field("recoverable", &self.recoverable)
            .finish()
    }
}

/// Why a session closed (LiveKit `CloseReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseReason {
    /// The application closed it (`close()`).
    UserInitiated,
    /// The user left: the audio input ended (with `close_on_input_end`).
    ParticipantDisconnected,
    /// An unrecoverable error (an [`ErrorEvent`] with `recoverable == false`).
    Error,
    /// The process is shutting down (`shutdown()`).
    Shutdown,
}

/// An event of a session, in the order it happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The agent's state changed (only on change).
    AgentStateChanged {
        /// Before.
        old: AgentState,
        /// After.
        new: AgentState,
    },
    /// The user's state changed (only on change).
    UserStateChanged {
        /// Before.
        old: UserState,
        /// After.
        new: UserState,
    },
    /// The user started speaking: emitted right after the `UserStateChanged` into [`UserState::Speaking`]
    /// (VideoSDK `user_speech_started`, LiveKit 1.0 `user_started_speaking`).
    UserStartedSpeaking {
        /// Wall-clock time of the change.
        at: SystemTime,
    },
    /// The user stopped speaking: emitted right after the `UserStateChanged` out of [`UserState::Speaking`].
    UserStoppedSpeaking {
        /// Wall-clock time of the change.
        at: SystemTime,
    },
    /// The agent started speaking (first audio frame forwarded, or first text without an audio output): emitted
    /// right after the `AgentStateChanged` into [`AgentState::Speaking`].
    AgentStartedSpeaking {
        /// Wall-clock time of the change.
        at: SystemTime,
    },
    /// The agent stopped speaking (playout done or interrupted): emitted right after the `AgentStateChanged` out of
    /// [`AgentState::Speaking`].
    AgentStoppedSpeaking {
        /// Wall-clock time of the change.
        at: SystemTime,
    },
    /// A user transcript, interim or final.
    UserInputTranscribed {
        /// The text.
        transcript: String,
        /// Whether it is final.
        is_final: bool,
        /// Language, when known.
        language: Option<String>,
        /// Speaker, when diarized.
        speaker_id: Option<String>,
    },
    /// An item was committed to the session history.
    ConversationItemAdded {
        /// The item.
        item: ChatItem,
    },
    /// A speech was created.
    SpeechCreated {
        /// Its handle.
        speech: SpeechHandle,
        /// Where it came from.
        source: SpeechSource,
        /// Whether the application asked for it (as opposed to a tool follow-up).
        user_initiated: bool,
    },
    /// A batch of tool calls finished.
    FunctionToolsExecuted {
        /// The calls.
        calls: Vec<FunctionCall>,
        /// Their outputs, index for index (`None` for stop-response or handoff without message).
        outputs: Vec<Option<FunctionCallOutput>>,
    },
    /// Metrics were recorded.
    MetricsCollected(Metrics),
    /// Playout paused on user speech resumed (or not) because no real user turn followed.
    AgentFalseInterruption {
        /// Whether playout resumed.
        resumed: bool,
    },
    /// A component failed.
    Error(ErrorEvent),
    /// The session closed; the last event.
    Close {
        /// Why.
        reason: CloseReason,
        /// The error that closed it, if any.
        error: Option<ErrorEvent>,
    },
}
