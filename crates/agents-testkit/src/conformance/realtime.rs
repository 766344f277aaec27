//! Realtime conformance: a reply produces audio (or text) and completes, a function call round-trips, an interrupt
//! cancels the response in progress.

use std::sync::Arc;

use agents_core::chat::{ChatContext, FunctionCallOutput};
use agents_core::realtime::{
    RealtimeConnection, RealtimeEvent, RealtimeModel, RealtimeSessionOptions, ResponseStatus,
};
use agents_core::stream::EventStream;
use agents_core::tools::ToolDefinition;
use async_trait::async_trait;
use futures::StreamExt;

use super::{must, within};

/// What a plugin provides to run the realtime suite.
#[async_trait]
pub trait RealtimeHarness: Send + Sync {
    /// The model under test (wired to the emulator).
    fn model(&self) -> Arc<dyn RealtimeModel>;
    /// Scripts the next response as spoken `text`.
    async fn script_reply(&self, text: &str);
    /// Scripts the next response as one function call.
    async fn script_function_call(&self, name: &str, arguments: &str);
}

/// Runs every realtime check.
pub async fn run_all<H: RealtimeHarness + ?Sized>(h: &H) {
    check_reply_produces_output_and_done(h).await;
    check_function_call_round_trip(h).await;
    check_interrupt_cancels(h).await;
}

async fn open(
    h: &(impl RealtimeHarness + ?Sized),
    options: RealtimeSessionOptions,
    what: &str,
) -> RealtimeConnection {
    let model = h.model();
    must(within(what, model.session(options)).await, what)
}

/// Events of one response, `ResponseCreated` to `ResponseDone` (events before the creation are skipped).
async fn response(events: &mut EventStream<RealtimeEvent>, what: &str) -> Vec<RealtimeEvent> {
    let mut out = Vec::new();
    loop {
        let e = match within(what, events.next()).await {
            Some(e) => e,
            None => panic!("{what}: events ended before ResponseDone"),
        };
        if let RealtimeEvent::Error {
            error,
            recoverable: false,
        } = &e
        {
            panic!("{what}: unrecoverable error {error:?}");
        }
        let created = matches!(e, RealtimeEvent::ResponseCreated { .. });
        if out.is_empty() && !created {
            continue;
        }
        let done = matches!(e, RealtimeEvent::ResponseDone { .. });
        out.push(e);
        if done {
            return out;
        }
    }
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

fn normalized(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `generate_reply` gives `ResponseCreated`, audio at the output rate (or text for text-only models), the
/// transcript, and `ResponseDone(Completed)`, all with one response id.
pub async fn check_reply_produces_output_and_done<H: RealtimeHarness + ?Sized>(h: &H) {
    let what = "realtime reply_produces_output_and_done";
    let mut conn = open(h, RealtimeSessionOptions::default(), what).await;
    h.script_reply("Hello there, how can I help?").await;
    must(within(what, conn.session.generate_reply(None)).await, what);
    let events = response(&mut conn.events, what).await;
    let id = match &events[0] {
        RealtimeEvent::ResponseCreated { response_id, .. } => response_id.clone(),
        e => panic!("{what}: first event {e:?}"),
    };
    let rate = conn.session.output_sample_rate();
    let mut audio = 0usize;
    for e in &events {
        match e {
            RealtimeEvent::AudioDelta {
                response_id, frame, ..
            } => {
                assert_eq!(*response_id, id, "{what}: audio of another response");
                assert_eq!(frame.sample_rate(), rate, "{what}: audio rate");
                audio += frame.samples_per_channel();
            }
            RealtimeEvent::TextDelta { response_id, .. } => {
                assert_eq!(*response_id, id, "{what}: text of another response");
            }
            _ => {}
        }
    }
    if h.model().capabilities().audio_output {
        assert!(audio > 0, "{what}: no audio");
    }
    assert_eq!(
        normalized(&text_of(&events)),
        "Hello there, how can I help?",
        "{what}: transcript"
    );
    match events.last() {
        Some(RealtimeEvent::ResponseDone {
            response_id,
            status,
            ..
        }) => {
            assert_eq!(*response_id, id, "{what}: done id");
            assert_eq!(*status, ResponseStatus::Completed, "{what}: status");
        }
        e => panic!("{what}: last event {e:?}"),
    }
    let _ = conn.session.close().await;
}

/// A scripted function call arrives complete; after its output is added to the chat context, the next reply
/// completes and the context holds the output.
pub async fn check_function_call_round_trip<H: RealtimeHarness + ?Sized>(h: &H) {
    let what = "realtime function_call_round_trip";
    let mut options = RealtimeSessionOptions::default();
    options.tools = vec![must(
        ToolDefinition::new(
            "get_weather",
            "Weather of a city",
            serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        ),
        what,
    )];
    let mut conn = open(h, options, what).await;
    h.script_function_call("get_weather", r#"{"city":"Paris"}"#)
        .await;
    must(within(what, conn.session.generate_reply(None)).await, what);
    let events = response(&mut conn.events, what).await;
    let call = events
        .iter()
        .find_map(|e| match e {
            RealtimeEvent::FunctionCall { call, .. } => Some(call.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{what}: no function call in {events:?}"));
    assert_eq!(call.name, "get_weather", "{what}: name");
    assert!(!call.call_id.is_empty(), "{what}: empty call id");
    let args: serde_json::Value = must(serde_json::from_str(&call.arguments), what);
    assert_eq!(
        args,
        serde_json::json!({"city": "Paris"}),
        "{what}: arguments"
    );
    assert!(
        matches!(
            events.last(),
            Some(RealtimeEvent::ResponseDone {
                status: ResponseStatus::Completed,
                ..
            })
        ),
        "{what}: the call's response did not complete"
    );

    let mut ctx: ChatContext = conn.session.chat_ctx();
    if !ctx.items().iter().any(|i| i.id() == call.id) {
        ctx.push(call.clone());
    }
    ctx.push(FunctionCallOutput::new(
        call.call_id.clone(),
        "get_weather",
        r#"{"weather":"sunny"}"#,
        false,
    ));
    must(within(what, conn.session.update_chat_ctx(&ctx)).await, what);
    h.script_reply("It is sunny in Paris.").await;
    if !h.model().capabilities().auto_tool_reply_generation {
        must(within(what, conn.session.generate_reply(None)).await, what);
    }
    let events = response(&mut conn.events, what).await;
    assert_eq!(
        normalized(&text_of(&events)),
        "It is sunny in Paris.",
        "{what}: reply after the tool output"
    );
    let mirrored = conn.session.chat_ctx();
    assert!(
        mirrored.items().iter().any(|i| matches!(i, agents_core::chat::ChatItem::FunctionCallOutput(o) if o.call_id == call.call_id)),
        "{what}: the tool output is not in the chat context"
    );
    let _ = conn.session.close().await;
}

/// `interrupt` during a long reply ends it with `ResponseDone(Cancelled)`. The emulator must pace the reply (as a
/// real server does) so that it is still in progress after its first delta.
pub async fn check_interrupt_cancels<H: RealtimeHarness + ?Sized>(h: &H) {
    let what = "realtime interrupt_cancels";
    let mut conn = open(h, RealtimeSessionOptions::default(), what).await;
    let long = "This is a long answer that goes on and on, with many words, so that there is plenty of time to \
                interrupt it before it ends, which is exactly what this check does.";
    h.script_reply(long).await;
    must(within(what, conn.session.generate_reply(None)).await, what);
    // Wait for the first delta.
    loop {
        match within(what, conn.events.next()).await {
            Some(RealtimeEvent::AudioDelta { .. } | RealtimeEvent::TextDelta { .. }) => break,
            Some(RealtimeEvent::ResponseDone { .. }) => {
                panic!("{what}: the response ended before any delta")
            }
            Some(_) => {}
            None => panic!("{what}: events ended"),
        }
    }
    must(within(what, conn.session.interrupt()).await, what);
    loop {
        match within(what, conn.events.next()).await {
            Some(RealtimeEvent::ResponseDone { status, .. }) => {
                assert_eq!(
                    status,
                    ResponseStatus::Cancelled,
                    "{what}: status after interrupt"
                );
                break;
            }
            Some(_) => {}
            None => panic!("{what}: events ended before ResponseDone"),
        }
    }
    let _ = conn.session.close().await;
}
