//! What every endpoint shares: recording, auth, OpenAI error bodies, faults and streamed bodies.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Fault, OpenAiEmulator, RecordedBody, RecordedRequest};

/// A request as a handler sees it after recording.
pub(super) struct Incoming {
    pub(super) request_id: String,
    /// Served under `/openai/deployments/...` (Azure).
    pub(super) azure: bool,
}

/// Records the request; checks the Azure `api-version` and the key. `Err` is the response to send.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
pub(super) fn admit(
    emu: &OpenAiEmulator,
    uri: &Uri,
    headers: &HeaderMap,
    body: RecordedBody,
) -> Result<Incoming, Response> {
    let request_id = emu.record(RecordedRequest {
        request_id: String::new(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    });
    let azure = uri.path().starts_with("/openai/deployments/");
    if azure {
        let has_version = uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=")));
        if !has_version {
            // Azure answers a request without api-version with a 404 "Resource not found".
            let body = json!({"error": {"code": "404", "message": "Resource not found"}});
            return Err(with_request_id(
                (StatusCode::NOT_FOUND, axum::Json(body)).into_response(),
                &request_id,
            ));
        }
    }
    if let Some(expected) = emu.api_key() {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned());
        let api_key = headers
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned());
        let given = bearer.or(api_key);
        match given {
            None => {
                return Err(error(
                    &request_id,
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header \
                     using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    None,
                    None,
                ));
            }
            Some(key) if key != expected => {
                return Err(error(
                    &request_id,
                    401,
                    &format!(
                        "Incorrect API key provided: {}. You can find your API key at \
                         https://platform.openai.com/account/api-keys.",
                        mask(&key)
                    ),
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(Incoming { request_id, azure })
}

/// OpenAI masks a wrong key to its first and last four characters.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// An OpenAI error response: `{"error": {"message", "type", "param", "code"}}` with `x-request-id`.
pub(super) fn error(
    request_id: &str,
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    with_request_id((status, axum::Json(body)).into_response(), request_id)
}

/// A 400 `invalid_request_error`.
pub(super) fn invalid(request_id: &str, message: &str, param: Option<&str>) -> Response {
    error(
        request_id,
        400,
        message,
        "invalid_request_error",
        param,
        None,
    )
}

/// The response for a status fault, with the body OpenAI sends for that status.
pub(super) fn status_fault(request_id: &str, status: u16, retry_after: Option<&str>) -> Response {
    let (message, kind, code) = match status {
        400 => (
            "The request was invalid (scripted).",
            "invalid_request_error",
            None,
        ),
        401 => (
            "Incorrect API key provided: sk-****. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        403 => (
            "You are not allowed to access this model.",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        429 => (
            "Rate limit reached for requests. Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        _ => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
    };
    let mut response = error(request_id, status, message, kind, None, code);
    if let Some(after) = retry_after
        && let Ok(v) = HeaderValue::from_str(after)
    {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

/// Applies the part of a fault that happens before the response: a status answers at once, a slow first byte
/// waits. Returns the response to send for a status fault.
pub(super) async fn before_response(request_id: &str, fault: Option<&Fault>) -> Option<Response> {
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => Some(status_fault(request_id, *status, retry_after.as_deref())),
        Some(Fault::SlowFirstByte(d)) => {
            tokio::time::sleep(*d).await;
            None
        }
        _ => None,
    }
}

/// One piece of a streamed body.
pub(super) enum Piece {
    /// Bytes to send after `delay`.
    Data(Duration, Bytes),
    /// Drop the connection: the body ends with an error, so the client never sees a clean end.
    Drop,
}

/// A streamed response whose body is sent piece by piece by a task.
pub(super) fn streamed(
    request_id: &str,
    content_type: &'static str,
    pieces: Vec<Piece>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for piece in pieces {
            match piece {
                Piece::Data(delay, bytes) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if tx.send(Ok(bytes)).await.is_err() {
                        return;
                    }
                }
                Piece::Drop => {
                    // Let the bytes already sent reach the client first, as when a connection breaks mid-way.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "emulator dropped the connection",
                        )))
                        .await;
                    return;
                }
            }
        }
    });
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    with_request_id(response, request_id)
}

/// A whole JSON response with `x-request-id`.
pub(super) fn json_response(request_id: &str, body: serde_json::Value) -> Response {
    with_request_id(axum::Json(body).into_response(), request_id)
}

/// A whole plain-text response with `x-request-id`.
pub(super) fn text_response(request_id: &str, body: String) -> Response {
    with_request_id(body.into_response(), request_id)
}
