//! One scripted voice conversation: the user's recorded lines are streamed in real time into a real
//! [`AgentSession`] (Silero VAD, Deepgram STT, OpenAI LLM with tools, ElevenLabs TTS), each line is committed as
//! a user turn, and the agent's replies play out in real time. Everything the session reports (transcripts,
//! tool calls, per-turn latency, errors) is collected into a [`DemoReport`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agents::audio::{AudioFrame, SampleRate, read_wav, write_wav};
use agents::core::metrics::{Metrics, TurnMetrics};
use agents::pipeline::{AgentSession, SessionOptions, TurnDetectionMode};
use agents::transport::client::{ClientError, ClientEvent, WsClient, WsReceiver, WsSender};
use agents::transport::protocol::{
    AudioFormat, ClientMessage, Hello, ServerMessage, SpeechEventKind,
};
use agents::transport::server::{SessionRequest, TransportServer};
use agents::{Agent, AgentState, ChatItem, ChatRole, SessionControl, SessionEvent, Vad};
use agents_testkit::emulators::openai::ChatScript;
use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::providers::{ProviderChoice, Providers};
use crate::tools;

/// Length of the frames streamed to the session.
const FRAME: Duration = Duration::from_millis(20);
/// Silence streamed after each line before the turn is committed (a person's short pause).
const TRAILING_SILENCE: Duration = Duration::from_millis(400);
/// Pause between the end of the agent's reply and the user's next line.
const PAUSE_BETWEEN_TURNS: Duration = Duration::from_millis(500);

/// The agent's instructions.
pub const INSTRUCTIONS: &str = "You are a friendly voice assistant. Answer in one short spoken sentence, without \
markdown. Use get_weather for weather questions and get_time for the local time in a city; never guess them.";

/// One line the scripted user says.
#[derive(Debug, Clone)]
pub struct Utterance {
    /// What is said (the scripted transcript of the offline STT).
    pub text: String,
    /// The recording: 16 kHz mono PCM16 WAV.
    pub wav: PathBuf,
}

/// The default script: three recorded lines (espeak-ng, 16 kHz mono) shipped in `fixtures/`.
pub fn default_script() -> Vec<Utterance> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    [
        "What's the weather in Paris?",
        "And what time is it in Tokyo?",
        "Thank you, goodbye.",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| Utterance {
        text: (*text).to_owned(),
        wav: dir.join(format!("user{}.wav", i + 1)),
    })
    .collect()
}

/// Builds the agent a session starts with.
pub type AgentFactory = Arc<dyn Fn() -> anyhow::Result<Agent> + Send + Sync>;
/// The offline LLM's chat scripts for line `i` (0-based), pushed to the OpenAI emulator before the line is spoken.
pub type OfflineLlmScript = Arc<dyn Fn(usize) -> anyhow::Result<Vec<ChatScript>> + Send + Sync>;

/// What the conversation is about: the agent, what the offline LLM answers, how many agent replies each line gets.
#[derive(Clone)]
pub struct Scenario {
    /// Name, for messages.
    pub name: String,
    /// The agent the session starts with.
    pub agent: AgentFactory,
    /// The offline LLM's steps per line (ignored with the real OpenAI service).
    pub offline_llm: OfflineLlmScript,
    /// Agent replies expected in total after each line (cumulative; a handoff's transition line and the new
    /// agent's greeting count as two).
    pub replies_after_line: Vec<usize>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("replies_after_line", &self.replies_after_line)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// The weather-and-time assistant: one reply per line, a tool call on the first two.
    pub fn weather_and_time() -> Self {
        Self {
            name: "weather and time".to_owned(),
            agent: Arc::new(assistant_agent),
            offline_llm: Arc::new(offline_chat_scripts),
            replies_after_line: vec![1, 2, 3],
        }
    }
}

/// The weather-and-time assistant with its two tools.
///
/// # Errors
/// When a tool's schema cannot be generated (a bug).
pub fn assistant_agent() -> anyhow::Result<Agent> {
    Ok(Agent::builder(INSTRUCTIONS)
        .id("assistant")
        .tools(tools::tools()?)
        .build()?)
}

/// Makes sessions with the demo's settings (see [`build_session`]) over the STT, LLM and TTS of `providers` and
/// `vad`, with `mode` turn detection: the session factory of a server.
pub fn session_factory(
    providers: &Providers,
    vad: Arc<dyn Vad>,
    mode: TurnDetectionMode,
) -> impl Fn() -> AgentSession + Clone + Send + Sync + 'static {
    let (stt, llm, tts) = (
        providers.stt.clone(),
        providers.llm.clone(),
        providers.tts.clone(),
    );
    move || build_session(stt.clone(), llm.clone(), tts.clone(), vad.clone(), mode)
}

/// A session with the demo's settings: the given providers and VAD, `mode` turn detection, up to 3 tool steps.
pub fn build_session(
    stt: Arc<dyn agents::Stt>,
    llm: Arc<dyn agents::Llm>,
    tts: Arc<dyn agents::Tts>,
    vad: Arc<dyn Vad>,
    mode: TurnDetectionMode,
) -> AgentSession {
    AgentSession::builder()
        .stt(stt)
        .vad(vad)
        .llm(llm)
        .tts(tts)
        .turn_detection(mode)
        .options(SessionOptions::default().with_max_tool_steps(3))
        .build()
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Which providers to use.
    pub providers: ProviderChoice,
    /// The agent and its offline script.
    pub scenario: Scenario,
    /// The user's lines.
    pub script: Vec<Utterance>,
    /// Where the agent audio (`agent.wav`) and the transcript (`transcript.txt`) are written.
    pub out_dir: PathBuf,
    /// Longest wait for one reply.
    pub reply_timeout: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            providers: ProviderChoice::FromEnv,
            scenario: Scenario::weather_and_time(),
            script: default_script(),
            out_dir: Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .nth(2)
                .unwrap_or(Path::new("."))
                .join("target/voice-demo"),
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// Latency of one reply, from the session's `Metrics::Turn` report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnLatency {
    /// The reply speech.
    pub speech_id: Option<String>,
    /// End of user speech to the end-of-turn decision.
    pub end_of_utterance: Option<Duration>,
    /// End of user speech to the final transcript.
    pub transcription: Option<Duration>,
    /// LLM time to first token.
    pub llm_ttft: Option<Duration>,
    /// TTS time to first byte.
    pub tts_ttfb: Option<Duration>,
    /// End of user speech to the first agent audio played.
    pub e2e: Option<Duration>,
}

impl From<&TurnMetrics> for TurnLatency {
    fn from(m: &TurnMetrics) -> Self {
        Self {
            speech_id: m.speech_id.clone(),
            end_of_utterance: m.end_of_utterance_delay,
            transcription: m.transcription_delay,
            llm_ttft: m.llm_ttft,
            tts_ttfb: m.tts_ttfb,
            e2e: m.e2e_latency,
        }
    }
}

/// One tool call the agent made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallRecord {
    /// Tool name.
    pub name: String,
    /// Arguments (JSON text).
    pub arguments: String,
    /// Output given to the model.
    pub output: String,
    /// Whether the tool failed.
    pub is_error: bool,
}

/// One line of the live transcript, in the order the session reported it.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A committed user turn.
    User(String),
    /// A committed agent reply (`interrupted` when cut short).
    Agent {
        /// What the user heard.
        text: String,
        /// Whether it was interrupted.
        interrupted: bool,
    },
    /// A tool call and its result.
    Tool(ToolCallRecord),
    /// The latency report of a reply.
    Latency(TurnLatency),
    /// An error the session reported.
    Error(String),
}

/// Everything one conversation produced.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// The live transcript.
    pub lines: Vec<Line>,
    /// Where the agent audio was written.
    pub audio_path: PathBuf,
    /// Where the transcript was written.
    pub transcript_path: PathBuf,
    /// Agent audio the client received.
    pub agent_audio: Duration,
    /// The agent's words as the client received them (`agent_transcript` messages, released with playback).
    pub client_transcript: String,
    /// `tool` messages the client received.
    pub client_tool_events: usize,
    /// How the connection ended for the client (the server's close reason).
    pub client_close: Option<String>,
    /// Wall time of the conversation.
    pub wall: Duration,
}

impl DemoReport {
    /// The committed user turns.
    pub fn user_turns(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::User(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The committed agent replies.
    pub fn agent_replies(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Agent { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tool calls.
    pub fn tool_calls(&self) -> Vec<&ToolCallRecord> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Tool(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// The per-reply latency reports.
    pub fn latencies(&self) -> Vec<&TurnLatency> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Latency(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// The errors the session reported.
    pub fn errors(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Error(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Progress the driver waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    user_turns: usize,
    agent_replies: usize,
    state: AgentState,
    closed: bool,
}

/// The weather-and-time assistant's offline LLM script for line `index` (0-based), built from the tools' own
/// answers so the spoken reply says what the tool returned.
///
/// # Errors
/// When a tool refuses the scripted city (a bug).
pub fn offline_chat_scripts(index: usize) -> anyhow::Result<Vec<ChatScript>> {
    let words = |s: &str| {
        s.split_inclusive(' ')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    Ok(match index {
        0 => {
            let weather = tools::weather_report("Paris").map_err(|e| anyhow::anyhow!("{e}"))?;
            vec![
                ChatScript::tool_calls(&[("get_weather", r#"{"city":"Paris"}"#)]),
                ChatScript::text(words(&format!("It's {weather} right now."))),
            ]
        }
        1 => {
            let time = tools::local_time("Tokyo", SystemTime::now())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let spoken = time.split(" (").next().unwrap_or(&time).to_owned();
            vec![
                ChatScript::tool_calls(&[("get_time", r#"{"city":"Tokyo"}"#)]),
                ChatScript::text(words(&format!("It's {spoken} at the moment."))),
            ]
        }
        _ => vec![ChatScript::text(words(
            "You're welcome! Have a great day, goodbye.",
        ))],
    })
}

/// Reads a line's recording as 20 ms frames of 16 kHz mono, followed by [`TRAILING_SILENCE`].
fn load_frames(path: &Path) -> anyhow::Result<Vec<AudioFrame>> {
    let audio = read_wav(path).with_context(|| format!("reading {}", path.display()))?;
    if audio.sample_rate() != SampleRate::HZ_16000 || audio.num_channels() != 1 {
        bail!(
            "{}: expected 16 kHz mono, found {:?} x{}",
            path.display(),
            audio.sample_rate(),
            audio.num_channels()
        );
    }
    let mut frames = audio.chunks(320)?;
    let silence = AudioFrame::silence(FRAME, SampleRate::HZ_16000, 1)?;
    let n = (TRAILING_SILENCE.as_millis() / FRAME.as_millis()) as usize;
    frames.extend(std::iter::repeat_n(silence, n));
    Ok(frames)
}

/// The scripted user's microphone: streams audio over the WebSocket at 1x, the queued line's frames, silence
/// otherwise (a microphone never stops). After a line's last frame it sends `commit_user_turn` and fires the
/// line's `done`. It also sends the listener's `playback` reports. Ends (and returns the sender, to say `bye`)
/// when the line queue closes.
async fn microphone(
    mut ws: WsSender,
    mut lines: mpsc::Receiver<(Vec<AudioFrame>, oneshot::Sender<()>)>,
    mut reports: mpsc::Receiver<ClientMessage>,
) -> Result<WsSender, ClientError> {
    let silence = AudioFrame::silence(FRAME, SampleRate::HZ_16000, 1)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut current: Option<(std::vec::IntoIter<AudioFrame>, oneshot::Sender<()>)> = None;
    loop {
        tick.tick().await;
        while let Ok(report) = reports.try_recv() {
            ws.send(&report).await?;
        }
        if current.is_none() {
            match lines.try_recv() {
                Ok((frames, done)) => current = Some((frames.into_iter(), done)),
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(ws),
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        let frame = match current.as_mut().and_then(|(it, _)| it.next()) {
            Some(f) => f,
            None => {
                if let Some((_, done)) = current.take() {
                    ws.send(&ClientMessage::CommitUserTurn).await?;
                    let _ = done.send(());
                }
                silence.clone()
            }
        };
        ws.send_audio(&frame).await?;
    }
}

/// What the scripted client received: the agent's audio and its transcript, as played.
#[derive(Debug, Default)]
struct Received {
    audio: Vec<AudioFrame>,
    agent_text: String,
    tool_events: usize,
    closed: Option<String>,
}

/// Reads the server's messages until the connection closes. The client "plays" the agent audio as it arrives
/// (the server paces it in real time) and reports what it played every 200 ms (`playback` with the speech's
/// position: the audio received, at most the wall time since the speech started).
async fn listen(mut ws: WsReceiver, reports: mpsc::Sender<ClientMessage>) -> Received {
    let mut r = Received::default();
    let mut speech: Option<(String, tokio::time::Instant, Duration)> = None;
    let debug = std::env::var_os("VOICE_DEMO_EVENTS").is_some_and(|v| v == "1");
    while let Some(event) = ws.next_event().await {
        if debug {
            match &event {
                Ok(ClientEvent::Audio(_)) if r.audio.len() % 50 != 0 => {}
                Ok(ClientEvent::Audio(_)) => eprintln!("[client] audio frame #{}", r.audio.len()),
                other => eprintln!("[client] {other:?}"),
            }
        }
        match event {
            Ok(ClientEvent::Audio(frame)) => {
                if let Some((id, started, received)) = speech.as_mut() {
                    let before = *received;
                    *received += frame.duration();
                    if before.as_millis() / 200 != received.as_millis() / 200 {
                        let played = (*received).min(started.elapsed());
                        let _ = reports.try_send(ClientMessage::Playback {
                            speech_id: Some(id.clone()),
                            position_ms: played.as_millis() as u64,
                            finished: false,
                        });
                    }
                }
                r.audio.push(frame);
            }
            Ok(ClientEvent::Message(ServerMessage::Speech {
                speech_id,
                event: SpeechEventKind::Started,
                ..
            })) => speech = Some((speech_id, tokio::time::Instant::now(), Duration::ZERO)),
            Ok(ClientEvent::Message(ServerMessage::AgentTranscript { text, .. })) => {
                r.agent_text.push_str(&text);
            }
            Ok(ClientEvent::Message(ServerMessage::Tool { .. })) => r.tool_events += 1,
            Ok(ClientEvent::Closed { reason, .. }) => {
                r.closed = Some(reason);
                break;
            }
            Ok(_) => {}
            Err(e) => {
                r.closed = Some(format!("error: {e}"));
                break;
            }
        }
    }
    r
}

/// Builds the transcript from session events.
///
/// The latency of a reply is the session's `Metrics::Turn` report, emitted once per user turn by the speech that
/// played the answer (the tool follow-up when the reply's first LLM step only called tools), before that speech's
/// message is committed; it is added after the agent's reply.
#[derive(Default)]
struct Collector {
    lines: Mutex<Vec<Line>>,
    pending: Mutex<Option<TurnLatency>>,
    /// `VOICE_DEMO_EVENTS=1`: every session event is printed to stderr.
    debug: bool,
}

impl Collector {
    fn push(&self, line: Line) {
        if let Ok(mut l) = self.lines.lock() {
            l.push(line);
        }
    }

    fn with_pending(&self, f: impl FnOnce(&mut Option<TurnLatency>)) {
        if let Ok(mut p) = self.pending.lock() {
            f(&mut p);
        }
    }

    fn on_event(&self, event: &SessionEvent, progress: &watch::Sender<Progress>) {
        if self.debug {
            eprintln!("[event] {event:?}");
        }
        match event {
            SessionEvent::ConversationItemAdded {
                item: ChatItem::Message(m),
            } => {
                let text = m.text_content().unwrap_or_default();
                match m.role {
                    ChatRole::User => {
                        self.push(Line::User(text));
                        progress.send_modify(|p| p.user_turns += 1);
                    }
                    ChatRole::Assistant if !text.trim().is_empty() => {
                        self.push(Line::Agent {
                            text,
                            interrupted: m.interrupted,
                        });
                        let mut done = None;
                        self.with_pending(|p| done = p.take());
                        if let Some(latency) = done {
                            self.push(Line::Latency(latency));
                        }
                        progress.send_modify(|p| p.agent_replies += 1);
                    }
                    _ => {}
                }
            }
            SessionEvent::FunctionToolsExecuted { calls, outputs } => {
                for (call, output) in calls.iter().zip(outputs) {
                    self.push(Line::Tool(ToolCallRecord {
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                        output: output
                            .as_ref()
                            .map(|o| o.output.clone())
                            .unwrap_or_default(),
                        is_error: output.as_ref().is_some_and(|o| o.is_error),
                    }));
                }
            }
            SessionEvent::MetricsCollected(Metrics::Turn(m)) => {
                let latency = TurnLatency::from(m);
                self.with_pending(|p| *p = Some(latency));
            }
            SessionEvent::Error(e) => self.push(Line::Error(format!(
                "{:?} {}: {}{}",
                e.component,
                e.label,
                e.error,
                if e.recoverable { "" } else { " (fatal)" }
            ))),
            SessionEvent::AgentStateChanged { new, .. } => {
                progress.send_modify(|p| p.state = *new);
            }
            SessionEvent::Close { .. } => progress.send_modify(|p| p.closed = true),
            _ => {}
        }
    }
}

/// Loads the Silero VAD (off the runtime's threads), to share between sessions.
///
/// # Errors
/// When the Silero model cannot be loaded.
pub async fn load_vad() -> anyhow::Result<Arc<dyn Vad>> {
    Ok(Arc::new(
        tokio::task::spawn_blocking(agents::silero::SileroVad::load)
            .await
            .context("loading the Silero VAD")??,
    ))
}

/// Runs the conversation. `on_line` sees each transcript line as it happens (the binary prints them).
///
/// The session is served by the real WebSocket transport (`agents::transport::server::TransportServer`) on
/// 127.0.0.1; the scripted user is a real `WsClient` that streams the recorded lines in real time, silence in
/// between, and commits each line as a user turn (`{"type":"commit_user_turn"}`). The agent audio written to
/// `agent.wav` is what the client received.
///
/// # Errors
/// When a provider or the VAD cannot start, a fixture cannot be read, the transport fails, a reply does not come
/// within [`DemoConfig::reply_timeout`], the session closes early, or the outputs cannot be written.
pub async fn run_conversation(
    config: &DemoConfig,
    providers: &Providers,
    mut on_line: impl FnMut(&Line) + Send,
) -> anyhow::Result<DemoReport> {
    let started = tokio::time::Instant::now();
    let recordings = config
        .script
        .iter()
        .map(|u| load_frames(&u.wav))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let vad = load_vad().await?;

    let collector = Arc::new(Collector {
        debug: std::env::var_os("VOICE_DEMO_EVENTS").is_some_and(|v| v == "1"),
        ..Collector::default()
    });
    let (progress_tx, mut progress) = watch::channel(Progress {
        user_turns: 0,
        agent_replies: 0,
        state: AgentState::Initializing,
        closed: false,
    });
    let progress_tx = Arc::new(progress_tx);
    let (session_tx, mut session_rx) = mpsc::channel::<AgentSession>(1);

    // The server side: one session per connection, built from the demo's providers.
    let factory = {
        let (stt, llm, tts) = (
            providers.stt.clone(),
            providers.llm.clone(),
            providers.tts.clone(),
        );
        let collector = collector.clone();
        let progress_tx = progress_tx.clone();
        let agent_factory = config.scenario.agent.clone();
        move |_req: SessionRequest| {
            let (stt, llm, tts, vad) = (stt.clone(), llm.clone(), tts.clone(), vad.clone());
            let make_agent = agent_factory.clone();
            let collector = collector.clone();
            let progress_tx = progress_tx.clone();
            let session_tx = session_tx.clone();
            async move {
                let agent = make_agent()?;
                let session = build_session(stt, llm, tts, vad, TurnDetectionMode::Manual);
                let mut events = session.events();
                tokio::spawn(async move {
                    while let Some(event) = events.next().await {
                        collector.on_event(&event, &progress_tx);
                        if matches!(event, SessionEvent::Close { .. }) {
                            break;
                        }
                    }
                });
                let _ = session_tx.try_send(session.clone());
                Ok::<_, anyhow::Error>((session, agent))
            }
        }
    };
    let server = Arc::new(TransportServer::builder(factory).build());
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the transport's port")?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    };

    // The client side: the scripted user.
    let hello = Hello::new(AudioFormat::new(16_000, 1)).with_output(AudioFormat::new(24_000, 1));
    let client = WsClient::connect(&format!("ws://{addr}/ws"), hello)
        .await
        .context("connecting the scripted client to the transport")?;
    let (ws_tx, ws_rx) = client.split();
    let (report_tx, report_rx) = mpsc::channel(16);
    let listening = tokio::spawn(listen(ws_rx, report_tx));
    let (line_tx, line_rx) = mpsc::channel(1);
    let mic = tokio::spawn(microphone(ws_tx, line_rx, report_rx));
    let session = tokio::time::timeout(Duration::from_secs(10), session_rx.recv())
        .await
        .ok()
        .flatten()
        .context("the transport did not start a session")?;

    let mut printed = 0;
    let mut flush_lines = |on_line: &mut dyn FnMut(&Line)| {
        if let Ok(l) = collector.lines.lock() {
            for line in &l[printed..] {
                on_line(line);
            }
            printed = l.len();
        }
    };

    let offline_llm = providers.emulators.openai.as_ref().map(|(emu, _)| emu);
    let result: anyhow::Result<()> = async {
        for (i, (utterance, frames)) in config.script.iter().zip(recordings).enumerate() {
            // At least one new reply (a real LLM may speak before a tool call, giving two replies to a line),
            // and as many in total as the scenario expects.
            let before = progress.borrow().agent_replies;
            let expected = config
                .scenario
                .replies_after_line
                .get(i)
                .copied()
                .unwrap_or(i + 1)
                .max(before + 1);
            if let Some(dg) = &providers.emulators.deepgram {
                dg.script_transcript(utterance.text.clone());
            }
            if let Some(emu) = offline_llm {
                for script in (config.scenario.offline_llm)(i)? {
                    emu.push_chat(script);
                }
            }
            let (done_tx, done_rx) = oneshot::channel();
            line_tx
                .send((frames, done_tx))
                .await
                .context("the scripted client stopped")?;
            done_rx.await.context("the scripted client stopped")?;
            let wait = progress.wait_for(|p| {
                p.closed
                    || (p.user_turns > i
                        && p.agent_replies >= expected
                        && p.state == AgentState::Listening)
            });
            let reached = tokio::time::timeout(config.reply_timeout, wait).await;
            flush_lines(&mut on_line);
            match reached {
                Err(_) => bail!(
                    "no reply to turn {} ({:?}) within {:?}",
                    i + 1,
                    utterance.text,
                    config.reply_timeout
                ),
                Ok(Err(_)) => bail!("the session's event stream ended early"),
                Ok(Ok(p)) if p.closed => bail!("the session closed during turn {}", i + 1),
                Ok(Ok(_)) => {}
            }
            tokio::time::sleep(PAUSE_BETWEEN_TURNS).await;
        }
        Ok(())
    }
    .await;

    // Goodbye: the client says `bye`, the transport closes the session.
    drop(line_tx);
    match mic.await {
        Ok(Ok(mut ws)) => {
            let _ = ws.send(&ClientMessage::Bye).await;
        }
        Ok(Err(e)) => tracing_free_note(&collector, format!("client send failed: {e}")),
        Err(e) => tracing_free_note(&collector, format!("client task failed: {e}")),
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), progress.wait_for(|p| p.closed)).await;
    let received = tokio::time::timeout(Duration::from_secs(5), listening)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let _ = session.close().await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    flush_lines(&mut on_line);
    result?;

    let lines = collector
        .lines
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let report = write_outputs(config, lines, &received, started.elapsed())?;
    let expected_replies = config
        .scenario
        .replies_after_line
        .last()
        .copied()
        .unwrap_or(config.script.len());
    check_complete(&report, config.script.len(), expected_replies)?;
    Ok(report)
}

/// Records a client-side problem in the transcript (the demo has no logger).
fn tracing_free_note(collector: &Collector, note: String) {
    collector.push(Line::Error(note));
}

/// Writes the agent audio (as the client received it) and the transcript under [`DemoConfig::out_dir`].
fn write_outputs(
    config: &DemoConfig,
    lines: Vec<Line>,
    received: &Received,
    wall: Duration,
) -> anyhow::Result<DemoReport> {
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    let agent_audio = received.audio.iter().map(AudioFrame::duration).sum();
    let audio_path = config.out_dir.join("agent.wav");
    write_wav(&audio_path, &received.audio)
        .with_context(|| format!("writing {}", audio_path.display()))?;
    let transcript_path = config.out_dir.join("transcript.txt");
    let text: String = lines
        .iter()
        .map(|l| format!("{}\n", crate::render::line(l)))
        .collect();
    std::fs::write(&transcript_path, text)
        .with_context(|| format!("writing {}", transcript_path.display()))?;
    Ok(DemoReport {
        lines,
        audio_path,
        transcript_path,
        agent_audio,
        client_transcript: received.agent_text.clone(),
        client_tool_events: received.tool_events,
        client_close: received.closed.clone(),
        wall,
    })
}

/// A conversation is complete when every line became a user turn and the agent gave every reply expected.
fn check_complete(
    report: &DemoReport,
    expected_turns: usize,
    expected_replies: usize,
) -> anyhow::Result<()> {
    let users = report.user_turns().len();
    let replies = report.agent_replies().len();
    if users < expected_turns || replies < expected_replies {
        bail!(
            "the conversation did not complete: {users} of {expected_turns} user turns, {replies} of \
             {expected_replies} agent replies"
        );
    }
    Ok(())
}

/// Runs [`run_conversation`] with the providers `config` asks for, started for the occasion.
///
/// # Errors
/// As [`run_conversation`], and when a provider cannot start.
pub async fn run(
    config: &DemoConfig,
    on_line: impl FnMut(&Line) + Send,
) -> anyhow::Result<DemoReport> {
    let providers = Providers::start(config.providers).await?;
    run_conversation(config, &providers, on_line).await
}
