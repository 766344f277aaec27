//! End to end: an `AgentSession` running the OpenAI Realtime plugin against the Realtime emulator on 127.0.0.1
//! (real sockets, real time, short durations): a spoken turn gets a spoken answer, a tool call round trip, a
//! barge-in truncates the reply. Uses `agents-openai` as a dev-dependency, so it runs without the `openai` feature.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use agents::audio::{AudioFrame, SampleRate};
use agents::chat::{ChatItem, ChatRole};
use agents::session::ReplyRequest;
use agents::tools::{FunctionTool, ToolOutcome};
use agents::{Agent, AgentSession, AudioInput, SessionControl, SessionEvent, SessionIo};
use agents_openai::ClientOptions;
use agents_openai::realtime::{OpenAiRealtimeModel, RealtimeOptions, ServerVad, TurnDetection};
use agents_testkit::emulators::openai_realtime::{OpenAiRealtimeEmulator, ScriptedResponse};
use agents_testkit::signal::sequence;
use agents_testkit::{EmulatorServer, FakeAudioOutput, FakeTextOutput};

const KEY: &str = "sk-test-realtime-session";
const LIMIT: Duration = Duration::from_secs(10);

struct E2e {
    emu: OpenAiRealtimeEmulator,
    _server: EmulatorServer,
    session: AgentSession,
    out: Arc<FakeAudioOutput>,
    audio: mpsc::Sender<AudioFrame>,
    events: Arc<Mutex<Vec<SessionEvent>>>,
}

async fn start(emu: OpenAiRealtimeEmulator, agent: Agent) -> E2e {
    let server = emu.serve().await.unwrap();
    let client = ClientOptions::default()
        .with_api_key(KEY)
        .with_base_url(format!("{}/v1", server.http_url()));
    let options = RealtimeOptions::default().with_turn_detection(Some(TurnDetection::ServerVad(
        ServerVad::default().with_silence_duration(Duration::from_millis(200)),
    )));
    let model = OpenAiRealtimeModel::new(client, options);
    let session = AgentSession::builder()
        .realtime(Arc::new(model))
        .options(agents::SessionOptions::default().with_user_away_timeout(None))
        .build();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut stream = session.events();
    let sink = Arc::clone(&events);
    tokio::spawn(async move {
        while let Some(e) = stream.next().await {
            sink.lock().unwrap().push(e);
        }
    });
    let out = Arc::new(FakeAudioOutput::new().with_sample_rate(Some(SampleRate::HZ_24000)));
    let (tx, input) = AudioInput::channel("user", 256);
    session
        .start(
            agent,
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(out.clone())
                .with_text_output(Arc::new(FakeTextOutput::new())),
        )
        .await
        .unwrap();
    E2e {
        emu,
        _server: server,
        session,
        out,
        audio: tx,
        events,
    }
}

impl E2e {
    /// Sends user audio (`true` = speech), paced at twice real time.
    async fn speak(&self, parts: &[(bool, u64)]) {
        let parts: Vec<(bool, Duration)> = parts
            .iter()
            .map(|&(s, d)| (s, Duration::from_millis(d)))
            .collect();
        for f in sequence(&parts, SampleRate::HZ_24000) {
            let d = f.duration();
            self.audio.send(f).await.unwrap();
            tokio::time::sleep(d / 2).await;
        }
    }

    async fn wait_for(&self, what: &str, f: impl Fn(&SessionEvent) -> bool) {
        let end = tokio::time::Instant::now() + LIMIT;
        while !self.events.lock().unwrap().iter().any(&f) {
            assert!(
                tokio::time::Instant::now() < end,
                "{what} not seen: {:#?}",
                self.events.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_for_assistant(&self, interrupted: bool) -> (String, bool) {
        self.wait_for("assistant message", |e| {
            matches!(e, SessionEvent::ConversationItemAdded { item: ChatItem::Message(m) }
                if m.role == ChatRole::Assistant && m.interrupted == interrupted)
        })
        .await;
        self.session
            .history()
            .items()
            .iter()
            .rev()
            .find_map(|i| match i {
                ChatItem::Message(m) if m.role == ChatRole::Assistant => {
                    Some((m.text_content().unwrap_or_default(), m.interrupted))
                }
                _ => None,
            })
            .unwrap()
    }

    fn errors(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Error(err) => Some(err.error.to_string()),
                _ => None,
            })
            .collect()
    }

    fn client_events(&self, ty: &str) -> Vec<Value> {
        self.emu
            .connections()
            .iter()
            .flat_map(|c| c.events_of(ty))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_turn_gets_a_spoken_answer() {
    let emu = OpenAiRealtimeEmulator::new().with_api_key(KEY);
    emu.push_user_transcript("what is the weather");
    emu.push_response(ScriptedResponse::text("It is sunny."));
    let e = start(emu, Agent::new("You are a weather bot.")).await;
    e.speak(&[(true, 400), (false, 500)]).await;
    let (text, interrupted) = e.wait_for_assistant(false).await;
    assert_eq!(text, "It is sunny.");
    assert!(!interrupted);
    e.wait_for("final user transcript", |ev| {
        matches!(ev, SessionEvent::UserInputTranscribed { transcript, is_final: true, .. }
            if transcript == "what is the weather")
    })
    .await;
    let history = e.session.history();
    let user = history
        .items()
        .iter()
        .find_map(|i| match i {
            ChatItem::Message(m) if m.role == ChatRole::User => m.text_content(),
            _ => None,
        })
        .unwrap();
    assert_eq!(user, "what is the weather");
    assert!(e.out.heard_duration() >= Duration::from_millis(100));
    // The instructions reached the server in the session update.
    let updates = e.client_events("session.update");
    assert!(
        updates
            .iter()
            .any(|u| u["session"]["instructions"] == "You are a weather bot."),
        "{updates:?}"
    );
    assert!(e.errors().is_empty(), "{:?}", e.errors());
    e.session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_round_trip() {
    let emu = OpenAiRealtimeEmulator::new().with_api_key(KEY);
    emu.push_response(ScriptedResponse::function_call(
        "get_weather",
        r#"{"city":"Paris"}"#,
    ));
    emu.push_response(ScriptedResponse::text("It is 22 degrees in Paris."));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let tool = FunctionTool::raw(
        "get_weather",
        "Weather of a city.",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        move |_ctx, args| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                assert_eq!(args["city"], "Paris");
                Ok(ToolOutcome::Output("22 C".to_owned()))
            }
        },
    )
    .unwrap();
    let agent = Agent::builder("You know the weather.")
        .tool(tool)
        .build()
        .unwrap();
    let e = start(emu, agent).await;
    let first = e.session.generate_reply(ReplyRequest::new()).unwrap();
    let (text, _) = e.wait_for_assistant(false).await;
    // The request took the model's response (the plugin marks it user-initiated) and played to its end.
    tokio::time::timeout(LIMIT, first.wait_for_playout())
        .await
        .unwrap();
    assert!(!first.interrupted());
    assert_eq!(text, "It is 22 degrees in Paris.");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let outputs: Vec<Value> = e
        .client_events("conversation.item.create")
        .into_iter()
        .filter(|c| c["item"]["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(outputs[0]["item"]["output"], "22 C");
    // The first reply and the follow-up.
    assert_eq!(e.client_events("response.create").len(), 2);
    assert!(e.errors().is_empty(), "{:?}", e.errors());
    e.session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_truncates_the_reply() {
    let emu = OpenAiRealtimeEmulator::new().with_api_key(KEY);
    let long = "This is a rather long answer that keeps going for several seconds so that the user has \
                plenty of time to interrupt it before it ends, and then it goes on a little more with even more words \
                about nothing in particular, just to be long";
    emu.push_response(ScriptedResponse::text(long));
    emu.push_user_transcript("wait, stop");
    let e = start(emu, Agent::new("x")).await;
    e.session.generate_reply(ReplyRequest::new()).unwrap();
    e.wait_for("agent speaking", |ev| {
        matches!(
            ev,
            SessionEvent::AgentStateChanged {
                new: agents::AgentState::Speaking,
                ..
            }
        )
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    e.speak(&[(true, 300), (false, 300)]).await;
    let (text, interrupted) = e.wait_for_assistant(true).await;
    assert!(interrupted);
    assert!(
        !text.is_empty() && long.starts_with(&text) && text.len() < long.len(),
        "{text}"
    );
    let truncates = e.client_events("conversation.item.truncate");
    assert_eq!(truncates.len(), 1, "{truncates:?}");
    let end_ms = truncates[0]["audio_end_ms"].as_u64().unwrap();
    // Interrupted a few hundred ms in (allowing for a loaded machine), well before the ~3.7 s of audio ended.
    assert!((200..3000).contains(&end_ms), "audio_end_ms {end_ms}");
    // The response had ended on the server: no cancel was sent, so the server reported no error.
    assert!(e.errors().is_empty(), "{:?}", e.errors());
    e.wait_for("the barge-in transcript", |ev| {
        matches!(ev, SessionEvent::UserInputTranscribed { transcript, is_final: true, .. }
            if transcript == "wait, stop")
    })
    .await;
    e.session.close().await.unwrap();
}
