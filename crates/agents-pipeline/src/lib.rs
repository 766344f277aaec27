#![doc = include_str!("../README.md")]

pub mod interruption;
pub mod recognition;
pub mod stt_adapter;
pub mod transcription;

pub use interruption::{
    BackchannelFilter, HoldReason, InterruptionDecision, InterruptionOptions, InterruptionPolicy,
    TurnVerdict,
};
pub use recognition::{
    AudioRecognition, EndOfTurn, EndpointingMode, EndpointingOptions, RecognitionError,
    RecognitionEvent, RecognitionOptions, TurnDetectionMode, TurnDetector, TurnDetectorError,
};
pub use stt_adapter::StreamAdapter;
pub use transcription::{
    TranscriptSynchronizer, TranscriptionOptions, UserTranscript, UserTranscripts,
};
