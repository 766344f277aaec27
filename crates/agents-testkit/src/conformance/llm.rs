//! LLM conformance: text streaming, usage, tool calls, errors and retries, metrics.

use std::sync::Arc;
use std::time::Duration;

use agents_core::chat::{ChatContext, ChatRole};
use agents_core::llm::{ChatChunk, ChatRequest, FinishReason, Llm, LlmError};
use agents_core::retry::ApiConnectOptions;
use agents_core::tools::ToolDefinition;
use async_trait::async_trait;
use futures::StreamExt;

use super::{must, within};

/// What a plugin provides to run the LLM suite.
#[async_trait]
pub trait LlmHarness: Send + Sync {
    /// The LLM under test (wired to the emulator).
    fn llm(&self) -> Arc<dyn Llm>;
    /// Scripts the next request's reply as these text chunks (streamed in order).
    async fn script_text(&self, chunks: &[&str]);
    /// Scripts the next request's reply as these tool calls `(name, arguments JSON)`, in order.
    async fn script_tool_calls(&self, calls: &[(&str, &str)]);
    /// Scripts every following request (until the next `script_*`) to fail with this HTTP status.
    async fn script_error(&self, status: u16);
    /// How many requests (attempts) the provider received so far.
    async fn requests_received(&self) -> usize;
}

fn request() -> ChatRequest {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, "You are a test assistant.");
    ctx.add_message(ChatRole::User, "Say hello.");
    ChatRequest::new(ctx)
}

fn weather_tool() -> ToolDefinition {
    must(
        ToolDefinition::new(
            "get_weather",
            "Weather of a city",
            serde_json::json!({
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            }),
        ),
        "llm conformance: tool definition",
    )
}

/// Runs every LLM check.
pub async fn run_all<H: LlmHarness + ?Sized>(h: &H) {
    check_text_streams(h).await;
    check_usage_reported(h).await;
    check_tool_call(h).await;
    check_parallel_tool_calls(h).await;
    check_retryable_error(h).await;
    check_non_retryable_error(h).await;
    check_metrics_ttft(h).await;
}

/// Text arrives as chunks that concatenate to the scripted text, then `Finished(Stop)`.
pub async fn check_text_streams<H: LlmHarness + ?Sized>(h: &H) {
    h.script_text(&["Hel", "lo", " there", "!"]).await;
    let mut stream = h.llm().chat(request());
    let mut text = String::new();
    let mut text_chunks = 0;
    let mut finish = None;
    while let Some(chunk) = within("llm text_streams: next chunk", stream.next()).await {
        match must(chunk, "llm text_streams: chunk") {
            ChatChunk::Text(t) => {
                assert!(
                    finish.is_none(),
                    "llm text_streams: text after the finish reason"
                );
                text.push_str(&t);
                text_chunks += 1;
            }
            ChatChunk::Finished(r) => finish = Some(r),
            _ => {}
        }
    }
    assert_eq!(text, "Hello there!", "llm text_streams: concatenated text");
    assert!(
        text_chunks >= 2,
        "llm text_streams: expected a streamed reply, got {text_chunks} chunk(s)"
    );
    assert_eq!(
        finish,
        Some(FinishReason::Stop),
        "llm text_streams: finish reason"
    );
}

/// Usage is reported, with completion tokens and a consistent total.
pub async fn check_usage_reported<H: LlmHarness + ?Sized>(h: &H) {
    h.script_text(&["Hello", " world"]).await;
    let r = must(
        within("llm usage: collect", h.llm().chat(request()).collect()).await,
        "llm usage: request failed",
    );
    let usage = match r.usage {
        Some(u) => u,
        None => panic!("llm usage: no usage reported"),
    };
    assert!(
        usage.completion_tokens > 0,
        "llm usage: zero completion tokens: {usage:?}"
    );
    assert!(
        usage.total_tokens >= usage.prompt_tokens + usage.completion_tokens,
        "llm usage: total below prompt + completion: {usage:?}"
    );
}

/// One tool call arrives complete: name, non-empty call id, arguments that parse as the scripted JSON.
pub async fn check_tool_call<H: LlmHarness + ?Sized>(h: &H) {
    h.script_tool_calls(&[("get_weather", r#"{"city":"Paris"}"#)])
        .await;
    let req = request().with_tools(vec![weather_tool()]);
    let r = must(
        within("llm tool_call: collect", h.llm().chat(req).collect()).await,
        "llm tool_call: request failed",
    );
    assert_eq!(
        r.tool_calls.len(),
        1,
        "llm tool_call: calls {:?}",
        r.tool_calls
    );
    let call = &r.tool_calls[0];
    assert_eq!(call.name, "get_weather", "llm tool_call: name");
    assert!(!call.call_id.is_empty(), "llm tool_call: empty call id");
    let args: serde_json::Value = must(
        serde_json::from_str(&call.arguments),
        "llm tool_call: arguments are not JSON",
    );
    assert_eq!(
        args,
        serde_json::json!({"city": "Paris"}),
        "llm tool_call: arguments"
    );
    assert_eq!(
        r.finish_reason,
        Some(FinishReason::ToolCalls),
        "llm tool_call: finish reason"
    );
}

/// Several tool calls in one reply keep their order and get distinct call ids.
pub async fn check_parallel_tool_calls<H: LlmHarness + ?Sized>(h: &H) {
    h.script_tool_calls(&[
        ("get_weather", r#"{"city":"Paris"}"#),
        ("get_weather", r#"{"city":"Rome"}"#),
    ])
    .await;
    let req = request()
        .with_tools(vec![weather_tool()])
        .with_parallel_tool_calls(true);
    let r = must(
        within(
            "llm parallel_tool_calls: collect",
            h.llm().chat(req).collect(),
        )
        .await,
        "llm parallel_tool_calls: request failed",
    );
    assert_eq!(
        r.tool_calls.len(),
        2,
        "llm parallel_tool_calls: calls {:?}",
        r.tool_calls
    );
    let cities: Vec<serde_json::Value> = r
        .tool_calls
        .iter()
        .map(|c| {
            must(
                serde_json::from_str::<serde_json::Value>(&c.arguments),
                "llm parallel_tool_calls: arguments",
            )
        })
        .map(|v| v["city"].clone())
        .collect();
    assert_eq!(
        cities,
        vec!["Paris", "Rome"],
        "llm parallel_tool_calls: order"
    );
    assert_ne!(
        r.tool_calls[0].call_id, r.tool_calls[1].call_id,
        "llm parallel_tool_calls: call ids"
    );
}

fn retry_policy(max_retry: u32) -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(max_retry)
        .with_retry_interval(Duration::from_millis(10))
        .with_timeout(Duration::from_secs(10))
}

/// A 503 is retried `max_retry` times and then surfaces as a retryable error.
pub async fn check_retryable_error<H: LlmHarness + ?Sized>(h: &H) {
    h.script_error(503).await;
    let before = h.requests_received().await;
    let req = request().with_conn_options(retry_policy(2));
    let r = within("llm retryable_error: collect", h.llm().chat(req).collect()).await;
    let err = match r {
        Ok(r) => panic!("llm retryable_error: a 503 succeeded: {r:?}"),
        Err(e) => e,
    };
    assert!(
        err.is_retryable(),
        "llm retryable_error: not retryable: {err:?}"
    );
    let attempts = h.requests_received().await - before;
    assert_eq!(
        attempts, 3,
        "llm retryable_error: attempts with max_retry = 2"
    );
}

/// A 401 surfaces at once (one attempt), not retryable, with its status.
pub async fn check_non_retryable_error<H: LlmHarness + ?Sized>(h: &H) {
    h.script_error(401).await;
    let before = h.requests_received().await;
    let req = request().with_conn_options(retry_policy(3));
    let r = within(
        "llm non_retryable_error: collect",
        h.llm().chat(req).collect(),
    )
    .await;
    let err = match r {
        Ok(r) => panic!("llm non_retryable_error: a 401 succeeded: {r:?}"),
        Err(e) => e,
    };
    assert!(
        !err.is_retryable(),
        "llm non_retryable_error: retryable: {err:?}"
    );
    match &err {
        LlmError::Api(e) => assert_eq!(
            e.status_code(),
            Some(401),
            "llm non_retryable_error: status"
        ),
        other => panic!("llm non_retryable_error: expected an API error, got {other:?}"),
    }
    let attempts = h.requests_received().await - before;
    assert_eq!(
        attempts, 1,
        "llm non_retryable_error: a 401 must not be retried"
    );
}

/// The stream's metrics have a time to first token within the duration, and are not cancelled.
pub async fn check_metrics_ttft<H: LlmHarness + ?Sized>(h: &H) {
    h.script_text(&["Hi", "!"]).await;
    let r = must(
        within("llm metrics: collect", h.llm().chat(request()).collect()).await,
        "llm metrics: request failed",
    );
    let m = match r.metrics {
        Some(m) => m,
        None => panic!("llm metrics: no metrics"),
    };
    let ttft = match m.ttft {
        Some(t) => t,
        None => panic!("llm metrics: no ttft"),
    };
    assert!(
        ttft <= m.duration,
        "llm metrics: ttft {ttft:?} > duration {:?}",
        m.duration
    );
    assert!(!m.cancelled, "llm metrics: cancelled");
}
