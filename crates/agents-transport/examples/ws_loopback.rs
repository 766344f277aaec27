//! A WebSocket server and a client in one process: the server runs sessions on the testkit fakes (no provider
//! keys needed), the client speaks a tone, types a message, and prints what it receives.
//!
//! `cargo run -p agents-transport --example ws_loopback`

#![allow(clippy::print_stdout, reason = "an example prints")]

use std::sync::Arc;
use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::Agent;
use agents_pipeline::AgentSession;
use agents_testkit::fakes::llm::FakeResponse;
use agents_testkit::{FakeLlm, FakeStt, FakeTts, FakeVad, signal};
use agents_transport::client::{ClientEvent, WsClient};
use agents_transport::protocol::{AudioFormat, Hello, ServerMessage, SpeechEventKind};
use agents_transport::server::{SessionRequest, TransportServer};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TransportServer::builder(|req: SessionRequest| async move {
        println!(
            "server: new session {} ({:?} in, {:?} out)",
            req.session_id, req.input, req.output
        );
        let session = AgentSession::builder()
            .stt(Arc::new(
                FakeStt::new().with_transcripts(["what is the weather"]),
            ))
            .vad(Arc::new(FakeVad::energy()))
            .llm(Arc::new(FakeLlm::new().with_responder(|_| {
                FakeResponse::text("It is sunny today.")
            })))
            .tts(Arc::new(FakeTts::new()))
            .build();
        Ok::<_, std::convert::Infallible>((session, Agent::new("You are a weather bot.")))
    })
    .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s = server.clone();
    let serving = tokio::spawn(async move {
        s.serve(listener, async move {
            let _ = stopped.await;
        })
        .await
    });

    let hello = Hello::new(AudioFormat::new(16000, 1)).with_output(AudioFormat::new(24000, 1));
    let client = WsClient::connect(&url, hello).await?;
    println!("client: ready {:?}", client.ready());
    let (mut tx, mut rx) = client.split();
    let rate = SampleRate::HZ_16000;
    let mut frames = signal::tone(Duration::from_millis(800), rate);
    frames.extend(signal::silence(Duration::from_millis(2000), rate));
    let speaking = tokio::spawn(async move {
        let r = tx.stream_audio(futures::stream::iter(frames), true).await;
        (tx, r)
    });
    let mut speaking = Some(speaking);
    let mut tx = None;
    let mut audio = Duration::ZERO;
    let mut replies = 0;
    while let Some(event) = rx.next_event().await {
        match event? {
            ClientEvent::Audio(frame) => audio += frame.duration(),
            ClientEvent::Message(m) => {
                println!("client: {}", serde_json::to_string(&m)?);
                if let ServerMessage::Speech {
                    event: SpeechEventKind::Done,
                    ..
                } = m
                {
                    replies += 1;
                    println!("client: {audio:?} of agent audio so far");
                    if let Some(speaking) = speaking.take() {
                        let (sender, r) = speaking.await?;
                        r?;
                        tx = Some(sender);
                    }
                    if let Some(tx) = tx.as_mut() {
                        if replies == 1 {
                            tx.send_text("And tomorrow?").await?;
                        } else {
                            tx.close().await?; // bye: the server answers `close`, then closes
                        }
                    }
                }
            }
            ClientEvent::Closed { code, reason } => {
                println!("client: closed {code:?} {reason:?}");
                break;
            }
            _ => {}
        }
    }
    drop(tx);
    println!("server stats after the client left: {:?}", server.stats());
    let _ = stop.send(());
    serving.await??;
    Ok(())
}
