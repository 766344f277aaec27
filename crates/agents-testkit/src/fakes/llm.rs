//! [`FakeLlm`]: a scripted [`Llm`].
//!
//! Responses are taken from a FIFO ([`FakeLlm::push_response`]); when it is empty the optional responder
//! ([`FakeLlm::with_responder`]) builds one from the request, otherwise the request fails with
//! [`LlmError::InvalidRequest`] saying that nothing was scripted.
//!
//! # Timing (tokio time)
//!
//! - the first content chunk (text or tool call) is delivered `ttft` after `chat` was called;
//! - every further content chunk waits `inter_token_delay`;
//! - usage, finish reason and errors are delivered without delay (after the chunk before them);
//! - [`FakeStep::Delay`] waits exactly its duration.
//!
//! # Errors and retries
//!
//! A response whose *first* step is an error is a failed connection attempt: the fake applies the request's
//! [`ApiConnectOptions::retry`](agents_core::retry::ApiConnectOptions::retry) policy like a real plugin, taking the
//! next scripted response for every retry (so script one error response per attempt, or use
//! [`FakeLlm::with_sticky_error`]). An error after some output ends the stream without retry.
//!
//! # Defaults filled in
//!
//! Unless the response sets them, the stream ends with `Finished(ToolCalls)` when it made tool calls, else
//! `Finished(Stop)`, then a `Usage` whose prompt tokens are the words of the request's messages and whose completion
//! tokens are the content chunks sent. Tool calls without a call id get `call_1`, `call_2`... (counted per
//! `FakeLlm`, in request order).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use agents_core::ApiError;
use agents_core::chat::{ChatItem, FunctionCall};
use agents_core::llm::{
    ChatChunk, ChatRequest, CompletionUsage, FinishReason, Llm, LlmError, LlmStream,
};
use async_trait::async_trait;

use crate::stamps::{Stamp, Stamps};
use crate::util::{generate, lock, words};

/// One step of a scripted response.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FakeStep {
    /// A text chunk.
    Text(String),
    /// A complete tool call.
    ToolCall {
        /// Tool name.
        name: String,
        /// Arguments as JSON text (sent as is, even when invalid).
        arguments: String,
        /// Call id; `None` for the automatic `call_N`.
        call_id: Option<String>,
    },
    /// Token usage (replaces the automatic usage).
    Usage(CompletionUsage),
    /// Finish reason (replaces the automatic one).
    Finish(FinishReason),
    /// A failure; the stream ends here.
    Error(LlmError),
    /// A pause of this length before the next step.
    Delay(Duration),
}

/// A scripted LLM response: a list of [`FakeStep`]s.
#[derive(Debug, Clone, Default)]
pub struct FakeResponse {
    steps: Vec<FakeStep>,
    ttft: Option<Duration>,
    inter_token_delay: Option<Duration>,
}

impl FakeResponse {
    /// An empty response (it only finishes with `Stop` and usage).
    pub fn new() -> Self {
        Self::default()
    }

    /// A response with one text chunk.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new().then_text(text)
    }

    /// A response with the given text chunks.
    pub fn chunks<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        chunks.into_iter().fold(Self::new(), Self::then_text)
    }

    /// A response with one tool call (`arguments` is JSON text).
    pub fn tool_call(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self::new().then_tool_call(name, arguments)
    }

    /// A response that fails at once (a failed attempt: see the module documentation on retries).
    pub fn error(error: impl Into<LlmError>) -> Self {
        Self::new().then_error(error)
    }

    /// Appends a text chunk.
    pub fn then_text(mut self, text: impl Into<String>) -> Self {
        self.steps.push(FakeStep::Text(text.into()));
        self
    }

    /// Appends a tool call with an automatic call id.
    pub fn then_tool_call(mut self, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        self.steps.push(FakeStep::ToolCall {
            name: name.into(),
            arguments: arguments.into(),
            call_id: None,
        });
        self
    }

    /// Appends a tool call with the given call id.
    pub fn then_tool_call_with_id(
        mut self,
        call_id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        self.steps.push(FakeStep::ToolCall {
            name: name.into(),
            arguments: arguments.into(),
            call_id: Some(call_id.into()),
        });
        self
    }

    /// Appends an error: the stream ends with it.
    pub fn then_error(mut self, error: impl Into<LlmError>) -> Self {
        self.steps.push(FakeStep::Error(error.into()));
        self
    }

    /// Appends a pause.
    pub fn then_delay(mut self, delay: Duration) -> Self {
        self.steps.push(FakeStep::Delay(delay));
        self
    }

    /// Appends any step.
    pub fn then(mut self, step: FakeStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Sets the usage reported (instead of the automatic one).
    pub fn with_usage(mut self, usage: CompletionUsage) -> Self {
        self.steps.push(FakeStep::Usage(usage));
        self
    }

    /// Sets the finish reason (instead of the automatic one).
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        self.steps.push(FakeStep::Finish(reason));
        self
    }

    /// Overrides the LLM's time to first token for this response.
    pub fn with_ttft(mut self, ttft: Duration) -> Self {
        self.ttft = Some(ttft);
        self
    }

    /// Overrides the LLM's inter-chunk delay for this response.
    pub fn with_inter_token_delay(mut self, delay: Duration) -> Self {
        self.inter_token_delay = Some(delay);
        self
    }

    /// Splits every text chunk into words, each word but the first keeping its leading space
    /// (`"Hello there"` → `"Hello"`, `" there"`), so the concatenation is unchanged.
    pub fn chunked_words(mut self) -> Self {
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in self.steps {
            match step {
                FakeStep::Text(text) => {
                    steps.extend(split_words(&text).into_iter().map(FakeStep::Text))
                }
                other => steps.push(other),
            }
        }
        self.steps = steps;
        self
    }

    /// The steps.
    pub fn steps(&self) -> &[FakeStep] {
        &self.steps
    }

    /// The text of all text steps, concatenated.
    pub fn full_text(&self) -> String {
        self.steps
            .iter()
            .filter_map(|s| match s {
                FakeStep::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn starts_with_error(&self) -> bool {
        self.steps
            .iter()
            .find(|s| !matches!(s, FakeStep::Delay(_)))
            .is_some_and(|s| matches!(s, FakeStep::Error(_)))
    }
}

/// Splits text into chunks at word starts, keeping whitespace with the following word.
fn split_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_space = true;
    for c in text.chars() {
        let space = c.is_whitespace();
        if space && !prev_space {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
        prev_space = space;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

type Responder = Arc<dyn Fn(&ChatRequest) -> FakeResponse + Send + Sync>;

struct State {
    responses: VecDeque<FakeResponse>,
    sticky: Option<LlmError>,
    requests: Vec<ChatRequest>,
    /// `chat` calls, logged or not.
    request_total: usize,
    attempts: usize,
    next_call: u64,
}

struct Shared {
    state: Mutex<State>,
}

/// A scripted [`Llm`] (label `fake.LLM`); see the [module documentation](self).
#[derive(Clone)]
pub struct FakeLlm {
    shared: Arc<Shared>,
    model: String,
    ttft: Duration,
    inter_token_delay: Duration,
    responder: Option<Responder>,
    stamps: Option<Stamps>,
    log_requests: bool,
}

impl Default for FakeLlm {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared.state);
        f.debug_struct("FakeLlm")
            .field("model", &self.model)
            .field("ttft", &self.ttft)
            .field("inter_token_delay", &self.inter_token_delay)
            .field("remaining", &s.responses.len())
            .field("requests", &s.request_total)
            .finish_non_exhaustive()
    }
}

impl FakeLlm {
    /// An LLM with no scripted response, no delays, model `fake-llm`.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    responses: VecDeque::new(),
                    sticky: None,
                    requests: Vec::new(),
                    request_total: 0,
                    attempts: 0,
                    next_call: 1,
                }),
            }),
            model: "fake-llm".to_owned(),
            ttft: Duration::ZERO,
            inter_token_delay: Duration::ZERO,
            responder: None,
            stamps: None,
            log_requests: true,
        }
    }

    /// Records [`Stamp::LlmRequest`] at every `chat` call and [`Stamp::LlmFirstChunk`] when the first content
    /// chunk of a response is handed to the stream (for latency benchmarks; see [`crate::stamps`]).
    pub fn with_stamps(mut self, stamps: Stamps) -> Self {
        self.stamps = Some(stamps);
        self
    }

    /// Stops keeping a copy of every request (for long benchmarks, where the copies of a growing chat context add
    /// up): [`FakeLlm::requests`] and [`FakeLlm::last_request`] then return nothing; [`FakeLlm::request_count`]
    /// still counts.
    pub fn without_request_log(mut self) -> Self {
        self.log_requests = false;
        self
    }

    /// Sets the model name.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the time to first token.
    pub fn with_ttft(mut self, ttft: Duration) -> Self {
        self.ttft = ttft;
        self
    }

    /// Sets the delay between content chunks.
    pub fn with_inter_token_delay(mut self, delay: Duration) -> Self {
        self.inter_token_delay = delay;
        self
    }

    /// Sets the fallback used when no scripted response is left.
    pub fn with_responder(
        mut self,
        responder: impl Fn(&ChatRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }

    /// Makes every attempt fail with `error` (before any scripted response) until [`FakeLlm::clear_sticky_error`].
    pub fn with_sticky_error(self, error: impl Into<LlmError>) -> Self {
        self.set_sticky_error(Some(error.into()));
        self
    }

    /// Sets or clears the error every attempt fails with.
    pub fn set_sticky_error(&self, error: Option<LlmError>) {
        lock(&self.shared.state).sticky = error;
    }

    /// Clears the sticky error.
    pub fn clear_sticky_error(&self) {
        self.set_sticky_error(None);
    }

    /// Queues a response (builder style).
    pub fn push_response(self, response: FakeResponse) -> Self {
        self.add_response(response);
        self
    }

    /// Queues a response.
    pub fn add_response(&self, response: FakeResponse) {
        lock(&self.shared.state).responses.push_back(response);
    }

    /// Drops every queued response.
    pub fn clear_responses(&self) {
        lock(&self.shared.state).responses.clear();
    }

    /// Responses still queued.
    pub fn remaining(&self) -> usize {
        lock(&self.shared.state).responses.len()
    }

    /// Every request received by [`Llm::chat`], in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.shared.state).requests.clone()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<ChatRequest> {
        lock(&self.shared.state).requests.last().cloned()
    }

    /// Number of `chat` calls.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.state).request_total
    }

    /// Number of attempts (a `chat` call makes several when its first attempts fail with retryable errors).
    pub fn attempts(&self) -> usize {
        lock(&self.shared.state).attempts
    }

    /// Takes the response for one attempt.
    fn next_attempt(
        &self,
        request: &ChatRequest,
        retry_of: Option<&LlmError>,
    ) -> Result<FakeResponse, LlmError> {
        let mut s = lock(&self.shared.state);
        s.attempts += 1;
        if let Some(e) = &s.sticky {
            return Err(e.clone());
        }
        let n = s.request_total;
        let response = match s.responses.pop_front() {
            Some(r) => r,
            None if retry_of.is_some() => {
                return Err(retry_of
                    .cloned()
                    .unwrap_or_else(|| ApiError::new("scripted error").into()));
            }
            None => match &self.responder {
                Some(f) => {
                    drop(s);
                    let r = f(request);
                    s = lock(&self.shared.state);
                    r
                }
                None => {
                    return Err(LlmError::InvalidRequest {
                        reason: format!(
                            "FakeLlm: no scripted response left for request #{n} \
                             (queue one with push_response/add_response or set a responder)"
                        ),
                    });
                }
            },
        };
        let mut response = response;
        for step in &mut response.steps {
            if let FakeStep::ToolCall {
                call_id: id @ None, ..
            } = step
            {
                *id = Some(format!("call_{}", s.next_call));
                s.next_call += 1;
            }
        }
        if response.starts_with_error() {
            let err = response.steps.into_iter().find_map(|s| match s {
                FakeStep::Error(e) => Some(e),
                _ => None,
            });
            return Err(err.unwrap_or_else(|| ApiError::new("scripted error").into()));
        }
        Ok(response)
    }
}

/// Counts the words of the request's messages (the automatic prompt tokens).
fn prompt_words(request: &ChatRequest) -> u32 {
    let n: usize = request
        .chat_ctx
        .items()
        .iter()
        .map(|item| match item {
            ChatItem::Message(m) => m.text_content().map_or(0, |t| words(&t).len()),
            ChatItem::FunctionCall(c) => 1 + words(&c.arguments).len(),
            ChatItem::FunctionCallOutput(o) => words(&o.output).len(),
            _ => 0,
        })
        .sum();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[async_trait]
impl Llm for FakeLlm {
    fn label(&self) -> &str {
        "fake.LLM"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn chat(&self, request: ChatRequest) -> LlmStream {
        if let Some(stamps) = &self.stamps {
            stamps.record(Stamp::LlmRequest);
        }
        {
            let mut s = lock(&self.shared.state);
            s.request_total += 1;
            if self.log_requests {
                s.requests.push(request.clone());
            }
        }
        let this = self.clone();
        let stream = generate(move |y| async move {
            let prompt_tokens = prompt_words(&request);
            let conn = request.conn_options;
            let mut last_error: Option<LlmError> = None;
            let first = conn
                .retry("chat", |_attempt| {
                    let r = this.next_attempt(&request, last_error.as_ref());
                    if let Err(e) = &r {
                        last_error = Some(e.clone());
                    }
                    async move { r }
                })
                .await;
            let response = match first {
                Ok(r) => r,
                Err(e) => {
                    y.send(Err(e)).await;
                    return;
                }
            };
            let ttft = response.ttft.unwrap_or(this.ttft);
            let inter = response.inter_token_delay.unwrap_or(this.inter_token_delay);
            let mut sent_content = 0u32;
            let mut tool_calls = false;
            let mut usage = None;
            let mut finish = None;
            for step in response.steps {
                let chunk = match step {
                    FakeStep::Delay(d) => {
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    FakeStep::Usage(u) => {
                        usage = Some(u);
                        continue;
                    }
                    FakeStep::Finish(r) => {
                        finish = Some(r);
                        continue;
                    }
                    FakeStep::Error(e) => {
                        y.send(Err(e)).await;
                        return;
                    }
                    FakeStep::Text(t) => ChatChunk::Text(t),
                    FakeStep::ToolCall {
                        name,
                        arguments,
                        call_id,
                    } => {
                        tool_calls = true;
                        ChatChunk::ToolCall(FunctionCall::new(
                            call_id.unwrap_or_default(),
                            name,
                            arguments,
                        ))
                    }
                };
                let delay = if sent_content == 0 { ttft } else { inter };
                if delay.is_zero() {
                    // A zero sleep would wait for the timer's next 1 ms tick on a real clock.
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(delay).await;
                }
                if sent_content == 0
                    && let Some(stamps) = &this.stamps
                {
                    stamps.record(Stamp::LlmFirstChunk);
                }
                if !y.send(Ok(chunk)).await {
                    return;
                }
                sent_content += 1;
            }
            let finish = finish.unwrap_or(if tool_calls {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            });
            if !y.send(Ok(ChatChunk::Finished(finish))).await {
                return;
            }
            let usage = usage.unwrap_or_else(|| CompletionUsage::new(prompt_tokens, sent_content));
            y.send(Ok(ChatChunk::Usage(usage))).await;
        });
        LlmStream::new(self.label(), self.model.clone(), stream)
    }
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn split_keeps_text() {
        assert_eq!(split_words("Hello there"), vec!["Hello", " there"]);
        assert_eq!(split_words(" a  b "), vec![" a", "  b", " "]);
        assert_eq!(split_words(""), Vec::<String>::new());
    }
}
