//! WAV-file and terminal I/O for a session: run an [`agents_pipeline::AgentSession`] from a WAV file, write the
//! agent's audio to a WAV file and a transcript, and show live state in the terminal.
//!
//! - [`WavInput`]: an `AudioInput` reading a WAV file (any rate and channel count, converted to the session's
//!   format, cut in 20 ms frames), paced in real time or as fast as possible ([`Pacing`]), with optional trailing
//!   silence and looping.
//! - [`WavOutput`]: an `AudioOutput` writing what the agent said to a WAV file at a chosen rate; it honours the
//!   playout contract (segments, `flush` → finished with the position, `clear_buffer` → interrupted at the
//!   position reached) and inserts silence between speeches so the file lines up with the input.
//! - [`TranscriptWriter`]: a `TextOutput` and event subscriber writing the conversation as plain text and JSON
//!   Lines (user and agent lines with timestamps, tool calls, interruptions, per-turn latency).
//! - [`ConsoleView`]: live state in the terminal (states, transcripts, tools, metrics, a progress bar), plain lines
//!   when stdout is not a terminal.
//! - [`run_file_session`]: all of the above around one session.
//!
//! The guide is `docs/transports/console.md`.

mod console;
mod error;
mod input;
mod output;
mod run;
mod text;
mod transcript;

pub use console::ConsoleView;
pub use error::FileIoError;
pub use input::{InputProgress, Pacing, WavInput, WavInputOptions};
pub use output::{OutputSegment, WavOutput, WavOutputOptions, WavOutputSummary};
pub use run::{FileSessionOptions, FileSessionReport, run_file_session};
pub use text::TextFanout;
pub use transcript::{TranscriptEntry, TranscriptEvent, TranscriptOptions, TranscriptWriter};
