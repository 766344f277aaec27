//! Runner heartbeats on the in-process bus: a remote runner that goes silent is removed from the registry and the
//! job groups waiting for its workers fail at once with `WorkerLost` (not after their timeout); a worker that
//! disappears from a runner's snapshot is unregistered remotely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agents_workers::*;
use common::*;
use futures::StreamExt;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[tokio::test]
async fn silent_runner_expires_and_its_jobs_fail_fast() {
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let a = runner_on("A", &bus).with_heartbeat(ms(50), ms(300));
    // B announces itself once (when its worker starts) and then stays silent, like a process that died.
    let b = runner_on("B", &bus).without_heartbeat();
    let log = Log::default();
    let req = a.add_worker(Probe::spec("req", &log)).await.unwrap();
    b.add_worker(Probe::spec("far", &log)).await.unwrap();
    within("handshake", async {
        while !a.registry().contains("far") {
            tokio::time::sleep(ms(2)).await;
        }
    })
    .await;
    let mut job = req
        .context()
        .job(
            "far",
            JobParams::new()
                .with_name("block")
                .with_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(
        within("started", job.next()).await.unwrap().data,
        Some(serde_json::json!("started"))
    );
    let err = within("expiry", job.response()).await.unwrap_err();
    assert_eq!(
        err,
        JobError::WorkerLost {
            worker: "far".into(),
            runner: "B".into()
        }
    );
    assert!(
        !a.registry().contains("far"),
        "the dead runner's workers are forgotten"
    );
    assert!(a.registry().remote_workers().is_empty());
}

#[tokio::test]
async fn live_runners_do_not_expire() {
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let a = runner_on("A", &bus).with_heartbeat(ms(20), ms(150));
    let b = runner_on("B", &bus).with_heartbeat(ms(20), ms(150));
    let log = Log::default();
    let req = a.add_worker(Probe::spec("req", &log)).await.unwrap();
    b.add_worker(Probe::spec("far", &log)).await.unwrap();
    tokio::time::sleep(ms(500)).await;
    assert!(a.registry().contains("far"), "heartbeats keep B registered");
    let job = req
        .context()
        .job(
            "far",
            JobParams::new()
                .with_name("echo")
                .with_payload(serde_json::json!(7))
                .with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(
        within("echo", job.response()).await.unwrap(),
        serde_json::json!(7)
    );
}

#[tokio::test]
async fn stopped_remote_worker_leaves_the_registry() {
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let a = runner_on("A", &bus).with_heartbeat(ms(20), ms(5_000));
    let b = runner_on("B", &bus).with_heartbeat(ms(20), ms(5_000));
    let log = Log::default();
    a.add_worker(Probe::spec("req", &log)).await.unwrap();
    let far = b.add_worker(Probe::spec("far", &log)).await.unwrap();
    b.add_worker(Probe::spec("stays", &log)).await.unwrap();
    within("handshake", async {
        while !(a.registry().contains("far") && a.registry().contains("stays")) {
            tokio::time::sleep(ms(2)).await;
        }
    })
    .await;
    far.cancel("done").await.unwrap();
    within("far unregistered", async {
        while a.registry().contains("far") {
            tokio::time::sleep(ms(2)).await;
        }
    })
    .await;
    assert!(a.registry().contains("stays"));
}
