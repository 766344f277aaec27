//! [`FakeStt`]: a scripted [`Stt`] that hears speech by energy, in audio time.
//!
//! Transcripts come from a FIFO ([`FakeStt::push_transcript`]); when it is empty the text is `""`.
//!
//! # `recognize`
//!
//! Returns the next scripted transcript, with words spread evenly over the whole buffer, confidence 1.0 and the
//! language of the options (default `"en"`), and records the buffer's duration ([`FakeStt::recognized_audio`]).
//!
//! # `stream`
//!
//! Audio is cut into 10 ms windows of *audio time* (sample counts; the wall clock never matters). A window whose
//! RMS (normalized, see [`crate::signal`]) is at least the threshold (default 0.01) is speech.
//!
//! - The first speech window emits `StartOfSpeech` and takes the next scripted transcript for this utterance.
//! - Every `interim_interval` of audio since the start of speech (default 200 ms) emits an `InterimTranscript`
//!   with one more word of that transcript (growing prefixes; never the whole text while words remain).
//! - After `min_silence` of audio silence (default 300 ms), or on `Flush` or `EndInput` while speaking: waits
//!   `final_delay` (tokio time, default 0), then emits `FinalTranscript` (the full text, words spread evenly over
//!   the speech segment — from its first speech window to the end of its last —, confidence 1.0, language `"en"`),
//!   `EndOfSpeech`, and `RecognitionUsage` with the audio received since the previous usage event.
//! - `EndInput` then ends the stream (after a last `RecognitionUsage` when audio was not yet reported).
//! - All frames of a stream must share one sample rate: a frame of another rate sends
//!   [`SttError::UnsupportedSampleRate`] and ends the stream.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::stt::{
    RecognitionUsage, RecognizeOptions, SpeechData, SpeechEvent, Stt, SttCapabilities, SttError,
    SttInput, SttStream, SttStreamDriver, SttStreamOptions, TimedWord, Transcript,
};
use async_trait::async_trait;

use crate::signal::{DEFAULT_SPEECH_THRESHOLD, duration_of, rms_of, total_duration};
use crate::util::{lock, words};

/// Length of the analysis windows of a stream.
const WINDOW: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Record {
    transcripts: VecDeque<String>,
    recognized: Vec<Duration>,
    streamed: Duration,
    streams: usize,
    next_request: u64,
}

/// A scripted [`Stt`] (label `fake.STT`); see the [module documentation](self).
#[derive(Clone)]
pub struct FakeStt {
    record: Arc<Mutex<Record>>,
    threshold: f32,
    min_silence: Duration,
    interim_interval: Duration,
    final_delay: Duration,
    interim_results: bool,
}

impl Default for FakeStt {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FakeStt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStt")
            .field("threshold", &self.threshold)
            .field("min_silence", &self.min_silence)
            .field("interim_interval", &self.interim_interval)
            .field("final_delay", &self.final_delay)
            .finish_non_exhaustive()
    }
}

impl FakeStt {
    /// An STT with no scripted transcript and the default thresholds.
    pub fn new() -> Self {
        Self {
            record: Arc::new(Mutex::new(Record::default())),
            threshold: DEFAULT_SPEECH_THRESHOLD,
            min_silence: Duration::from_millis(300),
            interim_interval: Duration::from_millis(200),
            final_delay: Duration::ZERO,
            interim_results: true,
        }
    }

    /// Queues transcripts (builder style).
    pub fn with_transcripts<S: Into<String>>(self, texts: impl IntoIterator<Item = S>) -> Self {
        for t in texts {
            self.push_transcript(t);
        }
        self
    }

    /// Queues the transcript of the next utterance (or `recognize` call).
    pub fn push_transcript(&self, text: impl Into<String>) {
        lock(&self.record).transcripts.push_back(text.into());
    }

    /// Sets the speech RMS threshold (normalized to full scale).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Sets the audio silence that ends an utterance.
    pub fn with_min_silence(mut self, d: Duration) -> Self {
        self.min_silence = d;
        self
    }

    /// Sets the audio time per interim word.
    pub fn with_interim_interval(mut self, d: Duration) -> Self {
        self.interim_interval = d;
        self
    }

    /// Sets the delay (tokio time) before a final transcript is delivered.
    pub fn with_final_delay(mut self, d: Duration) -> Self {
        self.final_delay = d;
        self
    }

    /// Disables interim transcripts.
    pub fn without_interim_results(mut self) -> Self {
        self.interim_results = false;
        self
    }

    /// Transcripts still queued.
    pub fn remaining(&self) -> usize {
        lock(&self.record).transcripts.len()
    }

    /// The audio duration of every `recognize` call, in order.
    pub fn recognized_audio(&self) -> Vec<Duration> {
        lock(&self.record).recognized.clone()
    }

    /// Total audio pushed into streams.
    pub fn streamed_audio(&self) -> Duration {
        lock(&self.record).streamed
    }

    /// Number of streams opened.
    pub fn stream_count(&self) -> usize {
        lock(&self.record).streams
    }

    fn next_transcript(&self) -> String {
        lock(&self.record)
            .transcripts
            .pop_front()
            .unwrap_or_default()
    }

    fn next_request_id(&self) -> String {
        let mut r = lock(&self.record);
        r.next_request += 1;
        format!("fake_stt_{}", r.next_request)
    }
}

/// Words of `text` spread evenly over `[start, end]`.
fn spread_words(text: &str, start: Duration, end: Duration) -> Vec<TimedWord> {
    let ws = words(text);
    let n = u32::try_from(ws.len()).unwrap_or(u32::MAX).max(1);
    let step = end.saturating_sub(start) / n;
    ws.into_iter()
        .zip(0u32..)
        .map(|(w, i)| {
            let mut tw = TimedWord::new(w, start + step * i, start + step * (i + 1));
            tw.confidence = Some(1.0);
            tw
        })
        .collect()
}

fn transcript(
    request_id: &str,
    text: &str,
    start: Duration,
    end: Duration,
    language: &str,
) -> Transcript {
    let data = SpeechData::new(text, 1.0)
        .with_language(language)
        .with_times(start, end)
        .with_words(spread_words(text, start, end));
    Transcript::new(request_id, data)
}

#[async_trait]
impl Stt for FakeStt {
    fn label(&self) -> &str {
        "fake.STT"
    }

    fn model(&self) -> &str {
        "fake-stt"
    }

    fn capabilities(&self) -> SttCapabilities {
        let mut c = SttCapabilities::default();
        c.streaming = true;
        c.interim_results = self.interim_results;
        c.aligned_transcript = true;
        c
    }

    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        let duration = total_duration(audio);
        lock(&self.record).recognized.push(duration);
        let text = self.next_transcript();
        let language = options.language.as_deref().unwrap_or("en");
        Ok(transcript(
            &self.next_request_id(),
            &text,
            Duration::ZERO,
            duration,
            language,
        ))
    }

    fn stream(&self, options: &SttStreamOptions) -> Result<SttStream, SttError> {
        lock(&self.record).streams += 1;
        let (stream, driver) = SttStream::channel();
        let stream = stream.with_labels(self.label(), self.model());
        let worker = Worker {
            stt: self.clone(),
            language: options.language.clone().unwrap_or_else(|| "en".to_owned()),
            driver,
            rate: None,
            window: Vec::new(),
            window_len: 0,
            samples: 0,
            reported: 0,
            utterance: None,
        };
        tokio::spawn(worker.run());
        Ok(stream)
    }
}

struct Utterance {
    request_id: String,
    text: String,
    start: u64,
    last_speech_end: u64,
    interim_words: usize,
}

struct Worker {
    stt: FakeStt,
    language: String,
    driver: SttStreamDriver,
    rate: Option<SampleRate>,
    window: Vec<i16>,
    /// Samples per channel in a window.
    window_len: usize,
    /// Samples per channel processed (audio time).
    samples: u64,
    /// Samples per channel already reported in usage.
    reported: u64,
    utterance: Option<Utterance>,
}

impl Worker {
    async fn run(mut self) {
        while let Some(input) = self.driver.recv().await {
            let ok = match input {
                SttInput::Frame(frame) => self.on_frame(&frame).await,
                SttInput::Flush => self.finalize().await,
                _ => {
                    let _ = self.finalize().await && self.report_usage().await;
                    return;
                }
            };
            if !ok {
                return;
            }
        }
    }

    fn time(&self, samples: u64) -> Duration {
        self.rate
            .map_or(Duration::ZERO, |r| duration_of(samples, r))
    }

    async fn send(&self, event: SpeechEvent) -> bool {
        self.driver.send(Ok(event)).await.is_ok()
    }

    async fn on_frame(&mut self, frame: &AudioFrame) -> bool {
        let rate = *self.rate.get_or_insert(frame.sample_rate());
        if rate != frame.sample_rate() {
            let _ = self
                .driver
                .send(Err(SttError::UnsupportedSampleRate {
                    expected: rate.hz(),
                    actual: frame.sample_rate().hz(),
                }))
                .await;
            return false;
        }
        {
            let mut r = lock(&self.stt.record);
            r.streamed += frame.duration();
        }
        if self.window_len == 0 {
            self.window_len = crate::signal::samples_for(WINDOW, rate).max(1);
        }
        let channels = usize::from(frame.num_channels());
        for chunk in frame.data().chunks(channels) {
            // Mix down to mono for the energy measure.
            let sum: i32 = chunk.iter().map(|&s| i32::from(s)).sum();
            let mono = sum / i32::try_from(channels).unwrap_or(1).max(1);
            self.window.push(i16::try_from(mono).unwrap_or(0));
            if self.window.len() >= self.window_len {
                let speech = rms_of(&self.window) >= self.stt.threshold;
                self.window.clear();
                let start = self.samples;
                self.samples += self.window_len as u64;
                if !self.on_window(start, speech).await {
                    return false;
                }
            }
        }
        true
    }

    async fn on_window(&mut self, start: u64, speech: bool) -> bool {
        let end = self.samples;
        if speech {
            match &mut self.utterance {
                Some(u) => u.last_speech_end = end,
                None => {
                    self.utterance = Some(Utterance {
                        request_id: self.stt.next_request_id(),
                        text: self.stt.next_transcript(),
                        start,
                        last_speech_end: end,
                        interim_words: 0,
                    });
                    if !self.send(SpeechEvent::StartOfSpeech).await {
                        return false;
                    }
                }
            }
            return self.maybe_interim().await;
        }
        let silence_done = match &self.utterance {
            Some(u) => self.time(end - u.last_speech_end) >= self.stt.min_silence,
            None => false,
        };
        if silence_done {
            return self.finalize().await;
        }
        true
    }

    async fn maybe_interim(&mut self) -> bool {
        if !self.stt.interim_results || self.stt.interim_interval.is_zero() {
            return true;
        }
        let Some(u) = &self.utterance else {
            return true;
        };
        let ws = words(&u.text);
        let elapsed = self.time(u.last_speech_end - u.start);
        let due = (elapsed.as_nanos() / self.stt.interim_interval.as_nanos()) as usize;
        let n = due.min(ws.len().saturating_sub(1));
        if n <= u.interim_words {
            return true;
        }
        let text = ws[..n].join(" ");
        let (start, end) = (self.time(u.start), self.time(u.last_speech_end));
        let t = transcript(&u.request_id, &text, start, end, &self.language);
        if let Some(u) = &mut self.utterance {
            u.interim_words = n;
        }
        self.send(SpeechEvent::InterimTranscript(t)).await
    }

    /// Ends the current utterance, if any: final, end of speech, usage.
    async fn finalize(&mut self) -> bool {
        let Some(u) = self.utterance.take() else {
            return true;
        };
        tokio::time::sleep(self.stt.final_delay).await;
        let (start, end) = (self.time(u.start), self.time(u.last_speech_end));
        let t = transcript(&u.request_id, &u.text, start, end, &self.language);
        self.send(SpeechEvent::FinalTranscript(t)).await
            && self.send(SpeechEvent::EndOfSpeech).await
            && self.report_usage().await
    }

    async fn report_usage(&mut self) -> bool {
        // Count partial-window samples too: usage covers all audio received.
        let total = self.samples + self.window.len() as u64;
        if total <= self.reported {
            return true;
        }
        let d = self.time(total - self.reported);
        self.reported = total;
        self.send(SpeechEvent::RecognitionUsage(RecognitionUsage::new(d)))
            .await
    }
}
