//! Per-turn metrics and the recognition's STT on a paused clock: the turn report of a reply whose first LLM step
//! only calls tools goes to the spoken follow-up (once per user turn), its wall-clock timestamps, and the
//! automatic VAD-segmented wrapping of a non-streaming STT (livekit-agents-behaviours.md §6.7, behaviour 123, §3).

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::chat::{ChatItem, ChatMessage, ChatRole};
use agents_core::events::{Component, SessionEvent, SpeechSource};
use agents_core::metrics::{Metrics, TurnMetrics};
use agents_core::stt::{RecognizeOptions, Stt, SttCapabilities, SttError, Transcript};
use agents_core::tools::{FunctionTool, ToolOutcome};
use agents_core::{Agent, AudioInput, SessionControl, SessionIo, Vad};
use agents_pipeline::interruption::InterruptionOptions;
use agents_pipeline::recognition::RecognitionError;
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::signal::sequence;
use agents_testkit::{
    FakeAudioOutput, FakeLlm, FakeResponse, FakeStt, FakeTextOutput, FakeTts, FakeVad,
};

use session_common::{Recorder, ms};

/// A batch-only STT (like OpenAI transcriptions): `recognize` works, `stream` is unsupported.
struct BatchStt(FakeStt);

#[async_trait]
impl Stt for BatchStt {
    fn label(&self) -> &str {
        "batch.STT"
    }

    fn capabilities(&self) -> SttCapabilities {
        let mut c = self.0.capabilities();
        c.streaming = false;
        c.interim_results = false;
        c
    }

    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        self.0.recognize(audio, options).await
    }
}

struct Run {
    session: AgentSession,
    rec: Recorder,
}

/// A session whose user speaks `parts` (`true` = speech) from t = 0, paced on the tokio clock; `vad: None` runs
/// the session without a VAD.
async fn run(
    parts: &[(bool, u64)],
    stt: Arc<dyn Stt>,
    vad: Option<Arc<dyn Vad>>,
    llm: FakeLlm,
    agent: Agent,
) -> Run {
    let options = SessionOptions::default()
        .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
        .with_user_away_timeout(None);
    let mut builder = AgentSession::builder()
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .stt(stt)
        .options(options);
    if let Some(vad) = vad {
        builder = builder.vad(vad);
    }
    let session = builder.build();
    let rec = Recorder::start(&session);
    let (tx, input) = AudioInput::channel("user", 64);
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    let frames = sequence(&parts, SampleRate::HZ_16000);
    session
        .start(
            agent,
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(Arc::new(FakeTextOutput::new())),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut at = tokio::time::Instant::now();
        for f in frames {
            tokio::time::sleep_until(at).await;
            at += f.duration();
            if tx.send(f).await.is_err() {
                return;
            }
        }
        tx.closed().await;
    });
    Run { session, rec }
}

/// The scripted VAD for `parts`.
fn vad_for(parts: &[(bool, u64)]) -> Arc<dyn Vad> {
    let mut t = 0;
    let mut speech = Vec::new();
    for &(s, d) in parts {
        if s {
            speech.push((ms(t), ms(t + d)));
        }
        t += d;
    }
    Arc::new(FakeVad::scripted(speech))
}

fn fake_stt(transcripts: &[&str]) -> FakeStt {
    FakeStt::new()
        .with_transcripts(transcripts.iter().copied())
        .with_min_silence(ms(100))
}

fn lookup_tool() -> FunctionTool {
    FunctionTool::raw(
        "lookup",
        "Looks the answer up.",
        json!({"type": "object", "properties": {}}),
        |_ctx, _args| async move {
            tokio::time::sleep(ms(50)).await;
            Ok(ToolOutcome::Output("42".to_owned()))
        },
    )
    .unwrap()
}

fn turn_reports(rec: &Recorder) -> Vec<TurnMetrics> {
    rec.events()
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::MetricsCollected(Metrics::Turn(t)) => Some(t),
            _ => None,
        })
        .collect()
}

fn speech_ids(rec: &Recorder, source: SpeechSource) -> Vec<String> {
    rec.events()
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::SpeechCreated {
                speech, source: s, ..
            } if s == source => Some(speech.id().to_owned()),
            _ => None,
        })
        .collect()
}

fn assistant_said(text: &'static str) -> impl Fn(&SessionEvent) -> bool {
    move |e| match e {
        SessionEvent::ConversationItemAdded {
            item: ChatItem::Message(m),
        } => m.role == ChatRole::Assistant && m.text_content().as_deref() == Some(text),
        _ => false,
    }
}

fn last_assistant(session: &AgentSession) -> ChatMessage {
    session
        .history()
        .last_message(ChatRole::Assistant)
        .cloned()
        .unwrap()
}

/// The report's fields a spoken reply must have, with the timestamps consistent with e2e.
fn assert_complete(t: &TurnMetrics) {
    let e2e = t.e2e_latency.unwrap();
    let user = t.user_stopped_speaking_at.unwrap();
    let agent = t.agent_started_speaking_at.unwrap();
    assert_eq!(agent.duration_since(user).unwrap(), e2e, "{t:?}");
    assert!(e2e >= t.end_of_utterance_delay.unwrap(), "{t:?}");
    assert!(t.tts_ttfb.is_some() && t.llm_ttft.is_some(), "{t:?}");
    assert!(t.transcription_delay.is_some() && t.on_user_turn_completed_delay.is_some());
}

const SPEAK: &[(bool, u64)] = &[(true, 1000), (false, 3000)];

#[tokio::test(start_paused = true)]
async fn a_tool_only_first_step_leaves_the_turn_report_to_the_spoken_follow_up() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::tool_call("lookup", "{}"))
        .push_response(FakeResponse::text("The answer is 42."));
    let agent = Agent::builder("x").tool(lookup_tool()).build().unwrap();
    let r = run(
        SPEAK,
        Arc::new(fake_stt(&["what is it"])),
        Some(vad_for(SPEAK)),
        llm,
        agent,
    )
    .await;
    r.rec
        .wait_for(ms(10_000), assistant_said("The answer is 42."))
        .await;
    // Let anything late (a second report) arrive.
    tokio::time::sleep(ms(500)).await;
    let reports = turn_reports(&r.rec);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let follow_ups = speech_ids(&r.rec, SpeechSource::ToolResponse);
    assert_eq!(follow_ups.len(), 1);
    let report = &reports[0];
    assert_eq!(report.speech_id.as_deref(), Some(follow_ups[0].as_str()));
    assert_complete(report);
    // The first step played nothing: its e2e is not reported; the follow-up's message carries the report's.
    let metrics = last_assistant(&r.session).metrics.unwrap();
    assert_eq!(metrics.e2e_latency, report.e2e_latency);
    assert_eq!(
        metrics.started_speaking_at,
        report.agent_started_speaking_at
    );
    assert_eq!(metrics.tts_ttfb, report.tts_ttfb);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_plain_reply_gets_one_turn_report_with_both_timestamps() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Sunny."));
    let r = run(
        SPEAK,
        Arc::new(fake_stt(&["how is the weather"])),
        Some(vad_for(SPEAK)),
        llm,
        Agent::new("x"),
    )
    .await;
    r.rec.wait_for(ms(10_000), assistant_said("Sunny.")).await;
    tokio::time::sleep(ms(500)).await;
    let reports = turn_reports(&r.rec);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let replies = speech_ids(&r.rec, SpeechSource::GenerateReply);
    assert_eq!(reports[0].speech_id.as_deref(), Some(replies[0].as_str()));
    assert_complete(&reports[0]);
    let metrics = last_assistant(&r.session).metrics.unwrap();
    assert_eq!(metrics.e2e_latency, reports[0].e2e_latency);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_non_streaming_stt_with_a_vad_is_wrapped_and_its_transcripts_drive_the_turn() {
    let llm = FakeLlm::new().push_response(FakeResponse::text("Hello."));
    let inner = fake_stt(&["hi there"]);
    let stt = Arc::new(BatchStt(inner));
    let r = run(
        SPEAK,
        stt.clone(),
        Some(vad_for(SPEAK)),
        llm,
        Agent::new("x"),
    )
    .await;
    r.rec.wait_for(ms(10_000), assistant_said("Hello.")).await;
    assert_eq!(
        r.rec.count(|e| matches!(e, SessionEvent::UserInputTranscribed { is_final: true, transcript, .. } if transcript == "hi there")),
        1
    );
    // The adapter recognized the VAD's speech segment with the batch STT (one call).
    assert_eq!(stt.0.recognized_audio().len(), 1);
    assert_eq!(
        r.session
            .history()
            .last_message(ChatRole::User)
            .and_then(|m| m.text_content())
            .as_deref(),
        Some("hi there")
    );
    assert!(r.rec.count(|e| matches!(e, SessionEvent::Error(_))) == 0);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_non_streaming_stt_without_a_vad_is_a_typed_error_event() {
    let stt = Arc::new(BatchStt(fake_stt(&["hi there"])));
    let r = run(SPEAK, stt, None, FakeLlm::new(), Agent::new("x")).await;
    r.rec
        .wait_for(ms(1000), |e| matches!(e, SessionEvent::Error(_)))
        .await;
    let error = r
        .rec
        .events()
        .into_iter()
        .find_map(|e| match e {
            SessionEvent::Error(e) => Some(e),
            _ => None,
        })
        .unwrap();
    assert_eq!(error.component, Component::Stt);
    assert!(error.recoverable);
    match error.error.downcast_ref::<RecognitionError>() {
        Some(RecognitionError::SttNotStreaming { label }) => assert_eq!(label, "batch.STT"),
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        error.error.to_string(),
        "The STT (batch.STT) does not support streaming, add a VAD to the AgentTask/VoiceAgent to enable streaming"
    );
    // Nothing is recognized: the user's speech gets no transcript and no reply.
    tokio::time::sleep(ms(4500)).await;
    assert_eq!(
        r.rec
            .count(|e| matches!(e, SessionEvent::UserInputTranscribed { .. })),
        0
    );
    r.session.close().await.unwrap();
}
