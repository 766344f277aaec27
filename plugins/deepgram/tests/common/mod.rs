//! Helpers shared by the plugin's tests: clients wired to the emulator and event readers.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers"
)]

use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::ApiConnectOptions;
use agents_core::stt::{SpeechEvent, SttError, SttStream};
use agents_deepgram::{ClientOptions, DeepgramStt, DeepgramTts, SttOptions, TtsOptions};
use agents_testkit::emulators::deepgram::DeepgramEmulator;
use agents_testkit::signal;
use futures::StreamExt;

pub const RATE: SampleRate = SampleRate::HZ_16000;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn client(dg: &DeepgramEmulator) -> ClientOptions {
    ClientOptions::new(dg.api_key())
        .with_base_url(dg.http_url())
        .unwrap()
}

pub fn stt(dg: &DeepgramEmulator, options: SttOptions) -> DeepgramStt {
    DeepgramStt::new(client(dg), options).unwrap()
}

pub fn tts(dg: &DeepgramEmulator, options: TtsOptions) -> DeepgramTts {
    DeepgramTts::new(client(dg), options).unwrap()
}

/// Retries quickly so that failure tests stay short.
pub fn fast_conn() -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(3)
        .with_retry_interval(ms(50))
        .with_timeout(Duration::from_secs(5))
}

pub async fn push(stream: &SttStream, frames: Vec<AudioFrame>) {
    for f in frames {
        stream.push_frame(f).await.unwrap();
    }
}

/// `(is_speech, duration)` parts as 20 ms frames at [`RATE`].
pub fn audio(parts: &[(bool, u64)]) -> Vec<AudioFrame> {
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    signal::sequence(&parts, RATE)
}

/// Reads every event until the stream ends; panics on an error or after 30 s.
pub async fn drain(stream: &mut SttStream) -> Vec<SpeechEvent> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(e))) => out.push(e),
            Ok(Some(Err(e))) => panic!("stream error: {e:?} after {out:?}"),
            Ok(None) => return out,
            Err(_) => panic!("stream did not end; events so far: {out:?}"),
        }
    }
}

/// Reads events until the first final transcript (inclusive).
pub async fn until_final(stream: &mut SttStream) -> Vec<SpeechEvent> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(e))) => {
                let done = matches!(e, SpeechEvent::FinalTranscript(_));
                out.push(e);
                if done {
                    return out;
                }
            }
            Ok(Some(Err(e))) => panic!("stream error: {e:?}"),
            Ok(None) => panic!("stream ended before a final: {out:?}"),
            Err(_) => panic!("no final within 30 s: {out:?}"),
        }
    }
}

/// The first error of the stream (panics if it ends without one).
pub async fn first_error(stream: &mut SttStream) -> SttError {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return e,
            Ok(None) => panic!("the stream ended without an error"),
            Err(_) => panic!("no error within 30 s"),
        }
    }
}

pub fn finals(events: &[SpeechEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::FinalTranscript(t) => Some(t.text().to_owned()),
            _ => None,
        })
        .collect()
}

pub fn final_words(events: &[SpeechEvent]) -> Vec<agents_core::stt::TimedWord> {
    events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::FinalTranscript(t) => t.alternatives.first().map(|a| a.words.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub fn usage_total(events: &[SpeechEvent]) -> Duration {
    events
        .iter()
        .filter_map(|e| match e {
            SpeechEvent::RecognitionUsage(u) => Some(u.audio_duration),
            _ => None,
        })
        .sum()
}
