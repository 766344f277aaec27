//! Voice demo: a complete voice-agent conversation with tools, offline by default.
//!
//! Run: `cargo run -p voice-demo` (or `cargo xtask demo`).
//! Env vars (all optional): `OPENAI_API_KEY` (real OpenAI LLM, `OPENAI_BASE_URL` honoured), `DEEPGRAM_API_KEY`
//! (real Deepgram STT), `ELEVENLABS_API_KEY` or `ELEVEN_API_KEY` (real ElevenLabs TTS, `ELEVENLABS_BASE_URL`
//! honoured). Each provider without its key runs on the bundled emulator on 127.0.0.1; the banner says which.
//! `RUST_LOG`-style logging is not set up: the output is the conversation itself.
//!
//! Output: the transcript (user / agent), the tool calls with arguments and results, the per-turn latency table;
//! `target/voice-demo/agent.wav` (what the agent said, as played) and `target/voice-demo/transcript.txt`.
//! Exit code 1 when the conversation did not complete.

use std::io::Write;
use std::process::ExitCode;

use voice_demo::{DemoConfig, Providers};

#[tokio::main]
async fn main() -> ExitCode {
    voice_demo::cli::exit_code("voice-demo", run().await)
}

async fn run() -> anyhow::Result<()> {
    let config = DemoConfig::default();
    let providers = Providers::start(config.providers).await?;
    let mut out = std::io::stdout();
    writeln!(out, "{}\n", providers.banner())?;
    writeln!(
        out,
        "The scripted user speaks {} recorded lines in real time; each is committed as a user turn.\n",
        config.script.len()
    )?;
    let report = voice_demo::cli::print_conversation(&config, &providers).await?;
    writeln!(
        out,
        "\n{} user turns, {} agent replies, {} tool calls, {:.1} s of agent audio, {:.1} s wall",
        report.user_turns().len(),
        report.agent_replies().len(),
        report.tool_calls().len(),
        report.agent_audio.as_secs_f64(),
        report.wall.as_secs_f64()
    )?;
    writeln!(
        out,
        "agent audio: {}\ntranscript:  {}",
        report.audio_path.display(),
        report.transcript_path.display()
    )?;
    Ok(())
}
