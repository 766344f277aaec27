//! The WebSocket server: one [`AgentSession`] per connection, built by the application's factory from the
//! client's hello.
//!
//! ```no_run
//! use agents_core::{Agent, ApiKey};
//! use agents_pipeline::AgentSession;
//! use agents_transport::server::{SessionRequest, TransportServer};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = TransportServer::builder(|req: SessionRequest| async move {
//!     // Build the session for this client (providers, options) from req.input / req.agent / req.metadata.
//!     let session = AgentSession::builder().build();
//!     Ok::<_, std::convert::Infallible>((session, Agent::new("You are a helpful assistant.")))
//! })
//! .token(ApiKey::new("secret"))
//! .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! // ... `stop.send(())` (on ctrl-c, for example) closes every session and returns.
//! # drop(stop);
//! server.serve(listener, async move { let _ = stopped.await; }).await
//! # }
//! ```

mod connection;
mod input;
mod output;
mod writer;

pub use input::{InputError, Pushed, WsAudioInput};
pub use output::{WsAudioOutput, WsTextOutput};

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agents_core::{Agent, ApiKey};
use agents_pipeline::AgentSession;
use axum::Router;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::{AudioFormat, Hello};

/// An error of the application's session factory.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type FactoryFuture = Pin<Box<dyn Future<Output = Result<(AgentSession, Agent), BoxError>> + Send>>;
type Factory = Arc<dyn Fn(SessionRequest) -> FactoryFuture + Send + Sync>;
type DtmfHandler = Arc<dyn Fn(&AgentSession, &str) + Send + Sync>;

/// What a client asked for in its hello: given to the application's factory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionRequest {
    /// The id the server gave the session (sent to the client in `ready`).
    pub session_id: String,
    /// Format of the client's audio.
    pub input: AudioFormat,
    /// Format of the audio the client wants.
    pub output: AudioFormat,
    /// The agent the client asked for.
    pub agent: Option<String>,
    /// The client's metadata.
    pub metadata: Option<serde_json::Value>,
}

impl SessionRequest {
    pub(crate) fn from_hello(session_id: String, hello: Hello) -> Self {
        Self {
            session_id,
            input: hello.input,
            output: hello.output,
            agent: hello.agent,
            metadata: hello.metadata,
        }
    }
}

/// Limits and timings of the server (defaults from the protocol, `docs/transports/websocket.md`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Largest text message (default 64 KiB); larger ones get `message_too_large`.
    pub max_text_bytes: usize,
    /// Largest binary message (default 64 KiB); larger ones get `message_too_large`.
    pub max_binary_bytes: usize,
    /// Hard limit of the WebSocket layer (default 1 MiB): a larger message ends the connection.
    pub max_frame_bytes: usize,
    /// Sustained message rate (default 200 per second).
    pub messages_per_second: u32,
    /// Burst above the rate (default 400 messages).
    pub message_burst: u32,
    /// Errors tolerated within `abuse_window` before the connection is closed (default 50).
    pub max_errors: usize,
    /// Window of `max_errors` (default 10 s).
    pub abuse_window: Duration,
    /// Time allowed for the hello (default 10 s).
    pub hello_timeout: Duration,
    /// A connection with no message for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// Interval of the server's pings (default 20 s).
    pub ping_interval: Duration,
    /// How far agent audio is sent ahead of real time (default 200 ms).
    pub output_lead: Duration,
    /// Audio the output queues ahead of playback before `capture_frame` waits (default 1 s).
    pub output_buffer: Duration,
    /// A socket write that takes longer than this ends the connection (default 10 s).
    pub write_timeout: Duration,
    /// User audio queued towards the session before frames are dropped (default 3 s; a client must not send
    /// faster than real time, this absorbs stalls of the session under load).
    pub input_buffer: Duration,
    /// Bound of the session's close when a client leaves (default 15 s).
    pub close_timeout: Duration,
    /// Most concurrent sessions (default 10 000); more connections get HTTP 503.
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_bytes: 64 * 1024,
            max_binary_bytes: 64 * 1024,
            max_frame_bytes: 1024 * 1024,
            messages_per_second: 200,
            message_burst: 400,
            max_errors: 50,
            abuse_window: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            output_lead: Duration::from_millis(200),
            output_buffer: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
            input_buffer: Duration::from_secs(3),
            close_timeout: Duration::from_secs(15),
            max_sessions: 10_000,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {
        impl Limits {
            $(#[$doc] pub fn $name(mut self, v: $ty) -> Self { self.$name = v; self })*
        }
    };
}

setter! {
    /// Sets [`Limits::max_text_bytes`].
    max_text_bytes: usize,
    /// Sets [`Limits::max_binary_bytes`].
    max_binary_bytes: usize,
    /// Sets [`Limits::max_frame_bytes`].
    max_frame_bytes: usize,
    /// Sets [`Limits::messages_per_second`].
    messages_per_second: u32,
    /// Sets [`Limits::message_burst`].
    message_burst: u32,
    /// Sets [`Limits::max_errors`].
    max_errors: usize,
    /// Sets [`Limits::abuse_window`].
    abuse_window: Duration,
    /// Sets [`Limits::hello_timeout`].
    hello_timeout: Duration,
    /// Sets [`Limits::idle_timeout`].
    idle_timeout: Duration,
    /// Sets [`Limits::ping_interval`].
    ping_interval: Duration,
    /// Sets [`Limits::output_lead`].
    output_lead: Duration,
    /// Sets [`Limits::output_buffer`].
    output_buffer: Duration,
    /// Sets [`Limits::write_timeout`].
    write_timeout: Duration,
    /// Sets [`Limits::input_buffer`].
    input_buffer: Duration,
    /// Sets [`Limits::close_timeout`].
    close_timeout: Duration,
    /// Sets [`Limits::max_sessions`].
    max_sessions: usize,
}

/// Live counters of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerStats {
    /// WebSocket connections open (hello phase included).
    pub connections: usize,
    /// Sessions running (created by the factory and not yet closed).
    pub sessions: usize,
    /// Tasks of the server alive (connections, writers, players, event pumps, speech watchers).
    pub tasks: usize,
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    sessions: AtomicUsize,
}

/// Decrements a counter when dropped.
pub(crate) struct CountGuard<'a>(&'a AtomicUsize);

impl<'a> CountGuard<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::AcqRel);
        Self(c)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) struct Inner {
    token: Option<ApiKey>,
    pub(crate) limits: Limits,
    pub(crate) factory: Factory,
    pub(crate) dtmf: Option<DtmfHandler>,
    pub(crate) tasks: TaskTracker,
    counters: Counters,
    pub(crate) shutdown: CancellationToken,
    path: String,
    bind: Option<SocketAddr>,
}

impl Inner {
    pub(crate) fn connection_guard(&self) -> CountGuard<'_> {
        CountGuard::new(&self.counters.connections)
    }
    pub(crate) fn session_guard(&self) -> CountGuard<'_> {
        CountGuard::new(&self.counters.sessions)
    }
}

/// A WebSocket server running one [`AgentSession`] per connection; see the [module documentation](self) and
/// `docs/transports/websocket.md`. Cheap to clone.
#[derive(Clone)]
pub struct TransportServer {
    inner: Arc<Inner>,
}

impl fmt::Debug for TransportServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportServer")
            .field("path", &self.inner.path)
            .field("token", &self.inner.token)
            .field("limits", &self.inner.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Builds a [`TransportServer`].
pub struct TransportServerBuilder {
    factory: Factory,
    token: Option<ApiKey>,
    limits: Limits,
    dtmf: Option<DtmfHandler>,
    path: String,
    bind: Option<SocketAddr>,
}

impl fmt::Debug for TransportServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportServerBuilder")
            .field("token", &self.token)
            .field("limits", &self.limits)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TransportServerBuilder {
    /// Requires `Authorization: Bearer <token>` (or `?access_token=<token>`) on the upgrade request.
    pub fn token(mut self, token: ApiKey) -> Self {
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The WebSocket path (default `/ws`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The address [`TransportServer::run`] binds.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Called with each DTMF digit a client sends (the default only logs it).
    pub fn on_dtmf(mut self, f: impl Fn(&AgentSession, &str) + Send + Sync + 'static) -> Self {
        self.dtmf = Some(Arc::new(f));
        self
    }

    /// The server.
    pub fn build(self) -> TransportServer {
        TransportServer {
            inner: Arc::new(Inner {
                token: self.token,
                limits: self.limits,
                factory: self.factory,
                dtmf: self.dtmf,
                tasks: TaskTracker::new(),
                counters: Counters::default(),
                shutdown: CancellationToken::new(),
                path: self.path,
                bind: self.bind,
            }),
        }
    }
}

#[derive(serde::Deserialize)]
struct AuthQuery {
    access_token: Option<String>,
}

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(token: &ApiKey, headers: &HeaderMap, query: Option<&str>) -> bool {
    let expected = token.expose().as_bytes();
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    from_header.is_some_and(|t| constant_time_eq(t.as_bytes(), expected))
        || query.is_some_and(|t| constant_time_eq(t.as_bytes(), expected))
}

async fn upgrade(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(query): Query<AuthQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(token) = &inner.token
        && !authorized(token, &headers, query.access_token.as_deref())
    {
        tracing::info!("websocket upgrade refused: missing or wrong token");
        return (StatusCode::UNAUTHORIZED, "missing or invalid token").into_response();
    }
    if inner.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if inner.counters.connections.load(Ordering::Acquire) >= inner.limits.max_sessions {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many sessions").into_response();
    }
    let limits = &inner.limits;
    let hard = limits
        .max_frame_bytes
        .max(limits.max_text_bytes)
        .max(limits.max_binary_bytes);
    let tracker = inner.tasks.clone();
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| tracker.track_future(connection::run(socket, inner)))
}

impl TransportServer {
    /// A builder around the application's session factory, called once per connection after a valid hello. The
    /// factory returns the session (not started) and the agent to start it with; an error is sent to the client
    /// (`session_failed`) and the connection closed with 1011.
    pub fn builder<F, Fut, E>(factory: F) -> TransportServerBuilder
    where
        F: Fn(SessionRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(AgentSession, Agent), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let factory: Factory = Arc::new(move |req| {
            let fut = factory(req);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        TransportServerBuilder {
            factory,
            token: None,
            limits: Limits::default(),
            dtmf: None,
            path: "/ws".to_owned(),
            bind: None,
        }
    }

    /// The router serving the WebSocket endpoint; merge it with other routes (a static page, Twilio).
    pub fn router(&self) -> Router {
        Router::new()
            .route(&self.inner.path, get(upgrade))
            .with_state(self.inner.clone())
    }

    /// Serves [`TransportServer::router`] on `listener` until `shutdown` completes, then closes every session
    /// (reason `shutdown`, WebSocket close 1001) and waits (bounded by `Limits::close_timeout`) for their tasks.
    ///
    /// # Errors
    /// The listener's I/O error.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_router(listener, self.router(), shutdown).await
    }

    /// Like [`TransportServer::serve`] with a router of yours (which should include [`TransportServer::router`]).
    ///
    /// # Errors
    /// The listener's I/O error.
    pub async fn serve_router(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let token = self.inner.shutdown.clone();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {}
                    () = token.cancelled() => {}
                }
                // Upgraded connections are not HTTP requests: tell them to close their sessions now.
                token.cancel();
            })
            .await;
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        let _ =
            tokio::time::timeout(self.inner.limits.close_timeout, self.inner.tasks.wait()).await;
        result
    }

    /// Binds the builder's address (default `127.0.0.1:8080`) and serves until `shutdown`.
    ///
    /// # Errors
    /// Binding or serving failed.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self
            .inner
            .bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%addr, path = %self.inner.path, "websocket transport listening");
        self.serve(listener, shutdown).await
    }

    /// Closes every session (reason `shutdown`) and stops [`TransportServer::serve`].
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Live counters (connections, sessions, tasks).
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            connections: self.inner.counters.connections.load(Ordering::Acquire),
            sessions: self.inner.counters.sessions.load(Ordering::Acquire),
            tasks: self.inner.tasks.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_or_query_token_is_accepted_and_nothing_else() {
        let token = ApiKey::new("s3cret");
        let mut h = HeaderMap::new();
        assert!(!authorized(&token, &h, None));
        assert!(authorized(&token, &h, Some("s3cret")));
        assert!(!authorized(&token, &h, Some("s3cre")));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(authorized(&token, &h, None));
        h.insert(
            header::AUTHORIZATION,
            "Bearer wrong".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(!authorized(&token, &h, None));
        h.insert(
            header::AUTHORIZATION,
            "Basic s3cret".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(!authorized(&token, &h, None));
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let server = TransportServer::builder(|_req: SessionRequest| async move {
            Err::<(AgentSession, Agent), BoxError>("unused".into())
        })
        .token(ApiKey::new("s3cret-token"))
        .build();
        let text = format!("{server:?}");
        assert!(!text.contains("s3cret-token"), "{text}");
    }
}
