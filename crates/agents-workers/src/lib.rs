#![doc = include_str!("../README.md")]

pub mod bus;
pub mod error;
pub mod job;
pub mod llm;
pub mod message;
pub mod proxy;
pub mod registry;
pub mod runner;
pub mod types;
pub mod voice;
pub mod worker;

pub use bus::{Bus, BusConfig, LocalBus, RedisBus, Subscription};
pub use error::{BusError, JobError, JobGroupError, WorkerError, WorkersError};
pub use job::{JobContext, JobGroupContext};
pub use llm::{
    ACTIVATE_WORKER_TOOL, CHAT_JOB, LlmWorker, LlmWorkerOutput, ToolOptions, WorkerToolContext,
};
pub use message::{BusMessage, MessageBody, Priority};
pub use proxy::{ProxyError, ProxyHandle, WebSocketProxyClient, WebSocketProxyServer};
pub use registry::{WatchHandler, WorkerRegistry};
pub use runner::{
    DEFAULT_HEARTBEAT_EXPIRY, DEFAULT_HEARTBEAT_INTERVAL, WorkerHandle, WorkerRunner,
};
pub use types::*;
pub use voice::{
    BRIDGE_MESSAGE, BridgeFrame, DEFAULT_IDLE_TIMEOUT, JobGroupTool, VoiceBridge, job_group_tool,
};
pub use worker::{
    Job, JobFailure, JobHandlers, JobResult, Worker, WorkerContext, WorkerSpec, to_response,
};
