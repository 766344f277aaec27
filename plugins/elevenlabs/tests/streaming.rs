//! Streaming TTS over the multi-context socket, against the testkit emulator.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::tts::{SynthesizeOptions, Tts};
use agents_elevenlabs::{OutputFormat, VoiceSettings};
use agents_testkit::conformance::tts::{TtsHarness, run_all};
use agents_testkit::emulators::elevenlabs::ElevenLabsConfig;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

struct Harness(Arc<dyn Tts>);

impl TtsHarness for Harness {
    fn tts(&self) -> Arc<dyn Tts> {
        Arc::clone(&self.0)
    }
}

#[tokio::test]
async fn passes_the_tts_conformance_suite() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let t = tts(options(&emu));
    run_all(&Harness(Arc::new(t.clone()))).await;
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
    assert_eq!(emu.connections(), 1, "every stream shares one socket");
}

#[tokio::test]
async fn sends_the_documented_messages_and_query() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let opts = options(&emu)
        .with_language("en")
        .with_chunk_length_schedule(vec![50, 120, 160, 290])
        .with_voice_settings(
            VoiceSettings::default()
                .with_stability(0.4)
                .with_similarity_boost(0.8)
                .with_style(0.1)
                .with_speaker_boost(true)
                .with_speed(1.1),
        );
    let t = tts(opts);
    let mut s = t.stream(&SynthesizeOptions::default()).unwrap();
    for piece in ["Hel", "lo the", "re, fri", "end."] {
        s.push_text(piece).await.unwrap();
    }
    s.end_input().await.unwrap();
    let chunks = read_all(&mut s).await.unwrap();
    assert_eq!(duration(&chunks), expected("Hello there, friend.".len()));
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());

    let q = &emu.queries()[0];
    for (k, v) in [
        ("model_id", "eleven_flash_v2_5"),
        ("output_format", "pcm_24000"),
        ("sync_alignment", "true"),
        ("auto_mode", "false"),
        ("inactivity_timeout", "20"),
        ("language_code", "en"),
        ("apply_text_normalization", "auto"),
        ("enable_ssml_parsing", "false"),
    ] {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "query {k}");
    }
    let msgs: Vec<Value> = emu.received().into_iter().map(|r| r.message).collect();
    let ctx = msgs[0]["context_id"].as_str().unwrap().to_owned();
    assert_eq!(msgs[0]["text"], " ");
    assert_eq!(
        msgs[0]["voice_settings"],
        json!({"stability": 0.4, "similarity_boost": 0.8, "style": 0.1, "use_speaker_boost": true, "speed": 1.1})
    );
    assert_eq!(
        msgs[0]["generation_config"],
        json!({"chunk_length_schedule": [50, 120, 160, 290]})
    );
    let texts: Vec<&str> = msgs[1..]
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["Hello ", "there, ", "friend. "]);
    let n = msgs.len();
    assert_eq!(msgs[n - 2], json!({"context_id": ctx, "flush": true}));
    assert_eq!(
        msgs[n - 1],
        json!({"context_id": ctx, "close_context": true})
    );
    assert!(msgs.iter().all(|m| m["context_id"] == ctx.as_str()));
}

#[tokio::test]
async fn word_timings_come_from_the_alignment() {
    // 16 characters per audio message: "Hello there" spans two messages, so timings must be offset per chunk.
    let emu = emulator(ElevenLabsConfig::default().with_chars_per_chunk(7)).await;
    let t = tts(options(&emu));
    let chunks = speak(&t, "Hello there world").await.unwrap();
    let words: Vec<_> = chunks.iter().flat_map(|c| c.timed_text.clone()).collect();
    let ms = Duration::from_millis;
    let got: Vec<(String, Duration, Duration)> = words
        .into_iter()
        .map(|w| (w.text, w.start, w.end))
        .collect();
    assert_eq!(
        got,
        vec![
            ("Hello".to_owned(), ms(0), ms(250)),
            ("there".to_owned(), ms(300), ms(550)),
            ("world".to_owned(), ms(600), ms(850)),
        ]
    );
    assert_eq!(duration(&chunks), ms(850));
    let last = chunks.last().unwrap();
    assert!(last.is_final && last.frame.is_empty());
    assert_eq!(chunks.iter().filter(|c| c.is_final).count(), 1);
}

#[tokio::test]
async fn audio_arrives_at_every_requested_rate() {
    for format in [
        OutputFormat::Pcm16000,
        OutputFormat::Pcm22050,
        OutputFormat::Pcm24000,
        OutputFormat::Pcm44100,
    ] {
        let emu = emulator(ElevenLabsConfig::default()).await;
        let t = tts(options(&emu).with_output_format(format));
        assert_eq!(t.sample_rate(), format.sample_rate());
        let chunks = speak(&t, "Twenty chars of text").await.unwrap();
        assert!(
            chunks
                .iter()
                .all(|c| c.frame.sample_rate() == format.sample_rate())
        );
        let samples: usize = chunks.iter().map(|c| c.frame.samples_per_channel()).sum();
        assert_eq!(
            samples,
            format.sample_rate().hz() as usize,
            "20 chars x 50 ms = 1 s at {format:?}"
        );
        assert_eq!(emu.queries()[0]["output_format"], format.as_str());
    }
    assert_eq!(SampleRate::HZ_22050.hz(), 22_050);
}

#[tokio::test]
async fn concurrent_speeches_share_the_socket_and_are_demultiplexed() {
    let emu =
        emulator(ElevenLabsConfig::default().with_chunk_interval(Duration::from_millis(2))).await;
    let t = tts(options(&emu));
    let texts = [
        "One.",
        "Two words.",
        "Three little words.",
        "Four short words here.",
    ];
    let runs = texts.iter().map(|text| {
        let t = t.clone();
        async move { (text, speak(&t, text).await.unwrap()) }
    });
    let results = futures::future::join_all(runs).await;
    for (text, chunks) in results {
        assert_eq!(duration(&chunks), expected(text.len()), "{text}");
        let segs: std::collections::HashSet<_> =
            chunks.iter().map(|c| c.segment_id.clone()).collect();
        assert_eq!(segs.len(), 1);
        let words: Vec<String> = chunks
            .iter()
            .flat_map(|c| c.timed_text.iter().map(|w| w.text.clone()))
            .collect();
        assert_eq!(words.join(" "), *text);
    }
    assert_eq!(emu.connections(), 1);
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}

#[tokio::test]
async fn barge_in_closes_one_context_and_keeps_the_socket() {
    // Audio is paced, so the speech is still generating when it is dropped.
    let emu = emulator(
        ElevenLabsConfig::default()
            .with_chars_per_chunk(4)
            .with_chunk_interval(Duration::from_millis(30)),
    )
    .await;
    let t = tts(options(&emu).with_chunk_length_schedule(vec![50]));
    let mut s = t.stream(&SynthesizeOptions::default()).unwrap();
    let long = "This answer is long enough to cross the first threshold of the schedule and keep going for a while. ";
    s.push_text(long).await.unwrap();
    let first = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!first.frame.is_empty());
    let barged = first.segment_id.clone();
    drop(s); // barge-in

    let chunks = speak(&t, "Next answer.").await.unwrap();
    assert_eq!(duration(&chunks), expected("Next answer.".len()));
    assert_eq!(emu.connections(), 1, "the next speech used the same socket");

    let msgs: Vec<Value> = emu.received().into_iter().map(|r| r.message).collect();
    let for_barged: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["context_id"] == barged.as_str())
        .collect();
    assert_eq!(
        for_barged.last().copied(),
        Some(&json!({"context_id": barged, "close_context": true}))
    );
    assert!(
        !for_barged.iter().any(|m| m.get("flush").is_some()),
        "barge-in closes without flushing"
    );
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}

#[tokio::test]
async fn keep_alive_spans_a_pause_longer_than_the_inactivity_timeout() {
    let emu =
        emulator(ElevenLabsConfig::default().with_inactivity_timeout(Duration::from_millis(600)))
            .await;
    let t = tts(options(&emu)
        .with_inactivity_timeout(Duration::from_secs(1))
        .with_keepalive_interval(Duration::from_millis(150)));
    let mut s = t.stream(&SynthesizeOptions::default()).unwrap();
    s.push_text("Let me think ").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the LLM is slow
    s.push_text("about it.").await.unwrap();
    s.end_input().await.unwrap();
    let chunks = read_all(&mut s).await.unwrap();
    assert_eq!(duration(&chunks), expected("Let me think about it.".len()));
    assert_eq!(emu.idle_closes(), 0);
    assert_eq!(emu.connections(), 1);
    let msgs: Vec<Value> = emu.received().into_iter().map(|r| r.message).collect();
    let ctx = msgs[0]["context_id"].clone();
    let keepalives = msgs
        .iter()
        .filter(|m| **m == json!({"text": "", "context_id": ctx}))
        .count();
    assert!(
        keepalives >= 2,
        "{keepalives} keep-alives for the open context in 1.5 s"
    );
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}

#[tokio::test]
async fn an_idle_socket_is_closed_by_the_server_and_reopened_on_demand() {
    let emu =
        emulator(ElevenLabsConfig::default().with_inactivity_timeout(Duration::from_millis(200)))
            .await;
    let t = tts(options(&emu).with_idle_keepalive(false));
    speak(&t, "First.").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        emu.idle_closes(),
        1,
        "the emulator enforces the idle timeout"
    );
    let chunks = speak(&t, "Second.").await.unwrap();
    assert_eq!(duration(&chunks), expected("Second.".len()));
    assert_eq!(emu.connections(), 2);
    assert_eq!(t.connections_opened(), 2);
}

#[tokio::test]
async fn two_flushed_segments_use_two_contexts_in_order() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let t = tts(options(&emu));
    let mut s = t.stream(&SynthesizeOptions::default()).unwrap();
    s.push_text("First part.").await.unwrap();
    s.flush().await.unwrap();
    s.push_text("Then the second part.").await.unwrap();
    s.flush().await.unwrap();
    s.end_input().await.unwrap();
    let chunks = read_all(&mut s).await.unwrap();
    let mut segs: Vec<String> = Vec::new();
    for c in &chunks {
        if segs.last() != Some(&c.segment_id) {
            segs.push(c.segment_id.clone());
        }
    }
    assert_eq!(segs.len(), 2);
    let first: std::time::Duration = chunks
        .iter()
        .filter(|c| c.segment_id == segs[0])
        .map(|c| c.frame.duration())
        .sum();
    assert_eq!(first, expected("First part.".len()));
    assert_eq!(chunks.iter().filter(|c| c.is_final).count(), 2);
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}

#[tokio::test]
async fn aclose_sends_close_socket() {
    let emu = emulator(ElevenLabsConfig::default()).await;
    let t = tts(options(&emu));
    speak(&t, "Bye.").await.unwrap();
    t.aclose().await;
    tokio::time::timeout(LIMIT, async {
        while !emu
            .received()
            .iter()
            .any(|r| r.message == json!({"close_socket": true}))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("close_socket was sent");
}

#[tokio::test]
async fn a_sixth_concurrent_speech_waits_for_a_context_slot() {
    let emu = emulator(
        ElevenLabsConfig::default()
            .with_chars_per_chunk(4)
            .with_chunk_interval(Duration::from_millis(5)),
    )
    .await;
    let t = tts(options(&emu));
    let runs = (0..7).map(|i| {
        let t = t.clone();
        async move { speak(&t, &format!("Speech number {i} is here.")).await }
    });
    for r in futures::future::join_all(runs).await {
        let chunks = r.expect("no max_active_conversations error");
        assert_eq!(
            duration(&chunks),
            expected("Speech number 0 is here.".len())
        );
    }
    assert_eq!(emu.connections(), 1);
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}

#[tokio::test]
async fn an_idle_socket_is_kept_alive_between_speeches() {
    let emu =
        emulator(ElevenLabsConfig::default().with_inactivity_timeout(Duration::from_millis(400)))
            .await;
    let t = tts(options(&emu)
        .with_inactivity_timeout(Duration::from_secs(1))
        .with_keepalive_interval(Duration::from_millis(100)));
    speak(&t, "First.").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await; // the user talks
    let chunks = speak(&t, "Second.").await.unwrap();
    assert_eq!(duration(&chunks), expected("Second.".len()));
    assert_eq!(emu.idle_closes(), 0);
    assert_eq!(emu.connections(), 1);
    assert!(
        emu.received()
            .iter()
            .any(|r| r.message == json!({"text": ""}))
    );
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
}
