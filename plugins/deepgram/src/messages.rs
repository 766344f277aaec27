//! Deepgram listen messages, read leniently: unknown fields are ignored, missing optional ones take defaults.

use std::time::Duration;

use agents_core::stt::{SpeechData, TimedWord};
use serde::Deserialize;

/// A server message of the live listen socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum ServerMessage {
    Results(ResultsMessage),
    SpeechStarted {},
    UtteranceEnd {},
    Metadata(MetadataMessage),
    Error(ErrorMessage),
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ResultsMessage {
    #[serde(default)]
    pub(crate) start: f64,
    #[serde(default)]
    pub(crate) duration: f64,
    #[serde(default)]
    pub(crate) is_final: bool,
    #[serde(default)]
    pub(crate) speech_final: bool,
    #[serde(default)]
    pub(crate) from_finalize: bool,
    pub(crate) channel: Channel,
    #[serde(default)]
    pub(crate) metadata: Option<ResultsMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ResultsMetadata {
    #[serde(default)]
    pub(crate) request_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Channel {
    #[serde(default)]
    pub(crate) alternatives: Vec<Alternative>,
    #[serde(default)]
    pub(crate) detected_language: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Alternative {
    #[serde(default)]
    pub(crate) transcript: String,
    #[serde(default)]
    pub(crate) confidence: f64,
    #[serde(default)]
    pub(crate) words: Vec<Word>,
    #[serde(default)]
    pub(crate) languages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Word {
    #[serde(default)]
    pub(crate) word: String,
    #[serde(default)]
    pub(crate) punctuated_word: Option<String>,
    #[serde(default)]
    pub(crate) start: f64,
    #[serde(default)]
    pub(crate) end: f64,
    #[serde(default)]
    pub(crate) confidence: Option<f64>,
    #[serde(default)]
    pub(crate) speaker: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MetadataMessage {
    #[serde(default)]
    pub(crate) request_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorMessage {
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

/// Seconds from the JSON into a [`Duration`] (negative or non-finite values give zero).
pub(crate) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

impl Word {
    /// The text to show: the punctuated form when present.
    pub(crate) fn text(&self) -> &str {
        self.punctuated_word.as_deref().unwrap_or(&self.word)
    }
}

/// Converts an alternative, shifting its times by `offset` and dropping the words that start before `not_before`
/// (already delivered in an earlier final). `None` when nothing is left.
pub(crate) fn speech_data(
    alt: &Alternative,
    offset: Duration,
    not_before: Duration,
    language: Option<&str>,
) -> Option<SpeechData> {
    let tolerance = Duration::from_millis(1);
    let kept: Vec<&Word> = alt
        .words
        .iter()
        .filter(|w| offset + secs(w.start) + tolerance >= not_before)
        .collect();
    let trimmed = kept.len() != alt.words.len();
    let text = if trimmed {
        kept.iter().map(|w| w.text()).collect::<Vec<_>>().join(" ")
    } else {
        alt.transcript.trim().to_owned()
    };
    if text.is_empty() {
        return None;
    }
    let words: Vec<TimedWord> = kept
        .iter()
        .map(|w| {
            let mut t = TimedWord::new(w.text(), offset + secs(w.start), offset + secs(w.end));
            t.confidence = w.confidence.map(|c| c as f32);
            t.speaker_id = w.speaker.map(|s| s.to_string());
            t
        })
        .collect();
    let start = words.first().map_or(offset, |w| w.start);
    let end = words.last().map_or(offset, |w| w.end);
    let speaker = words.first().and_then(|w| w.speaker_id.clone());
    let mut data = SpeechData::new(text, alt.confidence as f32)
        .with_times(start, end)
        .with_words(words);
    data.speaker_id = speaker;
    if let Some(lang) = alt.languages.first().map(String::as_str).or(language) {
        data = data.with_language(lang);
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt() -> Alternative {
        serde_json::from_value(serde_json::json!({
            "transcript": "Hello there world.",
            "confidence": 0.9,
            "words": [
                {"word": "hello", "punctuated_word": "Hello", "start": 0.5, "end": 0.8, "confidence": 0.9},
                {"word": "there", "start": 0.9, "end": 1.1},
                {"word": "world", "punctuated_word": "world.", "start": 1.2, "end": 1.5, "speaker": 1},
            ]
        }))
        .unwrap()
    }

    #[test]
    fn offsets_and_language_apply() {
        let d = speech_data(&alt(), Duration::from_secs(10), Duration::ZERO, Some("en")).unwrap();
        assert_eq!(d.text, "Hello there world.");
        assert_eq!(d.start_time, Duration::from_millis(10_500));
        assert_eq!(d.end_time, Duration::from_millis(11_500));
        assert_eq!(d.language.as_deref(), Some("en"));
        assert_eq!(d.words[2].speaker_id.as_deref(), Some("1"));
    }

    #[test]
    fn words_already_delivered_are_dropped() {
        let d = speech_data(&alt(), Duration::ZERO, Duration::from_millis(900), None).unwrap();
        assert_eq!(d.text, "there world.");
        assert!(speech_data(&alt(), Duration::ZERO, Duration::from_secs(5), None).is_none());
    }

    #[test]
    fn unknown_messages_and_fields_are_tolerated() {
        let m: ServerMessage =
            serde_json::from_str(r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":1.5}"#)
                .unwrap();
        assert!(matches!(m, ServerMessage::SpeechStarted {}));
        let m: ServerMessage =
            serde_json::from_str(r#"{"type":"ConfigureSuccess","request_id":"x"}"#).unwrap();
        assert!(matches!(m, ServerMessage::Other));
        let m: ServerMessage = serde_json::from_str(
            r#"{"type":"Results","channel":{"alternatives":[]},"new_field":1}"#,
        )
        .unwrap();
        assert!(matches!(m, ServerMessage::Results(_)));
    }
}
