//! The conversation history handed to LLMs: messages, function calls, their outputs and agent handoffs.
//!
//! A [`ChatContext`] is a plain value: cloning it (or [`ChatContext::copy`]) gives an independent list of items.
//! Heavy payloads (image bytes, audio frames) sit behind [`Arc`](std::sync::Arc)s and are shared between copies, so
//! a copy costs O(items), not O(bytes). See `docs/chat-context.md` for the model, the JSON form and how
//! [`copy`](ChatContext::copy) / [`truncate`](ChatContext::truncate) relate to LiveKit's.

mod error;
mod items;
mod json;
mod ops;

pub use error::ChatContextError;
pub use items::{
    AgentHandoff, AudioContent, ChatContent, ChatItem, ChatMessage, ChatRole, FunctionCall,
    FunctionCallOutput, ImageContent, ImageDetail, ImageSource, MessageMetrics,
};
pub use json::{ChatContextExport, ExportOptions};
pub use ops::{CopyOptions, INSTRUCTIONS_ID};

/// An ordered conversation history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatContext {
    items: Vec<ChatItem>,
}

impl ChatContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context over `items`.
    pub fn from_items(items: Vec<ChatItem>) -> Self {
        Self { items }
    }

    /// The items, oldest first.
    pub fn items(&self) -> &[ChatItem] {
        &self.items
    }

    /// Appends an item.
    pub fn push(&mut self, item: impl Into<ChatItem>) {
        self.items.push(item.into());
    }

    /// Appends a text message and returns it.
    pub fn add_message(&mut self, role: ChatRole, text: impl Into<String>) -> &ChatMessage {
        self.push_message(ChatMessage::new(role, text))
    }
}
