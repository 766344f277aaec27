//! `LlmMetrics.request_id` carries the `x-request-id` of the response that was read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on purpose

use std::time::Duration;

use agents_core::ApiConnectOptions;
use agents_core::chat::{ChatContext, ChatRole};
use agents_core::llm::{ChatRequest, Llm};
use agents_openai::{ClientOptions, LlmOptions, OpenAiLlm};
use agents_testkit::emulators::openai::{ChatScript, OpenAiEmulator};

const KEY: &str = "sk-test-0123456789abcdef";

fn request() -> ChatRequest {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "Say hello.");
    ChatRequest::new(ctx)
}

async fn llm(emu: &OpenAiEmulator) -> (OpenAiLlm, agents_testkit::EmulatorServer) {
    let server = emu.serve().await.unwrap();
    let client = ClientOptions::default()
        .with_api_key(KEY)
        .with_base_url(format!("{}/v1", server.http_url()))
        .with_conn_options(
            ApiConnectOptions::default()
                .with_max_retry(2)
                .with_retry_interval(Duration::from_millis(10))
                .with_timeout(Duration::from_secs(5)),
        );
    (
        OpenAiLlm::new(client, LlmOptions::default()).unwrap(),
        server,
    )
}

#[tokio::test]
async fn metrics_carry_the_x_request_id_of_the_response() {
    let emu = OpenAiEmulator::new().with_api_key(KEY);
    emu.push_chat(ChatScript::text(["Hel", "lo"]).with_usage(9, 2));
    let (llm, _server) = llm(&emu).await;
    let stream = llm.chat(request());
    assert_eq!(stream.request_id(), None, "nothing was sent yet");
    let response = stream.collect().await.unwrap();
    assert_eq!(response.text, "Hello");
    let sent = emu.requests_to("/chat/completions");
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].request_id.is_empty());
    let metrics = response.metrics.unwrap();
    assert_eq!(
        metrics.request_id.as_deref(),
        Some(sent[0].request_id.as_str())
    );
    assert_eq!(metrics.completion_tokens, 2);
}

#[tokio::test]
async fn a_retried_request_reports_the_id_of_the_answer_that_was_read() {
    let emu = OpenAiEmulator::new().with_api_key(KEY);
    emu.push_chat(ChatScript::error(500));
    emu.push_chat(ChatScript::text(["ok"]));
    let (llm, _server) = llm(&emu).await;
    let response = llm.chat(request()).collect().await.unwrap();
    assert_eq!(response.text, "ok");
    let sent = emu.requests_to("/chat/completions");
    assert_eq!(sent.len(), 2, "one failure, one retry");
    assert_ne!(sent[0].request_id, sent[1].request_id);
    assert_eq!(
        response.metrics.unwrap().request_id.as_deref(),
        Some(sent[1].request_id.as_str())
    );
}
