//! The voice demo: one complete voice-agent conversation, runnable on a fresh machine.
//!
//! `cargo run -p voice-demo` (or `cargo xtask demo`) serves a real [`agents::AgentSession`] over the WebSocket
//! transport on 127.0.0.1 and connects a scripted client (`WsClient`) that streams three recorded user lines in
//! real time and commits each one as a user turn. The session runs Silero VAD, Deepgram streaming STT, the OpenAI
//! LLM with two tools (`get_weather`, `get_time`) and ElevenLabs streaming TTS, through the real plugins. Each provider is the real service when its
//! key is set (`OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, `ELEVENLABS_API_KEY`), otherwise the bundled emulator of
//! `agents-testkit` on 127.0.0.1 (announced in the banner). It prints the transcript, the tool calls with their
//! arguments and results, and a per-turn latency table, and writes `agent.wav` (the audio the client received)
//! and `transcript.txt` under `target/voice-demo/`. `VOICE_DEMO_EVENTS=1` prints every session event and every
//! message the client receives to stderr.
//!
//! The library part exists so `tests/e2e_conversation.rs` can run the same conversation as the binary, and so
//! the other examples (`voice-agent-tools`, `voice-server`, `voice-handoff`) share its providers, agent, VAD loading
//! and the few lines every binary repeats ([`cli`]).

pub mod cli;
pub mod conversation;
pub mod providers;
pub mod render;
pub mod tools;

pub use conversation::{
    AgentFactory, DemoConfig, DemoReport, Line, OfflineLlmScript, Scenario, ToolCallRecord,
    TurnLatency, assistant_agent, build_session, load_vad, run, run_conversation, session_factory,
};
pub use providers::{Backend, ProviderChoice, Providers};
