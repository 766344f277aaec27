//! File session: a voice session run from a WAV file, offline.
//!
//! Run: `cargo run -p file-session -- [INPUT.wav|-] [OUT_DIR] [--fast]`
//! Env vars: none. Without `INPUT.wav` (or with `-`) a two-turn input (test tones standing for speech) is generated. The VAD,
//! STT, LLM and TTS are the scripted fakes of `agents-testkit` (energy VAD, transcripts and replies given below), so
//! this runs without network or API keys; swap them for the `agents-openai` / `agents-deepgram` /
//! `agents-elevenlabs` / `agents-silero` plugins to run the same file against real providers.
//!
//! What it shows: `run_file_session` with a `WavInput` (any rate and channel count, paced in real time, or as fast
//! as possible with `--fast`), the agent's audio written to `OUT_DIR/agent.wav` (lined up with the input), the
//! transcript in `OUT_DIR/transcript.txt` and `.jsonl`, and the live `ConsoleView` (a status line on a terminal,
//! plain lines otherwise). See `docs/transports/console.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate, write_wav};
use agents_core::Agent;
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::signal::sequence;
use agents_testkit::{FakeLlm, FakeResponse, FakeStt, FakeTts, FakeVad};
use agents_transport::file::{
    ConsoleView, FileSessionOptions, Pacing, TranscriptOptions, WavInputOptions, WavOutputOptions,
    run_file_session,
};
use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fast = args.iter().any(|a| a == "--fast");
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let input = positional.next().filter(|p| *p != "-").map(PathBuf::from);
    let out_dir = positional
        .next()
        .map_or_else(|| std::env::temp_dir().join("file-session"), PathBuf::from);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let input = match input {
        Some(p) => p,
        None => {
            // Two user turns at 48 kHz stereo: 1 s of "speech", 3 s of silence, 0.8 s of "speech".
            let path = out_dir.join("user.wav");
            let ms = Duration::from_millis;
            let parts = [(true, ms(1000)), (false, ms(3000)), (true, ms(800))];
            let mono = AudioFrame::concat(&sequence(&parts, SampleRate::HZ_48000))?;
            write_wav(&path, &[mono.remix(2)?]).context("writing the generated input")?;
            path
        }
    };

    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("It is sunny and warm in Paris today."))
        .push_response(FakeResponse::text("It is twelve o'clock."));
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::energy()))
        .stt(Arc::new(FakeStt::new().with_transcripts([
            "what is the weather",
            "what time is it",
        ])))
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .options(SessionOptions::default().with_close_on_input_end(false))
        .build();

    let pacing = if fast {
        Pacing::AsFastAsPossible
    } else {
        Pacing::RealTime
    };
    let options = FileSessionOptions::new(&input)
        .with_input(
            WavInputOptions::default()
                .with_pacing(pacing)
                .with_trailing_silence(Duration::from_secs(2)),
        )
        .with_output(out_dir.join("agent.wav"), WavOutputOptions::default())
        .with_transcript(
            TranscriptOptions::default()
                .with_text_path(out_dir.join("transcript.txt"))
                .with_jsonl_path(out_dir.join("transcript.jsonl")),
        )
        .with_console(ConsoleView::stdout())
        .with_max_duration(Duration::from_secs(600));
    let report = run_file_session(
        &session,
        Agent::new("You are a helpful assistant."),
        options,
    )
    .await
    .context("running the file session")?;

    let mut err = std::io::stderr().lock();
    use std::io::Write;
    writeln!(err, "\nturns: {}", report.turns)?;
    for (i, l) in report.latencies.iter().enumerate() {
        writeln!(err, "turn {}: e2e latency {:.3} s", i + 1, l.as_secs_f64())?;
    }
    if let Some(o) = &report.output {
        writeln!(
            err,
            "agent audio: {} ({:.1} s, {} speech(es))",
            o.path.display(),
            o.duration.as_secs_f64(),
            o.segments.len()
        )?;
    }
    writeln!(
        err,
        "transcript: {}",
        out_dir.join("transcript.txt").display()
    )?;
    Ok(())
}
