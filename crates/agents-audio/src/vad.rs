//! The VAD state machine: per-window speech probabilities in, start/end-of-speech decisions out.
//!
//! This is the model-independent half of a voice activity detector. A model (Silero, or anything that scores
//! fixed-length windows) produces one speech probability per window; [`VadStateMachine`] smooths it, applies
//! hysteresis and the minimum speech/silence durations, keeps the speech audio (with prefix padding) and reports
//! [`VadStep`]s. It is pure and deterministic: no clock, no model, no I/O, so it is tested with synthetic
//! probability sequences.
//!
//! The rules follow LiveKit Agents' Silero plugin (`livekit-plugins-silero/livekit/plugins/silero/vad.py`):
//!
//! * The raw probability goes through an exponential filter, `p = a·p_prev + (1−a)·raw` with `a = 0.35`
//!   ([`VadOptions::smoothing`]); the first window passes unfiltered.
//! * A window counts as speech when `p ≥ activation_threshold`, or, while speaking, when
//!   `p > deactivation_threshold` (default `max(activation − 0.15, 0.01)`): hysteresis, so speech does not flicker
//!   off on a dip.
//! * Speech starts once consecutive speech windows add up to `min_speech_duration` (0.05 s); it ends once
//!   consecutive silence windows add up to `min_silence_duration` (0.55 s).
//! * The speech buffer holds `prefix_padding_duration` (0.5 s) of audio before the speech started, then the speech,
//!   capped at `max_buffered_speech` (60 s) plus the padding; audio past the cap is dropped (logged once).
//! * Every window reports an [`VadStepKind::InferenceDone`] step with the window's audio; start and end steps carry
//!   the buffered speech.

use std::time::Duration;

use crate::frame::{AudioFrame, SampleRate};

/// Settings of the VAD state machine. Defaults are LiveKit's Silero defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct VadOptions {
    /// Speech must last this long before [`VadStepKind::StartOfSpeech`] (default 50 ms).
    pub min_speech_duration: Duration,
    /// Silence must last this long before [`VadStepKind::EndOfSpeech`] (default 550 ms).
    pub min_silence_duration: Duration,
    /// Audio kept from before the speech started and delivered with it (default 500 ms).
    pub prefix_padding_duration: Duration,
    /// Most speech kept for one segment, padding not included (default 60 s).
    pub max_buffered_speech: Duration,
    /// Probability at or above which a window starts speech (default 0.5).
    pub activation_threshold: f32,
    /// Probability above which a window continues speech once speaking; `None` means
    /// `max(activation_threshold − 0.15, 0.01)`.
    pub deactivation_threshold: Option<f32>,
    /// Weight of the previous smoothed probability in the exponential filter, in `[0, 1)`; 0 disables smoothing
    /// (default 0.35).
    pub smoothing: f32,
}

impl Default for VadOptions {
    fn default() -> Self {
        Self {
            min_speech_duration: Duration::from_millis(50),
            min_silence_duration: Duration::from_millis(550),
            prefix_padding_duration: Duration::from_millis(500),
            max_buffered_speech: Duration::from_secs(60),
            activation_threshold: 0.5,
            deactivation_threshold: None,
            smoothing: 0.35,
        }
    }
}

/// Invalid [`VadOptions`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VadOptionsError {
    /// A threshold is outside `[0, 1]` or not a number.
    #[error("{name} must be within [0, 1], got {value}")]
    ThresholdOutOfRange {
        /// Which threshold.
        name: &'static str,
        /// The value given.
        value: f32,
    },
    /// The deactivation threshold is above the activation threshold.
    #[error("deactivation threshold {deactivation} is above activation threshold {activation}")]
    DeactivationAboveActivation {
        /// Activation threshold.
        activation: f32,
        /// Deactivation threshold.
        deactivation: f32,
    },
    /// The smoothing factor is outside `[0, 1)` or not a number.
    #[error("smoothing must be within [0, 1), got {0}")]
    SmoothingOutOfRange(f32),
}

impl VadOptions {
    /// Sets [`VadOptions::min_speech_duration`].
    #[must_use]
    pub fn with_min_speech_duration(mut self, d: Duration) -> Self {
        self.min_speech_duration = d;
        self
    }

    /// Sets [`VadOptions::min_silence_duration`].
    #[must_use]
    pub fn with_min_silence_duration(mut self, d: Duration) -> Self {
        self.min_silence_duration = d;
        self
    }

    /// Sets [`VadOptions::prefix_padding_duration`].
    #[must_use]
    pub fn with_prefix_padding_duration(mut self, d: Duration) -> Self {
        self.prefix_padding_duration = d;
        self
    }

    /// Sets [`VadOptions::max_buffered_speech`].
    #[must_use]
    pub fn with_max_buffered_speech(mut self, d: Duration) -> Self {
        self.max_buffered_speech = d;
        self
    }

    /// Sets [`VadOptions::activation_threshold`].
    #[must_use]
    pub fn with_activation_threshold(mut self, t: f32) -> Self {
        self.activation_threshold = t;
        self
    }

    /// Sets [`VadOptions::deactivation_threshold`].
    #[must_use]
    pub fn with_deactivation_threshold(mut self, t: Option<f32>) -> Self {
        self.deactivation_threshold = t;
        self
    }

    /// Sets [`VadOptions::smoothing`].
    #[must_use]
    pub fn with_smoothing(mut self, a: f32) -> Self {
        self.smoothing = a;
        self
    }

    /// The deactivation threshold in effect.
    pub fn effective_deactivation_threshold(&self) -> f32 {
        self.deactivation_threshold
            .unwrap_or((self.activation_threshold - 0.15).max(0.01))
    }

    /// Checks the thresholds and the smoothing factor.
    ///
    /// # Errors
    /// [`VadOptionsError`] naming the bad setting.
    pub fn validate(&self) -> Result<(), VadOptionsError> {
        let in_unit = |v: f32| (0.0..=1.0).contains(&v);
        if !in_unit(self.activation_threshold) {
            return Err(VadOptionsError::ThresholdOutOfRange {
                name: "activation_threshold",
                value: self.activation_threshold,
            });
        }
        if let Some(d) = self.deactivation_threshold {
            if !in_unit(d) {
                return Err(VadOptionsError::ThresholdOutOfRange {
                    name: "deactivation_threshold",
                    value: d,
                });
            }
            if d > self.activation_threshold {
                return Err(VadOptionsError::DeactivationAboveActivation {
                    activation: self.activation_threshold,
                    deactivation: d,
                });
            }
        }
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(VadOptionsError::SmoothingOutOfRange(self.smoothing));
        }
        Ok(())
    }
}

/// What a [`VadStep`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VadStepKind {
    /// Speech started (after the minimum speech duration).
    StartOfSpeech,
    /// One window was processed.
    InferenceDone,
    /// Speech ended (after the minimum silence duration, or at the end of input).
    EndOfSpeech,
}

/// One output of the state machine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VadStep {
    /// What happened.
    pub kind: VadStepKind,
    /// Model-rate samples processed so far (end of this window).
    pub samples_index: u64,
    /// Stream time at the end of this window.
    pub timestamp: Duration,
    /// Speech in the current segment; for `StartOfSpeech`, the speech run that triggered it; for `EndOfSpeech`,
    /// the segment's speech without the trailing silence that ended it.
    pub speech_duration: Duration,
    /// Silence since speech last stopped; for `EndOfSpeech`, the silence run that triggered it.
    pub silence_duration: Duration,
    /// Smoothed speech probability of this window.
    pub probability: f32,
    /// Model output before smoothing.
    pub raw_probability: f32,
    /// Time the model took for this window (as reported by the caller).
    pub inference_duration: Duration,
    /// Whether the state machine is in the speaking state after this window.
    pub speaking: bool,
    /// `InferenceDone`: this window's audio; start/end: the buffered speech including prefix padding.
    pub frames: Vec<AudioFrame>,
}

/// One scored window, as given to [`VadStateMachine::process`].
#[derive(Debug, Clone, Copy)]
pub struct VadWindow<'a> {
    /// Model output for the window, in `[0, 1]` (values outside are clamped, NaN counts as 0).
    pub probability: f32,
    /// The window's audio at the state machine's audio rate, mono (may differ in length from the model window
    /// when the model runs at another rate).
    pub audio: &'a [i16],
    /// Time the model took for this window.
    pub inference_duration: Duration,
}

/// The VAD state machine. See the [module docs](self) for the rules.
#[derive(Debug, Clone)]
pub struct VadStateMachine {
    options: VadOptions,
    audio_rate: SampleRate,
    window_samples: u64,
    window_duration: Duration,
    samples_index: u64,
    timestamp: Duration,
    smoothed: Option<f32>,
    speaking: bool,
    speech_duration: Duration,
    silence_duration: Duration,
    speech_run: Duration,
    silence_run: Duration,
    /// Consecutive trailing windows whose *raw* probability is below the deactivation threshold.
    raw_silence_run: Duration,
    buffer: Vec<i16>,
    buffer_full_logged: bool,
}

impl VadStateMachine {
    /// A state machine for windows of `window_samples` at `model_rate`, keeping audio at `audio_rate`.
    ///
    /// # Errors
    /// [`VadOptionsError`] when `options` are invalid.
    pub fn new(
        options: VadOptions,
        window_samples: u32,
        model_rate: SampleRate,
        audio_rate: SampleRate,
    ) -> Result<Self, VadOptionsError> {
        options.validate()?;
        let window_duration = Duration::from_nanos(
            u64::from(window_samples) * 1_000_000_000 / u64::from(model_rate.hz()),
        );
        Ok(Self {
            options,
            audio_rate,
            window_samples: u64::from(window_samples),
            window_duration,
            samples_index: 0,
            timestamp: Duration::ZERO,
            smoothed: None,
            speaking: false,
            speech_duration: Duration::ZERO,
            silence_duration: Duration::ZERO,
            speech_run: Duration::ZERO,
            silence_run: Duration::ZERO,
            raw_silence_run: Duration::ZERO,
            buffer: Vec::new(),
            buffer_full_logged: false,
        })
    }

    /// The options in effect.
    pub fn options(&self) -> &VadOptions {
        &self.options
    }

    /// Replaces the options; they apply from the next window. The buffered speech is kept (trimmed or extended
    /// to the new limits as it grows).
    ///
    /// # Errors
    /// [`VadOptionsError`] when `options` are invalid (the old ones stay).
    pub fn set_options(&mut self, options: VadOptions) -> Result<(), VadOptionsError> {
        options.validate()?;
        if options.max_buffered_speech > self.options.max_buffered_speech {
            self.buffer_full_logged = false;
        }
        self.options = options;
        Ok(())
    }

    /// Duration of one window.
    pub fn window_duration(&self) -> Duration {
        self.window_duration
    }

    /// Whether the state machine is in the speaking state.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Rate of the audio the state machine keeps.
    pub fn audio_rate(&self) -> SampleRate {
        self.audio_rate
    }

    fn samples_for(&self, d: Duration) -> usize {
        let n = d.as_nanos() * u128::from(self.audio_rate.hz()) / 1_000_000_000;
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    fn frames(&self, samples: &[i16]) -> Vec<AudioFrame> {
        AudioFrame::new(samples.to_vec(), self.audio_rate, 1)
            .into_iter()
            .collect()
    }

    fn step(&self, kind: VadStepKind, raw: f32, p: f32, inference: Duration) -> VadStep {
        VadStep {
            kind,
            samples_index: self.samples_index,
            timestamp: self.timestamp,
            speech_duration: self.speech_duration,
            silence_duration: self.silence_duration,
            probability: p,
            raw_probability: raw,
            inference_duration: inference,
            speaking: self.speaking,
            frames: Vec::new(),
        }
    }

    /// Keeps only the prefix padding at the end of the buffer.
    fn reset_buffer(&mut self) {
        let pad = self.samples_for(self.options.prefix_padding_duration);
        if self.buffer.len() > pad {
            let cut = self.buffer.len() - pad;
            self.buffer.drain(..cut);
        }
        self.buffer_full_logged = false;
    }

    fn append_audio(&mut self, audio: &[i16]) {
        let cap = self
            .samples_for(self.options.max_buffered_speech)
            .saturating_add(self.samples_for(self.options.prefix_padding_duration));
        let room = cap.saturating_sub(self.buffer.len());
        let take = room.min(audio.len());
        self.buffer.extend_from_slice(&audio[..take]);
        if take < audio.len() && !self.buffer_full_logged {
            self.buffer_full_logged = true;
            tracing::warn!(
                max_buffered_speech = ?self.options.max_buffered_speech,
                "max_buffered_speech reached, later audio of this speech segment is not kept"
            );
        }
    }

    /// Processes one scored window, appending one `InferenceDone` step and possibly a start or end step to `out`.
    pub fn process(&mut self, window: VadWindow<'_>, out: &mut Vec<VadStep>) {
        let raw = if window.probability.is_nan() {
            0.0
        } else {
            window.probability.clamp(0.0, 1.0)
        };
        let a = self.options.smoothing;
        let p = match self.smoothed {
            Some(prev) => a * prev + (1.0 - a) * raw,
            None => raw,
        };
        self.smoothed = Some(p);
        if raw > self.options.effective_deactivation_threshold() {
            self.raw_silence_run = Duration::ZERO;
        } else {
            self.raw_silence_run += self.window_duration;
        }

        self.samples_index += self.window_samples;
        self.timestamp += self.window_duration;
        self.append_audio(window.audio);

        if self.speaking {
            self.speech_duration += self.window_duration;
        } else {
            self.silence_duration += self.window_duration;
        }
        let mut done = self.step(
            VadStepKind::InferenceDone,
            raw,
            p,
            window.inference_duration,
        );
        done.frames = self.frames(window.audio);
        out.push(done);

        let is_speech = p >= self.options.activation_threshold
            || (self.speaking && p > self.options.effective_deactivation_threshold());
        if is_speech {
            self.speech_run += self.window_duration;
            self.silence_run = Duration::ZERO;
            if !self.speaking && self.speech_run >= self.options.min_speech_duration {
                self.speaking = true;
                self.silence_duration = Duration::ZERO;
                self.speech_duration = self.speech_run;
                let mut start = self.step(VadStepKind::StartOfSpeech, raw, p, Duration::ZERO);
                start.frames = self.frames(&self.buffer);
                out.push(start);
            }
        } else {
            self.silence_run += self.window_duration;
            self.speech_run = Duration::ZERO;
            if !self.speaking {
                self.reset_buffer();
            } else if self.silence_run >= self.options.min_silence_duration {
                out.push(self.end_of_speech(raw, p, self.trailing_silence()));
            }
        }
    }

    /// The silence that ends a segment, measured from the last window the model itself scored as speech.
    ///
    /// The decision to end speech uses the smoothed probability (robust to dips inside words), but the smoothing
    /// lags the model by one or two windows when speech stops; measuring the boundary on the raw probability keeps
    /// the reported end of speech, and the end-of-turn timers that count from it, that much closer to the truth.
    /// LiveKit reports the smoothed run, about 64 ms later (see docs/vad.md).
    fn trailing_silence(&self) -> Duration {
        self.silence_run
            .max(self.raw_silence_run.min(self.speech_duration))
    }

    fn end_of_speech(&mut self, raw: f32, p: f32, silence: Duration) -> VadStep {
        self.speaking = false;
        // The segment's speech, without the trailing silence that ended it.
        self.speech_duration = self.speech_duration.saturating_sub(silence);
        self.silence_duration = silence;
        let mut end = self.step(VadStepKind::EndOfSpeech, raw, p, Duration::ZERO);
        end.frames = self.frames(&self.buffer);
        self.speech_duration = Duration::ZERO;
        self.reset_buffer();
        end
    }

    /// Forgets the speech state (speaking flag, runs, smoothing, buffered audio) but keeps the timeline
    /// (`samples_index`, `timestamp`), e.g. after a flush. Call [`VadStateMachine::finish`] first to close open
    /// speech.
    pub fn reset(&mut self) {
        self.smoothed = None;
        self.speaking = false;
        self.speech_duration = Duration::ZERO;
        self.silence_duration = Duration::ZERO;
        self.speech_run = Duration::ZERO;
        self.silence_run = Duration::ZERO;
        self.raw_silence_run = Duration::ZERO;
        self.buffer.clear();
        self.buffer_full_logged = false;
    }

    /// Ends the input: when speaking, returns the closing `EndOfSpeech` (so every start has an end), with the
    /// silence run so far as its silence duration.
    pub fn finish(&mut self) -> Option<VadStep> {
        if !self.speaking {
            return None;
        }
        let p = self.smoothed.unwrap_or(0.0);
        Some(self.end_of_speech(p, p, self.trailing_silence()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS32: Duration = Duration::from_millis(32);

    fn machine(options: VadOptions) -> VadStateMachine {
        match VadStateMachine::new(options, 512, SampleRate::HZ_16000, SampleRate::HZ_16000) {
            Ok(m) => m,
            Err(e) => panic!("options: {e}"),
        }
    }

    /// Feeds `probs`, each window filled with its index (so audio can be traced), returns all steps.
    fn feed(m: &mut VadStateMachine, probs: &[f32], first_index: i16) -> Vec<VadStep> {
        let mut out = Vec::new();
        for (i, &p) in probs.iter().enumerate() {
            let audio = vec![first_index + i as i16; 512];
            m.process(
                VadWindow {
                    probability: p,
                    audio: &audio,
                    inference_duration: Duration::from_micros(60),
                },
                &mut out,
            );
        }
        out
    }

    fn marks(steps: &[VadStep]) -> Vec<(VadStepKind, Duration)> {
        steps
            .iter()
            .filter(|s| s.kind != VadStepKind::InferenceDone)
            .map(|s| (s.kind, s.timestamp))
            .collect()
    }

    fn no_smoothing() -> VadOptions {
        VadOptions::default().with_smoothing(0.0)
    }

    #[test]
    fn defaults_are_livekits() {
        let o = VadOptions::default();
        assert_eq!(o.min_speech_duration, Duration::from_millis(50));
        assert_eq!(o.min_silence_duration, Duration::from_millis(550));
        assert_eq!(o.prefix_padding_duration, Duration::from_millis(500));
        assert_eq!(o.max_buffered_speech, Duration::from_secs(60));
        assert_eq!(o.activation_threshold, 0.5);
        assert!((o.effective_deactivation_threshold() - 0.35).abs() < 1e-6);
        assert_eq!(
            VadOptions::default()
                .with_activation_threshold(0.1)
                .effective_deactivation_threshold(),
            0.01
        );
    }

    #[test]
    fn end_of_speech_silence_counts_from_the_last_raw_speech_window() {
        // With the default 0.35 smoothing, after 20 windows at 1.0 the model drops to 0.2 (below the 0.35
        // deactivation threshold): the smoothed probability is 0.35 * 1.0 + 0.65 * 0.2 = 0.48 in window 21, still
        // speech, and 0.298 from window 22, so the smoothed silence run starts one window after the model's.
        let mut m = machine(VadOptions::default());
        let mut probs = vec![1.0; 20];
        probs.extend([0.2; 30]);
        let steps = feed(&mut m, &probs, 0);
        let end = steps
            .iter()
            .find(|s| s.kind == VadStepKind::EndOfSpeech)
            .cloned();
        let Some(end) = end else {
            panic!("no end of speech in {:?}", marks(&steps))
        };
        // The decision still waits for 18 smoothed-silent windows (550 ms), windows 22 to 39 ...
        assert_eq!(end.timestamp, MS32 * 39);
        // ... but the boundary is the end of window 20, where the model itself stopped scoring speech
        // (the smoothed run would put it one window later).
        assert_eq!(end.timestamp - end.silence_duration, MS32 * 20);
        assert_eq!(end.speech_duration, MS32 * 20);
    }

    #[test]
    fn every_window_reports_inference_with_its_audio() {
        let mut m = machine(no_smoothing());
        let steps = feed(&mut m, &[0.1, 0.2, 0.3], 7);
        assert_eq!(steps.len(), 3);
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(s.kind, VadStepKind::InferenceDone);
            assert_eq!(s.samples_index, 512 * (i as u64 + 1));
            assert_eq!(s.timestamp, MS32 * (i as u32 + 1));
            assert_eq!(s.frames.len(), 1);
            assert_eq!(s.frames[0].data(), &[7 + i as i16; 512][..]);
            assert_eq!(s.inference_duration, Duration::from_micros(60));
            assert!(!s.speaking);
        }
        assert_eq!(steps[2].silence_duration, MS32 * 3);
    }

    #[test]
    fn speech_starts_after_min_speech_and_ends_after_min_silence() {
        let mut m = machine(no_smoothing());
        // 10 silent windows, 20 speech windows, 20 silent windows.
        let mut probs = vec![0.0; 10];
        probs.extend([0.9; 20]);
        probs.extend([0.0; 20]);
        let steps = feed(&mut m, &probs, 0);
        // 50 ms min speech = 2 windows (64 ms) -> start at the end of window 12 (index 11).
        // 550 ms min silence = 18 windows (576 ms) -> end at the end of window 48 (index 47).
        assert_eq!(
            marks(&steps),
            vec![
                (VadStepKind::StartOfSpeech, MS32 * 12),
                (VadStepKind::EndOfSpeech, MS32 * 48)
            ]
        );
        let start = steps
            .iter()
            .find(|s| s.kind == VadStepKind::StartOfSpeech)
            .cloned();
        let Some(start) = start else {
            panic!("no start")
        };
        assert_eq!(start.speech_duration, MS32 * 2);
        assert_eq!(start.silence_duration, Duration::ZERO);
        assert!(start.speaking);
        let Some(end) = steps.iter().find(|s| s.kind == VadStepKind::EndOfSpeech) else {
            panic!("no end")
        };
        assert_eq!(end.silence_duration, MS32 * 18);
        // Windows 11..=48 were in the segment (38 windows), 18 of them the closing silence.
        assert_eq!(end.speech_duration, MS32 * 20);
        assert!(!end.speaking);
        // The inference step of the window before the end counts speech time: 2 (start) + 35 windows.
        let before_end = &steps[steps.len() - 2 - 2];
        assert_eq!(before_end.kind, VadStepKind::InferenceDone);
        assert!(before_end.speaking);
    }

    #[test]
    fn start_frames_hold_prefix_padding_then_speech() {
        let mut m = machine(no_smoothing());
        let mut probs = vec![0.0; 30];
        probs.extend([0.9; 2]);
        let steps = feed(&mut m, &probs, 0);
        let Some(start) = steps.iter().find(|s| s.kind == VadStepKind::StartOfSpeech) else {
            panic!("no start")
        };
        let data = start.frames[0].data();
        // 500 ms padding = 8000 samples at 16 kHz, then 2 speech windows of 512.
        assert_eq!(data.len(), 8000 + 1024);
        assert_eq!(start.frames[0].sample_rate(), SampleRate::HZ_16000);
        // The padding ends with whole silent windows 15..=29 and begins inside window 14.
        assert_eq!(data[0], 14);
        assert_eq!(data[8000 - 1], 29);
        assert_eq!(data[8000], 30);
        assert_eq!(data[8000 + 1023], 31);
    }

    #[test]
    fn end_frames_hold_padding_speech_and_trailing_silence() {
        let mut m = machine(no_smoothing());
        let mut probs = vec![0.0; 20];
        probs.extend([0.9; 5]);
        probs.extend([0.0; 18]);
        let steps = feed(&mut m, &probs, 0);
        let Some(end) = steps.iter().find(|s| s.kind == VadStepKind::EndOfSpeech) else {
            panic!("no end")
        };
        assert_eq!(end.frames[0].data().len(), 8000 + 5 * 512 + 18 * 512);
        // After the end the buffer is cut back to the padding.
        assert_eq!(m.buffer.len(), 8000);
    }

    #[test]
    fn short_blip_below_min_speech_is_not_speech() {
        let mut m = machine(no_smoothing().with_min_speech_duration(Duration::from_millis(100)));
        let steps = feed(&mut m, &[0.0, 0.9, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0], 0);
        // 2 windows (64 ms) < 100 ms: nothing; 3 windows (96 ms) < 100 ms: nothing.
        assert!(marks(&steps).is_empty());
        let steps = feed(&mut m, &[0.9, 0.9, 0.9, 0.9], 0);
        assert_eq!(marks(&steps), vec![(VadStepKind::StartOfSpeech, MS32 * 12)]);
    }

    #[test]
    fn hysteresis_keeps_speech_above_deactivation() {
        let mut m = machine(no_smoothing());
        // Start with 0.9, then hover at 0.4: below activation (0.5) but above deactivation (0.35).
        let mut probs = vec![0.9; 3];
        probs.extend([0.4; 40]);
        let steps = feed(&mut m, &probs, 0);
        assert_eq!(marks(&steps), vec![(VadStepKind::StartOfSpeech, MS32 * 2)]);
        assert!(m.is_speaking());
        // 0.34 is below deactivation: 18 windows end it.
        let steps = feed(&mut m, &[0.34; 18], 0);
        assert_eq!(marks(&steps), vec![(VadStepKind::EndOfSpeech, MS32 * 61)]);
        // And 0.4 while not speaking does not start speech.
        let steps = feed(&mut m, &[0.4; 10], 0);
        assert!(marks(&steps).is_empty());
    }

    #[test]
    fn silence_dip_shorter_than_min_silence_keeps_one_segment() {
        let mut m = machine(no_smoothing());
        let mut probs = vec![0.9; 5];
        probs.extend([0.0; 17]); // 544 ms < 550 ms
        probs.extend([0.9; 5]);
        probs.extend([0.0; 18]);
        let steps = feed(&mut m, &probs, 0);
        assert_eq!(
            marks(&steps),
            vec![
                (VadStepKind::StartOfSpeech, MS32 * 2),
                (VadStepKind::EndOfSpeech, MS32 * 45)
            ]
        );
    }

    #[test]
    fn exp_filter_smooths_probabilities() {
        let mut m = machine(VadOptions::default());
        let steps = feed(&mut m, &[1.0, 0.0, 0.0], 0);
        assert_eq!(steps[0].probability, 1.0);
        assert!((steps[1].probability - 0.35).abs() < 1e-6);
        assert!((steps[2].probability - 0.1225).abs() < 1e-6);
        assert_eq!(steps[2].raw_probability, 0.0);
        // A single 0.6 window after silence is smoothed to 0.39 and does not count as speech.
        let mut m = machine(VadOptions::default());
        let steps = feed(&mut m, &[0.0, 0.6, 0.6, 0.6], 0);
        assert!((steps[1].probability - 0.39).abs() < 1e-6);
        // 0.6·0.35·0.39... second 0.6: 0.35·0.39 + 0.65·0.6 = 0.5265 -> speech from window 3, start at window 4.
        assert_eq!(marks(&steps), vec![(VadStepKind::StartOfSpeech, MS32 * 4)]);
    }

    #[test]
    fn max_buffered_speech_caps_the_segment_audio() {
        let mut m = machine(
            no_smoothing()
                .with_max_buffered_speech(Duration::from_millis(320))
                .with_prefix_padding_duration(Duration::ZERO),
        );
        let mut probs = vec![0.9; 20];
        probs.extend([0.0; 18]);
        let steps = feed(&mut m, &probs, 0);
        let Some(end) = steps.iter().find(|s| s.kind == VadStepKind::EndOfSpeech) else {
            panic!("no end")
        };
        assert_eq!(end.frames[0].data().len(), 5120);
        // Inference steps still carry their windows.
        assert!(
            steps
                .iter()
                .filter(|s| s.kind == VadStepKind::InferenceDone)
                .all(|s| s.frames[0].data().len() == 512)
        );
    }

    #[test]
    fn options_update_mid_stream_applies_to_next_window() {
        let mut m = machine(no_smoothing());
        let steps = feed(&mut m, &[0.9; 5], 0);
        assert_eq!(marks(&steps).len(), 1);
        let faster = no_smoothing().with_min_silence_duration(Duration::from_millis(64));
        assert!(m.set_options(faster).is_ok());
        let steps = feed(&mut m, &[0.0, 0.0], 0);
        assert_eq!(marks(&steps), vec![(VadStepKind::EndOfSpeech, MS32 * 7)]);
        // Raising the activation threshold: 0.6 no longer starts speech.
        assert!(
            m.set_options(no_smoothing().with_activation_threshold(0.7))
                .is_ok()
        );
        assert!(marks(&feed(&mut m, &[0.6; 10], 0)).is_empty());
        // Invalid options are refused and the old ones stay.
        assert_eq!(
            m.set_options(no_smoothing().with_activation_threshold(1.5)),
            Err(VadOptionsError::ThresholdOutOfRange {
                name: "activation_threshold",
                value: 1.5
            })
        );
        assert_eq!(m.options().activation_threshold, 0.7);
    }

    #[test]
    fn invalid_options_are_refused() {
        assert!(matches!(
            VadOptions::default()
                .with_deactivation_threshold(Some(0.8))
                .validate(),
            Err(VadOptionsError::DeactivationAboveActivation { .. })
        ));
        assert!(matches!(
            VadOptions::default().with_smoothing(1.0).validate(),
            Err(VadOptionsError::SmoothingOutOfRange(_))
        ));
        assert!(matches!(
            VadOptions::default()
                .with_activation_threshold(f32::NAN)
                .validate(),
            Err(VadOptionsError::ThresholdOutOfRange { .. })
        ));
        assert!(
            VadStateMachine::new(
                VadOptions::default().with_smoothing(-0.1),
                512,
                SampleRate::HZ_16000,
                SampleRate::HZ_16000
            )
            .is_err()
        );
    }

    #[test]
    fn nan_and_out_of_range_probabilities_are_sanitised() {
        let mut m = machine(no_smoothing());
        let steps = feed(&mut m, &[f32::NAN, 7.0, -1.0], 0);
        assert_eq!(steps[0].probability, 0.0);
        assert_eq!(steps[1].probability, 1.0);
        assert_eq!(steps[2].probability, 0.0);
    }

    #[test]
    fn finish_closes_open_speech() {
        let mut m = machine(no_smoothing());
        feed(&mut m, &[0.9; 4], 0);
        let Some(end) = m.finish() else {
            panic!("no end")
        };
        assert_eq!(end.kind, VadStepKind::EndOfSpeech);
        assert_eq!(end.timestamp, MS32 * 4);
        assert_eq!(end.frames[0].data().len(), 4 * 512);
        assert!(m.finish().is_none());
    }

    #[test]
    fn reset_forgets_speech_but_keeps_the_timeline() {
        let mut m = machine(VadOptions::default());
        feed(&mut m, &[0.9; 4], 0);
        assert!(m.is_speaking());
        m.reset();
        assert!(!m.is_speaking());
        let steps = feed(&mut m, &[0.0], 0);
        assert_eq!(steps[0].timestamp, MS32 * 5);
        // Smoothing restarted: the first window after the reset is unfiltered.
        assert_eq!(steps[0].probability, 0.0);
        assert_eq!(steps[0].silence_duration, MS32);
    }

    #[test]
    fn audio_at_another_rate_is_kept_at_that_rate() {
        let mut m = match VadStateMachine::new(
            no_smoothing(),
            512,
            SampleRate::HZ_16000,
            SampleRate::HZ_48000,
        ) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        let mut out = Vec::new();
        for p in [0.0, 0.9, 0.9] {
            m.process(
                VadWindow {
                    probability: p,
                    audio: &[1; 1536],
                    inference_duration: Duration::ZERO,
                },
                &mut out,
            );
        }
        let Some(start) = out.iter().find(|s| s.kind == VadStepKind::StartOfSpeech) else {
            panic!("no start")
        };
        assert_eq!(start.frames[0].sample_rate(), SampleRate::HZ_48000);
        assert_eq!(start.frames[0].data().len(), 3 * 1536);
        assert_eq!(start.timestamp, MS32 * 3);
        assert_eq!(start.samples_index, 3 * 512);
    }
}
