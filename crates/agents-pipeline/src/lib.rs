#![doc = include_str!("../README.md")]

mod activity;
pub mod generation;
pub mod interruption;
pub mod realtime;
pub mod recognition;
pub mod session;
pub mod speech;
pub mod stt_adapter;
pub mod tools_exec;
pub mod transcription;

pub use interruption::{
    BackchannelFilter, HoldReason, InterruptionDecision, InterruptionOptions, InterruptionPolicy,
    TurnVerdict,
};
pub use realtime::RealtimeSetupError;
pub use recognition::{
    AudioRecognition, EndOfTurn, EndpointingMode, EndpointingOptions, RecognitionError,
    RecognitionEvent, RecognitionOptions, TurnDetectionMode, TurnDetector, TurnDetectorError,
};
pub use session::{AgentSession, AgentSessionBuilder, SessionOptions};
pub use speech::SpeechQueue;
pub use stt_adapter::StreamAdapter;
pub use transcription::{
    TranscriptSynchronizer, TranscriptionOptions, UserTranscript, UserTranscripts,
};
