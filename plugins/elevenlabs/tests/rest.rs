//! One-shot synthesis over the REST streaming endpoints.

mod common;

use std::time::Duration;

use agents_core::tts::{SynthesizeOptions, Tts, TtsError};
use agents_elevenlabs::{OutputFormat, VoiceSettings};
use agents_testkit::emulators::elevenlabs::{ElevenLabsConfig, Fault};
use common::*;
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn synthesize_streams_pcm_of_the_right_length() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let t = tts(options(&emu)
        .with_sync_alignment(false)
        .with_output_format(OutputFormat::Pcm22050)
        .with_model("eleven_turbo_v2_5")
        .with_language("de")
        .with_voice_settings(VoiceSettings::default().with_stability(0.3).with_speed(0.9)));
    assert!(!t.capabilities().aligned_transcript);
    let s = t
        .synthesize("Guten Tag, Welt.", &SynthesizeOptions::default())
        .await
        .unwrap();
    let chunks: Vec<_> = s
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let samples: usize = chunks.iter().map(|c| c.frame.samples_per_channel()).sum();
    assert_eq!(samples, 22_050 * 16 * 50 / 1000);
    assert!(chunks.last().unwrap().is_final);
    assert_eq!(
        emu.rest_bodies()[0],
        json!({
            "text": "Guten Tag, Welt.",
            "model_id": "eleven_turbo_v2_5",
            "apply_text_normalization": "auto",
            "voice_settings": {"stability": 0.3, "speed": 0.9},
            "language_code": "de",
        })
    );
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}

#[tokio::test]
async fn synthesize_with_timestamps_gives_word_timings() {
    let emu = emulator(ElevenLabsConfig::default().with_chars_per_chunk(5)).await;
    let t = tts(options(&emu));
    let s = t
        .synthesize("Good morning all", &SynthesizeOptions::default())
        .await
        .unwrap();
    let chunks: Vec<_> = s
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ms = Duration::from_millis;
    let words: Vec<(String, Duration, Duration)> = chunks
        .iter()
        .flat_map(|c| {
            c.timed_text
                .iter()
                .map(|w| (w.text.clone(), w.start, w.end))
        })
        .collect();
    assert_eq!(
        words,
        vec![
            ("Good".to_owned(), ms(0), ms(200)),
            ("morning".to_owned(), ms(250), ms(600)),
            ("all".to_owned(), ms(650), ms(800)),
        ]
    );
    assert_eq!(duration(&chunks), ms(800));
}

#[tokio::test]
async fn rest_errors_are_typed_and_server_errors_retried() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let t = tts(options(&emu));
    emu.push_fault(Fault::HttpStatus {
        status: 500,
        body: json!({"detail": {"status": "internal", "message": "oops"}}),
    });
    let s = t
        .synthesize("Retried.", &SynthesizeOptions::default())
        .await
        .unwrap();
    assert_eq!(
        s.collect_frames()
            .await
            .unwrap()
            .iter()
            .map(|f| f.duration())
            .sum::<Duration>(),
        expected(8)
    );

    emu.push_fault(Fault::HttpStatus {
        status: 422,
        body: json!({"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "value_error.missing"}]}),
    });
    let Err(TtsError::Api(e)) = t
        .synthesize("Rejected.", &SynthesizeOptions::default())
        .await
    else {
        panic!("422 must fail");
    };
    assert_eq!(e.status_code(), Some(422));
    assert!(!e.is_retryable());

    assert!(matches!(
        t.synthesize("   ", &SynthesizeOptions::default()).await,
        Err(TtsError::InvalidRequest { .. })
    ));
}

#[tokio::test]
async fn lists_the_account_voices() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let t = tts(options(&emu));
    let voices = t.list_voices().await.unwrap();
    let ids: Vec<&str> = voices.iter().map(|v| v.voice_id.as_str()).collect();
    let expected: Vec<&str> = agents_testkit::emulators::elevenlabs::VOICES
        .iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(voices[0].name, "Sarah");
    assert_eq!(voices[1].category.as_deref(), Some("cloned"));

    let bad = tts(options(&emu).with_api_key("nope"));
    let Err(TtsError::Api(e)) = bad.list_voices().await else {
        panic!("a bad key must fail");
    };
    assert_eq!(e.status_code(), Some(401));
    assert!(
        !format!("{bad:?}").contains("nope"),
        "Debug never shows the key"
    );
}
