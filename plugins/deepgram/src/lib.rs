#![doc = include_str!("../README.md")]

mod messages;
mod net;
pub mod options;
pub mod stt;
mod stt_stream;
pub mod tts;

pub use options::{ClientOptions, ConfigError};
pub use stt::{DeepgramStt, Endpointing, SttOptions};
pub use tts::{DeepgramTts, TtsOptions};

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn providers_cross_tasks() {
        send_sync::<super::DeepgramStt>();
        send_sync::<super::DeepgramTts>();
        send_sync::<super::ClientOptions>();
        send_sync::<super::SttOptions>();
        send_sync::<super::TtsOptions>();
    }
}
