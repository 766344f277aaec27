//! [`StreamAdapter`]: streaming synthesis ([`Tts::stream`]) over a TTS that can only [`Tts::synthesize`].
//!
//! As LiveKit's `tts.StreamAdapter`: the pushed text goes through the streaming sentence tokenizer
//! ([`SentenceStream`]) and each sentence is synthesized as soon as it is complete, one request at a time and in
//! order, while later text keeps arriving. A flush closes the current segment: its sentences share one segment id
//! and only the last chunk of the segment is final. Word timings of aligned TTSs are shifted so they count from
//! the start of the segment. The first error ends the stream; dropping the stream stops the current request.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use agents_audio::SampleRate;

use crate::ids::short_id;
use crate::tokenize::{SentenceOptions, SentenceStream};
use crate::tts::{
    SynthesizeOptions, SynthesizedAudio, TimedText, Tts, TtsAudioStream, TtsCapabilities, TtsError,
    TtsInput, TtsStream,
};

/// Sentences queued ahead of the one being synthesized.
const SENTENCE_QUEUE: usize = 16;

/// Gives any [`Tts`] a [`Tts::stream`] by synthesizing sentence by sentence (see the [module documentation](self)).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use agents_core::tts::{Tts, SynthesizeOptions};
/// # use agents_core::tts_adapter::StreamAdapter;
/// # async fn demo(http_only_tts: Arc<dyn Tts>) -> Result<(), Box<dyn std::error::Error>> {
/// let tts = StreamAdapter::new(http_only_tts);
/// let mut stream = tts.stream(&SynthesizeOptions::default())?;
/// stream.push_text("Hello there. ").await?;
/// stream.end_input().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StreamAdapter {
    inner: Arc<dyn Tts>,
    sentences: SentenceOptions,
}

impl std::fmt::Debug for StreamAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAdapter")
            .field("inner", &self.inner.label())
            .field("sentences", &self.sentences)
            .finish()
    }
}

impl StreamAdapter {
    /// Wraps `tts` with the default sentence options (sentences under 20 characters are merged).
    pub fn new(tts: Arc<dyn Tts>) -> Self {
        Self {
            inner: tts,
            sentences: SentenceOptions::default(),
        }
    }

    /// Sets how text is cut into requests (e.g. a `max_sentence_len` below the provider's input limit).
    #[must_use]
    pub fn with_sentence_options(mut self, options: SentenceOptions) -> Self {
        self.sentences = options;
        self
    }

    /// The wrapped TTS.
    pub fn inner(&self) -> &Arc<dyn Tts> {
        &self.inner
    }

    /// Opens a sentence-by-sentence synthesis stream over `tts` without wrapping it first (what
    /// [`Tts::stream`] of the adapter does).
    ///
    /// # Errors
    /// [`TtsError::InvalidRequest`] outside a tokio runtime.
    pub fn stream_over(
        tts: Arc<dyn Tts>,
        sentences: SentenceOptions,
        options: &SynthesizeOptions,
    ) -> Result<TtsStream, TtsError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| TtsError::InvalidRequest {
                reason: "stream() must be called inside a tokio runtime".to_owned(),
            })?;
        let (stream, driver) = TtsStream::channel(tts.label());
        let (input, events) = driver.into_parts();
        let (jobs_tx, jobs_rx) = mpsc::channel(SENTENCE_QUEUE);
        handle.spawn(split_input(input, jobs_tx, sentences));
        handle.spawn(synthesize_jobs(tts, options.clone(), jobs_rx, events));
        Ok(stream)
    }
}

#[async_trait]
impl Tts for StreamAdapter {
    fn label(&self) -> &str {
        self.inner.label()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            ..self.inner.capabilities()
        }
    }

    fn sample_rate(&self) -> SampleRate {
        self.inner.sample_rate()
    }

    fn num_channels(&self) -> u16 {
        self.inner.num_channels()
    }

    async fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError> {
        self.inner.synthesize(text, options).await
    }

    fn stream(&self, options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        Self::stream_over(Arc::clone(&self.inner), self.sentences, options)
    }

    async fn aclose(&self) {
        self.inner.aclose().await;
    }
}

/// Work for the synthesis task.
#[derive(Debug)]
enum Job {
    /// Synthesize one sentence of a segment.
    Sentence { segment: String, text: String },
    /// The segment is complete: its last chunk is final.
    End,
}

/// Cuts the pushed text into sentences, in segments closed by flushes.
async fn split_input(
    mut input: mpsc::Receiver<TtsInput>,
    jobs: mpsc::Sender<Job>,
    options: SentenceOptions,
) {
    let mut tokenizer = SentenceStream::with_options(options);
    let mut segment = short_id("seg_");
    let mut has_text = false;
    while let Some(item) = input.recv().await {
        let (sentences, end_segment, end_input) = match item {
            TtsInput::Text(t) => (tokenizer.push_str(&t), false, false),
            TtsInput::Flush => (tokenizer.flush(), true, false),
            TtsInput::EndInput => (tokenizer.flush(), true, true),
        };
        for text in sentences {
            has_text = true;
            let job = Job::Sentence {
                segment: segment.clone(),
                text,
            };
            if jobs.send(job).await.is_err() {
                return;
            }
        }
        if end_segment && has_text {
            if jobs.send(Job::End).await.is_err() {
                return;
            }
            segment = short_id("seg_");
            has_text = false;
        }
        if end_input {
            return;
        }
    }
}

fn shifted(timed: Vec<TimedText>, offset: Duration) -> Vec<TimedText> {
    timed
        .into_iter()
        .map(|t| TimedText::new(t.text, t.start + offset, t.end + offset))
        .collect()
}

/// Synthesizes the sentences in order. The last chunk is held back until the next one (or the segment's end)
/// shows whether it is final.
async fn synthesize_jobs(
    tts: Arc<dyn Tts>,
    options: SynthesizeOptions,
    mut jobs: mpsc::Receiver<Job>,
    events: mpsc::Sender<Result<SynthesizedAudio, TtsError>>,
) {
    let mut held: Option<SynthesizedAudio> = None;
    // Audio of the segment's earlier sentences: where this sentence's timings start.
    let mut offset = Duration::ZERO;
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Sentence { segment, text } => {
                let opened = tokio::select! {
                    () = events.closed() => return,
                    r = tts.synthesize(&text, &options) => r,
                };
                let mut audio = match opened {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = events.send(Err(e)).await;
                        return;
                    }
                };
                let mut sentence_audio = Duration::ZERO;
                loop {
                    let next = tokio::select! {
                        () = events.closed() => return,
                        n = audio.next() => n,
                    };
                    match next {
                        Some(Ok(chunk)) => {
                            sentence_audio += chunk.frame.duration();
                            let out = SynthesizedAudio::new(
                                chunk.request_id,
                                segment.clone(),
                                chunk.frame,
                            )
                            .with_timed_text(shifted(chunk.timed_text, offset));
                            if let Some(prev) = held.replace(out)
                                && events.send(Ok(prev)).await.is_err()
                            {
                                return;
                            }
                        }
                        Some(Err(e)) => {
                            let _ = events.send(Err(e)).await;
                            return;
                        }
                        None => break,
                    }
                }
                offset += sentence_audio;
            }
            Job::End => {
                offset = Duration::ZERO;
                if let Some(last) = held.take()
                    && events.send(Ok(last.with_final(true))).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
