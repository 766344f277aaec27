//! Voice agent with tools: the weather-and-time agent served over the WebSocket transport.
//!
//! Run: `cargo run -p voice-agent-tools`, then connect a client to the printed `ws://` URL (the browser page of
//! `voice-server`, or `agents::transport::client::WsClient`; protocol in `docs/transports/websocket.md`).
//! Env vars (all optional): `PORT` (default 8080; the server binds 127.0.0.1), `AGENT_TOKEN` (clients must send
//! `Authorization: Bearer <token>` or `?access_token=<token>`), `OPENAI_API_KEY`, `DEEPGRAM_API_KEY`,
//! `ELEVENLABS_API_KEY` (or `ELEVEN_API_KEY`): each provider whose key is set is the real service, the others run on
//! the bundled emulators, announced at start. Offline the emulators cannot understand speech (the STT emulator only
//! returns scripted words) and the LLM emulator gives one fixed answer: set the keys for a real conversation.
//! Ctrl-C stops the server (every session closes with reason `shutdown`).

use std::io::Write;
use std::process::ExitCode;

use agents::core::ApiKey;
use voice_demo::{ProviderChoice, Providers};

#[tokio::main]
async fn main() -> ExitCode {
    voice_demo::cli::exit_code("voice-agent-tools", run().await)
}

async fn run() -> anyhow::Result<()> {
    let port = voice_demo::cli::port_from_env(8080)?;
    let token = ApiKey::from_env("AGENT_TOKEN");
    let providers = Providers::start(ProviderChoice::FromEnv).await?;
    let server = voice_agent_tools::server(&providers, token.clone()).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "{}\n", providers.banner())?;
    writeln!(out, "weather-and-time agent: ws://{addr}/ws")?;
    if token.is_some() {
        writeln!(
            out,
            "clients must send the AGENT_TOKEN (Authorization: Bearer, or ?access_token=)"
        )?;
    }
    writeln!(out, "Ctrl-C to stop.")?;
    voice_agent_tools::serve(&server, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
