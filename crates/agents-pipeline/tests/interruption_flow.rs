//! The interruption policy driven by real recognition events (scripted FakeVad + FakeStt, paused clock), wired
//! the way the session will wire it: VAD progress and transcripts feed the policy, the policy's deadline is slept
//! on, and committed turns get a verdict.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep_until, timeout_at};

use agents_audio::{AudioFrame, SampleRate};
use agents_pipeline::interruption::{
    BackchannelFilter, InterruptionDecision, InterruptionOptions, InterruptionPolicy,
};
use agents_pipeline::recognition::{
    AudioRecognition, RecognitionEvent, RecognitionOptions, TurnDetectionMode,
};
use agents_testkit::signal::sequence;
use agents_testkit::{FakeStt, FakeVad};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// What the session saw: decisions (with their time) and committed turns with their verdict.
#[derive(Debug, Default)]
struct Outcome {
    decisions: Vec<(Duration, InterruptionDecision)>,
    turns: Vec<(String, bool)>,
}

/// The agent is speaking (pausable output) from t = 0; the user produces `parts` of audio (`true` = tone) and the
/// STT hears `transcripts`.
async fn scenario(
    parts: &[(bool, u64)],
    transcripts: &[&str],
    options: InterruptionOptions,
) -> Outcome {
    let mut t = 0;
    let mut speech = Vec::new();
    for &(s, d) in parts {
        if s {
            speech.push((ms(t), ms(t + d)));
        }
        t += d;
    }
    let vad = Arc::new(FakeVad::scripted(speech));
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(transcripts.iter().copied())
            .with_min_silence(ms(100)),
    );
    let (rec, mut events) = AudioRecognition::start(
        Some(vad),
        Some(stt),
        RecognitionOptions::new(TurnDetectionMode::Vad).with_user_away_timeout(None),
    )
    .unwrap();
    let t0 = Instant::now();
    let mut policy = InterruptionPolicy::new(options);
    policy.agent_speech_started(t0, true, true);
    rec.set_agent_speaking(true).await.unwrap();

    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    let frames: Vec<AudioFrame> = sequence(&parts, SampleRate::HZ_16000);
    let end = t0 + frames.iter().map(AudioFrame::duration).sum::<Duration>() + ms(3000);
    let mut frames = frames.into_iter();
    let mut next_push = t0;
    let mut out = Outcome::default();
    let record = |out: &mut Outcome, d: InterruptionDecision| {
        if !matches!(d, InterruptionDecision::None(_)) {
            out.decisions.push((t0.elapsed(), d));
        }
    };
    while Instant::now() < end {
        let wake = [Some(next_push), policy.deadline(), Some(end)]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        tokio::select! {
            ev = timeout_at(wake, events.next()) => match ev {
                Ok(Some(ev)) => {
                    let now = Instant::now();
                    match ev {
                        RecognitionEvent::UserStartedSpeaking => policy.user_speech_started(),
                        RecognitionEvent::UserStoppedSpeaking { .. } => policy.user_speech_ended(now),
                        RecognitionEvent::VadInference(p) if p.speaking => {
                            let d = policy.vad_inference(now, p.speech_duration);
                            record(&mut out, d);
                        }
                        RecognitionEvent::InterimTranscript(t) => {
                            let d = policy.transcript(now, t.text(), false);
                            record(&mut out, d);
                        }
                        RecognitionEvent::FinalTranscript(t) => {
                            let d = policy.transcript(now, t.text(), true);
                            record(&mut out, d);
                        }
                        RecognitionEvent::EndOfTurn(turn) => {
                            let v = policy.user_turn_completed(now, &turn.transcript);
                            record(&mut out, v.decision);
                            out.turns.push((turn.transcript, v.reply));
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let now = Instant::now();
                    if policy.deadline().is_some_and(|d| d <= now) {
                        let d = policy.poll(now);
                        record(&mut out, d);
                    }
                    if now >= next_push {
                        match frames.next() {
                            Some(f) => {
                                next_push += f.duration();
                                rec.push_frame(f).await.unwrap();
                            }
                            None => next_push = end,
                        }
                    }
                }
            },
            () = sleep_until(end) => break,
        }
    }
    out
}

fn no_warmup() -> InterruptionOptions {
    InterruptionOptions::default().with_aec_warmup_duration(None)
}

#[tokio::test(start_paused = true)]
async fn a_0_3_s_cough_during_agent_speech_does_not_interrupt() {
    let out = scenario(&[(true, 300), (false, 3000)], &[""], no_warmup()).await;
    assert!(out.decisions.is_empty(), "{out:?}");
    assert!(out.turns.is_empty(), "an empty transcript is no turn");
}

#[tokio::test(start_paused = true)]
async fn false_interruption_pauses_then_resumes_2_s_after_the_user_stops_behaviour_117() {
    // 0.8 s of noise the STT does not transcribe: the agent pauses, no turn follows, playout resumes.
    let out = scenario(&[(true, 800), (false, 4000)], &[""], no_warmup()).await;
    assert_eq!(out.decisions.len(), 2, "{out:?}");
    let (paused_at, first) = out.decisions[0];
    assert_eq!(first, InterruptionDecision::Pause);
    // Strictly more than 0.5 s of speech (the frame carrying the 16th 32 ms window is pushed at 0.5 s).
    assert!(paused_at >= ms(500) && paused_at < ms(600), "{paused_at:?}");
    let (resumed_at, second) = out.decisions[1];
    assert_eq!(second, InterruptionDecision::Resume);
    // VAD end of speech lands at ~0.82 s; the resume 2.0 s after it.
    assert!(
        resumed_at >= ms(2800) && resumed_at <= ms(2860),
        "{resumed_at:?}"
    );
    assert!(out.turns.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_real_user_turn_after_the_pause_interrupts_and_gets_a_reply() {
    let out = scenario(
        &[(true, 1000), (false, 4000)],
        &["wait what about tomorrow"],
        no_warmup(),
    )
    .await;
    let kinds: Vec<InterruptionDecision> = out.decisions.iter().map(|d| d.1).collect();
    assert_eq!(
        kinds,
        [InterruptionDecision::Pause, InterruptionDecision::Interrupt],
        "{out:?}"
    );
    assert_eq!(out.turns, [("wait what about tomorrow".to_owned(), true)]);
}

#[tokio::test(start_paused = true)]
async fn a_backchannel_neither_interrupts_nor_takes_the_turn() {
    // The STT's interim ("mhmm") arrives before the VAD passes 0.5 s, so the audio never pauses the agent.
    let options = no_warmup().with_backchannel(Some(BackchannelFilter::default()));
    let out = scenario(&[(true, 700), (false, 4000)], &["mhmm yeah"], options).await;
    assert!(out.decisions.is_empty(), "{out:?}");
    assert_eq!(out.turns, [("mhmm yeah".to_owned(), false)]);
}

#[tokio::test(start_paused = true)]
async fn without_the_backchannel_filter_the_same_mhmm_interrupts() {
    let out = scenario(&[(true, 700), (false, 4000)], &["mhmm yeah"], no_warmup()).await;
    let kinds: Vec<InterruptionDecision> = out.decisions.iter().map(|d| d.1).collect();
    assert_eq!(
        kinds,
        [InterruptionDecision::Pause, InterruptionDecision::Interrupt],
        "{out:?}"
    );
    assert_eq!(out.turns, [("mhmm yeah".to_owned(), true)]);
}

#[tokio::test(start_paused = true)]
async fn two_words_below_min_words_neither_interrupt_nor_take_the_turn() {
    let options = no_warmup().with_min_words(3);
    let out = scenario(&[(true, 900), (false, 4000)], &["sure thing"], options).await;
    assert!(out.decisions.is_empty(), "{out:?}");
    assert_eq!(out.turns, [("sure thing".to_owned(), false)]);
}
