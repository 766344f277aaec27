//! Voice server: the browser page, `/ws` and Twilio Media Streams on one port, answered by the weather-and-time
//! agent.
//!
//! Run: `cargo run -p voice-server`, then open the printed `http://127.0.0.1:<port>/` in a browser (allow the
//! microphone), or point a Twilio number's voice webhook at `<public URL>/twilio/voice`.
//! Env vars (all optional): `PORT` (default 8080; binds 127.0.0.1, put a TLS proxy or tunnel in front for Twilio),
//! `TWILIO_PUBLIC_URL` (the `https://` URL Twilio reaches this server at; the TwiML answer streams to
//! `wss://<that host>/twilio`), `AGENT_TOKEN` (required on `/ws`: the page takes it as `?access_token=`),
//! `OPENAI_API_KEY`, `DEEPGRAM_API_KEY`, `ELEVENLABS_API_KEY` (or `ELEVEN_API_KEY`): each provider whose key is set
//! is the real service, the others the bundled emulators (announced at start; offline the STT emulator cannot
//! understand speech and the LLM emulator gives one fixed answer, so set the keys to talk to it).
//! Ctrl-C stops the server.

use std::io::Write;
use std::process::ExitCode;

use agents::core::ApiKey;
use voice_demo::{ProviderChoice, Providers};

#[tokio::main]
async fn main() -> ExitCode {
    voice_demo::cli::exit_code("voice-server", run().await)
}

async fn run() -> anyhow::Result<()> {
    let port = voice_demo::cli::port_from_env(8080)?;
    let token = ApiKey::from_env("AGENT_TOKEN");
    let public_url = std::env::var("TWILIO_PUBLIC_URL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let providers = Providers::start(ProviderChoice::FromEnv).await?;
    let server = voice_agent_tools::server(&providers, token.clone()).await?;
    let router = voice_server::router(&server, &providers, public_url.clone()).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "{}\n", providers.banner())?;
    writeln!(out, "browser page:   http://{addr}/")?;
    writeln!(out, "WebSocket:      ws://{addr}/ws")?;
    writeln!(
        out,
        "Twilio webhook: {}/twilio/voice (POST; media stream at /twilio)",
        public_url.as_deref().unwrap_or(&format!("http://{addr}"))
    )?;
    if token.is_some() {
        writeln!(
            out,
            "/ws needs the AGENT_TOKEN (open the page with ?access_token=<token>)"
        )?;
    }
    writeln!(out, "Ctrl-C to stop.")?;
    server
        .serve_router(listener, router, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
