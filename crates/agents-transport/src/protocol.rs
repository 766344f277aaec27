//! The WebSocket protocol (v1): the JSON messages exchanged by the server ([`crate::server`]) and the client
//! ([`crate::client`]), and the protocol's constants. The full description, with a whole conversation, is in
//! `docs/transports/websocket.md`.
//!
//! Text messages are JSON objects tagged by `"type"`; binary messages are PCM16 little-endian interleaved audio at
//! the format negotiated in the [`Hello`] / [`Ready`] exchange. Unknown keys are ignored in both directions.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Sample rates accepted for input and output.
pub const SUPPORTED_SAMPLE_RATES: [u32; 7] = [8000, 16000, 22050, 24000, 32000, 44100, 48000];

/// Duration of the audio frames the server sends (and re-chunks input into), in milliseconds.
pub const FRAME_MS: u32 = 20;

/// WebSocket close codes used by the server (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure: the client said `bye`, or the session ended.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Policy violation: hello timeout, bad hello, sustained abuse, idle timeout.
    pub const POLICY: u16 = 1008;
    /// A message larger than the hard transport limit (the connection cannot go on).
    pub const TOO_BIG: u16 = 1009;
    /// The server could not create the session.
    pub const INTERNAL: u16 = 1011;
}

/// Error codes carried by [`ServerMessage::Error`].
pub mod error_code {
    /// The first message was not a valid hello (fatal).
    pub const BAD_HELLO: &str = "bad_hello";
    /// A text message that is not valid JSON or misses a required field.
    pub const BAD_JSON: &str = "bad_json";
    /// A JSON message of an unknown `type`.
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    /// A binary message whose length is not a whole number of samples on every channel.
    pub const BAD_AUDIO: &str = "bad_audio";
    /// A message above the configured size limit.
    pub const MESSAGE_TOO_LARGE: &str = "message_too_large";
    /// Messages arrive faster than the rate limit; the excess is dropped.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Too many errors in a short time: the connection is closed (fatal).
    pub const ABUSE: &str = "abuse";
    /// The application could not create a session (fatal).
    pub const SESSION_FAILED: &str = "session_failed";
    /// A request the session refused (for example `interrupt` while the speech is not interruptible).
    pub const REQUEST_FAILED: &str = "request_failed";
    /// An error reported by the session (STT, LLM, TTS, ...).
    pub const SESSION_ERROR: &str = "session_error";
    /// The user's audio arrives faster than the session consumes it; frames were dropped.
    pub const INPUT_OVERFLOW: &str = "input_overflow";
}

/// An audio format: sample rate and channel count (PCM16 little-endian interleaved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFormat {
    /// Samples per second.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (stereo).
    pub channels: u16,
}

impl AudioFormat {
    /// A format.
    pub fn new(sample_rate: u32, channels: u16) -> Self {
        Self {
            sample_rate,
            channels,
        }
    }

    /// 16 kHz mono, the usual input.
    pub fn input_default() -> Self {
        Self::new(16000, 1)
    }

    /// 24 kHz mono, the default output.
    pub fn output_default() -> Self {
        Self::new(24000, 1)
    }

    /// Checks the format against the supported rates and channel counts.
    ///
    /// # Errors
    /// A human-readable reason.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if !SUPPORTED_SAMPLE_RATES.contains(&self.sample_rate) {
            return Err(format!(
                "{what}.sample_rate {} is not supported (use one of {SUPPORTED_SAMPLE_RATES:?})",
                self.sample_rate
            ));
        }
        if !(1..=2).contains(&self.channels) {
            return Err(format!(
                "{what}.channels {} is not supported (use 1 or 2)",
                self.channels
            ));
        }
        Ok(())
    }

    /// Bytes of one sample on every channel (PCM16).
    pub fn bytes_per_sample_group(&self) -> usize {
        2 * usize::from(self.channels)
    }
}

/// The client's first message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version; must be [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Format of the audio the client sends.
    pub input: AudioFormat,
    /// Format of the audio the client wants (default 24 kHz mono).
    #[serde(default = "AudioFormat::output_default")]
    pub output: AudioFormat,
    /// Which agent the client asks for (application-defined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Free-form data for the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl Hello {
    /// A hello for `input`, with the default output format.
    pub fn new(input: AudioFormat) -> Self {
        Self {
            protocol: PROTOCOL_VERSION,
            input,
            output: AudioFormat::output_default(),
            agent: None,
            metadata: None,
        }
    }

    /// Sets the output format.
    pub fn with_output(mut self, output: AudioFormat) -> Self {
        self.output = output;
        self
    }

    /// Sets the agent name.
    pub fn with_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Checks the version and the formats.
    ///
    /// # Errors
    /// A human-readable reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.protocol != PROTOCOL_VERSION {
            return Err(format!(
                "protocol {} is not supported (this server speaks {PROTOCOL_VERSION})",
                self.protocol
            ));
        }
        self.input.validate("input")?;
        self.output.validate("output")
    }
}

/// The server's answer to a valid hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// Protocol version.
    pub protocol: u32,
    /// The session's id (for logs and support).
    pub session_id: String,
    /// Input format, as negotiated.
    pub input: AudioFormat,
    /// Output format, as negotiated.
    pub output: AudioFormat,
    /// Duration of the server's audio frames.
    pub frame_ms: u32,
}

/// A message from the client (text frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// The first message.
    Hello(Hello),
    /// Stop the agent's speech now.
    Interrupt,
    /// Typed user input: interrupts, then the agent replies.
    Text {
        /// The text.
        text: String,
    },
    /// Manual turn detection: the user's turn ends now.
    CommitUserTurn,
    /// Manual turn detection: forget the user's turn in progress.
    ClearUserTurn,
    /// What the client really played of a speech.
    Playback {
        /// The speech (from `speech` / `agent_transcript` events); absent means the current one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speech_id: Option<String>,
        /// Milliseconds played of it.
        position_ms: u64,
        /// Whether the client played all it received of it.
        #[serde(default)]
        finished: bool,
    },
    /// A telephone keypad digit.
    Dtmf {
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: String,
    },
    /// Liveness check: answered by `pong` with the same id.
    Ping {
        /// Any JSON value, echoed.
        #[serde(default)]
        id: serde_json::Value,
    },
    /// Graceful close.
    Bye,
}

/// The per-turn latency report carried by [`ServerMessage::Metrics`] (milliseconds; absent when not measured).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnReport {
    /// The reply speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech_id: Option<String>,
    /// End of speech to end-of-turn decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_utterance_ms: Option<u64>,
    /// End of speech to final transcript.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription_ms: Option<u64>,
    /// LLM time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_ttft_ms: Option<u64>,
    /// TTS time to first byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_ttfb_ms: Option<u64>,
    /// User stopped speaking → agent audio started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<u64>,
}

/// What happened to a speech ([`ServerMessage::Speech`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeechEventKind {
    /// Its first audio (or text) went out.
    Started,
    /// It finished playing or was interrupted.
    Done,
}

/// A message from the server (text frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// Answer to the hello.
    Ready(Ready),
    /// A user transcript.
    UserTranscript {
        /// The text (interim: the whole hypothesis so far).
        text: String,
        /// Whether it is final.
        #[serde(rename = "final")]
        is_final: bool,
        /// Language, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    /// Agent text released in step with playback.
    AgentTranscript {
        /// The speech it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speech_id: Option<String>,
        /// The new text (a delta).
        text: String,
        /// Whether the speech's transcript is complete.
        #[serde(rename = "final")]
        is_final: bool,
    },
    /// The agent's state (`initializing`, `listening`, `thinking`, `speaking`).
    AgentState {
        /// The new state.
        state: agents_core::AgentState,
    },
    /// The user's state (`speaking`, `listening`, `away`).
    UserState {
        /// The new state.
        state: agents_core::UserState,
    },
    /// Stop playback now and drop buffered audio.
    Clear {
        /// The speech cut, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speech_id: Option<String>,
    },
    /// A speech started or ended.
    Speech {
        /// Its id.
        speech_id: String,
        /// Started or done.
        event: SpeechEventKind,
        /// Whether it was interrupted (on `done`).
        #[serde(default)]
        interrupted: bool,
    },
    /// A function tool was executed.
    Tool {
        /// Tool name.
        name: String,
        /// Arguments (JSON text as the model wrote them).
        arguments: String,
        /// Output given to the model, when any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// Whether the output is an error.
        #[serde(default)]
        is_error: bool,
    },
    /// Latency of one turn.
    Metrics {
        /// The report.
        turn: TurnReport,
    },
    /// Something went wrong.
    Error {
        /// Machine-readable code ([`error_code`]).
        code: String,
        /// Human-readable message.
        message: String,
        /// Whether the connection closes after it.
        #[serde(default)]
        fatal: bool,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's id.
        #[serde(default)]
        id: serde_json::Value,
    },
    /// The session ends; the WebSocket close follows.
    Close {
        /// Why (`user_initiated`, `participant_disconnected`, `error`, `shutdown`, `bye`, `idle_timeout`, ...).
        reason: String,
    },
}

impl ServerMessage {
    /// An error message.
    pub fn error(code: &str, message: impl Into<String>, fatal: bool) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
            fatal,
        }
    }
}

/// Why a text message from the client could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON, not an object, or a required field is missing or mistyped.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// A `type` this protocol does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
}

impl ParseError {
    /// The protocol error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => error_code::BAD_JSON,
            Self::UnknownType(_) => error_code::UNKNOWN_TYPE,
        }
    }
}

const CLIENT_TYPES: [&str; 9] = [
    "hello",
    "interrupt",
    "text",
    "commit_user_turn",
    "clear_user_turn",
    "playback",
    "dtmf",
    "ping",
    "bye",
];

/// Parses a client text message, telling an unknown `type` from malformed JSON.
///
/// # Errors
/// [`ParseError`].
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ParseError::BadJson(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(ParseError::BadJson(
            "expected a JSON object with a string \"type\"".to_owned(),
        ));
    };
    if !CLIENT_TYPES.contains(&kind) {
        return Err(ParseError::UnknownType(kind.chars().take(64).collect()));
    }
    serde_json::from_value(value).map_err(|e| ParseError::BadJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hello_defaults_output_and_ignores_unknown_keys() {
        let m = parse_client_message(
            r#"{"type":"hello","protocol":1,"input":{"sample_rate":16000,"channels":1},"extra":true}"#,
        )
        .unwrap();
        let ClientMessage::Hello(h) = m else {
            panic!("not a hello: {m:?}")
        };
        assert_eq!(h.output, AudioFormat::output_default());
        assert!(h.validate().is_ok());
    }

    #[test]
    fn hello_with_unsupported_rate_or_version_is_invalid() {
        let mut h = Hello::new(AudioFormat::new(11025, 1));
        assert!(h.validate().unwrap_err().contains("11025"));
        h.input = AudioFormat::new(16000, 3);
        assert!(h.validate().unwrap_err().contains("channels"));
        h.input = AudioFormat::input_default();
        h.protocol = 2;
        assert!(h.validate().unwrap_err().contains("protocol 2"));
    }

    #[test]
    fn unknown_type_and_bad_json_are_told_apart() {
        assert_eq!(
            parse_client_message(r#"{"type":"dance"}"#).unwrap_err(),
            ParseError::UnknownType("dance".into())
        );
        assert_eq!(
            parse_client_message("{nope").unwrap_err().code(),
            error_code::BAD_JSON
        );
        assert_eq!(
            parse_client_message(r#"{"type":"text"}"#)
                .unwrap_err()
                .code(),
            error_code::BAD_JSON
        );
        assert_eq!(
            parse_client_message("[1,2]").unwrap_err().code(),
            error_code::BAD_JSON
        );
    }

    #[test]
    fn server_messages_use_the_documented_field_names() {
        let v = serde_json::to_value(ServerMessage::UserTranscript {
            text: "hi".into(),
            is_final: true,
            language: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"user_transcript","text":"hi","final":true})
        );
        let v = serde_json::to_value(ServerMessage::AgentState {
            state: agents_core::AgentState::Speaking,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"agent_state","state":"speaking"})
        );
        let ping = parse_client_message(r#"{"type":"ping","id":7}"#).unwrap();
        assert_eq!(
            ping,
            ClientMessage::Ping {
                id: serde_json::json!(7)
            }
        );
    }
}
