//! [`run_file_session`]: one session from a WAV file to a WAV file and a transcript.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agents_core::audio_io::{AudioOutput, TextOutput};
use agents_core::chat::{ChatItem, ChatRole};
use agents_core::events::{AgentState, CloseReason, SessionEvent, UserState};
use agents_core::metrics::Metrics;
use agents_core::{Agent, SessionControl, SessionError, SessionIo};
use agents_pipeline::AgentSession;
use futures::StreamExt;
use tokio::time::Instant;

use super::{
    ConsoleView, FileIoError, TextFanout, TranscriptEntry, TranscriptOptions, TranscriptWriter,
    WavInput, WavInputOptions, WavOutput, WavOutputOptions, WavOutputSummary,
};

/// What [`run_file_session`] reads and writes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileSessionOptions {
    /// The user's audio.
    pub input_path: PathBuf,
    /// How it is converted and paced.
    pub input: WavInputOptions,
    /// Where the agent's audio goes (`None`: the session gets no audio output, so it runs text-only replies).
    pub output_path: Option<PathBuf>,
    /// The output file's format; its pacing is set to the input's.
    pub output: WavOutputOptions,
    /// The transcript files.
    pub transcript: TranscriptOptions,
    /// A live view (e.g. [`ConsoleView::stdout`]); `None` shows nothing.
    pub console: Option<ConsoleView>,
    /// When the session does not close itself at the end of the input (`SessionOptions::close_on_input_end =
    /// false`), it is closed once the input ended and both agent and user have been listening for this long
    /// (default 1 s).
    pub idle_close: Duration,
    /// Closes the session after this long (tokio clock) whatever happens (default none).
    pub max_duration: Option<Duration>,
}

impl FileSessionOptions {
    /// Reads `input_path` with the default input options; writes nothing until told.
    pub fn new(input_path: impl Into<PathBuf>) -> Self {
        Self {
            input_path: input_path.into(),
            input: WavInputOptions::default(),
            output_path: None,
            output: WavOutputOptions::default(),
            transcript: TranscriptOptions::default(),
            console: None,
            idle_close: Duration::from_secs(1),
            max_duration: None,
        }
    }
    /// Sets the input options.
    pub fn with_input(mut self, options: WavInputOptions) -> Self {
        self.input = options;
        self
    }
    /// Writes the agent's audio to `path` in the format of `options`.
    pub fn with_output(mut self, path: impl Into<PathBuf>, options: WavOutputOptions) -> Self {
        self.output_path = Some(path.into());
        self.output = options;
        self
    }
    /// Sets the transcript files.
    pub fn with_transcript(mut self, options: TranscriptOptions) -> Self {
        self.transcript = options;
        self
    }
    /// Shows the session live in `view`.
    pub fn with_console(mut self, view: ConsoleView) -> Self {
        self.console = Some(view);
        self
    }
    /// Sets the idle time after the input's end before closing.
    pub fn with_idle_close(mut self, d: Duration) -> Self {
        self.idle_close = d;
        self
    }
    /// Bounds the run.
    pub fn with_max_duration(mut self, d: Duration) -> Self {
        self.max_duration = Some(d);
        self
    }
}

/// What a file session did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileSessionReport {
    /// User turns committed.
    pub turns: usize,
    /// Every transcript line.
    pub transcript: Vec<TranscriptEntry>,
    /// The output file, when one was written.
    pub output: Option<WavOutputSummary>,
    /// End-to-end latency of each answered turn (user stopped speaking → agent's first audio played).
    pub latencies: Vec<Duration>,
    /// Why the session closed (`None` when its event stream ended without `Close`).
    pub close_reason: Option<CloseReason>,
    /// Input audio delivered (all passes, trailing silence included).
    pub input_delivered: Duration,
}

/// Runs `session` (built, not started) with `agent` over a WAV file: the input is paced as asked, the agent's
/// audio is written to the output file, the transcript files are written and the console view follows along. It
/// returns once the session closed: by itself at the end of the input (`close_on_input_end`, the default), after
/// `idle_close` once the input ended otherwise, after `max_duration`, or on an unrecoverable error.
///
/// # Errors
/// [`FileIoError`] for the input file (read before anything starts), the output or transcript files, and
/// [`FileIoError::Session`] when the session refuses to start.
pub async fn run_file_session(
    session: &AgentSession,
    agent: Agent,
    options: FileSessionOptions,
) -> Result<FileSessionReport, FileIoError> {
    let path = options.input_path.clone();
    let input_options = options.input.clone();
    let input = tokio::task::spawn_blocking(move || WavInput::open(path, input_options))
        .await
        .map_err(|_| FileIoError::WriterTask("WAV input"))??;
    let progress = input.progress();

    let output = match &options.output_path {
        Some(p) => Some(Arc::new(WavOutput::with_input_progress(
            p,
            options.output.clone().with_pacing(options.input.pacing),
            progress.clone(),
        )?)),
        None => None,
    };
    let transcript = Arc::new(TranscriptWriter::with_input_progress(
        options.transcript.clone(),
        progress.clone(),
    )?);
    let mut texts: Vec<Arc<dyn TextOutput>> = vec![transcript.clone()];
    if let Some(view) = &options.console {
        texts.push(Arc::new(view.clone()));
    }

    // Subscribe before start so nothing is missed.
    transcript.follow(session.events());
    let view_task = options
        .console
        .as_ref()
        .map(|v| v.follow(session.events(), Some(progress.clone())));
    let mut events = session.events();

    let mut io = SessionIo::new()
        .with_audio_input(input.into_audio_input())
        .with_text_output(Arc::new(TextFanout::new(texts)));
    if let Some(o) = &output {
        io = io.with_audio_output(o.clone() as Arc<dyn AudioOutput>);
    }
    if let Err(e) = session.start(agent, io).await {
        if let Some(t) = &view_task {
            t.abort();
        }
        let _ = transcript.finish(Duration::ZERO).await;
        if let Some(o) = &output {
            let _ = o.finish(Duration::ZERO).await;
        }
        return Err(FileIoError::Session(e));
    }

    let mut input_progress = progress.clone();
    let mut agent_state = AgentState::Initializing;
    let mut user_state = UserState::Listening;
    let mut turns = 0;
    let mut latencies = Vec::new();
    let mut close_reason = None;
    let mut idle_since: Option<Instant> = None;
    let mut closing = false;
    let hard_stop = options
        .max_duration
        .and_then(|d| Instant::now().checked_add(d));
    loop {
        let idle = input_progress.borrow().finished
            && agent_state == AgentState::Listening
            && user_state != UserState::Speaking;
        idle_since = if idle {
            idle_since.or(Some(Instant::now()))
        } else {
            None
        };
        let deadline = [
            idle_since.and_then(|t| t.checked_add(options.idle_close)),
            hard_stop,
        ]
        .into_iter()
        .flatten()
        .min()
        .filter(|_| !closing);
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = events.next() => match e {
                None => break,
                Some(SessionEvent::Close { reason, .. }) => {
                    close_reason = Some(reason);
                    break;
                }
                Some(SessionEvent::AgentStateChanged { new, .. }) => agent_state = new,
                Some(SessionEvent::UserStateChanged { new, .. }) => user_state = new,
                Some(SessionEvent::ConversationItemAdded { item: ChatItem::Message(m) })
                    if m.role == ChatRole::User => turns += 1,
                Some(SessionEvent::MetricsCollected(Metrics::Turn(m))) => {
                    latencies.extend(m.e2e_latency);
                }
                Some(_) => {}
            },
            r = input_progress.changed(), if !input_progress.borrow().finished => {
                if r.is_err() {
                    // The input is gone (dropped by the session): treat as finished.
                    input_progress = progress.clone();
                }
            }
            () = timer => {
                closing = true;
                // The close runs while this loop goes on reading events (it ends with `Close`).
                let s = session.clone();
                tokio::spawn(async move {
                    match s.close().await {
                        Ok(()) | Err(SessionError::NotRunning) => {}
                        Err(e) => tracing::warn!(error = %e, "closing the file session failed"),
                    }
                });
            }
        }
    }

    let delivered = progress.borrow().delivered;
    let output = match &output {
        Some(o) => Some(o.finish(delivered).await?),
        None => None,
    };
    let transcript = transcript.finish(Duration::from_secs(2)).await?;
    if let Some(mut t) = view_task
        && tokio::time::timeout(Duration::from_secs(1), &mut t)
            .await
            .is_err()
    {
        t.abort();
    }
    Ok(FileSessionReport {
        turns,
        transcript,
        output,
        latencies,
        close_reason,
        input_delivered: delivered,
    })
}
