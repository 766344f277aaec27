//! Opt-in timestamps from the fakes, for latency benchmarks.
//!
//! A [`Stamps`] recorder is handed to the fakes ([`FakeLlm::with_stamps`](crate::FakeLlm::with_stamps),
//! [`FakeTts::with_stamps`](crate::FakeTts::with_stamps),
//! [`FakeAudioOutput::with_stamps`](crate::FakeAudioOutput::with_stamps)); each then records the tokio
//! [`Instant`] of the pipeline steps it sees ([`Stamp`]). Without a recorder the fakes record nothing and behave
//! exactly as before. Clones share one log; [`Stamps::take`] drains it (a long benchmark drains after every turn,
//! so the log stays small).
//!
//! ```
//! use agents_testkit::stamps::{Stamp, Stamps};
//! let stamps = Stamps::new();
//! stamps.record(Stamp::LlmRequest);
//! assert!(stamps.first(Stamp::LlmRequest).is_some());
//! assert_eq!(stamps.take().len(), 1);
//! assert!(stamps.is_empty());
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::util::lock;

/// One pipeline step seen by a fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stamp {
    /// [`FakeLlm`](crate::FakeLlm): `Llm::chat` was called (the LLM request).
    LlmRequest,
    /// [`FakeLlm`](crate::FakeLlm): the first content chunk (text or tool call) of a response is handed to the
    /// stream (after the configured time to first token).
    LlmFirstChunk,
    /// [`FakeTts`](crate::FakeTts): the first text pushed into a TTS stream (the first TTS input).
    TtsFirstInput,
    /// [`FakeTts`](crate::FakeTts): the first audio chunk of a segment is handed to the stream (after the configured
    /// time to first byte), for streams and `synthesize` alike.
    TtsFirstAudio,
    /// [`FakeAudioOutput`](crate::FakeAudioOutput): `capture_frame` received the first frame of a playout segment.
    OutputFirstFrame,
}

/// A shared log of [`Stamp`]s with their times; see the [module documentation](self).
#[derive(Clone, Default)]
pub struct Stamps {
    log: Arc<Mutex<Vec<(Stamp, Instant)>>>,
}

impl fmt::Debug for Stamps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stamps")
            .field("recorded", &lock(&self.log).len())
            .finish()
    }
}

impl Stamps {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `stamp` now.
    pub fn record(&self, stamp: Stamp) {
        self.record_at(stamp, Instant::now());
    }

    /// Records `stamp` at `at`.
    pub fn record_at(&self, stamp: Stamp, at: Instant) {
        lock(&self.log).push((stamp, at));
    }

    /// Everything recorded since the last [`Stamps::take`], in recording order, and clears the log.
    pub fn take(&self) -> Vec<(Stamp, Instant)> {
        std::mem::take(&mut *lock(&self.log))
    }

    /// Everything recorded, in recording order (the log is kept).
    pub fn all(&self) -> Vec<(Stamp, Instant)> {
        lock(&self.log).clone()
    }

    /// The first time `stamp` was recorded in the log.
    pub fn first(&self, stamp: Stamp) -> Option<Instant> {
        first_of(&lock(&self.log), stamp)
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        lock(&self.log).is_empty()
    }
}

/// The first time `stamp` occurs in `log` (as returned by [`Stamps::take`]).
pub fn first_of(log: &[(Stamp, Instant)], stamp: Stamp) -> Option<Instant> {
    log.iter().find(|(s, _)| *s == stamp).map(|(_, t)| *t)
}
