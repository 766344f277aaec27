//! The conversation history handed to LLMs: messages, function calls, their outputs and agent handoffs.

mod items;

pub use items::{
    AgentHandoff, AudioContent, ChatContent, ChatItem, ChatMessage, ChatRole, FunctionCall,
    FunctionCallOutput, ImageContent, ImageDetail, ImageSource, MessageMetrics,
};

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
        let msg = ChatMessage::new(role, text);
        self.items.push(ChatItem::Message(msg));
        match self.items.last() {
            Some(ChatItem::Message(m)) => m,
            _ => unreachable!("a message was just pushed"),
        }
    }
}
