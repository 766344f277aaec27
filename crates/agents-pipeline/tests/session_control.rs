//! The session's control surface on a paused clock: per-agent turn detection, speaking events, close reasons and
//! the close transcript timeout, I/O replacement, text input, tool-time replies and the typed full-queue error
//! (livekit-agents-behaviours.md §4.3, §4.4, behaviours 39, 52, 84, 115, 128; videosdk-agents-behaviours.md 51).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod session_common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::chat::ChatRole;
use agents_core::events::{CloseReason, Component, ErrorEvent, SessionEvent};
use agents_core::llm::ToolChoice;
use agents_core::session::ReplyRequest;
use agents_core::tools::{FunctionTool, ToolOutcome};
use agents_core::{Agent, AudioInput, SessionControl, SessionError, SessionIo, TurnDetectionMode};
use agents_pipeline::interruption::InterruptionOptions;
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::signal::sequence;
use agents_testkit::{
    FakeAudioOutput, FakeLlm, FakeResponse, FakeStt, FakeTextOutput, FakeTts, FakeVad,
};

use session_common::{Recorder, ms, rig, rig_with};

/// How the simulated user's audio input behaves once its frames are sent.
#[derive(Clone, Copy, PartialEq)]
enum AfterAudio {
    /// The user stays connected (the sender lives until the session drops the input).
    StayConnected,
    /// The user hangs up: the input ends right after the last frame.
    HangUp,
}

struct AudioRig {
    session: AgentSession,
    llm: FakeLlm,
    rec: Recorder,
}

fn audio_options() -> SessionOptions {
    SessionOptions::default()
        .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
        .with_user_away_timeout(None)
}

/// Frames of `parts` (`true` = speech), and the VAD intervals that script them.
fn user_audio(parts: &[(bool, u64)]) -> (Vec<AudioFrame>, Vec<(Duration, Duration)>) {
    let mut t = 0;
    let mut speech = Vec::new();
    for &(s, d) in parts {
        if s {
            speech.push((ms(t), ms(t + d)));
        }
        t += d;
    }
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    (sequence(&parts, SampleRate::HZ_16000), speech)
}

/// Sends `frames` paced on the tokio clock, then stays connected or hangs up.
fn feed(tx: mpsc::Sender<AudioFrame>, frames: Vec<AudioFrame>, after: AfterAudio) {
    tokio::spawn(async move {
        let mut at = tokio::time::Instant::now();
        for f in frames {
            tokio::time::sleep_until(at).await;
            at += f.duration();
            if tx.send(f).await.is_err() {
                return;
            }
        }
        if after == AfterAudio::StayConnected {
            tx.closed().await;
        }
    });
}

/// A session over a scripted VAD and a fake STT whose user produces `parts` of audio from t = 0.
async fn audio_rig(
    parts: &[(bool, u64)],
    stt: FakeStt,
    llm: FakeLlm,
    agent: Agent,
    options: SessionOptions,
    after: AfterAudio,
) -> AudioRig {
    let (frames, speech) = user_audio(parts);
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .tts(Arc::new(FakeTts::new()))
        .vad(Arc::new(FakeVad::scripted(speech)))
        .stt(Arc::new(stt))
        .options(options)
        .build();
    let rec = Recorder::start(&session);
    let (tx, input) = AudioInput::channel("user", 64);
    session
        .start(
            agent,
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(Arc::new(FakeTextOutput::new())),
        )
        .await
        .unwrap();
    feed(tx, frames, after);
    AudioRig { session, llm, rec }
}

fn stt(transcripts: &[&str]) -> FakeStt {
    FakeStt::new()
        .with_transcripts(transcripts.iter().copied())
        .with_min_silence(ms(100))
}

fn messages(session: &AgentSession) -> Vec<(ChatRole, String)> {
    session
        .history()
        .messages()
        .map(|m| (m.role, m.text_content().unwrap_or_default()))
        .collect()
}

fn is_assistant_message(e: &SessionEvent) -> bool {
    matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.role == ChatRole::Assistant))
}

fn close_event(rec: &Recorder) -> Option<(CloseReason, Option<ErrorEvent>)> {
    rec.events().into_iter().find_map(|e| match e {
        SessionEvent::Close { reason, error } => Some((reason, error)),
        _ => None,
    })
}

// 1. Per-agent turn detection.

#[tokio::test(start_paused = true)]
async fn an_agent_overriding_turn_detection_to_manual_waits_for_commit_user_turn() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Booked."));
    // The session has a VAD, so it resolves to VAD turn detection (behaviour 115); the agent overrides it.
    let agent = Agent::builder("x")
        .turn_detection(TurnDetectionMode::Manual)
        .build()
        .unwrap();
    assert_eq!(
        agent.turn_overrides().turn_detection,
        Some(TurnDetectionMode::Manual)
    );
    let r = audio_rig(
        &[(true, 1000), (false, 5000)],
        stt(&["book a table"]),
        llm,
        agent,
        audio_options(),
        AfterAudio::StayConnected,
    )
    .await;
    tokio::time::sleep(ms(3000)).await;
    assert_eq!(r.llm.request_count(), 0, "no end of turn without a commit");
    assert!(messages(&r.session).is_empty());
    r.session.commit_user_turn().unwrap();
    r.rec.wait_for(ms(5000), is_assistant_message).await;
    assert_eq!(
        messages(&r.session),
        vec![
            (ChatRole::User, "book a table".to_owned()),
            (ChatRole::Assistant, "Booked.".to_owned()),
        ]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_agent_without_override_keeps_the_sessions_vad_turn_detection() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Booked."));
    let r = audio_rig(
        &[(true, 1000), (false, 5000)],
        stt(&["book a table"]),
        llm,
        Agent::new("x"),
        audio_options(),
        AfterAudio::StayConnected,
    )
    .await;
    // The turn ends by itself (VAD end of speech + endpointing), without any commit.
    r.rec.wait_for(ms(3000), is_assistant_message).await;
    assert_eq!(r.llm.request_count(), 1);
    r.session.close().await.unwrap();
}

// 2. Speaking events.

/// The state and speaking events of one side, in order, as short labels.
fn speaking_timeline(rec: &Recorder) -> Vec<String> {
    rec.events()
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::AgentStateChanged { old, new } => {
                Some(format!("agent {old:?}->{new:?}").to_lowercase())
            }
            SessionEvent::UserStateChanged { old, new } => {
                Some(format!("user {old:?}->{new:?}").to_lowercase())
            }
            SessionEvent::AgentStartedSpeaking { .. } => Some("agent started speaking".into()),
            SessionEvent::AgentStoppedSpeaking { .. } => Some("agent stopped speaking".into()),
            SessionEvent::UserStartedSpeaking { .. } => Some("user started speaking".into()),
            SessionEvent::UserStoppedSpeaking { .. } => Some("user stopped speaking".into()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn speaking_events_follow_the_state_changes_they_belong_to() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Sunny."));
    let r = audio_rig(
        &[(true, 1000), (false, 5000)],
        stt(&["what is the weather"]),
        llm,
        Agent::new("x"),
        audio_options(),
        AfterAudio::StayConnected,
    )
    .await;
    r.rec
        .wait_for(ms(6000), |e| {
            matches!(e, SessionEvent::AgentStoppedSpeaking { .. })
        })
        .await;
    let timeline = speaking_timeline(&r.rec);
    let user: Vec<&str> = timeline
        .iter()
        .map(String::as_str)
        .filter(|s| s.starts_with("user"))
        .collect();
    assert_eq!(
        user,
        vec![
            "user listening->speaking",
            "user started speaking",
            "user speaking->listening",
            "user stopped speaking",
        ]
    );
    let agent: Vec<&str> = timeline
        .iter()
        .map(String::as_str)
        .filter(|s| s.starts_with("agent"))
        .collect();
    let started = agent
        .iter()
        .position(|s| *s == "agent started speaking")
        .unwrap();
    let stopped = agent
        .iter()
        .position(|s| *s == "agent stopped speaking")
        .unwrap();
    assert_eq!(agent[started - 1], "agent thinking->speaking");
    assert_eq!(agent[stopped - 1], "agent speaking->listening");
    assert_eq!(
        agent
            .iter()
            .filter(|s| s.contains("started speaking"))
            .count(),
        1
    );
    // The user spoke before the agent answered; the timestamps are in the same order.
    let at = |f: fn(&SessionEvent) -> bool| {
        r.rec
            .events()
            .into_iter()
            .find(&f)
            .map(|e| match e {
                SessionEvent::UserStartedSpeaking { at }
                | SessionEvent::UserStoppedSpeaking { at }
                | SessionEvent::AgentStartedSpeaking { at }
                | SessionEvent::AgentStoppedSpeaking { at } => at,
                _ => unreachable!(),
            })
            .unwrap()
    };
    let user_start = at(|e| matches!(e, SessionEvent::UserStartedSpeaking { .. }));
    let agent_start = at(|e| matches!(e, SessionEvent::AgentStartedSpeaking { .. }));
    let agent_stop = at(|e| matches!(e, SessionEvent::AgentStoppedSpeaking { .. }));
    assert!(user_start <= agent_start && agent_start <= agent_stop);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn say_emits_agent_started_then_stopped_speaking() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let h = r.session.say_text("Hello there.").unwrap();
    h.wait_for_playout().await;
    r.rec
        .wait_for(ms(1000), |e| {
            matches!(e, SessionEvent::AgentStoppedSpeaking { .. })
        })
        .await;
    let timeline = speaking_timeline(&r.rec);
    let i = timeline
        .iter()
        .position(|s| s == "agent started speaking")
        .unwrap();
    assert!(timeline[i - 1].ends_with("->speaking"), "{timeline:?}");
    let j = timeline
        .iter()
        .position(|s| s == "agent stopped speaking")
        .unwrap();
    assert!(j > i);
    assert_eq!(timeline[j - 1], "agent speaking->listening");
    r.session.close().await.unwrap();
}

// 3. Close reasons.

#[tokio::test(start_paused = true)]
async fn the_end_of_the_audio_input_closes_with_participant_disconnected() {
    let r = audio_rig(
        &[(false, 300)],
        stt(&[]),
        FakeLlm::new(),
        Agent::new("x"),
        audio_options(),
        AfterAudio::HangUp,
    )
    .await;
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::Close { .. }))
        .await;
    let (reason, error) = close_event(&r.rec).unwrap();
    assert_eq!(reason, CloseReason::ParticipantDisconnected);
    assert!(error.is_none());
    assert!(matches!(
        r.rec.events().last(),
        Some(SessionEvent::Close { .. })
    ));
    assert_eq!(
        r.session.say_text("anyone?").unwrap_err(),
        SessionError::NotRunning
    );
    assert_eq!(r.session.close().await, Err(SessionError::NotRunning));
}

#[tokio::test(start_paused = true)]
async fn without_close_on_input_end_the_session_outlives_its_input() {
    let r = audio_rig(
        &[(false, 300)],
        stt(&[]),
        FakeLlm::new(),
        Agent::new("x"),
        audio_options().with_close_on_input_end(false),
        AfterAudio::HangUp,
    )
    .await;
    tokio::time::sleep(ms(2000)).await;
    assert!(close_event(&r.rec).is_none());
    let h = r.session.say_text("Still here.").unwrap();
    assert!(h.wait_for_playout().await || h.done());
    r.session.close().await.unwrap();
    assert_eq!(
        close_event(&r.rec).map(|(reason, _)| reason),
        Some(CloseReason::UserInitiated)
    );
}

#[tokio::test(start_paused = true)]
async fn a_user_hanging_up_mid_sentence_gets_the_last_transcript_committed_without_reply() {
    // The input ends while the user still speaks: no end of speech, no endpointing; the close commits the turn.
    let r = audio_rig(
        &[(true, 1000)],
        stt(&["please call me back"]),
        FakeLlm::new().push_response(FakeResponse::text("never said")),
        Agent::new("x"),
        audio_options(),
        AfterAudio::HangUp,
    )
    .await;
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::Close { .. }))
        .await;
    assert_eq!(
        messages(&r.session),
        vec![(ChatRole::User, "please call me back".to_owned())]
    );
    assert_eq!(r.llm.request_count(), 0, "no reply is generated on close");
    assert_eq!(
        close_event(&r.rec).map(|(reason, _)| reason),
        Some(CloseReason::ParticipantDisconnected)
    );
    // The user's speech cut by the hang-up still ends before the Close event.
    let timeline = speaking_timeline(&r.rec);
    let count = |label: &str| timeline.iter().filter(|s| *s == label).count();
    assert_eq!(count("user started speaking"), 1, "{timeline:?}");
    assert_eq!(count("user stopped speaking"), 1, "{timeline:?}");
    assert!(matches!(
        r.rec.events().last(),
        Some(SessionEvent::Close { .. })
    ));
}

/// The user is mid-sentence when the session closes; the STT's final takes 1.5 s.
async fn close_mid_sentence(transcript_timeout: Duration) -> AudioRig {
    let r = audio_rig(
        &[(true, 3000)],
        stt(&["call me back"]).with_final_delay(ms(1500)),
        FakeLlm::new(),
        Agent::new("x"),
        audio_options().with_session_close_transcript_timeout(transcript_timeout),
        AfterAudio::StayConnected,
    )
    .await;
    tokio::time::sleep(ms(1000)).await;
    r.session.close().await.unwrap();
    assert_eq!(
        close_event(&r.rec).map(|(reason, _)| reason),
        Some(CloseReason::UserInitiated)
    );
    assert_eq!(r.llm.request_count(), 0, "no reply is generated on close");
    r
}

#[tokio::test(start_paused = true)]
async fn the_close_commits_a_final_that_arrives_within_the_transcript_timeout() {
    let r = close_mid_sentence(ms(3000)).await;
    assert_eq!(
        messages(&r.session),
        vec![(ChatRole::User, "call me back".to_owned())]
    );
}

struct SlowExit;

#[async_trait::async_trait]
impl agents_core::AgentHooks for SlowExit {
    async fn on_exit(&self, _session: &agents_core::session::SessionHandle) {
        tokio::time::sleep(ms(5000)).await;
    }
}

/// Review finding F13 (behaviour 128): a close during a handoff commits the user's last transcript on the draining
/// agent.
#[tokio::test(start_paused = true)]
async fn a_close_during_a_handoff_still_commits_the_users_last_transcript() {
    let r = audio_rig(
        &[(true, 3000)],
        stt(&["call me back"]).with_final_delay(ms(500)),
        FakeLlm::new(),
        Agent::builder("x").hooks(SlowExit).build().unwrap(),
        audio_options().with_session_close_transcript_timeout(ms(3000)),
        AfterAudio::StayConnected,
    )
    .await;
    tokio::time::sleep(ms(1000)).await;
    r.session.update_agent(Agent::new("y")).unwrap();
    tokio::time::sleep(ms(100)).await;
    r.session.close().await.unwrap();
    assert_eq!(
        messages(&r.session),
        vec![(ChatRole::User, "call me back".to_owned())]
    );
    assert_eq!(r.llm.request_count(), 0, "no reply is generated on close");
}

#[tokio::test(start_paused = true)]
async fn the_close_does_not_wait_for_a_final_beyond_the_transcript_timeout() {
    let r = close_mid_sentence(ms(500)).await;
    assert!(
        messages(&r.session).is_empty(),
        "{:?}",
        messages(&r.session)
    );
}

#[tokio::test(start_paused = true)]
async fn an_unrecoverable_error_closes_the_session_with_reason_error() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    r.session.report_error(ErrorEvent::new(
        Component::Transport,
        "ws.transport",
        std::io::Error::other("socket reset"),
        true,
    ));
    tokio::time::sleep(ms(100)).await;
    assert!(
        close_event(&r.rec).is_none(),
        "a recoverable error does not close"
    );
    r.session.report_error(ErrorEvent::new(
        Component::Transport,
        "ws.transport",
        std::io::Error::other("socket gone"),
        false,
    ));
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::Close { .. }))
        .await;
    let (reason, error) = close_event(&r.rec).unwrap();
    assert_eq!(reason, CloseReason::Error);
    let error = error.expect("the closing error is in the Close event");
    assert_eq!(error.label, "ws.transport");
    assert!(!error.recoverable);
    assert_eq!(error.error.to_string(), "socket gone");
    let events = r.rec.events();
    let errors = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Error(_)))
        .count();
    assert_eq!(errors, 2);
    assert!(matches!(events.last(), Some(SessionEvent::Close { .. })));
    assert_eq!(
        r.session.generate_reply(ReplyRequest::new()).unwrap_err(),
        SessionError::NotRunning
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_close_with_reason_report_their_reason() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    r.session.shutdown().await.unwrap();
    assert_eq!(
        close_event(&r.rec).map(|(reason, _)| reason),
        Some(CloseReason::Shutdown)
    );
    assert_eq!(r.session.shutdown().await, Err(SessionError::NotRunning));

    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    r.session
        .close_with_reason(CloseReason::ParticipantDisconnected)
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(
        close_event(&r.rec).map(|(reason, _)| reason),
        Some(CloseReason::ParticipantDisconnected)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_queued_speech_like_close() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let h = r.session.say_text("One last thing before we go.").unwrap();
    r.session.shutdown().await.unwrap();
    assert!(h.done());
    assert!(!h.interrupted(), "queued speech drained, not cut");
}

// 4. I/O replacement.

#[tokio::test(start_paused = true)]
async fn a_replaced_audio_input_feeds_the_session_and_the_old_one_is_dropped() {
    let (frames, speech) = user_audio(&[(true, 1000), (false, 3000)]);
    let llm = FakeLlm::new().push_response(FakeResponse::text("Noted."));
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .tts(Arc::new(FakeTts::new()))
        .vad(Arc::new(FakeVad::scripted(speech)))
        .stt(Arc::new(stt(&["new microphone"])))
        .options(audio_options())
        .build();
    let rec = Recorder::start(&session);
    let (old_tx, old_input) = AudioInput::channel("old", 8);
    session
        .start(
            Agent::new("x"),
            SessionIo::new()
                .with_audio_input(old_input)
                .with_audio_output(Arc::new(FakeAudioOutput::new())),
        )
        .await
        .unwrap();
    let (tx, input) = AudioInput::channel("new", 64);
    session.set_audio_input(Some(input)).unwrap();
    tokio::time::timeout(ms(1000), old_tx.closed())
        .await
        .expect("the old input is dropped");
    assert!(
        close_event(&rec).is_none(),
        "replacing the input is not a disconnect"
    );
    feed(tx, frames, AfterAudio::StayConnected);
    rec.wait_for(ms(6000), is_assistant_message).await;
    assert_eq!(
        messages(&session),
        vec![
            (ChatRole::User, "new microphone".to_owned()),
            (ChatRole::Assistant, "Noted.".to_owned()),
        ]
    );
    // Detaching the input does not close either.
    session.set_audio_input(None).unwrap();
    tokio::time::sleep(ms(500)).await;
    assert!(close_event(&rec).is_none());
    session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn speech_after_an_output_replacement_plays_on_the_new_outputs() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let first = r.session.say_text("On the first speaker.").unwrap();
    first.wait_for_playout().await;
    let played_before = r.out.played_segments().len();
    assert_eq!(played_before, 1);
    let new_out = Arc::new(FakeAudioOutput::new());
    let new_text = Arc::new(FakeTextOutput::new());
    r.session.set_audio_output(Some(new_out.clone())).unwrap();
    r.session.set_text_output(Some(new_text.clone())).unwrap();
    let second = r.session.say_text("On the second speaker.").unwrap();
    second.wait_for_playout().await;
    assert_eq!(new_out.played_segments().len(), 1);
    assert!(new_out.heard_duration() > Duration::ZERO);
    assert_eq!(
        r.out.played_segments().len(),
        played_before,
        "nothing more on the old output"
    );
    assert!(new_text.all_text().contains("second speaker"));
    assert!(!r.text.all_text().contains("second speaker"));
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn io_replacement_before_start_is_refused() {
    let r = rig(FakeLlm::new());
    assert_eq!(
        r.session.set_audio_input(None),
        Err(SessionError::NotRunning)
    );
    assert_eq!(
        r.session.set_audio_output(None),
        Err(SessionError::NotRunning)
    );
}

// 5. Text input.

#[tokio::test(start_paused = true)]
async fn text_input_interrupts_the_agent_then_replies_to_the_text() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("It is noon."));
    let r = rig(llm);
    r.start(Agent::new("x")).await;
    let long = r
        .session
        .say_text("This is a long story that goes on and on for quite a while, with many words.")
        .unwrap();
    r.rec
        .wait_for(ms(2000), |e| {
            matches!(e, SessionEvent::AgentStartedSpeaking { .. })
        })
        .await;
    let reply = r.session.send_text_input("what time is it").await.unwrap();
    assert!(long.interrupted(), "the speech playing was interrupted");
    reply.wait_for_playout().await;
    let req = r.llm.last_request().unwrap();
    assert_eq!(
        req.chat_ctx
            .last_message(ChatRole::User)
            .and_then(|m| m.text_content())
            .as_deref(),
        Some("what time is it")
    );
    let msgs = r.messages();
    assert!(msgs.contains(&(ChatRole::User, "what time is it".to_owned(), false)));
    assert!(msgs.contains(&(ChatRole::Assistant, "It is noon.".to_owned(), false)));
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn text_input_queues_behind_a_speech_that_cannot_be_interrupted() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Sure."));
    let r = rig(llm);
    r.start(Agent::new("x")).await;
    let legal = r
        .session
        .say(
            agents_core::session::SayRequest::new("This call may be recorded.")
                .with_allow_interruptions(false),
        )
        .unwrap();
    let reply = r.session.send_text_input("hello").await.unwrap();
    reply.wait_for_playout().await;
    assert!(legal.done() && !legal.interrupted());
    assert_eq!(
        r.messages(),
        vec![
            // The text is committed when the request is taken; the legal notice when it finished playing.
            (ChatRole::User, "hello".to_owned(), false),
            (
                ChatRole::Assistant,
                "This call may be recorded.".to_owned(),
                false
            ),
            (ChatRole::Assistant, "Sure.".to_owned(), false),
        ]
    );
    r.session.close().await.unwrap();
    assert_eq!(
        r.session.send_text_input("late").await.unwrap_err(),
        SessionError::NotRunning
    );
}

// 6. Tool-time replies.

fn reply_tool() -> FunctionTool {
    FunctionTool::raw(
        "announce",
        "Announces something.",
        json!({"type": "object", "properties": {"explicit": {"type": "boolean"}}}),
        |ctx, args| async move {
            let mut request = ReplyRequest::new().with_instructions("Announce it.");
            if args.get("explicit").and_then(|v| v.as_bool()) == Some(true) {
                request = request.with_tool_choice(ToolChoice::Required);
            }
            ctx.session()
                .generate_reply(request)
                .map_err(|e| agents_core::ToolError::new(e.to_string()))?;
            Ok(ToolOutcome::stop_response())
        },
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn generate_reply_inside_a_tool_defaults_to_no_tools_behaviour_52() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::tool_call("announce", "{}"))
        .push_response(FakeResponse::text("Announced."))
        .push_response(FakeResponse::tool_call("announce", r#"{"explicit":true}"#))
        .push_response(FakeResponse::text("Announced again."));
    let r = rig(llm);
    r.start(Agent::builder("x").tool(reply_tool()).build().unwrap())
        .await;
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.text_content().as_deref() == Some("Announced."))))
        .await;
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.text_content().as_deref() == Some("Announced again."))))
        .await;
    let choices: Vec<Option<ToolChoice>> = r
        .llm
        .requests()
        .into_iter()
        .map(|q| q.tool_choice)
        .collect();
    assert_eq!(
        choices,
        vec![
            None,                       // from the application: the model decides
            Some(ToolChoice::None),     // from inside the tool, no choice given
            None,                       // from the application again
            Some(ToolChoice::Required), // from inside the tool, an explicit choice is kept
        ]
    );
    r.session.close().await.unwrap();
}

// 7. Typed full queue.

#[tokio::test(start_paused = true)]
async fn a_full_command_queue_is_a_typed_queue_full_error() {
    let mut options = SessionOptions::default();
    options.command_capacity = 1;
    let r = rig_with(
        FakeLlm::new(),
        FakeTts::new(),
        FakeAudioOutput::new(),
        options,
    );
    r.start(Agent::new("x")).await;
    // Let the session task take the start command.
    tokio::time::sleep(ms(10)).await;
    // No await in between: the session task cannot take the first command before the second is offered.
    let first = r.session.say_text("one");
    let second = r.session.say_text("two");
    assert!(first.is_ok());
    let err = second.unwrap_err();
    assert_eq!(err, SessionError::QueueFull { queue: "command" });
    assert_eq!(err.to_string(), "the session's command queue is full");
    r.session.close().await.unwrap();
}

#[test]
fn turn_detection_mode_is_reexported_and_resolves_as_livekit() {
    assert_eq!(
        agents_pipeline::TurnDetectionMode::resolve(false, true, true),
        TurnDetectionMode::Vad
    );
    assert_eq!(
        TurnDetectionMode::resolve(false, false, true),
        TurnDetectionMode::Stt
    );
    assert_eq!(
        TurnDetectionMode::resolve(false, false, false),
        TurnDetectionMode::Manual
    );
    assert_eq!(
        TurnDetectionMode::resolve(true, true, true),
        TurnDetectionMode::RealtimeLlm
    );
}
