//! Client options shared by every Deepgram capability: the key and the base URL.

use agents_core::ApiKey;

/// The public Deepgram API.
pub const DEFAULT_BASE_URL: &str = "https://api.deepgram.com";

/// The environment variable holding the key.
pub const API_KEY_ENV: &str = "DEEPGRAM_API_KEY";

/// The environment variable that overrides the base URL (e.g. an emulator, a proxy, a self-hosted deployment).
pub const BASE_URL_ENV: &str = "DEEPGRAM_BASE_URL";

/// Why options could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required environment variable is unset or blank.
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    /// The base URL is not an `http(s)://` URL.
    #[error("invalid base URL {url:?}: expected http:// or https://")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
    },
    /// An option has a value the provider refuses.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Options of a Deepgram client: credentials and where the API is.
///
/// `Debug` is safe to log: the key prints as `ApiKey(****)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Sent as `Authorization: Token <key>`.
    pub api_key: ApiKey,
    /// Base URL without a trailing slash, e.g. `https://api.deepgram.com`. WebSocket URLs are derived from it
    /// (`https` -> `wss`, `http` -> `ws`).
    pub base_url: String,
}

impl ClientOptions {
    /// Options with `api_key` and the public API.
    pub fn new(api_key: impl Into<ApiKey>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
        }
    }

    /// Options from `DEEPGRAM_API_KEY` (required) and `DEEPGRAM_BASE_URL` (optional).
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when the key is unset; [`ConfigError::InvalidBaseUrl`] for a bad URL.
    pub fn from_env() -> Result<Self, ConfigError> {
        let key = ApiKey::from_env(API_KEY_ENV).ok_or(ConfigError::MissingEnv(API_KEY_ENV))?;
        let o = Self::new(key);
        match std::env::var(BASE_URL_ENV)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            Some(url) => o.with_base_url(url),
            None => Ok(o),
        }
    }

    /// Sets the base URL (a trailing slash is removed).
    ///
    /// # Errors
    /// [`ConfigError::InvalidBaseUrl`] unless it starts with `http://` or `https://`.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Result<Self, ConfigError> {
        let url = url.into();
        let trimmed = url.trim().trim_end_matches('/');
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://"))
            || url::Url::parse(trimmed).is_err()
        {
            return Err(ConfigError::InvalidBaseUrl { url });
        }
        self.base_url = trimmed.to_owned();
        Ok(self)
    }

    /// `{base_url}{path}` for an HTTP endpoint (`path` such as `/v1/listen`).
    pub(crate) fn http_url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The WebSocket URL of `path`: the base URL with `https` -> `wss` and `http` -> `ws`.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        let base = if let Some(rest) = self.base_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base_url.clone()
        };
        format!("{base}{path}")
    }

    /// The `Authorization` header value.
    pub(crate) fn authorization(&self) -> String {
        format!("Token {}", self.api_key.expose())
    }
}

/// `base?k=v&...` with the values percent-encoded.
pub(crate) fn with_query(base: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return base.to_owned();
    }
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish();
    format!("{base}?{q}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_base() {
        let o = ClientOptions::new("k")
            .with_base_url("http://127.0.0.1:9/")
            .unwrap();
        assert_eq!(o.http_url("/v1/listen"), "http://127.0.0.1:9/v1/listen");
        assert_eq!(o.ws_url("/v1/listen"), "ws://127.0.0.1:9/v1/listen");
        let o = ClientOptions::new("k");
        assert_eq!(o.ws_url("/v1/speak"), "wss://api.deepgram.com/v1/speak");
        assert!(matches!(
            ClientOptions::new("k").with_base_url("ftp://x"),
            Err(ConfigError::InvalidBaseUrl { .. })
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let o = ClientOptions::new("secret-key-123");
        assert!(!format!("{o:?}").contains("secret-key-123"));
        assert_eq!(o.authorization(), "Token secret-key-123");
    }

    #[test]
    fn query_is_encoded() {
        let q = vec![("keyterm".to_owned(), "a b&c".to_owned())];
        assert_eq!(
            with_query("ws://h/v1/listen", &q),
            "ws://h/v1/listen?keyterm=a+b%26c"
        );
    }
}
