//! Bus messages: the catalogue, their priority lanes and which ones stay in the process.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{ActivationArgs, JobEventKind, JobStatus, WorkerRegistryEntry};

/// Delivery lane of a message. `System` messages are delivered before queued `Data` messages; each lane is FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Control messages: cancels, registry, errors, urgent job updates and responses.
    System,
    /// Everything else, in order.
    Data,
}

/// A message on the bus. Addressing is by worker name: a `target` reaches only that subscriber, no target
/// reaches every subscriber except the sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusMessage {
    /// Sender name (a worker, or `@runner/<name>` for a runner).
    pub source: String,
    /// Receiver name; `None` broadcasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the message says.
    #[serde(flatten)]
    pub body: MessageBody,
    /// Delivered in this process only, never published to a network transport.
    #[serde(skip)]
    pub local_only: bool,
}

/// The message catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageBody {
    /// Cancel the target worker at once (system lane).
    Cancel {
        /// Why.
        reason: String,
    },
    /// End the target worker gracefully, after the data messages queued before this one.
    End {
        /// Why.
        reason: String,
    },
    /// A runner's registry snapshot (system lane).
    WorkerRegistry {
        /// The runner that sent it.
        runner: String,
        /// Its local workers.
        workers: Vec<WorkerRegistryEntry>,
    },
    /// A worker became ready.
    WorkerReady {
        /// The runner that manages it.
        runner: String,
        /// Its parent, if it is a child.
        parent: Option<String>,
    },
    /// A worker failed (system lane); `source` is the failed worker.
    WorkerError {
        /// Its parent, if any.
        parent: Option<String>,
        /// Description.
        error: String,
    },
    /// Activate the target.
    Activate {
        /// Activation arguments.
        args: ActivationArgs,
    },
    /// Deactivate the target.
    Deactivate,
    /// A job request; one per worker of a group, all with the same `job_id`.
    JobRequest {
        /// Shared id of the group.
        job_id: String,
        /// Handler name.
        job_name: Option<String>,
        /// Payload.
        payload: Option<Value>,
    },
    /// A worker's response (terminal). `urgent` sends it on the system lane.
    JobResponse {
        /// The job.
        job_id: String,
        /// Terminal status.
        status: JobStatus,
        /// Response payload.
        response: Value,
        /// System lane.
        #[serde(default)]
        urgent: bool,
    },
    /// A progress update or a stream event (`kind`). `urgent` sends it on the system lane.
    JobEvent {
        /// The job.
        job_id: String,
        /// Update, stream start, data or end (terminal).
        kind: JobEventKind,
        /// Payload.
        data: Option<Value>,
        /// System lane.
        #[serde(default)]
        urgent: bool,
    },
    /// Ask the target for a progress update on a job it runs.
    JobUpdateRequest {
        /// The job.
        job_id: String,
    },
    /// Cancel a job on the target (system lane); the target answers `cancelled`.
    JobCancel {
        /// The job.
        job_id: String,
        /// Why.
        reason: String,
    },
    /// An application message, handed to `on_bus_message`.
    Custom {
        /// Application-defined name.
        name: String,
        /// Payload.
        data: Value,
    },
}

impl BusMessage {
    /// A message from `source` to `target` (or to everyone when `None`).
    pub fn new(source: impl Into<String>, target: Option<String>, body: MessageBody) -> Self {
        Self {
            source: source.into(),
            target,
            body,
            local_only: false,
        }
    }

    /// Marks the message as process-local.
    pub fn local(mut self) -> Self {
        self.local_only = true;
        self
    }

    /// The lane this message travels on.
    pub fn priority(&self) -> Priority {
        match &self.body {
            MessageBody::Cancel { .. }
            | MessageBody::WorkerRegistry { .. }
            | MessageBody::WorkerError { .. }
            | MessageBody::JobCancel { .. } => Priority::System,
            MessageBody::JobResponse { urgent, .. } | MessageBody::JobEvent { urgent, .. }
                if *urgent =>
            {
                Priority::System
            }
            _ => Priority::Data,
        }
    }

    /// Whether `subscriber` should receive this message.
    pub fn is_for(&self, subscriber: &str) -> bool {
        match &self.target {
            Some(target) => target == subscriber,
            None => self.source != subscriber,
        }
    }

    /// JSON encoding used by network transports.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Decodes a message received from a network transport.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_priority() {
        let m = BusMessage::new(
            "a",
            Some("b".into()),
            MessageBody::JobResponse {
                job_id: "j".into(),
                status: JobStatus::Failed,
                response: json!({"x": 1}),
                urgent: true,
            },
        );
        let text = m.to_json().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "job_response");
        assert_eq!(v["status"], "failed");
        assert_eq!(BusMessage::from_json(&text).unwrap(), m);
        assert_eq!(m.priority(), Priority::System);
        let d = BusMessage::new("a", None, MessageBody::Deactivate);
        assert_eq!(d.priority(), Priority::Data);
        assert!(d.is_for("b") && !d.is_for("a"));
        assert!(m.is_for("b") && !m.is_for("c"));
    }

    #[test]
    fn local_flag_is_not_serialized() {
        let m = BusMessage::new(
            "a",
            None,
            MessageBody::Custom {
                name: "n".into(),
                data: json!(1),
            },
        )
        .local();
        let back = BusMessage::from_json(&m.to_json().unwrap()).unwrap();
        assert!(!back.local_only);
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(BusMessage::from_json("{").is_err());
        assert!(BusMessage::from_json(r#"{"source":"a","type":"nope"}"#).is_err());
    }
}
