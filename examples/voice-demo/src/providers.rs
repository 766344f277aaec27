//! The providers of the demo: for each of LLM, STT and TTS, the real service when its key is set, else the
//! bundled emulator of `agents-testkit` on `127.0.0.1`. The plugins are the real ones either way; only their base
//! URL and key change.

use std::sync::Arc;
use std::time::Duration;

use agents::core::{Llm, Stt, Tts};
use agents::deepgram::{DeepgramStt, Endpointing, SttOptions};
use agents::elevenlabs::{ElevenLabsTts, TtsOptions};
use agents::openai::{ClientOptions, LlmOptions, OpenAiLlm};
use agents::retry::ApiConnectOptions;
use agents_testkit::EmulatorServer;
use agents_testkit::emulators::deepgram::DeepgramEmulator;
use agents_testkit::emulators::elevenlabs::ElevenLabsEmulator;
use agents_testkit::emulators::openai::OpenAiEmulator;
use anyhow::Context;

/// The key the OpenAI emulator accepts (not a secret: it only opens the local emulator).
const EMULATOR_OPENAI_KEY: &str = "sk-emulator-demo";
/// The LLM model asked of the real OpenAI service.
pub const OPENAI_MODEL: &str = "gpt-4o-mini";

/// Where a provider runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The bundled emulator on 127.0.0.1.
    Emulator,
    /// The real service.
    Live,
}

/// Which providers to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// The real service for each provider whose key variable is set, the emulator for the others.
    FromEnv,
    /// The emulators only, whatever the environment says (tests).
    Offline,
}

/// The running emulators (kept alive while the conversation runs).
#[derive(Debug, Default)]
pub struct Emulators {
    /// The OpenAI chat emulator and its server.
    pub openai: Option<(OpenAiEmulator, EmulatorServer)>,
    /// The Deepgram listen emulator.
    pub deepgram: Option<DeepgramEmulator>,
    /// The ElevenLabs TTS emulator.
    pub elevenlabs: Option<ElevenLabsEmulator>,
}

/// The LLM, STT and TTS of the demo, with where each one runs.
pub struct Providers {
    /// OpenAI Chat Completions.
    pub llm: Arc<dyn Llm>,
    /// Deepgram streaming STT.
    pub stt: Arc<dyn Stt>,
    /// ElevenLabs streaming TTS.
    pub tts: Arc<dyn Tts>,
    /// Where the LLM runs.
    pub llm_backend: Backend,
    /// Where the STT runs.
    pub stt_backend: Backend,
    /// Where the TTS runs.
    pub tts_backend: Backend,
    /// The emulators started for the providers without a key.
    pub emulators: Emulators,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("llm", &self.llm_backend)
            .field("stt", &self.stt_backend)
            .field("tts", &self.tts_backend)
            .finish_non_exhaustive()
    }
}

fn key_set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// Deepgram STT options of the demo: the plugin's defaults with an 800 ms endpoint, so a short pause inside a
/// sentence does not end the utterance; the demo ends each user turn itself (`commit_user_turn`).
fn deepgram_options() -> SttOptions {
    SttOptions::default().with_endpointing(Endpointing::After(Duration::from_millis(800)))
}

/// Connection options for the local emulators: a short timeout and fast retries.
fn local_conn() -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(2)
        .with_retry_interval(Duration::from_millis(50))
        .with_timeout(Duration::from_secs(5))
}

impl Providers {
    /// Starts what `choice` asks for.
    ///
    /// # Errors
    /// When an emulator cannot bind a loopback port or a plugin refuses its configuration.
    pub async fn start(choice: ProviderChoice) -> anyhow::Result<Self> {
        let live = |var: &str| choice == ProviderChoice::FromEnv && key_set(var);
        let mut emulators = Emulators::default();

        let (llm, llm_backend): (Arc<dyn Llm>, _) = if live("OPENAI_API_KEY") {
            let llm = OpenAiLlm::new(ClientOptions::from_env(), LlmOptions::new(OPENAI_MODEL))
                .context("configuring the OpenAI LLM")?;
            (Arc::new(llm), Backend::Live)
        } else {
            let emu = OpenAiEmulator::new().with_api_key(EMULATOR_OPENAI_KEY);
            let server = emu.serve().await.context("starting the OpenAI emulator")?;
            let client = ClientOptions::default()
                .with_api_key(EMULATOR_OPENAI_KEY)
                .with_base_url(format!("{}/v1", server.http_url()))
                .with_conn_options(local_conn());
            let llm = OpenAiLlm::new(client, LlmOptions::new(OPENAI_MODEL))
                .context("configuring the OpenAI LLM")?;
            emulators.openai = Some((emu, server));
            (Arc::new(llm), Backend::Emulator)
        };

        let (stt, stt_backend): (Arc<dyn Stt>, _) = if live("DEEPGRAM_API_KEY") {
            let client = agents::deepgram::ClientOptions::from_env()
                .context("configuring the Deepgram client")?;
            let stt = DeepgramStt::new(client, deepgram_options())
                .context("configuring the Deepgram STT")?;
            (Arc::new(stt), Backend::Live)
        } else {
            let dg = DeepgramEmulator::start()
                .await
                .context("starting the Deepgram emulator")?;
            let client = agents::deepgram::ClientOptions::new(dg.api_key().to_owned())
                .with_base_url(dg.http_url())
                .context("configuring the Deepgram client")?;
            let stt = DeepgramStt::new(client, deepgram_options())
                .context("configuring the Deepgram STT")?;
            emulators.deepgram = Some(dg);
            (Arc::new(stt), Backend::Emulator)
        };

        let (tts, tts_backend): (Arc<dyn Tts>, _) =
            if live("ELEVENLABS_API_KEY") || live("ELEVEN_API_KEY") {
                let tts = ElevenLabsTts::from_env().context("configuring the ElevenLabs TTS")?;
                (Arc::new(tts), Backend::Live)
            } else {
                let el = ElevenLabsEmulator::start()
                    .await
                    .context("starting the ElevenLabs emulator")?;
                let options = TtsOptions::default()
                    .with_api_key(el.api_key().to_owned())
                    .with_base_url(el.base_url())
                    .with_conn_options(local_conn());
                let tts = ElevenLabsTts::new(options).context("configuring the ElevenLabs TTS")?;
                emulators.elevenlabs = Some(el);
                (Arc::new(tts), Backend::Emulator)
            };

        Ok(Self {
            llm,
            stt,
            tts,
            llm_backend,
            stt_backend,
            tts_backend,
            emulators,
        })
    }

    /// Whether every provider runs on its emulator.
    pub fn all_offline(&self) -> bool {
        [self.llm_backend, self.stt_backend, self.tts_backend]
            .iter()
            .all(|b| *b == Backend::Emulator)
    }

    /// The banner printed at start: what runs where.
    pub fn banner(&self) -> String {
        let name = |b: Backend, live: &str| match b {
            Backend::Emulator => "bundled emulator".to_owned(),
            Backend::Live => live.to_owned(),
        };
        let mode = if self.all_offline() {
            "offline: bundled provider emulators (set OPENAI_API_KEY, DEEPGRAM_API_KEY, ELEVENLABS_API_KEY for the real services)".to_owned()
        } else if [self.llm_backend, self.stt_backend, self.tts_backend]
            .iter()
            .all(|b| *b == Backend::Live)
        {
            "live: the real OpenAI, Deepgram and ElevenLabs services".to_owned()
        } else {
            "mixed: the real service where its key is set, the bundled emulator elsewhere"
                .to_owned()
        };
        format!(
            "{mode}\n  LLM: OpenAI Chat Completions ({})\n  STT: Deepgram streaming ({})\n  TTS: ElevenLabs streaming ({})\n  VAD: Silero v5 (bundled ONNX model)",
            name(self.llm_backend, &format!("api.openai.com, {OPENAI_MODEL}")),
            name(self.stt_backend, "api.deepgram.com, nova-3"),
            name(self.tts_backend, "api.elevenlabs.io"),
        )
    }
}
