//! Options of the Realtime model: model, voice, output modality, turn detection, input transcription.

use std::time::Duration;

/// The default Realtime model.
pub const DEFAULT_MODEL: &str = "gpt-realtime";
/// The default voice.
pub const DEFAULT_VOICE: &str = "marin";
/// The default input transcription model.
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";

/// Which event protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// The GA protocol (`session.type = "realtime"`, `response.output_audio.delta`, ...).
    #[default]
    Ga,
    /// The beta protocol (`OpenAI-Beta: realtime=v1`, `response.audio.delta`, ...), for servers that only speak it
    /// (older Azure deployments, some compatible servers).
    Beta,
}

/// What the model answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Output {
    /// Audio and its transcript.
    #[default]
    Audio,
    /// Text only (to be spoken by a TTS).
    Text,
}

/// Server-side turn detection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TurnDetection {
    /// Energy/model based VAD with a silence timeout.
    ServerVad(ServerVad),
    /// A model that decides whether the user finished their thought.
    SemanticVad(SemanticVad),
}

impl Default for TurnDetection {
    fn default() -> Self {
        Self::ServerVad(ServerVad::default())
    }
}

/// Parameters of `server_vad` (OpenAI's defaults).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServerVad {
    /// Activation threshold, 0 to 1 (default 0.5).
    pub threshold: f32,
    /// Audio kept before detected speech (default 300 ms).
    pub prefix_padding: Duration,
    /// Silence that ends a turn (default 500 ms).
    pub silence_duration: Duration,
    /// Whether the server starts a response at the end of a turn (default true).
    pub create_response: bool,
    /// Whether user speech cancels the response in progress (default true).
    pub interrupt_response: bool,
}

impl Default for ServerVad {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            prefix_padding: Duration::from_millis(300),
            silence_duration: Duration::from_millis(500),
            create_response: true,
            interrupt_response: true,
        }
    }
}

impl ServerVad {
    /// Sets the silence that ends a turn.
    #[must_use]
    pub fn with_silence_duration(mut self, d: Duration) -> Self {
        self.silence_duration = d;
        self
    }

    /// Sets the activation threshold.
    #[must_use]
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Sets whether the server replies at the end of a turn.
    #[must_use]
    pub fn with_create_response(mut self, v: bool) -> Self {
        self.create_response = v;
        self
    }

    /// Sets whether user speech cancels the response in progress.
    #[must_use]
    pub fn with_interrupt_response(mut self, v: bool) -> Self {
        self.interrupt_response = v;
        self
    }
}

/// How eagerly `semantic_vad` ends a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Eagerness {
    /// Waits longest.
    Low,
    /// Balanced (same as `auto`).
    #[default]
    Medium,
    /// Ends turns soonest.
    High,
    /// The server's choice.
    Auto,
}

impl Eagerness {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Auto => "auto",
        }
    }
}

/// Parameters of `semantic_vad`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SemanticVad {
    /// Eagerness (default medium).
    pub eagerness: Eagerness,
    /// Whether the server starts a response at the end of a turn (default true).
    pub create_response: bool,
    /// Whether user speech cancels the response in progress (default true).
    pub interrupt_response: bool,
}

impl Default for SemanticVad {
    fn default() -> Self {
        Self {
            eagerness: Eagerness::Medium,
            create_response: true,
            interrupt_response: true,
        }
    }
}

/// Transcription of the user's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InputTranscription {
    /// Model, e.g. `gpt-4o-mini-transcribe`, `gpt-4o-transcribe`, `whisper-1`.
    pub model: String,
    /// ISO-639-1 language hint.
    pub language: Option<String>,
    /// Prompt for the transcription model.
    pub prompt: Option<String>,
}

impl Default for InputTranscription {
    fn default() -> Self {
        Self {
            model: DEFAULT_TRANSCRIPTION_MODEL.to_owned(),
            language: None,
            prompt: None,
        }
    }
}

/// Options of an [`OpenAiRealtimeModel`](super::OpenAiRealtimeModel).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RealtimeOptions {
    /// Model name, sent as the `model` query parameter (default `gpt-realtime`).
    pub model: String,
    /// Voice (default `marin`).
    pub voice: String,
    /// Audio or text output (default audio).
    pub output: Output,
    /// Server turn detection; `None` for manual turns (`commit_audio` + `generate_reply`). Default `server_vad`.
    pub turn_detection: Option<TurnDetection>,
    /// User audio transcription; `None` to disable. Default `gpt-4o-mini-transcribe`.
    pub input_transcription: Option<InputTranscription>,
    /// Sampling temperature; the beta protocol only (GA removed it).
    pub temperature: Option<f32>,
    /// Maximum output tokens of a response (`None` = the server's `inf`).
    pub max_output_tokens: Option<u32>,
    /// Speech speed (GA only), 0.25 to 1.5.
    pub speed: Option<f32>,
    /// Event protocol (default GA).
    pub protocol: Protocol,
    /// Reconnect (replaying the conversation) after this long on one connection, between responses, before the
    /// server's own limit ends the session. `None` (default) reconnects only when the server expires or drops it.
    pub max_session_duration: Option<Duration>,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.to_owned(),
            voice: DEFAULT_VOICE.to_owned(),
            output: Output::Audio,
            turn_detection: Some(TurnDetection::default()),
            input_transcription: Some(InputTranscription::default()),
            temperature: None,
            max_output_tokens: None,
            speed: None,
            protocol: Protocol::Ga,
            max_session_duration: None,
        }
    }
}

impl RealtimeOptions {
    /// Sets the model.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the voice.
    #[must_use]
    pub fn with_voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = voice.into();
        self
    }

    /// Sets the output modality.
    #[must_use]
    pub fn with_output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Sets the turn detection (`None` for manual turns).
    #[must_use]
    pub fn with_turn_detection(mut self, td: Option<TurnDetection>) -> Self {
        self.turn_detection = td;
        self
    }

    /// Sets the input transcription (`None` to disable).
    #[must_use]
    pub fn with_input_transcription(mut self, t: Option<InputTranscription>) -> Self {
        self.input_transcription = t;
        self
    }

    /// Sets the temperature (beta protocol only).
    #[must_use]
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets the maximum output tokens of a response.
    #[must_use]
    pub fn with_max_output_tokens(mut self, n: u32) -> Self {
        self.max_output_tokens = Some(n);
        self
    }

    /// Sets the speech speed (GA only).
    #[must_use]
    pub fn with_speed(mut self, speed: f32) -> Self {
        self.speed = Some(speed);
        self
    }

    /// Sets the protocol.
    #[must_use]
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the proactive reconnect period.
    #[must_use]
    pub fn with_max_session_duration(mut self, d: Option<Duration>) -> Self {
        self.max_session_duration = d;
        self
    }
}
