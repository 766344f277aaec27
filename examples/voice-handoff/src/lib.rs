//! The handoff scenario of `voice-handoff`: a greeter agent that hands the call to a specialist.
//!
//! - The **greeter** (`front-desk`) has one tool, `transfer_to_specialist`. Its reply to a weather or time question
//!   is a transition line ("Sure, let me connect you with our weather and time specialist.") plus the tool call.
//! - The tool returns the **specialist** (`specialist`: the voice demo's weather-and-time assistant with its two
//!   tools), built with the conversation so far (`SessionHandle::history`), so it knows the question. The session
//!   plays the transition line to the end, then switches agents (an `AgentHandoff` item in the history).
//! - The specialist's `on_enter` asks for a reply: it answers the pending question with its tools.

use std::sync::Arc;

use agents::session::{ReplyRequest, SessionHandle};
use agents::tools::{FunctionTool, RunContext, ToolError};
use agents::{Agent, AgentHooks};
use agents_testkit::emulators::openai::{ChatScript, ChatStep, ScriptedToolCall};
use schemars::JsonSchema;
use serde::Deserialize;
use voice_demo::{Scenario, tools};

/// The greeter's instructions.
pub const GREETER: &str = "You are the front desk of a voice assistant. Greet people briefly. For any question \
about the weather or the time, say one short sentence announcing the transfer, then call transfer_to_specialist.";
/// The specialist's instructions.
pub const SPECIALIST: &str = "You are the weather and time specialist. Introduce yourself in a few words, then \
answer with get_weather and get_time, in one or two short spoken sentences.";
/// The greeter's transition line in the offline script.
pub const TRANSITION: &str = "Sure, let me connect you with our weather and time specialist.";

/// Hand the call to the weather and time specialist.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TransferArgs {}

async fn transfer_to_specialist(ctx: RunContext, _args: TransferArgs) -> Result<Agent, ToolError> {
    specialist(ctx.session()).map_err(|e| ToolError::new(format!("no specialist: {e}")))
}

/// The specialist's hooks: on entering, it answers what is pending.
struct Specialist;

#[async_trait::async_trait]
impl AgentHooks for Specialist {
    async fn on_enter(&self, session: &SessionHandle) {
        // A failure here (the session closing) leaves nothing to answer.
        let _ = session.generate_reply(ReplyRequest::new());
    }
}

/// The specialist, with the conversation so far.
fn specialist(session: &SessionHandle) -> anyhow::Result<Agent> {
    Ok(Agent::builder(SPECIALIST)
        .id("specialist")
        .tools(tools::tools()?)
        .chat_ctx(session.history())
        .hooks(Specialist)
        .build()?)
}

/// The greeter with its transfer tool.
///
/// # Errors
/// When a tool schema cannot be generated (a bug).
pub fn greeter() -> anyhow::Result<Agent> {
    Ok(Agent::builder(GREETER)
        .id("front-desk")
        .tool(FunctionTool::new(transfer_to_specialist)?)
        .build()?)
}

fn words(s: &str) -> Vec<String> {
    s.split_inclusive(' ').map(str::to_owned).collect()
}

/// The offline LLM per line: the transition line and the transfer, then the specialist's tool call and answer;
/// then the voice demo's own scripts for the time question and the goodbye.
fn offline(index: usize) -> anyhow::Result<Vec<ChatScript>> {
    if index > 0 {
        return voice_demo::conversation::offline_chat_scripts(index);
    }
    let mut steps: Vec<ChatStep> = words(TRANSITION).into_iter().map(ChatStep::Text).collect();
    steps.push(ChatStep::ToolCall(ScriptedToolCall::new(
        "transfer_to_specialist",
        "{}",
    )));
    let weather = tools::weather_report("Paris").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(vec![
        ChatScript::steps(steps),
        ChatScript::tool_calls(&[("get_weather", r#"{"city":"Paris"}"#)]),
        ChatScript::text(words(&format!(
            "Hi, I'm the weather and time specialist. It's {weather} right now."
        ))),
    ])
}

/// The handoff scenario over the voice demo's three lines: two replies after the first (the transition line and
/// the specialist's answer), one after each of the others.
pub fn scenario() -> Scenario {
    Scenario {
        name: "greeter to specialist handoff".to_owned(),
        agent: Arc::new(greeter),
        offline_llm: Arc::new(offline),
        replies_after_line: vec![2, 3, 4],
    }
}
