//! Voice hand-off across two OS processes over a real Redis server: the session, its bridge and the greeter run
//! here; the support worker runs in a second process (this test binary re-invoked with a role variable). The
//! greeter's transition line is played here before support (remote) is activated; support's greeting and its
//! answer to the next turn travel back over Redis and are spoken here. Then the second process is killed and the
//! next turn fails by the bridge's reply timeout instead of hanging.
//!
//! The shared voice suite (`suite/voice.rs`) runs here too, over Redis with a fresh channel per test.
//!
//! Needs `AGENTS_TEST_REDIS_URL`; without it every test prints SKIP and returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod voice_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents_core::chat::ChatItem;
use agents_core::session::ReplyRequest;
use agents_core::{Agent, ChatRole, SessionControl, SessionIo};
use agents_pipeline::AgentSession;
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeTextOutput, FakeTts};
use agents_workers::*;
use common::*;
use serde_json::{Value, json};
use voice_common::*;

async fn new_bus() -> Option<Arc<dyn Bus>> {
    let Ok(url) = std::env::var(URL_VAR) else {
        eprintln!("SKIP: {URL_VAR} is not set (CI starts redis-server and sets it)");
        return None;
    };
    let channel = format!("agents-voice-test:{}", uuid::Uuid::new_v4());
    Some(Arc::new(
        RedisBus::connect_with(&url, &channel, BusConfig::default())
            .await
            .unwrap(),
    ))
}

include!("suite/voice.rs");

const URL_VAR: &str = "AGENTS_TEST_REDIS_URL";
const ROLE_VAR: &str = "AGENTS_WORKERS_VOICE_ROLE";
const CHANNEL_VAR: &str = "AGENTS_WORKERS_VOICE_CHANNEL";

fn redis_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIP {test}: {URL_VAR} is not set (CI starts redis-server and sets it)");
            None
        }
    }
}

async fn redis_runner(url: &str, channel: &str, name: &str) -> WorkerRunner {
    let bus = RedisBus::connect_with(url, channel, BusConfig::default())
        .await
        .unwrap();
    WorkerRunner::new(name, Arc::new(bus))
        .unwrap()
        .with_sigint_handling(false)
}

/// Kills the child process when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Entry point of the second process (selected by an environment variable); a no-op in a normal test run.
#[tokio::test]
async fn voice_child_process_entry() {
    if std::env::var(ROLE_VAR).as_deref() != Ok("support") {
        return;
    }
    let url = std::env::var(URL_VAR).unwrap();
    let ch = std::env::var(CHANNEL_VAR).unwrap();
    let runner = redis_runner(&url, &ch, "B").await;
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Support here, in another process."))
        .push_response(FakeResponse::text("Your refund is on its way."));
    runner
        .add_worker(WorkerSpec::new(
            "support",
            LlmWorker::new(Arc::new(llm))
                .with_instructions("You are support.")
                .with_bridges(["voice"]),
        ))
        .await
        .unwrap();
    // Never outlive the parent test for long.
    let _ = tokio::time::timeout(Duration::from_secs(60), runner.run(false)).await;
}

#[tokio::test]
async fn voice_handoff_across_processes_over_redis() {
    let Some(url) = redis_url("voice_handoff_across_processes_over_redis") else {
        return;
    };
    let ch = format!("agents-voice-test:{}", uuid::Uuid::new_v4());
    let runner = redis_runner(&url, &ch, "A").await;
    let greeter_llm = Arc::new(FakeLlm::new().push_response(
        FakeResponse::text("Let me transfer you to support.").then_tool_call(
            ACTIVATE_WORKER_TOOL,
            r#"{"target": "support", "reason": "refund"}"#,
        ),
    ));
    let greeter = runner
        .add_worker(
            WorkerSpec::new(
                "greeter",
                LlmWorker::new(greeter_llm.clone())
                    .with_bridges(["voice"])
                    .with_handoff_targets(["support"]),
            )
            .active(),
        )
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    let exe = std::env::current_exe().unwrap();
    let mut child = Child(
        tokio::process::Command::new(exe)
            .args([
                "voice_child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(URL_VAR, &url)
            .env(ROLE_VAR, "support")
            .env(CHANNEL_VAR, &ch)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    within("registry handshake", async {
        while !runner.registry().contains("support") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(runner.registry().get("support").unwrap().runner, "B");

    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("I want a refund"))
        .unwrap();
    within("transition played", h.wait_for_playout()).await;
    assert!(!h.interrupted());
    until("remote support greeting spoken here", || {
        rig.text
            .all_text()
            .contains("Support here, in another process.")
    })
    .await;
    assert!(!greeter.is_active());
    let text = rig.text.all_text();
    assert!(
        text.find("Let me transfer you to support.") < text.find("Support here"),
        "transition first: {text}"
    );
    assert_eq!(greeter_llm.request_count(), 1);

    let h2 = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("when?"))
        .unwrap();
    within("remote answer", h2.wait_for_playout()).await;
    assert!(
        rig.text.all_text().ends_with("Your refund is on its way."),
        "{}",
        rig.text.all_text()
    );

    // The support process dies: the next turn fails by the reply timeout (5 s in the rig), never hangs.
    child.0.start_kill().unwrap();
    let _ = within("child exit", child.0.wait()).await;
    let mut events = rig.session.events();
    let h3 = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("hello?"))
        .unwrap();
    within("failed reply ends", h3.wait_for_playout()).await;
    let err = within("error event", async {
        use futures::StreamExt;
        loop {
            if let Some(agents_core::events::SessionEvent::Error(e)) = events.next().await {
                return e.error.to_string();
            }
        }
    })
    .await;
    assert!(
        err.contains("no reply from an active agent worker"),
        "{err}"
    );
}
