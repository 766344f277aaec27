//! The behaviour suite of `tests/suite/behaviours.rs` over a real Redis server: every test gets its own channel,
//! so every message (job requests, responses, cancels, registry) travels through Redis pub/sub.
//!
//! Needs `AGENTS_TEST_REDIS_URL`; without it every test prints SKIP and returns.
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
    let Ok(url) = std::env::var("AGENTS_TEST_REDIS_URL") else {
        eprintln!("SKIP: AGENTS_TEST_REDIS_URL is not set (CI starts redis-server and sets it)");
        return None;
    };
    let channel = format!("agents-test:{}", uuid::Uuid::new_v4());
    Some(Arc::new(
        RedisBus::connect_with(&url, &channel, BusConfig::default())
            .await
            .unwrap(),
    ))
}

include!("suite/behaviours.rs");
