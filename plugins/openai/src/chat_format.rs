//! The chat context and tools in Chat Completions' wire format.
//!
//! - Instructions (system or developer messages) use one role for the model: `system`, or `developer` for
//!   reasoning models (o-series, gpt-5).
//! - A run of function calls becomes one assistant message with `tool_calls` (merged into the assistant text
//!   message right before it), followed at once by one `tool` message per call with its `tool_call_id`. Outputs
//!   are moved right after their calls, whatever came in between in the context (the API requires it).
//! - A call without an output, or an output without its call, is left out: the API rejects both.
//! - Images become `image_url` parts (bytes as `data:` URLs); audio content contributes its transcript; agent
//!   handoffs are not sent.

use std::collections::{HashMap, HashSet};

use agents_core::chat::{
    ChatContent, ChatContext, ChatItem, ChatMessage, ChatRole, FunctionCall, ImageDetail,
};
use agents_core::llm::ToolChoice;
use agents_core::tools::{OpenAiToolFormat, ToolDefinition};
use serde_json::{Value, json};

/// Messages for `messages`.
pub(crate) fn messages(ctx: &ChatContext, instructions_role: &'static str) -> Vec<Value> {
    let items = ctx.items();
    let calls: HashSet<&str> = items
        .iter()
        .filter_map(ChatItem::as_function_call)
        .map(|c| c.call_id.as_str())
        .collect();
    let outputs: HashMap<&str, &agents_core::chat::FunctionCallOutput> = items
        .iter()
        .filter_map(ChatItem::as_function_call_output)
        .filter(|o| calls.contains(o.call_id.as_str()))
        .map(|o| (o.call_id.as_str(), o))
        .collect();
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            ChatItem::Message(m) => {
                if let Some(v) = message(m, instructions_role) {
                    out.push(v);
                }
                i += 1;
            }
            ChatItem::FunctionCall(_) => {
                let mut group: Vec<&FunctionCall> = Vec::new();
                while let Some(ChatItem::FunctionCall(c)) = items.get(i) {
                    if outputs.contains_key(c.call_id.as_str()) {
                        group.push(c);
                    } else {
                        tracing::debug!(call_id = %c.call_id, "leaving out a tool call without output");
                    }
                    i += 1;
                }
                if group.is_empty() {
                    continue;
                }
                let tool_calls: Vec<Value> = group
                    .iter()
                    .map(|c| {
                        json!({"id": c.call_id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
                // Merge into the assistant message just sent, when it has no tool calls yet.
                let merge = out.last().is_some_and(|m| {
                    m.get("role").and_then(Value::as_str) == Some("assistant")
                        && m.get("tool_calls").is_none()
                });
                match out.last_mut() {
                    Some(last) if merge => last["tool_calls"] = Value::Array(tool_calls),
                    _ => out.push(
                        json!({"role": "assistant", "content": null, "tool_calls": tool_calls}),
                    ),
                }
                for c in group {
                    if let Some(o) = outputs.get(c.call_id.as_str()) {
                        out.push(
                            json!({"role": "tool", "tool_call_id": o.call_id, "content": o.output}),
                        );
                    }
                }
            }
            ChatItem::FunctionCallOutput(o) => {
                if !calls.contains(o.call_id.as_str()) {
                    tracing::debug!(call_id = %o.call_id, "leaving out a tool output without its call");
                }
                // Otherwise already sent right after its call.
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn detail(d: ImageDetail) -> &'static str {
    match d {
        ImageDetail::Auto => "auto",
        ImageDetail::Low => "low",
        ImageDetail::High => "high",
    }
}

fn message(m: &ChatMessage, instructions_role: &'static str) -> Option<Value> {
    let role = match m.role {
        ChatRole::System | ChatRole::Developer => instructions_role,
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    };
    let mut texts: Vec<String> = Vec::new();
    let mut images: Vec<Value> = Vec::new();
    for c in &m.content {
        match c {
            ChatContent::Text(t) => texts.push(t.clone()),
            ChatContent::Image(img) if m.role == ChatRole::User => images.push(json!({
                "type": "image_url",
                "image_url": {"url": img.image.to_url(), "detail": detail(img.inference_detail)}
            })),
            ChatContent::Image(_) => {
                tracing::debug!(
                    role,
                    "leaving out an image: only user messages carry images"
                );
            }
            ChatContent::Audio(a) => {
                if let Some(t) = &a.transcript {
                    texts.push(t.clone());
                }
            }
            _ => {}
        }
    }
    if images.is_empty() {
        if texts.is_empty() {
            return None;
        }
        return Some(json!({"role": role, "content": texts.join("\n")}));
    }
    let mut parts: Vec<Value> = texts
        .into_iter()
        .map(|t| json!({"type": "text", "text": t}))
        .collect();
    parts.extend(images);
    Some(json!({"role": role, "content": parts}))
}

/// Tools for `tools`.
pub(crate) fn tools(
    tools: &[ToolDefinition],
    strict: bool,
) -> Result<Vec<Value>, agents_core::tools::ToolDefinitionError> {
    tools
        .iter()
        .map(|t| t.to_openai(OpenAiToolFormat::ChatCompletions, strict))
        .collect()
}

/// `tool_choice`.
pub(crate) fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::None => json!("none"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        _ => json!("auto"),
    }
}
