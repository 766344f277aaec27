//! Wire shapes of the multi-context WebSocket and the REST timestamps stream, the mapping of provider errors to
//! [`ApiError`], and the character-to-word alignment.

use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::ApiError;
use agents_core::tts::TimedText;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::options::TtsOptions;

/// Character timings of one audio chunk, times relative to the chunk.
///
/// Accepts both spellings seen in the wild: `charStartTimesMs`/`charDurationsMs` (SDK, Pipecat) and
/// `charsStartTimesMs`/`charsDurationsMs` (AsyncAPI example, LiveKit).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct Alignment {
    #[serde(default)]
    pub(crate) chars: Vec<String>,
    #[serde(default, rename = "charStartTimesMs", alias = "charsStartTimesMs")]
    pub(crate) starts_ms: Vec<f64>,
    #[serde(default, rename = "charDurationsMs", alias = "charsDurationsMs")]
    pub(crate) durations_ms: Vec<f64>,
}

/// One server message of the multi-context socket (audio, final, or error).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ServerMessage {
    #[serde(default)]
    pub(crate) audio: Option<String>,
    #[serde(default, rename = "isFinal")]
    pub(crate) is_final: Option<bool>,
    #[serde(default, rename = "contextId", alias = "context_id")]
    pub(crate) context_id: Option<String>,
    #[serde(default)]
    pub(crate) alignment: Option<Alignment>,
    #[serde(default, rename = "normalizedAlignment")]
    pub(crate) normalized_alignment: Option<Alignment>,
    #[serde(default)]
    pub(crate) error: Option<Value>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// The init message of a context: a single space, voice settings and generation config (first message only).
pub(crate) fn init_message(opts: &TtsOptions, context_id: &str) -> String {
    let mut m = json!({ "text": " ", "context_id": context_id });
    if let Some(vs) = &opts.voice_settings {
        m["voice_settings"] = json!(vs);
    }
    if let Some(s) = &opts.chunk_length_schedule {
        m["generation_config"] = json!({ "chunk_length_schedule": s });
    }
    m.to_string()
}

/// A text message; `text` already ends with a single space.
pub(crate) fn text_message(context_id: &str, text: &str) -> String {
    json!({ "text": text, "context_id": context_id }).to_string()
}

/// Generate everything buffered for the context.
pub(crate) fn flush_message(context_id: &str) -> String {
    json!({ "context_id": context_id, "flush": true }).to_string()
}

/// Close the context: after a flush the server finishes it, otherwise it stops; either way it answers `isFinal`.
pub(crate) fn close_context_message(context_id: &str) -> String {
    json!({ "context_id": context_id, "close_context": true }).to_string()
}

/// Resets the inactivity timeout of the context.
pub(crate) fn keepalive_message(context_id: &str) -> String {
    json!({ "text": "", "context_id": context_id }).to_string()
}

/// Keeps a socket without contexts open (Pipecat's context-less keep-alive).
pub(crate) fn idle_keepalive_message() -> String {
    json!({ "text": "" }).to_string()
}

/// Closes every context and the socket.
pub(crate) fn close_socket_message() -> String {
    json!({ "close_socket": true }).to_string()
}

/// Socket error codes that retrying cannot fix.
const PERMANENT_ERRORS: &[&str] = &[
    "invalid_api_key",
    "unauthorized",
    "quota_exceeded",
    "voice_not_found",
    "invalid_voice",
    "model_not_found",
    "invalid_model",
    "invalid_input_message",
    "invalid_request",
    "payment_required",
    "detected_unusual_activity",
];

/// Maps an error message of the socket (`{"message", "error", "code"}`) to an [`ApiError`] with the whole message
/// as its body. Retryable unless the `error` code names a problem of the request or account.
pub(crate) fn socket_error(raw: &Value) -> ApiError {
    let code = raw
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    let message = raw
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map_or_else(
            || format!("ElevenLabs error: {code}"),
            |m| format!("ElevenLabs error ({code}): {m}"),
        );
    let permanent = PERMANENT_ERRORS.contains(&code) || code.starts_with("invalid_");
    ApiError::new(message)
        .with_body(raw.clone())
        .with_retryable(!permanent)
}

/// Decodes a base64 PCM16LE chunk into a mono frame, carrying an odd trailing byte over to the next chunk.
///
/// # Errors
/// A reason string when the base64 is invalid.
pub(crate) fn decode_pcm(
    b64: &str,
    carry: &mut Option<u8>,
    rate: SampleRate,
) -> Result<AudioFrame, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("audio is not valid base64: {e}"))?;
    pcm_frame(&bytes, carry, rate)
}

/// A mono frame from raw PCM16LE bytes, with the odd-byte carry.
///
/// # Errors
/// A reason string if the frame cannot be built (never for one channel).
pub(crate) fn pcm_frame(
    bytes: &[u8],
    carry: &mut Option<u8>,
    rate: SampleRate,
) -> Result<AudioFrame, String> {
    let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
    let mut rest = bytes;
    if let Some(lo) = carry.take() {
        if let Some((&hi, tail)) = rest.split_first() {
            samples.push(i16::from_le_bytes([lo, hi]));
            rest = tail;
        } else {
            *carry = Some(lo);
        }
    }
    let mut chunks = rest.chunks_exact(2);
    samples.extend(chunks.by_ref().map(|b| i16::from_le_bytes([b[0], b[1]])));
    if let [last] = chunks.remainder() {
        *carry = Some(*last);
    }
    AudioFrame::new(samples, rate, 1).map_err(|e| e.to_string())
}

/// A frame with no samples (the final marker of a segment).
///
/// # Errors
/// A reason string if the frame cannot be built (never for one channel).
pub(crate) fn empty_frame(rate: SampleRate) -> Result<AudioFrame, String> {
    AudioFrame::new(Vec::new(), rate, 1).map_err(|e| e.to_string())
}

/// Groups character timings into words across the chunks of one segment.
///
/// Times in the output are relative to the start of the segment's audio: each chunk's character times are offset
/// by the audio received before it. A word split over two chunks is emitted once complete.
#[derive(Debug, Default)]
pub(crate) struct WordAligner {
    word: String,
    start: Duration,
    end: Duration,
}

impl WordAligner {
    /// Feeds the characters of one chunk (`offset` = audio of the segment before this chunk); returns the words
    /// completed by it.
    pub(crate) fn push(
        &mut self,
        chars: &[String],
        starts_ms: &[f64],
        durations_ms: &[f64],
        offset: Duration,
    ) -> Vec<TimedText> {
        let mut out = Vec::new();
        let n = chars.len().min(starts_ms.len()).min(durations_ms.len());
        for i in 0..n {
            let start = offset + ms(starts_ms[i]);
            let end = start + ms(durations_ms[i]);
            self.push_char(&chars[i], start, end, &mut out);
        }
        out
    }

    /// Feeds absolute character times (seconds from the segment start), as the REST timestamps stream sends.
    pub(crate) fn push_absolute(
        &mut self,
        chars: &[String],
        starts: &[Duration],
        ends: &[Duration],
    ) -> Vec<TimedText> {
        let mut out = Vec::new();
        let n = chars.len().min(starts.len()).min(ends.len());
        for i in 0..n {
            let end = ends[i].max(starts[i]);
            self.push_char(&chars[i], starts[i], end, &mut out);
        }
        out
    }

    fn push_char(&mut self, c: &str, start: Duration, end: Duration, out: &mut Vec<TimedText>) {
        if c.chars().all(char::is_whitespace) {
            if let Some(w) = self.take() {
                out.push(w);
            }
            return;
        }
        if self.word.is_empty() {
            self.start = start;
        }
        self.word.push_str(c);
        self.end = self.end.max(end).max(self.start);
    }

    /// The last word, at the end of the segment.
    pub(crate) fn finish(&mut self) -> Option<TimedText> {
        self.take()
    }

    fn take(&mut self) -> Option<TimedText> {
        if self.word.is_empty() {
            return None;
        }
        let w = TimedText::new(std::mem::take(&mut self.word), self.start, self.end);
        self.end = Duration::ZERO;
        Some(w)
    }
}

fn ms(v: f64) -> Duration {
    if v.is_finite() && v > 0.0 {
        Duration::try_from_secs_f64(v / 1000.0).unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    }
}

/// Seconds (REST timestamps) to a duration; negative or NaN are zero.
pub(crate) fn secs(v: f64) -> Duration {
    ms(v * 1000.0)
}

/// Splits streamed text into chunks that end at a word boundary with a single trailing space, as the API asks.
#[derive(Debug, Default)]
pub(crate) struct WordChunker {
    buf: String,
}

impl WordChunker {
    /// Adds text; returns the complete words so far (ending with one space), if any.
    pub(crate) fn push(&mut self, text: &str) -> Option<String> {
        self.buf.push_str(text);
        let cut = self
            .buf
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map(|(i, c)| i + c.len_utf8())?;
        let rest = self.buf.split_off(cut);
        let done = std::mem::replace(&mut self.buf, rest);
        finish_chunk(&done)
    }

    /// The rest of the text (ending with one space), if any.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let done = std::mem::take(&mut self.buf);
        finish_chunk(&done)
    }
}

fn finish_chunk(s: &str) -> Option<String> {
    let t = s.trim_end();
    if t.trim_start().is_empty() {
        None
    } else {
        Some(format!("{t} "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<String> {
        s.chars().map(String::from).collect()
    }

    #[test]
    fn words_from_character_timings_across_chunks() {
        let mut a = WordAligner::default();
        // "Hi th" in chunk 1 (100 ms/char), "ere you" in chunk 2 starting after 500 ms of audio.
        let c1 = chars("Hi th");
        let s1: Vec<f64> = (0..5).map(|i| f64::from(i) * 100.0).collect();
        let d1 = vec![100.0; 5];
        let w1 = a.push(&c1, &s1, &d1, Duration::ZERO);
        assert_eq!(
            w1,
            vec![TimedText::new(
                "Hi",
                Duration::ZERO,
                Duration::from_millis(200)
            )]
        );
        let c2 = chars("ere you");
        let s2: Vec<f64> = (0..7).map(|i| f64::from(i) * 100.0).collect();
        let d2 = vec![100.0; 7];
        let w2 = a.push(&c2, &s2, &d2, Duration::from_millis(500));
        assert_eq!(
            w2,
            vec![TimedText::new(
                "there",
                Duration::from_millis(300),
                Duration::from_millis(800)
            )]
        );
        assert_eq!(
            a.finish(),
            Some(TimedText::new(
                "you",
                Duration::from_millis(900),
                Duration::from_millis(1200)
            ))
        );
        assert_eq!(a.finish(), None);
    }

    #[test]
    fn both_alignment_spellings_parse() {
        let a: ServerMessage = serde_json::from_str(
            r#"{"audio":"","contextId":"c","alignment":{"chars":["a"],"charsStartTimesMs":[1],"charsDurationsMs":[2]}}"#,
        )
        .unwrap();
        let b: ServerMessage = serde_json::from_str(
            r#"{"audio":"","context_id":"c","isFinal":null,"normalizedAlignment":{"chars":["a"],"charStartTimesMs":[1],"charDurationsMs":[2]}}"#,
        )
        .unwrap();
        assert_eq!(a.alignment, b.normalized_alignment);
        assert_eq!(a.context_id.as_deref(), Some("c"));
        assert_eq!(b.context_id.as_deref(), Some("c"));
        assert_eq!(b.is_final, None);
    }

    #[test]
    fn chunker_sends_whole_words_with_one_trailing_space() {
        let mut c = WordChunker::default();
        assert_eq!(c.push("Hel"), None);
        assert_eq!(c.push("lo wor"), Some("Hello ".to_owned()));
        assert_eq!(c.push("ld,  how\n"), Some("world,  how ".to_owned()));
        assert_eq!(c.push("   "), None);
        assert_eq!(c.push("are"), None);
        assert_eq!(c.finish(), Some("are ".to_owned()));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn pcm_decoding_carries_odd_bytes() {
        let mut carry = None;
        let f1 = pcm_frame(&[1, 0, 2], &mut carry, SampleRate::HZ_16000).unwrap();
        assert_eq!(f1.data(), &[1]);
        assert_eq!(carry, Some(2));
        let f2 = pcm_frame(&[0, 3, 0], &mut carry, SampleRate::HZ_16000).unwrap();
        assert_eq!(f2.data(), &[2, 3]);
        assert_eq!(carry, None);
        assert!(decode_pcm("not base64!", &mut carry, SampleRate::HZ_16000).is_err());
    }

    #[test]
    fn socket_errors_are_classified() {
        let quota = socket_error(
            &json!({"message": "You exceeded your quota", "error": "quota_exceeded", "code": 1008}),
        );
        assert!(!quota.is_retryable());
        assert!(quota.message().contains("quota"));
        let idle = socket_error(
            &json!({"message": "Have not received a new text input", "error": "input_timeout_exceeded", "code": 1008}),
        );
        assert!(idle.is_retryable());
    }
}
