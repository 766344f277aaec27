//! The socket writer of a connection: one task owns the sink; control messages have priority over audio.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::SinkExt;
use futures::stream::SplitSink;
use tokio::sync::mpsc;

use crate::protocol::ServerMessage;

/// A message for the writer's control queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A JSON event.
    Json(ServerMessage),
    /// A close frame; the writer stops after it.
    Close {
        /// Close code.
        code: u16,
        /// Close reason (≤ 123 bytes).
        reason: String,
    },
}

/// A paced audio frame for the writer's audio queue.
#[derive(Debug)]
pub(crate) struct AudioOut {
    /// The output's clear epoch when it was queued: stale frames (queued before a `clear`) are dropped.
    pub(crate) epoch: u64,
    /// PCM16 bytes.
    pub(crate) data: Bytes,
    /// Their duration.
    pub(crate) duration: Duration,
}

/// Audio written to the socket (microseconds, current epoch only): the output's playback clock runs on it, so
/// no event about playback (speech done, transcripts) overtakes the audio it is about.
#[derive(Debug, Default)]
pub(crate) struct Written {
    micros: AtomicU64,
    notify: tokio::sync::Notify,
}

impl Written {
    /// Microseconds written so far.
    pub(crate) fn get(&self) -> u64 {
        self.micros.load(Ordering::Acquire)
    }

    /// Records `d` written and wakes the output's player.
    pub(crate) fn add(&self, d: Duration) {
        self.micros.fetch_add(micros(d), Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// Waits for the next write.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// Microseconds of `d`, saturating.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Writes until a close was sent, a write fails or stalls for `write_timeout`, or every sender is gone.
pub(crate) async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut control: mpsc::Receiver<Outgoing>,
    mut audio: mpsc::Receiver<AudioOut>,
    epoch: Arc<AtomicU64>,
    written: Arc<Written>,
    ping_interval: Duration,
    write_timeout: Duration,
) {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut audio_open = true;
    loop {
        let mut audio_written = None;
        let message = tokio::select! {
            biased;
            c = control.recv() => match c {
                Some(Outgoing::Json(m)) => match serde_json::to_string(&m) {
                    Ok(text) => Message::Text(text.into()),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not serialize a websocket event");
                        continue;
                    }
                },
                Some(Outgoing::Close { code, reason }) => {
                    let frame = CloseFrame { code, reason: truncate_reason(&reason).into() };
                    let _ = tokio::time::timeout(write_timeout, async {
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        let _ = sink.flush().await;
                    })
                    .await;
                    return;
                }
                None => return,
            },
            a = audio.recv(), if audio_open => match a {
                Some(a) if a.epoch == epoch.load(Ordering::Acquire) => {
                    audio_written = Some((a.epoch, a.duration));
                    Message::Binary(a.data)
                }
                Some(_) => continue,
                None => {
                    audio_open = false;
                    continue;
                }
            },
            _ = ping.tick() => Message::Ping(Bytes::new()),
        };
        match tokio::time::timeout(write_timeout, sink.send(message)).await {
            Ok(Ok(())) => {
                if let Some((e, d)) = audio_written
                    && e == epoch.load(Ordering::Acquire)
                {
                    written.add(d);
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "websocket write failed");
                return;
            }
            Err(_) => {
                tracing::debug!("websocket write stalled; giving up on the client");
                return;
            }
        }
    }
}

/// A close reason fits in 123 bytes (RFC 6455 §5.5: control frames carry ≤ 125 bytes, 2 of them the code).
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
