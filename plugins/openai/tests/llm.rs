//! The Chat Completions LLM against the OpenAI emulator: conformance, wire format, tool-call assembly, faults.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on purpose

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use agents_core::chat::{
    ChatContent, ChatContext, ChatMessage, ChatRole, ImageContent, ImageSource,
};
use agents_core::llm::{ChatChunk, ChatRequest, FinishReason, Llm, LlmError, ToolChoice};
use agents_core::tools::ToolDefinition;
use agents_core::{ApiConnectOptions, ApiError};
use agents_openai::{ClientOptions, KeyHeader, LlmOptions, OpenAiLlm, ProtocolError};
use agents_testkit::EmulatorServer;
use agents_testkit::conformance::llm::{self as conformance, LlmHarness};
use agents_testkit::emulators::openai::{
    ChatScript, ChatStep, Fault, OpenAiEmulator, ScriptedToolCall,
};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::json;

const KEY: &str = "sk-test-0123456789abcdef";

struct Setup {
    emu: OpenAiEmulator,
    server: EmulatorServer,
}

impl Setup {
    async fn new() -> Self {
        let emu = OpenAiEmulator::new().with_api_key(KEY);
        let server = emu.serve().await.unwrap();
        Self { emu, server }
    }

    fn client(&self) -> ClientOptions {
        ClientOptions::default()
            .with_api_key(KEY)
            .with_base_url(format!("{}/v1", self.server.http_url()))
            .with_conn_options(fast(2))
    }

    fn llm(&self, options: LlmOptions) -> OpenAiLlm {
        OpenAiLlm::new(self.client(), options).unwrap()
    }

    fn chat_requests(&self) -> Vec<serde_json::Value> {
        self.emu
            .requests_to("/chat/completions")
            .into_iter()
            .map(|r| r.json().cloned().unwrap())
            .collect()
    }
}

fn fast(max_retry: u32) -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(max_retry)
        .with_retry_interval(Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
}

fn hello() -> ChatRequest {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, "You are terse.");
    ctx.add_message(ChatRole::User, "Say hello.");
    ChatRequest::new(ctx)
}

fn weather() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        "Weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
    .unwrap()
}

async fn chunks(llm: &OpenAiLlm, req: ChatRequest) -> (Vec<ChatChunk>, Option<LlmError>) {
    let mut stream = llm.chat(req);
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        match c {
            Ok(c) => out.push(c),
            Err(e) => {
                assert!(
                    stream.next().await.is_none(),
                    "the stream goes on after an error"
                );
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

fn api(e: &LlmError) -> &ApiError {
    match e {
        LlmError::Api(a) => a,
        other => panic!("expected an API error, got {other:?}"),
    }
}

struct Harness {
    setup: Setup,
    llm: Arc<dyn Llm>,
}

#[async_trait]
impl LlmHarness for Harness {
    fn llm(&self) -> Arc<dyn Llm> {
        Arc::clone(&self.llm)
    }
    async fn script_text(&self, chunks: &[&str]) {
        self.setup.emu.clear_scripts();
        self.setup
            .emu
            .set_default_chat(ChatScript::text(chunks.iter().copied()));
    }
    async fn script_tool_calls(&self, calls: &[(&str, &str)]) {
        self.setup.emu.clear_scripts();
        self.setup
            .emu
            .set_default_chat(ChatScript::tool_calls(calls));
    }
    async fn script_error(&self, status: u16) {
        self.setup.emu.clear_scripts();
        self.setup.emu.set_default_chat(ChatScript::error(status));
    }
    async fn requests_received(&self) -> usize {
        self.setup.emu.requests_to("/chat/completions").len()
    }
}

#[tokio::test]
async fn passes_the_llm_conformance_suite() {
    let setup = Setup::new().await;
    let llm: Arc<dyn Llm> = Arc::new(setup.llm(LlmOptions::new("gpt-4o-mini")));
    conformance::run_all(&Harness { setup, llm }).await;
}

#[tokio::test]
async fn request_maps_context_tools_and_options_to_the_wire_format() {
    let s = Setup::new().await;
    s.emu.push_chat(ChatScript::text(["ok"]));
    let llm = s.llm(
        LlmOptions::new("gpt-4o")
            .with_top_p(0.9)
            .with_seed(7)
            .with_user("user-1")
            .with_service_tier("flex")
            .with_extra_body("store", json!(false)),
    );
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, "Be helpful.");
    ctx.push_message(ChatMessage::with_content(
        ChatRole::User,
        vec![
            ChatContent::Text("What is this?".into()),
            ChatContent::Image(ImageContent::new(ImageSource::Bytes {
                mime_type: "image/png".into(),
                data: vec![137u8, 80, 78, 71].into(),
            })),
        ],
    ));
    ctx.add_message(ChatRole::Assistant, "Let me check the weather.");
    ctx.add_function_call("call_a", "get_weather", r#"{"city":"Paris"}"#);
    ctx.add_function_call("call_b", "get_weather", r#"{"city":"Rome"}"#);
    // The user spoke while the tools ran: the outputs still go right after their calls.
    ctx.add_message(ChatRole::User, "Hurry up.");
    ctx.add_function_output("call_b", "get_weather", "rainy", false);
    ctx.add_function_output("call_a", "get_weather", "sunny", false);
    // Left out: a call never answered and an answer to an unknown call (the API rejects both).
    ctx.add_function_call("call_lost", "get_weather", "{}");
    ctx.add_function_output("call_unknown", "get_weather", "?", false);
    let mut req = ChatRequest::new(ctx)
        .with_tools(vec![weather()])
        .with_tool_choice(ToolChoice::Function("get_weather".into()))
        .with_parallel_tool_calls(false)
        .with_temperature(0.2)
        .with_max_output_tokens(64);
    req.extra
        .insert("metadata".into(), json!({"session": "s1"}));
    let (_, err) = chunks(&llm, req).await;
    assert!(err.is_none(), "{err:?}");
    let body = &s.chat_requests()[0];
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "tool", "user"]
    );
    let m = &body["messages"];
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "text", "text": "What is this?"})
    );
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw=="
    );
    assert_eq!(m[2]["content"], "Let me check the weather.");
    assert_eq!(m[2]["tool_calls"][0]["id"], "call_a");
    assert_eq!(
        m[2]["tool_calls"][1]["function"]["arguments"],
        r#"{"city":"Rome"}"#
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "call_a", "content": "sunny"})
    );
    assert_eq!(m[4]["tool_call_id"], "call_b");
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(body["parallel_tool_calls"], false);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["max_completion_tokens"], 64);
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!((body["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["user"], "user-1");
    assert_eq!(body["service_tier"], "flex");
    assert_eq!(body["store"], false);
    assert_eq!(body["metadata"], json!({"session": "s1"}));
    let headers = &s.emu.requests()[0];
    assert_eq!(
        headers.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn tools_are_left_out_with_their_options_when_there_are_none() {
    let s = Setup::new().await;
    let llm = s.llm(
        LlmOptions::new("gpt-4o")
            .with_parallel_tool_calls(true)
            .with_tool_choice(ToolChoice::Required),
    );
    let (_, err) = chunks(&llm, hello()).await;
    assert!(
        err.is_none(),
        "the emulator rejects tool options without tools: {err:?}"
    );
    let body = &s.chat_requests()[0];
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
    assert!(body.get("parallel_tool_calls").is_none());
}

#[tokio::test]
async fn reasoning_models_use_developer_instructions_and_no_temperature() {
    let s = Setup::new().await;
    let llm = s.llm(
        LlmOptions::new("o3-mini")
            .with_temperature(0.5)
            .with_reasoning_effort("low"),
    );
    let (_, err) = chunks(&llm, hello().with_temperature(0.7)).await;
    assert!(
        err.is_none(),
        "the emulator rejects temperature for reasoning models: {err:?}"
    );
    let body = &s.chat_requests()[0];
    assert_eq!(body["messages"][0]["role"], "developer");
    assert!(body.get("temperature").is_none());
    assert_eq!(body["reasoning_effort"], "low");
    // gpt-5 too, unless told otherwise.
    assert!(LlmOptions::new("gpt-5-mini").is_reasoning_model());
    assert!(
        !LlmOptions::new("gpt-5-mini")
            .with_reasoning_model(false)
            .is_reasoning_model()
    );
}

#[tokio::test]
async fn strict_tools_pass_the_strict_schema_check() {
    let s = Setup::new().await;
    s.emu.push_chat(ChatScript::tool_calls(&[(
        "get_weather",
        r#"{"city":"Oslo"}"#,
    )]));
    let llm = s.llm(LlmOptions::new("gpt-4o").with_strict_tools(true));
    let (out, err) = chunks(&llm, hello().with_tools(vec![weather()])).await;
    assert!(err.is_none(), "{err:?}");
    assert!(
        out.iter()
            .any(|c| matches!(c, ChatChunk::ToolCall(c) if c.arguments == r#"{"city":"Oslo"}"#))
    );
    let body = &s.chat_requests()[0];
    assert_eq!(body["tools"][0]["function"]["strict"], true);
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["additionalProperties"],
        false
    );
}

fn calls(out: &[ChatChunk]) -> Vec<(String, String, String)> {
    out.iter()
        .filter_map(|c| match c {
            ChatChunk::ToolCall(c) => {
                Some((c.call_id.clone(), c.name.clone(), c.arguments.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn tool_arguments_split_across_deltas_are_assembled() {
    let s = Setup::new().await;
    s.emu.push_chat(ChatScript::steps(vec![
        ChatStep::Text("Checking.".into()),
        ChatStep::ToolCall(
            ScriptedToolCall::split("get_weather", &["{\"ci", "ty\": \"Pa", "ris\"}"])
                .with_id("call_1"),
        ),
        ChatStep::ToolCall(ScriptedToolCall::split("get_time", &["{", "}"]).with_id("call_2")),
    ]));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let (out, err) = chunks(&llm, hello().with_tools(vec![weather()])).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        calls(&out),
        vec![
            (
                "call_1".into(),
                "get_weather".into(),
                r#"{"city": "Paris"}"#.into()
            ),
            ("call_2".into(), "get_time".into(), "{}".into()),
        ]
    );
    assert_eq!(out.first(), Some(&ChatChunk::Text("Checking.".into())));
    let finish = out
        .iter()
        .position(|c| matches!(c, ChatChunk::Finished(FinishReason::ToolCalls)));
    let last_call = out
        .iter()
        .rposition(|c| matches!(c, ChatChunk::ToolCall(_)));
    assert!(
        last_call < finish,
        "calls come before the finish reason: {out:?}"
    );
}

#[tokio::test]
async fn parallel_calls_on_index_zero_are_told_apart_by_id() {
    let s = Setup::new().await;
    s.emu.push_chat(
        ChatScript::steps(vec![
            ChatStep::ToolCall(ScriptedToolCall::split(
                "get_weather",
                &["{\"city\":", "\"Paris\"}"],
            )),
            ChatStep::ToolCall(ScriptedToolCall::split(
                "get_weather",
                &["{\"city\":", "\"Rome\"}"],
            )),
        ])
        .with_index_zero_reuse(),
    );
    let llm = s.llm(LlmOptions::new("llama3.1"));
    let (out, err) = chunks(&llm, hello().with_tools(vec![weather()])).await;
    assert!(err.is_none(), "{err:?}");
    let c = calls(&out);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_ne!(c[0].0, c[1].0);
    assert_eq!(c[0].2, r#"{"city":"Paris"}"#);
    assert_eq!(c[1].2, r#"{"city":"Rome"}"#);
}

#[tokio::test]
async fn repeated_ids_on_every_delta_do_not_split_a_call() {
    let s = Setup::new().await;
    s.emu.push_chat(
        ChatScript::steps(vec![ChatStep::ToolCall(ScriptedToolCall::split(
            "get_weather",
            &["{\"city\"", ":\"Oslo\"}"],
        ))])
        .with_repeated_ids(),
    );
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let (out, _) = chunks(&llm, hello().with_tools(vec![weather()])).await;
    assert_eq!(calls(&out).len(), 1);
    assert_eq!(calls(&out)[0].2, r#"{"city":"Oslo"}"#);
}

#[tokio::test]
async fn invalid_json_in_tool_arguments_is_passed_through_for_the_tool_layer() {
    let s = Setup::new().await;
    s.emu.push_chat(ChatScript::tool_calls(&[(
        "get_weather",
        r#"{"city": "Par"#,
    )]));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let r = llm
        .chat(hello().with_tools(vec![weather()]))
        .collect()
        .await
        .unwrap();
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].arguments, r#"{"city": "Par"#);
    assert!(serde_json::from_str::<serde_json::Value>(&r.tool_calls[0].arguments).is_err());
}

#[tokio::test]
async fn finish_reasons_usage_and_metrics() {
    let s = Setup::new().await;
    s.emu.push_chat(
        ChatScript::text(["a", "b"])
            .with_finish_reason("length")
            .with_usage(12, 2)
            .with_chunk_delay(Duration::from_millis(20)),
    );
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let r = llm.chat(hello()).collect().await.unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    let usage = r.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (12, 2, 14)
    );
    let m = r.metrics.unwrap();
    assert_eq!(m.label, "openai.LLM");
    assert_eq!(m.model, "gpt-4o");
    assert_eq!((m.prompt_tokens, m.completion_tokens), (12, 2));
    let ttft = m.ttft.unwrap();
    assert!(
        ttft >= Duration::from_millis(20) && ttft <= m.duration,
        "{m:?}"
    );
    assert!(!m.cancelled);
    s.emu
        .push_chat(ChatScript::text(["x"]).with_finish_reason("content_filter"));
    let r = llm.chat(hello()).collect().await.unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::ContentFilter));
}

#[tokio::test]
async fn usage_can_be_turned_off_for_servers_that_reject_stream_options() {
    let s = Setup::new().await;
    let llm = s.llm(LlmOptions::new("gpt-4o").with_include_usage(false));
    let r = llm.chat(hello()).collect().await.unwrap();
    assert!(r.usage.is_none());
    assert!(s.chat_requests()[0].get("stream_options").is_none());
}

#[tokio::test]
async fn a_server_error_is_retried_then_succeeds() {
    let s = Setup::new().await;
    s.emu.push_chat(ChatScript::error(500));
    s.emu.push_chat(ChatScript::text(["recovered"]));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let r = llm.chat(hello()).collect().await.unwrap();
    assert_eq!(r.text, "recovered");
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 2);
}

#[tokio::test]
async fn persistent_503_exhausts_the_retries_with_a_retryable_error() {
    let s = Setup::new().await;
    s.emu.set_default_chat(ChatScript::error(503));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let err = llm
        .chat(hello().with_conn_options(fast(1)))
        .collect()
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 2);
    let last = err_source_api(&err);
    assert_eq!(last.status_code(), Some(503));
    assert!(
        last.request_id()
            .is_some_and(|id| id.starts_with("req_emu"))
    );
}

fn err_source_api(e: &LlmError) -> &ApiError {
    api(e)
        .source()
        .and_then(|s| s.downcast_ref::<ApiError>())
        .expect("the last attempt's error")
}

#[tokio::test]
async fn the_plugin_connection_policy_applies_when_the_request_keeps_the_default() {
    let s = Setup::new().await;
    s.emu.set_default_chat(ChatScript::error(500));
    // The client's policy has max_retry = 2 (3 attempts); the request leaves the default.
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let err = llm.chat(hello()).collect().await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 3);
}

#[tokio::test]
async fn status_errors_that_must_not_be_retried_fail_at_once() {
    for status in [400u16, 401, 403] {
        let s = Setup::new().await;
        s.emu.set_default_chat(ChatScript::error(status));
        let llm = s.llm(LlmOptions::new("gpt-4o"));
        let err = llm
            .chat(hello().with_conn_options(fast(3)))
            .collect()
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{status}: {err:?}");
        assert_eq!(api(&err).status_code(), Some(status));
        assert_eq!(
            s.emu.requests_to("/chat/completions").len(),
            1,
            "{status} was retried"
        );
        assert!(
            api(&err)
                .body()
                .is_some_and(|b| b["error"]["type"].is_string())
        );
    }
}

#[tokio::test]
async fn rate_limits_follow_retry_after() {
    // A short Retry-After is honoured and retried.
    let s = Setup::new().await;
    s.emu.push_chat(ChatScript::fault(Fault::rate_limited(1)));
    s.emu.push_chat(ChatScript::text(["after the limit"]));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let r = llm.chat(hello()).collect().await.unwrap();
    assert_eq!(r.text, "after the limit");
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 2);
    // Without Retry-After, or with one longer than max_retry_after, a 429 fails at once.
    for fault in [Fault::status(429), Fault::rate_limited(600)] {
        let s = Setup::new().await;
        s.emu.set_default_chat(ChatScript::fault(fault));
        let llm = s.llm(LlmOptions::new("gpt-4o"));
        let err = llm
            .chat(hello().with_conn_options(fast(3)))
            .collect()
            .await
            .unwrap_err();
        assert_eq!(api(&err).status_code(), Some(429));
        assert_eq!(s.emu.requests_to("/chat/completions").len(), 1);
    }
}

#[tokio::test]
async fn a_wrong_key_is_a_401_and_never_appears_in_the_error() {
    let s = Setup::new().await;
    let secret = "sk-wrong-key-that-must-stay-secret";
    let client = s.client().with_api_key(secret);
    let llm = OpenAiLlm::new(client, LlmOptions::new("gpt-4o")).unwrap();
    let err = llm.chat(hello()).collect().await.unwrap_err();
    assert!(api(&err).is_auth());
    assert_eq!(s.emu.requests().len(), 1);
    for text in [format!("{err}"), format!("{err:?}"), format!("{llm:?}")] {
        assert!(!text.contains(secret), "the key leaked: {text}");
    }
    assert_eq!(
        api(&err).body().unwrap()["error"]["code"],
        "invalid_api_key"
    );
}

#[tokio::test]
async fn a_slow_first_byte_times_out_per_attempt_and_is_retried() {
    let s = Setup::new().await;
    s.emu.set_default_chat(
        ChatScript::text(["late"]).with_fault(Fault::SlowFirstByte(Duration::from_secs(2))),
    );
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let conn = fast(1).with_timeout(Duration::from_millis(200));
    let err = llm
        .chat(hello().with_conn_options(conn))
        .collect()
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert!(err_source_api(&err).is_timeout(), "{err:?}");
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 2);
    // A first byte within the timeout is fine, and a stream far longer than the timeout (9 events 200 ms apart)
    // is not cut by it.
    s.emu.set_default_chat(
        ChatScript::text(["a", "b", "c", "d", "e"])
            .with_fault(Fault::SlowFirstByte(Duration::from_millis(50)))
            .with_chunk_delay(Duration::from_millis(200)),
    );
    let r = llm
        .chat(hello().with_conn_options(fast(0).with_timeout(Duration::from_secs(1))))
        .collect()
        .await
        .unwrap();
    assert_eq!(r.text, "abcde");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_a_retryable_error_after_the_text_so_far() {
    let s = Setup::new().await;
    // Events: role, "Hel", "lo", " wor"... dropped after three.
    s.emu.push_chat(
        ChatScript::text(["Hel", "lo", " world"]).with_fault(Fault::DropMidStream { after: 3 }),
    );
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let (out, err) = chunks(&llm, hello()).await;
    assert_eq!(
        out,
        vec![ChatChunk::Text("Hel".into()), ChatChunk::Text("lo".into())]
    );
    let err = err.expect("an error, not a clean end");
    assert!(err.is_retryable() && api(&err).is_connection(), "{err:?}");
    assert_eq!(
        s.emu.requests_to("/chat/completions").len(),
        1,
        "a started stream is not replayed"
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_chunk_is_reopened() {
    let s = Setup::new().await;
    s.emu
        .push_chat(ChatScript::text(["lost"]).with_fault(Fault::DropMidStream { after: 0 }));
    s.emu.push_chat(ChatScript::text(["second", " try"]));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let r = llm.chat(hello()).collect().await.unwrap();
    assert_eq!(r.text, "second try");
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 2);
    // Bounded by max_retry, and the last failure surfaces.
    s.emu
        .set_default_chat(ChatScript::text(["lost"]).with_fault(Fault::DropMidStream { after: 0 }));
    let err = llm
        .chat(hello().with_conn_options(fast(1)))
        .collect()
        .await
        .unwrap_err();
    assert!(api(&err).is_connection());
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 4);
    // A protocol violation is not retried, even before the first chunk.
    s.emu
        .set_default_chat(ChatScript::text(["x"]).with_fault(Fault::MalformedSseLine { after: 0 }));
    let err = llm
        .chat(hello().with_conn_options(fast(3)))
        .collect()
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 5);
}

#[tokio::test]
async fn a_stream_dropped_in_a_tool_call_never_yields_the_half_call() {
    let s = Setup::new().await;
    s.emu.set_default_chat(
        ChatScript::steps(vec![ChatStep::ToolCall(ScriptedToolCall::split(
            "get_weather",
            &["{\"city\":", "\"Par", "is\"}"],
        ))])
        .with_fault(Fault::DropMidStream { after: 2 }),
    );
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let (out, err) = chunks(
        &llm,
        hello()
            .with_tools(vec![weather()])
            .with_conn_options(fast(1)),
    )
    .await;
    assert!(calls(&out).is_empty(), "{out:?}");
    let err = err.expect("an error, not a half call");
    assert!(api(&err).is_connection(), "{err:?}");
    // Nothing had reached the caller, so the stream was reopened once (max_retry = 1) before failing.
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 2);
}

#[tokio::test]
async fn a_malformed_sse_line_is_a_typed_protocol_error() {
    let s = Setup::new().await;
    s.emu
        .push_chat(ChatScript::text(["a", "b"]).with_fault(Fault::MalformedSseLine { after: 2 }));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let (out, err) = chunks(&llm, hello()).await;
    assert_eq!(out, vec![ChatChunk::Text("a".into())]);
    let err = err.unwrap();
    assert!(!err.is_retryable());
    let source = api(&err)
        .source()
        .and_then(|s| s.downcast_ref::<ProtocolError>());
    assert!(
        matches!(source, Some(ProtocolError::MalformedSseLine { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_error_event_in_the_stream_becomes_an_api_error_with_its_body() {
    let s = Setup::new().await;
    s.emu
        .push_chat(ChatScript::text(["a", "b"]).with_fault(Fault::StreamError { after: 2 }));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let (out, err) = chunks(&llm, hello()).await;
    assert_eq!(out, vec![ChatChunk::Text("a".into())]);
    let err = err.unwrap();
    assert!(api(&err).message().contains("The server had an error"));
    assert_eq!(api(&err).body().unwrap()["error"]["type"], "server_error");
    assert_eq!(s.emu.requests_to("/chat/completions").len(), 1);
}

#[tokio::test]
async fn an_invalid_json_chunk_is_a_typed_protocol_error() {
    let s = Setup::new().await;
    s.emu
        .push_chat(ChatScript::text(["a", "b"]).with_fault(Fault::InvalidJsonEvent { after: 1 }));
    let llm = s.llm(LlmOptions::new("gpt-4o"));
    let (out, err) = chunks(&llm, hello()).await;
    assert!(out.is_empty());
    let err = err.unwrap();
    let source = api(&err)
        .source()
        .and_then(|s| s.downcast_ref::<ProtocolError>());
    assert!(
        matches!(source, Some(ProtocolError::InvalidJson { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error_after_the_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = ClientOptions::default()
        .with_api_key(KEY)
        .with_base_url(format!("http://{addr}/v1"));
    let llm = OpenAiLlm::new(client, LlmOptions::new("gpt-4o")).unwrap();
    let err = llm
        .chat(hello().with_conn_options(fast(1)))
        .collect()
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert!(api(&err).is_connection());
    assert!(err_source_api(&err).is_connection());
}

#[tokio::test]
async fn azure_deployments_use_the_api_key_header_and_api_version() {
    let s = Setup::new().await;
    s.emu.push_chat(ChatScript::text(["from azure"]));
    let client = ClientOptions::azure(s.server.http_url(), "my-gpt4o", "2024-10-21", KEY)
        .with_conn_options(fast(0));
    let llm = OpenAiLlm::new(client, LlmOptions::new("gpt-4o")).unwrap();
    let r = llm.chat(hello()).collect().await.unwrap();
    assert_eq!(r.text, "from azure");
    let req = &s.emu.requests()[0];
    assert_eq!(req.path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(req.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(req.header("api-key"), Some(KEY));
    assert_eq!(req.header("authorization"), None);
}

#[tokio::test]
async fn a_gateway_key_header_is_sent_and_redacted() {
    let s = Setup::new().await;
    let client = s
        .client()
        .with_api_key("gw-secret-123")
        .with_key_header(KeyHeader::Custom("x-api-key".into()));
    let llm = OpenAiLlm::new(client.clone(), LlmOptions::new("gpt-4o")).unwrap();
    // The emulator wants a bearer key: the gateway header alone is a 401, with the key sent as asked.
    let err = llm.chat(hello()).collect().await.unwrap_err();
    assert_eq!(api(&err).status_code(), Some(401));
    let req = &s.emu.requests()[0];
    assert_eq!(req.header("x-api-key"), Some("gw-secret-123"));
    assert_eq!(req.header("authorization"), None);
    assert!(!format!("{client:?}").contains("gw-secret-123"));
}

#[tokio::test]
async fn bad_configuration_is_rejected_at_construction() {
    let bad_url = ClientOptions::default().with_base_url("not a url");
    assert!(OpenAiLlm::new(bad_url, LlmOptions::default()).is_err());
    let bad_header = ClientOptions::default().with_header("X-Bad", "line\nbreak");
    assert!(OpenAiLlm::new(bad_header, LlmOptions::default()).is_err());
    assert!(
        OpenAiLlm::new(
            ClientOptions::default(),
            LlmOptions::new("gpt-4o").with_temperature(3.0)
        )
        .is_err()
    );
    let no_vision = OpenAiLlm::new(
        ClientOptions::default(),
        LlmOptions::new("text-only").with_vision(false),
    )
    .unwrap();
    let mut ctx = ChatContext::new();
    ctx.push_message(ChatMessage::with_content(
        ChatRole::User,
        vec![ChatContent::Image(ImageContent::from_url(
            "https://example.com/a.png",
        ))],
    ));
    let err = no_vision
        .chat(ChatRequest::new(ctx))
        .collect()
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidRequest { .. }));
}

/// The emulator answers invalid requests as OpenAI does (checked with raw requests).
#[tokio::test]
async fn the_emulator_rejects_invalid_requests_like_openai() {
    let s = Setup::new().await;
    let url = format!("{}/v1/chat/completions", s.server.http_url());
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, auth: Option<&str>| {
        let mut rb = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(a) = auth {
            rb = rb.header("authorization", format!("Bearer {a}"));
        }
        rb.send()
    };
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(serde_json::Value, Option<&str>, u16, &str)> = vec![
        (
            json!({"model": "gpt-4o", "messages": msgs}),
            None,
            401,
            "You didn't provide an API key",
        ),
        (
            json!({"model": "gpt-4o", "messages": msgs}),
            Some("sk-nope-12345678"),
            401,
            "Incorrect API key provided: sk-n",
        ),
        (
            json!({"model": "gpt-4o", "messages": msgs, "bogus": 1}),
            Some(KEY),
            400,
            "Unrecognized request argument supplied: bogus",
        ),
        (
            json!({"model": "gpt-4o", "messages": []}),
            Some(KEY),
            400,
            "empty array",
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}),
            Some(KEY),
            400,
            "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            json!({"model": "gpt-4o", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "hi"}]}),
            Some(KEY),
            400,
            "did not have response messages: c1",
        ),
        (
            json!({"model": "gpt-4o", "messages": msgs, "tool_choice": "auto"}),
            Some(KEY),
            400,
            "only allowed when 'tools' are specified",
        ),
        (
            json!({"model": "gpt-4o", "messages": msgs, "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            Some(KEY),
            400,
            "does not match pattern",
        ),
        (
            json!({"model": "gpt-4o", "messages": msgs, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}),
            Some(KEY),
            400,
            "type: \"object\"",
        ),
        (
            json!({"model": "gpt-4o", "messages": msgs, "stream_options": {"include_usage": true}}),
            Some(KEY),
            400,
            "only allowed when 'stream' is enabled",
        ),
        (
            json!({"model": "o3-mini", "messages": msgs, "temperature": 0.5}),
            Some(KEY),
            400,
            "'temperature' is not supported",
        ),
    ];
    for (body, auth, status, needle) in cases {
        let r = post(body.clone(), auth).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        assert!(r.headers().contains_key("x-request-id"));
        let v: serde_json::Value = r.json_or_panic().await;
        let e = &v["error"];
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
        for k in ["message", "type", "param", "code"] {
            assert!(e.get(k).is_some(), "missing {k} in {v}");
        }
    }
    // A valid non-streamed request gets a whole chat.completion.
    let r = post(json!({"model": "gpt-4o", "messages": msgs}), Some(KEY))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json_or_panic().await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the emulator."
    );
}

trait JsonOrPanic {
    async fn json_or_panic(self) -> serde_json::Value;
}

impl JsonOrPanic for reqwest::Response {
    async fn json_or_panic(self) -> serde_json::Value {
        let bytes = self.bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}
