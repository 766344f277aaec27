//! Hello negotiation (good, bad, timeout) and authentication.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use agents_core::ApiKey;
use agents_transport::client::{ClientError, ClientEvent, WsClient};
use agents_transport::protocol::{AudioFormat, Hello, ServerMessage, close_code, error_code};
use agents_transport::server::Limits;
use common::{TestServer, hello_16k, ms};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_hello_gets_ready_with_the_negotiated_formats() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let hello = Hello::new(AudioFormat::new(48000, 2)).with_output(AudioFormat::new(16000, 1));
    let mut client = WsClient::connect(&t.url(), hello).await.unwrap();
    let ready = client.ready().clone();
    assert_eq!(ready.protocol, 1);
    assert_eq!(ready.input, AudioFormat::new(48000, 2));
    assert_eq!(ready.output, AudioFormat::new(16000, 1));
    assert_eq!(ready.frame_ms, 20);
    assert!(ready.session_id.starts_with("ws_"));
    assert_eq!(t.server.stats().sessions, 1);
    client.close().await.unwrap();
    t.wait_idle(ms(5000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_format_defaults_to_24k_mono() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let mut ws = WsClient::open(&t.url(), None, ms(2000)).await.unwrap();
    ws.send(Message::text(
        r#"{"type":"hello","protocol":1,"input":{"sample_rate":16000,"channels":1},"unknown_key":[1]}"#,
    ))
    .await
    .unwrap();
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("no ready")
    };
    let ready: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
    let ServerMessage::Ready(ready) = ready else {
        panic!("{ready:?}")
    };
    assert_eq!(ready.output, AudioFormat::new(24000, 1));
    drop(ws);
    t.wait_idle(ms(5000)).await;
    t.stop().await;
}

async fn expect_fatal_hello_error(t: &TestServer, first: Option<Message>) -> (String, Option<u16>) {
    let mut ws = WsClient::open(&t.url(), None, ms(2000)).await.unwrap();
    if let Some(m) = first {
        ws.send(m).await.unwrap();
    }
    let mut error = None;
    let mut code = None;
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Text(text) => {
                if let Ok(ServerMessage::Error {
                    code,
                    message,
                    fatal,
                }) = serde_json::from_str(text.as_str())
                {
                    assert_eq!(code, error_code::BAD_HELLO);
                    assert!(fatal);
                    error = Some(message);
                }
            }
            Message::Close(frame) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    (error.expect("no bad_hello error"), code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hellos_get_a_fatal_error_and_close_1008() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let cases = [
        (
            Message::text(
                r#"{"type":"hello","protocol":1,"input":{"sample_rate":11025,"channels":1}}"#,
            ),
            "11025",
        ),
        (
            Message::text(
                r#"{"type":"hello","protocol":1,"input":{"sample_rate":16000,"channels":3}}"#,
            ),
            "channels",
        ),
        (
            Message::text(
                r#"{"type":"hello","protocol":9,"input":{"sample_rate":16000,"channels":1}}"#,
            ),
            "protocol 9",
        ),
        (Message::text(r#"{"type":"ping","id":1}"#), "first message"),
        (Message::text("not json"), "JSON"),
        (Message::binary(vec![0_u8; 640]), "audio"),
        (
            Message::text(format!(
                r#"{{"type":"hello","protocol":1,"input":{{"sample_rate":16000,"channels":1}},"metadata":"{}"}}"#,
                "x".repeat(70_000)
            )),
            "exceeds the limit",
        ),
    ];
    for (first, needle) in cases {
        let (message, code) = expect_fatal_hello_error(&t, Some(first)).await;
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
        assert_eq!(code, Some(close_code::POLICY));
    }
    t.wait_idle(ms(5000)).await;
    assert_eq!(t.server.stats().sessions, 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hello_in_time_closes_with_1008() {
    let t = TestServer::start(Limits::default().hello_timeout(ms(300)), None, false).await;
    let (message, code) = expect_fatal_hello_error(&t, None).await;
    assert!(message.contains("no hello"), "{message}");
    assert_eq!(code, Some(close_code::POLICY));
    t.wait_idle(ms(5000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_factory_gets_session_failed_and_close_1011() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let err = WsClient::connect(&t.url(), hello_16k().with_agent("broken"))
        .await
        .unwrap_err();
    match err {
        ClientError::HelloRefused { code, message } => {
            assert_eq!(code, error_code::SESSION_FAILED);
            assert!(message.contains("no such agent"));
        }
        other => panic!("{other:?}"),
    }
    t.wait_idle(ms(5000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_upgrade_needs_it_in_the_header_or_the_query() {
    let t = TestServer::start(Limits::default(), Some("let-me-in"), false).await;
    // Missing and wrong: HTTP 401 before the upgrade.
    let e = WsClient::connect(&t.url(), hello_16k()).await.unwrap_err();
    assert!(matches!(e, ClientError::Rejected { status: 401 }), "{e:?}");
    let wrong = ApiKey::new("let-me-out");
    let e = WsClient::connect_with(&t.url(), hello_16k(), Some(&wrong), ms(2000))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Rejected { status: 401 }), "{e:?}");
    assert!(!format!("{e}").contains("let-me"));
    // Right, as a header.
    let right = ApiKey::new("let-me-in");
    let mut c = WsClient::connect_with(&t.url(), hello_16k(), Some(&right), ms(2000))
        .await
        .unwrap();
    c.close().await.unwrap();
    // Right, as the query (browsers).
    let url = format!("{}?access_token=let-me-in", t.url());
    let mut c = WsClient::connect(&url, hello_16k()).await.unwrap();
    c.close().await.unwrap();
    t.wait_idle(ms(5000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_anyone_connects_and_bye_closes_normally() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let mut c = t.connect().await;
    c.send(&agents_transport::protocol::ClientMessage::Bye)
        .await
        .unwrap();
    let events = common::collect_until(&mut c, ms(5000), |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    let Some(ClientEvent::Closed { code, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(*code, Some(close_code::NORMAL));
    assert!(
        common::messages(&events)
            .iter()
            .any(|m| matches!(m, ServerMessage::Close { .. }))
    );
    t.wait_idle(ms(5000)).await;
    t.stop().await;
}
