//! [`FakeRealtimeModel`]: a scripted [`RealtimeModel`] and its sessions.
//!
//! Responses come from a FIFO shared by all sessions of the model ([`FakeRealtimeModel::push_response`]); with an
//! empty FIFO a response has no content.
//!
//! # A response
//!
//! `generate_reply` (`user_initiated = true`), `commit_audio` (when [`FakeRealtimeModel::with_reply_on_commit`],
//! the default) and the end of user speech with server VAD (`user_initiated = false`) start a response:
//!
//! 1. `ResponseCreated` (ids `resp_1`, `resp_2`... and assistant items `item_1`... per model);
//! 2. after `ttfb` (tokio time, default 0), the steps in order: a text step emits, word by word, a `TextDelta`
//!    (words after the first carry their leading space) followed by the `AudioDelta` frames of that word — the
//!    [`FakeTts`](crate::FakeTts) formula and tone at the output rate (24 kHz), 20 ms frames, each frame waiting
//!    `real_time_factor ×` its duration (default 0; text-only models wait that factor of each word's duration
//!    before its delta); a function-call step emits `FunctionCall` (call ids `call_N`
//!    per model unless given);
//! 3. `ResponseDone` with `Completed` and [`RealtimeMetrics`] (label `fake.realtime`, the response id, tokio-time
//!    `ttft` to the first delta and `duration`, one output token per word); the assistant message (and function
//!    calls) are added to the session's [`chat_ctx`](RealtimeSession::chat_ctx) mirror.
//!
//! `interrupt` cancels the response in progress: nothing more of it is sent and `ResponseDone` with `Cancelled`
//! follows (the mirror keeps the text sent so far, marked interrupted). A reply requested while one is in progress
//! gets a recoverable `Error` event ("conversation already has an active response"), as OpenAI does.
//!
//! # Server VAD
//!
//! With [`FakeRealtimeModel::with_server_vad`], pushed audio is cut into 10 ms windows (audio time); a window whose
//! RMS reaches the threshold (default 0.01) emits `InputSpeechStarted` (cancelling a response in progress, as the
//! server does), and `min_silence` (default 500 ms) of silence emits `InputSpeechStopped`, then the next scripted
//! user transcript ([`FakeRealtimeModel::push_user_transcript`]) as a final `InputAudioTranscription`, then a
//! response.
//!
//! # Injected events
//!
//! [`FakeRealtimeModel::inject_event`] sends any event (e.g. a provider `Error`) on the last session's stream, in
//! order with the scripted ones.
//!
//! # Records
//!
//! Every session is recorded ([`FakeRealtimeModel::sessions`], [`RealtimeRecord`]): options, pushed audio duration,
//! commits, clears, replies and their instructions, interrupts, truncations, instruction/tool/tool-choice updates
//! and chat-context updates.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::ApiError;
use agents_core::chat::{ChatContext, ChatMessage, ChatRole, FunctionCall};
use agents_core::llm::ToolChoice;
use agents_core::metrics::RealtimeMetrics;
use agents_core::realtime::{
    RealtimeCapabilities, RealtimeConnection, RealtimeError, RealtimeEvent, RealtimeModel,
    RealtimeSession, RealtimeSessionOptions, ResponseStatus,
};
use agents_core::stream::{BoxStream, EventStream};
use agents_core::tools::ToolDefinition;
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::fakes::tts::SpeechTiming;
use crate::signal::{DEFAULT_SPEECH_THRESHOLD, duration_of, rms_of, samples_for};
use crate::util::{generate, lock};

/// One step of a scripted realtime response.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RealtimeStep {
    /// Assistant speech: text deltas and their audio.
    Text(String),
    /// A tool call.
    FunctionCall {
        /// Tool name.
        name: String,
        /// Arguments (JSON text).
        arguments: String,
        /// Call id; `None` for the automatic `call_N`.
        call_id: Option<String>,
    },
    /// A pause.
    Delay(Duration),
}

/// A scripted realtime response.
#[derive(Debug, Clone, Default)]
pub struct FakeRealtimeResponse {
    steps: Vec<RealtimeStep>,
}

impl FakeRealtimeResponse {
    /// An empty response.
    pub fn new() -> Self {
        Self::default()
    }

    /// A spoken reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new().then_text(text)
    }

    /// A reply with one tool call.
    pub fn function_call(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self::new().then_function_call(name, arguments)
    }

    /// Appends speech.
    pub fn then_text(mut self, text: impl Into<String>) -> Self {
        self.steps.push(RealtimeStep::Text(text.into()));
        self
    }

    /// Appends a tool call.
    pub fn then_function_call(
        mut self,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        self.steps.push(RealtimeStep::FunctionCall {
            name: name.into(),
            arguments: arguments.into(),
            call_id: None,
        });
        self
    }

    /// Appends a pause.
    pub fn then_delay(mut self, d: Duration) -> Self {
        self.steps.push(RealtimeStep::Delay(d));
        self
    }

    /// The steps.
    pub fn steps(&self) -> &[RealtimeStep] {
        &self.steps
    }
}

#[derive(Debug, Clone)]
struct Config {
    timing: SpeechTiming,
    input_rate: SampleRate,
    output_rate: SampleRate,
    ttfb: Duration,
    real_time_factor: f64,
    audio_output: bool,
    server_vad: bool,
    threshold: f32,
    min_silence: Duration,
    reply_on_commit: bool,
}

#[derive(Default)]
struct ModelState {
    responses: VecDeque<FakeRealtimeResponse>,
    user_transcripts: VecDeque<String>,
    sessions: Vec<RealtimeRecord>,
    /// Command senders of the sessions, in order (for injected events).
    senders: Vec<mpsc::Sender<Cmd>>,
    connect_error: Option<RealtimeError>,
    next_response: u64,
    next_item: u64,
    next_call: u64,
}

/// What one fake realtime session received. Cheap to clone (clones share the records).
#[derive(Clone, Default)]
pub struct RealtimeRecord {
    inner: Arc<Mutex<RecordState>>,
}

#[derive(Default)]
struct RecordState {
    options: Option<RealtimeSessionOptions>,
    pushed_audio: Duration,
    pushed_frames: usize,
    commits: usize,
    clears: usize,
    replies: Vec<Option<String>>,
    interrupts: usize,
    truncations: Vec<(String, Duration)>,
    instructions: Vec<String>,
    tools: Vec<Vec<ToolDefinition>>,
    tool_choices: Vec<ToolChoice>,
    chat_ctx_updates: Vec<ChatContext>,
    chat_ctx: ChatContext,
    closed: bool,
}

impl fmt::Debug for RealtimeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.inner);
        f.debug_struct("RealtimeRecord")
            .field("pushed_audio", &s.pushed_audio)
            .field("commits", &s.commits)
            .field("replies", &s.replies)
            .field("interrupts", &s.interrupts)
            .field("truncations", &s.truncations)
            .field("closed", &s.closed)
            .finish_non_exhaustive()
    }
}

impl RealtimeRecord {
    /// The options the session was opened with.
    pub fn options(&self) -> Option<RealtimeSessionOptions> {
        lock(&self.inner).options.clone()
    }
    /// Total duration of the audio pushed.
    pub fn pushed_audio(&self) -> Duration {
        lock(&self.inner).pushed_audio
    }
    /// Number of frames pushed.
    pub fn pushed_frames(&self) -> usize {
        lock(&self.inner).pushed_frames
    }
    /// Number of `commit_audio` calls.
    pub fn commits(&self) -> usize {
        lock(&self.inner).commits
    }
    /// Number of `clear_audio` calls.
    pub fn clears(&self) -> usize {
        lock(&self.inner).clears
    }
    /// The instructions of every `generate_reply`, in order.
    pub fn replies(&self) -> Vec<Option<String>> {
        lock(&self.inner).replies.clone()
    }
    /// Number of `interrupt` calls.
    pub fn interrupts(&self) -> usize {
        lock(&self.inner).interrupts
    }
    /// Every `truncate(message_id, audio_end)`, in order.
    pub fn truncations(&self) -> Vec<(String, Duration)> {
        lock(&self.inner).truncations.clone()
    }
    /// Every `update_instructions`, in order.
    pub fn instructions(&self) -> Vec<String> {
        lock(&self.inner).instructions.clone()
    }
    /// Every `update_tools`, in order.
    pub fn tools(&self) -> Vec<Vec<ToolDefinition>> {
        lock(&self.inner).tools.clone()
    }
    /// Every `update_tool_choice`, in order.
    pub fn tool_choices(&self) -> Vec<ToolChoice> {
        lock(&self.inner).tool_choices.clone()
    }
    /// Every `update_chat_ctx`, in order.
    pub fn chat_ctx_updates(&self) -> Vec<ChatContext> {
        lock(&self.inner).chat_ctx_updates.clone()
    }
    /// The session's conversation mirror.
    pub fn chat_ctx(&self) -> ChatContext {
        lock(&self.inner).chat_ctx.clone()
    }
    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }
}

/// A scripted [`RealtimeModel`] (label `fake.realtime`); see the [module documentation](self).
#[derive(Clone)]
pub struct FakeRealtimeModel {
    state: Arc<Mutex<ModelState>>,
    config: Config,
}

impl fmt::Debug for FakeRealtimeModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRealtimeModel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for FakeRealtimeModel {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRealtimeModel {
    /// A model with audio output at 24 kHz, input 24 kHz, instant generation, no server VAD.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(ModelState::default())),
            config: Config {
                timing: SpeechTiming::default(),
                input_rate: SampleRate::HZ_24000,
                output_rate: SampleRate::HZ_24000,
                ttfb: Duration::ZERO,
                real_time_factor: 0.0,
                audio_output: true,
                server_vad: false,
                threshold: DEFAULT_SPEECH_THRESHOLD,
                min_silence: Duration::from_millis(500),
                reply_on_commit: true,
            },
        }
    }

    /// Queues a response (builder style).
    pub fn push_response(self, response: FakeRealtimeResponse) -> Self {
        self.add_response(response);
        self
    }

    /// Queues a response.
    pub fn add_response(&self, response: FakeRealtimeResponse) {
        lock(&self.state).responses.push_back(response);
    }

    /// Queues the transcript of the next user turn (server VAD only).
    pub fn push_user_transcript(&self, text: impl Into<String>) {
        lock(&self.state).user_transcripts.push_back(text.into());
    }

    /// Makes the next `session()` calls fail with `error` (`None` to succeed again).
    pub fn set_connect_error(&self, error: Option<RealtimeError>) {
        lock(&self.state).connect_error = error;
    }

    /// Sets the time before a response's first delta.
    pub fn with_ttfb(mut self, ttfb: Duration) -> Self {
        self.config.ttfb = ttfb;
        self
    }

    /// Sets the real-time factor of audio generation (0 = instant).
    pub fn with_real_time_factor(mut self, factor: f64) -> Self {
        self.config.real_time_factor = if factor.is_finite() {
            factor.max(0.0)
        } else {
            0.0
        };
        self
    }

    /// Sets the speech formula (see [`SpeechTiming`]).
    pub fn with_timing(mut self, timing: SpeechTiming) -> Self {
        self.config.timing = timing;
        self
    }

    /// Sets the output rate.
    pub fn with_output_sample_rate(mut self, rate: SampleRate) -> Self {
        self.config.output_rate = rate;
        self
    }

    /// Text-only output (no `AudioDelta`).
    pub fn without_audio_output(mut self) -> Self {
        self.config.audio_output = false;
        self
    }

    /// Enables server VAD on pushed audio (and server turn detection).
    pub fn with_server_vad(mut self, enabled: bool) -> Self {
        self.config.server_vad = enabled;
        self
    }

    /// Sets the server VAD's RMS threshold.
    pub fn with_vad_threshold(mut self, threshold: f32) -> Self {
        self.config.threshold = threshold;
        self
    }

    /// Sets the server VAD's silence that ends user speech.
    pub fn with_vad_min_silence(mut self, d: Duration) -> Self {
        self.config.min_silence = d;
        self
    }

    /// Whether `commit_audio` starts a response (default true).
    pub fn with_reply_on_commit(mut self, enabled: bool) -> Self {
        self.config.reply_on_commit = enabled;
        self
    }

    /// Sends `event` on the last session's event stream (after the events already queued). False when no session is
    /// open or it is closed.
    pub fn inject_event(&self, event: RealtimeEvent) -> bool {
        let sender = lock(&self.state).senders.last().cloned();
        sender.is_some_and(|s| s.try_send(Cmd::Inject(Box::new(event))).is_ok())
    }

    /// The records of every session opened, in order.
    pub fn sessions(&self) -> Vec<RealtimeRecord> {
        lock(&self.state).sessions.clone()
    }

    /// The record of the last session opened.
    pub fn last_session(&self) -> Option<RealtimeRecord> {
        lock(&self.state).sessions.last().cloned()
    }

    /// Responses still queued.
    pub fn remaining(&self) -> usize {
        lock(&self.state).responses.len()
    }
}

#[async_trait]
impl RealtimeModel for FakeRealtimeModel {
    fn label(&self) -> &str {
        "fake.realtime"
    }

    fn model(&self) -> &str {
        "fake-realtime"
    }

    fn capabilities(&self) -> RealtimeCapabilities {
        let mut c = RealtimeCapabilities::default();
        c.turn_detection = self.config.server_vad;
        c.user_transcription = self.config.server_vad;
        c.audio_output = self.config.audio_output;
        c.message_truncation = true;
        c.auto_tool_reply_generation = false;
        c
    }

    async fn session(
        &self,
        options: RealtimeSessionOptions,
    ) -> Result<RealtimeConnection, RealtimeError> {
        let record = RealtimeRecord::default();
        {
            let mut m = lock(&self.state);
            if let Some(e) = &m.connect_error {
                return Err(e.clone());
            }
            m.sessions.push(record.clone());
        }
        {
            let mut r = lock(&record.inner);
            r.chat_ctx = options.chat_ctx.clone();
            r.options = Some(options);
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, events) = EventStream::channel(64);
        lock(&self.state).senders.push(cmd_tx.clone());
        let actor = Actor {
            model: self.clone(),
            record: record.clone(),
            outbox: VecDeque::new(),
            active: None,
            vad: VadState::default(),
        };
        tokio::spawn(actor.run(cmd_rx, ev_tx));
        let session = FakeRealtimeSession {
            cmd: cmd_tx,
            record,
            config: self.config.clone(),
        };
        Ok(RealtimeConnection {
            session: Arc::new(session),
            events,
        })
    }
}

enum Cmd {
    Audio(AudioFrame),
    Reply { user_initiated: bool },
    Interrupt,
    Inject(Box<RealtimeEvent>),
    Close,
}

/// The control side of a fake realtime session.
pub struct FakeRealtimeSession {
    cmd: mpsc::Sender<Cmd>,
    record: RealtimeRecord,
    config: Config,
}

impl fmt::Debug for FakeRealtimeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRealtimeSession")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl FakeRealtimeSession {
    /// The session's records.
    pub fn record(&self) -> &RealtimeRecord {
        &self.record
    }

    async fn send(&self, cmd: Cmd) -> Result<(), RealtimeError> {
        self.cmd
            .send(cmd)
            .await
            .map_err(|_| RealtimeError::SessionClosed)
    }

    fn update(&self, f: impl FnOnce(&mut RecordState)) -> Result<(), RealtimeError> {
        let mut r = lock(&self.record.inner);
        if r.closed {
            return Err(RealtimeError::SessionClosed);
        }
        f(&mut r);
        Ok(())
    }
}

#[async_trait]
impl RealtimeSession for FakeRealtimeSession {
    fn input_sample_rate(&self) -> SampleRate {
        self.config.input_rate
    }

    fn output_sample_rate(&self) -> SampleRate {
        self.config.output_rate
    }

    async fn push_audio(&self, frame: AudioFrame) -> Result<(), RealtimeError> {
        self.update(|r| {
            r.pushed_audio += frame.duration();
            r.pushed_frames += 1;
        })?;
        if self.config.server_vad {
            self.send(Cmd::Audio(frame)).await?;
        }
        Ok(())
    }

    async fn commit_audio(&self) -> Result<(), RealtimeError> {
        self.update(|r| r.commits += 1)?;
        if self.config.reply_on_commit {
            self.send(Cmd::Reply {
                user_initiated: false,
            })
            .await?;
        }
        Ok(())
    }

    async fn clear_audio(&self) -> Result<(), RealtimeError> {
        self.update(|r| r.clears += 1)
    }

    async fn generate_reply(&self, instructions: Option<String>) -> Result<(), RealtimeError> {
        self.update(|r| r.replies.push(instructions))?;
        self.send(Cmd::Reply {
            user_initiated: true,
        })
        .await
    }

    async fn interrupt(&self) -> Result<(), RealtimeError> {
        self.update(|r| r.interrupts += 1)?;
        self.send(Cmd::Interrupt).await
    }

    async fn truncate(&self, message_id: &str, audio_end: Duration) -> Result<(), RealtimeError> {
        self.update(|r| r.truncations.push((message_id.to_owned(), audio_end)))
    }

    async fn update_instructions(&self, instructions: &str) -> Result<(), RealtimeError> {
        self.update(|r| r.instructions.push(instructions.to_owned()))
    }

    async fn update_tools(&self, tools: Vec<ToolDefinition>) -> Result<(), RealtimeError> {
        self.update(|r| r.tools.push(tools))
    }

    async fn update_tool_choice(&self, tool_choice: ToolChoice) -> Result<(), RealtimeError> {
        self.update(|r| r.tool_choices.push(tool_choice))
    }

    async fn update_chat_ctx(&self, chat_ctx: &ChatContext) -> Result<(), RealtimeError> {
        self.update(|r| {
            r.chat_ctx_updates.push(chat_ctx.clone());
            r.chat_ctx = chat_ctx.clone();
        })
    }

    fn chat_ctx(&self) -> ChatContext {
        self.record.chat_ctx()
    }

    async fn close(&self) -> Result<(), RealtimeError> {
        self.update(|r| r.closed = true)?;
        let _ = self.cmd.send(Cmd::Close).await;
        Ok(())
    }
}

struct Active {
    id: String,
    item_id: String,
    text: String,
    started: tokio::time::Instant,
    ttft: Option<Duration>,
    words: u32,
    stream: BoxStream<RealtimeEvent>,
}

#[derive(Default)]
struct VadState {
    rate: Option<SampleRate>,
    window: Vec<i16>,
    speaking: bool,
    silence: u64,
}

struct Actor {
    model: FakeRealtimeModel,
    record: RealtimeRecord,
    outbox: VecDeque<RealtimeEvent>,
    active: Option<Active>,
    vad: VadState,
}

enum Step {
    Cmd(Option<Cmd>),
    Sent,
    Event(Option<RealtimeEvent>),
}

impl Actor {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>, events: mpsc::Sender<RealtimeEvent>) {
        loop {
            let has_out = !self.outbox.is_empty();
            let has_active = self.active.is_some();
            let step = {
                let active = &mut self.active;
                tokio::select! {
                    biased;
                    c = cmds.recv() => Step::Cmd(c),
                    p = events.reserve(), if has_out => match p {
                        Ok(p) => {
                            if let Some(e) = self.outbox.pop_front() {
                                p.send(e);
                            }
                            Step::Sent
                        }
                        Err(_) => return,
                    },
                    e = async {
                        match active.as_mut() {
                            Some(a) => a.stream.next().await,
                            None => std::future::pending().await,
                        }
                    }, if has_active && !has_out => Step::Event(e),
                }
            };
            match step {
                Step::Cmd(None | Some(Cmd::Close)) => return,
                Step::Cmd(Some(c)) => self.handle(c),
                Step::Sent => {}
                Step::Event(Some(e)) => self.on_response_event(e),
                Step::Event(None) => self.finish(ResponseStatus::Completed),
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Audio(frame) => self.on_audio(&frame),
            Cmd::Reply { user_initiated } => self.start_response(user_initiated),
            Cmd::Interrupt => {
                if self.active.is_some() {
                    self.finish(ResponseStatus::Cancelled);
                }
            }
            Cmd::Inject(e) => self.outbox.push_back(*e),
            Cmd::Close => {}
        }
    }

    fn start_response(&mut self, user_initiated: bool) {
        if self.active.is_some() {
            self.outbox.push_back(RealtimeEvent::Error {
                error: RealtimeError::Api(
                    ApiError::new("Conversation already has an active response")
                        .with_retryable(false),
                ),
                recoverable: true,
            });
            return;
        }
        let (id, item_id, steps) = {
            let mut m = lock(&self.model.state);
            let response = m.responses.pop_front().unwrap_or_default();
            m.next_response += 1;
            m.next_item += 1;
            let (id, item) = (
                format!("resp_{}", m.next_response),
                format!("item_{}", m.next_item),
            );
            let mut steps = response.steps;
            for s in &mut steps {
                if let RealtimeStep::FunctionCall {
                    call_id: c @ None, ..
                } = s
                {
                    m.next_call += 1;
                    *c = Some(format!("call_{}", m.next_call));
                }
            }
            (id, item, steps)
        };
        self.outbox.push_back(RealtimeEvent::ResponseCreated {
            response_id: id.clone(),
            user_initiated,
        });
        let config = self.model.config.clone();
        let (rid, iid) = (id.clone(), item_id.clone());
        let stream = generate(move |y| async move {
            tokio::time::sleep(config.ttfb).await;
            let mut first_word = true;
            for step in steps {
                match step {
                    RealtimeStep::Delay(d) => tokio::time::sleep(d).await,
                    RealtimeStep::FunctionCall {
                        name,
                        arguments,
                        call_id,
                    } => {
                        let call = FunctionCall::new(call_id.unwrap_or_default(), name, arguments);
                        if !y
                            .send(RealtimeEvent::FunctionCall {
                                response_id: rid.clone(),
                                call,
                            })
                            .await
                        {
                            return;
                        }
                    }
                    RealtimeStep::Text(text) => {
                        for (frame, timed) in config.timing.render(&text, config.output_rate) {
                            for w in timed {
                                if !config.audio_output && config.real_time_factor > 0.0 {
                                    // Text-only: pace the words as the audio would be.
                                    let d = w.end.saturating_sub(w.start);
                                    tokio::time::sleep(d.mul_f64(config.real_time_factor)).await;
                                }
                                let delta = if first_word {
                                    w.text
                                } else {
                                    format!(" {}", w.text)
                                };
                                first_word = false;
                                let e = RealtimeEvent::TextDelta {
                                    response_id: rid.clone(),
                                    item_id: iid.clone(),
                                    delta,
                                };
                                if !y.send(e).await {
                                    return;
                                }
                            }
                            if !config.audio_output {
                                continue;
                            }
                            if config.real_time_factor > 0.0 {
                                tokio::time::sleep(
                                    frame.duration().mul_f64(config.real_time_factor),
                                )
                                .await;
                            }
                            let e = RealtimeEvent::AudioDelta {
                                response_id: rid.clone(),
                                item_id: iid.clone(),
                                frame,
                            };
                            if !y.send(e).await {
                                return;
                            }
                        }
                    }
                }
            }
        });
        self.active = Some(Active {
            id,
            item_id,
            text: String::new(),
            started: tokio::time::Instant::now(),
            ttft: None,
            words: 0,
            stream: Box::pin(stream),
        });
    }

    fn on_response_event(&mut self, e: RealtimeEvent) {
        if let Some(a) = &mut self.active
            && a.ttft.is_none()
            && matches!(
                e,
                RealtimeEvent::TextDelta { .. } | RealtimeEvent::AudioDelta { .. }
            )
        {
            a.ttft = Some(a.started.elapsed());
        }
        match &e {
            RealtimeEvent::TextDelta { delta, .. } => {
                if let Some(a) = &mut self.active {
                    a.text.push_str(delta);
                    a.words += 1;
                }
            }
            RealtimeEvent::FunctionCall { call, .. } => {
                lock(&self.record.inner).chat_ctx.push(call.clone());
            }
            _ => {}
        }
        self.outbox.push_back(e);
    }

    fn finish(&mut self, status: ResponseStatus) {
        let Some(a) = self.active.take() else {
            return;
        };
        let mut metrics = RealtimeMetrics::new("fake.realtime");
        metrics.request_id = Some(a.id.clone());
        metrics.ttft = a.ttft;
        metrics.duration = a.started.elapsed();
        metrics.cancelled = status == ResponseStatus::Cancelled;
        metrics.output_tokens = a.words;
        metrics.total_tokens = a.words;
        if !a.text.is_empty() {
            let mut msg = ChatMessage::new(ChatRole::Assistant, a.text);
            msg.id = a.item_id;
            msg.interrupted = status == ResponseStatus::Cancelled;
            lock(&self.record.inner).chat_ctx.push(msg);
        }
        self.outbox.push_back(RealtimeEvent::ResponseDone {
            response_id: a.id,
            status,
            metrics: Some(metrics),
        });
    }

    fn on_audio(&mut self, frame: &AudioFrame) {
        let rate = *self.vad.rate.get_or_insert(frame.sample_rate());
        if rate != frame.sample_rate() {
            // The fake does not resample; restart its analysis at the new rate.
            self.vad = VadState {
                rate: Some(frame.sample_rate()),
                ..VadState::default()
            };
        }
        let rate = frame.sample_rate();
        let window_len = samples_for(Duration::from_millis(10), rate).max(1);
        let channels = usize::from(frame.num_channels()).max(1);
        for chunk in frame.data().chunks(channels) {
            let sum: i32 = chunk.iter().map(|&s| i32::from(s)).sum();
            let mono = sum / i32::try_from(channels).unwrap_or(1);
            self.vad.window.push(i16::try_from(mono).unwrap_or(0));
            if self.vad.window.len() < window_len {
                continue;
            }
            let speech = rms_of(&self.vad.window) >= self.model.config.threshold;
            self.vad.window.clear();
            if speech {
                self.vad.silence = 0;
                if !self.vad.speaking {
                    self.vad.speaking = true;
                    self.outbox.push_back(RealtimeEvent::InputSpeechStarted);
                    if self.active.is_some() {
                        self.finish(ResponseStatus::Cancelled);
                    }
                }
            } else if self.vad.speaking {
                self.vad.silence += window_len as u64;
                if duration_of(self.vad.silence, rate) >= self.model.config.min_silence {
                    self.vad.speaking = false;
                    self.vad.silence = 0;
                    self.on_user_turn();
                }
            }
        }
    }

    fn on_user_turn(&mut self) {
        let transcript = lock(&self.model.state).user_transcripts.pop_front();
        self.outbox.push_back(RealtimeEvent::InputSpeechStopped {
            user_transcription_enabled: true,
        });
        let transcript = transcript.unwrap_or_default();
        let mut msg = ChatMessage::new(ChatRole::User, transcript.clone());
        let item_id = {
            let mut m = lock(&self.model.state);
            m.next_item += 1;
            format!("item_{}", m.next_item)
        };
        msg.id = item_id.clone();
        lock(&self.record.inner).chat_ctx.push(msg);
        self.outbox
            .push_back(RealtimeEvent::InputAudioTranscription {
                item_id,
                transcript,
                is_final: true,
            });
        self.start_response(false);
    }
}
