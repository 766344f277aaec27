//! The OpenAI Realtime emulator (filled in by the Realtime work).
