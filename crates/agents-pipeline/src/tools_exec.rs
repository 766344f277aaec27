//! Tool execution for one reply step: every call runs concurrently (each as its own future, behaviour §5.6), with
//! the [`ToolContext`] of the speech that made it; results come back index for index, and the step's outcome says
//! whether a reply follows, and whether the conversation moves to another agent.

use agents_core::Agent;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use agents_core::chat::{FunctionCall, FunctionCallOutput};
use agents_core::llm::ToolChoice;
use agents_core::tools::{ToolCallResult, ToolContext, ToolSet};

/// The results of one tool step.
#[derive(Debug, Clone, Default)]
pub struct ToolStep {
    /// The calls, in the order the model made them.
    pub calls: Vec<FunctionCall>,
    /// Their results, index for index.
    pub results: Vec<ToolCallResult>,
}

impl ToolStep {
    /// The outputs the model sees, index for index (`None` for stop-response or a handoff without message).
    pub fn outputs(&self) -> Vec<Option<FunctionCallOutput>> {
        self.results.iter().map(|r| r.output.clone()).collect()
    }

    /// Whether any tool asked that no reply follow.
    pub fn stop_response(&self) -> bool {
        self.results.iter().any(|r| r.stop_response)
    }

    /// Whether any call produced an output for the model.
    pub fn has_outputs(&self) -> bool {
        self.results.iter().any(|r| r.output.is_some())
    }

    /// The handoff target: `Ok(None)` without handoff, `Err(n)` when `n > 1` tools asked for different handoffs
    /// (LiveKit logs an error and switches to none of them).
    pub fn handoff(&self) -> Result<Option<Agent>, usize> {
        let targets: Vec<&Agent> = self
            .results
            .iter()
            .filter_map(|r| r.handoff.as_ref().map(|h| &h.agent))
            .collect();
        match targets.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(many.len()),
        }
    }
}

/// Runs `calls` concurrently with `tools`. With `tool_choice == none` no call runs (LiveKit skips them); every
/// other call gets a result (an unknown tool gets an error output so the next request stays valid).
pub async fn execute(
    tools: &ToolSet,
    calls: Vec<FunctionCall>,
    ctx: &ToolContext,
    tool_choice: Option<&ToolChoice>,
) -> ToolStep {
    if matches!(tool_choice, Some(ToolChoice::None)) {
        if !calls.is_empty() {
            tracing::warn!(
                count = calls.len(),
                "the model called tools with tool_choice none; skipped"
            );
        }
        return ToolStep::default();
    }
    let futures = calls
        .iter()
        .cloned()
        .map(|call| tools.invoke(call, ctx.clone()));
    let results = futures::future::join_all(futures).await;
    ToolStep { calls, results }
}

/// Runs calls as they stream in (LiveKit dispatches each call as soon as the model emits it, §5.6): each starts at
/// once, concurrently with the others and with the rest of the LLM stream; `on_first` runs before the first one
/// starts. Results come back in call order once the stream of calls ended and every call finished. Dropping the
/// future aborts the calls still running.
pub async fn execute_streaming(
    tools: &ToolSet,
    mut calls: mpsc::Receiver<FunctionCall>,
    ctx: &ToolContext,
    tool_choice: Option<&ToolChoice>,
    on_first: impl FnOnce(),
) -> ToolStep {
    let skip = matches!(tool_choice, Some(ToolChoice::None));
    let mut on_first = Some(on_first);
    let mut running = JoinSet::new();
    let mut order: Vec<FunctionCall> = Vec::new();
    while let Some(call) = calls.recv().await {
        if skip {
            tracing::warn!(tool = %call.name, "the model called a tool with tool_choice none; skipped");
            continue;
        }
        if let Some(f) = on_first.take() {
            f();
        }
        let index = order.len();
        order.push(call.clone());
        let tools = tools.clone();
        let ctx = ctx.clone();
        running.spawn(async move { (index, tools.invoke(call, ctx).await) });
    }
    let mut results: Vec<Option<ToolCallResult>> = vec![None; order.len()];
    while let Some(done) = running.join_next().await {
        match done {
            Ok((index, result)) => {
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
            }
            Err(e) => tracing::error!(error = %e, "a tool task failed"),
        }
    }
    let results = order
        .iter()
        .zip(results)
        .map(|(call, r)| {
            r.unwrap_or_else(|| ToolCallResult::error(call.clone(), "An internal error occurred"))
        })
        .collect();
    ToolStep {
        calls: order,
        results,
    }
}
