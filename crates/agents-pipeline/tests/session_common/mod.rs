//! Shared rig of the session tests: a session over the testkit fakes, with every event recorded.

#![allow(dead_code, clippy::unwrap_used, reason = "test helpers")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use agents_core::chat::{ChatItem, ChatRole};
use agents_core::events::{AgentState, SessionEvent};
use agents_core::{Agent, SessionIo};
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeTextOutput, FakeTts};

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Every event of a session, in order.
#[derive(Clone, Default)]
pub(crate) struct Recorder(pub(crate) Arc<Mutex<Vec<SessionEvent>>>);

impl Recorder {
    pub(crate) fn start(session: &AgentSession) -> Self {
        let rec = Self::default();
        let events = rec.0.clone();
        let mut stream = session.events();
        tokio::spawn(async move {
            while let Some(e) = stream.next().await {
                events.lock().unwrap().push(e);
            }
        });
        rec
    }

    pub(crate) fn events(&self) -> Vec<SessionEvent> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn agent_states(&self) -> Vec<AgentState> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::AgentStateChanged { new, .. } => Some(new),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn count(&self, f: impl Fn(&SessionEvent) -> bool) -> usize {
        self.events().iter().filter(|e| f(e)).count()
    }

    /// Waits (tokio time) until `f` matches a recorded event; panics after `limit`.
    pub(crate) async fn wait_for(&self, limit: Duration, f: impl Fn(&SessionEvent) -> bool) {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if self.events().iter().any(&f) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "event not seen in {limit:?}: {:#?}",
                self.events()
            );
            tokio::time::sleep(ms(1)).await;
        }
    }
}

pub(crate) struct Rig {
    pub(crate) session: AgentSession,
    pub(crate) llm: FakeLlm,
    pub(crate) tts: Arc<FakeTts>,
    pub(crate) out: Arc<FakeAudioOutput>,
    pub(crate) text: Arc<FakeTextOutput>,
    pub(crate) rec: Recorder,
}

pub(crate) fn rig_with(
    llm: FakeLlm,
    tts: FakeTts,
    out: FakeAudioOutput,
    options: SessionOptions,
) -> Rig {
    let tts = Arc::new(tts);
    let out = Arc::new(out);
    let text = Arc::new(FakeTextOutput::new());
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .tts(tts.clone())
        .options(options)
        .build();
    let rec = Recorder::start(&session);
    Rig {
        session,
        llm,
        tts,
        out,
        text,
        rec,
    }
}

pub(crate) fn rig(llm: FakeLlm) -> Rig {
    rig_with(
        llm,
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default(),
    )
}

impl Rig {
    pub(crate) fn io(&self) -> SessionIo {
        SessionIo::new()
            .with_audio_output(self.out.clone())
            .with_text_output(self.text.clone())
    }

    pub(crate) async fn start(&self, agent: Agent) {
        self.session.start(agent, self.io()).await.unwrap();
    }

    /// Assistant and user messages of the session history: (role, text, interrupted).
    pub(crate) fn messages(&self) -> Vec<(ChatRole, String, bool)> {
        use agents_core::SessionControl;
        self.session
            .history()
            .items()
            .iter()
            .filter_map(|i| match i {
                ChatItem::Message(m) => {
                    Some((m.role, m.text_content().unwrap_or_default(), m.interrupted))
                }
                _ => None,
            })
            .collect()
    }
}
