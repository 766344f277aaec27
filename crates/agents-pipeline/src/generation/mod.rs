//! One speech, from text or LLM to played audio.
//!
//! A generation task is spawned as soon as a speech is created (pre-generation, behaviour §5.2): the LLM stage
//! streams text, the TTS stage turns it into audio, both into bounded buffers, **before** the speech is authorized
//! to play. Only forwarding to the outputs waits for authorization. After authorization:
//!
//! 1. after `min_consecutive_speech_delay` since the previous speech of the activity ended, audio is converted to
//!    the output's rate and channels (`convert`) and forwarded to the [`AudioOutput`] (agent state `speaking` on
//!    the first frame), with the TTS word timings; the reply text goes to the text output. When the session has
//!    both outputs they are one [`TranscriptSynchronizer`] (see `output_path`), which releases the text in step
//!    with playback;
//! 2. the tool calls of the reply run concurrently with playout ([`crate::tools_exec`]);
//! 3. on interruption the output buffer is cleared, the playback position read from the sink, and the assistant
//!    message holds only the words heard: the synchronizer's played text (what the user saw), or without a
//!    synchronizer [`agents_core::tokenize::truncate_to_duration`] at the playback position (from the TTS word
//!    timings when given, otherwise paced by syllables); tool results of an interrupted reply are discarded.

mod convert;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use agents_audio::AudioFrame;
use agents_core::agent::AgentHooks;
use agents_core::audio_io::{AudioOutput, TextOutput};
use agents_core::chat::{ChatMessage, ChatRole, FunctionCall, MessageMetrics};
use agents_core::events::{AgentState, Component, ErrorEvent};
use agents_core::llm::{ChatChunk, ChatRequest, Llm, ToolChoice};
use agents_core::metrics::{Metrics, TurnMetrics};
use agents_core::session::SayAudio;
use agents_core::speech::SpeechHandle;
use agents_core::stream::EventStream;
use agents_core::tokenize::{
    SentenceOptions, TextTransform, TransformChain, default_transforms, truncate_to_duration,
};
use agents_core::tools::{ToolContext, ToolSet};
use agents_core::tts::{SynthesizeOptions, SynthesizedAudio, TimedText, Tts, TtsError};
use agents_core::tts_adapter::StreamAdapter;

use crate::session::Shared;
use crate::tools_exec::{self, ToolStep};
use crate::transcription::{TranscriptSynchronizer, TranscriptionOptions};
use convert::OutputConverter;

/// Capacity of the pre-generation buffers (text chunks and 20 ms audio frames: about 20 s of audio).
const BUFFER: usize = 1024;

/// How long an interrupted speech waits for the sink to report the playback position.
const PLAYOUT_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a speech says.
// Built once per speech.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Source {
    /// `say`.
    Say {
        text: String,
        audio: Option<SayAudio>,
        add_to_chat_ctx: bool,
    },
    /// A reply by the LLM.
    Reply {
        request: ChatRequest,
        tools: ToolSet,
        tool_choice: Option<ToolChoice>,
        /// The user turn answered, set when the turn commits (later than the start for a preemptive reply).
        turn: Arc<OnceLock<TurnTiming>>,
    },
}

/// Timing of the user turn a reply answers, for the turn metrics. Shared (through the same `Arc<OnceLock>`) by
/// the reply and its tool follow-ups: the first of them that plays something reports the turn, once.
#[derive(Debug, Clone)]
pub(crate) struct TurnTiming {
    pub(crate) last_speaking_time: Instant,
    pub(crate) end_of_utterance_delay: Duration,
    pub(crate) transcription_delay: Duration,
    pub(crate) on_user_turn_completed_delay: Duration,
    /// Set by the speech that reported the turn.
    pub(crate) reported: Arc<AtomicBool>,
}

impl TurnTiming {
    /// Claims the turn report: true for the first caller only.
    fn claim_report(&self) -> bool {
        !self.reported.swap(true, Ordering::AcqRel)
    }
}

/// Everything a generation needs.
pub(crate) struct GenerationContext {
    pub(crate) handle: SpeechHandle,
    pub(crate) hooks: Arc<dyn AgentHooks>,
    pub(crate) llm: Option<Arc<dyn Llm>>,
    pub(crate) tts: Option<Arc<dyn Tts>>,
    pub(crate) audio_output: Option<Arc<dyn AudioOutput>>,
    pub(crate) text_output: Option<Arc<dyn TextOutput>>,
    /// The synchronizer behind `audio_output` and `text_output`, when both exist.
    pub(crate) transcript_sync: Option<Arc<TranscriptSynchronizer>>,
    /// When the previous speech of the activity ended.
    pub(crate) last_speech_end: Arc<Mutex<Option<Instant>>>,
    pub(crate) min_consecutive_speech_delay: Duration,
    pub(crate) shared: Arc<Shared>,
    pub(crate) tool_ctx: ToolContext,
    pub(crate) notify: mpsc::Sender<Notice>,
    /// Apply the default text transforms (markdown, emoji) before the TTS.
    pub(crate) text_transforms: bool,
}

/// What a generation tells its activity.
#[derive(Debug)]
pub(crate) enum Notice {
    /// The first audio frame (or text, without audio output) was forwarded.
    Started { speech_id: String },
    /// Playout is over (the handle is marked done).
    PlayoutDone {
        speech_id: String,
        /// The assistant message to commit (played text only), if any.
        message: Option<ChatMessage>,
        interrupted: bool,
        /// Tools of this reply are still running (agent state `thinking` until they finish).
        tools_running: bool,
    },
    /// The tools of the reply finished (sent only for replies that made calls and were not interrupted).
    ToolsDone {
        handle: SpeechHandle,
        step: ToolStep,
        tool_choice: Option<ToolChoice>,
        /// The user turn the reply answers: its follow-up answers the same turn.
        turn: Option<Arc<OnceLock<TurnTiming>>>,
    },
    /// The generation task ended (sent by the activity's wrapper, last).
    Finished,
}

/// Marks `handle` done and tells the activity its playout is over (`message`: what was heard, to commit).
pub(crate) async fn finish_playout(
    notify: &mpsc::Sender<Notice>,
    handle: &SpeechHandle,
    message: Option<ChatMessage>,
    interrupted: bool,
    tools_running: impl FnOnce() -> bool,
) {
    handle.mark_done();
    let _ = notify
        .send(Notice::PlayoutDone {
            speech_id: handle.id().to_owned(),
            message,
            interrupted,
            tools_running: tools_running(),
        })
        .await;
}

/// A chunk of audio with the words that start in it (times from the start of the speech).
struct AudioChunk {
    frame: AudioFrame,
    words: Vec<TimedText>,
}

#[derive(Debug, Default)]
struct StageTimes {
    /// The LLM text so far.
    text: String,
    llm_ttft: Option<Duration>,
    tts_ttfb: Option<Duration>,
}

/// Aborts the owned task when dropped: every stage of a generation dies with it.
struct Owned<T>(JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> EventStream<T> {
    EventStream::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    }))
}

/// Runs one speech to completion. Never panics; errors are reported on the session's event stream.
pub(crate) async fn run(ctx: GenerationContext, source: Source) {
    let handle = ctx.handle.clone();
    let times = Arc::new(Mutex::new(StageTimes::default()));
    let (audio_tx, mut audio_rx) = mpsc::channel::<AudioChunk>(BUFFER);
    let (transcript_tx, transcript_rx) = mpsc::channel::<String>(BUFFER);
    let (calls_tx, calls_rx) = mpsc::channel::<FunctionCall>(64);
    let mut stages: Vec<Owned<()>> = Vec::new();
    let is_reply = matches!(source, Source::Reply { .. });
    let mut reply_tools = None;
    let mut turn_timing: Option<Arc<OnceLock<TurnTiming>>> = None;
    let mut add_to_ctx = true;
    let mut say_text = String::new();

    // Pre-generation: start every producing stage now.
    match source {
        Source::Say {
            text,
            audio,
            add_to_chat_ctx,
        } => {
            add_to_ctx = add_to_chat_ctx;
            say_text.clone_from(&text);
            let _ = transcript_tx.try_send(text.clone());
            drop(transcript_tx);
            match audio {
                Some(audio) => {
                    stages.push(Owned(tokio::spawn(forward_given_audio(audio, audio_tx))))
                }
                None => match ctx.tts.clone() {
                    None => drop(audio_tx),
                    Some(tts) => {
                        let (text_tx, text_rx) = mpsc::channel(1);
                        let _ = text_tx.try_send(text);
                        drop(text_tx);
                        stages.push(Owned(tokio::spawn(tts_stage(
                            tts,
                            Arc::clone(&ctx.hooks),
                            text_rx,
                            audio_tx,
                            Arc::clone(&times),
                            Arc::clone(&ctx.shared),
                            handle.id().to_owned(),
                            ctx.text_transforms,
                        ))));
                    }
                },
            }
            drop(calls_tx);
        }
        Source::Reply {
            request,
            tools,
            tool_choice,
            turn,
        } => {
            turn_timing = Some(turn);
            reply_tools = Some((tools, tool_choice));
            let tts_tx = match ctx.tts.clone() {
                Some(tts) => {
                    let (text_tx, text_rx) = mpsc::channel(BUFFER);
                    stages.push(Owned(tokio::spawn(tts_stage(
                        tts,
                        Arc::clone(&ctx.hooks),
                        text_rx,
                        audio_tx,
                        Arc::clone(&times),
                        Arc::clone(&ctx.shared),
                        handle.id().to_owned(),
                        ctx.text_transforms,
                    ))));
                    Some(text_tx)
                }
                None => {
                    // No audio will come: forwarding must not wait for it.
                    drop(audio_tx);
                    None
                }
            };
            match ctx.llm.clone() {
                Some(llm) => stages.push(Owned(tokio::spawn(llm_stage(
                    llm,
                    Arc::clone(&ctx.hooks),
                    request,
                    tts_tx,
                    transcript_tx,
                    calls_tx,
                    Arc::clone(&times),
                    Arc::clone(&ctx.shared),
                    handle.id().to_owned(),
                )))),
                None => {
                    ctx.shared.emit_error(ErrorEvent::new(
                        Component::Llm,
                        "none",
                        PipelineMisconfigured("generate_reply needs an LLM"),
                        true,
                    ));
                    drop(calls_tx);
                }
            }
        }
    }

    // Only forwarding waits for authorization, then for the minimum gap after the previous speech.
    let gap_over = async {
        handle.wait_for_authorization().await;
        let last_end = ctx.last_speech_end.lock().map(|l| *l).unwrap_or_default();
        if let Some(end) = last_end {
            tokio::time::sleep_until(end + ctx.min_consecutive_speech_delay).await;
        }
    };
    tokio::select! {
        () = gap_over => {}
        () = handle.wait_for_interruption() => {
            drop(stages);
            finish_playout(&ctx.notify, &handle, None, true, || false).await;
            return;
        }
    }
    if is_reply {
        ctx.shared.set_agent_state(AgentState::Thinking);
    }

    // Tools run once authorized, concurrently with playout.
    let tools_started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tools_task = reply_tools.map(|(tools, tool_choice)| {
        let tool_ctx = ctx.tool_ctx.clone();
        let started = Arc::clone(&tools_started);
        Owned(tokio::spawn(async move {
            let step = tools_exec::execute_streaming(
                &tools,
                calls_rx,
                &tool_ctx,
                tool_choice.as_ref(),
                || started.store(true, std::sync::atomic::Ordering::Release),
            )
            .await;
            (!step.calls.is_empty()).then_some((step, tool_choice))
        }))
    });

    let started_at = OnceLock::<Instant>::new();
    let mut words: Vec<TimedText> = Vec::new();
    let mut captured = false;
    let output = ctx.audio_output.clone();
    let mark_started = || {
        if started_at.set(Instant::now()).is_ok() {
            ctx.shared.set_agent_state(AgentState::Speaking);
            let _ = ctx.notify.try_send(Notice::Started {
                speech_id: handle.id().to_owned(),
            });
        }
    };

    let sync = ctx.transcript_sync.as_ref();
    // One frame to the output; a failure is reported (and ends the forwarding).
    let capture = async |out: &Arc<dyn AudioOutput>, frame: AudioFrame| -> bool {
        match out.capture_frame(frame).await {
            Ok(()) => true,
            Err(e) => {
                ctx.shared
                    .emit_error(ErrorEvent::new(Component::Transport, out.label(), e, true));
                false
            }
        }
    };
    let forward_audio = async {
        let Some(out) = &output else {
            // Drain, so the producing stages are not held back.
            while audio_rx.recv().await.is_some() {}
            return;
        };
        let mut converter = OutputConverter::new(out.sample_rate(), out.num_channels());
        let mut ended = true;
        while let Some(chunk) = audio_rx.recv().await {
            if let Some(sync) = sync {
                sync.push_timings(chunk.words.iter().cloned());
            }
            words.extend(chunk.words);
            let frames = match converter.push(chunk.frame) {
                Ok(frames) => frames,
                Err(e) => {
                    ctx.shared.emit_error(ErrorEvent::new(
                        Component::Transport,
                        out.label(),
                        e,
                        true,
                    ));
                    ended = false;
                    break;
                }
            };
            for frame in frames {
                if !capture(out, frame).await {
                    return;
                }
                captured = true;
                mark_started();
            }
        }
        if !ended {
            return;
        }
        match converter.finish() {
            Ok(tail) => {
                for frame in tail {
                    if !capture(out, frame).await {
                        return;
                    }
                    captured = true;
                    mark_started();
                }
            }
            Err(e) => {
                ctx.shared
                    .emit_error(ErrorEvent::new(Component::Transport, out.label(), e, true))
            }
        }
    };
    let forward_text = async {
        let stream = ctx.hooks.transcription_node(receiver_stream(transcript_rx));
        release_transcript(ctx.text_output.as_ref(), stream, || {
            if output.is_none() {
                mark_started();
            }
        })
        .await;
        // The synchronizer's segment for this speech ends on both sides, even without text.
        if let Some(sync) = sync {
            sync.flush_text();
        }
    };
    let interrupted = tokio::select! {
        _ = futures::future::join(forward_audio, forward_text) => false,
        () = handle.wait_for_interruption() => true,
    };
    let mut interrupted = interrupted;
    if interrupted {
        // Stop producing at once: the LLM and TTS of an interrupted speech are cancelled (a provider or a bus
        // worker behind the LLM sees its stream dropped), before waiting for the sink's playback report.
        stages.clear();
    }
    let mut position = None;
    if let Some(out) = &output {
        if !interrupted {
            out.flush();
            if captured {
                tokio::select! {
                    p = out.wait_for_playout() => position = p.map(|p| p.playback_position),
                    () = handle.wait_for_interruption() => interrupted = true,
                }
            }
        }
        if interrupted {
            out.clear_buffer();
            if captured {
                position = tokio::time::timeout(PLAYOUT_REPORT_TIMEOUT, out.wait_for_playout())
                    .await
                    .ok()
                    .flatten()
                    .map(|p| p.playback_position);
            } else {
                position = Some(Duration::ZERO);
            }
        }
    }
    if interrupted {
        // Interrupted while waiting for the playout above.
        drop(stages);
    }

    // The reply text is complete once playout ended without interruption (the TTS and text forwarding end only
    // after the LLM stage); after an interruption it is what the LLM produced so far.
    let full_text = if is_reply {
        times.lock().map(|t| t.text.clone()).unwrap_or_default()
    } else {
        say_text
    };

    let committed_text = if interrupted {
        match (&output, position) {
            // What the synchronizer released is what the user saw and heard (behaviour 126).
            (Some(_), Some(_)) if captured && let Some(sync) = sync => {
                Some(sync.played_text().trim_end().to_owned())
            }
            (Some(_), Some(pos)) => Some(
                truncate_to_duration(&full_text, pos, Some(&words))
                    .trim_end()
                    .to_owned(),
            ),
            // Without an audio output nothing is committed for an interrupted speech (behaviour §5.4).
            _ => None,
        }
    } else {
        Some(full_text.clone())
    };
    // The turn report: once per user turn, by the first speech of the reply chain (the reply, then its tool
    // follow-ups) that played something; a speech that played nothing (a tool-only step) reports nothing.
    let (ttft, ttfb) = times
        .lock()
        .map(|t| (t.llm_ttft, t.tts_ttfb))
        .unwrap_or_default();
    let turn_report = match (turn_timing.as_ref().and_then(|t| t.get()), started_at.get()) {
        (Some(turn), Some(&started)) if is_reply && turn.claim_report() => {
            Some(turn_metrics(handle.id(), turn, started, ttft, ttfb))
        }
        _ => None,
    };
    let message = committed_text
        .filter(|t| add_to_ctx && !t.trim().is_empty())
        .map(|t| {
            let mut m = ChatMessage::new(ChatRole::Assistant, t);
            m.interrupted = interrupted;
            if is_reply {
                let mut metrics = MessageMetrics::default();
                metrics.llm_ttft = ttft;
                metrics.tts_ttfb = ttfb;
                if let Some(report) = &turn_report {
                    metrics.e2e_latency = report.e2e_latency;
                    metrics.started_speaking_at = report.agent_started_speaking_at;
                }
                m.metrics = Some(metrics);
            }
            m
        });
    if let Some(tm) = turn_report {
        ctx.shared
            .emit(agents_core::SessionEvent::MetricsCollected(Metrics::Turn(
                tm,
            )));
    }

    if started_at.get().is_some()
        && let Ok(mut last) = ctx.last_speech_end.lock()
    {
        *last = Some(Instant::now());
    }
    // Playout is done before the tools are waited for (LiveKit §5.5).
    let tools_running = || !interrupted && tools_started.load(std::sync::atomic::Ordering::Acquire);
    finish_playout(&ctx.notify, &handle, message, interrupted, tools_running).await;
    let tool_result = match tools_task {
        Some(mut task) => {
            let result = (&mut task.0).await;
            if interrupted {
                // Running tools are awaited, their results discarded (behaviour §5.4).
                None
            } else {
                result.ok().flatten()
            }
        }
        None => None,
    };
    if let Some((step, tool_choice)) = tool_result {
        let _ = ctx
            .notify
            .send(Notice::ToolsDone {
                handle: handle.clone(),
                step,
                tool_choice,
                turn: turn_timing.clone(),
            })
            .await;
    }
}

/// The turn report of the speech `speech_id` that started playing at `started` (tokio clock). The wall-clock
/// timestamps are both derived from one `SystemTime::now()` reading and the two instants, so
/// `agent_started_speaking_at − user_stopped_speaking_at` is exactly `e2e_latency`.
fn turn_metrics(
    speech_id: &str,
    turn: &TurnTiming,
    started: Instant,
    llm_ttft: Option<Duration>,
    tts_ttfb: Option<Duration>,
) -> TurnMetrics {
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| wall_now.checked_sub(now.saturating_duration_since(at));
    let mut tm = TurnMetrics::default();
    tm.speech_id = Some(speech_id.to_owned());
    tm.end_of_utterance_delay = Some(turn.end_of_utterance_delay);
    tm.transcription_delay = Some(turn.transcription_delay);
    tm.on_user_turn_completed_delay = Some(turn.on_user_turn_completed_delay);
    tm.llm_ttft = llm_ttft;
    tm.tts_ttfb = tts_ttfb;
    tm.e2e_latency = Some(started.saturating_duration_since(turn.last_speaking_time));
    tm.user_stopped_speaking_at = wall(turn.last_speaking_time);
    tm.agent_started_speaking_at = wall(started);
    tm
}

/// A configuration problem found while running (reported as a recoverable error event).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PipelineMisconfigured(&'static str);

/// The audio output, the text output and the synchronizer behind both (see `output_path`).
pub(crate) type OutputPath = (
    Option<Arc<dyn AudioOutput>>,
    Option<Arc<dyn TextOutput>>,
    Option<Arc<TranscriptSynchronizer>>,
);

/// The session's outputs as the generations use them: with both an audio and a text output, both are one
/// [`TranscriptSynchronizer`] over them (returned third as well), which paces the text with playback, or with
/// `sync_transcription = false` forwards it at once while still counting the played words. A text-only or
/// audio-only session keeps its output as is (text-only text is released unsynchronized).
pub(crate) fn output_path(
    audio: Option<Arc<dyn AudioOutput>>,
    text: Option<Arc<dyn TextOutput>>,
    sync_transcription: bool,
) -> OutputPath {
    match (audio, text) {
        (Some(audio), Some(text)) => {
            let sync = Arc::new(TranscriptSynchronizer::new(
                audio,
                text,
                TranscriptionOptions::new().with_sync_transcription(sync_transcription),
            ));
            let a: Arc<dyn AudioOutput> = sync.clone();
            let t: Arc<dyn TextOutput> = sync.clone();
            (Some(a), Some(t), Some(sync))
        }
        (audio, text) => (audio, text, None),
    }
}

/// Releases agent text to the text output as it is produced, calling `on_first` before the first piece. With a
/// [`TranscriptSynchronizer`] as the output, the synchronizer holds the text back until playback reaches it.
pub(crate) async fn release_transcript(
    output: Option<&Arc<dyn TextOutput>>,
    mut text: EventStream<String>,
    on_first: impl Fn(),
) {
    let mut any = false;
    while let Some(piece) = text.next().await {
        if piece.is_empty() {
            continue;
        }
        on_first();
        any = true;
        if let Some(out) = output
            && out.capture_text(&piece).await.is_err()
        {
            return;
        }
    }
    if any && let Some(out) = output {
        out.flush();
    }
}

async fn forward_given_audio(mut audio: SayAudio, tx: mpsc::Sender<AudioChunk>) {
    while let Some(frame) = audio.next().await {
        if tx
            .send(AudioChunk {
                frame,
                words: Vec::new(),
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn llm_stage(
    llm: Arc<dyn Llm>,
    hooks: Arc<dyn AgentHooks>,
    request: ChatRequest,
    tts_tx: Option<mpsc::Sender<String>>,
    transcript_tx: mpsc::Sender<String>,
    calls_tx: mpsc::Sender<FunctionCall>,
    times: Arc<Mutex<StageTimes>>,
    shared: Arc<Shared>,
    speech_id: String,
) {
    let started = Instant::now();
    let mut stream = hooks.llm_node(&llm, request);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(ChatChunk::Text(t)) => {
                note_first(&times, started, |s| &mut s.llm_ttft);
                if let Ok(mut s) = times.lock() {
                    s.text.push_str(&t);
                }
                if let Some(tx) = &tts_tx {
                    let _ = tx.send(t.clone()).await;
                }
                let _ = transcript_tx.send(t).await;
            }
            Ok(ChatChunk::ToolCall(call)) => {
                note_first(&times, started, |s| &mut s.llm_ttft);
                // Dispatched at once: tools start while the LLM still streams (once authorized).
                let _ = calls_tx.send(call).await;
            }
            Ok(_) => {}
            Err(e) => {
                shared.emit_error(ErrorEvent::new(Component::Llm, llm.label(), e, true));
                break;
            }
        }
    }
    let mut metrics = stream.metrics();
    metrics.speech_id = Some(speech_id);
    shared.emit(agents_core::SessionEvent::MetricsCollected(Metrics::Llm(
        metrics,
    )));
    drop(tts_tx);
    drop(transcript_tx);
    drop(calls_tx);
}

fn note_first(
    times: &Mutex<StageTimes>,
    started: Instant,
    field: impl FnOnce(&mut StageTimes) -> &mut Option<Duration>,
) {
    if let Ok(mut t) = times.lock() {
        let slot = field(&mut t);
        if slot.is_none() {
            *slot = Some(started.elapsed());
        }
    }
}

/// Tracks where each TTS segment starts in the speech, to place word timings.
#[derive(Default)]
struct Timeline {
    produced: Duration,
    segment: Option<String>,
    base: Duration,
}

impl Timeline {
    fn chunk(&mut self, audio: SynthesizedAudio) -> AudioChunk {
        if self.segment.as_deref() != Some(audio.segment_id.as_str()) {
            self.segment = Some(audio.segment_id.clone());
            self.base = self.produced;
        }
        let words = audio
            .timed_text
            .iter()
            .map(|t| TimedText::new(t.text.clone(), self.base + t.start, self.base + t.end))
            .collect();
        self.produced += audio.frame.duration();
        AudioChunk {
            frame: audio.frame,
            words,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn tts_stage(
    tts: Arc<dyn Tts>,
    hooks: Arc<dyn AgentHooks>,
    text_rx: mpsc::Receiver<String>,
    audio_tx: mpsc::Sender<AudioChunk>,
    times: Arc<Mutex<StageTimes>>,
    shared: Arc<Shared>,
    speech_id: String,
    transforms: bool,
) {
    let text = receiver_stream(text_rx);
    let text = if transforms {
        transform_stream(text, default_transforms())
    } else {
        text
    };
    let mut text = hooks.tts_node(text);
    let options = SynthesizeOptions::default();
    let mut timeline = Timeline::default();
    let started = Instant::now();
    let stream = match tts.stream(&options) {
        // A non-streaming TTS is fed sentence by sentence by the core adapter.
        Err(TtsError::Unsupported { .. }) => {
            StreamAdapter::stream_over(Arc::clone(&tts), SentenceOptions::default(), &options)
        }
        other => other,
    };
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            shared.emit_error(ErrorEvent::new(Component::Tts, tts.label(), e, true));
            return;
        }
    };
    let mut input_done = false;
    let mut pushed_any = false;
    loop {
        tokio::select! {
            piece = text.next(), if !input_done => match piece {
                Some(piece) => {
                    if piece.is_empty() { continue; }
                    pushed_any = true;
                    if stream.push_text(piece).await.is_err() { break; }
                }
                None => {
                    input_done = true;
                    if !pushed_any { break; }
                    if stream.end_input().await.is_err() { break; }
                }
            },
            audio = stream.next() => match audio {
                Some(Ok(a)) => {
                    note_first(&times, started, |s| &mut s.tts_ttfb);
                    if audio_tx.send(timeline.chunk(a)).await.is_err() { break; }
                }
                Some(Err(e)) => {
                    shared.emit_error(ErrorEvent::new(Component::Tts, tts.label(), e, true));
                    break;
                }
                None => break,
            },
        }
    }
    let mut m = stream.metrics();
    m.speech_id = Some(speech_id);
    shared.emit(agents_core::SessionEvent::MetricsCollected(Metrics::Tts(m)));
}

/// Applies `chain` to a text stream, delta by delta (held-back text is released at the end).
fn transform_stream(text: EventStream<String>, chain: TransformChain) -> EventStream<String> {
    EventStream::new(futures::stream::unfold(
        (text, Some(chain)),
        |(mut text, mut chain)| async move {
            let c = chain.as_mut()?;
            match text.next().await {
                Some(delta) => {
                    let out = c.push(&delta);
                    Some((out, (text, chain)))
                }
                None => {
                    let out = c.flush();
                    Some((out, (text, None)))
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn default_transforms_strip_markdown_and_emoji_across_deltas() {
        let text = EventStream::from_items(vec![
            "**Bold** ".to_owned(),
            "move 🚀 and ".to_owned(),
            "`code`.".to_owned(),
        ]);
        let out: String = transform_stream(text, default_transforms())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert!(
            !out.contains('*') && !out.contains('🚀') && !out.contains('`'),
            "{out:?}"
        );
        assert!(
            out.contains("Bold") && out.contains("move") && out.contains("code"),
            "{out:?}"
        );
    }
}
