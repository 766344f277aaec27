//! Behaviour tests of `AudioRecognition` on a paused tokio clock with the testkit's scripted FakeVad and FakeStt.
//!
//! Audio is pushed in 20 ms frames paced in (paused) tokio time, so audio time and tokio time advance together;
//! timings are asserted with a tolerance of a few VAD/STT windows.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::{Instant, sleep, timeout_at};

use agents_audio::{AudioFrame, SampleRate};
use agents_core::events::Component;
use agents_core::stream::EventStream;
use agents_core::stt::{RecognizeOptions, SttCapabilities, SttError, SttStream, SttStreamOptions};
use agents_core::{ApiError, ChatContext, ChatRole, Stt, UserState, Vad};
use agents_pipeline::recognition::{
    AudioRecognition, EndOfTurn, EndpointingOptions, RecognitionError, RecognitionEvent,
    RecognitionOptions, TurnDetectionMode, TurnDetector, TurnDetectorError,
};
use agents_testkit::signal::sequence;
use agents_testkit::{FakeStt, FakeVad};

const RATE: SampleRate = SampleRate::HZ_16000;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Speech then silence parts, as `(is_speech, duration)`.
fn script(parts: &[(bool, u64)]) -> Vec<AudioFrame> {
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    sequence(&parts, RATE)
}

/// The speech intervals of `parts`, for a scripted VAD.
fn intervals(parts: &[(bool, u64)]) -> Vec<(Duration, Duration)> {
    let mut t = 0;
    let mut out = Vec::new();
    for &(speech, d) in parts {
        if speech {
            out.push((ms(t), ms(t + d)));
        }
        t += d;
    }
    out
}

struct Recorded {
    events: Vec<(Duration, RecognitionEvent)>,
}

impl Recorded {
    fn turns(&self) -> Vec<(Duration, EndOfTurn)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                RecognitionEvent::EndOfTurn(eot) => Some((*t, eot.clone())),
                _ => None,
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&RecognitionEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}

/// Pushes `frames` paced in tokio time, and records events (with their time since `t0`) until `linger` after the
/// audio ends.
async fn drive(
    rec: &AudioRecognition,
    events: &mut EventStream<RecognitionEvent>,
    frames: Vec<AudioFrame>,
    linger: Duration,
) -> Recorded {
    let t0 = Instant::now();
    let audio: Duration = frames.iter().map(AudioFrame::duration).sum();
    let end = t0 + audio + linger;
    let mut recorded = Vec::new();
    let mut frames = frames.into_iter();
    let mut next_push = t0;
    loop {
        let deadline = next_push.min(end);
        match timeout_at(deadline, events.next()).await {
            Ok(Some(e)) => recorded.push((t0.elapsed(), e)),
            Ok(None) => break,
            Err(_) if Instant::now() >= end => break,
            Err(_) => match frames.next() {
                Some(f) => {
                    next_push += f.duration();
                    rec.push_frame(f).await.unwrap();
                }
                None => next_push = end,
            },
        }
    }
    Recorded { events: recorded }
}

fn near(actual: Duration, expected: Duration, tolerance: Duration) -> bool {
    actual + tolerance >= expected && actual <= expected + tolerance
}

fn start(
    vad: Option<Arc<dyn Vad>>,
    stt: Option<Arc<dyn Stt>>,
    options: RecognitionOptions,
) -> (AudioRecognition, EventStream<RecognitionEvent>) {
    AudioRecognition::start(vad, stt, options.with_user_away_timeout(None)).unwrap()
}

fn vad_for(parts: &[(bool, u64)]) -> Arc<dyn Vad> {
    Arc::new(FakeVad::scripted(intervals(parts)))
}

/// A scripted end-of-utterance model.
struct ScriptedDetector {
    probability: Result<f32, TurnDetectorError>,
    threshold: Option<f32>,
    languages: Vec<&'static str>,
    seen: Mutex<Vec<ChatContext>>,
    latency: Duration,
}

impl ScriptedDetector {
    fn new(probability: f32, threshold: f32) -> Self {
        Self {
            probability: Ok(probability),
            threshold: Some(threshold),
            languages: vec!["en"],
            seen: Mutex::new(Vec::new()),
            latency: Duration::ZERO,
        }
    }
}

#[async_trait]
impl TurnDetector for ScriptedDetector {
    fn supports_language(&self, language: Option<&str>) -> bool {
        language.is_some_and(|l| self.languages.contains(&l))
    }
    fn unlikely_threshold(&self, _language: Option<&str>) -> Option<f32> {
        self.threshold
    }
    async fn predict_end_of_turn(&self, chat_ctx: &ChatContext) -> Result<f32, TurnDetectorError> {
        self.seen.lock().unwrap().push(chat_ctx.clone());
        sleep(self.latency).await;
        self.probability.clone()
    }
}

const SPEECH_1S: &[(bool, u64)] = &[(true, 1000), (false, 3000)];

#[tokio::test(start_paused = true)]
async fn end_of_turn_waits_min_delay_after_vad_end_of_speech_behaviour_61() {
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["hello there"])
            .with_min_silence(ms(100)),
    );
    let (rec, mut events) = start(
        Some(vad_for(SPEECH_1S)),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Vad),
    );
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1, "{:?}", r.events);
    let (at, turn) = &turns[0];
    assert_eq!(turn.transcript, "hello there");
    assert_eq!(turn.language.as_deref(), Some("en"));
    assert!(!turn.manual);
    assert_eq!(turn.endpointing_delay, ms(500));
    // Speech ends at 1.0 s; the turn ends min_delay later, not earlier.
    assert!(near(*at, ms(1500), ms(40)), "end of turn at {at:?}");
    assert!(near(turn.end_of_utterance_delay, ms(500), ms(40)));
    // The final came ~0.1 s after the last speech.
    assert!(near(turn.transcription_delay, ms(100), ms(40)));
    let m = turn.eou_metrics();
    assert_eq!(m.end_of_utterance_delay, turn.end_of_utterance_delay);
    assert_eq!(m.transcription_delay, turn.transcription_delay);
    // User started and stopped speaking once, VAD progress reported.
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::UserStartedSpeaking)),
        1
    );
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::UserStoppedSpeaking { .. })),
        1
    );
    assert!(r.events.iter().any(|(_, e)| matches!(
        e,
        RecognitionEvent::VadInference(p) if p.speaking && p.speech_duration > ms(900)
    )));
}

#[tokio::test(start_paused = true)]
async fn low_end_of_turn_probability_extends_the_wait_to_max_delay_behaviour_62() {
    let detector = Arc::new(ScriptedDetector::new(0.1, 0.3));
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["I was wondering"])
            .with_min_silence(ms(100)),
    );
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::Assistant, "How can I help?");
    let options = RecognitionOptions::new(TurnDetectionMode::Vad)
        .with_turn_detector(detector.clone())
        .with_endpointing(EndpointingOptions::default().with_max_delay(ms(2000)));
    let (rec, mut events) = start(Some(vad_for(SPEECH_1S)), Some(stt), options);
    rec.update_chat_context(ctx).await.unwrap();
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1);
    let (at, turn) = &turns[0];
    assert!(near(*at, ms(3000), ms(40)), "end of turn at {at:?}");
    assert_eq!(turn.endpointing_delay, ms(2000));
    assert_eq!(turn.end_of_turn_probability, Some(0.1));
    // The model read the conversation plus the pending user message.
    let seen = detector.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let last = seen[0].messages().last().unwrap();
    assert_eq!(last.role, ChatRole::User);
    assert_eq!(last.text_content().as_deref(), Some("I was wondering"));
    assert_eq!(seen[0].len(), 2);
}

#[tokio::test(start_paused = true)]
async fn likely_end_of_turn_keeps_min_delay() {
    let detector = Arc::new(ScriptedDetector::new(0.9, 0.3));
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["book it"])
            .with_min_silence(ms(100)),
    );
    let options = RecognitionOptions::new(TurnDetectionMode::Vad).with_turn_detector(detector);
    let (rec, mut events) = start(Some(vad_for(SPEECH_1S)), Some(stt), options);
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let (at, turn) = &r.turns()[0];
    assert!(near(*at, ms(1500), ms(40)));
    assert_eq!(turn.end_of_turn_probability, Some(0.9));
}

#[tokio::test(start_paused = true)]
async fn unsupported_language_skips_the_turn_detector() {
    let mut d = ScriptedDetector::new(0.0, 0.5);
    d.languages = vec!["fr"];
    let detector = Arc::new(d);
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["hello"])
            .with_min_silence(ms(100)),
    );
    let options =
        RecognitionOptions::new(TurnDetectionMode::Vad).with_turn_detector(detector.clone());
    let (rec, mut events) = start(Some(vad_for(SPEECH_1S)), Some(stt), options);
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let (at, turn) = &r.turns()[0];
    assert!(near(*at, ms(1500), ms(40)));
    assert_eq!(turn.end_of_turn_probability, None);
    assert!(detector.seen.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn failing_turn_detector_falls_back_to_min_delay_and_reports_the_error() {
    let mut d = ScriptedDetector::new(0.0, 0.5);
    d.probability = Err(TurnDetectorError::Model {
        reason: "onnx session lost".into(),
    });
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["hello"])
            .with_min_silence(ms(100)),
    );
    let options = RecognitionOptions::new(TurnDetectionMode::Vad).with_turn_detector(Arc::new(d));
    let (rec, mut events) = start(Some(vad_for(SPEECH_1S)), Some(stt), options);
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let (at, _) = &r.turns()[0];
    assert!(near(*at, ms(1500), ms(40)));
    assert!(r.events.iter().any(|(_, e)| matches!(
        e,
        RecognitionEvent::Error(err) if matches!(**err, RecognitionError::TurnDetector(TurnDetectorError::Model { .. }))
    )));
}

#[tokio::test(start_paused = true)]
async fn slow_turn_detector_never_holds_the_turn_beyond_max_delay() {
    let mut d = ScriptedDetector::new(0.0, 0.5);
    d.latency = Duration::from_secs(30);
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["hello"])
            .with_min_silence(ms(100)),
    );
    let options = RecognitionOptions::new(TurnDetectionMode::Vad)
        .with_turn_detector(Arc::new(d))
        .with_endpointing(EndpointingOptions::default().with_max_delay(ms(1500)));
    let (rec, mut events) = start(Some(vad_for(SPEECH_1S)), Some(stt), options);
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1);
    // Timed out at last speech + max_delay, then the min delay (already elapsed) applies.
    assert!(near(turns[0].0, ms(2500), ms(40)), "{:?}", turns[0].0);
    assert!(r.events.iter().any(|(_, e)| matches!(
        e,
        RecognitionEvent::Error(err) if matches!(**err, RecognitionError::TurnDetector(TurnDetectorError::Timeout))
    )));
}

#[tokio::test(start_paused = true)]
async fn speech_resuming_within_the_delay_cancels_the_pending_end_of_turn_behaviour_63() {
    // VAD only: the first pause (300 ms) is shorter than min_delay (500 ms).
    let parts: &[(bool, u64)] = &[(true, 1000), (false, 300), (true, 700), (false, 2000)];
    let (rec, mut events) = start(
        Some(vad_for(parts)),
        None,
        RecognitionOptions::new(TurnDetectionMode::Vad),
    );
    let r = drive(&rec, &mut events, script(parts), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1, "only the second pause ends the turn");
    assert!(near(turns[0].0, ms(2500), ms(40)), "{:?}", turns[0].0);
    assert_eq!(turns[0].1.transcript, "", "no STT, no transcript");
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::UserStartedSpeaking)),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_final_transcripts_are_joined_with_single_spaces_behaviour_64() {
    // The STT finalizes after 100 ms of silence; the VAD pause (300 ms) does not end the turn.
    let parts: &[(bool, u64)] = &[(true, 1000), (false, 300), (true, 700), (false, 2000)];
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["  I would like", "a table for two "])
            .with_min_silence(ms(100)),
    );
    let (rec, mut events) = start(
        Some(vad_for(parts)),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Vad),
    );
    let r = drive(&rec, &mut events, script(parts), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1, "{:?}", r.events);
    assert_eq!(turns[0].1.transcript, "I would like a table for two");
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::FinalTranscript(_))),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn stt_mode_ends_the_turn_on_stt_end_of_speech() {
    let stt = Arc::new(FakeStt::new().with_transcripts(["what is the weather"]));
    let (rec, mut events) = start(
        None,
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Stt),
    );
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1);
    // FakeStt ends speech after 300 ms of silence (1.3 s); the turn ends min_delay after that.
    assert!(near(turns[0].0, ms(1800), ms(40)), "{:?}", turns[0].0);
    assert_eq!(turns[0].1.transcript, "what is the weather");
    // Without a VAD the STT's start/end of speech are the user's.
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::UserStartedSpeaking)),
        1
    );
    assert!(r.count(|e| matches!(e, RecognitionEvent::InterimTranscript(_))) >= 2);
    assert!(r.count(|e| matches!(e, RecognitionEvent::SttUsage(_))) >= 1);
}

#[tokio::test(start_paused = true)]
async fn stt_mode_ignores_vad_end_of_speech() {
    // The VAD ends speech at 1.0 s but the STT waits for 1.5 s of silence.
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["hold on"])
            .with_min_silence(ms(1500)),
    );
    let (rec, mut events) = start(
        Some(vad_for(SPEECH_1S)),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Stt),
    );
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1);
    assert!(near(turns[0].0, ms(3000), ms(40)), "{:?}", turns[0].0);
}

#[tokio::test(start_paused = true)]
async fn manual_mode_commits_only_on_command_behaviour_65() {
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["call me back"])
            .with_min_silence(ms(100)),
    );
    let (rec, mut events) = start(
        Some(vad_for(SPEECH_1S)),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Manual),
    );
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(5000)).await;
    assert!(r.turns().is_empty(), "no automatic end of turn");
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::FinalTranscript(_))),
        1
    );
    let before = Instant::now();
    rec.commit_user_turn().await.unwrap();
    let turn = loop {
        if let RecognitionEvent::EndOfTurn(t) = events.next().await.unwrap() {
            break t;
        }
    };
    assert_eq!(
        before.elapsed(),
        Duration::ZERO,
        "nothing pending: immediate"
    );
    assert!(turn.manual);
    assert_eq!(turn.transcript, "call me back");
    assert_eq!(turn.endpointing_delay, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn manual_commit_mid_utterance_flushes_the_stt_and_waits_for_its_final() {
    let stt = Arc::new(FakeStt::new().with_transcripts(["transfer me to billing"]));
    let (rec, mut events) = start(
        None,
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Manual),
    );
    // Speech still going on: the STT has interims, no final.
    let r = drive(&rec, &mut events, script(&[(true, 800)]), ms(0)).await;
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::FinalTranscript(_))),
        0
    );
    rec.commit_user_turn().await.unwrap();
    let turn = loop {
        match timeout_at(Instant::now() + ms(100), events.next()).await {
            Ok(Some(RecognitionEvent::EndOfTurn(t))) => break t,
            Ok(Some(_)) => {}
            other => panic!("no end of turn: {other:?}"),
        }
    };
    assert!(turn.manual);
    assert_eq!(turn.transcript, "transfer me to billing");
}

#[tokio::test(start_paused = true)]
async fn manual_commit_gives_up_waiting_for_the_stt_after_the_timeout() {
    // An STT that never answers a flush.
    let stt = Arc::new(MuteStt);
    let options =
        RecognitionOptions::new(TurnDetectionMode::Manual).with_manual_commit_timeout(ms(700));
    let (rec, mut events) = start(None, Some(stt), options);
    let r = drive(&rec, &mut events, script(&[(true, 200)]), ms(0)).await;
    assert!(r.turns().is_empty());
    let t0 = Instant::now();
    rec.commit_user_turn().await.unwrap();
    let turn = loop {
        if let RecognitionEvent::EndOfTurn(t) = events.next().await.unwrap() {
            break t;
        }
    };
    assert_eq!(t0.elapsed(), ms(700));
    assert_eq!(turn.transcript, "");
}

#[tokio::test(start_paused = true)]
async fn clear_user_turn_forgets_the_transcript_and_restarts_the_stt() {
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["never mind", "yes please"])
            .with_min_silence(ms(100)),
    );
    let (rec, mut events) = start(
        Some(vad_for(&[
            (true, 1000),
            (false, 1000),
            (true, 500),
            (false, 1000),
        ])),
        Some(stt.clone()),
        RecognitionOptions::new(TurnDetectionMode::Manual),
    );
    let _ = drive(
        &rec,
        &mut events,
        script(&[(true, 1000), (false, 1000)]),
        ms(0),
    )
    .await;
    rec.clear_user_turn().await.unwrap();
    let _ = drive(
        &rec,
        &mut events,
        script(&[(true, 500), (false, 1000)]),
        ms(0),
    )
    .await;
    rec.commit_user_turn().await.unwrap();
    let turn = loop {
        if let RecognitionEvent::EndOfTurn(t) = events.next().await.unwrap() {
            break t;
        }
    };
    assert_eq!(turn.transcript, "yes please");
    assert_eq!(stt.stream_count(), 2, "the STT stream was reopened");
}

#[tokio::test(start_paused = true)]
async fn realtime_llm_mode_never_decides_locally_but_reports_speech_and_transcripts() {
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["hi"])
            .with_min_silence(ms(100)),
    );
    let (rec, mut events) = start(
        Some(vad_for(SPEECH_1S)),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::RealtimeLlm),
    );
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(3000)).await;
    assert!(r.turns().is_empty());
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::UserStartedSpeaking)),
        1
    );
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::FinalTranscript(_))),
        1
    );
    // No transcript buffer grows in this mode (nothing would ever consume it).
    rec.commit_user_turn().await.unwrap();
    let turn = loop {
        if let RecognitionEvent::EndOfTurn(t) = events.next().await.unwrap() {
            break t;
        }
    };
    assert_eq!(turn.transcript, "");
}

#[tokio::test(start_paused = true)]
async fn vad_mode_without_stt_ends_the_turn_with_an_empty_transcript() {
    let (rec, mut events) = start(
        Some(vad_for(SPEECH_1S)),
        None,
        RecognitionOptions::new(TurnDetectionMode::Vad)
            .with_endpointing(EndpointingOptions::livekit_1_0()),
    );
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    let turns = r.turns();
    assert_eq!(turns.len(), 1);
    assert!(near(turns[0].0, ms(1500), ms(40)));
}

#[tokio::test(start_paused = true)]
async fn empty_or_blank_stt_transcript_produces_no_turn_but_is_reported() {
    // A cough: the VAD hears it, the STT transcribes nothing but whitespace.
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["   "])
            .with_min_silence(ms(100)),
    );
    let (rec, mut events) = start(
        Some(vad_for(&[(true, 300), (false, 3000)])),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Vad),
    );
    let r = drive(
        &rec,
        &mut events,
        script(&[(true, 300), (false, 3000)]),
        ms(0),
    )
    .await;
    assert!(r.turns().is_empty());
    assert!(
        r.events
            .iter()
            .any(|(_, e)| matches!(e, RecognitionEvent::FinalTranscript(t) if t.text() == "   "))
    );
}

#[tokio::test(start_paused = true)]
async fn user_becomes_away_after_15_s_of_silence_and_speech_resets_it_behaviour_128() {
    let parts: &[(bool, u64)] = &[(false, 16_000), (true, 500), (false, 500)];
    let (rec, mut events) = AudioRecognition::start(
        Some(vad_for(parts)),
        None,
        RecognitionOptions::new(TurnDetectionMode::Vad),
    )
    .unwrap();
    let r = drive(&rec, &mut events, script(parts), ms(0)).await;
    let changes: Vec<(Duration, UserState, UserState)> = r
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            RecognitionEvent::UserStateChanged(c) => Some((*t, c.old, c.new)),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(changes[0].0, Duration::from_secs(15));
    assert_eq!(
        (changes[0].1, changes[0].2),
        (UserState::Listening, UserState::Away)
    );
    assert_eq!(
        (changes[1].1, changes[1].2),
        (UserState::Away, UserState::Speaking)
    );
    assert_eq!(
        (changes[2].1, changes[2].2),
        (UserState::Speaking, UserState::Listening)
    );
}

#[tokio::test(start_paused = true)]
async fn agent_speech_holds_the_user_away_timer() {
    let (rec, mut events) = AudioRecognition::start(
        Some(vad_for(&[])),
        None,
        RecognitionOptions::new(TurnDetectionMode::Vad),
    )
    .unwrap();
    rec.set_agent_speaking(true).await.unwrap();
    let r = drive(&rec, &mut events, Vec::new(), Duration::from_secs(20)).await;
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::UserStateChanged(_))),
        0
    );
    rec.set_agent_speaking(false).await.unwrap();
    let r = drive(&rec, &mut events, Vec::new(), Duration::from_secs(16)).await;
    let away: Vec<_> = r
        .events
        .iter()
        .filter(
            |(_, e)| matches!(e, RecognitionEvent::UserStateChanged(c) if c.new == UserState::Away),
        )
        .collect();
    assert_eq!(away.len(), 1);
    assert_eq!(away[0].0, Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn a_mode_without_its_component_is_rejected() {
    let err = AudioRecognition::start(None, None, RecognitionOptions::new(TurnDetectionMode::Vad))
        .unwrap_err();
    assert!(matches!(
        err,
        RecognitionError::MissingComponent {
            component: Component::Vad,
            ..
        }
    ));
    let err = AudioRecognition::start(
        Some(vad_for(&[])),
        None,
        RecognitionOptions::new(TurnDetectionMode::Stt),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        RecognitionError::MissingComponent {
            component: Component::Stt,
            ..
        }
    ));
}

#[test]
fn mode_resolution_order_is_realtime_vad_stt_manual_behaviour_115() {
    assert_eq!(
        TurnDetectionMode::resolve(true, true, true),
        TurnDetectionMode::RealtimeLlm
    );
    assert_eq!(
        TurnDetectionMode::resolve(false, true, true),
        TurnDetectionMode::Vad
    );
    assert_eq!(
        TurnDetectionMode::resolve(false, false, true),
        TurnDetectionMode::Stt
    );
    assert_eq!(
        TurnDetectionMode::resolve(false, false, false),
        TurnDetectionMode::Manual
    );
}

#[tokio::test(start_paused = true)]
async fn stt_failure_is_reported_and_vad_turns_keep_working() {
    let (rec, mut events) = start(
        Some(vad_for(SPEECH_1S)),
        Some(Arc::new(FailingStt)),
        RecognitionOptions::new(TurnDetectionMode::Vad),
    );
    let r = drive(&rec, &mut events, script(SPEECH_1S), ms(0)).await;
    assert!(r.events.iter().any(|(_, e)| matches!(
        e,
        RecognitionEvent::Error(err) if matches!(**err, RecognitionError::Stt(SttError::Api(_)))
    )));
    assert_eq!(
        r.count(|e| matches!(e, RecognitionEvent::UserStartedSpeaking)),
        1
    );
    let stats = rec.stats().await.unwrap();
    assert!(stats.frames > 0);
    assert_eq!(stats.vad_frames_dropped, 0);
}

#[tokio::test(start_paused = true)]
async fn aclose_delivers_the_last_events_then_ends_the_stream() {
    let stt = Arc::new(FakeStt::new().with_transcripts(["last words"]));
    let (rec, mut events) = start(
        Some(vad_for(&[(true, 600)])),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Manual),
    );
    let _ = drive(&rec, &mut events, script(&[(true, 600)]), ms(0)).await;
    rec.aclose().await;
    let rest: Vec<RecognitionEvent> = events.collect().await;
    assert!(
        rest.iter()
            .any(|e| matches!(e, RecognitionEvent::FinalTranscript(t) if t.text() == "last words"))
    );
    assert!(
        rest.iter()
            .any(|e| matches!(e, RecognitionEvent::UserStoppedSpeaking { .. }))
    );
}

/// An STT whose stream fails at once.
struct FailingStt;

#[async_trait]
impl Stt for FailingStt {
    fn label(&self) -> &str {
        "failing.STT"
    }
    fn capabilities(&self) -> SttCapabilities {
        let mut c = SttCapabilities::default();
        c.streaming = true;
        c
    }
    async fn recognize(
        &self,
        _audio: &[AudioFrame],
        _options: &RecognizeOptions,
    ) -> Result<agents_core::stt::Transcript, SttError> {
        Err(SttError::Api(ApiError::connection("refused")))
    }
    fn stream(&self, _options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let (stream, driver) = SttStream::channel();
        tokio::spawn(async move {
            let _ = driver
                .send(Err(SttError::Api(ApiError::connection("refused"))))
                .await;
        });
        Ok(stream)
    }
}

/// An STT stream that swallows audio and never answers.
struct MuteStt;

#[async_trait]
impl Stt for MuteStt {
    fn label(&self) -> &str {
        "mute.STT"
    }
    fn capabilities(&self) -> SttCapabilities {
        let mut c = SttCapabilities::default();
        c.streaming = true;
        c
    }
    async fn recognize(
        &self,
        _audio: &[AudioFrame],
        _options: &RecognizeOptions,
    ) -> Result<agents_core::stt::Transcript, SttError> {
        Ok(agents_core::stt::Transcript::default())
    }
    fn stream(&self, _options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let (stream, mut driver) = SttStream::channel();
        tokio::spawn(async move {
            let mut first = true;
            while driver.recv().await.is_some() {
                if first {
                    first = false;
                    let _ = driver
                        .send(Ok(agents_core::stt::SpeechEvent::StartOfSpeech))
                        .await;
                }
            }
        });
        Ok(stream)
    }
}

/// A VAD whose stream never reads its input (a stalled provider).
struct StalledVad {
    drivers: Mutex<Vec<agents_core::vad::VadStreamDriver>>,
}

impl Vad for StalledVad {
    fn label(&self) -> &str {
        "stalled.VAD"
    }
    fn capabilities(&self) -> agents_core::vad::VadCapabilities {
        agents_core::vad::VadCapabilities::new(ms(32))
    }
    fn stream(&self) -> Result<agents_core::vad::VadStream, agents_core::VadError> {
        let (stream, driver) = agents_core::vad::VadStream::with_capacity(4, 4);
        self.drivers.lock().unwrap().push(driver);
        Ok(stream)
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_vad_drops_frames_instead_of_blocking_and_close_still_finishes() {
    let vad = Arc::new(StalledVad {
        drivers: Mutex::new(Vec::new()),
    });
    let stt = Arc::new(FakeStt::new().with_transcripts(["still heard"]));
    let (rec, mut events) = start(
        Some(vad.clone()),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Manual),
    );
    let r = drive(
        &rec,
        &mut events,
        script(&[(true, 600), (false, 400)]),
        ms(0),
    )
    .await;
    // The STT kept working although the VAD took only 4 frames.
    assert!(r.events.iter().any(
        |(_, e)| matches!(e, RecognitionEvent::FinalTranscript(t) if t.text() == "still heard")
    ));
    let stats = rec.stats().await.unwrap();
    assert_eq!(stats.frames, 50);
    assert_eq!(stats.vad_frames_dropped, 46);
    assert_eq!(stats.stt_frames_dropped, 0);
    let t0 = Instant::now();
    rec.aclose().await;
    assert!(
        t0.elapsed() <= Duration::from_secs(2),
        "end of input gives up on the stalled VAD"
    );
    assert_eq!(vad.drivers.lock().unwrap().len(), 1);
}

/// An STT stream that reads its input but never ends, even after the end of input.
struct EndlessStt;

#[async_trait]
impl Stt for EndlessStt {
    fn label(&self) -> &str {
        "endless.STT"
    }
    fn capabilities(&self) -> SttCapabilities {
        let mut c = SttCapabilities::default();
        c.streaming = true;
        c
    }
    async fn recognize(
        &self,
        _audio: &[AudioFrame],
        _options: &RecognizeOptions,
    ) -> Result<agents_core::stt::Transcript, SttError> {
        Ok(agents_core::stt::Transcript::default())
    }
    fn stream(&self, _options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let (stream, mut driver) = SttStream::channel();
        tokio::spawn(async move {
            while driver.recv().await.is_some() {}
            // Input closed; keep the event side open forever.
            std::future::pending::<()>().await;
        });
        Ok(stream)
    }
}

#[tokio::test(start_paused = true)]
async fn aclose_is_bounded_when_a_provider_never_ends_its_stream() {
    let (rec, _events) = start(
        None,
        Some(Arc::new(EndlessStt)),
        RecognitionOptions::new(TurnDetectionMode::Stt),
    );
    let t0 = Instant::now();
    rec.aclose().await;
    assert_eq!(t0.elapsed(), agents_pipeline::recognition::CLOSE_TIMEOUT);
}
