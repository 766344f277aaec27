//! Error types.

use serde_json::Value;

use crate::types::JobStatus;

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A subscriber with that name already exists on this bus instance.
    #[error("a subscriber named {0:?} already exists on this bus")]
    DuplicateSubscriber(String),
    /// The bus was closed.
    #[error("the bus is closed")]
    Closed,
    /// A message could not be encoded or decoded.
    #[error("bus message serialization failed")]
    Serialization(#[from] serde_json::Error),
    /// The network transport failed.
    #[error("bus transport error: {0}")]
    Transport(String),
}

/// Why a job or job group failed. A single job uses the same type (alias [`JobGroupError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Not every target worker registered within the timeout; no request was sent.
    #[error("workers not ready within timeout: {missing:?}")]
    NotReady {
        /// The names that never registered.
        missing: Vec<String>,
    },
    /// The job timed out; every worker still running it was sent a cancel.
    #[error("job timed out")]
    Timeout,
    /// A worker answered `error` or `failed` and `cancel_on_error` cancelled the group.
    #[error("worker '{worker}' errored ({status})")]
    WorkerErrored {
        /// The worker that answered.
        worker: String,
        /// `failed` or `error`.
        status: JobStatus,
        /// Its response.
        response: Value,
    },
    /// The group was cancelled for another reason (requester stopping, explicit cancel).
    #[error("job cancelled: {reason}")]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// A worker of the group was on a runner that stopped sending heartbeats (its process died or lost the bus):
    /// the group fails at once instead of waiting for its timeout.
    #[error("worker '{worker}' lost: runner '{runner}' stopped sending heartbeats")]
    WorkerLost {
        /// The lost worker.
        worker: String,
        /// Its runner.
        runner: String,
    },
    /// The request could not be sent.
    #[error("bus error: {0}")]
    Bus(String),
}

/// Error of a job group (same variants as [`JobError`]).
pub type JobGroupError = JobError;

impl From<BusError> for JobError {
    fn from(e: BusError) -> Self {
        Self::Bus(e.to_string())
    }
}

/// General errors of the crate (argument decoding, runner set-up).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkersError {
    /// JSON (de)serialization of payloads or arguments failed.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Arguments had the wrong shape.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// Bus failure.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A worker with that name already runs on this runner.
    #[error("a worker named {0:?} is already registered on this runner")]
    DuplicateWorker(String),
    /// The runner was created or used outside a Tokio runtime.
    #[error("no Tokio runtime: create runners inside a runtime")]
    NoRuntime,
    /// The runner has stopped.
    #[error("the runner has stopped")]
    RunnerStopped,
}

/// Error returned by a worker's `run` body; the worker is then reported as failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkerError(pub String);

impl WorkerError {
    /// An error with a description.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
