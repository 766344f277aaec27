//! Connections: the WebSocket upgrade and HTTP error mapping into [`ApiError`].

use std::time::{Duration, SystemTime};

use agents_core::ApiError;
use agents_core::retry::parse_retry_after;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, header};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::options::ClientOptions;

/// A connected provider socket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The header carrying Deepgram's request id.
pub(crate) const REQUEST_ID_HEADER: &str = "dg-request-id";

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_str(headers, "retry-after").and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// The error for an HTTP error status (REST answer or refused upgrade): body, `dg-request-id`, `Retry-After`.
///
/// Deepgram also puts the message in a `dg-error` header; it is used when the body has none.
pub(crate) fn status_error(status: u16, headers: &HeaderMap, body: &[u8]) -> ApiError {
    let body_or_header: Vec<u8> = if body.is_empty() {
        header_str(headers, "dg-error")
            .map(|m| serde_json::json!({ "err_msg": m }).to_string().into_bytes())
            .unwrap_or_default()
    } else {
        body.to_vec()
    };
    ApiError::from_http_response(
        status,
        &body_or_header,
        header_str(headers, REQUEST_ID_HEADER),
        retry_after(headers),
    )
}

/// Opens `url` with the `Authorization` header, bounded by `timeout`. Returns the socket and the request id.
///
/// # Errors
/// A status error for a refused upgrade (401 is not retryable), a timeout, or a connection error.
pub(crate) async fn connect(
    client: &ClientOptions,
    url: &str,
    timeout: Duration,
) -> Result<(Socket, Option<String>), ApiError> {
    let mut request = url.into_client_request().map_err(|e| {
        ApiError::connection(format!("invalid Deepgram URL: {e}")).with_retryable(false)
    })?;
    let auth = HeaderValue::from_str(&client.authorization()).map_err(|_| {
        ApiError::new("the Deepgram API key contains characters not allowed in a header")
            .with_retryable(false)
    })?;
    request.headers_mut().insert(header::AUTHORIZATION, auth);
    let connecting = tokio_tungstenite::connect_async(request);
    let result = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_elapsed| ApiError::timeout("timed out connecting to Deepgram"))?;
    match result {
        Ok((socket, response)) => {
            let id = header_str(response.headers(), REQUEST_ID_HEADER).map(str::to_owned);
            Ok((socket, id))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(status_error(
                response.status().as_u16(),
                response.headers(),
                body,
            ))
        }
        Err(e) => Err(ApiError::connection(format!(
            "could not connect to Deepgram: {e}"
        ))),
    }
}

/// Maps a `reqwest` failure (no status) to a connection or timeout error. The URL never holds the key.
pub(crate) fn reqwest_error(e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::timeout_default()
    } else {
        ApiError::connection(format!("Deepgram request failed: {e}"))
    }
}
