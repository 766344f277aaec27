//! [`OpenAiStt`]: the [`Stt`] contract over `POST /audio/transcriptions` (multipart upload of a WAV file).
//!
//! The API transcribes whole files, so there is no [`Stt::stream`]: it returns [`SttError::Unsupported`] (the
//! trait's default) and the pipeline segments the audio with a VAD and calls [`Stt::recognize`] per utterance.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, WavError};
use agents_core::stt::{RecognizeOptions, SpeechData, Stt, SttCapabilities, SttError, Transcript};
use agents_core::{ApiConnectOptions, ApiError};
use async_trait::async_trait;
use serde_json::Value;

use crate::error::{ConfigError, ProtocolError};
use crate::http::{self, Transport};
use crate::options::ClientOptions;

/// The default transcription model (LiveKit's default).
pub const DEFAULT_STT_MODEL: &str = "gpt-4o-mini-transcribe";

/// Options of an [`OpenAiStt`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SttOptions {
    /// `whisper-1`, `gpt-4o-transcribe` or `gpt-4o-mini-transcribe`.
    pub model: String,
    /// Language (ISO-639-1, e.g. `en`); `None` lets the model detect it. [`RecognizeOptions::language`] wins.
    pub language: Option<String>,
    /// Text to guide the model's style or vocabulary.
    pub prompt: Option<String>,
}

impl Default for SttOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_STT_MODEL.to_owned(),
            language: None,
            prompt: None,
        }
    }
}

impl SttOptions {
    /// Sets the model.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the language.
    #[must_use]
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Sets the prompt.
    #[must_use]
    pub fn with_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }
}

/// An OpenAI speech-to-text. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct OpenAiStt {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    options: SttOptions,
}

impl OpenAiStt {
    /// The label in logs and metrics.
    pub const LABEL: &'static str = "openai.STT";

    /// An STT over `client` with `options`.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad base URL or header, or an empty model.
    pub fn new(client: ClientOptions, options: SttOptions) -> Result<Self, ConfigError> {
        if options.model.trim().is_empty() {
            return Err(ConfigError::InvalidOption {
                reason: "the model name is empty".to_owned(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(client)?,
                options,
            }),
        })
    }

    /// An STT with the key and base URL from the environment and default options.
    ///
    /// # Errors
    /// As [`OpenAiStt::new`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(ClientOptions::from_env(), SttOptions::default())
    }

    /// The options.
    pub fn options(&self) -> &SttOptions {
        &self.inner.options
    }
}

/// The frames as one PCM16 WAV file and their duration; all frames must share one format. No frames give no
/// bytes.
pub(crate) fn encode_wav(frames: &[AudioFrame]) -> Result<(Vec<u8>, Duration), SttError> {
    if frames.is_empty() {
        return Ok((Vec::new(), Duration::ZERO));
    }
    let mut out = Cursor::new(Vec::new());
    match agents_audio::write_wav_to(&mut out, frames) {
        Ok(()) => {}
        Err(WavError::Frame(e)) => return Err(SttError::InvalidAudio(e)),
        Err(e) => {
            let e = ApiError::new("the audio cannot be encoded as WAV")
                .with_retryable(false)
                .with_source(e);
            return Err(SttError::Api(e));
        }
    }
    let duration = frames.iter().map(AudioFrame::duration).sum();
    Ok((out.into_inner(), duration))
}

/// The response format asked for: `verbose_json` for `whisper-1`, the only model that has it (it reports the
/// detected language), `json` otherwise (as LiveKit does).
fn response_format(model: &str) -> &'static str {
    if model == "whisper-1" {
        "verbose_json"
    } else {
        "json"
    }
}

fn form(options: &SttOptions, language: Option<&str>, wav: Vec<u8>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(wav).file_name("audio.wav"),
        )
        .text("model", options.model.clone())
        .text("response_format", response_format(&options.model));
    if let Some(l) = language {
        form = form.text("language", l.to_owned());
    }
    if let Some(p) = &options.prompt {
        form = form.text("prompt", p.clone());
    }
    form
}

#[async_trait]
impl Stt for OpenAiStt {
    fn label(&self) -> &str {
        Self::LABEL
    }

    fn model(&self) -> &str {
        &self.inner.options.model
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities::default()
    }

    /// Transcribes the buffer. An empty buffer gives an empty transcript without a request.
    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        let (wav, duration) = encode_wav(audio)?;
        if duration.is_zero() {
            return Ok(Transcript::default());
        }
        let o = &self.inner.options;
        let language = options.language.as_deref().or(o.language.as_deref());
        let conn: ApiConnectOptions = self.inner.transport.conn_for(&options.conn_options);
        let transport = &self.inner.transport;
        let wav = bytes::Bytes::from(wav);
        let (request_id, body) = conn
            .retry("recognize", |attempt| {
                let request = transport.post("audio/transcriptions").multipart(form(
                    o,
                    language,
                    wav.to_vec(),
                ));
                async move {
                    let response = transport.send(request, attempt.timeout).await?;
                    let request_id = http::request_id(&response).unwrap_or_default();
                    // The body is small; it is read within the attempt's timeout, and a failure is retried.
                    let body = tokio::time::timeout(attempt.timeout, response.bytes())
                        .await
                        .map_err(|_| ApiError::timeout_default())?
                        .map_err(http::map_reqwest)?;
                    Ok::<_, ApiError>((request_id, body))
                }
            })
            .await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new("invalid transcription response")
                .with_retryable(false)
                .with_request_id(request_id.clone())
                .with_source(ProtocolError::InvalidJson {
                    what: "the transcription response",
                    reason: e.to_string(),
                })
        })?;
        let Some(text) = v.get("text").and_then(Value::as_str) else {
            return Err(ApiError::new("invalid transcription response")
                .with_retryable(false)
                .with_request_id(request_id)
                .with_source(ProtocolError::InvalidJson {
                    what: "the transcription response",
                    reason: "no `text` field".to_owned(),
                })
                .into());
        };
        // OpenAI reports no confidence: a returned transcript is taken as certain. The language asked for wins over
        // the one `verbose_json` detected (a name such as "english", not a code).
        let mut best = SpeechData::new(text.trim(), 1.0).with_times(Duration::ZERO, duration);
        if let Some(l) = language.or_else(|| v.get("language").and_then(Value::as_str)) {
            best = best.with_language(l);
        }
        Ok(Transcript::new(request_id, best))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agents_audio::{AudioFrameError, SampleRate};

    #[test]
    fn wav_header_and_format_mismatch() {
        let a = AudioFrame::new(vec![1, -1, 2, -2], SampleRate::HZ_16000, 1).unwrap();
        let (wav, d) = encode_wav(&[a.clone(), a.clone()]).unwrap();
        assert_eq!(wav.len(), 44 + 16);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
            16_000
        );
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 16);
        assert_eq!(d, Duration::from_micros(500));
        let b = AudioFrame::new(vec![1, 2], SampleRate::HZ_24000, 1).unwrap();
        assert!(matches!(
            encode_wav(&[a, b]),
            Err(SttError::InvalidAudio(
                AudioFrameError::FormatMismatch { .. }
            ))
        ));
        assert_eq!(encode_wav(&[]).unwrap(), (Vec::new(), Duration::ZERO));
    }
}
