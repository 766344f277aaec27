//! [`FakeVad`]: a [`Vad`] driven by energy or by a script, in audio time.
//!
//! Audio is cut into 32 ms windows at the rate of the stream's first frame (512 samples at 16 kHz), mixed down to
//! mono. Each window gets a probability:
//!
//! - **energy** mode ([`FakeVad::energy`]): `1.0` when the window's RMS (normalized, see [`crate::signal`]) is at
//!   least the threshold (default 0.01), else `0.0`;
//! - **script** mode ([`FakeVad::scripted`]): `1.0` when the window overlaps one of the given speech intervals
//!   (audio time from the stream start), else `0.0`.
//!
//! The state machine is LiveKit's Silero one. Speech starts after `min_speech` of consecutive speech windows
//! (energy default 50 ms; script default 0, so it starts at the end of the first overlapping window) and ends after
//! `min_silence` of consecutive silent windows (energy default 550 ms; script default 0). While not speaking the
//! VAD keeps `prefix_padding` (default 500 ms) of audio before the current run of speech windows.
//!
//! Events: `InferenceDone` for every window (its frame, the probability, `speaking`, and the speech or silence
//! accumulated); `StartOfSpeech` with one frame holding the prefix padding and the speech so far; `EndOfSpeech` with
//! the speech duration, the silence that ended it, and one frame holding the whole segment (padding, speech and the
//! trailing silence). `timestamp` is the audio time at the end of the window, `samples_index` the index of the
//! first sample after it. `EndInput` closes an open segment (`EndOfSpeech`) and ends the stream. A frame of another
//! rate than the first sends [`VadError::SampleRateChanged`] and ends the stream.

use std::fmt;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::vad::{
    Vad, VadCapabilities, VadError, VadEvent, VadEventKind, VadInput, VadStream, VadStreamDriver,
};

use crate::signal::{DEFAULT_SPEECH_THRESHOLD, duration_of, rms_of, samples_for};

/// Window length of the fake (Silero's 512 samples at 16 kHz).
pub const WINDOW: Duration = Duration::from_millis(32);

#[derive(Debug, Clone)]
enum Mode {
    Energy {
        threshold: f32,
    },
    Script {
        intervals: Vec<(Duration, Duration)>,
    },
}

/// A deterministic [`Vad`] (label `fake.VAD`); see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct FakeVad {
    mode: Mode,
    min_speech: Duration,
    min_silence: Duration,
    prefix_padding: Duration,
}

impl Default for FakeVad {
    fn default() -> Self {
        Self::energy()
    }
}

impl FakeVad {
    /// An energy VAD with LiveKit's Silero defaults (min speech 50 ms, min silence 550 ms, padding 500 ms).
    pub fn energy() -> Self {
        Self {
            mode: Mode::Energy {
                threshold: DEFAULT_SPEECH_THRESHOLD,
            },
            min_speech: Duration::from_millis(50),
            min_silence: Duration::from_millis(550),
            prefix_padding: Duration::from_millis(500),
        }
    }

    /// A VAD that hears speech exactly in `intervals` (`(start, end)` in audio time), with no minimum durations.
    pub fn scripted(intervals: impl IntoIterator<Item = (Duration, Duration)>) -> Self {
        Self {
            mode: Mode::Script {
                intervals: intervals.into_iter().collect(),
            },
            min_speech: Duration::ZERO,
            min_silence: Duration::ZERO,
            prefix_padding: Duration::from_millis(500),
        }
    }

    /// Sets the energy threshold (energy mode only).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        if let Mode::Energy { threshold: t } = &mut self.mode {
            *t = threshold;
        }
        self
    }

    /// Sets the speech needed to start a segment.
    pub fn with_min_speech(mut self, d: Duration) -> Self {
        self.min_speech = d;
        self
    }

    /// Sets the silence needed to end a segment.
    pub fn with_min_silence(mut self, d: Duration) -> Self {
        self.min_silence = d;
        self
    }

    /// Sets the audio kept before speech.
    pub fn with_prefix_padding(mut self, d: Duration) -> Self {
        self.prefix_padding = d;
        self
    }
}

impl Vad for FakeVad {
    fn label(&self) -> &str {
        "fake.VAD"
    }

    fn capabilities(&self) -> VadCapabilities {
        VadCapabilities::new(WINDOW)
    }

    fn stream(&self) -> Result<VadStream, VadError> {
        let (stream, driver) = VadStream::channel();
        let worker = Worker {
            vad: self.clone(),
            driver,
            rate: None,
            window: Vec::new(),
            window_len: 0,
            samples: 0,
            buffer: Vec::new(),
            speaking: false,
            speech_run: Duration::ZERO,
            silence_run: Duration::ZERO,
            speech_duration: Duration::ZERO,
            silence_duration: Duration::ZERO,
        };
        tokio::spawn(worker.run());
        Ok(stream)
    }
}

struct Worker {
    vad: FakeVad,
    driver: VadStreamDriver,
    rate: Option<SampleRate>,
    window: Vec<i16>,
    window_len: usize,
    samples: u64,
    /// Mono audio of the current segment (or the prefix padding while silent).
    buffer: Vec<i16>,
    speaking: bool,
    speech_run: Duration,
    silence_run: Duration,
    speech_duration: Duration,
    silence_duration: Duration,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("speaking", &self.speaking)
            .finish_non_exhaustive()
    }
}

impl Worker {
    async fn run(mut self) {
        while let Some(input) = self.driver.recv().await {
            match input {
                VadInput::Frame(frame) => {
                    if !self.on_frame(&frame).await {
                        return;
                    }
                }
                VadInput::Flush => {}
                _ => {
                    if self.speaking {
                        let _ = self.end_of_speech().await;
                    }
                    return;
                }
            }
        }
    }

    fn rate(&self) -> SampleRate {
        self.rate.unwrap_or(SampleRate::HZ_16000)
    }

    fn frame(&self, data: Vec<i16>) -> Vec<AudioFrame> {
        AudioFrame::new(data, self.rate(), 1).map_or_else(|_| Vec::new(), |f| vec![f])
    }

    fn event(&self, kind: VadEventKind, probability: f32) -> VadEvent {
        let mut e = VadEvent::new(kind, duration_of(self.samples, self.rate()));
        e.samples_index = self.samples;
        e.speech_duration = self.speech_duration;
        e.silence_duration = self.silence_duration;
        e.probability = probability;
        e.speaking = self.speaking;
        e
    }

    async fn send(&self, e: VadEvent) -> bool {
        self.driver.send(Ok(e)).await.is_ok()
    }

    async fn on_frame(&mut self, frame: &AudioFrame) -> bool {
        let rate = *self.rate.get_or_insert(frame.sample_rate());
        if rate != frame.sample_rate() {
            let _ = self
                .driver
                .send(Err(VadError::SampleRateChanged {
                    expected: rate.hz(),
                    actual: frame.sample_rate().hz(),
                }))
                .await;
            return false;
        }
        if self.window_len == 0 {
            self.window_len = samples_for(WINDOW, rate).max(1);
        }
        let channels = usize::from(frame.num_channels()).max(1);
        for chunk in frame.data().chunks(channels) {
            let sum: i32 = chunk.iter().map(|&s| i32::from(s)).sum();
            let mono = sum / i32::try_from(channels).unwrap_or(1);
            self.window.push(i16::try_from(mono).unwrap_or(0));
            if self.window.len() >= self.window_len && !self.on_window().await {
                return false;
            }
        }
        true
    }

    fn probability(&self, start: u64, end: u64) -> f32 {
        match &self.vad.mode {
            Mode::Energy { threshold } => {
                if rms_of(&self.window) >= *threshold {
                    1.0
                } else {
                    0.0
                }
            }
            Mode::Script { intervals } => {
                let (s, e) = (
                    duration_of(start, self.rate()),
                    duration_of(end, self.rate()),
                );
                if intervals.iter().any(|&(a, b)| s < b && e > a) {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    async fn on_window(&mut self) -> bool {
        let start = self.samples;
        self.samples += self.window_len as u64;
        let p = self.probability(start, self.samples);
        let window = std::mem::take(&mut self.window);
        let window_duration = duration_of(self.window_len as u64, self.rate());
        self.buffer.extend_from_slice(&window);
        if self.speaking {
            self.speech_duration += window_duration;
        } else {
            self.silence_duration += window_duration;
        }
        let mut done = self.event(VadEventKind::InferenceDone, p);
        done.frames = self.frame(window);
        if !self.send(done).await {
            return false;
        }
        if p >= 0.5 {
            self.speech_run += window_duration;
            self.silence_run = Duration::ZERO;
            if !self.speaking && self.speech_run >= self.vad.min_speech {
                self.speaking = true;
                self.silence_duration = Duration::ZERO;
                self.speech_duration = self.speech_run;
                let mut e = self.event(VadEventKind::StartOfSpeech, p);
                e.frames = self.frame(self.buffer.clone());
                return self.send(e).await;
            }
        } else {
            self.silence_run += window_duration;
            self.speech_run = Duration::ZERO;
            if !self.speaking {
                let keep = samples_for(self.vad.prefix_padding, self.rate());
                if self.buffer.len() > keep {
                    self.buffer.drain(..self.buffer.len() - keep);
                }
            } else if self.silence_run >= self.vad.min_silence {
                return self.end_of_speech().await;
            }
        }
        true
    }

    async fn end_of_speech(&mut self) -> bool {
        self.speaking = false;
        self.silence_duration = self.silence_run;
        let mut e = self.event(VadEventKind::EndOfSpeech, 0.0);
        let segment = std::mem::take(&mut self.buffer);
        e.frames = self.frame(segment);
        self.speech_duration = Duration::ZERO;
        self.send(e).await
    }
}
