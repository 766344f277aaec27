//! Transcript synchronization: agent text released in step with its audio, and user transcripts per turn.
//!
//! - [`TranscriptSynchronizer`] sits between the session and its outputs. It implements both [`AudioOutput`] and
//!   [`TextOutput`]: the session writes a speech's audio frames and text deltas to it as they are produced, and it
//!   forwards the audio at once while holding the text back, releasing it word by word as playback reaches each
//!   word. When playback is interrupted, [`TranscriptSynchronizer::played_text`] is exactly the text released up
//!   to the playback position: what the session commits to the chat context.
//! - [`UserTranscripts`] forwards the user's interim and final transcripts, one segment id per user turn.
//!
//! An [`AgentSession`](crate::AgentSession) started with both an audio and a text output puts one synchronizer over
//! them by default (`SessionOptions::sync_transcription`, default true) and commits its played text for an
//! interrupted speech; use the synchronizer directly only when driving outputs without a session.
//!
//! The pacing follows LiveKit Agents' `TranscriptSynchronizer` (`livekit/agents/voice/transcription/
//! synchronizer.py`): text starts when the first audio of the segment is played, words are paced by their
//! syllables at [`STANDARD_SPEECH_RATE`](agents_core::tokenize::STANDARD_SPEECH_RATE) (3.83 syllables/s) × speed
//! and re-estimated from the audio actually pushed, TTS word timings are used when the TTS gives them, and
//! `sync_transcription = false` forwards text as fast as it arrives (LiveKit issue #2950). `docs/session.md`
//! ("Transcript synchronization") describes the rules and their limits.
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use agents_core::audio_io::{AudioOutput, TextOutput};
//! use agents_core::AudioFrame;
//! use agents_pipeline::transcription::{TranscriptSynchronizer, TranscriptionOptions};
//!
//! async fn speak(audio: Arc<dyn AudioOutput>, text: Arc<dyn TextOutput>, reply: &str, frames: Vec<AudioFrame>) {
//!     let sync = Arc::new(TranscriptSynchronizer::new(audio, text, TranscriptionOptions::new()));
//!     // The session writes the reply's text and audio as they are produced...
//!     let _ = sync.capture_text(reply).await;
//!     sync.flush_text();
//!     for frame in frames {
//!         if sync.capture_frame(frame).await.is_err() {
//!             break;
//!         }
//!     }
//!     sync.flush_audio();
//!     // ...and after playout (or `clear_buffer` on barge-in) commits what was heard.
//!     let finished = sync.wait_for_playout().await;
//!     let heard = sync.played_text();
//!     println!("{heard} (interrupted: {:?})", finished.map(|f| f.interrupted));
//! }
//! ```

mod sync;
mod user;

#[cfg(doc)]
use agents_core::audio_io::{AudioOutput, TextOutput};

pub use sync::{TranscriptSynchronizer, TranscriptionOptions};
pub use user::{UserTranscript, UserTranscripts};
