//! The voice server on the emulators: one port serves the browser page, the TwiML webhook and the WebSocket
//! endpoint (a `WsClient` gets `ready`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agents::transport::client::WsClient;
use agents::transport::protocol::{AudioFormat, Hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voice_demo::{ProviderChoice, Providers};

/// A raw HTTP/1.1 request; returns the whole response.
async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_the_page_the_twiml_webhook_and_the_websocket() {
    let providers = Providers::start(ProviderChoice::Offline).await.unwrap();
    let server = voice_agent_tools::server(&providers, None).await.unwrap();
    let router = voice_server::router(
        &server,
        &providers,
        Some("https://agent.example.com".to_owned()),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve_router(listener, router, async {
                let _ = stopped.await;
            })
            .await
    });

    let page = http(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.to_lowercase().contains("text/html"), "{page}");

    let twiml = http(
        addr,
        "POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(twiml.starts_with("HTTP/1.1 200"), "{twiml}");
    assert!(twiml.contains("wss://agent.example.com/twilio"), "{twiml}");

    let client = WsClient::connect(
        &format!("ws://{addr}/ws"),
        Hello::new(AudioFormat::new(16_000, 1)),
    )
    .await
    .unwrap();
    assert_eq!(client.ready().input, AudioFormat::new(16_000, 1));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
