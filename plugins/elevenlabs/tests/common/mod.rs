//! Shared helpers of the emulator tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // shared test helpers

use std::time::Duration;

use agents_core::ApiConnectOptions;
use agents_core::tts::{SynthesizeOptions, SynthesizedAudio, Tts, TtsError, TtsStream};
use agents_elevenlabs::{ElevenLabsTts, TtsOptions};
use agents_testkit::emulators::elevenlabs::{ElevenLabsConfig, ElevenLabsEmulator};
use futures::StreamExt;

/// Every await in these tests is bounded.
pub const LIMIT: Duration = Duration::from_secs(10);

pub async fn emulator(config: ElevenLabsConfig) -> ElevenLabsEmulator {
    ElevenLabsEmulator::with_config(config).await.unwrap()
}

pub fn options(emu: &ElevenLabsEmulator) -> TtsOptions {
    TtsOptions::default()
        .with_api_key(emu.api_key().to_owned())
        .with_base_url(emu.base_url())
        .with_voice("voice-test")
        .with_conn_options(
            ApiConnectOptions::default()
                .with_retry_interval(Duration::from_millis(20))
                .with_timeout(Duration::from_secs(5)),
        )
}

pub fn tts(opts: TtsOptions) -> ElevenLabsTts {
    ElevenLabsTts::new(opts).unwrap()
}

/// Pushes `text`, ends the input and reads everything.
pub async fn speak(tts: &ElevenLabsTts, text: &str) -> Result<Vec<SynthesizedAudio>, TtsError> {
    let mut s = tts.stream(&SynthesizeOptions::default())?;
    s.push_text(text).await.unwrap();
    s.end_input().await.unwrap();
    read_all(&mut s).await
}

pub async fn read_all(s: &mut TtsStream) -> Result<Vec<SynthesizedAudio>, TtsError> {
    let mut out = Vec::new();
    while let Some(c) = tokio::time::timeout(LIMIT, s.next())
        .await
        .expect("stream stalled")
    {
        out.push(c?);
    }
    Ok(out)
}

pub fn duration(chunks: &[SynthesizedAudio]) -> Duration {
    chunks.iter().map(|c| c.frame.duration()).sum()
}

/// Audio the emulator makes for `chars` characters (50 ms each by default).
pub fn expected(chars: usize) -> Duration {
    Duration::from_millis(50 * chars as u64)
}
