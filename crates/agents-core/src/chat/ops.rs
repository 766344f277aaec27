//! Lookup, editing, instructions, filtered copies and truncation of a [`ChatContext`].

use std::collections::HashSet;

use super::{
    AgentHandoff, ChatContent, ChatContext, ChatContextError, ChatItem, ChatMessage, ChatRole,
    FunctionCall, FunctionCallOutput,
};

/// The id of the message holding the agent's instructions (see [`ChatContext::set_instructions`]).
pub const INSTRUCTIONS_ID: &str = "agents.instructions";

/// What [`ChatContext::copy`] leaves out. The default keeps everything.
///
/// Messages are always kept unless [`exclude_instructions`](Self::exclude_instructions) or
/// [`exclude_empty_messages`](Self::exclude_empty_messages) removes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Drop every [`FunctionCall`] and [`FunctionCallOutput`].
    pub exclude_function_calls: bool,
    /// Drop [`System`](ChatRole::System) and [`Developer`](ChatRole::Developer) messages.
    pub exclude_instructions: bool,
    /// Drop messages whose content list is empty (a message holding only an empty string is kept).
    pub exclude_empty_messages: bool,
    /// Drop [`AgentHandoff`] items.
    pub exclude_handoffs: bool,
    /// When set, keep only the function calls and outputs whose `name` is in this list. An output with an empty
    /// name is therefore dropped whenever this is set, even to an empty list (as in LiveKit).
    pub tools: Option<Vec<String>>,
}

impl CopyOptions {
    /// Sets [`exclude_function_calls`](Self::exclude_function_calls).
    pub fn with_exclude_function_calls(mut self, v: bool) -> Self {
        self.exclude_function_calls = v;
        self
    }

    /// Sets [`exclude_instructions`](Self::exclude_instructions).
    pub fn with_exclude_instructions(mut self, v: bool) -> Self {
        self.exclude_instructions = v;
        self
    }

    /// Sets [`exclude_empty_messages`](Self::exclude_empty_messages).
    pub fn with_exclude_empty_messages(mut self, v: bool) -> Self {
        self.exclude_empty_messages = v;
        self
    }

    /// Sets [`exclude_handoffs`](Self::exclude_handoffs).
    pub fn with_exclude_handoffs(mut self, v: bool) -> Self {
        self.exclude_handoffs = v;
        self
    }

    /// Keeps only the function items of these tools (see [`tools`](Self::tools)).
    pub fn with_tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tools = Some(tools.into_iter().map(Into::into).collect());
        self
    }
}

impl ChatContext {
    /// The items, mutably, for arbitrary edits.
    pub fn items_mut(&mut self) -> &mut Vec<ChatItem> {
        &mut self.items
    }

    /// Consumes the context and returns its items.
    pub fn into_items(self) -> Vec<ChatItem> {
        self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Inserts `item` at `index`, shifting later items. An `index` past the end appends (never panics).
    pub fn insert(&mut self, index: usize, item: impl Into<ChatItem>) {
        let index = index.min(self.items.len());
        self.items.insert(index, item.into());
    }

    /// Appends `message` and returns it.
    pub fn push_message(&mut self, message: ChatMessage) -> &ChatMessage {
        self.items.push(ChatItem::Message(message));
        match self.items.last() {
            Some(ChatItem::Message(m)) => m,
            _ => unreachable!("a message was just pushed"),
        }
    }

    /// Appends a [`FunctionCall`] and returns it.
    pub fn add_function_call(
        &mut self,
        call_id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> &FunctionCall {
        self.items.push(ChatItem::FunctionCall(FunctionCall::new(
            call_id, name, arguments,
        )));
        match self.items.last() {
            Some(ChatItem::FunctionCall(c)) => c,
            _ => unreachable!("a function call was just pushed"),
        }
    }

    /// Appends a [`FunctionCallOutput`] and returns it.
    pub fn add_function_output(
        &mut self,
        call_id: impl Into<String>,
        name: impl Into<String>,
        output: impl Into<String>,
        is_error: bool,
    ) -> &FunctionCallOutput {
        self.items
            .push(ChatItem::FunctionCallOutput(FunctionCallOutput::new(
                call_id, name, output, is_error,
            )));
        match self.items.last() {
            Some(ChatItem::FunctionCallOutput(o)) => o,
            _ => unreachable!("a function call output was just pushed"),
        }
    }

    /// Appends an [`AgentHandoff`] and returns it.
    pub fn add_agent_handoff(
        &mut self,
        old_agent_id: Option<String>,
        new_agent_id: impl Into<String>,
    ) -> &AgentHandoff {
        self.items.push(ChatItem::AgentHandoff(AgentHandoff::new(
            old_agent_id,
            new_agent_id,
        )));
        match self.items.last() {
            Some(ChatItem::AgentHandoff(h)) => h,
            _ => unreachable!("a handoff was just pushed"),
        }
    }

    /// The first item with this id.
    pub fn get_by_id(&self, id: &str) -> Option<&ChatItem> {
        self.items.iter().find(|i| i.id() == id)
    }

    /// The first item with this id, mutably.
    pub fn get_mut_by_id(&mut self, id: &str) -> Option<&mut ChatItem> {
        self.items.iter_mut().find(|i| i.id() == id)
    }

    /// The index of the first item with this id.
    pub fn index_by_id(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.id() == id)
    }

    /// Removes and returns the first item with this id.
    pub fn remove_by_id(&mut self, id: &str) -> Option<ChatItem> {
        let index = self.index_by_id(id)?;
        Some(self.items.remove(index))
    }

    /// The messages, oldest first, skipping other items.
    pub fn messages(&self) -> impl DoubleEndedIterator<Item = &ChatMessage> + '_ {
        self.items.iter().filter_map(ChatItem::as_message)
    }

    /// The last item, if any.
    pub fn last_item(&self) -> Option<&ChatItem> {
        self.items.last()
    }

    /// The most recent message with this role.
    pub fn last_message(&self, role: ChatRole) -> Option<&ChatMessage> {
        self.messages().rev().find(|m| m.role == role)
    }

    /// The instructions message: the message whose id is [`INSTRUCTIONS_ID`].
    ///
    /// `None` when there is no such item, or when the item with that id is not a message.
    pub fn instructions(&self) -> Option<&ChatMessage> {
        self.get_by_id(INSTRUCTIONS_ID)
            .and_then(ChatItem::as_message)
    }

    /// Sets the instructions: replaces the content of the message with id [`INSTRUCTIONS_ID`] by `text` (keeping
    /// its role and position), or inserts a new [`System`](ChatRole::System) message with that id at index 0.
    ///
    /// # Errors
    /// [`ChatContextError::InstructionsNotAMessage`] when the item with that id is not a message; the context is
    /// left unchanged.
    pub fn set_instructions(
        &mut self,
        text: impl Into<String>,
    ) -> Result<&ChatMessage, ChatContextError> {
        let index = match self.index_by_id(INSTRUCTIONS_ID) {
            Some(index) => index,
            None => {
                let mut msg = ChatMessage::with_content(ChatRole::System, Vec::new());
                msg.id = INSTRUCTIONS_ID.to_owned();
                self.items.insert(0, ChatItem::Message(msg));
                0
            }
        };
        // `index` is in range: it comes from `index_by_id` or points at the item just inserted.
        match &mut self.items[index] {
            ChatItem::Message(m) => {
                m.content = vec![ChatContent::Text(text.into())];
                Ok(m)
            }
            other => Err(ChatContextError::InstructionsNotAMessage {
                id: INSTRUCTIONS_ID.to_owned(),
                found: other.kind(),
            }),
        }
    }

    /// A new context with the items `options` keeps, in order.
    ///
    /// Items are cloned, but image bytes and audio frames are `Arc`-shared, so this costs O(items). Editing the
    /// copy never affects `self`.
    pub fn copy(&self, options: &CopyOptions) -> ChatContext {
        let tools: Option<HashSet<&str>> = options
            .tools
            .as_ref()
            .map(|t| t.iter().map(String::as_str).collect());
        let keep = |item: &ChatItem| -> bool {
            match item {
                ChatItem::Message(m) => {
                    !(options.exclude_instructions && m.role.is_instructions()
                        || options.exclude_empty_messages && m.content.is_empty())
                }
                ChatItem::FunctionCall(_) | ChatItem::FunctionCallOutput(_) => {
                    if options.exclude_function_calls {
                        return false;
                    }
                    match (&tools, item.function_name()) {
                        (Some(tools), Some(name)) => tools.contains(name),
                        _ => true,
                    }
                }
                ChatItem::AgentHandoff(_) => !options.exclude_handoffs,
            }
        };
        ChatContext::from_items(self.items.iter().filter(|i| keep(i)).cloned().collect())
    }

    /// Keeps only the last `max_items` items, in place, without breaking function call/output pairs and without
    /// losing the instructions.
    ///
    /// 1. When there are at most `max_items` items, nothing changes.
    /// 2. Otherwise the last `max_items` items are kept, then leading function calls and outputs are dropped (the
    ///    context never starts with a function item), then every remaining function call or output whose
    ///    partner (same `call_id`) was dropped is dropped too.
    /// 3. If the instructions message was cut, it is put back at index 0, so the result may hold
    ///    `max_items + 1` items. The instructions message is the message with id [`INSTRUCTIONS_ID`], or else the
    ///    first [`System`](ChatRole::System) or [`Developer`](ChatRole::Developer) message.
    ///
    /// `max_items == 0` keeps only the instructions message (LiveKit would keep everything, an artefact of Python's
    /// `items[-0:]`).
    pub fn truncate(&mut self, max_items: usize) {
        let len = self.items.len();
        if len <= max_items {
            return;
        }
        let instructions = self.instructions_index();
        let start = len - max_items;

        let mut keep = vec![false; len];
        let mut first = start;
        while self
            .items
            .get(first)
            .is_some_and(ChatItem::is_function_item)
        {
            first += 1;
        }
        for k in keep.iter_mut().skip(first) {
            *k = true;
        }

        let cut_call_ids: HashSet<&str> = self
            .items
            .iter()
            .zip(&keep)
            .filter(|(_, kept)| !**kept)
            .filter_map(|(item, _)| item.call_id())
            .filter(|id| !id.is_empty())
            .collect();
        for (item, kept) in self.items.iter().zip(keep.iter_mut()) {
            if *kept && item.call_id().is_some_and(|id| cut_call_ids.contains(id)) {
                *kept = false;
            }
        }

        let reinsert = instructions.filter(|&i| keep.get(i) == Some(&false));
        let old = std::mem::take(&mut self.items);
        let mut instructions_item = None;
        let mut items = Vec::with_capacity(max_items + 1);
        for (i, (item, kept)) in old.into_iter().zip(keep).enumerate() {
            if kept {
                items.push(item);
            } else if Some(i) == reinsert {
                instructions_item = Some(item);
            }
        }
        if let Some(item) = instructions_item {
            items.insert(0, item);
        }
        self.items = items;
    }

    /// Index of the message [`truncate`](Self::truncate) preserves: the message with id [`INSTRUCTIONS_ID`], else
    /// the first system or developer message.
    fn instructions_index(&self) -> Option<usize> {
        self.items
            .iter()
            .position(|i| i.id() == INSTRUCTIONS_ID && i.as_message().is_some())
            .or_else(|| {
                self.items
                    .iter()
                    .position(|i| i.as_message().is_some_and(|m| m.role.is_instructions()))
            })
    }
}
