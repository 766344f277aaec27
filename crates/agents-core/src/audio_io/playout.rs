//! [`PlayoutClock`]: the real-time playout bookkeeping shared by audio sinks that simulate or mirror a loudspeaker.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// One playout segment (one speech) queued on a [`PlayoutClock`], with the sink's own payload `T` (its frames,
/// where it starts in a file, ...).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClockSegment<T> {
    /// Segment number, as [`super::PlayoutTracker::on_capture`] gave it.
    pub id: u64,
    /// Audio captured for it.
    pub queued: Duration,
    /// Audio played of it (the playback position).
    pub played: Duration,
    /// Whether it was flushed (no more audio will come).
    pub flushed: bool,
    /// Whether it started playing.
    pub started: bool,
    /// The sink's payload.
    pub data: T,
}

/// What [`PlayoutClock::advance`] reports while it brings playback up to date.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClockEvent<'a, T> {
    /// The head segment starts playing now (report [`super::PlayoutTracker::on_playback_started`]).
    Started(&'a mut ClockSegment<T>),
    /// A flushed segment was played out and left the queue (report it finished, not interrupted).
    Finished(ClockSegment<T>),
}

/// A playout clock over segments: audio queued in segments plays back to back at 1× speed on the tokio clock (or
/// instantly), with underruns, pause/resume, clear and the playback position.
///
/// - A segment starts playing when it reaches the head of the queue.
/// - When the head segment runs out of audio before it was flushed, playback waits (underrun) and resumes as soon
///   as more audio is captured.
/// - A flushed segment leaves the queue when played out.
/// - Paused, the position does not move.
///
/// The clock holds no lock and spawns nothing: a sink keeps it in its state, calls [`PlayoutClock::advance`]
/// whenever it looks at it and wakes its player at [`PlayoutClock::deadline`]. In instant mode
/// ([`PlayoutClock::instant`]) captured audio is played at once and there is no deadline.
#[derive(Debug)]
pub struct PlayoutClock<T> {
    segments: VecDeque<ClockSegment<T>>,
    /// When `played` of the head segment was last brought up to date.
    anchor: Instant,
    paused: bool,
    instant: bool,
}

impl<T> PlayoutClock<T> {
    /// An empty, real-time clock starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            segments: VecDeque::new(),
            anchor: now,
            paused: false,
            instant: false,
        }
    }

    /// Makes the clock play captured audio at once (`true`) instead of in real time.
    pub fn instant(mut self, instant: bool) -> Self {
        self.instant = instant;
        self
    }

    /// Whether the clock plays instantly.
    pub fn is_instant(&self) -> bool {
        self.instant
    }

    /// Queues `duration` of audio for segment `id`: on the last queued segment when it is `id`, else on a new one
    /// holding `open()`. Returns the segment's payload (to add the audio to) and whether the segment was opened.
    pub fn capture(
        &mut self,
        id: u64,
        duration: Duration,
        open: impl FnOnce() -> T,
    ) -> (&mut T, bool) {
        let opened = !matches!(self.segments.back(), Some(seg) if seg.id == id);
        if opened {
            self.segments.push_back(ClockSegment {
                id,
                queued: Duration::ZERO,
                played: Duration::ZERO,
                flushed: false,
                started: false,
                data: open(),
            });
        }
        // The queue is not empty: its last segment is `id` (checked or just pushed).
        let last = self.segments.len() - 1;
        let seg = &mut self.segments[last];
        seg.queued += duration;
        (&mut seg.data, opened)
    }

    /// Marks segment `id` flushed.
    pub fn flush(&mut self, id: u64) {
        if let Some(seg) = self.segments.iter_mut().find(|g| g.id == id) {
            seg.flushed = true;
        }
    }

    /// Brings playback up to `now`: advances the head segment, reports segments starting and flushed segments
    /// played out, in order.
    pub fn advance(&mut self, now: Instant, mut on: impl FnMut(ClockEvent<'_, T>)) {
        loop {
            if self.paused {
                self.anchor = now;
                return;
            }
            let Some(seg) = self.segments.front_mut() else {
                self.anchor = now;
                return;
            };
            if !seg.started {
                seg.started = true;
                on(ClockEvent::Started(seg));
            }
            let available = seg.queued.saturating_sub(seg.played);
            let elapsed = if self.instant {
                available
            } else {
                now.saturating_duration_since(self.anchor)
            };
            if elapsed < available {
                seg.played += elapsed;
                self.anchor = now;
                return;
            }
            seg.played = seg.queued;
            if self.instant || !seg.flushed {
                // Instant: caught up with `now`. Not flushed: underrun, wait for more audio.
                self.anchor = now;
            } else {
                self.anchor += available;
            }
            if !seg.flushed {
                return;
            }
            if let Some(seg) = self.segments.pop_front() {
                on(ClockEvent::Finished(seg));
            }
        }
    }

    /// Removes every segment (the playing one first) to finish them interrupted; playback keeps its position
    /// otherwise (call [`PlayoutClock::advance`] first).
    pub fn clear(&mut self) -> Vec<ClockSegment<T>> {
        self.segments.drain(..).collect()
    }

    /// Freezes the playback position (call [`PlayoutClock::advance`] first).
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Lets playback go on from `now`.
    pub fn resume(&mut self, now: Instant) {
        if self.paused {
            self.paused = false;
            self.anchor = now;
        }
    }

    /// Whether playback is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// When the head segment's queued audio runs out (to finish a flushed segment, or to note the underrun); `None`
    /// when nothing plays, paused or instant.
    pub fn deadline(&self) -> Option<Instant> {
        if self.paused || self.instant {
            return None;
        }
        let seg = self.segments.front()?;
        let left = seg.queued.saturating_sub(seg.played);
        (!left.is_zero()).then(|| self.anchor + left)
    }

    /// Audio queued ahead of the playback position.
    pub fn ahead(&self) -> Duration {
        self.segments
            .iter()
            .map(|g| g.queued.saturating_sub(g.played))
            .sum()
    }

    /// The playback position in the playing segment (zero when nothing plays).
    pub fn position(&self) -> Duration {
        self.segments.front().map_or(Duration::ZERO, |g| g.played)
    }
}

/// Waits until `deadline` (forever for `None`) or a change on `changed`, whichever comes first; `false` when the
/// sender of `changed` is gone. The wait of a sink's player and of a `capture_frame` waiting for room.
pub async fn sleep_or_change(
    deadline: Option<Instant>,
    changed: &mut watch::Receiver<u64>,
) -> bool {
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = sleep => true,
        r = changed.changed() => r.is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn started_and_finished(
        clock: &mut PlayoutClock<()>,
        now: Instant,
    ) -> (Vec<u64>, Vec<(u64, Duration)>) {
        let (mut started, mut finished) = (Vec::new(), Vec::new());
        clock.advance(now, |e| match e {
            ClockEvent::Started(seg) => started.push(seg.id),
            ClockEvent::Finished(seg) => finished.push((seg.id, seg.played)),
        });
        (started, finished)
    }

    #[tokio::test(start_paused = true)]
    async fn segments_play_back_to_back_in_real_time_and_underrun_waits_for_audio() {
        let t0 = Instant::now();
        let mut clock = PlayoutClock::new(t0);
        assert!(clock.capture(1, MS(300), || ()).1);
        assert!(!clock.capture(1, MS(200), || ()).1);
        clock.flush(1);
        assert!(clock.capture(2, MS(100), || ()).1);
        assert_eq!(started_and_finished(&mut clock, t0), (vec![1], vec![]));
        assert_eq!(clock.deadline(), Some(t0 + MS(500)));
        assert_eq!(clock.ahead(), MS(600));
        let (s, f) = started_and_finished(&mut clock, t0 + MS(550));
        assert_eq!((s, f), (vec![2], vec![(1, MS(500))]));
        assert_eq!(clock.position(), MS(50));
        // Segment 2 is not flushed: it runs out at 600 ms and waits (underrun).
        let (s, f) = started_and_finished(&mut clock, t0 + MS(900));
        assert!(s.is_empty() && f.is_empty());
        assert_eq!(clock.position(), MS(100));
        assert_eq!(clock.deadline(), None);
        clock.capture(2, MS(100), || ());
        clock.flush(2);
        let _ = started_and_finished(&mut clock, t0 + MS(900));
        assert_eq!(clock.deadline(), Some(t0 + MS(1000)));
        assert_eq!(
            started_and_finished(&mut clock, t0 + MS(1000)),
            (vec![], vec![(2, MS(200))])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pause_freezes_the_position_and_clear_returns_every_segment() {
        let t0 = Instant::now();
        let mut clock = PlayoutClock::new(t0);
        clock.capture(1, MS(500), || ());
        clock.capture(2, MS(500), || ());
        let _ = started_and_finished(&mut clock, t0 + MS(100));
        clock.pause();
        assert!(clock.is_paused());
        let _ = started_and_finished(&mut clock, t0 + MS(400));
        assert_eq!(clock.position(), MS(100));
        assert_eq!(clock.deadline(), None);
        clock.resume(t0 + MS(400));
        let _ = started_and_finished(&mut clock, t0 + MS(450));
        assert_eq!(clock.position(), MS(150));
        let cleared = clock.clear();
        let ids: Vec<_> = cleared.iter().map(|g| (g.id, g.played)).collect();
        assert_eq!(ids, vec![(1, MS(150)), (2, Duration::ZERO)]);
        assert_eq!(clock.ahead(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn instant_clock_plays_captured_audio_at_once() {
        let t0 = Instant::now();
        let mut clock = PlayoutClock::new(t0).instant(true);
        clock.capture(1, MS(700), || ());
        clock.flush(1);
        clock.capture(2, MS(300), || ());
        let (s, f) = started_and_finished(&mut clock, t0);
        assert_eq!((s, f), (vec![1, 2], vec![(1, MS(700))]));
        assert_eq!(clock.position(), MS(300));
        assert_eq!(clock.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_or_change_wakes_on_the_deadline_or_a_change() {
        let (tx, mut rx) = watch::channel(0u64);
        let t0 = Instant::now();
        assert!(sleep_or_change(Some(t0 + MS(100)), &mut rx).await);
        assert_eq!(Instant::now(), t0 + MS(100));
        tx.send_modify(|n| *n += 1);
        assert!(sleep_or_change(None, &mut rx).await);
        drop(tx);
        assert!(!sleep_or_change(None, &mut rx).await);
    }
}
