//! Plain data types of the worker framework: statuses, parameters, events, registry data.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use agents_core::ChatRole;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::WorkersError;

/// Terminal status of a job, serialized as `"completed"`, `"cancelled"`, `"failed"` or `"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// The worker finished the job successfully.
    Completed,
    /// The job was cancelled (by the requester, a timeout, a shutdown or `cancel_on_error`).
    Cancelled,
    /// The worker failed for a logical or business reason.
    Failed,
    /// The worker hit an unexpected runtime error.
    Error,
}

impl JobStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Error => "error",
        }
    }

    /// True for [`Failed`](Self::Failed) and [`Error`](Self::Error), the statuses `cancel_on_error` reacts to.
    pub fn is_error(self) -> bool {
        matches!(self, Self::Failed | Self::Error)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for JobStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for JobStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Parameters of a single-worker job.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobParams {
    /// Routes the request to the worker's job handler with that name; `None` goes to `on_job_request`.
    pub name: Option<String>,
    /// Structured description of the work.
    pub payload: Option<Value>,
    /// Covers both the wait for the worker to become ready and the job itself. `None` waits forever.
    pub timeout: Option<Duration>,
    /// Human-readable description.
    pub label: Option<String>,
    /// Whether an external requester may cancel (internal cancellation always proceeds). Default `true`.
    pub cancellable: bool,
}

impl Default for JobParams {
    fn default() -> Self {
        Self {
            name: None,
            payload: None,
            timeout: None,
            label: None,
            cancellable: true,
        }
    }
}

impl JobParams {
    /// Default parameters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the handler name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the JSON payload.
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }
    /// Sets a typed payload, serialized to JSON.
    pub fn with_typed_payload<T: Serialize>(self, payload: &T) -> Result<Self, WorkersError> {
        Ok(self.with_payload(serde_json::to_value(payload)?))
    }
    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Sets the label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    /// Sets whether external requesters may cancel.
    pub fn with_cancellable(mut self, cancellable: bool) -> Self {
        self.cancellable = cancellable;
        self
    }
}

/// Parameters of a job group: [`JobParams`] plus `cancel_on_error`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobGroupParams {
    /// Handler name, payload, timeout, label and cancellable flag shared by every worker of the group.
    pub job: JobParams,
    /// Whether an `error`/`failed` response from one worker cancels the rest of the group. Default `true`.
    pub cancel_on_error: bool,
}

impl Default for JobGroupParams {
    fn default() -> Self {
        Self {
            job: JobParams::default(),
            cancel_on_error: true,
        }
    }
}

impl From<JobParams> for JobGroupParams {
    fn from(job: JobParams) -> Self {
        Self {
            job,
            cancel_on_error: true,
        }
    }
}

impl JobGroupParams {
    /// Default parameters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the handler name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.job = self.job.with_name(name);
        self
    }
    /// Sets the JSON payload.
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.job = self.job.with_payload(payload);
        self
    }
    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.job = self.job.with_timeout(timeout);
        self
    }
    /// Sets the label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.job = self.job.with_label(label);
        self
    }
    /// Sets whether external requesters may cancel.
    pub fn with_cancellable(mut self, cancellable: bool) -> Self {
        self.job = self.job.with_cancellable(cancellable);
        self
    }
    /// Sets `cancel_on_error`.
    pub fn with_cancel_on_error(mut self, cancel_on_error: bool) -> Self {
        self.cancel_on_error = cancel_on_error;
        self
    }
}

/// Raw activation arguments as they travel on the bus (a JSON object). Decode with
/// [`decode`](Self::decode) into [`WorkerActivationArgs`], [`LlmWorkerActivationArgs`] or your own type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActivationArgs(pub Map<String, Value>);

impl ActivationArgs {
    /// Decodes the arguments into a typed struct (unknown keys are ignored by the types of this crate).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, WorkersError> {
        Ok(serde_json::from_value(Value::Object(self.0.clone()))?)
    }
    /// Encodes typed arguments. Fails when `args` does not serialize to a JSON object.
    pub fn encode<T: Serialize>(args: &T) -> Result<Self, WorkersError> {
        match serde_json::to_value(args)? {
            Value::Object(map) => Ok(Self(map)),
            Value::Null => Ok(Self::default()),
            other => Err(WorkersError::InvalidArgs(format!(
                "activation args must be a JSON object, got {}",
                json_kind(&other)
            ))),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Base arguments handed to a worker when it is activated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerActivationArgs {
    /// Optional structured data for the activated worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl WorkerActivationArgs {
    /// Args with metadata.
    pub fn with_metadata(metadata: Value) -> Self {
        Self {
            metadata: Some(metadata),
        }
    }
    /// Builds the args from a JSON value, ignoring unknown keys.
    pub fn from_json(value: &Value) -> Result<Self, WorkersError> {
        Ok(serde_json::from_value(value.clone())?)
    }
    /// The JSON object, omitting empty fields.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Object(Map::new()))
    }
}

/// One message injected into an LLM worker's context on activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationMessage {
    /// Who wrote it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
}

impl ActivationMessage {
    /// A message.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Activation arguments of an [`LlmWorker`](crate::LlmWorker).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LlmWorkerActivationArgs {
    /// Optional structured data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Messages appended to the target's context on activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ActivationMessage>>,
    /// Whether the LLM runs after the messages are appended; unset means `true` when messages are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_llm: Option<bool>,
}

impl LlmWorkerActivationArgs {
    /// Args that append `messages` (and, by default, run the LLM).
    pub fn with_messages(messages: Vec<ActivationMessage>) -> Self {
        Self {
            metadata: None,
            messages: Some(messages),
            run_llm: None,
        }
    }
    /// Sets `run_llm`.
    pub fn with_run_llm(mut self, run_llm: bool) -> Self {
        self.run_llm = Some(run_llm);
        self
    }
    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
    /// Whether the LLM should run: `run_llm` when set, else `true` iff messages were given.
    pub fn should_run_llm(&self) -> bool {
        self.run_llm.unwrap_or(self.messages.is_some())
    }
    /// Builds the args from a JSON value, ignoring unknown keys.
    pub fn from_json(value: &Value) -> Result<Self, WorkersError> {
        Ok(serde_json::from_value(value.clone())?)
    }
    /// The JSON object, omitting empty fields.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Object(Map::new()))
    }
}

/// Kind of an intermediate job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// Progress update.
    Update,
    /// The worker started streaming.
    StreamStart,
    /// One streamed chunk.
    StreamData,
    /// The worker finished streaming (terminal: counts as the response).
    StreamEnd,
}

impl JobEventKind {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::StreamStart => "stream_start",
            Self::StreamData => "stream_data",
            Self::StreamEnd => "stream_end",
        }
    }
}

/// An intermediate event of a single-worker job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: JobEventKind,
    /// Optional payload.
    pub data: Option<Value>,
}

/// An intermediate event of a job group, with the sender's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobGroupEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: JobEventKind,
    /// The worker that sent the event.
    pub worker_name: String,
    /// Optional payload.
    pub data: Option<Value>,
}

/// The collected result of a finished group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobGroupResponse {
    /// The shared job id.
    pub job_id: String,
    /// Each worker's response, by worker name.
    pub responses: BTreeMap<String, Value>,
}

/// Describes a registered worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerReadyData {
    /// The worker's name.
    pub worker_name: String,
    /// The runner that manages it.
    pub runner: String,
}

/// Describes a worker failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerErrorData {
    /// The worker that failed.
    pub worker_name: String,
    /// Description of the error.
    pub error: String,
}

/// One worker in a registry snapshot broadcast between runners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerRegistryEntry {
    /// Worker name.
    pub name: String,
    /// Parent worker's name; `None` for a root worker.
    #[serde(default)]
    pub parent: Option<String>,
    /// Whether the worker is active.
    #[serde(default)]
    pub active: bool,
    /// Whether the worker exchanges frames over the bus (always `false` here: bridging is not implemented).
    #[serde(default)]
    pub bridged: bool,
    /// Unix time (seconds) at which the worker became ready.
    #[serde(default)]
    pub started_at: Option<f64>,
}

impl WorkerRegistryEntry {
    /// An entry with the defaults: no parent, inactive, not bridged, no start time.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            parent: None,
            active: false,
            bridged: false,
            started_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_status_strings() {
        for (s, v) in [
            (JobStatus::Completed, "completed"),
            (JobStatus::Cancelled, "cancelled"),
            (JobStatus::Failed, "failed"),
            (JobStatus::Error, "error"),
        ] {
            assert_eq!(s, v);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(v));
            assert_eq!(serde_json::from_value::<JobStatus>(json!(v)).unwrap(), s);
        }
        assert!(serde_json::from_value::<JobStatus>(json!("done")).is_err());
    }

    #[test]
    fn params_defaults() {
        let p = JobParams::default();
        assert_eq!(
            (p.name, p.payload, p.timeout, p.label, p.cancellable),
            (None, None, None, None, true)
        );
        let g = JobGroupParams::default();
        assert!(g.cancel_on_error);
        assert!(g.job.cancellable);
        assert_eq!(g.job.timeout, None);
    }

    #[test]
    fn activation_args_ignore_unknown_and_omit_empty() {
        let m = json!({"k": 1});
        let a = WorkerActivationArgs::from_json(&json!({"metadata": m, "unknown": 1})).unwrap();
        assert_eq!(a.metadata, Some(m));
        assert_eq!(WorkerActivationArgs::default().to_json(), json!({}));
        assert!(WorkerActivationArgs::from_json(&json!({"metadata": 1, "x": [1]})).is_ok());
        assert!(WorkerActivationArgs::from_json(&json!("nope")).is_err());
    }

    #[test]
    fn llm_args_run_llm_default() {
        let msgs = vec![ActivationMessage::new(ChatRole::Developer, "hi")];
        assert!(LlmWorkerActivationArgs::with_messages(msgs.clone()).should_run_llm());
        assert!(
            !LlmWorkerActivationArgs::with_messages(msgs.clone())
                .with_run_llm(false)
                .should_run_llm()
        );
        assert!(!LlmWorkerActivationArgs::default().should_run_llm());
        let j = LlmWorkerActivationArgs::with_messages(msgs).to_json();
        assert_eq!(
            j,
            json!({"messages": [{"role": "developer", "content": "hi"}]})
        );
        let back = ActivationArgs::encode(&LlmWorkerActivationArgs::default()).unwrap();
        assert!(back.0.is_empty());
        assert!(ActivationArgs::encode(&3).is_err());
    }

    #[test]
    fn registry_entry_defaults() {
        let e: WorkerRegistryEntry = serde_json::from_value(json!({"name": "a"})).unwrap();
        assert_eq!(e, WorkerRegistryEntry::new("a"));
        assert_eq!(
            (e.parent, e.active, e.bridged, e.started_at),
            (None, false, false, None)
        );
    }

    #[test]
    fn event_kinds_serialize() {
        let e = JobGroupEvent {
            kind: JobEventKind::StreamData,
            worker_name: "w".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "stream_data", "worker_name": "w", "data": null})
        );
    }
}
