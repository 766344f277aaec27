//! [`FakeAudioOutput`] and [`FakeTextOutput`]: sinks that play in real time on the tokio clock and record what the
//! user heard.
//!
//! # Playback model
//!
//! Captured frames queue up in segments (a segment opens with the first capture after a flush). A background task
//! plays the queue at 1× speed on the tokio clock (so a paused test clock auto-advances through playback):
//!
//! - a segment starts playing when it reaches the head of the queue (`PlaybackEvent::Started`); segments play back
//!   to back;
//! - when the head segment runs out of audio before it was flushed, playback waits (underrun) and resumes as soon as
//!   more audio is captured;
//! - a flushed segment finishes when played out: `on_playback_finished(segment, its duration, false)`;
//! - `clear_buffer` stops at once: the playing segment finishes with the position reached and `interrupted = true`,
//!   queued segments finish with position 0 and `interrupted = true`;
//! - with the pause capability ([`FakeAudioOutput::with_pause`]) `pause` freezes the position until `resume`.
//!
//! `capture_frame` waits while more than `max_buffer` (default 200 ms) of audio is queued ahead of the playback
//! position. Every finished segment is recorded as a [`PlayedSegment`] holding exactly the audio heard.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::audio_io::{
    AudioOutput, AudioOutputCapabilities, AudioOutputError, ClockEvent, ClockSegment, PlayoutClock,
    PlayoutTracker, TextOutput, TextOutputError, sleep_or_change,
};
use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::signal::samples_for;
use crate::stamps::{Stamp, Stamps};
use crate::util::lock;

/// What the user heard of one segment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlayedSegment {
    /// Segment number (1 for the first).
    pub segment: u64,
    /// The audio heard: the captured frames cut at the playback position.
    pub frames: Vec<AudioFrame>,
    /// How much was heard.
    pub position: Duration,
    /// Whether `clear_buffer` cut it short.
    pub interrupted: bool,
    /// Everything captured for the segment.
    pub captured: Duration,
}

/// A segment's payload: the frames captured for it.
type Segment = ClockSegment<Vec<AudioFrame>>;

struct State {
    clock: PlayoutClock<Vec<AudioFrame>>,
    played: Vec<PlayedSegment>,
    captured: Vec<AudioFrame>,
    flushes: usize,
    clears: usize,
    pauses: usize,
    resumes: usize,
}

struct Shared {
    state: Mutex<State>,
    tracker: PlayoutTracker,
    changed: watch::Sender<u64>,
}

/// Cuts `frames` to their first `position` of audio.
fn heard(frames: &[AudioFrame], position: Duration) -> Vec<AudioFrame> {
    let mut out = Vec::new();
    let mut left = position;
    for f in frames {
        if left.is_zero() {
            break;
        }
        let d = f.duration();
        if d <= left {
            out.push(f.clone());
            left -= d;
        } else {
            let n = samples_for(left, f.sample_rate()) * usize::from(f.num_channels());
            if let Ok(cut) =
                AudioFrame::new(f.data()[..n].to_vec(), f.sample_rate(), f.num_channels())
                && !cut.is_empty()
            {
                out.push(cut);
            }
            break;
        }
    }
    out
}

impl Shared {
    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Brings playback up to `now`: advances the head segment, finishes played-out flushed segments.
    fn advance(&self, s: &mut State, now: Instant) {
        let played = &mut s.played;
        s.clock.advance(now, |e| match e {
            ClockEvent::Started(seg) => self.tracker.on_playback_started(seg.id),
            ClockEvent::Finished(seg) => self.finish(played, seg, false),
            _ => {}
        });
    }

    fn finish(&self, played: &mut Vec<PlayedSegment>, seg: Segment, interrupted: bool) {
        played.push(PlayedSegment {
            segment: seg.id,
            frames: heard(&seg.data, seg.played),
            position: seg.played,
            interrupted,
            captured: seg.queued,
        });
        self.tracker
            .on_playback_finished(seg.id, seg.played, interrupted);
    }
}

/// Plays the queue: wakes at every deadline and on every change.
async fn player(weak: Weak<Shared>, mut changed: watch::Receiver<u64>) {
    loop {
        let deadline = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let mut s = lock(&shared.state);
            shared.advance(&mut s, Instant::now());
            s.clock.deadline()
        };
        if !sleep_or_change(deadline, &mut changed).await {
            return;
        }
    }
}

/// An [`AudioOutput`] that plays on the tokio clock and records what was heard; see the
/// [module documentation](self). Must be created inside a tokio runtime (it spawns its player task).
pub struct FakeAudioOutput {
    shared: Arc<Shared>,
    label: String,
    sample_rate: Option<SampleRate>,
    num_channels: u16,
    max_buffer: Duration,
    pause: bool,
    stamps: Option<Stamps>,
    keep_audio: bool,
}

impl fmt::Debug for FakeAudioOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAudioOutput")
            .field("label", &self.label)
            .field("sample_rate", &self.sample_rate)
            .field("max_buffer", &self.max_buffer)
            .field("pause", &self.pause)
            .finish_non_exhaustive()
    }
}

impl Default for FakeAudioOutput {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeAudioOutput {
    /// An output accepting any rate, mono, 200 ms of buffer, no pause capability.
    pub fn new() -> Self {
        let (changed, rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                clock: PlayoutClock::new(Instant::now()),
                played: Vec::new(),
                captured: Vec::new(),
                flushes: 0,
                clears: 0,
                pauses: 0,
                resumes: 0,
            }),
            tracker: PlayoutTracker::new(),
            changed,
        });
        tokio::spawn(player(Arc::downgrade(&shared), rx));
        Self {
            shared,
            label: "fake.AudioOutput".to_owned(),
            sample_rate: None,
            num_channels: 1,
            max_buffer: Duration::from_millis(200),
            pause: false,
            stamps: None,
            keep_audio: true,
        }
    }

    /// Records [`Stamp::OutputFirstFrame`] when `capture_frame` accepts the first frame of a playout segment (for
    /// latency benchmarks; see [`crate::stamps`]).
    pub fn with_stamps(mut self, stamps: Stamps) -> Self {
        self.stamps = Some(stamps);
        self
    }

    /// Stops keeping the captured audio (for long benchmarks): playback timing, playout events and the segment
    /// records stay the same, but [`FakeAudioOutput::captured_frames`] and the `frames` of
    /// [`FakeAudioOutput::played_segments`] are empty.
    pub fn without_audio_log(mut self) -> Self {
        self.keep_audio = false;
        self
    }

    /// Requires frames of `rate` (`None` accepts any).
    pub fn with_sample_rate(mut self, rate: Option<SampleRate>) -> Self {
        self.sample_rate = rate;
        self
    }

    /// Requires frames of `channels` channels.
    pub fn with_num_channels(mut self, channels: u16) -> Self {
        self.num_channels = channels;
        self
    }

    /// Sets how much audio may be queued ahead of playback before `capture_frame` waits.
    pub fn with_max_buffer(mut self, d: Duration) -> Self {
        self.max_buffer = d;
        self
    }

    /// Enables the pause capability.
    pub fn with_pause(mut self, enabled: bool) -> Self {
        self.pause = enabled;
        self
    }

    /// Sets the label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    fn with_state<R>(&self, f: impl FnOnce(&Shared, &mut State) -> R) -> R {
        let mut s = lock(&self.shared.state);
        self.shared.advance(&mut s, Instant::now());
        f(&self.shared, &mut s)
    }

    /// The playback position in the playing segment (zero when nothing plays).
    pub fn position(&self) -> Duration {
        self.with_state(|_, s| s.clock.position())
    }

    /// Audio queued ahead of the playback position.
    pub fn buffered(&self) -> Duration {
        self.with_state(|_, s| s.clock.ahead())
    }

    /// Whether playback is paused.
    pub fn is_paused(&self) -> bool {
        lock(&self.shared.state).clock.is_paused()
    }

    /// Every finished segment, in order, with what was heard.
    pub fn played_segments(&self) -> Vec<PlayedSegment> {
        self.with_state(|_, s| s.played.clone())
    }

    /// All audio heard, over finished segments and the one playing now.
    pub fn heard_duration(&self) -> Duration {
        self.with_state(|_, s| {
            s.played.iter().map(|p| p.position).sum::<Duration>() + s.clock.position()
        })
    }

    /// Every frame captured, in order.
    pub fn captured_frames(&self) -> Vec<AudioFrame> {
        lock(&self.shared.state).captured.clone()
    }

    /// Number of `flush`, `clear_buffer`, `pause` and `resume` calls.
    pub fn call_counts(&self) -> (usize, usize, usize, usize) {
        let s = lock(&self.shared.state);
        (s.flushes, s.clears, s.pauses, s.resumes)
    }
}

impl Drop for FakeAudioOutput {
    fn drop(&mut self) {
        // Wake the player so it sees the output is gone.
        self.shared.notify();
    }
}

#[async_trait]
impl AudioOutput for FakeAudioOutput {
    fn label(&self) -> &str {
        &self.label
    }

    fn sample_rate(&self) -> Option<SampleRate> {
        self.sample_rate
    }

    fn num_channels(&self) -> u16 {
        self.num_channels
    }

    fn capabilities(&self) -> AudioOutputCapabilities {
        let mut c = AudioOutputCapabilities::default();
        c.pause = self.pause;
        c
    }

    async fn capture_frame(&self, frame: AudioFrame) -> Result<(), AudioOutputError> {
        AudioOutputError::check_format(&frame, self.sample_rate, self.num_channels)?;
        let mut changed = self.shared.changed.subscribe();
        loop {
            let wait = self.with_state(|shared, s| {
                let ahead = s.clock.ahead();
                if ahead > self.max_buffer {
                    return Some((!s.clock.is_paused()).then(|| ahead - self.max_buffer));
                }
                let segment = shared.tracker.on_capture();
                let d = frame.duration();
                if self.keep_audio {
                    s.captured.push(frame.clone());
                }
                let (frames, opened) = s.clock.capture(segment, d, Vec::new);
                if self.keep_audio {
                    frames.push(frame.clone());
                }
                if opened && let Some(stamps) = &self.stamps {
                    stamps.record(Stamp::OutputFirstFrame);
                }
                // The new audio may start a segment or end an underrun now.
                shared.advance(s, Instant::now());
                None
            });
            match wait {
                None => {
                    self.shared.notify();
                    return Ok(());
                }
                Some(d) => {
                    let _ = sleep_or_change(d.map(|d| Instant::now() + d), &mut changed).await;
                }
            }
        }
    }

    fn flush(&self) {
        self.with_state(|shared, s| {
            s.flushes += 1;
            if let Some(id) = shared.tracker.on_flush() {
                s.clock.flush(id);
                shared.advance(s, Instant::now());
            }
        });
        self.shared.notify();
    }

    fn clear_buffer(&self) {
        self.with_state(|shared, s| {
            s.clears += 1;
            let _ = shared.tracker.on_flush();
            for seg in s.clock.clear() {
                shared.finish(&mut s.played, seg, true);
            }
        });
        self.shared.notify();
    }

    fn pause(&self) {
        if !self.pause {
            return;
        }
        self.with_state(|_, s| {
            s.pauses += 1;
            s.clock.pause();
        });
        self.shared.notify();
    }

    fn resume(&self) {
        if !self.pause {
            return;
        }
        {
            let mut s = lock(&self.shared.state);
            s.resumes += 1;
            s.clock.resume(Instant::now());
        }
        self.shared.notify();
    }

    fn playout(&self) -> &PlayoutTracker {
        &self.shared.tracker
    }
}

#[derive(Default)]
struct TextState {
    segments: Vec<String>,
    current: Option<String>,
}

/// A [`TextOutput`] recording text per segment.
#[derive(Default)]
pub struct FakeTextOutput {
    state: Mutex<TextState>,
}

impl fmt::Debug for FakeTextOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTextOutput")
            .field("segments", &self.segments())
            .finish()
    }
}

impl FakeTextOutput {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flushed segments, in order.
    pub fn segments(&self) -> Vec<String> {
        lock(&self.state).segments.clone()
    }

    /// The segment being captured (not yet flushed).
    pub fn current(&self) -> Option<String> {
        lock(&self.state).current.clone()
    }

    /// Everything captured, flushed segments and the current one, concatenated.
    pub fn all_text(&self) -> String {
        let s = lock(&self.state);
        let mut out: String = s.segments.concat();
        if let Some(c) = &s.current {
            out.push_str(c);
        }
        out
    }
}

#[async_trait]
impl TextOutput for FakeTextOutput {
    fn label(&self) -> &str {
        "fake.TextOutput"
    }

    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        lock(&self.state)
            .current
            .get_or_insert_with(String::new)
            .push_str(text);
        Ok(())
    }

    fn flush(&self) {
        let mut s = lock(&self.state);
        if let Some(c) = s.current.take() {
            s.segments.push(c);
        }
    }
}
