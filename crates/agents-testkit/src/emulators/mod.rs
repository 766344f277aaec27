//! Provider emulators: local HTTP and WebSocket servers that speak each provider's documented protocol, check what
//! the client sends, and fail on demand.
//!
//! Every emulator binds `127.0.0.1:0`, serves until its handle is dropped, and is scripted per request. The plugins'
//! tests run against them; `docs/providers/*.md` say which public source each protocol fact comes from.
//!
//! [`EmulatorServer`] is the shared harness: it serves an [`axum::Router`] on a fresh loopback port and stops it
//! when dropped, so a test never leaks a listener.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod deepgram;
pub mod elevenlabs;
pub mod openai;
pub mod openai_realtime;

/// A running emulator: an [`axum::Router`] served on `127.0.0.1:<random port>` until dropped.
#[derive(Debug)]
pub struct EmulatorServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl EmulatorServer {
    /// Binds a fresh loopback port and serves `router` on it.
    ///
    /// Must be called inside a tokio runtime with the `net` driver.
    pub async fn serve(router: axum::Router) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(async move {
                // Either an explicit stop or the handle being dropped ends the server.
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "emulator server stopped with an error");
            }
        });
        Ok(Self {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// The socket address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:<port>`, without a trailing slash.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops accepting connections and ends the open ones; waits for the server task to finish.
    ///
    /// Open WebSocket connections are aborted with the task, which is what a provider outage looks like to a client.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for EmulatorServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}
