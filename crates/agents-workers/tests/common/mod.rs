//! Test workers shared by the in-process and Redis suites.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents_workers::*;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A shared, ordered log of what workers observed.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn has(&self, s: &str) -> bool {
        self.all().iter().any(|x| x == s)
    }
    pub fn count_prefix(&self, p: &str) -> usize {
        self.all().iter().filter(|x| x.starts_with(p)).count()
    }
    /// Waits (real time, bounded) until `pred` holds.
    pub async fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if pred(&self.all()) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; log: {:?}", self.all());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    pub async fn wait_for(&self, entry: &str) {
        let e = entry.to_owned();
        self.wait(entry, move |l| l.contains(&e)).await;
    }
}

/// A worker with a set of handlers for every behaviour and hooks that log.
pub struct Probe {
    pub log: Log,
    pub gate: Arc<Notify>,
    pub peer: Mutex<Option<WorkerContext>>,
}

impl Probe {
    pub fn new(log: &Log) -> Self {
        Self {
            log: log.clone(),
            gate: Arc::new(Notify::new()),
            peer: Mutex::new(None),
        }
    }
    pub fn spec(name: &str, log: &Log) -> WorkerSpec {
        WorkerSpec::new(name, Probe::new(log))
    }
}

fn ms(job: &Job) -> u64 {
    job.payload()
        .and_then(|p| p.get("ms"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl Worker for Probe {
    fn job_handlers(&self) -> JobHandlers<Self> {
        JobHandlers::new()
            .job("echo", |w: Arc<Probe>, job: Job| async move {
                w.log
                    .push(format!("{}:echo:{}", job.context().name(), job.id()));
                Ok(job.payload().cloned().unwrap_or(Value::Null))
            })
            .job("slow", |w: Arc<Probe>, job: Job| async move {
                tokio::time::sleep(Duration::from_millis(ms(&job))).await;
                w.log.push(format!("{}:slow-done", job.context().name()));
                Ok(json!({"slept": ms(&job)}))
            })
            .job("fail", |_w: Arc<Probe>, _job: Job| async move {
                Err(JobFailure::Failed(json!({"why": "business"})))
            })
            .job("error", |_w: Arc<Probe>, _job: Job| async move {
                Err(JobFailure::Error("boom".into()))
            })
            .job("panic", |_w: Arc<Probe>, _job: Job| async move {
                if true {
                    panic!("handler panic");
                }
                Ok(Value::Null)
            })
            .job("stream", |_w: Arc<Probe>, job: Job| async move {
                job.update(json!({"progress": 0})).await.unwrap();
                job.stream_start(Some(json!("start"))).await.unwrap();
                for i in 0..3 {
                    job.stream_data(json!(i)).await.unwrap();
                }
                job.stream_end(Some(json!({"total": 3}))).await.unwrap();
                Ok(json!("ignored after stream end"))
            })
            .job("block", |w: Arc<Probe>, job: Job| async move {
                w.log
                    .push(format!("{}:block-started", job.context().name()));
                job.update(json!("started")).await.unwrap();
                std::future::pending::<()>().await;
                Ok(Value::Null)
            })
            .job("burst", |w: Arc<Probe>, job: Job| async move {
                for i in 0..20 {
                    job.update(json!(i)).await.unwrap();
                }
                job.update_urgent(json!("urgent")).await.unwrap();
                w.log.push("burst-done");
                Ok(json!("done"))
            })
            .sequential_job("seq", |w: Arc<Probe>, job: Job| async move {
                let n = job
                    .payload()
                    .and_then(|p| p.get("n"))
                    .cloned()
                    .unwrap_or(Value::Null);
                w.log.push(format!("seq-start:{n}"));
                tokio::time::sleep(Duration::from_millis(ms(&job))).await;
                w.log.push(format!("seq-end:{n}"));
                Ok(n)
            })
    }

    async fn on_activated(&self, ctx: &WorkerContext, args: ActivationArgs) {
        let peer = self.peer.lock().unwrap().clone();
        if let Some(p) = peer {
            self.log
                .push(format!("{}:peer-active={}", ctx.name(), p.is_active()));
        }
        self.log.push(format!(
            "{}:activated:{}",
            ctx.name(),
            serde_json::to_string(&args).unwrap()
        ));
    }
    async fn on_deactivated(&self, ctx: &WorkerContext) {
        self.log.push(format!("{}:deactivated", ctx.name()));
    }
    async fn on_worker_ready(&self, ctx: &WorkerContext, data: WorkerReadyData) {
        self.log.push(format!(
            "{}:ready:{}@{}",
            ctx.name(),
            data.worker_name,
            data.runner
        ));
    }
    async fn on_worker_failed(&self, ctx: &WorkerContext, data: WorkerErrorData) {
        self.log.push(format!(
            "{}:failed:{}:{}",
            ctx.name(),
            data.worker_name,
            data.error
        ));
    }
    async fn on_job_request(&self, ctx: &WorkerContext, job: Job) -> JobResult {
        self.log
            .push(format!("{}:default-handler:{:?}", ctx.name(), job.name()));
        Ok(json!({"default": true}))
    }
    async fn on_job_response(
        &self,
        ctx: &WorkerContext,
        worker: &str,
        _id: &str,
        status: JobStatus,
        _r: &Value,
    ) {
        self.log
            .push(format!("{}:response:{worker}:{status}", ctx.name()));
    }
    async fn on_job_update(&self, ctx: &WorkerContext, worker: &str, _id: &str, update: &Value) {
        self.log
            .push(format!("{}:update:{worker}:{update}", ctx.name()));
    }
    async fn on_job_completed(&self, ctx: &WorkerContext, r: &JobGroupResponse) {
        let keys: Vec<&String> = r.responses.keys().collect();
        self.log.push(format!("{}:completed:{keys:?}", ctx.name()));
    }
    async fn on_job_error(
        &self,
        ctx: &WorkerContext,
        worker: &str,
        _id: &str,
        status: JobStatus,
        _r: &Value,
    ) {
        self.log
            .push(format!("{}:job-error:{worker}:{status}", ctx.name()));
    }
    async fn on_job_cancelled(&self, ctx: &WorkerContext, _id: &str, reason: &str) {
        self.log.push(format!("{}:cancelled:{reason}", ctx.name()));
    }
    async fn on_job_update_requested(&self, ctx: &WorkerContext, id: &str, requester: &str) {
        self.log
            .push(format!("{}:update-requested-by:{requester}", ctx.name()));
        let sent = ctx
            .send_job_update(id, json!("on demand"), false)
            .await
            .unwrap();
        self.log
            .push(format!("{}:on-demand-update-sent:{sent}", ctx.name()));
    }
    async fn on_bus_message(&self, ctx: &WorkerContext, message: &BusMessage) {
        if let MessageBody::Custom { name, .. } = &message.body {
            match name.as_str() {
                "panic" => panic!("hook panic"),
                "gate" => {
                    self.log.push(format!("{}:gate-wait", ctx.name()));
                    self.gate.notified().await;
                }
                _ => {}
            }
            if let MessageBody::Custom { data, .. } = &message.body {
                self.log
                    .push(format!("{}:msgdata:{name}:{data}", ctx.name()));
            }
            self.log.push(format!("{}:msg:{name}", ctx.name()));
        }
    }
}

/// A worker whose body fails after a short delay.
pub struct Failing;

#[async_trait::async_trait]
impl Worker for Failing {
    async fn run(&self, _ctx: &WorkerContext) -> Result<(), WorkerError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(WorkerError::new("body failed"))
    }
}

/// A worker whose body ends by itself.
pub struct Finite(pub u64);

#[async_trait::async_trait]
impl Worker for Finite {
    async fn run(&self, _ctx: &WorkerContext) -> Result<(), WorkerError> {
        tokio::time::sleep(Duration::from_millis(self.0)).await;
        Ok(())
    }
}

pub fn runner_on(name: &str, bus: &Arc<dyn Bus>) -> WorkerRunner {
    WorkerRunner::new(name, bus.clone())
        .unwrap()
        .with_sigint_handling(false)
}

/// Bounded wait for a future in tests.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
