//! The Realtime emulator's validation, driven by a raw WebSocket client: every bad client event gets an OpenAI-shaped
//! `error` event naming the offending client event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agents_testkit::EmulatorServer;
use agents_testkit::emulators::openai_realtime::{OpenAiRealtimeEmulator, ScriptedResponse};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(server: &EmulatorServer, key: &str) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("{}/v1/realtime?model=gpt-realtime", server.ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {key}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("server event in time")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == ty {
            return v;
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Sends `v` and returns the error event answering it.
async fn rejected(ws: &mut Ws, v: Value) -> Value {
    let id = v["event_id"].clone();
    send(ws, v).await;
    let e = recv_type(ws, "error").await;
    assert_eq!(
        e["error"]["event_id"], id,
        "the error names the client event"
    );
    assert_eq!(e["error"]["type"], "invalid_request_error");
    e["error"].clone()
}

async fn setup() -> (OpenAiRealtimeEmulator, EmulatorServer, Ws) {
    let emu = OpenAiRealtimeEmulator::new().with_api_key("sk-k");
    let server = emu.serve().await.unwrap();
    let mut ws = connect(&server, "sk-k").await.unwrap();
    let created = recv(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["type"], "realtime");
    (emu, server, ws)
}

#[tokio::test]
async fn wrong_key_is_401_at_the_upgrade() {
    let emu = OpenAiRealtimeEmulator::new().with_api_key("sk-k");
    let server = emu.serve().await.unwrap();
    match connect(&server, "sk-other").await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401);
            let body: Value = serde_json::from_slice(resp.body().as_ref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "invalid_api_key");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("upgrade accepted with a wrong key"),
    }
    assert!(!emu.connections()[0].authorized);
}

#[tokio::test]
async fn bad_events_are_answered_with_errors() {
    let (emu, _server, mut ws) = setup().await;
    let e = rejected(
        &mut ws,
        json!({"type": "session.frobnicate", "event_id": "e1"}),
    )
    .await;
    assert_eq!(e["param"], "type");
    let e = rejected(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "event_id": "e2"}),
    )
    .await;
    assert_eq!(e["code"], "missing_required_parameter");
    let e = rejected(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "event_id": "e2"}),
    )
    .await;
    assert_eq!(e["code"], "duplicate_event_id");
    let e = rejected(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "event_id": "e3", "audio": "%%%"}),
    )
    .await;
    assert_eq!(e["param"], "audio");
    // GA session.update requires session.type.
    let e = rejected(
        &mut ws,
        json!({"type": "session.update", "event_id": "e4", "session": {"instructions": "x"}}),
    )
    .await;
    assert_eq!(e["param"], "session.type");
    // Tools must be functions with an object schema and a valid name.
    let e = rejected(
        &mut ws,
        json!({"type": "session.update", "event_id": "e5", "session": {"type": "realtime",
        "tools": [{"type": "function", "name": "bad name", "parameters": {"type": "object"}}]}}),
    )
    .await;
    assert_eq!(e["param"], "session.tools[0].name");
    let e = rejected(
        &mut ws,
        json!({"type": "session.update", "event_id": "e6", "session": {"type": "realtime",
        "tools": [{"type": "function", "name": "ok", "parameters": {"type": "string"}}]}}),
    )
    .await;
    assert_eq!(e["code"], "invalid_function_parameters");
    // Only 24 kHz PCM.
    let e = rejected(
        &mut ws,
        json!({"type": "session.update", "event_id": "e7", "session": {"type": "realtime",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}}),
    )
    .await;
    assert_eq!(e["code"], "invalid_value");
    // Function output for an unknown call.
    let e = rejected(
        &mut ws,
        json!({"type": "conversation.item.create", "event_id": "e8",
        "item": {"type": "function_call_output", "call_id": "call_x", "output": "1"}}),
    )
    .await;
    assert_eq!(e["param"], "item.call_id");
    // Unknown previous item, unknown item to delete or truncate.
    let e = rejected(&mut ws, json!({"type": "conversation.item.create", "event_id": "e9", "previous_item_id": "nope",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
    .await;
    assert_eq!(e["param"], "previous_item_id");
    let e = rejected(
        &mut ws,
        json!({"type": "conversation.item.delete", "event_id": "e10", "item_id": "nope"}),
    )
    .await;
    assert_eq!(e["code"], "item_not_found");
    let e = rejected(
        &mut ws,
        json!({"type": "conversation.item.truncate", "event_id": "e11", "item_id": "nope",
        "content_index": 0, "audio_end_ms": 10}),
    )
    .await;
    assert_eq!(e["code"], "item_not_found");
    // Cancel with nothing active; commit of too little audio.
    let e = rejected(
        &mut ws,
        json!({"type": "response.cancel", "event_id": "e12"}),
    )
    .await;
    assert_eq!(e["code"], "response_cancel_not_active");
    let e = rejected(
        &mut ws,
        json!({"type": "input_audio_buffer.commit", "event_id": "e13"}),
    )
    .await;
    assert_eq!(e["code"], "input_audio_buffer_commit_empty");
    // Not JSON.
    ws.send(Message::text("{nope")).await.unwrap();
    let e = recv_type(&mut ws, "error").await;
    assert_eq!(e["error"]["code"], "invalid_json");
    assert_eq!(
        emu.connections()[0].events.len(),
        14,
        "every parsed event is recorded"
    );
}

#[tokio::test]
async fn truncate_checks_the_audio_sent() {
    let (emu, _server, mut ws) = setup().await;
    emu.push_response(ScriptedResponse::text("abcd efgh"));
    send(
        &mut ws,
        json!({"type": "response.create", "event_id": "r1"}),
    )
    .await;
    let mut item = Value::Null;
    let mut samples = 0usize;
    loop {
        let v = recv(&mut ws).await;
        if v["type"] == "response.output_audio.delta" {
            item = v["item_id"].clone();
            samples += base64::engine::general_purpose::STANDARD
                .decode(v["delta"].as_str().unwrap())
                .unwrap()
                .len()
                / 2;
        }
        if v["type"] == "response.done" {
            assert_eq!(v["response"]["status"], "completed");
            break;
        }
    }
    let sent_ms = samples as u64 * 1000 / 24_000;
    let e = rejected(
        &mut ws,
        json!({"type": "conversation.item.truncate", "event_id": "t1", "item_id": item,
        "content_index": 0, "audio_end_ms": sent_ms + 1}),
    )
    .await;
    assert_eq!(e["param"], "audio_end_ms");
    send(
        &mut ws,
        json!({"type": "conversation.item.truncate", "event_id": "t2", "item_id": item,
        "content_index": 0, "audio_end_ms": sent_ms}),
    )
    .await;
    let t = recv_type(&mut ws, "conversation.item.truncated").await;
    assert_eq!(t["audio_end_ms"], sent_ms);
}

#[tokio::test]
async fn beta_clients_get_beta_event_names() {
    let emu = OpenAiRealtimeEmulator::new();
    let server = emu.serve().await.unwrap();
    let mut req = format!("{}/v1/realtime?model=m", server.ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("OpenAI-Beta", "realtime=v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let created = recv(&mut ws).await;
    assert!(created["session"].get("type").is_none());
    emu.push_response(ScriptedResponse::text("hi"));
    send(&mut ws, json!({"type": "response.create"})).await;
    let mut types = Vec::new();
    loop {
        let v = recv(&mut ws).await;
        let t = v["type"].as_str().unwrap().to_owned();
        let done = t == "response.done";
        types.push(t);
        if done {
            break;
        }
    }
    assert!(types.contains(&"response.audio.delta".to_owned()));
    assert!(types.contains(&"response.audio_transcript.delta".to_owned()));
    assert!(types.contains(&"conversation.item.created".to_owned()));
    assert!(!types.iter().any(|t| t.starts_with("response.output_audio")));
}
