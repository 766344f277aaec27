#![doc = include_str!("../README.md")]

mod connection;
pub mod options;
mod protocol;
mod tts;

pub use options::{
    ConfigError, DEFAULT_BASE_URL, DEFAULT_MODEL, DEFAULT_VOICE_ID, OutputFormat,
    TextNormalization, TtsOptions, VoiceSettings,
};
pub use tts::{ElevenLabsTts, Voice};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<super::ElevenLabsTts>();
        assert_send_sync::<super::TtsOptions>();
    }
}
