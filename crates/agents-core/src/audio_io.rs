//! Audio and text I/O contracts between a session and its transport (WebSocket, telephony, console, files).
//!
//! - Input is a stream of [`AudioFrame`]s ([`AudioInput`]).
//! - Output is an [`AudioOutput`] sink: `capture_frame` is awaited (the sink applies back-pressure to keep its
//!   buffer bounded), `flush` closes a segment, `clear_buffer` stops playback at once on barge-in, and every
//!   segment ends with exactly one [`PlaybackFinished`] carrying the playback position, from which the session
//!   truncates what the chat context records. [`PlayoutTracker`] implements that bookkeeping for sinks, and
//!   [`PlayoutClock`] the real-time playout of segments (pause/resume, clear, position) for sinks that simulate
//!   or mirror a loudspeaker.
//! - Transcriptions go to a [`TextOutput`].

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::{broadcast, watch};

use agents_audio::{AudioFrame, SampleRate};

use crate::stream::EventStream;

mod playout;
pub use playout::{ClockEvent, ClockSegment, PlayoutClock, sleep_or_change};

/// A source of user audio.
pub struct AudioInput {
    inner: EventStream<AudioFrame>,
    label: String,
}

impl AudioInput {
    /// An input over `stream`.
    pub fn new(
        label: impl Into<String>,
        stream: impl Stream<Item = AudioFrame> + Send + 'static,
    ) -> Self {
        Self {
            inner: EventStream::new(stream),
            label: label.into(),
        }
    }

    /// An input fed by the returned bounded sender; it ends when the sender is dropped.
    pub fn channel(
        label: impl Into<String>,
        capacity: usize,
    ) -> (tokio::sync::mpsc::Sender<AudioFrame>, Self) {
        let (tx, inner) = EventStream::channel(capacity);
        (
            tx,
            Self {
                inner,
                label: label.into(),
            },
        )
    }

    /// The input's label.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Stream for AudioInput {
    type Item = AudioFrame;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AudioFrame>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl fmt::Debug for AudioInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioInput")
            .field("label", &self.label)
            .finish()
    }
}

/// Why an audio output refused a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioOutputError {
    /// The sink (e.g. the client connection) is gone.
    #[error("audio output closed")]
    Closed,
    /// The frame's rate differs from the sink's and the sink does not resample.
    #[error("audio output expects {expected} Hz, got {actual} Hz")]
    SampleRateMismatch {
        /// Rate the sink expects.
        expected: u32,
        /// Rate received.
        actual: u32,
    },
    /// The frame's channel count differs from the sink's.
    #[error("audio output expects {expected} channel(s), got {actual}")]
    ChannelMismatch {
        /// Channels the sink expects.
        expected: u16,
        /// Channels received.
        actual: u16,
    },
}

impl AudioOutputError {
    /// Checks that `frame` has the sink's format: `rate` (`None` accepts any) and `channels`.
    ///
    /// # Errors
    /// [`AudioOutputError::SampleRateMismatch`], then [`AudioOutputError::ChannelMismatch`].
    pub fn check_format(
        frame: &AudioFrame,
        rate: Option<SampleRate>,
        channels: u16,
    ) -> Result<(), Self> {
        if let Some(rate) = rate
            && frame.sample_rate() != rate
        {
            return Err(Self::SampleRateMismatch {
                expected: rate.hz(),
                actual: frame.sample_rate().hz(),
            });
        }
        if frame.num_channels() != channels {
            return Err(Self::ChannelMismatch {
                expected: channels,
                actual: frame.num_channels(),
            });
        }
        Ok(())
    }
}

/// What an audio output offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AudioOutputCapabilities {
    /// Playback can pause and resume (needed for false-interruption resume).
    pub pause: bool,
}

/// A segment started playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlaybackStarted {
    /// Segment number (1 for the first segment of the output).
    pub segment: u64,
}

/// A segment finished playing (played out or cleared).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlaybackFinished {
    /// Segment number.
    pub segment: u64,
    /// How much of the segment was heard.
    pub playback_position: Duration,
    /// Whether playback was cut short by `clear_buffer`.
    pub interrupted: bool,
}

impl PlaybackFinished {
    /// A finished event.
    pub fn new(segment: u64, playback_position: Duration, interrupted: bool) -> Self {
        Self {
            segment,
            playback_position,
            interrupted,
        }
    }
}

/// An event of an audio output.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlaybackEvent {
    /// A segment's first audio was played.
    Started(PlaybackStarted),
    /// A segment ended.
    Finished(PlaybackFinished),
}

/// A sink for agent audio. Object safe: held as `Arc<dyn AudioOutput>`.
#[async_trait]
pub trait AudioOutput: Send + Sync + 'static {
    /// Label for logs.
    fn label(&self) -> &str;

    /// The rate the sink wants; `None` accepts any (the session resamples to this rate otherwise).
    fn sample_rate(&self) -> Option<SampleRate>;

    /// Channels the sink wants.
    fn num_channels(&self) -> u16 {
        1
    }

    /// What the sink offers.
    fn capabilities(&self) -> AudioOutputCapabilities {
        AudioOutputCapabilities::default()
    }

    /// Queues a frame, opening a segment if none is open. Waits while the sink's buffer is full.
    async fn capture_frame(&self, frame: AudioFrame) -> Result<(), AudioOutputError>;

    /// Closes the current segment: it finishes once everything captured has played.
    fn flush(&self);

    /// Drops everything not yet played; the open segment finishes as interrupted.
    fn clear_buffer(&self);

    /// Pauses playback (only with `capabilities().pause`).
    fn pause(&self) {}

    /// Resumes paused playback.
    fn resume(&self) {}

    /// The playout tracker holding this sink's segment bookkeeping and events.
    fn playout(&self) -> &PlayoutTracker;

    /// Waits until every captured segment finished; returns the last finished event, or `None` when nothing was
    /// ever captured.
    async fn wait_for_playout(&self) -> Option<PlaybackFinished> {
        self.playout().wait_for_playout().await
    }
}

#[derive(Debug, Default, Clone)]
struct TrackerState {
    /// Segments opened by `capture_frame`.
    opened: u64,
    /// Whether the last opened segment is still accepting frames.
    open: bool,
    /// Segments finished.
    finished: u64,
    last: Option<PlaybackFinished>,
}

/// Segment bookkeeping for [`AudioOutput`] implementations: counts segments opened by captures, records their
/// completion and broadcasts [`PlaybackEvent`]s. Sinks call [`PlayoutTracker::on_capture`] for each frame,
/// [`PlayoutTracker::on_flush`], and the `on_playback_*` methods as their playback progresses.
pub struct PlayoutTracker {
    state: Mutex<TrackerState>,
    changed: watch::Sender<u64>,
    events: broadcast::Sender<PlaybackEvent>,
}

impl Default for PlayoutTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl PlayoutTracker {
    /// A tracker with no segment.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(TrackerState::default()),
            changed: watch::channel(0).0,
            events: broadcast::channel(64).0,
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut TrackerState) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain counters; keep going.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Records a captured frame; returns the segment number it belongs to.
    pub fn on_capture(&self) -> u64 {
        self.with_state(|s| {
            if !s.open {
                s.opened += 1;
                s.open = true;
            }
            s.opened
        })
    }

    /// Closes the open segment, if any; returns its number.
    pub fn on_flush(&self) -> Option<u64> {
        self.with_state(|s| {
            if s.open {
                s.open = false;
                Some(s.opened)
            } else {
                None
            }
        })
    }

    /// The segment being captured, if one is open.
    pub fn open_segment(&self) -> Option<u64> {
        self.with_state(|s| s.open.then_some(s.opened))
    }

    /// Reports that `segment` started playing.
    pub fn on_playback_started(&self, segment: u64) {
        let _ = self
            .events
            .send(PlaybackEvent::Started(PlaybackStarted { segment }));
    }

    /// Reports that `segment` finished. Exactly one call per segment: repeated or unknown segments are ignored.
    pub fn on_playback_finished(
        &self,
        segment: u64,
        playback_position: Duration,
        interrupted: bool,
    ) {
        let event = PlaybackFinished::new(segment, playback_position, interrupted);
        let accepted = self.with_state(|s| {
            if segment == 0 || segment > s.opened || segment <= s.finished {
                return false;
            }
            s.finished = segment;
            if segment == s.opened {
                s.open = false;
            }
            s.last = Some(event.clone());
            true
        });
        if accepted {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
            let _ = self.events.send(PlaybackEvent::Finished(event));
        }
    }

    /// Subscribes to playback events from now on (bounded; a receiver that lags loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent> {
        self.events.subscribe()
    }

    /// Waits until every opened segment finished; returns the last finished event.
    pub async fn wait_for_playout(&self) -> Option<PlaybackFinished> {
        let mut rx = self.changed.subscribe();
        loop {
            let (done, last) = self.with_state(|s| (s.finished >= s.opened, s.last.clone()));
            if done {
                return last;
            }
            if rx.changed().await.is_err() {
                return last;
            }
        }
    }
}

impl fmt::Debug for PlayoutTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.with_state(|s| s.clone());
        f.debug_struct("PlayoutTracker")
            .field("opened", &s.opened)
            .field("finished", &s.finished)
            .field("open", &s.open)
            .finish()
    }
}

/// Why a text output refused text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextOutputError {
    /// The sink is gone.
    #[error("text output closed")]
    Closed,
}

/// A sink for transcriptions (agent text as it is spoken). Object safe: held as `Arc<dyn TextOutput>`.
#[async_trait]
pub trait TextOutput: Send + Sync + 'static {
    /// Label for logs.
    fn label(&self) -> &str;
    /// Appends text to the current segment.
    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError>;
    /// Ends the current segment.
    fn flush(&self);
}

/// The session's I/O: what the transport provides.
#[derive(Default)]
#[non_exhaustive]
pub struct SessionIo {
    /// User audio.
    pub audio_input: Option<AudioInput>,
    /// Agent audio.
    pub audio_output: Option<Arc<dyn AudioOutput>>,
    /// Agent transcriptions.
    pub text_output: Option<Arc<dyn TextOutput>>,
}

impl SessionIo {
    /// No I/O (a text-only session).
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the audio input.
    pub fn with_audio_input(mut self, input: AudioInput) -> Self {
        self.audio_input = Some(input);
        self
    }
    /// Sets the audio output.
    pub fn with_audio_output(mut self, output: Arc<dyn AudioOutput>) -> Self {
        self.audio_output = Some(output);
        self
    }
    /// Sets the text output.
    pub fn with_text_output(mut self, output: Arc<dyn TextOutput>) -> Self {
        self.text_output = Some(output);
        self
    }
}

impl fmt::Debug for SessionIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionIo")
            .field("audio_input", &self.audio_input)
            .field(
                "audio_output",
                &self.audio_output.as_ref().map(|o| o.label().to_owned()),
            )
            .field(
                "text_output",
                &self.text_output.as_ref().map(|o| o.label().to_owned()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_format_refuses_another_rate_then_another_channel_count() {
        let frame = AudioFrame::new(vec![0; 480], SampleRate::HZ_24000, 1).unwrap();
        assert_eq!(AudioOutputError::check_format(&frame, None, 1), Ok(()));
        assert_eq!(
            AudioOutputError::check_format(&frame, Some(SampleRate::HZ_24000), 1),
            Ok(())
        );
        assert_eq!(
            AudioOutputError::check_format(&frame, Some(SampleRate::HZ_16000), 2),
            Err(AudioOutputError::SampleRateMismatch {
                expected: 16000,
                actual: 24000
            })
        );
        assert_eq!(
            AudioOutputError::check_format(&frame, None, 2),
            Err(AudioOutputError::ChannelMismatch {
                expected: 2,
                actual: 1
            })
        );
    }

    #[tokio::test]
    async fn tracker_counts_segments_and_reports_last_finish() {
        let t = PlayoutTracker::new();
        assert_eq!(t.wait_for_playout().await, None);
        let mut events = t.subscribe();
        assert_eq!(t.on_capture(), 1);
        assert_eq!(t.on_capture(), 1);
        assert_eq!(t.on_flush(), Some(1));
        assert_eq!(t.on_flush(), None);
        assert_eq!(t.on_capture(), 2);
        t.on_playback_started(1);
        t.on_playback_finished(1, Duration::from_millis(500), false);
        t.on_playback_finished(1, Duration::from_millis(900), false); // duplicate ignored
        let waiter = async { t.wait_for_playout().await };
        let (last, ()) = tokio::join!(waiter, async {
            tokio::task::yield_now().await;
            t.on_playback_finished(2, Duration::from_millis(250), true);
        });
        assert_eq!(
            last,
            Some(PlaybackFinished::new(2, Duration::from_millis(250), true))
        );
        assert_eq!(
            events.recv().await.unwrap(),
            PlaybackEvent::Started(PlaybackStarted { segment: 1 })
        );
        assert!(
            matches!(events.recv().await.unwrap(), PlaybackEvent::Finished(f) if f.segment == 1)
        );
        assert!(
            matches!(events.recv().await.unwrap(), PlaybackEvent::Finished(f) if f.interrupted)
        );
        assert_eq!(t.open_segment(), None);
    }
}
