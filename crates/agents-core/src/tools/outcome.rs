//! What a tool returns: [`ToolOutcome`], built from plain values through [`IntoToolOutcome`], or a [`ToolError`].

use std::error::Error as StdError;
use std::fmt;

use serde::Serialize;

use crate::agent::Agent;

/// What the model is told after an internal (non-[`ToolError::new`]) failure. The real error is only logged.
pub const INTERNAL_ERROR_MESSAGE: &str = "An internal error occurred";

/// A tool failure.
///
/// [`ToolError::new`] carries a message for the model (it may retry or explain). Any other error converts with `?`
/// into an internal error: the model sees only "An internal error occurred" and the cause is logged.
pub struct ToolError {
    kind: Kind,
}

enum Kind {
    Model(String),
    Internal(Box<dyn StdError + Send + Sync + 'static>),
}

impl ToolError {
    /// A failure whose `message` the model sees.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Model(message.into()),
        }
    }

    /// A failure hidden from the model.
    pub fn internal(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self {
            kind: Kind::Internal(error.into()),
        }
    }

    /// The text the model sees.
    pub fn message_for_model(&self) -> &str {
        match &self.kind {
            Kind::Model(m) => m,
            Kind::Internal(_) => INTERNAL_ERROR_MESSAGE,
        }
    }

    /// The hidden cause, for internal failures.
    pub fn internal_cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match &self.kind {
            Kind::Model(_) => None,
            Kind::Internal(e) => Some(e.as_ref()),
        }
    }

    /// Whether the model sees the real message.
    pub fn is_model_visible(&self) -> bool {
        matches!(self.kind, Kind::Model(_))
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for ToolError {
    fn from(e: E) -> Self {
        Self::internal(e)
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Model(m) => f.write_str(m),
            Kind::Internal(e) => write!(f, "internal tool error: {e}"),
        }
    }
}

impl fmt::Debug for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Model(m) => f.debug_tuple("ToolError::Model").field(m).finish(),
            Kind::Internal(e) => f
                .debug_tuple("ToolError::Internal")
                .field(&e.to_string())
                .finish(),
        }
    }
}

/// Hand the conversation to another agent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Handoff {
    /// The agent taking over.
    pub agent: Agent,
    /// Tool output for the model, if any.
    pub message: Option<String>,
}

/// The successful result of a tool.
// A handoff carries a whole agent; outcomes are built once per tool call, never on a hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ToolOutcome {
    /// Text for the model.
    Output(String),
    /// No reply should follow this call.
    StopResponse,
    /// Switch agents.
    Handoff(Handoff),
}

impl ToolOutcome {
    /// No reply should follow.
    pub fn stop_response() -> Self {
        Self::StopResponse
    }

    /// Hand off to `agent` with no tool output.
    pub fn handoff(agent: Agent) -> Self {
        Self::Handoff(Handoff {
            agent,
            message: None,
        })
    }

    /// Hand off to `agent`, telling the model `message`.
    pub fn handoff_with_message(agent: Agent, message: impl Into<String>) -> Self {
        Self::Handoff(Handoff {
            agent,
            message: Some(message.into()),
        })
    }

    /// `value` serialized as JSON text.
    ///
    /// # Errors
    /// An internal [`ToolError`] when `value` cannot be serialized.
    pub fn json<T: Serialize>(value: &T) -> Result<Self, ToolError> {
        Ok(Self::Output(serde_json::to_string(value)?))
    }
}

/// Values a tool may return. Strings are passed as they are; numbers and booleans as their Rust `Display`
/// (`42` → `"42"`, `true` → `"true"`); `()` as an empty output (the model still gets a reply for the call);
/// [`serde_json::Value`] and [`Json`] as JSON text (a JSON string value as its raw text); an [`Agent`] as a handoff.
pub trait IntoToolOutcome: Send + 'static {
    /// The outcome.
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError>;
}

impl IntoToolOutcome for ToolOutcome {
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
        Ok(self)
    }
}

impl IntoToolOutcome for String {
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::Output(self))
    }
}

impl IntoToolOutcome for &'static str {
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::Output(self.to_owned()))
    }
}

impl IntoToolOutcome for () {
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::Output(String::new()))
    }
}

impl IntoToolOutcome for Agent {
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::handoff(self))
    }
}

impl IntoToolOutcome for serde_json::Value {
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::Output(match self {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

macro_rules! display_outcome {
    ($($t:ty),*) => {$(
        impl IntoToolOutcome for $t {
            fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
                Ok(ToolOutcome::Output(self.to_string()))
            }
        }
    )*};
}
display_outcome!(
    bool, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64, char
);

/// Wraps a `Serialize` value so a tool returns it as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: Serialize + Send + 'static> IntoToolOutcome for Json<T> {
    fn into_tool_outcome(self) -> Result<ToolOutcome, ToolError> {
        ToolOutcome::json(&self.0)
    }
}
