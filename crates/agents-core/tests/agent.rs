//! Agent definition: LiveKit behaviours 15-19 (tools of the agent type, tools copy, chat context filtered by
//! tools, update_tools, read-only chat context) and the model overrides.

use agents_core::agent::{Agent, AgentHooks};
use agents_core::chat::{ChatContext, ChatItem, ChatRole, FunctionCall, FunctionCallOutput};
use agents_core::tools::{FunctionTool, ToolDefinitionError, ToolError};
use schemars::JsonSchema;
use serde::Deserialize;

/// Empty arguments.
#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

async fn lookup_order(_: NoArgs) -> Result<&'static str, ToolError> {
    Ok("shipped")
}
async fn cancel_order(_: NoArgs) -> Result<&'static str, ToolError> {
    Ok("cancelled")
}
async fn transfer(_: NoArgs) -> Result<&'static str, ToolError> {
    Ok("transferring")
}

struct Support;

impl AgentHooks for Support {
    fn tools(&self) -> Vec<FunctionTool> {
        FunctionTool::new(transfer).into_iter().collect()
    }
}

fn history_with_calls() -> ChatContext {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "where is my order?");
    ctx.push(FunctionCall::new("c1", "lookup_order", "{}"));
    ctx.push(FunctionCallOutput::new(
        "c1",
        "lookup_order",
        "shipped",
        false,
    ));
    ctx.push(FunctionCall::new("c2", "get_weather", "{}"));
    ctx.push(FunctionCallOutput::new("c2", "get_weather", "sunny", false));
    ctx.push(FunctionCallOutput::new("c3", "", "anonymous", false));
    ctx.add_message(ChatRole::Assistant, "it shipped");
    ctx
}

fn kinds(ctx: &ChatContext) -> Vec<String> {
    ctx.items()
        .iter()
        .map(|i| match i {
            ChatItem::Message(m) => format!("msg:{}", m.text_content().unwrap_or_default()),
            ChatItem::FunctionCall(c) => format!("call:{}", c.name),
            ChatItem::FunctionCallOutput(o) => format!("out:{}", o.name),
            other => format!("other:{}", other.id()),
        })
        .collect()
}

#[test]
fn behaviour_15_agent_exposes_its_own_tools_and_constructor_tools() {
    let agent = Agent::builder("help")
        .tool(FunctionTool::new(lookup_order).unwrap())
        .hooks(Support)
        .build()
        .unwrap();
    assert_eq!(agent.tools().names(), ["lookup_order", "transfer"]);
}

#[test]
fn behaviour_16_tools_returns_a_copy() {
    let agent = Agent::builder("help")
        .tool(FunctionTool::new(lookup_order).unwrap())
        .build()
        .unwrap();
    let mut tools = agent.tools();
    tools.add(FunctionTool::new(cancel_order).unwrap()).unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(agent.tools().names(), ["lookup_order"]);
}

#[test]
fn behaviour_17_chat_ctx_is_copied_without_other_tools_items() {
    let original = history_with_calls();
    let agent = Agent::builder("help")
        .tool(FunctionTool::new(lookup_order).unwrap())
        .chat_ctx(original.clone())
        .build()
        .unwrap();
    assert_eq!(
        kinds(agent.chat_ctx()),
        [
            "msg:where is my order?",
            "call:lookup_order",
            "out:lookup_order",
            "msg:it shipped"
        ]
    );
    // The source context is untouched.
    assert_eq!(original.items().len(), 7);
}

#[test]
fn behaviour_18_update_tools_dedupes_and_drops_items_of_removed_tools() {
    let lookup = FunctionTool::new(lookup_order).unwrap();
    let mut agent = Agent::builder("help")
        .tool(lookup.clone())
        .hooks(Support)
        .chat_ctx(history_with_calls())
        .build()
        .unwrap();
    let cancel = FunctionTool::new(cancel_order).unwrap();
    agent
        .update_tools(vec![cancel.clone(), cancel.clone()])
        .unwrap();
    // Deduplicated, order kept; the agent type's own tool stays (we deliberately fix LiveKit quirk 7).
    assert_eq!(agent.tools().names(), ["cancel_order", "transfer"]);
    assert_eq!(
        kinds(agent.chat_ctx()),
        ["msg:where is my order?", "msg:it shipped"]
    );

    // Two different tools with one name are rejected and nothing changes.
    let clash = FunctionTool::builder(lookup_order)
        .name("cancel_order")
        .build()
        .unwrap();
    let err = agent.update_tools(vec![cancel, clash]).unwrap_err();
    assert!(matches!(err, ToolDefinitionError::DuplicateName { .. }));
    assert_eq!(agent.tools().names(), ["cancel_order", "transfer"]);
}

#[test]
fn behaviour_19_chat_ctx_is_read_only_and_changes_go_through_update() {
    // Mutation through `chat_ctx()` does not compile (see the compile_fail doctest on `Agent::chat_ctx`);
    // the supported path is copy, edit, update.
    let mut agent = Agent::new("help");
    let mut copy = agent.chat_ctx().clone();
    copy.add_message(ChatRole::User, "hello");
    assert!(agent.chat_ctx().is_empty());
    agent.update_chat_ctx(&copy);
    assert_eq!(agent.chat_ctx().len(), 1);
}

#[test]
fn duplicate_tool_names_across_builder_and_hooks_are_rejected() {
    let clash = FunctionTool::builder(lookup_order)
        .name("transfer")
        .build()
        .unwrap();
    let err = Agent::builder("help")
        .tool(clash)
        .hooks(Support)
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "duplicate function name: transfer");
}

#[test]
fn defaults_inherit_from_the_session() {
    let agent = Agent::new("be brief");
    assert_eq!(agent.instructions(), "be brief");
    assert!(agent.id().starts_with("agent_"));
    assert!(agent.llm().is_none() && agent.stt().is_none() && agent.tts().is_none());
    assert!(agent.vad().is_none());
    assert_eq!(agent.allow_interruptions(), None);
    let agent = Agent::builder("x")
        .id("greeter")
        .allow_interruptions(false)
        .build()
        .unwrap();
    assert_eq!(agent.id(), "greeter");
    assert_eq!(agent.allow_interruptions(), Some(false));
}
