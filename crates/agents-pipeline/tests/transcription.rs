//! Transcript synchronization on a paused tokio clock: words released at the right virtual times (TTS timings
//! and the speaking-rate estimate), interruption, pause/resume, sync off, text longer or shorter than the audio,
//! and user transcripts per turn.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents_core::audio_io::{AudioOutput, TextOutput, TextOutputError};
use agents_core::tokenize::STANDARD_SPEECH_RATE;
use agents_core::tts::{SynthesizedAudio, TimedText};
use agents_core::{AudioFrame, SampleRate};
use agents_pipeline::transcription::{
    TranscriptSynchronizer, TranscriptionOptions, UserTranscripts,
};
use agents_testkit::signal::silence;
use agents_testkit::{FakeAudioOutput, FakeTextOutput};
use async_trait::async_trait;
use tokio::time::Instant;

const RATE: SampleRate = SampleRate::HZ_16000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A text output recording when each piece of text and each flush arrived.
struct Recorder {
    t0: Instant,
    log: Mutex<Vec<(Duration, Option<String>)>>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            log: Mutex::new(Vec::new()),
        })
    }

    /// Text pieces with their times.
    fn texts(&self) -> Vec<(Duration, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(t, s)| s.clone().map(|s| (*t, s)))
            .collect()
    }

    /// Times of the flushes.
    fn flushes(&self) -> Vec<Duration> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(t, _)| *t)
            .collect()
    }

    fn all_text(&self) -> String {
        self.texts().into_iter().map(|(_, s)| s).collect()
    }
}

#[async_trait]
impl TextOutput for Recorder {
    fn label(&self) -> &str {
        "recorder"
    }
    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        self.log
            .lock()
            .unwrap()
            .push((self.t0.elapsed(), Some(text.to_owned())));
        Ok(())
    }
    fn flush(&self) {
        self.log.lock().unwrap().push((self.t0.elapsed(), None));
    }
}

/// Asserts that `got` is within 1 ms of `want`.
#[track_caller]
fn assert_near(got: Duration, want: Duration) {
    let diff = got.abs_diff(want);
    assert!(diff <= ms(1), "released at {got:?}, expected {want:?}");
}

struct Rig {
    audio: Arc<FakeAudioOutput>,
    text: Arc<Recorder>,
    sync: Arc<TranscriptSynchronizer>,
}

fn rig(audio: FakeAudioOutput, options: TranscriptionOptions) -> Rig {
    let audio = Arc::new(audio);
    let text = Recorder::new();
    let sync = Arc::new(TranscriptSynchronizer::new(
        audio.clone(),
        text.clone(),
        options,
    ));
    Rig { audio, text, sync }
}

/// Pushes `duration` of audio (20 ms frames) from a task, then flushes the audio side.
fn push_audio(
    sync: &Arc<TranscriptSynchronizer>,
    duration: Duration,
) -> tokio::task::JoinHandle<()> {
    let sync = sync.clone();
    tokio::spawn(async move {
        for f in silence(duration, RATE) {
            sync.capture_frame(f).await.unwrap();
        }
        AudioOutput::flush(&*sync);
    })
}

const SIX: &str = "one two three four five six";
const TEN: &str = "one two three four five six seven eight nine ten";

#[tokio::test(start_paused = true)]
async fn words_follow_the_rate_reestimated_from_the_audio_pushed() {
    // All 3 s of audio are pushed at once, so the rate is re-estimated: 6 syllables over 3 s = 2 per second.
    let r = rig(
        FakeAudioOutput::new().with_max_buffer(Duration::from_secs(60)),
        TranscriptionOptions::new(),
    );
    r.sync.capture_text(SIX).await.unwrap();
    TextOutput::flush(&*r.sync);
    push_audio(&r.sync, Duration::from_secs(3)).await.unwrap();
    let finished = r.sync.wait_for_playout().await.unwrap();
    assert!(!finished.interrupted);
    assert_eq!(finished.playback_position, Duration::from_secs(3));

    let texts = r.text.texts();
    let words: Vec<&str> = texts.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(words, ["one", " two", " three", " four", " five", " six"]);
    for (i, (t, _)) in texts.iter().enumerate() {
        assert_near(*t, ms(500) * i as u32);
    }
    // The segment ends when its audio has played out.
    assert_eq!(r.text.flushes(), [Duration::from_secs(3)]);
    assert_eq!(r.sync.played_text(), SIX);
}

#[tokio::test(start_paused = true)]
async fn words_follow_the_standard_rate_while_audio_streams() {
    // Audio arrives in real time (200 ms buffer), so until it is all in the standard rate applies.
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    r.sync.capture_text(SIX).await.unwrap();
    TextOutput::flush(&*r.sync);
    push_audio(&r.sync, Duration::from_secs(5)).await.unwrap();
    r.sync.wait_for_playout().await.unwrap();
    let per_word = Duration::from_secs_f64(1.0 / STANDARD_SPEECH_RATE);
    let texts = r.text.texts();
    assert_eq!(texts.len(), 6, "{texts:?}");
    for (i, (t, _)) in texts.iter().enumerate() {
        assert_near(*t, per_word * i as u32);
    }
    assert_eq!(r.text.all_text(), SIX);
}

#[tokio::test(start_paused = true)]
async fn speed_scales_the_rate() {
    let r = rig(
        FakeAudioOutput::new(),
        TranscriptionOptions::new().with_speed(2.0),
    );
    r.sync.capture_text(SIX).await.unwrap();
    TextOutput::flush(&*r.sync);
    push_audio(&r.sync, Duration::from_secs(5)).await.unwrap();
    r.sync.wait_for_playout().await.unwrap();
    let per_word = Duration::from_secs_f64(1.0 / (STANDARD_SPEECH_RATE * 2.0));
    for (i, (t, _)) in r.text.texts().iter().enumerate() {
        assert_near(*t, per_word * i as u32);
    }
}

#[tokio::test(start_paused = true)]
async fn text_never_runs_ahead_of_the_audio_pushed() {
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    r.sync.capture_text(SIX).await.unwrap();
    TextOutput::flush(&*r.sync);
    // 600 ms of audio, a stall until 2.5 s, then the rest.
    let sync = r.sync.clone();
    let resume_at = Instant::now() + ms(2500);
    let producer = tokio::spawn(async move {
        for f in silence(ms(600), RATE) {
            sync.capture_frame(f).await.unwrap();
        }
        tokio::time::sleep_until(resume_at).await;
        for f in silence(Duration::from_secs(2), RATE) {
            sync.capture_frame(f).await.unwrap();
        }
        AudioOutput::flush(&*sync);
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Words starting at 0, 0.26 and 0.52 s are covered by the 600 ms pushed; the fourth (0.78 s) is not.
    assert_eq!(r.text.all_text(), "one two three");
    producer.await.unwrap();
    r.sync.wait_for_playout().await.unwrap();
    let texts = r.text.texts();
    // The fourth word waits for the audio that covers it.
    assert!(texts[3].0 >= ms(2500), "fourth word at {:?}", texts[3].0);
    assert_eq!(r.text.all_text(), SIX);
}

/// A reply of ten words, 250 ms each, as a TTS chunk stream with word timings (one 20 ms frame per chunk, each
/// carrying the words starting in it).
fn timed_chunks(text: &str, segment_id: &str) -> Vec<SynthesizedAudio> {
    let words: Vec<&str> = text.split(' ').collect();
    let total = ms(250) * words.len() as u32;
    let mut out = Vec::new();
    for (i, f) in silence(total, RATE).into_iter().enumerate() {
        let start = ms(20) * i as u32;
        let timed: Vec<TimedText> = words
            .iter()
            .enumerate()
            .map(|(k, w)| (ms(250) * k as u32, *w))
            .filter(|(t, _)| *t >= start && *t < start + ms(20))
            .map(|(t, w)| TimedText::new(w, t, t + ms(250)))
            .collect();
        out.push(SynthesizedAudio::new("req", segment_id, f).with_timed_text(timed));
    }
    out
}

async fn push_chunks(sync: &TranscriptSynchronizer, chunks: &[SynthesizedAudio]) {
    for c in chunks {
        sync.capture_synthesized(c).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn words_are_released_at_their_tts_timings() {
    // Timings (250 ms per word) differ from the estimate (about 261 ms per one-syllable word), and the reply is
    // made of two TTS segments whose timings each start at zero.
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    r.sync.capture_text(TEN).await.unwrap();
    TextOutput::flush(&*r.sync);
    let sync = r.sync.clone();
    let producer = tokio::spawn(async move {
        push_chunks(&sync, &timed_chunks("one two three four five", "s1")).await;
        push_chunks(&sync, &timed_chunks("six seven eight nine ten", "s2")).await;
        AudioOutput::flush(&*sync);
    });
    producer.await.unwrap();
    let finished = r.sync.wait_for_playout().await.unwrap();
    assert!(!finished.interrupted);
    let texts = r.text.texts();
    assert_eq!(texts.len(), 10, "{texts:?}");
    for (i, (t, _)) in texts.iter().enumerate() {
        assert_near(*t, ms(250) * i as u32);
    }
    assert_eq!(r.text.all_text(), TEN);
}

#[tokio::test(start_paused = true)]
async fn interruption_with_timings_keeps_exactly_the_played_words() {
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    r.sync.capture_text(TEN).await.unwrap();
    TextOutput::flush(&*r.sync);
    let sync = r.sync.clone();
    let producer = tokio::spawn(async move {
        push_chunks(&sync, &timed_chunks(TEN, "s1")).await;
    });
    tokio::time::sleep(ms(1200)).await;
    producer.abort();
    r.sync.clear_buffer();
    let finished = r.sync.wait_for_playout().await.unwrap();
    assert!(finished.interrupted);
    assert_eq!(finished.playback_position, ms(1200));
    // Words start at 0, 0.25, 0.5, 0.75 and 1.0 s: five were reached by 1.2 s.
    assert_eq!(r.sync.played_text(), "one two three four five");
    assert_eq!(r.text.all_text(), "one two three four five");
    assert_eq!(r.text.flushes().len(), 1);
    // Nothing more is released afterwards.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(r.text.all_text(), "one two three four five");
}

#[tokio::test(start_paused = true)]
async fn interruption_with_the_estimate_keeps_exactly_the_played_words() {
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    r.sync.capture_text(TEN).await.unwrap();
    TextOutput::flush(&*r.sync);
    let producer = push_audio(&r.sync, Duration::from_secs(10));
    tokio::time::sleep(ms(1200)).await;
    producer.abort();
    r.sync.clear_buffer();
    let finished = r.sync.wait_for_playout().await.unwrap();
    assert!(finished.interrupted);
    assert_eq!(finished.playback_position, ms(1200));
    // At 3.83 syllables/s the fifth word starts at 1.044 s and the sixth at 1.305 s.
    assert_eq!(r.sync.played_text(), "one two three four five");
    assert_eq!(r.text.all_text(), "one two three four five");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(r.text.all_text(), "one two three four five");
}

#[tokio::test(start_paused = true)]
async fn played_text_grows_while_playing() {
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    assert_eq!(r.sync.played_text(), "");
    r.sync.capture_text(TEN).await.unwrap();
    let _producer = push_audio(&r.sync, Duration::from_secs(10));
    tokio::time::sleep(ms(600)).await;
    assert_eq!(r.sync.played_text(), "one two three");
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume_freeze_the_text_clock() {
    // 2 syllables per second (6 words over 3 s): words at 0, 0.5, 1.0 ... s of playback.
    let r = rig(
        FakeAudioOutput::new()
            .with_pause(true)
            .with_max_buffer(Duration::from_secs(60)),
        TranscriptionOptions::new(),
    );
    r.sync.capture_text(SIX).await.unwrap();
    TextOutput::flush(&*r.sync);
    push_audio(&r.sync, Duration::from_secs(3)).await.unwrap();
    tokio::time::sleep(ms(700)).await;
    r.sync.pause();
    assert!(r.audio.is_paused());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.text.all_text(), "one two");
    r.sync.resume();
    let finished = r.sync.wait_for_playout().await.unwrap();
    assert!(!finished.interrupted);
    let times: Vec<Duration> = r.text.texts().into_iter().map(|(t, _)| t).collect();
    // Paused from 0.7 s to 2.7 s: the third word (1.0 s of playback) comes at 3.0 s.
    let want = [0, 500, 3000, 3500, 4000, 4500];
    assert_eq!(times.len(), want.len());
    for (t, w) in times.iter().zip(want) {
        assert_near(*t, ms(w));
    }
    assert_eq!(r.text.flushes(), [Duration::from_secs(5)]);
}

#[tokio::test(start_paused = true)]
async fn pause_on_an_output_that_cannot_pause_does_not_stop_the_text() {
    let r = rig(
        FakeAudioOutput::new().with_max_buffer(Duration::from_secs(60)),
        TranscriptionOptions::new(),
    );
    r.sync.capture_text(SIX).await.unwrap();
    TextOutput::flush(&*r.sync);
    push_audio(&r.sync, Duration::from_secs(3)).await.unwrap();
    tokio::time::sleep(ms(700)).await;
    r.sync.pause();
    r.sync.wait_for_playout().await.unwrap();
    assert_near(r.text.texts()[2].0, ms(1000));
}

#[tokio::test(start_paused = true)]
async fn sync_off_forwards_text_at_once() {
    let audio = Arc::new(FakeAudioOutput::new());
    let text = Arc::new(FakeTextOutput::new());
    let sync = Arc::new(TranscriptSynchronizer::new(
        audio.clone(),
        text.clone(),
        TranscriptionOptions::new().with_sync_transcription(false),
    ));
    sync.capture_text("one two ").await.unwrap();
    // No audio yet: the text is out anyway.
    assert_eq!(text.current().as_deref(), Some("one two "));
    sync.capture_text("three four five six seven eight nine ten")
        .await
        .unwrap();
    TextOutput::flush(&*sync);
    assert_eq!(text.segments(), [TEN]);
    let producer = push_audio(&sync, Duration::from_secs(10));
    tokio::time::sleep(ms(1200)).await;
    producer.abort();
    sync.clear_buffer();
    let finished = sync.wait_for_playout().await.unwrap();
    assert!(finished.interrupted);
    // The played text is still estimated (words whose middle was heard at 3.83 syllables/s).
    assert_eq!(sync.played_text(), "one two three four five");
}

#[tokio::test(start_paused = true)]
async fn text_longer_than_audio_is_flushed_when_playout_ends() {
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    // Twenty words still streaming (text not flushed) would take 5.2 s at the standard rate; the audio is 1 s.
    let long = (1..=20).map(|_| "word").collect::<Vec<_>>().join(" ");
    r.sync.capture_text(&long).await.unwrap();
    r.sync.capture_text(" ").await.unwrap();
    push_audio(&r.sync, Duration::from_secs(1)).await.unwrap();
    let finished = r.sync.wait_for_playout().await.unwrap();
    assert!(!finished.interrupted);
    assert_eq!(r.text.all_text(), format!("{long} "));
    assert_eq!(r.text.flushes(), [Duration::from_secs(1)]);
    assert_eq!(r.sync.played_text(), format!("{long} "));
    // The late text flush changes nothing.
    TextOutput::flush(&*r.sync);
    tokio::time::sleep(ms(100)).await;
    assert_eq!(r.text.flushes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn audio_longer_than_text_spreads_the_words_and_ends_with_the_audio() {
    let r = rig(
        FakeAudioOutput::new().with_max_buffer(Duration::from_secs(60)),
        TranscriptionOptions::new(),
    );
    r.sync.capture_text("hi there.").await.unwrap();
    TextOutput::flush(&*r.sync);
    push_audio(&r.sync, Duration::from_secs(5)).await.unwrap();
    r.sync.wait_for_playout().await.unwrap();
    let texts = r.text.texts();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_near(texts[0].0, ms(0));
    assert_near(texts[1].0, ms(2500));
    assert_eq!(r.text.all_text(), "hi there.");
    assert_eq!(r.text.flushes(), [Duration::from_secs(5)]);
}

#[tokio::test(start_paused = true)]
async fn segments_follow_one_another() {
    let r = rig(
        FakeAudioOutput::new().with_max_buffer(Duration::from_secs(60)),
        TranscriptionOptions::new(),
    );
    for (text, secs) in [("first reply.", 1), ("second one.", 2)] {
        r.sync.capture_text(text).await.unwrap();
        TextOutput::flush(&*r.sync);
        push_audio(&r.sync, Duration::from_secs(secs))
            .await
            .unwrap();
    }
    let last = r.sync.wait_for_playout().await.unwrap();
    assert_eq!(last.segment, 2);
    assert_eq!(r.text.all_text(), "first reply.second one.");
    assert_eq!(
        r.text.flushes(),
        [Duration::from_secs(1), Duration::from_secs(3)]
    );
    assert_eq!(r.sync.played_text(), "second one.");
    assert_eq!(r.audio.played_segments().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_segment_without_audio_releases_its_text_at_once() {
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    r.sync.capture_text("no audio here").await.unwrap();
    AudioOutput::flush(&*r.sync);
    TextOutput::flush(&*r.sync);
    tokio::time::sleep(ms(1)).await;
    assert_eq!(r.text.all_text(), "no audio here");
    assert_eq!(r.text.flushes().len(), 1);
    assert_eq!(r.sync.played_text(), "no audio here");
    assert_eq!(r.sync.wait_for_playout().await, None);
}

struct ClosedText;

#[async_trait]
impl TextOutput for ClosedText {
    fn label(&self) -> &str {
        "closed"
    }
    async fn capture_text(&self, _: &str) -> Result<(), TextOutputError> {
        Err(TextOutputError::Closed)
    }
    fn flush(&self) {}
}

#[tokio::test(start_paused = true)]
async fn a_closed_text_output_is_reported_and_audio_still_plays() {
    let audio = Arc::new(FakeAudioOutput::new());
    let sync = Arc::new(TranscriptSynchronizer::new(
        audio.clone(),
        Arc::new(ClosedText),
        TranscriptionOptions::new(),
    ));
    sync.capture_text("hello there").await.unwrap();
    TextOutput::flush(&*sync);
    push_audio(&sync, ms(500)).await.unwrap();
    let finished = sync.wait_for_playout().await.unwrap();
    assert!(!finished.interrupted);
    assert_eq!(audio.heard_duration(), ms(500));
    assert_eq!(
        sync.capture_text("more").await,
        Err(TextOutputError::Closed)
    );
}

#[tokio::test]
async fn frames_are_forwarded_unchanged() {
    let audio = Arc::new(FakeAudioOutput::new().with_sample_rate(Some(RATE)));
    let sync = TranscriptSynchronizer::new(
        audio.clone(),
        Arc::new(FakeTextOutput::new()),
        TranscriptionOptions::new(),
    );
    assert_eq!(sync.sample_rate(), Some(RATE));
    let frame = AudioFrame::new(vec![1, 2, 3], RATE, 1).unwrap();
    sync.capture_frame(frame.clone()).await.unwrap();
    assert_eq!(audio.captured_frames(), [frame]);
    // The wrapped output's errors come through.
    let wrong = AudioFrame::new(vec![0; 10], SampleRate::HZ_8000, 1).unwrap();
    assert!(sync.capture_frame(wrong).await.is_err());
}

#[tokio::test]
async fn user_transcripts_keep_one_segment_per_turn() {
    let out = Arc::new(FakeTextOutput::new());
    let mut user = UserTranscripts::new(Some(out.clone()));
    let a = user.interim("hel");
    assert_eq!(
        (a.segment_id.as_str(), a.text.as_str(), a.is_final),
        ("user_turn_1", "hel", false)
    );
    let b = user.final_transcript("Hello.").await.unwrap();
    assert_eq!(
        (b.segment_id.as_str(), b.text.as_str(), b.is_final),
        ("user_turn_1", "Hello.", true)
    );
    let c = user.interim("how are");
    assert_eq!(
        (c.segment_id.as_str(), c.text.as_str()),
        ("user_turn_1", "Hello. how are")
    );
    let d = user.final_transcript(" How are you? ").await.unwrap();
    assert_eq!(d.text, "Hello. How are you?");
    // Interim text never reaches the append-only output.
    assert_eq!(out.current().as_deref(), Some("Hello. How are you?"));
    let end = user.end_turn().unwrap();
    assert_eq!(
        (end.segment_id.as_str(), end.text.as_str()),
        ("user_turn_1", "Hello. How are you?")
    );
    assert_eq!(out.segments(), ["Hello. How are you?"]);
    assert_eq!(user.end_turn(), None);
    assert_eq!(user.segment_id(), "user_turn_2");
    let e = user.interim("bye");
    assert_eq!(e.segment_id, "user_turn_2");
    let f = user.final_transcript("  ").await.unwrap();
    assert_eq!((f.text.as_str(), f.is_final), ("", true));
}

struct StalledText;

#[async_trait]
impl TextOutput for StalledText {
    fn label(&self) -> &str {
        "stalled"
    }
    async fn capture_text(&self, _: &str) -> Result<(), TextOutputError> {
        std::future::pending().await
    }
    fn flush(&self) {}
}

#[tokio::test(start_paused = true)]
async fn a_stalled_text_output_cannot_hold_back_the_playout_report() {
    let audio = Arc::new(FakeAudioOutput::new());
    let sync = Arc::new(TranscriptSynchronizer::new(
        audio.clone(),
        Arc::new(StalledText),
        TranscriptionOptions::new(),
    ));
    sync.capture_text("hello there").await.unwrap();
    TextOutput::flush(&*sync);
    push_audio(&sync, ms(500)).await.unwrap();
    let finished = sync.wait_for_playout().await.unwrap();
    assert!(!finished.interrupted);
    assert_eq!(
        sync.capture_text("more").await,
        Err(TextOutputError::Closed)
    );
}

#[tokio::test(start_paused = true)]
async fn words_without_timings_are_paced_over_the_audio_after_the_last_timing() {
    let r = rig(
        FakeAudioOutput::new().with_max_buffer(Duration::from_secs(60)),
        TranscriptionOptions::new(),
    );
    r.sync.capture_text(SIX).await.unwrap();
    TextOutput::flush(&*r.sync);
    // The TTS aligned only the first three words; the last ends at 0.6 s.
    r.sync.push_timings([
        TimedText::new("one", ms(0), ms(200)),
        TimedText::new("two", ms(200), ms(400)),
        TimedText::new("three", ms(400), ms(600)),
    ]);
    push_audio(&r.sync, Duration::from_secs(3)).await.unwrap();
    r.sync.wait_for_playout().await.unwrap();
    // The other three syllables share the 2.4 s left: 1.25 syllables/s from 0.6 s.
    let times: Vec<Duration> = r.text.texts().into_iter().map(|(t, _)| t).collect();
    let want = [0, 200, 400, 600, 1400, 2200];
    assert_eq!(times.len(), want.len(), "{times:?}");
    for (t, w) in times.iter().zip(want) {
        assert_near(*t, ms(w));
    }
    assert_eq!(r.text.all_text(), SIX);
}

#[tokio::test(start_paused = true)]
async fn tts_segment_offsets_start_at_its_first_chunk_even_without_timings() {
    let r = rig(FakeAudioOutput::new(), TranscriptionOptions::new());
    r.sync.capture_text("one two").await.unwrap();
    TextOutput::flush(&*r.sync);
    let frames = silence(ms(540), RATE);
    let mut chunks = Vec::new();
    for (i, f) in frames.into_iter().enumerate() {
        // "one" opens TTS segment s1 (500 ms); s2 starts with a chunk without timings, "two" starts 20 ms into s2.
        let (id, timed) = match i {
            0 => ("s1", vec![TimedText::new("one", ms(0), ms(400))]),
            1..25 => ("s1", vec![]),
            25 => ("s2", vec![]),
            _ => ("s2", vec![TimedText::new("two", ms(20), ms(40))]),
        };
        let timed = if i > 26 { vec![] } else { timed };
        chunks.push(SynthesizedAudio::new("req", id, f).with_timed_text(timed));
    }
    push_chunks(&r.sync, &chunks).await;
    AudioOutput::flush(&*r.sync);
    r.sync.wait_for_playout().await.unwrap();
    let texts = r.text.texts();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_near(texts[1].0, ms(520));
}
