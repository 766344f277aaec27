//! Audio recognition and turn detection: VAD + STT + endpointing in one actor.
//!
//! [`AudioRecognition::start`] spawns a task that owns an optional [`Vad`] stream and an optional [`Stt`] stream,
//! forwards every pushed [`AudioFrame`] to both, and reports [`RecognitionEvent`]s on a bounded stream: user
//! started/stopped speaking, VAD inference progress (for interruption decisions), interim / preflight / final
//! transcripts, user-state changes (speaking / listening / away) and the **end of the user's turn**
//! ([`EndOfTurn`]: transcript, language, endpointing timings for [`EouMetrics`]).
//!
//! # Turn detection ([`TurnDetectionMode`])
//!
//! - `Vad`: VAD end of speech starts endpointing; `last_speaking_time = now - silence_duration`.
//! - `Stt`: the STT's end of speech (end of utterance) starts endpointing; `last_speaking_time = now`.
//! - `Manual`: the turn ends only on [`AudioRecognition::commit_user_turn`]; [`AudioRecognition::clear_user_turn`]
//!   forgets it.
//! - `RealtimeLlm`: no local decision (the realtime model's server VAD decides); events still flow.
//!
//! In `Vad` and `Stt` modes a final transcript arriving while the user is silent (re)starts endpointing too.
//!
//! # Endpointing (LiveKit §5.3)
//!
//! Skipped while an STT exists and the turn's transcript is empty. Otherwise the delay is
//! [`EndpointingOptions::min_delay`], or [`EndpointingOptions::max_delay`] when a [`TurnDetector`] supports the
//! language and predicts a probability below its unlikely threshold. The end of turn fires at
//! `last_speaking_time + delay` (so a late transcript or a slow model eats into the wait, never adds to it; the
//! model is given until `last_speaking_time + max_delay`). New user speech cancels a pending end of turn; a new
//! final transcript restarts it. Consecutive finals are joined with single spaces.
//!
//! # Back-pressure and overflow
//!
//! Commands (frames included) go through one bounded queue ([`RecognitionOptions::command_capacity`]):
//! [`AudioRecognition::push_frame`] waits, [`AudioRecognition::try_push_frame`] hands the frame back. The actor
//! forwards frames to the VAD and STT streams without waiting: a frame a provider queue cannot take is dropped for
//! that provider and counted (a stalled provider must not stall turn detection). Events are delivered with
//! back-pressure; consume them in a task that does not also wait on pushing frames, or use `try_push_frame`.
//!
//! # Errors
//!
//! A VAD or STT stream error item is reported as [`RecognitionEvent::Error`] and the stream is read on (providers
//! that recover, like the VAD-segmented [`crate::stt_adapter::StreamAdapter`], keep working). A stream that ends
//! is dropped (reported as [`RecognitionError::StreamEnded`] unless an error explained it); the other component
//! keeps running, and [`AudioRecognition::clear_user_turn`] reopens the STT stream. Nothing panics on bad input.

mod actor;
pub mod detector;
pub mod endpointing;
pub(crate) mod stt_node;
pub mod user_state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use agents_audio::AudioFrame;
use agents_core::events::Component;
use agents_core::metrics::EouMetrics;
use agents_core::stream::{EventStream, TryPushError};
use agents_core::stt::{RecognitionUsage, SttError, Transcript};
use agents_core::vad::VadError;
use agents_core::{ChatContext, Stt, Vad};

pub use detector::{TurnDetector, TurnDetectorError};
pub use endpointing::{Endpointing, EndpointingMode, EndpointingOptions};
pub use user_state::{DEFAULT_USER_AWAY_TIMEOUT, UserStateChange, UserStateTracker};

/// The longest [`AudioRecognition::aclose`] waits for the providers' last events.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who decides that the user's turn is over (defined in `agents_core::session`, re-exported here).
pub use agents_core::session::TurnDetectionMode;

/// Settings of an [`AudioRecognition`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RecognitionOptions {
    /// Who decides the end of turn.
    pub mode: TurnDetectionMode,
    /// Optional end-of-utterance model (used in `Vad` and `Stt` modes).
    pub turn_detector: Option<Arc<dyn TurnDetector>>,
    /// Endpointing delays.
    pub endpointing: EndpointingOptions,
    /// Silence from both sides after which the user is away; `None` disables it. Default 15 s.
    pub user_away_timeout: Option<Duration>,
    /// In `Manual` mode, how long `commit_user_turn` waits for the STT's final transcript after flushing it.
    /// Default 2 s.
    pub manual_commit_timeout: Duration,
    /// Language hint for the STT stream.
    pub language: Option<String>,
    /// Capacity of the command (and frame) queue. Default 256.
    pub command_capacity: usize,
    /// Capacity of the event stream. Default 256.
    pub event_capacity: usize,
}

impl RecognitionOptions {
    /// Options for `mode` with the defaults.
    pub fn new(mode: TurnDetectionMode) -> Self {
        Self {
            mode,
            turn_detector: None,
            endpointing: EndpointingOptions::default(),
            user_away_timeout: Some(DEFAULT_USER_AWAY_TIMEOUT),
            manual_commit_timeout: Duration::from_secs(2),
            language: None,
            command_capacity: 256,
            event_capacity: 256,
        }
    }

    /// Sets the turn detector.
    pub fn with_turn_detector(mut self, detector: Arc<dyn TurnDetector>) -> Self {
        self.turn_detector = Some(detector);
        self
    }

    /// Sets the endpointing delays.
    pub fn with_endpointing(mut self, endpointing: EndpointingOptions) -> Self {
        self.endpointing = endpointing;
        self
    }

    /// Sets the user-away timeout.
    pub fn with_user_away_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.user_away_timeout = timeout;
        self
    }

    /// Sets the manual-commit wait.
    pub fn with_manual_commit_timeout(mut self, timeout: Duration) -> Self {
        self.manual_commit_timeout = timeout;
        self
    }

    /// Sets the STT language hint.
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }
}

impl fmt::Debug for RecognitionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecognitionOptions")
            .field("mode", &self.mode)
            .field(
                "turn_detector",
                &self.turn_detector.as_ref().map(|d| d.label().to_owned()),
            )
            .field("endpointing", &self.endpointing)
            .field("user_away_timeout", &self.user_away_timeout)
            .field("manual_commit_timeout", &self.manual_commit_timeout)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// The end of a user turn.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndOfTurn {
    /// The turn's final transcripts joined with single spaces (may be empty without an STT, or in manual mode).
    pub transcript: String,
    /// Language of the last final transcript, when known.
    pub language: Option<String>,
    /// The turn detector's probability, when it ran.
    pub end_of_turn_probability: Option<f32>,
    /// The endpointing delay that applied (min or max; zero for a manual commit).
    pub endpointing_delay: Duration,
    /// When the user last spoke (end of speech minus the VAD's trailing silence).
    pub last_speaking_time: Instant,
    /// When the turn was committed.
    pub committed_at: Instant,
    /// Last speaking time to the commit.
    pub end_of_utterance_delay: Duration,
    /// Last speaking time to the last final transcript (zero when the final came first).
    pub transcription_delay: Duration,
    /// Whether `commit_user_turn` ended the turn.
    pub manual: bool,
}

impl EndOfTurn {
    /// The EOU metrics record of this turn (`on_user_turn_completed_delay` and `speech_id` are for the session).
    pub fn eou_metrics(&self) -> EouMetrics {
        let mut m = EouMetrics::new();
        // Stamped at the commit (the end-of-turn decision), not when the record is built after the turn hook.
        m.timestamp = m
            .timestamp
            .checked_sub(self.committed_at.elapsed())
            .unwrap_or(m.timestamp);
        m.end_of_utterance_delay = self.end_of_utterance_delay;
        m.transcription_delay = self.transcription_delay;
        m
    }
}

/// VAD progress, for interruption decisions.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct VadProgress {
    /// Speech accumulated in the current segment.
    pub speech_duration: Duration,
    /// Silence accumulated since speech stopped.
    pub silence_duration: Duration,
    /// Speech probability of the window.
    pub probability: f32,
    /// Whether the VAD is in the speaking state.
    pub speaking: bool,
}

/// Why recognition reported an error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecognitionError {
    /// The turn-detection mode needs a component that was not given.
    #[error("turn detection mode {mode:?} needs a {component:?}")]
    MissingComponent {
        /// The mode.
        mode: TurnDetectionMode,
        /// What is missing.
        component: Component,
    },
    /// The VAD reported an error.
    #[error("VAD failed")]
    Vad(#[source] VadError),
    /// The STT reported an error.
    #[error("speech-to-text failed")]
    Stt(#[source] SttError),
    /// A provider stream ended by itself.
    #[error("{component:?} stream ended unexpectedly")]
    StreamEnded {
        /// Which one.
        component: Component,
    },
    /// The turn detector failed; the minimum delay applied.
    #[error("turn detector failed")]
    TurnDetector(#[source] TurnDetectorError),
    /// The STT is not a streaming one and no VAD is there to segment the audio for it (LiveKit's message).
    #[error(
        "The STT ({label}) does not support streaming, add a VAD to the AgentTask/VoiceAgent to enable streaming"
    )]
    SttNotStreaming {
        /// The STT's label.
        label: String,
    },
}

/// The recognition task is gone (closed, or its event stream was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audio recognition closed")]
pub struct RecognitionClosed;

/// What the recognition reports, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RecognitionEvent {
    /// The user started speaking (VAD; the STT's start of speech when there is no VAD).
    UserStartedSpeaking,
    /// The user stopped speaking (VAD; the STT's end of speech when there is no VAD).
    UserStoppedSpeaking {
        /// When the user last spoke.
        last_speaking_time: Instant,
    },
    /// A VAD window was processed.
    VadInference(VadProgress),
    /// An interim transcript.
    InterimTranscript(Transcript),
    /// An early final transcript (preemptive generation); a final follows.
    PreflightTranscript(Transcript),
    /// A final transcript (also reported when empty).
    FinalTranscript(Transcript),
    /// STT audio usage.
    SttUsage(RecognitionUsage),
    /// The user's turn is over.
    EndOfTurn(EndOfTurn),
    /// The user's state changed.
    UserStateChanged(UserStateChange),
    /// A component failed (see [`RecognitionError`] for what keeps running).
    Error(Arc<RecognitionError>),
}

pub(crate) enum Command {
    Frame(AudioFrame),
    AgentSpeaking(bool),
    ChatContext(ChatContext),
    Commit,
    Clear,
    Close,
    Stats(tokio::sync::oneshot::Sender<RecognitionStats>),
}

/// Counters of a recognition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecognitionStats {
    /// Frames the VAD queue could not take.
    pub vad_frames_dropped: u64,
    /// Frames the STT queue could not take.
    pub stt_frames_dropped: u64,
    /// Frames received.
    pub frames: u64,
}

/// Handle of the recognition actor; see the [module documentation](self). Dropping it stops the task.
#[derive(Debug)]
pub struct AudioRecognition {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl AudioRecognition {
    /// Opens the VAD and STT streams and starts the actor. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`RecognitionError::MissingComponent`] when the mode needs a VAD or STT that is absent (LiveKit only warns
    /// and disables turn detection); [`RecognitionError::Vad`] / [`RecognitionError::Stt`] when a stream cannot
    /// be opened.
    pub fn start(
        vad: Option<Arc<dyn Vad>>,
        stt: Option<Arc<dyn Stt>>,
        options: RecognitionOptions,
    ) -> Result<(Self, EventStream<RecognitionEvent>), RecognitionError> {
        match (options.mode, &vad, &stt) {
            (TurnDetectionMode::Vad, None, _) => {
                return Err(RecognitionError::MissingComponent {
                    mode: options.mode,
                    component: Component::Vad,
                });
            }
            (TurnDetectionMode::Stt, _, None) => {
                return Err(RecognitionError::MissingComponent {
                    mode: options.mode,
                    component: Component::Stt,
                });
            }
            _ => {}
        }
        let (tx, rx) = mpsc::channel(options.command_capacity.max(1));
        let (events_tx, events) = EventStream::channel(options.event_capacity);
        let actor = actor::Actor::new(vad, stt, options, rx, events_tx)?;
        let task = tokio::spawn(actor.run());
        Ok((Self { commands: tx, task }, events))
    }

    async fn send(&self, c: Command) -> Result<(), RecognitionClosed> {
        self.commands.send(c).await.map_err(|_| RecognitionClosed)
    }

    /// Pushes user audio, waiting while the queue is full.
    ///
    /// # Errors
    /// [`RecognitionClosed`] when the task ended.
    pub async fn push_frame(&self, frame: AudioFrame) -> Result<(), RecognitionClosed> {
        self.send(Command::Frame(frame)).await
    }

    /// Pushes user audio without waiting; the frame is handed back when the queue is full or the task ended.
    ///
    /// # Errors
    /// [`TryPushError`] with the frame.
    pub fn try_push_frame(&self, frame: AudioFrame) -> Result<(), TryPushError<AudioFrame>> {
        match self.commands.try_reserve() {
            Ok(permit) => {
                permit.send(Command::Frame(frame));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(TryPushError::Full(frame)),
            Err(mpsc::error::TrySendError::Closed(())) => Err(TryPushError::Closed(frame)),
        }
    }

    /// Tells whether the agent is speaking (for the user-away timer).
    ///
    /// # Errors
    /// [`RecognitionClosed`] when the task ended.
    pub async fn set_agent_speaking(&self, speaking: bool) -> Result<(), RecognitionClosed> {
        self.send(Command::AgentSpeaking(speaking)).await
    }

    /// Replaces the conversation the turn detector reads (the pending user message is added by the recognition).
    ///
    /// # Errors
    /// [`RecognitionClosed`] when the task ended.
    pub async fn update_chat_context(
        &self,
        chat_ctx: ChatContext,
    ) -> Result<(), RecognitionClosed> {
        self.send(Command::ChatContext(chat_ctx)).await
    }

    /// Ends the user's turn now (any mode; the way turns end in `Manual` mode). With an STT mid-utterance, the STT
    /// is flushed and the commit waits for its final transcript, at most
    /// [`RecognitionOptions::manual_commit_timeout`].
    ///
    /// # Errors
    /// [`RecognitionClosed`] when the task ended.
    pub async fn commit_user_turn(&self) -> Result<(), RecognitionClosed> {
        self.send(Command::Commit).await
    }

    /// Forgets the user's pending turn: transcript, pending end of turn, and the STT stream's in-flight audio (the
    /// STT stream is reopened).
    ///
    /// # Errors
    /// [`RecognitionClosed`] when the task ended.
    pub async fn clear_user_turn(&self) -> Result<(), RecognitionClosed> {
        self.send(Command::Clear).await
    }

    /// Counters (frames received and dropped per provider).
    ///
    /// # Errors
    /// [`RecognitionClosed`] when the task ended.
    pub async fn stats(&self) -> Result<RecognitionStats, RecognitionClosed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::Stats(tx)).await?;
        rx.await.map_err(|_| RecognitionClosed)
    }

    /// Ends the input: the VAD and STT streams deliver their last events (a pending end of turn is dropped), then
    /// the event stream ends. Waits for the task at most [`CLOSE_TIMEOUT`], then stops it (a provider that never
    /// ends its stream cannot hold the session open).
    pub async fn aclose(mut self) {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let graceful = async {
            let _ = self.commands.send(Command::Close).await;
            let _ = (&mut self.task).await;
        };
        if tokio::time::timeout_at(deadline, graceful).await.is_err() {
            tracing::warn!("audio recognition did not close in {CLOSE_TIMEOUT:?}: aborted");
            self.task.abort();
        }
    }
}
