//! The audio path of a session on a paused clock: user audio → VAD/STT → end of turn → hook → reply, barge-in,
//! coughs, false interruptions and non-interruptible speech (livekit-agents-behaviours.md §5.3, §5.4, §6.3).

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use agents_audio::SampleRate;
use agents_core::agent::TurnDecision;
use agents_core::chat::{ChatContent, ChatContext, ChatMessage, ChatRole};
use agents_core::events::SessionEvent;
use agents_core::metrics::Metrics;
use agents_core::session::{SayRequest, SessionHandle};
use agents_core::{Agent, AgentHooks, AudioInput, SessionControl, SessionIo};
use agents_pipeline::interruption::InterruptionOptions;
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::signal::sequence;
use agents_testkit::{
    FakeAudioOutput, FakeLlm, FakeResponse, FakeStt, FakeTextOutput, FakeTts, FakeVad,
};

use session_common::{Recorder, ms};

struct AudioRig {
    session: AgentSession,
    llm: FakeLlm,
    stt: Arc<FakeStt>,
    out: Arc<FakeAudioOutput>,
    rec: Recorder,
}

/// A session whose user produces `parts` of audio (`true` = speech) from t = 0, paced on the tokio clock.
async fn audio_rig(
    parts: &[(bool, u64)],
    transcripts: &[&str],
    llm: FakeLlm,
    out: FakeAudioOutput,
    agent: Agent,
) -> AudioRig {
    let stt = FakeStt::new()
        .with_transcripts(transcripts.iter().copied())
        .with_min_silence(ms(100));
    audio_rig_with_stt(parts, stt, llm, out, agent).await
}

async fn audio_rig_with_stt(
    parts: &[(bool, u64)],
    stt: FakeStt,
    llm: FakeLlm,
    out: FakeAudioOutput,
    agent: Agent,
) -> AudioRig {
    let options = SessionOptions::default()
        .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
        .with_user_away_timeout(None);
    audio_rig_full(parts, stt, llm, out, agent, options).await
}

async fn audio_rig_opts(
    parts: &[(bool, u64)],
    stt: FakeStt,
    llm: FakeLlm,
    agent: Agent,
    options: SessionOptions,
) -> AudioRig {
    audio_rig_full(parts, stt, llm, FakeAudioOutput::new(), agent, options).await
}

async fn audio_rig_full(
    parts: &[(bool, u64)],
    stt: FakeStt,
    llm: FakeLlm,
    out: FakeAudioOutput,
    agent: Agent,
    options: SessionOptions,
) -> AudioRig {
    let mut t = 0;
    let mut speech = Vec::new();
    for &(s, d) in parts {
        if s {
            speech.push((ms(t), ms(t + d)));
        }
        t += d;
    }
    let vad = Arc::new(FakeVad::scripted(speech));
    let stt = Arc::new(stt);
    let out = Arc::new(out);
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .tts(Arc::new(FakeTts::new()))
        .vad(vad)
        .stt(stt.clone())
        .options(options)
        .build();
    let rec = Recorder::start(&session);
    let (tx, input) = AudioInput::channel("user", 64);
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    let frames = sequence(&parts, SampleRate::HZ_16000);
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
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut at = start;
        for f in frames {
            tokio::time::sleep_until(at).await;
            at += f.duration();
            if tx.send(f).await.is_err() {
                return;
            }
        }
        // The user stays connected: an input that ends closes the session (`close_on_input_end`).
        tx.closed().await;
    });
    AudioRig {
        session,
        llm,
        stt,
        out,
        rec,
    }
}

struct AddCity;

#[async_trait]
impl AgentHooks for AddCity {
    async fn on_user_turn_completed(
        &self,
        _session: &SessionHandle,
        _chat_ctx: &ChatContext,
        new_message: &mut ChatMessage,
    ) -> TurnDecision {
        let text = new_message.text_content().unwrap_or_default();
        new_message.content = vec![ChatContent::Text(format!("{text} in Paris"))];
        TurnDecision::Reply
    }
}

struct Silent;

#[async_trait]
impl AgentHooks for Silent {
    async fn on_user_turn_completed(
        &self,
        _session: &SessionHandle,
        _chat_ctx: &ChatContext,
        _new_message: &mut ChatMessage,
    ) -> TurnDecision {
        TurnDecision::StopResponse
    }
}

fn user_and_assistant(session: &AgentSession) -> Vec<(ChatRole, String, bool)> {
    session
        .history()
        .messages()
        .map(|m| (m.role, m.text_content().unwrap_or_default(), m.interrupted))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_user_turn_runs_the_hook_which_may_edit_the_message_then_gets_a_reply_behaviour_5_3() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Sunny."));
    let agent = Agent::builder("x").hooks(AddCity).build().unwrap();
    let r = audio_rig(
        &[(true, 1000), (false, 3000)],
        &["what is the weather"],
        llm,
        FakeAudioOutput::new(),
        agent,
    )
    .await;
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.role == ChatRole::Assistant)))
        .await;
    assert_eq!(
        user_and_assistant(&r.session),
        vec![
            (
                ChatRole::User,
                "what is the weather in Paris".to_owned(),
                false
            ),
            (ChatRole::Assistant, "Sunny.".to_owned(), false),
        ]
    );
    let req = r.llm.last_request().unwrap();
    assert_eq!(
        req.chat_ctx
            .last_message(ChatRole::User)
            .and_then(|m| m.text_content())
            .as_deref(),
        Some("what is the weather in Paris")
    );
    assert!(r.rec.count(|e| matches!(e, SessionEvent::UserInputTranscribed { is_final: true, transcript, .. } if transcript == "what is the weather")) == 1);
    // Per-turn metrics: emitted and attached to the messages.
    let history = r.session.history();
    let user = history.last_message(ChatRole::User).unwrap();
    assert!(user.metrics.as_ref().unwrap().end_of_turn_delay.is_some());
    let turn = r
        .rec
        .events()
        .into_iter()
        .find_map(|e| match e {
            SessionEvent::MetricsCollected(Metrics::Turn(t)) => Some(t),
            _ => None,
        })
        .unwrap();
    let e2e = turn.e2e_latency.unwrap();
    assert!(e2e >= turn.end_of_utterance_delay.unwrap(), "{turn:?}");
    assert!(turn.llm_ttft.is_some() && turn.tts_ttfb.is_some());
    let assistant = history.last_message(ChatRole::Assistant).unwrap();
    assert_eq!(assistant.metrics.as_ref().unwrap().e2e_latency, Some(e2e));
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hook_returning_stop_response_commits_the_message_without_a_reply() {
    let agent = Agent::builder("x").hooks(Silent).build().unwrap();
    let r = audio_rig(
        &[(true, 1000), (false, 3000)],
        &["never mind"],
        FakeLlm::new(),
        FakeAudioOutput::new(),
        agent,
    )
    .await;
    tokio::time::sleep(ms(4500)).await;
    assert_eq!(
        user_and_assistant(&r.session),
        vec![(ChatRole::User, "never mind".to_owned(), false)]
    );
    assert_eq!(r.llm.request_count(), 0);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn user_speech_longer_than_min_duration_barges_in_and_only_the_heard_words_are_committed() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Okay."));
    let r = audio_rig(
        &[(false, 600), (true, 1000), (false, 3000)],
        &["stop please"],
        llm,
        FakeAudioOutput::new(),
        Agent::new("x"),
    )
    .await;
    let h = r
        .session
        .say_text("one two three four five six seven eight nine ten")
        .unwrap();
    assert!(h.wait_for_playout().await, "the user barged in");
    let heard = r.out.played_segments()[0].position;
    // The user starts at 0.6 s; the STT's first interim transcript (200 ms of speech) interrupts, as in LiveKit
    // with min_interruption_words = 0 (the VAD path would wait for 0.5 s of speech).
    assert!(heard >= ms(750) && heard < ms(850), "{heard:?}");
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.text_content().as_deref() == Some("Okay."))))
        .await;
    assert_eq!(
        user_and_assistant(&r.session),
        vec![
            (ChatRole::Assistant, "one two three".to_owned(), true),
            (ChatRole::User, "stop please".to_owned(), false),
            (ChatRole::Assistant, "Okay.".to_owned(), false),
        ]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_0_3_s_cough_does_not_interrupt_the_agent() {
    let r = audio_rig(
        &[(false, 500), (true, 300), (false, 4000)],
        &[""],
        FakeLlm::new(),
        FakeAudioOutput::new(),
        Agent::new("x"),
    )
    .await;
    let h = r
        .session
        .say_text("one two three four five six seven eight nine ten")
        .unwrap();
    assert!(!h.wait_for_playout().await);
    assert_eq!(r.out.heard_duration(), ms(3000));
    assert_eq!(r.llm.request_count(), 0);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_false_interruption_pauses_then_resumes_playout_after_the_timeout_behaviour_6_3() {
    let words = "a b c d e f g h i j k l m n o p q r s t";
    let r = audio_rig(
        &[(false, 500), (true, 800), (false, 6000)],
        &[""],
        FakeLlm::new(),
        FakeAudioOutput::new().with_pause(true),
        Agent::new("x"),
    )
    .await;
    let h = r.session.say_text(words).unwrap();
    assert!(!h.wait_for_playout().await, "resumed and played out");
    assert_eq!(r.out.heard_duration(), ms(6000), "every word heard");
    assert_eq!(
        r.rec
            .count(|e| matches!(e, SessionEvent::AgentFalseInterruption { resumed: true })),
        1
    );
    assert_eq!(
        user_and_assistant(&r.session),
        vec![(ChatRole::Assistant, words.to_owned(), false)]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn input_is_dropped_while_the_current_speech_is_not_interruptible_behaviour_5_3() {
    let r = audio_rig(
        &[(false, 300), (true, 1000), (false, 4000)],
        &["stop"],
        FakeLlm::new(),
        FakeAudioOutput::new(),
        Agent::new("x"),
    )
    .await;
    let h = r
        .session
        .say(
            SayRequest::new("one two three four five six seven eight nine ten")
                .with_allow_interruptions(false),
        )
        .unwrap();
    assert!(!h.wait_for_playout().await);
    assert_eq!(r.out.heard_duration(), ms(3000));
    tokio::time::sleep(ms(2000)).await;
    assert!(
        r.stt.streamed_audio() < ms(2500),
        "the STT never heard the audio sent while the speech played: {:?}",
        r.stt.streamed_audio()
    );
    assert_eq!(r.llm.request_count(), 0, "no user turn");
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_interim_transcripts_the_vad_interrupts_after_min_duration_behaviour_5_4() {
    let stt = FakeStt::new()
        .with_transcripts(["wait"])
        .with_min_silence(ms(100))
        .without_interim_results();
    let llm = FakeLlm::new().push_response(FakeResponse::text("Yes?"));
    let r = audio_rig_with_stt(
        &[(false, 600), (true, 1000), (false, 3000)],
        stt,
        llm,
        FakeAudioOutput::new(),
        Agent::new("x"),
    )
    .await;
    let h = r
        .session
        .say_text("one two three four five six seven eight nine ten")
        .unwrap();
    assert!(h.wait_for_playout().await);
    let heard = r.out.played_segments()[0].position;
    // 0.6 s of silence, then more than 0.5 s of speech (strictly greater, in 32 ms VAD windows).
    assert!(heard > ms(1050) && heard < ms(1150), "{heard:?}");
    r.session.close().await.unwrap();
}

async fn preemptive_rig(llm: FakeLlm, agent: Agent) -> AudioRig {
    // audio_rig with preemptive generation on.
    audio_rig_opts(
        &[(true, 1000), (false, 3000)],
        FakeStt::new()
            .with_transcripts(["what time is it"])
            .with_min_silence(ms(100)),
        llm,
        agent,
        SessionOptions::default()
            .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
            .with_user_away_timeout(None)
            .with_preemptive_generation(true),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn preemptive_generation_is_reused_when_the_turn_commits_unchanged_behaviour_6_4() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("It is noon."));
    let r = preemptive_rig(llm, Agent::new("x")).await;
    // The final transcript lands about 1.1 s in; the turn commits 0.5 s after the end of speech.
    r.rec
        .wait_for(ms(3000), |e| {
            matches!(e, SessionEvent::UserInputTranscribed { is_final: true, .. })
        })
        .await;
    tokio::time::sleep(ms(1)).await;
    assert_eq!(
        r.llm.request_count(),
        1,
        "the LLM started before the end of turn"
    );
    assert!(
        !r.rec
            .events()
            .iter()
            .any(|e| matches!(e, SessionEvent::ConversationItemAdded { .. })),
        "the turn is not committed yet"
    );
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.role == ChatRole::Assistant)))
        .await;
    assert_eq!(r.llm.request_count(), 1, "the speculative reply was reused");
    assert_eq!(
        user_and_assistant(&r.session),
        vec![
            (ChatRole::User, "what time is it".to_owned(), false),
            (ChatRole::Assistant, "It is noon.".to_owned(), false),
        ]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn preemptive_generation_is_discarded_when_the_hook_changes_the_message_behaviour_6_4() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Speculative answer."))
        .push_response(FakeResponse::text("Paris answer."));
    let agent = Agent::builder("x").hooks(AddCity).build().unwrap();
    let r = preemptive_rig(llm, agent).await;
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.role == ChatRole::Assistant)))
        .await;
    assert_eq!(r.llm.request_count(), 2);
    assert_eq!(
        user_and_assistant(&r.session),
        vec![
            (ChatRole::User, "what time is it in Paris".to_owned(), false),
            (ChatRole::Assistant, "Paris answer.".to_owned(), false),
        ]
    );
    assert_eq!(
        r.out.played_segments().len(),
        1,
        "the discarded reply never played"
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_agent_override_of_min_interruption_duration_applies_to_its_activity() {
    let stt = FakeStt::new()
        .with_transcripts(["hmm"])
        .with_min_silence(ms(100))
        .without_interim_results();
    // 1 s of user speech: the session default (0.5 s) would interrupt; this agent needs 2 s.
    let agent = Agent::builder("x")
        .turn_overrides(agents_core::TurnOverrides::new().with_min_interruption_duration(ms(2000)))
        .build()
        .unwrap();
    let llm = FakeLlm::new().push_response(FakeResponse::text("Yes?"));
    let r = audio_rig_with_stt(
        &[(false, 600), (true, 1000), (false, 3000)],
        stt,
        llm,
        FakeAudioOutput::new(),
        agent,
    )
    .await;
    let h = r.session.say_text("one two three four five six").unwrap();
    tokio::time::sleep(ms(1550)).await;
    assert!(
        !h.interrupted(),
        "1 s of speech is below the agent's 2 s minimum"
    );
    r.session.close().await.unwrap();
}

struct AwayLogger(Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>);

#[async_trait]
impl AgentHooks for AwayLogger {
    async fn on_user_away(&self, _session: &SessionHandle) {
        self.0.lock().unwrap().push(tokio::time::Instant::now());
    }
}

#[tokio::test(start_paused = true)]
async fn the_user_away_hook_runs_when_both_sides_stay_silent_for_the_timeout() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let agent = Agent::builder("x")
        .hooks(AwayLogger(Arc::clone(&log)))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let r = audio_rig_opts(
        &[(false, 4000)],
        FakeStt::new(),
        FakeLlm::new(),
        agent,
        SessionOptions::default().with_user_away_timeout(Some(ms(2000))),
    )
    .await;
    tokio::time::sleep(ms(3000)).await;
    let calls = log.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0] - t0 >= ms(2000));
    assert_eq!(r.session.user_state(), agents_core::UserState::Away);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_backchannel_does_not_stop_the_agent_when_so_configured() {
    use agents_pipeline::interruption::BackchannelFilter;
    let options = SessionOptions::default()
        .with_interruption(
            InterruptionOptions::default()
                .with_aec_warmup_duration(None)
                .with_backchannel(Some(BackchannelFilter::default())),
        )
        .with_user_away_timeout(None);
    let r = audio_rig_full(
        &[(false, 500), (true, 700), (false, 4000)],
        FakeStt::new()
            .with_transcripts(["yeah"])
            .with_min_silence(ms(100)),
        FakeLlm::new(),
        FakeAudioOutput::new(),
        Agent::new("x"),
        options,
    )
    .await;
    let h = r
        .session
        .say_text("one two three four five six seven eight nine ten")
        .unwrap();
    assert!(!h.wait_for_playout().await, "\"yeah\" is a backchannel");
    assert_eq!(r.out.heard_duration(), ms(3000));
    tokio::time::sleep(ms(1000)).await;
    assert_eq!(r.llm.request_count(), 0, "no reply to a backchannel");
    assert_eq!(
        user_and_assistant(&r.session),
        vec![(
            ChatRole::Assistant,
            "one two three four five six seven eight nine ten".to_owned(),
            false
        )]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn manual_turn_detection_replies_only_after_commit_user_turn() {
    use agents_pipeline::recognition::TurnDetectionMode;
    let llm = FakeLlm::new().push_response(FakeResponse::text("Booked."));
    let r = audio_rig_full(
        &[(true, 1000), (false, 5000)],
        FakeStt::new()
            .with_transcripts(["book a table"])
            .with_min_silence(ms(100)),
        llm,
        FakeAudioOutput::new(),
        Agent::new("x"),
        SessionOptions::default()
            .with_turn_detection(TurnDetectionMode::Manual)
            .with_user_away_timeout(None),
    )
    .await;
    tokio::time::sleep(ms(3000)).await;
    assert_eq!(r.llm.request_count(), 0, "no end of turn without a commit");
    assert!(user_and_assistant(&r.session).is_empty());
    r.session.commit_user_turn().unwrap();
    r.rec
        .wait_for(ms(5000), |e| matches!(e, SessionEvent::ConversationItemAdded { item } if item.as_message().is_some_and(|m| m.role == ChatRole::Assistant)))
        .await;
    assert_eq!(
        user_and_assistant(&r.session),
        vec![
            (ChatRole::User, "book a table".to_owned(), false),
            (ChatRole::Assistant, "Booked.".to_owned(), false),
        ]
    );
    r.session.close().await.unwrap();
    assert_eq!(
        r.session.commit_user_turn(),
        Err(agents_core::SessionError::NotRunning)
    );
}
