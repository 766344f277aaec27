//! [`WavOutput`]: the agent's audio written to a WAV file, with the playout contract of a real sink.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::audio_io::{
    AudioOutput, AudioOutputCapabilities, AudioOutputError, ClockEvent, ClockSegment, PlayoutClock,
    PlayoutTracker, sleep_or_change,
};
use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::FileIoError;
use super::error::hound_io;
use super::input::{InputProgress, Pacing, samples_for};

/// Options of a [`WavOutput`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WavOutputOptions {
    /// Rate of the file; the session converts the agent's audio to it (default 24 kHz).
    pub sample_rate: SampleRate,
    /// Channels of the file (default 1).
    pub num_channels: u16,
    /// How playback is simulated (default real time): see [`WavOutput`].
    pub pacing: Pacing,
    /// Audio accepted ahead of playback before `capture_frame` waits (default 200 ms). In fast mode, audio not yet
    /// written to the file ahead of which `capture_frame` waits (at least 10 s).
    pub max_buffer: Duration,
}

impl Default for WavOutputOptions {
    fn default() -> Self {
        Self {
            sample_rate: SampleRate::HZ_24000,
            num_channels: 1,
            pacing: Pacing::RealTime,
            max_buffer: Duration::from_millis(200),
        }
    }
}

impl WavOutputOptions {
    /// Sets the file's rate.
    pub fn with_sample_rate(mut self, rate: SampleRate) -> Self {
        self.sample_rate = rate;
        self
    }
    /// Sets the file's channel count.
    pub fn with_num_channels(mut self, channels: u16) -> Self {
        self.num_channels = channels;
        self
    }
    /// Sets the pacing.
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }
    /// Sets the playback buffer.
    pub fn with_max_buffer(mut self, d: Duration) -> Self {
        self.max_buffer = d;
        self
    }
}

/// One played segment (one speech) as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutputSegment {
    /// Segment number (1 for the first).
    pub segment: u64,
    /// Where it starts in the file.
    pub file_start: Duration,
    /// How much of it was played, hence written.
    pub played: Duration,
    /// Everything captured for it.
    pub captured: Duration,
    /// Whether `clear_buffer` (or the end of the output) cut it short.
    pub interrupted: bool,
}

/// What a [`WavOutput`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WavOutputSummary {
    /// The file.
    pub path: PathBuf,
    /// Its rate.
    pub sample_rate: SampleRate,
    /// Its channel count.
    pub num_channels: u16,
    /// Its length (speech and the silence between).
    pub duration: Duration,
    /// The segments, in order.
    pub segments: Vec<OutputSegment>,
}

/// A segment's payload: its frames and where it starts in the file (samples per channel, once started).
struct Audio {
    frames: Vec<AudioFrame>,
    file_start: u64,
}

type Segment = ClockSegment<Audio>;

enum Write {
    Silence(u64),
    Audio(Vec<i16>),
}

struct State {
    clock: PlayoutClock<Audio>,
    file: FileState,
    closing: bool,
    pad_to: u64,
}

/// The file as played so far.
struct FileState {
    /// Samples per channel in the file, written or queued for writing.
    len: u64,
    pending: VecDeque<Write>,
    pending_samples: u64,
    done: Vec<OutputSegment>,
}

struct Shared {
    state: Mutex<State>,
    tracker: PlayoutTracker,
    changed: watch::Sender<u64>,
    rate: SampleRate,
    channels: u16,
    instant: bool,
    origin: Instant,
    input: Option<watch::Receiver<InputProgress>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn duration_of(samples: u64, rate: SampleRate) -> Duration {
    Duration::from_secs_f64(samples as f64 / f64::from(rate.hz()))
}

/// The interleaved samples of `frames` cut at `position`.
fn heard(frames: &[AudioFrame], position: Duration, rate: SampleRate, channels: u16) -> Vec<i16> {
    let mut left = samples_for(position, rate) * usize::from(channels);
    let mut out = Vec::with_capacity(left);
    for f in frames {
        if left == 0 {
            break;
        }
        let take = f.data().len().min(left);
        out.extend_from_slice(&f.data()[..take]);
        left -= take;
    }
    out
}

impl Shared {
    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Where a segment starting now begins in the file, in samples per channel.
    fn start_position(&self, f: &FileState, now: Instant) -> u64 {
        let target = match &self.input {
            Some(input) => input.borrow().timeline(now).unwrap_or_default(),
            None if self.instant => Duration::ZERO,
            None => now.saturating_duration_since(self.origin),
        };
        (samples_for(target, self.rate) as u64).max(f.len)
    }

    /// Brings playback up to `now`: advances the head segment, finishes played-out flushed segments.
    fn advance(&self, s: &mut State, now: Instant) {
        let file = &mut s.file;
        s.clock.advance(now, |e| match e {
            ClockEvent::Started(seg) => {
                let start = self.start_position(file, now);
                seg.data.file_start = start;
                if start > file.len {
                    file.pending.push_back(Write::Silence(start - file.len));
                    file.pending_samples += start - file.len;
                    file.len = start;
                }
                self.tracker.on_playback_started(seg.id);
            }
            ClockEvent::Finished(seg) => self.finish(file, seg, false),
            _ => {}
        });
    }

    /// Writes what was heard of `seg` and reports it finished.
    fn finish(&self, f: &mut FileState, seg: Segment, interrupted: bool) {
        let mut audio = Vec::new();
        if seg.started {
            audio = heard(&seg.data.frames, seg.played, self.rate, self.channels);
        }
        let n = (audio.len() / usize::from(self.channels)) as u64;
        // A segment that never started (queued behind a cleared one) writes nothing.
        let file_start = if seg.started {
            seg.data.file_start
        } else {
            f.len
        };
        if n > 0 {
            f.pending.push_back(Write::Audio(audio));
            f.pending_samples += n;
            f.len += n;
        }
        let played = if seg.started {
            duration_of(n, self.rate)
        } else {
            Duration::ZERO
        };
        f.done.push(OutputSegment {
            segment: seg.id,
            file_start: duration_of(file_start, self.rate),
            played,
            captured: seg.queued,
            interrupted,
        });
        self.tracker
            .on_playback_finished(seg.id, played, interrupted);
    }
}

type Writer = hound::WavWriter<BufWriter<File>>;

/// Plays the queue and writes the file; returns the file's length once closing, or the first write error.
async fn player(
    weak: Weak<Shared>,
    mut changed: watch::Receiver<u64>,
    writer: Writer,
    path: PathBuf,
) -> Result<u64, FileIoError> {
    let mut writer = Some(writer);
    let mut error: Option<std::io::Error> = None;
    let mut written: u64 = 0;
    loop {
        let (deadline, batch, closing) = {
            let Some(shared) = weak.upgrade() else {
                break;
            };
            let mut s = lock(&shared.state);
            shared.advance(&mut s, Instant::now());
            if s.closing {
                // The output ends: what is still playing ends here, as heard so far.
                for seg in s.clock.clear() {
                    shared.finish(&mut s.file, seg, true);
                }
                if s.pad_to > s.file.len {
                    let gap = s.pad_to - s.file.len;
                    s.file.pending.push_back(Write::Silence(gap));
                    s.file.len = s.pad_to;
                }
            }
            let batch: Vec<Write> = s.file.pending.drain(..).collect();
            s.file.pending_samples = 0;
            (s.clock.deadline(), batch, s.closing)
        };
        if !batch.is_empty() {
            if let Some(w) = writer.take() {
                let channels = weak.upgrade().map_or(1, |s| s.channels);
                let job = tokio::task::spawn_blocking(move || write_batch(w, &batch, channels));
                match job.await {
                    Ok((w, n, r)) => {
                        written += n;
                        writer = Some(w);
                        if let Err(e) = r {
                            error.get_or_insert(e);
                        }
                    }
                    Err(_) => return Err(FileIoError::WriterTask("WAV output")),
                }
            }
            if let Some(shared) = weak.upgrade() {
                shared.notify();
            }
            continue;
        }
        if closing {
            break;
        }
        if !sleep_or_change(deadline, &mut changed).await {
            break;
        }
    }
    let finalize =
        writer.map(|w| tokio::task::spawn_blocking(move || w.finalize().map_err(hound_io)));
    if let Some(job) = finalize {
        let r = job
            .await
            .map_err(|_| FileIoError::WriterTask("WAV output"))?;
        if let Err(e) = r {
            error.get_or_insert(e);
        }
    }
    match error {
        Some(source) => Err(FileIoError::WriteWav { path, source }),
        None => Ok(written),
    }
}

/// Writes `batch`; returns the writer, the samples per channel written and the first error.
fn write_batch(
    mut w: Writer,
    batch: &[Write],
    channels: u16,
) -> (Writer, u64, std::io::Result<()>) {
    let mut n = 0;
    for item in batch {
        let r = match item {
            Write::Silence(len) => {
                let total = len * u64::from(channels);
                let mut r = Ok(());
                for _ in 0..total {
                    if let Err(e) = w.write_sample(0i16) {
                        r = Err(hound_io(e));
                        break;
                    }
                }
                n += len;
                r
            }
            Write::Audio(samples) => {
                let mut r = Ok(());
                for &x in samples {
                    if let Err(e) = w.write_sample(x) {
                        r = Err(hound_io(e));
                        break;
                    }
                }
                n += (samples.len() / usize::from(channels)) as u64;
                r
            }
        };
        if r.is_err() {
            return (w, n, r);
        }
    }
    (w, n, Ok(()))
}

/// An [`AudioOutput`] writing the agent's audio to a WAV file (16-bit PCM at the chosen rate).
///
/// # Playback model
///
/// Captured frames queue up in segments (one per speech; a segment opens with the first capture after a flush)
/// and are *played*, segments back to back:
///
/// - [`Pacing::RealTime`]: at 1× speed on the tokio clock, as a loudspeaker would. `capture_frame` waits while more
///   than `max_buffer` is queued ahead of the playback position.
/// - [`Pacing::AsFastAsPossible`]: instantly; a frame is played when captured.
///
/// A flushed segment finishes when played out (`PlaybackFinished` with its duration); `clear_buffer` finishes the
/// playing segment with the position reached and `interrupted = true` (queued ones with position 0). `pause` /
/// `resume` freeze the playback position (the pause capability is announced).
///
/// # The file
///
/// Only what was played is written: an interrupted speech is cut at the position reached. Each segment starts in
/// the file at its position on the *input timeline*, the gap before it filled with silence:
///
/// - real time: the time elapsed since the linked input ([`WavOutput::with_input_progress`]) delivered its first
///   frame (`InputProgress::timeline`) (without an input: since the output was created), so mixing the input and output files gives what a
///   listener would have heard;
/// - fast: the amount of input audio delivered when the segment started playing (after the input ended: its
///   length plus the time elapsed since; without an input, segments are written back to back). The input runs ahead of the session by what its queues hold, so a reply lands at the
///   earliest where the user's audio that triggered it ends, possibly later; the gaps are not conversation
///   timing.
///
/// A segment never starts before the end of the previous one. [`WavOutput::finish`] ends what is still playing (cut
/// where it was), writes the rest and finalizes the header; dropping the output without `finish` finalizes too,
/// without reporting errors.
pub struct WavOutput {
    shared: Arc<Shared>,
    label: String,
    path: PathBuf,
    max_buffer: Duration,
    player: Mutex<Option<JoinHandle<Result<u64, FileIoError>>>>,
}

impl fmt::Debug for WavOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WavOutput")
            .field("path", &self.path)
            .field("sample_rate", &self.shared.rate)
            .field("num_channels", &self.shared.channels)
            .field("instant", &self.shared.instant)
            .finish_non_exhaustive()
    }
}

impl WavOutput {
    /// Creates (truncates) `path` and starts the player. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`FileIoError::WriteWav`] when the file cannot be created, [`FileIoError::InvalidOption`] for zero channels.
    pub fn create(path: impl AsRef<Path>, options: WavOutputOptions) -> Result<Self, FileIoError> {
        Self::build(path.as_ref(), options, None)
    }

    /// As [`WavOutput::create`], with segments placed on the timeline of `input` (see the type docs).
    ///
    /// # Errors
    /// As [`WavOutput::create`].
    pub fn with_input_progress(
        path: impl AsRef<Path>,
        options: WavOutputOptions,
        input: watch::Receiver<InputProgress>,
    ) -> Result<Self, FileIoError> {
        Self::build(path.as_ref(), options, Some(input))
    }

    fn build(
        path: &Path,
        options: WavOutputOptions,
        input: Option<watch::Receiver<InputProgress>>,
    ) -> Result<Self, FileIoError> {
        if options.num_channels == 0 {
            return Err(FileIoError::InvalidOption(
                "num_channels must be at least 1",
            ));
        }
        let spec = hound::WavSpec {
            channels: options.num_channels,
            sample_rate: options.sample_rate.hz(),
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| FileIoError::WriteWav {
            path: path.to_path_buf(),
            source: hound_io(e),
        })?;
        let instant = options.pacing == Pacing::AsFastAsPossible;
        let (changed, rx) = watch::channel(0);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                clock: PlayoutClock::new(now).instant(instant),
                file: FileState {
                    len: 0,
                    pending: VecDeque::new(),
                    pending_samples: 0,
                    done: Vec::new(),
                },
                closing: false,
                pad_to: 0,
            }),
            tracker: PlayoutTracker::new(),
            changed,
            rate: options.sample_rate,
            channels: options.num_channels,
            instant,
            origin: now,
            input,
        });
        let player = tokio::spawn(player(
            Arc::downgrade(&shared),
            rx,
            writer,
            path.to_path_buf(),
        ));
        let max_buffer = if instant {
            options.max_buffer.max(Duration::from_secs(10))
        } else {
            options.max_buffer
        };
        Ok(Self {
            shared,
            label: format!("wav:{}", path.display()),
            path: path.to_path_buf(),
            max_buffer,
            player: Mutex::new(Some(player)),
        })
    }

    fn with_state<R>(&self, f: impl FnOnce(&Shared, &mut State) -> R) -> R {
        let mut s = lock(&self.shared.state);
        self.shared.advance(&mut s, Instant::now());
        f(&self.shared, &mut s)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Segments finished so far, in order.
    pub fn segments(&self) -> Vec<OutputSegment> {
        self.with_state(|_, s| s.file.done.clone())
    }

    /// Length of the file so far (written or queued for writing).
    pub fn file_duration(&self) -> Duration {
        self.with_state(|sh, s| duration_of(s.file.len, sh.rate))
    }

    /// Ends the output: a segment still playing ends as interrupted where it was, the file is padded with silence
    /// to at least `min_duration` (e.g. the input's length, so both files have the same length), written and
    /// finalized. Later calls return the same segments but fail with [`FileIoError::WriterTask`].
    ///
    /// # Errors
    /// [`FileIoError::WriteWav`] for the first write error, [`FileIoError::WriterTask`].
    pub async fn finish(&self, min_duration: Duration) -> Result<WavOutputSummary, FileIoError> {
        {
            let mut s = lock(&self.shared.state);
            s.closing = true;
            s.pad_to = s
                .pad_to
                .max(samples_for(min_duration, self.shared.rate) as u64);
        }
        self.shared.notify();
        let handle = lock(&self.player).take();
        let written = match handle {
            Some(h) => h
                .await
                .map_err(|_| FileIoError::WriterTask("WAV output"))??,
            None => return Err(FileIoError::WriterTask("WAV output")),
        };
        let s = lock(&self.shared.state);
        Ok(WavOutputSummary {
            path: self.path.clone(),
            sample_rate: self.shared.rate,
            num_channels: self.shared.channels,
            duration: duration_of(written, self.shared.rate),
            segments: s.file.done.clone(),
        })
    }
}

impl Drop for WavOutput {
    fn drop(&mut self) {
        // Wake the player so it sees the output is gone and finalizes the file.
        self.shared.notify();
    }
}

#[async_trait]
impl AudioOutput for WavOutput {
    fn label(&self) -> &str {
        &self.label
    }

    fn sample_rate(&self) -> Option<SampleRate> {
        Some(self.shared.rate)
    }

    fn num_channels(&self) -> u16 {
        self.shared.channels
    }

    fn capabilities(&self) -> AudioOutputCapabilities {
        let mut c = AudioOutputCapabilities::default();
        c.pause = true;
        c
    }

    async fn capture_frame(&self, frame: AudioFrame) -> Result<(), AudioOutputError> {
        AudioOutputError::check_format(&frame, Some(self.shared.rate), self.shared.channels)?;
        let mut changed = self.shared.changed.subscribe();
        loop {
            let wait = self.with_state(|shared, s| {
                if s.closing {
                    return Err(AudioOutputError::Closed);
                }
                let ahead = if shared.instant {
                    duration_of(s.file.pending_samples, shared.rate)
                } else {
                    s.clock.ahead()
                };
                if ahead > self.max_buffer {
                    let wait =
                        (!s.clock.is_paused() && !shared.instant).then(|| ahead - self.max_buffer);
                    return Ok(Some(wait));
                }
                let segment = shared.tracker.on_capture();
                let d = frame.duration();
                let (audio, _) = s.clock.capture(segment, d, || Audio {
                    frames: Vec::new(),
                    file_start: 0,
                });
                audio.frames.push(frame.clone());
                shared.advance(s, Instant::now());
                Ok(None)
            })?;
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
            if let Some(id) = shared.tracker.on_flush() {
                s.clock.flush(id);
                shared.advance(s, Instant::now());
            }
        });
        self.shared.notify();
    }

    fn clear_buffer(&self) {
        self.with_state(|shared, s| {
            let _ = shared.tracker.on_flush();
            for seg in s.clock.clear() {
                shared.finish(&mut s.file, seg, true);
            }
        });
        self.shared.notify();
    }

    fn pause(&self) {
        self.with_state(|_, s| s.clock.pause());
        self.shared.notify();
    }

    fn resume(&self) {
        {
            lock(&self.shared.state).clock.resume(Instant::now());
        }
        self.shared.notify();
    }

    fn playout(&self) -> &PlayoutTracker {
        &self.shared.tracker
    }
}
