#![doc = include_str!("../README.md")]

pub mod chat;
pub mod error;
pub mod ids;
pub mod retry;

pub use agents_audio::{AudioFrame, SampleRate};
pub use chat::{ChatContext, ChatItem, ChatMessage, ChatRole, FunctionCall, FunctionCallOutput};
pub use error::{ApiError, ApiErrorKind};
