//! The items of a [`ChatContext`](super::ChatContext).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agents_audio::AudioFrame;

use crate::ids::short_id;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions from the application (the agent's prompt).
    System,
    /// Instructions for reasoning models that replace `system`.
    Developer,
    /// The human.
    User,
    /// The agent.
    Assistant,
}

impl ChatRole {
    /// The role as written in JSON: `system`, `developer`, `user` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// True for the roles that carry instructions: [`System`](Self::System) and [`Developer`](Self::Developer).
    pub fn is_instructions(self) -> bool {
        matches!(self, Self::System | Self::Developer)
    }
}

/// One entry of the conversation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChatItem {
    /// A message.
    Message(ChatMessage),
    /// A tool call requested by the model.
    FunctionCall(FunctionCall),
    /// The result of a tool call.
    FunctionCallOutput(FunctionCallOutput),
    /// The conversation moved from one agent to another.
    AgentHandoff(AgentHandoff),
}

impl ChatItem {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Message(m) => &m.id,
            Self::FunctionCall(c) => &c.id,
            Self::FunctionCallOutput(o) => &o.id,
            Self::AgentHandoff(h) => &h.id,
        }
    }

    /// The message, if this item is one.
    pub fn as_message(&self) -> Option<&ChatMessage> {
        match self {
            Self::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The message, mutably, if this item is one.
    pub fn as_message_mut(&mut self) -> Option<&mut ChatMessage> {
        match self {
            Self::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The function call, if this item is one.
    pub fn as_function_call(&self) -> Option<&FunctionCall> {
        match self {
            Self::FunctionCall(c) => Some(c),
            _ => None,
        }
    }

    /// The function call output, if this item is one.
    pub fn as_function_call_output(&self) -> Option<&FunctionCallOutput> {
        match self {
            Self::FunctionCallOutput(o) => Some(o),
            _ => None,
        }
    }

    /// The agent handoff, if this item is one.
    pub fn as_agent_handoff(&self) -> Option<&AgentHandoff> {
        match self {
            Self::AgentHandoff(h) => Some(h),
            _ => None,
        }
    }

    /// The item's kind as written in the JSON `type` field: `message`, `function_call`, `function_call_output` or
    /// `agent_handoff`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message(_) => "message",
            Self::FunctionCall(_) => "function_call",
            Self::FunctionCallOutput(_) => "function_call_output",
            Self::AgentHandoff(_) => "agent_handoff",
        }
    }

    /// When the item was created.
    pub fn created_at(&self) -> SystemTime {
        match self {
            Self::Message(m) => m.created_at,
            Self::FunctionCall(c) => c.created_at,
            Self::FunctionCallOutput(o) => o.created_at,
            Self::AgentHandoff(h) => h.created_at,
        }
    }

    /// True for a [`FunctionCall`] or a [`FunctionCallOutput`].
    pub fn is_function_item(&self) -> bool {
        matches!(self, Self::FunctionCall(_) | Self::FunctionCallOutput(_))
    }

    /// The provider call id of a function call or output; `None` for other items.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            Self::FunctionCall(c) => Some(&c.call_id),
            Self::FunctionCallOutput(o) => Some(&o.call_id),
            _ => None,
        }
    }

    /// The tool name of a function call or output; `None` for other items.
    pub fn function_name(&self) -> Option<&str> {
        match self {
            Self::FunctionCall(c) => Some(&c.name),
            Self::FunctionCallOutput(o) => Some(&o.name),
            _ => None,
        }
    }
}

impl From<ChatMessage> for ChatItem {
    fn from(v: ChatMessage) -> Self {
        Self::Message(v)
    }
}
impl From<FunctionCall> for ChatItem {
    fn from(v: FunctionCall) -> Self {
        Self::FunctionCall(v)
    }
}
impl From<FunctionCallOutput> for ChatItem {
    fn from(v: FunctionCallOutput) -> Self {
        Self::FunctionCallOutput(v)
    }
}
impl From<AgentHandoff> for ChatItem {
    fn from(v: AgentHandoff) -> Self {
        Self::AgentHandoff(v)
    }
}

/// A message: a role and content parts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChatMessage {
    /// Unique id, `item_` prefix by default.
    pub id: String,
    /// Author.
    pub role: ChatRole,
    /// Content parts, in order.
    pub content: Vec<ChatContent>,
    /// True when the agent was interrupted while speaking this message: it holds only what was played.
    pub interrupted: bool,
    /// When the message was created.
    pub created_at: SystemTime,
    /// Latency measurements of the turn that produced this message, when known.
    pub metrics: Option<MessageMetrics>,
}

impl ChatMessage {
    /// A message with one text part.
    pub fn new(role: ChatRole, text: impl Into<String>) -> Self {
        Self::with_content(role, vec![ChatContent::Text(text.into())])
    }

    /// A message with the given content parts.
    pub fn with_content(role: ChatRole, content: Vec<ChatContent>) -> Self {
        Self {
            id: short_id("item_"),
            role,
            content,
            interrupted: false,
            created_at: SystemTime::now(),
            metrics: None,
        }
    }

    /// The text parts joined with `"\n"`, or `None` when there are none.
    pub fn text_content(&self) -> Option<String> {
        let mut parts = self.content.iter().filter_map(|c| match c {
            ChatContent::Text(t) => Some(t.as_str()),
            _ => None,
        });
        let first = parts.next()?;
        let mut out = first.to_owned();
        for p in parts {
            out.push('\n');
            out.push_str(p);
        }
        Some(out)
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChatContent {
    /// Text.
    Text(String),
    /// An image.
    Image(ImageContent),
    /// Audio, with its transcript when known.
    Audio(AudioContent),
}

impl From<&str> for ChatContent {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}
impl From<String> for ChatContent {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

/// How much detail a vision model should spend on an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    /// Let the model decide.
    #[default]
    Auto,
    /// Low resolution.
    Low,
    /// High resolution.
    High,
}

/// Where an image comes from.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum ImageSource {
    /// A URL (https or `data:`).
    Url(String),
    /// Encoded image bytes (PNG, JPEG...), shared cheaply between copies.
    Bytes {
        /// MIME type, e.g. `image/png`.
        mime_type: String,
        /// The encoded bytes.
        data: Arc<[u8]>,
    },
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(u) if u.starts_with("data:") => write!(f, "Url(data: {} chars)", u.len()),
            Self::Url(u) => f.debug_tuple("Url").field(u).finish(),
            Self::Bytes { mime_type, data } => f
                .debug_struct("Bytes")
                .field("mime_type", mime_type)
                .field("len", &data.len())
                .finish(),
        }
    }
}

impl ImageSource {
    /// The image as a URL: a [`Url`](Self::Url) unchanged, [`Bytes`](Self::Bytes) as a
    /// `data:<mime_type>;base64,<data>` URL.
    pub fn to_url(&self) -> String {
        use base64::Engine as _;
        match self {
            Self::Url(u) => u.clone(),
            Self::Bytes { mime_type, data } => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                format!("data:{mime_type};base64,{b64}")
            }
        }
    }
}

/// An image in a message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ImageContent {
    /// Unique id, `img_` prefix by default.
    pub id: String,
    /// The image.
    pub image: ImageSource,
    /// Width to resize to before inference, if any.
    pub inference_width: Option<u32>,
    /// Height to resize to before inference, if any.
    pub inference_height: Option<u32>,
    /// Detail level for the model.
    pub inference_detail: ImageDetail,
}

impl ImageContent {
    /// An image from a URL.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self::new(ImageSource::Url(url.into()))
    }

    /// An image from its source.
    pub fn new(image: ImageSource) -> Self {
        Self {
            id: short_id("img_"),
            image,
            inference_width: None,
            inference_height: None,
            inference_detail: ImageDetail::Auto,
        }
    }
}

/// Audio in a message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AudioContent {
    /// The audio, shared cheaply between copies.
    pub frames: Arc<[AudioFrame]>,
    /// What was said, when known.
    pub transcript: Option<String>,
}

impl AudioContent {
    /// Audio content from frames.
    pub fn new(frames: Vec<AudioFrame>, transcript: Option<String>) -> Self {
        Self {
            frames: frames.into(),
            transcript,
        }
    }
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionCall {
    /// Unique item id, `item_` prefix by default.
    pub id: String,
    /// The provider's call id, linking the call to its output.
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as a JSON text (as the model wrote it, possibly invalid).
    pub arguments: String,
    /// When the call was created.
    pub created_at: SystemTime,
}

impl FunctionCall {
    /// A call with a fresh item id.
    pub fn new(
        call_id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: short_id("item_"),
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
            created_at: SystemTime::now(),
        }
    }
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionCallOutput {
    /// Unique item id, `item_` prefix by default.
    pub id: String,
    /// The call this answers.
    pub call_id: String,
    /// Tool name (empty when unknown).
    pub name: String,
    /// What the model is shown.
    pub output: String,
    /// Whether `output` describes a failure.
    pub is_error: bool,
    /// When the output was created.
    pub created_at: SystemTime,
}

impl FunctionCallOutput {
    /// An output for `call_id`; `is_error` is required on purpose.
    pub fn new(
        call_id: impl Into<String>,
        name: impl Into<String>,
        output: impl Into<String>,
        is_error: bool,
    ) -> Self {
        Self {
            id: short_id("item_"),
            call_id: call_id.into(),
            name: name.into(),
            output: output.into(),
            is_error,
            created_at: SystemTime::now(),
        }
    }
}

/// The conversation moved from one agent to another.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentHandoff {
    /// Unique item id, `item_` prefix by default.
    pub id: String,
    /// The agent that handed off, if any (none for the first agent).
    pub old_agent_id: Option<String>,
    /// The agent now active.
    pub new_agent_id: String,
    /// When the handoff happened.
    pub created_at: SystemTime,
}

impl AgentHandoff {
    /// A handoff record.
    pub fn new(old_agent_id: Option<String>, new_agent_id: impl Into<String>) -> Self {
        Self {
            id: short_id("item_"),
            old_agent_id,
            new_agent_id: new_agent_id.into(),
            created_at: SystemTime::now(),
        }
    }
}

/// Per-turn latency measurements attached to a message (user side or assistant side).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct MessageMetrics {
    /// User: when the user started speaking.
    pub started_speaking_at: Option<SystemTime>,
    /// User: when the user stopped speaking.
    pub stopped_speaking_at: Option<SystemTime>,
    /// User: end of speech to final transcript.
    pub transcription_delay: Option<Duration>,
    /// User: end of speech to end-of-turn decision.
    pub end_of_turn_delay: Option<Duration>,
    /// User: time spent in the user-turn-completed hook.
    pub on_user_turn_completed_delay: Option<Duration>,
    /// Assistant: LLM time to first token.
    pub llm_ttft: Option<Duration>,
    /// Assistant: TTS time to first audio byte.
    pub tts_ttfb: Option<Duration>,
    /// Assistant: user stopped speaking to agent started speaking.
    pub e2e_latency: Option<Duration>,
}
