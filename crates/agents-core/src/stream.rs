//! The bounded channels behind every provider stream.
//!
//! A streaming provider call returns a named stream type (`SttStream`, `TtsStream`, `VadStream`) that the caller
//! pushes input into and reads events from; the plugin keeps the other end, a [`StreamDriver`], in the task that
//! talks to the provider. Both directions are bounded: pushing waits when the plugin falls behind (back-pressure)
//! and `try_push` hands the input back instead, so the caller chooses its overflow policy. Dropping the caller's
//! stream closes both directions, which tells the plugin task to stop.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use agents_audio::AudioFrame;

/// Default capacity of a stream's input queue (frames or text chunks).
pub const DEFAULT_INPUT_CAPACITY: usize = 128;
/// Default capacity of a stream's event queue.
pub const DEFAULT_EVENT_CAPACITY: usize = 128;

/// The other side of a stream is gone: for an input push, the provider task ended (read the stream for the
/// reason); for a driver send, the caller dropped the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream closed")]
pub struct StreamClosed;

/// A push that could not be queued; the input is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryPushError<T> {
    /// The input queue is full (the provider task is behind).
    #[error("stream input queue is full")]
    Full(T),
    /// The provider task ended.
    #[error("stream closed")]
    Closed(T),
}

impl<T> TryPushError<T> {
    /// The input that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(t) | Self::Closed(t) => t,
        }
    }
}

impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Caller side of a bidirectional stream: push `I`, read `O`.
pub struct Duplex<I, O> {
    input: mpsc::Sender<I>,
    events: mpsc::Receiver<O>,
}

/// Provider side of a bidirectional stream: receive `I`, send `O`.
pub struct StreamDriver<I, O> {
    input: mpsc::Receiver<I>,
    events: mpsc::Sender<O>,
}

/// A bounded duplex pair with the given capacities (each at least 1).
pub fn duplex<I, O>(
    input_capacity: usize,
    event_capacity: usize,
) -> (Duplex<I, O>, StreamDriver<I, O>) {
    let (in_tx, in_rx) = mpsc::channel(input_capacity.max(1));
    let (ev_tx, ev_rx) = mpsc::channel(event_capacity.max(1));
    (
        Duplex {
            input: in_tx,
            events: ev_rx,
        },
        StreamDriver {
            input: in_rx,
            events: ev_tx,
        },
    )
}

impl<I, O> Duplex<I, O> {
    /// Queues `input`, waiting while the queue is full.
    ///
    /// # Errors
    /// [`StreamClosed`] when the provider task ended.
    pub async fn push(&self, input: I) -> Result<(), StreamClosed> {
        self.input.send(input).await.map_err(|_| StreamClosed)
    }

    /// Queues `input` without waiting.
    ///
    /// # Errors
    /// [`TryPushError`] with the input when the queue is full or the task ended.
    pub fn try_push(&self, input: I) -> Result<(), TryPushError<I>> {
        self.input.try_send(input).map_err(|e| match e {
            mpsc::error::TrySendError::Full(t) => TryPushError::Full(t),
            mpsc::error::TrySendError::Closed(t) => TryPushError::Closed(t),
        })
    }

    /// Queues `wrap(value)` without waiting; on failure `value` itself is handed back.
    ///
    /// # Errors
    /// [`TryPushError`] with `value` when the queue is full or the task ended.
    pub fn try_push_with<T>(
        &self,
        value: T,
        wrap: impl FnOnce(T) -> I,
    ) -> Result<(), TryPushError<T>> {
        match self.input.try_reserve() {
            Ok(permit) => {
                permit.send(wrap(value));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(TryPushError::Full(value)),
            Err(mpsc::error::TrySendError::Closed(())) => Err(TryPushError::Closed(value)),
        }
    }

    /// Whether the provider task ended.
    pub fn is_closed(&self) -> bool {
        self.input.is_closed()
    }

    /// Receives the next event; `None` once the provider task ended and every event was read.
    pub async fn recv(&mut self) -> Option<O> {
        self.events.recv().await
    }
}

impl<I, O> Stream for Duplex<I, O> {
    type Item = O;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<O>> {
        self.events.poll_recv(cx)
    }
}

impl<I, O> fmt::Debug for Duplex<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Duplex")
            .field("closed", &self.input.is_closed())
            .finish_non_exhaustive()
    }
}

impl<I, O> StreamDriver<I, O> {
    /// Receives the next input; `None` once the caller dropped the stream and every input was read.
    pub async fn recv(&mut self) -> Option<I> {
        self.input.recv().await
    }

    /// Receives an input if one is queued.
    pub fn try_recv(&mut self) -> Option<I> {
        self.input.try_recv().ok()
    }

    /// Sends an event, waiting while the caller is behind.
    ///
    /// # Errors
    /// [`StreamClosed`] when the caller dropped the stream: stop work.
    pub async fn send(&self, event: O) -> Result<(), StreamClosed> {
        self.events.send(event).await.map_err(|_| StreamClosed)
    }

    /// Whether the caller dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.events.is_closed()
    }

    /// Resolves when the caller dropped the stream.
    pub async fn closed(&self) {
        self.events.closed().await;
    }

    /// The underlying channel ends, for plugins that split reading and writing across tasks.
    pub fn into_parts(self) -> (mpsc::Receiver<I>, mpsc::Sender<O>) {
        (self.input, self.events)
    }
}

impl<I, O> fmt::Debug for StreamDriver<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDriver")
            .field("closed", &self.events.is_closed())
            .finish_non_exhaustive()
    }
}

/// Input of an audio stream (STT, VAD), as the plugin receives it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FrameInput {
    /// Audio.
    Frame(AudioFrame),
    /// Process what was received so far now (STT: finalize; the stream stays open).
    Flush,
    /// No more audio: finish, deliver the last events, then end the stream.
    EndInput,
}

/// An audio stream: push frames in, read `O` events out. Dropping it cancels the work behind it.
pub struct FrameStream<O> {
    inner: Duplex<FrameInput, O>,
}

impl<O> FrameStream<O> {
    /// A stream and its plugin-side driver with the default capacities.
    pub fn channel() -> (Self, StreamDriver<FrameInput, O>) {
        Self::with_capacity(DEFAULT_INPUT_CAPACITY, DEFAULT_EVENT_CAPACITY)
    }

    /// A stream and its driver with the given queue capacities.
    pub fn with_capacity(input: usize, events: usize) -> (Self, StreamDriver<FrameInput, O>) {
        let (inner, driver) = duplex(input, events);
        (Self { inner }, driver)
    }

    /// Pushes audio, waiting while the plugin is behind.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended (read the stream for why).
    pub async fn push_frame(&self, frame: AudioFrame) -> Result<(), StreamClosed> {
        self.inner.push(FrameInput::Frame(frame)).await
    }

    /// Pushes audio without waiting; on a full queue the frame is handed back so the caller can drop it.
    ///
    /// # Errors
    /// [`TryPushError`] with the frame.
    pub fn try_push_frame(&self, frame: AudioFrame) -> Result<(), TryPushError<AudioFrame>> {
        self.inner.try_push_with(frame, FrameInput::Frame)
    }

    /// Processes what was received so far now.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended.
    pub async fn flush(&self) -> Result<(), StreamClosed> {
        self.inner.push(FrameInput::Flush).await
    }

    /// Ends the input; the stream ends after the last events.
    ///
    /// # Errors
    /// [`StreamClosed`] when the plugin task ended.
    pub async fn end_input(&self) -> Result<(), StreamClosed> {
        self.inner.push(FrameInput::EndInput).await
    }

    /// Whether the plugin task ended.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

impl<O> Stream for FrameStream<O> {
    type Item = O;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<O>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<O> fmt::Debug for FrameStream<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameStream")
            .field("closed", &self.inner.is_closed())
            .finish_non_exhaustive()
    }
}

/// A boxed, sendable stream.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// An output-only stream fed either by a boxed stream or by a bounded channel.
pub struct EventStream<T> {
    source: Source<T>,
}

enum Source<T> {
    Boxed(BoxStream<T>),
    Channel(mpsc::Receiver<T>),
}

impl<T: Send + 'static> EventStream<T> {
    /// A stream over `stream`.
    pub fn new(stream: impl Stream<Item = T> + Send + 'static) -> Self {
        Self {
            source: Source::Boxed(Box::pin(stream)),
        }
    }

    /// A stream fed by the returned bounded sender; it ends when every sender is dropped.
    pub fn channel(capacity: usize) -> (mpsc::Sender<T>, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            tx,
            Self {
                source: Source::Channel(rx),
            },
        )
    }

    /// A stream over the given items.
    pub fn from_items(items: Vec<T>) -> Self {
        Self::new(futures::stream::iter(items))
    }
}

impl<T> Stream for EventStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match &mut self.source {
            Source::Boxed(s) => s.as_mut().poll_next(cx),
            Source::Channel(rx) => rx.poll_recv(cx),
        }
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn duplex_round_trip_and_close() {
        let (mut caller, mut driver) = duplex::<u32, String>(1, 4);
        caller.push(1).await.unwrap();
        assert!(matches!(caller.try_push(2), Err(TryPushError::Full(2))));
        assert_eq!(driver.recv().await, Some(1));
        driver.send("one".into()).await.unwrap();
        assert_eq!(caller.next().await.as_deref(), Some("one"));
        drop(driver);
        assert_eq!(caller.push(3).await, Err(StreamClosed));
        assert!(caller.is_closed());
        assert_eq!(caller.next().await, None);
    }

    #[tokio::test]
    async fn driver_sees_caller_drop() {
        let (caller, driver) = duplex::<u32, u32>(4, 4);
        drop(caller);
        driver.closed().await;
        assert_eq!(driver.send(1).await, Err(StreamClosed));
    }

    #[tokio::test]
    async fn frame_stream_hands_back_the_frame_when_full_or_closed() {
        use agents_audio::SampleRate;
        let frame = AudioFrame::new(vec![1, 2, 3], SampleRate::HZ_16000, 1).unwrap();
        let (stream, mut driver) = FrameStream::<u8>::with_capacity(1, 1);
        stream.try_push_frame(frame.clone()).unwrap();
        match stream.try_push_frame(frame.clone()) {
            Err(TryPushError::Full(f)) => assert_eq!(f, frame),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(driver.recv().await, Some(FrameInput::Frame(frame.clone())));
        stream.flush().await.unwrap();
        assert_eq!(driver.recv().await, Some(FrameInput::Flush));
        drop(driver);
        assert!(stream.is_closed());
        assert!(matches!(
            stream.try_push_frame(frame),
            Err(TryPushError::Closed(_))
        ));
        assert_eq!(stream.end_input().await, Err(StreamClosed));
    }

    #[tokio::test]
    async fn event_stream_sources() {
        let s = EventStream::from_items(vec![1, 2, 3]);
        assert_eq!(s.collect::<Vec<_>>().await, vec![1, 2, 3]);
        let (tx, s) = EventStream::channel(2);
        tx.send(7).await.unwrap();
        drop(tx);
        assert_eq!(s.collect::<Vec<_>>().await, vec![7]);
    }
}
