//! [`TranscriptSynchronizer`]: agent text released in step with audio playback.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::audio_io::{
    AudioOutput, AudioOutputCapabilities, AudioOutputError, PlaybackEvent, PlayoutTracker,
    TextOutput, TextOutputError,
};
use agents_core::tokenize::{
    STANDARD_SPEECH_RATE, count_syllables, truncate_to_duration_at_speed, word_spans,
};
use agents_core::tts::{SynthesizedAudio, TimedText};
use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// How long one write to the wrapped text output may take before the output is considered broken (so a stalled
/// transport cannot hold back the segment's playout report).
const TEXT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a [`TranscriptSynchronizer`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TranscriptionOptions {
    /// Release text in step with playback (default `true`). With `false` text is forwarded as fast as it arrives
    /// (LiveKit's `sync_transcription=False`, issue #2950) and only [`TranscriptSynchronizer::played_text`] is
    /// still estimated from the playback position.
    pub sync_transcription: bool,
    /// Speaking speed of the TTS relative to normal (default 1.0): the estimated rate is
    /// [`STANDARD_SPEECH_RATE`] × `speed` syllables per second. A non-positive or non-finite speed counts as 1.
    pub speed: f64,
}

impl Default for TranscriptionOptions {
    fn default() -> Self {
        Self {
            sync_transcription: true,
            speed: 1.0,
        }
    }
}

impl TranscriptionOptions {
    /// Synchronized text at normal speed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets whether text is synchronized with playback.
    pub fn with_sync_transcription(mut self, sync: bool) -> Self {
        self.sync_transcription = sync;
        self
    }

    /// Sets the speaking speed.
    pub fn with_speed(mut self, speed: f64) -> Self {
        self.speed = speed;
        self
    }

    fn effective_speed(&self) -> f64 {
        if self.speed.is_finite() && self.speed > 0.0 {
            self.speed
        } else {
            1.0
        }
    }
}

/// One speech: its text, its audio and how far its text was released.
#[derive(Default)]
struct Segment {
    /// Our playout number (once audio was captured).
    number: Option<u64>,
    /// The wrapped output's segment number (once audio was captured).
    inner: Option<u64>,
    text: String,
    text_closed: bool,
    audio_closed: bool,
    /// Cleared by `clear_buffer`.
    cleared: bool,
    /// Audio pushed.
    audio: Duration,
    /// Word timings, times from the start of this segment's audio.
    timed: Vec<TimedText>,
    /// The TTS segment the last timings came from, and where its audio starts in this segment.
    tts_segment: Option<String>,
    tts_offset: Duration,
    /// Byte ranges of the complete words of `text`.
    words: Vec<Range<usize>>,
    /// `syllables[i]`: syllables of the words before word `i` (one more entry than `words`).
    syllables: Vec<usize>,
    released_words: usize,
    released_bytes: usize,
    /// When the first audio was played.
    started_at: Option<Instant>,
    /// Time spent paused since `started_at`.
    paused_total: Duration,
    /// Playback position and interruption, once the wrapped output finished the segment.
    finished: Option<(Duration, bool)>,
}

impl Segment {
    /// Recomputes the complete words: a word is complete once something follows it or the text is closed.
    fn reindex(&mut self) {
        let mut spans = word_spans(&self.text);
        if !self.text_closed && spans.last().is_some_and(|r| r.end == self.text.len()) {
            spans.pop();
        }
        // Complete words never change as text is appended, so the syllables of known words are kept.
        let known = self.words.len().min(spans.len());
        self.syllables.truncate(known + 1);
        if self.syllables.is_empty() {
            self.syllables.push(0);
        }
        let mut total = self.syllables[known];
        for r in &spans[known..] {
            total += count_syllables(&self.text[r.clone()]).max(1);
            self.syllables.push(total);
        }
        self.words = spans;
        // Released words are complete, so they stay words.
        self.released_words = self.released_words.min(self.words.len());
    }

    /// When word `i` starts in the segment's audio; `None` while it cannot be known yet (timings pending).
    fn word_start(&self, i: usize, speed: f64) -> Option<Duration> {
        let n = self.words.len();
        if i >= n {
            return None;
        }
        let timed = self.timed.len().min(n);
        if let Some(t) = self.timed.get(i).filter(|_| i < timed) {
            return Some(t.start);
        }
        let anchor = match timed.checked_sub(1).and_then(|k| self.timed.get(k)) {
            Some(t) => {
                if !self.audio_closed {
                    // The TTS aligns this segment: wait for the timing of this word.
                    return None;
                }
                t.end.max(t.start)
            }
            None => Duration::ZERO,
        };
        let from = self.syllables.get(timed).copied().unwrap_or(0);
        let before = self
            .syllables
            .get(i)
            .copied()
            .unwrap_or(from)
            .saturating_sub(from);
        // Not after `clear_buffer`: the audio pushed then is not the audio of the whole text.
        let rate = if self.text_closed && self.audio_closed && !self.cleared && self.audio > anchor
        {
            // Everything is known: spread the words over the audio actually pushed.
            let total = self
                .syllables
                .get(n)
                .copied()
                .unwrap_or(from)
                .saturating_sub(from);
            if total == 0 {
                return Some(anchor);
            }
            total as f64 / (self.audio - anchor).as_secs_f64()
        } else {
            STANDARD_SPEECH_RATE * speed
        };
        let offset = Duration::try_from_secs_f64(before as f64 / rate).unwrap_or(Duration::MAX);
        Some(anchor.saturating_add(offset))
    }

    /// Playback position on the synchronizer's clock (frozen while paused), capped at the audio pushed.
    fn position(&self, now: Instant, paused_since: Option<Instant>) -> Duration {
        let Some(start) = self.started_at else {
            return Duration::ZERO;
        };
        let end = paused_since.map_or(now, |p| p.max(start));
        end.saturating_duration_since(start)
            .saturating_sub(self.paused_total)
            .min(self.audio)
    }

    /// Number of words (from the start) whose start is at or before `position`.
    fn words_started_by(&self, position: Duration, speed: f64) -> usize {
        let mut k = 0;
        while k < self.words.len() {
            match self.word_start(k, speed) {
                Some(t) if t <= position => k += 1,
                _ => break,
            }
        }
        k
    }

    /// Releases words up to `k` (exclusive): the text from the last release to the end of word `k - 1`.
    fn release_to(&mut self, k: usize) -> Option<String> {
        if k <= self.released_words {
            return None;
        }
        let end = self.words.get(k - 1)?.end;
        let chunk = self.text.get(self.released_bytes..end)?.to_owned();
        self.released_words = k;
        self.released_bytes = end;
        (!chunk.is_empty()).then_some(chunk)
    }

    /// Releases everything left, including an unfinished last word and trailing whitespace.
    fn release_rest(&mut self) -> Option<String> {
        let chunk = self.text.get(self.released_bytes..)?.to_owned();
        self.released_words = self.words.len();
        self.released_bytes = self.text.len();
        (!chunk.is_empty()).then_some(chunk)
    }

    /// The text up to the end of word `k - 1`.
    fn prefix(&self, k: usize) -> &str {
        match k.checked_sub(1).and_then(|i| self.words.get(i)) {
            Some(r) => self.text.get(..r.end).unwrap_or(""),
            None => "",
        }
    }
}

#[derive(Default)]
struct State {
    segments: VecDeque<Segment>,
    /// When playback was paused (only with a pausable output).
    paused_since: Option<Instant>,
    /// Playback events that arrived before the capture that opened their segment returned.
    early_started: HashMap<u64, Instant>,
    early_finished: HashMap<u64, (Duration, bool)>,
    /// Played text of the last finished segment.
    last_played: String,
    /// The wrapped text output refused text; later text is dropped.
    text_failed: bool,
}

impl State {
    /// The segment receiving text (opened if none).
    fn text_segment(&mut self) -> &mut Segment {
        let idx = match self.segments.iter().position(|s| !s.text_closed) {
            Some(i) => i,
            None => {
                self.segments.push_back(Segment::default());
                self.segments.len() - 1
            }
        };
        &mut self.segments[idx]
    }

    /// The segment receiving audio (opened if none).
    fn audio_segment(&mut self) -> &mut Segment {
        let idx = match self.segments.iter().position(|s| !s.audio_closed) {
            Some(i) => i,
            None => {
                self.segments.push_back(Segment::default());
                self.segments.len() - 1
            }
        };
        &mut self.segments[idx]
    }

    fn segment_by_inner(&mut self, inner: u64) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.inner == Some(inner))
    }
}

/// What the release task does after computing a step.
enum Out {
    Text(String),
    Flush,
    Finished(u64, Duration, bool),
}

struct Shared {
    audio: Arc<dyn AudioOutput>,
    text: Arc<dyn TextOutput>,
    options: TranscriptionOptions,
    label: String,
    state: Mutex<State>,
    tracker: PlayoutTracker,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn on_event(&self, event: PlaybackEvent) {
        let now = Instant::now();
        let mut s = self.lock();
        match event {
            PlaybackEvent::Started(e) => match s.segment_by_inner(e.segment) {
                Some(seg) => {
                    if seg.started_at.is_none() {
                        seg.started_at = Some(now);
                        if let Some(n) = seg.number {
                            self.tracker.on_playback_started(n);
                        }
                    }
                }
                None => {
                    s.early_started.insert(e.segment, now);
                }
            },
            PlaybackEvent::Finished(e) => {
                let done = (e.playback_position, e.interrupted);
                match s.segment_by_inner(e.segment) {
                    Some(seg) => seg.finished = Some(done),
                    None => {
                        s.early_finished.insert(e.segment, done);
                    }
                }
            }
            _ => {}
        }
    }

    /// Computes what is due now: text to release, flushes and finished segments; returns them with the time of
    /// the next release.
    fn plan(&self, now: Instant) -> (Vec<Out>, Option<Instant>) {
        let speed = self.options.effective_speed();
        let sync = self.options.sync_transcription;
        let mut out = Vec::new();
        let mut s = self.lock();
        let paused_since = s.paused_since;
        loop {
            let Some(seg) = s.segments.front_mut() else {
                return (out, None);
            };
            if let Some((position, interrupted)) = seg.finished {
                let played = if !sync {
                    let timed = (!seg.timed.is_empty()).then_some(seg.timed.as_slice());
                    if interrupted {
                        truncate_to_duration_at_speed(&seg.text, position, timed, speed).to_owned()
                    } else {
                        seg.text.clone()
                    }
                } else if interrupted {
                    let k = seg.words_started_by(position, speed);
                    if let Some(t) = seg.release_to(k) {
                        out.push(Out::Text(t));
                    }
                    out.push(Out::Flush);
                    seg.prefix(k).to_owned()
                } else {
                    if let Some(t) = seg.release_rest() {
                        out.push(Out::Text(t));
                    }
                    out.push(Out::Flush);
                    seg.text.clone()
                };
                if let Some(n) = seg.number {
                    out.push(Out::Finished(n, position, interrupted));
                }
                s.last_played = played;
                s.segments.pop_front();
                continue;
            }
            if seg.inner.is_none() && seg.cleared {
                // Cleared before any audio was captured: nothing was heard.
                if sync {
                    out.push(Out::Flush);
                }
                s.last_played.clear();
                s.segments.pop_front();
                continue;
            }
            if seg.inner.is_none() && seg.audio_closed {
                // A segment without audio: its text is released as it comes.
                if !sync {
                    if seg.text_closed {
                        s.last_played = std::mem::take(&mut seg.text);
                        s.segments.pop_front();
                        continue;
                    }
                    return (out, None);
                }
                if seg.text_closed {
                    if let Some(t) = seg.release_rest() {
                        out.push(Out::Text(t));
                    }
                    out.push(Out::Flush);
                    s.last_played = std::mem::take(&mut seg.text);
                    s.segments.pop_front();
                    continue;
                }
                let k = seg.words.len();
                if let Some(t) = seg.release_to(k) {
                    out.push(Out::Text(t));
                }
                return (out, None);
            }
            if !sync {
                return (out, None);
            }
            let Some(started) = seg.started_at else {
                return (out, None);
            };
            let position = seg.position(now, paused_since);
            let k = seg.words_started_by(position, speed);
            if let Some(t) = seg.release_to(k) {
                out.push(Out::Text(t));
            }
            let next = if paused_since.is_some() {
                None
            } else {
                seg.word_start(k, speed)
                    .filter(|t| *t <= seg.audio)
                    .map(|t| started + seg.paused_total + t)
            };
            return (out, next);
        }
    }

    async fn perform(&self, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Text(t) => {
                    if self.lock().text_failed {
                        continue;
                    }
                    let failure =
                        match tokio::time::timeout(TEXT_WRITE_TIMEOUT, self.text.capture_text(&t))
                            .await
                        {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(_) => Some(format!("no answer within {TEXT_WRITE_TIMEOUT:?}")),
                        };
                    if let Some(error) = failure {
                        tracing::warn!(output = %self.text.label(), %error, "transcript output failed; dropping the transcript from now on");
                        self.lock().text_failed = true;
                    }
                }
                Out::Flush => self.text.flush(),
                Out::Finished(n, position, interrupted) => {
                    self.tracker.on_playback_finished(n, position, interrupted);
                }
            }
        }
    }
}

/// The release task: wakes on every change, playback event and release deadline.
async fn run(
    weak: Weak<Shared>,
    mut changed: watch::Receiver<u64>,
    mut events: broadcast::Receiver<PlaybackEvent>,
) {
    loop {
        let deadline = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            changed.borrow_and_update();
            let (out, deadline) = shared.plan(Instant::now());
            shared.perform(out).await;
            deadline
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
            ev = events.recv() => match ev {
                Ok(ev) => {
                    let Some(shared) = weak.upgrade() else { return };
                    shared.on_event(ev);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "transcript synchronizer missed playback events");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Paces agent text to audio playback. See the [module documentation](super).
///
/// Wraps the session's [`AudioOutput`] and [`TextOutput`] and implements both, so the session writes a speech's
/// frames ([`AudioOutput::capture_frame`], or [`TranscriptSynchronizer::capture_synthesized`] to pass TTS word
/// timings along) and text deltas ([`TextOutput::capture_text`]) to it. A segment (one speech) ends when both
/// sides were flushed; a capture on a side already flushed opens the next segment.
///
/// - Audio is forwarded at once; the synchronizer's [`playout`](AudioOutput::playout) mirrors the wrapped
///   output's, except that a segment's [`PlaybackFinished`](agents_core::audio_io::PlaybackFinished) is reported
///   only after its text was settled, so [`played_text`](Self::played_text) is final once
///   [`wait_for_playout`](AudioOutput::wait_for_playout) returns.
/// - Text is released word by word (a word is complete once whitespace follows it or the text side is flushed),
///   starting when the segment's first audio plays: each word when playback reaches its start, from TTS word
///   timings when given (matched to the text's words in order), else at [`STANDARD_SPEECH_RATE`] × speed
///   syllables per second, re-estimated once all text and audio are in so that the words spread over the audio
///   pushed. Text never runs ahead of the audio pushed.
/// - When the segment has played out, the rest of its text is released and the text output flushed.
/// - `clear_buffer` stops the release: the segment finishes with the words whose start was reached.
/// - `pause`/`resume` (on an output that can pause) freeze and restart the text clock.
///
/// Must be created inside a tokio runtime (it spawns its release task, which ends when the synchronizer is
/// dropped).
pub struct TranscriptSynchronizer {
    shared: Arc<Shared>,
}

impl fmt::Debug for TranscriptSynchronizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranscriptSynchronizer")
            .field("audio", &self.shared.audio.label())
            .field("text", &self.shared.text.label())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl TranscriptSynchronizer {
    /// A synchronizer writing to `audio` and `text`.
    pub fn new(
        audio: Arc<dyn AudioOutput>,
        text: Arc<dyn TextOutput>,
        options: TranscriptionOptions,
    ) -> Self {
        let events = audio.playout().subscribe();
        let (changed, rx) = watch::channel(0);
        let label = format!("transcript_sync({})", audio.label());
        let shared = Arc::new(Shared {
            audio,
            text,
            options,
            label,
            state: Mutex::new(State::default()),
            tracker: PlayoutTracker::new(),
            changed,
        });
        tokio::spawn(run(Arc::downgrade(&shared), rx, events));
        Self { shared }
    }

    /// The options.
    pub fn options(&self) -> TranscriptionOptions {
        self.shared.options
    }

    /// The text heard of the latest segment: while a segment plays, the words released so far; once it finished,
    /// its words whose start playback reached (all of it when it played out). Empty before any segment finished
    /// or started.
    ///
    /// With `sync_transcription = false` this is the estimate of
    /// [`truncate_to_duration_at_speed`](agents_core::tokenize::truncate_to_duration_at_speed) at the position
    /// the output reported, available once the segment finished.
    pub fn played_text(&self) -> String {
        let s = self.shared.lock();
        if self.shared.options.sync_transcription
            && let Some(seg) = s.segments.front()
            && seg.started_at.is_some()
        {
            return seg.text.get(..seg.released_bytes).unwrap_or("").to_owned();
        }
        s.last_played.clone()
    }

    /// Adds word `timings` to the segment receiving audio; times are from the start of that segment's audio.
    /// Prefer [`capture_synthesized`](Self::capture_synthesized), which offsets each TTS segment's timings.
    pub fn push_timings(&self, timings: impl IntoIterator<Item = TimedText>) {
        {
            let mut s = self.shared.lock();
            s.audio_segment().timed.extend(timings);
        }
        self.shared.notify();
    }

    /// Captures a TTS chunk: its frame, and its word timings (which count from the start of their TTS segment;
    /// a speech made of several TTS segments gets each one's timings offset by the audio pushed before it).
    ///
    /// # Errors
    /// Those of the wrapped output's `capture_frame`.
    pub async fn capture_synthesized(
        &self,
        chunk: &SynthesizedAudio,
    ) -> Result<(), AudioOutputError> {
        {
            let mut s = self.shared.lock();
            let seg = s.audio_segment();
            if seg.tts_segment.as_deref() != Some(chunk.segment_id.as_str()) {
                // A new TTS segment: its timings count from the audio pushed so far.
                seg.tts_segment = Some(chunk.segment_id.clone());
                seg.tts_offset = seg.audio;
            }
            let offset = seg.tts_offset;
            seg.timed.extend(chunk.timed_text.iter().map(|t| {
                TimedText::new(
                    t.text.clone(),
                    t.start.saturating_add(offset),
                    t.end.saturating_add(offset),
                )
            }));
        }
        self.capture_frame(chunk.frame.clone()).await
    }

    /// Ends the audio of the current segment (same as [`AudioOutput::flush`]).
    pub fn flush_audio(&self) {
        self.shared.audio.flush();
        let _ = self.shared.tracker.on_flush();
        {
            let mut s = self.shared.lock();
            if let Some(seg) = s.segments.iter_mut().find(|g| !g.audio_closed) {
                seg.audio_closed = true;
            }
        }
        self.shared.notify();
    }

    /// Ends the text of the current segment (same as [`TextOutput::flush`]).
    pub fn flush_text(&self) {
        if !self.shared.options.sync_transcription {
            self.shared.text.flush();
        }
        {
            let mut s = self.shared.lock();
            if let Some(seg) = s.segments.iter_mut().find(|g| !g.text_closed) {
                seg.text_closed = true;
                seg.reindex();
            }
        }
        self.shared.notify();
    }
}

#[async_trait]
impl AudioOutput for TranscriptSynchronizer {
    fn label(&self) -> &str {
        &self.shared.label
    }

    fn sample_rate(&self) -> Option<SampleRate> {
        self.shared.audio.sample_rate()
    }

    fn num_channels(&self) -> u16 {
        self.shared.audio.num_channels()
    }

    fn capabilities(&self) -> AudioOutputCapabilities {
        self.shared.audio.capabilities()
    }

    async fn capture_frame(&self, frame: AudioFrame) -> Result<(), AudioOutputError> {
        let duration = frame.duration();
        self.shared.audio.capture_frame(frame).await?;
        let inner = self.shared.audio.playout().open_segment();
        {
            let mut s = self.shared.lock();
            let State {
                segments,
                early_started,
                early_finished,
                ..
            } = &mut *s;
            let idx = match segments.iter().position(|g| !g.audio_closed) {
                Some(i) => i,
                None => {
                    segments.push_back(Segment::default());
                    segments.len() - 1
                }
            };
            let seg = &mut segments[idx];
            seg.audio += duration;
            let number = self.shared.tracker.on_capture();
            if seg.number.is_none() {
                seg.number = Some(number);
            }
            if seg.inner.is_none()
                && let Some(id) = inner
            {
                seg.inner = Some(id);
                // Events of older segments of the wrapped output will never be claimed.
                early_started.retain(|k, _| *k >= id);
                early_finished.retain(|k, _| *k >= id);
                if let Some(at) = early_started.remove(&id) {
                    seg.started_at = Some(at);
                    self.shared.tracker.on_playback_started(number);
                }
                if let Some(done) = early_finished.remove(&id) {
                    seg.finished = Some(done);
                }
            }
        }
        self.shared.notify();
        Ok(())
    }

    fn flush(&self) {
        self.flush_audio();
    }

    fn clear_buffer(&self) {
        self.shared.audio.clear_buffer();
        let _ = self.shared.tracker.on_flush();
        {
            let mut s = self.shared.lock();
            for seg in &mut s.segments {
                seg.cleared = true;
                seg.audio_closed = true;
                if !seg.text_closed {
                    seg.text_closed = true;
                    seg.reindex();
                }
            }
        }
        self.shared.notify();
    }

    fn pause(&self) {
        self.shared.audio.pause();
        if self.shared.audio.capabilities().pause {
            let mut s = self.shared.lock();
            if s.paused_since.is_none() {
                s.paused_since = Some(Instant::now());
            }
        }
        self.shared.notify();
    }

    fn resume(&self) {
        self.shared.audio.resume();
        {
            let now = Instant::now();
            let mut s = self.shared.lock();
            if let Some(since) = s.paused_since.take() {
                for seg in &mut s.segments {
                    if let Some(start) = seg.started_at {
                        seg.paused_total += now.saturating_duration_since(since.max(start));
                    }
                }
            }
        }
        self.shared.notify();
    }

    fn playout(&self) -> &PlayoutTracker {
        &self.shared.tracker
    }
}

#[async_trait]
impl TextOutput for TranscriptSynchronizer {
    fn label(&self) -> &str {
        &self.shared.label
    }

    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        if !self.shared.options.sync_transcription {
            {
                let mut s = self.shared.lock();
                s.text_segment().text.push_str(text);
            }
            return self.shared.text.capture_text(text).await;
        }
        {
            let mut s = self.shared.lock();
            if s.text_failed {
                return Err(TextOutputError::Closed);
            }
            let seg = s.text_segment();
            seg.text.push_str(text);
            seg.reindex();
        }
        self.shared.notify();
        Ok(())
    }

    fn flush(&self) {
        self.flush_text();
    }
}
