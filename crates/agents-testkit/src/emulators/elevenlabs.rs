//! The Elevenlabs emulator (see the provider issue); filled in by the plugin work.
