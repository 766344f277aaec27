//! The Media Streams WebSocket messages (JSON text frames with an `event` discriminator).
//!
//! Shapes from Twilio's "Media Streams - WebSocket Messages"
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>); see `docs/transports/twilio.md`.
//! Twilio sends counters (`sequenceNumber`, `media.chunk`, `media.timestamp`) as decimal strings; they are accepted
//! as strings or numbers.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::TwilioError;

/// The only encoding Media Streams uses on the wire.
pub const MULAW_ENCODING: &str = "audio/x-mulaw";
/// Media Streams' sample rate.
pub const TWILIO_SAMPLE_RATE_HZ: u32 = 8_000;

/// A message from Twilio.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Inbound {
    /// First message of a connection.
    Connected {
        /// `"Call"`.
        #[serde(default)]
        protocol: Option<String>,
        /// Protocol version, e.g. `"1.0.0"`.
        #[serde(default)]
        version: Option<String>,
    },
    /// Stream metadata, once, right after `connected`.
    Start {
        /// Sequence number of the message.
        #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_counter")]
        sequence_number: Option<u64>,
        /// The stream's metadata.
        start: StartMetadata,
    },
    /// Caller audio.
    Media {
        /// Sequence number of the message.
        #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_counter")]
        sequence_number: Option<u64>,
        /// The audio.
        media: InboundMedia,
    },
    /// A key pressed by the caller (bidirectional streams only).
    Dtmf {
        /// The key.
        dtmf: Dtmf,
    },
    /// A mark we sent, echoed once the audio before it has played (or was cleared).
    Mark {
        /// The mark.
        mark: Mark,
    },
    /// The stream ended (the call hung up, or the stream was stopped).
    Stop {
        /// Account and call of the stream.
        #[serde(default)]
        stop: Option<StopMetadata>,
    },
}

/// `start` metadata.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StartMetadata {
    /// The stream's id: every message we send must carry it.
    pub stream_sid: String,
    /// The account.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// The call.
    #[serde(default)]
    pub call_sid: Option<String>,
    /// Tracks to expect (`inbound`, `outbound`).
    #[serde(default)]
    pub tracks: Vec<String>,
    /// `<Parameter>`s of the `<Stream>` TwiML noun.
    #[serde(default)]
    pub custom_parameters: HashMap<String, String>,
    /// Audio format of the `media` messages.
    pub media_format: MediaFormat,
}

/// `start.mediaFormat`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// 8000.
    pub sample_rate: u32,
    /// 1.
    pub channels: u16,
}

impl MediaFormat {
    /// Checks that this is the µ-law 8 kHz mono format this transport decodes.
    ///
    /// # Errors
    /// [`TwilioError::UnsupportedMediaFormat`].
    pub fn check(&self) -> Result<(), TwilioError> {
        if self.encoding.eq_ignore_ascii_case(MULAW_ENCODING)
            && self.sample_rate == TWILIO_SAMPLE_RATE_HZ
            && self.channels == 1
        {
            Ok(())
        } else {
            Err(TwilioError::UnsupportedMediaFormat {
                encoding: self.encoding.chars().take(64).collect(),
                sample_rate: self.sample_rate,
                channels: self.channels,
            })
        }
    }
}

/// `media` of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct InboundMedia {
    /// `inbound` (or `outbound` when both tracks are streamed).
    #[serde(default)]
    pub track: Option<String>,
    /// Chunk number, from 1.
    #[serde(default, deserialize_with = "opt_counter")]
    pub chunk: Option<u64>,
    /// Milliseconds since the stream started.
    #[serde(default, deserialize_with = "opt_counter")]
    pub timestamp: Option<u64>,
    /// Base64 µ-law audio.
    pub payload: String,
}

/// `dtmf` of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Dtmf {
    /// `inbound_track`.
    #[serde(default)]
    pub track: Option<String>,
    /// The key: `0`-`9`, `*`, `#` (`A`-`D` are accepted too).
    pub digit: String,
}

impl Dtmf {
    /// The key as a character.
    ///
    /// # Errors
    /// [`TwilioError::InvalidDigit`] unless the digit is one of `0-9 * # A-D`.
    pub fn key(&self) -> Result<char, TwilioError> {
        let mut chars = self.digit.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') => Ok(c),
            _ => Err(TwilioError::InvalidDigit(
                self.digit.chars().take(16).collect(),
            )),
        }
    }
}

/// A mark (sent or echoed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Mark {
    /// The mark's name.
    pub name: String,
}

/// `stop` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StopMetadata {
    /// The account.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// The call.
    #[serde(default)]
    pub call_sid: Option<String>,
}

/// A message to Twilio (bidirectional streams).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outbound {
    /// Audio to play: base64 µ-law 8 kHz mono, no header.
    Media {
        /// The stream.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// The audio.
        media: OutboundMedia,
    },
    /// Asks Twilio to echo `name` once the audio sent before it has played.
    Mark {
        /// The stream.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// The mark.
        mark: Mark,
    },
    /// Drops the audio Twilio buffered; pending marks are echoed.
    Clear {
        /// The stream.
        #[serde(rename = "streamSid")]
        stream_sid: String,
    },
}

/// `media` of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OutboundMedia {
    /// Base64 µ-law audio.
    pub payload: String,
}

impl Outbound {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs (strings only) cannot fail; an empty object would be ignored by Twilio.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Names of the events Twilio sends, to tell an unknown event from a malformed known one.
const KNOWN_EVENTS: [&str; 6] = ["connected", "start", "media", "dtmf", "mark", "stop"];

/// Parses one text frame from Twilio.
///
/// # Errors
/// [`TwilioError::UnknownEvent`] for an event this transport does not know (Twilio may add some),
/// [`TwilioError::Malformed`] for anything else that is not a valid message.
pub fn parse_inbound(text: &str) -> Result<Inbound, TwilioError> {
    match serde_json::from_str::<Inbound>(text) {
        Ok(m) => Ok(m),
        Err(e) => {
            #[derive(Deserialize)]
            struct EventOnly {
                event: String,
            }
            match serde_json::from_str::<EventOnly>(text) {
                Ok(EventOnly { event }) if !KNOWN_EVENTS.contains(&event.as_str()) => {
                    Err(TwilioError::UnknownEvent(event.chars().take(64).collect()))
                }
                _ => Err(TwilioError::Malformed(e)),
            }
        }
    }
}

fn opt_counter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Counter {
        Num(u64),
        Str(String),
    }
    match Option::<Counter>::deserialize(d)? {
        None => Ok(None),
        Some(Counter::Num(n)) => Ok(Some(n)),
        Some(Counter::Str(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("counter is not a decimal number")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn parses_twilio_documented_examples() {
        let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
        assert_eq!(
            parse_inbound(connected).unwrap(),
            Inbound::Connected {
                protocol: Some("Call".into()),
                version: Some("1.0.0".into())
            }
        );
        let start = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC123","streamSid":"MZ18a","callSid":"CA42","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"FirstName":"Jane"}},"streamSid":"MZ18a"}"#;
        let Inbound::Start {
            sequence_number,
            start,
        } = parse_inbound(start).unwrap()
        else {
            panic!("not a start")
        };
        assert_eq!(sequence_number, Some(1));
        assert_eq!(start.stream_sid, "MZ18a");
        assert_eq!(start.call_sid.as_deref(), Some("CA42"));
        assert_eq!(start.custom_parameters["FirstName"], "Jane");
        start.media_format.check().unwrap();
        let media = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"no+JhoaJjpzSHxAKBgYJ"},"streamSid":"MZ18a"}"#;
        let Inbound::Media { media, .. } = parse_inbound(media).unwrap() else {
            panic!("not media")
        };
        assert_eq!((media.chunk, media.timestamp), (Some(1), Some(5)));
        let dtmf = r#"{"event":"dtmf","streamSid":"MZ18a","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
        let Inbound::Dtmf { dtmf } = parse_inbound(dtmf).unwrap() else {
            panic!("not dtmf")
        };
        assert_eq!(dtmf.key().unwrap(), '1');
        let mark = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ18a","mark":{"name":"my label"}}"#;
        assert_eq!(
            parse_inbound(mark).unwrap(),
            Inbound::Mark {
                mark: Mark {
                    name: "my label".into()
                }
            }
        );
        let stop = r#"{"event":"stop","sequenceNumber":"5","streamSid":"MZ18a","stop":{"accountSid":"AC123","callSid":"CA42"}}"#;
        assert!(matches!(parse_inbound(stop).unwrap(), Inbound::Stop { .. }));
    }

    #[test]
    fn serializes_outbound_messages_as_twilio_expects() {
        let media = Outbound::Media {
            stream_sid: "MZ1".into(),
            media: OutboundMedia {
                payload: "AAEC".into(),
            },
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&media.to_json()).unwrap(),
            serde_json::json!({"event":"media","streamSid":"MZ1","media":{"payload":"AAEC"}})
        );
        let mark = Outbound::Mark {
            stream_sid: "MZ1".into(),
            mark: Mark { name: "m".into() },
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&mark.to_json()).unwrap(),
            serde_json::json!({"event":"mark","streamSid":"MZ1","mark":{"name":"m"}})
        );
        let clear = Outbound::Clear {
            stream_sid: "MZ1".into(),
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&clear.to_json()).unwrap(),
            serde_json::json!({"event":"clear","streamSid":"MZ1"})
        );
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        assert!(matches!(
            parse_inbound("not json"),
            Err(TwilioError::Malformed(_))
        ));
        assert!(matches!(
            parse_inbound(r#"{"event":"media","media":{}}"#),
            Err(TwilioError::Malformed(_))
        ));
        assert!(matches!(
            parse_inbound(r#"{"event":"media","media":{"payload":"x","chunk":"one"}}"#),
            Err(TwilioError::Malformed(_))
        ));
        assert!(matches!(
            parse_inbound(r#"{"event":"transcription","x":1}"#),
            Err(TwilioError::UnknownEvent(e)) if e == "transcription"
        ));
        let bad_digit = Dtmf {
            track: None,
            digit: "12".into(),
        };
        assert!(matches!(bad_digit.key(), Err(TwilioError::InvalidDigit(_))));
        let format = MediaFormat {
            encoding: "audio/x-alaw".into(),
            sample_rate: 8000,
            channels: 1,
        };
        assert!(matches!(
            format.check(),
            Err(TwilioError::UnsupportedMediaFormat { .. })
        ));
    }
}
