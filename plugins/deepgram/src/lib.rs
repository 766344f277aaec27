#![doc = include_str!("../README.md")]

mod messages;
mod net;
pub mod options;
pub mod stt;
mod stt_stream;
pub mod tts;

pub use options::{ClientOptions, ConfigError};
pub use stt::{DeepgramStt, Endpointing, SttOptions};
pub use tts::{DeepgramTts, TtsOptions};
