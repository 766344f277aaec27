//! The tool loop and handoffs on a paused clock (livekit-agents-behaviours.md §5.6, §5.7, §6.5).

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use agents_core::chat::{ChatItem, ChatRole};
use agents_core::events::{SessionEvent, SpeechSource};
use agents_core::llm::ToolChoice;
use agents_core::session::{ReplyRequest, SessionHandle};
use agents_core::tools::{FunctionTool, ToolOutcome};
use agents_core::{Agent, AgentHooks, SessionControl};
use agents_pipeline::SessionOptions;
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeTts};

use session_common::{ms, rig, rig_with};

fn lookup_tool(delay_ms: u64) -> FunctionTool {
    FunctionTool::raw(
        "lookup",
        "Looks the answer up.",
        json!({"type": "object", "properties": {}}),
        move |_ctx, _args| async move {
            tokio::time::sleep(ms(delay_ms)).await;
            Ok(ToolOutcome::Output("42".to_owned()))
        },
    )
    .unwrap()
}

fn assistant_said(text: &'static str) -> impl Fn(&SessionEvent) -> bool {
    move |e| match e {
        SessionEvent::ConversationItemAdded {
            item: ChatItem::Message(m),
        } => m.role == ChatRole::Assistant && m.text_content().as_deref() == Some(text),
        _ => false,
    }
}

#[tokio::test(start_paused = true)]
async fn tool_outputs_are_committed_before_the_follow_up_reply_behaviour_6_5() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::tool_call("lookup", "{}"))
        .push_response(FakeResponse::text("The answer is 42."));
    let r = rig(llm);
    let agent = Agent::builder("x").tool(lookup_tool(100)).build().unwrap();
    r.start(agent).await;
    let h = r
        .session
        .generate_reply(ReplyRequest::new().with_user_input("what is it?"))
        .unwrap();
    r.rec
        .wait_for(ms(10_000), assistant_said("The answer is 42."))
        .await;
    assert!(h.done());
    let second = &r.llm.requests()[1];
    let items = second.chat_ctx.items();
    let call = items.iter().find_map(ChatItem::as_function_call).unwrap();
    let out = items
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .unwrap();
    assert_eq!(call.name, "lookup");
    assert_eq!(out.call_id, call.call_id);
    assert_eq!(out.output, "42");
    let follow_up = r
        .rec
        .events()
        .into_iter()
        .find_map(|e| match e {
            SessionEvent::SpeechCreated {
                speech,
                source: SpeechSource::ToolResponse,
                user_initiated,
            } => Some((speech, user_initiated)),
            _ => None,
        })
        .unwrap();
    assert!(!follow_up.1);
    assert_eq!(follow_up.0.step_index(), 1);
    assert_eq!(follow_up.0.parent_id(), Some(h.id()));
    assert_eq!(
        r.rec
            .count(|e| matches!(e, SessionEvent::FunctionToolsExecuted { .. })),
        1
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn max_tool_steps_stops_a_tool_loop_with_a_final_answer_without_tools_behaviour_6_5() {
    // A model that calls the tool whenever it may.
    let llm = FakeLlm::new().with_responder(|req| {
        if req.tool_choice == Some(ToolChoice::None) {
            FakeResponse::text("final answer")
        } else {
            FakeResponse::tool_call("lookup", "{}")
        }
    });
    let r = rig_with(
        llm,
        FakeTts::new(),
        FakeAudioOutput::new(),
        SessionOptions::default().with_max_tool_steps(2),
    );
    let agent = Agent::builder("x").tool(lookup_tool(0)).build().unwrap();
    r.start(agent).await;
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(10_000), assistant_said("final answer"))
        .await;
    let requests = r.llm.requests();
    assert_eq!(
        requests.len(),
        3,
        "step 0 and step 1 call tools, step 2 must answer"
    );
    assert_eq!(requests[0].tool_choice, None);
    assert_eq!(requests[1].tool_choice, None);
    assert_eq!(requests[2].tool_choice, Some(ToolChoice::None));
    assert_eq!(
        r.rec
            .count(|e| matches!(e, SessionEvent::FunctionToolsExecuted { .. })),
        2
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stop_response_tool_ends_the_turn_without_a_follow_up() {
    let stop = FunctionTool::raw(
        "hang_up",
        "Ends the call.",
        json!({"type": "object", "properties": {}}),
        |_ctx, _args| async { Ok(ToolOutcome::stop_response()) },
    )
    .unwrap();
    let llm =
        FakeLlm::new().push_response(FakeResponse::text("Bye.").then_tool_call("hang_up", "{}"));
    let r = rig(llm);
    r.start(Agent::builder("x").tool(stop).build().unwrap())
        .await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    r.rec
        .wait_for(ms(5000), |e| {
            matches!(e, SessionEvent::FunctionToolsExecuted { .. })
        })
        .await;
    tokio::time::sleep(ms(2000)).await;
    assert_eq!(r.llm.request_count(), 1);
    assert_eq!(
        r.rec.count(|e| matches!(
            e,
            SessionEvent::SpeechCreated {
                source: SpeechSource::ToolResponse,
                ..
            }
        )),
        0
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tool_calls_of_an_interrupted_reply_never_leave_a_dangling_call_in_context_field_lesson_7()
{
    let llm = FakeLlm::new()
        .push_response(
            FakeResponse::text("Let me check that for you right now please")
                .then_tool_call("lookup", "{}"),
        )
        .push_response(FakeResponse::text("ok"));
    let r = rig(llm);
    r.start(
        Agent::builder("x")
            .tool(lookup_tool(5_000))
            .build()
            .unwrap(),
    )
    .await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    tokio::time::sleep(ms(700)).await;
    r.session.interrupt().await.unwrap();
    assert!(h.wait_for_playout().await);
    tokio::time::sleep(ms(6_000)).await;
    assert_eq!(
        r.rec
            .count(|e| matches!(e, SessionEvent::FunctionToolsExecuted { .. })),
        0,
        "results of an interrupted reply are discarded"
    );
    let next = r.session.generate_reply(ReplyRequest::new()).unwrap();
    next.wait_for_playout().await;
    let req = r.llm.last_request().unwrap();
    assert!(
        !req.chat_ctx.items().iter().any(ChatItem::is_function_item),
        "{:#?}",
        req.chat_ctx.items()
    );
    let said = req
        .chat_ctx
        .messages()
        .find(|m| m.role == ChatRole::Assistant)
        .unwrap();
    assert!(said.interrupted);
    assert_eq!(
        said.text_content().as_deref(),
        Some("Let me check"),
        "the words the transcript synchronizer released by 0.7 s (the third starts at 0.6 s)"
    );
    r.session.close().await.unwrap();
}

#[derive(Clone)]
struct Logged {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    out: Arc<FakeAudioOutput>,
    transfer_to: Option<Agent>,
}

#[async_trait]
impl AgentHooks for Logged {
    fn tools(&self) -> Vec<FunctionTool> {
        let Some(target) = self.transfer_to.clone() else {
            return Vec::new();
        };
        let log = Arc::clone(&self.log);
        vec![
            FunctionTool::raw(
                "transfer",
                "Transfers to billing.",
                json!({"type": "object", "properties": {}}),
                move |_ctx, _args| {
                    let target = target.clone();
                    let log = Arc::clone(&log);
                    async move {
                        log.lock().unwrap().push("tool".to_owned());
                        Ok(ToolOutcome::handoff(target))
                    }
                },
            )
            .unwrap(),
        ]
    }

    async fn on_enter(&self, _session: &SessionHandle) {
        let played = self.out.played_segments().len();
        self.log
            .lock()
            .unwrap()
            .push(format!("{}.enter (segments played: {played})", self.name));
    }

    async fn on_exit(&self, _session: &SessionHandle) {
        self.log.lock().unwrap().push(format!("{}.exit", self.name));
    }
}

#[tokio::test(start_paused = true)]
async fn a_handoff_tool_switches_agents_in_the_documented_order_behaviour_5_7() {
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Transferring you now.").then_tool_call("transfer", "{}"))
        .push_response(FakeResponse::text("Billing here."));
    let r = rig(llm);
    let log = Arc::new(Mutex::new(Vec::new()));
    let billing = Agent::builder("You are billing.")
        .id("billing")
        .hooks(Logged {
            name: "billing",
            log: Arc::clone(&log),
            out: Arc::clone(&r.out),
            transfer_to: None,
        })
        .build()
        .unwrap();
    let front = Agent::builder("You are the front desk.")
        .id("front")
        .hooks(Logged {
            name: "front",
            log: Arc::clone(&log),
            out: Arc::clone(&r.out),
            transfer_to: Some(billing),
        })
        .build()
        .unwrap();
    r.start(front).await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    let end = tokio::time::Instant::now() + ms(5000);
    while r
        .session
        .current_agent()
        .map(|a| a.id().to_owned())
        .as_deref()
        != Some("billing")
    {
        assert!(
            tokio::time::Instant::now() < end,
            "no handoff: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(ms(5)).await;
    }
    tokio::time::sleep(ms(100)).await;
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "front.enter (segments played: 0)".to_owned(),
            "tool".to_owned(),
            "front.exit".to_owned(),
            // The old agent's speech finished before the new agent entered.
            "billing.enter (segments played: 1)".to_owned(),
        ]
    );
    // A handoff without message gives no output, hence no follow-up reply from the old agent.
    assert_eq!(r.llm.request_count(), 1);
    let handoff = r
        .session
        .history()
        .items()
        .iter()
        .find_map(|i| i.as_agent_handoff().cloned())
        .unwrap();
    assert_eq!(handoff.old_agent_id.as_deref(), Some("front"));
    assert_eq!(handoff.new_agent_id, "billing");
    // The new agent answers with its own instructions.
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    h.wait_for_playout().await;
    let req = r.llm.last_request().unwrap();
    assert_eq!(
        req.chat_ctx
            .instructions()
            .and_then(|m| m.text_content())
            .as_deref(),
        Some("You are billing.")
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn playout_is_done_before_tools_finish_and_the_agent_thinks_meanwhile_behaviour_5_8() {
    use agents_core::events::AgentState;
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Checking.").then_tool_call("lookup", "{}"))
        .push_response(FakeResponse::text("It is 42."));
    let r = rig(llm);
    r.start(
        Agent::builder("x")
            .tool(lookup_tool(2_000))
            .build()
            .unwrap(),
    )
    .await;
    let h = r.session.generate_reply(ReplyRequest::new()).unwrap();
    assert!(!h.wait_for_playout().await);
    tokio::time::sleep(ms(10)).await;
    assert_eq!(
        r.session.agent_state(),
        AgentState::Thinking,
        "the tool still runs"
    );
    assert_eq!(
        r.messages().len(),
        1,
        "the spoken part is committed at once"
    );
    r.rec
        .wait_for(ms(10_000), assistant_said("It is 42."))
        .await;
    tokio::time::sleep(ms(10)).await;
    assert_eq!(r.session.agent_state(), AgentState::Listening);
    assert_eq!(
        r.rec.agent_states(),
        vec![
            AgentState::Listening,
            AgentState::Thinking,
            AgentState::Speaking,
            AgentState::Thinking,
            AgentState::Speaking,
            AgentState::Listening
        ]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_tool_starts_as_soon_as_its_call_streams_in_behaviour_5_6() {
    let started = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&started);
    let tool = FunctionTool::raw(
        "lookup",
        "Looks the answer up.",
        json!({"type": "object", "properties": {}}),
        move |_ctx, _args| {
            let seen = Arc::clone(&seen);
            async move {
                *seen.lock().unwrap() = Some(tokio::time::Instant::now());
                Ok(ToolOutcome::Output("42".to_owned()))
            }
        },
    )
    .unwrap();
    let llm = FakeLlm::new()
        .push_response(
            FakeResponse::tool_call("lookup", "{}")
                .then_delay(ms(2000))
                .then_text("Still thinking."),
        )
        .push_response(FakeResponse::text("It is 42."));
    let r = rig(llm);
    r.start(Agent::builder("x").tool(tool).build().unwrap())
        .await;
    let t0 = tokio::time::Instant::now();
    r.session.generate_reply(ReplyRequest::new()).unwrap();
    r.rec
        .wait_for(ms(10_000), assistant_said("It is 42."))
        .await;
    let at = started.lock().unwrap().unwrap();
    assert!(
        at - t0 < ms(100),
        "the tool started {:?} in, before the LLM stream ended (2 s)",
        at - t0
    );
    r.session.close().await.unwrap();
}
