//! The weather-and-time agent of the voice demo, served over the WebSocket transport: one session per connection
//! (protocol v1, `docs/transports/websocket.md`), voice activity (Silero) ends the user's turns, typed
//! `{"type":"text"}` messages work too.

use std::future::Future;

use agents::core::ApiKey;
use agents::pipeline::TurnDetectionMode;
use agents::transport::server::{SessionRequest, TransportServer};
use agents_testkit::emulators::openai::ChatScript;
use voice_demo::{Providers, assistant_agent};

/// What the offline OpenAI emulator answers to every request (it cannot understand anything).
pub const OFFLINE_ANSWER: &str = "I'm the bundled OpenAI emulator, so I can't really answer. Set OPENAI_API_KEY for real answers.";

/// Builds the server: the providers (with the offline LLM's fixed answer when it is the emulator), one Silero
/// VAD shared by every session, and the optional bearer token.
///
/// # Errors
/// When the Silero model cannot be loaded.
pub async fn server(
    providers: &Providers,
    token: Option<ApiKey>,
) -> anyhow::Result<TransportServer> {
    if let Some((emu, _)) = &providers.emulators.openai {
        emu.set_default_chat(ChatScript::text(
            OFFLINE_ANSWER
                .split_inclusive(' ')
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ));
    }
    let vad = voice_demo::load_vad().await?;
    let new_session = voice_demo::session_factory(providers, vad, TurnDetectionMode::Vad);
    let mut builder = TransportServer::builder(move |_req: SessionRequest| {
        let session = new_session();
        async move { Ok::<_, anyhow::Error>((session, assistant_agent()?)) }
    });
    if let Some(token) = token {
        builder = builder.token(token);
    }
    Ok(builder.build())
}

/// Serves `server` on `listener` until `shutdown`.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    server: &TransportServer,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server.serve(listener, shutdown).await
}
