//! Transports for agents-rs voice sessions.
//!
//! An [`agents_pipeline::AgentSession`] talks to the world through `agents_core::SessionIo` (an audio input, an
//! audio output honouring the playout contract, a text output). This crate provides those ends for:
//!
//! - a WebSocket server (one session per connection, PCM16 audio and JSON events; protocol in
//!   `docs/transports/websocket.md`) and a Rust client for it;
//! - telephony through Twilio Media Streams (mu-law 8 kHz, marks, clear, DTMF);
//! - the browser client page served next to the WebSocket endpoint;
//! - WAV files and the terminal (run a session from a file, write the agent's audio and a transcript).
//!
//! # WebSocket
//!
//! - [`protocol`]: the messages of protocol v1, shared by server and client.
//! - [`server`]: [`server::TransportServer`] — one session per connection, built by the application's factory
//!   from the client's hello; [`server::WsAudioInput`], [`server::WsAudioOutput`] (paced, playout contract),
//!   [`server::WsTextOutput`]; limits; live [`server::ServerStats`].
//! - [`client`]: [`client::WsClient`], a Rust client (demo, examples, tests).

pub mod client;
pub mod protocol;
pub mod server;
pub mod twilio;
pub mod web;
