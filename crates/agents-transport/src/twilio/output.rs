//! [`TwilioAudioOutput`]: the session's audio sink for one call.
//!
//! Agent audio (8 kHz mono PCM16; the session converts to the rate this sink announces) is µ-law encoded and sent
//! as `media` messages of 20 ms (160 bytes). Closing a segment (`flush`) sends its last partial chunk and a `mark`
//! named after the segment; Twilio echoes the mark when everything before it has played, which finishes the
//! segment (`PlaybackFinished` with the whole duration). `clear_buffer` drops what is still queued here, sends
//! `clear`, and finishes every pending segment as interrupted at the position estimated from the playback clock:
//! Twilio plays buffered audio continuously in real time, so a segment starts playing when the audio before it
//! ends, and its position is the time since then, capped by what was sent. A flushed segment whose mark does not
//! come back within `mark_timeout` after its estimated end is finished anyway (logged), so a lost mark never
//! stalls the session.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::Notify;
use tokio::time::Instant;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::AudioOutput;
use agents_core::audio_io::{AudioOutputError, PlayoutTracker};

use super::mulaw;
use super::protocol::{Mark, Outbound, OutboundMedia};

/// Bytes of one 20 ms µ-law chunk at 8 kHz.
pub(crate) const CHUNK_BYTES: usize = 160;
/// Duration of one byte of µ-law at 8 kHz.
const BYTE_DURATION: Duration = Duration::from_micros(125);

/// What the connection's writer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A JSON message.
    Text(String),
}

/// A bounded queue of outgoing messages shared by the sink (producer) and the connection's writer (consumer);
/// `clear_buffer` can drop the audio it holds, which a channel could not.
#[derive(Debug)]
pub(crate) struct OutQueue {
    state: Mutex<QueueState>,
    /// Wakes the writer.
    item: Notify,
    /// Wakes producers waiting for room.
    room: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<(bool, Outgoing)>,
    closed: bool,
    /// The writer sends what is queued, then stops.
    draining: bool,
    /// Incremented by `drop_audio`: audio produced before a clear is not queued after it.
    epoch: u64,
}

impl OutQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            item: Notify::new(),
            room: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut QueueState) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Queues a control message (mark, clear) without waiting: these are few and must never be lost to a full
    /// queue. `false` when the queue is closed.
    pub(crate) fn push_control(&self, msg: Outgoing) -> bool {
        let ok = self.with(|s| {
            if s.closed || s.draining {
                return false;
            }
            s.items.push_back((false, msg));
            true
        });
        self.item.notify_one();
        ok
    }

    /// The current epoch (see `drop_audio`).
    pub(crate) fn epoch(&self) -> u64 {
        self.with(|s| s.epoch)
    }

    /// Queues audio messages produced in `epoch`, waiting while the queue is full. Messages of an older epoch
    /// (a clear happened meanwhile) are dropped.
    pub(crate) async fn push_audio(
        &self,
        msgs: Vec<Outgoing>,
        epoch: u64,
    ) -> Result<(), AudioOutputError> {
        for msg in msgs {
            let mut msg = Some(msg);
            loop {
                let room = self.room.notified();
                let pushed = self.with(|s| {
                    if s.closed || s.draining {
                        return Err(AudioOutputError::Closed);
                    }
                    if s.epoch != epoch {
                        msg = None;
                        return Ok(true);
                    }
                    if s.items.len() < self.capacity {
                        if let Some(m) = msg.take() {
                            s.items.push_back((true, m));
                        }
                        return Ok(true);
                    }
                    Ok(false)
                })?;
                if pushed {
                    if msg.is_none() {
                        self.item.notify_one();
                    }
                    break;
                }
                room.await;
            }
        }
        Ok(())
    }

    /// Drops queued audio messages (controls stay); returns how many were dropped.
    pub(crate) fn drop_audio(&self) -> usize {
        let n = self.with(|s| {
            s.epoch = s.epoch.wrapping_add(1);
            let before = s.items.len();
            s.items.retain(|(audio, _)| !audio);
            before - s.items.len()
        });
        self.room.notify_waiters();
        n
    }

    /// The next message; `None` once closed (what was queued is dropped), or once drained after `finish`.
    pub(crate) async fn pop(&self) -> Option<Outgoing> {
        loop {
            let item = self.item.notified();
            let next = self.with(|s| {
                if s.closed {
                    return Err(());
                }
                match s.items.pop_front() {
                    Some((_, m)) => Ok(Some(m)),
                    None if s.draining => Err(()),
                    None => Ok(None),
                }
            });
            match next {
                Err(()) => return None,
                Ok(Some(m)) => {
                    self.room.notify_waiters();
                    return Some(m);
                }
                Ok(None) => item.await,
            }
        }
    }

    /// Refuses new messages; the writer sends what is queued, then stops.
    pub(crate) fn finish(&self) {
        self.with(|s| s.draining = true);
        self.item.notify_one();
        self.room.notify_waiters();
    }

    /// Closes the queue: producers get `Closed`, the writer stops.
    pub(crate) fn close(&self) {
        self.with(|s| {
            s.closed = true;
            s.items.clear();
        });
        self.item.notify_waiters();
        self.item.notify_one();
        self.room.notify_waiters();
    }
}

#[derive(Debug)]
struct Pending {
    segment: u64,
    /// The mark name, once the segment was flushed.
    mark: Option<String>,
    /// Audio sent for the segment.
    sent: Duration,
    /// Estimated start of its playback.
    start: Instant,
}

#[derive(Debug)]
struct OutState {
    /// µ-law bytes of the open segment not yet sent (less than one chunk).
    carry: Vec<u8>,
    /// When everything sent so far will have played (Twilio's buffer drains in real time).
    cursor: Instant,
    pending: VecDeque<Pending>,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
}

/// The audio output of one Twilio call (created by the transport for each call).
///
/// Agent audio (8 kHz mono; the session converts to the rate announced here) goes out as 20 ms µ-law `media`
/// messages; each segment ends with a `mark` whose echo finishes it; `clear_buffer` sends `clear` and finishes the
/// pending segments as interrupted at the position estimated from Twilio's real-time playback. See
/// `docs/transports/twilio.md`.
pub struct TwilioAudioOutput {
    stream_sid: String,
    label: String,
    queue: std::sync::Arc<OutQueue>,
    state: Mutex<OutState>,
    tracker: PlayoutTracker,
    mark_timeout: Duration,
}

impl fmt::Debug for TwilioAudioOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioAudioOutput")
            .field("stream_sid", &self.stream_sid)
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

fn mark_name(segment: u64) -> String {
    format!("agents-seg-{segment}")
}

impl TwilioAudioOutput {
    pub(crate) fn new(
        stream_sid: String,
        queue: std::sync::Arc<OutQueue>,
        mark_timeout: Duration,
    ) -> Self {
        Self {
            label: format!("twilio:{stream_sid}"),
            stream_sid,
            queue,
            state: Mutex::new(OutState {
                carry: Vec::with_capacity(CHUNK_BYTES),
                cursor: Instant::now(),
                pending: VecDeque::new(),
                scratch: Vec::new(),
            }),
            tracker: PlayoutTracker::new(),
            mark_timeout,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut OutState) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn media(&self, bytes: &[u8]) -> Outgoing {
        Outgoing::Text(
            Outbound::Media {
                stream_sid: self.stream_sid.clone(),
                media: OutboundMedia {
                    payload: BASE64.encode(bytes),
                },
            }
            .to_json(),
        )
    }

    /// Sends `bytes` of the segment at the back of `pending`: advances the playback clock.
    fn account(state: &mut OutState, bytes: usize) {
        let d = BYTE_DURATION * u32::try_from(bytes).unwrap_or(u32::MAX);
        let now = Instant::now();
        state.cursor = state.cursor.max(now) + d;
        if let Some(p) = state.pending.back_mut() {
            p.sent += d;
        }
    }

    /// Twilio echoed `name`: the segment it closes (and any before it) played out.
    pub(crate) fn on_mark(&self, name: &str) {
        let finished = self.with(|s| {
            let Some(idx) = s
                .pending
                .iter()
                .position(|p| p.mark.as_deref() == Some(name))
            else {
                return Vec::new();
            };
            s.pending
                .drain(..=idx)
                .map(|p| (p.segment, p.sent))
                .collect()
        });
        if finished.is_empty() {
            tracing::debug!(
                mark = name,
                "mark for no pending segment (cleared or unknown)"
            );
        }
        for (segment, sent) in finished {
            self.tracker.on_playback_finished(segment, sent, false);
        }
    }

    /// Finishes flushed segments whose mark is overdue (their estimated end plus the mark timeout has passed).
    pub(crate) fn expire_marks(&self) {
        let now = Instant::now();
        let finished = self.with(|s| {
            let mut out = Vec::new();
            while let Some(p) = s.pending.front() {
                let overdue = p.mark.is_some() && p.start + p.sent + self.mark_timeout <= now;
                if !overdue {
                    break;
                }
                if let Some(p) = s.pending.pop_front() {
                    out.push((p.segment, p.sent));
                }
            }
            out
        });
        for (segment, sent) in finished {
            tracing::warn!(
                segment,
                "Twilio did not echo the segment's mark; assuming it played"
            );
            self.tracker.on_playback_finished(segment, sent, false);
        }
    }

    /// The connection ended: every pending segment finishes as interrupted where the clock says it was.
    pub(crate) fn on_disconnect(&self) {
        self.queue.close();
        self.interrupt_pending();
    }

    fn interrupt_pending(&self) {
        let now = Instant::now();
        let finished = self.with(|s| {
            s.carry.clear();
            s.cursor = now;
            s.pending
                .drain(..)
                .map(|p| {
                    let played = now.saturating_duration_since(p.start).min(p.sent);
                    (p.segment, played)
                })
                .collect::<Vec<_>>()
        });
        for (segment, played) in finished {
            self.tracker.on_playback_finished(segment, played, true);
        }
    }
}

#[async_trait]
impl AudioOutput for TwilioAudioOutput {
    fn label(&self) -> &str {
        &self.label
    }

    fn sample_rate(&self) -> Option<SampleRate> {
        Some(SampleRate::HZ_8000)
    }

    async fn capture_frame(&self, frame: AudioFrame) -> Result<(), AudioOutputError> {
        AudioOutputError::check_format(&frame, Some(SampleRate::HZ_8000), 1)?;
        let segment = self.tracker.on_capture();
        let prepared = self.with(|s| {
            if self.tracker.open_segment() != Some(segment) {
                // Cleared between `on_capture` and here: this audio belongs to a finished segment.
                return None;
            }
            let epoch = self.queue.epoch();
            let mut started = false;
            if s.pending.back().is_none_or(|p| p.segment != segment) {
                let start = s.cursor.max(Instant::now());
                s.pending.push_back(Pending {
                    segment,
                    mark: None,
                    sent: Duration::ZERO,
                    start,
                });
                s.carry.clear();
                started = true;
            }
            let mut scratch = std::mem::take(&mut s.scratch);
            scratch.clear();
            scratch.extend_from_slice(&s.carry);
            mulaw::encode_into(frame.data(), &mut scratch);
            let full = scratch.len() / CHUNK_BYTES * CHUNK_BYTES;
            let messages: Vec<Outgoing> = scratch[..full]
                .chunks(CHUNK_BYTES)
                .map(|c| self.media(c))
                .collect();
            Self::account(s, full);
            s.carry.clear();
            s.carry.extend_from_slice(&scratch[full..]);
            s.scratch = scratch;
            Some((messages, started, epoch))
        });
        let Some((messages, started, epoch)) = prepared else {
            return Ok(());
        };
        if started {
            self.tracker.on_playback_started(segment);
        }
        self.queue.push_audio(messages, epoch).await
    }

    fn flush(&self) {
        let Some(segment) = self.tracker.on_flush() else {
            return;
        };
        let name = mark_name(segment);
        let tail = self.with(|s| {
            let tail = std::mem::take(&mut s.carry);
            Self::account(s, tail.len());
            match s.pending.back_mut() {
                Some(p) if p.segment == segment => p.mark = Some(name.clone()),
                // The segment was already finished (cleared): nothing to mark.
                _ => return None,
            }
            Some(tail)
        });
        let Some(tail) = tail else {
            return;
        };
        // The tail goes as a control so that it keeps its place before the mark; it is under 20 ms.
        if !tail.is_empty() {
            self.queue.push_control(self.media(&tail));
        }
        let mark = Outbound::Mark {
            stream_sid: self.stream_sid.clone(),
            mark: Mark { name },
        };
        if !self.queue.push_control(Outgoing::Text(mark.to_json())) {
            // Connection gone: nobody will echo the mark.
            self.interrupt_pending();
        }
    }

    fn clear_buffer(&self) {
        let dropped = self.queue.drop_audio();
        let clear = Outbound::Clear {
            stream_sid: self.stream_sid.clone(),
        };
        self.queue.push_control(Outgoing::Text(clear.to_json()));
        tracing::debug!(dropped, "clear: dropped queued audio chunks");
        self.interrupt_pending();
    }

    fn playout(&self) -> &PlayoutTracker {
        &self.tracker
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn sink(capacity: usize) -> (Arc<OutQueue>, Arc<TwilioAudioOutput>) {
        let queue = Arc::new(OutQueue::new(capacity));
        let out = Arc::new(TwilioAudioOutput::new(
            "MZ1".into(),
            queue.clone(),
            ms(2000),
        ));
        (queue, out)
    }

    fn tone(duration: Duration) -> AudioFrame {
        let n = (duration.as_micros() / 125) as usize;
        let data = (0..n)
            .map(|i| if i % 2 == 0 { 3000 } else { -3000 })
            .collect();
        AudioFrame::new(data, SampleRate::HZ_8000, 1).unwrap()
    }

    /// Every queued message as (event, payload bytes or mark name).
    async fn drain(queue: &OutQueue) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(Some(Outgoing::Text(t))) =
            tokio::time::timeout(Duration::ZERO, queue.pop()).await
        {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["streamSid"], "MZ1");
            let event = v["event"].as_str().unwrap().to_owned();
            let detail = match event.as_str() {
                "media" => BASE64
                    .decode(v["media"]["payload"].as_str().unwrap())
                    .unwrap()
                    .len()
                    .to_string(),
                "mark" => v["mark"]["name"].as_str().unwrap().to_owned(),
                _ => String::new(),
            };
            out.push((event, detail));
        }
        out
    }

    fn pair(e: &str, d: &str) -> (String, String) {
        (e.to_owned(), d.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_segment_goes_out_in_20_ms_chunks_and_its_mark_echo_finishes_it() {
        let (queue, out) = sink(100);
        let mut events = out.playout().subscribe();
        out.capture_frame(tone(ms(30))).await.unwrap();
        out.capture_frame(tone(ms(25))).await.unwrap();
        out.flush();
        assert_eq!(
            drain(&queue).await,
            vec![
                pair("media", "160"),
                pair("media", "160"),
                pair("media", "120"),
                pair("mark", "agents-seg-1")
            ]
        );
        assert!(matches!(
            events.recv().await.unwrap(),
            agents_core::audio_io::PlaybackEvent::Started(_)
        ));
        out.on_mark("unknown");
        out.on_mark("agents-seg-1");
        let finished = out.wait_for_playout().await.unwrap();
        assert_eq!(finished.segment, 1);
        assert_eq!(finished.playback_position, ms(55));
        assert!(!finished.interrupted);
    }

    #[tokio::test(start_paused = true)]
    async fn clear_sends_clear_and_finishes_at_the_estimated_position() {
        let (queue, out) = sink(200);
        // Segment 1 (200 ms) then segment 2 (1 s), both sent at once: segment 2 starts playing at 200 ms.
        out.capture_frame(tone(ms(200))).await.unwrap();
        out.flush();
        out.capture_frame(tone(ms(1000))).await.unwrap();
        let mut events = out.playout().subscribe();
        tokio::time::advance(ms(500)).await;
        out.clear_buffer();
        let mut finished = Vec::new();
        while let Ok(agents_core::audio_io::PlaybackEvent::Finished(f)) = events.try_recv() {
            finished.push(f);
        }
        assert_eq!(finished.len(), 2);
        assert_eq!(finished[0].segment, 1);
        assert_eq!(finished[0].playback_position, ms(200));
        assert_eq!(finished[1].segment, 2);
        assert_eq!(finished[1].playback_position, ms(300));
        assert!(finished.iter().all(|f| f.interrupted));
        // The audio still queued here was dropped: the clear is what is left, after segment 1's mark.
        assert_eq!(
            drain(&queue).await,
            vec![pair("mark", "agents-seg-1"), pair("clear", "")]
        );
        // The late echo of segment 1's mark (Twilio echoes pending marks on clear) changes nothing.
        out.on_mark("agents-seg-1");
        // The next capture opens segment 3, playing from now.
        out.capture_frame(tone(ms(20))).await.unwrap();
        assert_eq!(out.playout().open_segment(), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_mark_finishes_the_segment_after_the_timeout() {
        let (_queue, out) = sink(100);
        out.capture_frame(tone(ms(100))).await.unwrap();
        out.flush();
        // Estimated end at 100 ms; the mark may be 2 s late: still waiting at 2 s.
        tokio::time::advance(ms(2000)).await;
        out.expire_marks();
        assert!(
            tokio::time::timeout(Duration::ZERO, out.wait_for_playout())
                .await
                .is_err(),
            "finished before the mark timeout"
        );
        tokio::time::advance(ms(150)).await;
        out.expire_marks();
        let finished = out.wait_for_playout().await.unwrap();
        assert_eq!(finished.playback_position, ms(100));
        assert!(!finished.interrupted);
    }

    #[tokio::test(start_paused = true)]
    async fn audio_waiting_for_room_is_dropped_by_a_clear() {
        let (queue, out) = sink(1);
        let writer = {
            let out = out.clone();
            tokio::spawn(async move { out.capture_frame(tone(ms(60))).await })
        };
        // The capture queued its first chunk and waits for room for the next two.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(queue.with(|s| s.items.len()), 1);
        assert!(!writer.is_finished(), "the capture waits for room");
        out.clear_buffer();
        writer.await.unwrap().unwrap();
        assert_eq!(drain(&queue).await, vec![pair("clear", "")]);
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_formats_and_a_closed_connection_are_errors() {
        let (queue, out) = sink(10);
        let wide = AudioFrame::new(vec![0; 320], SampleRate::HZ_16000, 1).unwrap();
        assert_eq!(
            out.capture_frame(wide).await,
            Err(AudioOutputError::SampleRateMismatch {
                expected: 8000,
                actual: 16000
            })
        );
        let stereo = AudioFrame::new(vec![0; 320], SampleRate::HZ_8000, 2).unwrap();
        assert!(matches!(
            out.capture_frame(stereo).await,
            Err(AudioOutputError::ChannelMismatch { .. })
        ));
        out.capture_frame(tone(ms(40))).await.unwrap();
        out.on_disconnect();
        let finished = out.wait_for_playout().await.unwrap();
        assert!(finished.interrupted);
        assert_eq!(
            out.capture_frame(tone(ms(20))).await,
            Err(AudioOutputError::Closed)
        );
        assert!(queue.pop().await.is_none());
    }
}
