//! Metrics records: one per provider request (LLM, STT, TTS, realtime), VAD load, end-of-utterance timing, and
//! the per-turn latency report.
//!
//! Durations serialize as seconds (`f64`), timestamps as Unix seconds, so the records can be sent to a client or a
//! metrics backend as they are.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::serde_util::{opt_secs, opt_unix_secs, secs, unix_secs};

/// Any metrics record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Metrics {
    /// One LLM request.
    Llm(LlmMetrics),
    /// One STT request or stream.
    Stt(SttMetrics),
    /// One TTS request or stream segment.
    Tts(TtsMetrics),
    /// VAD load over an interval.
    Vad(VadMetrics),
    /// End-of-utterance timing of one user turn.
    EndOfUtterance(EouMetrics),
    /// One realtime-model response.
    Realtime(RealtimeMetrics),
    /// The latency report of one full turn.
    Turn(TurnMetrics),
}

/// One LLM request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LlmMetrics {
    /// Provider label, e.g. `openai.LLM`.
    pub label: String,
    /// Model name.
    pub model: String,
    /// Provider request id, when known.
    pub request_id: Option<String>,
    /// The speech this request served.
    pub speech_id: Option<String>,
    /// When the request ended.
    #[serde(with = "unix_secs")]
    pub timestamp: SystemTime,
    /// Time to the first content or tool-call chunk; `None` when nothing arrived.
    #[serde(with = "opt_secs")]
    pub ttft: Option<Duration>,
    /// Request start to end of stream.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Whether the consumer stopped reading before the end.
    pub cancelled: bool,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Prompt tokens served from the provider's cache.
    pub prompt_cached_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Total tokens.
    pub total_tokens: u32,
    /// Completion tokens per second of `duration`.
    pub tokens_per_second: f64,
}

/// One STT request or stream (made by [`crate::stt::SttStream::metrics`] and
/// [`crate::stt::recognize_with_metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SttMetrics {
    /// Provider label.
    pub label: String,
    /// Model name.
    pub model: String,
    /// Provider request id, when known.
    pub request_id: Option<String>,
    /// When the record was made.
    #[serde(with = "unix_secs")]
    pub timestamp: SystemTime,
    /// For `recognize`, the request time; for a stream, the time it has been open (creation to end, or to now).
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Audio recognized: the buffer given to `recognize`, or the sum of a stream's recognition-usage reports.
    #[serde(with = "secs")]
    pub audio_duration: Duration,
    /// Whether this was a stream.
    pub streamed: bool,
}

/// One TTS request or stream segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TtsMetrics {
    /// Provider label.
    pub label: String,
    /// Provider request id, when known.
    pub request_id: Option<String>,
    /// The speech this synthesis served.
    pub speech_id: Option<String>,
    /// When the request ended.
    #[serde(with = "unix_secs")]
    pub timestamp: SystemTime,
    /// Time to the first audio; `None` when none arrived.
    #[serde(with = "opt_secs")]
    pub ttfb: Option<Duration>,
    /// Request start to end of audio.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Audio produced.
    #[serde(with = "secs")]
    pub audio_duration: Duration,
    /// Characters synthesized.
    pub characters_count: usize,
    /// Whether the consumer stopped reading before the end.
    pub cancelled: bool,
    /// Whether this was a stream.
    pub streamed: bool,
}

/// VAD load over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VadMetrics {
    /// Provider label.
    pub label: String,
    /// When the record was made.
    #[serde(with = "unix_secs")]
    pub timestamp: SystemTime,
    /// Time spent waiting for audio in the interval.
    #[serde(with = "secs")]
    pub idle_time: Duration,
    /// Total inference time in the interval.
    #[serde(with = "secs")]
    pub inference_duration_total: Duration,
    /// Inferences run in the interval.
    pub inference_count: u64,
}

/// End-of-utterance timing of one user turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct EouMetrics {
    /// When the turn was committed.
    #[serde(with = "unix_secs")]
    pub timestamp: SystemTime,
    /// End of user speech to the end-of-turn decision.
    #[serde(with = "secs")]
    pub end_of_utterance_delay: Duration,
    /// End of user speech to the final transcript.
    #[serde(with = "secs")]
    pub transcription_delay: Duration,
    /// Time spent in the user-turn-completed hook.
    #[serde(with = "secs")]
    pub on_user_turn_completed_delay: Duration,
    /// The reply speech created for this turn.
    pub speech_id: Option<String>,
}

/// One realtime-model response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RealtimeMetrics {
    /// Provider label.
    pub label: String,
    /// Provider response id.
    pub request_id: Option<String>,
    /// When the response ended.
    #[serde(with = "unix_secs")]
    pub timestamp: SystemTime,
    /// Time to the first audio or text delta.
    #[serde(with = "opt_secs")]
    pub ttft: Option<Duration>,
    /// Response duration.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Whether the response was cancelled.
    pub cancelled: bool,
    /// Input tokens.
    pub input_tokens: u32,
    /// Output tokens.
    pub output_tokens: u32,
    /// Total tokens.
    pub total_tokens: u32,
    /// Output tokens per second.
    pub tokens_per_second: f64,
}

/// The latency report of one turn: user stops speaking → agent starts speaking.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TurnMetrics {
    /// The reply speech.
    pub speech_id: Option<String>,
    /// When the user stopped speaking.
    #[serde(with = "opt_unix_secs")]
    pub user_stopped_speaking_at: Option<SystemTime>,
    /// When the agent's first audio of the reply was played.
    #[serde(with = "opt_unix_secs")]
    pub agent_started_speaking_at: Option<SystemTime>,
    /// End of speech to end-of-turn decision.
    #[serde(with = "opt_secs")]
    pub end_of_utterance_delay: Option<Duration>,
    /// End of speech to final transcript.
    #[serde(with = "opt_secs")]
    pub transcription_delay: Option<Duration>,
    /// Time spent in the user-turn-completed hook.
    #[serde(with = "opt_secs")]
    pub on_user_turn_completed_delay: Option<Duration>,
    /// LLM time to first token.
    #[serde(with = "opt_secs")]
    pub llm_ttft: Option<Duration>,
    /// TTS time to first byte.
    #[serde(with = "opt_secs")]
    pub tts_ttfb: Option<Duration>,
    /// Agent started speaking − user stopped speaking.
    #[serde(with = "opt_secs")]
    pub e2e_latency: Option<Duration>,
}

impl TurnMetrics {
    /// Fills `e2e_latency` from the two timestamps (`agent_started - user_stopped`, zero if negative).
    pub fn compute_e2e(&mut self) {
        self.e2e_latency = e2e_latency(
            self.user_stopped_speaking_at,
            self.agent_started_speaking_at,
        );
    }
}

impl LlmMetrics {
    /// A record for `label`/`model` stamped now, with zero values; set the fields you measured.
    pub fn new(label: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            model: model.into(),
            request_id: None,
            speech_id: None,
            timestamp: SystemTime::now(),
            ttft: None,
            duration: Duration::ZERO,
            cancelled: false,
            prompt_tokens: 0,
            prompt_cached_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            tokens_per_second: 0.0,
        }
    }
}

impl SttMetrics {
    /// A record for `label` stamped now, with an empty model and zero values; set the fields you measured.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            model: String::new(),
            request_id: None,
            timestamp: SystemTime::now(),
            duration: Duration::ZERO,
            audio_duration: Duration::ZERO,
            streamed: false,
        }
    }
}

impl TtsMetrics {
    /// A record for `label` stamped now, with zero values; set the fields you measured.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            request_id: None,
            speech_id: None,
            timestamp: SystemTime::now(),
            ttfb: None,
            duration: Duration::ZERO,
            audio_duration: Duration::ZERO,
            characters_count: 0,
            cancelled: false,
            streamed: false,
        }
    }
}

impl VadMetrics {
    /// A record for `label` stamped now, with zero values; set the fields you measured.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            timestamp: SystemTime::now(),
            idle_time: Duration::ZERO,
            inference_duration_total: Duration::ZERO,
            inference_count: 0,
        }
    }
}

impl EouMetrics {
    /// A record stamped now, with zero delays; set the fields you measured.
    pub fn new() -> Self {
        Self {
            timestamp: SystemTime::now(),
            end_of_utterance_delay: Duration::ZERO,
            transcription_delay: Duration::ZERO,
            on_user_turn_completed_delay: Duration::ZERO,
            speech_id: None,
        }
    }
}

impl Default for EouMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RealtimeMetrics {
    /// A record for `label` stamped now, with zero values; set the fields you measured.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            request_id: None,
            timestamp: SystemTime::now(),
            ttft: None,
            duration: Duration::ZERO,
            cancelled: false,
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            tokens_per_second: 0.0,
        }
    }
}

/// Per-turn end-to-end latency: agent started speaking − user stopped speaking (LiveKit 1.7 behaviour 123).
/// `None` when either is unknown; zero when the agent started before the user stopped (barge-over).
pub fn e2e_latency(
    user_stopped_speaking_at: Option<SystemTime>,
    agent_started_speaking_at: Option<SystemTime>,
) -> Option<Duration> {
    let (u, a) = (user_stopped_speaking_at?, agent_started_speaking_at?);
    Some(a.duration_since(u).unwrap_or(Duration::ZERO))
}

/// Completion tokens per second of `duration`; zero for a zero duration.
pub fn tokens_per_second(tokens: u32, duration: Duration) -> f64 {
    let s = duration.as_secs_f64();
    if s > 0.0 { f64::from(tokens) / s } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn e2e_is_agent_start_minus_user_stop() {
        let u = UNIX_EPOCH + Duration::from_secs(100);
        let a = u + Duration::from_millis(740);
        assert_eq!(
            e2e_latency(Some(u), Some(a)),
            Some(Duration::from_millis(740))
        );
        assert_eq!(e2e_latency(Some(a), Some(u)), Some(Duration::ZERO));
        assert_eq!(e2e_latency(None, Some(a)), None);
        let mut t = TurnMetrics {
            user_stopped_speaking_at: Some(u),
            agent_started_speaking_at: Some(a),
            ..TurnMetrics::default()
        };
        t.compute_e2e();
        assert_eq!(t.e2e_latency, Some(Duration::from_millis(740)));
    }

    #[test]
    fn serializes_seconds_and_tag() {
        let m = Metrics::Tts(TtsMetrics {
            label: "fake.TTS".into(),
            request_id: None,
            speech_id: Some("speech_1".into()),
            timestamp: UNIX_EPOCH + Duration::from_secs(2),
            ttfb: Some(Duration::from_millis(250)),
            duration: Duration::from_millis(1500),
            audio_duration: Duration::from_secs(3),
            characters_count: 42,
            cancelled: false,
            streamed: true,
        });
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "tts");
        assert_eq!(v["ttfb"], 0.25);
        assert_eq!(v["timestamp"], 2.0);
        assert_eq!(v["characters_count"], 42);
        assert_eq!(tokens_per_second(50, Duration::from_secs(2)), 25.0);
        assert_eq!(tokens_per_second(50, Duration::ZERO), 0.0);
    }
}
