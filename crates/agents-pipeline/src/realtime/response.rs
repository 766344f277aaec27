//! One realtime response, played as one speech.
//!
//! The activity routes the response's events (text and audio deltas, tool calls, the end) into a bounded inbox as
//! soon as the model creates the response; this task waits until the speech is authorized (speech queue), then:
//!
//! 1. forwards audio to the [`AudioOutput`] (resampled to the output's rate when it differs; agent state
//!    `speaking` on the first frame) and text to the [`TextOutput`];
//! 2. dispatches tool calls to [`tools_exec::execute_streaming`] as they arrive;
//! 3. on interruption (user speech, `interrupt()`, or a response the server cancelled): clears the output, reads the
//!    playback position, cancels the response (`interrupt`), truncates the assistant item to what was played
//!    (`truncate`) and commits only the played text; the tool results of an interrupted response are discarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use agents_audio::{AudioFrame, ResampleQuality, Resampler};
use agents_core::audio_io::{AudioOutput, TextOutput};
use agents_core::chat::{ChatMessage, ChatRole, FunctionCall, MessageMetrics};
use agents_core::events::{AgentState, Component, ErrorEvent};
use agents_core::realtime::{RealtimeSession, ResponseStatus};
use agents_core::speech::SpeechHandle;
use agents_core::tokenize::truncate_to_duration;
use agents_core::tools::{ToolContext, ToolSet};
use agents_core::tts::TimedText;

use crate::generation::{Notice, finish_playout};
use crate::session::Shared;
use crate::tools_exec;

/// How long an interrupted response waits for the sink to report the playback position.
const PLAYOUT_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the activity routes into a response.
#[derive(Debug)]
pub(crate) enum ResponseInput {
    /// A text (or audio transcript) delta of the assistant item `item_id`.
    Text { item_id: String, delta: String },
    /// Audio of the assistant item `item_id`, at the model's output rate.
    Audio { item_id: String, frame: AudioFrame },
    /// A complete tool call.
    Call(FunctionCall),
    /// The response ended.
    Done(ResponseStatus),
}

/// Everything a response task needs.
pub(crate) struct ResponseContext {
    pub(crate) handle: SpeechHandle,
    pub(crate) rt: Arc<dyn RealtimeSession>,
    pub(crate) label: String,
    /// The model can truncate its items to what was played.
    pub(crate) truncation: bool,
    pub(crate) audio_output: Option<Arc<dyn AudioOutput>>,
    pub(crate) text_output: Option<Arc<dyn TextOutput>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) tools: ToolSet,
    pub(crate) tool_ctx: ToolContext,
    pub(crate) notify: mpsc::Sender<Notice>,
    /// When the user turn this response answers ended (for the e2e latency), if known.
    pub(crate) user_stopped_at: Option<Instant>,
}

/// What was produced and forwarded so far.
#[derive(Default)]
struct Played {
    item_id: Option<String>,
    text: String,
    /// Word timings built from the deltas: a delta starts at the audio forwarded before it.
    words: Vec<TimedText>,
    /// The last word's end is not known yet (set by the next delta or the end).
    last_open: bool,
    audio: Duration,
    captured: bool,
    started_at: Option<Instant>,
}

impl Played {
    fn close_last_word(&mut self) {
        if self.last_open
            && let Some(w) = self.words.last_mut()
        {
            w.end = self.audio.max(w.start);
        }
        self.last_open = false;
    }
}

/// Runs one response to completion. Never panics; errors are reported on the session's event stream.
pub(crate) async fn run(ctx: ResponseContext, mut inbox: mpsc::Receiver<ResponseInput>) {
    let handle = ctx.handle.clone();
    tokio::select! {
        () = handle.wait_for_authorization() => {}
        () = handle.wait_for_interruption() => {
            // Interrupted before it could play: cancel it on the server (unless it already ended), nothing was
            // heard.
            let mut ended = false;
            while let Ok(input) = inbox.try_recv() {
                ended |= matches!(input, ResponseInput::Done(_));
            }
            if !ended && let Err(e) = ctx.rt.interrupt().await {
                tracing::debug!(error = %e, "realtime interrupt of a response not played");
            }
            finish_playout(&ctx.notify, &handle, None, true, || false).await;
            return;
        }
    }
    ctx.shared.set_agent_state(AgentState::Thinking);

    let (calls_tx, calls_rx) = mpsc::channel::<FunctionCall>(64);
    let tools_started = Arc::new(AtomicBool::new(false));
    let tools_task = {
        let tools = ctx.tools.clone();
        let tool_ctx = ctx.tool_ctx.clone();
        let started = Arc::clone(&tools_started);
        Owned(tokio::spawn(async move {
            tools_exec::execute_streaming(&tools, calls_rx, &tool_ctx, None, || {
                started.store(true, Ordering::Release);
            })
            .await
        }))
    };

    let mut played = Played::default();
    let mut resampler: Option<Resampler> = None;
    let mut calls_tx = Some(calls_tx);
    let output = ctx.audio_output.clone();
    // The server reported the response's end (no cancel needed after an interruption).
    let mut ended = false;
    let mut interrupted = loop {
        tokio::select! {
            biased;
            () = handle.wait_for_interruption() => break true,
            input = inbox.recv() => match input {
                // The activity dropped the route: the session ended under the response.
                None => {
                    ended = true;
                    break false;
                }
                Some(ResponseInput::Done(status)) => {
                    ended = true;
                    match status {
                        ResponseStatus::Completed => {}
                        ResponseStatus::Cancelled => break true,
                        ResponseStatus::Incomplete(reason) | ResponseStatus::Failed(reason) => {
                            tracing::warn!(%reason, "realtime response did not complete");
                        }
                        other => tracing::debug!(?other, "realtime response ended"),
                    }
                    break false;
                }
                Some(ResponseInput::Text { item_id, delta }) => {
                    played.item_id.get_or_insert(item_id);
                    on_text(&ctx, &mut played, &delta).await;
                }
                Some(ResponseInput::Audio { item_id, frame }) => {
                    played.item_id.get_or_insert(item_id);
                    if let Some(out) = &output
                        && !forward_audio(&ctx, out, &mut resampler, &mut played, frame).await
                    {
                        break false;
                    }
                }
                Some(ResponseInput::Call(call)) => {
                    if let Some(tx) = &calls_tx {
                        let _ = tx.send(call).await;
                    }
                }
            }
        }
    };
    // No more calls for this step.
    calls_tx.take();

    let mut position = None;
    if let Some(out) = &output {
        if !interrupted {
            if let Some(r) = resampler.as_mut() {
                match r.flush() {
                    Ok(Some(tail)) => {
                        played.audio += tail.duration();
                        if out.capture_frame(tail).await.is_ok() {
                            played.captured = true;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "resampler flush failed"),
                }
            }
            out.flush();
            if played.captured {
                tokio::select! {
                    p = out.wait_for_playout() => position = p.map(|p| p.playback_position),
                    () = handle.wait_for_interruption() => interrupted = true,
                }
            }
        }
        if interrupted {
            out.clear_buffer();
            position = if played.captured {
                tokio::time::timeout(PLAYOUT_REPORT_TIMEOUT, out.wait_for_playout())
                    .await
                    .ok()
                    .flatten()
                    .map(|p| p.playback_position)
            } else {
                Some(Duration::ZERO)
            };
        }
    }
    if interrupted && !ended {
        while let Ok(input) = inbox.try_recv() {
            ended |= matches!(input, ResponseInput::Done(_));
        }
    }
    if interrupted && !ended {
        // Cancel what the model is still producing.
        if let Err(e) = ctx.rt.interrupt().await {
            tracing::debug!(error = %e, "realtime interrupt");
        }
    }
    played.close_last_word();

    let committed = if interrupted {
        match (&output, position) {
            (Some(_), Some(pos)) => {
                if ctx.truncation
                    && played.captured
                    && let Some(item) = &played.item_id
                    && let Err(e) = ctx.rt.truncate(item, pos).await
                {
                    ctx.shared.emit_error(ErrorEvent::new(
                        Component::Realtime,
                        &ctx.label,
                        e,
                        true,
                    ));
                }
                truncate_to_duration(&played.text, pos, Some(&played.words))
                    .trim_end()
                    .to_owned()
            }
            // A sink that never reported: nothing is known to be heard.
            (Some(_), None) => String::new(),
            // Text only: everything forwarded was shown.
            (None, _) => played.text.clone(),
        }
    } else {
        played.text.clone()
    };
    let message = (!committed.trim().is_empty()).then(|| {
        let mut m = ChatMessage::new(ChatRole::Assistant, committed);
        if let Some(id) = &played.item_id {
            m.id.clone_from(id);
        }
        m.interrupted = interrupted;
        let mut metrics = MessageMetrics::default();
        if let (Some(user), Some(started)) = (ctx.user_stopped_at, played.started_at) {
            metrics.e2e_latency = Some(started.saturating_duration_since(user));
        }
        m.metrics = Some(metrics);
        m
    });

    let tools_running = || !interrupted && tools_started.load(Ordering::Acquire);
    finish_playout(&ctx.notify, &handle, message, interrupted, tools_running).await;
    let mut tools_task = tools_task;
    let step = (&mut tools_task.0).await;
    if interrupted {
        // Running tools were awaited, their results are discarded (as in the cascading path).
        return;
    }
    if let Ok(step) = step
        && !step.calls.is_empty()
    {
        let _ = ctx
            .notify
            .send(Notice::ToolsDone {
                handle,
                step,
                tool_choice: None,
                turn: None,
            })
            .await;
    }
}

async fn on_text(ctx: &ResponseContext, played: &mut Played, delta: &str) {
    if delta.is_empty() {
        return;
    }
    played.text.push_str(delta);
    let word = delta.trim();
    if !word.is_empty() {
        played.close_last_word();
        played
            .words
            .push(TimedText::new(word, played.audio, played.audio));
        played.last_open = true;
    }
    if ctx.audio_output.is_none() {
        mark_started(ctx, played);
    }
    if let Some(out) = &ctx.text_output
        && let Err(e) = out.capture_text(delta).await
    {
        tracing::debug!(error = %e, "text output refused a realtime delta");
    }
}

/// Forwards one frame (resampled when needed); false when the sink failed.
async fn forward_audio(
    ctx: &ResponseContext,
    out: &Arc<dyn AudioOutput>,
    resampler: &mut Option<Resampler>,
    played: &mut Played,
    frame: AudioFrame,
) -> bool {
    let frame = match out.sample_rate() {
        Some(rate) if rate != frame.sample_rate() => {
            if resampler.as_ref().is_none_or(|r| {
                r.input_rate() != frame.sample_rate() || r.num_channels() != frame.num_channels()
            }) {
                match Resampler::new(
                    frame.sample_rate(),
                    rate,
                    frame.num_channels(),
                    ResampleQuality::Medium,
                ) {
                    Ok(r) => *resampler = Some(r),
                    Err(e) => {
                        ctx.shared.emit_error(ErrorEvent::new(
                            Component::Realtime,
                            &ctx.label,
                            e,
                            true,
                        ));
                        return true;
                    }
                }
            }
            let Some(r) = resampler.as_mut() else {
                return true;
            };
            match r.push(&frame) {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, "realtime output frame not resampled; dropped");
                    return true;
                }
            }
        }
        _ => frame,
    };
    played.audio += frame.duration();
    if let Err(e) = out.capture_frame(frame).await {
        ctx.shared
            .emit_error(ErrorEvent::new(Component::Transport, out.label(), e, true));
        return false;
    }
    played.captured = true;
    mark_started(ctx, played);
    true
}

fn mark_started(ctx: &ResponseContext, played: &mut Played) {
    if played.started_at.is_none() {
        played.started_at = Some(Instant::now());
        ctx.shared.set_agent_state(AgentState::Speaking);
        let _ = ctx.notify.try_send(Notice::Started {
            speech_id: ctx.handle.id().to_owned(),
        });
    }
}

/// Aborts the owned task when dropped.
struct Owned<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
