//! The runner: owns a bus handle and a registry, starts workers, shakes hands with other runners on the bus.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::error::{BusError, WorkersError};
use crate::message::{BusMessage, MessageBody};
use crate::registry::WorkerRegistry;
use crate::types::{ActivationArgs, WorkerReadyData, WorkerRegistryEntry};
use crate::worker::{RouterSpec, StopKind, WorkerContext, WorkerSpec, run_hooks};

/// Capacity of each worker's hook queue (router → hook task).
const HOOK_QUEUE: usize = 256;
/// Default interval of the runner heartbeat (Pipecat's `HEARTBEAT_SECS`).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default time without a heartbeat after which a remote runner is considered dead (Pipecat's
/// `HEARTBEAT_MONITOR_SECS`).
pub const DEFAULT_HEARTBEAT_EXPIRY: Duration = Duration::from_secs(10);
/// How long `run` waits for workers to finish after a cancel before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct Record {
    ctx: WorkerContext,
    parent: Option<String>,
    started_at: f64,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct RunnerInner {
    name: String,
    bus: Arc<dyn Bus>,
    registry: WorkerRegistry,
    workers: Mutex<HashMap<String, Record>>,
    changed: Notify,
    stop: CancellationToken,
    ending: AtomicBool,
    known_runners: Mutex<HashSet<String>>,
    /// When each remote runner was last heard from (its registry snapshot).
    last_seen: Mutex<HashMap<String, tokio::time::Instant>>,
    /// `(interval, expiry)`; `None` turns heartbeats and expiry off.
    heartbeat: Mutex<Option<(Duration, Duration)>>,
    listener: Mutex<Option<AbortOnDrop>>,
    heartbeat_task: Mutex<Option<AbortOnDrop>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl RunnerInner {
    fn address(&self) -> String {
        format!("@runner/{}", self.name)
    }

    fn snapshot(&self) -> Vec<WorkerRegistryEntry> {
        lock(&self.workers)
            .iter()
            .map(|(name, r)| {
                let mut e = WorkerRegistryEntry::new(name.clone());
                e.parent = r.parent.clone();
                e.active = r.ctx.is_active();
                e.started_at = Some(r.started_at);
                e
            })
            .collect()
    }

    async fn broadcast_registry(&self) -> Result<(), BusError> {
        let body = MessageBody::WorkerRegistry {
            runner: self.name.clone(),
            workers: self.snapshot(),
        };
        self.bus
            .send(BusMessage::new(self.address(), None, body))
            .await
    }

    async fn on_message(&self, message: &BusMessage) {
        if let MessageBody::WorkerRegistry { runner, workers } = &message.body {
            if *runner == self.name {
                return;
            }
            lock(&self.last_seen).insert(runner.clone(), tokio::time::Instant::now());
            let new_runner = lock(&self.known_runners).insert(runner.clone());
            // A worker missing from the runner's full snapshot has stopped there.
            for gone in self
                .registry
                .workers_of(runner)
                .into_iter()
                .filter(|w| !workers.iter().any(|e| e.name == *w))
            {
                self.registry.unregister_remote(runner, &gone);
            }
            for entry in workers {
                self.registry
                    .register(WorkerReadyData {
                        worker_name: entry.name.clone(),
                        runner: runner.clone(),
                    })
                    .await;
            }
            if new_runner {
                // Handshake: a runner we did not know gets our registry in reply.
                if let Err(e) = self.broadcast_registry().await {
                    tracing::warn!(error = %e, "could not reply with the registry");
                }
            }
        }
    }

    /// One heartbeat: broadcast the registry, then expire the remote runners not heard from within `expiry`.
    async fn heartbeat(&self, expiry: Duration) {
        if let Err(e) = self.broadcast_registry().await {
            tracing::debug!(runner = %self.name, error = %e, "heartbeat not sent");
        }
        let now = tokio::time::Instant::now();
        let dead: Vec<String> = {
            let mut seen = lock(&self.last_seen);
            let dead: Vec<String> = seen
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(**t) > expiry)
                .map(|(r, _)| r.clone())
                .collect();
            for r in &dead {
                seen.remove(r);
            }
            dead
        };
        for runner in dead {
            lock(&self.known_runners).remove(&runner);
            let workers = self.registry.workers_of(&runner);
            self.registry.remove_runner(&runner);
            tracing::warn!(runner = %self.name, dead = %runner, ?workers, "remote runner expired: no heartbeat");
            // Names still known elsewhere (a local worker, another runner) are not lost.
            let lost: HashSet<String> = workers
                .into_iter()
                .filter(|w| !self.registry.contains(w))
                .collect();
            if lost.is_empty() {
                continue;
            }
            let local: Vec<WorkerContext> = lock(&self.workers)
                .values()
                .map(|r| r.ctx.clone())
                .collect();
            for ctx in local {
                ctx.fail_groups_waiting_for(&lost, &runner).await;
            }
        }
    }

    pub(crate) async fn add_worker(
        this: &Arc<Self>,
        spec: WorkerSpec,
        parent: Option<String>,
    ) -> Result<WorkerHandle, WorkersError> {
        if this.stop.is_cancelled() {
            return Err(WorkersError::RunnerStopped);
        }
        let WorkerSpec {
            name,
            worker,
            handlers,
            active,
            activation,
        } = spec;
        if lock(&this.workers).contains_key(&name) {
            return Err(WorkersError::DuplicateWorker(name));
        }
        let mut sub = this.bus.subscribe(&name)?;
        let (hook_tx, hook_rx) = tokio::sync::mpsc::channel(HOOK_QUEUE);
        let seq_names = handlers
            .iter()
            .filter(|(_, (_, seq))| *seq)
            .map(|(n, _)| n.clone())
            .collect();
        let ctx = WorkerContext::new(
            name.clone(),
            this.name.clone(),
            parent.clone(),
            this.bus.clone(),
            this.registry.clone(),
            active,
            Arc::downgrade(this),
            seq_names,
            hook_tx,
        );
        let (done_tx, done_rx) = watch::channel(false);
        {
            let mut workers = lock(&this.workers);
            if workers.contains_key(&name) {
                return Err(WorkersError::DuplicateWorker(name));
            }
            workers.insert(
                name.clone(),
                Record {
                    ctx: ctx.clone(),
                    parent: parent.clone(),
                    started_at: now_unix(),
                },
            );
        }

        let hooks_task = tokio::spawn(run_hooks(worker.clone(), ctx.clone(), hook_rx));
        let router_spec = RouterSpec {
            worker: worker.clone(),
            handlers,
        };
        let router_task = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                loop {
                    let message = tokio::select! {
                        biased;
                        _ = ctx.inner.stop.cancelled() => break,
                        m = sub.recv() => m,
                    };
                    let Some(message) = message else { break };
                    if let Some(kind) = ctx.route(message, &router_spec).await {
                        *ctx.inner
                            .stop_kind
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(kind);
                        ctx.inner.stop.cancel();
                        break;
                    }
                }
            })
        };

        // Supervisor: runs the body, then the stop sequence.
        {
            let ctx = ctx.clone();
            let runner = this.clone();
            let parent = parent.clone();
            tokio::spawn(async move {
                let result = tokio::select! {
                    biased;
                    _ = ctx.stopped() => None,
                    r = worker.run(&ctx) => Some(r),
                };
                let mut kind = ctx
                    .inner
                    .stop_kind
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or(StopKind::Graceful);
                if let Some(Err(e)) = result {
                    kind = StopKind::Cancelled;
                    tracing::error!(worker = %ctx.name(), error = %e, "worker failed");
                    let body = MessageBody::WorkerError {
                        parent: parent.clone(),
                        error: e.to_string(),
                    };
                    let _ = ctx
                        .send_raw(BusMessage::new(ctx.name().to_owned(), None, body))
                        .await;
                }
                ctx.inner.stop.cancel();
                let _ = router_task.await;
                ctx.cancel_all_jobs("worker stopped").await;
                let children: Vec<String> = lock(&runner.workers)
                    .iter()
                    .filter(|(_, r)| r.parent.as_deref() == Some(ctx.name()))
                    .map(|(n, _)| n.clone())
                    .collect();
                for child in children {
                    let body = MessageBody::Cancel {
                        reason: "parent stopped".to_owned(),
                    };
                    let _ = ctx
                        .send_raw(BusMessage::new(ctx.name().to_owned(), Some(child), body).local())
                        .await;
                }
                match kind {
                    StopKind::Graceful => {
                        // Queued hooks run first; a hook stuck in user code is aborted after the grace period.
                        let abort = hooks_task.abort_handle();
                        let drain = async {
                            let _ = ctx.inner.hooks.send(crate::worker::Hook::Stop).await;
                            let _ = hooks_task.await;
                        };
                        if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
                            tracing::warn!(worker = %ctx.name(), "hooks did not finish in time; aborted");
                            abort.abort();
                        }
                    }
                    StopKind::Cancelled => hooks_task.abort(),
                }
                runner.registry.unregister_local(ctx.name());
                lock(&runner.workers).remove(ctx.name());
                let _ = done_tx.send(true);
                runner.changed.notify_waiters();
            });
        }

        this.registry
            .register(WorkerReadyData {
                worker_name: name.clone(),
                runner: this.name.clone(),
            })
            .await;
        let announced = async {
            let ready = MessageBody::WorkerReady {
                runner: this.name.clone(),
                parent: parent.clone(),
            };
            this.bus
                .send(BusMessage::new(name.clone(), None, ready))
                .await?;
            this.broadcast_registry().await?;
            if let Some(args) = activation {
                let body = MessageBody::Activate { args };
                this.bus
                    .send(BusMessage::new(name.clone(), Some(name.clone()), body))
                    .await?;
            }
            Ok::<(), BusError>(())
        };
        if let Err(e) = announced.await {
            // Do not leave a half-started worker behind.
            ctx.inner.stop.cancel();
            return Err(e.into());
        }
        this.changed.notify_waiters();
        Ok(WorkerHandle { ctx, done: done_rx })
    }
}

/// Runs workers (Pipecat's `WorkerRunner`). Cheap to clone. The runner name must be unique on a shared bus.
#[derive(Clone)]
pub struct WorkerRunner {
    inner: Arc<RunnerInner>,
    handle_sigint: bool,
}

impl std::fmt::Debug for WorkerRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRunner")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl WorkerRunner {
    /// A runner on `bus`. Must be called inside a Tokio runtime (it starts the runner's bus listener).
    pub fn new(name: impl Into<String>, bus: Arc<dyn Bus>) -> Result<Self, WorkersError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| WorkersError::NoRuntime)?;
        let name = name.into();
        let inner = Arc::new(RunnerInner {
            registry: WorkerRegistry::new(name.clone()),
            name,
            bus,
            workers: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            stop: CancellationToken::new(),
            ending: AtomicBool::new(false),
            known_runners: Mutex::new(HashSet::new()),
            last_seen: Mutex::new(HashMap::new()),
            heartbeat: Mutex::new(Some((DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_EXPIRY))),
            listener: Mutex::new(None),
            heartbeat_task: Mutex::new(None),
        });
        let mut sub = inner.bus.subscribe(&inner.address())?;
        let weak = Arc::downgrade(&inner);
        let task = handle.spawn(async move {
            while let Some(message) = sub.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                inner.on_message(&message).await;
            }
        });
        *lock(&inner.listener) = Some(AbortOnDrop(task.abort_handle()));
        let weak = Arc::downgrade(&inner);
        let beat = handle.spawn(async move {
            loop {
                let settings = match weak.upgrade() {
                    Some(inner) => *lock(&inner.heartbeat),
                    None => break,
                };
                let Some((interval, expiry)) = settings else {
                    // Off: look again later (the setting may change before `run`).
                    tokio::time::sleep(DEFAULT_HEARTBEAT_INTERVAL).await;
                    continue;
                };
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { break };
                if inner.stop.is_cancelled() {
                    break;
                }
                if lock(&inner.heartbeat).is_some() {
                    inner.heartbeat(expiry).await;
                }
            }
        });
        *lock(&inner.heartbeat_task) = Some(AbortOnDrop(beat.abort_handle()));
        Ok(Self {
            inner,
            handle_sigint: true,
        })
    }

    /// Whether [`run`](Self::run) cancels everything on Ctrl-C (SIGINT). Default `true`.
    pub fn with_sigint_handling(mut self, enabled: bool) -> Self {
        self.handle_sigint = enabled;
        self
    }

    /// Heartbeats: every `interval` the runner re-broadcasts its registry snapshot, and a remote runner not heard
    /// from for `expiry` is removed from the registry; job groups still waiting for one of its workers fail at once
    /// with [`JobError::WorkerLost`](crate::JobError::WorkerLost). Defaults: 1 s and 10 s (Pipecat's
    /// `HEARTBEAT_SECS` / `HEARTBEAT_MONITOR_SECS`). `expiry` should be several intervals.
    pub fn with_heartbeat(self, interval: Duration, expiry: Duration) -> Self {
        *lock(&self.inner.heartbeat) = Some((interval.max(Duration::from_millis(1)), expiry));
        self
    }

    /// Turns heartbeats and remote-runner expiry off (remote entries then stay until their runner says otherwise).
    pub fn without_heartbeat(self) -> Self {
        *lock(&self.inner.heartbeat) = None;
        self
    }

    /// The runner name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The registry.
    pub fn registry(&self) -> &WorkerRegistry {
        &self.inner.registry
    }

    /// Names of the workers running here.
    pub fn workers(&self) -> Vec<String> {
        lock(&self.inner.workers).keys().cloned().collect()
    }

    /// This runner's registry snapshot (what it broadcasts to other runners).
    pub fn snapshot(&self) -> Vec<WorkerRegistryEntry> {
        self.inner.snapshot()
    }

    /// Adds and starts a root worker, before or after [`run`](Self::run).
    pub async fn add_worker(&self, spec: WorkerSpec) -> Result<WorkerHandle, WorkersError> {
        RunnerInner::add_worker(&self.inner, spec, None).await
    }

    /// Broadcasts this runner's registry now (also done on `run` and whenever a worker becomes ready).
    pub async fn announce(&self) -> Result<(), BusError> {
        self.inner.broadcast_registry().await
    }

    fn roots(&self) -> Vec<String> {
        lock(&self.inner.workers)
            .iter()
            .filter(|(_, r)| r.parent.is_none())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Runs until every root worker finished (`auto_end = true`), or until [`end`](Self::end) /
    /// [`cancel`](Self::cancel) / Ctrl-C (`auto_end = false` keeps a long-lived host running). On return every
    /// worker of this runner has stopped.
    pub async fn run(&self, auto_end: bool) -> Result<(), WorkersError> {
        self.inner.broadcast_registry().await?;
        let sigint = async {
            if self.handle_sigint {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(sigint);
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.inner.stop.is_cancelled() {
                break;
            }
            let ending = auto_end || self.inner.ending.load(Ordering::Acquire);
            if ending && self.roots().is_empty() {
                break;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = self.inner.stop.cancelled() => {}
                _ = &mut sigint => {
                    tracing::info!(runner = %self.inner.name, "Ctrl-C: cancelling the runner");
                    self.cancel("SIGINT").await;
                }
            }
        }
        self.inner.stop.cancel();
        // Stop whatever still runs (children of finished roots, or everything after a cancel).
        let all: Vec<WorkerContext> = lock(&self.inner.workers)
            .values()
            .map(|r| r.ctx.clone())
            .collect();
        for ctx in &all {
            ctx.inner.stop.cancel();
        }
        let wait_all = async {
            loop {
                let changed = self.inner.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if lock(&self.inner.workers).is_empty() {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(STOP_GRACE, wait_all).await.is_err() {
            tracing::warn!(runner = %self.inner.name, workers = ?self.workers(), "workers did not stop in time");
        }
        Ok(())
    }

    /// Ends gracefully: each root worker gets an end message after what is already queued for it; `run` returns
    /// once they have finished.
    pub async fn end(&self, reason: &str) -> Result<(), BusError> {
        self.inner.ending.store(true, Ordering::Release);
        for root in self.roots() {
            let body = MessageBody::End {
                reason: reason.to_owned(),
            };
            self.inner
                .bus
                .send(BusMessage::new(self.inner.address(), Some(root), body))
                .await?;
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    /// Cancels at once: a system-priority cancel to each root worker; `run` returns after they stopped.
    pub async fn cancel(&self, reason: &str) {
        self.inner.cancel(reason).await;
    }
}

impl RunnerInner {
    fn roots(&self) -> Vec<String> {
        lock(&self.workers)
            .iter()
            .filter(|(_, r)| r.parent.is_none())
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub(crate) async fn cancel(&self, reason: &str) {
        for root in self.roots() {
            let body = MessageBody::Cancel {
                reason: reason.to_owned(),
            };
            if let Err(e) = self
                .bus
                .send(BusMessage::new(self.address(), Some(root), body))
                .await
            {
                tracing::warn!(error = %e, "could not send a cancel");
            }
        }
        self.stop.cancel();
        self.changed.notify_waiters();
    }
}

/// A handle on a started worker.
#[derive(Clone)]
pub struct WorkerHandle {
    ctx: WorkerContext,
    done: watch::Receiver<bool>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("name", &self.ctx.name())
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// The worker name.
    pub fn name(&self) -> &str {
        self.ctx.name()
    }
    /// The worker's context (to request jobs on its behalf, activate others, …).
    pub fn context(&self) -> &WorkerContext {
        &self.ctx
    }
    /// Whether the worker is active.
    pub fn is_active(&self) -> bool {
        self.ctx.is_active()
    }
    /// Whether the worker has finished.
    pub fn is_finished(&self) -> bool {
        *self.done.borrow()
    }
    /// Waits until the worker has finished.
    pub async fn finished(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
    /// Ends the worker gracefully.
    pub async fn end(&self, reason: &str) -> Result<(), BusError> {
        self.ctx.end(reason).await
    }
    /// Cancels the worker at once (system priority).
    pub async fn cancel(&self, reason: &str) -> Result<(), BusError> {
        let body = MessageBody::Cancel {
            reason: reason.to_owned(),
        };
        self.ctx
            .send_raw(BusMessage::new(
                self.ctx.name().to_owned(),
                Some(self.ctx.name().to_owned()),
                body,
            ))
            .await
    }
    /// Activates the worker (as if another worker activated it).
    pub async fn activate(&self, args: ActivationArgs) -> Result<(), BusError> {
        let body = MessageBody::Activate { args };
        self.ctx
            .send_raw(BusMessage::new(
                self.ctx.name().to_owned(),
                Some(self.ctx.name().to_owned()),
                body,
            ))
            .await
    }
}
