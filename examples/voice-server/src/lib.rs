//! One port for every client of the weather-and-time agent: the browser page (`/`, `agents::transport::web`), the
//! WebSocket endpoint it talks to (`/ws`, the voice-agent-tools server) and Twilio Media Streams (`/twilio` and
//! the TwiML webhook `POST /twilio/voice`, `agents::transport::twilio`).

use agents::pipeline::TurnDetectionMode;
use agents::transport::server::TransportServer;
use agents::transport::twilio::{self, CallInfo, CallSetup, TwilioOptions};
use voice_demo::{Providers, assistant_agent};

/// The routes of `server` (WebSocket `/ws`), the browser page and Twilio, merged.
///
/// `public_url` (e.g. `https://agent.example.com`) is where Twilio reaches this server; the TwiML answer of
/// `POST /twilio/voice` points the call's stream at `<public_url>/twilio` (without it, at the request's host).
///
/// # Errors
/// When the Silero model cannot be loaded.
pub async fn router(
    server: &TransportServer,
    providers: &Providers,
    public_url: Option<String>,
) -> anyhow::Result<axum::Router> {
    let vad = voice_demo::load_vad().await?;
    let new_session = voice_demo::session_factory(providers, vad, TurnDetectionMode::Vad);
    let handler = move |_call: CallInfo| {
        let session = new_session();
        async move {
            let agent = assistant_agent().map_err(|e| -> twilio::BoxError { e.into() })?;
            Ok(CallSetup::new(session, agent))
        }
    };
    let mut options = TwilioOptions::default();
    if let Some(url) = public_url {
        options = options.with_public_url(stream_url(&url));
    }
    Ok(agents::transport::web::router()
        .merge(server.router())
        .merge(twilio::router_with_options(handler, options)))
}

/// The media stream URL for a public base URL: `https://host` → `wss://host/twilio` (`http` → `ws`).
pub fn stream_url(public_url: &str) -> String {
    let base = public_url.trim().trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}/twilio")
}

#[cfg(test)]
mod tests {
    use super::stream_url;

    #[test]
    fn the_stream_url_follows_the_public_url_scheme() {
        assert_eq!(
            stream_url("https://a.example.com/"),
            "wss://a.example.com/twilio"
        );
        assert_eq!(
            stream_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/twilio"
        );
        assert_eq!(
            stream_url("wss://b.example.com"),
            "wss://b.example.com/twilio"
        );
    }
}
