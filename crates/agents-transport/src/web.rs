//! The browser client page, served next to the WebSocket endpoint.
//!
//! [`router`] serves a self-contained page (no build step, no third-party script) that talks to the
//! `/ws` endpoint of the same server with the protocol of `docs/transports/websocket.md`:
//!
//! | Path | Content |
//! |---|---|
//! | `/` (and `/index.html`) | the page: connect button, live user/agent transcripts, agent and user state, per-turn latency table, tool calls, errors |
//! | `/client.js` | the client as an ES module (`AgentClient`, `mountPage`) |
//! | `/capture-worklet.js` | AudioWorklet: microphone downmix, resampling to 16 kHz, PCM16 LE, 20 ms chunks |
//! | `/playback-worklet.js` | AudioWorklet: ring buffer of agent audio; `clear` empties it at once; reports the played position |
//!
//! The files are compiled into the binary with `include_str!`. Merge the router with the transport's
//! WebSocket router so the page and `/ws` share an origin:
//!
//! ```
//! let app: axum::Router = agents_transport::web::router();
//! // app.merge(<the WebSocket server's router>) and serve it.
//! # let _ = app;
//! ```
//!
//! URL parameters of the page and the `client_report` test hook: `docs/transports/browser.md`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page (`index.html`).
pub const INDEX_HTML: &str = include_str!("../web/index.html");
/// The client module (`client.js`).
pub const CLIENT_JS: &str = include_str!("../web/client.js");
/// The capture AudioWorklet processor (`capture-worklet.js`).
pub const CAPTURE_WORKLET_JS: &str = include_str!("../web/capture-worklet.js");
/// The playback AudioWorklet processor (`playback-worklet.js`).
pub const PLAYBACK_WORKLET_JS: &str = include_str!("../web/playback-worklet.js");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// Routes serving the browser client: `/`, `/index.html`, `/client.js`, `/capture-worklet.js` and
/// `/playback-worklet.js`. Generic over the router state so it merges into any application router.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/index.html", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/client.js", get(|| async { asset(JS, CLIENT_JS) }))
        .route(
            "/capture-worklet.js",
            get(|| async { asset(JS, CAPTURE_WORKLET_JS) }),
        )
        .route(
            "/playback-worklet.js",
            get(|| async { asset(JS, PLAYBACK_WORKLET_JS) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_references_the_served_modules() {
        assert!(INDEX_HTML.contains("./client.js"));
        assert!(CLIENT_JS.contains("\"capture-worklet.js\""));
        assert!(CLIENT_JS.contains("\"playback-worklet.js\""));
        assert!(CAPTURE_WORKLET_JS.contains("registerProcessor(\"agents-capture\""));
        assert!(PLAYBACK_WORKLET_JS.contains("registerProcessor(\"agents-playback\""));
        assert!(CLIENT_JS.contains("\"agents-capture\""));
        assert!(CLIENT_JS.contains("\"agents-playback\""));
    }
}
