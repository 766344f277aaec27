//! End to end, OpenAI only: Silero VAD + OpenAI transcription (non-streaming: the session segments the audio with
//! the VAD and sends each utterance as a WAV upload) + Chat Completions + OpenAI speech, against the OpenAI
//! emulator, through the real session pipeline. Two turns, ended by the VAD. The non-streaming STT is wrapped in
//! the pipeline's `StreamAdapter` (the session does not wrap it by itself).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod e2e_common;

use std::sync::Arc;
use std::time::Duration;

use agents::core::retry::ApiConnectOptions;
use agents::pipeline::{StreamAdapter, TurnDetectionMode};
use agents_openai::{
    ClientOptions, LlmOptions, OpenAiLlm, OpenAiStt, OpenAiTts, SttOptions, TtsOptions,
};
use agents_testkit::emulators::openai::{ChatScript, OpenAiEmulator, TranscriptionScript};

const KEY: &str = "sk-e2e-openai-audio";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vad_ended_turns_go_through_openai_transcription_chat_and_speech() {
    let emu = OpenAiEmulator::new().with_api_key(KEY);
    let server = emu.serve().await.unwrap();
    let client = ClientOptions::default()
        .with_api_key(KEY)
        .with_base_url(format!("{}/v1", server.http_url()))
        .with_conn_options(
            ApiConnectOptions::default()
                .with_max_retry(1)
                .with_retry_interval(Duration::from_millis(20))
                .with_timeout(Duration::from_secs(5)),
        );
    let stt = OpenAiStt::new(client.clone(), SttOptions::default()).unwrap();
    let llm = OpenAiLlm::new(client.clone(), LlmOptions::new("gpt-4o-mini")).unwrap();
    let tts = OpenAiTts::new(client, TtsOptions::default()).unwrap();

    let (first, first_words) = e2e_common::line(1);
    let (last, last_words) = e2e_common::line(3);
    emu.push_transcription(TranscriptionScript::text(first_words));
    emu.push_transcription(TranscriptionScript::text(last_words));
    emu.push_chat(ChatScript::tool_calls(&[(
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]));
    emu.push_chat(ChatScript::text(["Partly cloudy ", "in Paris."]));
    emu.push_chat(ChatScript::text(["Goodbye!"]));

    let o = e2e_common::converse(
        Arc::new(StreamAdapter::new(Arc::new(stt), e2e_common::silero())),
        Arc::new(llm),
        Arc::new(tts),
        TurnDetectionMode::Vad,
        e2e_common::weather_agent(),
        &[first, last],
        |_| {},
    )
    .await;

    assert!(o.errors.is_empty(), "{:?}", o.errors);
    assert_eq!(o.users, [first_words, last_words]);
    assert_eq!(o.tools.len(), 1, "{:?}", o.tools);
    assert_eq!(o.tools[0].2, "18 degrees and partly cloudy");
    assert_eq!(
        o.replies,
        [
            ("Partly cloudy in Paris.".to_owned(), false),
            ("Goodbye!".to_owned(), false)
        ]
    );
    assert_eq!(o.segments, (2, 0));
    assert_eq!(o.turns.len(), 2, "{:?}", o.turns);

    // Each utterance was uploaded as a 16 kHz WAV holding the speech (the fixtures are 1.7 s).
    let uploads = emu.requests_to("/audio/transcriptions");
    assert_eq!(uploads.len(), 2, "one upload per utterance");
    for u in &uploads {
        let wav = u.file().and_then(|f| f.wav).expect("a WAV upload");
        assert_eq!(wav.sample_rate, 16_000);
        assert!(wav.duration() > Duration::from_millis(1_000), "{wav:?}");
    }
    let speech: Vec<String> = emu
        .requests_to("/audio/speech")
        .iter()
        .map(|r| r.json().unwrap()["input"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        speech.concat().replace(' ', ""),
        "PartlycloudyinParis.Goodbye!"
    );
    assert_eq!(emu.requests_to("/chat/completions").len(), 3);
}
