//! FakeLlm behaviour.

use std::time::Duration;

use agents_core::ApiError;
use agents_core::chat::{ChatContext, ChatRole};
use agents_core::llm::{ChatChunk, ChatRequest, CompletionUsage, FinishReason, Llm, LlmError};
use agents_core::retry::ApiConnectOptions;
use agents_testkit::{FakeLlm, FakeResponse};
use futures::StreamExt;

fn request(text: &str) -> ChatRequest {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, text);
    ChatRequest::new(ctx)
}

fn no_retry(r: ChatRequest) -> ChatRequest {
    r.with_conn_options(ApiConnectOptions::default().with_max_retry(0))
}

#[tokio::test(start_paused = true)]
async fn text_chunks_with_exact_delays_and_records() {
    let llm = FakeLlm::new()
        .with_ttft(Duration::from_millis(200))
        .with_inter_token_delay(Duration::from_millis(50))
        .push_response(FakeResponse::text("Hello there friend").chunked_words());
    let start = tokio::time::Instant::now();
    let mut stream = llm.chat(request("hi you"));
    let mut chunks = Vec::new();
    let mut times = Vec::new();
    while let Some(c) = stream.next().await {
        chunks.push(c.unwrap());
        times.push(start.elapsed());
    }
    assert_eq!(
        chunks,
        vec![
            ChatChunk::Text("Hello".into()),
            ChatChunk::Text(" there".into()),
            ChatChunk::Text(" friend".into()),
            ChatChunk::Finished(FinishReason::Stop),
            ChatChunk::Usage(CompletionUsage::new(2, 3)),
        ]
    );
    assert_eq!(times[0], Duration::from_millis(200));
    assert_eq!(times[1], Duration::from_millis(250));
    assert_eq!(times[2], Duration::from_millis(300));
    let m = stream.metrics();
    assert_eq!(m.ttft, Some(Duration::from_millis(200)));
    assert_eq!(m.duration, Duration::from_millis(300));
    assert_eq!(llm.request_count(), 1);
    assert_eq!(llm.requests()[0].chat_ctx.items().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn tool_calls_get_sequential_ids() {
    let llm = FakeLlm::new()
        .push_response(
            FakeResponse::tool_call("get_weather", r#"{"city":"Paris"}"#)
                .then_tool_call("get_time", "{}"),
        )
        .push_response(FakeResponse::tool_call("get_weather", r#"{"city":"Rome"}"#));
    let r = llm.chat(request("weather?")).collect().await.unwrap();
    assert_eq!(r.tool_calls.len(), 2);
    assert_eq!(r.tool_calls[0].call_id, "call_1");
    assert_eq!(r.tool_calls[0].name, "get_weather");
    assert_eq!(r.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(r.tool_calls[1].call_id, "call_2");
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    let r = llm.chat(request("again")).collect().await.unwrap();
    assert_eq!(r.tool_calls[0].call_id, "call_3");
}

#[tokio::test(start_paused = true)]
async fn error_mid_stream_ends_it() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Hel").then_error(ApiError::status("overloaded", 503)));
    let mut s = llm.chat(request("x"));
    assert_eq!(
        s.next().await.unwrap().unwrap(),
        ChatChunk::Text("Hel".into())
    );
    let e = s.next().await.unwrap().unwrap_err();
    assert!(e.is_retryable());
    assert!(s.next().await.is_none());
    assert_eq!(llm.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn first_error_is_retried_with_the_request_policy() {
    // One 503, then a success: the retry takes the next response after 100 ms.
    let llm = FakeLlm::new()
        .push_response(FakeResponse::error(ApiError::status("overloaded", 503)))
        .push_response(FakeResponse::text("ok"));
    let start = tokio::time::Instant::now();
    let r = llm.chat(request("x")).collect().await.unwrap();
    assert_eq!(r.text, "ok");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(llm.attempts(), 2);
    assert_eq!(llm.request_count(), 1);

    // A lone 503 fails every attempt: 4 attempts with the default policy.
    llm.add_response(FakeResponse::error(ApiError::status("overloaded", 503)));
    let e = llm.chat(request("x")).collect().await.unwrap_err();
    assert!(e.is_retryable());
    assert!(e.to_string().contains("after 4 attempts"), "{e}");
    assert_eq!(llm.attempts(), 6);

    // Without retries the scripted error comes back unchanged.
    llm.add_response(FakeResponse::error(ApiError::status("bad key", 401)));
    let e = llm
        .chat(no_retry(request("x")))
        .collect()
        .await
        .unwrap_err();
    match e {
        LlmError::Api(a) => assert_eq!(a.status_code(), Some(401)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn empty_queue_fails_clearly_or_uses_responder() {
    let llm = FakeLlm::new();
    let e = llm.chat(request("x")).collect().await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("no scripted response"), "{e}");

    let llm = FakeLlm::new().with_responder(|req| {
        let n = req.chat_ctx.items().len();
        FakeResponse::text(format!("{n} items"))
    });
    let r = llm.chat(request("x")).collect().await.unwrap();
    assert_eq!(r.text, "1 items");
}

#[tokio::test(start_paused = true)]
async fn explicit_usage_finish_and_delays() {
    let llm = FakeLlm::new().push_response(
        FakeResponse::text("a")
            .then_delay(Duration::from_secs(1))
            .then_text("b")
            .with_usage(CompletionUsage::new(7, 9))
            .with_finish_reason(FinishReason::Length),
    );
    let start = tokio::time::Instant::now();
    let r = llm.chat(request("x")).collect().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(r.text, "ab");
    assert_eq!(r.usage, Some(CompletionUsage::new(7, 9)));
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
}

#[tokio::test(start_paused = true)]
async fn sticky_error_fails_every_attempt() {
    let llm = FakeLlm::new()
        .with_sticky_error(ApiError::status("bad key", 401))
        .push_response(FakeResponse::text("never"));
    let e = llm.chat(request("x")).collect().await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(llm.attempts(), 1);
    assert_eq!(llm.remaining(), 1);
    llm.clear_sticky_error();
    assert_eq!(
        llm.chat(request("x")).collect().await.unwrap().text,
        "never"
    );
}
