#![doc = include_str!("../README.md")]

mod frame;

pub use frame::{AudioFrame, AudioFrameError, SampleRate};
mod vad;
pub use vad::{VadOptions, VadOptionsError, VadStateMachine, VadStep, VadStepKind, VadWindow};
#[cfg(feature = "onnx")]
pub mod onnx;
