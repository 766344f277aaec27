//! The live listen stream against the emulator: protocol mapping, keep-alive, finalize/close, reconnection with
//! replay, option changes and errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions"
)]

mod common;

use std::time::Duration;

use agents_audio::{AudioFrame, AudioFrameError, SampleRate};
use agents_core::stt::{RecognizeOptions, SpeechEvent, Stt, SttError};
use agents_deepgram::{Endpointing, SttOptions};
use agents_testkit::emulators::deepgram::{
    DeepgramEmulator, DeepgramEmulatorConfig, Fault, SessionEnd,
};
use common::*;

fn stream_opts() -> RecognizeOptions {
    RecognizeOptions::default().with_conn_options(fast_conn())
}

#[tokio::test]
async fn results_map_to_interim_final_words_and_speech_events() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("Hello there, general Kenobi.");
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    // 500 ms silence, 2 s speech (500..2500 ms), 1 s silence.
    push(&stream, audio(&[(false, 500), (true, 2000), (false, 1000)])).await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;

    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            SpeechEvent::StartOfSpeech => "start",
            SpeechEvent::InterimTranscript(_) => "interim",
            SpeechEvent::FinalTranscript(_) => "final",
            SpeechEvent::EndOfSpeech => "end",
            SpeechEvent::RecognitionUsage(_) => "usage",
            _ => "other",
        })
        .collect();
    let start = kinds.iter().position(|k| *k == "start").unwrap();
    let first_interim = kinds.iter().position(|k| *k == "interim").unwrap();
    let fin = kinds.iter().position(|k| *k == "final").unwrap();
    let end = kinds.iter().position(|k| *k == "end").unwrap();
    assert!(
        start < first_interim && first_interim < fin && fin < end,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "start").count(),
        1,
        "{kinds:?}"
    );

    assert_eq!(finals(&events), vec!["Hello there, general Kenobi."]);
    let SpeechEvent::FinalTranscript(t) = &events[fin] else {
        unreachable!()
    };
    assert!(!t.request_id.is_empty());
    assert_eq!(t.language(), Some("en-US"));
    let words = &t.alternatives[0].words;
    assert_eq!(words.len(), 4);
    assert_eq!(words[0].text, "Hello");
    assert!(
        words[0].start >= ms(490) && words[0].start <= ms(520),
        "{:?}",
        words[0]
    );
    assert!(
        words[3].end <= ms(2510) && words[3].end >= ms(2000),
        "{:?}",
        words[3]
    );
    assert!(words.windows(2).all(|w| w[0].end <= w[1].start));
    assert!(words.iter().all(|w| w.confidence.is_some()));
    // Usage covers all the audio sent.
    assert_eq!(usage_total(&events), ms(3500));

    let s = &dg.listen_sessions()[0];
    for (k, v) in [
        ("model", "nova-3"),
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("vad_events", "true"),
        ("endpointing", "25"),
        ("punctuate", "true"),
        ("language", "en-US"),
    ] {
        assert_eq!(s.param(k), Some(v), "query parameter {k}");
    }
    assert!(s.close_stream, "CloseStream was not sent");
    assert_eq!(s.end, SessionEnd::Normal);
}

#[tokio::test]
async fn audio_is_rebuffered_into_50_ms_messages() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    // 20 ms frames in, 50 ms messages out: 1 s is 20 messages.
    push(&stream, audio(&[(false, 1000)])).await;
    stream.end_input().await.unwrap();
    drain(&mut stream).await;
    let s = &dg.listen_sessions()[0];
    assert_eq!(s.audio_messages, 20);
    assert_eq!(s.audio, ms(1000));
}

#[tokio::test]
async fn utterance_end_ends_speech_when_endpointing_is_off() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("no endpoint here");
    let opts = SttOptions::default()
        .with_endpointing(Endpointing::Disabled)
        .with_utterance_end(ms(1000));
    let stt = stt(&dg, opts);
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(&stream, audio(&[(false, 300), (true, 1000), (false, 2500)])).await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    assert_eq!(finals(&events), vec!["no endpoint here"]);
    let fin = events
        .iter()
        .position(|e| matches!(e, SpeechEvent::FinalTranscript(_)))
        .unwrap();
    // No speech_final: the end of speech comes from UtteranceEnd, after the final.
    let end = events
        .iter()
        .position(|e| matches!(e, SpeechEvent::EndOfSpeech))
        .expect("no end of speech");
    assert!(end > fin);
    let s = &dg.listen_sessions()[0];
    assert_eq!(s.param("endpointing"), Some("false"));
    assert_eq!(s.param("utterance_end_ms"), Some("1000"));
}

#[tokio::test]
async fn flush_sends_finalize_and_keeps_the_stream_open() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("first");
    dg.script_transcript("second");
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    // Speech still going on when flushed: only Finalize can make it final.
    push(&stream, audio(&[(false, 200), (true, 800)])).await;
    stream.flush().await.unwrap();
    let events = until_final(&mut stream).await;
    assert_eq!(finals(&events), vec!["first"]);
    push(&stream, audio(&[(false, 300), (true, 800), (false, 300)])).await;
    stream.end_input().await.unwrap();
    let rest = drain(&mut stream).await;
    assert_eq!(finals(&rest), vec!["second"]);
    let s = &dg.listen_sessions();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].finalizes, 1);
}

/// Deepgram closes a socket that got neither audio nor a text message for 10 s (NET-0001); the plugin sends a
/// KeepAlive every 5 s without audio. Both constants are scaled down by 10 on both sides (idle 1 s, keep-alive
/// 0.5 s) so the test runs on the real clock with real sockets: the 15 s pause of a 60 s stream becomes 1.5 s of
/// wall time, while the 60 s of audio itself is pushed as fast as the stream takes it.
#[tokio::test]
async fn keep_alive_carries_a_sixty_second_stream_over_a_long_pause() {
    let config = DeepgramEmulatorConfig::default().with_idle_timeout(ms(1000));
    let dg = DeepgramEmulator::start_with(config).await.unwrap();
    dg.script_transcript("before the pause");
    dg.script_transcript("after the pause");
    let opts = SttOptions::default().with_keep_alive_interval(ms(500));
    let stt = stt(&dg, opts);
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(
        &stream,
        audio(&[(false, 5000), (true, 2000), (false, 23000)]),
    )
    .await;
    tokio::time::sleep(ms(1500)).await;
    push(
        &stream,
        audio(&[(false, 5000), (true, 2000), (false, 23000)]),
    )
    .await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    assert_eq!(finals(&events), vec!["before the pause", "after the pause"]);
    let sessions = dg.listen_sessions();
    assert_eq!(
        sessions.len(),
        1,
        "the socket was not kept open: {sessions:?}"
    );
    assert!(sessions[0].keep_alives >= 2, "{sessions:?}");
    assert_eq!(sessions[0].end, SessionEnd::Normal);
    assert_eq!(sessions[0].audio, ms(60_000));
    // Times stay on the stream's clock: the second utterance starts at 35 s.
    let words = final_words(&events);
    assert!(words[3].start >= ms(34_990), "{:?}", words[3]);
}

/// The control case: with keep-alive slower than the idle timeout the emulator closes the socket with NET-0001,
/// and the stream reconnects (a retryable error) and still delivers everything.
#[tokio::test]
async fn idle_close_is_survived_by_reconnecting() {
    let config = DeepgramEmulatorConfig::default().with_idle_timeout(ms(400));
    let dg = DeepgramEmulator::start_with(config).await.unwrap();
    dg.script_transcript("before the pause");
    dg.script_transcript("after the pause");
    let opts = SttOptions::default().with_keep_alive_interval(Duration::from_secs(5));
    let stt = stt(&dg, opts);
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(&stream, audio(&[(false, 500), (true, 1000), (false, 1000)])).await;
    tokio::time::sleep(ms(900)).await;
    push(&stream, audio(&[(false, 500), (true, 1000), (false, 1000)])).await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    assert_eq!(finals(&events), vec!["before the pause", "after the pause"]);
    let sessions = dg.listen_sessions();
    assert_eq!(sessions[0].end, SessionEnd::IdleTimeout, "{sessions:?}");
    assert_eq!(sessions.last().unwrap().end, SessionEnd::Normal);
    let words = final_words(&events);
    assert!(words[3].start >= ms(2990), "{:?}", words[3]);
}

#[tokio::test]
async fn socket_dropped_mid_utterance_reconnects_without_losing_or_doubling_words() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("alpha bravo charlie delta");
    dg.script_transcript("echo foxtrot golf hotel");
    dg.script_transcript("india juliet");
    // Utterances are 1 s, 2 s and 1 s long: only the second reaches 1.5 s of speech, so the drop happens in it,
    // after the first one's final was delivered.
    dg.inject_fault(Fault::DropMidUtterance {
        after_speech: ms(1500),
    });
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(
        &stream,
        audio(&[
            (false, 500),
            (true, 1000), // 0.5 - 1.5 s
            (false, 1000),
            (true, 2000), // 2.5 - 4.5 s
            (false, 1000),
            (true, 1000), // 5.5 - 6.5 s
            (false, 500),
        ]),
    )
    .await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    let text = finals(&events).join(" ");
    assert_eq!(
        text,
        "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
    );
    let sessions = dg.listen_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0].end, SessionEnd::Dropped);
    assert_eq!(sessions[1].end, SessionEnd::Normal);
    // Only audio not covered by the first final was replayed: from the 50 ms chunk holding its end (1.53 s), so
    // the second connection heard 7 s - 1.5 s.
    assert_eq!(sessions[1].audio, ms(5500));
    // Word times are on the stream's clock across the reconnection.
    let words = final_words(&events);
    assert_eq!(words.len(), 10);
    assert!(
        words[4].start >= ms(2490) && words[4].start <= ms(2520),
        "{:?}",
        words[4]
    );
    assert!(words[7].end <= ms(4510), "{:?}", words[7]);
    assert!(
        words[8].start >= ms(5490) && words[8].start <= ms(5520),
        "{:?}",
        words[8]
    );
    assert!(
        words.windows(2).all(|w| w[0].end <= w[1].start),
        "{words:?}"
    );
    // One start and one end of speech per utterance, even though the second was heard twice.
    let starts = events
        .iter()
        .filter(|e| matches!(e, SpeechEvent::StartOfSpeech))
        .count();
    assert_eq!(starts, 3);
}

#[tokio::test]
async fn malformed_message_is_retried_and_the_transcript_is_complete() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("still complete");
    dg.inject_fault(Fault::MalformedMessage);
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(&stream, audio(&[(false, 300), (true, 1500), (false, 500)])).await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    assert_eq!(finals(&events), vec!["still complete"]);
    assert_eq!(dg.listen_sessions().len(), 2);
}

#[tokio::test]
async fn bad_api_key_is_a_non_retryable_error_at_once() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let client = agents_deepgram::ClientOptions::new("wrong-key")
        .with_base_url(dg.http_url())
        .unwrap();
    let stt = agents_deepgram::DeepgramStt::new(client, SttOptions::default()).unwrap();
    let mut stream = stt.stream(&stream_opts()).unwrap();
    let err = first_error(&mut stream).await;
    let SttError::Api(e) = &err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(e.status_code(), Some(401));
    assert!(e.is_auth() && !e.is_retryable(), "{e:?}");
    assert_eq!(e.message(), "Invalid credentials.");
    assert!(e.request_id().is_some());
    assert!(!format!("{e:?}{e}").contains("wrong-key"));
    // No retry: one refused upgrade, and the stream ended.
    assert_eq!(dg.rejected_requests(), 1);
    assert!(stream.end_input().await.is_err());
}

#[tokio::test]
async fn rate_limited_upgrade_is_retried_after_retry_after() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("made it");
    dg.inject_fault(Fault::RateLimited {
        retry_after: Some(Duration::from_secs(1)),
    });
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(&stream, audio(&[(false, 300), (true, 1000), (false, 300)])).await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    assert_eq!(finals(&events), vec!["made it"]);
    assert_eq!(dg.rejected_requests(), 1);
    assert_eq!(dg.listen_sessions().len(), 1);
}

#[tokio::test]
async fn invalid_query_parameter_is_a_400_not_retried() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let mut opts = SttOptions::default();
    opts.tags = vec![String::new()];
    let stt = stt(&dg, opts);
    let mut stream = stt.stream(&stream_opts()).unwrap();
    let SttError::Api(e) = first_error(&mut stream).await else {
        panic!("expected an API error")
    };
    assert_eq!(e.status_code(), Some(400));
    assert!(!e.is_retryable());
    assert_eq!(e.message(), "Invalid 'tag' value of ''.");
    assert!(dg.listen_sessions().is_empty());
}

#[tokio::test]
async fn retries_are_bounded_when_the_service_is_unreachable() {
    // A port with nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = agents_deepgram::ClientOptions::new("k")
        .with_base_url(format!("http://127.0.0.1:{port}"))
        .unwrap();
    let stt = agents_deepgram::DeepgramStt::new(client, SttOptions::default()).unwrap();
    let conn = fast_conn().with_max_retry(2).with_retry_interval(ms(10));
    let mut stream = stt
        .stream(&RecognizeOptions::default().with_conn_options(conn))
        .unwrap();
    let SttError::Api(e) = first_error(&mut stream).await else {
        panic!("expected an API error")
    };
    assert!(e.is_connection(), "{e:?}");
    assert!(e.message().contains("after 3 attempts"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
}

/// `parts` as 20 ms frames at 48 kHz, duplicated into two channels.
fn stereo_48k(parts: &[(bool, u64)]) -> Vec<AudioFrame> {
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    agents_testkit::signal::sequence(&parts, SampleRate::HZ_48000)
        .into_iter()
        .map(|f| f.remix(2).unwrap())
        .collect()
}

#[tokio::test]
async fn stereo_48k_input_is_downmixed_and_resampled_to_the_configured_format() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("Resampled speech still counts.");
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(
        &stream,
        stereo_48k(&[(false, 500), (true, 1500), (false, 1000)]),
    )
    .await;
    stream.end_input().await.unwrap();
    let events = drain(&mut stream).await;
    assert_eq!(finals(&events), vec!["Resampled speech still counts."]);
    let words = final_words(&events);
    // The speech starts at 500 ms of the 48 kHz input; the resampler keeps the timing.
    assert!(
        words[0].start >= ms(480) && words[0].start <= ms(530),
        "{:?}",
        words[0]
    );
    let s = &dg.listen_sessions()[0];
    assert_eq!(s.param("sample_rate"), Some("16000"));
    assert_eq!(s.param("channels"), Some("1"));
    // Every input sample reached Deepgram, converted: 3 s of 16 kHz mono, the resampler's tail included.
    assert_eq!(s.audio, ms(3000));
    assert_eq!(usage_total(&events), ms(3000));
}

#[tokio::test]
async fn flush_sends_the_resampler_tail_before_finalize() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("first part");
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    let frames: Vec<AudioFrame> = agents_testkit::signal::sequence(
        &[(false, ms(200)), (true, ms(800))],
        SampleRate::HZ_24000,
    );
    push(&stream, frames).await;
    stream.flush().await.unwrap();
    let first = until_final(&mut stream).await;
    assert_eq!(finals(&first), vec!["first part"]);
    stream.end_input().await.unwrap();
    drain(&mut stream).await;
    let s = &dg.listen_sessions()[0];
    assert_eq!(s.finalizes, 1);
    assert_eq!(s.audio, ms(1000), "the flush sent all converted audio");
}

#[tokio::test]
async fn a_rate_change_mid_stream_is_a_typed_error() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    let first = AudioFrame::silence(ms(20), SampleRate::HZ_24000, 1).unwrap();
    let second = AudioFrame::silence(ms(20), SampleRate::HZ_48000, 1).unwrap();
    stream.push_frame(first).await.unwrap();
    let _ = stream.push_frame(second).await;
    let err = first_error(&mut stream).await;
    assert!(
        matches!(
            err,
            SttError::UnsupportedSampleRate {
                expected: 24_000,
                actual: 48_000
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_rate_the_resampler_refuses_is_a_typed_error_not_a_panic() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    // 44 101 Hz to 16 kHz needs an FFT block of far more than 200 ms: the resampler refuses the pair.
    let odd = SampleRate::new(44_101).unwrap();
    let frame = AudioFrame::silence(ms(20), odd, 1).unwrap();
    stream.push_frame(frame).await.unwrap();
    let err = first_error(&mut stream).await;
    assert!(
        matches!(
            err,
            SttError::UnsupportedSampleRate {
                expected: 16_000,
                actual: 44_101
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_channel_change_mid_stream_is_a_typed_error() {
    let dg = DeepgramEmulator::start().await.unwrap();
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    let mono = AudioFrame::silence(ms(20), SampleRate::HZ_16000, 1).unwrap();
    let stereo = AudioFrame::silence(ms(20), SampleRate::HZ_16000, 2).unwrap();
    stream.push_frame(mono).await.unwrap();
    let _ = stream.push_frame(stereo).await;
    let err = first_error(&mut stream).await;
    assert!(
        matches!(
            err,
            SttError::InvalidAudio(AudioFrameError::FormatMismatch {
                expected_channels: 1,
                actual_channels: 2,
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn update_options_reconnects_with_the_new_parameters() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("in english");
    dg.script_transcript("en français");
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(&stream, audio(&[(false, 300), (true, 1000), (false, 200)])).await;
    let first = until_final(&mut stream).await;
    assert_eq!(finals(&first), vec!["in english"]);
    stt.update_options(SttOptions::default().with_language("fr"))
        .unwrap();
    push(&stream, audio(&[(false, 300), (true, 1000), (false, 200)])).await;
    stream.end_input().await.unwrap();
    let rest = drain(&mut stream).await;
    assert_eq!(finals(&rest), vec!["en français"]);
    let sessions = dg.listen_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(sessions[0].close_stream);
    assert_eq!(sessions[0].param("language"), Some("en-US"));
    assert_eq!(sessions[1].param("language"), Some("fr"));
    // The second connection's times continue the stream's clock (its speech starts at 1.8 s).
    let words = final_words(&rest);
    assert!(
        words[0].start >= ms(1790) && words[0].start <= ms(1830),
        "{:?}",
        words[0]
    );
}

#[tokio::test]
async fn a_sample_rate_option_change_rebuilds_the_resampler() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("at sixteen");
    dg.script_transcript("at twenty four");
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    push(
        &stream,
        stereo_48k(&[(false, 300), (true, 1000), (false, 200)]),
    )
    .await;
    let first = until_final(&mut stream).await;
    assert_eq!(finals(&first), vec!["at sixteen"]);
    stt.update_options(SttOptions::default().with_sample_rate(SampleRate::HZ_24000))
        .unwrap();
    push(
        &stream,
        stereo_48k(&[(false, 300), (true, 1000), (false, 200)]),
    )
    .await;
    stream.end_input().await.unwrap();
    let rest = drain(&mut stream).await;
    assert_eq!(finals(&rest), vec!["at twenty four"]);
    let sessions = dg.listen_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0].param("sample_rate"), Some("16000"));
    assert_eq!(sessions[1].param("sample_rate"), Some("24000"));
    // Each connection got its part of the 3 s input at its own rate (the emulator counts time per its rate).
    assert_eq!(sessions[0].audio + sessions[1].audio, ms(3000));
}

#[tokio::test]
async fn drop_while_audio_keeps_flowing_loses_nothing() {
    let dg = DeepgramEmulator::start().await.unwrap();
    dg.script_transcript("one two three");
    dg.script_transcript("four five six seven");
    dg.inject_fault(Fault::DropMidUtterance {
        after_speech: ms(1200),
    });
    let stt = stt(&dg, SttOptions::default());
    let mut stream = stt.stream(&stream_opts()).unwrap();
    let frames = audio(&[
        (false, 300),
        (true, 800), // 0.3 - 1.1 s
        (false, 700),
        (true, 2000), // 1.8 - 3.8 s, dropped 1.2 s in
        (false, 500),
    ]);
    // Paced at four times real time, so audio is still being pushed when the socket drops and during the
    // reconnection.
    let reader = tokio::spawn(async move {
        for f in frames {
            stream.push_frame(f).await.unwrap();
            tokio::time::sleep(ms(5)).await;
        }
        stream.end_input().await.unwrap();
        drain(&mut stream).await
    });
    let events = reader.await.unwrap();
    assert_eq!(
        finals(&events).join(" "),
        "one two three four five six seven"
    );
    let sessions = dg.listen_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0].end, SessionEnd::Dropped);
    let words = final_words(&events);
    assert!(
        words[3].start >= ms(1790) && words[3].start <= ms(1820),
        "{:?}",
        words[3]
    );
    assert!(words[6].end <= ms(3810), "{:?}", words[6]);
}
