//! Small helpers shared by the fakes.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

/// Locks a mutex, ignoring poisoning (the fakes only keep plain records behind their locks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sending side of [`generate`].
pub(crate) struct Yielder<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Yielder<T> {
    /// Yields `item`; `false` when the stream was dropped (stop work).
    pub(crate) async fn send(&self, item: T) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// Resolves when the stream was dropped.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// A stream produced by an async body (like `async-stream`), without spawning: the body runs while the stream is
/// polled, and dropping the stream drops the body.
pub(crate) fn generate<T, F, Fut>(body: F) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(Yielder<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(1);
    let fut = body(Yielder { tx });
    let items = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let driver = futures::stream::once(fut).filter_map(|()| async { None });
    futures::stream::select(items, driver)
}

/// Splits text into words (on whitespace).
pub(crate) fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}
