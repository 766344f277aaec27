//! Bad input gets an error event and the session lives; sustained abuse closes with 1008.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use agents_transport::client::ClientEvent;
use agents_transport::protocol::{
    ClientMessage, ServerMessage, SpeechEventKind, close_code, error_code,
};
use agents_transport::server::Limits;
use common::{TestServer, collect_until, is_error, is_pong, ms};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_bad_audio_and_oversized_messages_get_errors_and_the_session_still_answers()
 {
    let t = TestServer::start(
        Limits::default()
            .max_text_bytes(1024)
            .max_binary_bytes(4096),
        None,
        false,
    )
    .await;
    let mut c = t.connect().await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{this is not json"), error_code::BAD_JSON),
        (Message::text(r#"{"no_type":1}"#), error_code::BAD_JSON),
        (Message::text(r#"{"type":"text"}"#), error_code::BAD_JSON),
        (
            Message::text(r#"{"type":"teleport","to":"mars"}"#),
            error_code::UNKNOWN_TYPE,
        ),
        (
            Message::text(r#"{"type":"dtmf","digit":"55"}"#),
            error_code::BAD_JSON,
        ),
        (Message::binary(vec![1_u8; 641]), error_code::BAD_AUDIO),
        (
            Message::binary(vec![0_u8; 4098]),
            error_code::MESSAGE_TOO_LARGE,
        ),
        (
            Message::text(format!(
                r#"{{"type":"text","text":"{}"}}"#,
                "a".repeat(2000)
            )),
            error_code::MESSAGE_TOO_LARGE,
        ),
        (
            Message::text(
                r#"{"type":"hello","protocol":1,"input":{"sample_rate":16000,"channels":1}}"#,
            ),
            error_code::BAD_HELLO,
        ),
    ];
    for (i, (message, code)) in cases.into_iter().enumerate() {
        c.send_raw(message).await.unwrap();
        let got = collect_until(&mut c, ms(5000), |e| {
            matches!(e, ClientEvent::Message(ServerMessage::Error { .. }))
        })
        .await;
        let last = got.last().unwrap();
        assert!(
            is_error(last, code),
            "case {i}: expected {code}, got {last:?}"
        );
        let ClientEvent::Message(ServerMessage::Error { fatal, .. }) = last else {
            unreachable!()
        };
        assert!(!fatal, "case {i}");
        // Still alive: answers a ping.
        c.send(&ClientMessage::Ping {
            id: serde_json::json!(i),
        })
        .await
        .unwrap();
        collect_until(&mut c, ms(5000), |e| is_pong(e, i64::try_from(i).unwrap())).await;
    }
    // And still converses.
    c.send_text("are you still there?").await.unwrap();
    let got = collect_until(&mut c, ms(10_000), |e| {
        matches!(
            e,
            ClientEvent::Message(ServerMessage::Speech {
                event: SpeechEventKind::Done,
                ..
            })
        )
    })
    .await;
    assert!(got.iter().any(|e| matches!(e, ClientEvent::Audio(_))));
    assert_eq!(t.server.stats().sessions, 1);
    c.close().await.unwrap();
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_then_sustained_abuse_closes_with_1008() {
    let limits = Limits::default()
        .messages_per_second(50)
        .message_burst(20)
        .max_errors(5);
    let t = TestServer::start(limits, None, false).await;
    let mut c = t.connect().await;
    // 30 pings at once: the burst (20) goes through, the rest is dropped with one rate_limited notice.
    for i in 0..30 {
        c.send(&ClientMessage::Ping {
            id: serde_json::json!(i),
        })
        .await
        .unwrap();
    }
    let got = collect_until(&mut c, ms(5000), |e| is_error(e, error_code::RATE_LIMITED)).await;
    let pongs = got
        .iter()
        .filter(|e| matches!(e, ClientEvent::Message(ServerMessage::Pong { .. })))
        .count();
    assert!(pongs <= 21, "{pongs} pongs");
    // After the bucket refills, the session answers again.
    tokio::time::sleep(ms(500)).await;
    c.send(&ClientMessage::Ping {
        id: serde_json::json!(1000),
    })
    .await
    .unwrap();
    collect_until(&mut c, ms(5000), |e| is_pong(e, 1000)).await;
    // Garbage, over and over: more than 5 errors within the window closes the connection.
    for _ in 0..10 {
        if c.send_raw(Message::text("garbage")).await.is_err() {
            break;
        }
    }
    let got = collect_until(&mut c, ms(5000), |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    assert!(got.iter().any(|e| is_error(e, error_code::ABUSE)));
    let Some(ClientEvent::Closed { code, .. }) = got.last() else {
        unreachable!()
    };
    assert_eq!(*code, Some(close_code::POLICY));
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let t = TestServer::start(
        Limits::default()
            .idle_timeout(ms(400))
            .ping_interval(ms(10_000)),
        None,
        false,
    )
    .await;
    let mut c = t.connect().await;
    let got = collect_until(&mut c, ms(5000), |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    let Some(ClientEvent::Closed { code, reason }) = got.last() else {
        unreachable!()
    };
    assert_eq!(*code, Some(close_code::POLICY));
    assert_eq!(reason, "idle_timeout");
    assert!(common::messages(&got).iter().any(
        |m| matches!(m, ServerMessage::Close { reason } if reason == "participant_disconnected")
    ));
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_closes_every_session_with_1001() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let mut a = t.connect().await;
    let mut b = t.connect().await;
    assert_eq!(t.server.stats().sessions, 2);
    t.server.shutdown();
    for c in [&mut a, &mut b] {
        let got = collect_until(c, ms(10_000), |e| matches!(e, ClientEvent::Closed { .. })).await;
        let Some(ClientEvent::Closed { code, .. }) = got.last() else {
            unreachable!()
        };
        assert_eq!(*code, Some(close_code::GOING_AWAY));
        assert!(
            common::messages(&got)
                .iter()
                .any(|m| matches!(m, ServerMessage::Close { reason } if reason == "shutdown")),
            "{:#?}",
            common::summary(&got)
        );
    }
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_shutdown_future_closes_open_sessions_and_serve_returns() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let mut c = t.connect().await;
    let server = t.server.clone();
    let stopping = tokio::spawn(t.stop());
    let got = collect_until(&mut c, ms(10_000), |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    let Some(ClientEvent::Closed { code, .. }) = got.last() else {
        unreachable!()
    };
    assert_eq!(*code, Some(close_code::GOING_AWAY));
    tokio::time::timeout(ms(10_000), stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.stats().tasks, 0);
    assert_eq!(server.stats().sessions, 0);
}
