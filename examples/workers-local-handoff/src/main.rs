//! Local hand-off: a greeter and a support agent, two `LlmWorker`s on one in-process bus; exactly one is active.
//!
//! Run: `cargo run -p workers-local-handoff`
//! Env vars: none. Both LLMs are scripted `FakeLlm`s from `agents-testkit` (offline, no API key).
//!
//! What it shows: a front worker sends each user turn as a `chat` job to whichever agent is active; when the
//! user asks for billing, the greeter activates `support` with `deactivate_self = true` and a developer message
//! (`LlmWorkerActivationArgs`), so support speaks a transition line and takes over. The two are never active at once.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use agents::ChatRole;
use agents::workers::{
    ActivationArgs, ActivationMessage, CHAT_JOB, JobParams, LlmWorker, LlmWorkerActivationArgs,
    LocalBus, Worker, WorkerRunner, WorkerSpec,
};
use agents_testkit::{FakeLlm, FakeResponse};
use anyhow::Context;
use serde_json::json;

/// The front worker (transport + STT in a voice app): it only requests jobs.
struct Front;
impl Worker for Front {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LLMs: scripted fakes (offline) — no API key needed")?;
    let runner = WorkerRunner::new("local", Arc::new(LocalBus::new()))?;

    let greeter_llm =
        FakeLlm::new().push_response(FakeResponse::text("Hi! I'm the greeter. How can I help?"));
    let support_llm = FakeLlm::new()
        .push_response(FakeResponse::text(
            "Support here: I see you have a billing question.",
        ))
        .push_response(FakeResponse::text("Your refund was issued today."));
    let (tx, mut replies) = tokio::sync::mpsc::channel(8);
    let greeter = LlmWorker::new(Arc::new(greeter_llm))
        .with_instructions("You greet callers and route them.")
        .with_output(tx.clone());
    let support = LlmWorker::new(Arc::new(support_llm))
        .with_instructions("You solve billing problems.")
        .with_output(tx);
    let greeter = runner
        .add_worker(WorkerSpec::new("greeter", greeter).active())
        .await?;
    let support = runner
        .add_worker(WorkerSpec::new("support", support))
        .await?;
    let front = runner.add_worker(WorkerSpec::new("front", Front)).await?;

    let turns = ["hello", "I have a billing question", "where is my refund?"];
    for text in turns {
        writeln!(out, "user: {text}")?;
        if text.contains("billing") {
            // In a voice app this is the greeter's `transfer_to_agent` tool.
            let args = LlmWorkerActivationArgs::with_messages(vec![ActivationMessage::new(
                ChatRole::Developer,
                "The user has a billing question; introduce yourself.",
            )]);
            greeter
                .context()
                .activate_worker("support", ActivationArgs::encode(&args)?, true)
                .await?;
            writeln!(
                out,
                "  [handoff] greeter active={} -> support",
                greeter.is_active()
            )?;
            let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
                .await?
                .context("no reply")?;
            writeln!(out, "{}: {}", reply.worker, reply.text)?;
            continue;
        }
        let agent = if support.is_active() {
            "support"
        } else {
            "greeter"
        };
        let params = JobParams::new()
            .with_name(CHAT_JOB)
            .with_payload(json!({ "text": text }))
            .with_timeout(Duration::from_secs(5));
        let response = front.context().job(agent, params).await?.response().await?;
        let _ = replies.recv().await;
        writeln!(
            out,
            "{agent}: {}",
            response["text"].as_str().unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "active: greeter={} support={}",
        greeter.is_active(),
        support.is_active()
    )?;
    runner.cancel("demo finished").await;
    runner.run(true).await?;
    Ok(())
}
