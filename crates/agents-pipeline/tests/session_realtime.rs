//! The realtime (speech-to-speech) path of a session, with the testkit's scripted realtime model, on a paused
//! clock (livekit-agents-behaviours.md §5.3, §5.4, behaviours 66, 115, 121).

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use agents_audio::SampleRate;
use agents_core::chat::{ChatItem, ChatRole};
use agents_core::events::{
    AgentState, CloseReason, Component, SessionEvent, SpeechSource, UserState,
};
use agents_core::llm::ToolChoice;
use agents_core::metrics::Metrics;
use agents_core::realtime::{RealtimeError, RealtimeEvent};
use agents_core::session::{ReplyRequest, SessionError};
use agents_core::tools::{FunctionTool, ToolOutcome};
use agents_core::{Agent, AudioInput, SessionControl, SessionIo};
use agents_pipeline::{AgentSession, AgentSessionBuilder, SessionOptions};
use agents_testkit::signal::sequence;
use agents_testkit::{
    FakeAudioOutput, FakeRealtimeModel, FakeRealtimeResponse, FakeTextOutput, FakeTts, FakeVad,
};

use session_common::{Recorder, ms};

const LONG: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen \
                    fifteen sixteen seventeen eighteen nineteen twenty";

struct Rt {
    session: AgentSession,
    model: FakeRealtimeModel,
    out: Arc<FakeAudioOutput>,
    text: Arc<FakeTextOutput>,
    rec: Recorder,
}

/// Starts `agent` in a session built by `builder` (realtime model set by the caller), with the user's audio
/// `parts` (`true` = speech, at 24 kHz) paced on the tokio clock from t = 0.
async fn start(
    builder: AgentSessionBuilder,
    model: FakeRealtimeModel,
    agent: Agent,
    out: FakeAudioOutput,
    parts: &[(bool, u64)],
) -> Rt {
    let out = Arc::new(out);
    let text = Arc::new(FakeTextOutput::new());
    let session = builder.build();
    let rec = Recorder::start(&session);
    let (tx, input) = AudioInput::channel("user", 64);
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    let frames = sequence(&parts, SampleRate::HZ_24000);
    session
        .start(
            agent,
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(out.clone())
                .with_text_output(text.clone()),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut at = tokio::time::Instant::now();
        for f in frames {
            tokio::time::sleep_until(at).await;
            at += f.duration();
            if tx.send(f).await.is_err() {
                return;
            }
        }
        // Keep the input open: an ended input is not a user action.
        std::future::pending::<()>().await;
    });
    Rt {
        session,
        model,
        out,
        text,
        rec,
    }
}

fn options() -> SessionOptions {
    SessionOptions::default().with_user_away_timeout(None)
}

fn server_vad_model() -> FakeRealtimeModel {
    FakeRealtimeModel::new()
        .with_server_vad(true)
        .with_vad_min_silence(ms(300))
}

impl Rt {
    fn messages(&self) -> Vec<(ChatRole, String, bool, String)> {
        self.session
            .history()
            .items()
            .iter()
            .filter_map(|i| match i {
                ChatItem::Message(m) => Some((
                    m.role,
                    m.text_content().unwrap_or_default(),
                    m.interrupted,
                    m.id.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    async fn wait_for_assistant(&self) {
        self.rec
            .wait_for(ms(20_000), |e| {
                matches!(e, SessionEvent::ConversationItemAdded { item: ChatItem::Message(m) }
                    if m.role == ChatRole::Assistant)
            })
            .await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_spoken_turn_with_server_turn_detection_gets_a_spoken_reply() {
    let model = server_vad_model().push_response(FakeRealtimeResponse::text("It is sunny today."));
    model.push_user_transcript("What is the weather?");
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let agent = Agent::new("You are a weather bot.");
    let r = start(
        builder,
        model,
        agent,
        FakeAudioOutput::new(),
        &[(true, 600), (false, 800)],
    )
    .await;
    r.wait_for_assistant().await;
    r.rec
        .wait_for(ms(5_000), |e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Listening,
                    old: AgentState::Speaking
                }
            )
        })
        .await;

    let record = r.model.last_session().unwrap();
    let opened = record.options().unwrap();
    assert_eq!(
        opened.instructions.as_deref(),
        Some("You are a weather bot.")
    );
    assert!(record.pushed_audio() >= ms(1000), "{record:?}");
    // The server decided the turn: nothing committed or asked by the session.
    assert_eq!(record.commits(), 0);
    assert!(record.replies().is_empty());

    let msgs = r.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0].0, ChatRole::User);
    assert_eq!(msgs[0].1, "What is the weather?");
    assert_eq!(msgs[1].0, ChatRole::Assistant);
    assert_eq!(msgs[1].1, "It is sunny today.");
    assert!(!msgs[1].2);
    // The assistant message carries the model's item id (so truncation and context sync address it).
    assert!(msgs[1].3.starts_with("item_"), "{msgs:?}");
    assert!(r.out.heard_duration() > ms(500));
    assert_eq!(r.text.all_text(), "It is sunny today.");

    assert_eq!(
        r.rec.count(|e| matches!(
            e,
            SessionEvent::UserInputTranscribed { transcript, is_final: true, .. }
                if transcript == "What is the weather?"
        )),
        1
    );
    assert_eq!(
        r.rec.count(|e| matches!(
            e,
            SessionEvent::SpeechCreated {
                source: SpeechSource::GenerateReply,
                user_initiated: false,
                ..
            }
        )),
        1
    );
    let user_states: Vec<UserState> = r
        .rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::UserStateChanged { new, .. } => Some(new),
            _ => None,
        })
        .collect();
    assert_eq!(user_states, [UserState::Speaking, UserState::Listening]);
    let states = r.rec.agent_states();
    let thinking = states.iter().position(|s| *s == AgentState::Thinking);
    let speaking = states.iter().position(|s| *s == AgentState::Speaking);
    assert!(thinking.is_some() && speaking > thinking, "{states:?}");
    assert_eq!(states.last(), Some(&AgentState::Listening));
    assert_eq!(
        r.rec.count(
            |e| matches!(e, SessionEvent::MetricsCollected(Metrics::Realtime(m)) if m.label == "fake.realtime")
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_realtime_model_serves_generate_reply_with_instructions() {
    let model = FakeRealtimeModel::new().push_response(FakeRealtimeResponse::text("Hello there!"));
    let agent = Agent::builder("Be brief.")
        .realtime_model(Arc::new(model.clone()))
        .build()
        .unwrap();
    let builder = AgentSession::builder().options(options());
    let r = start(builder, model, agent, FakeAudioOutput::new(), &[]).await;
    let h = r
        .session
        .generate_reply(ReplyRequest::new().with_instructions("Greet the user."))
        .unwrap();
    h.wait_for_playout().await;
    assert!(!h.interrupted());
    let record = r.model.last_session().unwrap();
    assert_eq!(record.replies(), [Some("Greet the user.".to_owned())]);
    let msgs = r.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1, "Hello there!");
    assert_eq!(
        r.rec.count(|e| matches!(
            e,
            SessionEvent::SpeechCreated { speech, user_initiated: true, .. } if speech.id() == h.id()
        )),
        1
    );
    // The reply's audio was played.
    assert!(r.out.heard_duration() > ms(300));
}

#[tokio::test(start_paused = true)]
async fn server_turn_detection_without_interruptions_is_rejected_behaviour_66() {
    let model = server_vad_model();
    let session = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options().with_allow_interruptions(false))
        .build();
    let err = session
        .start(Agent::new("x"), SessionIo::new())
        .await
        .unwrap_err();
    match err {
        SessionError::Invalid { reason } => {
            assert!(reason.contains("fake.realtime"), "{reason}");
            assert!(reason.contains("allow_interruptions"), "{reason}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(model.sessions().is_empty());

    // Without server turn detection the same setting is accepted.
    let local = FakeRealtimeModel::new();
    let session = AgentSession::builder()
        .realtime(Arc::new(local.clone()))
        .options(options().with_allow_interruptions(false))
        .build();
    session
        .start(Agent::new("x"), SessionIo::new())
        .await
        .unwrap();
    let end = tokio::time::Instant::now() + ms(1000);
    while local.sessions().is_empty() && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(1)).await;
    }
    assert_eq!(local.sessions().len(), 1);
    session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn local_vad_turns_commit_the_audio_and_ask_one_reply_no_preemptive_behaviour_115_121() {
    let model = FakeRealtimeModel::new()
        .with_reply_on_commit(false)
        .push_response(FakeRealtimeResponse::text("Got it."));
    // Speech 0–500 ms, then silence.
    let vad = Arc::new(FakeVad::scripted(vec![(ms(0), ms(500))]));
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .vad(vad)
        .options(options().with_preemptive_generation(true));
    let r = start(
        builder,
        model,
        Agent::new("x"),
        FakeAudioOutput::new(),
        &[(true, 500), (false, 2000)],
    )
    .await;
    r.wait_for_assistant().await;
    let record = r.model.last_session().unwrap();
    assert_eq!(record.commits(), 1);
    assert_eq!(record.replies(), [None]);
    assert_eq!(r.model.remaining(), 0);
    let msgs = r.messages();
    assert_eq!(msgs.last().unwrap().1, "Got it.");
    assert_eq!(
        r.rec.count(|e| matches!(
            e,
            SessionEvent::MetricsCollected(Metrics::EndOfUtterance(_))
        )),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn say_needs_a_tts_and_its_text_joins_the_model_context() {
    let model = FakeRealtimeModel::new();
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let r = start(
        builder,
        model.clone(),
        Agent::new("x"),
        FakeAudioOutput::new(),
        &[],
    )
    .await;
    assert!(matches!(
        r.session.say_text("Hello"),
        Err(SessionError::NoTts)
    ));
    r.session.close().await.unwrap();

    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .tts(Arc::new(FakeTts::new()))
        .options(options());
    let r = start(builder, model, Agent::new("x"), FakeAudioOutput::new(), &[]).await;
    let h = r.session.say_text("Welcome aboard.").unwrap();
    h.wait_for_playout().await;
    assert!(r.out.heard_duration() > ms(300));
    let end = tokio::time::Instant::now() + ms(1000);
    let record = r.model.last_session().unwrap();
    while record.chat_ctx_updates().is_empty() && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(1)).await;
    }
    let ctx = record.chat_ctx();
    assert!(
        ctx.items().iter().any(|i| matches!(i, ChatItem::Message(m)
            if m.role == ChatRole::Assistant && m.text_content().as_deref() == Some("Welcome aboard."))),
        "{ctx:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn server_barge_in_interrupts_truncates_and_commits_only_the_played_text() {
    let model = server_vad_model().push_response(FakeRealtimeResponse::text(LONG));
    model.push_user_transcript("Tell me a story.");
    model.push_user_transcript("Stop.");
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    // Turn 0–300 ms, ends at ~600 ms; the reply plays; the user barges in at 2000 ms.
    let r = start(
        builder,
        model,
        Agent::new("x"),
        FakeAudioOutput::new(),
        &[(true, 300), (false, 1700), (true, 300), (false, 1000)],
    )
    .await;
    r.rec
        .wait_for(ms(20_000), |e| {
            matches!(e, SessionEvent::ConversationItemAdded { item: ChatItem::Message(m) }
                if m.role == ChatRole::Assistant && m.interrupted)
        })
        .await;
    let record = r.model.last_session().unwrap();
    let truncations = record.truncations();
    assert_eq!(truncations.len(), 1, "{truncations:?}");
    let (item, played) = &truncations[0];
    // Heard from ~600 ms to the barge-in at 2000 ms: about 1.4 s.
    assert!(
        *played > ms(1000) && *played < ms(1800),
        "played {played:?}"
    );
    // The model had finished generating (only playout was left): nothing to cancel on the server.
    assert_eq!(record.interrupts(), 0);
    let msgs = r.messages();
    let (_, text, interrupted, id) = msgs
        .iter()
        .find(|m| m.0 == ChatRole::Assistant)
        .unwrap()
        .clone();
    assert!(interrupted);
    assert_eq!(&id, item);
    assert!(
        !text.is_empty() && LONG.starts_with(&text) && text.len() < LONG.len() / 2,
        "{text}"
    );
    // What was heard matches what was truncated.
    let heard = r.out.heard_duration();
    assert!(heard.abs_diff(*played) <= ms(20), "{heard:?} vs {played:?}");
}

#[tokio::test(start_paused = true)]
async fn session_interrupt_truncates_the_realtime_reply() {
    let model = FakeRealtimeModel::new().push_response(FakeRealtimeResponse::text(LONG));
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let r = start(builder, model, Agent::new("x"), FakeAudioOutput::new(), &[]).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(5_000), |e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Speaking,
                    ..
                }
            )
        })
        .await;
    tokio::time::sleep(ms(700)).await;
    r.session.interrupt().await.unwrap();
    h.wait_for_playout().await;
    assert!(h.interrupted());
    let record = r.model.last_session().unwrap();
    let truncations = record.truncations();
    assert_eq!(truncations.len(), 1);
    assert!(
        truncations[0].1 >= ms(600) && truncations[0].1 <= ms(800),
        "{truncations:?}"
    );
    let msgs = r.messages();
    assert!(msgs[0].2, "{msgs:?}");
    assert!(LONG.starts_with(&msgs[0].1) && msgs[0].1.len() < LONG.len());
}

fn weather_tool(calls: Arc<AtomicUsize>) -> FunctionTool {
    FunctionTool::raw(
        "get_weather",
        "Weather of a city.",
        json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        move |_ctx, _args| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(ToolOutcome::Output("sunny, 22 C".to_owned()))
            }
        },
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_tool_call_round_trip_sends_the_output_and_asks_a_follow_up() {
    let model = FakeRealtimeModel::new()
        .push_response(FakeRealtimeResponse::function_call(
            "get_weather",
            r#"{"city":"Paris"}"#,
        ))
        .push_response(FakeRealtimeResponse::text("It is sunny in Paris."));
    let calls = Arc::new(AtomicUsize::new(0));
    let agent = Agent::builder("x")
        .tool(weather_tool(Arc::clone(&calls)))
        .build()
        .unwrap();
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let r = start(builder, model, agent, FakeAudioOutput::new(), &[]).await;
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.wait_for_assistant().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let record = r.model.last_session().unwrap();
    // The tools were given at session start.
    assert_eq!(record.options().unwrap().tools.len(), 1);
    // The output went into the model's context before the follow-up was asked.
    let updates = record.chat_ctx_updates();
    assert_eq!(updates.len(), 1);
    assert!(updates[0].items().iter().any(|i| matches!(i,
        ChatItem::FunctionCallOutput(o) if o.call_id == "call_1" && o.output == "sunny, 22 C")));
    assert_eq!(record.replies(), [None, None]);
    assert_eq!(
        r.rec.count(
            |e| matches!(e, SessionEvent::FunctionToolsExecuted { calls, .. } if calls.len() == 1)
        ),
        1
    );
    assert_eq!(
        r.rec.count(|e| matches!(
            e,
            SessionEvent::SpeechCreated { source: SpeechSource::ToolResponse, speech, .. }
                if speech.step_index() == 1
        )),
        1
    );
    assert_eq!(r.messages().last().unwrap().1, "It is sunny in Paris.");
}

#[tokio::test(start_paused = true)]
async fn the_last_tool_step_is_asked_without_tools_then_the_choice_is_restored() {
    let model = FakeRealtimeModel::new()
        .push_response(FakeRealtimeResponse::function_call("get_weather", "{}"))
        .push_response(FakeRealtimeResponse::text("Done."));
    let calls = Arc::new(AtomicUsize::new(0));
    let agent = Agent::builder("x")
        .tool(weather_tool(Arc::clone(&calls)))
        .build()
        .unwrap();
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options().with_max_tool_steps(1));
    let r = start(builder, model, agent, FakeAudioOutput::new(), &[]).await;
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.wait_for_assistant().await;
    let record = r.model.last_session().unwrap();
    let end = tokio::time::Instant::now() + ms(1000);
    while record.tool_choices().len() < 2 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(1)).await;
    }
    assert_eq!(record.tool_choices(), [ToolChoice::None, ToolChoice::Auto]);
}

#[tokio::test(start_paused = true)]
async fn a_handoff_tool_closes_the_realtime_session_and_starts_the_next_agent() {
    let model = FakeRealtimeModel::new()
        .push_response(FakeRealtimeResponse::function_call("transfer", "{}"));
    let billing = Agent::builder("You are billing.")
        .id("billing")
        .build()
        .unwrap();
    let transfer = FunctionTool::raw(
        "transfer",
        "Transfers to billing.",
        json!({"type": "object", "properties": {}}),
        move |_ctx, _args| {
            let target = billing.clone();
            async move { Ok(ToolOutcome::handoff(target)) }
        },
    )
    .unwrap();
    let front = Agent::builder("You are the front desk.")
        .id("front")
        .tool(transfer)
        .build()
        .unwrap();
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let r = start(builder, model, front, FakeAudioOutput::new(), &[]).await;
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    let end = tokio::time::Instant::now() + ms(10_000);
    while r.model.sessions().len() < 2 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(1)).await;
    }
    let sessions = r.model.sessions();
    assert_eq!(sessions.len(), 2);
    assert!(sessions[0].is_closed());
    assert!(!sessions[1].is_closed());
    assert_eq!(
        sessions[1].options().unwrap().instructions.as_deref(),
        Some("You are billing.")
    );
    assert_eq!(
        r.session.current_agent().map(|a| a.id().to_owned()),
        Some("billing".to_owned())
    );
    // No follow-up was asked of the old session.
    assert_eq!(sessions[0].replies().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn provider_errors_are_events_and_the_session_keeps_running() {
    let model = FakeRealtimeModel::new().push_response(FakeRealtimeResponse::text("Still here."));
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let r = start(
        builder,
        model.clone(),
        Agent::new("x"),
        FakeAudioOutput::new(),
        &[],
    )
    .await;
    let end = tokio::time::Instant::now() + ms(1000);
    while model.sessions().is_empty() && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(1)).await;
    }
    assert!(model.inject_event(RealtimeEvent::Error {
        error: RealtimeError::Protocol {
            reason: "rate limited".into()
        },
        recoverable: true,
    }));
    r.rec
        .wait_for(ms(1000), |e| {
            matches!(e, SessionEvent::Error(err)
                if err.component == Component::Realtime && err.recoverable
                    && err.error.to_string().contains("rate limited"))
        })
        .await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    assert_eq!(r.messages().last().unwrap().1, "Still here.");
}

#[tokio::test(start_paused = true)]
async fn a_failed_connection_is_unrecoverable_and_closes_the_session_with_reason_error() {
    let model = FakeRealtimeModel::new();
    model.set_connect_error(Some(RealtimeError::SessionClosed));
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let r = start(builder, model, Agent::new("x"), FakeAudioOutput::new(), &[]).await;
    r.rec
        .wait_for(ms(1000), |e| {
            matches!(e, SessionEvent::Error(err) if err.component == Component::Realtime && !err.recoverable)
        })
        .await;
    // An unrecoverable error closes the session (as LiveKit), carrying the error.
    r.rec
        .wait_for(ms(1000), |e| {
            matches!(
                e,
                SessionEvent::Close {
                    reason: CloseReason::Error,
                    error: Some(_)
                }
            )
        })
        .await;
    assert!(matches!(
        r.session.generate_reply(ReplyRequest::new()),
        Err(SessionError::NotRunning)
    ));
}

#[tokio::test(start_paused = true)]
async fn model_audio_is_resampled_to_the_output_rate() {
    let model = FakeRealtimeModel::new().push_response(FakeRealtimeResponse::text("Hello world."));
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let out = FakeAudioOutput::new().with_sample_rate(Some(SampleRate::HZ_48000));
    let r = start(builder, model, Agent::new("x"), out, &[]).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    assert!(!h.interrupted());
    let frames = r.out.captured_frames();
    assert!(!frames.is_empty());
    assert!(
        frames
            .iter()
            .all(|f| f.sample_rate() == SampleRate::HZ_48000)
    );
    let total: Duration = frames.iter().map(|f| f.duration()).sum();
    // Same speech, other rate: the FakeTts formula for two words is well over 300 ms.
    assert!(total > ms(300), "{total:?}");
    assert!(
        r.rec.count(|e| matches!(e, SessionEvent::Error(_))) == 0,
        "{:?}",
        r.rec.events()
    );
}

#[tokio::test(start_paused = true)]
async fn local_vad_barge_in_interrupts_truncates_and_starts_the_next_turn() {
    let model = FakeRealtimeModel::new()
        .with_reply_on_commit(false)
        .push_response(FakeRealtimeResponse::text(LONG));
    // First turn 0–500 ms; the user talks over the reply from 2500 ms to 3200 ms.
    let vad = Arc::new(FakeVad::scripted(vec![
        (ms(0), ms(500)),
        (ms(2500), ms(3200)),
    ]));
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .vad(vad)
        .options(options().with_interruption(
            agents_pipeline::InterruptionOptions::default().with_aec_warmup_duration(None),
        ));
    let r = start(
        builder,
        model,
        Agent::new("x"),
        FakeAudioOutput::new(),
        &[(true, 500), (false, 2000), (true, 700), (false, 2000)],
    )
    .await;
    r.rec
        .wait_for(ms(20_000), |e| {
            matches!(e, SessionEvent::ConversationItemAdded { item: ChatItem::Message(m) }
                if m.role == ChatRole::Assistant && m.interrupted)
        })
        .await;
    let record = r.model.last_session().unwrap();
    let end = tokio::time::Instant::now() + ms(5_000);
    while record.commits() < 2 && tokio::time::Instant::now() < end {
        tokio::time::sleep(ms(1)).await;
    }
    // Both user turns were committed and answered.
    assert_eq!(record.commits(), 2);
    assert_eq!(record.replies().len(), 2);
    let truncations = record.truncations();
    assert_eq!(truncations.len(), 1, "{truncations:?}");
    // Playback started after the first end of turn (~1 s) and stopped once the second speech lasted over the
    // 0.5 s minimum (~3 s).
    assert!(
        truncations[0].1 >= ms(1500) && truncations[0].1 <= ms(2500),
        "{truncations:?}"
    );
    let msgs = r.messages();
    let assistant = msgs.iter().find(|m| m.0 == ChatRole::Assistant).unwrap();
    assert!(assistant.2);
    assert!(LONG.starts_with(&assistant.1) && assistant.1.len() < LONG.len());
}

#[tokio::test(start_paused = true)]
async fn interrupting_a_response_still_generating_cancels_it_on_the_server() {
    // Slow generation: the response is still active on the server when the user interrupts.
    let model = FakeRealtimeModel::new()
        .with_real_time_factor(1.0)
        .push_response(FakeRealtimeResponse::text(LONG));
    let builder = AgentSession::builder()
        .realtime(Arc::new(model.clone()))
        .options(options());
    let r = start(builder, model, Agent::new("x"), FakeAudioOutput::new(), &[]).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(5_000), |e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Speaking,
                    ..
                }
            )
        })
        .await;
    tokio::time::sleep(ms(500)).await;
    r.session.interrupt().await.unwrap();
    h.wait_for_playout().await;
    let record = r.model.last_session().unwrap();
    assert_eq!(record.interrupts(), 1);
    assert_eq!(record.truncations().len(), 1);
    // The cancelled response's metrics say so.
    r.rec
        .wait_for(
            ms(1_000),
            |e| matches!(e, SessionEvent::MetricsCollected(Metrics::Realtime(m)) if m.cancelled),
        )
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_handoff_to_a_server_vad_agent_without_interruptions_is_a_typed_error() {
    let first = FakeRealtimeModel::new();
    let strict = server_vad_model();
    let builder = AgentSession::builder()
        .realtime(Arc::new(first.clone()))
        .options(options());
    let r = start(builder, first, Agent::new("x"), FakeAudioOutput::new(), &[]).await;
    let next = Agent::builder("strict")
        .realtime_model(Arc::new(strict.clone()))
        .allow_interruptions(false)
        .build()
        .unwrap();
    r.session.update_agent(next).unwrap();
    r.rec
        .wait_for(ms(5_000), |e| {
            matches!(e, SessionEvent::Error(err)
            if err.component == Component::Realtime && !err.recoverable
                && matches!(
                    err.error.downcast_ref::<agents_pipeline::RealtimeSetupError>(),
                    Some(agents_pipeline::RealtimeSetupError::InterruptionsRequired { label })
                        if label == "fake.realtime"
                ))
        })
        .await;
    // The agent did not start: no realtime session was opened for it.
    assert!(strict.sessions().is_empty());
}
