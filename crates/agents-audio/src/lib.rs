#![doc = include_str!("../README.md")]

mod frame;

pub use frame::{AudioFrame, AudioFrameError, SampleRate};
