//! Scriptable, deterministic fakes of every provider trait and of the audio I/O contracts.
//!
//! Every fake measures time with `tokio::time`, so tests run on a paused clock
//! (`#[tokio::test(start_paused = true)]`) and every delay is exact. Audio-driven behaviour (speech detection,
//! interim transcripts) is measured in *audio time* (sample counts), never on the wall clock.

pub mod audio_io;
pub mod llm;
pub mod realtime;
pub mod session;
pub mod stt;
pub mod tts;
pub mod vad;
