//! The OpenAI Realtime model against the Realtime emulator: the conformance suite, then every protocol feature.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::chat::{ChatContext, ChatItem, ChatMessage, ChatRole, FunctionCallOutput};
use agents_core::llm::ToolChoice;
use agents_core::realtime::{
    RealtimeConnection, RealtimeError, RealtimeEvent, RealtimeModel, RealtimeSessionOptions,
    ResponseStatus,
};
use agents_core::stream::EventStream;
use agents_core::tools::ToolDefinition;
use agents_core::{ApiConnectOptions, ApiKey};
use agents_openai::ClientOptions;
use agents_openai::realtime::{
    OpenAiRealtimeModel, Output, Protocol, RealtimeOptions, ServerVad, TurnDetection,
};
use agents_testkit::EmulatorServer;
use agents_testkit::conformance::realtime::{RealtimeHarness, run_all};
use agents_testkit::emulators::openai_realtime::{
    AUDIO_MS_PER_CHAR, Fault, OpenAiRealtimeEmulator, ScriptedResponse,
};
use agents_testkit::signal;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "sk-test-realtime-key";
const STEP: Duration = Duration::from_secs(10);

struct Harness {
    emu: OpenAiRealtimeEmulator,
    server: EmulatorServer,
    options: RealtimeOptions,
}

impl Harness {
    async fn new(options: RealtimeOptions) -> Self {
        let emu = OpenAiRealtimeEmulator::new().with_api_key(KEY);
        let server = emu.serve().await.unwrap();
        Self {
            emu,
            server,
            options,
        }
    }

    fn client(&self, key: &str) -> ClientOptions {
        ClientOptions::default()
            .with_api_key(key)
            .with_base_url(format!("{}/v1", self.server.http_url()))
    }

    fn model_with_key(&self, key: &str) -> OpenAiRealtimeModel {
        OpenAiRealtimeModel::new(self.client(key), self.options.clone())
    }

    async fn open(&self, options: RealtimeSessionOptions) -> RealtimeConnection {
        tokio::time::timeout(STEP, self.model_with_key(KEY).session(options))
            .await
            .expect("session timed out")
            .expect("session failed")
    }
}

#[async_trait]
impl RealtimeHarness for Harness {
    fn model(&self) -> Arc<dyn RealtimeModel> {
        Arc::new(self.model_with_key(KEY))
    }
    async fn script_reply(&self, text: &str) {
        self.emu.push_response(ScriptedResponse::text(text));
    }
    async fn script_function_call(&self, name: &str, arguments: &str) {
        self.emu
            .push_response(ScriptedResponse::function_call(name, arguments));
    }
}

fn fast_retry() -> RealtimeSessionOptions {
    let mut o = RealtimeSessionOptions::default();
    o.conn_options = ApiConnectOptions::default()
        .with_max_retry(2)
        .with_retry_interval(Duration::from_millis(50))
        .with_timeout(Duration::from_secs(5));
    o
}

async fn next(events: &mut EventStream<RealtimeEvent>) -> RealtimeEvent {
    tokio::time::timeout(STEP, events.next())
        .await
        .expect("no event in time")
        .expect("events ended")
}

/// Reads until `pred` matches; returns everything read, the match last.
async fn until(
    events: &mut EventStream<RealtimeEvent>,
    pred: impl Fn(&RealtimeEvent) -> bool,
) -> Vec<RealtimeEvent> {
    let mut out = Vec::new();
    loop {
        let e = next(events).await;
        let hit = pred(&e);
        out.push(e);
        if hit {
            return out;
        }
    }
}

fn is_done(e: &RealtimeEvent) -> bool {
    matches!(e, RealtimeEvent::ResponseDone { .. })
}

fn text_of(events: &[RealtimeEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::TextDelta { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect()
}

fn manual() -> RealtimeOptions {
    RealtimeOptions::default().with_turn_detection(None)
}

#[tokio::test]
async fn conformance() {
    let h = Harness::new(manual()).await;
    run_all(&h).await;
}

#[tokio::test]
async fn conformance_beta_protocol() {
    let h = Harness::new(manual().with_protocol(Protocol::Beta)).await;
    run_all(&h).await;
    let conns = h.emu.connections();
    assert!(conns.iter().all(|c| c.beta), "every connection is beta");
}

#[tokio::test]
async fn session_update_carries_the_configuration() {
    let options = RealtimeOptions::default()
        .with_model("gpt-realtime-test")
        .with_voice("cedar")
        .with_turn_detection(Some(TurnDetection::ServerVad(
            ServerVad::default()
                .with_silence_duration(Duration::from_millis(700))
                .with_threshold(0.6),
        )))
        .with_max_output_tokens(512);
    let h = Harness::new(options).await;
    let mut so = RealtimeSessionOptions::default();
    so.instructions = Some("Be brief.".into());
    so.tools = vec![
        ToolDefinition::new(
            "lookup",
            "Looks up",
            json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        )
        .unwrap(),
    ];
    so.tool_choice = Some(ToolChoice::Required);
    let conn = h.open(so).await;
    let rec = &h.emu.connections()[0];
    assert_eq!(rec.model.as_deref(), Some("gpt-realtime-test"));
    assert!(rec.authorized);
    assert!(!rec.beta);
    let update = &rec.events_of("session.update")[0]["session"];
    assert_eq!(update["type"], "realtime");
    assert_eq!(update["instructions"], "Be brief.");
    assert_eq!(update["output_modalities"], json!(["audio"]));
    assert_eq!(update["audio"]["output"]["voice"], "cedar");
    assert_eq!(
        update["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(update["audio"]["output"]["format"]["rate"], 24000);
    let td = &update["audio"]["input"]["turn_detection"];
    assert_eq!(td["type"], "server_vad");
    assert_eq!(td["silence_duration_ms"], 700);
    assert!((td["threshold"].as_f64().unwrap() - 0.6).abs() < 1e-6);
    assert_eq!(
        update["audio"]["input"]["transcription"]["model"],
        "gpt-4o-mini-transcribe"
    );
    assert_eq!(update["tools"][0]["name"], "lookup");
    assert_eq!(update["tools"][0]["type"], "function");
    assert_eq!(update["tool_choice"], "required");
    assert_eq!(update["max_output_tokens"], 512);

    // Run-time updates are acknowledged and recorded.
    conn.session
        .update_instructions("Be verbose.")
        .await
        .unwrap();
    conn.session
        .update_tool_choice(ToolChoice::Function("lookup".into()))
        .await
        .unwrap();
    conn.session.update_tools(Vec::new()).await.unwrap();
    let updates = h.emu.connections()[0].events_of("session.update");
    assert_eq!(updates.len(), 4);
    assert_eq!(updates[1]["session"]["instructions"], "Be verbose.");
    assert_eq!(
        updates[2]["session"]["tool_choice"],
        json!({"type": "function", "name": "lookup"})
    );
    assert_eq!(updates[3]["session"]["tools"], json!([]));
    conn.session.close().await.unwrap();
}

#[tokio::test]
async fn beta_session_update_uses_beta_fields() {
    let h = Harness::new(
        RealtimeOptions::default()
            .with_protocol(Protocol::Beta)
            .with_output(Output::Text)
            .with_temperature(0.7),
    )
    .await;
    let _conn = h.open(RealtimeSessionOptions::default()).await;
    let rec = &h.emu.connections()[0];
    assert!(rec.beta);
    assert!(
        rec.headers
            .iter()
            .any(|(k, v)| k == "openai-beta" && v == "realtime=v1")
    );
    let s = &rec.events_of("session.update")[0]["session"];
    assert!(s.get("type").is_none());
    assert_eq!(s["modalities"], json!(["text"]));
    assert_eq!(s["input_audio_format"], "pcm16");
    assert!((s["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
}

#[tokio::test]
async fn text_only_output_gives_text_deltas_and_no_audio() {
    let h = Harness::new(manual().with_output(Output::Text)).await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    h.emu
        .push_response(ScriptedResponse::text("Just text here"));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    assert_eq!(text_of(&events), "Just text here");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RealtimeEvent::AudioDelta { .. }))
    );
}

#[tokio::test]
async fn audio_both_ways_and_manual_commit() {
    let h = Harness::new(manual()).await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    let frames = signal::tone(Duration::from_millis(300), SampleRate::HZ_24000);
    let pushed: usize = frames.iter().map(AudioFrame::samples_per_channel).sum();
    for f in frames {
        conn.session.push_audio(f).await.unwrap();
    }
    conn.session.commit_audio().await.unwrap();
    let rec = &h.emu.connections()[0];
    assert_eq!(
        rec.appended_samples(),
        pushed,
        "every sample reached the server"
    );
    assert_eq!(rec.events_of("input_audio_buffer.commit").len(), 1);
    // The committed user item is mirrored.
    let created = until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::ConversationItemCreated { .. })
    })
    .await;
    match created.last() {
        Some(RealtimeEvent::ConversationItemCreated {
            item: ChatItem::Message(m),
        }) => assert_eq!(m.role, ChatRole::User),
        e => panic!("unexpected {e:?}"),
    }

    // Output audio follows the text: AUDIO_MS_PER_CHAR per character, 24 kHz mono.
    h.emu.push_response(ScriptedResponse::text("Hello world"));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    let samples: usize = events
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::AudioDelta { frame, .. } => {
                assert_eq!(frame.sample_rate(), SampleRate::HZ_24000);
                assert_eq!(frame.num_channels(), 1);
                Some(frame.samples_per_channel())
            }
            _ => None,
        })
        .sum();
    let chars = "Helloworld".len() as u64;
    assert_eq!(samples as u64, chars * AUDIO_MS_PER_CHAR * 24);

    // Clear and a too-short commit.
    conn.session.clear_audio().await.unwrap();
    let err = conn.session.commit_audio().await.unwrap_err();
    match err {
        RealtimeError::Api(e) => assert!(e.message().contains("input_audio_buffer_commit_empty")),
        e => panic!("unexpected {e:?}"),
    }
}

#[tokio::test]
async fn server_vad_turn_with_transcription_and_reply() {
    let h = Harness::new(RealtimeOptions::default().with_turn_detection(Some(
        TurnDetection::ServerVad(
            ServerVad::default().with_silence_duration(Duration::from_millis(200)),
        ),
    )))
    .await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    h.emu.push_user_transcript("what is the weather");
    h.emu.push_response(ScriptedResponse::text("It is sunny."));
    let audio = signal::sequence(
        &[
            (true, Duration::from_millis(400)),
            (false, Duration::from_millis(400)),
        ],
        SampleRate::HZ_24000,
    );
    for f in audio {
        conn.session.push_audio(f).await.unwrap();
    }
    let events = until(&mut conn.events, is_done).await;
    let started = events
        .iter()
        .position(|e| matches!(e, RealtimeEvent::InputSpeechStarted))
        .expect("speech started");
    let stopped = events
        .iter()
        .position(|e| {
            matches!(
                e,
                RealtimeEvent::InputSpeechStopped {
                    user_transcription_enabled: true
                }
            )
        })
        .expect("speech stopped");
    assert!(started < stopped);
    let partial: String = events
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::InputAudioTranscription {
                transcript,
                is_final: false,
                ..
            } => Some(transcript.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(partial, "what is the weather");
    let (final_item, final_text) = events
        .iter()
        .find_map(|e| match e {
            RealtimeEvent::InputAudioTranscription {
                item_id,
                transcript,
                is_final: true,
            } => Some((item_id.clone(), transcript.clone())),
            _ => None,
        })
        .expect("final transcript");
    assert_eq!(final_text, "what is the weather");
    assert!(events.iter().any(|e| matches!(
        e,
        RealtimeEvent::ResponseCreated {
            user_initiated: false,
            ..
        }
    )));
    assert_eq!(text_of(&events), "It is sunny.");
    let ctx = conn.session.chat_ctx();
    let user = ctx
        .get_by_id(&final_item)
        .and_then(ChatItem::as_message)
        .unwrap();
    assert_eq!(user.text_content().as_deref(), Some("what is the weather"));
}

#[tokio::test]
async fn transcription_failure_is_a_recoverable_error() {
    let h = Harness::new(RealtimeOptions::default().with_turn_detection(Some(
        TurnDetection::ServerVad(ServerVad::default().with_create_response(false)),
    )))
    .await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    for f in signal::sequence(
        &[
            (true, Duration::from_millis(200)),
            (false, Duration::from_millis(600)),
        ],
        SampleRate::HZ_24000,
    ) {
        conn.session.push_audio(f).await.unwrap();
    }
    let events = until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::Error { .. })
    })
    .await;
    match events.last() {
        Some(RealtimeEvent::Error {
            error: RealtimeError::Api(e),
            recoverable: true,
        }) => assert!(e.message().contains("transcription failed")),
        e => panic!("unexpected {e:?}"),
    }
}

#[tokio::test]
async fn function_call_round_trip_sends_output_then_response_create() {
    let h = Harness::new(manual()).await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    h.emu.push_response(ScriptedResponse::function_call(
        "get_time",
        r#"{"tz":"UTC"}"#,
    ));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    let call = events
        .iter()
        .find_map(|e| match e {
            RealtimeEvent::FunctionCall { call, .. } => Some(call.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(call.name, "get_time");
    assert_eq!(call.arguments, r#"{"tz":"UTC"}"#);

    // An output for an unknown call is refused by the server, as a typed error of the call.
    let mut bad = conn.session.chat_ctx();
    bad.push(FunctionCallOutput::new("call_nope", "get_time", "x", false));
    let err = conn.session.update_chat_ctx(&bad).await.unwrap_err();
    assert!(matches!(err, RealtimeError::Api(_)), "{err:?}");

    let mut ctx = conn.session.chat_ctx();
    let output = FunctionCallOutput::new(call.call_id.clone(), "get_time", "12:00", false);
    ctx.push(output.clone());
    conn.session.update_chat_ctx(&ctx).await.unwrap();
    h.emu.push_response(ScriptedResponse::text("It is noon."));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    assert_eq!(text_of(&events), "It is noon.");

    let rec = &h.emu.connections()[0];
    let kinds: Vec<&str> = rec
        .events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|t| *t != "session.update")
        .collect();
    let out_at = rec
        .events
        .iter()
        .position(|e| {
            e["item"]["type"] == "function_call_output"
                && e["item"]["call_id"] == json!(call.call_id)
        })
        .unwrap();
    assert_eq!(rec.events[out_at]["item"]["output"], "12:00");
    assert_eq!(rec.events[out_at]["previous_item_id"], json!(call.id));
    assert_eq!(rec.events[out_at + 1]["type"], "response.create");
    assert_eq!(kinds.iter().filter(|k| **k == "response.create").count(), 2);
    let mirrored = conn.session.chat_ctx();
    let o = mirrored
        .get_by_id(&output.id)
        .unwrap()
        .as_function_call_output()
        .unwrap();
    assert_eq!(o.name, "get_time");
}

#[tokio::test]
async fn interrupt_and_truncate_to_the_played_audio() {
    let h = Harness::new(manual()).await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    h.emu.push_response(ScriptedResponse::text(
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
    ));
    conn.session.generate_reply(None).await.unwrap();
    let mut item = String::new();
    let mut received = Duration::ZERO;
    let mut deltas = 0;
    while deltas < 3 {
        if let RealtimeEvent::AudioDelta { item_id, frame, .. } = next(&mut conn.events).await {
            item = item_id;
            received += frame.duration();
            deltas += 1;
        }
    }
    conn.session.interrupt().await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    for e in &events {
        if let RealtimeEvent::AudioDelta { frame, .. } = e {
            received += frame.duration();
        }
    }
    match events.last() {
        Some(RealtimeEvent::ResponseDone {
            status, metrics, ..
        }) => {
            assert_eq!(*status, ResponseStatus::Cancelled);
            assert!(metrics.as_ref().unwrap().cancelled);
        }
        e => panic!("{e:?}"),
    }
    // Only part of the audio was "played".
    let played = received / 2;
    conn.session.truncate(&item, played).await.unwrap();
    let rec = &h.emu.connections()[0];
    assert_eq!(rec.events_of("response.cancel").len(), 1);
    let t = &rec.events_of("conversation.item.truncate")[0];
    assert_eq!(t["item_id"], json!(item));
    assert_eq!(t["content_index"], 0);
    assert_eq!(t["audio_end_ms"], json!(played.as_millis() as u64));
    let m = conn.session.chat_ctx();
    assert!(
        m.get_by_id(&item)
            .and_then(ChatItem::as_message)
            .unwrap()
            .interrupted
    );

    // Beyond what was sent: the server refuses, the call fails with a typed error.
    let err = conn
        .session
        .truncate(&item, received + Duration::from_secs(5))
        .await
        .unwrap_err();
    match err {
        RealtimeError::Api(e) => assert!(e.message().contains("shorter than"), "{e}"),
        e => panic!("{e:?}"),
    }
    // Interrupt with nothing in progress does nothing.
    conn.session.interrupt().await.unwrap();
    assert_eq!(h.emu.connections()[0].events_of("response.cancel").len(), 1);
}

#[tokio::test]
async fn chat_ctx_sync_creates_and_deletes_items() {
    let h = Harness::new(manual()).await;
    let mut seed = ChatContext::new();
    let a = ChatMessage::new(ChatRole::User, "My name is Ada.");
    let b = ChatMessage::new(ChatRole::Assistant, "Hello Ada.");
    seed.push(a.clone());
    seed.push(b.clone());
    let mut so = RealtimeSessionOptions::default();
    so.chat_ctx = seed;
    let mut conn = h.open(so).await;
    let ctx = conn.session.chat_ctx();
    let ids: Vec<&str> = ctx.items().iter().map(ChatItem::id).collect();
    assert_eq!(ids, vec![a.id.as_str(), b.id.as_str()]);

    let mut next_ctx = ChatContext::new();
    next_ctx.push(a.clone());
    let c = ChatMessage::new(ChatRole::User, "I like tea.");
    next_ctx.push(c.clone());
    conn.session.update_chat_ctx(&next_ctx).await.unwrap();
    let now = conn.session.chat_ctx();
    let ids: Vec<&str> = now.items().iter().map(ChatItem::id).collect();
    assert_eq!(ids, vec![a.id.as_str(), c.id.as_str()]);

    let rec = &h.emu.connections()[0];
    let deletes = rec.events_of("conversation.item.delete");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["item_id"], json!(b.id));
    let creates = rec.events_of("conversation.item.create");
    let last = creates.last().unwrap();
    assert_eq!(last["item"]["id"], json!(c.id));
    assert_eq!(last["previous_item_id"], json!(a.id));
    assert_eq!(
        last["item"]["content"][0],
        json!({"type": "input_text", "text": "I like tea."})
    );

    let events = until(
        &mut conn.events,
        |e| matches!(e, RealtimeEvent::ConversationItemCreated { item } if item.id() == c.id),
    )
    .await;
    assert!(events.iter().any(
        |e| matches!(e, RealtimeEvent::ConversationItemDeleted { item_id } if *item_id == b.id)
    ));
    // Same context again: nothing to send.
    let before = h.emu.connections()[0].events.len();
    conn.session.update_chat_ctx(&next_ctx).await.unwrap();
    assert_eq!(h.emu.connections()[0].events.len(), before);
}

#[tokio::test]
async fn error_events_are_typed_and_recoverable() {
    let h = Harness::new(manual()).await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    // A reply refused by the server fails the call.
    h.emu.inject_fault(Fault::ErrorEvent {
        error_type: "server_error".into(),
        code: "internal_error".into(),
        message: "The server had an error".into(),
    });
    let err = conn.session.generate_reply(None).await.unwrap_err();
    match &err {
        RealtimeError::Api(e) => {
            assert!(e.message().contains("internal_error"));
            assert!(!e.is_retryable());
        }
        e => panic!("{e:?}"),
    }
    // A second reply while one is active: error, the session goes on.
    h.emu.push_response(ScriptedResponse::text(
        "a fairly long reply with quite a number of words to keep it going for a while",
    ));
    conn.session.generate_reply(None).await.unwrap();
    let err = conn.session.generate_reply(None).await.unwrap_err();
    assert!(format!("{err}").contains("conversation_already_has_active_response"));
    let events = until(&mut conn.events, is_done).await;
    assert!(matches!(
        events.last(),
        Some(RealtimeEvent::ResponseDone {
            status: ResponseStatus::Completed,
            ..
        })
    ));
    // Metrics come from response.done usage.
    if let Some(RealtimeEvent::ResponseDone {
        metrics: Some(m), ..
    }) = events.last()
    {
        assert_eq!(m.label, "openai.realtime");
        assert!(m.output_tokens > 0);
        assert_eq!(m.total_tokens, m.input_tokens + m.output_tokens);
        assert!(m.ttft.is_some());
    } else {
        panic!("no metrics");
    }
}

#[tokio::test]
async fn session_expiry_reconnects_and_replays() {
    let h = Harness::new(manual()).await;
    let mut so = fast_retry();
    so.instructions = Some("Remember everything.".into());
    let mut conn = h.open(so).await;
    let mut ctx = ChatContext::new();
    let m = ChatMessage::new(ChatRole::User, "The code word is kiwi.");
    ctx.push(m.clone());
    conn.session.update_chat_ctx(&ctx).await.unwrap();
    h.emu.push_response(ScriptedResponse::text("Noted."));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    let assistant = events
        .iter()
        .find_map(|e| match e {
            RealtimeEvent::TextDelta { item_id, .. } => Some(item_id.clone()),
            _ => None,
        })
        .unwrap();

    h.emu.expire_sessions();
    until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::Reconnected)
    })
    .await;
    let conns = h.emu.connections();
    assert_eq!(conns.len(), 2);
    let second = &conns[1];
    assert_eq!(
        second.events_of("session.update")[0]["session"]["instructions"],
        "Remember everything."
    );
    let replayed: Vec<Value> = second
        .events_of("conversation.item.create")
        .into_iter()
        .map(|e| e["item"].clone())
        .collect();
    assert_eq!(replayed.len(), 2);
    assert_eq!(replayed[0]["id"], json!(m.id));
    assert_eq!(replayed[1]["id"], json!(assistant));
    assert_eq!(
        replayed[1]["content"][0],
        json!({"type": "output_text", "text": "Noted."})
    );

    // The session goes on, transparently.
    h.emu.push_response(ScriptedResponse::text("Still here."));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    assert_eq!(text_of(&events), "Still here.");
    assert_eq!(conn.session.chat_ctx().len(), 3);
}

#[tokio::test]
async fn dropped_socket_mid_response_reconnects() {
    let h = Harness::new(manual()).await;
    let mut conn = h.open(fast_retry()).await;
    h.emu.inject_fault(Fault::CloseMidResponse);
    h.emu
        .push_response(ScriptedResponse::text("cut off right here"));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::Reconnected)
    })
    .await;
    assert!(events.iter().any(|e| matches!(
        e,
        RealtimeEvent::ResponseDone {
            status: ResponseStatus::Failed(_),
            ..
        }
    )));
    assert_eq!(h.emu.connections().len(), 2);
    h.emu.push_response(ScriptedResponse::text("Back again."));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    assert_eq!(text_of(&events), "Back again.");

    // An idle drop reconnects too.
    h.emu.drop_connections();
    until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::Reconnected)
    })
    .await;
    assert_eq!(h.emu.connections().len(), 3);
}

#[tokio::test]
async fn reconnect_gives_up_after_the_retries() {
    let h = Harness::new(manual()).await;
    let mut conn = h.open(fast_retry()).await;
    for _ in 0..3 {
        h.emu.inject_fault(Fault::Unauthorized);
    }
    h.emu.drop_connections();
    let events = until(&mut conn.events, |e| {
        matches!(
            e,
            RealtimeEvent::Error {
                recoverable: false,
                ..
            }
        )
    })
    .await;
    match events.last() {
        Some(RealtimeEvent::Error {
            error: RealtimeError::Api(e),
            ..
        }) => assert!(e.is_auth(), "{e:?}"),
        e => panic!("{e:?}"),
    }
    assert!(
        tokio::time::timeout(STEP, conn.events.next())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        conn.session.generate_reply(None).await,
        Err(RealtimeError::SessionClosed)
    ));
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_the_key_never_leaks() {
    let h = Harness::new(manual()).await;
    let bad = "sk-wrong-secret-123";
    let err = h
        .model_with_key(bad)
        .session(fast_retry())
        .await
        .unwrap_err();
    match &err {
        RealtimeError::Api(e) => {
            assert_eq!(e.status_code(), Some(401));
            assert!(!e.is_retryable());
            assert!(e.message().contains("Incorrect API key"));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(h.emu.connections().len(), 1, "a 401 is not retried");
    assert!(!format!("{err} {err:?}").contains(bad));
    let model = h.model_with_key(bad);
    assert!(!format!("{model:?}").contains(bad));
    let _ = ApiKey::new(bad);
}

#[tokio::test]
async fn connection_refused_is_retried_then_fails() {
    let h = Harness::new(manual()).await;
    let addr = h.server.addr();
    drop(h);
    let client = ClientOptions::default()
        .with_api_key(KEY)
        .with_base_url(format!("http://{addr}/v1"));
    let model = OpenAiRealtimeModel::new(client, manual());
    let err = model.session(fast_retry()).await.unwrap_err();
    match err {
        RealtimeError::Api(e) => {
            assert!(e.is_connection());
            assert!(e.message().contains("after 3 attempts"), "{e}");
        }
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn slow_first_delta_is_measured() {
    let h = Harness::new(manual()).await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    h.emu
        .inject_fault(Fault::SlowFirstDelta(Duration::from_millis(150)));
    h.emu.push_response(ScriptedResponse::text("late"));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    match events.last() {
        Some(RealtimeEvent::ResponseDone {
            metrics: Some(m), ..
        }) => assert!(m.ttft.unwrap() >= Duration::from_millis(150)),
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn max_session_duration_reconnects_between_responses() {
    let h =
        Harness::new(manual().with_max_session_duration(Some(Duration::from_millis(300)))).await;
    let mut conn = h.open(fast_retry()).await;
    let mut ctx = ChatContext::new();
    ctx.push(ChatMessage::new(ChatRole::User, "keep me"));
    conn.session.update_chat_ctx(&ctx).await.unwrap();
    until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::Reconnected)
    })
    .await;
    let conns = h.emu.connections();
    assert!(conns.len() >= 2);
    assert_eq!(
        conns[1].events_of("conversation.item.create")[0]["item"]["content"][0]["text"],
        "keep me"
    );
    conn.session.close().await.unwrap();
    assert!(
        tokio::time::timeout(STEP, async { while conn.events.next().await.is_some() {} })
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn two_turns_in_one_append_are_two_user_items() {
    let h = Harness::new(
        RealtimeOptions::default()
            .with_input_transcription(None)
            .with_turn_detection(Some(TurnDetection::ServerVad(
                ServerVad::default()
                    .with_create_response(false)
                    .with_silence_duration(Duration::from_millis(200)),
            ))),
    )
    .await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    let frames = signal::sequence(
        &[
            (true, Duration::from_millis(200)),
            (false, Duration::from_millis(300)),
            (true, Duration::from_millis(200)),
            (false, Duration::from_millis(300)),
        ],
        SampleRate::HZ_24000,
    );
    let samples: Vec<i16> = frames.iter().flat_map(|f| f.data().to_vec()).collect();
    let one = AudioFrame::new(samples, SampleRate::HZ_24000, 1).unwrap();
    conn.session.push_audio(one).await.unwrap();
    let mut starts = 0;
    let mut stops = 0;
    let mut users = 0;
    while users < 2 {
        match next(&mut conn.events).await {
            RealtimeEvent::InputSpeechStarted => starts += 1,
            RealtimeEvent::InputSpeechStopped {
                user_transcription_enabled,
            } => {
                assert!(!user_transcription_enabled);
                stops += 1;
            }
            RealtimeEvent::ConversationItemCreated {
                item: ChatItem::Message(m),
            } if m.role == ChatRole::User => users += 1,
            _ => {}
        }
    }
    assert_eq!((starts, stops), (2, 2));
    assert_eq!(conn.session.chat_ctx().len(), 2);
    assert_eq!(
        h.emu.connections()[0]
            .events_of("input_audio_buffer.append")
            .len(),
        1
    );
}

#[tokio::test]
async fn max_output_tokens_gives_an_incomplete_response() {
    let h = Harness::new(manual().with_max_output_tokens(3)).await;
    let mut conn = h.open(RealtimeSessionOptions::default()).await;
    h.emu
        .push_response(ScriptedResponse::text("one two three four five six"));
    conn.session.generate_reply(None).await.unwrap();
    let events = until(&mut conn.events, is_done).await;
    assert_eq!(text_of(&events), "one two three");
    match events.last() {
        Some(RealtimeEvent::ResponseDone {
            status, metrics, ..
        }) => {
            assert_eq!(
                *status,
                ResponseStatus::Incomplete("max_output_tokens".into())
            );
            assert_eq!(metrics.as_ref().unwrap().output_tokens, 3);
        }
        e => panic!("{e:?}"),
    }
    // The mirrored message holds what was said, marked interrupted (status incomplete).
    let item = events
        .iter()
        .find_map(|e| match e {
            RealtimeEvent::TextDelta { item_id, .. } => Some(item_id.clone()),
            _ => None,
        })
        .unwrap();
    let ctx = conn.session.chat_ctx();
    let m = ctx.get_by_id(&item).and_then(ChatItem::as_message).unwrap();
    assert_eq!(m.text_content().as_deref(), Some("one two three"));
    assert!(m.interrupted);
}

#[tokio::test]
async fn instructions_message_of_the_seed_context_configures_the_session() {
    let h = Harness::new(manual()).await;
    let mut seed = ChatContext::new();
    seed.set_instructions("Speak like a pirate.").unwrap();
    let hello = ChatMessage::new(ChatRole::User, "Hello");
    seed.push(hello.clone());
    let mut so = RealtimeSessionOptions::default();
    so.chat_ctx = seed.clone();
    let conn = h.open(so).await;
    let rec = &h.emu.connections()[0];
    assert_eq!(
        rec.events_of("session.update")[0]["session"]["instructions"],
        "Speak like a pirate."
    );
    let creates = rec.events_of("conversation.item.create");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["item"]["id"], json!(hello.id));
    // Syncing the same context sends nothing for the instructions either.
    conn.session.update_chat_ctx(&seed).await.unwrap();
    assert_eq!(
        h.emu.connections()[0]
            .events_of("conversation.item.create")
            .len(),
        1
    );
}

#[tokio::test]
async fn audio_without_transcript_cannot_be_replayed_and_is_reported_deleted() {
    let h = Harness::new(manual().with_input_transcription(None)).await;
    let mut conn = h.open(fast_retry()).await;
    for f in signal::tone(Duration::from_millis(200), SampleRate::HZ_24000) {
        conn.session.push_audio(f).await.unwrap();
    }
    conn.session.commit_audio().await.unwrap();
    let created = until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::ConversationItemCreated { .. })
    })
    .await;
    let Some(RealtimeEvent::ConversationItemCreated { item }) = created.last() else {
        panic!("no item")
    };
    let audio_item = item.id().to_owned();
    let mut ctx = conn.session.chat_ctx();
    let text = ChatMessage::new(ChatRole::User, "typed text");
    ctx.push(text.clone());
    conn.session.update_chat_ctx(&ctx).await.unwrap();

    h.emu.expire_sessions();
    let events = until(&mut conn.events, |e| {
        matches!(e, RealtimeEvent::Reconnected)
    })
    .await;
    assert!(events.iter().any(
        |e| matches!(e, RealtimeEvent::ConversationItemDeleted { item_id } if *item_id == audio_item)
    ));
    let ids: Vec<String> = conn
        .session
        .chat_ctx()
        .items()
        .iter()
        .map(|i| i.id().to_owned())
        .collect();
    assert_eq!(ids, vec![text.id.clone()]);
}
