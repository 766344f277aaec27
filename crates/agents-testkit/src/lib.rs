#![doc = include_str!("../README.md")]

pub mod bench;
pub mod conformance;
pub mod emulators;
pub mod fakes;
pub mod signal;
pub mod stamps;
mod util;

pub use emulators::EmulatorServer;
pub use fakes::audio_io::{FakeAudioOutput, FakeTextOutput, PlayedSegment};
pub use fakes::llm::{FakeLlm, FakeResponse, FakeStep};
pub use fakes::realtime::{
    FakeRealtimeModel, FakeRealtimeResponse, FakeRealtimeSession, RealtimeRecord, RealtimeStep,
};
pub use fakes::session::{FakeSession, SessionCall};
pub use fakes::stt::FakeStt;
pub use fakes::tts::{FakeTts, SpeechTiming};
pub use fakes::vad::FakeVad;
