//! TTS (`/audio/speech`) and STT (`/audio/transcriptions`) against the OpenAI emulator: conformance, request
//! shape, framing, sentence streaming, faults.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on purpose

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::stt::{RecognizeOptions, Stt, SttError};
use agents_core::tts::{SynthesizeOptions, SynthesizedAudio, Tts, TtsError};
use agents_core::{ApiConnectOptions, ApiError};
use agents_openai::{ClientOptions, OpenAiStt, OpenAiTts, ProtocolError, SttOptions, TtsOptions};
use agents_testkit::EmulatorServer;
use agents_testkit::conformance::stt::{self as stt_conformance, SttHarness};
use agents_testkit::conformance::tts::{self as tts_conformance, TtsHarness};
use agents_testkit::emulators::openai::{Fault, OpenAiEmulator, SpeechScript, TranscriptionScript};
use agents_testkit::signal;
use async_trait::async_trait;
use futures::StreamExt;

const KEY: &str = "sk-audio-test-key";

struct Setup {
    emu: OpenAiEmulator,
    server: EmulatorServer,
}

impl Setup {
    async fn new() -> Self {
        let emu = OpenAiEmulator::new().with_api_key(KEY);
        let server = emu.serve().await.unwrap();
        Self { emu, server }
    }

    fn client(&self) -> ClientOptions {
        ClientOptions::default()
            .with_api_key(KEY)
            .with_base_url(format!("{}/v1", self.server.http_url()))
            .with_conn_options(fast(2))
    }

    fn tts(&self, options: TtsOptions) -> OpenAiTts {
        OpenAiTts::new(self.client(), options).unwrap()
    }

    fn stt(&self, options: SttOptions) -> OpenAiStt {
        OpenAiStt::new(self.client(), options).unwrap()
    }

    fn speech_inputs(&self) -> Vec<String> {
        self.emu
            .requests_to("/audio/speech")
            .iter()
            .map(|r| r.json().unwrap()["input"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn fast(max_retry: u32) -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(max_retry)
        .with_retry_interval(Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
}

fn api_tts(e: &TtsError) -> &ApiError {
    match e {
        TtsError::Api(a) => a,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn api_stt(e: &SttError) -> &ApiError {
    match e {
        SttError::Api(a) => a,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn synthesize(
    tts: &OpenAiTts,
    text: &str,
    conn: ApiConnectOptions,
) -> (Vec<SynthesizedAudio>, Option<TtsError>) {
    let mut stream = tts
        .synthesize(text, &SynthesizeOptions::default().with_conn_options(conn))
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        match c {
            Ok(c) => out.push(c),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

// ---------------------------------------------------------------- TTS

struct TtsH {
    _setup: Setup,
    tts: Arc<dyn Tts>,
}

#[async_trait]
impl TtsHarness for TtsH {
    fn tts(&self) -> Arc<dyn Tts> {
        Arc::clone(&self.tts)
    }
}

#[tokio::test]
async fn tts_passes_the_conformance_suite() {
    let setup = Setup::new().await;
    let tts: Arc<dyn Tts> = Arc::new(setup.tts(TtsOptions::default()));
    assert!(tts.capabilities().streaming);
    tts_conformance::run_all(&TtsH { _setup: setup, tts }).await;
}

#[tokio::test]
async fn tts_request_and_fixed_duration_frames() {
    let s = Setup::new().await;
    // Odd chunk sizes split samples across reads; the frames must still be whole and exact.
    s.emu
        .push_speech(SpeechScript::default().with_chunk_bytes(777));
    let tts = s.tts(
        TtsOptions::default()
            .with_model("tts-1-hd")
            .with_voice("nova")
            .with_instructions("Speak calmly.")
            .with_speed(1.0)
            .with_frame_duration(Duration::from_millis(20)),
    );
    let text = "Good morning, everyone.";
    let (chunks, err) = synthesize(&tts, text, fast(0)).await;
    assert!(err.is_none(), "{err:?}");
    let body = s.emu.requests_to("/audio/speech")[0]
        .json()
        .cloned()
        .unwrap();
    assert_eq!(body["model"], "tts-1-hd");
    assert_eq!(body["voice"], "nova");
    assert_eq!(body["input"], text);
    assert_eq!(body["response_format"], "pcm");
    assert_eq!(body["instructions"], "Speak calmly.");
    assert_eq!(body["speed"], 1.0);
    // 40 ms per character at 24 kHz.
    let total: usize = chunks.iter().map(|c| c.frame.samples_per_channel()).sum();
    assert_eq!(total, text.chars().count() * 960);
    let (last, rest) = chunks.split_last().unwrap();
    assert!(
        rest.iter()
            .all(|c| c.frame.samples_per_channel() == 480 && !c.is_final)
    );
    assert!(last.is_final && last.frame.samples_per_channel() <= 480);
    assert!(
        chunks
            .iter()
            .all(|c| c.frame.sample_rate() == SampleRate::HZ_24000 && c.frame.num_channels() == 1)
    );
    assert!(chunks.iter().all(|c| c.segment_id == chunks[0].segment_id));
    assert!(chunks[0].request_id.starts_with("req_emu"));
}

#[tokio::test]
async fn tts_metrics_have_ttfb_and_audio_duration() {
    let s = Setup::new().await;
    s.emu.push_speech(
        SpeechScript::default().with_fault(Fault::SlowFirstByte(Duration::from_millis(30))),
    );
    let tts = s.tts(TtsOptions::default());
    let mut stream = tts
        .synthesize("Hello there.", &SynthesizeOptions::default())
        .await
        .unwrap();
    while let Some(c) = stream.next().await {
        c.unwrap();
    }
    let m = stream.metrics();
    assert_eq!(m.label, "openai.TTS");
    assert!(m.ttfb.unwrap() >= Duration::from_millis(30));
    assert_eq!(m.audio_duration, Duration::from_millis(12 * 40));
    assert_eq!(m.characters_count, 12);
    assert!(!m.cancelled);
}

#[tokio::test]
async fn tts_stream_sends_one_request_per_sentence_in_one_segment() {
    let s = Setup::new().await;
    let tts = s.tts(TtsOptions::default());
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    for piece in [
        "Hello there, this is the first",
        " sentence. And here is the second one! Sh",
        "ort",
    ] {
        stream.push_text(piece).await.unwrap();
    }
    stream.flush().await.unwrap();
    stream.end_input().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = stream.next().await {
        chunks.push(c.unwrap());
    }
    assert_eq!(
        s.speech_inputs(),
        vec![
            "Hello there, this is the first sentence.",
            "And here is the second one!",
            "Short"
        ]
    );
    assert_eq!(chunks.iter().filter(|c| c.is_final).count(), 1);
    assert!(chunks.last().unwrap().is_final);
    assert!(chunks.iter().all(|c| c.segment_id == chunks[0].segment_id));
    let samples: usize = chunks.iter().map(|c| c.frame.samples_per_channel()).sum();
    assert_eq!(samples, (40 + 27 + 5) * 960);
}

#[tokio::test]
async fn tts_stream_surfaces_an_error_and_ends() {
    let s = Setup::new().await;
    s.emu
        .set_default_speech(SpeechScript::fault(Fault::status(401)));
    let tts = s.tts(TtsOptions::default());
    let mut stream = tts
        .stream(&SynthesizeOptions::default().with_conn_options(fast(3)))
        .unwrap();
    stream
        .push_text("A sentence that will never be spoken. ")
        .await
        .unwrap();
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(api_tts(&err).status_code(), Some(401));
    assert!(stream.next().await.is_none());
    assert_eq!(s.emu.requests_to("/audio/speech").len(), 1);
}

#[tokio::test]
async fn tts_retries_server_errors_and_fails_fast_on_client_errors() {
    let s = Setup::new().await;
    s.emu.push_speech(SpeechScript::fault(Fault::status(500)));
    s.emu
        .push_speech(SpeechScript::fault(Fault::rate_limited(0)));
    let tts = s.tts(TtsOptions::default());
    let (chunks, err) = synthesize(&tts, "Hello.", fast(3)).await;
    assert!(err.is_none() && !chunks.is_empty(), "{err:?}");
    assert_eq!(s.emu.requests_to("/audio/speech").len(), 3);

    s.emu
        .set_default_speech(SpeechScript::fault(Fault::status(503)));
    let (_, err) = synthesize(&tts, "Hello.", fast(1)).await;
    let err = err.unwrap();
    assert!(api_tts(&err).is_retryable());
    assert_eq!(s.emu.requests_to("/audio/speech").len(), 5);

    s.emu
        .set_default_speech(SpeechScript::fault(Fault::status(400)));
    let (_, err) = synthesize(&tts, "Hello.", fast(3)).await;
    let err = err.unwrap();
    assert_eq!(api_tts(&err).status_code(), Some(400));
    assert!(!api_tts(&err).is_retryable());
    assert_eq!(s.emu.requests_to("/audio/speech").len(), 6);
}

#[tokio::test]
async fn tts_drop_mid_stream_and_slow_first_byte() {
    let s = Setup::new().await;
    s.emu.push_speech(
        SpeechScript::default()
            .with_chunk_bytes(4800)
            .with_fault(Fault::DropMidStream { after: 2 }),
    );
    let tts = s.tts(TtsOptions::default());
    let (chunks, err) =
        synthesize(&tts, "A long enough sentence to span many chunks.", fast(2)).await;
    assert!(
        !chunks.is_empty() && chunks.iter().all(|c| !c.is_final),
        "no final chunk after a drop"
    );
    let err = err.unwrap();
    assert!(
        api_tts(&err).is_connection() && api_tts(&err).is_retryable(),
        "{err:?}"
    );
    assert_eq!(
        s.emu.requests_to("/audio/speech").len(),
        1,
        "audio already delivered is not replayed"
    );

    s.emu.set_default_speech(
        SpeechScript::default().with_fault(Fault::SlowFirstByte(Duration::from_secs(2))),
    );
    let (_, err) = synthesize(
        &tts,
        "Hello.",
        fast(0).with_timeout(Duration::from_millis(150)),
    )
    .await;
    assert!(api_tts(&err.unwrap()).is_timeout());
}

#[tokio::test]
async fn tts_response_broken_before_its_first_frame_is_requested_again() {
    let s = Setup::new().await;
    // 1000 bytes is less than one 50 ms frame (2400 bytes): nothing reaches the caller before the drop.
    s.emu.push_speech(
        SpeechScript::default()
            .with_chunk_bytes(1000)
            .with_fault(Fault::DropMidStream { after: 1 }),
    );
    let tts = s.tts(TtsOptions::default());
    let (chunks, err) = synthesize(&tts, "Hello again.", fast(2)).await;
    assert!(err.is_none(), "{err:?}");
    let samples: usize = chunks.iter().map(|c| c.frame.samples_per_channel()).sum();
    assert_eq!(samples, 12 * 960, "the audio is complete and not doubled");
    assert_eq!(s.emu.requests_to("/audio/speech").len(), 2);
}

#[tokio::test]
async fn tts_rejects_bad_text_and_options_without_a_request() {
    let s = Setup::new().await;
    let tts = s.tts(TtsOptions::default());
    for text in ["", "   ", &"x".repeat(4097)] {
        let r = tts.synthesize(text, &SynthesizeOptions::default()).await;
        assert!(matches!(r, Err(TtsError::InvalidRequest { .. })));
    }
    assert_eq!(s.emu.request_count(), 0);
    assert!(OpenAiTts::new(s.client(), TtsOptions::default().with_speed(9.0)).is_err());
}

// ---------------------------------------------------------------- STT

struct SttH {
    setup: Setup,
    stt: Arc<dyn Stt>,
}

#[async_trait]
impl SttHarness for SttH {
    fn stt(&self) -> Arc<dyn Stt> {
        Arc::clone(&self.stt)
    }
    async fn script_transcript(&self, text: &str) {
        self.setup
            .emu
            .set_default_transcription(TranscriptionScript::text(text));
    }
}

#[tokio::test]
async fn stt_passes_the_conformance_suite() {
    let setup = Setup::new().await;
    let stt: Arc<dyn Stt> = Arc::new(setup.stt(SttOptions::default()));
    stt_conformance::run_all(&SttH { setup, stt }).await;
}

fn speech() -> Vec<AudioFrame> {
    signal::tone(Duration::from_millis(800), SampleRate::HZ_16000)
}

#[tokio::test]
async fn stt_uploads_a_wav_with_model_language_and_prompt() {
    let s = Setup::new().await;
    s.emu
        .push_transcription(TranscriptionScript::text("  bonjour tout le monde "));
    let stt = s.stt(
        SttOptions::default()
            .with_model("whisper-1")
            .with_language("en")
            .with_prompt("Names: Zoé."),
    );
    let t = stt
        .recognize(&speech(), &RecognizeOptions::default().with_language("fr"))
        .await
        .unwrap();
    assert_eq!(t.text(), "bonjour tout le monde");
    assert_eq!(t.language(), Some("fr"));
    assert!(t.request_id.starts_with("req_emu"));
    assert_eq!(t.alternatives[0].end_time, Duration::from_millis(800));
    let req = &s.emu.requests_to("/audio/transcriptions")[0];
    assert_eq!(req.form_field("model"), Some("whisper-1"));
    assert_eq!(
        req.form_field("language"),
        Some("fr"),
        "the per-call language wins"
    );
    assert_eq!(req.form_field("prompt"), Some("Names: Zoé."));
    assert_eq!(
        req.form_field("response_format"),
        Some("verbose_json"),
        "whisper-1 reports the language"
    );
    let file = req.file().unwrap();
    assert_eq!(file.filename.as_deref(), Some("audio.wav"));
    let wav = file.wav.unwrap();
    assert_eq!(
        (wav.sample_rate, wav.channels, wav.bits_per_sample),
        (16_000, 1, 16)
    );
    assert_eq!(wav.frames, 12_800);
}

#[tokio::test]
async fn stt_reports_the_detected_language_of_whisper_1_and_asks_json_of_other_models() {
    let s = Setup::new().await;
    s.emu
        .push_transcription(TranscriptionScript::text("hola").with_language("spanish"));
    let whisper = s.stt(SttOptions::default().with_model("whisper-1"));
    let t = whisper
        .recognize(&speech(), &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.language(), Some("spanish"));
    let gpt = s.stt(SttOptions::default().with_model("gpt-4o-transcribe"));
    let t = gpt
        .recognize(&speech(), &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.language(), None);
    let req = &s.emu.requests_to("/audio/transcriptions")[1];
    assert_eq!(req.form_field("response_format"), Some("json"));
    assert_eq!(req.form_field("language"), None);
}

#[tokio::test]
async fn tts_stream_dropped_by_the_caller_stops_requesting() {
    let s = Setup::new().await;
    s.emu.set_default_speech(
        SpeechScript::default()
            .with_chunk_bytes(4800)
            .with_chunk_delay(Duration::from_millis(30)),
    );
    let tts = s.tts(TtsOptions::default());
    let mut stream = tts.stream(&SynthesizeOptions::default()).unwrap();
    stream
        .push_text("This is the first sentence of many. This is the second sentence of many. And the third one is here. ")
        .await
        .unwrap();
    stream.end_input().await.unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        s.emu.requests_to("/audio/speech").len(),
        1,
        "sentences after a barge-in are not synthesized"
    );
}

#[tokio::test]
async fn stt_rejects_mixed_formats_and_skips_empty_audio() {
    let s = Setup::new().await;
    let stt = s.stt(SttOptions::default());
    let mut audio = speech();
    audio.extend(signal::tone(
        Duration::from_millis(100),
        SampleRate::HZ_24000,
    ));
    let err = stt
        .recognize(&audio, &RecognizeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SttError::InvalidAudio(_)), "{err:?}");
    let t = stt
        .recognize(&[], &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "");
    assert_eq!(s.emu.request_count(), 0);
}

#[tokio::test]
async fn stt_stream_is_not_supported_and_says_so() {
    let s = Setup::new().await;
    let stt = s.stt(SttOptions::default());
    assert!(!stt.capabilities().streaming);
    let err = stt.stream(&RecognizeOptions::default()).unwrap_err();
    assert!(matches!(err, SttError::Unsupported { ref label, .. } if label == "openai.STT"));
}

#[tokio::test]
async fn stt_faults_are_retried_or_surface_at_once() {
    let s = Setup::new().await;
    s.emu
        .push_transcription(TranscriptionScript::fault(Fault::status(503)));
    s.emu
        .push_transcription(TranscriptionScript::text("second time lucky"));
    let stt = s.stt(SttOptions::default());
    let t = stt
        .recognize(&speech(), &RecognizeOptions::default())
        .await
        .unwrap();
    assert_eq!(t.text(), "second time lucky");
    assert_eq!(s.emu.requests_to("/audio/transcriptions").len(), 2);

    s.emu
        .set_default_transcription(TranscriptionScript::fault(Fault::status(401)));
    let err = stt
        .recognize(
            &speech(),
            &RecognizeOptions::default().with_conn_options(fast(3)),
        )
        .await
        .unwrap_err();
    assert!(api_stt(&err).is_auth() && !api_stt(&err).is_retryable());
    assert_eq!(s.emu.requests_to("/audio/transcriptions").len(), 3);

    s.emu
        .set_default_transcription(TranscriptionScript::fault(Fault::SlowFirstByte(
            Duration::from_secs(2),
        )));
    let err = stt
        .recognize(
            &speech(),
            &RecognizeOptions::default()
                .with_conn_options(fast(1).with_timeout(Duration::from_millis(150))),
        )
        .await
        .unwrap_err();
    let last = api_stt(&err)
        .source()
        .and_then(|s| s.downcast_ref::<ApiError>())
        .unwrap();
    assert!(last.is_timeout());
    assert_eq!(s.emu.requests_to("/audio/transcriptions").len(), 5);
}

#[tokio::test]
async fn stt_invalid_json_answer_is_a_typed_error() {
    let router = axum::Router::new().route(
        "/v1/audio/transcriptions",
        axum::routing::post(|| async { ([("x-request-id", "req_bad")], "<html>oops</html>") }),
    );
    let server = EmulatorServer::serve(router).await.unwrap();
    let client = ClientOptions::default().with_base_url(format!("{}/v1", server.http_url()));
    let stt = OpenAiStt::new(client, SttOptions::default()).unwrap();
    let err = stt
        .recognize(&speech(), &RecognizeOptions::default())
        .await
        .unwrap_err();
    let api = api_stt(&err);
    assert!(!api.is_retryable());
    assert_eq!(api.request_id(), Some("req_bad"));
    assert!(matches!(
        api.source().and_then(|s| s.downcast_ref::<ProtocolError>()),
        Some(ProtocolError::InvalidJson { .. })
    ));
}
