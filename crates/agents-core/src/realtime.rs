//! The [`RealtimeModel`] contract: speech-to-speech models (OpenAI Realtime and the like) that take audio in and
//! give audio, text and tool calls out over one long-lived session.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use agents_audio::{AudioFrame, AudioFrameError, SampleRate};

use crate::chat::{ChatContext, ChatItem, FunctionCall};
use crate::error::ApiError;
use crate::llm::ToolChoice;
use crate::metrics::RealtimeMetrics;
use crate::retry::ApiConnectOptions;
use crate::stream::EventStream;
use crate::tools::ToolDefinition;

/// What a realtime model offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RealtimeCapabilities {
    /// The server detects turns (server VAD); the session then follows the model's turn events.
    pub turn_detection: bool,
    /// The model transcribes user audio.
    pub user_transcription: bool,
    /// The model produces audio (otherwise text, to be spoken by a TTS).
    pub audio_output: bool,
    /// Conversation items can be truncated to what was played (`truncate`).
    pub message_truncation: bool,
    /// The model replies by itself after a tool output is sent.
    pub auto_tool_reply_generation: bool,
}

/// Options for a new realtime session.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RealtimeSessionOptions {
    /// Instructions (system prompt).
    pub instructions: Option<String>,
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Tool choice.
    pub tool_choice: Option<ToolChoice>,
    /// History to seed the session with.
    pub chat_ctx: ChatContext,
    /// Connection, timeout and retry policy.
    pub conn_options: ApiConnectOptions,
}

/// Why a realtime operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RealtimeError {
    /// The provider API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Audio of the wrong format was pushed.
    #[error("invalid audio for the realtime model")]
    InvalidAudio(#[from] AudioFrameError),
    /// The session is closed.
    #[error("realtime session is closed")]
    SessionClosed,
    /// The model does not support the operation.
    #[error("{label} does not support {operation}")]
    Unsupported {
        /// The model's label.
        label: String,
        /// What was asked.
        operation: &'static str,
    },
    /// The provider sent something that cannot be understood.
    #[error("invalid message from the realtime model: {reason}")]
    Protocol {
        /// What is wrong.
        reason: String,
    },
}

/// Status of a finished response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseStatus {
    /// Finished normally.
    Completed,
    /// Cancelled (interrupt).
    Cancelled,
    /// Stopped early (token limit, content filter...).
    Incomplete(String),
    /// Failed.
    Failed(String),
}

/// An event of a realtime session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RealtimeEvent {
    /// The server heard the user start speaking (barge-in signal).
    InputSpeechStarted,
    /// The server heard the user stop speaking.
    InputSpeechStopped {
        /// Whether a transcription of the input will follow.
        user_transcription_enabled: bool,
    },
    /// A transcription of user audio.
    InputAudioTranscription {
        /// The user message item.
        item_id: String,
        /// Text (a delta when `is_final` is false, the whole transcript when true).
        transcript: String,
        /// Whether this is the final transcript.
        is_final: bool,
    },
    /// The model started a response.
    ResponseCreated {
        /// Response id.
        response_id: String,
        /// Whether the application asked for it (`generate_reply`) rather than the server's turn detection.
        user_initiated: bool,
    },
    /// Text of an assistant message (a text-only modality, or the transcript of the audio).
    TextDelta {
        /// Response id.
        response_id: String,
        /// Assistant message item.
        item_id: String,
        /// The text piece.
        delta: String,
    },
    /// Audio of an assistant message, at the model's output rate.
    AudioDelta {
        /// Response id.
        response_id: String,
        /// Assistant message item.
        item_id: String,
        /// The audio.
        frame: AudioFrame,
    },
    /// A complete tool call; send its output with `update_chat_ctx` (or `send_tool_outputs`), then ask for a reply.
    FunctionCall {
        /// Response id.
        response_id: String,
        /// The call.
        call: FunctionCall,
    },
    /// The response finished.
    ResponseDone {
        /// Response id.
        response_id: String,
        /// How it ended.
        status: ResponseStatus,
        /// Metrics of the response.
        metrics: Option<RealtimeMetrics>,
    },
    /// An item was added to the server-side conversation.
    ConversationItemCreated {
        /// The item as mirrored locally.
        item: ChatItem,
    },
    /// An item was removed from the server-side conversation.
    ConversationItemDeleted {
        /// Its id.
        item_id: String,
    },
    /// The session reconnected (e.g. session lifetime expiry) and replayed the chat context.
    Reconnected,
    /// A provider error; `recoverable` says whether the session goes on.
    Error {
        /// The error.
        error: RealtimeError,
        /// Whether the session is still usable.
        recoverable: bool,
    },
}

/// Control side of a realtime session. Object safe: held as `Arc<dyn RealtimeSession>`.
#[async_trait]
pub trait RealtimeSession: Send + Sync + 'static {
    /// Rate the model expects for input audio.
    fn input_sample_rate(&self) -> SampleRate;
    /// Rate of the model's output audio.
    fn output_sample_rate(&self) -> SampleRate;

    /// Streams user audio to the model (any rate; the plugin resamples when needed).
    async fn push_audio(&self, frame: AudioFrame) -> Result<(), RealtimeError>;
    /// Commits buffered input audio as a user turn (when server turn detection is off).
    async fn commit_audio(&self) -> Result<(), RealtimeError>;
    /// Discards buffered input audio.
    async fn clear_audio(&self) -> Result<(), RealtimeError>;

    /// Asks for a response, optionally with one-off instructions.
    async fn generate_reply(&self, instructions: Option<String>) -> Result<(), RealtimeError>;
    /// Cancels the response in progress.
    async fn interrupt(&self) -> Result<(), RealtimeError>;
    /// Truncates an assistant message's audio to what was played, so the model's memory matches the user's.
    async fn truncate(&self, message_id: &str, audio_end: Duration) -> Result<(), RealtimeError>;

    /// Replaces the instructions.
    async fn update_instructions(&self, instructions: &str) -> Result<(), RealtimeError>;
    /// Replaces the tools.
    async fn update_tools(&self, tools: Vec<ToolDefinition>) -> Result<(), RealtimeError>;
    /// Sets the tool choice.
    async fn update_tool_choice(&self, tool_choice: ToolChoice) -> Result<(), RealtimeError>;
    /// Makes the server-side conversation equal `chat_ctx` (creating and deleting items; tool outputs included).
    async fn update_chat_ctx(&self, chat_ctx: &ChatContext) -> Result<(), RealtimeError>;
    /// The local mirror of the server-side conversation.
    fn chat_ctx(&self) -> ChatContext;

    /// Closes the session; events end.
    async fn close(&self) -> Result<(), RealtimeError>;
}

/// An open realtime session: its control handle and its events.
pub struct RealtimeConnection {
    /// Control handle.
    pub session: Arc<dyn RealtimeSession>,
    /// Events, in order; ends when the session closes.
    pub events: EventStream<RealtimeEvent>,
}

impl fmt::Debug for RealtimeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeConnection").finish_non_exhaustive()
    }
}

/// A realtime (speech-to-speech) model. Object safe: held as `Arc<dyn RealtimeModel>`.
#[async_trait]
pub trait RealtimeModel: Send + Sync + 'static {
    /// Label for logs and metrics, e.g. `openai.realtime`.
    fn label(&self) -> &str;
    /// Model name.
    fn model(&self) -> &str;
    /// What this model offers.
    fn capabilities(&self) -> RealtimeCapabilities;
    /// Opens a session.
    async fn session(
        &self,
        options: RealtimeSessionOptions,
    ) -> Result<RealtimeConnection, RealtimeError>;
}
