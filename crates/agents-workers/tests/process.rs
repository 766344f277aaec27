//! Ctrl-C: a runner in a child process cancels its workers and `run` returns when the process gets SIGINT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agents_workers::*;
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const ROLE_VAR: &str = "AGENTS_WORKERS_TEST_ROLE";

/// Entry point of the child process (selected by an environment variable); a no-op in a normal test run.
#[tokio::test]
async fn sigint_child_entry() {
    if std::env::var(ROLE_VAR).as_deref() != Ok("sigint") {
        return;
    }
    let runner = WorkerRunner::new("sig", Arc::new(LocalBus::new())).unwrap();
    let log = Log::default();
    let w = runner.add_worker(Probe::spec("w", &log)).await.unwrap();
    let r2 = runner.clone();
    let run = tokio::spawn(async move { r2.run(false).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("READY");
    let result = tokio::time::timeout(Duration::from_secs(20), run).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "run returned after SIGINT"
    );
    assert!(w.is_finished());
    println!("STOPPED");
}

#[cfg(unix)]
#[tokio::test]
async fn ctrl_c_cancels_the_runner() {
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "sigint_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, "sigint")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    within("child ready", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("READY") {
                return;
            }
        }
        panic!("child ended before READY");
    })
    .await;
    let pid = child.id().unwrap().to_string();
    // The shell's `kill` builtin: present even where procps' /bin/kill is not installed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stopped = false;
    within("child output", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stopped |= line.contains("STOPPED");
        }
    })
    .await;
    let status = within("child exit", child.wait()).await.unwrap();
    assert!(stopped, "the runner stopped its workers and returned");
    assert!(
        status.success(),
        "the child exited normally, not killed by SIGINT: {status:?}"
    );
}
