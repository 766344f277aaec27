//! Behaviour tests of the VAD-segmented `StreamAdapter` (non-streaming STT + VAD → streaming STT), on a paused
//! tokio clock with the scripted FakeVad and FakeStt.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::{Instant, sleep, timeout_at};

use agents_audio::{AudioFrame, SampleRate};
use agents_core::stt::{
    RecognizeOptions, SpeechData, SpeechEvent, SttCapabilities, SttError, SttStream,
    SttStreamOptions, Transcript,
};
use agents_core::{ApiError, Stt};
use agents_pipeline::StreamAdapter;
use agents_pipeline::recognition::{
    AudioRecognition, RecognitionEvent, RecognitionOptions, TurnDetectionMode,
};
use agents_testkit::signal::sequence;
use agents_testkit::{FakeStt, FakeVad};

const RATE: SampleRate = SampleRate::HZ_16000;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

const PARTS: &[(bool, u64)] = &[(true, 1000), (false, 1000), (true, 500), (false, 1000)];

fn audio() -> Vec<AudioFrame> {
    let parts: Vec<(bool, Duration)> = PARTS.iter().map(|&(s, d)| (s, ms(d))).collect();
    sequence(&parts, RATE)
}

fn vad() -> Arc<FakeVad> {
    Arc::new(FakeVad::scripted([(ms(0), ms(1000)), (ms(2000), ms(2500))]))
}

/// Pushes the audio paced in tokio time, ends the input and collects every event.
async fn run(stream: SttStream) -> Vec<Result<SpeechEvent, SttError>> {
    let stream = Arc::new(tokio::sync::Mutex::new(stream));
    let feeder = {
        let stream = stream.clone();
        async move {
            for f in audio() {
                let d = f.duration();
                stream.lock().await.push_frame(f).await.unwrap();
                sleep(d).await;
            }
            stream.lock().await.end_input().await.unwrap();
        }
    };
    let collector = {
        let stream = stream.clone();
        async move {
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let next = {
                    let mut s = stream.lock().await;
                    timeout_at(Instant::now() + ms(5), s.next()).await
                };
                match next {
                    Ok(Some(e)) => out.push(e),
                    Ok(None) => return out,
                    Err(_) if Instant::now() > deadline => panic!("stream did not end"),
                    Err(_) => sleep(ms(1)).await,
                }
            }
        }
    };
    let ((), out) = tokio::join!(feeder, collector);
    out
}

fn kinds(events: &[Result<SpeechEvent, SttError>]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Ok(SpeechEvent::StartOfSpeech) => "start".to_owned(),
            Ok(SpeechEvent::FinalTranscript(t)) => format!("final:{}", t.text()),
            Ok(SpeechEvent::EndOfSpeech) => "end".to_owned(),
            Ok(SpeechEvent::RecognitionUsage(_)) => "usage".to_owned(),
            Ok(other) => format!("{other:?}"),
            Err(_) => "error".to_owned(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn vad_segments_become_start_final_end_events_like_a_streaming_stt() {
    let stt = Arc::new(FakeStt::new().with_transcripts(["good morning", "thanks"]));
    let adapter = StreamAdapter::new(stt.clone(), vad());
    assert!(adapter.capabilities().streaming);
    assert!(!adapter.capabilities().interim_results);
    assert_eq!(adapter.label(), "stt.StreamAdapter<fake.STT>");
    let events = run(adapter.stream(&SttStreamOptions::default()).unwrap()).await;
    assert_eq!(
        kinds(&events),
        [
            "start",
            "final:good morning",
            "end",
            "usage",
            "start",
            "final:thanks",
            "end",
            "usage"
        ]
    );
    // One recognize call per segment, each with the segment's audio (speech plus the VAD's padding).
    let recognized = stt.recognized_audio();
    assert_eq!(recognized.len(), 2);
    assert!(
        recognized[0] >= ms(1000) && recognized[0] <= ms(1100),
        "{recognized:?}"
    );
    assert!(
        recognized[1] >= ms(1000),
        "second segment includes 500 ms padding: {recognized:?}"
    );
    // Transcript times are in stream time.
    let finals: Vec<&Transcript> = events
        .iter()
        .filter_map(|e| match e {
            Ok(SpeechEvent::FinalTranscript(t)) => Some(t),
            _ => None,
        })
        .collect();
    assert!(finals[0].alternatives[0].start_time < ms(100));
    assert!(finals[1].alternatives[0].start_time >= ms(1400));
    assert!(finals[1].alternatives[0].words[0].start >= ms(1400));
}

#[tokio::test(start_paused = true)]
async fn empty_segment_transcript_emits_no_final() {
    let stt = Arc::new(FakeStt::new().with_transcripts(["", "second"]));
    let adapter = StreamAdapter::new(stt, vad());
    let events = run(adapter.stream(&SttStreamOptions::default()).unwrap()).await;
    assert_eq!(
        kinds(&events),
        [
            "start",
            "end",
            "usage",
            "start",
            "final:second",
            "end",
            "usage"
        ]
    );
}

/// Fails the first `recognize`, then answers.
struct FlakyStt {
    calls: AtomicUsize,
}

#[async_trait]
impl Stt for FlakyStt {
    fn label(&self) -> &str {
        "flaky.STT"
    }
    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities::default()
    }
    async fn recognize(
        &self,
        _audio: &[AudioFrame],
        _options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(SttError::Api(ApiError::status("overloaded", 503)));
        }
        Ok(Transcript::new("r", SpeechData::new("recovered", 0.9)))
    }
}

#[tokio::test(start_paused = true)]
async fn recognition_errors_are_events_and_the_stream_keeps_going() {
    let stt = Arc::new(FlakyStt {
        calls: AtomicUsize::new(0),
    });
    let adapter = StreamAdapter::new(stt, vad());
    let events = run(adapter.stream(&SttStreamOptions::default()).unwrap()).await;
    assert_eq!(
        kinds(&events),
        [
            "start",
            "error",
            "end",
            "usage",
            "start",
            "final:recovered",
            "end",
            "usage"
        ]
    );
    assert!(matches!(&events[1], Err(SttError::Api(e)) if e.status_code() == Some(503)));
}

#[tokio::test(start_paused = true)]
async fn end_input_closes_an_open_segment_and_ends_the_stream() {
    let stt = Arc::new(FakeStt::new().with_transcripts(["cut short"]));
    let adapter = StreamAdapter::new(stt, Arc::new(FakeVad::scripted([(ms(0), ms(5000))])));
    let mut stream = adapter.stream(&SttStreamOptions::default()).unwrap();
    for f in sequence(&[(true, ms(600))], RATE) {
        let d = f.duration();
        stream.push_frame(f).await.unwrap();
        sleep(d).await;
    }
    stream.end_input().await.unwrap();
    let mut got = Vec::new();
    while let Some(e) = stream.next().await {
        got.push(e);
    }
    assert_eq!(kinds(&got), ["start", "final:cut short", "end", "usage"]);
}

#[tokio::test(start_paused = true)]
async fn vad_failure_is_an_error_item_not_a_panic() {
    let stt = Arc::new(FakeStt::new());
    let adapter = StreamAdapter::new(stt, vad());
    let mut stream = adapter.stream(&SttStreamOptions::default()).unwrap();
    let a = AudioFrame::new(vec![0; 160], SampleRate::HZ_16000, 1).unwrap();
    let b = AudioFrame::new(vec![0; 80], SampleRate::HZ_8000, 1).unwrap();
    stream.push_frame(a).await.unwrap();
    stream.push_frame(b).await.unwrap();
    let first = stream.next().await.unwrap();
    assert!(matches!(
        first,
        Err(SttError::UnsupportedSampleRate {
            expected: 16000,
            actual: 8000
        })
    ));
    // The VAD stream ended, so the adapter's stream ends too.
    assert!(stream.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn adapter_drives_stt_mode_turn_detection() {
    let stt = Arc::new(FakeStt::new().with_transcripts(["adapter turn", "second turn"]));
    let adapter: Arc<dyn Stt> = Arc::new(StreamAdapter::new(stt, vad()));
    let (rec, mut events) = AudioRecognition::start(
        None,
        Some(adapter),
        RecognitionOptions::new(TurnDetectionMode::Stt).with_user_away_timeout(None),
    )
    .unwrap();
    let mut turns = Vec::new();
    let t0 = Instant::now();
    for f in audio() {
        let d = f.duration();
        rec.push_frame(f).await.unwrap();
        let until = Instant::now() + d;
        while let Ok(Some(e)) = timeout_at(until, events.next()).await {
            if let RecognitionEvent::EndOfTurn(t) = e {
                turns.push((t0.elapsed(), t.transcript));
            }
        }
    }
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[0].1, "adapter turn");
    assert_eq!(turns[1].1, "second turn");
    // The scripted VAD ends speech at ~1.03 s; the turn ends min_delay (0.5 s) later.
    assert!(
        turns[0].0 >= ms(1500) && turns[0].0 <= ms(1600),
        "{turns:?}"
    );
}
