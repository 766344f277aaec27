//! Mixing several audio sources into one stream of fixed-size blocks.
//!
//! A [`Mixer`] has one output format (rate, channels) and block size. Sources deliver
//! [`AudioFrame`]s of that format, of any size; each has a volume that can be changed at any
//! time through its [`SourceHandle`]. Every block is the sum of the sources' samples, each
//! multiplied by its volume, rounded to the nearest integer (halves away from zero) and
//! saturated to the 16-bit range.
//!
//! Sources:
//! - [`Mixer::add_channel`]: a bounded channel; push frames with [`MixerSender`] (`send().await`
//!   for back-pressure, `try_send` from synchronous code). Dropping the sender ends the source.
//! - [`Mixer::add_stream`]: any `Stream<Item = AudioFrame>`.
//! - [`Mixer::add_iter`]: any iterator of frames (offline use and tests).
//! - [`Mixer::add_source`]: anything implementing [`MixerSource`].
//!
//! Two ways to run it:
//! - **Synchronously**, [`Mixer::mix_block`] polls every source once, without waiting, and
//!   returns the next block.
//! - **Asynchronously**, the mixer is a [`Stream`] of blocks: for each block it waits until every
//!   source has a full block or has ended, but no longer than [`Mixer::source_timeout`] (by
//!   default one block's duration) after it started waiting; needs a tokio runtime with timers.
//!
//! **Late sources**: a source that has not delivered a full block when the block is mixed (at
//! once for `mix_block`, at the timeout for the stream) contributes the samples it has and silence
//! for the rest of that block; nothing it delivers later is dropped, it is mixed into later
//! blocks. **Ended sources** (a closed channel, a finished stream or iterator) contribute their
//! remaining samples and are then removed. When no source is left, `mix_block` returns `None`
//! and the stream ends. **Format mismatch**: a frame whose rate or channel count is not the
//! mixer's is refused with [`MixerError::FormatMismatch`]; that source is removed and its
//! buffered samples are dropped, the other sources are unaffected.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;

use crate::frame::{AudioFrame, AudioFrameError, SampleRate};

/// A pull-based source of frames for the [`Mixer`].
pub trait MixerSource: Send {
    /// The next frame: `Ready(Some)` with audio, `Ready(None)` when the source has ended,
    /// `Pending` when nothing is available yet (the task in `cx` is woken when there is).
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<AudioFrame>>;
}

struct StreamSource<S>(S);

impl<S: Stream<Item = AudioFrame> + Send + Unpin> MixerSource for StreamSource<S> {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<AudioFrame>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

struct IterSource<I>(I);

impl<I: Iterator<Item = AudioFrame> + Send> MixerSource for IterSource<I> {
    fn poll_frame(&mut self, _cx: &mut Context<'_>) -> Poll<Option<AudioFrame>> {
        Poll::Ready(self.0.next())
    }
}

struct ChannelSource(mpsc::Receiver<AudioFrame>);

impl MixerSource for ChannelSource {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<AudioFrame>> {
        self.0.poll_recv(cx)
    }
}

/// The sending side of a channel source ([`Mixer::add_channel`]).
#[derive(Debug, Clone)]
pub struct MixerSender(mpsc::Sender<AudioFrame>);

impl MixerSender {
    /// Sends a frame, waiting while the channel is full.
    ///
    /// # Errors
    /// Gives the frame back when the mixer has dropped the source.
    pub async fn send(&self, frame: AudioFrame) -> Result<(), AudioFrame> {
        self.0.send(frame).await.map_err(|e| e.0)
    }

    /// Sends a frame without waiting.
    ///
    /// # Errors
    /// Gives the frame back when the channel is full or the mixer has dropped the source.
    pub fn try_send(&self, frame: AudioFrame) -> Result<(), AudioFrame> {
        self.0.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f) => f,
        })
    }
}

/// Identifies a source within its mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(u64);

/// Adjusts one source's volume; cheap to clone and usable from any task.
#[derive(Debug, Clone)]
pub struct SourceHandle {
    id: SourceId,
    volume: Arc<AtomicU32>,
}

impl SourceHandle {
    /// The source's id.
    pub fn id(&self) -> SourceId {
        self.id
    }

    /// Sets the linear gain (1.0 = unchanged, 0.0 = muted). Negative or non-finite values are
    /// treated as 0.0. Takes effect from the next block.
    pub fn set_volume(&self, volume: f32) {
        let v = if volume.is_finite() && volume > 0.0 {
            volume
        } else {
            0.0
        };
        self.volume.store(v.to_bits(), Ordering::Relaxed);
    }

    /// The current linear gain.
    pub fn volume(&self) -> f32 {
        f32::from_bits(self.volume.load(Ordering::Relaxed))
    }
}

/// Why mixing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MixerError {
    /// A source delivered a frame of another format; the source has been removed.
    #[error(
        "mixer source {source_id:?} sent {actual_rate} x{actual_channels}, the mixer runs at {expected_rate} x{expected_channels}"
    )]
    FormatMismatch {
        /// The offending source.
        source_id: SourceId,
        /// The mixer's rate.
        expected_rate: SampleRate,
        /// The mixer's channel count.
        expected_channels: u16,
        /// The frame's rate.
        actual_rate: SampleRate,
        /// The frame's channel count.
        actual_channels: u16,
    },
    /// The mixer was configured with zero channels or a zero block size.
    #[error("invalid mixer configuration")]
    Config(#[source] AudioFrameError),
}

/// Consecutive empty frames after which a source counts as late for the current block.
const MAX_EMPTY_FRAMES: usize = 16;

struct Slot {
    id: SourceId,
    source: Box<dyn MixerSource>,
    volume: Arc<AtomicU32>,
    /// Interleaved samples received but not mixed yet.
    buf: Vec<i16>,
    ended: bool,
}

/// Mixes sources into blocks (see the module documentation).
pub struct Mixer {
    sample_rate: SampleRate,
    num_channels: u16,
    block: usize,
    timeout: Duration,
    next_id: u64,
    slots: Vec<Slot>,
    acc: Vec<f32>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer")
            .field("sample_rate", &self.sample_rate)
            .field("num_channels", &self.num_channels)
            .field("block", &self.block)
            .field("sources", &self.slots.len())
            .finish()
    }
}

impl Mixer {
    /// A mixer producing blocks of `block_samples_per_channel` samples per channel.
    ///
    /// # Errors
    /// [`MixerError::Config`] for zero channels or a zero block size.
    pub fn new(
        sample_rate: SampleRate,
        num_channels: u16,
        block_samples_per_channel: usize,
    ) -> Result<Self, MixerError> {
        if num_channels == 0 {
            return Err(MixerError::Config(AudioFrameError::ZeroChannels));
        }
        if block_samples_per_channel == 0 {
            return Err(MixerError::Config(AudioFrameError::ZeroChunkSize));
        }
        let nanos =
            block_samples_per_channel as u128 * 1_000_000_000 / u128::from(sample_rate.hz());
        Ok(Self {
            sample_rate,
            num_channels,
            block: block_samples_per_channel,
            timeout: Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
            next_id: 0,
            slots: Vec::new(),
            acc: vec![0.0; block_samples_per_channel * usize::from(num_channels)],
            deadline: None,
        })
    }

    /// How long the stream waits for late sources before mixing a block without them.
    pub fn with_source_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The late-source timeout of the stream (default: one block's duration).
    pub fn source_timeout(&self) -> Duration {
        self.timeout
    }

    /// Output rate.
    pub fn sample_rate(&self) -> SampleRate {
        self.sample_rate
    }

    /// Output channels.
    pub fn num_channels(&self) -> u16 {
        self.num_channels
    }

    /// Samples per channel in every block.
    pub fn block_samples_per_channel(&self) -> usize {
        self.block
    }

    /// Number of sources still attached.
    pub fn source_count(&self) -> usize {
        self.slots.len()
    }

    /// Adds a source at `volume`.
    pub fn add_source(&mut self, source: impl MixerSource + 'static, volume: f32) -> SourceHandle {
        let id = SourceId(self.next_id);
        self.next_id += 1;
        let handle = SourceHandle {
            id,
            volume: Arc::new(AtomicU32::new(0)),
        };
        handle.set_volume(volume);
        self.slots.push(Slot {
            id,
            source: Box::new(source),
            volume: Arc::clone(&handle.volume),
            buf: Vec::new(),
            ended: false,
        });
        handle
    }

    /// Adds a stream of frames as a source.
    pub fn add_stream<S>(&mut self, stream: S, volume: f32) -> SourceHandle
    where
        S: Stream<Item = AudioFrame> + Send + Unpin + 'static,
    {
        self.add_source(StreamSource(stream), volume)
    }

    /// Adds an iterator of frames as a source (never late: it is always ready).
    pub fn add_iter<I>(&mut self, frames: I, volume: f32) -> SourceHandle
    where
        I: IntoIterator<Item = AudioFrame>,
        I::IntoIter: Send + 'static,
    {
        self.add_source(IterSource(frames.into_iter()), volume)
    }

    /// Adds a bounded channel source holding up to `capacity` frames (at least one).
    pub fn add_channel(&mut self, capacity: usize, volume: f32) -> (SourceHandle, MixerSender) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (self.add_source(ChannelSource(rx), volume), MixerSender(tx))
    }

    /// Removes a source; `false` when it was not attached.
    pub fn remove_source(&mut self, id: SourceId) -> bool {
        let before = self.slots.len();
        self.slots.retain(|s| s.id != id);
        before != self.slots.len()
    }

    /// Mixes the next block from what the sources have now, without waiting (late sources
    /// contribute silence). `Ok(None)` when no source is left.
    ///
    /// # Errors
    /// [`MixerError::FormatMismatch`]; the offending source is removed and the next call mixes
    /// the others.
    pub fn mix_block(&mut self) -> Result<Option<AudioFrame>, MixerError> {
        let mut cx = Context::from_waker(Waker::noop());
        self.gather(&mut cx)?;
        Ok(self.mix())
    }

    /// Polls every source until it has a block, ends or is pending. Returns whether every source
    /// is ready (full block or ended).
    fn gather(&mut self, cx: &mut Context<'_>) -> Result<bool, MixerError> {
        let want = self.block * usize::from(self.num_channels);
        let mut all_ready = true;
        let mut bad = None;
        for slot in &mut self.slots {
            // Empty frames make no progress: after a few in a row the source counts as late for
            // this block, so a source yielding empty frames forever cannot stall the mixer.
            let mut empty = 0;
            while !slot.ended && slot.buf.len() < want && empty < MAX_EMPTY_FRAMES {
                match slot.source.poll_frame(cx) {
                    Poll::Ready(Some(frame)) if frame.is_empty() => empty += 1,
                    Poll::Ready(Some(frame)) => {
                        if frame.sample_rate() != self.sample_rate
                            || frame.num_channels() != self.num_channels
                        {
                            bad = Some(MixerError::FormatMismatch {
                                source_id: slot.id,
                                expected_rate: self.sample_rate,
                                expected_channels: self.num_channels,
                                actual_rate: frame.sample_rate(),
                                actual_channels: frame.num_channels(),
                            });
                            break;
                        }
                        slot.buf.extend_from_slice(frame.data());
                    }
                    Poll::Ready(None) => slot.ended = true,
                    Poll::Pending => break,
                }
            }
            if bad.is_some() {
                break;
            }
            all_ready &= slot.ended || slot.buf.len() >= want;
        }
        if let Some(err) = bad {
            if let MixerError::FormatMismatch { source_id, .. } = &err {
                let id = *source_id;
                tracing::warn!(
                    source = id.0,
                    "mixer source sent a frame of the wrong format; removing it"
                );
                self.slots.retain(|s| s.id != id);
            }
            return Err(err);
        }
        Ok(all_ready)
    }

    /// Mixes one block from the buffers and drops ended, drained sources.
    fn mix(&mut self) -> Option<AudioFrame> {
        self.slots.retain(|s| !(s.ended && s.buf.is_empty()));
        if self.slots.is_empty() {
            return None;
        }
        let want = self.acc.len();
        self.acc.iter_mut().for_each(|a| *a = 0.0);
        for slot in &mut self.slots {
            let gain = f32::from_bits(slot.volume.load(Ordering::Relaxed));
            let n = slot.buf.len().min(want);
            for (a, &s) in self.acc.iter_mut().zip(&slot.buf[..n]) {
                *a += f32::from(s) * gain;
            }
            slot.buf.drain(..n);
        }
        self.slots.retain(|s| !(s.ended && s.buf.is_empty()));
        // `round` is half away from zero; `as` saturates at the 16-bit bounds.
        let data = self.acc.iter().map(|&a| a.round() as i16).collect();
        Some(AudioFrame::with_format(
            data,
            self.sample_rate,
            self.num_channels,
        ))
    }
}

impl Stream for Mixer {
    type Item = Result<AudioFrame, MixerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.slots.is_empty() {
            return Poll::Ready(None);
        }
        let ready = match this.gather(cx) {
            Ok(ready) => ready,
            Err(e) => return Poll::Ready(Some(Err(e))),
        };
        if !ready {
            let timeout = this.timeout;
            let deadline = this
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            if deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.deadline = None;
        Poll::Ready(this.mix().map(Ok))
    }
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Mixer>();
    assert_send::<SourceHandle>();
    assert_send::<MixerSender>();
};
