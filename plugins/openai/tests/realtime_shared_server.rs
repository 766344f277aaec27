//! One emulator server for the HTTP API and the Realtime API: an `OpenAiLlm` and an `OpenAiRealtimeModel` built
//! from the same `ClientOptions` (one base URL, as the real API) both work against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agents_core::chat::{ChatContext, ChatRole};
use agents_core::llm::{ChatRequest, Llm};
use agents_core::realtime::{RealtimeEvent, RealtimeModel, RealtimeSessionOptions};
use agents_openai::realtime::{OpenAiRealtimeModel, RealtimeOptions};
use agents_openai::{ClientOptions, LlmOptions, OpenAiLlm};
use agents_testkit::emulators::openai::{ChatScript, OpenAiEmulator};
use agents_testkit::emulators::openai_realtime::{OpenAiRealtimeEmulator, ScriptedResponse};
use futures::StreamExt;

const KEY: &str = "sk-test-shared-0123456789";
const STEP: Duration = Duration::from_secs(10);

#[tokio::test]
async fn llm_and_realtime_share_one_base_url() {
    let http = OpenAiEmulator::new().with_api_key(KEY);
    let realtime = OpenAiRealtimeEmulator::new().with_api_key(KEY);
    let server = http.serve_with_realtime(&realtime).await.unwrap();
    let client = ClientOptions::default()
        .with_api_key(KEY)
        .with_base_url(format!("{}/v1", server.http_url()));

    http.push_chat(ChatScript::text(["over ", "HTTP"]));
    let llm = OpenAiLlm::new(client.clone(), LlmOptions::default()).unwrap();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "hi");
    let reply = llm.chat(ChatRequest::new(ctx)).collect().await.unwrap();
    assert_eq!(reply.text, "over HTTP");

    realtime.push_response(ScriptedResponse::text("over the socket"));
    let model =
        OpenAiRealtimeModel::new(client, RealtimeOptions::default().with_turn_detection(None));
    let mut conn = tokio::time::timeout(STEP, model.session(RealtimeSessionOptions::default()))
        .await
        .expect("session timed out")
        .expect("session failed");
    conn.session.generate_reply(None).await.unwrap();
    let mut transcript = String::new();
    loop {
        let e = tokio::time::timeout(STEP, conn.events.next())
            .await
            .expect("no event in time")
            .expect("events ended");
        match e {
            RealtimeEvent::TextDelta { delta, .. } => transcript.push_str(&delta),
            RealtimeEvent::ResponseDone { .. } => break,
            _ => {}
        }
    }
    assert_eq!(transcript.trim(), "over the socket");

    // Each emulator saw only its own traffic, on the same port.
    assert_eq!(http.requests_to("/chat/completions").len(), 1);
    assert_eq!(http.request_count(), 1);
    let connections = realtime.connections();
    assert_eq!(connections.len(), 1);
    assert!(connections[0].authorized);
    conn.session.close().await.unwrap();
}
