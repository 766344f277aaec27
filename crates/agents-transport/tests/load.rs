//! Load and faults: many concurrent clients streaming audio, clients that vanish mid-utterance or mid-reply;
//! nothing leaks and the other sessions are unaffected.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use agents_transport::client::{ClientEvent, WsClient, WsReceiver};
use agents_transport::protocol::{ServerMessage, SpeechEventKind};
use agents_transport::server::Limits;
use common::{TestServer, hello_16k, ms, utterance};

/// What one client saw of its turn.
#[derive(Debug, Default)]
struct Turn {
    final_transcript: Option<String>,
    audio: Duration,
    done: bool,
    trace: Vec<String>,
}

async fn receive_turn(rx: &mut WsReceiver, limit: Duration) -> Turn {
    let mut turn = Turn::default();
    let _ = tokio::time::timeout(limit, async {
        while let Some(Ok(e)) = rx.next_event().await {
            if let ClientEvent::Message(m) = &e {
                turn.trace.push(format!("{m:?}"));
            }
            match e {
                ClientEvent::Audio(f) => turn.audio += f.duration(),
                ClientEvent::Message(ServerMessage::UserTranscript {
                    text,
                    is_final: true,
                    ..
                }) => {
                    turn.final_transcript = Some(text);
                }
                ClientEvent::Message(ServerMessage::Speech {
                    event: SpeechEventKind::Done,
                    ..
                }) => {
                    turn.done = true;
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    turn
}

/// Connects `n` clients at once.
async fn connect_all(t: &TestServer, n: usize) -> Vec<WsClient> {
    let url = t.url();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { WsClient::connect(&url, hello_16k()).await.unwrap() })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for h in handles {
        clients.push(h.await.unwrap());
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_streaming_audio_each_get_their_answer() {
    const N: usize = 200;
    let t = TestServer::start(Limits::default(), None, false).await;
    let clients = connect_all(&t, N).await;
    assert_eq!(t.server.stats().sessions, N);
    let mut runs = Vec::with_capacity(N);
    for client in clients {
        runs.push(tokio::spawn(async move {
            let (mut tx, mut rx) = client.split();
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let send = tokio::spawn(async move {
                common::speak_then_listen(&mut tx, utterance(ms(600), ms(600)), stopped).await;
                tx
            });
            let turn = receive_turn(&mut rx, Duration::from_secs(90)).await;
            let _ = stop.send(true);
            let mut tx = send.await.unwrap();
            tx.close().await.unwrap();
            turn
        }));
    }
    let mut answered = 0;
    let mut turns = Vec::new();
    for r in runs {
        turns.push(r.await.unwrap());
    }
    let failed: Vec<&Turn> = turns.iter().filter(|t| !t.done).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {:#?}",
        failed.len(),
        failed.first()
    );
    for turn in turns {
        assert_eq!(
            turn.final_transcript.as_deref(),
            Some("what is the weather"),
            "{turn:?}"
        );
        assert!(turn.done, "{turn:?}");
        // The reply is 3 words of 300 ms.
        assert!(turn.audio >= ms(880) && turn.audio <= ms(920), "{turn:?}");
        answered += 1;
    }
    assert_eq!(answered, N);
    t.wait_idle(Duration::from_secs(30)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_vanishing_mid_utterance_free_their_sessions_and_the_others_are_unaffected() {
    const N: usize = 24;
    let t = TestServer::start(Limits::default(), None, false).await;
    let clients = connect_all(&t, N).await;
    let mut stayers = Vec::new();
    let mut vanishers = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let (mut tx, mut rx) = client.split();
        if i % 2 == 0 {
            // Half of a tone, then the TCP connection goes away without a close frame.
            vanishers.push(tokio::spawn(async move {
                let frames = utterance(ms(600), ms(0));
                let half = frames.len() / 2;
                tx.stream_audio(futures::stream::iter(frames.into_iter().take(half)), true)
                    .await
                    .unwrap();
                drop(tx);
                drop(rx);
            }));
        } else {
            stayers.push(tokio::spawn(async move {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let send = tokio::spawn(async move {
                    common::speak_then_listen(&mut tx, utterance(ms(600), ms(600)), stopped).await;
                    tx
                });
                let turn = receive_turn(&mut rx, Duration::from_secs(30)).await;
                let _ = stop.send(true);
                (turn, send.await.unwrap(), rx)
            }));
        }
    }
    for v in vanishers {
        v.await.unwrap();
    }
    // The vanished sessions are closed and freed while the others still run.
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = t.server.stats();
        if s.sessions <= N / 2 && s.connections <= N / 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "vanished sessions not freed: {s:?}"
        );
        tokio::time::sleep(ms(10)).await;
    }
    let mut kept = Vec::new();
    for s in stayers {
        let (turn, tx, rx) = s.await.unwrap();
        assert_eq!(
            turn.final_transcript.as_deref(),
            Some("what is the weather"),
            "{turn:?}"
        );
        assert!(turn.done && turn.audio >= ms(880), "{turn:?}");
        kept.push((tx, rx));
    }
    assert_eq!(t.server.stats().sessions, N / 2);
    drop(kept);
    t.wait_idle(Duration::from_secs(15)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_while_the_agent_speaks_frees_everything() {
    let t = TestServer::start(Limits::default(), None, true).await;
    let mut c = t.connect().await;
    let mut other = t.connect().await;
    c.send_text("tell me a long story").await.unwrap();
    let mut frames = 0;
    common::collect_until(&mut c, ms(10_000), |e| {
        if matches!(e, ClientEvent::Audio(_)) {
            frames += 1;
        }
        frames >= 5
    })
    .await;
    drop(c);
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while t.server.stats().sessions > 1 {
        assert!(tokio::time::Instant::now() < end, "{:?}", t.server.stats());
        tokio::time::sleep(ms(10)).await;
    }
    // The other session still answers.
    other.send_text("hello?").await.unwrap();
    let got = common::collect_until(&mut other, ms(10_000), |e| {
        matches!(
            e,
            ClientEvent::Message(ServerMessage::Speech {
                event: SpeechEventKind::Started,
                ..
            })
        )
    })
    .await;
    assert!(!got.is_empty());
    drop(other);
    t.wait_idle(Duration::from_secs(10)).await;
    t.stop().await;
}
