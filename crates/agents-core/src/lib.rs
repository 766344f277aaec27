#![doc = include_str!("../README.md")]

pub mod agent;
pub mod audio_io;
pub mod chat;
pub mod error;
pub mod events;
pub mod fallback;
pub mod ids;
pub mod llm;
pub mod metrics;
pub mod realtime;
pub mod retry;
pub mod secret;
pub mod serde_util;
pub mod session;
pub mod speech;
pub mod stream;
pub mod stt;
pub mod task;
pub mod tokenize;
pub mod tools;
pub mod tts;
pub mod tts_adapter;
pub mod vad;

pub use agents_audio::{AudioFrame, SampleRate};

pub use agent::{Agent, AgentHooks, LanguageModel, TurnDecision, TurnOverrides};
pub use audio_io::{AudioInput, AudioOutput, PlaybackFinished, SessionIo, TextOutput};
pub use chat::{ChatContext, ChatItem, ChatMessage, ChatRole, FunctionCall, FunctionCallOutput};
pub use error::{ApiError, ApiErrorKind};
pub use events::{AgentState, SessionEvent, UserState};
pub use fallback::{AvailabilityChanged, FallbackError, FallbackLlm, FallbackStt, FallbackTts};
pub use llm::{ChatChunk, ChatRequest, Llm, LlmError, LlmStream, ToolChoice};
pub use metrics::Metrics;
pub use realtime::{RealtimeModel, RealtimeSession};
pub use retry::{
    ApiConnectOptions, Attempt, ConnectOptionsError, RetryableError, parse_retry_after,
};
pub use secret::ApiKey;
pub use session::{SessionControl, SessionError, SessionHandle, TurnDetectionMode};
pub use speech::{SpeechHandle, SpeechPriority};
pub use stt::{SpeechEvent, Stt, SttError, SttStream};
pub use task::{AgentTask, TaskCompleter, TaskError, TaskGroup};
pub use tools::{FunctionTool, RunContext, ToolError, ToolOutcome, ToolSet};
pub use tts::{Tts, TtsError, TtsStream};
pub use tts_adapter::StreamAdapter;
pub use vad::{Vad, VadError, VadEvent, VadStream};

/// Compile-time proof that what crosses tasks is `Send + Sync`.
#[allow(dead_code)]
const _: () = {
    const fn assert_send_sync<T: ?Sized + Send + Sync>() {}
    assert_send_sync::<std::sync::Arc<dyn Llm>>();
    assert_send_sync::<std::sync::Arc<dyn Stt>>();
    assert_send_sync::<std::sync::Arc<dyn Tts>>();
    assert_send_sync::<std::sync::Arc<dyn Vad>>();
    assert_send_sync::<std::sync::Arc<dyn RealtimeModel>>();
    assert_send_sync::<std::sync::Arc<dyn RealtimeSession>>();
    assert_send_sync::<std::sync::Arc<dyn AudioOutput>>();
    assert_send_sync::<std::sync::Arc<dyn TextOutput>>();
    assert_send_sync::<SessionHandle>();
    assert_send_sync::<SpeechHandle>();
    assert_send_sync::<SessionEvent>();
    assert_send_sync::<Agent>();
    assert_send_sync::<FunctionTool>();
    assert_send_sync::<ToolSet>();
    assert_send_sync::<ChatContext>();
    assert_send_sync::<Metrics>();
    assert_send_sync::<ApiError>();
    assert_send_sync::<LlmError>();
    assert_send_sync::<SttError>();
    assert_send_sync::<TtsError>();
    assert_send_sync::<VadError>();
    assert_send_sync::<SessionError>();
    assert_send_sync::<TaskError>();
    assert_send_sync::<TaskCompleter<String>>();
    assert_send_sync::<TaskGroup>();
};
