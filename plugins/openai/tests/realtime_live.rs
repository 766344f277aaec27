//! The OpenAI Realtime model against the real API. Runs when `OPENAI_API_KEY` is set; skipped (with a message)
//! otherwise. `OPENAI_REALTIME_MODEL` overrides the model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agents_core::realtime::{RealtimeEvent, RealtimeModel, RealtimeSessionOptions, ResponseStatus};
use agents_core::tools::ToolDefinition;
use agents_openai::ClientOptions;
use agents_openai::realtime::{OpenAiRealtimeModel, RealtimeOptions};
use futures::StreamExt;

#[tokio::test]
async fn live_reply_and_function_call() {
    let client = ClientOptions::from_env();
    if client.api_key.is_none() {
        println!("skipped: OPENAI_API_KEY is not set (live OpenAI Realtime test)");
        return;
    }
    let mut options = RealtimeOptions::default().with_turn_detection(None);
    if let Ok(m) = std::env::var("OPENAI_REALTIME_MODEL") {
        options = options.with_model(m);
    }
    let model = OpenAiRealtimeModel::new(client, options);
    let mut so = RealtimeSessionOptions::default();
    so.instructions = Some("You are a terse assistant. Answer in at most five words.".into());
    so.tools = vec![
        ToolDefinition::new(
            "get_weather",
            "Current weather of a city",
            serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        )
        .unwrap(),
    ];
    let mut conn = model
        .session(so)
        .await
        .expect("connect to the Realtime API");

    conn.session
        .generate_reply(Some("Say hello.".into()))
        .await
        .unwrap();
    let mut audio = Duration::ZERO;
    let mut text = String::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), conn.events.next())
            .await
            .expect("event in time")
            .expect("events open");
        match e {
            RealtimeEvent::AudioDelta { frame, .. } => audio += frame.duration(),
            RealtimeEvent::TextDelta { delta, .. } => text.push_str(&delta),
            RealtimeEvent::ResponseDone {
                status, metrics, ..
            } => {
                assert_eq!(status, ResponseStatus::Completed);
                assert!(metrics.unwrap().output_tokens > 0);
                break;
            }
            RealtimeEvent::Error {
                error,
                recoverable: false,
            } => panic!("{error}"),
            _ => {}
        }
    }
    assert!(audio > Duration::ZERO, "no audio");
    assert!(!text.trim().is_empty(), "no transcript");

    conn.session
        .generate_reply(Some("Call get_weather for Paris.".into()))
        .await
        .unwrap();
    let mut called = false;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), conn.events.next())
            .await
            .expect("event in time")
            .expect("events open");
        match e {
            RealtimeEvent::FunctionCall { call, .. } => {
                assert_eq!(call.name, "get_weather");
                let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
                assert!(args["city"].as_str().unwrap().contains("Paris"));
                called = true;
            }
            RealtimeEvent::ResponseDone { .. } => break,
            _ => {}
        }
    }
    assert!(called, "the model did not call the tool");
    conn.session.close().await.unwrap();
}
