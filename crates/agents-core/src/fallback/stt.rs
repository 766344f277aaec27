//! [`FallbackStt`]: an [`Stt`] over an ordered list of STTs.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

use agents_audio::AudioFrame;

use super::{Attempt, Availability, AvailabilityChanged, FallbackError, MemberRequest};
use super::{attempt_budget, availability_api, try_in_order};
use crate::error::ApiError;
use crate::retry::ApiConnectOptions;
use crate::stream::FrameInput;
use crate::stt::{
    RecognizeOptions, SpeechEvent, Stt, SttCapabilities, SttError, SttStream, SttStreamDriver,
    SttStreamOptions, Transcript,
};

/// Wraps a non-streaming member so it can stream (e.g. `agents_pipeline::StreamAdapter` with a VAD).
type StreamWrapper = dyn Fn(Arc<dyn Stt>) -> Arc<dyn Stt> + Send + Sync;

/// Options of a [`FallbackStt`]; the first three defaults are LiveKit's.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FallbackSttOptions {
    /// Per-attempt timeout given to the members (`conn_options.timeout`). The adapter also bounds a whole
    /// `recognize` call of a member by the attempts its retries may make, and, once the input of a stream ended,
    /// every wait for the member's next event. Default 10 s.
    pub attempt_timeout: Duration,
    /// Retries each member makes itself (`conn_options.max_retry`). Default 1.
    pub max_retry_per_stt: u32,
    /// Delay between a member's own retries (`conn_options.retry_interval`). Default 5 s.
    pub retry_interval: Duration,
    /// Delay before each background recovery probe of an unavailable member. Default 5 s.
    pub probe_interval: Duration,
    /// The most audio kept for replay into a replacement stream (the audio since the last final transcript).
    /// Older audio is dropped from the buffer and is not heard by a replacement. Default 30 s.
    pub max_replay: Duration,
}

impl Default for FallbackSttOptions {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            max_retry_per_stt: 1,
            retry_interval: Duration::from_secs(5),
            probe_interval: Duration::from_secs(5),
            max_replay: Duration::from_secs(30),
        }
    }
}

impl FallbackSttOptions {
    /// Sets [`FallbackSttOptions::attempt_timeout`].
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets [`FallbackSttOptions::max_retry_per_stt`].
    #[must_use]
    pub fn with_max_retry_per_stt(mut self, max_retry: u32) -> Self {
        self.max_retry_per_stt = max_retry;
        self
    }

    /// Sets [`FallbackSttOptions::retry_interval`].
    #[must_use]
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// Sets [`FallbackSttOptions::probe_interval`].
    #[must_use]
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Sets [`FallbackSttOptions::max_replay`].
    #[must_use]
    pub fn with_max_replay(mut self, max_replay: Duration) -> Self {
        self.max_replay = max_replay;
        self
    }

    fn member_conn(&self, base: ApiConnectOptions) -> ApiConnectOptions {
        base.with_max_retry(self.max_retry_per_stt)
            .with_timeout(self.attempt_timeout)
            .with_retry_interval(self.retry_interval)
    }
}

struct Shared {
    members: Vec<Arc<dyn Stt>>,
    options: FallbackSttOptions,
    availability: Arc<Availability>,
}

/// An [`Stt`] that recognizes with the first member that works (see the [module documentation](super)).
///
/// Every member must stream: a non-streaming member is wrapped by the function given to
/// [`FallbackStt::with_stream_adapter`] (e.g. `agents_pipeline::StreamAdapter` with a VAD), or construction fails.
pub struct FallbackStt {
    shared: Arc<Shared>,
}

impl fmt::Debug for FallbackStt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackStt")
            .field("availability", &self.shared.availability)
            .field("options", &self.shared.options)
            .finish()
    }
}

impl FallbackStt {
    /// An adapter over `members` (tried in this order) with the default options.
    ///
    /// # Errors
    /// [`FallbackError::NoMembers`], or [`FallbackError::NonStreamingStt`] when a member cannot stream.
    pub fn new(members: Vec<Arc<dyn Stt>>) -> Result<Self, FallbackError> {
        Self::with_options(members, FallbackSttOptions::default())
    }

    /// An adapter over `members` (tried in this order).
    ///
    /// # Errors
    /// [`FallbackError::NoMembers`], or [`FallbackError::NonStreamingStt`] when a member cannot stream.
    pub fn with_options(
        members: Vec<Arc<dyn Stt>>,
        options: FallbackSttOptions,
    ) -> Result<Self, FallbackError> {
        Self::build(members, options, None)
    }

    /// An adapter over `members` where every member that cannot stream is replaced by `wrap(member)` (LiveKit
    /// wraps such members in `stt.StreamAdapter` with the VAD given to the adapter; here pass
    /// `|stt| Arc::new(agents_pipeline::StreamAdapter::new(stt, vad.clone()))`).
    ///
    /// # Errors
    /// [`FallbackError::NoMembers`], or [`FallbackError::NonStreamingStt`] when a wrapped member still cannot
    /// stream.
    pub fn with_stream_adapter(
        members: Vec<Arc<dyn Stt>>,
        options: FallbackSttOptions,
        wrap: impl Fn(Arc<dyn Stt>) -> Arc<dyn Stt> + Send + Sync + 'static,
    ) -> Result<Self, FallbackError> {
        Self::build(members, options, Some(&wrap))
    }

    fn build(
        members: Vec<Arc<dyn Stt>>,
        options: FallbackSttOptions,
        wrap: Option<&StreamWrapper>,
    ) -> Result<Self, FallbackError> {
        if members.is_empty() {
            return Err(FallbackError::NoMembers { kind: "STT" });
        }
        let members: Vec<Arc<dyn Stt>> = members
            .into_iter()
            .map(|m| match wrap {
                Some(wrap) if !m.capabilities().streaming => wrap(m),
                _ => m,
            })
            .collect();
        let non_streaming: Vec<String> = members
            .iter()
            .filter(|m| !m.capabilities().streaming)
            .map(|m| m.label().to_owned())
            .collect();
        if !non_streaming.is_empty() {
            return Err(FallbackError::NonStreamingStt {
                labels: non_streaming,
            });
        }
        let labels = members.iter().map(|m| m.label().to_owned()).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                members,
                options,
                availability: Availability::new("STT", labels),
            }),
        })
    }
}

availability_api!(
    FallbackStt,
    dyn Stt,
    FallbackSttOptions,
    "The members (after wrapping), in order."
);

impl Shared {
    async fn recognize_with(
        &self,
        index: usize,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        let Some(member) = self.members.get(index) else {
            return Err(ApiError::new("no such STT member").into());
        };
        let options = options
            .clone()
            .with_conn_options(self.options.member_conn(options.conn_options));
        let budget = attempt_budget(&options.conn_options);
        match tokio::time::timeout(budget, member.recognize(audio, &options)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::timeout(format!(
                "{} did not recognize within {budget:.2?}",
                member.label()
            ))
            .into()),
        }
    }

    fn probe_recognize(
        self: &Arc<Self>,
        index: usize,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) {
        let context = (
            Arc::clone(self),
            Arc::<[AudioFrame]>::from(audio),
            options.clone(),
        );
        self.availability.start_probe(
            index,
            self.options.probe_interval,
            context,
            move |(shared, audio, options)| async move {
                shared.recognize_with(index, &audio, &options).await.is_ok()
            },
        );
    }

    /// Probes a streaming member: a stream that accepts `audio`, ends its input and ends without an error, each
    /// event within the attempt timeout.
    fn probe_stream(
        self: &Arc<Self>,
        index: usize,
        audio: Vec<AudioFrame>,
        options: &SttStreamOptions,
    ) {
        let context = (
            Arc::clone(self),
            Arc::<[AudioFrame]>::from(audio),
            options.clone(),
        );
        self.availability.start_probe(
            index,
            self.options.probe_interval,
            context,
            move |(shared, audio, options)| async move {
                shared.stream_probe(index, &audio, &options).await
            },
        );
    }

    async fn stream_probe(
        &self,
        index: usize,
        audio: &[AudioFrame],
        options: &SttStreamOptions,
    ) -> bool {
        let Some(member) = self.members.get(index) else {
            return false;
        };
        let options = options
            .clone()
            .with_conn_options(self.options.member_conn(options.conn_options));
        let Ok(mut stream) = member.stream(&options) else {
            return false;
        };
        for frame in audio {
            if stream.push_frame(frame.clone()).await.is_err() {
                return false;
            }
        }
        if stream.end_input().await.is_err() {
            return false;
        }
        loop {
            match tokio::time::timeout(self.options.attempt_timeout, stream.next()).await {
                Ok(None) => return true,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    }

    async fn recognize(
        self: &Arc<Self>,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        let mut run = RecognizeRun {
            shared: self,
            audio,
            options,
        };
        match try_in_order(&self.availability, "STT", &mut run).await? {
            Some(transcript) => Ok(transcript),
            // A `recognize` attempt is never abandoned.
            None => Err(ApiError::new("STT recognition abandoned").into()),
        }
    }
}

/// One `recognize` request, tried on the members in order.
struct RecognizeRun<'a> {
    shared: &'a Arc<Shared>,
    audio: &'a [AudioFrame],
    options: &'a RecognizeOptions,
}

impl MemberRequest for RecognizeRun<'_> {
    type Output = Transcript;
    type Error = SttError;

    fn probe(&self, index: usize) {
        self.shared.probe_recognize(index, self.audio, self.options);
    }

    async fn attempt(&mut self, index: usize) -> Attempt<Transcript, SttError> {
        match self
            .shared
            .recognize_with(index, self.audio, self.options)
            .await
        {
            Ok(transcript) => Attempt::Served(transcript),
            Err(error) => member_failed(error),
        }
    }
}

/// A member's error as an attempt's end: errors about the caller's audio end the request (another provider
/// would refuse it too), others switch to the next member.
fn member_failed<T>(error: SttError) -> Attempt<T, SttError> {
    if is_input_error(&error) {
        Attempt::Fatal {
            error,
            member_fault: false,
        }
    } else {
        Attempt::Failed(error)
    }
}

/// The input of a stream since the last final transcript, for replay into a replacement member.
struct Replay {
    inputs: VecDeque<FrameInput>,
    /// Audio in `inputs`.
    buffered: Duration,
    /// Stream time of the first frame in `inputs` (audio before it was finalized or dropped).
    start: Duration,
    max: Duration,
    warned: bool,
}

impl Replay {
    fn new(max: Duration) -> Self {
        Self {
            inputs: VecDeque::new(),
            buffered: Duration::ZERO,
            start: Duration::ZERO,
            max,
            warned: false,
        }
    }

    fn push(&mut self, input: FrameInput) {
        if let FrameInput::Frame(frame) = &input {
            self.buffered += frame.duration();
        }
        self.inputs.push_back(input);
        while self.buffered > self.max {
            if !self.pop_front() {
                break;
            }
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    max_replay = ?self.max,
                    "STT replay buffer full: the oldest audio would not reach a replacement STT"
                );
            }
        }
    }

    /// Drops the first input; false when empty.
    fn pop_front(&mut self) -> bool {
        match self.inputs.pop_front() {
            Some(FrameInput::Frame(frame)) => {
                let d = frame.duration();
                self.buffered = self.buffered.saturating_sub(d);
                self.start += d;
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Forgets the audio up to `end` (stream time) that a final transcript covered; `None` forgets everything.
    fn finalized(&mut self, end: Option<Duration>) {
        loop {
            let drop_it = match self.inputs.front() {
                None => break,
                Some(FrameInput::Frame(frame)) => {
                    end.is_none_or(|end| self.start + frame.duration() <= end)
                }
                Some(_) => true,
            };
            if !drop_it {
                break;
            }
            self.pop_front();
        }
    }

    fn frames(&self) -> Vec<AudioFrame> {
        self.inputs
            .iter()
            .filter_map(|i| match i {
                FrameInput::Frame(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Shifts the times of a member's transcript from its stream's start to the fallback stream's start.
fn shift(mut transcript: Transcript, offset: Duration) -> Transcript {
    if offset.is_zero() {
        return transcript;
    }
    for alt in &mut transcript.alternatives {
        alt.start_time += offset;
        alt.end_time += offset;
        for word in &mut alt.words {
            word.start += offset;
            word.end += offset;
        }
    }
    transcript
}

fn shift_event(event: SpeechEvent, offset: Duration) -> SpeechEvent {
    match event {
        SpeechEvent::InterimTranscript(t) => SpeechEvent::InterimTranscript(shift(t, offset)),
        SpeechEvent::PreflightTranscript(t) => SpeechEvent::PreflightTranscript(shift(t, offset)),
        SpeechEvent::FinalTranscript(t) => SpeechEvent::FinalTranscript(shift(t, offset)),
        other => other,
    }
}

/// How a member's stream ended.
enum StreamOutcome {
    /// Ended after the end of input, or the caller is gone: stop.
    Finished,
    /// Failed: try the next member.
    Failed(SttError),
}

/// The task behind a fallback recognition stream.
struct StreamRun {
    shared: Arc<Shared>,
    options: SttStreamOptions,
    driver: SttStreamDriver,
    replay: Replay,
    input_ended: bool,
    caller_gone: bool,
}

impl MemberRequest for StreamRun {
    type Output = ();
    type Error = SttError;

    fn probe(&self, index: usize) {
        self.shared
            .probe_stream(index, self.replay.frames(), &self.options);
    }

    async fn attempt(&mut self, index: usize) -> Attempt<(), SttError> {
        match self.serve(index).await {
            StreamOutcome::Finished if self.caller_gone => Attempt::Abandoned,
            StreamOutcome::Finished => Attempt::Served(()),
            StreamOutcome::Failed(error) => member_failed(error),
        }
    }
}

impl StreamRun {
    async fn run(mut self) {
        let availability = Arc::clone(&self.shared.availability);
        if let Err(error) = try_in_order(&availability, "STT stream", &mut self).await {
            let _ = self.driver.send(Err(error)).await;
        }
    }

    /// Runs member `index` until the stream ends or the member fails.
    async fn serve(&mut self, index: usize) -> StreamOutcome {
        let Some(member) = self.shared.members.get(index).cloned() else {
            return StreamOutcome::Failed(ApiError::new("no such STT member").into());
        };
        let options = self
            .options
            .clone()
            .with_conn_options(self.shared.options.member_conn(self.options.conn_options));
        let mut stream = match member.stream(&options) {
            Ok(s) => s,
            Err(e) => return StreamOutcome::Failed(e),
        };
        let offset = self.replay.start;
        let timeout = self.shared.options.attempt_timeout;
        // Replay what the previous member did not finalize.
        let replay: Vec<FrameInput> = self.replay.inputs.iter().cloned().collect();
        for input in replay {
            if forward(&stream, input).await.is_err() {
                return StreamOutcome::Failed(closed_error(&member));
            }
        }
        if self.input_ended && stream.end_input().await.is_err() {
            return StreamOutcome::Failed(closed_error(&member));
        }
        // Once the input ended, every wait for the member's next event is bounded.
        let mut deadline = self.input_ended.then(|| Instant::now() + timeout);
        let mut member_closed = false;
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                input = self.driver.recv(), if !self.input_ended && !member_closed => {
                    let Some(input) = input else {
                        // The caller dropped the stream.
                        self.caller_gone = true;
                        return StreamOutcome::Finished;
                    };
                    if matches!(input, FrameInput::EndInput) {
                        self.input_ended = true;
                        deadline = Some(Instant::now() + timeout);
                    } else {
                        self.replay.push(input.clone());
                    }
                    // A closed member stream reports why on its event side: stop feeding it and read that.
                    member_closed = forward(&stream, input).await.is_err();
                }
                event = stream.next() => {
                    match event {
                        None if self.input_ended => return StreamOutcome::Finished,
                        None => {
                            return StreamOutcome::Failed(
                                ApiError::connection(format!(
                                    "{} ended its stream before the end of input",
                                    member.label()
                                ))
                                .into(),
                            );
                        }
                        Some(Err(e)) => return StreamOutcome::Failed(e),
                        Some(Ok(event)) => {
                            if deadline.is_some() {
                                deadline = Some(Instant::now() + timeout);
                            }
                            let event = shift_event(event, offset);
                            if let SpeechEvent::FinalTranscript(t) = &event {
                                let end = t.alternatives.first().map(|a| a.end_time).filter(|e| !e.is_zero());
                                self.replay.finalized(end);
                            }
                            if self.driver.send(Ok(event)).await.is_err() {
                                self.caller_gone = true;
                                return StreamOutcome::Finished;
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    return StreamOutcome::Failed(
                        ApiError::timeout(format!(
                            "{} sent nothing for {timeout:.2?} after the end of input",
                            member.label()
                        ))
                        .into(),
                    );
                }
            }
        }
    }
}

/// Errors about the caller's audio rather than the provider: they reach the caller and mark nobody unavailable.
fn is_input_error(error: &SttError) -> bool {
    matches!(
        error,
        SttError::InvalidAudio(_) | SttError::UnsupportedSampleRate { .. }
    )
}

fn closed_error(member: &Arc<dyn Stt>) -> SttError {
    ApiError::connection(format!("{} closed its stream", member.label())).into()
}

async fn forward(stream: &SttStream, input: FrameInput) -> Result<(), crate::stream::StreamClosed> {
    match input {
        FrameInput::Frame(frame) => stream.push_frame(frame).await,
        FrameInput::Flush => stream.flush().await,
        FrameInput::EndInput => stream.end_input().await,
    }
}

#[async_trait]
impl Stt for FallbackStt {
    fn label(&self) -> &str {
        "fallback.STT"
    }

    fn model(&self) -> &str {
        "fallback"
    }

    /// Streaming; interim results, aligned transcripts and diarization when every member has them.
    fn capabilities(&self) -> SttCapabilities {
        let members = &self.shared.members;
        SttCapabilities {
            streaming: true,
            interim_results: members.iter().all(|m| m.capabilities().interim_results),
            aligned_transcript: members.iter().all(|m| m.capabilities().aligned_transcript),
            diarization: members.iter().all(|m| m.capabilities().diarization),
        }
    }

    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        self.shared.recognize(audio, options).await
    }

    /// Opens a stream served by the first member that works; a member failing mid-stream is replaced by the next
    /// one, which first receives the audio since the last final transcript (at most
    /// [`FallbackSttOptions::max_replay`]). Transcript times stay relative to this stream's start.
    fn stream(&self, options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let (stream, driver) = SttStream::channel();
        let run = StreamRun {
            shared: Arc::clone(&self.shared),
            options: options.clone(),
            driver,
            replay: Replay::new(self.shared.options.max_replay),
            input_ended: false,
            caller_gone: false,
        };
        tokio::spawn(run.run());
        Ok(stream.with_labels(self.label(), self.model()))
    }

    async fn aclose(&self) {
        self.shared.availability.close();
        for member in &self.shared.members {
            member.aclose().await;
        }
    }
}
