//! A scripted Twilio Media Streams client (a "phone") calls the `twilio::router` over 127.0.0.1: it speaks µ-law
//! audio made from a committed speech fixture, presses keys, plays the agent's audio back in real time (echoing
//! marks when their audio has played, as Twilio does, and dropping buffered audio on `clear`), and hangs up.
//! Providers are the testkit fakes (energy VAD, scripted STT, scripted LLM, tone TTS).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use agents_audio::{ResampleQuality, Resampler, SampleRate, read_wav};
use agents_core::chat::{ChatItem, ChatRole};
use agents_core::events::{AgentState, CloseReason, Component, SessionEvent};
use agents_core::{Agent, SessionControl};
use agents_pipeline::interruption::InterruptionOptions;
use agents_pipeline::{AgentSession, EndpointingOptions, SessionOptions};
use agents_testkit::{FakeLlm, FakeResponse, FakeStt, FakeTts, FakeVad};
use agents_transport::twilio::{self, CallInfo, CallSetup, DtmfOptions, TwilioOptions, mulaw};

const SID: &str = "MZ0123456789abcdef";

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ---------------------------------------------------------------------------------------------------------------
// The agent side: a router whose calls are answered by sessions over fakes.

#[derive(Clone, Default)]
struct Calls {
    calls: Arc<Mutex<Vec<(CallInfo, AgentSession)>>>,
    events: Arc<Mutex<Vec<SessionEvent>>>,
}

impl Calls {
    fn session(&self) -> Option<AgentSession> {
        self.calls.lock().unwrap().first().map(|(_, s)| s.clone())
    }
    fn info(&self) -> Option<CallInfo> {
        self.calls.lock().unwrap().first().map(|(i, _)| i.clone())
    }
    /// The session was started by the transport (it reached `listening`).
    fn started(&self) -> bool {
        self.events().iter().any(|e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Listening,
                    ..
                }
            )
        })
    }

    fn events(&self) -> Vec<SessionEvent> {
        self.events.lock().unwrap().clone()
    }
    fn messages(&self) -> Vec<(ChatRole, String, bool)> {
        let Some(session) = self.session() else {
            return Vec::new();
        };
        session
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

struct Agents {
    llm: FakeLlm,
    stt: FakeStt,
    tts: FakeTts,
    options: SessionOptions,
}

async fn serve(agents: Agents, options: TwilioOptions) -> (String, Calls) {
    let calls = Calls::default();
    let recorded = calls.clone();
    let Agents {
        llm,
        stt,
        tts,
        options: session_options,
    } = agents;
    let handler = move |info: CallInfo| {
        let calls = recorded.clone();
        let (llm, stt, tts) = (llm.clone(), stt.clone(), tts.clone());
        let session_options = session_options.clone();
        async move {
            let session = AgentSession::builder()
                .llm(Arc::new(llm))
                .stt(Arc::new(stt))
                .vad(Arc::new(FakeVad::energy().with_min_silence(ms(300))))
                .tts(Arc::new(tts))
                .options(session_options)
                .build();
            let mut events = session.events();
            let log = calls.events.clone();
            tokio::spawn(async move {
                while let Some(e) = events.next().await {
                    log.lock().unwrap().push(e);
                }
            });
            calls.calls.lock().unwrap().push((info, session.clone()));
            Ok::<_, twilio::BoxError>(CallSetup::new(
                session,
                Agent::new("You answer phone calls for a bakery."),
            ))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = twilio::router_with_options(handler, options);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("127.0.0.1:{}", addr.port()), calls)
}

fn options() -> TwilioOptions {
    TwilioOptions::default()
        .with_dtmf(DtmfOptions::default().with_timeout(ms(300)))
        .with_start_timeout(Duration::from_secs(5))
}

fn agents(transcripts: &[&str], answers: &[&str]) -> Agents {
    let mut llm = FakeLlm::new();
    for a in answers {
        llm = llm.push_response(FakeResponse::text(*a));
    }
    Agents {
        llm,
        stt: FakeStt::new()
            .with_transcripts(transcripts.iter().copied())
            .with_min_silence(ms(500)),
        tts: FakeTts::new(),
        options: SessionOptions::default()
            .with_user_away_timeout(None)
            .with_endpointing(EndpointingOptions::default().with_min_delay(ms(200))),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The phone: a Twilio-format client.

#[derive(Debug, Default)]
struct Heard {
    /// Every µ-law byte received in `media` messages, in order (what the caller would hear without clears).
    audio: Vec<u8>,
    /// `media`, `mark:<name>`, `clear`, in order of arrival.
    order: Vec<String>,
    /// Marks echoed back.
    echoed: Vec<String>,
    clears: usize,
    /// Messages that were not valid outbound Media Streams JSON.
    invalid: Vec<String>,
    /// The server closed the socket.
    closed: bool,
}

struct Phone {
    out: mpsc::Sender<Message>,
    heard: Arc<Mutex<Heard>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seq: u64,
    chunk: u64,
    sent_audio: Duration,
}

impl Phone {
    async fn dial(addr: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/twilio"))
            .await
            .unwrap();
        let (mut write, mut read) = ws.split();
        let (out, mut rx) = mpsc::channel::<Message>(256);
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if write.send(m).await.is_err() {
                    break;
                }
            }
        });
        let heard = Arc::new(Mutex::new(Heard::default()));
        let (h, echo) = (heard.clone(), out.clone());
        let reader = tokio::spawn(async move {
            // Twilio's playback: buffered audio plays in real time; a mark is echoed when the audio sent before
            // it has played; `clear` drops the buffer and echoes the pending marks.
            let mut cursor = Instant::now();
            let mut marks: Vec<(String, Instant)> = Vec::new();
            loop {
                let next = marks.first().map(|(_, at)| *at);
                let msg = tokio::select! {
                    m = read.next() => m,
                    _ = async { tokio::time::sleep_until(next.unwrap()).await }, if next.is_some() => {
                        let (name, _) = marks.remove(0);
                        echo_mark(&echo, &h, name).await;
                        continue;
                    }
                };
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        h.lock().unwrap().closed = true;
                        return;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    h.lock().unwrap().invalid.push(text);
                    continue;
                };
                if v["streamSid"] != SID {
                    h.lock().unwrap().invalid.push(text);
                    continue;
                }
                match v["event"].as_str() {
                    Some("media") => {
                        let bytes = BASE64
                            .decode(v["media"]["payload"].as_str().unwrap_or(""))
                            .unwrap();
                        let now = Instant::now();
                        cursor = cursor.max(now) + Duration::from_micros(125) * bytes.len() as u32;
                        let mut g = h.lock().unwrap();
                        g.audio.extend_from_slice(&bytes);
                        g.order.push("media".into());
                    }
                    Some("mark") => {
                        let name = v["mark"]["name"].as_str().unwrap().to_owned();
                        h.lock().unwrap().order.push(format!("mark:{name}"));
                        marks.push((name, cursor.max(Instant::now())));
                    }
                    Some("clear") => {
                        {
                            let mut g = h.lock().unwrap();
                            g.clears += 1;
                            g.order.push("clear".into());
                        }
                        cursor = Instant::now();
                        for (name, _) in std::mem::take(&mut marks) {
                            echo_mark(&echo, &h, name).await;
                        }
                    }
                    _ => h.lock().unwrap().invalid.push(text),
                }
            }
        });
        Self {
            out,
            heard,
            tasks: vec![writer, reader],
            seq: 0,
            chunk: 0,
            sent_audio: Duration::ZERO,
        }
    }

    async fn send(&mut self, v: Value) {
        self.out.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn send_raw(&mut self, m: Message) {
        self.out.send(m).await.unwrap();
    }

    fn next_seq(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }

    async fn connect_and_start(&mut self) {
        self.send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            .await;
        let seq = self.next_seq();
        self.send(json!({
            "event": "start",
            "sequenceNumber": seq,
            "start": {
                "accountSid": "AC0123",
                "streamSid": SID,
                "callSid": "CA0123",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"caller": "+15550100"}
            },
            "streamSid": SID
        }))
        .await;
    }

    /// Sends µ-law audio in 20 ms `media` messages, paced in real time.
    async fn speak(&mut self, audio: &[u8]) {
        let start = Instant::now();
        for (i, chunk) in audio.chunks(160).enumerate() {
            tokio::time::sleep_until(start + ms(20) * i as u32).await;
            self.chunk += 1;
            let seq = self.next_seq();
            let v = json!({
                "event": "media",
                "sequenceNumber": seq,
                "media": {
                    "track": "inbound",
                    "chunk": self.chunk.to_string(),
                    "timestamp": self.sent_audio.as_millis().to_string(),
                    "payload": BASE64.encode(chunk)
                },
                "streamSid": SID
            });
            self.send(v).await;
            self.sent_audio += Duration::from_micros(125) * chunk.len() as u32;
        }
    }

    async fn press(&mut self, digit: &str) {
        let seq = self.next_seq();
        self.send(json!({
            "event": "dtmf",
            "streamSid": SID,
            "sequenceNumber": seq,
            "dtmf": {"track": "inbound_track", "digit": digit}
        }))
        .await;
    }

    async fn hang_up(&mut self) {
        let seq = self.next_seq();
        self.send(json!({
            "event": "stop",
            "sequenceNumber": seq,
            "streamSid": SID,
            "stop": {"accountSid": "AC0123", "callSid": "CA0123"}
        }))
        .await;
    }

    /// Drops the TCP connection without a `stop` or a close frame.
    fn cut(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    fn heard<R>(&self, f: impl FnOnce(&Heard) -> R) -> R {
        f(&self.heard.lock().unwrap())
    }
}

async fn echo_mark(out: &mpsc::Sender<Message>, heard: &Arc<Mutex<Heard>>, name: String) {
    heard.lock().unwrap().echoed.push(name.clone());
    let v =
        json!({"event": "mark", "sequenceNumber": "0", "streamSid": SID, "mark": {"name": name}});
    let _ = out.send(Message::text(v.to_string())).await;
}

/// Waits (real time) until `f` holds; panics with `what` after `limit`.
async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(ms(10)).await;
    }
}

/// The first utterance of the speech fixture ("Hello there, this is a test.", 0.6 s - 2.34 s at 16 kHz) and the
/// pause after it, resampled to 8 kHz and µ-law encoded, followed by `silence` of µ-law silence.
fn caller_speech(silence: Duration) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/silero/tests/fixtures/speech_pauses_16k.wav");
    let wav = read_wav(path).unwrap();
    assert_eq!(wav.sample_rate(), SampleRate::HZ_16000);
    let first = &wav.data()[..46_400];
    let mut r = Resampler::new(
        SampleRate::HZ_16000,
        SampleRate::HZ_8000,
        1,
        ResampleQuality::High,
    )
    .unwrap();
    let mut pcm = Vec::new();
    r.push_into(first, &mut pcm).unwrap();
    r.flush_into(&mut pcm).unwrap();
    let mut bytes = mulaw::encode(&pcm);
    bytes.extend(std::iter::repeat_n(
        0xFF,
        (silence.as_millis() * 8) as usize,
    ));
    bytes
}

fn mulaw_duration(bytes: usize) -> Duration {
    Duration::from_micros(125 * bytes as u64)
}

fn rms(bytes: &[u8]) -> f64 {
    let pcm = mulaw::decode(bytes);
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

fn closes(calls: &Calls) -> Vec<CloseReason> {
    calls
        .events()
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Close { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_speaks_presses_a_key_and_hears_spoken_answers() {
    let first = "We open at nine every morning.";
    let second = "Option five: our opening hours.";
    let agents = agents(&["hello there this is a test"], &[first, second]);
    let stt = agents.stt.clone();
    let (addr, calls) = serve(agents, options()).await;
    let tts = FakeTts::new();
    let mut phone = Phone::dial(&addr).await;
    phone.connect_and_start().await;
    until(ms(2000), "the call's session running", || calls.started()).await;
    let info = calls.info().unwrap();
    assert_eq!(info.stream_sid, SID);
    assert_eq!(info.call_sid.as_deref(), Some("CA0123"));
    assert_eq!(info.custom_parameters["caller"], "+15550100");

    // The caller speaks; the agent answers with audio, then a mark that the phone echoes once played.
    let speech = caller_speech(ms(800));
    phone.speak(&speech).await;
    until(Duration::from_secs(10), "the first answer played", || {
        phone.heard(|h| h.echoed.len() == 1)
    })
    .await;
    // The STT got the caller's audio at the session's input rate (16 kHz), all of it but the resampler's
    // start-up delay.
    let streamed = stt.streamed_audio();
    let spoken = mulaw_duration(speech.len());
    assert!(
        streamed <= spoken && spoken - streamed <= ms(50),
        "STT got {streamed:?} of {spoken:?}"
    );
    let (audio_len, order) = phone.heard(|h| (h.audio.len(), h.order.clone()));
    let expected = tts.audio_duration(first);
    let got = mulaw_duration(audio_len);
    assert!(
        got.abs_diff(expected) <= ms(5),
        "answer audio {got:?}, expected {expected:?}"
    );
    assert!(
        phone.heard(|h| rms(&h.audio)) > 300.0,
        "the answer is not silence"
    );
    // Every media message is 20 ms except possibly the segment's last; the mark comes after the audio.
    assert_eq!(order.last().unwrap(), "mark:agents-seg-1");
    assert!(
        order[..order.len() - 1].iter().all(|e| e == "media"),
        "{order:?}"
    );
    until(Duration::from_secs(5), "2 messages in the history", || {
        calls.messages().len() == 2
    })
    .await;
    let messages = calls.messages();
    assert_eq!(
        messages,
        vec![
            (
                ChatRole::User,
                "hello there this is a test".to_owned(),
                false
            ),
            (ChatRole::Assistant, first.to_owned(), false),
        ]
    );

    // A key press becomes a user message after the DTMF timeout, and the agent answers it.
    phone.press("5").await;
    until(Duration::from_secs(10), "the second answer played", || {
        phone.heard(|h| h.echoed.len() == 2)
    })
    .await;
    until(Duration::from_secs(5), "4 messages in the history", || {
        calls.messages().len() == 4
    })
    .await;
    let messages = calls.messages();
    assert_eq!(messages[2], (ChatRole::User, "DTMF: 5".to_owned(), false));
    assert_eq!(messages[3], (ChatRole::Assistant, second.to_owned(), false));
    let total = phone.heard(|h| mulaw_duration(h.audio.len()));
    let expected = tts.audio_duration(first) + tts.audio_duration(second);
    assert!(
        total.abs_diff(expected) <= ms(10),
        "{total:?} vs {expected:?}"
    );
    assert_eq!(phone.heard(|h| h.clears), 0);
    assert!(phone.heard(|h| h.invalid.clone()).is_empty());

    // Hanging up ends the session as the participant leaving, and the server closes the socket.
    phone.hang_up().await;
    until(Duration::from_secs(5), "the session closed", || {
        !closes(&calls).is_empty()
    })
    .await;
    assert_eq!(closes(&calls), vec![CloseReason::ParticipantDisconnected]);
    until(Duration::from_secs(5), "the socket closed", || {
        phone.heard(|h| h.closed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_the_agent_sends_clear_and_keeps_only_what_was_heard() {
    let long = "Our bakery sells bread, croissants, cakes, pies, cookies and muffins every day of the week.";
    let (addr, calls) = serve(agents(&[], &[long]), options()).await;
    let mut phone = Phone::dial(&addr).await;
    phone.connect_and_start().await;
    until(ms(2000), "the call's session running", || calls.started()).await;
    let session = calls.session().unwrap();
    session
        .generate_reply(agents_core::session::ReplyRequest::new())
        .unwrap();
    // About one second of the answer has played on the phone.
    until(Duration::from_secs(5), "the answer started", || {
        phone.heard(|h| !h.audio.is_empty())
    })
    .await;
    tokio::time::sleep(ms(1000)).await;
    SessionControl::interrupt(&session).await.unwrap();
    until(Duration::from_secs(5), "clear", || {
        phone.heard(|h| h.clears == 1)
    })
    .await;
    until(
        Duration::from_secs(5),
        "the interrupted answer committed",
        || calls.messages().iter().any(|m| m.2),
    )
    .await;
    let messages = calls.messages();
    let (role, text, interrupted) = messages.last().unwrap().clone();
    assert_eq!(role, ChatRole::Assistant);
    assert!(interrupted);
    // FakeTts words last 300 ms: about 3 of the 16 words were heard (the exact cut depends on scheduling).
    let words = text.split_whitespace().count();
    assert!(
        (1..=10).contains(&words),
        "kept {words} of 16 words: {text:?}"
    );
    assert!(long.starts_with(&text), "{text:?}");
    // After `clear`, no more audio of that answer arrives.
    let order = phone.heard(|h| h.order.clone());
    let clear_at = order.iter().position(|e| e == "clear").unwrap();
    assert!(
        order[clear_at + 1..].iter().all(|e| e != "media"),
        "media after clear: {:?}",
        &order[clear_at..]
    );
    phone.hang_up().await;
    until(Duration::from_secs(5), "the session closed", || {
        !closes(&calls).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_reported_and_the_call_goes_on() {
    let (addr, calls) = serve(agents(&[], &["Still here."]), options()).await;
    let mut phone = Phone::dial(&addr).await;
    // Before `start`: ignored without a session.
    phone
        .send(json!({"event": "media", "media": {"payload": "//8="}, "streamSid": SID}))
        .await;
    phone.send_raw(Message::text("{not json")).await;
    phone.connect_and_start().await;
    until(ms(2000), "the call's session running", || calls.started()).await;
    phone.send_raw(Message::text("{not json")).await;
    phone.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    phone
        .send(json!({"event": "transcription", "streamSid": SID}))
        .await;
    phone
        .send(json!({"event": "media", "media": {"payload": "***"}, "streamSid": SID}))
        .await;
    phone
        .send(json!({"event": "dtmf", "dtmf": {"digit": "55"}, "streamSid": SID}))
        .await;
    phone
        .send(json!({"event": "mark", "mark": {}, "streamSid": SID}))
        .await;
    until(Duration::from_secs(5), "six transport errors", || {
        calls
            .events()
            .iter()
            .filter(|e| matches!(e, SessionEvent::Error(err) if err.component == Component::Transport && err.recoverable))
            .count()
            == 6
    })
    .await;
    // The call still works: a key gets an answer.
    phone.press("#").await;
    until(Duration::from_secs(5), "an answer", || {
        phone.heard(|h| h.echoed.len() == 1)
    })
    .await;
    assert_eq!(
        calls.messages()[0],
        (ChatRole::User, "DTMF: #".to_owned(), false)
    );
    assert!(closes(&calls).is_empty(), "the session is still running");
    // Dropping the connection without `stop` also ends the session.
    phone.cut();
    until(Duration::from_secs(5), "the session closed", || {
        !closes(&calls).is_empty()
    })
    .await;
    assert_eq!(closes(&calls), vec![CloseReason::ParticipantDisconnected]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_grouped_until_the_termination_key() {
    let (addr, calls) = serve(
        agents(&[], &["Account found."]),
        TwilioOptions::default()
            .with_dtmf(DtmfOptions::default().with_timeout(Duration::from_secs(30))),
    )
    .await;
    let mut phone = Phone::dial(&addr).await;
    phone.connect_and_start().await;
    until(ms(2000), "the call's session running", || calls.started()).await;
    for key in ["1", "2", "3", "#"] {
        phone.press(key).await;
    }
    // With a 30 s timeout, only `#` can have sent the sequence.
    until(Duration::from_secs(5), "the keys as a user message", || {
        !calls.messages().is_empty()
    })
    .await;
    assert_eq!(
        calls.messages()[0],
        (ChatRole::User, "DTMF: 123#".to_owned(), false)
    );
    phone.hang_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_session_closes_the_stream_is_closed() {
    let (addr, calls) = serve(agents(&[], &[]), options()).await;
    let mut phone = Phone::dial(&addr).await;
    phone.connect_and_start().await;
    until(ms(2000), "the call's session running", || calls.started()).await;
    let session = calls.session().unwrap();
    session.say_text("Goodbye.").unwrap();
    SessionControl::close(&session).await.unwrap();
    until(Duration::from_secs(5), "the socket closed", || {
        phone.heard(|h| h.closed)
    })
    .await;
    // The goodbye was played out before the socket closed.
    let tts = FakeTts::new();
    let heard = phone.heard(|h| mulaw_duration(h.audio.len()));
    assert!(
        heard.abs_diff(tts.audio_duration("Goodbye.")) <= ms(5),
        "{heard:?}"
    );
    until(Duration::from_secs(5), "the Close event", || {
        !closes(&calls).is_empty()
    })
    .await;
    assert_eq!(closes(&calls), vec![CloseReason::UserInitiated]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_start_is_closed_after_the_start_timeout() {
    let (addr, calls) = serve(agents(&[], &[]), options().with_start_timeout(ms(300))).await;
    let mut phone = Phone::dial(&addr).await;
    phone
        .send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        .await;
    until(Duration::from_secs(5), "the socket closed", || {
        phone.heard(|h| h.closed)
    })
    .await;
    assert!(calls.session().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_media_format_is_refused() {
    let (addr, calls) = serve(agents(&[], &[]), options()).await;
    let mut phone = Phone::dial(&addr).await;
    phone
        .send(json!({
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "streamSid": SID,
                "mediaFormat": {"encoding": "audio/x-alaw", "sampleRate": 8000, "channels": 1}
            },
            "streamSid": SID
        }))
        .await;
    until(Duration::from_secs(5), "the socket closed", || {
        phone.heard(|h| h.closed)
    })
    .await;
    assert!(
        calls.session().is_none(),
        "no session for an undecodable call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voice_webhook_answers_with_a_connect_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, _calls) = serve(agents(&[], &[]), options()).await;
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"POST /twilio/voice HTTP/1.1\r\nHost: agent.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\nConnection: close\r\n\r\nCallSid=CA0123",
    )
    .await
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: text/xml"),
        "{response}"
    );
    assert!(
        response.ends_with(
            "<Response><Connect><Stream url=\"wss://agent.example.com/twilio\"/></Connect></Response>"
        ),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_talking_over_the_agent_interrupts_it() {
    let long = "Our bakery sells bread, croissants, cakes, pies, cookies and muffins every day of the week.";
    let mut agents = agents(&["hello there this is a test"], &["Sure, go ahead."]);
    agents.options = agents
        .options
        .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None));
    let (addr, calls) = serve(agents, options()).await;
    let mut phone = Phone::dial(&addr).await;
    phone.connect_and_start().await;
    until(ms(2000), "the call's session running", || calls.started()).await;
    calls.session().unwrap().say_text(long).unwrap();
    until(Duration::from_secs(5), "the agent speaking", || {
        phone.heard(|h| !h.audio.is_empty())
    })
    .await;
    // The caller talks over the agent: voice activity interrupts it (0.5 s of speech), the call gets `clear`.
    phone.speak(&caller_speech(ms(800))).await;
    until(Duration::from_secs(5), "clear", || {
        phone.heard(|h| h.clears == 1)
    })
    .await;
    until(Duration::from_secs(10), "the reply to the caller", || {
        calls.messages().len() == 3
    })
    .await;
    let messages = calls.messages();
    assert_eq!(messages[0].0, ChatRole::Assistant);
    assert!(
        messages[0].2,
        "the agent's speech is committed as interrupted"
    );
    assert!(long.starts_with(&messages[0].1) && messages[0].1.len() < long.len());
    assert_eq!(
        messages[1],
        (
            ChatRole::User,
            "hello there this is a test".to_owned(),
            false
        )
    );
    assert_eq!(
        messages[2],
        (ChatRole::Assistant, "Sure, go ahead.".to_owned(), false)
    );
    phone.hang_up().await;
    until(Duration::from_secs(5), "the session closed", || {
        !closes(&calls).is_empty()
    })
    .await;
}
