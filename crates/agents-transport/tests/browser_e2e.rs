//! End to end in a real browser: headless Chromium opens the page served by [`agents_transport::web::router`],
//! captures a fake microphone fed from a committed speech WAV, and talks the WebSocket protocol (v1) to a scripted
//! server peer on 127.0.0.1. The test asserts what the page really did:
//!
//! - it sent a protocol hello and then 20 ms PCM16 chunks at 16 kHz carrying the speech of the WAV;
//! - it received and played every agent audio frame (played = enqueued, `playback finished` at the full duration),
//!   and it shows the live user/agent transcripts, agent state, the tool call and the turn's latency metrics;
//! - on `clear` (the server interrupting the agent while it speaks) it dropped its buffered audio at once and its
//!   playback position froze (every enqueued sample is either played or dropped; nothing plays afterwards).
//!
//! The page reports its status with `client_report` messages (`?report=1`, docs/transports/browser.md).
//!
//! Needs a Chromium (`chromium`, `chromium-browser`, `google-chrome`, or the path in `AGENTS_BROWSER`). Without
//! one the test prints SKIP and passes, unless `CI=true`, where it fails.

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
    fn launch(binary: &Path, url: &str, wav: &Path) -> TestResult<Self> {
        use std::os::unix::process::CommandExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let profile =
            std::env::temp_dir().join(format!("agents-browser-e2e-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).map_err(|e| format!("profile dir: {e}"))?;
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
    let Some(binary) = find_browser() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true but no Chromium found (chromium, chromium-browser, google-chrome, or AGENTS_BROWSER)"
            );
        }
        eprintln!("SKIP browser_e2e: no Chromium found (install the Debian package `chromium`)");
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
    let browser =
        Browser::launch(&binary, &url, &fixture("speech_pauses_16k.wav")).expect("launch browser");

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
    let sent2 = peer.stream_audio(agent, &[], Some(75)).await?; // 1.5 s of a 6.6 s reply
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
