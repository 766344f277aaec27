//! End to end in a real browser: headless Chromium opens the page served by [`agents_transport::web::router`] and
//! captures a fake microphone fed from a committed speech WAV.
//!
//! `browser_page_talks_plays_and_stops_on_interrupt` talks to a scripted protocol peer (v1) on 127.0.0.1 and asserts
//! what the page really did, from its `client_report` messages (`?report=1`, docs/transports/browser.md):
//!
//! - it sent a protocol hello and then 20 ms PCM16 chunks at 16 kHz carrying the speech of the WAV;
//! - it received and played every agent audio frame (played = enqueued, `playback finished` at the full duration),
//!   and it shows the live user/agent transcripts, agent state, the tool call and the turn's latency metrics;
//! - on `clear` (the server interrupting the agent while it speaks) it dropped its buffered audio at once and its
//!   playback position froze (every enqueued sample is either played or dropped; nothing plays afterwards).
//!
//! `browser_page_with_the_transport_server` runs the real `TransportServer` with an `AgentSession` over the testkit
//! fakes: the page's speech gets a spoken reply whose transcript arrives in step with playback, and the page's
//! Interrupt path stops playback. It reads `window.__agentTest` through the DevTools protocol.
//!
//! Needs a Chromium (`chromium`, `chromium-browser`, `google-chrome`, or the path in `AGENTS_BROWSER`). Without
//! one the tests print SKIP and pass, unless `CI=true`, where they fail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agents_transport::web;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

/// Upper bound for any single wait (browser start-up on a loaded machine included).
const STEP_TIMEOUT: Duration = Duration::from_secs(45);
/// Upper bound for the whole conversation.
const TEST_TIMEOUT: Duration = Duration::from_secs(150);
const OUT_RATE: usize = 24_000;
const FRAME_SAMPLES: usize = OUT_RATE / 50; // 20 ms
/// How far ahead of the wall clock agent audio is sent (the protocol's lead limit).
const LEAD: Duration = Duration::from_millis(200);

type TestResult<T = ()> = Result<T, String>;

fn fixture(name: &str) -> PathBuf {
    // The speech fixtures of the VAD tests (espeak-ng utterances with known pauses; make_fixtures.sh there).
    // Canonical: Chromium's fake capture device does not open a path with `..` components.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/silero/tests/fixtures")
        .join(name);
    path.canonicalize().unwrap_or(path)
}

/// The browser to run; `None` (after printing SKIP) when there is none, a panic under `CI=true`.
fn browser_or_skip() -> Option<PathBuf> {
    let found = find_browser();
    if found.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but no Chromium found (chromium, chromium-browser, google-chrome, or AGENTS_BROWSER)"
        );
        eprintln!("SKIP browser_e2e: no Chromium found (install the Debian package `chromium`)");
    }
    found
}

fn find_browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AGENTS_BROWSER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// The browser process (its own process group) and its temporary profile; killed and removed on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl Browser {
    /// A fresh temporary profile directory (also the place for the test's own files).
    fn new_profile() -> TestResult<PathBuf> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let profile =
            std::env::temp_dir().join(format!("agents-browser-e2e-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).map_err(|e| format!("profile dir: {e}"))?;
        Ok(profile)
    }

    fn launch(
        binary: &Path,
        url: &str,
        wav: &Path,
        profile: PathBuf,
        extra: &[&str],
    ) -> TestResult<Self> {
        use std::os::unix::process::CommandExt;
        let log = profile.join("browser.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("browser log: {e}"))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("browser log: {e}"))?;
        let child = Command::new(binary)
            .arg("--headless=new")
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg("--no-default-browser-check")
            .arg("--disable-extensions")
            .arg("--mute-audio")
            .arg("--use-fake-ui-for-media-stream")
            .arg("--use-fake-device-for-media-stream")
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                wav.display()
            ))
            .arg("--autoplay-policy=no-user-gesture-required")
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Self {
            child,
            profile,
            log,
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium forks renderer, GPU and audio processes: kill the whole group, then reap the leader.
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The server end of one page connection: a scripted agent, plus what the page sent.
struct Peer {
    ws: WebSocket,
    mic: Vec<i16>,
    mic_chunk_sizes: Vec<usize>,
    reports: Vec<Value>,
    playback: Vec<Value>,
    others: Vec<Value>,
}

impl Peer {
    fn record(&mut self, msg: Message) -> TestResult {
        match msg {
            Message::Binary(b) => {
                self.mic_chunk_sizes.push(b.len());
                self.mic
                    .extend(b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str())
                    .map_err(|e| format!("page sent bad JSON: {e}"))?;
                match v["type"].as_str() {
                    Some("client_report") => self.reports.push(v),
                    Some("playback") => self.playback.push(v),
                    _ => self.others.push(v),
                }
            }
            Message::Close(c) => return Err(format!("page closed the socket: {c:?}")),
            _ => {}
        }
        Ok(())
    }

    async fn recv(&mut self, deadline: Instant) -> TestResult<Message> {
        match tokio::time::timeout_at(deadline, self.ws.recv()).await {
            Err(_) => Err("timed out waiting for the page".into()),
            Ok(None) => Err("page socket ended".into()),
            Ok(Some(Err(e))) => Err(format!("page socket error: {e}")),
            Ok(Some(Ok(m))) => Ok(m),
        }
    }

    async fn send(&mut self, v: Value) -> TestResult {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// Reads (and records) messages until `done` holds, within [`STEP_TIMEOUT`].
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Peer) -> bool) -> TestResult {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !done(self) {
            let msg = self
                .recv(deadline)
                .await
                .map_err(|e| format!("{e} ({what}); last report: {}", self.last_report()))?;
            self.record(msg)?;
        }
        Ok(())
    }

    /// Reads (and records) messages for `d`.
    async fn pump_for(&mut self, d: Duration) -> TestResult {
        let end = Instant::now() + d;
        loop {
            match tokio::time::timeout_at(end, self.ws.recv()).await {
                Err(_) => return Ok(()),
                Ok(Some(Ok(m))) => self.record(m)?,
                Ok(other) => return Err(format!("page socket ended: {other:?}")),
            }
        }
    }

    fn last_report(&self) -> String {
        self.reports
            .last()
            .map(|r| r["report"].to_string())
            .unwrap_or_else(|| "none".into())
    }

    fn report(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.reports.last().map(|r| &r["report"]).unwrap_or(&NULL)
    }

    /// Sends `samples` as 20 ms PCM16 frames paced in real time (at most [`LEAD`] ahead), interleaving the
    /// `(frame index, message)` events; keeps recording what the page sends. Stops early after `stop_after`
    /// frames when given. Returns the number of frames sent.
    async fn stream_audio(
        &mut self,
        samples: &[i16],
        events: &[(usize, Value)],
        stop_after: Option<usize>,
    ) -> TestResult<usize> {
        let frames: Vec<&[i16]> = samples.chunks(FRAME_SAMPLES).collect();
        let n = stop_after.map_or(frames.len(), |s| s.min(frames.len()));
        let start = Instant::now() + LEAD;
        let mut next_event = 0;
        for (i, frame) in frames.iter().take(n).enumerate() {
            let due = (start + Duration::from_millis(20 * i as u64))
                .checked_sub(LEAD)
                .unwrap_or(start);
            loop {
                tokio::select! {
                    _ = sleep_until(due) => break,
                    m = self.ws.recv() => match m {
                        Some(Ok(m)) => self.record(m)?,
                        other => return Err(format!("page socket ended while streaming: {other:?}")),
                    },
                }
            }
            while next_event < events.len() && events[next_event].0 <= i {
                let ev = events[next_event].1.clone();
                self.send(ev).await?;
                next_event += 1;
            }
            let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.ws
                .send(Message::Binary(bytes.into()))
                .await
                .map_err(|e| format!("send audio: {e}"))?;
        }
        for (_, ev) in &events[next_event..] {
            self.send(ev.clone()).await?;
        }
        Ok(n)
    }
}

fn max_window_rms(samples: &[i16], window: usize) -> f64 {
    samples
        .chunks(window)
        .map(|w| {
            (w.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / w.len() as f64).sqrt()
        })
        .fold(0.0, f64::max)
}

fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))?
        .as_f64()
        .map(|f| f as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_page_talks_plays_and_stops_on_interrupt() {
    let Some(binary) = browser_or_skip() else {
        return;
    };

    let (sock_tx, mut sock_rx) = mpsc::channel::<WebSocket>(1);
    let app = web::router().route(
        "/ws",
        get(move |upgrade: WebSocketUpgrade| {
            let tx = sock_tx.clone();
            async move {
                upgrade.on_upgrade(move |socket| async move {
                    let _ = tx.send(socket).await;
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("http://{addr}/?autostart=1&report=1");
    let profile = Browser::new_profile().expect("profile dir");
    let browser = Browser::launch(
        &binary,
        &url,
        &fixture("speech_pauses_16k.wav"),
        profile,
        &[],
    )
    .expect("launch browser");

    let outcome = timeout(TEST_TIMEOUT, async {
        let ws = timeout(STEP_TIMEOUT, sock_rx.recv())
            .await
            .map_err(|_| "the page never opened /ws".to_string())?
            .ok_or("server gone")?;
        eprintln!("browser_e2e: the page connected");
        scenario(ws).await
    })
    .await
    .unwrap_or_else(|_| Err(format!("the whole test took longer than {TEST_TIMEOUT:?}")));

    let log = browser.log_tail();
    drop(browser);
    server.abort();
    if let Err(e) = outcome {
        panic!("{e}\n--- browser log (tail) ---\n{log}");
    }
}

async fn scenario(ws: WebSocket) -> TestResult {
    let mut peer = Peer {
        ws,
        mic: Vec::new(),
        mic_chunk_sizes: Vec::new(),
        reports: Vec::new(),
        playback: Vec::new(),
        others: Vec::new(),
    };

    // 1. The hello.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let hello = match peer.recv(deadline).await? {
        Message::Text(t) => {
            serde_json::from_str::<Value>(t.as_str()).map_err(|e| format!("hello JSON: {e}"))?
        }
        other => return Err(format!("first message is not a text hello: {other:?}")),
    };
    if hello["type"] != "hello" || hello["protocol"] != 1 {
        return Err(format!("bad hello: {hello}"));
    }
    if hello["input"] != json!({"sample_rate": 16000, "channels": 1})
        || hello["output"] != json!({"sample_rate": 24000, "channels": 1})
    {
        return Err(format!("unexpected formats in hello: {hello}"));
    }
    peer.send(json!({"type": "ready", "protocol": 1, "session_id": "e2e-session",
        "input": {"sample_rate": 16000, "channels": 1}, "output": {"sample_rate": 24000, "channels": 1}, "frame_ms": 20}))
        .await?;

    // 2. Microphone audio: 20 ms PCM16 chunks carrying the WAV's speech (its utterances peak at ~20000; the
    // loudest 20 ms window of silence-only capture would stay near zero).
    peer.until("speech from the fake microphone", |p| {
        p.mic.len() >= 16_000 * 3 && max_window_rms(&p.mic, 320) > 1000.0
    })
    .await?;
    if let Some(bad) = peer.mic_chunk_sizes.iter().find(|&&n| n != 640) {
        return Err(format!(
            "mic chunk of {bad} bytes, expected 640 (20 ms at 16 kHz mono PCM16)"
        ));
    }

    eprintln!("browser_e2e: speech received from the page's microphone");
    // 3. Turn 1: transcripts, a tool call, a short spoken reply played to the end, its metrics.
    let agent = agents_audio::read_wav(fixture("speech_pauses_24k.wav"))
        .map_err(|e| format!("agent wav: {e}"))?;
    let agent = agent.data();
    if agent.len() < OUT_RATE * 6 {
        return Err("agent WAV shorter than expected".into());
    }
    // "How are you today?" is the second utterance: 51892..66941 at 16 kHz.
    let reply = &agent[77_838..100_411];
    for ev in [
        json!({"type": "user_state", "state": "speaking"}),
        json!({"type": "user_transcript", "text": "Hello there", "final": false}),
        json!({"type": "user_transcript", "text": "Hello there, this is a test.", "final": true, "language": "en"}),
        json!({"type": "user_state", "state": "listening"}),
        json!({"type": "agent_state", "state": "thinking"}),
        json!({"type": "tool", "name": "lookup_weather", "arguments": {"city": "Paris"}, "output": "sunny", "is_error": false}),
        json!({"type": "speech", "speech_id": "sp_1", "event": "started", "interrupted": false}),
        json!({"type": "agent_state", "state": "speaking"}),
    ] {
        peer.send(ev).await?;
    }
    let words = ["How ", "are ", "you ", "today?"];
    let events: Vec<(usize, Value)> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            (
                i * 10,
                json!({"type": "agent_transcript", "speech_id": "sp_1", "text": w, "final": false}),
            )
        })
        .collect();
    let sent1 = peer.stream_audio(reply, &events, None).await?;
    for ev in [
        json!({"type": "agent_transcript", "speech_id": "sp_1", "text": "", "final": true}),
        json!({"type": "speech", "speech_id": "sp_1", "event": "done", "interrupted": false}),
        json!({"type": "agent_state", "state": "listening"}),
        json!({"type": "metrics", "turn": {"speech_id": "sp_1", "end_of_utterance_ms": 310.0, "transcription_ms": 120.0,
            "llm_ttft_ms": 250.0, "tts_ttfb_ms": 180.0, "e2e_ms": 860.0}}),
    ] {
        peer.send(ev).await?;
    }
    let reply_ms = (reply.len() * 1000 / OUT_RATE) as u64;
    peer.until("playback finished of sp_1", |p| {
        p.playback
            .iter()
            .any(|m| m["speech_id"] == "sp_1" && m["finished"] == true)
    })
    .await?;
    let fin = peer
        .playback
        .iter()
        .find(|m| m["speech_id"] == "sp_1" && m["finished"] == true)
        .cloned()
        .unwrap_or_default();
    let pos = fin["position_ms"]
        .as_u64()
        .ok_or_else(|| format!("playback without position: {fin}"))?;
    if pos.abs_diff(reply_ms) > 25 {
        return Err(format!(
            "sp_1 finished at {pos} ms of playback, its audio lasts {reply_ms} ms"
        ));
    }
    if !peer
        .playback
        .iter()
        .filter(|m| m["speech_id"] == "sp_1")
        .all(|m| {
            m["position_ms"]
                .as_u64()
                .is_some_and(|p| p <= reply_ms + 25)
        })
    {
        return Err(format!(
            "a playback position beyond the audio: {:?}",
            peer.playback
        ));
    }
    // The page reports when its player drains (also on an underrun mid-speech, so wait for the report
    // after the last frame): then everything it received must have been played.
    peer.until("the page's report that its player drained", |p| {
        p.reports.last().is_some_and(|r| {
            r["reason"] == "drained" && r["report"]["audio"]["frames"] == sent1 as u64
        })
    })
    .await?;
    let r = peer.report().clone();
    if r["audio"]["frames"] != sent1 as u64
        || u64_at(&r, &["playback", "played"]) != Some(reply.len() as u64)
    {
        return Err(format!(
            "page did not receive/play all {sent1} frames ({} samples): {r}",
            reply.len()
        ));
    }
    if r["agentTranscripts"]["sp_1"] != "How are you today?"
        || !r["agentFinal"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("sp_1")))
    {
        return Err(format!("agent transcript not shown: {r}"));
    }
    if r["userTranscripts"] != json!(["Hello there, this is a test."]) {
        return Err(format!("user transcript not shown: {r}"));
    }
    if r["agentStates"] != json!(["thinking", "speaking", "listening"])
        || r["userStates"] != json!(["speaking", "listening"])
    {
        return Err(format!("states not tracked: {r}"));
    }
    if r["tools"][0]["name"] != "lookup_weather" || r["metrics"][0]["e2e_ms"] != 860.0 {
        return Err(format!("tool call or metrics not shown: {r}"));
    }

    eprintln!("browser_e2e: turn 1 received, shown and played");
    // 4. Turn 2: a long reply, interrupted while it plays. `clear` must stop playback at once.
    for ev in [
        json!({"type": "agent_state", "state": "thinking"}),
        json!({"type": "speech", "speech_id": "sp_2", "event": "started", "interrupted": false}),
        json!({"type": "agent_state", "state": "speaking"}),
    ] {
        peer.send(ev).await?;
    }
    let paced = peer.stream_audio(agent, &[], Some(75)).await?; // 1.5 s of a 6.6 s reply
    // Then 200 ms at once, right before the clear: the page has queued audio to drop however late this (loaded)
    // test machine ran the pacing above.
    for frame in agent[paced * FRAME_SAMPLES..]
        .chunks(FRAME_SAMPLES)
        .take(10)
    {
        let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
        peer.ws
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| format!("send audio: {e}"))?;
    }
    let sent2 = paced + 10;
    let enqueued_total = (reply.len() + sent2 * FRAME_SAMPLES) as u64;
    let clears_before = peer.reports.len();
    for ev in [
        json!({"type": "clear", "speech_id": "sp_2"}),
        json!({"type": "speech", "speech_id": "sp_2", "event": "done", "interrupted": true}),
        json!({"type": "agent_state", "state": "listening"}),
    ] {
        peer.send(ev).await?;
    }
    peer.until("the page's report of the clear", |p| {
        p.reports[clears_before..]
            .iter()
            .any(|r| r["reason"] == "clear")
    })
    .await?;
    let at_clear = peer.reports[clears_before..]
        .iter()
        .find(|r| r["reason"] == "clear")
        .map(|r| r["report"].clone())
        .unwrap_or_default();
    let clear = &at_clear["clears"][0];
    let dropped = clear["droppedSamples"]
        .as_u64()
        .ok_or_else(|| format!("clear not recorded: {at_clear}"))?;
    let played_at_clear = clear["playedAtClear"].as_u64().unwrap_or(0);
    if dropped == 0 || clear["bufferedAfter"] != 0 {
        return Err(format!("clear did not drop the buffered audio: {clear}"));
    }
    if u64_at(&at_clear, &["playback", "enqueued"]) != Some(enqueued_total)
        || played_at_clear + dropped != enqueued_total
    {
        return Err(format!(
            "played ({played_at_clear}) + dropped ({dropped}) != received ({enqueued_total}): {at_clear}"
        ));
    }
    // Nothing plays after the clear: the position stays frozen over the next reports.
    peer.pump_for(Duration::from_millis(800)).await?;
    let later = peer.report();
    if u64_at(later, &["playback", "played"]) != Some(played_at_clear)
        || later["playback"]["playing"] != false
        || later["playback"]["buffered"] != 0
    {
        return Err(format!(
            "playback moved after the clear (frozen at {played_at_clear}): {later}"
        ));
    }
    let fin2 = peer
        .playback
        .iter()
        .find(|m| m["speech_id"] == "sp_2" && m["finished"] == true)
        .cloned()
        .ok_or("no final playback message for sp_2")?;
    let expected_ms = (played_at_clear - reply.len() as u64) * 1000 / OUT_RATE as u64;
    let sent2_ms = (sent2 * 20) as u64;
    if fin2["position_ms"]
        .as_u64()
        .is_none_or(|p| p.abs_diff(expected_ms) > 1 || p >= sent2_ms)
    {
        return Err(format!(
            "sp_2 interrupted position {fin2} (expected {expected_ms} ms of {sent2_ms} ms sent)"
        ));
    }
    if !peer.others.is_empty() {
        return Err(format!(
            "unexpected messages from the page: {:?}",
            peer.others
        ));
    }

    peer.send(json!({"type": "close", "reason": "test_done"}))
        .await?;
    let _ = peer.ws.send(Message::Close(None)).await;
    Ok(())
}

// ---- The page against the real server: TransportServer + AgentSession over the testkit fakes ----

/// A minimal Chrome DevTools Protocol client: reads the page's `window.__agentTest` and calls into it.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    /// Connects to the browser's DevTools endpoint (announced in `<profile>/DevToolsActivePort` when Chromium runs
    /// with `--remote-debugging-port=0`) and attaches to the page.
    async fn attach(profile: &Path) -> TestResult<Self> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let active = profile.join("DevToolsActivePort");
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.trim().to_owned(), path.trim().to_owned());
                }
            }
            if Instant::now() > deadline {
                return Err("Chromium never wrote DevToolsActivePort".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
            .await
            .map_err(|e| format!("DevTools connect: {e}"))?;
        let mut cdp = Self {
            ws,
            next_id: 0,
            session: None,
        };
        let page = loop {
            let targets = cdp.call("Target.getTargets", json!({})).await?;
            let page = targets["targetInfos"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["targetId"].as_str())
                .map(str::to_owned);
            if let Some(page) = page {
                break page;
            }
            if Instant::now() > deadline {
                return Err("no page target in the browser".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let attached = cdp
            .call(
                "Target.attachToTarget",
                json!({"targetId": page, "flatten": true}),
            )
            .await?;
        cdp.session = attached["sessionId"].as_str().map(str::to_owned);
        if cdp.session.is_none() {
            return Err(format!("attach without a session: {attached}"));
        }
        Ok(cdp)
    }

    async fn call(&mut self, method: &str, params: Value) -> TestResult<Value> {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message as CdpMessage;
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(CdpMessage::Text(msg.to_string().into()))
            .await
            .map_err(|e| format!("DevTools send: {e}"))?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("DevTools: no answer to {method}"))?;
            let Some(Ok(CdpMessage::Text(t))) = m else {
                match m {
                    Some(Ok(_)) => continue,
                    other => return Err(format!("DevTools socket ended: {other:?}")),
                }
            };
            let v: Value =
                serde_json::from_str(t.as_str()).map_err(|e| format!("DevTools JSON: {e}"))?;
            if v["id"] != id {
                continue; // an event
            }
            if !v["error"].is_null() {
                return Err(format!("DevTools {method}: {}", v["error"]));
            }
            return Ok(v["result"].clone());
        }
    }

    /// Evaluates `expression` in the page and returns its JSON value.
    async fn eval(&mut self, expression: &str) -> TestResult<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await?;
        if !r["exceptionDetails"].is_null() {
            return Err(format!("page threw: {}", r["exceptionDetails"]));
        }
        Ok(r["result"]["value"].clone())
    }

    async fn status(&mut self) -> TestResult<Value> {
        let text = self
            .eval("JSON.stringify(window.__agentTest || null)")
            .await?;
        serde_json::from_str(text.as_str().unwrap_or("null"))
            .map_err(|e| format!("status JSON: {e}"))
    }

    /// Polls the page status until `done` holds, within [`STEP_TIMEOUT`].
    async fn wait(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> TestResult<Value> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let st = self.status().await?;
            if done(&st) {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}; page status: {st}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The long reply of the fake LLM (16 words, 4.8 s of fake speech): long enough to interrupt.
const LONG_REPLY: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";

fn fake_session() -> (agents_pipeline::AgentSession, agents_core::Agent) {
    use agents_testkit::fakes::llm::FakeResponse;
    use agents_testkit::{FakeLlm, FakeStt, FakeTts, FakeVad};
    use std::sync::Arc;
    let llm = FakeLlm::new().with_responder(|_| FakeResponse::text(LONG_REPLY));
    let session = agents_pipeline::AgentSession::builder()
        .stt(Arc::new(
            FakeStt::new().with_transcripts(["what is the weather"]),
        ))
        .vad(Arc::new(FakeVad::energy()))
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .options(agents_pipeline::SessionOptions::default())
        .build();
    (session, agents_core::Agent::new("You are a test agent."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_page_with_the_transport_server() {
    let Some(binary) = browser_or_skip() else {
        return;
    };
    let server = agents_transport::server::TransportServer::builder(|_req| async {
        Ok::<_, std::convert::Infallible>(fake_session())
    })
    .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let app = web::router().merge(server.router());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve_router(listener, app, async move {
                    let _ = stopped.await;
                })
                .await
        })
    };

    // The microphone says one utterance ("Hello there, this is a test.") then stays silent: the fixture's first
    // utterance followed by 30 s of silence, so the fake device's looping never starts a second user turn.
    let profile = Browser::new_profile().expect("profile dir");
    let wav = profile.join("one_utterance_16k.wav");
    let speech = agents_audio::read_wav(fixture("speech_pauses_16k.wav")).expect("fixture");
    let one = speech.data()[..37_492 + 8_000].to_vec();
    let mut samples = one;
    samples.extend(std::iter::repeat_n(0i16, 16_000 * 30));
    let frame = agents_audio::AudioFrame::new(samples, speech.sample_rate(), 1).expect("frame");
    agents_audio::write_wav(&wav, &[frame]).expect("write wav");

    let url = format!("http://{addr}/?autostart=1");
    let browser = Browser::launch(
        &binary,
        &url,
        &wav,
        profile.clone(),
        &["--remote-debugging-port=0"],
    )
    .expect("launch browser");

    let outcome = timeout(TEST_TIMEOUT, async {
        let mut cdp = Cdp::attach(&profile).await?;
        server_scenario(&mut cdp).await
    })
    .await
    .unwrap_or_else(|_| Err(format!("the whole test took longer than {TEST_TIMEOUT:?}")));

    let log = browser.log_tail();
    drop(browser);
    let _ = stop.send(());
    let _ = timeout(STEP_TIMEOUT, serving).await;
    if let Err(e) = outcome {
        panic!("{e}\n--- browser log (tail) ---\n{log}");
    }
}

async fn server_scenario(cdp: &mut Cdp) -> TestResult {
    // The session hears the utterance, transcribes it, thinks, and speaks its reply into the page's player.
    let st = cdp
        .wait("the agent's reply playing in the page", |s| {
            s["phase"] == "ready"
                && s["userTranscripts"] == json!(["what is the weather"])
                && s["agentStates"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!("speaking")))
                && u64_at(s, &["playback", "played"]).is_some_and(|p| p >= OUT_RATE as u64)
        })
        .await?;
    eprintln!("browser_e2e: the agent's reply is playing in the page");
    if u64_at(&st, &["mic", "peak"]).is_none_or(|p| p < 1000) {
        return Err(format!("the microphone audio was silent: {st}"));
    }
    let agent_text: String = st["agentTranscripts"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !agent_text.starts_with("one") || !LONG_REPLY.starts_with(agent_text.trim_end()) {
        return Err(format!(
            "agent transcript not received in step: {agent_text:?}"
        ));
    }
    if agent_text.trim_end() == LONG_REPLY {
        return Err(format!(
            "the whole transcript arrived before its audio played: {st}"
        ));
    }

    // The user presses Interrupt while the agent speaks: the server interrupts and sends `clear`.
    cdp.eval("window.__agentClient.interrupt(), true").await?;
    let st = cdp
        .wait("the clear applied by the page", |s| {
            s["clears"][0]["droppedSamples"].is_u64()
        })
        .await?;
    let clear = &st["clears"][0];
    let played_at_clear = clear["playedAtClear"].as_u64().unwrap_or(0);
    let dropped = clear["droppedSamples"].as_u64().unwrap_or(0);
    if clear["bufferedAfter"] != 0 {
        return Err(format!("the clear left audio queued: {clear}"));
    }
    // Every sample received is played or dropped; the reply (4.8 s) was cut well before its end.
    let enqueued = u64_at(&st, &["playback", "enqueued"]).unwrap_or(0);
    if played_at_clear + dropped != enqueued || played_at_clear >= (OUT_RATE as u64) * 48 / 10 {
        return Err(format!(
            "played {played_at_clear} + dropped {dropped} vs received {enqueued}: {st}"
        ));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = cdp.status().await?;
    if u64_at(&later, &["playback", "played"]) != Some(played_at_clear)
        || later["playback"]["buffered"] != 0
        || later["audio"]["frames"] != st["audio"]["frames"]
    {
        return Err(format!(
            "playback went on after the clear (frozen at {played_at_clear}): {later}"
        ));
    }
    if !later["speeches"].as_array().is_some_and(|a| {
        a.iter()
            .any(|s| s["event"] == "done" && s["interrupted"] == true)
    }) {
        return Err(format!("no interrupted speech reported: {later}"));
    }
    if later["agentStates"].as_array().and_then(|a| a.last()) != Some(&json!("listening")) {
        return Err(format!("agent not back to listening: {later}"));
    }
    if later["errors"].as_array().is_some_and(|e| !e.is_empty()) {
        return Err(format!("the page saw errors: {later}"));
    }
    eprintln!(
        "browser_e2e: interrupted; dropped {dropped} samples, position frozen at {played_at_clear}"
    );
    Ok(())
}
