//! End to end, Deepgram both ways: Silero VAD + Deepgram streaming STT + OpenAI Chat Completions + Deepgram Aura
//! streaming TTS, against the emulators, through the real session pipeline, with manual turn detection (the
//! application commits each user turn, as a push-to-talk client or the WebSocket `commit_user_turn` does).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod e2e_common;

use std::sync::Arc;
use std::time::Duration;

use agents::core::retry::ApiConnectOptions;
use agents::pipeline::TurnDetectionMode;
use agents_deepgram::{DeepgramStt, DeepgramTts, Endpointing, SttOptions, TtsOptions};
use agents_openai::{ClientOptions, LlmOptions, OpenAiLlm};
use agents_testkit::emulators::deepgram::DeepgramEmulator;
use agents_testkit::emulators::openai::{ChatScript, OpenAiEmulator};

const KEY: &str = "sk-e2e-aura";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_turns_go_through_deepgram_listen_openai_and_deepgram_speak() {
    let openai = OpenAiEmulator::new().with_api_key(KEY);
    let server = openai.serve().await.unwrap();
    let dg = DeepgramEmulator::start().await.unwrap();
    let llm = OpenAiLlm::new(
        ClientOptions::default()
            .with_api_key(KEY)
            .with_base_url(format!("{}/v1", server.http_url()))
            .with_conn_options(
                ApiConnectOptions::default()
                    .with_max_retry(1)
                    .with_timeout(Duration::from_secs(5)),
            ),
        LlmOptions::new("gpt-4o-mini"),
    )
    .unwrap();
    let client = agents_deepgram::ClientOptions::new(dg.api_key().to_owned())
        .with_base_url(dg.http_url())
        .unwrap();
    let stt = DeepgramStt::new(
        client.clone(),
        SttOptions::default().with_endpointing(Endpointing::After(Duration::from_millis(800))),
    )
    .unwrap();
    let tts = DeepgramTts::new(client, TtsOptions::default()).unwrap();

    let (first, first_words) = e2e_common::line(2);
    let (last, last_words) = e2e_common::line(3);
    dg.script_transcript(first_words);
    dg.script_transcript(last_words);
    openai.push_chat(ChatScript::text(["I can only ", "tell the weather."]));
    openai.push_chat(ChatScript::text(["Bye!"]));

    let o = e2e_common::converse(
        Arc::new(stt),
        Arc::new(llm),
        Arc::new(tts),
        TurnDetectionMode::Manual,
        e2e_common::weather_agent(),
        &[first, last],
        |_| {},
    )
    .await;

    assert!(o.errors.is_empty(), "{:?}", o.errors);
    assert_eq!(o.users, [first_words, last_words]);
    assert!(o.tools.is_empty());
    assert_eq!(
        o.replies,
        [
            ("I can only tell the weather.".to_owned(), false),
            ("Bye!".to_owned(), false)
        ]
    );
    assert_eq!(o.segments, (2, 0));
    assert!(o.heard > Duration::from_millis(500), "{:?}", o.heard);
    assert_eq!(o.turns.len(), 2);
    assert!(
        o.turns
            .iter()
            .all(|t| t.e2e_latency.is_some() && t.tts_ttfb.is_some()),
        "{:?}",
        o.turns
    );

    // The manual commit finalized the utterance on the listen socket (`Finalize`), and the reply text went to the
    // speak socket and was flushed.
    let listen = dg.listen_sessions();
    assert!(
        listen.iter().map(|s| s.finalizes).sum::<u32>() >= 2,
        "{listen:?}"
    );
    let speak = dg.speak_sessions();
    let texts: String = speak.iter().flat_map(|s| s.texts.clone()).collect();
    assert!(
        texts.contains("tell the weather") && texts.contains("Bye"),
        "{texts}"
    );
    assert!(
        speak.iter().map(|s| s.flushes).sum::<u32>() >= 2,
        "{speak:?}"
    );
}
