#![doc = include_str!("../README.md")]

pub mod options;

pub use options::ClientOptions;
