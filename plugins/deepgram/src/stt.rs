//! Speech-to-text: the live listen WebSocket ([`Stt::stream`]) and pre-recorded `POST /v1/listen`
//! ([`Stt::recognize`]).

use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, AudioFrameError, SampleRate};
use agents_core::ApiError;
use agents_core::stt::{
    RecognizeOptions, SpeechData, Stt, SttCapabilities, SttError, SttStream, SttStreamOptions,
    Transcript,
};
use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::watch;

use crate::messages::{self, Alternative};
use crate::net;
use crate::options::{ClientOptions, ConfigError, with_query};

/// When Deepgram declares the end of an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpointing {
    /// After this much silence (`endpointing=<ms>`).
    After(Duration),
    /// Never (`endpointing=false`): only `is_final` results and, when set, `UtteranceEnd`.
    Disabled,
}

/// Options of the Deepgram STT. Defaults follow LiveKit's plugin (nova-3, interim results, 25 ms endpointing, VAD
/// events, filler words) except where noted.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SttOptions {
    /// Model (`model`). Default `nova-3`.
    pub model: String,
    /// Language (`language`), e.g. `en-US` or `multi`; `None` leaves the provider default.
    pub language: Option<String>,
    /// Rate of the audio sent to Deepgram (`sample_rate`, with `encoding=linear16`); a stream resamples its input
    /// to it. Default 16 kHz.
    pub sample_rate: SampleRate,
    /// Channels of the audio sent (`channels`); a stream remixes its input to it. Default 1.
    pub channels: u16,
    /// Interim results (`interim_results`). Default true.
    pub interim_results: bool,
    /// Punctuation (`punctuate`). Default true.
    pub punctuate: bool,
    /// Smart formatting (`smart_format`). Default false.
    pub smart_format: bool,
    /// Endpointing. Default 25 ms (LiveKit's; the server default is 10 ms).
    pub endpointing: Endpointing,
    /// `utterance_end_ms`: `UtteranceEnd` after this gap following the last word; at least 1 s, needs interim
    /// results. Default none.
    pub utterance_end: Option<Duration>,
    /// `SpeechStarted` messages (`vad_events`). Default true.
    pub vad_events: bool,
    /// Filler words such as "uh" (`filler_words`). Default true.
    pub filler_words: bool,
    /// Key terms (`keyterm`, Nova-3 models only).
    pub keyterms: Vec<String>,
    /// Keywords with an intensifier (`keywords=word:boost`, models before Nova-3 only).
    pub keywords: Vec<(String, f32)>,
    /// Numerals as digits (`numerals`). Default false.
    pub numerals: bool,
    /// Profanity filter (`profanity_filter`). Default false.
    pub profanity_filter: bool,
    /// Speaker labels (`diarize`). Default false.
    pub diarize: bool,
    /// Usage tags (`tag`).
    pub tags: Vec<String>,
    /// Opt out of the Deepgram Model Improvement Program (`mip_opt_out`). Default false.
    pub mip_opt_out: bool,
    /// A `KeepAlive` is sent after this long without audio (Deepgram closes after 10 s). Default 5 s.
    pub keep_alive_interval: Duration,
    /// Audio per binary message. Default 50 ms.
    pub chunk_duration: Duration,
    /// Most audio kept for replay after a reconnection (audio not yet covered by a final result). Default 30 s.
    pub max_replay: Duration,
}

impl Default for SttOptions {
    fn default() -> Self {
        Self {
            model: "nova-3".to_owned(),
            language: Some("en-US".to_owned()),
            sample_rate: SampleRate::HZ_16000,
            channels: 1,
            interim_results: true,
            punctuate: true,
            smart_format: false,
            endpointing: Endpointing::After(Duration::from_millis(25)),
            utterance_end: None,
            vad_events: true,
            filler_words: true,
            keyterms: Vec::new(),
            keywords: Vec::new(),
            numerals: false,
            profanity_filter: false,
            diarize: false,
            tags: Vec::new(),
            mip_opt_out: false,
            keep_alive_interval: Duration::from_secs(5),
            chunk_duration: Duration::from_millis(50),
            max_replay: Duration::from_secs(30),
        }
    }
}

fn b(v: bool) -> String {
    if v { "true" } else { "false" }.to_owned()
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

    /// Sets the sample rate of the stream's audio.
    #[must_use]
    pub fn with_sample_rate(mut self, rate: SampleRate) -> Self {
        self.sample_rate = rate;
        self
    }

    /// Sets the endpointing.
    #[must_use]
    pub fn with_endpointing(mut self, endpointing: Endpointing) -> Self {
        self.endpointing = endpointing;
        self
    }

    /// Sets `utterance_end_ms`.
    #[must_use]
    pub fn with_utterance_end(mut self, gap: Duration) -> Self {
        self.utterance_end = Some(gap);
        self
    }

    /// Sets the keep-alive interval.
    #[must_use]
    pub fn with_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.keep_alive_interval = interval;
        self
    }

    /// Sets the key terms.
    #[must_use]
    pub fn with_keyterms(mut self, keyterms: Vec<String>) -> Self {
        self.keyterms = keyterms;
        self
    }

    fn is_nova3(&self) -> bool {
        self.model.starts_with("nova-3")
    }

    /// Checks what the provider would refuse.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] naming the option.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, reason: &str| {
            Err(ConfigError::InvalidOption {
                name,
                reason: reason.to_owned(),
            })
        };
        if self.model.trim().is_empty() {
            return bad("model", "must not be empty");
        }
        if self.channels == 0 {
            return bad("channels", "must be at least 1");
        }
        if let Some(gap) = self.utterance_end {
            if gap < Duration::from_secs(1) {
                return bad(
                    "utterance_end",
                    "must be at least 1 s (Deepgram refuses less)",
                );
            }
            if !self.interim_results {
                return bad("utterance_end", "needs interim_results");
            }
        }
        if !self.keyterms.is_empty() && !self.is_nova3() {
            return bad("keyterms", "key terms need a Nova-3 model; use keywords");
        }
        if !self.keywords.is_empty() && self.is_nova3() {
            return bad("keywords", "Nova-3 models take key terms, not keywords");
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval >= Duration::from_secs(10)
        {
            return bad(
                "keep_alive_interval",
                "must be between 0 and 10 s (Deepgram's idle timeout)",
            );
        }
        if self.chunk_duration < Duration::from_millis(10)
            || self.chunk_duration > Duration::from_secs(1)
        {
            return bad("chunk_duration", "must be between 10 ms and 1 s");
        }
        Ok(())
    }

    /// The parameters common to live and pre-recorded requests.
    fn common_query(&self, language: Option<&str>) -> Vec<(String, String)> {
        let mut q = vec![("model".to_owned(), self.model.clone())];
        if let Some(lang) = language.or(self.language.as_deref()) {
            q.push(("language".to_owned(), lang.to_owned()));
        }
        q.push(("punctuate".to_owned(), b(self.punctuate)));
        q.push(("smart_format".to_owned(), b(self.smart_format)));
        q.push(("filler_words".to_owned(), b(self.filler_words)));
        q.push(("numerals".to_owned(), b(self.numerals)));
        q.push(("profanity_filter".to_owned(), b(self.profanity_filter)));
        q.push(("diarize".to_owned(), b(self.diarize)));
        if self.mip_opt_out {
            q.push(("mip_opt_out".to_owned(), b(true)));
        }
        for k in &self.keyterms {
            q.push(("keyterm".to_owned(), k.clone()));
        }
        for (k, boost) in &self.keywords {
            q.push(("keywords".to_owned(), format!("{k}:{boost}")));
        }
        for t in &self.tags {
            q.push(("tag".to_owned(), t.clone()));
        }
        q
    }

    /// The query of the live listen socket.
    pub(crate) fn live_query(&self, language: Option<&str>) -> Vec<(String, String)> {
        let mut q = self.common_query(language);
        q.push(("encoding".to_owned(), "linear16".to_owned()));
        q.push(("sample_rate".to_owned(), self.sample_rate.hz().to_string()));
        q.push(("channels".to_owned(), self.channels.to_string()));
        q.push(("interim_results".to_owned(), b(self.interim_results)));
        q.push(("vad_events".to_owned(), b(self.vad_events)));
        q.push((
            "endpointing".to_owned(),
            match self.endpointing {
                Endpointing::After(d) => d.as_millis().to_string(),
                Endpointing::Disabled => "false".to_owned(),
            },
        ));
        if let Some(gap) = self.utterance_end {
            q.push(("utterance_end_ms".to_owned(), gap.as_millis().to_string()));
        }
        q
    }
}

/// Shared state of a [`DeepgramStt`].
#[derive(Debug)]
pub(crate) struct SttShared {
    pub(crate) client: ClientOptions,
    pub(crate) http: reqwest::Client,
    pub(crate) options: watch::Sender<SttOptions>,
}

/// The Deepgram speech-to-text provider. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeepgramStt {
    shared: Arc<SttShared>,
    model: String,
}

/// The label used in logs and metrics.
pub const STT_LABEL: &str = "deepgram.STT";

impl DeepgramStt {
    /// A provider with `client` and `options`.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] when the options would be refused by Deepgram.
    pub fn new(client: ClientOptions, options: SttOptions) -> Result<Self, ConfigError> {
        options.validate()?;
        let model = options.model.clone();
        Ok(Self {
            shared: Arc::new(SttShared {
                client,
                http: reqwest::Client::new(),
                options: watch::Sender::new(options),
            }),
            model,
        })
    }

    /// A provider from `DEEPGRAM_API_KEY` (and `DEEPGRAM_BASE_URL`) with the default options.
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when the key is unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(ClientOptions::from_env()?, SttOptions::default())
    }

    /// The current options.
    pub fn options(&self) -> SttOptions {
        self.shared.options.borrow().clone()
    }

    /// Changes the options. Open streams finish what they heard under the old options (`CloseStream`), then
    /// reconnect with the new ones and go on; later calls and streams use them too.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`]; nothing changes then.
    pub fn update_options(&self, options: SttOptions) -> Result<(), ConfigError> {
        options.validate()?;
        self.shared.options.send_replace(options);
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct PrerecordedResponse {
    #[serde(default)]
    metadata: PrerecordedMetadata,
    results: PrerecordedResults,
}

#[derive(Debug, Default, Deserialize)]
struct PrerecordedMetadata {
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PrerecordedResults {
    #[serde(default)]
    channels: Vec<messages::Channel>,
}

/// Checks that every frame has the format of the first one.
fn common_format(audio: &[AudioFrame]) -> Result<Option<(SampleRate, u16)>, SttError> {
    let Some(first) = audio.first() else {
        return Ok(None);
    };
    for f in audio {
        if !f.same_format(first) {
            return Err(SttError::InvalidAudio(AudioFrameError::FormatMismatch {
                expected_rate: first.sample_rate(),
                expected_channels: first.num_channels(),
                actual_rate: f.sample_rate(),
                actual_channels: f.num_channels(),
            }));
        }
    }
    Ok(Some((first.sample_rate(), first.num_channels())))
}

fn transcript_of(
    request_id: String,
    channel: Option<&messages::Channel>,
    language: Option<&str>,
) -> Transcript {
    let mut t = Transcript::default();
    t.request_id = request_id;
    let Some(channel) = channel else {
        return t;
    };
    let language = channel.detected_language.as_deref().or(language);
    t.alternatives = channel
        .alternatives
        .iter()
        .map(|a: &Alternative| {
            messages::speech_data(a, Duration::ZERO, Duration::ZERO, language).unwrap_or_else(
                || {
                    let mut d = SpeechData::new("", a.confidence as f32);
                    d.language = language.map(str::to_owned);
                    d
                },
            )
        })
        .collect();
    t
}

#[async_trait]
impl Stt for DeepgramStt {
    fn label(&self) -> &str {
        STT_LABEL
    }

    /// The model given at construction (a later [`DeepgramStt::update_options`] does not change it here).
    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> SttCapabilities {
        let o = self.shared.options.borrow();
        let mut c = SttCapabilities::default();
        c.streaming = true;
        c.interim_results = o.interim_results;
        c.aligned_transcript = true;
        c.diarization = o.diarize;
        c
    }

    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        let opts = self.options();
        let language = options.language.clone().or(opts.language.clone());
        let Some((rate, channels)) = common_format(audio)? else {
            return Ok(Transcript::default());
        };
        let body: Vec<u8> = audio.iter().flat_map(AudioFrame::to_le_bytes).collect();
        let mut query = opts.common_query(language.as_deref());
        query.push(("encoding".to_owned(), "linear16".to_owned()));
        query.push(("sample_rate".to_owned(), rate.hz().to_string()));
        query.push(("channels".to_owned(), channels.to_string()));
        let url = with_query(&self.shared.client.http_url("/v1/listen"), &query);
        let conn = options.conn_options;
        let shared = &self.shared;
        let body = bytes::Bytes::from(body);
        let (text, header_id) = conn
            .retry("recognize", |_attempt| {
                let body = body.clone();
                let url = url.clone();
                async move {
                    let send = async {
                        let resp = shared
                            .http
                            .post(&url)
                            .header(http::header::AUTHORIZATION, shared.client.authorization())
                            .header(http::header::CONTENT_TYPE, "audio/raw")
                            .body(body)
                            .send()
                            .await
                            .map_err(|e| net::reqwest_error(&e))?;
                        let status = resp.status().as_u16();
                        let headers = resp.headers().clone();
                        let bytes = resp.bytes().await.map_err(|e| net::reqwest_error(&e))?;
                        if !(200..300).contains(&status) {
                            return Err(net::status_error(status, &headers, &bytes));
                        }
                        let id = headers
                            .get(net::REQUEST_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        Ok::<_, ApiError>((bytes, id))
                    };
                    conn.run_with_timeout(send).await?.map_err(SttError::Api)
                }
            })
            .await?;
        let parsed: PrerecordedResponse = serde_json::from_slice(&text).map_err(|e| {
            SttError::Api(
                ApiError::new(format!("unexpected Deepgram response: {e}")).with_retryable(false),
            )
        })?;
        let request_id = parsed.metadata.request_id.or(header_id).unwrap_or_default();
        Ok(transcript_of(
            request_id,
            parsed.results.channels.first(),
            language.as_deref(),
        ))
    }

    fn stream(&self, options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let (stream, driver) = SttStream::channel();
        let stream = stream.with_labels(STT_LABEL, self.model());
        let ctx = crate::stt_stream::StreamContext {
            client: self.shared.client.clone(),
            options: self.shared.options.subscribe(),
            language: options.language.clone(),
            conn: options.conn_options,
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SttError::Unsupported {
            label: STT_LABEL.to_owned(),
            operation: "streaming outside a tokio runtime",
        })?;
        runtime.spawn(crate::stt_stream::run(driver, ctx));
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_query_has_the_documented_parameters() {
        let o = SttOptions::default().with_keyterms(vec!["Deepgram".into()]);
        let q = o.live_query(None);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("model"), Some("nova-3"));
        assert_eq!(get("encoding"), Some("linear16"));
        assert_eq!(get("sample_rate"), Some("16000"));
        assert_eq!(get("endpointing"), Some("25"));
        assert_eq!(get("keyterm"), Some("Deepgram"));
        assert_eq!(get("keywords"), None);
        let mut older = SttOptions::default().with_model("nova-2");
        older.keywords = vec![("Kenobi".into(), 2.0)];
        assert!(older.validate().is_ok());
        assert!(
            older
                .live_query(None)
                .contains(&("keywords".into(), "Kenobi:2".into()))
        );
        let o = SttOptions::default().with_endpointing(Endpointing::Disabled);
        assert!(
            o.live_query(Some("fr"))
                .contains(&("endpointing".into(), "false".into()))
        );
        assert!(
            o.live_query(Some("fr"))
                .contains(&("language".into(), "fr".into()))
        );
    }

    #[test]
    fn validation_names_the_option() {
        let short = SttOptions::default().with_utterance_end(Duration::from_millis(999));
        assert!(matches!(
            short.validate(),
            Err(ConfigError::InvalidOption {
                name: "utterance_end",
                ..
            })
        ));
        let mut old = SttOptions::default().with_model("nova-2");
        old.keyterms = vec!["x".into()];
        assert!(matches!(
            old.validate(),
            Err(ConfigError::InvalidOption {
                name: "keyterms",
                ..
            })
        ));
        let ka = SttOptions::default().with_keep_alive_interval(Duration::from_secs(10));
        assert!(ka.validate().is_err());
        assert!(SttOptions::default().validate().is_ok());
    }

    #[test]
    fn stream_outside_a_runtime_is_an_error_not_a_panic() {
        let stt = DeepgramStt::new(ClientOptions::new("k"), SttOptions::default()).unwrap();
        assert!(matches!(
            stt.stream(&RecognizeOptions::default()),
            Err(SttError::Unsupported { .. })
        ));
    }

    #[test]
    fn mixed_formats_are_refused() {
        let a = AudioFrame::silence(Duration::from_millis(10), SampleRate::HZ_16000, 1).unwrap();
        let b = AudioFrame::silence(Duration::from_millis(10), SampleRate::HZ_24000, 1).unwrap();
        assert!(matches!(
            common_format(&[a, b]),
            Err(SttError::InvalidAudio(
                AudioFrameError::FormatMismatch { .. }
            ))
        ));
    }
}
