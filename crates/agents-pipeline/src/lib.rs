#![doc = include_str!("../README.md")]

pub mod interruption;
pub mod recognition;

pub use interruption::{
    BackchannelFilter, HoldReason, InterruptionDecision, InterruptionOptions, InterruptionPolicy,
    TurnVerdict,
};
pub use recognition::{
    AudioRecognition, EndOfTurn, EndpointingOptions, RecognitionError, RecognitionEvent,
    RecognitionOptions, TurnDetectionMode, TurnDetector, TurnDetectorError,
};
