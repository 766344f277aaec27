//! The session's output path on a paused clock: transcript synchronization (livekit-agents-behaviours.md §6.9,
//! behaviours 88 and 126), conversion of speech audio to the output's format, the agent's `stt_node` and
//! `min_consecutive_speech_delay` (behaviour 128).

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::Instant;

use agents_audio::{AudioFrame, ResampleQuality, Resampler, SampleRate};
use agents_core::audio_io::{TextOutput, TextOutputError};
use agents_core::chat::ChatRole;
use agents_core::events::{AgentState, SessionEvent};
use agents_core::session::SayRequest;
use agents_core::stream::EventStream;
use agents_core::stt::{SpeechEvent, SttError};
use agents_core::{Agent, AgentHooks, AudioInput, SessionControl, SessionIo};
use agents_pipeline::interruption::InterruptionOptions;
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::signal::{sequence, tone};
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeStt, FakeTts, FakeVad};

use session_common::{Recorder, ms};

const REPLY: &str = "one two three four five six seven eight nine ten";

/// A text output recording each piece with the audio heard when it arrived.
struct Captions {
    out: Arc<FakeAudioOutput>,
    /// (time, heard audio at that time, text).
    pieces: Mutex<Vec<(Instant, Duration, String)>>,
    flushes: Mutex<usize>,
}

impl Captions {
    fn new(out: Arc<FakeAudioOutput>) -> Arc<Self> {
        Arc::new(Self {
            out,
            pieces: Mutex::new(Vec::new()),
            flushes: Mutex::new(0),
        })
    }

    fn text(&self) -> String {
        self.pieces
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.2.as_str())
            .collect()
    }

    fn pieces(&self) -> Vec<(Instant, Duration, String)> {
        self.pieces.lock().unwrap().clone()
    }
}

#[async_trait]
impl TextOutput for Captions {
    fn label(&self) -> &str {
        "captions"
    }

    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        let heard = self.out.heard_duration();
        self.pieces
            .lock()
            .unwrap()
            .push((Instant::now(), heard, text.to_owned()));
        Ok(())
    }

    fn flush(&self) {
        *self.flushes.lock().unwrap() += 1;
    }
}

struct SyncRig {
    session: AgentSession,
    out: Arc<FakeAudioOutput>,
    captions: Arc<Captions>,
    rec: Recorder,
}

async fn sync_rig(
    llm: FakeLlm,
    tts: FakeTts,
    out: FakeAudioOutput,
    options: SessionOptions,
) -> SyncRig {
    let out = Arc::new(out);
    let captions = Captions::new(out.clone());
    let session = AgentSession::builder()
        .llm(Arc::new(llm))
        .tts(Arc::new(tts))
        .options(options.with_user_away_timeout(None))
        .build();
    let rec = Recorder::start(&session);
    session
        .start(
            Agent::new("x"),
            SessionIo::new()
                .with_audio_output(out.clone())
                .with_text_output(captions.clone()),
        )
        .await
        .unwrap();
    SyncRig {
        session,
        out,
        captions,
        rec,
    }
}

fn assistant_messages(session: &AgentSession) -> Vec<(String, bool)> {
    session
        .history()
        .messages()
        .filter(|m| m.role == ChatRole::Assistant)
        .map(|m| (m.text_content().unwrap_or_default(), m.interrupted))
        .collect()
}

async fn wait_speaking(rec: &Recorder) {
    rec.wait_for(ms(5000), |e| {
        matches!(
            e,
            SessionEvent::AgentStateChanged {
                new: AgentState::Speaking,
                ..
            }
        )
    })
    .await;
}

/// Number of words of the fake TTS (300 ms each, from 0) whose start playback reached at `position`.
fn words_started(position: Duration) -> usize {
    (0..10).filter(|k| ms(300 * k) <= position).count()
}

#[tokio::test(start_paused = true)]
async fn an_interruption_at_1_2_s_commits_exactly_the_words_the_synchronizer_released_behaviour_126()
 {
    let llm = FakeLlm::new().push_response(FakeResponse::text(REPLY));
    let r = sync_rig(
        llm,
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default(),
    )
    .await;
    let h = r.session.generate_reply(Default::default()).unwrap();
    wait_speaking(&r.rec).await;
    tokio::time::sleep(ms(1200)).await;
    r.session.interrupt().await.unwrap();
    assert!(h.wait_for_playout().await);
    let heard = r.out.played_segments().last().unwrap().position;
    let released = r.captions.text();
    let messages = assistant_messages(&r.session);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (committed, interrupted) = &messages[0];
    assert!(interrupted);
    assert_eq!(
        committed,
        released.trim_end(),
        "what the user saw is what the context holds"
    );
    let expected: Vec<&str> = REPLY.split(' ').take(words_started(heard)).collect();
    assert!(
        (4..=5).contains(&expected.len()),
        "about 1.2 s was heard: {heard:?}"
    );
    assert_eq!(committed, &expected.join(" "), "heard {heard:?}");
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn text_is_never_released_ahead_of_the_audio_heard() {
    let llm = FakeLlm::new().push_response(FakeResponse::text(REPLY));
    let r = sync_rig(
        llm,
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default(),
    )
    .await;
    let h = r.session.generate_reply(Default::default()).unwrap();
    assert!(!h.wait_for_playout().await);
    let pieces = r.captions.pieces();
    assert!(pieces.len() >= 9, "released word by word: {pieces:?}");
    let mut released = String::new();
    for (_, heard, piece) in &pieces {
        released.push_str(piece);
        let words = released.split_whitespace().count();
        // The last released word started at 300 ms × (words − 1) in the audio; playback had reached it.
        assert!(
            ms(300 * (words as u64 - 1)) <= *heard,
            "{words} words released with {heard:?} heard"
        );
    }
    assert_eq!(released, REPLY);
    assert_eq!(*r.captions.flushes.lock().unwrap(), 1);
    assert_eq!(
        assistant_messages(&r.session),
        vec![(REPLY.to_owned(), false)]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_sync_off_the_text_is_released_at_once() {
    let llm = FakeLlm::new().push_response(FakeResponse::text(REPLY));
    let r = sync_rig(
        llm,
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default().with_sync_transcription(false),
    )
    .await;
    let h = r.session.generate_reply(Default::default()).unwrap();
    wait_speaking(&r.rec).await;
    tokio::time::sleep(ms(50)).await;
    assert_eq!(
        r.captions.text(),
        REPLY,
        "all of it within 50 ms of playback"
    );
    assert!(r.out.heard_duration() < ms(300));
    tokio::time::sleep(ms(1150)).await;
    r.session.interrupt().await.unwrap();
    assert!(h.wait_for_playout().await);
    // The context still holds only what was heard (estimated from the playback position).
    let messages = assistant_messages(&r.session);
    let heard = r.out.played_segments().last().unwrap().position;
    assert!(messages[0].1);
    assert!(
        REPLY.starts_with(&messages[0].0) && messages[0].0.len() < REPLY.len(),
        "{messages:?} after {heard:?}"
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_text_only_session_releases_the_text_unsynchronized() {
    let text = Arc::new(agents_testkit::FakeTextOutput::new());
    let session = AgentSession::builder()
        .llm(Arc::new(
            FakeLlm::new().push_response(FakeResponse::text(REPLY)),
        ))
        .options(SessionOptions::default().with_user_away_timeout(None))
        .build();
    session
        .start(
            Agent::new("x"),
            SessionIo::new().with_text_output(text.clone()),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let h = session.generate_reply(Default::default()).unwrap();
    assert!(!h.wait_for_playout().await);
    assert!(started.elapsed() < ms(100), "no pacing without audio");
    assert_eq!(text.segments(), vec![REPLY.to_owned()]);
    assert_eq!(
        assistant_messages(&session),
        vec![(REPLY.to_owned(), false)]
    );
    session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn say_with_pre_rendered_audio_paces_its_text_and_is_resampled_to_the_output_rate() {
    let r = sync_rig(
        FakeLlm::new(),
        FakeTts::new(),
        FakeAudioOutput::new().with_sample_rate(Some(SampleRate::HZ_48000)),
        SessionOptions::default(),
    )
    .await;
    // Two seconds of 16 kHz audio for four one-syllable words, pushed as fast as the sink takes it (200 ms ahead):
    // while it streams, words are paced at 3.83 syllables/s (0, 261, 522, 783 ms).
    let audio = tone(ms(2000), SampleRate::HZ_16000);
    let h = r
        .session
        .say(SayRequest::new("one two three four").with_audio(EventStream::from_items(audio)))
        .unwrap();
    wait_speaking(&r.rec).await;
    tokio::time::sleep(ms(700)).await;
    assert_eq!(r.captions.text(), "one two three", "at 0.7 s of 2 s");
    assert!(!h.wait_for_playout().await);
    assert_eq!(r.captions.text(), "one two three four");
    let frames = r.out.captured_frames();
    assert!(
        frames
            .iter()
            .all(|f| f.sample_rate() == SampleRate::HZ_48000)
    );
    let samples: usize = frames.iter().map(AudioFrame::samples_per_channel).sum();
    assert_eq!(samples, 96_000, "2 s at 48 kHz");
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tts_audio_is_resampled_and_remixed_continuously_to_the_output_format() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("one two three"));
    let tts = FakeTts::new(); // 24 kHz mono
    let r = sync_rig(
        llm,
        tts.clone(),
        FakeAudioOutput::new()
            .with_sample_rate(Some(SampleRate::HZ_48000))
            .with_num_channels(2),
        SessionOptions::default(),
    )
    .await;
    let h = r.session.generate_reply(Default::default()).unwrap();
    assert!(!h.wait_for_playout().await);
    assert!(r.rec.count(|e| matches!(e, SessionEvent::Error(_))) == 0);
    let frames = r.out.captured_frames();
    assert!(frames.len() > 10);
    assert!(
        frames
            .iter()
            .all(|f| f.sample_rate() == SampleRate::HZ_48000 && f.num_channels() == 2)
    );
    let joined = AudioFrame::concat(&frames).unwrap();
    // 900 ms of TTS audio, at 48 kHz: nothing lost or added at chunk boundaries.
    assert_eq!(joined.samples_per_channel(), 43_200);
    // Continuity: the chunked conversion equals converting the whole TTS signal at once.
    let source: Vec<AudioFrame> = tts
        .timing()
        .render("one two three", SampleRate::HZ_24000)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    let whole = AudioFrame::concat(&source).unwrap();
    let mut resampler = Resampler::new(
        SampleRate::HZ_24000,
        SampleRate::HZ_48000,
        1,
        ResampleQuality::default(),
    )
    .unwrap();
    let mut reference = Vec::new();
    resampler.push_into(whole.data(), &mut reference).unwrap();
    resampler.flush_into(&mut reference).unwrap();
    assert_eq!(reference.len(), 43_200);
    let left: Vec<i16> = joined.data().chunks_exact(2).map(|c| c[0]).collect();
    let right: Vec<i16> = joined.data().chunks_exact(2).map(|c| c[1]).collect();
    assert_eq!(left, right);
    let worst = left
        .iter()
        .zip(&reference)
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .max()
        .unwrap();
    assert!(
        worst <= 2,
        "largest difference from the whole-signal conversion: {worst}"
    );
    r.session.close().await.unwrap();
}

/// Rewrites "weather" to "forecast" in the STT's transcripts.
struct Rewrite;

impl AgentHooks for Rewrite {
    fn stt_node(
        &self,
        events: EventStream<Result<SpeechEvent, SttError>>,
    ) -> EventStream<Result<SpeechEvent, SttError>> {
        EventStream::new(events.map(|e| match e {
            Ok(SpeechEvent::FinalTranscript(mut t)) => {
                for alt in &mut t.alternatives {
                    alt.text = alt.text.replace("weather", "forecast");
                }
                Ok(SpeechEvent::FinalTranscript(t))
            }
            other => other,
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn an_stt_node_that_rewrites_a_word_changes_the_committed_user_message() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Sunny."));
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["what is the weather"])
            .with_min_silence(ms(100)),
    );
    let parts = [(true, ms(1000)), (false, ms(3000))];
    let vad = Arc::new(FakeVad::scripted(vec![(ms(0), ms(1000))]));
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .tts(Arc::new(FakeTts::new()))
        .vad(vad)
        .stt(stt)
        .options(
            SessionOptions::default()
                .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
                .with_user_away_timeout(None),
        )
        .build();
    let rec = Recorder::start(&session);
    let (tx, input) = AudioInput::channel("user", 64);
    session
        .start(
            Agent::builder("x").hooks(Rewrite).build().unwrap(),
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(Arc::new(FakeAudioOutput::new())),
        )
        .await
        .unwrap();
    let frames = sequence(&parts, SampleRate::HZ_16000);
    tokio::spawn(async move {
        let mut at = Instant::now();
        for f in frames {
            tokio::time::sleep_until(at).await;
            at += f.duration();
            if tx.send(f).await.is_err() {
                return;
            }
        }
    });
    rec.wait_for(ms(5000), |e| {
        matches!(e, SessionEvent::ConversationItemAdded { item }
            if item.as_message().is_some_and(|m| m.role == ChatRole::User))
    })
    .await;
    let user: Vec<String> = session
        .history()
        .messages()
        .filter(|m| m.role == ChatRole::User)
        .map(|m| m.text_content().unwrap_or_default())
        .collect();
    assert_eq!(user, vec!["what is the forecast".to_owned()]);
    session.close().await.unwrap();
}

async fn gap_between_two_says(delay: Duration) -> Duration {
    let r = sync_rig(
        FakeLlm::new(),
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default().with_min_consecutive_speech_delay(delay),
    )
    .await;
    let first = r.session.say(SayRequest::new("one two")).unwrap();
    let second = r.session.say(SayRequest::new("three four")).unwrap();
    assert!(!first.wait_for_playout().await);
    let first_end = Instant::now();
    let second_frames_before = r.out.captured_frames().len();
    // Wait until the second speech captures its first frame.
    while r.out.captured_frames().len() == second_frames_before {
        tokio::time::sleep(ms(1)).await;
    }
    let gap = first_end.elapsed();
    assert!(!second.wait_for_playout().await);
    assert_eq!(r.out.played_segments().len(), 2);
    r.session.close().await.unwrap();
    gap
}

#[tokio::test(start_paused = true)]
async fn min_consecutive_speech_delay_spaces_agent_speeches_behaviour_128() {
    let gap = gap_between_two_says(ms(800)).await;
    assert!(gap >= ms(800) && gap < ms(850), "gap {gap:?}");
    let gap = gap_between_two_says(Duration::ZERO).await;
    assert!(gap < ms(50), "default 0: next speech at once, gap {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_false_interruption_pause_freezes_the_released_text_with_the_audio() {
    // The user makes a noise from 0.5 s to 1.3 s with no transcript: the output pauses, then resumes (false
    // interruption) and the speech plays out.
    let words = "a b c d e f g h i j k l m n o p q r s t";
    let parts = [(false, ms(500)), (true, ms(800)), (false, ms(6000))];
    let out = Arc::new(FakeAudioOutput::new().with_pause(true));
    let captions = Captions::new(out.clone());
    let session = AgentSession::builder()
        .llm(Arc::new(FakeLlm::new()))
        .tts(Arc::new(FakeTts::new()))
        .vad(Arc::new(FakeVad::scripted(vec![(ms(500), ms(1300))])))
        .stt(Arc::new(
            FakeStt::new()
                .with_transcripts([""])
                .with_min_silence(ms(100)),
        ))
        .options(
            SessionOptions::default()
                .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
                .with_user_away_timeout(None)
                // The scripted input ends before the resumed speech does: that must not end the session.
                .with_close_on_input_end(false),
        )
        .build();
    let rec = Recorder::start(&session);
    let (tx, input) = AudioInput::channel("user", 64);
    session
        .start(
            Agent::new("x"),
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(out.clone())
                .with_text_output(captions.clone()),
        )
        .await
        .unwrap();
    let frames = sequence(&parts, SampleRate::HZ_16000);
    tokio::spawn(async move {
        let mut at = Instant::now();
        for f in frames {
            tokio::time::sleep_until(at).await;
            at += f.duration();
            if tx.send(f).await.is_err() {
                return;
            }
        }
    });
    let h = session.say_text(words).unwrap();
    assert!(!h.wait_for_playout().await, "resumed and played out");
    assert_eq!(
        rec.count(|e| matches!(e, SessionEvent::AgentFalseInterruption { resumed: true })),
        1
    );
    let (_, _, pauses, resumes) = out.call_counts();
    assert!(
        pauses >= 1 && resumes >= 1,
        "the output was paused and resumed"
    );
    // Had the text clock run on while the audio was paused, words would have been released ahead of the audio.
    let mut released = String::new();
    for (_, heard, piece) in captions.pieces() {
        released.push_str(&piece);
        let n = released.split_whitespace().count() as u64;
        assert!(
            ms(300 * (n - 1)) <= heard,
            "{n} words released with {heard:?} heard"
        );
    }
    assert_eq!(released, words);
    session.close().await.unwrap();
}
