//! [`WavInput`]: a session's audio input read from a WAV file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, ResampleQuality, Resampler, SampleRate, read_wav};
use agents_core::AudioInput;
use tokio::sync::watch;
use tokio::time::Instant;

use super::FileIoError;

/// Longest frame accepted.
const MAX_FRAME: Duration = Duration::from_secs(1);
/// Longest trailing silence accepted (it is held in memory).
const MAX_TRAILING_SILENCE: Duration = Duration::from_secs(600);

/// How fast a [`WavInput`] delivers its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pacing {
    /// One frame per frame duration of the tokio clock, as a microphone would (frame `k` is due `k × 20 ms` after
    /// the first; a late consumer gets the frames it missed at once, without drift). Under a paused tokio clock
    /// this runs as fast as the runtime allows while keeping the session's timers exact.
    #[default]
    RealTime,
    /// Every frame as soon as the consumer polls for it, yielding to the scheduler between frames so the
    /// session's pipeline keeps up (an `AgentSession` drops input frames its activity has no room for, as from a
    /// live input that runs ahead). The session's timers (endpointing delays, interruption timeouts) run on the
    /// clock and so see the file's pauses compressed: see the guide.
    AsFastAsPossible,
}

/// Options of a [`WavInput`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WavInputOptions {
    /// Rate of the frames given to the session (default 16 kHz).
    pub sample_rate: SampleRate,
    /// Channels of the frames given to the session (default 1).
    pub num_channels: u16,
    /// Length of each frame (default 20 ms, at most 1 s).
    pub frame_duration: Duration,
    /// Pacing (default real time).
    pub pacing: Pacing,
    /// Silence appended after the file's audio on each pass, so the last user turn can end (default 1 s, at most
    /// 10 minutes).
    pub trailing_silence: Duration,
    /// Starts over at the end, until the session drops the input (default false).
    pub looping: bool,
}

impl Default for WavInputOptions {
    fn default() -> Self {
        Self {
            sample_rate: SampleRate::HZ_16000,
            num_channels: 1,
            frame_duration: Duration::from_millis(20),
            pacing: Pacing::RealTime,
            trailing_silence: Duration::from_secs(1),
            looping: false,
        }
    }
}

impl WavInputOptions {
    /// Sets the rate of the frames given to the session.
    pub fn with_sample_rate(mut self, rate: SampleRate) -> Self {
        self.sample_rate = rate;
        self
    }
    /// Sets the channel count of the frames given to the session.
    pub fn with_num_channels(mut self, channels: u16) -> Self {
        self.num_channels = channels;
        self
    }
    /// Sets the frame length.
    pub fn with_frame_duration(mut self, d: Duration) -> Self {
        self.frame_duration = d;
        self
    }
    /// Sets the pacing.
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }
    /// Sets the silence appended after the audio.
    pub fn with_trailing_silence(mut self, d: Duration) -> Self {
        self.trailing_silence = d;
        self
    }
    /// Loops over the file until the session drops the input.
    pub fn with_looping(mut self, looping: bool) -> Self {
        self.looping = looping;
        self
    }
}

/// How far a [`WavInput`] got, published on a `watch` channel ([`WavInput::progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct InputProgress {
    /// Audio delivered in the current pass (file audio and trailing silence).
    pub position: Duration,
    /// Length of one pass (file audio and trailing silence).
    pub total: Duration,
    /// Pass number, from 1 (stays 1 without looping).
    pub pass: u32,
    /// Audio delivered over all passes: the input's timeline position.
    pub delivered: Duration,
    /// When the first frame was delivered (tokio clock); `None` before.
    pub started_at: Option<Instant>,
    /// The input ended (last frame delivered, not looping).
    pub finished: bool,
    /// When it ended (tokio clock).
    pub finished_at: Option<Instant>,
    /// The input's pacing.
    pub pacing: Pacing,
}

impl InputProgress {
    /// The position on the input's timeline at `now`, `None` before the first frame. Real time: the time elapsed
    /// since the first frame. Fast: the audio delivered so far (what the session has been given, slightly ahead of
    /// what it processed), and once the input ended, its length plus the time elapsed since.
    pub fn timeline(&self, now: Instant) -> Option<Duration> {
        let started = self.started_at?;
        Some(match (self.pacing, self.finished_at) {
            (Pacing::RealTime, _) => now.saturating_duration_since(started),
            (_, Some(end)) => self.delivered + now.saturating_duration_since(end),
            _ => self.delivered,
        })
    }

    /// Fraction of the current pass delivered, in `[0, 1]`.
    pub fn fraction(&self) -> f64 {
        if self.total.is_zero() {
            return 1.0;
        }
        (self.position.as_secs_f64() / self.total.as_secs_f64()).clamp(0.0, 1.0)
    }
}

/// A WAV file as a session's audio input; see the [module documentation](super).
///
/// The whole file is read and converted when it is opened (integer PCM of 8–32 bits or 32-bit float, any rate and
/// channel count, per `agents_audio::read_wav`): channels are mixed down (or a mono file duplicated), the audio is
/// resampled once over the whole signal (`agents_audio::Resampler`, `High` quality, start-up delay trimmed, so the
/// duration is kept to the sample), then cut in frames of `frame_duration`; the last frame is padded with silence.
#[derive(Debug)]
pub struct WavInput {
    label: String,
    frames: Arc<[AudioFrame]>,
    audio_duration: Duration,
    options: WavInputOptions,
    progress: watch::Sender<InputProgress>,
}

impl WavInput {
    /// Reads and converts `path`. Blocking file I/O: call it before the session starts, or in `spawn_blocking`.
    ///
    /// # Errors
    /// [`FileIoError::ReadWav`] for a missing, malformed, truncated or unsupported file,
    /// [`FileIoError::EmptyInput`], [`FileIoError::InvalidOption`] (zero channels or frame duration, a frame shorter
    /// than one sample), [`FileIoError::Remix`], [`FileIoError::Resample`].
    pub fn open(path: impl AsRef<Path>, options: WavInputOptions) -> Result<Self, FileIoError> {
        let path = path.as_ref();
        let audio = read_wav(path).map_err(|source| FileIoError::ReadWav {
            path: path.to_path_buf(),
            source,
        })?;
        if audio.is_empty() {
            return Err(FileIoError::EmptyInput {
                path: path.to_path_buf(),
            });
        }
        Self::from_frame(format!("wav:{}", path.display()), &audio, options)
    }

    /// An input over audio already in memory (any rate and channel count), converted as [`WavInput::open`] does.
    ///
    /// # Errors
    /// As [`WavInput::open`], without the file errors.
    pub fn from_frame(
        label: impl Into<String>,
        audio: &AudioFrame,
        options: WavInputOptions,
    ) -> Result<Self, FileIoError> {
        if options.num_channels == 0 {
            return Err(FileIoError::InvalidOption(
                "num_channels must be at least 1",
            ));
        }
        let rate = options.sample_rate;
        let per_frame = samples_for(options.frame_duration, rate);
        if per_frame == 0 || options.frame_duration > MAX_FRAME {
            return Err(FileIoError::InvalidOption(
                "frame_duration must hold at least one sample and be at most 1 s",
            ));
        }
        if options.trailing_silence > MAX_TRAILING_SILENCE {
            return Err(FileIoError::InvalidOption(
                "trailing_silence must be at most 10 minutes",
            ));
        }
        let channels = options.num_channels;
        let converted = convert(audio, rate, channels)?;
        let audio_duration = converted.duration();
        let mut data = converted.into_data();
        let silence = samples_for(options.trailing_silence, rate);
        data.resize(data.len() + silence * usize::from(channels), 0);
        let step = per_frame * usize::from(channels);
        let rem = data.len() % step;
        if rem != 0 {
            data.resize(data.len() + (step - rem), 0);
        }
        let frames = data
            .chunks_exact(step)
            .map(|c| AudioFrame::new(c.to_vec(), rate, channels))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| FileIoError::Remix { channels, source })?;
        let total = options.frame_duration * u32::try_from(frames.len()).unwrap_or(u32::MAX);
        let progress = watch::channel(InputProgress {
            total,
            pass: 1,
            pacing: options.pacing,
            ..InputProgress::default()
        })
        .0;
        Ok(Self {
            label: label.into(),
            frames: frames.into(),
            audio_duration,
            options,
            progress,
        })
    }

    /// Duration of the file's audio (without trailing silence).
    pub fn audio_duration(&self) -> Duration {
        self.audio_duration
    }

    /// Duration of one pass: the audio, the trailing silence and the padding of the last frame.
    pub fn pass_duration(&self) -> Duration {
        self.progress.borrow().total
    }

    /// Number of frames in one pass.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// The options.
    pub fn options(&self) -> &WavInputOptions {
        &self.options
    }

    /// A receiver of the delivery progress (it keeps the last value after the input ended).
    pub fn progress(&self) -> watch::Receiver<InputProgress> {
        self.progress.subscribe()
    }

    /// The session's audio input. It ends after the last frame (never when looping); dropping it stops the file.
    pub fn into_audio_input(self) -> AudioInput {
        let Self {
            label,
            frames,
            options,
            progress,
            ..
        } = self;
        let state = Delivery {
            frames,
            index: 0,
            sent: 0,
            start: None,
            options,
            progress,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            let frame = st.next().await?;
            Some((frame, st))
        });
        AudioInput::new(label, stream)
    }
}

/// The state of a delivering input.
struct Delivery {
    frames: Arc<[AudioFrame]>,
    /// Next frame of the pass.
    index: usize,
    /// Frames delivered over all passes.
    sent: u64,
    start: Option<Instant>,
    options: WavInputOptions,
    progress: watch::Sender<InputProgress>,
}

impl Delivery {
    async fn next(&mut self) -> Option<AudioFrame> {
        if self.index >= self.frames.len() {
            if !self.options.looping || self.frames.is_empty() {
                self.progress.send_modify(|p| {
                    p.finished = true;
                    p.finished_at.get_or_insert_with(Instant::now);
                });
                return None;
            }
            self.index = 0;
            self.progress.send_modify(|p| {
                p.pass = p.pass.saturating_add(1);
                p.position = Duration::ZERO;
            });
        }
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        if self.options.pacing == Pacing::RealTime {
            let due = start
                .checked_add(frames_duration(self.options.frame_duration, self.sent))
                .unwrap_or(now);
            if due > now {
                tokio::time::sleep_until(due).await;
            }
        } else if self.sent > 0 {
            // Let the consumer's pipeline run between frames: a session drops input frames its activity has no
            // room for, as it would from a live input that runs ahead.
            tokio::task::yield_now().await;
        }
        let frame = self.frames.get(self.index)?.clone();
        self.index += 1;
        self.sent += 1;
        let position = frames_duration(self.options.frame_duration, self.index as u64);
        let delivered = frames_duration(self.options.frame_duration, self.sent);
        self.progress.send_modify(|p| {
            p.position = position;
            p.delivered = delivered;
            p.started_at = Some(start);
        });
        Some(frame)
    }
}

/// `n` frames of `frame` (saturating; frames are at most 1 s, so this never saturates in practice).
fn frames_duration(frame: Duration, n: u64) -> Duration {
    u32::try_from(n)
        .ok()
        .and_then(|n| frame.checked_mul(n))
        .unwrap_or(Duration::MAX)
}

/// Samples per channel in `d` at `rate`, rounded to the nearest.
pub(crate) fn samples_for(d: Duration, rate: SampleRate) -> usize {
    let n = (d.as_nanos() * u128::from(rate.hz()) + 500_000_000) / 1_000_000_000;
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `audio` at `rate` with `channels` channels: down-mix before resampling, up-mix after.
fn convert(audio: &AudioFrame, rate: SampleRate, channels: u16) -> Result<AudioFrame, FileIoError> {
    let remix = |f: &AudioFrame| {
        f.remix(channels)
            .map_err(|source| FileIoError::Remix { channels, source })
    };
    let pre = if channels < audio.num_channels() {
        remix(audio)?
    } else {
        audio.clone()
    };
    let resampled = if pre.sample_rate() == rate {
        pre
    } else {
        let mut r = Resampler::new(
            pre.sample_rate(),
            rate,
            pre.num_channels(),
            ResampleQuality::High,
        )
        .map_err(FileIoError::Resample)?;
        let mut out = Vec::new();
        r.push_into(pre.data(), &mut out)
            .map_err(FileIoError::Resample)?;
        r.flush_into(&mut out).map_err(FileIoError::Resample)?;
        AudioFrame::new(out, rate, pre.num_channels()).map_err(|source| FileIoError::Remix {
            channels: pre.num_channels(),
            source,
        })?
    };
    if resampled.num_channels() != channels {
        remix(&resampled)
    } else {
        Ok(resampled)
    }
}
