//! The WebSocket proxy between two buses (two "deployments" in one test, linked over 127.0.0.1): the server
//! announces its worker, jobs run across the link, only the configured traffic crosses (behaviour 36), and a
//! closed link makes the remote worker expire on the client side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agents_workers::*;
use common::*;
use serde_json::json;
use tokio::net::TcpListener;

struct Link {
    client_bus: Arc<dyn Bus>,
    server_bus: Arc<dyn Bus>,
    client_runner: WorkerRunner,
    _server_runner: WorkerRunner,
    voice: WorkerHandle,
    client: ProxyHandle,
    server: ProxyHandle,
    log: Log,
}

async fn link(forward: &[&str]) -> Link {
    let client_bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let server_bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let client_runner = runner_on("C", &client_bus)
        .with_heartbeat(Duration::from_millis(50), Duration::from_millis(2_500));
    let server_runner = runner_on("S", &server_bus);
    let log = Log::default();
    let voice = client_runner
        .add_worker(Probe::spec("voice", &log))
        .await
        .unwrap();
    server_runner
        .add_worker(Probe::spec("worker", &log))
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_proxy = WebSocketProxyServer::new("gateway", "worker", "voice")
        .with_forward_types(forward.iter().copied());
    let (sbus, sreg) = (server_bus.clone(), server_runner.registry().clone());
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server_proxy.accept(sbus, sreg, tcp).await.unwrap()
    });
    let client = WebSocketProxyClient::new(format!("ws://{addr}"), "voice", "worker")
        .with_forward_types(forward.iter().copied())
        .connect(client_bus.clone())
        .await
        .unwrap();
    let server = within("accept", accept).await.unwrap();
    within("announced", async {
        while !client_runner.registry().contains("worker") {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    Link {
        client_bus,
        server_bus,
        client_runner,
        _server_runner: server_runner,
        voice,
        client,
        server,
        log,
    }
}

fn custom(name: &str) -> MessageBody {
    MessageBody::Custom {
        name: name.into(),
        data: json!(name),
    }
}

async fn customs(sub: &mut Subscription) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut names = Vec::new();
    while let Some(m) = sub.try_recv() {
        if let MessageBody::Custom { name, .. } = &m.body {
            names.push(format!("{}>{}", m.source, name));
        }
    }
    names
}

#[tokio::test]
async fn jobs_cross_the_proxy_after_the_server_announces_its_worker() {
    let l = link(&[]).await;
    assert_eq!(
        l.client_runner.registry().get("worker").unwrap().runner,
        "S"
    );
    let job = l
        .voice
        .context()
        .job(
            "worker",
            JobParams::new()
                .with_name("echo")
                .with_payload(json!({"x": 1}))
                .with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(
        within("echo", job.response()).await.unwrap(),
        json!({"x": 1})
    );
    assert_eq!(l.log.count_prefix("worker:echo:"), 1);
    assert!(!l.client.is_closed() && !l.server.is_closed());
}

// 36: only voice → worker traffic crosses by default; configured types from the local worker cross too.
#[tokio::test]
async fn b36_only_targeted_and_configured_messages_cross() {
    let l = link(&[]).await;
    let mut far_side = l.server_bus.subscribe("observer").unwrap();
    // Broadcasts stay on the client side without forward types.
    l.client_bus
        .send(BusMessage::new("voice", None, custom("broadcast")))
        .await
        .unwrap();
    // Targeted at the remote worker: crosses (and is delivered to "worker" only).
    l.client_bus
        .send(BusMessage::new(
            "voice",
            Some("worker".into()),
            custom("to-worker"),
        ))
        .await
        .unwrap();
    l.log.wait_for("worker:msg:to-worker").await;
    assert!(
        customs(&mut far_side).await.is_empty(),
        "the observer sees no broadcast"
    );
    assert!(!l.log.has("worker:msg:broadcast"));

    let l = link(&["custom"]).await;
    let mut far_side = l.server_bus.subscribe("observer").unwrap();
    l.client_bus
        .send(BusMessage::new("voice", None, custom("from-voice")))
        .await
        .unwrap();
    l.client_bus
        .send(BusMessage::new("someone-else", None, custom("from-other")))
        .await
        .unwrap();
    assert_eq!(
        customs(&mut far_side).await,
        vec!["voice>from-voice".to_owned()]
    );
}

// 36, server side: only messages from its worker to the remote worker go back; others are not sent.
#[tokio::test]
async fn b36_server_sends_back_only_its_workers_messages() {
    let l = link(&[]).await;
    l.server_bus
        .send(BusMessage::new(
            "intruder",
            Some("voice".into()),
            custom("spoof"),
        ))
        .await
        .unwrap();
    l.server_bus
        .send(BusMessage::new(
            "worker",
            Some("voice".into()),
            custom("reply"),
        ))
        .await
        .unwrap();
    l.log.wait_for("voice:msg:reply").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!l.log.has("voice:msg:spoof"));
}

// A closed link: the server stops announcing and the client's runner expires the remote worker.
#[tokio::test]
async fn closed_link_expires_the_remote_worker() {
    let mut l = link(&[]).await;
    l.server.close();
    within("client sees the close", l.client.closed()).await;
    within("expired", async {
        while l.client_runner.registry().contains("worker") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn connecting_to_nothing_is_a_typed_error() {
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = WebSocketProxyClient::new(format!("ws://{addr}"), "a", "b")
        .connect(bus)
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Connect(_)), "{err:?}");
}
