//! [`UserTranscripts`]: the user's interim and final transcripts, one segment per user turn.

use std::fmt;
use std::sync::Arc;

use agents_core::audio_io::{TextOutput, TextOutputError};

/// The user's transcript of the current turn, as it should be displayed now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserTranscript {
    /// Stable for the whole user turn: a display replaces the previous transcript with the same id.
    pub segment_id: String,
    /// The turn's text so far: its final transcripts joined by single spaces, then the pending interim one.
    pub text: String,
    /// Whether `text` is made of final transcripts only (no interim part pending).
    pub is_final: bool,
}

/// Forwards the user's transcripts of each turn under one segment id.
///
/// - [`interim`](Self::interim) and [`final_transcript`](Self::final_transcript) return the turn's
///   [`UserTranscript`] to display (interim text replaced by the final one, earlier finals kept), for the session
///   to publish as an event or to a transport that can replace text.
/// - The [`TextOutput`], which can only append, receives the final transcripts (joined by single spaces, as
///   LiveKit joins the finals of a turn) and is flushed by [`end_turn`](Self::end_turn); interim text is not
///   written to it.
/// - [`end_turn`](Self::end_turn) closes the turn: the next transcript starts a new segment id.
///
/// Segment ids are `"{prefix}{n}"` with `n` counting turns from 1 (prefix `"user_turn_"` by default).
pub struct UserTranscripts {
    output: Option<Arc<dyn TextOutput>>,
    prefix: String,
    turn: u64,
    /// Final transcripts of the open turn, joined.
    finals: String,
    /// Whether a turn is open (something was transcribed since the last `end_turn`).
    open: bool,
}

impl fmt::Debug for UserTranscripts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTranscripts")
            .field(
                "output",
                &self.output.as_ref().map(|o| o.label().to_owned()),
            )
            .field("turn", &self.turn)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl UserTranscripts {
    /// Transcripts written to `output` (or only returned, without one).
    pub fn new(output: Option<Arc<dyn TextOutput>>) -> Self {
        Self {
            output,
            prefix: "user_turn_".to_owned(),
            turn: 0,
            finals: String::new(),
            open: false,
        }
    }

    /// Sets the prefix of segment ids.
    pub fn with_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The segment id of the open turn, or of the next one when none is open.
    pub fn segment_id(&self) -> String {
        let n = if self.open { self.turn } else { self.turn + 1 };
        format!("{}{n}", self.prefix)
    }

    fn open(&mut self) {
        if !self.open {
            self.open = true;
            self.turn += 1;
            self.finals.clear();
        }
    }

    fn joined(&self, tail: &str) -> String {
        match (self.finals.is_empty(), tail.is_empty()) {
            (_, true) => self.finals.clone(),
            (true, false) => tail.to_owned(),
            (false, false) => format!("{} {tail}", self.finals),
        }
    }

    /// An interim transcript of the current utterance: the turn's transcript to display.
    pub fn interim(&mut self, text: &str) -> UserTranscript {
        self.open();
        UserTranscript {
            segment_id: self.segment_id(),
            text: self.joined(text.trim()),
            is_final: false,
        }
    }

    /// A final transcript: appended to the turn (and written to the output); returns the turn's transcript.
    /// Blank finals add nothing.
    ///
    /// # Errors
    /// [`TextOutputError`] when the output refuses the text (the turn's transcript is still updated).
    pub async fn final_transcript(
        &mut self,
        text: &str,
    ) -> Result<UserTranscript, TextOutputError> {
        self.open();
        let text = text.trim();
        let mut written = Ok(());
        if !text.is_empty() {
            let delta = if self.finals.is_empty() {
                text.to_owned()
            } else {
                format!(" {text}")
            };
            self.finals.push_str(&delta);
            if let Some(output) = &self.output {
                written = output.capture_text(&delta).await;
            }
        }
        let transcript = UserTranscript {
            segment_id: self.segment_id(),
            text: self.finals.clone(),
            is_final: true,
        };
        written.map(|()| transcript)
    }

    /// Ends the user turn: flushes the output and returns the turn's final transcript (`None` when no turn was
    /// open). The next transcript gets a new segment id.
    pub fn end_turn(&mut self) -> Option<UserTranscript> {
        if !self.open {
            return None;
        }
        self.open = false;
        if let Some(output) = &self.output {
            output.flush();
        }
        Some(UserTranscript {
            segment_id: format!("{}{}", self.prefix, self.turn),
            text: std::mem::take(&mut self.finals),
            is_final: true,
        })
    }
}
