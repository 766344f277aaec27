//! End to end, the demo's cascade: Silero VAD + Deepgram streaming STT + OpenAI Chat Completions (with a tool) +
//! ElevenLabs multi-context streaming TTS, every plugin against its emulator, through the real session pipeline.
//! The user's turn is ended by the VAD (no manual commit).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod e2e_common;

use std::sync::Arc;
use std::time::Duration;

use agents::core::retry::ApiConnectOptions;
use agents::pipeline::TurnDetectionMode;
use agents_deepgram::{DeepgramStt, Endpointing, SttOptions};
use agents_elevenlabs::{ElevenLabsTts, TtsOptions};
use agents_openai::{ClientOptions, LlmOptions, OpenAiLlm};
use agents_testkit::emulators::deepgram::DeepgramEmulator;
use agents_testkit::emulators::elevenlabs::ElevenLabsEmulator;
use agents_testkit::emulators::openai::{ChatScript, OpenAiEmulator};

const KEY: &str = "sk-e2e-openai";

fn fast() -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(1)
        .with_retry_interval(Duration::from_millis(20))
        .with_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vad_ended_turn_with_a_tool_call_goes_through_deepgram_openai_and_elevenlabs() {
    let openai = OpenAiEmulator::new().with_api_key(KEY);
    let openai_server = openai.serve().await.unwrap();
    let dg = DeepgramEmulator::start().await.unwrap();
    let el = ElevenLabsEmulator::start().await.unwrap();

    let llm = OpenAiLlm::new(
        ClientOptions::default()
            .with_api_key(KEY)
            .with_base_url(format!("{}/v1", openai_server.http_url()))
            .with_conn_options(fast()),
        LlmOptions::new("gpt-4o-mini"),
    )
    .unwrap();
    let stt = DeepgramStt::new(
        agents_deepgram::ClientOptions::new(dg.api_key().to_owned())
            .with_base_url(dg.http_url())
            .unwrap(),
        SttOptions::default().with_endpointing(Endpointing::After(Duration::from_millis(800))),
    )
    .unwrap();
    let tts = ElevenLabsTts::new(
        TtsOptions::default()
            .with_api_key(el.api_key().to_owned())
            .with_base_url(el.base_url())
            .with_conn_options(fast()),
    )
    .unwrap();

    let (path, words) = e2e_common::line(1);
    dg.script_transcript(words);
    openai.push_chat(ChatScript::tool_calls(&[(
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]));
    openai.push_chat(ChatScript::text([
        "It's 18 degrees ",
        "and partly cloudy ",
        "in Paris.",
    ]));

    let o = e2e_common::converse(
        Arc::new(stt),
        Arc::new(llm),
        Arc::new(tts),
        TurnDetectionMode::Vad,
        e2e_common::weather_agent(),
        &[path],
        |_| {},
    )
    .await;

    // The session's side.
    assert!(o.errors.is_empty(), "{:?}", o.errors);
    assert_eq!(o.users, [words]);
    assert_eq!(
        o.tools,
        [(
            "get_weather".to_owned(),
            r#"{"city":"Paris"}"#.to_owned(),
            "18 degrees and partly cloudy".to_owned(),
            false
        )]
    );
    assert_eq!(
        o.replies,
        [(
            "It's 18 degrees and partly cloudy in Paris.".to_owned(),
            false
        )]
    );
    assert_eq!(o.segments, (1, 0), "one reply played out, not interrupted");
    assert!(o.heard > Duration::from_secs(1), "{:?}", o.heard);
    let turn = o.turns.first().expect("a turn report");
    assert!(
        turn.end_of_utterance_delay.is_some() && turn.llm_ttft.is_some(),
        "{turn:?}"
    );

    // The providers' side.
    let listen = dg.listen_sessions();
    assert!(!listen.is_empty());
    assert_eq!(listen[0].param("endpointing"), Some("800"));
    assert!(listen.iter().map(|s| s.finals_sent).sum::<u32>() >= 1);
    let chats = openai.requests_to("/chat/completions");
    assert_eq!(chats.len(), 2, "the tool step and its follow-up");
    let first = chats[0].json().unwrap().to_string();
    assert!(
        first.contains(words) && first.contains("get_weather"),
        "{first}"
    );
    let second = chats[1].json().unwrap().to_string();
    assert!(
        second.contains("18 degrees and partly cloudy"),
        "the tool output went back: {second}"
    );
    assert!(el.violations().is_empty(), "{:?}", el.violations());
    let sent: String = el
        .received()
        .iter()
        .filter_map(|r| {
            r.message
                .get("text")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .collect();
    assert!(sent.contains("partly cloudy"), "{sent}");
}
