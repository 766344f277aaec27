//! Behaviour tests of `ChatContext`: LiveKit behaviours 20-29, VideoSDK truncation (68) and the JSON form.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agents_core::chat::{
    AgentHandoff, AudioContent, ChatContent, ChatContext, ChatContextError, ChatItem, ChatMessage,
    ChatRole, CopyOptions, ExportOptions, FunctionCall, FunctionCallOutput, INSTRUCTIONS_ID,
    ImageContent, ImageDetail, ImageSource, MessageMetrics,
};
use agents_core::{AudioFrame, SampleRate};
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("fixtures/chat_context_v1.json");

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

fn msg(id: &str, role: ChatRole, text: &str) -> ChatItem {
    let mut m = ChatMessage::new(role, text);
    m.id = id.to_owned();
    m.into()
}

fn call(id: &str, call_id: &str, name: &str) -> ChatItem {
    let mut c = FunctionCall::new(call_id, name, "{}");
    c.id = id.to_owned();
    c.into()
}

fn output(id: &str, call_id: &str, name: &str) -> ChatItem {
    let mut o = FunctionCallOutput::new(call_id, name, "ok", false);
    o.id = id.to_owned();
    o.into()
}

fn handoff(id: &str) -> ChatItem {
    let mut h = AgentHandoff::new(Some("a".into()), "b");
    h.id = id.to_owned();
    h.into()
}

fn ids(ctx: &ChatContext) -> Vec<&str> {
    ctx.items().iter().map(ChatItem::id).collect()
}

fn ctx_of(items: Vec<ChatItem>) -> ChatContext {
    ChatContext::from_items(items)
}

// ---------------------------------------------------------------------------------------------------------------
// LiveKit behaviours 20-29

#[test]
fn add_message_stores_text_content_appends_and_returns_it() {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, "first");
    let returned = ctx.add_message(ChatRole::User, "text").clone();
    assert_eq!(returned.content, vec![ChatContent::Text("text".into())]);
    assert_eq!(ctx.len(), 2);
    assert_eq!(ctx.items().last(), Some(&ChatItem::Message(returned)));
}

#[test]
fn new_message_defaults_interrupted_false_item_prefix_and_role() {
    let m = ChatMessage::new(ChatRole::Assistant, "hi");
    assert!(!m.interrupted);
    assert!(m.id.starts_with("item_"), "{}", m.id);
    assert_eq!(m.role, ChatRole::Assistant);
    assert_eq!(m.metrics, None);
    assert_ne!(ChatMessage::new(ChatRole::User, "a").id, m.id);
}

#[test]
fn text_content_joins_text_parts_with_newline_or_none() {
    let img = ChatContent::Image(ImageContent::from_url("https://x/y.png"));
    let m = ChatMessage::with_content(ChatRole::User, vec!["a".into(), img.clone(), "b".into()]);
    assert_eq!(m.text_content().as_deref(), Some("a\nb"));
    let m = ChatMessage::with_content(ChatRole::User, vec![img]);
    assert_eq!(m.text_content(), None);
    let m = ChatMessage::with_content(ChatRole::User, vec![]);
    assert_eq!(m.text_content(), None);
}

#[test]
fn copy_gives_new_list_with_equal_items() {
    let ctx = ctx_of(vec![
        msg("s", ChatRole::System, "sys"),
        msg("u", ChatRole::User, "hi"),
        call("c", "call_1", "f"),
        output("o", "call_1", "f"),
        handoff("h"),
    ]);
    let mut copy = ctx.copy(&CopyOptions::default());
    assert_eq!(copy, ctx);
    copy.items_mut().clear();
    copy.add_message(ChatRole::User, "new");
    assert_eq!(ctx.len(), 5);
    assert_eq!(ids(&ctx), ["s", "u", "c", "o", "h"]);
}

#[test]
fn copy_shares_heavy_payloads() {
    let frame = AudioFrame::new(vec![1, 2, 3, 4], SampleRate::HZ_16000, 1);
    let Ok(frame) = frame else {
        panic!("valid frame");
    };
    let audio = AudioContent::new(vec![frame], None);
    let mut ctx = ChatContext::new();
    ctx.push(ChatMessage::with_content(
        ChatRole::User,
        vec![ChatContent::Audio(audio.clone())],
    ));
    let copy = ctx.copy(&CopyOptions::default());
    let Some(ChatContent::Audio(copied)) = copy.messages().next().map(|m| &m.content[0]) else {
        panic!("audio part expected");
    };
    assert!(Arc::ptr_eq(&copied.frames, &audio.frames));
}

#[test]
fn copy_exclude_function_calls_drops_all_function_items_keeps_messages() {
    let ctx = ctx_of(vec![
        msg("s", ChatRole::System, "sys"),
        msg("u", ChatRole::User, "hi"),
        call("c", "call_1", "f"),
        output("o", "call_1", "f"),
        msg("a", ChatRole::Assistant, "done"),
        handoff("h"),
    ]);
    let copy = ctx.copy(&CopyOptions::default().with_exclude_function_calls(true));
    assert_eq!(ids(&copy), ["s", "u", "a", "h"]);
}

#[test]
fn copy_tools_keeps_only_named_function_items_and_drops_unnamed_outputs() {
    let ctx = ctx_of(vec![
        msg("u", ChatRole::User, "hi"),
        call("c1", "call_1", "a"),
        output("o1", "call_1", "a"),
        call("c2", "call_2", "b"),
        output("o2", "call_2", "b"),
        output("o3", "call_3", ""),
        msg("a", ChatRole::Assistant, "done"),
    ]);
    let copy = ctx.copy(&CopyOptions::default().with_tools(["a"]));
    assert_eq!(ids(&copy), ["u", "c1", "o1", "a"]);
    // Even an empty tool list drops every function item, including the unnamed output.
    let copy = ctx.copy(&CopyOptions::default().with_tools(Vec::<String>::new()));
    assert_eq!(ids(&copy), ["u", "a"]);
    // Without `tools`, the unnamed output stays.
    assert_eq!(ctx.copy(&CopyOptions::default()).len(), 7);
}

#[test]
fn to_json_default_strips_image_and_audio_keeps_function_items_omits_none() {
    let Ok(frame) = AudioFrame::new(vec![0; 4], SampleRate::HZ_16000, 1) else {
        panic!("valid frame");
    };
    let mut user = ChatMessage::with_content(
        ChatRole::User,
        vec![
            "look".into(),
            ChatContent::Image(ImageContent::from_url("https://x/y.png")),
            ChatContent::Audio(AudioContent::new(vec![frame], None)),
        ],
    );
    user.id = "u".into();
    user.created_at = at(10.0);
    let mut h = AgentHandoff::new(None, "first");
    h.id = "h".into();
    h.created_at = at(11.0);
    let mut c = FunctionCall::new("call_1", "f", "{}");
    c.id = "c".into();
    c.created_at = at(12.0);
    let mut o = FunctionCallOutput::new("call_1", "f", "ok", false);
    o.id = "o".into();
    o.created_at = at(13.0);
    let ctx = ctx_of(vec![user.into(), h.into(), c.into(), o.into()]);

    let v = ctx.to_json(&ExportOptions::default());
    assert_eq!(
        v,
        json!({"items": [
            {"type": "message", "id": "u", "role": "user", "content": ["look"], "interrupted": false,
             "created_at": 10.0},
            {"type": "agent_handoff", "id": "h", "new_agent_id": "first", "created_at": 11.0},
            {"type": "function_call", "id": "c", "call_id": "call_1", "name": "f", "arguments": "{}",
             "created_at": 12.0},
            {"type": "function_call_output", "id": "o", "call_id": "call_1", "name": "f", "output": "ok",
             "is_error": false, "created_at": 13.0},
        ]})
    );
}

#[test]
fn to_json_export_options_exclude_function_calls_timestamps_metrics() {
    let mut m = ChatMessage::new(ChatRole::Assistant, "hi");
    m.id = "a".into();
    let mut metrics = MessageMetrics::default();
    metrics.llm_ttft = Some(Duration::from_millis(250));
    m.metrics = Some(metrics);
    let ctx = ctx_of(vec![m.into(), call("c", "call_1", "f")]);

    let full = ctx.to_json(&ExportOptions::default());
    assert_eq!(full["items"][0]["metrics"], json!({"llm_ttft": 0.25}));
    let v = ctx.to_json(
        &ExportOptions::default()
            .with_exclude_function_calls(true)
            .with_exclude_timestamps(true)
            .with_exclude_metrics(true),
    );
    assert_eq!(
        v,
        json!({"items": [
            {"type": "message", "id": "a", "role": "assistant", "content": ["hi"], "interrupted": false}
        ]})
    );
}

#[test]
fn json_round_trip_keeps_text_messages_function_calls_and_outputs() {
    let mut ctx = ChatContext::new();
    ctx.set_instructions("be brief").ok();
    ctx.add_message(ChatRole::User, "weather?");
    ctx.add_function_call("call_1", "get_weather", r#"{"city":"Paris"}"#);
    ctx.add_function_output("call_1", "get_weather", "sunny", false);
    ctx.add_function_output("call_2", "", "boom", true);
    ctx.add_agent_handoff(Some("a".into()), "b");
    let mut m = ChatMessage::new(ChatRole::Assistant, "It is sunny");
    m.interrupted = true;
    ctx.push(m);
    // Timestamps travel as f64 seconds (sub-microsecond precision is lost): use round values.
    for (i, item) in ctx.items_mut().iter_mut().enumerate() {
        let t = at(1_700_000_000.0 + i as f64 * 0.5);
        match item {
            ChatItem::Message(m) => m.created_at = t,
            ChatItem::FunctionCall(c) => c.created_at = t,
            ChatItem::FunctionCallOutput(o) => o.created_at = t,
            ChatItem::AgentHandoff(h) => h.created_at = t,
            _ => {}
        }
    }
    let v = ctx.to_json(&ExportOptions::default());
    let back = ChatContext::from_json(&v);
    assert_eq!(back.as_ref(), Ok(&ctx));
    // Through text with serde, too.
    let text = serde_json::to_string(&ctx).unwrap_or_default();
    let back: Result<ChatContext, _> = serde_json::from_str(&text);
    assert_eq!(back.ok().as_ref(), Some(&ctx));
}

#[test]
fn get_by_id_and_index_by_id_return_first_match_or_none() {
    let ctx = ctx_of(vec![
        msg("x", ChatRole::User, "first"),
        msg("y", ChatRole::User, "other"),
        msg("x", ChatRole::User, "second"),
    ]);
    let first = ctx.get_by_id("x").and_then(ChatItem::as_message);
    assert_eq!(
        first.and_then(ChatMessage::text_content).as_deref(),
        Some("first")
    );
    assert_eq!(ctx.index_by_id("x"), Some(0));
    assert_eq!(ctx.index_by_id("y"), Some(1));
    assert_eq!(ctx.get_by_id("nope"), None);
    assert_eq!(ctx.index_by_id("nope"), None);
}

#[test]
fn function_call_output_is_error_required_on_import_and_name_defaults_empty() {
    let v = json!({"items": [
        {"type": "function_call_output", "call_id": "c", "output": "ok"}
    ]});
    assert_eq!(
        ChatContext::from_json(&v),
        Err(ChatContextError::MissingField {
            path: "/items/0".into(),
            field: "is_error"
        })
    );
    let v = json!({"items": [
        {"type": "function_call_output", "id": "o", "call_id": "c", "output": "ok", "is_error": true}
    ]});
    let Ok(ctx) = ChatContext::from_json(&v) else {
        panic!("valid input");
    };
    let Some(ChatItem::FunctionCallOutput(o)) = ctx.items().first() else {
        panic!("output expected");
    };
    assert_eq!(o.name, "");
    assert!(o.is_error);
    assert_eq!(o.id, "o");
}

// ---------------------------------------------------------------------------------------------------------------
// Copy options beyond LiveKit 1.0

#[test]
fn copy_exclude_instructions_drops_system_and_developer_messages() {
    let ctx = ctx_of(vec![
        msg("s", ChatRole::System, "sys"),
        msg("d", ChatRole::Developer, "dev"),
        msg("u", ChatRole::User, "hi"),
        msg("a", ChatRole::Assistant, "yo"),
        call("c", "call_1", "f"),
    ]);
    let copy = ctx.copy(&CopyOptions::default().with_exclude_instructions(true));
    assert_eq!(ids(&copy), ["u", "a", "c"]);
}

#[test]
fn copy_exclude_empty_messages_and_handoffs() {
    let mut empty = ChatMessage::with_content(ChatRole::Assistant, vec![]);
    empty.id = "e".into();
    let ctx = ctx_of(vec![
        msg("u", ChatRole::User, ""),
        empty.into(),
        handoff("h"),
    ]);
    let copy = ctx.copy(&CopyOptions::default().with_exclude_empty_messages(true));
    assert_eq!(ids(&copy), ["u", "h"]);
    let copy = ctx.copy(&CopyOptions::default().with_exclude_handoffs(true));
    assert_eq!(ids(&copy), ["u", "e"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Truncation (VideoSDK behaviour 68 and our pairing rules)

#[test]
fn truncate_drops_leading_function_items_and_reinserts_system_message() {
    // VideoSDK 68: truncate(3) on [SYS, U1, A1, FunctionCall, FunctionCallOutput, U2] -> [SYS, U2].
    let mut ctx = ctx_of(vec![
        msg("sys", ChatRole::System, "be nice"),
        msg("u1", ChatRole::User, "hi"),
        msg("a1", ChatRole::Assistant, "hello"),
        call("fc", "call_1", "f"),
        output("fo", "call_1", "f"),
        msg("u2", ChatRole::User, "bye"),
    ]);
    ctx.truncate(3);
    assert_eq!(ids(&ctx), ["sys", "u2"]);
}

#[test]
fn truncate_reinserts_system_message_giving_max_plus_one_items() {
    // VideoSDK 68: truncate(2) on [SYS, U1, A1] -> [SYS, U1, A1].
    let mut ctx = ctx_of(vec![
        msg("sys", ChatRole::System, "be nice"),
        msg("u1", ChatRole::User, "hi"),
        msg("a1", ChatRole::Assistant, "hello"),
    ]);
    ctx.truncate(2);
    assert_eq!(ids(&ctx), ["sys", "u1", "a1"]);
}

#[test]
fn truncate_is_a_no_op_when_short_enough() {
    let items = vec![call("fc", "call_1", "f"), msg("u1", ChatRole::User, "hi")];
    let mut ctx = ctx_of(items.clone());
    ctx.truncate(2);
    assert_eq!(ctx.items(), items.as_slice());
    ctx.truncate(10);
    assert_eq!(ctx.items(), items.as_slice());
    let mut empty = ChatContext::new();
    empty.truncate(0);
    assert!(empty.is_empty());
}

#[test]
fn truncate_to_zero_keeps_only_instructions() {
    let mut ctx = ctx_of(vec![
        msg("u0", ChatRole::User, "hi"),
        msg("sys", ChatRole::System, "be nice"),
        msg("u1", ChatRole::User, "hi"),
    ]);
    ctx.truncate(0);
    assert_eq!(ids(&ctx), ["sys"]);
    let mut ctx = ctx_of(vec![msg("u1", ChatRole::User, "hi")]);
    ctx.truncate(0);
    assert!(ctx.is_empty());
}

#[test]
fn truncate_never_keeps_an_output_whose_call_was_cut() {
    // The call for call_1 is cut; its output arrives later, after an assistant message, and must go too.
    let mut ctx = ctx_of(vec![
        msg("u1", ChatRole::User, "hi"),
        call("fc1", "call_1", "slow"),
        msg("a1", ChatRole::Assistant, "working on it"),
        call("fc2", "call_2", "fast"),
        output("fo2", "call_2", "fast"),
        output("fo1", "call_1", "slow"),
        msg("u2", ChatRole::User, "thanks"),
    ]);
    ctx.truncate(5);
    assert_eq!(ids(&ctx), ["a1", "fc2", "fo2", "u2"]);
    for item in ctx.items() {
        if let ChatItem::FunctionCallOutput(o) = item {
            let has_call = ctx
                .items()
                .iter()
                .any(|i| matches!(i, ChatItem::FunctionCall(c) if c.call_id == o.call_id));
            assert!(has_call, "orphan output {}", o.id);
        }
    }
}

#[test]
fn truncate_drops_a_kept_call_whose_output_was_cut() {
    // Unusual order (output before call): the pair is still removed together.
    let mut ctx = ctx_of(vec![
        output("fo1", "call_1", "f"),
        msg("u1", ChatRole::User, "hi"),
        call("fc1", "call_1", "f"),
        msg("u2", ChatRole::User, "bye"),
    ]);
    ctx.truncate(3);
    assert_eq!(ids(&ctx), ["u1", "u2"]);
}

#[test]
fn truncate_keeps_the_instructions_message_by_id_first() {
    let mut instructions = ChatMessage::new(ChatRole::Developer, "rules");
    instructions.id = INSTRUCTIONS_ID.into();
    let mut ctx = ctx_of(vec![
        msg("other_sys", ChatRole::System, "old system"),
        msg("u0", ChatRole::User, "hi"),
        instructions.into(),
        msg("u1", ChatRole::User, "a"),
        msg("a1", ChatRole::Assistant, "b"),
        msg("u2", ChatRole::User, "c"),
    ]);
    ctx.truncate(2);
    assert_eq!(ids(&ctx), [INSTRUCTIONS_ID, "a1", "u2"]);
    // Already inside the window: not duplicated.
    let mut ctx = ctx_of(vec![
        msg("u0", ChatRole::User, "hi"),
        msg("sys", ChatRole::System, "rules"),
        msg("u1", ChatRole::User, "a"),
    ]);
    ctx.truncate(2);
    assert_eq!(ids(&ctx), ["sys", "u1"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Instructions and editing

#[test]
fn set_instructions_inserts_a_system_message_then_replaces_its_content() {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "hi");
    assert_eq!(ctx.instructions(), None);
    let Ok(m) = ctx.set_instructions("v1") else {
        panic!("no conflicting item");
    };
    assert_eq!(m.id, INSTRUCTIONS_ID);
    assert_eq!(m.role, ChatRole::System);
    assert_eq!(ctx.index_by_id(INSTRUCTIONS_ID), Some(0));

    // Replacement keeps position and role.
    if let Some(ChatItem::Message(m)) = ctx.get_mut_by_id(INSTRUCTIONS_ID) {
        m.role = ChatRole::Developer;
    }
    let moved = ctx.remove_by_id(INSTRUCTIONS_ID);
    let Some(moved) = moved else {
        panic!("instructions present");
    };
    ctx.push(moved);
    assert!(ctx.set_instructions("v2").is_ok());
    assert_eq!(ctx.len(), 2);
    assert_eq!(ctx.index_by_id(INSTRUCTIONS_ID), Some(1));
    let instructions = ctx.instructions();
    assert_eq!(instructions.map(|m| m.role), Some(ChatRole::Developer));
    assert_eq!(
        instructions.map(|m| m.content.clone()),
        Some(vec![ChatContent::Text("v2".into())])
    );
}

#[test]
fn set_instructions_fails_when_the_id_holds_a_non_message() {
    let mut ctx = ctx_of(vec![call(INSTRUCTIONS_ID, "call_1", "f")]);
    let before = ctx.clone();
    assert_eq!(
        ctx.set_instructions("x").err(),
        Some(ChatContextError::InstructionsNotAMessage {
            id: INSTRUCTIONS_ID.into(),
            found: "function_call"
        })
    );
    assert_eq!(ctx, before);
    assert_eq!(ctx.instructions(), None);
}

#[test]
fn insert_remove_and_message_helpers() {
    let mut ctx = ChatContext::new();
    ctx.insert(5, msg("b", ChatRole::User, "b"));
    ctx.insert(0, msg("a", ChatRole::Assistant, "a"));
    ctx.insert(99, msg("c", ChatRole::User, "c"));
    ctx.insert(2, call("f", "call_1", "f"));
    assert_eq!(ids(&ctx), ["a", "b", "f", "c"]);
    assert_eq!(ctx.messages().count(), 3);
    assert_eq!(
        ctx.last_message(ChatRole::User).map(|m| m.id.as_str()),
        Some("c")
    );
    assert_eq!(
        ctx.last_message(ChatRole::Assistant).map(|m| m.id.as_str()),
        Some("a")
    );
    assert_eq!(ctx.last_message(ChatRole::System), None);
    assert_eq!(
        ctx.remove_by_id("f").map(|i| i.kind()),
        Some("function_call")
    );
    assert_eq!(ctx.remove_by_id("f"), None);
    assert_eq!(ids(&ctx), ["a", "b", "c"]);
    let pushed = ctx
        .push_message(ChatMessage::new(ChatRole::User, "d"))
        .id
        .clone();
    assert_eq!(ctx.index_by_id(&pushed), Some(3));
}

// ---------------------------------------------------------------------------------------------------------------
// Media export

#[test]
fn audio_export_when_not_excluded_round_trips_frames_bit_exact() {
    let samples: Vec<i16> = vec![i16::MIN, -1, 0, 1, i16::MAX, 12345, -12345, 7];
    let Ok(mono) = AudioFrame::new(samples.clone(), SampleRate::HZ_16000, 1) else {
        panic!("valid frame");
    };
    let Ok(stereo) = AudioFrame::new(samples, SampleRate::HZ_48000, 2) else {
        panic!("valid frame");
    };
    let mut m = ChatMessage::with_content(
        ChatRole::User,
        vec![ChatContent::Audio(AudioContent::new(
            vec![mono.clone(), stereo.clone()],
            Some("hello".into()),
        ))],
    );
    m.created_at = at(5.0);
    let ctx = ctx_of(vec![m.into()]);
    let v = ctx.to_json(&ExportOptions::default().with_exclude_audio(false));
    let part = &v["items"][0]["content"][0];
    assert_eq!(part["type"], "audio_content");
    assert_eq!(part["transcript"], "hello");
    assert_eq!(part["frames"][0]["sample_rate"], 16000);
    assert_eq!(part["frames"][1]["num_channels"], 2);
    assert_eq!(part["frames"][0]["data"], "AID//wAAAQD/fzkwx88HAA==");

    let Ok(back) = ChatContext::from_json(&v) else {
        panic!("valid JSON");
    };
    assert_eq!(back, ctx);
    let Some(ChatContent::Audio(audio)) = back.messages().next().map(|m| &m.content[0]) else {
        panic!("audio part");
    };
    assert_eq!(audio.frames.as_ref(), [mono, stereo].as_slice());
}

#[test]
fn image_export_when_not_excluded_uses_urls_and_data_urls() {
    let mut url = ImageContent::from_url("https://x/y.png");
    url.id = "img_1".into();
    url.inference_width = Some(320);
    url.inference_detail = ImageDetail::Low;
    let mut bytes = ImageContent::new(ImageSource::Bytes {
        mime_type: "image/png".into(),
        data: Arc::from(&b"\x89PNG"[..]),
    });
    bytes.id = "img_2".into();
    let mut m = ChatMessage::with_content(
        ChatRole::User,
        vec![ChatContent::Image(url.clone()), ChatContent::Image(bytes)],
    );
    m.id = "u".into();
    m.created_at = at(1.0);
    let ctx = ctx_of(vec![m.into()]);

    let v = ctx.to_json(&ExportOptions::default().with_exclude_image(false));
    assert_eq!(
        v["items"][0]["content"],
        json!([
            {"type": "image_content", "id": "img_1", "image": "https://x/y.png", "inference_width": 320,
             "inference_detail": "low"},
            {"type": "image_content", "id": "img_2", "image": "data:image/png;base64,iVBORw==",
             "inference_detail": "auto"},
        ])
    );
    // Import keeps a data URL as a URL.
    let Ok(back) = ChatContext::from_json(&v) else {
        panic!("valid JSON");
    };
    let content = back.messages().next().map(|m| m.content.clone());
    let Some([ChatContent::Image(first), ChatContent::Image(second)]) = content.as_deref() else {
        panic!("two images");
    };
    assert_eq!(first, &url);
    assert_eq!(
        second.image,
        ImageSource::Url("data:image/png;base64,iVBORw==".into())
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Golden fixture

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap_or(Value::Null)
}

#[test]
fn fixture_v1_parses_to_the_expected_items() {
    let Ok(ctx) = ChatContext::from_json(&fixture()) else {
        panic!("fixture must parse");
    };
    let kinds: Vec<&str> = ctx.items().iter().map(ChatItem::kind).collect();
    assert_eq!(
        kinds,
        [
            "message",
            "message",
            "function_call",
            "function_call_output",
            "function_call_output",
            "message",
            "agent_handoff",
            "agent_handoff",
            "message"
        ]
    );
    assert_eq!(
        ctx.instructions()
            .and_then(ChatMessage::text_content)
            .as_deref(),
        Some("You are a helpful voice assistant.")
    );

    let Some(ChatItem::Message(user)) = ctx.get_by_id("item_user1") else {
        panic!("user message");
    };
    assert_eq!(user.role, ChatRole::User);
    assert_eq!(user.created_at, at(1_735_689_601.5));
    assert_eq!(user.content.len(), 4);
    let ChatContent::Image(img) = &user.content[1] else {
        panic!("image");
    };
    assert_eq!(
        img.image,
        ImageSource::Url("https://example.com/cat.jpg".into())
    );
    assert_eq!(
        (img.inference_width, img.inference_height),
        (Some(512), Some(384))
    );
    assert_eq!(img.inference_detail, ImageDetail::High);
    let ChatContent::Audio(audio) = &user.content[3] else {
        panic!("audio");
    };
    assert_eq!(audio.transcript.as_deref(), Some("what is in this picture"));
    assert_eq!(audio.frames[0].data(), [0, 1, -1, 32767, -32768, 256]);
    assert_eq!(audio.frames[0].sample_rate(), SampleRate::HZ_16000);
    assert_eq!(audio.frames[1].data(), [100, -100, 1000, -1000]);
    assert_eq!(audio.frames[1].num_channels(), 2);
    let metrics = user.metrics.clone().unwrap_or_default();
    assert_eq!(metrics.started_speaking_at, Some(at(1_735_689_600.25)));
    assert_eq!(
        metrics.transcription_delay,
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        metrics.on_user_turn_completed_delay,
        Some(Duration::from_millis(125))
    );

    let Some(ChatItem::FunctionCall(c)) = ctx.get_by_id("item_call1") else {
        panic!("call");
    };
    assert_eq!(
        (c.call_id.as_str(), c.name.as_str()),
        ("call_abc", "get_weather")
    );
    assert_eq!(c.arguments, r#"{"city":"Paris"}"#);
    let Some(ChatItem::FunctionCallOutput(o)) = ctx.get_by_id("item_out2") else {
        panic!("output");
    };
    assert!(o.is_error);
    assert_eq!(o.name, "");

    let Some(ChatItem::Message(asst)) = ctx.get_by_id("item_asst1") else {
        panic!("assistant message");
    };
    assert!(asst.interrupted);
    let metrics = asst.metrics.clone().unwrap_or_default();
    assert_eq!(metrics.e2e_latency, Some(Duration::from_millis(1125)));
    assert_eq!(
        ctx.get_by_id("item_handoff1")
            .and_then(ChatItem::as_agent_handoff)
            .map(|h| &h.old_agent_id),
        Some(&None)
    );
    let Some(ChatItem::Message(dev)) = ctx.get_by_id("item_dev1") else {
        panic!("developer message");
    };
    assert_eq!((dev.role, dev.content.len()), (ChatRole::Developer, 0));
}

#[test]
fn fixture_v1_reserializes_exactly() {
    let v = fixture();
    let Ok(ctx) = ChatContext::from_json(&v) else {
        panic!("fixture must parse");
    };
    assert_eq!(ctx.to_json(&ExportOptions::full()), v);
    // Field order is part of the form: the pretty text is byte-identical.
    let text = serde_json::to_string_pretty(&ctx).unwrap_or_default();
    assert_eq!(text.trim_end(), FIXTURE.trim_end());
}

// ---------------------------------------------------------------------------------------------------------------
// Malformed input

fn import_err(v: Value) -> ChatContextError {
    match ChatContext::from_json(&v) {
        Ok(ctx) => panic!("expected an error, got {ctx:?}"),
        Err(e) => e,
    }
}

#[test]
fn malformed_json_inputs_give_typed_errors() {
    use ChatContextError as E;
    assert_eq!(
        import_err(json!([])),
        E::WrongType {
            path: "".into(),
            expected: "object",
            found: "array"
        }
    );
    assert_eq!(
        import_err(json!({})),
        E::MissingField {
            path: "".into(),
            field: "items"
        }
    );
    assert_eq!(
        import_err(json!({"items": {}})),
        E::WrongType {
            path: "/items".into(),
            expected: "array",
            found: "object"
        }
    );
    assert_eq!(
        import_err(json!({"items": [1]})),
        E::WrongType {
            path: "/items/0".into(),
            expected: "object",
            found: "number"
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"id": "x"}]})),
        E::MissingField {
            path: "/items/0".into(),
            field: "type"
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"type": "agent_config_update"}]})),
        E::UnknownType {
            path: "/items/0".into(),
            type_name: "agent_config_update".into()
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"type": "message", "role": "robot", "content": []}]})),
        E::InvalidValue {
            path: "/items/0/role".into(),
            reason: "unknown role `robot`".into()
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"type": "message", "role": "user"}]})),
        E::MissingField {
            path: "/items/0".into(),
            field: "content"
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"type": "message", "role": "user", "content": "hi"}]})),
        E::WrongType {
            path: "/items/0/content".into(),
            expected: "array",
            found: "string"
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"type": "message", "role": "user", "content": [true]}]})),
        E::WrongType {
            path: "/items/0/content/0".into(),
            expected: "string or object",
            found: "boolean"
        }
    );
    assert_eq!(
        import_err(
            json!({"items": [{"type": "message", "role": "user", "content": [{"type": "video"}]}]})
        ),
        E::UnknownType {
            path: "/items/0/content/0".into(),
            type_name: "video".into()
        }
    );
    assert_eq!(
        import_err(
            json!({"items": [{"type": "message", "role": "user", "content": [], "interrupted": "no"}]})
        ),
        E::WrongType {
            path: "/items/0/interrupted".into(),
            expected: "boolean",
            found: "string"
        }
    );
    assert_eq!(
        import_err(
            json!({"items": [{"type": "message", "role": "user", "content": [], "created_at": "now"}]})
        ),
        E::WrongType {
            path: "/items/0/created_at".into(),
            expected: "number",
            found: "string"
        }
    );
    assert!(matches!(
        import_err(json!({"items": [{"type": "message", "role": "user", "content": [], "created_at": 1e300}]})),
        E::InvalidValue { path, .. } if path == "/items/0/created_at"
    ));
    assert!(matches!(
        import_err(json!({"items": [{"type": "message", "role": "user", "content": [],
            "metrics": {"e2e_latency": -1.0}}]})),
        E::InvalidValue { path, .. } if path == "/items/0/metrics/e2e_latency"
    ));
    assert_eq!(
        import_err(
            json!({"items": [{"type": "function_call", "call_id": "c", "name": 5, "arguments": "{}"}]})
        ),
        E::WrongType {
            path: "/items/0/name".into(),
            expected: "string",
            found: "number"
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"type": "function_call", "call_id": "c", "name": "f"}]})),
        E::MissingField {
            path: "/items/0".into(),
            field: "arguments"
        }
    );
    assert_eq!(
        import_err(json!({"items": [{"type": "agent_handoff", "old_agent_id": "a"}]})),
        E::MissingField {
            path: "/items/0".into(),
            field: "new_agent_id"
        }
    );
    assert!(matches!(
        import_err(json!({"items": [{"type": "message", "role": "user", "content": [
            {"type": "image_content", "image": "https://x", "inference_detail": "ultra"}]}]})),
        E::InvalidValue { path, .. } if path == "/items/0/content/0/inference_detail"
    ));
    assert!(matches!(
        import_err(json!({"items": [{"type": "message", "role": "user", "content": [
            {"type": "image_content", "image": "https://x", "inference_width": -3}]}]})),
        E::WrongType { path, .. } if path == "/items/0/content/0/inference_width"
    ));
    assert!(matches!(
        import_err(json!({"items": [{"type": "message", "role": "user", "content": [
            {"type": "image_content", "image": "https://x", "inference_height": 5_000_000_000u64}]}]})),
        E::InvalidValue { path, .. } if path == "/items/0/content/0/inference_height"
    ));
}

#[test]
fn malformed_audio_gives_typed_errors() {
    use ChatContextError as E;
    fn with_frame(frame: Value) -> Value {
        json!({"items": [{"type": "message", "role": "user", "content": [
            {"type": "audio_content", "frames": [frame]}]}]})
    }
    let path = "/items/0/content/0/frames/0";
    assert!(matches!(
        import_err(with_frame(json!({"sample_rate": 16000, "num_channels": 1, "data": "!!not base64"}))),
        E::InvalidValue { path: p, .. } if p == format!("{path}/data")
    ));
    assert!(matches!(
        import_err(with_frame(json!({"sample_rate": 0, "num_channels": 1, "data": ""}))),
        E::InvalidAudio { path: p, .. } if p == path
    ));
    assert!(matches!(
        import_err(with_frame(json!({"sample_rate": 16000, "num_channels": 0, "data": ""}))),
        E::InvalidAudio { path: p, .. } if p == path
    ));
    // Three bytes is not a whole number of 16-bit samples.
    assert!(matches!(
        import_err(with_frame(json!({"sample_rate": 16000, "num_channels": 1, "data": "AAAA"}))),
        E::InvalidAudio { path: p, .. } if p == path
    ));
    // Three samples cannot be split into two channels.
    assert!(matches!(
        import_err(with_frame(json!({"sample_rate": 16000, "num_channels": 2, "data": "AAAAAAAA"}))),
        E::InvalidAudio { path: p, .. } if p == path
    ));
    assert!(matches!(
        import_err(with_frame(json!({"sample_rate": 16000, "num_channels": 70000, "data": ""}))),
        E::InvalidValue { path: p, .. } if p == format!("{path}/num_channels")
    ));
    assert_eq!(
        import_err(with_frame(json!({"num_channels": 1, "data": ""}))),
        E::MissingField {
            path: path.into(),
            field: "sample_rate"
        }
    );
    assert_eq!(
        import_err(
            json!({"items": [{"type": "message", "role": "user", "content": [
            {"type": "audio_content"}]}]})
        ),
        E::MissingField {
            path: "/items/0/content/0".into(),
            field: "frames"
        }
    );
}

#[test]
fn deserialize_reports_typed_errors_as_serde_errors() {
    let err = serde_json::from_str::<ChatContext>(r#"{"items":[{"type":"nope"}]}"#)
        .err()
        .map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("/items/0: unknown type `nope`"));
    let item: Result<ChatItem, _> = serde_json::from_str(
        r#"{"type":"agent_handoff","id":"h","new_agent_id":"b","created_at":2.0}"#,
    );
    let Ok(ChatItem::AgentHandoff(h)) = item else {
        panic!("handoff");
    };
    assert_eq!(
        (h.id.as_str(), h.new_agent_id.as_str(), h.created_at),
        ("h", "b", at(2.0))
    );
}

#[test]
fn missing_optional_fields_take_defaults() {
    let before = SystemTime::now();
    let v = json!({"items": [{"type": "message", "role": "user", "content": ["hi"]}]});
    let Ok(ctx) = ChatContext::from_json(&v) else {
        panic!("valid");
    };
    let Some(m) = ctx.messages().next() else {
        panic!("message");
    };
    assert!(m.id.starts_with("item_"));
    assert!(!m.interrupted);
    assert!(m.created_at >= before);
    assert_eq!(m.metrics, None);
    // LiveKit's metric names are accepted on import.
    let v = json!({"items": [{"type": "message", "role": "assistant", "content": [],
        "metrics": {"llm_node_ttft": 0.5, "tts_node_ttfb": 0.25}}]});
    let Ok(ctx) = ChatContext::from_json(&v) else {
        panic!("valid");
    };
    let metrics = ctx
        .messages()
        .next()
        .and_then(|m| m.metrics.clone())
        .unwrap_or_default();
    assert_eq!(metrics.llm_ttft, Some(Duration::from_millis(500)));
    assert_eq!(metrics.tts_ttfb, Some(Duration::from_millis(250)));
}
