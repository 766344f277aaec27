//! The task behind a Deepgram recognition stream: format conversion, rebuffering, keep-alive, finalize/close,
//! reconnection with replay and de-duplication, and option changes.
//!
//! # Input format
//!
//! The first frame fixes the stream's input format. Frames are converted to the configured `sample_rate` and
//! `channels` before they are sent (the socket announces those as `encoding=linear16&sample_rate=..&channels=..`):
//! the channel count with [`AudioFrame::remix`] (stereo to mono averages the channels), the rate with an
//! [`agents_audio::Resampler`] whose tail is flushed on `Flush`, `EndInput` and before an option change, so
//! `Finalize` covers all audio pushed. A frame whose rate or channel count differs from the first frame's is a
//! typed error ([`SttError::UnsupportedSampleRate`] or [`SttError::InvalidAudio`]) that ends the stream.
//!
//! # Reconnection
//!
//! Every 50 ms chunk sent is kept in a replay buffer until a final result covers it (a final's `start + duration`
//! marks the audio Deepgram is done with). When the socket breaks (a drop, the NET-0001 idle close, a malformed
//! message), the task reconnects under the stream's [`ApiConnectOptions`] policy and resends the buffer first; the
//! new connection's times start at the buffer's first sample, so every time is shifted by that offset. Words
//! starting before the end of the last delivered final are dropped, so nothing is delivered twice. The counter of
//! failed attempts starts again once a connection delivers a final result.

use std::collections::VecDeque;
use std::time::Duration;

use agents_audio::{AudioFrame, AudioFrameError, ResampleQuality, Resampler, SampleRate};
use agents_core::ApiError;
use agents_core::retry::ApiConnectOptions;
use agents_core::stream::FrameInput;
use agents_core::stt::{RecognitionUsage, SpeechEvent, SttError, SttStreamDriver, Transcript};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::messages::{self, ResultsMessage, ServerMessage};
use crate::net::{self, Socket};
use crate::options::{ClientOptions, with_query};
use crate::stt::SttOptions;

/// What a stream task needs from its [`crate::DeepgramStt`].
#[derive(Debug)]
pub(crate) struct StreamContext {
    pub(crate) client: ClientOptions,
    pub(crate) options: watch::Receiver<SttOptions>,
    pub(crate) language: Option<String>,
    pub(crate) conn: ApiConnectOptions,
}

type Event = Result<SpeechEvent, SttError>;

/// A chunk sent and not yet covered by a final result.
#[derive(Debug)]
struct Chunk {
    /// Stream time of its first sample, in samples per channel.
    start: u64,
    /// Samples per channel.
    len: u64,
    data: Bytes,
}

/// How a connection ended.
enum Outcome {
    /// The stream is over (normal end, caller gone, or a terminal error already sent).
    Done,
    /// The options changed and the old connection finished cleanly: connect again at once.
    Reconfigure,
    /// The connection broke; `progressed` when it delivered a final result first.
    Failed { error: ApiError, progressed: bool },
}

struct Task {
    ctx: StreamContext,
    input: mpsc::Receiver<FrameInput>,
    events: mpsc::Sender<Event>,
    opts: SttOptions,
    rate: u32,
    channels: u16,
    pending: Vec<i16>,
    replay: VecDeque<Chunk>,
    /// Samples per channel sent so far (stream time of the next chunk).
    sent: u64,
    /// Stream time up to which results are final and delivered.
    final_end: Duration,
    speaking: bool,
    finalize_pending: bool,
    closing: bool,
    usage_reported: u64,
    request_id: String,
    /// Rate and channels of the caller's audio, fixed by the first frame.
    input_format: Option<(SampleRate, u16)>,
    /// Converts the input rate to the connection's; `None` while the rates agree.
    resampler: Option<Resampler>,
}

fn samples_to_duration(samples: u64, rate: u32) -> Duration {
    Duration::from_nanos(
        u64::try_from(u128::from(samples) * 1_000_000_000 / u128::from(rate.max(1)))
            .unwrap_or(u64::MAX),
    )
}

fn duration_to_samples(d: Duration, rate: u32) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// Runs one recognition stream until it ends.
pub(crate) async fn run(driver: SttStreamDriver, ctx: StreamContext) {
    let (input, events) = driver.into_parts();
    let opts = ctx.options.borrow().clone();
    let mut task = Task {
        rate: opts.sample_rate.hz(),
        channels: opts.channels,
        opts,
        ctx,
        input,
        events,
        pending: Vec::new(),
        replay: VecDeque::new(),
        sent: 0,
        final_end: Duration::ZERO,
        speaking: false,
        finalize_pending: false,
        closing: false,
        usage_reported: 0,
        request_id: String::new(),
        input_format: None,
        resampler: None,
    };
    task.ctx.options.mark_unchanged();
    task.run().await;
}

impl Task {
    async fn emit(&self, e: Event) -> bool {
        self.events.send(e).await.is_ok()
    }

    async fn run(&mut self) {
        let mut failures: u32 = 0;
        loop {
            let outcome = match self.connect().await {
                Ok(mut socket) => {
                    let outcome = self.session(&mut socket).await;
                    let _ = socket.close(None).await;
                    outcome
                }
                Err(error) => Outcome::Failed {
                    error,
                    progressed: false,
                },
            };
            let (error, progressed) = match outcome {
                Outcome::Done => return,
                Outcome::Reconfigure => {
                    failures = 0;
                    continue;
                }
                Outcome::Failed { error, progressed } => (error, progressed),
            };
            if progressed {
                failures = 0;
            }
            let delay = self.ctx.conn.retry_delay(&error, failures);
            let Some(delay) = delay else {
                let _ = self.emit(Err(SttError::Api(error))).await;
                return;
            };
            if failures >= self.ctx.conn.max_retry {
                let final_error = if self.ctx.conn.max_retry == 0 {
                    error
                } else {
                    ApiError::connection(format!(
                        "failed to connect to the Deepgram STT stream after {} attempts",
                        u64::from(self.ctx.conn.max_retry) + 1
                    ))
                    .with_source(error)
                };
                let _ = self.emit(Err(SttError::Api(final_error))).await;
                return;
            }
            tracing::warn!(
                attempt = failures + 1,
                retry_in = ?delay,
                error = %error,
                "Deepgram STT stream interrupted, reconnecting"
            );
            failures += 1;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.events.closed() => return,
            }
        }
    }

    /// Connects with the current options and resends what is not final yet.
    async fn connect(&mut self) -> Result<Socket, ApiError> {
        let query = self.opts.live_query(self.ctx.language.as_deref());
        let url = with_query(&self.ctx.client.ws_url("/v1/listen"), &query);
        let (mut socket, request_id) = tokio::select! {
            r = net::connect(&self.ctx.client, &url, self.ctx.conn.timeout) => r?,
            () = self.events.closed() => return Err(ApiError::new("stream dropped").with_retryable(false)),
        };
        if let Some(id) = request_id {
            self.request_id = id;
        }
        let resend: Vec<Bytes> = self.replay.iter().map(|c| c.data.clone()).collect();
        if !resend.is_empty() {
            tracing::debug!(
                chunks = resend.len(),
                "Deepgram STT: replaying audio not yet final"
            );
        }
        for data in resend {
            socket
                .send(Message::Binary(data))
                .await
                .map_err(|e| broken(&e))?;
        }
        if self.closing {
            send_control(&mut socket, "CloseStream").await?;
        } else if self.finalize_pending {
            send_control(&mut socket, "Finalize").await?;
        }
        Ok(socket)
    }

    /// Stream time (samples) at which the current connection's time 0 lies.
    fn connection_offset(&self) -> u64 {
        self.replay.front().map_or(self.sent, |c| c.start)
    }

    async fn session(&mut self, socket: &mut Socket) -> Outcome {
        let offset = samples_to_duration(self.connection_offset(), self.rate);
        let mut progressed = false;
        let keep_alive = self.opts.keep_alive_interval;
        let mut keep_alive_at = Instant::now() + keep_alive;
        loop {
            tokio::select! {
                msg = socket.next() => {
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(frame))) => {
                            return self.closed_by_server(frame, progressed).await;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Outcome::Failed { error: broken(&e), progressed },
                        None => {
                            return Outcome::Failed {
                                error: ApiError::connection("the Deepgram STT socket ended without a close frame"),
                                progressed,
                            };
                        }
                    };
                    match self.on_text(text.as_str(), offset).await {
                        Ok(final_seen) => progressed |= final_seen,
                        Err(None) => return Outcome::Done,
                        Err(Some(error)) => return Outcome::Failed { error, progressed },
                    }
                }
                item = self.input.recv(), if !self.closing => {
                    let result = match item {
                        None => {
                            let _ = socket.close(None).await;
                            return Outcome::Done;
                        }
                        Some(FrameInput::Frame(frame)) => {
                            match self.on_frame(socket, &frame).await {
                                Ok(sent) => {
                                    if sent {
                                        keep_alive_at = Instant::now() + keep_alive;
                                    }
                                    Ok(())
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Some(FrameInput::Flush) => {
                            self.finalize_pending = true;
                            match self.send_pending(socket).await {
                                Ok(()) => send_control(socket, "Finalize").await.map_err(Some),
                                Err(e) => Err(e),
                            }
                        }
                        Some(FrameInput::EndInput) => {
                            self.closing = true;
                            match self.send_pending(socket).await {
                                Ok(()) => send_control(socket, "CloseStream").await.map_err(Some),
                                Err(e) => Err(e),
                            }
                        }
                        Some(_) => Ok(()),
                    };
                    match result {
                        Ok(()) => {}
                        Err(Some(error)) => return Outcome::Failed { error, progressed },
                        Err(None) => return Outcome::Done,
                    }
                }
                () = sleep_until(keep_alive_at) => {
                    keep_alive_at = Instant::now() + keep_alive;
                    if let Err(error) = send_control(socket, "KeepAlive").await {
                        return Outcome::Failed { error, progressed };
                    }
                }
                changed = self.ctx.options.changed(), if !self.closing => {
                    if changed.is_err() {
                        // The provider was dropped; the stream goes on with its options.
                        continue;
                    }
                    return self.reconfigure(socket, offset, progressed).await;
                }
                () = self.events.closed() => {
                    let _ = socket.close(None).await;
                    return Outcome::Done;
                }
            }
        }
    }

    /// The options changed: finish this connection with `CloseStream`, then reconnect with the new options.
    async fn reconfigure(
        &mut self,
        socket: &mut Socket,
        offset: Duration,
        mut progressed: bool,
    ) -> Outcome {
        let new_opts = self.ctx.options.borrow_and_update().clone();
        if let Err(Some(error)) = self.send_pending(socket).await {
            return Outcome::Failed { error, progressed };
        }
        if let Err(error) = send_control(socket, "CloseStream").await {
            return Outcome::Failed { error, progressed };
        }
        let deadline = Instant::now() + self.ctx.conn.timeout;
        loop {
            let msg = tokio::select! {
                m = socket.next() => m,
                () = sleep_until(deadline) => {
                    return Outcome::Failed { error: ApiError::timeout("Deepgram did not close the stream after CloseStream"), progressed };
                }
            };
            match msg {
                Some(Ok(Message::Text(t))) => match self.on_text(t.as_str(), offset).await {
                    Ok(f) => progressed |= f,
                    Err(None) => return Outcome::Done,
                    Err(Some(error)) => return Outcome::Failed { error, progressed },
                },
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Outcome::Failed {
                        error: broken(&e),
                        progressed,
                    };
                }
            }
        }
        // Everything sent was processed under the old options; the new connection starts at the end of it.
        self.report_usage().await;
        self.replay.clear();
        self.finalize_pending = false;
        self.final_end = samples_to_duration(self.sent, self.rate).max(self.final_end);
        self.rate = new_opts.sample_rate.hz();
        self.channels = new_opts.channels;
        self.sent = duration_to_samples(self.final_end, self.rate);
        self.usage_reported = self.sent;
        self.opts = new_opts;
        tracing::debug!("Deepgram STT: options changed, reconnecting");
        Outcome::Reconfigure
    }

    async fn closed_by_server(&mut self, frame: Option<CloseFrame>, progressed: bool) -> Outcome {
        let normal = frame.as_ref().is_none_or(|f| f.code == CloseCode::Normal);
        if self.closing && normal {
            self.report_usage().await;
            return Outcome::Done;
        }
        let error = match frame {
            Some(f) => ApiError::connection(format!(
                "Deepgram closed the STT stream: {} {}",
                u16::from(f.code),
                f.reason
            )),
            None => ApiError::connection("Deepgram closed the STT stream"),
        };
        Outcome::Failed { error, progressed }
    }

    /// Converts, rebuffers and sends a frame. `Ok(true)` when audio went out.
    async fn on_frame(
        &mut self,
        socket: &mut Socket,
        frame: &AudioFrame,
    ) -> Result<bool, Option<ApiError>> {
        if let Err(e) = self.convert(frame) {
            let _ = self.emit(Err(e)).await;
            return Err(None);
        }
        let per_chunk = usize::try_from(duration_to_samples(self.opts.chunk_duration, self.rate))
            .unwrap_or(usize::MAX)
            .max(1)
            * usize::from(self.channels);
        let mut sent = false;
        while self.pending.len() >= per_chunk {
            let rest = self.pending.split_off(per_chunk);
            let chunk = std::mem::replace(&mut self.pending, rest);
            self.send_chunk(socket, chunk).await?;
            sent = true;
        }
        Ok(sent)
    }

    /// Appends `frame`, converted to the connection's rate and channels, to the pending samples.
    fn convert(&mut self, frame: &AudioFrame) -> Result<(), SttError> {
        let (rate, channels) = (frame.sample_rate(), frame.num_channels());
        match self.input_format {
            None => self.input_format = Some((rate, channels)),
            Some((expected, _)) if expected != rate => {
                return Err(SttError::UnsupportedSampleRate {
                    expected: expected.hz(),
                    actual: rate.hz(),
                });
            }
            Some((expected_rate, expected_channels)) if expected_channels != channels => {
                return Err(SttError::InvalidAudio(AudioFrameError::FormatMismatch {
                    expected_rate,
                    expected_channels,
                    actual_rate: rate,
                    actual_channels: channels,
                }));
            }
            Some(_) => {}
        }
        let remixed;
        let frame = if channels == self.channels {
            frame
        } else {
            remixed = frame.remix(self.channels)?;
            &remixed
        };
        if rate == self.opts.sample_rate {
            self.pending.extend_from_slice(frame.data());
            return Ok(());
        }
        let target = self.opts.sample_rate;
        let stale = self
            .resampler
            .as_ref()
            .is_none_or(|r| r.output_rate() != target || r.num_channels() != self.channels);
        if stale {
            let resampler = Resampler::new(rate, target, self.channels, ResampleQuality::default())
                .map_err(|e| {
                    tracing::debug!(error = %e, "Deepgram STT: no resampler for this rate pair");
                    SttError::UnsupportedSampleRate {
                        expected: target.hz(),
                        actual: rate.hz(),
                    }
                })?;
            self.resampler = Some(resampler);
        }
        if let Some(r) = self.resampler.as_mut() {
            r.push_into(frame.data(), &mut self.pending)
                .map_err(resample_failed)?;
        }
        Ok(())
    }

    /// Moves the resampler's buffered tail into the pending samples (the resampler then starts afresh).
    fn drain_resampler(&mut self) -> Result<(), SttError> {
        match self.resampler.as_mut() {
            Some(r) => r.flush_into(&mut self.pending).map_err(resample_failed),
            None => Ok(()),
        }
    }

    /// Sends everything pushed so far, the resampler's tail included.
    async fn send_pending(&mut self, socket: &mut Socket) -> Result<(), Option<ApiError>> {
        if let Err(e) = self.drain_resampler() {
            let _ = self.emit(Err(e)).await;
            return Err(None);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.pending);
        self.send_chunk(socket, chunk).await
    }

    async fn send_chunk(
        &mut self,
        socket: &mut Socket,
        samples: Vec<i16>,
    ) -> Result<(), Option<ApiError>> {
        let len = (samples.len() / usize::from(self.channels.max(1))) as u64;
        let data: Bytes = samples
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
        self.replay.push_back(Chunk {
            start: self.sent,
            len,
            data: data.clone(),
        });
        self.sent += len;
        let max = duration_to_samples(self.opts.max_replay, self.rate);
        while self.replay.len() > 1
            && self.replay.back().map_or(0, |c| c.start + c.len)
                - self.replay.front().map_or(0, |c| c.start)
                > max
        {
            self.replay.pop_front();
            tracing::warn!("Deepgram STT: replay buffer full, dropping the oldest audio");
        }
        socket
            .send(Message::Binary(data))
            .await
            .map_err(|e| Some(broken(&e)))
    }

    /// Drops replayable audio up to `end` (stream time, samples).
    fn trim_replay(&mut self, end: u64) {
        while self.replay.front().is_some_and(|c| c.start + c.len <= end) {
            self.replay.pop_front();
        }
    }

    async fn report_usage(&mut self) {
        let unreported = self.sent.saturating_sub(self.usage_reported);
        if unreported == 0 {
            return;
        }
        self.usage_reported = self.sent;
        let usage = RecognitionUsage::new(samples_to_duration(unreported, self.rate));
        let _ = self.emit(Ok(SpeechEvent::RecognitionUsage(usage))).await;
    }

    /// Handles a text message. `Ok(true)` for a final result; `Err(None)` when the caller is gone.
    async fn on_text(&mut self, text: &str, offset: Duration) -> Result<bool, Option<ApiError>> {
        let msg: ServerMessage = serde_json::from_str(text).map_err(|e| {
            Some(ApiError::new(format!(
                "malformed message from Deepgram: {e}"
            )))
        })?;
        let ok = match msg {
            ServerMessage::Results(r) => return self.on_results(r, offset).await,
            ServerMessage::SpeechStarted {} => {
                if self.speaking {
                    true
                } else {
                    self.speaking = true;
                    self.emit(Ok(SpeechEvent::StartOfSpeech)).await
                }
            }
            ServerMessage::UtteranceEnd {} => {
                if self.speaking {
                    self.speaking = false;
                    self.emit(Ok(SpeechEvent::EndOfSpeech)).await
                } else {
                    true
                }
            }
            ServerMessage::Metadata(m) => {
                if let Some(id) = m.request_id {
                    self.request_id = id;
                }
                true
            }
            ServerMessage::Error(e) => {
                tracing::warn!(
                    variant = e.variant.as_deref().unwrap_or(""),
                    description = e.description.as_deref().unwrap_or(""),
                    "Deepgram reported an error on the STT stream"
                );
                true
            }
            ServerMessage::Other => true,
        };
        if ok { Ok(false) } else { Err(None) }
    }

    async fn on_results(
        &mut self,
        r: ResultsMessage,
        offset: Duration,
    ) -> Result<bool, Option<ApiError>> {
        if let Some(id) = r.metadata.as_ref().and_then(|m| m.request_id.clone()) {
            self.request_id = id;
        }
        let language = self.ctx.language.clone().or(self.opts.language.clone());
        let not_before = self.final_end;
        let alternatives: Vec<_> = r
            .channel
            .alternatives
            .iter()
            .filter_map(|a| {
                let lang = r
                    .channel
                    .detected_language
                    .as_deref()
                    .or(language.as_deref());
                messages::speech_data(a, offset, not_before, lang)
            })
            .collect();
        let mut transcript = Transcript::default();
        transcript.request_id.clone_from(&self.request_id);
        transcript.alternatives = alternatives;
        let has_text = !transcript.text().is_empty();
        if r.is_final {
            let end = offset + messages::secs(r.start) + messages::secs(r.duration);
            self.final_end = self.final_end.max(end);
            self.trim_replay(duration_to_samples(end, self.rate));
            if r.from_finalize {
                self.finalize_pending = false;
            }
        }
        let mut events = Vec::new();
        if has_text && !self.speaking {
            self.speaking = true;
            events.push(SpeechEvent::StartOfSpeech);
        }
        if has_text {
            events.push(if r.is_final {
                SpeechEvent::FinalTranscript(transcript)
            } else {
                SpeechEvent::InterimTranscript(transcript)
            });
        }
        if r.is_final && r.speech_final && self.speaking {
            self.speaking = false;
            events.push(SpeechEvent::EndOfSpeech);
        }
        for e in events {
            if !self.emit(Ok(e)).await {
                return Err(None);
            }
        }
        if r.is_final && has_text {
            self.report_usage().await;
        }
        Ok(r.is_final)
    }
}

fn resample_failed(e: agents_audio::ResampleError) -> SttError {
    SttError::Api(
        ApiError::new(format!("resampling the STT input failed: {e}")).with_retryable(false),
    )
}

fn broken(e: &tokio_tungstenite::tungstenite::Error) -> ApiError {
    ApiError::connection(format!("the Deepgram STT socket broke: {e}"))
}

async fn send_control(socket: &mut Socket, kind: &str) -> Result<(), ApiError> {
    let text = serde_json::json!({ "type": kind }).to_string();
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| broken(&e))
}
