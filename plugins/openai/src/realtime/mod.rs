//! The OpenAI Realtime model over WebSocket (filled in by the Realtime work).
