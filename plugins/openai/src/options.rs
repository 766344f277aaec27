//! Client options shared by every OpenAI capability: credentials, base URL, headers and the connection policy.

use std::time::Duration;

use agents_core::{ApiConnectOptions, ApiKey};

use crate::error::ConfigError;

/// The public OpenAI API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Options of an OpenAI (or OpenAI-compatible) client.
///
/// `Debug` is safe to log: the key prints as `ApiKey(****)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The bearer key; `None` for compatible servers that need none (Ollama, a local vLLM).
    pub api_key: Option<ApiKey>,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`.
    pub base_url: String,
    /// Sent as `OpenAI-Organization` when set.
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project` when set.
    pub project: Option<String>,
    /// Extra headers sent with every request (e.g. `HTTP-Referer` for OpenRouter). They are printed by `Debug`:
    /// a secret belongs in `api_key`, sent under the header [`ClientOptions::key_header`] names.
    pub extra_headers: Vec<(String, String)>,
    /// Retries and per-attempt timeout.
    pub conn: ApiConnectOptions,
    /// How the key is sent: `Authorization: Bearer` (default) or Azure's `api-key` header.
    pub key_header: KeyHeader,
    /// Query parameters added to every request URL (e.g. Azure's `api-version`).
    pub extra_query: Vec<(String, String)>,
}

/// How [`ClientOptions::headers`] sends the key.
///
/// Put every secret in [`ClientOptions::api_key`] and choose its header here: unlike
/// [`ClientOptions::extra_headers`], the key is redacted from `Debug` output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>` (OpenAI and most compatible servers; Azure with an Entra ID token).
    #[default]
    Bearer,
    /// `api-key: <key>` (Azure OpenAI resource keys).
    ApiKey,
    /// The key, as is, as the value of this header (a gateway's `x-api-key`, `Ocp-Apim-Subscription-Key`...).
    Custom(String),
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            organization: None,
            project: None,
            extra_headers: Vec::new(),
            conn: ApiConnectOptions::default(),
            key_header: KeyHeader::Bearer,
            extra_query: Vec::new(),
        }
    }
}

impl ClientOptions {
    /// Options from the environment: `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`
    /// (the variables of the official SDKs). Unset variables keep the defaults.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut o = Self {
            api_key: ApiKey::from_env("OPENAI_API_KEY"),
            organization: var("OPENAI_ORG_ID"),
            project: var("OPENAI_PROJECT_ID"),
            ..Self::default()
        };
        if let Some(url) = var("OPENAI_BASE_URL") {
            o = o.with_base_url(url);
        }
        o
    }

    /// Options for an Azure OpenAI deployment: base URL `{endpoint}/openai/deployments/{deployment}`, the key in
    /// the `api-key` header and `api-version` in the query of every request.
    ///
    /// `endpoint` is the resource URL, e.g. `https://my-resource.openai.azure.com`. For Entra ID tokens use
    /// `.with_api_key(token).with_key_header(KeyHeader::Bearer)`.
    pub fn azure(
        endpoint: impl Into<String>,
        deployment: &str,
        api_version: impl Into<String>,
        api_key: impl Into<ApiKey>,
    ) -> Self {
        let endpoint = endpoint.into();
        Self {
            api_key: Some(api_key.into()),
            key_header: KeyHeader::ApiKey,
            extra_query: vec![("api-version".to_owned(), api_version.into())],
            ..Self::default()
        }
        .with_base_url(format!(
            "{}/openai/deployments/{deployment}",
            endpoint.trim_end_matches('/')
        ))
    }

    /// [`ClientOptions::azure`] from the variables of the official SDK: `AZURE_OPENAI_ENDPOINT`,
    /// `AZURE_OPENAI_API_KEY` and `OPENAI_API_VERSION`.
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] naming the first variable missing.
    pub fn azure_from_env(deployment: &str) -> Result<Self, ConfigError> {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::MissingEnv { var: name })
        };
        let endpoint = var("AZURE_OPENAI_ENDPOINT")?;
        let key = ApiKey::from_env("AZURE_OPENAI_API_KEY").ok_or(ConfigError::MissingEnv {
            var: "AZURE_OPENAI_API_KEY",
        })?;
        let version = var("OPENAI_API_VERSION")?;
        Ok(Self::azure(endpoint, deployment, version, key))
    }

    /// Sets how the key is sent.
    #[must_use]
    pub fn with_key_header(mut self, key_header: KeyHeader) -> Self {
        self.key_header = key_header;
        self
    }

    /// Adds a query parameter sent with every request.
    #[must_use]
    pub fn with_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_query.push((name.into(), value.into()));
        self
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
        let url = url.into();
        self.base_url = url.trim_end_matches('/').to_owned();
        self
    }

    /// Sets the organization header.
    #[must_use]
    pub fn with_organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }

    /// Sets the project header.
    #[must_use]
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Adds a header sent with every request.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    /// Sets the connection policy (retries, per-attempt timeout).
    #[must_use]
    pub fn with_conn_options(mut self, conn: ApiConnectOptions) -> Self {
        self.conn = conn;
        self
    }

    /// Sets the per-attempt timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.conn = self.conn.with_timeout(timeout);
        self
    }

    /// `{base_url}/{path}` for an HTTP endpoint (`path` without a leading slash, e.g. `chat/completions`).
    pub fn http_url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// The WebSocket URL for an endpoint: the base URL with `https` -> `wss` and `http` -> `ws`.
    pub fn ws_url(&self, path: &str) -> String {
        let url = self.http_url(path);
        if let Some(rest) = url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            url
        }
    }

    /// Every header a request carries: `Authorization: Bearer <key>` when a key is set, organization, project and the
    /// extra headers. The key is exposed here only, straight into the header list.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(3 + self.extra_headers.len());
        if let Some(key) = &self.api_key {
            match &self.key_header {
                KeyHeader::Bearer => h.push((
                    "Authorization".to_owned(),
                    format!("Bearer {}", key.expose()),
                )),
                KeyHeader::ApiKey => h.push(("api-key".to_owned(), key.expose().to_owned())),
                KeyHeader::Custom(name) => h.push((name.clone(), key.expose().to_owned())),
            }
        }
        if let Some(org) = &self.organization {
            h.push(("OpenAI-Organization".to_owned(), org.clone()));
        }
        if let Some(project) = &self.project {
            h.push(("OpenAI-Project".to_owned(), project.clone()));
        }
        h.extend(self.extra_headers.iter().cloned());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers() {
        let o = ClientOptions::default()
            .with_api_key("sk-test")
            .with_base_url("http://127.0.0.1:9/v1/")
            .with_organization("org-1")
            .with_project("proj-1");
        assert_eq!(
            o.http_url("chat/completions"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(o.ws_url("/realtime"), "ws://127.0.0.1:9/v1/realtime");
        let h = o.headers();
        assert_eq!(
            h[0],
            ("Authorization".to_owned(), "Bearer sk-test".to_owned())
        );
        assert_eq!(h[1].0, "OpenAI-Organization");
        assert_eq!(h[2].0, "OpenAI-Project");
        assert!(!format!("{o:?}").contains("sk-test"));
        assert_eq!(
            ClientOptions::default().ws_url("realtime"),
            "wss://api.openai.com/v1/realtime"
        );
    }

    #[test]
    fn azure_options() {
        let o = ClientOptions::azure(
            "https://res.openai.azure.com/",
            "gpt4o",
            "2024-10-21",
            "az-key",
        );
        assert_eq!(
            o.http_url("chat/completions"),
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions"
        );
        assert_eq!(o.headers()[0], ("api-key".to_owned(), "az-key".to_owned()));
        assert_eq!(
            o.extra_query,
            vec![("api-version".to_owned(), "2024-10-21".to_owned())]
        );
        assert!(!format!("{o:?}").contains("az-key"));
    }
}
