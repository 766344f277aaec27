//! Workers: the [`Worker`] trait (lifecycle hooks and job handling), [`JobHandlers`], the [`Job`] a handler
//! receives, and the [`WorkerContext`] through which a worker talks to the bus.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::error::{BusError, JobError, WorkerError, WorkersError};
use crate::job::{GroupShared, JobContext, JobGroupContext, Routed};
use crate::message::{BusMessage, MessageBody};
use crate::registry::WorkerRegistry;
use crate::runner::{RunnerInner, WorkerHandle};
use crate::types::{
    ActivationArgs, JobEvent, JobEventKind, JobGroupParams, JobGroupResponse, JobParams, JobStatus,
    WorkerErrorData, WorkerReadyData,
};

/// Why a job handler did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum JobFailure {
    /// A logical or business failure: answered with status `failed` and this response.
    Failed(Value),
    /// An unexpected error: answered with status `error` and `{"error": message}`.
    Error(String),
}

/// What a job handler returns: the response payload, or a failure.
pub type JobResult = Result<Value, JobFailure>;

type ErasedHandler = Arc<dyn Fn(Job) -> BoxFuture<'static, JobResult> + Send + Sync>;
type HandlerFn<W> = Arc<dyn Fn(Arc<W>, Job) -> BoxFuture<'static, JobResult> + Send + Sync>;

/// Named job handlers of a worker type (Pipecat's `@job(name=…, sequential=…)`).
pub struct JobHandlers<W> {
    map: HashMap<String, (HandlerFn<W>, bool)>,
}

impl<W> Default for JobHandlers<W> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<W: Send + Sync + 'static> JobHandlers<W> {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler for jobs named `name`; each job runs in its own task, concurrently with others.
    pub fn job<F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Arc<W>, Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        self.add(name.into(), handler, false)
    }

    /// Adds a handler whose jobs run one at a time, in arrival order (queueing counts against the requester's
    /// timeout).
    pub fn sequential_job<F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Arc<W>, Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        self.add(name.into(), handler, true)
    }

    fn add<F, Fut>(mut self, name: String, handler: F, sequential: bool) -> Self
    where
        F: Fn(Arc<W>, Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        let f: HandlerFn<W> = Arc::new(move |w, j| Box::pin(handler(w, j)));
        self.map.insert(name, (f, sequential));
        self
    }
}

/// A worker: a named peer on the bus. Every method has a default, so a worker implements only what it uses.
/// Hooks run one at a time, in message order, in a task of their own; job handlers each run in their own task.
#[async_trait::async_trait]
pub trait Worker: Send + Sync + 'static {
    /// Named job handlers. Requests whose name matches none go to [`on_job_request`](Self::on_job_request).
    fn job_handlers(&self) -> JobHandlers<Self>
    where
        Self: Sized,
    {
        JobHandlers::new()
    }

    /// The worker's body. The default waits until the worker is told to stop. Returning `Ok` ends the worker;
    /// returning `Err` reports it as failed (its parent's `on_worker_failed` fires).
    async fn run(&self, ctx: &WorkerContext) -> Result<(), WorkerError> {
        ctx.stopped().await;
        Ok(())
    }

    /// The worker was activated.
    async fn on_activated(&self, _ctx: &WorkerContext, _args: ActivationArgs) {}
    /// The worker was deactivated.
    async fn on_deactivated(&self, _ctx: &WorkerContext) {}
    /// A worker became ready: a local root worker, one of this worker's children, or a watched worker.
    async fn on_worker_ready(&self, _ctx: &WorkerContext, _data: WorkerReadyData) {}
    /// A child of this worker failed.
    async fn on_worker_failed(&self, _ctx: &WorkerContext, _data: WorkerErrorData) {}
    /// A job with no matching named handler. The default answers `error`.
    async fn on_job_request(&self, _ctx: &WorkerContext, job: Job) -> JobResult {
        Err(JobFailure::Error(format!(
            "no handler for job {:?}",
            job.name().unwrap_or("")
        )))
    }
    /// A worker answered a job this worker requested.
    async fn on_job_response(
        &self,
        _ctx: &WorkerContext,
        _worker: &str,
        _job_id: &str,
        _status: JobStatus,
        _response: &Value,
    ) {
    }
    /// A progress update on a job this worker requested.
    async fn on_job_update(
        &self,
        _ctx: &WorkerContext,
        _worker: &str,
        _job_id: &str,
        _update: &Value,
    ) {
    }
    /// A stream event (start, data, end) of a job this worker requested.
    async fn on_job_stream(
        &self,
        _ctx: &WorkerContext,
        _worker: &str,
        _job_id: &str,
        _event: &JobEvent,
    ) {
    }
    /// Every worker of a group this worker requested responded.
    async fn on_job_completed(&self, _ctx: &WorkerContext, _response: &JobGroupResponse) {}
    /// A worker answered `error`/`failed` and `cancel_on_error` cancelled the group.
    async fn on_job_error(
        &self,
        _ctx: &WorkerContext,
        _worker: &str,
        _job_id: &str,
        _status: JobStatus,
        _response: &Value,
    ) {
    }
    /// A job this worker was running was cancelled (a `cancelled` response has been sent for it).
    async fn on_job_cancelled(&self, _ctx: &WorkerContext, _job_id: &str, _reason: &str) {}
    /// The requester of a job this worker runs asked for a progress update.
    async fn on_job_update_requested(&self, _ctx: &WorkerContext, _job_id: &str, _requester: &str) {
    }
    /// An application message ([`MessageBody::Custom`]).
    async fn on_bus_message(&self, _ctx: &WorkerContext, _message: &BusMessage) {}
}

/// How to start a worker: its name, the worker and its handlers, whether it starts active.
pub struct WorkerSpec {
    pub(crate) name: String,
    pub(crate) worker: Arc<dyn Worker>,
    pub(crate) handlers: HashMap<String, (ErasedHandler, bool)>,
    pub(crate) active: bool,
    pub(crate) activation: Option<ActivationArgs>,
}

impl std::fmt::Debug for WorkerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSpec")
            .field("name", &self.name)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl WorkerSpec {
    /// A worker named `name`, starting inactive.
    pub fn new<W: Worker>(name: impl Into<String>, worker: W) -> Self {
        Self::from_arc(name, Arc::new(worker))
    }

    /// Same as [`new`](Self::new) for a worker the caller keeps a handle to.
    pub fn from_arc<W: Worker>(name: impl Into<String>, worker: Arc<W>) -> Self {
        let handlers = worker
            .job_handlers()
            .map
            .into_iter()
            .map(|(name, (f, seq))| {
                let w = worker.clone();
                let erased: ErasedHandler = Arc::new(move |job| f(w.clone(), job));
                (name, (erased, seq))
            })
            .collect();
        Self {
            name: name.into(),
            worker,
            handlers,
            active: false,
            activation: None,
        }
    }

    /// Starts active without calling `on_activated`.
    pub fn active(mut self) -> Self {
        self.active = true;
        self
    }

    /// Activates the worker with `args` as soon as it is ready (`on_activated` fires).
    pub fn activate_on_start(mut self, args: ActivationArgs) -> Self {
        self.activation = Some(args);
        self
    }

    /// The worker name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A job as the worker sees it. Send progress and stream events through it; the handler's return value is the
/// response (unless a stream end already answered).
pub struct Job {
    id: String,
    name: Option<String>,
    payload: Option<Value>,
    requester: String,
    ctx: WorkerContext,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("requester", &self.requester)
            .finish()
    }
}

impl Job {
    /// The job id (shared by the group).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The handler name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The payload.
    pub fn payload(&self) -> Option<&Value> {
        self.payload.as_ref()
    }
    /// Decodes the payload (`null` when absent).
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, WorkersError> {
        Ok(serde_json::from_value(
            self.payload.clone().unwrap_or(Value::Null),
        )?)
    }
    /// The requesting worker.
    pub fn requester(&self) -> &str {
        &self.requester
    }
    /// The worker's context.
    pub fn context(&self) -> &WorkerContext {
        &self.ctx
    }

    async fn event(
        &self,
        kind: JobEventKind,
        data: Option<Value>,
        urgent: bool,
    ) -> Result<(), BusError> {
        if !self.ctx.inner.is_inflight(&self.id) {
            return Ok(());
        }
        self.ctx
            .send_event(&self.requester, &self.id, kind, data, urgent)
            .await
    }

    /// Sends a progress update (data lane, in order).
    pub async fn update(&self, data: Value) -> Result<(), BusError> {
        self.event(JobEventKind::Update, Some(data), false).await
    }
    /// Sends a progress update on the system lane: it overtakes queued data messages.
    pub async fn update_urgent(&self, data: Value) -> Result<(), BusError> {
        self.event(JobEventKind::Update, Some(data), true).await
    }
    /// Starts a stream.
    pub async fn stream_start(&self, data: Option<Value>) -> Result<(), BusError> {
        self.event(JobEventKind::StreamStart, data, false).await
    }
    /// Sends one streamed chunk.
    pub async fn stream_data(&self, data: Value) -> Result<(), BusError> {
        self.event(JobEventKind::StreamData, Some(data), false)
            .await
    }
    /// Ends the stream. Terminal: it counts as the response, and the handler's return value is then ignored.
    pub async fn stream_end(&self, data: Option<Value>) -> Result<(), BusError> {
        if self.ctx.inner.take_inflight(&self.id).is_none() {
            return Ok(());
        }
        self.ctx
            .send_event(
                &self.requester,
                &self.id,
                JobEventKind::StreamEnd,
                data,
                false,
            )
            .await
    }
}

/// Typed payload helper: serialize a response.
pub fn to_response<T: Serialize>(value: &T) -> JobResult {
    serde_json::to_value(value)
        .map_err(|e| JobFailure::Error(format!("response serialization failed: {e}")))
}

/// How many early cancels a worker remembers.
const EARLY_CANCELS: usize = 1024;

struct Inflight {
    requester: String,
    task: tokio::task::AbortHandle,
}

pub(crate) enum Hook {
    Activated(ActivationArgs),
    Deactivated,
    WorkerReady(WorkerReadyData),
    WorkerFailed(WorkerErrorData),
    JobResponse {
        worker: String,
        job_id: String,
        status: JobStatus,
        response: Value,
    },
    JobUpdate {
        worker: String,
        job_id: String,
        data: Value,
    },
    JobStream {
        worker: String,
        job_id: String,
        event: JobEvent,
    },
    JobCompleted(JobGroupResponse),
    JobError {
        worker: String,
        job_id: String,
        status: JobStatus,
        response: Value,
    },
    JobCancelled {
        job_id: String,
        reason: String,
    },
    JobUpdateRequested {
        job_id: String,
        requester: String,
    },
    Message(Arc<BusMessage>),
    Stop,
}

/// How a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopKind {
    Graceful,
    Cancelled,
}

pub(crate) struct CtxInner {
    pub(crate) name: String,
    pub(crate) runner_name: String,
    pub(crate) parent: Option<String>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) registry: WorkerRegistry,
    pub(crate) active: AtomicBool,
    pub(crate) stop: CancellationToken,
    pub(crate) stop_kind: Mutex<Option<StopKind>>,
    pub(crate) runner: Weak<RunnerInner>,
    groups: Mutex<HashMap<String, Arc<GroupShared>>>,
    inflight: Mutex<HashMap<String, Inflight>>,
    watched: Mutex<HashSet<String>>,
    /// Jobs cancelled before their request arrived (a system-lane cancel can overtake a data-lane request).
    early_cancels: Mutex<std::collections::VecDeque<String>>,
    seq_locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    pub(crate) hooks: mpsc::Sender<Hook>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CtxInner {
    fn is_inflight(&self, job_id: &str) -> bool {
        lock(&self.inflight).contains_key(job_id)
    }
    fn take_inflight(&self, job_id: &str) -> Option<Inflight> {
        lock(&self.inflight).remove(job_id)
    }
}

/// A worker's handle on the framework: jobs, activation, children, messages. Cheap to clone.
#[derive(Clone)]
pub struct WorkerContext {
    pub(crate) inner: Arc<CtxInner>,
}

impl std::fmt::Debug for WorkerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerContext")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl WorkerContext {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        runner_name: String,
        parent: Option<String>,
        bus: Arc<dyn Bus>,
        registry: WorkerRegistry,
        active: bool,
        runner: Weak<RunnerInner>,
        seq_names: Vec<String>,
        hooks: mpsc::Sender<Hook>,
    ) -> Self {
        Self {
            inner: Arc::new(CtxInner {
                name,
                runner_name,
                parent,
                bus,
                registry,
                active: AtomicBool::new(active),
                stop: CancellationToken::new(),
                stop_kind: Mutex::new(None),
                runner,
                groups: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                watched: Mutex::new(HashSet::new()),
                early_cancels: Mutex::new(std::collections::VecDeque::new()),
                seq_locks: seq_names
                    .into_iter()
                    .map(|n| (n, Arc::new(tokio::sync::Mutex::new(()))))
                    .collect(),
                hooks,
            }),
        }
    }

    /// This worker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// The runner that manages this worker.
    pub fn runner_name(&self) -> &str {
        &self.inner.runner_name
    }
    /// The parent worker, for a child.
    pub fn parent(&self) -> Option<&str> {
        self.inner.parent.as_deref()
    }
    /// Whether this worker is active.
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Acquire)
    }
    /// The registry shared with the runner.
    pub fn registry(&self) -> &WorkerRegistry {
        &self.inner.registry
    }
    /// The bus.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }
    /// Resolves once this worker is told to stop.
    pub async fn stopped(&self) {
        self.inner.stop.cancelled().await;
    }
    /// Whether this worker is stopping.
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }
    /// Ids of the job groups this worker requested that are still running.
    pub fn job_groups(&self) -> Vec<String> {
        lock(&self.inner.groups).keys().cloned().collect()
    }

    async fn send(&self, target: Option<&str>, body: MessageBody) -> Result<(), BusError> {
        self.inner
            .bus
            .send(BusMessage::new(
                self.inner.name.clone(),
                target.map(str::to_owned),
                body,
            ))
            .await
    }

    async fn send_event(
        &self,
        to: &str,
        job_id: &str,
        kind: JobEventKind,
        data: Option<Value>,
        urgent: bool,
    ) -> Result<(), BusError> {
        self.send(
            Some(to),
            MessageBody::JobEvent {
                job_id: job_id.to_owned(),
                kind,
                data,
                urgent,
            },
        )
        .await
    }

    /// Sends an application message to `target` (or to everyone); it arrives in `on_bus_message`.
    pub async fn send_message(
        &self,
        target: Option<&str>,
        name: &str,
        data: Value,
    ) -> Result<(), BusError> {
        self.send(
            target,
            MessageBody::Custom {
                name: name.to_owned(),
                data,
            },
        )
        .await
    }

    /// Sends a message as is (e.g. a local-only one).
    pub async fn send_raw(&self, message: BusMessage) -> Result<(), BusError> {
        self.inner.bus.send(message).await
    }

    /// Activates `target` with `args`. With `deactivate_self`, this worker is marked inactive **before** the
    /// activation is sent (and its `on_deactivated` fires), so the two are never active at once.
    pub async fn activate_worker(
        &self,
        target: &str,
        args: ActivationArgs,
        deactivate_self: bool,
    ) -> Result<(), BusError> {
        if deactivate_self {
            self.inner.active.store(false, Ordering::Release);
            self.send(Some(&self.inner.name), MessageBody::Deactivate)
                .await?;
        }
        self.send(Some(target), MessageBody::Activate { args })
            .await
    }

    /// Deactivates `target`.
    pub async fn deactivate_worker(&self, target: &str) -> Result<(), BusError> {
        self.send(Some(target), MessageBody::Deactivate).await
    }

    /// Asks the worker running `job_id` for a progress update (its `on_job_update_requested` fires).
    pub async fn request_job_update(&self, job_id: &str, worker: &str) -> Result<(), BusError> {
        self.send(
            Some(worker),
            MessageBody::JobUpdateRequest {
                job_id: job_id.to_owned(),
            },
        )
        .await
    }

    /// Sends a progress update for a job this worker is running (e.g. from `on_job_update_requested`).
    /// Returns `false` when the job is not in flight here (finished, cancelled or unknown).
    pub async fn send_job_update(
        &self,
        job_id: &str,
        data: Value,
        urgent: bool,
    ) -> Result<bool, BusError> {
        let requester = lock(&self.inner.inflight)
            .get(job_id)
            .map(|i| i.requester.clone());
        let Some(requester) = requester else {
            return Ok(false);
        };
        self.send_event(&requester, job_id, JobEventKind::Update, Some(data), urgent)
            .await?;
        Ok(true)
    }

    /// Ends this worker gracefully (after the messages already queued for it).
    pub async fn end(&self, reason: &str) -> Result<(), BusError> {
        self.send(
            Some(&self.inner.name),
            MessageBody::End {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Cancels this worker's runner and every worker on it (e.g. an idle main worker bringing its peers down,
    /// Pipecat's `cancel_runner_on_idle_timeout`). Does nothing when the runner is gone.
    pub async fn cancel_runner(&self, reason: &str) {
        if let Some(runner) = self.inner.runner.upgrade() {
            runner.cancel(reason).await;
        }
    }

    /// Adds a child worker under this one (it stops when this worker stops; `on_worker_ready` fires here).
    pub async fn add_child(&self, spec: WorkerSpec) -> Result<WorkerHandle, WorkersError> {
        let runner = self
            .inner
            .runner
            .upgrade()
            .ok_or(WorkersError::RunnerStopped)?;
        RunnerInner::add_worker(&runner, spec, Some(self.inner.name.clone())).await
    }

    /// Fires `on_worker_ready` for these workers when they register anywhere (at once if already known).
    pub async fn watch_workers<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for name in names {
            let name = name.into();
            if !lock(&self.inner.watched).insert(name.clone()) {
                continue;
            }
            let hooks = self.inner.hooks.clone();
            self.inner
                .registry
                .watch(
                    &name,
                    Arc::new(move |data| {
                        let hooks = hooks.clone();
                        Box::pin(async move {
                            let _ = hooks.send(Hook::WorkerReady(data)).await;
                        })
                    }),
                )
                .await;
        }
    }

    /// Starts a job on one worker and returns its context (a stream of events, then the response).
    /// Waits for the worker to be ready within `params.timeout`.
    pub async fn job(&self, worker: &str, params: JobParams) -> Result<JobContext, JobError> {
        let group = self
            .dispatch(vec![worker.to_owned()], JobGroupParams::from(params))
            .await?;
        Ok(JobContext::new(JobGroupContext::new(group, self.clone())))
    }

    /// Starts one job on several workers (one shared id) and returns the group's context.
    pub async fn job_group<I, S>(
        &self,
        workers: I,
        params: JobGroupParams,
    ) -> Result<JobGroupContext, JobError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let group = self
            .dispatch(workers.into_iter().map(Into::into).collect(), params)
            .await?;
        Ok(JobGroupContext::new(group, self.clone()))
    }

    /// Fire-and-forget job: returns the job id; results arrive through the hooks.
    pub async fn request_job(&self, worker: &str, params: JobParams) -> Result<String, JobError> {
        Ok(self
            .dispatch(vec![worker.to_owned()], params.into())
            .await?
            .job_id
            .clone())
    }

    /// Fire-and-forget job group: returns the job id; results arrive through the hooks.
    pub async fn request_job_group<I, S>(
        &self,
        workers: I,
        params: JobGroupParams,
    ) -> Result<String, JobError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(self
            .dispatch(workers.into_iter().map(Into::into).collect(), params)
            .await?
            .job_id
            .clone())
    }

    async fn dispatch(
        &self,
        workers: Vec<String>,
        params: JobGroupParams,
    ) -> Result<Arc<GroupShared>, JobError> {
        let mut seen = HashSet::new();
        let workers: Vec<String> = workers
            .into_iter()
            .filter(|w| seen.insert(w.clone()))
            .collect();
        if workers.is_empty() {
            return Err(JobError::Cancelled {
                reason: "no workers given".to_owned(),
            });
        }
        if self.is_stopping() {
            return Err(JobError::Cancelled {
                reason: "requester is stopping".to_owned(),
            });
        }
        let deadline = params.job.timeout.map(|t| Instant::now() + t);
        if let Err(missing) = self.inner.registry.wait_for(&workers, deadline).await {
            return Err(JobError::NotReady { missing });
        }
        let job_id = uuid::Uuid::new_v4().to_string();
        let group = Arc::new(GroupShared {
            job_id: job_id.clone(),
            worker_names: workers.clone(),
            label: params.job.label.clone(),
            cancellable: params.job.cancellable,
            cancel_on_error: params.cancel_on_error,
            state: Mutex::new(Default::default()),
            notify: tokio::sync::Notify::new(),
            timer: Mutex::new(None),
        });
        lock(&self.inner.groups).insert(job_id.clone(), group.clone());
        if let Some(deadline) = deadline {
            let ctx = self.clone();
            let id = job_id.clone();
            let shared = group.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                // Clear our own handle first: failing the group stops the timer, which must not abort this
                // task while it is still sending the cancels.
                lock(&shared.timer).take();
                drop(shared);
                ctx.fail_group(&id, JobError::Timeout, "timeout").await;
            });
            *lock(&group.timer) = Some(task.abort_handle());
        }
        for w in &workers {
            let body = MessageBody::JobRequest {
                job_id: job_id.clone(),
                job_name: params.job.name.clone(),
                payload: params.job.payload.clone(),
            };
            if let Err(e) = self.send(Some(w), body).await {
                self.fail_group(
                    &job_id,
                    JobError::Bus(e.to_string()),
                    "request could not be sent",
                )
                .await;
                return Err(e.into());
            }
        }
        Ok(group)
    }

    /// Fails a group and sends a cancel to every worker still running it.
    async fn fail_group(&self, job_id: &str, error: JobError, reason: &str) -> bool {
        let group = lock(&self.inner.groups).remove(job_id);
        let Some(group) = group else { return false };
        let Some(pending) = group.fail(error) else {
            return false;
        };
        for w in pending {
            let body = MessageBody::JobCancel {
                job_id: job_id.to_owned(),
                reason: reason.to_owned(),
            };
            if let Err(e) = self.send(Some(&w), body).await {
                tracing::warn!(worker = %w, error = %e, "could not send a job cancel");
            }
        }
        true
    }

    /// Internal cancel of a group this worker requested (ignores `cancellable`).
    pub async fn cancel_job_group(&self, job_id: &str, reason: &str) -> bool {
        self.fail_group(
            job_id,
            JobError::Cancelled {
                reason: reason.to_owned(),
            },
            reason,
        )
        .await
    }

    /// External cancel request (e.g. from a UI): refused when the group was created with `cancellable = false`.
    pub async fn request_cancel_job_group(&self, job_id: &str) -> bool {
        let cancellable = lock(&self.inner.groups).get(job_id).map(|g| g.cancellable);
        match cancellable {
            Some(true) => self.cancel_job_group(job_id, "cancelled by request").await,
            _ => false,
        }
    }

    pub(crate) fn cancel_job_group_detached(&self, job_id: String, reason: String) {
        let ctx = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    ctx.cancel_job_group(&job_id, &reason).await;
                });
            }
            Err(_) => {
                tracing::warn!(%job_id, "job context dropped outside a runtime: cancel not sent")
            }
        }
    }

    async fn hook(&self, hook: Hook) {
        let _ = self.inner.hooks.send(hook).await;
    }

    // ----- message routing (runs in the worker's router task; never runs user code) -----

    /// Routes one message. Returns the stop kind when the message tells this worker to stop.
    pub(crate) async fn route(
        &self,
        message: Arc<BusMessage>,
        spec: &RouterSpec,
    ) -> Option<StopKind> {
        let source = message.source.clone();
        match &message.body {
            MessageBody::End { .. } if message.target.as_deref() == Some(self.name()) => {
                return Some(StopKind::Graceful);
            }
            MessageBody::Cancel { .. } if message.target.as_deref() == Some(self.name()) => {
                return Some(StopKind::Cancelled);
            }
            MessageBody::Activate { args } => {
                self.inner.active.store(true, Ordering::Release);
                self.hook(Hook::Activated(args.clone())).await;
            }
            MessageBody::Deactivate => {
                self.inner.active.store(false, Ordering::Release);
                self.hook(Hook::Deactivated).await;
            }
            MessageBody::WorkerReady { runner, parent } => {
                if source == self.name() || lock(&self.inner.watched).contains(&source) {
                    return None;
                }
                let child = parent.as_deref() == Some(self.name());
                let local_root = *runner == self.inner.runner_name && parent.is_none();
                if child || local_root {
                    self.hook(Hook::WorkerReady(WorkerReadyData {
                        worker_name: source,
                        runner: runner.clone(),
                    }))
                    .await;
                }
            }
            MessageBody::WorkerError { parent, error }
                if parent.as_deref() == Some(self.name()) =>
            {
                self.hook(Hook::WorkerFailed(WorkerErrorData {
                    worker_name: source,
                    error: error.clone(),
                }))
                .await;
            }
            MessageBody::JobRequest {
                job_id,
                job_name,
                payload,
            } => {
                let cancelled_early = {
                    let mut early = lock(&self.inner.early_cancels);
                    let pos = early.iter().position(|id| id == job_id);
                    pos.and_then(|p| early.remove(p)).is_some()
                };
                if cancelled_early {
                    self.respond(&source, job_id, JobStatus::Cancelled, Value::Null)
                        .await;
                    self.hook(Hook::JobCancelled {
                        job_id: job_id.clone(),
                        reason: "cancelled before the request arrived".to_owned(),
                    })
                    .await;
                    return None;
                }
                self.start_job(
                    spec,
                    job_id.clone(),
                    job_name.clone(),
                    payload.clone(),
                    source,
                );
            }
            MessageBody::JobCancel { job_id, reason } => {
                if let Some(inflight) = self.inner.take_inflight(job_id) {
                    inflight.task.abort();
                    self.respond(
                        &inflight.requester,
                        job_id,
                        JobStatus::Cancelled,
                        Value::Null,
                    )
                    .await;
                    self.hook(Hook::JobCancelled {
                        job_id: job_id.clone(),
                        reason: reason.clone(),
                    })
                    .await;
                } else {
                    let mut early = lock(&self.inner.early_cancels);
                    if early.len() >= EARLY_CANCELS {
                        early.pop_front();
                    }
                    early.push_back(job_id.clone());
                }
            }
            MessageBody::JobUpdateRequest { job_id } => {
                self.hook(Hook::JobUpdateRequested {
                    job_id: job_id.clone(),
                    requester: source,
                })
                .await;
            }
            MessageBody::JobResponse {
                job_id,
                status,
                response,
                ..
            } => {
                let group = lock(&self.inner.groups).get(job_id).cloned();
                if let Some(group) = group {
                    let (routed, to_cancel) =
                        group.push_response(&source, *status, response.clone());
                    self.hook(Hook::JobResponse {
                        worker: source.clone(),
                        job_id: job_id.clone(),
                        status: *status,
                        response: response.clone(),
                    })
                    .await;
                    self.after_routed(job_id, routed, &source, *status, response, to_cancel)
                        .await;
                }
            }
            MessageBody::JobEvent {
                job_id, kind, data, ..
            } => {
                let group = lock(&self.inner.groups).get(job_id).cloned();
                if let Some(group) = group {
                    let routed = group.push_event(&source, *kind, data.clone());
                    let hook = match kind {
                        JobEventKind::Update => Hook::JobUpdate {
                            worker: source.clone(),
                            job_id: job_id.clone(),
                            data: data.clone().unwrap_or(Value::Null),
                        },
                        _ => Hook::JobStream {
                            worker: source.clone(),
                            job_id: job_id.clone(),
                            event: JobEvent {
                                kind: *kind,
                                data: data.clone(),
                            },
                        },
                    };
                    self.hook(hook).await;
                    self.after_routed(
                        job_id,
                        routed,
                        &source,
                        JobStatus::Completed,
                        &Value::Null,
                        Vec::new(),
                    )
                    .await;
                }
            }
            MessageBody::Custom { .. } => self.hook(Hook::Message(message.clone())).await,
            _ => {}
        }
        None
    }

    async fn after_routed(
        &self,
        job_id: &str,
        routed: Routed,
        worker: &str,
        status: JobStatus,
        response: &Value,
        to_cancel: Vec<String>,
    ) {
        match routed {
            Routed::Nothing => {}
            Routed::Completed(r) => {
                lock(&self.inner.groups).remove(job_id);
                self.hook(Hook::JobCompleted(r)).await;
            }
            Routed::Errored => {
                lock(&self.inner.groups).remove(job_id);
                let reason = format!("worker '{worker}' errored");
                for w in to_cancel {
                    let body = MessageBody::JobCancel {
                        job_id: job_id.to_owned(),
                        reason: reason.clone(),
                    };
                    if let Err(e) = self.send(Some(&w), body).await {
                        tracing::warn!(worker = %w, error = %e, "could not send a job cancel");
                    }
                }
                self.hook(Hook::JobError {
                    worker: worker.to_owned(),
                    job_id: job_id.to_owned(),
                    status,
                    response: response.clone(),
                })
                .await;
            }
        }
    }

    async fn respond(&self, requester: &str, job_id: &str, status: JobStatus, response: Value) {
        let body = MessageBody::JobResponse {
            job_id: job_id.to_owned(),
            status,
            response,
            urgent: false,
        };
        if let Err(e) = self.send(Some(requester), body).await {
            tracing::warn!(%job_id, error = %e, "could not send a job response");
        }
    }

    fn start_job(
        &self,
        spec: &RouterSpec,
        job_id: String,
        name: Option<String>,
        payload: Option<Value>,
        requester: String,
    ) {
        let job = Job {
            id: job_id.clone(),
            name: name.clone(),
            payload,
            requester: requester.clone(),
            ctx: self.clone(),
        };
        let handler = name.as_deref().and_then(|n| spec.handlers.get(n)).cloned();
        let seq_lock = match &handler {
            Some((_, true)) => name
                .as_deref()
                .and_then(|n| self.inner.seq_locks.get(n))
                .cloned(),
            _ => None,
        };
        let worker = spec.worker.clone();
        let ctx = self.clone();
        let mut inflight = lock(&self.inner.inflight);
        if inflight.contains_key(&job_id) {
            tracing::warn!(%job_id, "duplicate job request ignored");
            return;
        }
        let id = job_id.clone();
        let task = tokio::spawn(async move {
            let _guard = match seq_lock {
                Some(l) => Some(l.lock_owned().await),
                None => None,
            };
            let fut = async {
                match handler {
                    Some((h, _)) => h(job).await,
                    None => worker.on_job_request(&ctx, job).await,
                }
            };
            let result = AssertUnwindSafe(fut)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!(job_id = %id, "job handler panicked");
                    Err(JobFailure::Error("job handler panicked".to_owned()))
                });
            if let Some(entry) = ctx.inner.take_inflight(&id) {
                let (status, response) = match result {
                    Ok(v) => (JobStatus::Completed, v),
                    Err(JobFailure::Failed(v)) => (JobStatus::Failed, v),
                    Err(JobFailure::Error(e)) => {
                        (JobStatus::Error, serde_json::json!({ "error": e }))
                    }
                };
                ctx.respond(&entry.requester, &id, status, response).await;
            }
        });
        inflight.insert(
            job_id,
            Inflight {
                requester,
                task: task.abort_handle(),
            },
        );
    }

    /// Fails every group this worker requested that still waits for one of `lost` (workers of the dead runner
    /// `runner`); the other workers of such a group get a cancel.
    pub(crate) async fn fail_groups_waiting_for(&self, lost: &HashSet<String>, runner: &str) {
        let hit: Vec<(String, String)> = lock(&self.inner.groups)
            .iter()
            .filter_map(|(id, g)| {
                let st = g.lock();
                g.worker_names
                    .iter()
                    .find(|w| lost.contains(*w) && !st.terminated.contains(*w))
                    .map(|w| (id.clone(), w.clone()))
            })
            .collect();
        for (job_id, worker) in hit {
            let error = JobError::WorkerLost {
                worker: worker.clone(),
                runner: runner.to_owned(),
            };
            self.fail_group(&job_id, error, &format!("worker '{worker}' lost"))
                .await;
        }
    }

    /// Stop path: answers in-flight jobs with `cancelled` and cancels the groups this worker started.
    pub(crate) async fn cancel_all_jobs(&self, reason: &str) {
        let inflight: Vec<(String, Inflight)> = lock(&self.inner.inflight).drain().collect();
        for (job_id, entry) in inflight {
            entry.task.abort();
            self.respond(&entry.requester, &job_id, JobStatus::Cancelled, Value::Null)
                .await;
        }
        let groups: Vec<String> = lock(&self.inner.groups).keys().cloned().collect();
        for job_id in groups {
            self.fail_group(
                &job_id,
                JobError::Cancelled {
                    reason: reason.to_owned(),
                },
                reason,
            )
            .await;
        }
    }
}

/// What the router needs besides the context.
pub(crate) struct RouterSpec {
    pub(crate) worker: Arc<dyn Worker>,
    pub(crate) handlers: HashMap<String, (ErasedHandler, bool)>,
}

/// Runs the hooks one at a time; a panicking hook is logged and the next one still runs.
pub(crate) async fn run_hooks(
    worker: Arc<dyn Worker>,
    ctx: WorkerContext,
    mut rx: mpsc::Receiver<Hook>,
) {
    while let Some(hook) = rx.recv().await {
        if matches!(hook, Hook::Stop) {
            break;
        }
        let w = worker.as_ref();
        let c = &ctx;
        let fut = async move {
            match hook {
                Hook::Activated(args) => w.on_activated(c, args).await,
                Hook::Deactivated => w.on_deactivated(c).await,
                Hook::WorkerReady(d) => w.on_worker_ready(c, d).await,
                Hook::WorkerFailed(d) => w.on_worker_failed(c, d).await,
                Hook::JobResponse {
                    worker,
                    job_id,
                    status,
                    response,
                } => {
                    w.on_job_response(c, &worker, &job_id, status, &response)
                        .await
                }
                Hook::JobUpdate {
                    worker,
                    job_id,
                    data,
                } => w.on_job_update(c, &worker, &job_id, &data).await,
                Hook::JobStream {
                    worker,
                    job_id,
                    event,
                } => w.on_job_stream(c, &worker, &job_id, &event).await,
                Hook::JobCompleted(r) => w.on_job_completed(c, &r).await,
                Hook::JobError {
                    worker,
                    job_id,
                    status,
                    response,
                } => w.on_job_error(c, &worker, &job_id, status, &response).await,
                Hook::JobCancelled { job_id, reason } => {
                    w.on_job_cancelled(c, &job_id, &reason).await
                }
                Hook::JobUpdateRequested { job_id, requester } => {
                    w.on_job_update_requested(c, &job_id, &requester).await
                }
                Hook::Message(m) => w.on_bus_message(c, &m).await,
                Hook::Stop => {}
            }
        };
        if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
            tracing::error!(worker = %ctx.name(), "a worker hook panicked; continuing");
        }
    }
}
