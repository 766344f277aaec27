//! `StreamAdapter`: a non-streaming TTS gains `stream()` by synthesizing sentence by sentence.

use std::sync::Arc;
use std::time::Duration;

use agents_core::tokenize::SentenceOptions;
use agents_core::tts::{
    SynthesizeOptions, SynthesizedAudio, Tts, TtsAudioStream, TtsCapabilities, TtsError,
};
use agents_core::{ApiError, SampleRate, StreamAdapter};
use agents_testkit::FakeTts;
use agents_testkit::conformance::tts::{TtsHarness, run_all};
use async_trait::async_trait;
use futures::StreamExt;

fn fake() -> FakeTts {
    FakeTts::new().without_streaming()
}

struct Harness(Arc<dyn Tts>);

impl TtsHarness for Harness {
    fn tts(&self) -> Arc<dyn Tts> {
        Arc::clone(&self.0)
    }
}

#[tokio::test]
async fn passes_the_tts_conformance_suite_around_a_non_streaming_fake() {
    let inner = fake();
    assert!(!inner.capabilities().streaming);
    assert!(inner.stream(&SynthesizeOptions::default()).is_err());
    let adapter = StreamAdapter::new(Arc::new(inner));
    assert!(adapter.capabilities().streaming);
    assert!(adapter.capabilities().aligned_transcript);
    run_all(&Harness(Arc::new(adapter))).await;
}

async fn read_all(stream: &mut agents_core::TtsStream) -> Vec<Result<SynthesizedAudio, TtsError>> {
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.push(c);
    }
    out
}

#[tokio::test]
async fn each_sentence_is_one_request_in_one_segment_with_shifted_timings() {
    let inner = fake();
    let adapter = StreamAdapter::new(Arc::new(inner.clone()));
    let mut stream = adapter.stream(&SynthesizeOptions::default()).unwrap();
    let text = "Hello there, my good friend. How are you doing today? I am fine, thanks.";
    for piece in text.split_inclusive(' ') {
        stream.push_text(piece).await.unwrap();
    }
    stream.flush().await.unwrap();
    stream.push_text("A second segment here.").await.unwrap();
    stream.end_input().await.unwrap();
    let chunks: Vec<_> = read_all(&mut stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let sentences = [
        "Hello there, my good friend.",
        "How are you doing today?",
        "I am fine, thanks.",
        "A second segment here.",
    ];
    assert_eq!(inner.synthesized(), sentences);

    let first: Vec<_> = chunks
        .iter()
        .take_while(|c| c.segment_id == chunks[0].segment_id)
        .collect();
    let second = &chunks[first.len()..];
    assert!(second.iter().all(|c| c.segment_id == second[0].segment_id));
    assert_ne!(first[0].segment_id, second[0].segment_id);
    assert_eq!(first.iter().filter(|c| c.is_final).count(), 1);
    assert!(first.last().unwrap().is_final && second.last().unwrap().is_final);

    // Audio of the segment = the three sentences back to back.
    let d: Duration = first.iter().map(|c| c.frame.duration()).sum();
    let expected: Duration = sentences[..3].iter().map(|s| inner.audio_duration(s)).sum();
    assert_eq!(d, expected);

    // Timings count from the segment start: "How" starts where the first sentence's audio ends.
    let timed: Vec<_> = first.iter().flat_map(|c| c.timed_text.iter()).collect();
    let words: Vec<_> = timed.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(words.len(), 14, "{words:?}");
    let how = timed.iter().find(|t| t.text == "How").unwrap();
    assert_eq!(how.start, inner.audio_duration(sentences[0]));
    assert!(timed.windows(2).all(|w| w[0].start <= w[1].start));
    // The second segment starts again from zero.
    assert_eq!(second[0].timed_text[0].start, Duration::ZERO);

    let m = stream.metrics();
    assert!(m.streamed && !m.cancelled);
    assert_eq!(
        m.audio_duration,
        d + second.iter().map(|c| c.frame.duration()).sum::<Duration>()
    );
    assert_eq!(
        m.characters_count,
        text.chars().count() + "A second segment here.".len()
    );
}

#[tokio::test]
async fn short_sentences_are_merged_and_empty_flushes_make_no_segment() {
    let inner = fake();
    let adapter = StreamAdapter::new(Arc::new(inner.clone()))
        .with_sentence_options(SentenceOptions::default().with_min_sentence_len(10));
    let mut stream = adapter.stream(&SynthesizeOptions::default()).unwrap();
    stream.flush().await.unwrap();
    stream.push_text("Hi. Ok. That is settled. ").await.unwrap();
    stream.flush().await.unwrap();
    stream.flush().await.unwrap();
    stream.end_input().await.unwrap();
    let chunks = read_all(&mut stream).await;
    assert_eq!(inner.synthesized(), ["Hi. Ok. That is settled."]);
    assert_eq!(
        chunks
            .iter()
            .filter(|c| matches!(c, Ok(c) if c.is_final))
            .count(),
        1
    );
}

/// A TTS that fails on sentences containing "fail".
struct Failing(FakeTts);

#[async_trait]
impl Tts for Failing {
    fn label(&self) -> &str {
        "failing.TTS"
    }
    fn capabilities(&self) -> TtsCapabilities {
        self.0.capabilities()
    }
    fn sample_rate(&self) -> SampleRate {
        self.0.sample_rate()
    }
    async fn synthesize(
        &self,
        text: &str,
        options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError> {
        if text.contains("fail") {
            return Err(ApiError::status("overloaded", 503).into());
        }
        self.0.synthesize(text, options).await
    }
}

#[tokio::test]
async fn an_error_is_delivered_after_the_earlier_audio_and_ends_the_stream() {
    let inner = fake();
    let adapter = StreamAdapter::new(Arc::new(Failing(inner.clone())));
    assert_eq!(adapter.label(), "failing.TTS");
    let mut stream = adapter.stream(&SynthesizeOptions::default()).unwrap();
    stream
        .push_text("This one works fine. This one will fail now. Never said.")
        .await
        .unwrap();
    stream.end_input().await.unwrap();
    let items = read_all(&mut stream).await;
    let (last, audio) = items.split_last().unwrap();
    assert!(
        matches!(last, Err(TtsError::Api(e)) if e.status_code() == Some(503)),
        "{last:?}"
    );
    assert!(!audio.is_empty() && audio.iter().all(Result::is_ok));
    assert_eq!(inner.synthesized(), ["This one works fine."]);
    assert!(stream.metrics().audio_duration > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_stops_synthesis() {
    // Real-time generation: 300 ms per word.
    let inner = fake().with_real_time_factor(1.0);
    let adapter = StreamAdapter::new(Arc::new(inner.clone()));
    let mut stream = adapter.stream(&SynthesizeOptions::default()).unwrap();
    stream
        .push_text("The first sentence is here. The second sentence is here. The third one too.")
        .await
        .unwrap();
    stream.end_input().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_final);
    drop(stream);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(inner.synthesized(), ["The first sentence is here."]);
}
