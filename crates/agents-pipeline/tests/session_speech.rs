//! Session basics on a paused clock: misuse errors, say / generate_reply playout, scheduling order,
//! pre-generation, interruption commits, provider errors. Reference numbers are from
//! livekit-agents-behaviours.md.

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use agents_core::chat::ChatRole;
use agents_core::error::ApiError;
use agents_core::events::{AgentState, Component, SessionEvent};
use agents_core::session::{ReplyRequest, SayRequest, SessionError};
use agents_core::speech::SpeechError;
use agents_core::{Agent, SessionControl};
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeTts};

use session_common::{ms, rig, rig_with};

#[tokio::test(start_paused = true)]
async fn say_before_start_and_after_close_give_the_livekit_errors_behaviour_4_3() {
    let r = rig(FakeLlm::new());
    let err = r.session.say(SayRequest::new("hi")).unwrap_err();
    assert_eq!(err, SessionError::NotRunning);
    assert_eq!(err.to_string(), "AgentSession isn't running");
    assert_eq!(
        r.session.generate_reply(ReplyRequest::new()).unwrap_err(),
        SessionError::NotRunning
    );
    assert_eq!(r.session.interrupt().await, Err(SessionError::NotRunning));

    r.start(Agent::new("be brief")).await;
    r.session.close().await.unwrap();
    assert_eq!(
        r.session.say(SayRequest::new("hi")).unwrap_err(),
        SessionError::NotRunning
    );
    assert_eq!(r.session.close().await, Err(SessionError::NotRunning));
    assert!(r.rec.count(|e| matches!(e, SessionEvent::Close { .. })) == 1);
}

#[tokio::test(start_paused = true)]
async fn say_without_tts_and_without_audio_is_refused() {
    let session = AgentSession::builder()
        .llm(std::sync::Arc::new(FakeLlm::new()))
        .build();
    session
        .start(Agent::new("x"), agents_core::SessionIo::new())
        .await
        .unwrap();
    let err = session.say(SayRequest::new("hello")).unwrap_err();
    assert_eq!(err, SessionError::NoTts);
    assert_eq!(
        err.to_string(),
        "trying to generate speech from text without a TTS model"
    );
    session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn say_plays_the_audio_commits_the_text_and_goes_back_to_listening() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let h = r.session.say_text("Hello there friend").unwrap();
    assert!(!h.wait_for_playout().await, "not interrupted");
    let heard = r.out.heard_duration();
    assert_eq!(heard, ms(900), "three words of 300 ms");
    assert_eq!(
        r.messages(),
        vec![(ChatRole::Assistant, "Hello there friend".to_owned(), false)]
    );
    assert_eq!(r.text.all_text().trim(), "Hello there friend");
    assert_eq!(
        r.rec.agent_states(),
        vec![
            AgentState::Listening,
            AgentState::Speaking,
            AgentState::Listening
        ]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn generate_reply_streams_llm_text_to_tts_and_records_user_input() {
    let llm =
        FakeLlm::new().push_response(FakeResponse::text("Sure, it is sunny.").chunked_words());
    let r = rig(llm);
    r.start(Agent::new("You are a weather bot.")).await;
    let h = r
        .session
        .generate_reply(ReplyRequest::new().with_user_input("How is the weather?"))
        .unwrap();
    assert!(!h.wait_for_playout().await);
    assert_eq!(
        r.messages(),
        vec![
            (ChatRole::User, "How is the weather?".to_owned(), false),
            (ChatRole::Assistant, "Sure, it is sunny.".to_owned(), false),
        ]
    );
    let req = r.llm.last_request().unwrap();
    let ctx = req.chat_ctx;
    assert_eq!(
        ctx.instructions().and_then(|m| m.text_content()).as_deref(),
        Some("You are a weather bot.")
    );
    assert_eq!(r.out.heard_duration(), ms(1200), "four words");
    assert!(r.rec.agent_states().contains(&AgentState::Thinking));
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn speeches_play_one_at_a_time_in_fifo_order_within_a_priority_behaviour_5_2() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let a = r.session.say_text("one").unwrap();
    let b = r.session.say_text("two two").unwrap();
    let c = r.session.say_text("three three three").unwrap();
    c.wait_for_playout().await;
    assert!(a.done() && b.done());
    let segs: Vec<_> = r.out.played_segments().iter().map(|s| s.position).collect();
    assert_eq!(
        segs,
        vec![ms(300), ms(600), ms(900)],
        "one segment each, in order, never overlapping"
    );
    let texts: Vec<String> = r.messages().into_iter().map(|m| m.1).collect();
    assert_eq!(texts, vec!["one", "two two", "three three three"]);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn priorities_order_playout_high_before_normal_before_low_behaviour_5_1() {
    use agents_core::speech::SpeechPriority;
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let playing = r.session.say_text("playing now").unwrap();
    tokio::time::sleep(ms(50)).await;
    let low = r
        .session
        .say(SayRequest::new("low").with_priority(SpeechPriority::Low))
        .unwrap();
    r.session.say_text("normal one").unwrap();
    r.session
        .say(SayRequest::new("high").with_priority(SpeechPriority::High))
        .unwrap();
    r.session.say_text("normal two").unwrap();
    low.wait_for_playout().await;
    assert!(playing.done());
    let texts: Vec<String> = r.messages().into_iter().map(|m| m.1).collect();
    assert_eq!(
        texts,
        vec!["playing now", "high", "normal one", "normal two", "low"],
        "the playing speech is never cut; then high, normal in FIFO order, low"
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_queued_reply_is_generated_before_it_is_authorized_to_play_behaviour_5_2() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("later"));
    let r = rig(llm);
    r.start(Agent::new("x")).await;
    let first = r
        .session
        .say_text("a fairly long sentence to play first")
        .unwrap();
    let reply = r.session.generate_reply(ReplyRequest::new()).unwrap();
    tokio::time::sleep(ms(100)).await;
    assert!(!first.done(), "the say still plays");
    assert!(!reply.is_authorized());
    assert_eq!(
        r.llm.request_count(),
        1,
        "the LLM already ran for the queued reply"
    );
    assert_eq!(
        r.tts.stream_count(),
        2,
        "the TTS already ran for the queued reply"
    );
    assert!(
        r.tts.pushed_texts().iter().any(|t| t.contains("later")),
        "{:?}",
        r.tts.pushed_texts()
    );
    reply.wait_for_playout().await;
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_interruption_1_2_s_into_a_10_word_reply_commits_exactly_the_played_words_behaviour_5_4()
{
    let words = "one two three four five six seven eight nine ten";
    let llm = FakeLlm::new().push_response(FakeResponse::text(words).chunked_words());
    // 250 ms per word: at 1.2 s the middles of words 1-5 (0.125 s ... 1.125 s) have been heard, word 6 starts at 1.25 s.
    let r = rig_with(
        llm,
        FakeTts::new().with_word_duration(ms(250)),
        FakeAudioOutput::new(),
        SessionOptions::default(),
    );
    r.start(Agent::new("x")).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(5000), |e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Speaking,
                    ..
                }
            )
        })
        .await;
    tokio::time::sleep(ms(1200)).await;
    r.session.interrupt().await.unwrap();
    assert!(h.wait_for_playout().await, "interrupted");
    let seg = r.out.played_segments();
    assert_eq!(seg.len(), 1);
    assert!(seg[0].interrupted);
    assert!(
        seg[0].position >= ms(1200) && seg[0].position < ms(1250),
        "{:?}",
        seg[0].position
    );
    assert_eq!(
        r.messages(),
        vec![(
            ChatRole::Assistant,
            "one two three four five".to_owned(),
            true
        )]
    );
    assert_eq!(r.session.agent_state(), AgentState::Listening);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn interrupt_refuses_when_a_speech_does_not_allow_interruptions() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let h = r
        .session
        .say(SayRequest::new("do not cut me off").with_allow_interruptions(false))
        .unwrap();
    tokio::time::sleep(ms(200)).await;
    assert_eq!(
        r.session.interrupt().await,
        Err(SessionError::Speech(SpeechError::NotInterruptible))
    );
    assert!(!h.wait_for_playout().await);
    assert_eq!(r.out.heard_duration(), ms(1500), "all five words played");
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_provider_error_mid_turn_surfaces_as_an_error_event_and_the_session_keeps_listening() {
    let llm = FakeLlm::new()
        .push_response(
            FakeResponse::text("Let me").then_error(ApiError::status("upstream exploded", 500)),
        )
        .push_response(FakeResponse::text("Back again."));
    let r = rig(llm);
    r.start(Agent::new("x")).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    let errors: Vec<_> = r
        .rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].component, Component::Llm);
    assert!(errors[0].recoverable);
    assert_eq!(r.session.agent_state(), AgentState::Listening);
    // The session goes on.
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    assert!(!h.wait_for_playout().await);
    let texts: Vec<String> = r.messages().into_iter().map(|m| m.1).collect();
    assert_eq!(texts, vec!["Let me", "Back again."]);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn close_drains_queued_speech_within_the_bound() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let a = r.session.say_text("first words").unwrap();
    let b = r.session.say_text("second words").unwrap();
    r.session.close().await.unwrap();
    assert!(a.done() && b.done());
    assert!(!a.interrupted() && !b.interrupted(), "both played out");
    assert_eq!(r.out.heard_duration(), ms(1200));
}

#[tokio::test(start_paused = true)]
async fn close_cancels_speech_that_outlives_the_drain_bound() {
    let r = rig_with(
        FakeLlm::new(),
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default().with_close_timeout(ms(500)),
    );
    r.start(Agent::new("x")).await;
    let a = r.session.say_text("a b c d e f g h i j").unwrap();
    r.session.close().await.unwrap();
    assert!(a.done());
    assert!(a.interrupted());
    assert!(r.out.heard_duration() < ms(3000));
}

struct Nodes;

#[async_trait::async_trait]
impl agents_core::AgentHooks for Nodes {
    fn llm_node(
        &self,
        llm: &std::sync::Arc<dyn agents_core::Llm>,
        request: agents_core::ChatRequest,
    ) -> agents_core::LlmStream {
        use futures::StreamExt;
        // Filter the model's stream: drop a forbidden word.
        let inner = llm.chat(request);
        agents_core::LlmStream::new(
            "filtered",
            "m",
            inner.map(|c| match c {
                Ok(agents_core::ChatChunk::Text(t)) => {
                    Ok(agents_core::ChatChunk::Text(t.replace("darn ", "")))
                }
                other => other,
            }),
        )
    }

    fn tts_node(
        &self,
        text: agents_core::stream::EventStream<String>,
    ) -> agents_core::stream::EventStream<String> {
        use futures::StreamExt;
        // Rewrite what is spoken only.
        agents_core::stream::EventStream::new(text.map(|t| t.replace("km", "kilometers")))
    }
}

#[tokio::test(start_paused = true)]
async fn agent_nodes_filter_the_llm_stream_and_rewrite_text_before_tts() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("It is darn 5 km away."));
    let r = rig(llm);
    r.start(Agent::builder("x").hooks(Nodes).build().unwrap())
        .await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    let spoken = r.tts.pushed_texts().concat();
    assert_eq!(spoken, "It is 5 kilometers away.");
    assert_eq!(
        r.messages(),
        vec![(ChatRole::Assistant, "It is 5 km away.".to_owned(), false)],
        "the context records the LLM text (after the llm node), not the TTS rewrite"
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_non_streaming_tts_is_fed_sentence_by_sentence_and_interruptions_still_truncate() {
    let llm = FakeLlm::new().push_response(
        FakeResponse::text("First one here. Second sentence now. Third and last.").chunked_words(),
    );
    let r = rig_with(
        llm,
        FakeTts::new().without_streaming(),
        FakeAudioOutput::new(),
        SessionOptions::default(),
    );
    r.start(Agent::new("x")).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(5000), |e| {
            matches!(
                e,
                SessionEvent::AgentStateChanged {
                    new: AgentState::Speaking,
                    ..
                }
            )
        })
        .await;
    // The core adapter merges sentences under 20 characters: two syntheses, 6 words then 3, at 300 ms a word.
    // At 2.0 s the middle of word 7 (the first of the second synthesis, 1.8 to 2.1 s) has been played.
    tokio::time::sleep(ms(2000)).await;
    r.session.interrupt().await.unwrap();
    assert!(h.wait_for_playout().await);
    assert_eq!(
        r.tts.synthesized(),
        vec!["First one here. Second sentence now.", "Third and last."],
        "sentence by sentence, short sentences merged"
    );
    assert_eq!(
        r.messages(),
        vec![(
            ChatRole::Assistant,
            "First one here. Second sentence now. Third".to_owned(),
            true
        )],
        "word timings of later sentences are offset by the audio before them"
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn say_with_pre_rendered_audio_skips_the_tts() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let frames = agents_testkit::signal::tone(ms(700), agents_audio::SampleRate::HZ_16000);
    let audio = agents_core::stream::EventStream::from_items(frames);
    let h = r
        .session
        .say(SayRequest::new("a recorded greeting").with_audio(audio))
        .unwrap();
    assert!(!h.wait_for_playout().await);
    assert_eq!(r.out.heard_duration(), ms(700));
    assert!(r.tts.synthesized().is_empty() && r.tts.stream_count() == 0);
    assert_eq!(
        r.messages(),
        vec![(ChatRole::Assistant, "a recorded greeting".to_owned(), false)]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_during_close_get_the_closing_errors_behaviour_4_3() {
    let r = rig(FakeLlm::new());
    r.start(Agent::new("x")).await;
    let long = r
        .session
        .say_text("a long goodbye that takes a while")
        .unwrap();
    let closer = {
        let s = r.session.clone();
        tokio::spawn(async move { s.close().await })
    };
    tokio::time::sleep(ms(10)).await;
    let err = r.session.say(SayRequest::new("one more")).unwrap_err();
    assert_eq!(err, SessionError::Closing { operation: "say" });
    assert_eq!(err.to_string(), "AgentSession is closing, cannot use say()");
    let err = r.session.generate_reply(ReplyRequest::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "AgentSession is closing, cannot use generate_reply()"
    );
    closer.await.unwrap().unwrap();
    assert!(long.done() && !long.interrupted(), "queued speech drained");
}

#[tokio::test(start_paused = true)]
async fn userdata_is_typed_and_tools_reach_the_live_session_through_run_context() {
    use agents_core::tools::{FunctionTool, RunContext, ToolOutcome};
    #[derive(Debug)]
    struct Account {
        balance: u32,
    }
    let tool = FunctionTool::raw(
        "balance",
        "Reads the balance.",
        serde_json::json!({"type": "object", "properties": {}}),
        |ctx: RunContext, _args| async move {
            let state = format!("{:?}", ctx.session().agent_state());
            Ok(ToolOutcome::Output(state))
        },
    )
    .unwrap();
    let llm = FakeLlm::new()
        .push_response(FakeResponse::tool_call("balance", "{}"))
        .push_response(FakeResponse::text("Done."));
    let session = AgentSession::builder()
        .llm(std::sync::Arc::new(llm.clone()))
        .tts(std::sync::Arc::new(FakeTts::new()))
        .userdata(Account { balance: 7 })
        .build();
    assert_eq!(session.userdata::<Account>().unwrap().balance, 7);
    assert_eq!(
        session.userdata::<String>().unwrap_err(),
        SessionError::UserdataNotSet
    );
    let out = std::sync::Arc::new(FakeAudioOutput::new());
    session
        .start(
            Agent::builder("x").tool(tool).build().unwrap(),
            agents_core::SessionIo::new().with_audio_output(out),
        )
        .await
        .unwrap();
    session.generate_reply(ReplyRequest::new()).unwrap();
    let end = tokio::time::Instant::now() + ms(5000);
    while llm.request_count() < 2 {
        assert!(tokio::time::Instant::now() < end);
        tokio::time::sleep(ms(5)).await;
    }
    let req = llm.last_request().unwrap();
    let output = req
        .chat_ctx
        .items()
        .iter()
        .find_map(agents_core::ChatItem::as_function_call_output)
        .unwrap();
    assert_eq!(
        output.output, "Thinking",
        "the tool saw the live session state"
    );
    session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn markdown_and_emoji_are_stripped_before_tts_but_kept_in_the_context() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("**Great** news 🎉 today.").chunked_words());
    let r = rig(llm);
    r.start(Agent::new("x")).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    let spoken = r.tts.pushed_texts().concat();
    assert!(
        !spoken.contains('*') && !spoken.contains('🎉'),
        "{spoken:?}"
    );
    assert!(
        spoken.contains("Great") && spoken.contains("today."),
        "{spoken:?}"
    );
    assert_eq!(
        r.messages(),
        vec![(
            ChatRole::Assistant,
            "**Great** news 🎉 today.".to_owned(),
            false
        )]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_transcript_synchronizer_as_session_io_paces_the_text_with_playback() {
    use agents_pipeline::transcription::{TranscriptSynchronizer, TranscriptionOptions};
    use std::sync::Arc;
    let out = Arc::new(FakeAudioOutput::new());
    let text = Arc::new(agents_testkit::FakeTextOutput::new());
    let sync = Arc::new(TranscriptSynchronizer::new(
        out.clone(),
        text.clone(),
        TranscriptionOptions::new(),
    ));
    let session = AgentSession::builder()
        .llm(Arc::new(FakeLlm::new()))
        .tts(Arc::new(FakeTts::new()))
        .build();
    session
        .start(
            Agent::new("x"),
            agents_core::SessionIo::new()
                .with_audio_output(sync.clone())
                .with_text_output(sync.clone()),
        )
        .await
        .unwrap();
    let full = "one two three four five six seven eight nine ten";
    let h = session.say_text(full).unwrap();
    tokio::time::sleep(ms(1000)).await;
    session.interrupt().await.unwrap();
    assert!(h.wait_for_playout().await);
    tokio::time::sleep(ms(100)).await;
    let shown = text.all_text();
    assert!(!shown.trim().is_empty(), "some text was shown");
    assert!(shown.trim().len() < full.len(), "not all of it: {shown:?}");
    assert!(full.starts_with(shown.trim()), "{shown:?}");
    session.close().await.unwrap();
}
