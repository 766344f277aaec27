//! The server of `voice-agent-tools` on the emulators: a `WsClient` connects, types a message, and gets the agent's
//! spoken reply (audio frames at the negotiated rate and the agent transcript), then says bye.
//! The client sends no `playback` reports (they are optional): the server's pacing alone must finish the reply.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agents::transport::client::{ClientEvent, WsClient};
use agents::transport::protocol::{
    AudioFormat, ClientMessage, Hello, ServerMessage, SpeechEventKind,
};
use voice_demo::{ProviderChoice, Providers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_message_gets_a_spoken_reply_over_the_websocket() {
    let providers = Providers::start(ProviderChoice::Offline).await.unwrap();
    let server = voice_agent_tools::server(&providers, None).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        voice_agent_tools::serve(&server, listener, async {
            let _ = stopped.await;
        })
        .await
    });

    let hello = Hello::new(AudioFormat::new(16_000, 1)).with_output(AudioFormat::new(16_000, 1));
    let mut client = WsClient::connect(&format!("ws://{addr}/ws"), hello)
        .await
        .unwrap();
    client
        .send(&ClientMessage::Text {
            text: "What's the weather in Paris?".to_owned(),
        })
        .await
        .unwrap();
    let mut audio = Duration::ZERO;
    let mut transcript = String::new();

    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = client.next_event().await {
            match event.unwrap() {
                ClientEvent::Audio(frame) => {
                    assert_eq!(frame.sample_rate().hz(), 16_000);
                    audio += frame.duration();
                }
                ClientEvent::Message(ServerMessage::AgentTranscript { text, .. }) => {
                    transcript.push_str(&text);
                }
                ClientEvent::Message(ServerMessage::Speech {
                    event: SpeechEventKind::Done,
                    ..
                }) => break,
                ClientEvent::Closed { reason, .. } => panic!("closed: {reason}"),
                _ => {}
            }
        }
    })
    .await
    .expect("a finished reply");
    let said: String = transcript.split_whitespace().collect();
    let expected: String = voice_agent_tools::OFFLINE_ANSWER
        .split_whitespace()
        .collect();
    assert_eq!(said, expected);
    assert!(audio > Duration::from_millis(500), "{audio:?}");
    client.send(&ClientMessage::Bye).await.unwrap();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
