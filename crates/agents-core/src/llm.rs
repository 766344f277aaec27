//! The [`Llm`] contract: chat over a context and tools, streamed back as [`ChatChunk`]s.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::chat::{ChatContext, FunctionCall};
use crate::error::ApiError;
use crate::metrics::{LlmMetrics, tokens_per_second};
use crate::retry::ApiConnectOptions;
use crate::stream::BoxStream;
use crate::tools::ToolDefinition;

/// Which tools the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// The model must call at least one tool.
    Required,
    /// The model must not call tools.
    None,
    /// The model must call this tool.
    Function(String),
}

/// Everything an LLM request needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The conversation (instructions included).
    pub chat_ctx: ChatContext,
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Tool choice; `None` leaves the provider default.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools at once; `None` leaves the provider default.
    pub parallel_tool_calls: Option<bool>,
    /// Sampling temperature; `None` leaves the provider default (reasoning models reject it).
    pub temperature: Option<f32>,
    /// Upper bound on generated tokens.
    pub max_output_tokens: Option<u32>,
    /// Connection, timeout and retry policy.
    pub conn_options: ApiConnectOptions,
    /// Provider-specific request fields, merged into the request body by plugins that support it.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChatRequest {
    /// A request over `chat_ctx` with no tools and provider defaults.
    pub fn new(chat_ctx: ChatContext) -> Self {
        Self {
            chat_ctx,
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
            temperature: None,
            max_output_tokens: None,
            conn_options: ApiConnectOptions::default(),
            extra: serde_json::Map::new(),
        }
    }

    /// Sets the tools.
    pub fn with_tools(mut self, tools: Vec<ToolDefinition>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the tool choice.
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets parallel tool calls.
    pub fn with_parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.parallel_tool_calls = Some(parallel);
        self
    }

    /// Sets the temperature.
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the output token limit.
    pub fn with_max_output_tokens(mut self, max: u32) -> Self {
        self.max_output_tokens = Some(max);
        self
    }

    /// Sets the connection policy.
    pub fn with_conn_options(mut self, conn_options: ApiConnectOptions) -> Self {
        self.conn_options = conn_options;
        self
    }
}

/// Token usage of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompletionUsage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Prompt tokens served from cache.
    pub prompt_cached_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Total tokens.
    pub total_tokens: u32,
}

impl CompletionUsage {
    /// Usage with the given counts (`total = prompt + completion`).
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            prompt_cached_tokens: 0,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// Natural end.
    Stop,
    /// Token limit reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Filtered by the provider.
    ContentFilter,
    /// Anything else the provider said.
    Other(String),
}

/// One item of an LLM response stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChatChunk {
    /// A piece of the reply text.
    Text(String),
    /// A complete tool call (arguments fully assembled; possibly invalid JSON as the model wrote it).
    ToolCall(FunctionCall),
    /// Token usage (usually last).
    Usage(CompletionUsage),
    /// The model finished.
    Finished(FinishReason),
}

/// Why an LLM request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The provider API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request cannot be expressed for this provider (e.g. an image for a text-only model).
    #[error("invalid LLM request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
}

impl LlmError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Api(e) if e.is_retryable())
    }
}

/// Where a plugin reports the provider's request id once it is known, e.g. when the response headers arrive,
/// after the [`LlmStream`] was created.
///
/// Cheap to clone; every clone sees the same id. The last id set wins, so a request reopened after a failure
/// reports the id of the response that was read.
#[derive(Clone, Default)]
pub struct RequestIdSlot(Arc<Mutex<Option<String>>>);

impl RequestIdSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `request_id`, replacing any earlier one.
    pub fn set(&self, request_id: impl Into<String>) {
        let id = request_id.into();
        // A poisoned lock only means another holder panicked between two plain stores: the value is still usable.
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some(id);
    }

    /// The recorded id, if any.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The slot is shared between the stream and the plugin's request task.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RequestIdSlot>();
};

impl fmt::Debug for RequestIdSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestIdSlot").field(&self.get()).finish()
    }
}

/// Where an adapter over several LLMs (e.g. [`crate::fallback::FallbackLlm`]) reports which member serves a
/// stream, once it is known, so the stream's metrics carry that member's label and model.
///
/// Cheap to clone; every clone sees the same value; the last value set wins.
#[derive(Clone, Default)]
pub struct ServedBySlot(Arc<Mutex<Option<(String, String)>>>);

impl ServedBySlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the serving member's `label` and `model`.
    pub fn set(&self, label: impl Into<String>, model: impl Into<String>) {
        let value = (label.into(), model.into());
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
    }

    /// The recorded `(label, model)`, if any.
    pub fn get(&self) -> Option<(String, String)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for ServedBySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServedBySlot").field(&self.get()).finish()
    }
}

/// A streamed LLM response, measuring itself as it is read ([`LlmStream::metrics`]).
pub struct LlmStream {
    inner: BoxStream<Result<ChatChunk, LlmError>>,
    label: String,
    model: String,
    served_by: Option<ServedBySlot>,
    request_id: RequestIdSlot,
    started: Instant,
    first_token: Option<Instant>,
    ended: Option<Instant>,
    usage: CompletionUsage,
}

impl LlmStream {
    /// Wraps a plugin's chunk stream. The clock for `ttft` and `duration` starts now.
    pub fn new(
        label: impl Into<String>,
        model: impl Into<String>,
        stream: impl Stream<Item = Result<ChatChunk, LlmError>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(stream),
            label: label.into(),
            model: model.into(),
            served_by: None,
            request_id: RequestIdSlot::new(),
            started: Instant::now(),
            first_token: None,
            ended: None,
            usage: CompletionUsage::default(),
        }
    }

    /// A stream that fails at once with `error`.
    pub fn from_error(label: impl Into<String>, model: impl Into<String>, error: LlmError) -> Self {
        Self::new(
            label,
            model,
            futures::stream::once(async move { Err(error) }),
        )
    }

    /// Records the provider's request id for metrics, when it is known before the stream is created.
    pub fn with_request_id(self, request_id: impl Into<String>) -> Self {
        self.request_id.set(request_id);
        self
    }

    /// Reads the request id from `slot`, which the plugin fills once the provider answered (e.g. from the
    /// `x-request-id` response header). Replaces any id given before.
    pub fn with_request_id_slot(mut self, slot: RequestIdSlot) -> Self {
        self.request_id = slot;
        self
    }

    /// Reads the label and model of the metrics from `slot` once it is set (an adapter names the member that
    /// served); until then the label and model given to [`LlmStream::new`] are used.
    pub fn with_served_by(mut self, slot: ServedBySlot) -> Self {
        self.served_by = Some(slot);
        self
    }

    /// The provider's request id, once known.
    pub fn request_id(&self) -> Option<String> {
        self.request_id.get()
    }

    /// Metrics so far; `cancelled` is true when the stream was not read to its end.
    pub fn metrics(&self) -> LlmMetrics {
        let end = self.ended.unwrap_or_else(Instant::now);
        let duration = end.saturating_duration_since(self.started);
        let mut m = match self.served_by.as_ref().and_then(ServedBySlot::get) {
            Some((label, model)) => LlmMetrics::new(label, model),
            None => LlmMetrics::new(self.label.clone(), self.model.clone()),
        };
        m.request_id = self.request_id.get();
        m.ttft = self
            .first_token
            .map(|t| t.saturating_duration_since(self.started));
        m.duration = duration;
        m.cancelled = self.ended.is_none();
        m.prompt_tokens = self.usage.prompt_tokens;
        m.prompt_cached_tokens = self.usage.prompt_cached_tokens;
        m.completion_tokens = self.usage.completion_tokens;
        m.total_tokens = self.usage.total_tokens;
        m.tokens_per_second = tokens_per_second(self.usage.completion_tokens, duration);
        m
    }

    /// Reads the whole stream into an [`LlmResponse`]; the first error ends it.
    ///
    /// # Errors
    /// The first error of the stream.
    pub async fn collect(mut self) -> Result<LlmResponse, LlmError> {
        let mut out = LlmResponse::default();
        while let Some(chunk) = self.next().await {
            match chunk? {
                ChatChunk::Text(t) => out.text.push_str(&t),
                ChatChunk::ToolCall(c) => out.tool_calls.push(c),
                ChatChunk::Usage(u) => out.usage = Some(u),
                ChatChunk::Finished(r) => out.finish_reason = Some(r),
            }
        }
        out.metrics = Some(self.metrics());
        Ok(out)
    }
}

impl Stream for LlmStream {
    type Item = Result<ChatChunk, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => match chunk {
                ChatChunk::Text(_) | ChatChunk::ToolCall(_) => {
                    if self.first_token.is_none() {
                        self.first_token = Some(Instant::now());
                    }
                }
                ChatChunk::Usage(u) => self.usage = *u,
                ChatChunk::Finished(_) => {}
            },
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if self.ended.is_none() {
                    self.ended = Some(Instant::now());
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl fmt::Debug for LlmStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmStream")
            .field("label", &self.label)
            .field("model", &self.model)
            .field("ended", &self.ended.is_some())
            .finish_non_exhaustive()
    }
}

/// A whole LLM response, from [`LlmStream::collect`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LlmResponse {
    /// The reply text.
    pub text: String,
    /// Tool calls, in order.
    pub tool_calls: Vec<FunctionCall>,
    /// Usage, when reported.
    pub usage: Option<CompletionUsage>,
    /// Finish reason, when reported.
    pub finish_reason: Option<FinishReason>,
    /// Metrics of the request.
    pub metrics: Option<LlmMetrics>,
}

/// What an LLM offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlmCapabilities {
    /// Whether the model can call tools.
    pub tools: bool,
    /// Whether the model accepts images.
    pub vision: bool,
}

impl Default for LlmCapabilities {
    fn default() -> Self {
        Self {
            tools: true,
            vision: false,
        }
    }
}

/// A chat LLM. Object safe: held as `Arc<dyn Llm>`.
#[async_trait]
pub trait Llm: Send + Sync + 'static {
    /// Provider label for logs and metrics, e.g. `openai.LLM`.
    fn label(&self) -> &str;

    /// Model name.
    fn model(&self) -> &str;

    /// What the model offers.
    fn capabilities(&self) -> LlmCapabilities {
        LlmCapabilities::default()
    }

    /// Starts a request. Returns at once; connection errors (after the retries of
    /// `request.conn_options`) arrive as the first item of the stream. Dropping the stream cancels the request.
    fn chat(&self, request: ChatRequest) -> LlmStream;

    /// Releases connections; further requests may fail.
    async fn aclose(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn stream_measures_ttft_duration_and_tokens() {
        let chunks = futures::stream::iter(vec![
            Ok(ChatChunk::Text("Hel".into())),
            Ok(ChatChunk::Text("lo".into())),
            Ok(ChatChunk::Usage(CompletionUsage::new(10, 4))),
            Ok(ChatChunk::Finished(FinishReason::Stop)),
        ])
        .then(|c| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c
        });
        let stream = LlmStream::new("fake.LLM", "m", chunks);
        let response = stream.collect().await.unwrap();
        assert_eq!(response.text, "Hello");
        assert_eq!(response.finish_reason, Some(FinishReason::Stop));
        let m = response.metrics.unwrap();
        assert_eq!(m.ttft, Some(Duration::from_millis(100)));
        assert_eq!(m.duration, Duration::from_millis(400));
        assert_eq!(m.completion_tokens, 4);
        assert_eq!(m.total_tokens, 14);
        assert!(!m.cancelled);
        assert_eq!(m.tokens_per_second, 10.0);
    }

    #[tokio::test]
    async fn dropped_stream_reports_cancelled() {
        let mut s = LlmStream::new(
            "fake.LLM",
            "m",
            futures::stream::iter(vec![
                Ok(ChatChunk::Text("a".into())),
                Ok(ChatChunk::Text("b".into())),
            ]),
        );
        let _ = s.next().await;
        assert!(s.metrics().cancelled);
        let err = LlmStream::from_error("x", "m", ApiError::status("bad key", 401).into())
            .collect()
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn request_id_set_by_the_driver_after_creation_reaches_the_metrics() {
        let slot = RequestIdSlot::new();
        let driver_slot = slot.clone();
        // The plugin learns the id only when its (lazy) request runs, i.e. after the stream exists.
        let chunks = futures::stream::once(async move {
            driver_slot.set("req_first");
            driver_slot.set("req_123");
            Ok(ChatChunk::Text("hi".into()))
        });
        let stream = LlmStream::new("fake.LLM", "m", chunks).with_request_id_slot(slot);
        assert_eq!(stream.request_id(), None);
        assert_eq!(stream.metrics().request_id, None);
        let response = stream.collect().await.unwrap();
        assert_eq!(
            response.metrics.unwrap().request_id.as_deref(),
            Some("req_123")
        );
        let fixed = LlmStream::new("fake.LLM", "m", futures::stream::empty()).with_request_id("r");
        assert_eq!(fixed.metrics().request_id.as_deref(), Some("r"));
    }
}
