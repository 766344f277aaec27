//! Fallback adapters over scripted members: switching, no switch after output, timeouts, recovery probes,
//! every member down, STT stream replacement with replay, TTS resampling to the highest member rate.

// The helpers and scripted members below are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::fallback::{
    AllMembersFailed, AvailabilityChanged, FallbackError, FallbackLlm, FallbackLlmOptions,
    FallbackStt, FallbackSttOptions, FallbackTts, FallbackTtsOptions,
};
use agents_core::stream::FrameInput;
use agents_core::stt::{
    RecognizeOptions, SpeechData, SpeechEvent, SttCapabilities, SttStreamOptions, Transcript,
};
use agents_core::tts::{
    SynthesizeOptions, SynthesizedAudio, TtsAudioStream, TtsCapabilities, TtsInput, TtsStream,
};
use agents_core::{
    ApiError, ApiErrorKind, ChatContext, ChatRequest, Llm, LlmError, Stt, SttError, SttStream, Tts,
    TtsError,
};
use agents_testkit::signal::{silence, tone, total_duration};
use agents_testkit::{FakeLlm, FakeResponse, FakeStt, FakeTts};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;

fn request() -> ChatRequest {
    ChatRequest::new(ChatContext::new())
}

fn down() -> ApiError {
    ApiError::status("service unavailable", 503)
}

fn llm(members: Vec<FakeLlm>, options: FallbackLlmOptions) -> FallbackLlm {
    let members: Vec<Arc<dyn Llm>> = members
        .into_iter()
        .map(|m| Arc::new(m) as Arc<dyn Llm>)
        .collect();
    FallbackLlm::with_options(members, options).unwrap()
}

async fn next_change(rx: &mut broadcast::Receiver<AvailabilityChanged>) -> AvailabilityChanged {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("an availability change")
        .expect("channel open")
}

fn all_failed(error: &ApiError) -> &AllMembersFailed {
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<AllMembersFailed>())
        .expect("source is AllMembersFailed")
}

#[tokio::test]
async fn llm_switches_to_the_next_member_on_failure_and_names_it_in_metrics() {
    let primary = FakeLlm::new()
        .with_model("primary")
        .with_sticky_error(down());
    let backup = FakeLlm::new()
        .with_model("backup")
        .push_response(FakeResponse::text("hello"));
    let fallback = llm(
        vec![primary.clone(), backup.clone()],
        FallbackLlmOptions::default(),
    );
    let mut changes = fallback.subscribe();

    let response = fallback.chat(request()).collect().await.unwrap();
    assert_eq!(response.text, "hello");
    let metrics = response.metrics.unwrap();
    assert_eq!(metrics.label, "fake.LLM");
    assert_eq!(metrics.model, "backup");
    assert_eq!(fallback.availability(), vec![false, true]);
    let change = next_change(&mut changes).await;
    assert_eq!(
        (change.index, change.label.as_str(), change.available),
        (0, "fake.LLM", false)
    );
    // The member was asked with the fallback's per-member policy: no retries, 5 s timeout.
    let conn = primary.last_request().unwrap().conn_options;
    assert_eq!(conn.max_retry, 0);
    assert_eq!(conn.timeout, Duration::from_secs(5));
    assert_eq!(primary.attempts(), 1);
    // The next request skips the unavailable member.
    backup.add_response(FakeResponse::text("again"));
    let again = fallback.chat(request()).collect().await.unwrap();
    assert_eq!(again.text, "again");
    assert_eq!(primary.request_count(), 1);
}

#[tokio::test]
async fn llm_does_not_switch_after_chunks_were_sent() {
    let primary = FakeLlm::new().push_response(
        FakeResponse::text("Hel").then_error(ApiError::connection("socket dropped")),
    );
    let backup = FakeLlm::new().push_response(FakeResponse::text("other"));
    let fallback = llm(vec![primary, backup.clone()], FallbackLlmOptions::default());

    let mut stream = fallback.chat(request());
    let mut text = String::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(agents_core::ChatChunk::Text(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => error = Some(e),
        }
    }
    assert_eq!(text, "Hel");
    let error = error.expect("the member's error reaches the caller");
    assert!(error.to_string().contains("socket dropped"), "{error}");
    assert_eq!(backup.request_count(), 0);
    assert!(!fallback.is_available(0));
}

#[tokio::test]
async fn llm_switches_after_chunks_when_retry_on_chunk_sent() {
    let primary = FakeLlm::new().push_response(
        FakeResponse::text("Hel").then_error(ApiError::connection("socket dropped")),
    );
    let backup = FakeLlm::new().push_response(FakeResponse::text("Hello"));
    let options = FallbackLlmOptions::default().with_retry_on_chunk_sent(true);
    let fallback = llm(vec![primary, backup.clone()], options);
    let response = fallback.chat(request()).collect().await.unwrap();
    assert_eq!(response.text, "HelHello");
    assert_eq!(backup.request_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn llm_attempt_timeout_moves_to_the_next_member() {
    let slow = FakeLlm::new()
        .with_model("slow")
        .with_ttft(Duration::from_secs(30))
        .push_response(FakeResponse::text("late"));
    let fast = FakeLlm::new()
        .with_model("fast")
        .push_response(FakeResponse::text("fast"));
    let fallback = llm(vec![slow, fast], FallbackLlmOptions::default());
    let started = tokio::time::Instant::now();
    let response = fallback.chat(request()).collect().await.unwrap();
    assert_eq!(response.text, "fast");
    assert_eq!(response.metrics.unwrap().model, "fast");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(!fallback.is_available(0));
}

#[tokio::test(start_paused = true)]
async fn llm_recovery_probe_marks_the_member_available_again() {
    let primary = FakeLlm::new()
        .with_model("primary")
        .with_sticky_error(down())
        .with_responder(|_| FakeResponse::text("probe ok"));
    let backup = FakeLlm::new().with_responder(|_| FakeResponse::text("backup"));
    let options = FallbackLlmOptions::default().with_probe_interval(Duration::from_secs(2));
    let fallback = llm(vec![primary.clone(), backup], options);
    let mut changes = fallback.subscribe();

    assert_eq!(
        fallback.chat(request()).collect().await.unwrap().text,
        "backup"
    );
    assert!(!next_change(&mut changes).await.available);
    assert!(fallback.is_probing(0));
    // Probes keep failing while the provider is down.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!fallback.is_available(0));
    let attempts_while_down = primary.attempts();
    assert!(attempts_while_down >= 3, "{attempts_while_down}");
    primary.clear_sticky_error();
    let change = next_change(&mut changes).await;
    assert_eq!((change.index, change.available), (0, true));
    assert!(fallback.is_available(0));
    assert!(!fallback.is_probing(0));
    let response = fallback.chat(request()).collect().await.unwrap();
    assert_eq!(response.metrics.unwrap().model, "primary");
}

#[tokio::test]
async fn llm_every_member_down_is_a_typed_error_and_all_are_still_tried() {
    let a = FakeLlm::new().with_sticky_error(down());
    let b = FakeLlm::new().with_sticky_error(ApiError::status("bad key", 401));
    let fallback = llm(vec![a.clone(), b.clone()], FallbackLlmOptions::default());
    for round in 1..=2 {
        let error = fallback.chat(request()).collect().await.unwrap_err();
        let LlmError::Api(api) = &error else {
            panic!("expected an API error, got {error:?}");
        };
        assert_eq!(api.kind(), ApiErrorKind::Connection);
        assert!(
            api.message()
                .starts_with("all LLMs failed ([fake.LLM, fake.LLM])")
        );
        let failed = all_failed(api);
        assert_eq!(failed.kind, "LLM");
        assert_eq!(failed.failures.len(), 2);
        assert!(failed.failures[1].error.contains("bad key"));
        // With every member unavailable, each is still tried once per request.
        assert_eq!((a.request_count(), b.request_count()), (round, round));
    }
    assert_eq!(fallback.availability(), vec![false, false]);
    assert!(matches!(
        FallbackLlm::new(Vec::new()),
        Err(FallbackError::NoMembers { kind: "LLM" })
    ));
}

/// An STT that streams like [`FakeStt`] would not: it drops its stream after `fail_after` frames, or fails
/// `recognize`, while `broken` is set.
#[derive(Clone)]
struct BrokenStt {
    broken: Arc<AtomicBool>,
    fail_after: usize,
    frames_seen: Arc<AtomicUsize>,
    streaming: bool,
    /// Sends a final transcript covering the audio so far after this many frames.
    final_after: Option<usize>,
    /// Never answers the end of input (a stuck provider).
    hang_on_end: bool,
}

impl BrokenStt {
    fn new(fail_after: usize) -> Self {
        Self {
            broken: Arc::new(AtomicBool::new(true)),
            fail_after,
            frames_seen: Arc::new(AtomicUsize::new(0)),
            streaming: true,
            final_after: None,
            hang_on_end: false,
        }
    }
}

#[async_trait]
impl Stt for BrokenStt {
    fn label(&self) -> &str {
        "broken.STT"
    }

    fn capabilities(&self) -> SttCapabilities {
        let mut c = SttCapabilities::default();
        c.streaming = self.streaming;
        c
    }

    async fn recognize(
        &self,
        _audio: &[AudioFrame],
        _options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(down().into());
        }
        Ok(Transcript::new("r1", SpeechData::new("recovered", 1.0)))
    }

    fn stream(&self, _options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let (stream, mut driver) = SttStream::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let mut frames = 0;
            while let Some(input) = driver.recv().await {
                match input {
                    FrameInput::Frame(_) => {
                        frames += 1;
                        this.frames_seen.fetch_add(1, Ordering::SeqCst);
                        if this.final_after == Some(frames) {
                            let end = Duration::from_millis(20 * frames as u64);
                            let data =
                                SpeechData::new("early", 1.0).with_times(Duration::ZERO, end);
                            let event = SpeechEvent::FinalTranscript(Transcript::new("b1", data));
                            if driver.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        if this.broken.load(Ordering::SeqCst) && frames >= this.fail_after {
                            let _ = driver
                                .send(Err(ApiError::connection("websocket dropped").into()))
                                .await;
                            return;
                        }
                    }
                    FrameInput::EndInput if this.hang_on_end => {
                        driver.closed().await;
                        return;
                    }
                    FrameInput::EndInput => return,
                    _ => {}
                }
            }
        });
        Ok(stream.with_labels("broken.STT", "m"))
    }
}

#[tokio::test]
async fn stt_stream_failure_is_replaced_with_the_audio_since_the_last_final_replayed() {
    let rate = SampleRate::HZ_16000;
    let broken = BrokenStt::new(30);
    let backup = FakeStt::new().with_transcripts(["hello world"]);
    let fallback = FallbackStt::new(vec![
        Arc::new(broken.clone()) as Arc<dyn Stt>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    let mut changes = fallback.subscribe();

    // 200 ms of silence, 1 s of speech, 500 ms of silence; the broken member drops its socket after 600 ms.
    let mut audio = silence(Duration::from_millis(200), rate);
    audio.extend(tone(Duration::from_secs(1), rate));
    audio.extend(silence(Duration::from_millis(500), rate));
    let pushed = total_duration(&audio);
    let mut stream = fallback.stream(&SttStreamOptions::default()).unwrap();
    // 85 frames fit in the input queue: push everything, then read.
    for frame in audio {
        stream.push_frame(frame).await.unwrap();
    }
    stream.end_input().await.unwrap();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev);
    }
    assert_eq!(broken.frames_seen.load(Ordering::SeqCst), 30);
    let change = next_change(&mut changes).await;
    assert_eq!((change.index, change.available), (0, false));
    assert!(events.iter().all(Result::is_ok), "{events:?}");
    let finals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Ok(SpeechEvent::FinalTranscript(t)) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].text(), "hello world");
    // The backup heard everything: the replayed audio (nothing was final yet) and the rest.
    assert_eq!(backup.streamed_audio(), pushed);
    // Its transcript times count from the start of the fallback stream (speech starts at 200 ms).
    let best = &finals[0].alternatives[0];
    assert_eq!(best.start_time, Duration::from_millis(200));
    assert_eq!(best.end_time, Duration::from_millis(1200));
}

#[tokio::test]
async fn stt_recognize_switches_and_every_member_down_is_typed() {
    let rate = SampleRate::HZ_16000;
    let audio = tone(Duration::from_millis(500), rate);
    let broken = BrokenStt::new(1);
    let backup = FakeStt::new().with_transcripts(["hi"]);
    let fallback = FallbackStt::new(vec![
        Arc::new(broken.clone()) as Arc<dyn Stt>,
        Arc::new(backup),
    ])
    .unwrap();
    let t = fallback
        .recognize(&audio, &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "hi");
    assert_eq!(fallback.availability(), vec![false, true]);

    let only_broken = FallbackStt::new(vec![Arc::new(BrokenStt::new(1)) as Arc<dyn Stt>]).unwrap();
    let error = only_broken
        .recognize(&audio, &RecognizeOptions::default())
        .await
        .unwrap_err();
    let SttError::Api(api) = &error else {
        panic!("expected an API error, got {error:?}");
    };
    assert!(api.message().starts_with("all STTs failed ([broken.STT])"));
    assert_eq!(all_failed(api).failures.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn stt_recognize_probe_recovers_the_member() {
    let audio = tone(Duration::from_millis(300), SampleRate::HZ_16000);
    let broken = BrokenStt::new(1);
    let fallback = FallbackStt::with_options(
        vec![
            Arc::new(broken.clone()) as Arc<dyn Stt>,
            Arc::new(FakeStt::new().with_transcripts(["backup"])),
        ],
        FallbackSttOptions::default().with_probe_interval(Duration::from_secs(1)),
    )
    .unwrap();
    let mut changes = fallback.subscribe();
    let t = fallback
        .recognize(&audio, &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "backup");
    assert!(!next_change(&mut changes).await.available);
    broken.broken.store(false, Ordering::SeqCst);
    let change = next_change(&mut changes).await;
    assert_eq!(
        (change.index, change.label.as_str(), change.available),
        (0, "broken.STT", true)
    );
    let t = fallback
        .recognize(&audio, &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "recovered");
}

#[tokio::test]
async fn stt_non_streaming_members_need_a_stream_adapter() {
    let mut offline = BrokenStt::new(1);
    offline.streaming = false;
    let err = FallbackStt::new(vec![
        Arc::new(FakeStt::new()) as Arc<dyn Stt>,
        Arc::new(offline.clone()),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        FallbackError::NonStreamingStt {
            labels: vec!["broken.STT".to_owned()]
        }
    );
    assert!(err.to_string().starts_with(
        "STTs do not support streaming: broken.STT. Provide a VAD to enable stt.StreamAdapter"
    ));
    // With an adapter the member is wrapped (here by a streaming stand-in).
    let wrapped = FallbackStt::with_stream_adapter(
        vec![Arc::new(offline) as Arc<dyn Stt>],
        FallbackSttOptions::default(),
        |_| Arc::new(FakeStt::new()) as Arc<dyn Stt>,
    )
    .unwrap();
    assert_eq!(wrapped.members()[0].label(), "fake.STT");
}

/// A TTS that fails before any audio, or after `audio_chunks` chunks, at its rate and channel count.
#[derive(Clone)]
struct BrokenTts {
    rate: SampleRate,
    channels: u16,
    audio_chunks: usize,
    /// While false, the audio ends with an error; once true, the audio ends normally (never marked final).
    healthy: Arc<AtomicBool>,
    /// Streams never answer a flush (a stuck provider).
    hang: bool,
}

impl BrokenTts {
    fn new(rate: SampleRate, channels: u16, audio_chunks: usize) -> Self {
        Self {
            rate,
            channels,
            audio_chunks,
            healthy: Arc::new(AtomicBool::new(false)),
            hang: false,
        }
    }
}

impl BrokenTts {
    fn chunks(&self) -> Vec<Result<SynthesizedAudio, TtsError>> {
        let mut items: Vec<Result<SynthesizedAudio, TtsError>> = (0..self.audio_chunks)
            .map(|_| {
                let samples = usize::from(self.channels) * (self.rate.hz() as usize / 50);
                let frame = AudioFrame::new(vec![100; samples], self.rate, self.channels).unwrap();
                Ok(SynthesizedAudio::new("req", "seg", frame))
            })
            .collect();
        if !self.healthy.load(Ordering::SeqCst) {
            items.push(Err(ApiError::connection("tts socket dropped").into()));
        }
        items
    }
}

#[async_trait]
impl Tts for BrokenTts {
    fn label(&self) -> &str {
        "broken.TTS"
    }

    fn capabilities(&self) -> TtsCapabilities {
        let mut c = TtsCapabilities::default();
        c.streaming = true;
        c
    }

    fn sample_rate(&self) -> SampleRate {
        self.rate
    }

    fn num_channels(&self) -> u16 {
        self.channels
    }

    async fn synthesize(
        &self,
        text: &str,
        _options: &SynthesizeOptions,
    ) -> Result<TtsAudioStream, TtsError> {
        Ok(TtsAudioStream::new(
            self.label(),
            text,
            futures::stream::iter(self.chunks()),
        ))
    }

    fn stream(&self, _options: &SynthesizeOptions) -> Result<TtsStream, TtsError> {
        let (stream, mut driver) = TtsStream::channel(self.label());
        let items = self.chunks();
        let hang = self.hang;
        tokio::spawn(async move {
            if hang {
                driver.closed().await;
                return;
            }
            // Fail once the first segment is asked for.
            while let Some(input) = driver.recv().await {
                if matches!(input, TtsInput::Flush | TtsInput::EndInput) {
                    break;
                }
            }
            for item in items {
                if driver.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(stream)
    }
}

#[tokio::test]
async fn tts_output_is_resampled_to_the_highest_member_rate() {
    let broken = BrokenTts::new(SampleRate::HZ_48000, 1, 0);
    let backup = FakeTts::new().with_sample_rate(SampleRate::HZ_16000);
    let fallback = FallbackTts::new(vec![
        Arc::new(broken) as Arc<dyn Tts>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    assert_eq!(fallback.sample_rate(), SampleRate::HZ_48000);
    let text = "hello there world";
    let stream = fallback
        .synthesize(text, &SynthesizeOptions::default())
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect::<Vec<_>>().await;
    let chunks: Vec<SynthesizedAudio> = chunks.into_iter().map(Result::unwrap).collect();
    assert!(
        chunks
            .iter()
            .all(|c| c.frame.sample_rate() == SampleRate::HZ_48000)
    );
    assert!(chunks.last().unwrap().is_final);
    let frames: Vec<AudioFrame> = chunks.iter().map(|c| c.frame.clone()).collect();
    // Same length as the 16 kHz original, at three times the samples.
    let expected = backup.audio_duration(text);
    let got = total_duration(&frames);
    let diff = got.abs_diff(expected);
    assert!(
        diff <= Duration::from_micros(100),
        "{got:?} vs {expected:?}"
    );
    // The word timings of the original survive resampling.
    let words: Vec<String> = chunks
        .iter()
        .flat_map(|c| c.timed_text.iter().map(|t| t.text.clone()))
        .collect();
    assert_eq!(words, vec!["hello", "there", "world"]);
    assert_eq!(fallback.availability(), vec![false, true]);
}

#[tokio::test]
async fn tts_members_must_share_the_channel_count() {
    let stereo = BrokenTts::new(SampleRate::HZ_24000, 2, 0);
    let err = FallbackTts::new(vec![
        Arc::new(FakeTts::new()) as Arc<dyn Tts>,
        Arc::new(stereo),
    ])
    .unwrap_err();
    assert!(matches!(err, FallbackError::ChannelMismatch { .. }));
    assert!(
        err.to_string()
            .starts_with("all TTS must have the same number of channels")
    );
    assert_eq!(
        FallbackTts::with_options(Vec::new(), FallbackTtsOptions::default()).unwrap_err(),
        FallbackError::NoMembers { kind: "TTS" }
    );
}

#[tokio::test]
async fn tts_stream_replays_the_text_into_the_next_member_before_any_audio() {
    let broken = BrokenTts::new(SampleRate::HZ_24000, 1, 0);
    let backup = FakeTts::new();
    let fallback = FallbackTts::new(vec![
        Arc::new(broken) as Arc<dyn Tts>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    let mut stream = fallback.stream(&SynthesizeOptions::default()).unwrap();
    stream.push_text("Hello ").await.unwrap();
    stream.push_text("world.").await.unwrap();
    stream.flush().await.unwrap();
    stream.end_input().await.unwrap();
    let mut audio = Duration::ZERO;
    while let Some(item) = stream.next().await {
        audio += item.unwrap().frame.duration();
    }
    assert_eq!(backup.pushed_texts(), vec!["Hello ", "world."]);
    assert_eq!(audio, backup.audio_duration("Hello world."));
    assert!(!fallback.is_available(0));
}

#[tokio::test]
async fn tts_failure_after_audio_is_not_replaced() {
    let broken = BrokenTts::new(SampleRate::HZ_24000, 1, 2);
    let backup = FakeTts::new();
    let fallback = FallbackTts::new(vec![
        Arc::new(broken) as Arc<dyn Tts>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    let items: Vec<_> = fallback
        .synthesize("hello", &SynthesizeOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert!(items[..2].iter().all(Result::is_ok));
    let err = items[2].as_ref().unwrap_err();
    assert!(err.to_string().contains("tts socket dropped"), "{err}");
    assert!(backup.synthesized().is_empty());
}

/// Pushes `audio` and the end of input into a fallback stream, then reads every event.
async fn run_stream(fallback: &FallbackStt, audio: Vec<AudioFrame>) -> Vec<SpeechEvent> {
    let mut stream = fallback.stream(&SttStreamOptions::default()).unwrap();
    // The queues hold the whole input (under 128 frames): push everything, then read.
    assert!(audio.len() < 128);
    for frame in audio {
        stream.push_frame(frame).await.unwrap();
    }
    stream.end_input().await.unwrap();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    events
}

fn finals(events: &[SpeechEvent]) -> Vec<Transcript> {
    events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::FinalTranscript(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn stt_replay_starts_after_the_last_final_transcript() {
    let rate = SampleRate::HZ_16000;
    let mut broken = BrokenStt::new(40);
    // A final covering the first 500 ms (25 frames) arrives before the socket drops at 800 ms.
    broken.final_after = Some(25);
    let backup = FakeStt::new().with_transcripts(["second part"]);
    let fallback = FallbackStt::new(vec![
        Arc::new(broken.clone()) as Arc<dyn Stt>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    let mut audio = tone(Duration::from_millis(1000), rate);
    audio.extend(silence(Duration::from_millis(500), rate));
    let events = run_stream(&fallback, audio).await;
    let texts: Vec<String> = finals(&events)
        .iter()
        .map(|t| t.text().to_owned())
        .collect();
    assert_eq!(texts, vec!["early", "second part"]);
    // The backup heard the audio after the final (from 500 ms), not what was already transcribed.
    assert_eq!(backup.streamed_audio(), Duration::from_millis(1000));
    // Its times count from the fallback stream's start: its speech starts at 500 ms.
    let second = &finals(&events)[1].alternatives[0];
    assert_eq!(second.start_time, Duration::from_millis(500));
    assert_eq!(second.end_time, Duration::from_millis(1000));
}

#[tokio::test]
async fn stt_replay_buffer_is_bounded() {
    let rate = SampleRate::HZ_16000;
    let broken = BrokenStt::new(30);
    let backup = FakeStt::new().with_transcripts(["tail"]);
    let options = FallbackSttOptions::default().with_max_replay(Duration::from_millis(200));
    let fallback = FallbackStt::with_options(
        vec![Arc::new(broken) as Arc<dyn Stt>, Arc::new(backup.clone())],
        options,
    )
    .unwrap();
    let mut changes = fallback.subscribe();
    let mut audio = tone(Duration::from_millis(1000), rate);
    audio.extend(silence(Duration::from_millis(500), rate));
    let rest = audio.split_off(30);
    let mut stream = fallback.stream(&SttStreamOptions::default()).unwrap();
    // 600 ms reach the broken member, which drops its socket; wait for the switch before pushing the rest.
    for frame in audio {
        stream.push_frame(frame).await.unwrap();
    }
    assert!(!next_change(&mut changes).await.available);
    for frame in rest {
        stream.push_frame(frame).await.unwrap();
    }
    stream.end_input().await.unwrap();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    // Only the last 200 ms of the first 600 ms were kept for the backup, then it heard the remaining 900 ms.
    assert_eq!(backup.streamed_audio(), Duration::from_millis(1100));
    let tail = &finals(&events)[0].alternatives[0];
    assert_eq!(tail.start_time, Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn stt_stream_stuck_after_end_of_input_times_out_to_the_next_member() {
    let rate = SampleRate::HZ_16000;
    let mut stuck = BrokenStt::new(usize::MAX);
    stuck.hang_on_end = true;
    let backup = FakeStt::new().with_transcripts(["rescued"]);
    let fallback = FallbackStt::new(vec![
        Arc::new(stuck) as Arc<dyn Stt>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    let started = tokio::time::Instant::now();
    let mut audio = tone(Duration::from_millis(400), rate);
    audio.extend(silence(Duration::from_millis(400), rate));
    let events = run_stream(&fallback, audio).await;
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(finals(&events)[0].text(), "rescued");
    assert_eq!(backup.streamed_audio(), Duration::from_millis(800));
    assert_eq!(fallback.availability(), vec![false, true]);
}

#[tokio::test]
async fn tts_resampler_tail_is_kept_when_the_member_never_marks_a_final_chunk() {
    // Ten 20 ms chunks at 16 kHz, none final, then the end of the stream.
    let unmarked = BrokenTts::new(SampleRate::HZ_16000, 1, 10);
    unmarked.healthy.store(true, Ordering::SeqCst);
    let fallback = FallbackTts::new(vec![
        Arc::new(unmarked) as Arc<dyn Tts>,
        Arc::new(FakeTts::new().with_sample_rate(SampleRate::HZ_48000)),
    ])
    .unwrap();
    let chunks: Vec<SynthesizedAudio> = fallback
        .synthesize("x", &SynthesizeOptions::default())
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let frames: Vec<AudioFrame> = chunks.iter().map(|c| c.frame.clone()).collect();
    assert!(
        frames
            .iter()
            .all(|f| f.sample_rate() == SampleRate::HZ_48000)
    );
    assert_eq!(total_duration(&frames), Duration::from_millis(200));
    assert!(chunks.last().unwrap().is_final);
}

#[tokio::test(start_paused = true)]
async fn tts_stream_stuck_after_a_flush_times_out_to_the_next_member() {
    let mut stuck = BrokenTts::new(SampleRate::HZ_24000, 1, 0);
    stuck.hang = true;
    let backup = FakeTts::new();
    let fallback = FallbackTts::new(vec![
        Arc::new(stuck) as Arc<dyn Tts>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    let started = tokio::time::Instant::now();
    let mut stream = fallback.stream(&SynthesizeOptions::default()).unwrap();
    stream.push_text("Are you there?").await.unwrap();
    stream.flush().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(first.frame.sample_rate(), SampleRate::HZ_24000);
    assert_eq!(backup.pushed_texts(), vec!["Are you there?"]);
    assert_eq!(fallback.availability(), vec![false, true]);
}

#[tokio::test(start_paused = true)]
async fn tts_recovery_probe_marks_the_member_available_again() {
    let flaky = BrokenTts::new(SampleRate::HZ_24000, 1, 3);
    let healthy = Arc::clone(&flaky.healthy);
    let options = FallbackTtsOptions::default().with_probe_interval(Duration::from_secs(1));
    let fallback = FallbackTts::with_options(
        vec![Arc::new(flaky) as Arc<dyn Tts>, Arc::new(FakeTts::new())],
        options,
    )
    .unwrap();
    let mut changes = fallback.subscribe();
    // The flaky member fails after audio: the error reaches the caller and the member is marked unavailable.
    let items: Vec<_> = fallback
        .synthesize("hello", &SynthesizeOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(items.last().unwrap().is_err());
    assert!(!next_change(&mut changes).await.available);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!fallback.is_available(0));
    healthy.store(true, Ordering::SeqCst);
    let change = next_change(&mut changes).await;
    assert_eq!(
        (change.index, change.label.as_str(), change.available),
        (0, "broken.TTS", true)
    );
    assert_eq!(fallback.availability(), vec![true, true]);
}

#[tokio::test]
async fn stt_bad_input_audio_reaches_the_caller_without_switching() {
    let primary = FakeStt::new();
    let backup = FakeStt::new();
    let fallback = FallbackStt::new(vec![
        Arc::new(primary) as Arc<dyn Stt>,
        Arc::new(backup.clone()),
    ])
    .unwrap();
    let mut stream = fallback.stream(&SttStreamOptions::default()).unwrap();
    // Frames of two rates in one stream: the caller's mistake, not the provider's.
    for frame in tone(Duration::from_millis(100), SampleRate::HZ_16000) {
        stream.push_frame(frame).await.unwrap();
    }
    for frame in tone(Duration::from_millis(100), SampleRate::HZ_24000) {
        let _ = stream.push_frame(frame).await;
    }
    let _ = stream.end_input().await;
    let mut error = None;
    while let Some(ev) = stream.next().await {
        if let Err(e) = ev {
            error = Some(e);
        }
    }
    assert!(matches!(
        error,
        Some(SttError::UnsupportedSampleRate {
            expected: 16_000,
            actual: 24_000
        })
    ));
    assert_eq!(backup.stream_count(), 0);
    assert_eq!(fallback.availability(), vec![true, true]);
}
