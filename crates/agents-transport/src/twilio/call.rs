//! One Media Streams connection: waits for `start`, builds the call's session, then pumps messages both ways
//! until either side ends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use agents_audio::{AudioFrame, ResampleQuality, Resampler, SampleRate};
use agents_core::events::{CloseReason, Component, ErrorEvent, SessionEvent};
use agents_core::{AudioInput, SessionControl, SessionIo};
use agents_pipeline::AgentSession;

use super::output::{OutQueue, Outgoing, TwilioAudioOutput};
use super::protocol::{Inbound, StartMetadata, parse_inbound};
use super::{CallHandler, CallInfo, DtmfOptions, TwilioError, TwilioOptions, mulaw};

/// How often overdue marks are checked.
const MARK_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How long the queued audio may take to go out once the session closed, before the socket is dropped.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn serve(
    socket: WebSocket,
    handler: Arc<dyn CallHandler>,
    options: Arc<TwilioOptions>,
) {
    let (mut sink, mut stream) = socket.split();
    let start = match tokio::time::timeout(options.start_timeout, wait_for_start(&mut stream)).await
    {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Twilio stream ended before the call started");
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
        Err(_) => {
            let e = TwilioError::StartTimeout(options.start_timeout);
            tracing::warn!(error = %e, "closing the Twilio stream");
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    let stream_sid = start.stream_sid.clone();
    let mut call = match setup_call(start, handler.as_ref(), &options).await {
        Ok(call) => call,
        Err(e) => {
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            tracing::error!(stream_sid, error = %e, cause, "Twilio call not answered");
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    tracing::info!(stream_sid, "Twilio call started");

    let queue = call.queue.clone();
    let writer = tokio::spawn(async move {
        while let Some(Outgoing::Text(text)) = queue.pop().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    });

    let end = call.run(&mut stream).await;
    call.finish(end, writer).await;
}

/// Reads until `start`, skipping `connected` and tolerating noise.
async fn wait_for_start<S>(stream: &mut S) -> Result<StartMetadata, TwilioError>
where
    S: futures::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                tracing::warn!(error = %TwilioError::BinaryFrame, "ignored");
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match parse_inbound(text.as_str()) {
            Ok(Inbound::Start { start, .. }) => return Ok(start),
            Ok(Inbound::Connected { protocol, version }) => {
                tracing::debug!(?protocol, ?version, "Twilio connected");
            }
            Ok(Inbound::Stop { .. }) => break,
            Ok(Inbound::Media { .. }) => {
                tracing::warn!(error = %TwilioError::BeforeStart("media"), "ignored");
            }
            Ok(Inbound::Dtmf { .. }) => {
                tracing::warn!(error = %TwilioError::BeforeStart("dtmf"), "ignored");
            }
            Ok(Inbound::Mark { .. }) => {
                tracing::warn!(error = %TwilioError::BeforeStart("mark"), "ignored");
            }
            Err(e) => tracing::warn!(error = %e, "ignored Twilio message"),
        }
    }
    Err(TwilioError::EndedBeforeStart)
}

struct Call {
    session: AgentSession,
    output: Arc<TwilioAudioOutput>,
    queue: Arc<OutQueue>,
    input: Option<InputPath>,
    dtmf: Option<(mpsc::Sender<char>, JoinHandle<()>)>,
    label: String,
}

/// How the call ended.
enum End {
    /// Twilio sent `stop`.
    Stopped,
    /// The socket closed or failed.
    Disconnected,
    /// The session closed.
    SessionClosed,
}

async fn setup_call(
    start: StartMetadata,
    handler: &dyn CallHandler,
    options: &TwilioOptions,
) -> Result<Call, TwilioError> {
    start.media_format.check()?;
    let info = CallInfo {
        stream_sid: start.stream_sid.clone(),
        call_sid: start.call_sid.clone(),
        account_sid: start.account_sid.clone(),
        tracks: start.tracks.clone(),
        custom_parameters: start.custom_parameters.clone(),
    };
    let setup = handler.setup(info).await.map_err(TwilioError::Handler)?;
    let queue = Arc::new(OutQueue::new(options.output_queue));
    let output = Arc::new(TwilioAudioOutput::new(
        start.stream_sid.clone(),
        queue.clone(),
        options.mark_timeout,
    ));
    let (tx, audio_input) = AudioInput::channel("twilio", options.input_queue);
    let resampler = if options.input_sample_rate == SampleRate::HZ_8000 {
        None
    } else {
        Some(
            Resampler::new(
                SampleRate::HZ_8000,
                options.input_sample_rate,
                1,
                ResampleQuality::Medium,
            )
            .map_err(TwilioError::Resample)?,
        )
    };
    let mut io = SessionIo::new()
        .with_audio_input(audio_input)
        .with_audio_output(output.clone());
    if let Some(text) = setup.text_output {
        io = io.with_text_output(text);
    }
    let session = setup.session;
    session
        .start(setup.agent, io)
        .await
        .map_err(TwilioError::Session)?;
    let dtmf = options.dtmf.enabled.then(|| {
        let (tx, rx) = mpsc::channel(32);
        let task = tokio::spawn(aggregate_dtmf(rx, session.clone(), options.dtmf.clone()));
        (tx, task)
    });
    Ok(Call {
        label: format!("twilio:{}", start.stream_sid),
        session,
        output,
        queue,
        input: Some(InputPath {
            tx,
            resampler,
            scratch: Vec::new(),
            dropped: 0,
        }),
        dtmf,
    })
}

impl Call {
    async fn run<S>(&mut self, stream: &mut S) -> End
    where
        S: futures::Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let mut events = self.session.events();
        let mut ticker = tokio::time::interval(MARK_CHECK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(end) = self.on_text(text.as_str()) {
                            return end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => self.malformed(TwilioError::BinaryFrame),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Disconnected,
                    Some(Ok(_)) => {}
                },
                event = events.next() => match event {
                    Some(SessionEvent::Close { .. }) | None => return End::SessionClosed,
                    Some(_) => {}
                },
                _ = ticker.tick() => self.output.expire_marks(),
            }
        }
    }

    fn on_text(&mut self, text: &str) -> Option<End> {
        match parse_inbound(text) {
            Ok(Inbound::Media { media, .. }) => {
                if media.track.as_deref() == Some("outbound") {
                    return None;
                }
                let bytes = match BASE64.decode(media.payload.as_bytes()) {
                    Ok(b) => b,
                    Err(e) => {
                        self.malformed(TwilioError::InvalidPayload(e));
                        return None;
                    }
                };
                if let Some(input) = self.input.as_mut()
                    && let Err(e) = input.push(&bytes)
                {
                    self.malformed(e);
                }
            }
            Ok(Inbound::Dtmf { dtmf }) => match dtmf.key() {
                Ok(key) => {
                    if let Some((tx, _)) = &self.dtmf
                        && tx.try_send(key).is_err()
                    {
                        tracing::warn!("DTMF queue full: key dropped");
                    }
                }
                Err(e) => self.malformed(e),
            },
            Ok(Inbound::Mark { mark }) => self.output.on_mark(&mark.name),
            Ok(Inbound::Stop { .. }) => return Some(End::Stopped),
            Ok(Inbound::Connected { .. }) | Ok(Inbound::Start { .. }) => {
                tracing::debug!("repeated connected/start ignored");
            }
            Err(e) => self.malformed(e),
        }
        None
    }

    fn malformed(&self, error: TwilioError) {
        tracing::warn!(stream = %self.label, error = %error, "ignored Twilio message");
        self.session.report_error(ErrorEvent::new(
            Component::Transport,
            self.label.clone(),
            error,
            true,
        ));
    }

    async fn finish(mut self, end: End, writer: JoinHandle<()>) {
        if let Some((_, task)) = self.dtmf.take() {
            task.abort();
        }
        match end {
            End::Stopped | End::Disconnected => {
                tracing::info!(stream = %self.label, "caller left");
                // Nothing will play any more: finish the pending segments at once, then close the session.
                self.output.on_disconnect();
                self.input = None;
                match self
                    .session
                    .close_with_reason(CloseReason::ParticipantDisconnected)
                    .await
                {
                    Ok(()) | Err(agents_core::SessionError::NotRunning) => {}
                    Err(e) => tracing::warn!(error = %e, "closing the session"),
                }
                writer.abort();
            }
            End::SessionClosed => {
                tracing::info!(stream = %self.label, "session closed: ending the stream");
                // Send what is queued, then close the socket.
                self.queue.finish();
                self.input = None;
                let abort = writer.abort_handle();
                if tokio::time::timeout(FINAL_WRITE_TIMEOUT, writer)
                    .await
                    .is_err()
                {
                    tracing::warn!(stream = %self.label, "Twilio is not reading: socket dropped");
                    abort.abort();
                }
                self.output.on_disconnect();
            }
        }
    }
}

/// Caller audio: µ-law → PCM16 8 kHz → the session's rate.
struct InputPath {
    tx: mpsc::Sender<AudioFrame>,
    resampler: Option<Resampler>,
    scratch: Vec<i16>,
    dropped: u64,
}

impl InputPath {
    fn push(&mut self, mulaw_bytes: &[u8]) -> Result<(), TwilioError> {
        if mulaw_bytes.is_empty() {
            return Ok(());
        }
        self.scratch.clear();
        mulaw::decode_into(mulaw_bytes, &mut self.scratch);
        let samples = std::mem::take(&mut self.scratch);
        let frame = match self.resampler.as_mut() {
            None => AudioFrame::new(samples, SampleRate::HZ_8000, 1),
            Some(r) => {
                let mut out = Vec::with_capacity(samples.len() * 2);
                r.push_into(&samples, &mut out)
                    .map_err(TwilioError::Resample)?;
                self.scratch = samples;
                if out.is_empty() {
                    return Ok(());
                }
                AudioFrame::new(out, r.output_rate(), 1)
            }
        };
        // One channel: `new` cannot fail on channel count.
        let Ok(frame) = frame else {
            return Ok(());
        };
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        "session not keeping up: caller audio dropped"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        Ok(())
    }
}

/// Collects keys into sequences and sends each as a user message (Pipecat's `DTMFAggregator` rules).
async fn aggregate_dtmf(
    mut keys: mpsc::Receiver<char>,
    session: AgentSession,
    options: DtmfOptions,
) {
    let mut digits = String::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let key = match deadline {
            Some(at) => tokio::select! {
                key = keys.recv() => key,
                _ = tokio::time::sleep_until(at) => {
                    send_digits(&session, &options, &mut digits).await;
                    deadline = None;
                    continue;
                }
            },
            None => keys.recv().await,
        };
        let Some(key) = key else {
            return;
        };
        if digits.is_empty() && options.interrupt {
            match SessionControl::interrupt(&session).await {
                Ok(()) | Err(agents_core::SessionError::Speech(_)) => {}
                Err(e) => tracing::debug!(error = %e, "DTMF interrupt"),
            }
        }
        digits.push(key);
        if options.termination_key == Some(key) {
            send_digits(&session, &options, &mut digits).await;
            deadline = None;
        } else {
            deadline = Some(tokio::time::Instant::now() + options.timeout);
        }
    }
}

async fn send_digits(session: &AgentSession, options: &DtmfOptions, digits: &mut String) {
    if digits.is_empty() {
        return;
    }
    let text = format!("{}{}", options.prefix, digits);
    digits.clear();
    tracing::debug!(text, "DTMF sequence");
    if let Err(e) = session.send_text_input(text).await {
        tracing::warn!(error = %e, "DTMF sequence not delivered");
    }
}
