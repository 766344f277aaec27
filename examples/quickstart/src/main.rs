//! Quickstart: one agent turn end to end, offline.
//!
//! Run: `cargo run -p quickstart`
//! Env vars: none. The LLM is the scripted `FakeLlm` of `agents-testkit` (announced on start), so this runs on a
//! machine without network or API keys. For a whole voice conversation (real VAD, the WebSocket transport, the
//! provider emulators or, with `OPENAI_API_KEY` / `DEEPGRAM_API_KEY` / `ELEVENLABS_API_KEY` set, the real
//! providers) run `cargo run -p voice-demo`.
//!
//! What it shows: tools written as plain async functions with typed arguments (schemas generated), an `Agent`, the
//! chat context with its instructions, a streamed LLM reply whose tool calls are executed and fed back until the
//! model answers in text, and the LLM metrics of each step.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use agents::chat::ChatContext;
use agents::llm::{ChatChunk, ChatRequest, Llm};
use agents::session::SessionHandle;
use agents::speech::{SpeechHandle, SpeechOptions};
use agents::tools::{FunctionTool, ToolContext, ToolError};
use agents::{Agent, ChatRole};
use agents_testkit::{FakeLlm, FakeResponse};
use anyhow::Context;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;

/// Look up the current weather in a city.
#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// City name, e.g. "Paris".
    city: String,
}

async fn get_weather(args: WeatherArgs) -> Result<String, ToolError> {
    let (temp, sky) = match args.city.to_lowercase().as_str() {
        "paris" => (21, "sunny"),
        "london" => (14, "drizzling"),
        _ => {
            return Err(ToolError::new(format!(
                "no weather station in {}",
                args.city
            )));
        }
    };
    Ok(format!("{temp}°C and {sky} in {}", args.city))
}

/// Get the local time in a city.
#[derive(Deserialize, JsonSchema)]
struct TimeArgs {
    /// City name.
    city: String,
}

async fn get_time(args: TimeArgs) -> Result<String, ToolError> {
    Ok(format!("14:05 in {}", args.city))
}

/// The LLM's script: one step with two parallel tool calls, then the spoken answer.
fn scripted_llm() -> FakeLlm {
    FakeLlm::new()
        .with_ttft(Duration::from_millis(180))
        .with_inter_token_delay(Duration::from_millis(15))
        .push_response(
            FakeResponse::tool_call("get_weather", r#"{"city":"Paris"}"#)
                .then_tool_call("get_time", r#"{"city":"Paris"}"#),
        )
        .push_response(
            FakeResponse::text(
                "It's 21 degrees and sunny in Paris, and it's five past two in the afternoon.",
            )
            .chunked_words(),
        )
}

const MAX_TOOL_STEPS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LLM: scripted fake (offline) — no API key needed")?;

    let agent = Agent::builder("You are a concise voice assistant. Use tools for facts.")
        .id("assistant")
        .tool(FunctionTool::new(get_weather)?)
        .tool(FunctionTool::new(get_time)?)
        .build()?;
    let llm: Arc<dyn Llm> = Arc::new(scripted_llm());

    let mut ctx = ChatContext::new();
    ctx.set_instructions(agent.instructions())?;
    let user = "What's the weather like in Paris, and what time is it there?";
    ctx.add_message(ChatRole::User, user);
    writeln!(out, "user: {user}")?;

    let tools = agent.tools();
    let speech = SpeechHandle::new(SpeechOptions::default());
    for step in 0..=MAX_TOOL_STEPS {
        let request = ChatRequest::new(ctx.clone()).with_tools(tools.definitions());
        let mut stream = llm.chat(request);
        let mut text = String::new();
        let mut calls = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk.context("LLM request failed")? {
                ChatChunk::Text(delta) => {
                    if text.is_empty() {
                        write!(out, "agent: ")?;
                    }
                    write!(out, "{delta}")?;
                    out.flush()?;
                    text.push_str(&delta);
                }
                ChatChunk::ToolCall(call) => calls.push(call),
                _ => {}
            }
        }
        if !text.is_empty() {
            writeln!(out)?;
            ctx.add_message(ChatRole::Assistant, text);
        }
        let m = stream.metrics();
        writeln!(
            out,
            "  [step {step}: llm ttft {} ms, duration {} ms, {} tool call(s)]",
            m.ttft.map_or(0, |t| t.as_millis()),
            m.duration.as_millis(),
            calls.len()
        )?;
        if calls.is_empty() {
            break;
        }
        // Tools of one step run concurrently.
        let tool_ctx = ToolContext::new(SessionHandle::detached(), None, speech.clone());
        let results =
            futures::future::join_all(calls.into_iter().map(|c| tools.invoke(c, tool_ctx.clone())))
                .await;
        // Calls first, then their outputs: the grouping OpenAI-style APIs expect.
        for r in &results {
            writeln!(out, "  tool {}({})", r.call.name, r.call.arguments)?;
            ctx.push(r.call.clone());
        }
        for output in results.into_iter().filter_map(|r| r.output) {
            let tag = if output.is_error { "error" } else { "result" };
            writeln!(out, "  {tag} of {}: {}", output.name, output.output)?;
            ctx.push(output);
        }
    }

    writeln!(out, "\nchat context ({} items):", ctx.len())?;
    let json = ctx.to_json(&agents::chat::ExportOptions::default());
    for item in json["items"].as_array().into_iter().flatten() {
        writeln!(out, "  {item}")?;
    }
    Ok(())
}
