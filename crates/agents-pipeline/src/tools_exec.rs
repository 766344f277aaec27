//! Tool execution for one reply step: every call runs concurrently (each as its own future, behaviour §5.6), with
//! the [`ToolContext`] of the speech that made it; results come back index for index, and the step's outcome says
//! whether a reply follows, and whether the conversation moves to another agent.

use agents_core::Agent;
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
