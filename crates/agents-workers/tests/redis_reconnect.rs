//! Dropped Redis connections: the bus resubscribes and republishes, and jobs work again.
//!
//! Its own test binary on purpose: it kills every pub/sub and normal client of the server (`CLIENT KILL TYPE …`),
//! which would disturb other Redis tests running in parallel in the same binary. Needs `AGENTS_TEST_REDIS_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agents_workers::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn bus_survives_dropped_connections() {
    let Ok(url) = std::env::var("AGENTS_TEST_REDIS_URL") else {
        eprintln!("SKIP bus_survives_dropped_connections: AGENTS_TEST_REDIS_URL is not set");
        return;
    };
    let ch = format!("agents-test:{}", uuid::Uuid::new_v4());
    let log = Log::default();
    let bus_a = RedisBus::connect_with(&url, &ch, BusConfig::default())
        .await
        .unwrap();
    let bus_b = RedisBus::connect_with(&url, &ch, BusConfig::default())
        .await
        .unwrap();
    let ra = WorkerRunner::new("A", Arc::new(bus_a))
        .unwrap()
        .with_sigint_handling(false);
    let rb = WorkerRunner::new("B", Arc::new(bus_b))
        .unwrap()
        .with_sigint_handling(false);
    let req = ra.add_worker(Probe::spec("req", &log)).await.unwrap();
    rb.add_worker(Probe::spec("w", &log)).await.unwrap();
    let params = || {
        JobParams::new()
            .with_name("echo")
            .with_payload(json!("hi"))
            .with_timeout(Duration::from_millis(500))
    };
    let r = req
        .context()
        .job("w", params())
        .await
        .unwrap()
        .response()
        .await;
    assert_eq!(r.unwrap(), json!("hi"));

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    for kind in ["pubsub", "normal"] {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg(kind)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed >= 1, "killed {kind} clients: {killed}");
    }

    // Messages sent while the connections are down are lost (pub/sub is at-most-once); jobs time out, then work.
    let recovered = within("recovery", async {
        loop {
            if let Ok(job) = req.context().job("w", params()).await
                && job.response().await == Ok(json!("hi"))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(recovered);
}
