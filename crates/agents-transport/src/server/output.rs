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

use super::writer::{AudioOut, Outgoing, Written};
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
    /// Audio queued to the writer.
    sent: Duration,
    /// The writer's counter when this segment's first frame was queued (every older frame was written or
    /// dropped by then).
    base: Option<u64>,
    played: Duration,
    flushed: bool,
    started: bool,
}

impl Segment {
    /// Audio of this segment written to the socket.
    fn written(&self, written: &Written) -> Duration {
        match self.base {
            Some(base) => Duration::from_micros(written.get().saturating_sub(base)).min(self.sent),
            None => Duration::ZERO,
        }
    }
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
    /// Bumped on every change and whenever the player sent audio: `capture_frame` waits on it for room.
    progress: watch::Sender<u64>,
    audio: mpsc::Sender<AudioOut>,
    control: mpsc::Sender<Outgoing>,
    /// Bumped by `clear_buffer`: the writer drops audio of older epochs.
    epoch: Arc<AtomicU64>,
    written: Arc<Written>,
    lead: Duration,
    max_buffer: Duration,
}

impl Shared {
    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        self.progressed();
    }

    fn progressed(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Brings the head segment's position up to `now` and finishes played-out segments.
    fn advance(&self, s: &mut State, now: Instant) {
        loop {
            let Some(seg) = s.segments.front_mut() else {
                s.anchor = now;
                return;
            };
            let written = seg.written(&self.written);
            if !seg.started && !written.is_zero() {
                seg.started = true;
                self.tracker.on_playback_started(seg.id);
            }
            let elapsed = now.saturating_duration_since(s.anchor);
            let available = written.saturating_sub(seg.played);
            if elapsed < available {
                seg.played += elapsed;
                s.anchor = now;
                return;
            }
            seg.played = written;
            s.anchor += available;
            if !(seg.flushed && seg.pending.is_empty() && written >= seg.sent) {
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
            let base = *seg.base.get_or_insert_with(|| self.written.get());
            match self.audio.try_send(AudioOut {
                epoch,
                data: bytes.clone(),
                duration: d,
            }) {
                Ok(()) => {
                    seg.base = Some(base);
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
        let ahead = seg.written(&self.written).saturating_sub(seg.played);
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
            // Playback moved on: a capture waiting for room may proceed.
            shared.progressed();
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
        let Some(written) = weak.upgrade().map(|s| s.written.clone()) else {
            return;
        };
        tokio::select! {
            () = sleep => {}
            () = written.wait() => {}
            r = changed.changed() => if r.is_err() { return },
        }
    }
}

/// The output's ends towards the connection's writer.
pub(crate) struct WriterLink {
    /// Paced frames.
    pub(crate) audio: mpsc::Sender<AudioOut>,
    /// Control messages (`clear`).
    pub(crate) control: mpsc::Sender<Outgoing>,
    /// Clear epoch shared with the writer.
    pub(crate) epoch: Arc<AtomicU64>,
    /// Audio written by the writer.
    pub(crate) written: Arc<Written>,
}

/// The agent's audio towards a WebSocket client, honouring the core playout contract.
///
/// Captured audio (at the negotiated output format; other formats are refused) is re-chunked into 20 ms frames
/// and queued per segment. A player task sends the head segment's frames no more than `lead` (200 ms by default)
/// ahead of its playback position. The position runs in real time over the audio the socket writer has actually
/// written (so no event about playback overtakes its audio), stops at what was written (an underrun), and is
/// refined by the client's `playback` reports. `flush` ends a segment once played; `clear_buffer` drops what was
/// not sent, discards what is queued to the writer, finishes the segment at its position (interrupted) and sends
/// `clear`; `pause` stops sending (the client still plays the lead it has) until `resume`. `capture_frame` waits
/// while more than the output buffer (1 s) is queued ahead of playback.
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
        link: WriterLink,
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
            progress: watch::channel(0).0,
            audio: link.audio,
            control: link.control,
            epoch: link.epoch,
            written: link.written,
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
        let written = seg.written(&shared.written);
        seg.played = position.min(written);
        let done = finished && seg.flushed && seg.pending.is_empty() && written >= seg.sent;
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
        AudioOutputError::check_format(&frame, Some(self.rate), self.format.channels)?;
        let shared = &self.shared;
        // Back-pressure: wait while too much is queued ahead of playback.
        let mut rx = shared.progress.subscribe();
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
                    base: None,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use agents_core::audio_io::PlaybackFinished;

    use super::*;

    struct Rig {
        out: Arc<WsAudioOutput>,
        /// What the fake writer wrote.
        audio: Arc<Mutex<Vec<AudioOut>>>,
        control: mpsc::Receiver<Outgoing>,
        epoch: Arc<AtomicU64>,
        _player: tokio::task::JoinHandle<()>,
        _writer: tokio::task::JoinHandle<()>,
    }

    /// Writes every frame of the current epoch at once, like an idle socket.
    async fn fake_writer(
        mut rx: mpsc::Receiver<AudioOut>,
        epoch: Arc<AtomicU64>,
        written: Arc<Written>,
        out: Arc<Mutex<Vec<AudioOut>>>,
    ) {
        while let Some(a) = rx.recv().await {
            if a.epoch == epoch.load(Ordering::Acquire) {
                written.add(a.duration);
                lock(&out).push(a);
            }
        }
    }

    fn rig() -> Rig {
        rig_with_buffer(Duration::from_secs(5))
    }

    /// A rig whose output lets `max_buffer` of audio queue ahead of playback.
    fn rig_with_buffer(max_buffer: Duration) -> Rig {
        let (atx, arx) = mpsc::channel(64);
        let (ctx, control) = mpsc::channel(64);
        let epoch = Arc::new(AtomicU64::new(0));
        let written = Arc::new(Written::default());
        let audio = Arc::new(Mutex::new(Vec::new()));
        let link = WriterLink {
            audio: atx,
            control: ctx,
            epoch: epoch.clone(),
            written: written.clone(),
        };
        let (out, player) = WsAudioOutput::new(
            AudioFormat::new(16000, 1),
            link,
            SessionHandle::detached(),
            Duration::from_millis(200),
            max_buffer,
        )
        .unwrap();
        Rig {
            out: Arc::new(out),
            _writer: tokio::spawn(fake_writer(arx, epoch.clone(), written, audio.clone())),
            audio,
            control,
            epoch,
            _player: tokio::spawn(player),
        }
    }

    fn one_second() -> AudioFrame {
        AudioFrame::new(vec![100; 16000], SampleRate::HZ_16000, 1).unwrap()
    }

    fn drain(written: &Arc<Mutex<Vec<AudioOut>>>) -> Vec<AudioOut> {
        std::mem::take(&mut *lock(written))
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn audio_is_sent_in_20_ms_frames_at_most_the_lead_ahead_and_finishes_when_played() {
        let r = rig();
        let t0 = Instant::now();
        r.out.capture_frame(one_second()).await.unwrap();
        r.out.flush();
        settle().await;
        let first = drain(&r.audio);
        assert_eq!(first.len(), 10, "200 ms lead = 10 frames of 20 ms");
        assert!(first.iter().all(|a| a.data.len() == 640));
        tokio::time::sleep(Duration::from_millis(500)).await;
        settle().await;
        let sent = first.len() + drain(&r.audio).len();
        assert!((34..=36).contains(&sent), "{sent} frames after 500 ms");
        let done = r.out.wait_for_playout().await.unwrap();
        assert_eq!(
            done,
            PlaybackFinished::new(1, Duration::from_secs(1), false)
        );
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
        assert_eq!(sent + drain(&r.audio).len(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn clear_buffer_finishes_at_the_position_reached_drops_queued_audio_and_sends_clear() {
        let mut r = rig();
        r.out.capture_frame(one_second()).await.unwrap();
        r.out.capture_frame(one_second()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        settle().await;
        r.out.clear_buffer();
        let done = r.out.wait_for_playout().await.unwrap();
        assert!(done.interrupted);
        assert_eq!(done.playback_position, Duration::from_millis(300));
        assert_eq!(
            r.epoch.load(Ordering::Acquire),
            1,
            "frames queued to the writer are now stale"
        );
        let Some(Outgoing::Json(ServerMessage::Clear { .. })) = r.control.try_recv().ok() else {
            panic!("no clear sent");
        };
        drain(&r.audio);
        tokio::time::sleep(Duration::from_millis(500)).await;
        settle().await;
        assert!(drain(&r.audio).is_empty(), "nothing is sent after a clear");
        // The next capture opens a new segment that plays normally.
        r.out.capture_frame(one_second()).await.unwrap();
        r.out.flush();
        let done = r.out.wait_for_playout().await.unwrap();
        assert_eq!(
            done,
            PlaybackFinished::new(2, Duration::from_secs(1), false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_clients_playback_report_refines_the_position_and_can_finish_the_segment() {
        let r = rig();
        r.out.capture_frame(one_second()).await.unwrap();
        r.out.flush();
        tokio::time::sleep(Duration::from_millis(400)).await;
        settle().await;
        // The client is behind: it played 250 ms only.
        r.out
            .on_client_playback(None, Duration::from_millis(250), false);
        r.out.clear_buffer();
        let done = r.out.wait_for_playout().await.unwrap();
        assert_eq!(done.playback_position, Duration::from_millis(250));
        drain(&r.audio);

        // Everything sent, the client says it finished: the segment ends at its position at once.
        r.out
            .capture_frame(AudioFrame::new(vec![1; 1600], SampleRate::HZ_16000, 1).unwrap())
            .await
            .unwrap();
        r.out.flush();
        settle().await;
        assert_eq!(drain(&r.audio).len(), 5, "100 ms: all sent");
        r.out
            .on_client_playback(None, Duration::from_millis(60), true);
        let done = r.out.wait_for_playout().await.unwrap();
        assert_eq!(
            done,
            PlaybackFinished::new(2, Duration::from_millis(60), false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pause_stops_sending_and_the_position_stops_at_what_was_sent_until_resume() {
        let r = rig();
        assert!(r.out.capabilities().pause);
        r.out.capture_frame(one_second()).await.unwrap();
        r.out.flush();
        settle().await;
        r.out.pause();
        tokio::time::sleep(Duration::from_millis(700)).await;
        settle().await;
        assert_eq!(
            drain(&r.audio).len(),
            10,
            "only the lead was sent before the pause"
        );
        r.out.resume();
        let t = Instant::now();
        let done = r.out.wait_for_playout().await.unwrap();
        assert_eq!(
            done,
            PlaybackFinished::new(1, Duration::from_secs(1), false)
        );
        assert_eq!(
            Instant::now() - t,
            Duration::from_millis(800),
            "the 800 ms not yet played"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn captures_wait_for_room_and_go_on_as_playback_advances() {
        let r = rig_with_buffer(Duration::from_millis(500));
        let out = &r.out;
        let t0 = Instant::now();
        // 3 s in 100 ms frames, far more than the 500 ms buffer: every capture eventually returns.
        tokio::time::timeout(Duration::from_secs(10), async {
            for _ in 0..30 {
                out.capture_frame(AudioFrame::new(vec![7; 1600], SampleRate::HZ_16000, 1).unwrap())
                    .await
                    .unwrap();
            }
        })
        .await
        .expect("a capture waited forever for room");
        // The last capture (2.9 s into the audio) returned once less than 500 ms was queued ahead of playback.
        let waited = Instant::now() - t0;
        assert!(waited >= Duration::from_millis(2400), "{waited:?}");
        out.flush();
        let done = out.wait_for_playout().await.unwrap();
        assert_eq!(
            done,
            PlaybackFinished::new(1, Duration::from_secs(3), false)
        );
        assert_eq!(lock(&r.audio).len(), 150);
    }

    #[tokio::test]
    async fn a_frame_of_another_format_is_refused() {
        let r = rig();
        let f = AudioFrame::new(vec![0; 480], SampleRate::HZ_24000, 1).unwrap();
        assert!(matches!(
            r.out.capture_frame(f).await,
            Err(AudioOutputError::SampleRateMismatch {
                expected: 16000,
                actual: 24000
            })
        ));
        let f = AudioFrame::new(vec![0; 640], SampleRate::HZ_16000, 2).unwrap();
        assert!(matches!(
            r.out.capture_frame(f).await,
            Err(AudioOutputError::ChannelMismatch {
                expected: 1,
                actual: 2
            })
        ));
    }
}
