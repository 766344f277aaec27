//! [`FallbackTts`]: a [`Tts`] over an ordered list of TTSs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use agents_audio::{AudioFrame, ResampleQuality, Resampler, SampleRate};

use super::{Attempt, Availability, AvailabilityChanged, FallbackError, MemberRequest};
use super::{attempt_budget, availability_api, driven, try_in_order};
use crate::error::ApiError;
use crate::tts::{
    SynthesizeOptions, SynthesizedAudio, TimedText, Tts, TtsAudioStream, TtsCapabilities, TtsError,
    TtsInput, TtsStream, TtsStreamDriver,
};
use crate::tts_adapter::StreamAdapter;

/// Audio chunks buffered between the member being read and the caller of `synthesize`.
const CHUNK_QUEUE: usize = 16;
/// The most text (in characters) a stream keeps for replay into a replacement member before the first audio.
const MAX_REPLAY_CHARS: usize = 100_000;

/// Options of a [`FallbackTts`]; `max_retry_per_tts` and the output rate default as in LiveKit.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FallbackTtsOptions {
    /// Retries each member makes itself (`conn_options.max_retry`). Default 2.
    pub max_retry_per_tts: u32,
    /// Output rate; `None` (the default) uses the highest member rate. Members at another rate are resampled.
    pub sample_rate: Option<SampleRate>,
    /// Per-attempt timeout given to the members (`conn_options.timeout`). The adapter also bounds the wait for a
    /// member's first audio of `synthesize` by the attempts its retries may make, and every later wait by this
    /// timeout; in a stream, the waits after a flush (with text since the previous flush) or the end of input.
    /// Default 10 s.
    pub attempt_timeout: Duration,
    /// Delay before each background recovery probe of an unavailable member. Default 5 s.
    pub probe_interval: Duration,
    /// Quality of the resampler of lower-rate members. Default [`ResampleQuality::High`].
    pub resample_quality: ResampleQuality,
}

impl Default for FallbackTtsOptions {
    fn default() -> Self {
        Self {
            max_retry_per_tts: 2,
            sample_rate: None,
            attempt_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_secs(5),
            resample_quality: ResampleQuality::High,
        }
    }
}

impl FallbackTtsOptions {
    /// Sets [`FallbackTtsOptions::max_retry_per_tts`].
    #[must_use]
    pub fn with_max_retry_per_tts(mut self, max_retry: u32) -> Self {
        self.max_retry_per_tts = max_retry;
        self
    }

    /// Sets [`FallbackTtsOptions::sample_rate`].
    #[must_use]
    pub fn with_sample_rate(mut self, rate: SampleRate) -> Self {
        self.sample_rate = Some(rate);
        self
    }

    /// Sets [`FallbackTtsOptions::attempt_timeout`].
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets [`FallbackTtsOptions::probe_interval`].
    #[must_use]
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Sets [`FallbackTtsOptions::resample_quality`].
    #[must_use]
    pub fn with_resample_quality(mut self, quality: ResampleQuality) -> Self {
        self.resample_quality = quality;
        self
    }
}

struct Shared {
    members: Vec<Arc<dyn Tts>>,
    options: FallbackTtsOptions,
    sample_rate: SampleRate,
    num_channels: u16,
    availability: Arc<Availability>,
}

/// A [`Tts`] that speaks with the first member that works (see the [module documentation](super)).
///
/// Its output rate is the highest member rate (or [`FallbackTtsOptions::sample_rate`]); every member must produce
/// the same channel count.
pub struct FallbackTts {
    shared: Arc<Shared>,
}

impl fmt::Debug for FallbackTts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackTts")
            .field("availability", &self.shared.availability)
            .field("sample_rate", &self.shared.sample_rate)
            .field("num_channels", &self.shared.num_channels)
            .field("options", &self.shared.options)
            .finish()
    }
}

impl FallbackTts {
    /// An adapter over `members` (tried in this order) with the default options.
    ///
    /// # Errors
    /// See [`FallbackTts::with_options`].
    pub fn new(members: Vec<Arc<dyn Tts>>) -> Result<Self, FallbackError> {
        Self::with_options(members, FallbackTtsOptions::default())
    }

    /// An adapter over `members` (tried in this order).
    ///
    /// # Errors
    /// [`FallbackError::NoMembers`], [`FallbackError::ChannelMismatch`] when the members' channel counts differ,
    /// [`FallbackError::Resample`] when a member's rate cannot be resampled to the output rate.
    pub fn with_options(
        members: Vec<Arc<dyn Tts>>,
        options: FallbackTtsOptions,
    ) -> Result<Self, FallbackError> {
        let Some(first) = members.first() else {
            return Err(FallbackError::NoMembers { kind: "TTS" });
        };
        let num_channels = first.num_channels();
        if members.iter().any(|m| m.num_channels() != num_channels) {
            return Err(FallbackError::ChannelMismatch {
                channels: members
                    .iter()
                    .map(|m| (m.label().to_owned(), m.num_channels()))
                    .collect(),
            });
        }
        let sample_rate = options.sample_rate.unwrap_or_else(|| {
            members
                .iter()
                .map(|m| m.sample_rate())
                .max_by_key(|r| r.hz())
                .unwrap_or_else(|| first.sample_rate())
        });
        // Check every ratio now rather than on the first failure.
        for m in &members {
            if m.sample_rate() != sample_rate {
                tracing::info!(
                    member = m.label(),
                    from = m.sample_rate().hz(),
                    to = sample_rate.hz(),
                    "resampling TTS"
                );
                Resampler::new(
                    m.sample_rate(),
                    sample_rate,
                    num_channels,
                    options.resample_quality,
                )
                .map_err(|e| FallbackError::Resample {
                    label: m.label().to_owned(),
                    from: m.sample_rate().hz(),
                    to: sample_rate.hz(),
                    reason: e.to_string(),
                })?;
            }
        }
        let labels = members.iter().map(|m| m.label().to_owned()).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                members,
                options,
                sample_rate,
                num_channels,
                availability: Availability::new("TTS", labels),
            }),
        })
    }
}

availability_api!(
    FallbackTts,
    dyn Tts,
    FallbackTtsOptions,
    "The members, in order."
);

/// Brings one member's chunks to the output rate, keeping segment ends and timings.
struct Rechunker {
    resampler: Option<Resampler>,
    /// Timings of chunks whose audio the resampler still holds.
    pending_timed: Vec<TimedText>,
    rate: SampleRate,
    channels: u16,
    /// Ids of the last chunk whose audio the resampler may still hold (pushed since its last flush).
    unflushed: Option<(String, String)>,
}

impl Rechunker {
    fn new(shared: &Shared, member: &dyn Tts) -> Result<Self, TtsError> {
        let resampler = if member.sample_rate() == shared.sample_rate {
            None
        } else {
            Some(
                Resampler::new(
                    member.sample_rate(),
                    shared.sample_rate,
                    shared.num_channels,
                    shared.options.resample_quality,
                )
                .map_err(invalid_audio)?,
            )
        };
        Ok(Self {
            resampler,
            pending_timed: Vec::new(),
            rate: shared.sample_rate,
            channels: shared.num_channels,
            unflushed: None,
        })
    }

    /// At the end of a member's output: the audio the resampler still holds when the member did not mark its last
    /// chunk final, as a final chunk.
    fn finish(&mut self) -> Result<Option<SynthesizedAudio>, TtsError> {
        let (Some(resampler), Some((request_id, segment_id))) =
            (self.resampler.as_mut(), self.unflushed.take())
        else {
            return Ok(None);
        };
        let Some(frame) = resampler.flush().map_err(invalid_audio)? else {
            return Ok(None);
        };
        Ok(Some(
            SynthesizedAudio::new(request_id, segment_id, frame)
                .with_final(true)
                .with_timed_text(std::mem::take(&mut self.pending_timed)),
        ))
    }

    /// The chunk at the output rate; `None` while the resampler fills (timings move to the next chunk).
    fn process(&mut self, chunk: SynthesizedAudio) -> Result<Option<SynthesizedAudio>, TtsError> {
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(Some(chunk));
        };
        let mut out = resampler.push(&chunk.frame).map_err(invalid_audio)?;
        self.pending_timed.extend(chunk.timed_text.iter().cloned());
        self.unflushed = Some((chunk.request_id.clone(), chunk.segment_id.clone()));
        if chunk.is_final {
            self.unflushed = None;
            let tail = resampler.flush().map_err(invalid_audio)?;
            out = match (out, tail) {
                (Some(mut a), Some(b)) => {
                    a.append(&b).map_err(invalid_audio)?;
                    Some(a)
                }
                (a, b) => a.or(b),
            };
            if out.is_none() {
                out = Some(
                    AudioFrame::new(Vec::new(), self.rate, self.channels).map_err(invalid_audio)?,
                );
            }
        }
        let Some(frame) = out else {
            return Ok(None);
        };
        let mut chunk = chunk;
        chunk.frame = frame;
        chunk.timed_text = std::mem::take(&mut self.pending_timed);
        Ok(Some(chunk))
    }
}

fn invalid_audio(e: impl std::fmt::Display) -> TtsError {
    TtsError::InvalidAudio {
        reason: format!("cannot resample the TTS output: {e}"),
    }
}

/// How one member's attempt ended.
enum Outcome {
    /// Done, or the caller is gone.
    Finished,
    /// Failed; `sent` tells whether audio reached the caller.
    Failed { error: TtsError, sent: bool },
}

impl Shared {
    fn member_options(&self, options: &SynthesizeOptions) -> SynthesizeOptions {
        let conn = options
            .conn_options
            .with_max_retry(self.options.max_retry_per_tts)
            .with_timeout(self.options.attempt_timeout);
        options.clone().with_conn_options(conn)
    }

    /// One `synthesize` attempt of member `index`, sending to `tx` (`None` for a probe).
    async fn synthesize_with(
        &self,
        index: usize,
        text: &str,
        options: &SynthesizeOptions,
        tx: Option<&mpsc::Sender<Result<SynthesizedAudio, TtsError>>>,
    ) -> Outcome {
        let Some(member) = self.members.get(index) else {
            return Outcome::Finished;
        };
        let options = self.member_options(options);
        let budget = attempt_budget(&options.conn_options);
        let timed_out = |wait: Duration| -> TtsError {
            ApiError::timeout(format!("{} sent no audio for {wait:.2?}", member.label())).into()
        };
        let mut rechunker = match Rechunker::new(self, member.as_ref()) {
            Ok(r) => r,
            Err(error) => return Outcome::Failed { error, sent: false },
        };
        let deadline = Instant::now() + budget;
        let mut stream =
            match tokio::time::timeout_at(deadline, member.synthesize(text, &options)).await {
                Ok(Ok(s)) => s,
                Ok(Err(error)) => return Outcome::Failed { error, sent: false },
                Err(_) => {
                    return Outcome::Failed {
                        error: timed_out(budget),
                        sent: false,
                    };
                }
            };
        let mut sent = false;
        let mut first = true;
        loop {
            let next = if first {
                tokio::time::timeout_at(deadline, stream.next()).await
            } else {
                tokio::time::timeout(self.options.attempt_timeout, stream.next()).await
            };
            first = false;
            match next {
                Err(_) => {
                    return Outcome::Failed {
                        error: timed_out(self.options.attempt_timeout),
                        sent,
                    };
                }
                Ok(None) => {
                    if let Some(tx) = tx {
                        match rechunker.finish() {
                            Ok(Some(tail)) => {
                                let _ = tx.send(Ok(tail)).await;
                            }
                            Ok(None) => {}
                            Err(error) => return Outcome::Failed { error, sent },
                        }
                    }
                    return Outcome::Finished;
                }
                Ok(Some(Err(error))) => return Outcome::Failed { error, sent },
                Ok(Some(Ok(chunk))) => {
                    let chunk = match rechunker.process(chunk) {
                        Ok(Some(c)) => c,
                        Ok(None) => continue,
                        Err(error) => return Outcome::Failed { error, sent },
                    };
                    sent = true;
                    if let Some(tx) = tx
                        && tx.send(Ok(chunk)).await.is_err()
                    {
                        return Outcome::Finished;
                    }
                }
            }
        }
    }

    fn probe_synthesize(self: &Arc<Self>, index: usize, text: &str, options: &SynthesizeOptions) {
        let context = (Arc::clone(self), Arc::<str>::from(text), options.clone());
        self.availability.start_probe(
            index,
            self.options.probe_interval,
            context,
            move |(shared, text, options)| async move {
                matches!(
                    shared.synthesize_with(index, &text, &options, None).await,
                    Outcome::Finished
                )
            },
        );
    }
}

/// One `synthesize` request, tried on the members in order.
struct SynthesizeRun {
    shared: Arc<Shared>,
    text: String,
    options: SynthesizeOptions,
    tx: mpsc::Sender<Result<SynthesizedAudio, TtsError>>,
}

impl MemberRequest for SynthesizeRun {
    type Output = ();
    type Error = TtsError;

    fn probe(&self, index: usize) {
        self.shared
            .probe_synthesize(index, &self.text, &self.options);
    }

    async fn attempt(&mut self, index: usize) -> Attempt<(), TtsError> {
        let outcome = self
            .shared
            .synthesize_with(index, &self.text, &self.options, Some(&self.tx))
            .await;
        match outcome {
            Outcome::Finished if self.tx.is_closed() => Attempt::Abandoned,
            other => other.into_attempt(false),
        }
    }
}

impl SynthesizeRun {
    async fn run(mut self) {
        let availability = Arc::clone(&self.shared.availability);
        if let Err(error) = try_in_order(&availability, "TTS", &mut self).await {
            let _ = self.tx.send(Err(error)).await;
        }
    }
}

impl Outcome {
    /// The attempt's end: a member that fails after sending audio (or when the input cannot be replayed,
    /// `unreplayable`) is not replaced.
    fn into_attempt(self, unreplayable: bool) -> Attempt<(), TtsError> {
        match self {
            Self::Finished => Attempt::Served(()),
            Self::Failed { error, sent } if sent || unreplayable => Attempt::Fatal {
                error,
                member_fault: true,
            },
            Self::Failed { error, .. } => Attempt::Failed(error),
        }
    }
}

/// The task behind a fallback synthesis stream.
struct StreamRun {
    shared: Arc<Shared>,
    options: SynthesizeOptions,
    driver: TtsStreamDriver,
    /// Every input so far, while no audio was sent (a replacement member replays it).
    recorded: Vec<TtsInput>,
    recorded_chars: usize,
    /// Whether `recorded` is complete (it stops at [`MAX_REPLAY_CHARS`]).
    replayable: bool,
    input_ended: bool,
    sent: bool,
    caller_gone: bool,
}

impl StreamRun {
    fn open(&self, member: &Arc<dyn Tts>) -> Result<TtsStream, TtsError> {
        let options = self.shared.member_options(&self.options);
        if member.capabilities().streaming {
            member.stream(&options)
        } else {
            StreamAdapter::new(Arc::clone(member)).stream(&options)
        }
    }

    fn record(&mut self, input: &TtsInput) {
        if self.sent || !self.replayable {
            return;
        }
        if let TtsInput::Text(t) = input {
            self.recorded_chars += t.chars().count();
        }
        if self.recorded_chars > MAX_REPLAY_CHARS {
            self.replayable = false;
            self.recorded.clear();
            return;
        }
        self.recorded.push(input.clone());
    }

    async fn serve(&mut self, index: usize) -> Outcome {
        let Some(member) = self.shared.members.get(index).cloned() else {
            return Outcome::Finished;
        };
        let timeout = self.shared.options.attempt_timeout;
        let mut rechunker = match Rechunker::new(&self.shared, member.as_ref()) {
            Ok(r) => r,
            Err(error) => {
                return Outcome::Failed {
                    error,
                    sent: self.sent,
                };
            }
        };
        let mut stream = match self.open(&member) {
            Ok(s) => s,
            Err(error) => {
                return Outcome::Failed {
                    error,
                    sent: self.sent,
                };
            }
        };
        let closed = || -> TtsError {
            ApiError::connection(format!("{} closed its stream", member.label())).into()
        };
        // Replay the input the previous member did not speak.
        let mut text_since_flush = false;
        let mut deadline: Option<Instant> = None;
        for input in self.recorded.clone() {
            arm(&input, &mut text_since_flush, &mut deadline, timeout);
            if forward(&mut stream, input).await.is_err() {
                return Outcome::Failed {
                    error: closed(),
                    sent: self.sent,
                };
            }
        }
        let mut member_closed = false;
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                input = self.driver.recv(), if !self.input_ended && !member_closed => {
                    let Some(input) = input else {
                        self.caller_gone = true;
                        return Outcome::Finished;
                    };
                    self.record(&input);
                    if matches!(input, TtsInput::EndInput) {
                        self.input_ended = true;
                    }
                    arm(&input, &mut text_since_flush, &mut deadline, timeout);
                    // A closed member stream reports why on its event side: stop feeding it and read that.
                    member_closed = forward(&mut stream, input).await.is_err();
                }
                event = stream.next() => match event {
                    None if self.input_ended => {
                        match rechunker.finish() {
                            Ok(Some(tail)) => {
                                let _ = self.driver.send(Ok(tail)).await;
                            }
                            Ok(None) => {}
                            Err(error) => return Outcome::Failed { error, sent: self.sent },
                        }
                        return Outcome::Finished;
                    }
                    None => {
                        let error = ApiError::connection(format!(
                            "{} ended its stream before the end of input",
                            member.label()
                        ));
                        return Outcome::Failed { error: error.into(), sent: self.sent };
                    }
                    Some(Err(error)) => return Outcome::Failed { error, sent: self.sent },
                    Some(Ok(chunk)) => {
                        let is_final = chunk.is_final;
                        if deadline.is_some() {
                            deadline = (!is_final || self.input_ended).then(|| Instant::now() + timeout);
                        }
                        let chunk = match rechunker.process(chunk) {
                            Ok(Some(c)) => c,
                            Ok(None) => continue,
                            Err(error) => return Outcome::Failed { error, sent: self.sent },
                        };
                        self.sent = true;
                        self.recorded.clear();
                        if self.driver.send(Ok(chunk)).await.is_err() {
                            self.caller_gone = true;
                            return Outcome::Finished;
                        }
                    }
                },
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    let error = ApiError::timeout(format!("{} sent no audio for {timeout:.2?}", member.label()));
                    return Outcome::Failed { error: error.into(), sent: self.sent };
                }
            }
        }
    }

    async fn run(mut self) {
        let availability = Arc::clone(&self.shared.availability);
        if let Err(error) = try_in_order(&availability, "TTS stream", &mut self).await {
            let _ = self.driver.send(Err(error)).await;
        }
    }
}

impl MemberRequest for StreamRun {
    type Output = ();
    type Error = TtsError;

    fn probe(&self, index: usize) {
        self.shared
            .probe_synthesize(index, PROBE_TEXT, &self.options);
    }

    async fn attempt(&mut self, index: usize) -> Attempt<(), TtsError> {
        match self.serve(index).await {
            Outcome::Finished if self.caller_gone => Attempt::Abandoned,
            other => other.into_attempt(!self.replayable),
        }
    }
}

/// What a stream's recovery probe synthesizes.
const PROBE_TEXT: &str = "Hello.";

/// Arms the wait for audio after a flush that closes a segment with text, or after the end of input.
fn arm(
    input: &TtsInput,
    text_since_flush: &mut bool,
    deadline: &mut Option<Instant>,
    timeout: Duration,
) {
    match input {
        TtsInput::Text(t) => *text_since_flush |= !t.is_empty(),
        TtsInput::Flush => {
            if std::mem::take(text_since_flush) && deadline.is_none() {
                *deadline = Some(Instant::now() + timeout);
            }
        }
        TtsInput::EndInput => {
            if deadline.is_none() {
                *deadline = Some(Instant::now() + timeout);
            }
        }
    }
}

async fn forward(
    stream: &mut TtsStream,
    input: TtsInput,
) -> Result<(), crate::stream::StreamClosed> {
    match input {
        TtsInput::Text(t) => stream.push_text(t).await,
        TtsInput::Flush => stream.flush().await,
        TtsInput::EndInput => stream.end_input().await,
    }
}

#[async_trait]
impl Tts for FallbackTts {
    fn label(&self) -> &str {
        "fallback.TTS"
    }

    fn model(&self) -> &str {
        "fallback"
    }

    /// Streaming when a member streams (the others are wrapped in a [`StreamAdapter`]); aligned transcripts when
    /// every member aligns.
    fn capabilities(&self) -> TtsCapabilities {
        let members = &self.shared.members;
        TtsCapabilities {
            streaming: members.iter().any(|m| m.capabilities().streaming),
            aligned_transcript: members.iter().all(|m| m.capabilities().aligned_transcript),
        }
    }

    fn sample_rate(&self) -> SampleRate {
        self.shared.sample_rate
    }

    fn num_channels(&self) -> u16 {
        self.shared.num_channels
    }

    /// Synthesizes with the first member that works; errors arrive in the stream. A member that fails after
    /// sending audio is not replaced: its error ends the stream.
    async fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError> {
        let shared = Arc::clone(&self.shared);
        let (owned_text, options) = (text.to_owned(), options.clone());
        let stream = driven(CHUNK_QUEUE, move |tx| {
            SynthesizeRun {
                shared,
                text: owned_text,
                options,
                tx,
            }
            .run()
        });
        Ok(TtsAudioStream::new(self.label(), text, stream))
    }

    /// A stream served by the first member that works; until that member sends audio, a failure replays the text
    /// pushed so far into the next member. After audio was sent, a failure ends the stream with its error.
    fn stream(&self, options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        let (stream, driver) = TtsStream::channel(self.label());
        let run = StreamRun {
            shared: Arc::clone(&self.shared),
            options: options.clone(),
            driver,
            recorded: Vec::new(),
            recorded_chars: 0,
            replayable: true,
            input_ended: false,
            sent: false,
            caller_gone: false,
        };
        tokio::spawn(run.run());
        Ok(stream)
    }

    async fn aclose(&self) {
        self.shared.availability.close();
        for member in &self.shared.members {
            member.aclose().await;
        }
    }
}
