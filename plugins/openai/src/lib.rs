#![doc = include_str!("../README.md")]

mod chat_format;
pub mod error;
mod http;
pub mod llm;
pub mod options;
pub mod realtime;
mod sse;
pub mod stt;
pub mod tts;

pub use error::{ConfigError, ProtocolError};
pub use llm::{LlmOptions, OpenAiLlm};
pub use options::{ClientOptions, KeyHeader};
pub use stt::{OpenAiStt, SttOptions};
pub use tts::{OpenAiTts, TtsOptions};
