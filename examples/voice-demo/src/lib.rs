//! The voice demo: one complete voice-agent conversation, runnable on a fresh machine.
//!
//! `cargo run -p voice-demo` (or `cargo xtask demo`) streams three recorded user lines in real time into a real
//! [`agents::AgentSession`]: Silero VAD, Deepgram streaming STT, the OpenAI LLM with two tools (`get_weather`,
//! `get_time`) and ElevenLabs streaming TTS, through the real plugins. Each provider is the real service when its
//! key is set (`OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, `ELEVENLABS_API_KEY`), otherwise the bundled emulator of
//! `agents-testkit` on 127.0.0.1 (announced in the banner). It prints the transcript, the tool calls with their
//! arguments and results, and a per-turn latency table, and writes `agent.wav` and `transcript.txt` under
//! `target/voice-demo/`.
//!
//! The library part exists so `tests/conversation.rs` can run the same conversation as the binary.

pub mod conversation;
pub mod providers;
pub mod render;
pub mod tools;

pub use conversation::{
    DemoConfig, DemoReport, Line, ToolCallRecord, TurnLatency, run, run_conversation,
};
pub use providers::{Backend, ProviderChoice, Providers};
