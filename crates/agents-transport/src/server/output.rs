//! The session's outputs on a WebSocket connection: [`WsAudioOutput`] (paced PCM16 frames) and [`WsTextOutput`]
//! (agent transcripts).
//!
//! # Pacing and playback position
//!
//! Captured audio is re-chunked into 20 ms frames and queued per segment (a segment opens with the first capture
//! after a flush). A player task sends the head segment's frames to the client no more than `lead` (200 ms by
//! default) ahead of the wall clock, so the client never buffers more than that and a `clear` loses little. The
//! playback position of the head segment is estimated from pacing: it advances in real time over the audio
//! already sent (the client plays what it received), stops at what was sent (an underrun), and is refined by the
//! client's `playback` messages (`position_ms` replaces the estimate; `finished` ends a flushed segment at once).
//!
//! - A flushed segment whose audio was all sent and played finishes with its position (`interrupted = false`).
//! - `clear_buffer` drops everything not yet sent, finishes the head segment at its position and the queued ones at
//!   zero (`interrupted = true`), discards frames already queued to the socket writer, and sends `clear`.
//! - `pause` stops sending; the client still plays what it already received (at most `lead`), so the position
//!   stops advancing when that runs out. `resume` goes on sending.
//! - `capture_frame` waits while more than `max_buffer` of audio is queued ahead of the playback position.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use agents_audio::{AudioByteStream, AudioFrame, SampleRate};
use agents_core::SessionHandle;
use agents_core::audio_io::{
    AudioOutput, AudioOutputCapabilities, AudioOutputError, PlayoutTracker, TextOutput,
    TextOutputError,
};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::writer::{AudioOut, Outgoing};
use crate::protocol::{AudioFormat, FRAME_MS, ServerMessage};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn speech_id_of(session: &SessionHandle) -> Option<String> {
    session.current_speech().map(|s| s.id().to_owned())
}

struct Segment {
    id: u64,
    speech_id: Option<String>,
    chunker: AudioByteStream,
    /// Frames not yet sent, with their duration.
    pending: VecDeque<(Bytes, Duration)>,
    pending_duration: Duration,
    sent: Duration,
    played: Duration,
    flushed: bool,
    started: bool,
}

struct State {
    segments: VecDeque<Segment>,
    /// When `played` of the head segment was last brought up to date.
    anchor: Instant,
    paused: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    tracker: PlayoutTracker,
    changed: watch::Sender<u64>,
    audio: mpsc::Sender<AudioOut>,
    control: mpsc::Sender<Outgoing>,
    /// Bumped by `clear_buffer`: the writer drops audio of older epochs.
    epoch: Arc<AtomicU64>,
    lead: Duration,
    max_buffer: Duration,
}

impl Shared {
    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Brings the head segment's position up to `now` and finishes played-out segments.
    fn advance(&self, s: &mut State, now: Instant) {
        loop {
            let Some(seg) = s.segments.front_mut() else {
                s.anchor = now;
                return;
            };
            let elapsed = now.saturating_duration_since(s.anchor);
            let available = seg.sent.saturating_sub(seg.played);
            if elapsed < available {
                seg.played += elapsed;
                s.anchor = now;
                return;
            }
            seg.played = seg.sent;
            s.anchor += available;
            if !(seg.flushed && seg.pending.is_empty()) {
                // Underrun (or paused): nothing more plays until more audio is sent.
                s.anchor = now;
                return;
            }
            if let Some(seg) = s.segments.pop_front() {
                self.finish(seg, false);
            }
        }
    }

    fn finish(&self, seg: Segment, interrupted: bool) {
        if !seg.started && seg.sent.is_zero() && !interrupted {
            // An empty segment (flush right after a capture of nothing) still finishes once.
            self.tracker.on_playback_started(seg.id);
        }
        self.tracker
            .on_playback_finished(seg.id, seg.played, interrupted);
        self.notify();
    }

    /// Sends the head segment's frames up to `lead` ahead of its position. Returns whether the socket queue was
    /// full (retry soon).
    fn send_ahead(&self, s: &mut State) -> bool {
        if s.paused {
            return false;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(seg) = s.segments.front_mut() else {
            return false;
        };
        while seg.sent.saturating_sub(seg.played) < self.lead {
            let Some((bytes, d)) = seg.pending.pop_front() else {
                break;
            };
            match self.audio.try_send(AudioOut {
                epoch,
                data: bytes.clone(),
            }) {
                Ok(()) => {
                    if !seg.started {
                        seg.started = true;
                        self.tracker.on_playback_started(seg.id);
                    }
                    seg.sent += d;
                    seg.pending_duration = seg.pending_duration.saturating_sub(d);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    seg.pending.push_front((bytes, d));
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    seg.pending.push_front((bytes, d));
                    s.closed = true;
                    return false;
                }
            }
        }
        false
    }

    /// When the player must wake next.
    fn deadline(&self, s: &State, retry: bool) -> Option<Instant> {
        if retry {
            return Some(Instant::now() + Duration::from_millis(5));
        }
        let seg = s.segments.front()?;
        let ahead = seg.sent.saturating_sub(seg.played);
        if ahead.is_zero() {
            return None;
        }
        if !s.paused && !seg.pending.is_empty() && ahead >= self.lead {
            // Wake when the lead shrinks below the limit (one frame later).
            return Some(s.anchor + ahead.saturating_sub(self.lead) + Duration::from_millis(1));
        }
        Some(s.anchor + ahead)
    }

    /// Audio queued ahead of the playback position.
    fn queued_ahead(s: &State) -> Duration {
        s.segments
            .iter()
            .map(|g| g.pending_duration + g.sent.saturating_sub(g.played))
            .sum()
    }
}

/// Sends frames in real time; ends when the output is dropped.
async fn player(weak: Weak<Shared>, mut changed: watch::Receiver<u64>) {
    loop {
        let deadline = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let mut s = lock(&shared.state);
            let now = Instant::now();
            shared.advance(&mut s, now);
            let retry = shared.send_ahead(&mut s);
            if s.closed {
                drop(s);
                shared.notify();
                return;
            }
            shared.deadline(&s, retry)
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            r = changed.changed() => if r.is_err() { return },
        }
    }
}

/// The agent's audio towards a WebSocket client; see the [module documentation](self).
pub struct WsAudioOutput {
    shared: Arc<Shared>,
    format: AudioFormat,
    rate: SampleRate,
    session: SessionHandle,
    pause_supported: AtomicBool,
}

impl fmt::Debug for WsAudioOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsAudioOutput")
            .field("format", &self.format)
            .field("tracker", &self.shared.tracker)
            .finish_non_exhaustive()
    }
}

impl WsAudioOutput {
    /// An output at `format`; returns it and its player task (the caller spawns and owns it).
    pub(crate) fn new(
        format: AudioFormat,
        audio: mpsc::Sender<AudioOut>,
        control: mpsc::Sender<Outgoing>,
        epoch: Arc<AtomicU64>,
        session: SessionHandle,
        lead: Duration,
        max_buffer: Duration,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), agents_audio::AudioFrameError>
    {
        let rate = SampleRate::new(format.sample_rate)?;
        let (changed, rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                segments: VecDeque::new(),
                anchor: Instant::now(),
                paused: false,
                closed: false,
            }),
            tracker: PlayoutTracker::new(),
            changed,
            audio,
            control,
            epoch,
            lead,
            max_buffer: max_buffer.max(lead),
        });
        let task = player(Arc::downgrade(&shared), rx);
        Ok((
            Self {
                shared,
                format,
                rate,
                session,
                pause_supported: AtomicBool::new(true),
            },
            task,
        ))
    }

    fn new_chunker(&self) -> Result<AudioByteStream, AudioOutputError> {
        AudioByteStream::with_duration(
            self.rate,
            self.format.channels,
            Duration::from_millis(u64::from(FRAME_MS)),
        )
        .map_err(|_| AudioOutputError::Closed)
    }

    /// Applies a client `playback` report: `position` of the speech `speech_id` (the head segment when `None`)
    /// was played; with `finished`, the client played everything it received of it.
    pub(crate) fn on_client_playback(
        &self,
        speech_id: Option<&str>,
        position: Duration,
        finished: bool,
    ) {
        let shared = &self.shared;
        let mut s = lock(&shared.state);
        let now = Instant::now();
        shared.advance(&mut s, now);
        let Some(seg) = s.segments.front_mut() else {
            return;
        };
        if let (Some(want), Some(have)) = (speech_id, seg.speech_id.as_deref())
            && want != have
        {
            return;
        }
        seg.played = position.min(seg.sent);
        let done = finished && seg.flushed && seg.pending.is_empty();
        s.anchor = now;
        if done && let Some(seg) = s.segments.pop_front() {
            shared.finish(seg, false);
        }
        drop(s);
        shared.notify();
    }

    /// The speech id of the segment playing now, if known.
    pub(crate) fn playing_speech_id(&self) -> Option<String> {
        lock(&self.shared.state)
            .segments
            .front()
            .and_then(|s| s.speech_id.clone())
    }
}

#[async_trait]
impl AudioOutput for WsAudioOutput {
    fn label(&self) -> &str {
        "websocket"
    }

    fn sample_rate(&self) -> Option<SampleRate> {
        Some(self.rate)
    }

    fn num_channels(&self) -> u16 {
        self.format.channels
    }

    fn capabilities(&self) -> AudioOutputCapabilities {
        let mut c = AudioOutputCapabilities::default();
        c.pause = self.pause_supported.load(Ordering::Relaxed);
        c
    }

    async fn capture_frame(&self, frame: AudioFrame) -> Result<(), AudioOutputError> {
        if frame.sample_rate() != self.rate {
            return Err(AudioOutputError::SampleRateMismatch {
                expected: self.rate.hz(),
                actual: frame.sample_rate().hz(),
            });
        }
        if frame.num_channels() != self.format.channels {
            return Err(AudioOutputError::ChannelMismatch {
                expected: self.format.channels,
                actual: frame.num_channels(),
            });
        }
        let shared = &self.shared;
        // Back-pressure: wait while too much is queued ahead of playback.
        let mut rx = shared.changed.subscribe();
        loop {
            {
                let mut s = lock(&shared.state);
                if s.closed {
                    return Err(AudioOutputError::Closed);
                }
                shared.advance(&mut s, Instant::now());
                if Shared::queued_ahead(&s) < shared.max_buffer {
                    break;
                }
            }
            if rx.changed().await.is_err() {
                return Err(AudioOutputError::Closed);
            }
        }
        let segment = shared.tracker.on_capture();
        {
            let mut s = lock(&shared.state);
            let needs_new = s
                .segments
                .back()
                .is_none_or(|g| g.id != segment || g.flushed);
            if needs_new {
                let chunker = self.new_chunker()?;
                if s.segments.is_empty() {
                    s.anchor = Instant::now();
                }
                s.segments.push_back(Segment {
                    id: segment,
                    speech_id: speech_id_of(&self.session),
                    chunker,
                    pending: VecDeque::new(),
                    pending_duration: Duration::ZERO,
                    sent: Duration::ZERO,
                    played: Duration::ZERO,
                    flushed: false,
                    started: false,
                });
            }
            if let Some(seg) = s.segments.back_mut() {
                for f in seg.chunker.push(&frame.to_le_bytes()) {
                    let d = f.duration();
                    seg.pending_duration += d;
                    seg.pending.push_back((Bytes::from(f.to_le_bytes()), d));
                }
            }
        }
        shared.notify();
        Ok(())
    }

    fn flush(&self) {
        let shared = &self.shared;
        let Some(segment) = shared.tracker.on_flush() else {
            return;
        };
        {
            let mut s = lock(&shared.state);
            if let Some(seg) = s.segments.iter_mut().find(|g| g.id == segment) {
                if let Some(f) = seg.chunker.flush() {
                    let d = f.duration();
                    seg.pending_duration += d;
                    seg.pending.push_back((Bytes::from(f.to_le_bytes()), d));
                }
                seg.flushed = true;
            }
        }
        shared.notify();
    }

    fn clear_buffer(&self) {
        let shared = &self.shared;
        let _ = shared.tracker.on_flush();
        let mut speech_id = None;
        let cleared = {
            let mut s = lock(&shared.state);
            shared.advance(&mut s, Instant::now());
            shared.epoch.fetch_add(1, Ordering::AcqRel);
            let segments: Vec<Segment> = s.segments.drain(..).collect();
            s.anchor = Instant::now();
            segments
        };
        let any = !cleared.is_empty();
        for (i, mut seg) in cleared.into_iter().enumerate() {
            if i == 0 {
                speech_id = seg.speech_id.clone();
            } else {
                seg.played = Duration::ZERO;
            }
            shared.finish(seg, true);
        }
        if any {
            let msg = ServerMessage::Clear { speech_id };
            if shared.control.try_send(Outgoing::Json(msg)).is_err() {
                tracing::debug!("websocket control queue full or closed: clear not sent");
            }
        }
        shared.notify();
    }

    fn pause(&self) {
        lock(&self.shared.state).paused = true;
        self.shared.notify();
    }

    fn resume(&self) {
        {
            let mut s = lock(&self.shared.state);
            s.paused = false;
        }
        self.shared.notify();
    }

    fn playout(&self) -> &PlayoutTracker {
        &self.shared.tracker
    }
}

/// Agent transcripts towards a WebSocket client: each captured delta is an `agent_transcript` message
/// (`final: false`), each flush an empty one with `final: true`.
pub struct WsTextOutput {
    control: mpsc::Sender<Outgoing>,
    session: SessionHandle,
    audio: Option<Arc<WsAudioOutput>>,
    last_speech: Mutex<Option<String>>,
}

impl fmt::Debug for WsTextOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsTextOutput").finish_non_exhaustive()
    }
}

impl WsTextOutput {
    pub(crate) fn new(
        control: mpsc::Sender<Outgoing>,
        session: SessionHandle,
        audio: Option<Arc<WsAudioOutput>>,
    ) -> Self {
        Self {
            control,
            session,
            audio,
            last_speech: Mutex::new(None),
        }
    }

    fn speech_id(&self) -> Option<String> {
        self.audio
            .as_ref()
            .and_then(|a| a.playing_speech_id())
            .or_else(|| speech_id_of(&self.session))
    }
}

#[async_trait]
impl TextOutput for WsTextOutput {
    fn label(&self) -> &str {
        "websocket"
    }

    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        let speech_id = self.speech_id();
        *lock(&self.last_speech) = speech_id.clone();
        self.control
            .send(Outgoing::Json(ServerMessage::AgentTranscript {
                speech_id,
                text: text.to_owned(),
                is_final: false,
            }))
            .await
            .map_err(|_| TextOutputError::Closed)
    }

    fn flush(&self) {
        let speech_id = lock(&self.last_speech).take().or_else(|| self.speech_id());
        let msg = ServerMessage::AgentTranscript {
            speech_id,
            text: String::new(),
            is_final: true,
        };
        if self.control.try_send(Outgoing::Json(msg)).is_err() {
            tracing::debug!("websocket control queue full or closed: final transcript not sent");
        }
    }
}
