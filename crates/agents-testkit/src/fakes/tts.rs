//! [`FakeTts`]: a deterministic [`Tts`] whose audio length follows the text.
//!
//! # Audio
//!
//! The text is split on whitespace; each word lasts
//!
//! ```text
//! word_duration + per_char_duration × (characters in the word)
//! ```
//!
//! (defaults 300 ms and 0), so a segment lasts the sum over its words (see [`SpeechTiming`]). The signal is the
//! test tone of [`crate::signal`] (a low-amplitude sine that the energy-based fakes hear as speech), in 20 ms mono
//! frames at the configured rate (default 24 kHz; the last frame of a segment may be shorter). Each chunk carries
//! the [`TimedText`] of the words that start within it (times relative to the segment start), and the last chunk of
//! every segment has `is_final`.
//!
//! # Timing (tokio time)
//!
//! Every segment waits `ttfb` before its first chunk; each chunk then takes `real_time_factor × its duration` to
//! "generate" (0 = instant, the default; 1 = real time).
//!
//! # Streams
//!
//! `Text` accumulates, `Flush` synthesizes what accumulated as one segment (ids `seg_1`, `seg_2`... per `FakeTts`),
//! `EndInput` synthesizes the rest and ends the stream. Dropping the stream stops generation.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::tts::{
    SynthesizeOptions, SynthesizedAudio, TimedText, Tts, TtsAudioStream, TtsCapabilities, TtsError,
    TtsInput, TtsStream, TtsStreamDriver,
};
use async_trait::async_trait;

use crate::signal::{FRAME_DURATION, duration_of, samples_for, tone_samples};
use crate::stamps::{Stamp, Stamps};
use crate::util::{Yielder, generate, lock, words};

/// The duration formula of the fake speech (shared by [`FakeTts`] and the fake realtime model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechTiming {
    /// Fixed duration of every word.
    pub word_duration: Duration,
    /// Extra duration per character of a word.
    pub per_char_duration: Duration,
}

impl Default for SpeechTiming {
    fn default() -> Self {
        Self {
            word_duration: Duration::from_millis(300),
            per_char_duration: Duration::ZERO,
        }
    }
}

impl SpeechTiming {
    /// Duration of one word.
    pub fn word(&self, word: &str) -> Duration {
        let chars = u32::try_from(word.chars().count()).unwrap_or(u32::MAX);
        self.word_duration + self.per_char_duration * chars
    }

    /// Duration of `text` (the sum over its words).
    pub fn duration(&self, text: &str) -> Duration {
        words(text).into_iter().map(|w| self.word(w)).sum()
    }

    /// The words of `text` with their times, back to back from zero.
    pub fn timed_words(&self, text: &str) -> Vec<TimedText> {
        let mut t = Duration::ZERO;
        words(text)
            .into_iter()
            .map(|w| {
                let d = self.word(w);
                let timed = TimedText::new(w, t, t + d);
                t += d;
                timed
            })
            .collect()
    }

    /// The audio of `text` at `rate`: the tone in 20 ms mono frames, each with the words starting in it.
    pub fn render(&self, text: &str, rate: SampleRate) -> Vec<(AudioFrame, Vec<TimedText>)> {
        let total = samples_for(self.duration(text), rate);
        let per_frame = samples_for(FRAME_DURATION, rate).max(1);
        let mut timed = self.timed_words(text).into_iter().peekable();
        let mut out = Vec::new();
        let mut start = 0usize;
        while start < total {
            let len = per_frame.min(total - start);
            let end = duration_of((start + len) as u64, rate);
            let mut in_frame = Vec::new();
            while let Some(w) = timed.next_if(|w| w.start < end) {
                in_frame.push(w);
            }
            if let Ok(frame) = AudioFrame::new(tone_samples(start as u64, len, rate), rate, 1) {
                out.push((frame, in_frame));
            }
            start += len;
        }
        out
    }
}

/// Where generated chunks go.
enum Sink<'a> {
    Yield(&'a Yielder<Result<SynthesizedAudio, TtsError>>),
    Driver(&'a TtsStreamDriver),
}

impl Sink<'_> {
    async fn send(&self, item: Result<SynthesizedAudio, TtsError>) -> bool {
        match self {
            Self::Yield(y) => y.send(item).await,
            Self::Driver(d) => d.send(item).await.is_ok(),
        }
    }

    /// Sleeps for `d`; `false` when the receiver went away meanwhile (generation stops at once).
    async fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        let closed = async {
            match self {
                Self::Yield(y) => y.closed().await,
                Self::Driver(dr) => dr.closed().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = closed => false,
        }
    }
}

#[derive(Default)]
struct Record {
    pushed: Vec<String>,
    synthesized: Vec<String>,
    streams: usize,
    next_segment: u64,
    next_request: u64,
}

/// A deterministic [`Tts`] (label `fake.TTS`); see the [module documentation](self).
#[derive(Clone)]
pub struct FakeTts {
    record: Arc<Mutex<Record>>,
    timing: SpeechTiming,
    sample_rate: SampleRate,
    ttfb: Duration,
    real_time_factor: f64,
    streaming: bool,
    stamps: Option<Stamps>,
}

impl Default for FakeTts {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FakeTts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTts")
            .field("timing", &self.timing)
            .field("sample_rate", &self.sample_rate)
            .field("ttfb", &self.ttfb)
            .field("real_time_factor", &self.real_time_factor)
            .finish_non_exhaustive()
    }
}

impl FakeTts {
    /// A TTS at 24 kHz, 300 ms per word, instant generation.
    pub fn new() -> Self {
        Self {
            record: Arc::new(Mutex::new(Record::default())),
            timing: SpeechTiming::default(),
            sample_rate: SampleRate::HZ_24000,
            ttfb: Duration::ZERO,
            real_time_factor: 0.0,
            streaming: true,
            stamps: None,
        }
    }

    /// Records [`Stamp::TtsFirstInput`] when a stream receives its first text and [`Stamp::TtsFirstAudio`] when
    /// the first audio chunk of each segment is handed to the stream (for latency benchmarks; see
    /// [`crate::stamps`]).
    pub fn with_stamps(mut self, stamps: Stamps) -> Self {
        self.stamps = Some(stamps);
        self
    }

    /// Sets the duration of every word.
    pub fn with_word_duration(mut self, d: Duration) -> Self {
        self.timing.word_duration = d;
        self
    }

    /// Sets the extra duration per character.
    pub fn with_per_char_duration(mut self, d: Duration) -> Self {
        self.timing.per_char_duration = d;
        self
    }

    /// Sets the output rate.
    pub fn with_sample_rate(mut self, rate: SampleRate) -> Self {
        self.sample_rate = rate;
        self
    }

    /// Sets the time to first byte of every segment.
    pub fn with_ttfb(mut self, ttfb: Duration) -> Self {
        self.ttfb = ttfb;
        self
    }

    /// Sets the real-time factor of generation (0 = instant, 1 = real time; negative counts as 0).
    pub fn with_real_time_factor(mut self, factor: f64) -> Self {
        self.real_time_factor = if factor.is_finite() {
            factor.max(0.0)
        } else {
            0.0
        };
        self
    }

    /// Disables [`Tts::stream`] (capability `streaming = false`), like a chunked-HTTP-only provider.
    pub fn without_streaming(mut self) -> Self {
        self.streaming = false;
        self
    }

    /// The duration formula in use.
    pub fn timing(&self) -> SpeechTiming {
        self.timing
    }

    /// The audio duration this TTS produces for `text` (rounded down to whole samples in the audio).
    pub fn audio_duration(&self, text: &str) -> Duration {
        duration_of(
            samples_for(self.timing.duration(text), self.sample_rate) as u64,
            self.sample_rate,
        )
    }

    /// Every text chunk pushed into streams, in order.
    pub fn pushed_texts(&self) -> Vec<String> {
        lock(&self.record).pushed.clone()
    }

    /// Every text synthesized: `synthesize` calls and stream segments, in order.
    pub fn synthesized(&self) -> Vec<String> {
        lock(&self.record).synthesized.clone()
    }

    /// Number of streams opened.
    pub fn stream_count(&self) -> usize {
        lock(&self.record).streams
    }

    fn next_ids(&self) -> (String, String) {
        let mut r = lock(&self.record);
        r.next_request += 1;
        r.next_segment += 1;
        (
            format!("fake_tts_{}", r.next_request),
            format!("seg_{}", r.next_segment),
        )
    }

    /// Generates one segment into `y`; `false` when the receiver is gone.
    async fn emit_segment(
        &self,
        text: &str,
        request_id: &str,
        segment_id: &str,
        y: Sink<'_>,
    ) -> bool {
        lock(&self.record).synthesized.push(text.to_owned());
        let chunks = self.timing.render(text, self.sample_rate);
        let n = chunks.len();
        if !y.sleep(self.ttfb).await {
            return false;
        }
        for (i, (frame, timed)) in chunks.into_iter().enumerate() {
            if self.real_time_factor > 0.0
                && !y
                    .sleep(frame.duration().mul_f64(self.real_time_factor))
                    .await
            {
                return false;
            }
            let chunk = SynthesizedAudio::new(request_id, segment_id, frame)
                .with_final(i + 1 == n)
                .with_timed_text(timed);
            if i == 0
                && let Some(stamps) = &self.stamps
            {
                stamps.record(Stamp::TtsFirstAudio);
            }
            if !y.send(Ok(chunk)).await {
                return false;
            }
        }
        true
    }
}

#[async_trait]
impl Tts for FakeTts {
    fn label(&self) -> &str {
        "fake.TTS"
    }

    fn model(&self) -> &str {
        "fake-tts"
    }

    fn capabilities(&self) -> TtsCapabilities {
        let mut c = TtsCapabilities::default();
        c.streaming = self.streaming;
        c.aligned_transcript = true;
        c
    }

    fn sample_rate(&self) -> SampleRate {
        self.sample_rate
    }

    async fn synthesize(
        &self,
        text: &str,
        _options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError> {
        let this = self.clone();
        let owned = text.to_owned();
        let stream = generate(move |y| async move {
            let (request_id, _) = this.next_ids();
            this.emit_segment(&owned, &request_id, &request_id, Sink::Yield(&y))
                .await;
        });
        Ok(TtsAudioStream::new(self.label(), text, stream))
    }

    fn stream(&self, _options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        if !self.streaming {
            return Err(TtsError::Unsupported {
                label: self.label().to_owned(),
                operation: "streaming",
            });
        }
        lock(&self.record).streams += 1;
        let (stream, mut driver) = TtsStream::channel(self.label());
        let this = self.clone();
        tokio::spawn(async move {
            let mut pending = String::new();
            let mut first_input = true;
            while let Some(input) = driver.recv().await {
                let end = match input {
                    TtsInput::Text(t) => {
                        if std::mem::take(&mut first_input)
                            && let Some(stamps) = &this.stamps
                        {
                            stamps.record(Stamp::TtsFirstInput);
                        }
                        lock(&this.record).pushed.push(t.clone());
                        pending.push_str(&t);
                        continue;
                    }
                    TtsInput::Flush => false,
                    _ => true,
                };
                let text = std::mem::take(&mut pending);
                if !text.trim().is_empty() {
                    let (request_id, segment_id) = this.next_ids();
                    let sink = Sink::Driver(&driver);
                    if !this
                        .emit_segment(&text, &request_id, &segment_id, sink)
                        .await
                    {
                        return;
                    }
                }
                if end {
                    return;
                }
            }
        });
        Ok(stream)
    }
}
