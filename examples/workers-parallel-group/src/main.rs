//! Parallel job group: one question fanned out to three workers that stream their answers.
//!
//! Run: `cargo run -p workers-parallel-group`
//! Env vars: none (offline).
//!
//! What it shows: `job_group` sends one request per worker with a shared job id; the context is a stream of
//! `JobGroupEvent`s (updates and stream chunks tagged with the worker name), then yields every response. A second
//! group shows `cancel_on_error`: one worker fails, the others are cancelled and answer `cancelled` on their own.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use agents::workers::{
    Job, JobFailure, JobGroupParams, JobHandlers, LocalBus, Worker, WorkerContext, WorkerRunner,
    WorkerSpec,
};
use futures::StreamExt;
use serde_json::json;

/// A debater that streams its opinion word by word.
struct Debater {
    opinion: &'static str,
    pace: Duration,
}

impl Debater {
    async fn argue(self: Arc<Self>, job: Job) -> Result<serde_json::Value, JobFailure> {
        job.update(json!("thinking"))
            .await
            .map_err(|e| JobFailure::Error(e.to_string()))?;
        job.stream_start(None)
            .await
            .map_err(|e| JobFailure::Error(e.to_string()))?;
        for word in self.opinion.split(' ') {
            tokio::time::sleep(self.pace).await;
            job.stream_data(json!(word))
                .await
                .map_err(|e| JobFailure::Error(e.to_string()))?;
        }
        job.stream_end(Some(json!({ "opinion": self.opinion })))
            .await
            .map_err(|e| JobFailure::Error(e.to_string()))?;
        Ok(json!(null))
    }

    async fn judge(self: Arc<Self>, _job: Job) -> Result<serde_json::Value, JobFailure> {
        if self.opinion.starts_with("No") {
            return Err(JobFailure::Failed(json!({ "reason": "refuses to judge" })));
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(json!("verdict"))
    }
}

#[async_trait::async_trait]
impl Worker for Debater {
    fn job_handlers(&self) -> JobHandlers<Self> {
        JobHandlers::new()
            .job("argue", Debater::argue)
            .job("judge", Debater::judge)
    }
    async fn on_job_cancelled(&self, ctx: &WorkerContext, _job_id: &str, reason: &str) {
        print_cancelled(ctx.name(), reason);
    }
}

fn print_cancelled(worker: &str, reason: &str) {
    let _ = writeln!(
        std::io::stdout().lock(),
        "  {worker}: job cancelled ({reason})"
    );
}

struct Moderator;
impl Worker for Moderator {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runner = WorkerRunner::new("debate", Arc::new(LocalBus::new()))?;
    for (name, opinion, ms) in [
        ("optimist", "Yes, Rust is a fine choice here", 20),
        ("pessimist", "No, the deadline is too short", 35),
        ("pragmatist", "Maybe, if the scope stays small", 10),
    ] {
        let worker = Debater {
            opinion,
            pace: Duration::from_millis(ms),
        };
        runner.add_worker(WorkerSpec::new(name, worker)).await?;
    }
    let moderator = runner
        .add_worker(WorkerSpec::new("moderator", Moderator))
        .await?;
    let debaters = ["optimist", "pessimist", "pragmatist"];

    let mut out = std::io::stdout().lock();
    let params = JobGroupParams::new()
        .with_name("argue")
        .with_timeout(Duration::from_secs(5));
    let mut group = moderator.context().job_group(debaters, params).await?;
    writeln!(out, "group {} started", group.job_id())?;
    while let Some(event) = group.next().await {
        let data = event.data.map(|d| d.to_string()).unwrap_or_default();
        writeln!(
            out,
            "  {:<10} {:<12} {data}",
            event.worker_name,
            event.kind.as_str()
        )?;
    }
    for (worker, response) in group.responses().await? {
        writeln!(out, "{worker}: {response}")?;
    }
    drop(out);

    let params = JobGroupParams::new()
        .with_name("judge")
        .with_timeout(Duration::from_secs(5));
    let group = moderator.context().job_group(debaters, params).await?;
    let result = group.responses().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    writeln!(std::io::stdout().lock(), "judge group: {:?}", result.err())?;

    runner.cancel("debate over").await;
    runner.run(true).await?;
    Ok(())
}
