//! Every conformance suite run against the fakes: proves the suites pass on a conforming implementation.

use std::sync::Arc;

use agents_core::ApiError;
use agents_core::llm::Llm;
use agents_core::realtime::RealtimeModel;
use agents_core::stt::Stt;
use agents_core::tts::Tts;
use agents_core::vad::Vad;
use agents_testkit::conformance::{llm, realtime, stt, tts, vad};
use agents_testkit::{
    FakeLlm, FakeRealtimeModel, FakeRealtimeResponse, FakeResponse, FakeStt, FakeTts, FakeVad,
};
use async_trait::async_trait;

struct LlmFake(FakeLlm);

#[async_trait]
impl llm::LlmHarness for LlmFake {
    fn llm(&self) -> Arc<dyn Llm> {
        Arc::new(self.0.clone())
    }
    async fn script_text(&self, chunks: &[&str]) {
        self.0.clear_sticky_error();
        self.0
            .add_response(FakeResponse::chunks(chunks.iter().copied()));
    }
    async fn script_tool_calls(&self, calls: &[(&str, &str)]) {
        self.0.clear_sticky_error();
        let r = calls.iter().fold(FakeResponse::new(), |r, (name, args)| {
            r.then_tool_call(*name, *args)
        });
        self.0.add_response(r);
    }
    async fn script_error(&self, status: u16) {
        self.0
            .set_sticky_error(Some(ApiError::status("scripted failure", status).into()));
    }
    async fn requests_received(&self) -> usize {
        self.0.attempts()
    }
}

#[tokio::test(start_paused = true)]
async fn llm_suite_passes_on_fake_llm() {
    let fake = FakeLlm::new()
        .with_ttft(std::time::Duration::from_millis(150))
        .with_inter_token_delay(std::time::Duration::from_millis(20));
    llm::run_all(&LlmFake(fake)).await;
}

struct SttFake(FakeStt);

#[async_trait]
impl stt::SttHarness for SttFake {
    fn stt(&self) -> Arc<dyn Stt> {
        Arc::new(self.0.clone())
    }
    async fn script_transcript(&self, text: &str) {
        self.0.push_transcript(text);
    }
}

#[tokio::test(start_paused = true)]
async fn stt_suite_passes_on_fake_stt() {
    let fake = FakeStt::new().with_final_delay(std::time::Duration::from_millis(100));
    stt::run_all(&SttFake(fake)).await;
}

struct TtsFake(FakeTts);

#[async_trait]
impl tts::TtsHarness for TtsFake {
    fn tts(&self) -> Arc<dyn Tts> {
        Arc::new(self.0.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn tts_suite_passes_on_fake_tts() {
    let fake = FakeTts::new()
        .with_ttfb(std::time::Duration::from_millis(80))
        .with_real_time_factor(0.2);
    tts::run_all(&TtsFake(fake)).await;
}

struct VadFake(FakeVad);

impl vad::VadHarness for VadFake {
    fn vad(&self) -> Arc<dyn Vad> {
        Arc::new(self.0.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn vad_suite_passes_on_fake_vad() {
    vad::run_all(&VadFake(FakeVad::energy())).await;
}

struct RealtimeFake(FakeRealtimeModel);

#[async_trait]
impl realtime::RealtimeHarness for RealtimeFake {
    fn model(&self) -> Arc<dyn RealtimeModel> {
        Arc::new(self.0.clone())
    }
    async fn script_reply(&self, text: &str) {
        self.0.add_response(FakeRealtimeResponse::text(text));
    }
    async fn script_function_call(&self, name: &str, arguments: &str) {
        self.0
            .add_response(FakeRealtimeResponse::function_call(name, arguments));
    }
}

#[tokio::test(start_paused = true)]
async fn realtime_suite_passes_on_fake_realtime() {
    let fake = FakeRealtimeModel::new().with_real_time_factor(0.5);
    realtime::run_all(&RealtimeFake(fake)).await;
}

#[tokio::test(start_paused = true)]
async fn realtime_suite_passes_on_text_only_fake() {
    let fake = FakeRealtimeModel::new()
        .without_audio_output()
        .with_real_time_factor(0.5);
    realtime::run_all(&RealtimeFake(fake)).await;
}

/// The suites catch a broken implementation.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "llm non_retryable_error")]
async fn llm_suite_fails_when_401_is_retried() {
    struct Retrying(FakeLlm);
    #[async_trait]
    impl llm::LlmHarness for Retrying {
        fn llm(&self) -> Arc<dyn Llm> {
            Arc::new(self.0.clone())
        }
        async fn script_text(&self, _: &[&str]) {}
        async fn script_tool_calls(&self, _: &[(&str, &str)]) {}
        async fn script_error(&self, status: u16) {
            // A plugin that wrongly marks every status retryable.
            self.0.set_sticky_error(Some(
                ApiError::status("scripted failure", status)
                    .with_retryable(true)
                    .into(),
            ));
        }
        async fn requests_received(&self) -> usize {
            self.0.attempts()
        }
    }
    llm::check_non_retryable_error(&Retrying(FakeLlm::new())).await;
}
