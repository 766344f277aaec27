//! Options of the ElevenLabs TTS: credentials, base URL, voice, model, output format, voice settings, the
//! WebSocket query parameters and the connection policy.

use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::{ApiConnectOptions, ApiKey};
use serde::Serialize;

/// The public ElevenLabs API.
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";
/// The default voice ("Sarah"), the one LiveKit's plugin uses.
pub const DEFAULT_VOICE_ID: &str = "EXAVITQu4vr4xnSDxMaL";
/// The default model: the low-latency Flash v2.5.
pub const DEFAULT_MODEL: &str = "eleven_flash_v2_5";
/// The provider's default `inactivity_timeout` (seconds on the wire).
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(20);
/// The provider's maximum `inactivity_timeout`.
pub const MAX_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(180);
/// The environment variables read for the key, in order.
pub const API_KEY_ENV_VARS: [&str; 2] = ["ELEVEN_API_KEY", "ELEVENLABS_API_KEY"];

/// A raw PCM output format (`pcm_<rate>`): 16-bit little-endian mono at the given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OutputFormat {
    /// `pcm_8000`.
    Pcm8000,
    /// `pcm_16000`.
    Pcm16000,
    /// `pcm_22050`.
    Pcm22050,
    /// `pcm_24000` (the default).
    #[default]
    Pcm24000,
    /// `pcm_44100` (ElevenLabs Pro tier and above).
    Pcm44100,
}

impl OutputFormat {
    /// The `output_format` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pcm8000 => "pcm_8000",
            Self::Pcm16000 => "pcm_16000",
            Self::Pcm22050 => "pcm_22050",
            Self::Pcm24000 => "pcm_24000",
            Self::Pcm44100 => "pcm_44100",
        }
    }

    /// The rate of the audio in this format.
    pub fn sample_rate(self) -> SampleRate {
        match self {
            Self::Pcm8000 => SampleRate::HZ_8000,
            Self::Pcm16000 => SampleRate::HZ_16000,
            Self::Pcm22050 => SampleRate::HZ_22050,
            Self::Pcm24000 => SampleRate::HZ_24000,
            Self::Pcm44100 => SampleRate::HZ_44100,
        }
    }

    /// The PCM format of `rate`, if ElevenLabs offers one.
    pub fn from_sample_rate(rate: SampleRate) -> Option<Self> {
        Some(match rate.hz() {
            8_000 => Self::Pcm8000,
            16_000 => Self::Pcm16000,
            22_050 => Self::Pcm22050,
            24_000 => Self::Pcm24000,
            44_100 => Self::Pcm44100,
            _ => return None,
        })
    }
}

/// `apply_text_normalization`: whether numbers, dates... are spelled out before synthesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TextNormalization {
    /// The model decides (the provider's default).
    #[default]
    Auto,
    /// Always normalize.
    On,
    /// Never normalize.
    Off,
}

impl TextNormalization {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// Voice settings, sent in the first message of every context and in the REST body.
///
/// `None` fields are left out, so the voice's stored settings apply.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[non_exhaustive]
pub struct VoiceSettings {
    /// 0..=1; lower is more expressive, higher more monotone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// 0..=1; how closely to follow the original voice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
    /// 0..=1; style exaggeration (v2+ models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    /// Speaker boost (v2+ models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// 0.7..=1.2; speaking rate, 1.0 is normal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

impl VoiceSettings {
    /// Sets the stability.
    #[must_use]
    pub fn with_stability(mut self, v: f64) -> Self {
        self.stability = Some(v);
        self
    }

    /// Sets the similarity boost.
    #[must_use]
    pub fn with_similarity_boost(mut self, v: f64) -> Self {
        self.similarity_boost = Some(v);
        self
    }

    /// Sets the style exaggeration.
    #[must_use]
    pub fn with_style(mut self, v: f64) -> Self {
        self.style = Some(v);
        self
    }

    /// Sets speaker boost.
    #[must_use]
    pub fn with_speaker_boost(mut self, on: bool) -> Self {
        self.use_speaker_boost = Some(on);
        self
    }

    /// Sets the speed.
    #[must_use]
    pub fn with_speed(mut self, v: f64) -> Self {
        self.speed = Some(v);
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let unit = |name: &'static str, v: Option<f64>| match v {
            Some(x) if !(0.0..=1.0).contains(&x) => Err(ConfigError::OutOfRange {
                field: name,
                range: "0.0..=1.0",
            }),
            _ => Ok(()),
        };
        unit("stability", self.stability)?;
        unit("similarity_boost", self.similarity_boost)?;
        unit("style", self.style)?;
        match self.speed {
            Some(s) if !(0.7..=1.2).contains(&s) => Err(ConfigError::OutOfRange {
                field: "speed",
                range: "0.7..=1.2",
            }),
            _ => Ok(()),
        }
    }
}

/// A setting the TTS cannot be built with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No key given and none of the environment variables set.
    #[error("no ElevenLabs API key: set ELEVEN_API_KEY or ELEVENLABS_API_KEY")]
    MissingApiKey,
    /// A numeric setting is outside the range the API accepts.
    #[error("{field} must be in {range}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// What the API accepts.
        range: &'static str,
    },
    /// The base URL is not an http(s) URL.
    #[error("invalid base URL: {reason}")]
    InvalidBaseUrl {
        /// What is wrong.
        reason: String,
    },
    /// An empty voice or model id.
    #[error("{field} must not be empty")]
    Empty {
        /// The setting.
        field: &'static str,
    },
}

/// Options of [`crate::ElevenLabsTts`].
///
/// `Debug` is safe to log: the key prints as `ApiKey(****)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TtsOptions {
    /// Sent as the `xi-api-key` header.
    pub api_key: Option<ApiKey>,
    /// Base URL without a trailing slash (`https://api.elevenlabs.io`); `wss://` is derived from it.
    pub base_url: String,
    /// The voice.
    pub voice_id: String,
    /// `model_id`, e.g. `eleven_flash_v2_5`, `eleven_turbo_v2_5`, `eleven_multilingual_v2`.
    pub model: String,
    /// The PCM format (and so the sample rate) of the audio.
    pub output_format: OutputFormat,
    /// `language_code` (ISO 639-1), for the models that accept it.
    pub language: Option<String>,
    /// Voice settings of every context / request.
    pub voice_settings: Option<VoiceSettings>,
    /// `generation_config.chunk_length_schedule` (items 50..=500); ignored by the server in auto mode.
    pub chunk_length_schedule: Option<Vec<u32>>,
    /// `auto_mode`: the server buffers by sentence instead of the chunk schedule.
    pub auto_mode: bool,
    /// `sync_alignment`, and the `/with-timestamps` REST endpoint: audio carries character timings, turned into
    /// word timings.
    pub sync_alignment: bool,
    /// `inactivity_timeout` of the socket (1..=180 s; the provider's default is 20 s).
    pub inactivity_timeout: Duration,
    /// How long an open context may go without a message before the client sends a keep-alive
    /// (`{"text": "", "context_id"}`). Must be shorter than `inactivity_timeout`.
    pub keepalive_interval: Duration,
    /// Keep a socket without open contexts alive too, with a context-less `{"text": ""}` every
    /// `keepalive_interval`, so the next speech does not pay for a new TLS connection. Pipecat does this in
    /// production; the AsyncAPI documents the keep-alive with a `context_id` only. Off: an idle socket is left to
    /// time out and the next speech reconnects.
    pub idle_keepalive: bool,
    /// `enable_ssml_parsing`.
    pub enable_ssml_parsing: bool,
    /// `apply_text_normalization`.
    pub text_normalization: TextNormalization,
    /// `enable_logging` (false = zero retention, enterprise only); left out when `None`.
    pub enable_logging: Option<bool>,
    /// Retries and per-attempt timeout of connects and REST requests.
    pub conn: ApiConnectOptions,
}

impl Default for TtsOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            voice_id: DEFAULT_VOICE_ID.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            output_format: OutputFormat::default(),
            language: None,
            voice_settings: None,
            chunk_length_schedule: None,
            auto_mode: false,
            sync_alignment: true,
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            keepalive_interval: Duration::from_secs(10),
            idle_keepalive: true,
            enable_ssml_parsing: false,
            text_normalization: TextNormalization::Auto,
            enable_logging: None,
            conn: ApiConnectOptions::default(),
        }
    }
}

impl TtsOptions {
    /// Options from the environment: the key from `ELEVEN_API_KEY` (LiveKit's name) or `ELEVENLABS_API_KEY`
    /// (Pipecat's and the SDK's), the base URL from `ELEVENLABS_BASE_URL` when set.
    ///
    /// # Errors
    /// [`ConfigError::MissingApiKey`] when neither key variable is set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let key = API_KEY_ENV_VARS
            .iter()
            .find_map(|v| ApiKey::from_env(v))
            .ok_or(ConfigError::MissingApiKey)?;
        let mut o = Self::default().with_api_key(key);
        if let Ok(url) = std::env::var("ELEVENLABS_BASE_URL")
            && !url.trim().is_empty()
        {
            o = o.with_base_url(url.trim());
        }
        Ok(o)
    }

    /// Sets the key.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets the base URL (a trailing slash is removed).
    #[must_use]
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets the voice.
    #[must_use]
    pub fn with_voice(mut self, voice_id: impl Into<String>) -> Self {
        self.voice_id = voice_id.into();
        self
    }

    /// Sets the model.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the output format.
    #[must_use]
    pub fn with_output_format(mut self, format: OutputFormat) -> Self {
        self.output_format = format;
        self
    }

    /// Sets the language code.
    #[must_use]
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Sets the voice settings.
    #[must_use]
    pub fn with_voice_settings(mut self, settings: VoiceSettings) -> Self {
        self.voice_settings = Some(settings);
        self
    }

    /// Sets the chunk length schedule.
    #[must_use]
    pub fn with_chunk_length_schedule(mut self, schedule: Vec<u32>) -> Self {
        self.chunk_length_schedule = Some(schedule);
        self
    }

    /// Sets auto mode.
    #[must_use]
    pub fn with_auto_mode(mut self, on: bool) -> Self {
        self.auto_mode = on;
        self
    }

    /// Sets alignment.
    #[must_use]
    pub fn with_sync_alignment(mut self, on: bool) -> Self {
        self.sync_alignment = on;
        self
    }

    /// Sets the inactivity timeout.
    #[must_use]
    pub fn with_inactivity_timeout(mut self, timeout: Duration) -> Self {
        self.inactivity_timeout = timeout;
        self
    }

    /// Sets the keep-alive interval.
    #[must_use]
    pub fn with_keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// Sets whether an idle socket is kept alive.
    #[must_use]
    pub fn with_idle_keepalive(mut self, on: bool) -> Self {
        self.idle_keepalive = on;
        self
    }

    /// Sets SSML parsing.
    #[must_use]
    pub fn with_ssml_parsing(mut self, on: bool) -> Self {
        self.enable_ssml_parsing = on;
        self
    }

    /// Sets text normalization.
    #[must_use]
    pub fn with_text_normalization(mut self, n: TextNormalization) -> Self {
        self.text_normalization = n;
        self
    }

    /// Sets the connection policy.
    #[must_use]
    pub fn with_conn_options(mut self, conn: ApiConnectOptions) -> Self {
        self.conn = conn;
        self
    }

    /// Checks every setting against what the API accepts.
    ///
    /// # Errors
    /// The first [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.api_key {
            Some(k) if !k.is_empty() => {}
            _ => return Err(ConfigError::MissingApiKey),
        }
        let url = url::Url::parse(&self.base_url).map_err(|e| ConfigError::InvalidBaseUrl {
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::InvalidBaseUrl {
                reason: format!("scheme {:?} is not http or https", url.scheme()),
            });
        }
        if self.voice_id.trim().is_empty() {
            return Err(ConfigError::Empty { field: "voice_id" });
        }
        if self.model.trim().is_empty() {
            return Err(ConfigError::Empty { field: "model" });
        }
        if let Some(v) = &self.voice_settings {
            v.validate()?;
        }
        if let Some(s) = &self.chunk_length_schedule
            && (s.is_empty() || s.iter().any(|n| !(50..=500).contains(n)))
        {
            return Err(ConfigError::OutOfRange {
                field: "chunk_length_schedule",
                range: "items in 50..=500",
            });
        }
        if self.inactivity_timeout < Duration::from_secs(1)
            || self.inactivity_timeout > MAX_INACTIVITY_TIMEOUT
        {
            return Err(ConfigError::OutOfRange {
                field: "inactivity_timeout",
                range: "1..=180 s",
            });
        }
        if self.keepalive_interval.is_zero() || self.keepalive_interval >= self.inactivity_timeout {
            return Err(ConfigError::OutOfRange {
                field: "keepalive_interval",
                range: "above zero and below inactivity_timeout",
            });
        }
        Ok(())
    }

    /// `{base_url}/{path}`.
    pub(crate) fn http_url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// The multi-context WebSocket URL with every query parameter (never the key: it goes in a header).
    pub(crate) fn multi_stream_url(&self) -> String {
        let http = self.http_url(&format!(
            "v1/text-to-speech/{}/multi-stream-input",
            self.voice_id
        ));
        let base = if let Some(rest) = http.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = http.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            http
        };
        let mut q = vec![
            ("model_id", self.model.clone()),
            ("output_format", self.output_format.as_str().to_owned()),
            ("auto_mode", self.auto_mode.to_string()),
            ("sync_alignment", self.sync_alignment.to_string()),
            (
                "inactivity_timeout",
                self.inactivity_timeout.as_secs().to_string(),
            ),
            ("enable_ssml_parsing", self.enable_ssml_parsing.to_string()),
            (
                "apply_text_normalization",
                self.text_normalization.as_str().to_owned(),
            ),
        ];
        if let Some(lang) = &self.language {
            q.push(("language_code", lang.clone()));
        }
        if let Some(l) = self.enable_logging {
            q.push(("enable_logging", l.to_string()));
        }
        with_query(&base, &q)
    }

    /// The REST streaming URL (`/stream`, or `/stream/with-timestamps` with alignment).
    pub(crate) fn rest_stream_url(&self) -> String {
        let suffix = if self.sync_alignment {
            "stream/with-timestamps"
        } else {
            "stream"
        };
        let base = self.http_url(&format!("v1/text-to-speech/{}/{suffix}", self.voice_id));
        let mut q = vec![("output_format", self.output_format.as_str().to_owned())];
        if let Some(l) = self.enable_logging {
            q.push(("enable_logging", l.to_string()));
        }
        with_query(&base, &q)
    }
}

fn with_query(base: &str, q: &[(&str, String)]) -> String {
    let mut out = String::from(base);
    for (i, (k, v)) in q.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_every_parameter_and_never_the_key() {
        let o = TtsOptions::default()
            .with_api_key("xi-secret")
            .with_base_url("http://127.0.0.1:9/")
            .with_voice("v1")
            .with_language("en")
            .with_output_format(OutputFormat::Pcm16000);
        let ws = o.multi_stream_url();
        assert!(ws.starts_with(
            "ws://127.0.0.1:9/v1/text-to-speech/v1/multi-stream-input?model_id=eleven_flash_v2_5"
        ));
        for p in [
            "output_format=pcm_16000",
            "auto_mode=false",
            "sync_alignment=true",
            "inactivity_timeout=20",
            "enable_ssml_parsing=false",
            "apply_text_normalization=auto",
            "language_code=en",
        ] {
            assert!(ws.contains(p), "{p} missing from {ws}");
        }
        assert_eq!(
            o.rest_stream_url(),
            "http://127.0.0.1:9/v1/text-to-speech/v1/stream/with-timestamps?output_format=pcm_16000"
        );
        assert!(!ws.contains("xi-secret") && !format!("{o:?}").contains("xi-secret"));
        assert_eq!(
            TtsOptions::default().with_voice("x").multi_stream_url()[..60],
            "wss://api.elevenlabs.io/v1/text-to-speech/x/multi-stream-input?"[..60]
        );
    }

    #[test]
    fn validation_reports_the_bad_setting() {
        let ok = TtsOptions::default().with_api_key("k");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            TtsOptions::default().validate(),
            Err(ConfigError::MissingApiKey)
        );
        let bad_speed = ok
            .clone()
            .with_voice_settings(VoiceSettings::default().with_speed(2.0));
        assert!(matches!(
            bad_speed.validate(),
            Err(ConfigError::OutOfRange { field: "speed", .. })
        ));
        let bad_schedule = ok.clone().with_chunk_length_schedule(vec![10]);
        assert!(matches!(
            bad_schedule.validate(),
            Err(ConfigError::OutOfRange {
                field: "chunk_length_schedule",
                ..
            })
        ));
        let bad_timeout = ok.clone().with_inactivity_timeout(Duration::from_secs(181));
        assert!(bad_timeout.validate().is_err());
        let bad_keepalive = ok.clone().with_keepalive_interval(Duration::from_secs(20));
        assert!(bad_keepalive.validate().is_err());
        assert!(ok.with_base_url("ftp://x").validate().is_err());
    }

    #[test]
    fn formats_map_to_rates() {
        for f in [
            OutputFormat::Pcm8000,
            OutputFormat::Pcm16000,
            OutputFormat::Pcm22050,
            OutputFormat::Pcm24000,
            OutputFormat::Pcm44100,
        ] {
            assert_eq!(OutputFormat::from_sample_rate(f.sample_rate()), Some(f));
            assert_eq!(f.as_str(), format!("pcm_{}", f.sample_rate().hz()));
        }
        assert_eq!(OutputFormat::from_sample_rate(SampleRate::HZ_48000), None);
    }
}
