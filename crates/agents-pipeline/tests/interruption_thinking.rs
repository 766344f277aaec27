//! Regression tests for behaviour 56 (§5.3 step 3, review finding F4): a user turn that ends while the current
//! speech is authorized but still "thinking" (no audio yet) respects its interruptibility.

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::Arc;
use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::session::ReplyRequest;
use agents_core::{Agent, AudioInput, SessionControl, SessionIo};
use agents_pipeline::interruption::InterruptionOptions;
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::signal::sequence;
use agents_testkit::{
    FakeAudioOutput, FakeLlm, FakeResponse, FakeStt, FakeTextOutput, FakeTts, FakeVad,
};

use session_common::ms;

/// The user says "hello" from 0 to 1 s (then silence); returns the session and its LLM.
async fn user_says_hello(llm: FakeLlm) -> AgentSession {
    let parts = [(true, 1000_u64), (false, 8000)];
    let vad = Arc::new(FakeVad::scripted(vec![(ms(0), ms(1000))]));
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["hello"])
            .with_min_silence(ms(100)),
    );
    let session = AgentSession::builder()
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .vad(vad)
        .stt(stt)
        .options(
            SessionOptions::default()
                .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
                .with_user_away_timeout(None),
        )
        .build();
    let (tx, input) = AudioInput::channel("user", 64);
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    let frames = sequence(&parts, SampleRate::HZ_16000);
    session
        .start(
            Agent::new("x"),
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(Arc::new(FakeTextOutput::new())),
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
        tx.closed().await;
    });
    session
}

/// Review finding 4a (behaviour 56, §5.3 step 3): a user turn that ends while the current speech is NOT interruptible
/// must not produce a reply. The activity asks the interruption policy, which only knows a speech once its first
/// frame played, so during the speech's "thinking" phase (authorized, LLM not answered yet) the turn gets a reply.
#[tokio::test(start_paused = true)]
async fn no_reply_to_a_turn_ending_while_a_non_interruptible_speech_is_thinking() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("A long considered answer.").with_ttft(ms(4000)))
        .push_response(FakeResponse::text("Hello there."));
    let session = user_says_hello(llm.clone()).await;
    // After the VAD's end of speech, before the end of turn fires (min endpointing delay 0.5 s).
    tokio::time::sleep(ms(1150)).await;
    assert_eq!(
        llm.request_count(),
        0,
        "precondition: the user's turn has not ended yet"
    );
    let first = session
        .generate_reply(ReplyRequest::new().with_allow_interruptions(false))
        .unwrap();
    tokio::time::sleep(ms(8000)).await;
    assert!(first.done());
    assert_eq!(
        llm.request_count(),
        1,
        "the user turn got a reply although the current speech cannot be interrupted"
    );
}

/// Review finding 4b (§5.3 step 3): a user turn that ends while the current speech is interruptible interrupts it. During
/// the thinking phase it is not interrupted: the stale answer plays in full, then the reply to the new turn.
#[tokio::test(start_paused = true)]
async fn a_new_user_turn_interrupts_a_current_speech_that_is_still_thinking() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("A long considered answer.").with_ttft(ms(4000)))
        .push_response(FakeResponse::text("Hello there."));
    let session = user_says_hello(llm.clone()).await;
    tokio::time::sleep(ms(1150)).await;
    assert_eq!(
        llm.request_count(),
        0,
        "precondition: the user's turn has not ended yet"
    );
    let first = session.generate_reply(ReplyRequest::new()).unwrap();
    tokio::time::sleep(ms(8000)).await;
    assert_eq!(llm.request_count(), 2, "the user turn is answered");
    assert!(
        first.interrupted(),
        "the reply still thinking when the user's turn ended was not interrupted"
    );
}
