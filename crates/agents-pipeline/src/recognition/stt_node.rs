//! The agent's [`AgentHooks::stt_node`] between the STT and the recognition.
//!
//! [`HookedStt`] wraps the session's [`Stt`]: each stream it opens is the provider's stream with its events passed
//! through the hook, so the recognition (turn detection, interruption by words, the committed user message) sees
//! the rewritten events. Audio goes to the provider unchanged. One task per stream pumps audio in (without
//! waiting: a frame the provider cannot take is dropped and counted, as the recognition does) and events through
//! the hook; a second task delivers the hook's output. Both end when either side is dropped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use agents_audio::AudioFrame;
use agents_core::agent::AgentHooks;
use agents_core::stream::{EventStream, FrameInput};
use agents_core::stt::{
    RecognizeOptions, SpeechEvent, Stt, SttCapabilities, SttError, SttStream, SttStreamOptions,
    Transcript,
};

/// How long a flush or end of input may wait for the provider's input queue (events keep piling meanwhile).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// Capacity of the queue between the provider's events and the hook.
const HOOK_CAPACITY: usize = 64;

/// An [`Stt`] whose streams pass their events through [`AgentHooks::stt_node`].
pub(crate) struct HookedStt {
    inner: Arc<dyn Stt>,
    hooks: Arc<dyn AgentHooks>,
}

impl HookedStt {
    /// `inner` with `hooks`' STT node on its streams.
    pub(crate) fn new(inner: Arc<dyn Stt>, hooks: Arc<dyn AgentHooks>) -> Self {
        Self { inner, hooks }
    }
}

#[async_trait]
impl Stt for HookedStt {
    fn label(&self) -> &str {
        self.inner.label()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    fn capabilities(&self) -> SttCapabilities {
        self.inner.capabilities()
    }

    /// One-shot recognition is not a stream of events: passed through unchanged.
    async fn recognize(
        &self,
        audio: &[AudioFrame],
        options: &RecognizeOptions,
    ) -> Result<Transcript, SttError> {
        self.inner.recognize(audio, options).await
    }

    fn stream(&self, options: &SttStreamOptions) -> Result<SttStream, SttError> {
        let inner = self.inner.stream(options)?;
        let (outer, driver) = SttStream::channel();
        let (input, output) = driver.into_parts();
        let (events_tx, events) = EventStream::channel(HOOK_CAPACITY);
        let hooked = self.hooks.stt_node(events);
        tokio::spawn(pump(inner, input, events_tx));
        tokio::spawn(deliver(hooked, output));
        Ok(outer.with_labels(self.inner.label(), self.inner.model()))
    }

    async fn aclose(&self) {
        self.inner.aclose().await;
    }
}

/// Audio in to the provider, provider events out to the hook.
async fn pump(
    mut inner: SttStream,
    mut input: mpsc::Receiver<FrameInput>,
    events: mpsc::Sender<Result<SpeechEvent, SttError>>,
) {
    let mut dropped: u64 = 0;
    loop {
        tokio::select! {
            cmd = input.recv() => match cmd {
                // The outer stream was dropped: stop the provider too.
                None => return,
                Some(FrameInput::Frame(frame)) => {
                    if inner.try_push_frame(frame).is_err() {
                        dropped += 1;
                        if dropped % 100 == 1 {
                            tracing::warn!(dropped, "STT input queue full; audio frames dropped");
                        }
                    }
                }
                Some(FrameInput::Flush) => {
                    let _ = tokio::time::timeout(CONTROL_TIMEOUT, inner.flush()).await;
                }
                Some(FrameInput::EndInput) => {
                    let _ = tokio::time::timeout(CONTROL_TIMEOUT, inner.end_input()).await;
                }
                // FrameInput is non-exhaustive: nothing else is known to forward.
                Some(_) => {}
            },
            event = inner.next() => match event {
                Some(event) => {
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                // The provider ended: the hook's stream ends, then the outer stream.
                None => return,
            },
        }
    }
}

/// The hook's events to the recognition.
async fn deliver(
    mut hooked: EventStream<Result<SpeechEvent, SttError>>,
    output: mpsc::Sender<Result<SpeechEvent, SttError>>,
) {
    while let Some(event) = hooked.next().await {
        if output.send(event).await.is_err() {
            return;
        }
    }
}
