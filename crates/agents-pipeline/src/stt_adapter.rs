//! [`StreamAdapter`]: streaming recognition from a non-streaming [`Stt`] and a [`Vad`] (LiveKit's
//! `stt.StreamAdapter`).
//!
//! A session wraps a non-streaming STT in this adapter by itself when a VAD is configured (and reports
//! [`RecognitionError::SttNotStreaming`](crate::recognition::RecognitionError::SttNotStreaming) without one);
//! build it by hand only to use such an STT outside a session.
//!
//! The adapter's stream forwards audio to a VAD stream. Each VAD speech segment (the VAD's `EndOfSpeech` frames:
//! prefix padding, speech and trailing silence) is sent to [`Stt::recognize`], and the adapter emits what a
//! streaming STT would: `StartOfSpeech` when the VAD hears speech, then for each segment `FinalTranscript` (only
//! when the text is not empty), `EndOfSpeech` and `RecognitionUsage` (the segment's duration). Transcript times
//! (and word times) are shifted from segment-relative to stream-relative.
//!
//! Segments are recognized concurrently while audio keeps flowing, but events are emitted in segment order.
//! Unlike LiveKit, whose adapter emits `END_OF_SPEECH` *before* the final transcript, the final comes first, as
//! with streaming providers: a turn detector in STT mode then has the transcript when the end of speech arrives.
//!
//! Errors do not end the stream: a failed `recognize` is emitted as an `Err` item followed by the segment's
//! `EndOfSpeech`, and recognition continues with the next segment. A VAD failure is emitted as an `Err` item
//! (mapped onto [`SttError`]); the stream ends when the VAD stream ends.
//!
//! Audio overflow: frames the VAD queue cannot take are dropped (and logged), so a slow VAD never blocks the
//! caller's pushes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;

use agents_audio::AudioFrame;
use agents_core::stream::TryPushError;
use agents_core::stt::{
    RecognitionUsage, RecognizeOptions, SpeechEvent, SttCapabilities, SttInput, SttStream,
    SttStreamDriver, SttStreamOptions, Transcript,
};
use agents_core::vad::{VadError, VadEventKind, VadStream};
use agents_core::{ApiError, Stt, SttError, Vad};

type Emitted = Vec<Result<SpeechEvent, SttError>>;

/// How long a flush or end of input may wait for room in the VAD's queue (this task is also the VAD's reader, so an
/// overloaded VAD could otherwise never take it).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// A streaming [`Stt`] made of a non-streaming one and a [`Vad`]; see the [module documentation](self).
#[derive(Clone)]
pub struct StreamAdapter {
    stt: Arc<dyn Stt>,
    vad: Arc<dyn Vad>,
    label: String,
}

impl std::fmt::Debug for StreamAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAdapter")
            .field("stt", &self.stt.label())
            .field("vad", &self.vad.label())
            .finish()
    }
}

impl StreamAdapter {
    /// Wraps `stt` (used through [`Stt::recognize`]) with `vad` for segmentation.
    pub fn new(stt: Arc<dyn Stt>, vad: Arc<dyn Vad>) -> Self {
        let label = format!("stt.StreamAdapter<{}>", stt.label());
        Self { stt, vad, label }
    }

    /// The wrapped STT.
    pub fn wrapped(&self) -> &Arc<dyn Stt> {
        &self.stt
    }
}

/// Maps a VAD failure onto the STT error family (the core `SttError` has no VAD variant).
fn vad_to_stt_error(e: VadError) -> SttError {
    match e {
        VadError::InvalidAudio(a) => SttError::InvalidAudio(a),
        VadError::SampleRateChanged { expected, actual } => {
            SttError::UnsupportedSampleRate { expected, actual }
        }
        other => SttError::Api(
            ApiError::new(format!("segmentation VAD failed: {other}"))
                .with_retryable(false)
                .with_source(other),
        ),
    }
}

/// Shifts a segment-relative transcript to stream time.
fn shift(mut t: Transcript, offset: Duration) -> Transcript {
    for alt in &mut t.alternatives {
        alt.start_time += offset;
        alt.end_time += offset;
        for w in &mut alt.words {
            w.start += offset;
            w.end += offset;
        }
    }
    t
}

#[async_trait]
impl Stt for StreamAdapter {
    fn label(&self) -> &str {
        &self.label
    }

    fn model(&self) -> &str {
        self.stt.model()
    }

    fn capabilities(&self) -> SttCapabilities {
        let inner = self.stt.capabilities();
        let mut c = SttCapabilities::default();
        c.streaming = true;
        c.interim_results = false;
        c.aligned_transcript = inner.aligned_transcript;
        c.diarization = inner.diarization;
        c
    }

    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        self.stt.recognize(audio, options).await
    }

    fn stream(&self, options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let vad_stream = self.vad.stream().map_err(vad_to_stt_error)?;
        let (stream, driver) = SttStream::channel();
        tokio::spawn(run(self.stt.clone(), options.clone(), vad_stream, driver));
        Ok(stream)
    }

    async fn aclose(&self) {
        self.stt.aclose().await;
    }
}

async fn run(
    stt: Arc<dyn Stt>,
    options: SttStreamOptions,
    mut vad: VadStream,
    mut driver: SttStreamDriver,
) {
    let mut pending: FuturesOrdered<BoxFuture<'static, Emitted>> = FuturesOrdered::new();
    let mut input_done = false;
    let mut vad_done = false;
    let mut dropped: u64 = 0;
    loop {
        if vad_done && pending.is_empty() {
            return;
        }
        tokio::select! {
            input = driver.recv(), if !input_done => match input {
                Some(SttInput::Frame(frame)) => {
                    if let Err(TryPushError::Full(_)) = vad.try_push_frame(frame) {
                        dropped += 1;
                        if dropped % 100 == 1 {
                            tracing::warn!(dropped, "segmentation VAD is behind: frames dropped");
                        }
                    }
                }
                Some(SttInput::Flush) => {
                    // Bounded: this loop is also the VAD's reader (see CONTROL_TIMEOUT).
                    let _ = tokio::time::timeout(CONTROL_TIMEOUT, vad.flush()).await;
                }
                _ => {
                    input_done = true;
                    if !matches!(tokio::time::timeout(CONTROL_TIMEOUT, vad.end_input()).await, Ok(Ok(()))) {
                        // The VAD cannot take the end of input: finish with what was recognized.
                        vad_done = true;
                    }
                }
            },
            ev = vad.next(), if !vad_done => match ev {
                Some(Ok(ev)) => match ev.kind {
                    VadEventKind::StartOfSpeech => {
                        pending.push_back(Box::pin(async { vec![Ok(SpeechEvent::StartOfSpeech)] }));
                    }
                    VadEventKind::EndOfSpeech => {
                        let frames = ev.frames;
                        let duration: Duration = frames.iter().map(AudioFrame::duration).sum();
                        let offset = ev.timestamp.saturating_sub(duration);
                        let stt = stt.clone();
                        let options = options.clone();
                        pending.push_back(Box::pin(async move {
                            recognize_segment(stt, options, frames, duration, offset).await
                        }));
                    }
                    _ => {}
                },
                Some(Err(e)) => {
                    let e = vad_to_stt_error(e);
                    pending.push_back(Box::pin(async move { vec![Err(e)] }));
                }
                None => vad_done = true,
            },
            out = pending.next(), if !pending.is_empty() => {
                for event in out.unwrap_or_default() {
                    if driver.send(event).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn recognize_segment(
    stt: Arc<dyn Stt>,
    options: RecognizeOptions,
    frames: Vec<AudioFrame>,
    duration: Duration,
    offset: Duration,
) -> Emitted {
    let mut out = Vec::with_capacity(3);
    if !frames.is_empty() {
        match stt.recognize(&frames, &options).await {
            Ok(t) if !t.text().trim().is_empty() => {
                out.push(Ok(SpeechEvent::FinalTranscript(shift(t, offset))));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "segment recognition failed");
                out.push(Err(e));
            }
        }
    }
    out.push(Ok(SpeechEvent::EndOfSpeech));
    if !duration.is_zero() {
        out.push(Ok(SpeechEvent::RecognitionUsage(RecognitionUsage::new(
            duration,
        ))));
    }
    out
}
