//! The numbered behaviours of `pipecat-workers-and-jobs.md` §7 on the in-process bus
//! (the suite itself is `tests/suite/behaviours.rs`; `tests/behaviours_redis.rs` runs it over Redis).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agents_core::ChatRole;
use agents_testkit::fakes::llm::{FakeLlm, FakeResponse};
use agents_workers::*;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

async fn new_bus() -> Option<Arc<dyn Bus>> {
    Some(Arc::new(LocalBus::new()))
}

include!("suite/behaviours.rs");
