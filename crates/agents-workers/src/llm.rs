//! An LLM worker: a worker holding a [`ChatContext`] and an [`Llm`], activated with
//! [`LlmWorkerActivationArgs`] (Pipecat's `LLMWorker`, without the frame pipeline).
//!
//! It starts **inactive**. On activation the args' messages are appended to its context and, when
//! [`LlmWorkerActivationArgs::should_run_llm`] says so, the LLM runs and its reply is appended and sent to the
//! output channel. While active it serves the `"chat"` job (payload `{"text": …}`, response `{"text": reply}`),
//! which is how a voice session (or any requester) can drive it over the bus.

use std::sync::Arc;

use agents_core::{ChatContext, ChatRequest, ChatRole, Llm, LlmError};
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

use crate::types::{ActivationArgs, LlmWorkerActivationArgs};
use crate::worker::{Job, JobFailure, JobHandlers, JobResult, Worker, WorkerContext};

/// Name of the job an [`LlmWorker`] serves.
pub const CHAT_JOB: &str = "chat";

/// One reply produced by an [`LlmWorker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmWorkerOutput {
    /// The worker that spoke.
    pub worker: String,
    /// The reply text.
    pub text: String,
}

/// A worker that answers with an LLM. See the module docs.
pub struct LlmWorker {
    llm: Arc<dyn Llm>,
    chat_ctx: Mutex<ChatContext>,
    output: Option<mpsc::Sender<LlmWorkerOutput>>,
}

impl std::fmt::Debug for LlmWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmWorker")
            .field("llm", &self.llm.label())
            .finish_non_exhaustive()
    }
}

impl LlmWorker {
    /// A worker over `llm` with an empty context.
    pub fn new(llm: Arc<dyn Llm>) -> Self {
        Self {
            llm,
            chat_ctx: Mutex::new(ChatContext::new()),
            output: None,
        }
    }

    /// Starts with these instructions as the system message.
    pub fn with_instructions(self, instructions: impl Into<String>) -> Self {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::System, instructions.into());
        Self {
            chat_ctx: Mutex::new(ctx),
            ..self
        }
    }

    /// Sends every reply to `output` (bounded; a full channel delays the worker, never drops).
    pub fn with_output(mut self, output: mpsc::Sender<LlmWorkerOutput>) -> Self {
        self.output = Some(output);
        self
    }

    /// A copy of the context.
    pub async fn chat_context(&self) -> ChatContext {
        self.chat_ctx.lock().await.clone()
    }

    /// Runs the LLM on the context, appends the reply and sends it to the output.
    pub async fn generate(&self, worker_name: &str) -> Result<String, LlmError> {
        let mut ctx = self.chat_ctx.lock().await;
        let response = self
            .llm
            .chat(ChatRequest::new(ctx.clone()))
            .collect()
            .await?;
        ctx.add_message(ChatRole::Assistant, response.text.clone());
        drop(ctx);
        if let Some(out) = &self.output {
            let _ = out
                .send(LlmWorkerOutput {
                    worker: worker_name.to_owned(),
                    text: response.text.clone(),
                })
                .await;
        }
        Ok(response.text)
    }

    async fn chat(self: Arc<Self>, job: Job) -> JobResult {
        if !job.context().is_active() {
            return Err(JobFailure::Failed(json!({"error": "worker is not active"})));
        }
        let text = job
            .payload()
            .and_then(|p| p.get("text"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| JobFailure::Error("payload must be {\"text\": string}".to_owned()))?
            .to_owned();
        self.chat_ctx.lock().await.add_message(ChatRole::User, text);
        let reply = self
            .generate(job.context().name())
            .await
            .map_err(|e| JobFailure::Error(e.to_string()))?;
        Ok(json!({ "text": reply }))
    }
}

#[async_trait::async_trait]
impl Worker for LlmWorker {
    fn job_handlers(&self) -> JobHandlers<Self> {
        JobHandlers::new().sequential_job(CHAT_JOB, LlmWorker::chat)
    }

    async fn on_activated(&self, ctx: &WorkerContext, args: ActivationArgs) {
        let args: LlmWorkerActivationArgs = match args.decode() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(worker = %ctx.name(), error = %e, "invalid LLM activation args");
                return;
            }
        };
        let run = args.should_run_llm();
        if let Some(messages) = args.messages {
            let mut chat = self.chat_ctx.lock().await;
            for m in messages {
                chat.add_message(m.role, m.content);
            }
        }
        if run && let Err(e) = self.generate(ctx.name()).await {
            tracing::warn!(worker = %ctx.name(), error = %e, "LLM run on activation failed");
        }
    }
}
