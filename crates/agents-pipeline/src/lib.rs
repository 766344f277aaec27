#![doc = include_str!("../README.md")]

pub mod interruption;

pub use interruption::{
    BackchannelFilter, HoldReason, InterruptionDecision, InterruptionOptions, InterruptionPolicy,
    TurnVerdict,
};
