//! [`ConsoleView`]: live session state in the terminal.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agents_core::audio_io::{TextOutput, TextOutputError};
use agents_core::events::{AgentState, SessionEvent, UserState};
use agents_core::stream::EventStream;
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{InputProgress, TranscriptEntry, TranscriptEvent};

/// Width of the progress bar, in cells.
const BAR: usize = 24;
/// Longest status line drawn on a terminal.
const STATUS_MAX: usize = 110;

fn state_name<T: serde::Serialize>(s: &T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

struct ViewState {
    agent: AgentState,
    user: UserState,
    interim: String,
    agent_text: String,
    progress: Option<InputProgress>,
    /// Last progress quarter printed (plain mode).
    quarter: u32,
}

struct ViewInner {
    out: Mutex<Box<dyn Write + Send>>,
    tty: bool,
    state: Mutex<ViewState>,
    origin: Instant,
    input: Mutex<Option<watch::Receiver<InputProgress>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ViewInner {
    fn at(&self) -> Duration {
        let now = Instant::now();
        lock(&self.input)
            .as_ref()
            .and_then(|i| i.borrow().timeline(now))
            .unwrap_or_else(|| now.saturating_duration_since(self.origin))
    }

    fn status(&self, s: &ViewState) -> String {
        let mut line = format!(
            "agent: {:<9} user: {:<9}",
            state_name(&s.agent),
            state_name(&s.user)
        );
        if let Some(p) = &s.progress {
            let filled = (p.fraction() * BAR as f64).round() as usize;
            line.push_str(&format!(
                " [{}{}] {:.1}/{:.1} s",
                "#".repeat(filled.min(BAR)),
                ".".repeat(BAR - filled.min(BAR)),
                p.position.as_secs_f64(),
                p.total.as_secs_f64()
            ));
        }
        if !s.interim.is_empty() {
            line.push_str(&format!(" | you: {}", s.interim));
        } else if !s.agent_text.is_empty() {
            line.push_str(&format!(" | agent: {}", s.agent_text));
        }
        line.chars().take(STATUS_MAX).collect()
    }

    /// Prints `line` (if any) above the status line; redraws the status line on a terminal.
    fn render(&self, line: Option<String>) {
        let status = self.tty.then(|| self.status(&lock(&self.state)));
        let mut out = lock(&self.out);
        // A terminal that went away is not the session's problem: drawing errors are ignored.
        let _ = (|| -> std::io::Result<()> {
            if self.tty {
                out.write_all(b"\r\x1b[2K")?;
            }
            if let Some(l) = line {
                writeln!(out, "{l}")?;
            }
            if let Some(s) = status {
                out.write_all(s.as_bytes())?;
            }
            out.flush()
        })();
    }

    fn entry_line(&self, event: TranscriptEvent) -> String {
        let mut e = TranscriptEntry {
            at: self.at(),
            event,
        };
        if let TranscriptEvent::Agent { text, .. } = &mut e.event {
            *text = text.trim().to_owned();
        }
        e.to_string()
    }

    /// Handles one event; returns false after `Close`.
    fn on_event(&self, event: SessionEvent) -> bool {
        let mut go_on = true;
        let line = {
            let mut s = lock(&self.state);
            match event {
                SessionEvent::AgentStateChanged { new, .. } => {
                    s.agent = new;
                    (!self.tty)
                        .then(|| format!("{} state: agent {}", self.stamp(), state_name(&new)))
                }
                SessionEvent::UserStateChanged { new, .. } => {
                    s.user = new;
                    (!self.tty)
                        .then(|| format!("{} state: user {}", self.stamp(), state_name(&new)))
                }
                SessionEvent::UserInputTranscribed {
                    transcript,
                    is_final,
                    ..
                } => {
                    if is_final {
                        s.interim.clear();
                        Some(format!("{} user (final): {transcript}", self.stamp()))
                    } else {
                        s.interim = transcript;
                        None
                    }
                }
                SessionEvent::ConversationItemAdded { item } => match item {
                    agents_core::ChatItem::Message(m)
                        if m.role == agents_core::ChatRole::Assistant && m.interrupted =>
                    {
                        Some(format!("{} agent interrupted", self.stamp()))
                    }
                    _ => None,
                },
                SessionEvent::Close { reason, .. } => {
                    go_on = false;
                    s.interim.clear();
                    Some(self.entry_line(TranscriptEvent::Closed { reason }))
                }
                other => {
                    let lines: Vec<String> = TranscriptEvent::recorded(other)
                        .into_iter()
                        .map(|e| self.entry_line(e))
                        .collect();
                    (!lines.is_empty()).then(|| lines.join("\n"))
                }
            }
        };
        self.render(line);
        if !go_on && self.tty {
            let _ = writeln!(lock(&self.out));
        }
        go_on
    }

    fn stamp(&self) -> String {
        let ms = self.at().as_millis();
        format!(
            "[{:02}:{:02}.{:03}]",
            ms / 60_000,
            (ms / 1000) % 60,
            ms % 1000
        )
    }

    fn on_progress(&self, p: InputProgress) {
        let line = {
            let mut s = lock(&self.state);
            s.progress = Some(p);
            // Plain mode: a line per quarter of the file, and at its end.
            let quarter = (p.fraction() * 4.0).floor() as u32;
            let quarter = if p.finished { 4 } else { quarter };
            if self.tty || quarter <= s.quarter {
                None
            } else {
                s.quarter = quarter;
                Some(format!(
                    "{} input: {}% ({:.1}/{:.1} s)",
                    self.stamp(),
                    quarter * 25,
                    p.position.as_secs_f64(),
                    p.total.as_secs_f64()
                ))
            }
        };
        if line.is_some() || self.tty {
            self.render(line);
        }
    }
}

/// Live state of a session in the terminal, from its events, its agent text and the input's progress.
///
/// On a terminal (TTY) one status line is redrawn in place (ANSI `\r` and erase-line): agent and user states, a
/// progress bar of the input file, the user's interim transcript or the agent's text being spoken; notable things
/// are printed above it as lines (final user transcripts, agent speech, tool calls, per-turn latency,
/// interruptions, errors, close). When the output is not a terminal (CI, a pipe) there is no status line: state
/// changes and progress quarters become plain lines too. No dependency beyond `std` (see the guide for why not
/// crossterm or indicatif).
///
/// Use it as the session's `TextOutput` (alone or in a [`super::TextFanout`]) to show the agent's words as they
/// are spoken.
#[derive(Clone)]
pub struct ConsoleView {
    inner: Arc<ViewInner>,
}

impl fmt::Debug for ConsoleView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleView")
            .field("tty", &self.inner.tty)
            .finish_non_exhaustive()
    }
}

impl ConsoleView {
    /// A view on stdout, live (status line) when stdout is a terminal.
    pub fn stdout() -> Self {
        let tty = std::io::stdout().is_terminal();
        Self::new(std::io::stdout(), tty)
    }

    /// A view writing to `out`; `tty` chooses the live status line over plain lines.
    pub fn new(out: impl Write + Send + 'static, tty: bool) -> Self {
        Self {
            inner: Arc::new(ViewInner {
                out: Mutex::new(Box::new(out)),
                tty,
                state: Mutex::new(ViewState {
                    agent: AgentState::Initializing,
                    user: UserState::Listening,
                    interim: String::new(),
                    agent_text: String::new(),
                    progress: None,
                    quarter: 0,
                }),
                origin: Instant::now(),
                input: Mutex::new(None),
            }),
        }
    }

    /// Whether the view draws a live status line.
    pub fn is_tty(&self) -> bool {
        self.inner.tty
    }

    /// Follows `events` (subscribed before `start` to see everything) and, when given, the input's progress, until
    /// the session's `Close` event. Must be called inside a tokio runtime.
    pub fn follow(
        &self,
        mut events: EventStream<SessionEvent>,
        progress: Option<watch::Receiver<InputProgress>>,
    ) -> JoinHandle<()> {
        let inner = self.inner.clone();
        lock(&inner.input).clone_from(&progress);
        tokio::spawn(async move {
            let mut progress = progress;
            loop {
                let changed = async {
                    match progress.as_mut() {
                        Some(p) => p.changed().await.map(|()| *p.borrow_and_update()),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    e = events.next() => match e {
                        Some(e) => if !inner.on_event(e) { return },
                        None => return,
                    },
                    p = changed => match p {
                        Ok(p) => inner.on_progress(p),
                        Err(_) => progress = None,
                    },
                }
            }
        })
    }
}

#[async_trait]
impl TextOutput for ConsoleView {
    fn label(&self) -> &str {
        "file.ConsoleView"
    }

    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        lock(&self.inner.state).agent_text.push_str(text);
        if self.inner.tty {
            self.inner.render(None);
        }
        Ok(())
    }

    fn flush(&self) {
        let text = std::mem::take(&mut lock(&self.inner.state).agent_text);
        if !text.trim().is_empty() {
            let line = self.inner.entry_line(TranscriptEvent::Agent {
                text,
                interrupted: false,
            });
            self.inner.render(Some(line));
        }
    }
}
