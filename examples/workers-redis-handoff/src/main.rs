//! Distributed hand-off: the greeter runs in this process, the support agent in a second OS process; both runners
//! share one Redis channel, discover each other (registry handshake) and hand the conversation over.
//!
//! Run: start Redis (`redis-server --port 6379`), then `cargo run -p workers-redis-handoff`
//! (spawns the support process itself), or run the roles by hand in two terminals:
//! `cargo run -p workers-redis-handoff -- support` and `cargo run -p workers-redis-handoff -- main`.
//! Env vars: `REDIS_URL` (default `redis://127.0.0.1:6379`), `REDIS_CHANNEL` (default `agents:handoff-demo`).
//! The LLMs are scripted `FakeLlm`s (offline, no API key).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use agents::ChatRole;
use agents::workers::{
    ActivationArgs, ActivationMessage, BusConfig, CHAT_JOB, JobParams, LlmWorker,
    LlmWorkerActivationArgs, RedisBus, Worker, WorkerRunner, WorkerSpec,
};
use agents_testkit::{FakeLlm, FakeResponse};
use anyhow::Context;
use serde_json::json;

struct Front;
impl Worker for Front {}

async fn runner(name: &str) -> anyhow::Result<WorkerRunner> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let channel =
        std::env::var("REDIS_CHANNEL").unwrap_or_else(|_| "agents:handoff-demo".to_owned());
    let bus = RedisBus::connect_with(&url, &channel, BusConfig::default())
        .await
        .with_context(|| format!("connecting to Redis at {url} (is redis-server running?)"))?;
    Ok(WorkerRunner::new(name, Arc::new(bus))?)
}

async fn support_process() -> anyhow::Result<()> {
    let runner = runner("support-process").await?;
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text(
            "Support here, from another process. What's the order number?",
        ))
        .push_response(FakeResponse::text("Order 42 ships tomorrow."));
    let (tx, mut replies) = tokio::sync::mpsc::channel(8);
    let support = LlmWorker::new(Arc::new(llm)).with_output(tx);
    runner
        .add_worker(WorkerSpec::new("support", support))
        .await?;
    tokio::spawn(async move {
        while let Some(reply) = replies.recv().await {
            let _ = writeln!(
                std::io::stdout().lock(),
                "[support process] {}: {}",
                reply.worker,
                reply.text
            );
        }
    });
    // Runs until Ctrl-C or until the main process ends it.
    runner.run(false).await?;
    Ok(())
}

async fn main_process() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let runner = runner("main-process").await?;
    let llm = FakeLlm::new().push_response(FakeResponse::text("Hello! Let me get you to support."));
    let greeter = runner
        .add_worker(WorkerSpec::new("greeter", LlmWorker::new(Arc::new(llm))).active())
        .await?;
    let front = runner.add_worker(WorkerSpec::new("front", Front)).await?;

    let chat = |text: &str| {
        JobParams::new()
            .with_name(CHAT_JOB)
            .with_payload(json!({ "text": text }))
            .with_timeout(Duration::from_secs(10))
    };
    let reply = front
        .context()
        .job("greeter", chat("my order is late"))
        .await?
        .response()
        .await?;
    writeln!(out, "greeter: {}", reply["text"])?;

    let args = LlmWorkerActivationArgs::with_messages(vec![ActivationMessage::new(
        ChatRole::Developer,
        "The user's order is late.",
    )]);
    // `support` lives in the other process: wait until the registry handshake announced it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    if let Err(missing) = runner
        .registry()
        .wait_for(&["support".to_owned()], Some(deadline))
        .await
    {
        anyhow::bail!(
            "{missing:?} never registered: is the support process running on the same channel?"
        );
    }
    greeter
        .context()
        .activate_worker("support", ActivationArgs::encode(&args)?, true)
        .await?;
    writeln!(
        out,
        "[handoff] greeter active={} -> support (remote)",
        greeter.is_active()
    )?;
    // Let the support process speak its transition line before the next turn.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = front
        .context()
        .job("support", chat("order 42"))
        .await?
        .response()
        .await?;
    writeln!(out, "support: {}", reply["text"])?;
    writeln!(
        out,
        "remote workers known here: {:?}",
        runner.registry().remote_workers()
    )?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("support") => support_process().await,
        Some("main") => main_process().await,
        None => {
            let exe = std::env::current_exe()?;
            let mut child = tokio::process::Command::new(exe)
                .arg("support")
                .kill_on_drop(true)
                .spawn()?;
            let result = main_process().await;
            child.start_kill().ok();
            let _ = child.wait().await;
            result
        }
        Some(other) => anyhow::bail!("unknown role {other:?}: use `support`, `main` or nothing"),
    }
}
