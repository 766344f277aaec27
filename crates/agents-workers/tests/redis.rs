//! The behaviours over a real Redis server: two runners in one process, then two runners in two OS processes
//! (registry handshake, a job group spanning both, a hand-off across processes, a runner killed mid-job).
//!
//! Needs `AGENTS_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6399`); without it every test prints SKIP and returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agents_workers::*;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

const URL_VAR: &str = "AGENTS_TEST_REDIS_URL";
const ROLE_VAR: &str = "AGENTS_WORKERS_TEST_ROLE";
const CHANNEL_VAR: &str = "AGENTS_WORKERS_TEST_CHANNEL";

fn redis_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIP {test}: {URL_VAR} is not set (CI starts redis-server and sets it)");
            None
        }
    }
}

fn channel() -> String {
    format!("agents-test:{}", uuid::Uuid::new_v4())
}

async fn redis_runner(url: &str, channel: &str, name: &str) -> WorkerRunner {
    let bus = RedisBus::connect_with(url, channel, BusConfig::default())
        .await
        .unwrap();
    WorkerRunner::new(name, Arc::new(bus))
        .unwrap()
        .with_sigint_handling(false)
}

async fn until_known(runner: &WorkerRunner, names: &[&str]) {
    within("registry handshake", async {
        while !names.iter().all(|n| runner.registry().contains(n)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn p(name: &str) -> JobParams {
    JobParams::new()
        .with_name(name)
        .with_timeout(Duration::from_secs(5))
}

// 35 and connection errors.
#[tokio::test]
async fn default_channel_and_bad_url() {
    assert_eq!(bus::DEFAULT_REDIS_CHANNEL, "pipecat:bus");
    let err = RedisBus::connect("not-a-url").await.unwrap_err();
    assert!(matches!(err, BusError::Transport(_)), "{err:?}");
    let Some(url) = redis_url("default_channel_and_bad_url") else {
        return;
    };
    let bus = RedisBus::connect(&url).await.unwrap();
    assert_eq!(bus.channel(), "pipecat:bus");
}

// 32, 35, 10, 15, 19, 20 over Redis: two runners (two bus connections) in one process.
#[tokio::test]
async fn two_runners_over_redis_in_one_process() {
    let Some(url) = redis_url("two_runners_over_redis_in_one_process") else {
        return;
    };
    let ch = channel();
    let log = Log::default();
    let ra = redis_runner(&url, &ch, "A").await;
    let req = ra.add_worker(Probe::spec("req", &log)).await.unwrap();
    ra.add_worker(Probe::spec("a-worker", &log)).await.unwrap();
    let rb = redis_runner(&url, &ch, "B").await;
    rb.add_worker(Probe::spec("b-worker", &log)).await.unwrap();
    until_known(&ra, &["b-worker"]).await;
    until_known(&rb, &["a-worker", "req"]).await;
    assert_eq!(ra.registry().get("b-worker").unwrap().runner, "B");

    let ctx = req.context();
    let mut group = ctx
        .job_group(
            ["a-worker", "b-worker"],
            JobGroupParams::new()
                .with_name("stream")
                .with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let mut ends = 0;
    while let Some(e) = within("event", group.next()).await {
        if e.kind == JobEventKind::StreamEnd {
            ends += 1;
        }
    }
    assert_eq!(ends, 2);
    let r = group.responses().await.unwrap();
    assert_eq!(r["b-worker"], json!({"total": 3}));

    let job = ctx
        .job(
            "b-worker",
            JobParams::new()
                .with_name("block")
                .with_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert_eq!(
        within("timeout", job.response()).await,
        Err(JobError::Timeout)
    );
    log.wait_for("b-worker:cancelled:timeout").await;

    let group = ctx
        .job_group(
            ["a-worker", "b-worker"],
            JobGroupParams::new().with_name("fail"),
        )
        .await
        .unwrap();
    assert!(matches!(
        within("err", group.responses()).await,
        Err(JobError::WorkerErrored { .. })
    ));
}

// 31: local-only messages never reach Redis; 30: malformed messages on the channel are ignored.
#[tokio::test]
async fn local_only_messages_stay_in_process() {
    let Some(url) = redis_url("local_only_messages_stay_in_process") else {
        return;
    };
    let ch = channel();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut raw = client.get_async_pubsub().await.unwrap();
    raw.subscribe(&ch).await.unwrap();
    let mut raw = raw.into_on_message();

    let bus = RedisBus::connect_with(&url, &ch, BusConfig::default())
        .await
        .unwrap();
    let mut sub = bus.subscribe("listener").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PUBLISH")
        .arg(&ch)
        .arg("{not json")
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    let local = BusMessage::new(
        "me",
        None,
        MessageBody::Custom {
            name: "secret".into(),
            data: json!(1),
        },
    )
    .local();
    bus.send(local).await.unwrap();
    bus.send(BusMessage::new(
        "me",
        None,
        MessageBody::Custom {
            name: "public".into(),
            data: json!(2),
        },
    ))
    .await
    .unwrap();

    let mut names = Vec::new();
    for _ in 0..2 {
        let m = within("listener", sub.recv()).await.unwrap();
        if let MessageBody::Custom { name, .. } = &m.body {
            names.push(name.clone());
        }
    }
    assert_eq!(
        names,
        vec!["secret", "public"],
        "local delivery still happens, malformed JSON is skipped"
    );
    let first: String = within("raw", raw.next())
        .await
        .unwrap()
        .get_payload()
        .unwrap();
    assert_eq!(first, "{not json");
    let second: String = within("raw", raw.next())
        .await
        .unwrap()
        .get_payload()
        .unwrap();
    assert!(second.contains("\"public\""), "{second}");
    assert!(!second.contains("secret"));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), raw.next())
            .await
            .is_err(),
        "nothing else on Redis"
    );
}

// ---------- two OS processes ----------

/// Kills the child process when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn spawn_child(url: &str, channel: &str) -> Child {
    let exe = std::env::current_exe().unwrap();
    let child = tokio::process::Command::new(exe)
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(URL_VAR, url)
        .env(ROLE_VAR, "remote")
        .env(CHANNEL_VAR, channel)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Child(child)
}

/// The second process's support worker: on activation it runs a job on the first process's `echo` worker and
/// broadcasts the result, which proves the hand-off and the handshake in both directions.
struct RemoteSupport;

#[async_trait::async_trait]
impl Worker for RemoteSupport {
    async fn on_activated(&self, ctx: &WorkerContext, args: ActivationArgs) {
        let echoed = match ctx
            .job("local-echo", p("echo").with_payload(json!("ping")))
            .await
        {
            Ok(job) => job.response().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let data = json!({"args": args, "echoed": echoed});
        let _ = ctx.send_message(None, "support-activated", data).await;
    }
}

/// Entry point of the second process (selected by an environment variable); a no-op in a normal test run.
#[tokio::test]
async fn child_process_entry() {
    if std::env::var(ROLE_VAR).as_deref() != Ok("remote") {
        return;
    }
    let url = std::env::var(URL_VAR).unwrap();
    let ch = std::env::var(CHANNEL_VAR).unwrap();
    let log = Log::default();
    let runner = redis_runner(&url, &ch, "B").await;
    runner
        .add_worker(Probe::spec("remote-echo", &log))
        .await
        .unwrap();
    runner
        .add_worker(WorkerSpec::new("remote-support", RemoteSupport))
        .await
        .unwrap();
    // Never outlive the parent test for long.
    let _ = tokio::time::timeout(Duration::from_secs(60), runner.run(false)).await;
}

// 32 across processes: handshake, a job group spanning both processes, a hand-off with deactivate_self.
#[tokio::test]
async fn two_processes_handshake_group_and_handoff() {
    let Some(url) = redis_url("two_processes_handshake_group_and_handoff") else {
        return;
    };
    let ch = channel();
    let log = Log::default();
    let runner = redis_runner(&url, &ch, "A").await;
    let req = runner.add_worker(Probe::spec("req", &log)).await.unwrap();
    runner
        .add_worker(Probe::spec("local-echo", &log))
        .await
        .unwrap();
    let greeter = runner
        .add_worker(Probe::spec("greeter", &log).active())
        .await
        .unwrap();
    let _child = spawn_child(&url, &ch);
    until_known(&runner, &["remote-echo", "remote-support"]).await;
    assert_eq!(runner.registry().get("remote-echo").unwrap().runner, "B");

    let group = req
        .context()
        .job_group(
            ["local-echo", "remote-echo"],
            JobGroupParams::new()
                .with_name("echo")
                .with_payload(json!({"n": 1}))
                .with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let r = within("group", group.responses()).await.unwrap();
    assert_eq!(r.len(), 2);
    assert!(r.values().all(|v| *v == json!({"n": 1})));

    let args =
        ActivationArgs::encode(&WorkerActivationArgs::with_metadata(json!("billing"))).unwrap();
    greeter
        .context()
        .activate_worker("remote-support", args, true)
        .await
        .unwrap();
    assert!(!greeter.is_active());
    log.wait_for("req:msg:support-activated").await;
    log.wait_for("greeter:deactivated").await;
    assert!(
        log.has(r#"req:msgdata:support-activated:{"args":{"metadata":"billing"},"echoed":"ping"}"#),
        "the activated remote worker got the args and ran a job in this process: {:?}",
        log.all()
    );
    assert_eq!(log.count_prefix("local-echo:echo:"), 2);
}

// A runner killed mid-job: the requester fails by its timeout and never hangs.
#[tokio::test]
async fn runner_killed_mid_job_fails_by_timeout() {
    let Some(url) = redis_url("runner_killed_mid_job_fails_by_timeout") else {
        return;
    };
    let ch = channel();
    let log = Log::default();
    let runner = redis_runner(&url, &ch, "A").await;
    let req = runner.add_worker(Probe::spec("req", &log)).await.unwrap();
    runner
        .add_worker(Probe::spec("local-echo", &log))
        .await
        .unwrap();
    let mut child = spawn_child(&url, &ch);
    until_known(&runner, &["remote-echo"]).await;
    let mut job = req
        .context()
        .job(
            "remote-echo",
            JobParams::new()
                .with_name("block")
                .with_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let first = within("started", job.next()).await.unwrap();
    assert_eq!(
        first.data,
        Some(json!("started")),
        "the job runs in the other process"
    );
    child.0.start_kill().unwrap();
    let _ = within("child exit", child.0.wait()).await;
    assert_eq!(
        within("requester", job.response()).await,
        Err(JobError::Timeout)
    );
}

// A runner killed mid-job with heartbeats on: the requester's runner expires it and the job fails with
// `WorkerLost` long before its 30 s timeout (the child beats every second; expiry here is 3 s).
#[tokio::test]
async fn killed_runner_expires_and_job_fails_fast() {
    let Some(url) = redis_url("killed_runner_expires_and_job_fails_fast") else {
        return;
    };
    let ch = channel();
    let log = Log::default();
    let runner = redis_runner(&url, &ch, "A")
        .await
        .with_heartbeat(Duration::from_millis(100), Duration::from_secs(3));
    let req = runner.add_worker(Probe::spec("req", &log)).await.unwrap();
    runner
        .add_worker(Probe::spec("local-echo", &log))
        .await
        .unwrap();
    let mut child = spawn_child(&url, &ch);
    until_known(&runner, &["remote-echo"]).await;
    let mut job = req
        .context()
        .job(
            "remote-echo",
            JobParams::new()
                .with_name("block")
                .with_timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert_eq!(
        within("started", job.next()).await.unwrap().data,
        Some(json!("started"))
    );
    child.0.start_kill().unwrap();
    let _ = within("child exit", child.0.wait()).await;
    assert_eq!(
        within("requester", job.response()).await,
        Err(JobError::WorkerLost {
            worker: "remote-echo".into(),
            runner: "B".into()
        })
    );
    assert!(!runner.registry().contains("remote-echo"));
}
