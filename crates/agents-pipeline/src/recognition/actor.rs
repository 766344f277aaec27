//! The recognition task: one `select!` loop over commands, the VAD stream, the STT stream and three timers
//! (pending end of turn, manual commit, user away). State is owned here; nothing is shared.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout_at};

use agents_audio::AudioFrame;
use agents_core::chat::ChatRole;
use agents_core::events::Component;
use agents_core::stream::{StreamClosed, TryPushError};
use agents_core::stt::{SpeechEvent, SttStream, SttStreamOptions, Transcript};
use agents_core::vad::{VadEvent, VadEventKind, VadStream};
use agents_core::{ChatContext, Stt, Vad};

use super::endpointing::Endpointing;
use super::{
    Command, EndOfTurn, RecognitionError, RecognitionEvent, RecognitionOptions, RecognitionStats,
    TurnDetectionMode, TurnDetectorError, UserStateTracker, VadProgress,
};

/// What a finished endpointing wait decided.
struct EouOutcome {
    probability: Option<f32>,
    delay: Duration,
    error: Option<TurnDetectorError>,
}

/// A pending end of turn: a task, aborted when dropped (new speech, clear, close).
struct EouTask(JoinHandle<EouOutcome>);

impl Drop for EouTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) struct Actor {
    options: RecognitionOptions,
    vad: Option<Arc<dyn Vad>>,
    stt: Option<Arc<dyn Stt>>,
    vad_stream: Option<VadStream>,
    stt_stream: Option<SttStream>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<RecognitionEvent>,
    chat_ctx: ChatContext,
    /// VAD speaking state.
    vad_speaking: bool,
    /// STT speaking state (between its start and end of speech).
    stt_speaking: bool,
    /// The STT heard speech not yet covered by a final transcript.
    stt_pending: bool,
    transcript: String,
    language: Option<String>,
    last_speaking_time: Option<Instant>,
    last_final_transcript_time: Option<Instant>,
    eou: Option<EouTask>,
    commit_deadline: Option<Instant>,
    user_state: UserStateTracker,
    stats: RecognitionStats,
    endpointing: Endpointing,
    closing: bool,
    /// The stream reported an error (its end is then not reported again).
    vad_failed: bool,
    stt_failed: bool,
}

/// How long a control input (flush, end of input) may wait for room in a provider's queue. The actor does not
/// read provider events while it waits, so an overloaded provider blocked on its own event queue could otherwise
/// never take it; after this the stream is treated as closed.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// Pushes a control input with [`CONTROL_TIMEOUT`]; `false` when it was not queued.
async fn control(push: impl Future<Output = Result<(), StreamClosed>>) -> bool {
    match tokio::time::timeout(CONTROL_TIMEOUT, push).await {
        Ok(Ok(())) => true,
        Ok(Err(StreamClosed)) => false,
        Err(_) => {
            tracing::warn!("provider queue full for {CONTROL_TIMEOUT:?}: stream given up");
            false
        }
    }
}

/// The next item of an optional stream; pending forever without one.
async fn next_of<S: Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn poll_eou(eou: &mut Option<EouTask>) -> Option<EouOutcome> {
    match eou {
        Some(t) => (&mut t.0).await.ok(),
        None => std::future::pending().await,
    }
}

fn join_transcript(buffer: &mut String, text: &str) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    if !buffer.is_empty() {
        buffer.push(' ');
    }
    buffer.push_str(text);
}

impl Actor {
    pub(super) fn new(
        vad: Option<Arc<dyn Vad>>,
        stt: Option<Arc<dyn Stt>>,
        options: RecognitionOptions,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<RecognitionEvent>,
    ) -> Result<Self, RecognitionError> {
        let vad_stream = match &vad {
            Some(v) => Some(v.stream().map_err(RecognitionError::Vad)?),
            None => None,
        };
        let mut actor = Self {
            user_state: UserStateTracker::new(Instant::now(), options.user_away_timeout),
            endpointing: Endpointing::new(options.endpointing),
            options,
            vad,
            stt,
            vad_stream,
            stt_stream: None,
            commands,
            events,
            chat_ctx: ChatContext::new(),
            vad_speaking: false,
            stt_speaking: false,
            stt_pending: false,
            transcript: String::new(),
            language: None,
            last_speaking_time: None,
            last_final_transcript_time: None,
            eou: None,
            commit_deadline: None,
            stats: RecognitionStats::default(),
            closing: false,
            vad_failed: false,
            stt_failed: false,
        };
        actor.stt_stream = actor.open_stt()?;
        Ok(actor)
    }

    fn open_stt(&self) -> Result<Option<SttStream>, RecognitionError> {
        let Some(stt) = &self.stt else {
            return Ok(None);
        };
        let mut opts = SttStreamOptions::default();
        opts.language.clone_from(&self.options.language);
        stt.stream(&opts).map(Some).map_err(RecognitionError::Stt)
    }

    pub(super) async fn run(mut self) {
        loop {
            if self.closing && self.vad_stream.is_none() && self.stt_stream.is_none() {
                return;
            }
            let user_away = self.user_state.deadline();
            let ok = tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(c) => self.on_command(c).await,
                    None => return,
                },
                ev = next_of(&mut self.vad_stream) => self.on_vad(ev).await,
                ev = next_of(&mut self.stt_stream) => self.on_stt(ev).await,
                outcome = poll_eou(&mut self.eou) => {
                    self.eou = None;
                    match outcome {
                        Some(outcome) => self.on_eou_done(outcome).await,
                        None => true,
                    }
                }
                () = at(self.commit_deadline) => {
                    self.commit_deadline = None;
                    self.commit_now(true, Duration::ZERO, None).await
                }
                () = at(user_away) => match self.user_state.poll(Instant::now()) {
                    Some(change) => self.emit(RecognitionEvent::UserStateChanged(change)).await,
                    None => true,
                },
            };
            if !ok {
                return;
            }
        }
    }

    /// Sends an event; `false` when the consumer is gone.
    async fn emit(&self, event: RecognitionEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    async fn emit_error(&self, error: RecognitionError) -> bool {
        tracing::warn!(error = %error, "audio recognition error");
        self.emit(RecognitionEvent::Error(Arc::new(error))).await
    }

    async fn on_command(&mut self, command: Command) -> bool {
        match command {
            Command::Frame(frame) => {
                self.forward(frame);
                true
            }
            Command::AgentSpeaking(speaking) => {
                self.user_state.agent_speaking(Instant::now(), speaking);
                if speaking {
                    self.endpointing.agent_speech_started();
                }
                true
            }
            Command::ChatContext(ctx) => {
                self.chat_ctx = ctx;
                true
            }
            Command::Commit => self.on_commit().await,
            Command::Clear => self.on_clear().await,
            Command::Close => {
                self.closing = true;
                self.eou = None;
                self.commit_deadline = None;
                if let Some(s) = &self.vad_stream
                    && !control(s.end_input()).await
                {
                    self.vad_stream = None;
                }
                if let Some(s) = &self.stt_stream
                    && !control(s.end_input()).await
                {
                    self.stt_stream = None;
                }
                true
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats);
                true
            }
        }
    }

    fn forward(&mut self, frame: AudioFrame) {
        if self.closing {
            return;
        }
        self.stats.frames += 1;
        let stt_frame = self.stt_stream.as_ref().map(|_| frame.clone());
        if let Some(s) = &self.vad_stream
            && let Err(TryPushError::Full(_)) = s.try_push_frame(frame)
        {
            self.stats.vad_frames_dropped += 1;
            if self.stats.vad_frames_dropped % 100 == 1 {
                tracing::warn!(
                    dropped = self.stats.vad_frames_dropped,
                    "VAD is behind: frames dropped"
                );
            }
        }
        if let (Some(s), Some(frame)) = (&self.stt_stream, stt_frame)
            && let Err(TryPushError::Full(_)) = s.try_push_frame(frame)
        {
            self.stats.stt_frames_dropped += 1;
            if self.stats.stt_frames_dropped % 100 == 1 {
                tracing::warn!(
                    dropped = self.stats.stt_frames_dropped,
                    "STT is behind: frames dropped"
                );
            }
        }
    }

    fn mode(&self) -> TurnDetectionMode {
        self.options.mode
    }

    /// Whether the user is speaking, as the mode's speech source sees it.
    fn user_speaking(&self) -> bool {
        match self.mode() {
            TurnDetectionMode::Stt => self.stt_speaking,
            _ if self.vad.is_some() => self.vad_speaking,
            _ => self.stt_speaking,
        }
    }

    async fn on_vad(&mut self, event: Option<Result<VadEvent, agents_core::VadError>>) -> bool {
        let ev = match event {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                // The stream may go on (or end next); report and keep reading.
                self.vad_failed = true;
                return self.emit_error(RecognitionError::Vad(e)).await;
            }
            None => {
                self.vad_stream = None;
                self.vad_speaking = false;
                if self.closing || std::mem::take(&mut self.vad_failed) {
                    return true;
                }
                return self
                    .emit_error(RecognitionError::StreamEnded {
                        component: Component::Vad,
                    })
                    .await;
            }
        };
        let now = Instant::now();
        match ev.kind {
            VadEventKind::StartOfSpeech => {
                self.vad_speaking = true;
                // New speech cancels a pending end of turn (behaviour 63).
                self.eou = None;
                if self.mode() != TurnDetectionMode::Stt {
                    self.endpointing.user_speech_started(now);
                }
                let change = self.user_state.user_speaking(now, true);
                self.emit(RecognitionEvent::UserStartedSpeaking).await
                    && self.emit_user_state(change).await
            }
            VadEventKind::InferenceDone => {
                self.emit(RecognitionEvent::VadInference(VadProgress {
                    speech_duration: ev.speech_duration,
                    silence_duration: ev.silence_duration,
                    probability: ev.probability,
                    speaking: ev.speaking,
                }))
                .await
            }
            VadEventKind::EndOfSpeech => {
                self.vad_speaking = false;
                let last = now.checked_sub(ev.silence_duration).unwrap_or(now);
                let change = self.user_state.user_speaking(now, false);
                if self.mode() != TurnDetectionMode::Stt {
                    self.last_speaking_time = Some(last);
                    self.endpointing.user_speech_ended(last);
                }
                if !(self
                    .emit(RecognitionEvent::UserStoppedSpeaking {
                        last_speaking_time: last,
                    })
                    .await
                    && self.emit_user_state(change).await)
                {
                    return false;
                }
                if self.mode() == TurnDetectionMode::Vad {
                    self.run_eou();
                }
                true
            }
            _ => true,
        }
    }

    async fn emit_user_state(&self, change: Option<super::UserStateChange>) -> bool {
        match change {
            Some(c) => self.emit(RecognitionEvent::UserStateChanged(c)).await,
            None => true,
        }
    }

    async fn on_stt(&mut self, event: Option<Result<SpeechEvent, agents_core::SttError>>) -> bool {
        let ev = match event {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                // The stream may go on (the VAD-segmented adapter does) or end next; report and keep reading.
                self.stt_failed = true;
                return self.emit_error(RecognitionError::Stt(e)).await;
            }
            None => {
                self.stt_stream = None;
                self.stt_speaking = false;
                self.stt_pending = false;
                if self.closing {
                    return true;
                }
                if std::mem::take(&mut self.stt_failed) {
                    return self.maybe_finish_commit().await;
                }
                return self
                    .emit_error(RecognitionError::StreamEnded {
                        component: Component::Stt,
                    })
                    .await
                    && self.maybe_finish_commit().await;
            }
        };
        let now = Instant::now();
        let no_vad = self.vad.is_none();
        match ev {
            SpeechEvent::StartOfSpeech => {
                self.stt_speaking = true;
                self.stt_pending = true;
                if self.mode() == TurnDetectionMode::Stt || no_vad {
                    self.endpointing.user_speech_started(now);
                }
                if self.mode() == TurnDetectionMode::Stt {
                    self.eou = None;
                    self.last_speaking_time = Some(now);
                }
                if no_vad {
                    self.eou = None;
                    let change = self.user_state.user_speaking(now, true);
                    return self.emit(RecognitionEvent::UserStartedSpeaking).await
                        && self.emit_user_state(change).await;
                }
                true
            }
            SpeechEvent::InterimTranscript(t) => {
                self.stt_pending = true;
                self.emit(RecognitionEvent::InterimTranscript(t)).await
            }
            SpeechEvent::PreflightTranscript(t) => {
                self.emit(RecognitionEvent::PreflightTranscript(t)).await
            }
            SpeechEvent::FinalTranscript(t) => self.on_final(now, t).await,
            SpeechEvent::EndOfSpeech => {
                self.stt_speaking = false;
                self.stt_pending = false;
                if no_vad || self.mode() == TurnDetectionMode::Stt {
                    self.last_speaking_time = Some(now);
                    self.endpointing.user_speech_ended(now);
                }
                if no_vad {
                    let change = self.user_state.user_speaking(now, false);
                    if !(self
                        .emit(RecognitionEvent::UserStoppedSpeaking {
                            last_speaking_time: now,
                        })
                        .await
                        && self.emit_user_state(change).await)
                    {
                        return false;
                    }
                }
                if self.mode() == TurnDetectionMode::Stt {
                    self.run_eou();
                }
                self.maybe_finish_commit().await
            }
            SpeechEvent::RecognitionUsage(u) => self.emit(RecognitionEvent::SttUsage(u)).await,
            _ => true,
        }
    }

    async fn on_final(&mut self, now: Instant, t: Transcript) -> bool {
        let text = t.text().trim().to_owned();
        if let Some(lang) = t.language() {
            self.language = Some(lang.to_owned());
        }
        if !self.emit(RecognitionEvent::FinalTranscript(t)).await {
            return false;
        }
        self.stt_pending = false;
        if text.is_empty() {
            return self.maybe_finish_commit().await;
        }
        if self.mode() == TurnDetectionMode::RealtimeLlm {
            // No local turns: nothing would ever consume (or clear) the buffer.
            return true;
        }
        join_transcript(&mut self.transcript, &text);
        self.last_final_transcript_time = Some(now);
        if self.commit_deadline.is_some() {
            return self.maybe_finish_commit().await;
        }
        if matches!(self.mode(), TurnDetectionMode::Vad | TurnDetectionMode::Stt)
            && !self.user_speaking()
        {
            if self.last_speaking_time.is_none() {
                self.last_speaking_time = Some(now);
            }
            // A new final restarts the pending end of turn.
            self.run_eou();
        }
        true
    }

    /// Starts (or restarts) endpointing for the current turn.
    fn run_eou(&mut self) {
        if self.stt.is_some() && self.transcript.is_empty() {
            self.eou = None;
            return;
        }
        let last = self.last_speaking_time.unwrap_or_else(Instant::now);
        let endpointing = self.endpointing.clone();
        let max_delay = endpointing.options().max_delay.max(endpointing.min_delay());
        let detector = self.options.turn_detector.clone();
        let language = self.language.clone();
        let transcript = self.transcript.clone();
        let mut ctx = self.chat_ctx.clone();
        self.eou = Some(EouTask(tokio::spawn(async move {
            let mut probability = None;
            let mut error = None;
            let mut threshold = None;
            if let Some(d) = detector
                && !transcript.is_empty()
                && d.supports_language(language.as_deref())
            {
                threshold = d.unlikely_threshold(language.as_deref());
                ctx.add_message(ChatRole::User, transcript);
                // A maximum delay too large for the clock means no limit.
                let prediction = match last.checked_add(max_delay) {
                    Some(limit) => timeout_at(limit, d.predict_end_of_turn(&ctx)).await,
                    None => Ok(d.predict_end_of_turn(&ctx).await),
                };
                match prediction {
                    Ok(Ok(p)) if (0.0..=1.0).contains(&p) => probability = Some(p),
                    Ok(Ok(p)) => error = Some(TurnDetectorError::InvalidProbability { value: p }),
                    Ok(Err(e)) => error = Some(e),
                    Err(_) => error = Some(TurnDetectorError::Timeout),
                }
            }
            let delay = endpointing.delay_for(probability, threshold);
            match last.checked_add(delay) {
                Some(at) => sleep_until(at).await,
                // A delay too large for the clock: the turn only ends by a manual commit.
                None => std::future::pending::<()>().await,
            }
            EouOutcome {
                probability,
                delay,
                error,
            }
        })));
    }

    async fn on_eou_done(&mut self, outcome: EouOutcome) -> bool {
        if let Some(e) = outcome.error
            && !self.emit_error(RecognitionError::TurnDetector(e)).await
        {
            return false;
        }
        self.commit_now(false, outcome.delay, outcome.probability)
            .await
    }

    /// Emits the end of turn with the current transcript and clears it.
    async fn commit_now(
        &mut self,
        manual: bool,
        delay: Duration,
        probability: Option<f32>,
    ) -> bool {
        let now = Instant::now();
        self.eou = None;
        self.commit_deadline = None;
        let last = if manual && self.user_speaking() {
            now
        } else {
            self.last_speaking_time.unwrap_or(now)
        };
        let transcription_delay = self
            .last_final_transcript_time
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(last));
        let turn = EndOfTurn {
            transcript: std::mem::take(&mut self.transcript),
            language: self.language.clone(),
            end_of_turn_probability: probability,
            endpointing_delay: delay,
            last_speaking_time: last,
            committed_at: now,
            end_of_utterance_delay: now.saturating_duration_since(last),
            transcription_delay,
            manual,
        };
        self.last_final_transcript_time = None;
        self.emit(RecognitionEvent::EndOfTurn(turn)).await
    }

    async fn on_commit(&mut self) -> bool {
        self.eou = None;
        if self.stt_pending
            && let Some(s) = &self.stt_stream
            && control(s.flush()).await
        {
            self.commit_deadline = Some(Instant::now() + self.options.manual_commit_timeout);
            return true;
        }
        self.commit_now(true, Duration::ZERO, None).await
    }

    /// A manual commit waiting for the STT completes once the STT has nothing pending.
    async fn maybe_finish_commit(&mut self) -> bool {
        if self.commit_deadline.is_some() && (!self.stt_pending || self.stt_stream.is_none()) {
            return self.commit_now(true, Duration::ZERO, None).await;
        }
        true
    }

    async fn on_clear(&mut self) -> bool {
        self.eou = None;
        self.commit_deadline = None;
        self.transcript.clear();
        self.last_final_transcript_time = None;
        self.stt_pending = false;
        self.stt_speaking = false;
        if self.stt.is_some() {
            // Drop the in-flight audio: a fresh stream starts from silence.
            self.stt_stream = None;
            self.stt_failed = false;
            match self.open_stt() {
                Ok(s) => self.stt_stream = s,
                Err(e) => return self.emit_error(e).await,
            }
        }
        true
    }
}
