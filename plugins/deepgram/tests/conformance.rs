//! The testkit's STT and TTS conformance suites, run against the plugin wired to the Deepgram emulator.

mod common;

use std::sync::Arc;

use agents_core::stt::Stt;
use agents_core::tts::Tts;
use agents_deepgram::{SttOptions, TtsOptions};
use agents_testkit::conformance::{stt::SttHarness, tts::TtsHarness};
use agents_testkit::emulators::deepgram::DeepgramEmulator;
use async_trait::async_trait;

struct Harness {
    dg: DeepgramEmulator,
    stt: Arc<dyn Stt>,
    tts: Arc<dyn Tts>,
}

impl Harness {
    async fn new() -> Self {
        let dg = DeepgramEmulator::start()
            .await
            .unwrap_or_else(|e| panic!("emulator: {e}"));
        let stt: Arc<dyn Stt> = Arc::new(common::stt(&dg, SttOptions::default()));
        let tts: Arc<dyn Tts> = Arc::new(common::tts(&dg, TtsOptions::default()));
        Self { dg, stt, tts }
    }
}

#[async_trait]
impl SttHarness for Harness {
    fn stt(&self) -> Arc<dyn Stt> {
        self.stt.clone()
    }
    async fn script_transcript(&self, text: &str) {
        self.dg.script_transcript(text);
    }
}

#[async_trait]
impl TtsHarness for Harness {
    fn tts(&self) -> Arc<dyn Tts> {
        self.tts.clone()
    }
}

#[tokio::test]
async fn stt_conformance() {
    let h = Harness::new().await;
    agents_testkit::conformance::stt::run_all(&h).await;
}

#[tokio::test]
async fn tts_conformance() {
    let h = Harness::new().await;
    agents_testkit::conformance::tts::run_all(&h).await;
}
