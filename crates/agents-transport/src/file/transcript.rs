//! [`TranscriptWriter`]: the conversation written as plain text and JSON Lines.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agents_core::audio_io::{TextOutput, TextOutputError};
use agents_core::chat::{ChatItem, ChatRole};
use agents_core::events::{CloseReason, SessionEvent};
use agents_core::metrics::Metrics;
use agents_core::serde_util::{opt_secs, secs};
use agents_core::stream::EventStream;
use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{FileIoError, InputProgress};

/// What happened, in a transcript line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TranscriptEvent {
    /// A committed user turn.
    User {
        /// What the user said (the committed message).
        text: String,
    },
    /// An agent speech.
    Agent {
        /// What the user heard: the text shown in step with playback (the session's text output), or the committed
        /// message when the writer is not the text output.
        text: String,
        /// The user cut the speech short.
        interrupted: bool,
    },
    /// A tool call and its result.
    ToolCall {
        /// Tool name.
        name: String,
        /// Arguments as the model wrote them.
        arguments: String,
        /// The output the model was shown (`None` for no output, e.g. a handoff).
        output: Option<String>,
        /// Whether the output is an error.
        is_error: bool,
    },
    /// The latency report of one turn.
    Latency {
        /// The reply speech.
        speech_id: Option<String>,
        /// User stopped speaking → agent's first audio played.
        #[serde(with = "opt_secs", default)]
        e2e: Option<Duration>,
        /// End of speech → end-of-turn decision.
        #[serde(with = "opt_secs", default)]
        end_of_utterance: Option<Duration>,
        /// End of speech → final transcript.
        #[serde(with = "opt_secs", default)]
        transcription: Option<Duration>,
        /// LLM time to first token.
        #[serde(with = "opt_secs", default)]
        llm_ttft: Option<Duration>,
        /// TTS time to first byte.
        #[serde(with = "opt_secs", default)]
        tts_ttfb: Option<Duration>,
    },
    /// A paused speech resumed (or not) because no real user turn followed.
    FalseInterruption {
        /// Whether playback resumed.
        resumed: bool,
    },
    /// A component failed.
    Error {
        /// Its label.
        label: String,
        /// The error's message.
        message: String,
        /// Whether the session went on.
        recoverable: bool,
    },
    /// The session closed.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// One transcript line: when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TranscriptEntry {
    /// Time on the input timeline (since the input's first frame, or since the writer was created without an
    /// input): when the user started speaking, when the agent's text started showing, when a tool finished.
    #[serde(with = "secs")]
    pub at: Duration,
    /// What happened.
    #[serde(flatten)]
    pub event: TranscriptEvent,
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

impl TranscriptEvent {
    /// The transcript lines an event gives as it is, the same in every view: tool calls, turn latencies, false
    /// interruptions, errors. Empty for every other event (each view handles those its own way).
    pub(crate) fn recorded(event: SessionEvent) -> Vec<Self> {
        match event {
            SessionEvent::FunctionToolsExecuted { calls, outputs } => calls
                .into_iter()
                .enumerate()
                .map(|(i, call)| {
                    let out = outputs.get(i).cloned().flatten();
                    Self::ToolCall {
                        name: call.name,
                        arguments: call.arguments,
                        is_error: out.as_ref().is_some_and(|o| o.is_error),
                        output: out.map(|o| o.output),
                    }
                })
                .collect(),
            SessionEvent::MetricsCollected(Metrics::Turn(m)) => vec![Self::Latency {
                speech_id: m.speech_id,
                e2e: m.e2e_latency,
                end_of_utterance: m.end_of_utterance_delay,
                transcription: m.transcription_delay,
                llm_ttft: m.llm_ttft,
                tts_ttfb: m.tts_ttfb,
            }],
            SessionEvent::AgentFalseInterruption { resumed } => {
                vec![Self::FalseInterruption { resumed }]
            }
            SessionEvent::Error(e) => vec![Self::Error {
                label: e.label.clone(),
                message: e.error.to_string(),
                recoverable: e.recoverable,
            }],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for TranscriptEntry {
    /// The plain-text line: `[mm:ss.mmm] who: what`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.at.as_millis();
        write!(
            f,
            "[{:02}:{:02}.{:03}] ",
            ms / 60_000,
            (ms / 1000) % 60,
            ms % 1000
        )?;
        match &self.event {
            TranscriptEvent::User { text } => write!(f, "user: {text}"),
            TranscriptEvent::Agent { text, interrupted } => {
                write!(f, "agent: {text}")?;
                if *interrupted {
                    f.write_str(" [interrupted]")?;
                }
                Ok(())
            }
            TranscriptEvent::ToolCall {
                name,
                arguments,
                output,
                is_error,
            } => {
                write!(f, "tool: {name}({arguments})")?;
                match output {
                    Some(o) if *is_error => write!(f, " -> error: {o}"),
                    Some(o) => write!(f, " -> {o}"),
                    None => f.write_str(" -> (no output)"),
                }
            }
            TranscriptEvent::Latency {
                e2e,
                end_of_utterance,
                transcription,
                llm_ttft,
                tts_ttfb,
                ..
            } => {
                f.write_str("latency:")?;
                let parts = [
                    ("e2e", e2e),
                    ("end of utterance", end_of_utterance),
                    ("transcription", transcription),
                    ("LLM TTFT", llm_ttft),
                    ("TTS TTFB", tts_ttfb),
                ];
                let mut first = true;
                for (name, v) in parts {
                    if let Some(v) = v {
                        write!(
                            f,
                            "{} {name} {}",
                            if first { "" } else { "," },
                            fmt_secs(*v)
                        )?;
                        first = false;
                    }
                }
                Ok(())
            }
            TranscriptEvent::FalseInterruption { resumed } => {
                write!(
                    f,
                    "false interruption ({})",
                    if *resumed { "resumed" } else { "not resumed" }
                )
            }
            TranscriptEvent::Error {
                label,
                message,
                recoverable,
            } => write!(
                f,
                "error ({label}{}): {message}",
                if *recoverable { "" } else { ", unrecoverable" }
            ),
            TranscriptEvent::Closed { reason } => {
                let r = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                write!(f, "session closed: {r}")
            }
        }
    }
}

/// Where a [`TranscriptWriter`] writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TranscriptOptions {
    /// The plain-text transcript (one [`TranscriptEntry`] `Display` line each).
    pub text_path: Option<PathBuf>,
    /// The JSON Lines transcript (one serialized [`TranscriptEntry`] per line).
    pub jsonl_path: Option<PathBuf>,
}

impl TranscriptOptions {
    /// Writes the plain-text transcript to `path`.
    pub fn with_text_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.text_path = Some(path.into());
        self
    }
    /// Writes the JSON Lines transcript to `path`.
    pub fn with_jsonl_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.jsonl_path = Some(path.into());
        self
    }
}

#[derive(Default)]
struct TState {
    entries: Vec<TranscriptEntry>,
    /// Agent text being shown: when it started, and the text.
    current: Option<(Duration, String)>,
    /// Agent text segments shown and flushed, waiting for their committed message.
    shown: VecDeque<(Duration, String)>,
    user_started: Option<Duration>,
    /// A final user transcript arrived since `user_started` (the turn is waiting for its commit).
    user_final: bool,
    /// When the agent started speaking, until that speech's message is committed.
    agent_started: Option<Duration>,
    /// Entries handed to the file writer (a prefix of `entries`).
    written: usize,
    closed: bool,
}

struct Inner {
    state: Mutex<TState>,
    origin: Instant,
    input: Option<watch::Receiver<InputProgress>>,
    notify: Notify,
    writer: Mutex<Option<JoinHandle<Result<(), FileIoError>>>>,
    consumer: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn now(&self) -> Duration {
        let now = Instant::now();
        self.input
            .as_ref()
            .and_then(|i| i.borrow().timeline(now))
            .unwrap_or_else(|| now.saturating_duration_since(self.origin))
    }

    /// Inserts a line in time order (after lines with the same time, never before lines already written).
    fn push(&self, s: &mut TState, at: Duration, event: TranscriptEvent) {
        let i = s.entries.partition_point(|e| e.at <= at).max(s.written);
        s.entries.insert(i, TranscriptEntry { at, event });
        self.notify.notify_one();
    }

    /// Lines stamped before this time are final: every line still to come is stamped at or after it (a user turn
    /// not yet committed, agent text not yet matched to its message, a speech not yet committed, or now).
    fn watermark(&self, s: &TState) -> Duration {
        [
            s.current.as_ref().map(|c| c.0),
            s.shown.front().map(|c| c.0),
            s.user_started,
            s.agent_started,
        ]
        .into_iter()
        .flatten()
        .fold(self.now(), Duration::min)
    }

    /// Agent text shown but never committed (e.g. the session closed first) becomes a line.
    fn flush_shown(&self, s: &mut TState) {
        if let Some(c) = s.current.take()
            && !c.1.trim().is_empty()
        {
            s.shown.push_back(c);
        }
        while let Some((at, text)) = s.shown.pop_front() {
            self.push(
                s,
                at,
                TranscriptEvent::Agent {
                    text: text.trim().to_owned(),
                    interrupted: false,
                },
            );
        }
    }

    /// Handles one event; returns false after `Close`.
    fn on_event(&self, event: SessionEvent) -> bool {
        let now = self.now();
        let mut s = lock(&self.state);
        match event {
            // Speech without any final transcript before it (a cough, noise) never became a turn.
            SessionEvent::UserStartedSpeaking { .. }
                if s.user_started.is_none() || !s.user_final =>
            {
                s.user_started = Some(now);
            }
            SessionEvent::UserInputTranscribed { is_final: true, .. } => s.user_final = true,
            SessionEvent::AgentStartedSpeaking { .. } => s.agent_started = Some(now),
            SessionEvent::ConversationItemAdded {
                item: ChatItem::Message(m),
            } => {
                let text = m.text_content().unwrap_or_default();
                match m.role {
                    ChatRole::User => {
                        let at = s.user_started.take().unwrap_or(now);
                        s.user_final = false;
                        self.push(&mut s, at, TranscriptEvent::User { text });
                    }
                    ChatRole::Assistant => {
                        // The text output flushes a speech before its message is committed.
                        let shown = s.shown.pop_front().or_else(|| s.current.take());
                        let started = s.agent_started.take();
                        let (at, text) = match shown {
                            Some((at, shown)) if !shown.trim().is_empty() => (at, shown),
                            Some((at, _)) => (at, text),
                            None => (started.unwrap_or(now), text),
                        };
                        self.push(
                            &mut s,
                            at,
                            TranscriptEvent::Agent {
                                text: text.trim().to_owned(),
                                interrupted: m.interrupted,
                            },
                        );
                    }
                    _ => {}
                }
            }
            SessionEvent::Close { reason, .. } => {
                self.flush_shown(&mut s);
                self.push(&mut s, now, TranscriptEvent::Closed { reason });
                return false;
            }
            other => {
                for e in TranscriptEvent::recorded(other) {
                    self.push(&mut s, now, e);
                }
            }
        }
        true
    }
}

/// Writes the conversation as plain text and JSON Lines while the session runs.
///
/// Feed it the session's events ([`TranscriptWriter::follow`], subscribed before `start` to see everything) and,
/// for agent lines that hold exactly what was shown in step with playback, give it to the session as its
/// `TextOutput` (alone or in a [`super::TextFanout`]). Lines:
///
/// - **user**: each committed user message, stamped when the user started speaking;
/// - **agent**: each agent speech, stamped when its text started showing (or when the agent started speaking),
///   marked `[interrupted]` when the user cut it short (the committed message's flag);
/// - **tool**: each tool call with its output, when the batch finished;
/// - **latency**: the per-turn report (`MetricsCollected(Turn)`), **false interruption**, **error**, **session
///   closed**.
///
/// Timestamps are on the input timeline ([`TranscriptWriter::with_input_progress`]). Lines are in time order: a
/// line is written to the files once nothing still pending (a user turn not yet committed, an agent speech whose
/// message is not yet committed) can be stamped before it, so an interrupted agent line lands before the user turn
/// that interrupted it even though its message is committed later. The files are written by a blocking task;
/// [`TranscriptWriter::finish`] writes the rest and flushes them.
pub struct TranscriptWriter {
    inner: Arc<Inner>,
}

impl fmt::Debug for TranscriptWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranscriptWriter")
            .field("entries", &lock(&self.inner.state).entries.len())
            .finish_non_exhaustive()
    }
}

impl TranscriptWriter {
    /// Creates (truncates) the files and starts writing. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`FileIoError::WriteTranscript`] when a file cannot be created.
    pub fn create(options: TranscriptOptions) -> Result<Self, FileIoError> {
        Self::build(options, None)
    }

    /// As [`TranscriptWriter::create`], with timestamps counted from `input`'s first frame.
    ///
    /// # Errors
    /// As [`TranscriptWriter::create`].
    pub fn with_input_progress(
        options: TranscriptOptions,
        input: watch::Receiver<InputProgress>,
    ) -> Result<Self, FileIoError> {
        Self::build(options, Some(input))
    }

    fn build(
        options: TranscriptOptions,
        input: Option<watch::Receiver<InputProgress>>,
    ) -> Result<Self, FileIoError> {
        let open =
            |p: &Option<PathBuf>| -> Result<Option<(PathBuf, BufWriter<File>)>, FileIoError> {
                p.as_ref()
                    .map(|p| {
                        File::create(p)
                            .map(|f| (p.clone(), BufWriter::new(f)))
                            .map_err(|source| FileIoError::WriteTranscript {
                                path: p.clone(),
                                source,
                            })
                    })
                    .transpose()
            };
        let text = open(&options.text_path)?;
        let jsonl = open(&options.jsonl_path)?;
        let inner = Arc::new(Inner {
            state: Mutex::new(TState::default()),
            origin: Instant::now(),
            input,
            notify: Notify::new(),
            writer: Mutex::new(None),
            consumer: Mutex::new(None),
        });
        let task = tokio::spawn(write_loop(inner.clone(), text, jsonl));
        *lock(&inner.writer) = Some(task);
        Ok(Self { inner })
    }

    /// Follows `events` (from `AgentSession::events()`) until the session's `Close` event.
    pub fn follow(&self, mut events: EventStream<SessionEvent>) {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            while let Some(e) = events.next().await {
                if !inner.on_event(e) {
                    break;
                }
            }
        });
        if let Some(old) = lock(&self.inner.consumer).replace(task) {
            old.abort();
        }
    }

    /// The lines so far.
    pub fn entries(&self) -> Vec<TranscriptEntry> {
        lock(&self.inner.state).entries.clone()
    }

    /// Waits (at most `grace`) for the followed events to reach `Close`, then writes the remaining lines, flushes
    /// the files and returns every line. Agent text still waiting for its message becomes a line.
    ///
    /// # Errors
    /// [`FileIoError::WriteTranscript`] for the first write error, [`FileIoError::WriterTask`] when called twice.
    pub async fn finish(&self, grace: Duration) -> Result<Vec<TranscriptEntry>, FileIoError> {
        let consumer = lock(&self.inner.consumer).take();
        if let Some(mut c) = consumer
            && tokio::time::timeout(grace, &mut c).await.is_err()
        {
            c.abort();
        }
        {
            let mut s = lock(&self.inner.state);
            self.inner.flush_shown(&mut s);
            s.closed = true;
        }
        self.inner.notify.notify_one();
        let writer = lock(&self.inner.writer).take();
        match writer {
            Some(w) => w
                .await
                .map_err(|_| FileIoError::WriterTask("transcript"))??,
            None => return Err(FileIoError::WriterTask("transcript")),
        }
        Ok(self.entries())
    }
}

impl Drop for TranscriptWriter {
    fn drop(&mut self) {
        // Let the file writer write what it has and end (it would otherwise wait for lines forever).
        lock(&self.inner.state).closed = true;
        self.inner.notify.notify_one();
    }
}

type Sink = Option<(PathBuf, BufWriter<File>)>;

async fn write_loop(inner: Arc<Inner>, mut text: Sink, mut jsonl: Sink) -> Result<(), FileIoError> {
    let mut cursor = 0;
    loop {
        let notified = inner.notify.notified();
        let (batch, closed) = {
            let mut s = lock(&inner.state);
            let until = if s.closed {
                s.entries.len()
            } else {
                let mark = inner.watermark(&s);
                s.entries.partition_point(|e| e.at <= mark)
            };
            let batch = s.entries.get(cursor..until).unwrap_or_default().to_vec();
            s.written = until.max(cursor);
            (batch, s.closed)
        };
        cursor += batch.len();
        if !batch.is_empty() || closed {
            let job = tokio::task::spawn_blocking(move || {
                let r = write_entries(&mut text, &mut jsonl, &batch, closed);
                (text, jsonl, r)
            });
            let (t, j, r) = job
                .await
                .map_err(|_| FileIoError::WriterTask("transcript"))?;
            text = t;
            jsonl = j;
            r?;
            if closed {
                return Ok(());
            }
            continue;
        }
        notified.await;
    }
}

fn write_entries(
    text: &mut Sink,
    jsonl: &mut Sink,
    batch: &[TranscriptEntry],
    flush: bool,
) -> Result<(), FileIoError> {
    let err = |path: &PathBuf, source| FileIoError::WriteTranscript {
        path: path.clone(),
        source,
    };
    if let Some((path, w)) = text {
        for e in batch {
            writeln!(w, "{e}").map_err(|s| err(path, s))?;
        }
        if flush {
            w.flush().map_err(|s| err(path, s))?;
        }
    }
    if let Some((path, w)) = jsonl {
        for e in batch {
            let line = serde_json::to_string(e).map_err(|s| err(path, std::io::Error::other(s)))?;
            writeln!(w, "{line}").map_err(|s| err(path, s))?;
        }
        if flush {
            w.flush().map_err(|s| err(path, s))?;
        }
    }
    Ok(())
}

#[async_trait]
impl TextOutput for TranscriptWriter {
    fn label(&self) -> &str {
        "file.TranscriptWriter"
    }

    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        let now = self.inner.now();
        let mut s = lock(&self.inner.state);
        if s.closed {
            return Err(TextOutputError::Closed);
        }
        s.current
            .get_or_insert_with(|| (now, String::new()))
            .1
            .push_str(text);
        Ok(())
    }

    fn flush(&self) {
        let mut s = lock(&self.inner.state);
        if let Some(c) = s.current.take()
            && !c.1.trim().is_empty()
        {
            s.shown.push_back(c);
        }
    }
}
