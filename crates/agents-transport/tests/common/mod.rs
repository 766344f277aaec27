//! Shared rig of the transport tests: a server on 127.0.0.1 whose sessions run on the testkit fakes.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::{Agent, ApiKey};
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::fakes::llm::FakeResponse;
use agents_testkit::{FakeLlm, FakeStt, FakeTts, FakeVad, signal};
use agents_transport::client::{ClientEvent, WsClient};
use agents_transport::protocol::{AudioFormat, Hello, ServerMessage};
use agents_transport::server::{Limits, SessionRequest, TransportServer};
use tokio::sync::oneshot;

pub(crate) const REPLY: &str = "Hello there friend";

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A session over the fakes: hears speech by energy, transcribes "what is the weather", answers [`REPLY`] (to any
/// number of turns; `slow_tts` makes the reply long enough to interrupt).
pub(crate) fn fake_session(long_reply: bool) -> (AgentSession, Agent) {
    let reply = if long_reply {
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    } else {
        REPLY
    };
    let llm = FakeLlm::new().with_responder(move |_| FakeResponse::text(reply));
    let stt = FakeStt::new().with_transcripts(["what is the weather"]);
    let session = AgentSession::builder()
        .stt(Arc::new(stt))
        .vad(Arc::new(FakeVad::energy()))
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .options(SessionOptions::default())
        .build();
    (session, Agent::new("You are a test agent."))
}

pub(crate) struct TestServer {
    pub(crate) server: TransportServer,
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub(crate) async fn start(limits: Limits, token: Option<&str>, long_reply: bool) -> Self {
        let mut builder = TransportServer::builder(move |req: SessionRequest| async move {
            if req.agent.as_deref() == Some("broken") {
                return Err("no such agent".to_owned());
            }
            Ok(fake_session(long_reply))
        })
        .limits(limits);
        if let Some(t) = token {
            builder = builder.token(ApiKey::new(t));
        }
        let server = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let s = server.clone();
        let task = tokio::spawn(async move {
            s.serve(listener, async move {
                let _ = rx.await;
            })
            .await
        });
        Self {
            server,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub(crate) async fn connect(&self) -> WsClient {
        WsClient::connect(&self.url(), hello_16k()).await.unwrap()
    }

    /// Waits until no connection, session or task is left; panics with the stats after `limit`.
    pub(crate) async fn wait_idle(&self, limit: Duration) {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let s = self.server.stats();
            if s.connections == 0 && s.sessions == 0 && s.tasks == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "server did not return to idle within {limit:?}: {s:?}"
            );
            tokio::time::sleep(ms(10)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

pub(crate) fn hello_16k() -> Hello {
    Hello::new(AudioFormat::new(16000, 1))
}

pub(crate) fn rate(hz: u32) -> SampleRate {
    SampleRate::new(hz).unwrap()
}

/// One user utterance: `speech` of tone then `silence`, 20 ms frames at 16 kHz.
pub(crate) fn utterance(speech: Duration, silence: Duration) -> Vec<AudioFrame> {
    let r = rate(16000);
    let mut frames = signal::tone(speech, r);
    frames.extend(signal::silence(silence, r));
    frames
}

/// Everything received until `stop` says so (or the connection ends); panics after `limit`.
pub(crate) async fn collect_until(
    client: &mut WsClient,
    limit: Duration,
    mut stop: impl FnMut(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, async {
        while let Some(e) = client.next_event().await {
            let e = e.unwrap();
            let done = stop(&e);
            out.push(e);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "condition not met within {limit:?}; received: {:#?}",
        summary(&out)
    );
    out
}

/// The JSON messages of `events`, without audio.
pub(crate) fn messages(events: &[ClientEvent]) -> Vec<ServerMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn audio(events: &[ClientEvent]) -> Vec<AudioFrame> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Audio(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn summary(events: &[ClientEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let mut audio = 0;
    for e in events {
        match e {
            ClientEvent::Audio(_) => audio += 1,
            other => {
                if audio > 0 {
                    out.push(format!("{audio} audio frames"));
                    audio = 0;
                }
                out.push(format!("{other:?}"));
            }
        }
    }
    if audio > 0 {
        out.push(format!("{audio} audio frames"));
    }
    out
}

pub(crate) fn is_error(e: &ClientEvent, code: &str) -> bool {
    matches!(e, ClientEvent::Message(ServerMessage::Error { code: c, .. }) if c == code)
}

pub(crate) fn is_pong(e: &ClientEvent, id: i64) -> bool {
    matches!(e, ClientEvent::Message(ServerMessage::Pong { id: v }) if v == &serde_json::json!(id))
}

/// Like a microphone: streams `frames` in real time, then silence until `stop` is set (or 60 s passed).
pub(crate) async fn speak_then_listen(
    tx: &mut agents_transport::client::WsSender,
    frames: Vec<AudioFrame>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    tx.stream_audio(futures::stream::iter(frames), true)
        .await
        .unwrap();
    let r = rate(16000);
    let mut next = tokio::time::Instant::now();
    let end = next + Duration::from_secs(60);
    while !*stop.borrow() && next < end {
        for f in signal::silence(ms(20), r) {
            if tx.send_audio(&f).await.is_err() {
                return;
            }
        }
        next += ms(20);
        tokio::time::sleep_until(next).await;
    }
}
