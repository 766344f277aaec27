#![doc = include_str!("../README.md")]

mod buffer;
mod frame;
mod mixer;
mod resample;
mod vad;
mod wav;

#[cfg(feature = "onnx")]
pub mod onnx;

pub use buffer::{AudioByteStream, FrameBuffer};
pub use frame::{AudioFrame, AudioFrameError, SampleRate, f32_to_i16, i16_to_f32};
pub use mixer::{Mixer, MixerError, MixerSender, MixerSource, SourceHandle, SourceId};
pub use resample::{ResampleError, ResampleQuality, Resampler};
pub use vad::{VadOptions, VadOptionsError, VadStateMachine, VadStep, VadStepKind, VadWindow};
pub use wav::{WavError, read_wav, read_wav_from, write_wav, write_wav_to};
