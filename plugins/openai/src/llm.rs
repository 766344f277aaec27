//! [`OpenAiLlm`]: the [`Llm`] contract over Chat Completions with `stream: true`.
//!
//! Works with OpenAI, Azure OpenAI and every OpenAI-compatible server through [`ClientOptions`] (base URL, key
//! header, query). The reply streams as [`ChatChunk`]s: text deltas as they arrive, each tool call once its
//! arguments are complete (at the finish reason), then `Finished` and `Usage`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use agents_core::chat::FunctionCall;
use agents_core::llm::{
    ChatChunk, ChatRequest, CompletionUsage, FinishReason, Llm, LlmCapabilities, LlmError,
    LlmStream, RequestIdSlot, ToolChoice,
};
use agents_core::{ApiConnectOptions, ApiError};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};

use crate::chat_format;
use crate::error::{ConfigError, ProtocolError};
use crate::http::{self, Transport};
use crate::options::ClientOptions;
use crate::sse::SseDecoder;

/// The default chat model (LiveKit's default for its OpenAI LLM).
pub const DEFAULT_LLM_MODEL: &str = "gpt-4.1";

/// Options of an [`OpenAiLlm`]. Per-request values of [`ChatRequest`] (temperature, max tokens, tool choice,
/// parallel tool calls, extra fields) win over these.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LlmOptions {
    /// Model (or Azure deployment's model name, used for labels only there).
    pub model: String,
    /// Sampling temperature (left out for reasoning models).
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Upper bound on generated tokens, sent as `max_completion_tokens`.
    pub max_completion_tokens: Option<u32>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// End-user identifier, sent as `user`.
    pub user: Option<String>,
    /// `service_tier` (`auto`, `default`, `flex`, `priority`).
    pub service_tier: Option<String>,
    /// `reasoning_effort` for reasoning models (`minimal`, `low`, `medium`, `high`).
    pub reasoning_effort: Option<String>,
    /// Default tool choice.
    pub tool_choice: Option<ToolChoice>,
    /// Default for parallel tool calls.
    pub parallel_tool_calls: Option<bool>,
    /// Send tools with `strict: true` (schemas rewritten for Structured Outputs).
    pub strict_tools: bool,
    /// Ask for usage in the stream (`stream_options.include_usage`); turn off for servers that reject it.
    pub include_usage: bool,
    /// Whether the model is a reasoning model (`developer` instructions, no temperature); `None` guesses from the
    /// name (`o1`, `o3`, `o4`, `gpt-5` prefixes, except `gpt-5-chat`).
    pub reasoning_model: Option<bool>,
    /// Whether the model accepts images.
    pub vision: bool,
    /// Fields merged into every request body (e.g. `{"max_tokens": 512}` for servers that predate
    /// `max_completion_tokens`, `{"store": true}`, or a vendor's own fields).
    pub extra_body: Map<String, Value>,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self::new(DEFAULT_LLM_MODEL)
    }
}

impl LlmOptions {
    /// Options for `model` with provider defaults.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            temperature: None,
            top_p: None,
            max_completion_tokens: None,
            seed: None,
            user: None,
            service_tier: None,
            reasoning_effort: None,
            tool_choice: None,
            parallel_tool_calls: None,
            strict_tools: false,
            include_usage: true,
            reasoning_model: None,
            vision: true,
            extra_body: Map::new(),
        }
    }

    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets `top_p`.
    #[must_use]
    pub fn with_top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }

    /// Sets `max_completion_tokens`.
    #[must_use]
    pub fn with_max_completion_tokens(mut self, n: u32) -> Self {
        self.max_completion_tokens = Some(n);
        self
    }

    /// Sets the seed.
    #[must_use]
    pub fn with_seed(mut self, seed: i64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets `user`.
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets `service_tier`.
    #[must_use]
    pub fn with_service_tier(mut self, tier: impl Into<String>) -> Self {
        self.service_tier = Some(tier.into());
        self
    }

    /// Sets `reasoning_effort`.
    #[must_use]
    pub fn with_reasoning_effort(mut self, effort: impl Into<String>) -> Self {
        self.reasoning_effort = Some(effort.into());
        self
    }

    /// Sets the default tool choice.
    #[must_use]
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets the default for parallel tool calls.
    #[must_use]
    pub fn with_parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.parallel_tool_calls = Some(parallel);
        self
    }

    /// Sends tools in strict mode.
    #[must_use]
    pub fn with_strict_tools(mut self, strict: bool) -> Self {
        self.strict_tools = strict;
        self
    }

    /// Asks (or not) for usage in the stream.
    #[must_use]
    pub fn with_include_usage(mut self, include: bool) -> Self {
        self.include_usage = include;
        self
    }

    /// Says whether the model is a reasoning model, instead of guessing from its name.
    #[must_use]
    pub fn with_reasoning_model(mut self, reasoning: bool) -> Self {
        self.reasoning_model = Some(reasoning);
        self
    }

    /// Says whether the model accepts images.
    #[must_use]
    pub fn with_vision(mut self, vision: bool) -> Self {
        self.vision = vision;
        self
    }

    /// Adds a field to every request body.
    #[must_use]
    pub fn with_extra_body(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra_body.insert(key.into(), value);
        self
    }

    /// Whether the model is treated as a reasoning model.
    pub fn is_reasoning_model(&self) -> bool {
        self.reasoning_model.unwrap_or_else(|| {
            let m = self.model.as_str();
            ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p))
                && !m.starts_with("gpt-5-chat")
        })
    }
}

/// A Chat Completions LLM. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct OpenAiLlm {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    options: LlmOptions,
}

impl OpenAiLlm {
    /// The label in logs and metrics.
    pub const LABEL: &'static str = "openai.LLM";

    /// An LLM over `client` (key, base URL, headers, connection policy) with `options`.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad base URL or header, or an out-of-range option.
    pub fn new(client: ClientOptions, options: LlmOptions) -> Result<Self, ConfigError> {
        if options.model.trim().is_empty() {
            return Err(ConfigError::InvalidOption {
                reason: "the model name is empty".to_owned(),
            });
        }
        if let Some(t) = options.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ConfigError::InvalidOption {
                reason: format!("temperature {t} is outside 0..=2"),
            });
        }
        if let Some(p) = options.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ConfigError::InvalidOption {
                reason: format!("top_p {p} is outside 0..=1"),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(client)?,
                options,
            }),
        })
    }

    /// An LLM for `model` with the key and base URL from the environment ([`ClientOptions::from_env`]).
    ///
    /// # Errors
    /// As [`OpenAiLlm::new`].
    pub fn from_env(model: impl Into<String>) -> Result<Self, ConfigError> {
        Self::new(ClientOptions::from_env(), LlmOptions::new(model))
    }

    /// The options.
    pub fn options(&self) -> &LlmOptions {
        &self.inner.options
    }

    /// The JSON body sent for `request` (exposed for inspection and tests).
    ///
    /// # Errors
    /// [`LlmError::InvalidRequest`] when a tool cannot be expressed (strict mode) or an image is sent to a model
    /// without vision.
    pub fn request_body(&self, request: &ChatRequest) -> Result<Value, LlmError> {
        build_body(&self.inner.options, request)
    }
}

fn build_body(o: &LlmOptions, r: &ChatRequest) -> Result<Value, LlmError> {
    let reasoning = o.is_reasoning_model();
    let instructions_role = if reasoning { "developer" } else { "system" };
    if !o.vision && has_images(r) {
        return Err(LlmError::InvalidRequest {
            reason: format!(
                "model {} is configured without vision but the context has images",
                o.model
            ),
        });
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(o.model));
    body.insert(
        "messages".into(),
        Value::Array(chat_format::messages(&r.chat_ctx, instructions_role)),
    );
    body.insert("stream".into(), json!(true));
    if o.include_usage {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !r.tools.is_empty() {
        let tools =
            chat_format::tools(&r.tools, o.strict_tools).map_err(|e| LlmError::InvalidRequest {
                reason: e.to_string(),
            })?;
        body.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = r.tool_choice.as_ref().or(o.tool_choice.as_ref()) {
            body.insert("tool_choice".into(), chat_format::tool_choice(choice));
        }
        if let Some(p) = r.parallel_tool_calls.or(o.parallel_tool_calls) {
            body.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    if let Some(t) = r.temperature.or(o.temperature) {
        if reasoning {
            tracing::debug!(model = %o.model, "temperature left out: reasoning models reject it");
        } else {
            body.insert("temperature".into(), json!(t));
        }
    }
    if let Some(n) = r.max_output_tokens.or(o.max_completion_tokens) {
        body.insert("max_completion_tokens".into(), json!(n));
    }
    if let Some(p) = o.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(s) = o.seed {
        body.insert("seed".into(), json!(s));
    }
    if let Some(u) = &o.user {
        body.insert("user".into(), json!(u));
    }
    if let Some(t) = &o.service_tier {
        body.insert("service_tier".into(), json!(t));
    }
    if let Some(e) = &o.reasoning_effort {
        body.insert("reasoning_effort".into(), json!(e));
    }
    for (k, v) in o.extra_body.iter().chain(r.extra.iter()) {
        body.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(body))
}

fn has_images(r: &ChatRequest) -> bool {
    r.chat_ctx.messages().any(|m| {
        m.content
            .iter()
            .any(|c| matches!(c, agents_core::chat::ChatContent::Image(_)))
    })
}

#[async_trait]
impl Llm for OpenAiLlm {
    fn label(&self) -> &str {
        Self::LABEL
    }

    fn model(&self) -> &str {
        &self.inner.options.model
    }

    fn capabilities(&self) -> LlmCapabilities {
        let mut c = LlmCapabilities::default();
        c.tools = true;
        c.vision = self.inner.options.vision;
        c
    }

    fn chat(&self, request: ChatRequest) -> LlmStream {
        let model = self.inner.options.model.clone();
        let body = match build_body(&self.inner.options, &request) {
            Ok(b) => b,
            Err(e) => return LlmStream::from_error(Self::LABEL, model, e),
        };
        let conn = self.inner.transport.conn_for(&request.conn_options);
        let request_id = RequestIdSlot::new();
        let phase = Phase::Connect(Request {
            inner: Arc::clone(&self.inner),
            body: Bytes::from(body.to_string()),
            conn,
            reopened: 0,
            request_id: request_id.clone(),
        });
        LlmStream::new(Self::LABEL, model, futures::stream::unfold(phase, step))
            .with_request_id_slot(request_id)
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>;

/// What is needed to (re)open the stream.
struct Request {
    inner: Arc<Inner>,
    body: Bytes,
    conn: ApiConnectOptions,
    /// How often a stream that failed before its first chunk was reopened.
    reopened: u32,
    /// Filled with `x-request-id` when the response headers arrive; read by the stream's metrics.
    request_id: RequestIdSlot,
}

enum Phase {
    Connect(Request),
    Read(Box<Reader>),
    Done,
}

struct Reader {
    request: Request,
    body: ByteStream,
    decoder: SseDecoder,
    parser: ChunkParser,
    queue: VecDeque<Result<ChatChunk, LlmError>>,
    /// No more input: the queue is the rest of the stream.
    ended: bool,
    /// A chunk reached the caller: a failure can no longer be retried without repeating output.
    yielded: bool,
}

async fn step(phase: Phase) -> Option<(Result<ChatChunk, LlmError>, Phase)> {
    let mut phase = phase;
    loop {
        match phase {
            Phase::Done => return None,
            Phase::Connect(request) => {
                let transport = &request.inner.transport;
                let sent = request
                    .conn
                    .retry("stream a chat completion", |attempt| {
                        let req = transport.post_json("chat/completions", &request.body);
                        transport.send(req, attempt.timeout)
                    })
                    .await;
                match sent {
                    Ok(response) => {
                        if let Some(id) = http::request_id(&response) {
                            tracing::debug!(request_id = %id, "chat completion stream opened");
                            request.request_id.set(id);
                        }
                        phase = Phase::Read(Box::new(Reader {
                            request,
                            body: Box::pin(http::body_stream(response)),
                            decoder: SseDecoder::default(),
                            parser: ChunkParser::default(),
                            queue: VecDeque::new(),
                            ended: false,
                            yielded: false,
                        }));
                    }
                    Err(e) => return Some((Err(LlmError::Api(e)), Phase::Done)),
                }
            }
            Phase::Read(mut r) => {
                if let Some(item) = r.queue.pop_front() {
                    match &item {
                        Ok(_) => {
                            r.yielded = true;
                            return Some((item, Phase::Read(r)));
                        }
                        Err(LlmError::Api(e))
                            if !r.yielded && r.request.reopened < r.request.conn.max_retry =>
                        {
                            // Nothing reached the caller yet: open the stream again, as for a failed connection.
                            if let Some(delay) = r.request.conn.retry_delay(e, r.request.reopened) {
                                tracing::warn!(
                                    error = %e,
                                    retry_in = ?delay,
                                    "chat completion stream failed before its first chunk, reopening"
                                );
                                tokio::time::sleep(delay).await;
                                let mut request = r.request;
                                request.reopened += 1;
                                phase = Phase::Connect(request);
                                continue;
                            }
                            return Some((item, Phase::Done));
                        }
                        Err(_) => return Some((item, Phase::Done)),
                    }
                }
                if r.ended {
                    return None;
                }
                match r.body.next().await {
                    Some(Ok(bytes)) => match r.decoder.feed(&bytes) {
                        Ok(events) => {
                            for data in events {
                                if let Err(e) = r.parser.on_data(&data, &mut r.queue) {
                                    r.queue.push_back(Err(e));
                                    r.ended = true;
                                    break;
                                }
                                if r.parser.done {
                                    r.ended = true;
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            r.queue.push_back(Err(protocol_error(e)));
                            r.ended = true;
                        }
                    },
                    Some(Err(e)) => {
                        r.queue.push_back(Err(LlmError::Api(e)));
                        r.ended = true;
                    }
                    None => {
                        r.ended = true;
                        match r.decoder.finish() {
                            Ok(Some(data)) => {
                                if let Err(e) = r.parser.on_data(&data, &mut r.queue) {
                                    r.queue.push_back(Err(e));
                                }
                            }
                            Ok(None) => {}
                            Err(e) => r.queue.push_back(Err(protocol_error(e))),
                        }
                        if !r.parser.done
                            && let Err(e) = r.parser.on_eof()
                        {
                            r.queue.push_back(Err(e));
                        }
                    }
                }
                phase = Phase::Read(r);
            }
        }
    }
}

/// A server that breaks the stream format: not retryable (the output may already have reached the caller).
fn protocol_error(e: ProtocolError) -> LlmError {
    LlmError::Api(
        ApiError::new("invalid chat completion stream")
            .with_retryable(false)
            .with_source(e),
    )
}

/// A tool call being assembled from deltas.
#[derive(Debug)]
struct PendingCall {
    index: Option<u64>,
    id: String,
    name: String,
    arguments: String,
}

/// Turns `chat.completion.chunk` payloads into [`ChatChunk`]s.
#[derive(Debug, Default)]
struct ChunkParser {
    calls: Vec<PendingCall>,
    finished: bool,
    /// `[DONE]` seen.
    done: bool,
}

impl ChunkParser {
    fn on_data(
        &mut self,
        data: &str,
        out: &mut VecDeque<Result<ChatChunk, LlmError>>,
    ) -> Result<(), LlmError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            if !self.finished {
                self.flush_calls(out)?;
            }
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            protocol_error(ProtocolError::InvalidJson {
                what: "a chat completion chunk",
                reason: e.to_string(),
            })
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the server reported an error mid-stream");
            return Err(LlmError::Api(ApiError::new(message).with_body(v.clone())));
        }
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            let choice = choices
                .iter()
                .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
            if let Some(choice) = choice {
                if let Some(delta) = choice.get("delta") {
                    if let Some(text) = delta.get("content").and_then(Value::as_str)
                        && !text.is_empty()
                    {
                        out.push_back(Ok(ChatChunk::Text(text.to_owned())));
                    }
                    if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                        for c in calls {
                            self.on_tool_delta(c);
                        }
                    }
                }
                if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                    self.flush_calls(out)?;
                    self.finished = true;
                    out.push_back(Ok(ChatChunk::Finished(finish_reason(reason))));
                }
            }
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            out.push_back(Ok(ChatChunk::Usage(usage(u))));
        }
        Ok(())
    }

    fn on_tool_delta(&mut self, d: &Value) {
        let index = d.get("index").and_then(Value::as_u64);
        let id = d
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let pos = match id {
            // Servers that reuse index 0 tell calls apart by id only: key on the id when there is one.
            Some(id) => self.calls.iter().position(|c| c.id == id),
            None => self
                .calls
                .iter()
                .rposition(|c| index.is_none() || c.index == index),
        };
        let pos = match pos {
            Some(p) => p,
            None => {
                self.calls.push(PendingCall {
                    index,
                    id: id.map_or_else(|| agents_core::ids::short_id("call_"), str::to_owned),
                    name: String::new(),
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos];
        if let Some(name) = d.pointer("/function/name").and_then(Value::as_str)
            && !name.is_empty()
            && call.name != name
        {
            call.name.push_str(name);
        }
        if let Some(args) = d.pointer("/function/arguments").and_then(Value::as_str) {
            call.arguments.push_str(args);
        }
    }

    fn flush_calls(
        &mut self,
        out: &mut VecDeque<Result<ChatChunk, LlmError>>,
    ) -> Result<(), LlmError> {
        for c in self.calls.drain(..) {
            if c.name.is_empty() {
                return Err(protocol_error(ProtocolError::ToolCallWithoutName {
                    call_id: c.id,
                }));
            }
            let arguments = if c.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                c.arguments
            };
            out.push_back(Ok(ChatChunk::ToolCall(FunctionCall::new(
                c.id, c.name, arguments,
            ))));
        }
        Ok(())
    }

    /// The body ended without `[DONE]`.
    fn on_eof(&self) -> Result<(), LlmError> {
        if let Some(c) = self.calls.first() {
            return Err(LlmError::Api(
                ApiError::connection("the stream ended in the middle of a tool call").with_source(
                    ProtocolError::Truncated {
                        what: format!("tool call {:?} was complete", c.id),
                    },
                ),
            ));
        }
        if !self.finished {
            return Err(LlmError::Api(
                ApiError::connection("the stream ended before the response was complete")
                    .with_source(ProtocolError::Truncated {
                        what: "the finish reason".to_owned(),
                    }),
            ));
        }
        Ok(())
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn usage(u: &Value) -> CompletionUsage {
    let n = |p: &str| {
        u.pointer(p)
            .and_then(Value::as_u64)
            .map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX))
    };
    let mut usage = CompletionUsage::new(n("/prompt_tokens"), n("/completion_tokens"));
    usage.prompt_cached_tokens = n("/prompt_tokens_details/cached_tokens");
    if u.get("total_tokens").is_some() {
        usage.total_tokens = n("/total_tokens");
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(events: &[&str]) -> (Vec<ChatChunk>, Option<LlmError>) {
        let mut p = ChunkParser::default();
        let mut q = VecDeque::new();
        for e in events {
            if let Err(err) = p.on_data(e, &mut q) {
                return (q.into_iter().map(|c| c.unwrap()).collect(), Some(err));
            }
        }
        let err = if p.done { None } else { p.on_eof().err() };
        (q.into_iter().map(|c| c.unwrap()).collect(), err)
    }

    #[test]
    fn index_zero_reuse_is_told_apart_by_id() {
        let (chunks, err) = parse(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"arguments":"1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ]);
        assert!(err.is_none());
        let calls: Vec<_> = chunks
            .iter()
            .filter_map(|c| match c {
                ChatChunk::ToolCall(c) => {
                    Some((c.call_id.as_str(), c.name.as_str(), c.arguments.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(calls, vec![("a", "f", "{\"x\":1}"), ("b", "g", "{}")]);
    }

    #[test]
    fn eof_mid_tool_call_is_an_error_not_a_call() {
        let (chunks, err) = parse(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\""}}]}}]}"#,
        ]);
        assert!(chunks.is_empty());
        let err = err.unwrap();
        assert!(err.is_retryable(), "{err:?}");
    }

    #[test]
    fn reasoning_models_get_developer_role_and_no_temperature() {
        let mut ctx = agents_core::ChatContext::new();
        ctx.add_message(agents_core::ChatRole::System, "be brief");
        ctx.add_message(agents_core::ChatRole::User, "hi");
        let req = ChatRequest::new(ctx).with_temperature(0.3);
        let body = build_body(
            &LlmOptions::new("o3-mini").with_reasoning_effort("low"),
            &req,
        )
        .unwrap();
        assert_eq!(body["messages"][0]["role"], "developer");
        assert!(body.get("temperature").is_none());
        assert_eq!(body["reasoning_effort"], "low");
        let body = build_body(&LlmOptions::new("gpt-4o"), &req).unwrap();
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["temperature"], json!(0.3f32));
    }
}
