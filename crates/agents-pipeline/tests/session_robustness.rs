//! Regression tests for the session actor's robustness (review findings F1–F3, F5–F7, F11, F12, F15): closes
//! asked from inside the session, bounded handoffs, speech handles always finished, hook panics, agent state
//! after tools, configuration that must not panic. Deterministic, on a paused clock.

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use agents_core::events::SessionEvent;
use agents_core::session::{ReplyRequest, SayRequest, SessionHandle};
use agents_core::speech::SpeechHandle;
use agents_core::task::{AgentTask, TaskCompleter, completion};
use agents_core::tools::{FunctionTool, ToolOutcome};
use agents_core::{Agent, AgentHooks, SessionControl};
use agents_testkit::{FakeLlm, FakeResponse};

use agents_core::events::Component;
use agents_core::stream::EventStream;
use agents_pipeline::SessionOptions;
use agents_pipeline::interruption::InterruptionOptions;
use agents_testkit::{FakeAudioOutput, FakeTts};

use session_common::{ms, rig, rig_with};

/// Review finding 1: an "end call" tool that awaits `close()` wedges the close: the activity's drain waits for the tool,
/// the tool waits for the close, so every such close takes `close_timeout` (10 s) and ends by aborting the tool.
#[tokio::test(start_paused = true)]
async fn a_tool_awaiting_close_does_not_stall_the_close_for_close_timeout() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Goodbye.").then_tool_call("end_call", "{}"));
    let r = rig(llm);
    let end_call = FunctionTool::raw(
        "end_call",
        "Ends the call.",
        json!({"type": "object", "properties": {}}),
        |ctx, _args| async move {
            let _ = ctx.session().close().await;
            Ok(ToolOutcome::stop_response())
        },
    )
    .unwrap();
    r.start(Agent::builder("x").tool(end_call).build().unwrap())
        .await;
    let t0 = tokio::time::Instant::now();
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(30_000), |e| matches!(e, SessionEvent::Close { .. }))
        .await;
    let took = t0.elapsed();
    assert!(
        took < ms(5_000),
        "the close requested by a tool took {took:?} (close_timeout is 10 s)"
    );
}

struct SayOnExit;

#[async_trait]
impl AgentHooks for SayOnExit {
    async fn on_exit(&self, session: &SessionHandle) {
        // LiveKit's documented pattern: say goodbye before giving control away, and wait for it.
        if let Ok(h) = session.say(SayRequest::new("Goodbye from the front desk.")) {
            h.wait_for_playout().await;
        }
    }
}

/// Review finding 2: `say` from `on_exit` is queued for the *next* agent, which starts only after the drain, and the
/// drain waits for `on_exit`: the handoff never completes (the handoff drain has no bound at all).
#[tokio::test(start_paused = true)]
async fn on_exit_waiting_for_its_goodbye_does_not_wedge_the_handoff() {
    let r = rig(FakeLlm::new());
    let front = Agent::builder("front")
        .id("front")
        .hooks(SayOnExit)
        .build()
        .unwrap();
    r.start(front).await;
    r.session
        .update_agent(Agent::builder("billing").id("billing").build().unwrap())
        .unwrap();
    let end = tokio::time::Instant::now() + ms(60_000);
    loop {
        if r.session
            .current_agent()
            .map(|a| a.id().to_owned())
            .as_deref()
            == Some("billing")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "handoff still not done after 60 s: {:#?}",
            r.rec.events()
        );
        tokio::time::sleep(ms(10)).await;
    }
}

/// Review finding 3: a handoff while a task runs drops (aborts) the suspended caller without its shutdown: a speech
/// queued on the caller is never marked done, so whoever waits for it waits forever.
#[tokio::test(start_paused = true)]
async fn handoff_during_a_task_completes_the_callers_queued_speech() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("One moment please.").then_tool_call("start", "{}"));
    let r = rig(llm);
    let held: Arc<Mutex<Option<SpeechHandle>>> = Arc::new(Mutex::new(None));
    let keep: Arc<Mutex<Option<TaskCompleter<String>>>> = Arc::new(Mutex::new(None));
    let (h2, k2) = (Arc::clone(&held), Arc::clone(&keep));
    let start = FunctionTool::raw(
        "start",
        "Starts the task.",
        json!({"type": "object", "properties": {}}),
        move |ctx, _args| {
            let (held, keep) = (Arc::clone(&h2), Arc::clone(&k2));
            async move {
                let queued = ctx.session().say(SayRequest::new("Please hold.")).unwrap();
                *held.lock().unwrap() = Some(queued);
                let (completer, result) = completion::<String>();
                *keep.lock().unwrap() = Some(completer);
                let task =
                    AgentTask::new(Agent::builder("task").id("task").build().unwrap(), result);
                let _ = ctx.session().run_task(task).await;
                Ok(ToolOutcome::stop_response())
            }
        },
    )
    .unwrap();
    r.start(
        Agent::builder("caller")
            .id("caller")
            .tool(start)
            .build()
            .unwrap(),
    )
    .await;
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    let end = tokio::time::Instant::now() + ms(30_000);
    while r
        .session
        .current_agent()
        .map(|a| a.id().to_owned())
        .as_deref()
        != Some("task")
    {
        assert!(tokio::time::Instant::now() < end, "the task never started");
        tokio::time::sleep(ms(10)).await;
    }
    let queued = held.lock().unwrap().clone().unwrap();
    assert!(
        !queued.done(),
        "the caller's say is queued while the caller is suspended"
    );
    r.session
        .update_agent(Agent::builder("other").id("other").build().unwrap())
        .unwrap();
    assert!(
        tokio::time::timeout(ms(30_000), queued.wait_for_playout())
            .await
            .is_ok(),
        "the caller's queued speech never completes after the handoff aborted the caller"
    );
}

struct SlowExit;

#[async_trait]
impl AgentHooks for SlowExit {
    async fn on_exit(&self, _session: &SessionHandle) {
        tokio::time::sleep(ms(3_000)).await;
    }
}

/// Review finding 5: requests made during a handoff are parked in `Draining::pending`; a close meanwhile drops them
/// without completing their handles, so `wait_for_playout` never returns.
#[tokio::test(start_paused = true)]
async fn close_during_a_handoff_completes_requests_parked_for_the_next_agent() {
    let r = rig(FakeLlm::new());
    r.start(
        Agent::builder("front")
            .id("front")
            .hooks(SlowExit)
            .build()
            .unwrap(),
    )
    .await;
    r.session
        .update_agent(Agent::builder("billing").id("billing").build().unwrap())
        .unwrap();
    tokio::time::sleep(ms(100)).await;
    let parked = r.session.say_text("Hello from billing.").unwrap();
    r.session.close().await.unwrap();
    assert!(
        tokio::time::timeout(ms(30_000), parked.wait_for_playout())
            .await
            .is_ok(),
        "a say parked for the next agent never completes after the close"
    );
}

/// Review finding 6: after playout, a reply whose tools still run puts the agent in `thinking`; when the tools end without
/// a follow-up (`StopResponse`, or no output) nothing sets the state back: the agent stays `thinking` forever.
#[tokio::test(start_paused = true)]
async fn agent_state_returns_to_listening_after_tools_without_follow_up() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Let me note that.").then_tool_call("note", "{}"));
    let r = rig(llm);
    let note = FunctionTool::raw(
        "note",
        "Takes a note.",
        json!({"type": "object", "properties": {}}),
        |_ctx, _args| async move {
            tokio::time::sleep(ms(3_000)).await;
            Ok(ToolOutcome::stop_response())
        },
    )
    .unwrap();
    r.start(Agent::builder("x").tool(note).build().unwrap())
        .await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    tokio::time::sleep(ms(10_000)).await;
    assert_eq!(
        r.session.agent_state(),
        agents_core::events::AgentState::Listening,
        "states: {:?}",
        r.rec.agent_states()
    );
}

struct PanicsOnEnter;

#[async_trait]
impl AgentHooks for PanicsOnEnter {
    async fn on_enter(&self, _session: &SessionHandle) {
        panic!("application bug in on_enter");
    }
}

/// Review finding 7: a hook task that panics never reports `HookDone`, so `outstanding` never returns to 0: the activity
/// never becomes idle and every later handoff (unbounded drain) hangs forever.
#[tokio::test(start_paused = true)]
async fn a_panicking_hook_does_not_wedge_later_handoffs() {
    let r = rig(FakeLlm::new());
    r.start(
        Agent::builder("front")
            .id("front")
            .hooks(PanicsOnEnter)
            .build()
            .unwrap(),
    )
    .await;
    tokio::time::sleep(ms(100)).await;
    r.session
        .update_agent(Agent::builder("billing").id("billing").build().unwrap())
        .unwrap();
    let end = tokio::time::Instant::now() + ms(60_000);
    while r
        .session
        .current_agent()
        .map(|a| a.id().to_owned())
        .as_deref()
        != Some("billing")
    {
        assert!(
            tokio::time::Instant::now() < end,
            "handoff not done 60 s after a hook panicked"
        );
        tokio::time::sleep(ms(10)).await;
    }
}

/// Review finding F7: the caught panic is reported as an error of the agent's own code, recoverable.
#[tokio::test(start_paused = true)]
async fn a_panicking_hook_is_reported_as_a_recoverable_agent_error() {
    let r = rig(FakeLlm::new());
    r.start(
        Agent::builder("front")
            .hooks(PanicsOnEnter)
            .build()
            .unwrap(),
    )
    .await;
    r.rec
        .wait_for(ms(5_000), |e| {
            matches!(e, SessionEvent::Error(err)
                if err.component == Component::Agent && err.label == "on_enter" && err.recoverable)
        })
        .await;
    // The session still works.
    let h = r.session.say_text("Still here.").unwrap();
    assert!(
        tokio::time::timeout(ms(10_000), h.wait_for_playout())
            .await
            .is_ok()
    );
    assert!(!h.interrupted());
}

struct PanicsInTranscriptionNode;

#[async_trait]
impl AgentHooks for PanicsInTranscriptionNode {
    fn transcription_node(&self, _text: EventStream<String>) -> EventStream<String> {
        panic!("application bug in transcription_node");
    }
}

/// Review finding F7: a generation that panics (here in the agent's transcription node) still ends its speech, so
/// the handle completes and the next speech is scheduled.
#[tokio::test(start_paused = true)]
async fn a_panicking_generation_finishes_its_speech_and_the_queue_goes_on() {
    let r = rig(FakeLlm::new());
    r.start(
        Agent::builder("x")
            .hooks(PanicsInTranscriptionNode)
            .build()
            .unwrap(),
    )
    .await;
    let first = r.session.say_text("One.").unwrap();
    let second = r.session.say_text("Two.").unwrap();
    assert!(
        tokio::time::timeout(ms(10_000), first.wait_for_playout())
            .await
            .is_ok()
    );
    assert!(
        first.interrupted(),
        "the panicked speech ends as interrupted"
    );
    assert!(
        tokio::time::timeout(ms(10_000), second.wait_for_playout())
            .await
            .is_ok()
    );
    assert!(
        r.rec
            .count(|e| matches!(e, SessionEvent::Error(err) if err.component == Component::Agent))
            >= 1
    );
}

/// Review finding F2: the draining agent's own `on_exit` speech plays on the old agent, before the handoff.
#[tokio::test(start_paused = true)]
async fn the_goodbye_said_in_on_exit_plays_on_the_old_agent_before_the_handoff() {
    let r = rig(FakeLlm::new());
    r.start(
        Agent::builder("front")
            .id("front")
            .hooks(SayOnExit)
            .build()
            .unwrap(),
    )
    .await;
    r.session
        .update_agent(Agent::builder("billing").id("billing").build().unwrap())
        .unwrap();
    let end = tokio::time::Instant::now() + ms(30_000);
    while r
        .session
        .current_agent()
        .map(|a| a.id().to_owned())
        .as_deref()
        != Some("billing")
    {
        assert!(tokio::time::Instant::now() < end, "handoff not done");
        tokio::time::sleep(ms(10)).await;
    }
    let messages = r.messages();
    assert!(
        messages
            .iter()
            .any(|(_, text, interrupted)| text == "Goodbye from the front desk." && !interrupted),
        "{messages:?}"
    );
}

struct NeverExits;

#[async_trait]
impl AgentHooks for NeverExits {
    async fn on_exit(&self, _session: &SessionHandle) {
        std::future::pending::<()>().await;
    }
}

/// Review finding F2: a hook that never returns delays a handoff by `close_timeout`, not forever.
#[tokio::test(start_paused = true)]
async fn a_handoff_drain_is_bounded_by_close_timeout() {
    let r = rig_with(
        FakeLlm::new(),
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default().with_close_timeout(ms(2_000)),
    );
    r.start(
        Agent::builder("front")
            .id("front")
            .hooks(NeverExits)
            .build()
            .unwrap(),
    )
    .await;
    let t0 = tokio::time::Instant::now();
    r.session
        .update_agent(Agent::builder("billing").id("billing").build().unwrap())
        .unwrap();
    while r
        .session
        .current_agent()
        .map(|a| a.id().to_owned())
        .as_deref()
        != Some("billing")
    {
        assert!(t0.elapsed() < ms(10_000), "handoff not done");
        tokio::time::sleep(ms(10)).await;
    }
    let took = t0.elapsed();
    assert!(
        took >= ms(2_000) && took < ms(2_500),
        "handoff after {took:?}"
    );
    // The new agent works.
    let h = r.session.say_text("Billing here.").unwrap();
    assert!(
        tokio::time::timeout(ms(10_000), h.wait_for_playout())
            .await
            .is_ok()
    );
    assert!(!h.interrupted());
}

/// Review finding F11 (behaviour 54): `interrupt()` during a handoff also cancels requests parked for the next
/// agent.
#[tokio::test(start_paused = true)]
async fn interrupt_during_a_handoff_cancels_requests_parked_for_the_next_agent() {
    let r = rig(FakeLlm::new());
    r.start(
        Agent::builder("front")
            .id("front")
            .hooks(SlowExit)
            .build()
            .unwrap(),
    )
    .await;
    r.session
        .update_agent(Agent::builder("billing").id("billing").build().unwrap())
        .unwrap();
    tokio::time::sleep(ms(100)).await;
    let parked = r.session.say_text("Hello from billing.").unwrap();
    r.session.interrupt().await.unwrap();
    assert!(parked.done() && parked.interrupted());
    // Nothing of it plays once billing starts.
    tokio::time::sleep(ms(10_000)).await;
    assert!(
        !r.messages()
            .iter()
            .any(|(_, text, _)| text == "Hello from billing."),
        "{:?}",
        r.messages()
    );
}

/// Review finding F15: durations meaning "never" (`Duration::MAX`) do not overflow the clock.
#[tokio::test(start_paused = true)]
async fn huge_durations_in_the_options_do_not_panic() {
    let r = rig_with(
        FakeLlm::new(),
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default()
            .with_close_timeout(std::time::Duration::MAX)
            .with_user_away_timeout(Some(std::time::Duration::MAX))
            .with_interruption(
                InterruptionOptions::default()
                    .with_false_interruption_timeout(std::time::Duration::MAX),
            ),
    );
    r.start(Agent::builder("front").id("front").build().unwrap())
        .await;
    let h = r.session.say_text("Hello.").unwrap();
    assert!(
        tokio::time::timeout(ms(10_000), h.wait_for_playout())
            .await
            .is_ok()
    );
    r.session
        .update_agent(Agent::builder("billing").id("billing").build().unwrap())
        .unwrap();
    tokio::time::sleep(ms(1_000)).await;
    assert_eq!(
        r.session
            .current_agent()
            .map(|a| a.id().to_owned())
            .as_deref(),
        Some("billing")
    );
    assert!(
        tokio::time::timeout(ms(10_000), r.session.close())
            .await
            .is_ok()
    );
    assert_eq!(r.rec.count(|e| matches!(e, SessionEvent::Close { .. })), 1);
}
