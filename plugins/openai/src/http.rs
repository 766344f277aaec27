//! The HTTP side shared by every capability: one pooled `reqwest` client per plugin instance, the headers and
//! query of [`ClientOptions`], per-attempt timeouts and the mapping of failures to [`ApiError`].

use std::time::{Duration, SystemTime};

use agents_core::{ApiConnectOptions, ApiError, parse_retry_after};
use bytes::Bytes;
use futures::Stream;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ConfigError;
use crate::options::{ClientOptions, KeyHeader};

/// A pooled client bound to one set of [`ClientOptions`].
#[derive(Debug)]
pub(crate) struct Transport {
    client: reqwest::Client,
    options: ClientOptions,
}

impl Transport {
    /// Builds the client; validates the base URL and the headers.
    pub(crate) fn new(options: ClientOptions) -> Result<Self, ConfigError> {
        let url = url::Url::parse(&options.base_url).map_err(|e| ConfigError::InvalidBaseUrl {
            url: options.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::InvalidBaseUrl {
                url: options.base_url.clone(),
                reason: "the scheme must be http or https".to_owned(),
            });
        }
        let mut headers = HeaderMap::new();
        for (name, value) in options.headers() {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::InvalidHeader { name: name.clone() })?;
            let mut header_value = HeaderValue::from_str(&value)
                .map_err(|_| ConfigError::InvalidHeader { name: name.clone() })?;
            let is_key = match &options.key_header {
                KeyHeader::Bearer => name.eq_ignore_ascii_case("authorization"),
                KeyHeader::ApiKey => name.eq_ignore_ascii_case("api-key"),
                KeyHeader::Custom(h) => name.eq_ignore_ascii_case(h),
            };
            if is_key || name.eq_ignore_ascii_case("authorization") {
                header_value.set_sensitive(true);
            }
            headers.append(header_name, header_value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("agents-openai/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::Client)?;
        Ok(Self { client, options })
    }

    /// The connection policy of a call: the call's own when it differs from the default, else the plugin's.
    pub(crate) fn conn_for(&self, requested: &ApiConnectOptions) -> ApiConnectOptions {
        if *requested == ApiConnectOptions::default() {
            self.options.conn
        } else {
            *requested
        }
    }

    /// A POST to `{base_url}/{path}` with the extra query.
    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.client.post(self.options.http_url(path));
        if !self.options.extra_query.is_empty() {
            rb = rb.query(&self.options.extra_query);
        }
        rb
    }

    /// A POST of a JSON body (serialized once by the caller, cheap to clone per attempt).
    pub(crate) fn post_json(&self, path: &str, body: &Bytes) -> reqwest::RequestBuilder {
        self.post(path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
    }

    /// Sends one attempt. `timeout` bounds the connection and the response head (for a stream: its first byte),
    /// never the body. A non-2xx status is read (within the same timeout) and mapped through
    /// [`ApiError::from_http_response`].
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, ApiError> {
        let attempt = async {
            let response = request.send().await.map_err(map_reqwest)?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let request_id = request_id(&response);
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let body = response.bytes().await.unwrap_or_default();
            Err(ApiError::from_http_response(
                status.as_u16(),
                &body,
                request_id.as_deref(),
                retry_after,
            ))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::timeout_default()),
        }
    }
}

/// The provider's request id (`x-request-id`).
pub(crate) fn request_id(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A transport failure as an API error; the URL is stripped from the source (it may carry a signed query).
pub(crate) fn map_reqwest(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::timeout_default().with_source(e.without_url())
    } else if e.is_decode() || e.is_body() {
        ApiError::connection("the connection was lost mid-response").with_source(e.without_url())
    } else {
        ApiError::connection_default().with_source(e.without_url())
    }
}

/// The body of a response as a stream of byte chunks, failures mapped to retryable connection errors.
pub(crate) fn body_stream(
    response: reqwest::Response,
) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static {
    response.bytes_stream().map(|r| {
        r.map_err(|e| {
            ApiError::connection("the connection was lost mid-stream").with_source(e.without_url())
        })
    })
}
