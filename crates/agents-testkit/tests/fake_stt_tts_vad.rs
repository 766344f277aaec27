//! FakeStt, FakeTts and FakeVad behaviour.

use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::stt::{RecognizeOptions, SpeechEvent, Stt, SttError};
use agents_core::tts::{SynthesizeOptions, Tts};
use agents_core::vad::{Vad, VadError, VadEventKind};
use agents_testkit::signal::{self, sequence, silence, tone};
use agents_testkit::{FakeStt, FakeTts, FakeVad};
use futures::StreamExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test(start_paused = true)]
async fn stt_recognize_returns_script_and_records_duration() {
    let stt = FakeStt::new().with_transcripts(["hello world"]);
    let audio = tone(MS(1000), SampleRate::HZ_16000);
    let t = stt
        .recognize(&audio, &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "hello world");
    assert_eq!(t.language(), Some("en"));
    let best = &t.alternatives[0];
    assert_eq!(best.confidence, 1.0);
    assert_eq!(best.words.len(), 2);
    assert_eq!(best.words[1].end, MS(1000));
    assert_eq!(stt.recognized_audio(), vec![MS(1000)]);
    // Nothing left: empty transcript.
    let t = stt
        .recognize(&audio, &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "");
}

#[tokio::test(start_paused = true)]
async fn stt_stream_detects_speech_in_audio_time() {
    let stt = FakeStt::new()
        .with_transcripts(["one two three four"])
        .with_final_delay(MS(150));
    let mut s = stt.stream(&RecognizeOptions::default()).unwrap();
    let rate = SampleRate::HZ_16000;
    for f in sequence(
        &[(false, MS(500)), (true, MS(1000)), (false, MS(400))],
        rate,
    ) {
        s.push_frame(f).await.unwrap();
    }
    let start = tokio::time::Instant::now();
    let mut events = Vec::new();
    // Read until the usage event that follows the final.
    loop {
        let e = s.next().await.unwrap().unwrap();
        let done = matches!(e, SpeechEvent::RecognitionUsage(_));
        events.push(e);
        if done {
            break;
        }
    }
    // The final waits final_delay on the tokio clock.
    assert_eq!(start.elapsed(), MS(150));
    assert_eq!(events[0], SpeechEvent::StartOfSpeech);
    let interims: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::InterimTranscript(t) => Some(t.text().to_owned()),
            _ => None,
        })
        .collect();
    // One word per 200 ms of speech, never the whole text.
    assert_eq!(interims, vec!["one", "one two", "one two three"]);
    let finals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::FinalTranscript(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 1);
    let f = &finals[0].alternatives[0];
    assert_eq!(f.text, "one two three four");
    assert_eq!(f.start_time, MS(500));
    assert_eq!(f.end_time, MS(1500));
    assert_eq!(f.words[0].start, MS(500));
    assert_eq!(f.words[3].end, MS(1500));
    let n = events.len();
    assert_eq!(events[n - 2], SpeechEvent::EndOfSpeech);
    match &events[n - 1] {
        // 500 + 1000 + 300 ms (the final came on the 300th ms of silence).
        SpeechEvent::RecognitionUsage(u) => assert_eq!(u.audio_duration, MS(1800)),
        e => panic!("{e:?}"),
    }
    s.end_input().await.unwrap();
    match s.next().await.unwrap().unwrap() {
        SpeechEvent::RecognitionUsage(u) => assert_eq!(u.audio_duration, MS(100)),
        e => panic!("{e:?}"),
    }
    assert!(s.next().await.is_none());
    assert_eq!(stt.streamed_audio(), MS(1900));
}

#[tokio::test(start_paused = true)]
async fn stt_flush_and_end_input_finalize() {
    let stt = FakeStt::new().with_transcripts(["first", "second"]);
    let mut s = stt.stream(&RecognizeOptions::default()).unwrap();
    for f in tone(MS(300), SampleRate::HZ_16000) {
        s.push_frame(f).await.unwrap();
    }
    s.flush().await.unwrap();
    let mut texts = Vec::new();
    while let Some(e) = s.next().await {
        match e.unwrap() {
            SpeechEvent::FinalTranscript(t) => texts.push(t.text().to_owned()),
            SpeechEvent::RecognitionUsage(_) => break,
            _ => {}
        }
    }
    assert_eq!(texts, vec!["first"]);
    for f in tone(MS(300), SampleRate::HZ_16000) {
        s.push_frame(f).await.unwrap();
    }
    s.end_input().await.unwrap();
    let rest: Vec<_> = s.map(|e| e.unwrap()).collect().await;
    assert!(matches!(&rest[0], SpeechEvent::StartOfSpeech));
    assert!(
        rest.iter()
            .any(|e| matches!(e, SpeechEvent::FinalTranscript(t) if t.text() == "second"))
    );
    assert!(matches!(
        rest.last(),
        Some(SpeechEvent::RecognitionUsage(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn stt_energy_threshold_boundary() {
    // A tone far below the threshold is silence.
    let stt = FakeStt::new().with_threshold(0.5).with_transcripts(["x"]);
    let s = stt.stream(&RecognizeOptions::default()).unwrap();
    for f in tone(MS(500), SampleRate::HZ_16000) {
        s.push_frame(f).await.unwrap();
    }
    s.end_input().await.unwrap();
    let events: Vec<_> = s.map(|e| e.unwrap()).collect().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events[0], SpeechEvent::RecognitionUsage(_)));
    assert_eq!(stt.remaining(), 1);
}

#[tokio::test(start_paused = true)]
async fn stt_rejects_rate_change() {
    let stt = FakeStt::new();
    let mut s = stt.stream(&RecognizeOptions::default()).unwrap();
    s.push_frame(silence(MS(20), SampleRate::HZ_16000).remove(0))
        .await
        .unwrap();
    s.push_frame(silence(MS(20), SampleRate::HZ_48000).remove(0))
        .await
        .unwrap();
    match s.next().await.unwrap() {
        Err(SttError::UnsupportedSampleRate { expected, actual }) => {
            assert_eq!((expected, actual), (16_000, 48_000));
        }
        e => panic!("{e:?}"),
    }
    assert!(s.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn tts_synthesize_follows_the_formula() {
    let tts = FakeTts::new()
        .with_per_char_duration(MS(10))
        .with_ttfb(MS(120))
        .with_real_time_factor(0.5);
    // 2 words: 300 + 50 and 300 + 50 ms.
    assert_eq!(tts.audio_duration("Hello world"), MS(700));
    let start = tokio::time::Instant::now();
    let stream = tts
        .synthesize("Hello world", &SynthesizeOptions::default())
        .await
        .unwrap();
    let chunks: Vec<_> = stream.map(|c| c.unwrap()).collect().await;
    // ttfb + half of the audio.
    assert_eq!(start.elapsed(), MS(120 + 350));
    assert_eq!(chunks.len(), 35);
    assert!(
        chunks
            .iter()
            .all(|c| c.frame.sample_rate() == SampleRate::HZ_24000)
    );
    assert!(chunks.iter().all(|c| c.frame.samples_per_channel() == 480));
    assert!(chunks.last().unwrap().is_final);
    assert_eq!(chunks.iter().filter(|c| c.is_final).count(), 1);
    let timed: Vec<_> = chunks.iter().flat_map(|c| c.timed_text.clone()).collect();
    assert_eq!(timed.len(), 2);
    assert_eq!(
        (timed[1].text.as_str(), timed[1].start, timed[1].end),
        ("world", MS(350), MS(700))
    );
    // The word "world" starts in chunk 17 (340..360 ms).
    assert_eq!(chunks[17].timed_text.len(), 1);
    assert!(signal::rms(&chunks[3].frame) > signal::DEFAULT_SPEECH_THRESHOLD);
    assert_eq!(tts.synthesized(), vec!["Hello world"]);
}

#[tokio::test(start_paused = true)]
async fn tts_stream_segments_on_flush() {
    let tts = FakeTts::new().with_sample_rate(SampleRate::HZ_16000);
    let mut s = tts.stream(&SynthesizeOptions::default()).unwrap();
    s.push_text("Hello ").await.unwrap();
    s.push_text("there.").await.unwrap();
    s.flush().await.unwrap();
    s.push_text("Bye").await.unwrap();
    s.end_input().await.unwrap();
    let chunks: Vec<_> = s.map(|c| c.unwrap()).collect().await;
    let seg1: Vec<_> = chunks.iter().filter(|c| c.segment_id == "seg_1").collect();
    let seg2: Vec<_> = chunks.iter().filter(|c| c.segment_id == "seg_2").collect();
    assert_eq!(seg1.len() + seg2.len(), chunks.len());
    assert_eq!(
        seg1.iter().map(|c| c.frame.duration()).sum::<Duration>(),
        MS(600)
    );
    assert_eq!(
        seg2.iter().map(|c| c.frame.duration()).sum::<Duration>(),
        MS(300)
    );
    assert!(seg1.last().unwrap().is_final && seg2.last().unwrap().is_final);
    assert_eq!(tts.pushed_texts(), vec!["Hello ", "there.", "Bye"]);
    assert_eq!(tts.synthesized(), vec!["Hello there.", "Bye"]);
}

#[tokio::test(start_paused = true)]
async fn tts_dropping_the_stream_stops_generation() {
    let tts = FakeTts::new().with_real_time_factor(1.0);
    let mut s = tts.stream(&SynthesizeOptions::default()).unwrap();
    s.push_text("one two three four five six").await.unwrap();
    s.flush().await.unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(first.frame.duration(), MS(20));
    drop(s);
    // The generator notices at once: nothing more is produced, even with time passing.
    tokio::time::sleep(MS(5000)).await;
    assert_eq!(tts.synthesized().len(), 1);
    let mut s2 = tts.stream(&SynthesizeOptions::default()).unwrap();
    s2.push_text("next").await.unwrap();
    s2.end_input().await.unwrap();
    assert_eq!(s2.count().await, 15);
}

#[tokio::test(start_paused = true)]
async fn vad_energy_finds_speech_with_silero_defaults() {
    let vad = FakeVad::energy();
    let s = vad.stream().unwrap();
    let rate = SampleRate::HZ_16000;
    let audio = sequence(
        &[(false, MS(1024)), (true, MS(1024)), (false, MS(1024))],
        rate,
    );
    for f in audio {
        s.push_frame(f).await.unwrap();
    }
    s.end_input().await.unwrap();
    let events: Vec<_> = s.map(|e| e.unwrap()).collect().await;
    let inference = events
        .iter()
        .filter(|e| e.kind == VadEventKind::InferenceDone)
        .count();
    assert_eq!(inference, 96);
    let start = events
        .iter()
        .find(|e| e.kind == VadEventKind::StartOfSpeech)
        .unwrap();
    // Speech starts at 1024 ms; two 32 ms windows reach the 50 ms minimum.
    assert_eq!(start.timestamp, MS(1088));
    assert_eq!(start.samples_index, 1088 * 16);
    assert_eq!(start.speech_duration, MS(64));
    // Prefix padding (500 ms) plus the speech so far.
    assert_eq!(start.frames[0].duration(), MS(564));
    let end = events
        .iter()
        .find(|e| e.kind == VadEventKind::EndOfSpeech)
        .unwrap();
    // Silence from 2048 ms; 18 windows (576 ms) reach 550 ms.
    assert_eq!(end.timestamp, MS(2048 + 576));
    assert_eq!(end.silence_duration, MS(576));
    assert!(!end.speaking);
    assert_eq!(end.frames[0].duration(), MS(500 + 1024 + 576));
}

#[tokio::test(start_paused = true)]
async fn vad_script_mode_and_silence() {
    let vad = FakeVad::scripted([(MS(1000), MS(2000))]);
    let s = vad.stream().unwrap();
    for f in silence(MS(3008), SampleRate::HZ_16000) {
        s.push_frame(f).await.unwrap();
    }
    s.end_input().await.unwrap();
    let events: Vec<_> = s.map(|e| e.unwrap()).collect().await;
    let marks: Vec<_> = events
        .iter()
        .filter(|e| e.kind != VadEventKind::InferenceDone)
        .map(|e| (e.kind, e.timestamp))
        .collect();
    assert_eq!(
        marks,
        vec![
            (VadEventKind::StartOfSpeech, MS(1024)),
            (VadEventKind::EndOfSpeech, MS(2048))
        ]
    );

    // Energy mode hears nothing in silence.
    let s = FakeVad::energy().stream().unwrap();
    for f in silence(MS(2000), SampleRate::HZ_16000) {
        s.push_frame(f).await.unwrap();
    }
    s.end_input().await.unwrap();
    let events: Vec<_> = s.map(|e| e.unwrap()).collect().await;
    assert!(
        events
            .iter()
            .all(|e| e.kind == VadEventKind::InferenceDone && e.probability == 0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn vad_rejects_rate_change() {
    let mut s = FakeVad::energy().stream().unwrap();
    s.push_frame(silence(MS(20), SampleRate::HZ_16000).remove(0))
        .await
        .unwrap();
    s.push_frame(silence(MS(20), SampleRate::HZ_8000).remove(0))
        .await
        .unwrap();
    assert!(matches!(
        s.next().await.unwrap(),
        Err(VadError::SampleRateChanged {
            expected: 16_000,
            actual: 8_000
        })
    ));
    assert!(s.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn stt_stream_metrics_name_the_fake() {
    let stt = FakeStt::new().with_transcripts(["hi"]);
    let stream = stt.stream(&RecognizeOptions::default()).unwrap();
    let m = stream.metrics();
    assert_eq!(m.label, "fake.STT");
    assert_eq!(m.model, "fake-stt");
    assert!(m.streamed);
}
