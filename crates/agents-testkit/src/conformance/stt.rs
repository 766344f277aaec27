//! STT conformance: recognize a buffer; streams deliver interim then final transcripts, `flush` finalizes and keeps
//! the stream open, `end_input` delivers the last final and ends the stream.
//!
//! The audio is the harness's speech signal (by default the test tone of [`crate::signal`]) between stretches of
//! digital silence, pushed as fast as the stream accepts it.

use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::stt::{RecognizeOptions, SpeechEvent, Stt, SttStream};
use async_trait::async_trait;
use futures::StreamExt;

use super::{must, within};
use crate::signal;

/// What a plugin provides to run the STT suite.
#[async_trait]
pub trait SttHarness: Send + Sync {
    /// The STT under test (wired to the emulator).
    fn stt(&self) -> Arc<dyn Stt>;
    /// Scripts the transcript of the next utterance (or `recognize` call).
    async fn script_transcript(&self, text: &str);
    /// Rate of the audio the checks send.
    fn sample_rate(&self) -> SampleRate {
        SampleRate::HZ_16000
    }
    /// `duration` of speech the provider hears as speech (default: the test tone).
    fn speech(&self, duration: Duration) -> Vec<AudioFrame> {
        signal::tone(duration, self.sample_rate())
    }
}

/// Runs every STT check (stream checks only when the STT streams).
pub async fn run_all<H: SttHarness + ?Sized>(h: &H) {
    check_recognize(h).await;
    if h.stt().capabilities().streaming {
        check_stream_interim_then_final(h).await;
        check_end_input_delivers_final(h).await;
        check_flush_finalizes_and_continues(h).await;
    }
}

fn normalized(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn push_all(stream: &SttStream, frames: Vec<AudioFrame>, what: &str) {
    for f in frames {
        must(within(what, stream.push_frame(f)).await, what);
    }
}

/// `recognize` returns the scripted text for a buffer of speech.
pub async fn check_recognize<H: SttHarness + ?Sized>(h: &H) {
    h.script_transcript("hello world").await;
    let mut audio = signal::silence(Duration::from_millis(200), h.sample_rate());
    audio.extend(h.speech(Duration::from_secs(1)));
    audio.extend(signal::silence(Duration::from_millis(200), h.sample_rate()));
    let stt = h.stt();
    let t = must(
        within(
            "stt recognize",
            stt.recognize(&audio, &RecognizeOptions::default()),
        )
        .await,
        "stt recognize: failed",
    );
    assert_eq!(normalized(t.text()), "hello world", "stt recognize: text");
}

/// Reads events until the stream ends; panics on errors.
async fn drain(stream: &mut SttStream, what: &str) -> Vec<SpeechEvent> {
    let mut out = Vec::new();
    while let Some(e) = within(what, stream.next()).await {
        out.push(must(e, what));
    }
    out
}

/// Reads events until the first final transcript (inclusive).
async fn until_final(stream: &mut SttStream, what: &str) -> Vec<SpeechEvent> {
    let mut out = Vec::new();
    loop {
        let e = match within(what, stream.next()).await {
            Some(e) => must(e, what),
            None => panic!("{what}: the stream ended before a final transcript"),
        };
        let done = matches!(e, SpeechEvent::FinalTranscript(_));
        out.push(e);
        if done {
            return out;
        }
    }
}

/// Pushes 300 ms of lead-in silence, then one second of the harness's speech.
async fn push_utterance<H: SttHarness + ?Sized>(h: &H, stream: &SttStream, what: &str) {
    push_all(
        stream,
        signal::silence(Duration::from_millis(300), h.sample_rate()),
        what,
    )
    .await;
    push_all(stream, h.speech(Duration::from_millis(1000)), what).await;
}

fn finals(events: &[SpeechEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::FinalTranscript(t) => Some(normalized(t.text())),
            _ => None,
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// A stream of silence, speech, silence yields interim transcripts (when the STT has them) before the final one,
/// and ends after `end_input`.
pub async fn check_stream_interim_then_final<H: SttHarness + ?Sized>(h: &H) {
    let what = "stt stream_interim_then_final";
    h.script_transcript("the quick brown fox jumps").await;
    let stt = h.stt();
    let mut stream = must(stt.stream(&RecognizeOptions::default()), what);
    let rate = h.sample_rate();
    push_all(
        &stream,
        signal::silence(Duration::from_millis(500), rate),
        what,
    )
    .await;
    push_all(&stream, h.speech(Duration::from_millis(2000)), what).await;
    push_all(
        &stream,
        signal::silence(Duration::from_millis(1500), rate),
        what,
    )
    .await;
    let events = until_final(&mut stream, what).await;
    if stt.capabilities().interim_results {
        let first_interim = events
            .iter()
            .position(|e| matches!(e, SpeechEvent::InterimTranscript(_)));
        assert!(
            first_interim.is_some(),
            "{what}: no interim transcript before the final: {events:?}"
        );
    }
    assert_eq!(
        finals(&events),
        vec!["the quick brown fox jumps"],
        "{what}: final text"
    );
    must(within(what, stream.end_input()).await, what);
    let rest = drain(&mut stream, what).await;
    assert!(
        finals(&rest).is_empty(),
        "{what}: unexpected final after end_input: {rest:?}"
    );
}

/// Speech followed directly by `end_input` (no trailing silence) still yields its final, then the stream ends.
pub async fn check_end_input_delivers_final<H: SttHarness + ?Sized>(h: &H) {
    let what = "stt end_input_delivers_final";
    h.script_transcript("good morning").await;
    let stt = h.stt();
    let mut stream = must(stt.stream(&RecognizeOptions::default()), what);
    push_utterance(h, &stream, what).await;
    must(within(what, stream.end_input()).await, what);
    let events = drain(&mut stream, what).await;
    assert_eq!(finals(&events), vec!["good morning"], "{what}: finals");
}

/// `flush` finalizes what was heard and the stream keeps working.
pub async fn check_flush_finalizes_and_continues<H: SttHarness + ?Sized>(h: &H) {
    let what = "stt flush_finalizes_and_continues";
    h.script_transcript("first part").await;
    let stt = h.stt();
    let mut stream = must(stt.stream(&RecognizeOptions::default()), what);
    push_utterance(h, &stream, what).await;
    must(within(what, stream.flush()).await, what);
    let events = until_final(&mut stream, what).await;
    assert_eq!(finals(&events), vec!["first part"], "{what}: first final");
    h.script_transcript("second part").await;
    push_utterance(h, &stream, what).await;
    must(within(what, stream.end_input()).await, what);
    let rest = drain(&mut stream, what).await;
    assert_eq!(finals(&rest), vec!["second part"], "{what}: second final");
}
