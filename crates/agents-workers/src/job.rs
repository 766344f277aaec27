//! Requester side of jobs: group bookkeeping, [`JobContext`] and [`JobGroupContext`].

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{JobError, JobGroupError, WorkersError};
use crate::types::{JobEvent, JobEventKind, JobGroupEvent, JobGroupResponse, JobStatus};
use crate::worker::WorkerContext;

/// Events kept per group before the oldest is dropped (responses are stored apart and never dropped).
pub(crate) const EVENT_BUFFER: usize = 256;

#[derive(Default)]
pub(crate) struct GroupState {
    pub(crate) responses: BTreeMap<String, Value>,
    pub(crate) terminated: HashSet<String>,
    pub(crate) events: VecDeque<JobGroupEvent>,
    pub(crate) dropped_events: u64,
    pub(crate) outcome: Option<Result<(), JobError>>,
}

/// Bookkeeping of one job group on the requester side (Pipecat's `JobGroup`).
pub(crate) struct GroupShared {
    pub(crate) job_id: String,
    pub(crate) worker_names: Vec<String>,
    pub(crate) label: Option<String>,
    pub(crate) cancellable: bool,
    pub(crate) cancel_on_error: bool,
    pub(crate) state: Mutex<GroupState>,
    pub(crate) notify: Notify,
    pub(crate) timer: Mutex<Option<tokio::task::AbortHandle>>,
}

/// What routing one message into a group produced, for the hooks.
pub(crate) enum Routed {
    Nothing,
    Completed(JobGroupResponse),
    Errored,
}

impl GroupShared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_done(&self) -> bool {
        self.lock().outcome.is_some()
    }

    fn stop_timer(&self) {
        if let Some(t) = self.timer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    /// Marks the group failed; returns the workers that still run it (to be sent a cancel), or `None` if done.
    pub(crate) fn fail(&self, error: JobError) -> Option<Vec<String>> {
        let pending = {
            let mut st = self.lock();
            if st.outcome.is_some() {
                return None;
            }
            st.outcome = Some(Err(error));
            self.worker_names
                .iter()
                .filter(|w| !st.terminated.contains(*w))
                .cloned()
                .collect()
        };
        self.stop_timer();
        self.notify.notify_waiters();
        Some(pending)
    }

    pub(crate) fn push_event(
        &self,
        worker: &str,
        kind: JobEventKind,
        data: Option<Value>,
    ) -> Routed {
        let mut st = self.lock();
        if st.outcome.is_some() || st.terminated.contains(worker) {
            return Routed::Nothing;
        }
        if st.events.len() >= EVENT_BUFFER {
            st.events.pop_front();
            st.dropped_events += 1;
        }
        st.events.push_back(JobGroupEvent {
            kind,
            worker_name: worker.to_owned(),
            data: data.clone(),
        });
        let routed = if kind == JobEventKind::StreamEnd {
            // A stream end is terminal and counts as the response.
            st.responses
                .insert(worker.to_owned(), data.unwrap_or(Value::Null));
            st.terminated.insert(worker.to_owned());
            self.check_complete(&mut st)
        } else {
            Routed::Nothing
        };
        drop(st);
        if matches!(routed, Routed::Completed(_)) {
            self.stop_timer();
        }
        self.notify.notify_waiters();
        routed
    }

    /// Records a response. Returns what happened and, on `cancel_on_error`, the workers to cancel.
    pub(crate) fn push_response(
        &self,
        worker: &str,
        status: JobStatus,
        response: Value,
    ) -> (Routed, Vec<String>) {
        let mut st = self.lock();
        if st.outcome.is_some()
            || st.terminated.contains(worker)
            || !self.worker_names.iter().any(|w| w == worker)
        {
            return (Routed::Nothing, Vec::new());
        }
        st.responses.insert(worker.to_owned(), response.clone());
        st.terminated.insert(worker.to_owned());
        if (status.is_error() || status == JobStatus::Cancelled) && self.cancel_on_error {
            let error = if status == JobStatus::Cancelled {
                JobError::Cancelled {
                    reason: format!("worker '{worker}' cancelled the job"),
                }
            } else {
                JobError::WorkerErrored {
                    worker: worker.to_owned(),
                    status,
                    response,
                }
            };
            st.outcome = Some(Err(error));
            let pending = self
                .worker_names
                .iter()
                .filter(|w| !st.terminated.contains(*w))
                .cloned()
                .collect();
            drop(st);
            self.stop_timer();
            self.notify.notify_waiters();
            return (Routed::Errored, pending);
        }
        let routed = self.check_complete(&mut st);
        drop(st);
        if matches!(routed, Routed::Completed(_)) {
            self.stop_timer();
        }
        self.notify.notify_waiters();
        (routed, Vec::new())
    }

    fn check_complete(&self, st: &mut GroupState) -> Routed {
        if self.worker_names.iter().all(|w| st.terminated.contains(w)) {
            st.outcome = Some(Ok(()));
            Routed::Completed(JobGroupResponse {
                job_id: self.job_id.clone(),
                responses: st.responses.clone(),
            })
        } else {
            Routed::Nothing
        }
    }

    async fn next_event(&self) -> Option<JobGroupEvent> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some(e) = st.events.pop_front() {
                    return Some(e);
                }
                if st.outcome.is_some() {
                    return None;
                }
            }
            notified.await;
        }
    }

    async fn wait(&self) -> Result<BTreeMap<String, Value>, JobError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                match &st.outcome {
                    Some(Ok(())) => return Ok(st.responses.clone()),
                    Some(Err(e)) => return Err(e.clone()),
                    None => {}
                }
            }
            notified.await;
        }
    }
}

/// A running job group: a [`Stream`] of [`JobGroupEvent`]s (ending when the group completes or fails), then
/// [`responses`](Self::responses). Dropping it before the group finished cancels the group (reason
/// `"context exited with error"`), which is the Rust form of Pipecat's shielded cleanup.
pub struct JobGroupContext {
    shared: Arc<GroupShared>,
    owner: WorkerContext,
    events: BoxStream<'static, JobGroupEvent>,
    finished: bool,
}

impl std::fmt::Debug for JobGroupContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobGroupContext")
            .field("job_id", &self.shared.job_id)
            .finish_non_exhaustive()
    }
}

impl JobGroupContext {
    pub(crate) fn new(shared: Arc<GroupShared>, owner: WorkerContext) -> Self {
        let s = shared.clone();
        let events = Box::pin(futures::stream::unfold(s, |s| async move {
            let e = s.next_event().await;
            e.map(|e| (e, s))
        }));
        Self {
            shared,
            owner,
            events,
            finished: false,
        }
    }

    /// The id shared by every worker of the group.
    pub fn job_id(&self) -> &str {
        &self.shared.job_id
    }

    /// The workers of the group, in dispatch order.
    pub fn worker_names(&self) -> &[String] {
        &self.shared.worker_names
    }

    /// The label given in the params.
    pub fn label(&self) -> Option<&str> {
        self.shared.label.as_deref()
    }

    /// Whether the group completed or failed.
    pub fn is_done(&self) -> bool {
        self.shared.is_done()
    }

    /// Events dropped because nobody read them (the buffer keeps the newest 256).
    pub fn dropped_events(&self) -> u64 {
        self.shared.lock().dropped_events
    }

    /// Waits for every response. Errors on timeout, on a worker error with `cancel_on_error`, or on cancel.
    pub async fn responses(mut self) -> Result<BTreeMap<String, Value>, JobGroupError> {
        let r = self.shared.wait().await;
        self.finished = true;
        r
    }

    /// External cancel request (e.g. from a UI): honours `cancellable`. Returns whether the group was cancelled.
    pub async fn request_cancel(&self) -> bool {
        self.owner
            .request_cancel_job_group(&self.shared.job_id)
            .await
    }

    /// Cancels the group now (internal cancel: ignores `cancellable`).
    pub async fn cancel(&self, reason: &str) {
        self.owner
            .cancel_job_group(&self.shared.job_id, reason)
            .await;
    }
}

impl Stream for JobGroupContext {
    type Item = JobGroupEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl Drop for JobGroupContext {
    fn drop(&mut self) {
        if self.finished || self.shared.is_done() {
            return;
        }
        let owner = self.owner.clone();
        let job_id = self.shared.job_id.clone();
        owner.cancel_job_group_detached(job_id, "context exited with error".to_owned());
    }
}

/// A running single-worker job: a [`Stream`] of [`JobEvent`]s, then [`response`](Self::response). Dropping it
/// before the job finished cancels the job.
#[derive(Debug)]
pub struct JobContext {
    group: JobGroupContext,
}

impl JobContext {
    pub(crate) fn new(group: JobGroupContext) -> Self {
        Self { group }
    }

    /// The job id.
    pub fn job_id(&self) -> &str {
        self.group.job_id()
    }

    /// The worker doing the job.
    pub fn worker_name(&self) -> &str {
        self.group
            .worker_names()
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Whether the job finished.
    pub fn is_done(&self) -> bool {
        self.group.is_done()
    }

    /// Waits for the worker's response (`Value::Null` if it sent none, e.g. a stream end without data).
    pub async fn response(self) -> Result<Value, JobError> {
        let worker = self.worker_name().to_owned();
        let mut responses = self.group.responses().await?;
        Ok(responses.remove(&worker).unwrap_or(Value::Null))
    }

    /// Waits for the response and decodes it.
    pub async fn response_as<T: DeserializeOwned>(
        self,
    ) -> Result<Result<T, WorkersError>, JobError> {
        let v = self.response().await?;
        Ok(serde_json::from_value(v).map_err(WorkersError::from))
    }

    /// External cancel request: honours `cancellable`.
    pub async fn request_cancel(&self) -> bool {
        self.group.request_cancel().await
    }

    /// Cancels the job now.
    pub async fn cancel(&self, reason: &str) {
        self.group.cancel(reason).await;
    }
}

impl Stream for JobContext {
    type Item = JobEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.group).poll_next(cx).map(|o| {
            o.map(|e| JobEvent {
                kind: e.kind,
                data: e.data,
            })
        })
    }
}
