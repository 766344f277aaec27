#![doc = include_str!("../README.md")]

pub use agents_audio as audio;
pub use agents_core as core;
pub use agents_pipeline as pipeline;

pub use agents_core::*;
pub use agents_pipeline::{AgentSession, AgentSessionBuilder, SessionOptions};

/// The OpenAI plugin (feature `openai`).
#[cfg(feature = "openai")]
pub use agents_openai as openai;

/// The Deepgram plugin (feature `deepgram`).
#[cfg(feature = "deepgram")]
pub use agents_deepgram as deepgram;

/// The ElevenLabs plugin (feature `elevenlabs`).
#[cfg(feature = "elevenlabs")]
pub use agents_elevenlabs as elevenlabs;

/// The Silero VAD plugin (feature `silero`).
#[cfg(feature = "silero")]
pub use agents_silero as silero;

/// Multi-agent workers, jobs, job groups and the bus (feature `workers`).
#[cfg(feature = "workers")]
pub use agents_workers as workers;

/// Transports: the WebSocket server and client (`agents-transport`).
#[cfg(feature = "transport")]
pub use agents_transport as transport;
