//! `/v1/speak`: the Aura streaming WebSocket and the REST endpoint.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    Endpoint, Fault, RestRecord, Shared, bad_request, parse_bool, send_json, with_request_id,
};
use crate::signal;

const LINEAR16_RATES: &[u32] = &[8_000, 16_000, 24_000, 32_000, 48_000];
const G711_RATES: &[u32] = &[8_000, 16_000];

/// The speak parameters the emulator acts on.
#[derive(Debug, Clone)]
struct SpeakParams {
    model: String,
    rate: u32,
    raw: bool,
}

fn invalid(name: &str, value: &str) -> String {
    format!("Invalid '{name}' value of '{value}'.")
}

fn parse_params(query: &[(String, String)], rest: bool) -> Result<SpeakParams, String> {
    let mut p = SpeakParams {
        model: "aura-asteria-en".to_owned(),
        rate: 24_000,
        raw: !rest,
    };
    let mut encoding = "linear16".to_owned();
    let mut rate = None;
    for (k, v) in query {
        match k.as_str() {
            "model" => {
                if !v.starts_with("aura-") {
                    return Err(invalid(k, v));
                }
                p.model.clone_from(v);
            }
            "encoding" => {
                if !["linear16", "mulaw", "alaw"].contains(&v.as_str()) {
                    return Err(invalid(k, v));
                }
                encoding.clone_from(v);
            }
            "sample_rate" => rate = Some(v.parse::<u32>().map_err(|_| invalid(k, v))?),
            "container" if rest => match v.as_str() {
                "none" => p.raw = true,
                "wav" => p.raw = false,
                _ => return Err(invalid(k, v)),
            },
            "mip_opt_out" => {
                parse_bool(v).ok_or_else(|| invalid(k, v))?;
            }
            other => return Err(format!("Unknown query parameter '{other}'.")),
        }
    }
    if encoding != "linear16" {
        // The emulator only produces linear16; G.711 rates are still validated as the real API does.
        let r = rate.unwrap_or(8_000);
        if !G711_RATES.contains(&r) {
            return Err(invalid("sample_rate", &r.to_string()));
        }
        return Err(format!(
            "The emulator only synthesizes linear16, not '{encoding}'."
        ));
    }
    if let Some(r) = rate {
        if !LINEAR16_RATES.contains(&r) {
            return Err(invalid("sample_rate", &r.to_string()));
        }
        p.rate = r;
    }
    Ok(p)
}

/// The tone for `text`: `per_char` of audio per character, as PCM16 little-endian bytes.
fn synthesize(text: &str, per_char: Duration, rate: u32) -> Vec<u8> {
    let Ok(sr) = agents_audio::SampleRate::new(rate) else {
        return Vec::new();
    };
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    let n = signal::samples_for(per_char.saturating_mul(chars), sr);
    signal::tone_samples(0, n, sr)
        .into_iter()
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// A 16-bit mono WAV file of `pcm` (little-endian bytes) at `rate`, through `agents_audio::write_wav_to`.
fn wav(pcm: &[u8], rate: u32) -> Vec<u8> {
    let frame = agents_audio::SampleRate::new(rate)
        .and_then(|r| agents_audio::AudioFrame::from_le_bytes(pcm, r, 1));
    let mut out = std::io::Cursor::new(Vec::with_capacity(pcm.len() + 44));
    // The emulator only synthesizes whole samples at a validated rate; an empty body says it could not.
    match frame.map(|f| agents_audio::write_wav_to(&mut out, std::slice::from_ref(&f))) {
        Ok(Ok(())) => out.into_inner(),
        _ => Vec::new(),
    }
}

/// `GET /v1/speak` upgrade.
pub(crate) async fn ws_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let request_id = match shared.admit(Endpoint::SpeakWs, &headers) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let params = match parse_params(&query, false) {
        Ok(p) => p,
        Err(msg) => return bad_request(&msg, &request_id),
    };
    let slow = match shared.take_fault(Endpoint::SpeakWs, false) {
        Some(Fault::SlowFirstAudio(d)) => Some(d),
        _ => None,
    };
    let index = shared.add_speak(query);
    let id = request_id.clone();
    let resp = ws.on_upgrade(move |socket| async move {
        run_socket(socket, shared, params, index, request_id, slow).await;
    });
    with_request_id(resp, &id)
}

async fn run_socket(
    mut socket: WebSocket,
    shared: Arc<Shared>,
    params: SpeakParams,
    index: usize,
    request_id: String,
    mut slow: Option<Duration>,
) {
    let cfg = shared.config.clone();
    let metadata = json!({
        "type": "Metadata",
        "request_id": request_id,
        "model_name": params.model,
        "model_version": "2026-01-01.0",
        "model_uuid": "00000000-0000-4000-8000-00000000a0a2",
    });
    if !send_json(&mut socket, &metadata).await {
        return;
    }
    let chunk_bytes =
        usize::try_from(u128::from(params.rate) * cfg.tts_chunk.as_millis() / 1000 * 2)
            .unwrap_or(usize::MAX)
            .max(2);
    let mut buffer = String::new();
    let mut sequence_id: u64 = 0;
    let mut flushes: VecDeque<Instant> = VecDeque::new();
    while let Some(Ok(msg)) = socket.recv().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return,
            _ => continue,
        };
        let v: Value = match serde_json::from_str(text.as_str()) {
            Ok(v) => v,
            Err(_) => {
                let warn = json!({"type": "Warning", "description": "Could not parse the message as JSON.", "code": "INVALID_MESSAGE"});
                if !send_json(&mut socket, &warn).await {
                    return;
                }
                continue;
            }
        };
        let flush_now = match v.get("type").and_then(Value::as_str) {
            Some("Speak") => {
                let t = v.get("text").and_then(Value::as_str).unwrap_or_default();
                buffer.push_str(t);
                shared.with_speak(index, |r| r.texts.push(t.to_owned()));
                false
            }
            Some("Flush") => {
                let now = Instant::now();
                while flushes
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= cfg.flush_window)
                {
                    flushes.pop_front();
                }
                if flushes.len() >= cfg.flush_limit {
                    shared.with_speak(index, |r| r.rejected_flushes += 1);
                    let warn = json!({
                        "type": "Warning",
                        "description": format!("Flush limit exceeded: at most {} Flush messages per {} seconds.", cfg.flush_limit, cfg.flush_window.as_secs()),
                        "code": "FLUSH_LIMIT_EXCEEDED",
                    });
                    if !send_json(&mut socket, &warn).await {
                        return;
                    }
                    false
                } else {
                    flushes.push_back(now);
                    shared.with_speak(index, |r| r.flushes += 1);
                    true
                }
            }
            Some("Clear") => {
                buffer.clear();
                shared.with_speak(index, |r| r.clears += 1);
                let ack = json!({"type": "Cleared", "sequence_id": sequence_id});
                if !send_json(&mut socket, &ack).await {
                    return;
                }
                false
            }
            Some("Close") => {
                shared.with_speak(index, |r| r.closed = true);
                if !buffer.is_empty() {
                    let pcm = synthesize(&buffer, cfg.tts_per_char, params.rate);
                    for c in pcm.chunks(chunk_bytes) {
                        if socket
                            .send(Message::Binary(Bytes::copy_from_slice(c)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    let ack = json!({"type": "Flushed", "sequence_id": sequence_id});
                    let _ = send_json(&mut socket, &ack).await;
                }
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1000,
                        reason: "".into(),
                    })))
                    .await;
                return;
            }
            _ => {
                let warn = json!({"type": "Warning", "description": "Unknown message type.", "code": "INVALID_MESSAGE"});
                if !send_json(&mut socket, &warn).await {
                    return;
                }
                false
            }
        };
        if flush_now {
            if let Some(d) = slow.take() {
                tokio::time::sleep(d).await;
            }
            let pcm = synthesize(&buffer, cfg.tts_per_char, params.rate);
            buffer.clear();
            for c in pcm.chunks(chunk_bytes) {
                if socket
                    .send(Message::Binary(Bytes::copy_from_slice(c)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let ack = json!({"type": "Flushed", "sequence_id": sequence_id});
            sequence_id += 1;
            if !send_json(&mut socket, &ack).await {
                return;
            }
        }
    }
}

/// `POST /v1/speak`: body `{"text"}`; raw PCM with `container=none`, WAV otherwise.
pub(crate) async fn rest_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = match shared.admit(Endpoint::SpeakRest, &headers) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let params = match parse_params(&query, true) {
        Ok(p) => p,
        Err(msg) => return bad_request(&msg, &request_id),
    };
    shared.add_rest(RestRecord {
        path: "/v1/speak",
        query: query.clone(),
        content_type: headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body_len: body.len(),
    });
    let text = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_owned));
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return bad_request(
            "The request body must be JSON with a non-empty 'text'.",
            &request_id,
        );
    };
    if let Some(Fault::SlowFirstAudio(d)) = shared.take_fault(Endpoint::SpeakRest, false) {
        tokio::time::sleep(d).await;
    }
    let pcm = synthesize(&text, shared.config.tts_per_char, params.rate);
    let (content_type, audio) = if params.raw {
        ("audio/l16", pcm)
    } else {
        ("audio/wav", wav(&pcm, params.rate))
    };
    let resp = ([(axum::http::header::CONTENT_TYPE, content_type)], audio).into_response();
    with_request_id(resp, &request_id)
}
