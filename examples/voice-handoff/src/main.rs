//! Voice handoff: a greeter hands the call to a weather-and-time specialist after its transition line.
//!
//! Run: `cargo run -p voice-handoff`
//! Env vars (all optional): `OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, `ELEVENLABS_API_KEY` (or `ELEVEN_API_KEY`): each
//! provider whose key is set is the real service, the others run on the bundled emulators (the banner says which).
//!
//! The session is served by the WebSocket transport on 127.0.0.1 and a scripted client speaks the voice demo's three
//! recorded lines. The greeter answers the weather question with its transition line and `transfer_to_specialist`;
//! the specialist (with the conversation so far) answers with its tools, then handles the rest. Prints the
//! transcript with the tool calls (the transfer included) and the per-turn latency; writes
//! `target/voice-handoff/agent.wav` and `transcript.txt`. Exit code 1 when the conversation did not complete.

use std::io::Write;
use std::process::ExitCode;

use voice_demo::{DemoConfig, Providers};

#[tokio::main]
async fn main() -> ExitCode {
    voice_demo::cli::exit_code("voice-handoff", run().await)
}

async fn run() -> anyhow::Result<()> {
    let mut config = DemoConfig {
        scenario: voice_handoff::scenario(),
        ..DemoConfig::default()
    };
    config.out_dir = config.out_dir.with_file_name("voice-handoff");
    let providers = Providers::start(config.providers).await?;
    let mut out = std::io::stdout();
    writeln!(out, "{}\n", providers.banner())?;
    let report = voice_demo::cli::print_conversation(&config, &providers).await?;
    writeln!(
        out,
        "\nagent audio: {}\ntranscript:  {}",
        report.audio_path.display(),
        report.transcript_path.display()
    )?;
    Ok(())
}
