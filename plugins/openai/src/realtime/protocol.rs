//! Wire format of the Realtime API: client events built as JSON, server items read back into [`ChatItem`]s, and the
//! beta → GA event-name normalisation.

use agents_core::chat::{
    ChatContent, ChatContext, ChatItem, ChatMessage, ChatRole, FunctionCall, FunctionCallOutput,
    INSTRUCTIONS_ID,
};
use agents_core::llm::ToolChoice;
use agents_core::tools::{OpenAiToolFormat, ToolDefinition};
use serde_json::{Map, Value, json};

use super::options::{Output, Protocol, RealtimeOptions, TurnDetection};

/// The sample rate of Realtime audio, both ways (PCM16 mono).
pub(crate) const SAMPLE_RATE_HZ: u32 = 24_000;

/// The parts of the session configuration that change at run time; replayed on reconnect.
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveConfig {
    pub(crate) instructions: Option<String>,
    pub(crate) tools: Vec<ToolDefinition>,
    pub(crate) tool_choice: Option<ToolChoice>,
}

/// A fresh client `event_id`.
pub(crate) fn event_id() -> String {
    agents_core::ids::short_id("event_")
}

/// A client event `{type, event_id, ...fields}`; returns it with its id.
pub(crate) fn client_event(ty: &str, fields: Value) -> (String, Value) {
    let id = event_id();
    let mut m = Map::new();
    m.insert("type".into(), Value::String(ty.to_owned()));
    m.insert("event_id".into(), Value::String(id.clone()));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    (id, Value::Object(m))
}

fn tool_choice_json(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::None => json!("none"),
        ToolChoice::Function(name) => json!({"type": "function", "name": name}),
        _ => json!("auto"),
    }
}

fn tools_json(tools: &[ToolDefinition]) -> Value {
    Value::Array(
        tools
            .iter()
            .filter_map(|t| match t.to_openai(OpenAiToolFormat::Flat, false) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(tool = %t.name, error = %e, "tool left out of the realtime session");
                    None
                }
            })
            .collect(),
    )
}

fn turn_detection_json(td: Option<&TurnDetection>) -> Value {
    match td {
        None => Value::Null,
        Some(TurnDetection::ServerVad(v)) => json!({
            "type": "server_vad",
            "threshold": v.threshold,
            "prefix_padding_ms": v.prefix_padding.as_millis() as u64,
            "silence_duration_ms": v.silence_duration.as_millis() as u64,
            "create_response": v.create_response,
            "interrupt_response": v.interrupt_response,
        }),
        Some(TurnDetection::SemanticVad(v)) => json!({
            "type": "semantic_vad",
            "eagerness": v.eagerness.as_str(),
            "create_response": v.create_response,
            "interrupt_response": v.interrupt_response,
        }),
    }
}

fn transcription_json(o: &RealtimeOptions) -> Value {
    match &o.input_transcription {
        None => Value::Null,
        Some(t) => {
            let mut m = Map::new();
            m.insert("model".into(), Value::String(t.model.clone()));
            if let Some(l) = &t.language {
                m.insert("language".into(), Value::String(l.clone()));
            }
            if let Some(p) = &t.prompt {
                m.insert("prompt".into(), Value::String(p.clone()));
            }
            Value::Object(m)
        }
    }
}

/// The full `session` object of a `session.update`.
pub(crate) fn session_json(o: &RealtimeOptions, live: &LiveConfig) -> Value {
    let audio_out = o.output == Output::Audio;
    let mut s = Map::new();
    match o.protocol {
        Protocol::Ga => {
            s.insert("type".into(), json!("realtime"));
            s.insert(
                "output_modalities".into(),
                json!([if audio_out { "audio" } else { "text" }]),
            );
            let mut output =
                json!({"format": {"type": "audio/pcm", "rate": SAMPLE_RATE_HZ}, "voice": o.voice});
            if let Some(speed) = o.speed {
                output["speed"] = json!(speed);
            }
            s.insert(
                "audio".into(),
                json!({
                    "input": {
                        "format": {"type": "audio/pcm", "rate": SAMPLE_RATE_HZ},
                        "transcription": transcription_json(o),
                        "turn_detection": turn_detection_json(o.turn_detection.as_ref()),
                    },
                    "output": output,
                }),
            );
            if let Some(n) = o.max_output_tokens {
                s.insert("max_output_tokens".into(), json!(n));
            }
        }
        Protocol::Beta => {
            s.insert(
                "modalities".into(),
                if audio_out {
                    json!(["text", "audio"])
                } else {
                    json!(["text"])
                },
            );
            s.insert("voice".into(), json!(o.voice));
            s.insert("input_audio_format".into(), json!("pcm16"));
            s.insert("output_audio_format".into(), json!("pcm16"));
            s.insert("input_audio_transcription".into(), transcription_json(o));
            s.insert(
                "turn_detection".into(),
                turn_detection_json(o.turn_detection.as_ref()),
            );
            if let Some(t) = o.temperature {
                s.insert("temperature".into(), json!(t));
            }
            if let Some(n) = o.max_output_tokens {
                s.insert("max_response_output_tokens".into(), json!(n));
            }
        }
    }
    if let Some(i) = &live.instructions {
        s.insert("instructions".into(), Value::String(i.clone()));
    }
    s.insert("tools".into(), tools_json(&live.tools));
    s.insert(
        "tool_choice".into(),
        tool_choice_json(live.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto)),
    );
    Value::Object(s)
}

/// A partial `session` object (one field changed); GA requires `type`.
pub(crate) fn partial_session(protocol: Protocol, field: &str, value: Value) -> Value {
    let mut s = Map::new();
    if protocol == Protocol::Ga {
        s.insert("type".into(), json!("realtime"));
    }
    s.insert(field.to_owned(), value);
    Value::Object(s)
}

/// The `tools` value of a session update.
pub(crate) fn tools_value(tools: &[ToolDefinition]) -> Value {
    tools_json(tools)
}

/// The `tool_choice` value of a session update.
pub(crate) fn tool_choice_value(choice: &ToolChoice) -> Value {
    tool_choice_json(choice)
}

/// A conversation item for `conversation.item.create`; `None` for what the Realtime API cannot hold (agent
/// handoffs, messages without text).
pub(crate) fn item_json(item: &ChatItem, protocol: Protocol) -> Option<Value> {
    match item {
        // The instructions message is the session's `instructions`, not a conversation item.
        ChatItem::Message(m) if m.id == INSTRUCTIONS_ID => None,
        ChatItem::Message(m) => {
            let (role, text_type) = match (m.role, protocol) {
                (ChatRole::Assistant, Protocol::Ga) => ("assistant", "output_text"),
                (ChatRole::Assistant, Protocol::Beta) => ("assistant", "text"),
                (ChatRole::User, _) => ("user", "input_text"),
                (_, _) => ("system", "input_text"),
            };
            let mut content = Vec::new();
            for c in &m.content {
                match c {
                    ChatContent::Text(t) if !t.is_empty() => {
                        content.push(json!({"type": text_type, "text": t}));
                    }
                    ChatContent::Audio(a) => {
                        if let Some(t) = a.transcript.as_ref().filter(|t| !t.is_empty()) {
                            content.push(json!({"type": text_type, "text": t}));
                        }
                    }
                    ChatContent::Image(img) if role == "user" && protocol == Protocol::Ga => {
                        content
                            .push(json!({"type": "input_image", "image_url": img.image.to_url()}));
                    }
                    _ => {}
                }
            }
            if content.is_empty() {
                return None;
            }
            Some(json!({"id": m.id, "type": "message", "role": role, "content": content}))
        }
        ChatItem::FunctionCall(c) => Some(json!({
            "id": c.id, "type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments,
        })),
        ChatItem::FunctionCallOutput(o) => Some(json!({
            "id": o.id, "type": "function_call_output", "call_id": o.call_id, "output": o.output,
        })),
        _ => None,
    }
}

/// The text of a server message item: text parts and audio transcripts, joined.
fn message_text(item: &Value) -> String {
    let mut out = String::new();
    if let Some(parts) = item.get("content").and_then(Value::as_array) {
        for p in parts {
            let t = p
                .get("text")
                .and_then(Value::as_str)
                .or_else(|| p.get("transcript").and_then(Value::as_str));
            if let Some(t) = t {
                out.push_str(t);
            }
        }
    }
    out
}

/// A server item as a [`ChatItem`] with the server's id; `ctx` names the tool of a `function_call_output`.
pub(crate) fn chat_item(item: &Value, ctx: &ChatContext) -> Option<ChatItem> {
    let id = item.get("id").and_then(Value::as_str)?.to_owned();
    let s = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match item.get("type").and_then(Value::as_str)? {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str)? {
                "user" => ChatRole::User,
                "assistant" => ChatRole::Assistant,
                _ => ChatRole::System,
            };
            let text = message_text(item);
            let mut m = if text.is_empty() {
                ChatMessage::with_content(role, Vec::new())
            } else {
                ChatMessage::new(role, text)
            };
            m.id = id;
            m.interrupted = item.get("status").and_then(Value::as_str) == Some("incomplete");
            Some(ChatItem::Message(m))
        }
        "function_call" => {
            let mut c = FunctionCall::new(s("call_id"), s("name"), s("arguments"));
            c.id = id;
            Some(ChatItem::FunctionCall(c))
        }
        "function_call_output" => {
            let call_id = s("call_id");
            let name = ctx
                .items()
                .iter()
                .find_map(|i| match i {
                    ChatItem::FunctionCall(c) if c.call_id == call_id => Some(c.name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let mut o = FunctionCallOutput::new(call_id, name, s("output"), false);
            o.id = id;
            Some(ChatItem::FunctionCallOutput(o))
        }
        _ => None,
    }
}

/// A server event type with beta names mapped to their GA names.
pub(crate) fn normalize(ty: &str) -> &str {
    match ty {
        "response.audio.delta" => "response.output_audio.delta",
        "response.audio.done" => "response.output_audio.done",
        "response.text.delta" => "response.output_text.delta",
        "response.text.done" => "response.output_text.done",
        "response.audio_transcript.delta" => "response.output_audio_transcript.delta",
        "response.audio_transcript.done" => "response.output_audio_transcript.done",
        "conversation.item.created" => "conversation.item.added",
        other => other,
    }
}

/// The edits that make the server conversation (`old`) equal `new`: ids to delete, then items to create with the
/// id of the item they follow (`None` = the start).
pub(crate) struct Diff {
    pub(crate) delete: Vec<String>,
    pub(crate) create: Vec<(Option<String>, ChatItem)>,
}

/// Computes the [`Diff`] from `old` to `new` by item id. Items whose content changed under the same id are deleted
/// and re-created; items the API cannot hold are skipped.
pub(crate) fn diff(old: &ChatContext, new: &ChatContext, protocol: Protocol) -> Diff {
    let representable: Vec<&ChatItem> = new
        .items()
        .iter()
        .filter(|i| item_json(i, protocol).is_some())
        .collect();
    let mut delete = Vec::new();
    let mut changed = std::collections::HashSet::new();
    for o in old.items() {
        match representable.iter().find(|n| n.id() == o.id()) {
            None => delete.push(o.id().to_owned()),
            Some(n) => {
                if item_json(n, protocol) != item_json(o, protocol) {
                    delete.push(o.id().to_owned());
                    changed.insert(o.id().to_owned());
                }
            }
        }
    }
    let mut create = Vec::new();
    let mut previous: Option<String> = None;
    for n in representable {
        let exists = old.items().iter().any(|o| o.id() == n.id()) && !changed.contains(n.id());
        if !exists {
            create.push((previous.clone(), n.clone()));
        }
        previous = Some(n.id().to_owned());
    }
    Diff { delete, create }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_names_normalize_to_ga() {
        assert_eq!(
            normalize("response.audio.delta"),
            "response.output_audio.delta"
        );
        assert_eq!(
            normalize("response.audio_transcript.delta"),
            "response.output_audio_transcript.delta"
        );
        assert_eq!(
            normalize("conversation.item.created"),
            "conversation.item.added"
        );
        assert_eq!(normalize("response.done"), "response.done");
    }

    #[test]
    fn diff_creates_deletes_and_orders() {
        let mut old = ChatContext::new();
        let a = ChatMessage::new(ChatRole::User, "a");
        let b = ChatMessage::new(ChatRole::Assistant, "b");
        old.push(a.clone());
        old.push(b.clone());
        let mut new = ChatContext::new();
        new.push(a.clone());
        let c = ChatMessage::new(ChatRole::User, "c");
        new.push(c.clone());
        let d = diff(&old, &new, Protocol::Ga);
        assert_eq!(d.delete, vec![b.id.clone()]);
        assert_eq!(d.create.len(), 1);
        assert_eq!(d.create[0].0.as_deref(), Some(a.id.as_str()));
        assert_eq!(d.create[0].1.id(), c.id);
    }

    #[test]
    fn the_instructions_message_is_not_an_item() {
        let mut ctx = ChatContext::new();
        ctx.set_instructions("Be nice.").unwrap();
        ctx.push(ChatMessage::new(ChatRole::User, "hi"));
        assert!(item_json(&ctx.items()[0], Protocol::Ga).is_none());
        let d = diff(&ChatContext::new(), &ctx, Protocol::Ga);
        assert_eq!(d.create.len(), 1);
        assert_eq!(d.create[0].0, None);
    }

    #[test]
    fn server_items_round_trip() {
        let ctx = ChatContext::new();
        let v = json!({"id": "item_1", "type": "message", "role": "assistant", "status": "incomplete",
                       "content": [{"type": "output_audio", "transcript": "hi there"}]});
        let Some(ChatItem::Message(m)) = chat_item(&v, &ctx) else {
            panic!("not a message")
        };
        assert_eq!(m.id, "item_1");
        assert_eq!(m.text_content().as_deref(), Some("hi there"));
        assert!(m.interrupted);
        let back = item_json(&ChatItem::Message(m), Protocol::Ga).unwrap();
        assert_eq!(
            back["content"][0],
            json!({"type": "output_text", "text": "hi there"})
        );
    }
}
