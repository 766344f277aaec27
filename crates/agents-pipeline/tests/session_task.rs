//! `AgentTask` and `TaskGroup` on a paused clock (livekit-agents-behaviours.md §3.2, §6.6, behaviour 122).

#![allow(clippy::unwrap_used, reason = "tests")]

mod session_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use agents_core::chat::{ChatItem, ChatRole};
use agents_core::events::SessionEvent;
use agents_core::llm::ChatRequest;
use agents_core::session::{ReplyRequest, SessionHandle};
use agents_core::task::{AgentTask, TaskCompleter, TaskError, TaskGroup, completion};
use agents_core::tools::{FunctionTool, ToolError, ToolOutcome};
use agents_core::{Agent, AgentHooks, SessionControl};
use agents_testkit::{FakeLlm, FakeResponse};

use session_common::{ms, rig};

/// Counts `on_enter` and, optionally, asks a question when entered.
struct Hooks {
    entered: Arc<AtomicUsize>,
    greeting: Option<&'static str>,
}

#[async_trait]
impl AgentHooks for Hooks {
    async fn on_enter(&self, session: &SessionHandle) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        if let Some(text) = self.greeting {
            session
                .generate_reply(ReplyRequest::new().with_instructions(text))
                .unwrap();
        }
    }
}

/// A tool of a task that completes it with its `value` argument (or fails it when `value` is "fail").
fn record_tool(name: &str, completer: TaskCompleter<String>) -> FunctionTool {
    FunctionTool::raw(
        name,
        "Records the value the user gave.",
        json!({"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}),
        move |_ctx, args| {
            let completer = completer.clone();
            async move {
                let value = args["value"].as_str().unwrap_or_default().to_owned();
                let result = if value == "fail" {
                    Err(TaskError::failed("the user refused"))
                } else {
                    Ok(value)
                };
                completer
                    .complete(result)
                    .map_err(|e| ToolError::new(e.to_string()))?;
                Ok(ToolOutcome::stop_response())
            }
        },
    )
    .unwrap()
}

/// A task asking for something, completed by its `record_<what>` tool.
fn ask_task(what: &'static str, entered: Arc<AtomicUsize>) -> AgentTask<String> {
    let (completer, result) = completion::<String>();
    let agent = Agent::builder(format!("task:{what}"))
        .tool(record_tool(&format!("record_{what}"), completer))
        .hooks(Hooks {
            entered,
            greeting: Some("ask"),
        })
        .build()
        .unwrap();
    AgentTask::new(agent, result)
}

/// The caller's tool: runs a task and reports its value (or error) to the model.
fn caller_tool(
    name: &str,
    outcomes: Arc<Mutex<Vec<Result<String, TaskError>>>>,
    make: impl Fn() -> AgentTask<String> + Send + Sync + 'static,
) -> FunctionTool {
    let make = Arc::new(make);
    FunctionTool::raw(
        name,
        "Starts the task.",
        json!({"type": "object", "properties": {}}),
        move |ctx, _args| {
            let make = Arc::clone(&make);
            let outcomes = Arc::clone(&outcomes);
            async move {
                let result = ctx.session().run_task(make()).await;
                outcomes.lock().unwrap().push(result.clone());
                match result {
                    Ok(v) => Ok(ToolOutcome::Output(format!("collected {v}"))),
                    Err(e) => Err(ToolError::new(e.to_string())),
                }
            }
        },
    )
    .unwrap()
}

fn instructions(req: &ChatRequest) -> String {
    req.chat_ctx
        .instructions()
        .and_then(|m| m.text_content())
        .unwrap_or_default()
}

fn last_user(req: &ChatRequest) -> Option<String> {
    req.chat_ctx
        .last_message(ChatRole::User)
        .and_then(|m| m.text_content())
}

fn has_tool_output(req: &ChatRequest) -> bool {
    matches!(
        req.chat_ctx.last_item(),
        Some(ChatItem::FunctionCallOutput(_))
    )
}

/// The model: the caller calls its `start` tool on "register" and answers "All done." after a tool output; a
/// task asks its question when entered (one-off instructions "ask") and records whatever the user said with its
/// `record_<what>` tool, or calls `out_of_scope` on "go back to <id>".
fn task_answers(llm: FakeLlm) -> FakeLlm {
    llm.with_responder(|req| {
        let instr = instructions(req);
        if instr == "ask" {
            let what = req
                .tools
                .first()
                .map(|t| t.name.clone())
                .unwrap_or_default();
            return FakeResponse::text(format!(
                "Please give me your {}.",
                what.trim_start_matches("record_")
            ));
        }
        if instr.starts_with("task:") {
            let tool = req
                .tools
                .iter()
                .find(|t| t.name.starts_with("record_"))
                .map(|t| t.name.clone())
                .unwrap_or_default();
            let said = last_user(req).unwrap_or_default();
            if let Some(ids) = said.strip_prefix("go back to ") {
                return FakeResponse::tool_call(
                    "out_of_scope",
                    json!({"task_ids": [ids]}).to_string(),
                );
            }
            return FakeResponse::tool_call(tool, json!({"value": said}).to_string());
        }
        if has_tool_output(req) {
            return FakeResponse::text("All done.");
        }
        match last_user(req).as_deref() {
            Some("register") => FakeResponse::tool_call("start", "{}"),
            _ => FakeResponse::text("How can I help?"),
        }
    })
}

fn said(text: &'static str) -> impl Fn(&SessionEvent) -> bool {
    move |e| match e {
        SessionEvent::ConversationItemAdded {
            item: ChatItem::Message(m),
        } => m.text_content().as_deref() == Some(text),
        _ => false,
    }
}

fn current_agent_instructions(r: &session_common::Rig) -> String {
    r.session
        .current_agent()
        .map(|a| a.instructions().to_owned())
        .unwrap_or_default()
}

/// Waits until the task's agent is the current one and has asked its question.
async fn wait_for_task(r: &session_common::Rig, question: &'static str) {
    r.rec.wait_for(ms(10_000), said(question)).await;
    assert!(current_agent_instructions(r).starts_with("task:"));
}

#[tokio::test(start_paused = true)]
async fn a_task_returns_its_value_to_the_callers_tool_and_merges_its_items_behaviour_122() {
    let r = rig(task_answers(FakeLlm::new()));
    let caller_entered = Arc::new(AtomicUsize::new(0));
    let task_entered = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let te = Arc::clone(&task_entered);
    let caller = Agent::builder("caller")
        .tool(caller_tool("start", Arc::clone(&outcomes), move || {
            ask_task("email", Arc::clone(&te))
        }))
        .hooks(Hooks {
            entered: Arc::clone(&caller_entered),
            greeting: None,
        })
        .build()
        .unwrap();
    r.start(caller).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    wait_for_task(&r, "Please give me your email.").await;
    assert_eq!(task_entered.load(Ordering::SeqCst), 1);
    // The user answers the task (a user turn reaches the current activity: the task's).
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("ada@example.com"))
        .unwrap();
    r.rec.wait_for(ms(10_000), said("All done.")).await;

    assert_eq!(
        outcomes.lock().unwrap().clone(),
        vec![Ok("ada@example.com".to_owned())]
    );
    assert_eq!(
        caller_entered.load(Ordering::SeqCst),
        1,
        "the caller's on_enter does not run again"
    );
    assert_eq!(current_agent_instructions(&r), "caller");
    // The caller's follow-up request holds the task's messages (merged), not its function calls or
    // instructions, then the caller's own tool call and output.
    let follow_up = r
        .llm
        .requests()
        .into_iter()
        .rfind(|q| instructions(q) == "caller")
        .unwrap();
    let items = follow_up.chat_ctx.items();
    let texts: Vec<(ChatRole, String)> = items
        .iter()
        .filter_map(ChatItem::as_message)
        .filter(|m| !m.role.is_instructions())
        .map(|m| (m.role, m.text_content().unwrap_or_default()))
        .collect();
    assert_eq!(
        texts,
        vec![
            (ChatRole::User, "register".to_owned()),
            (ChatRole::Assistant, "Please give me your email.".to_owned()),
            (ChatRole::User, "ada@example.com".to_owned()),
        ]
    );
    let names: Vec<&str> = items.iter().filter_map(ChatItem::function_name).collect();
    assert_eq!(
        names,
        vec!["start", "start"],
        "the task's record_email call stays out"
    );
    let output = items
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .unwrap();
    assert_eq!(output.output, "collected ada@example.com");
    // The session history records the switch to the task and back.
    let handoffs = r
        .session
        .history()
        .items()
        .iter()
        .filter(|i| i.as_agent_handoff().is_some())
        .count();
    assert_eq!(handoffs, 2);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_that_fails_returns_the_error_to_the_caller() {
    let r = rig(task_answers(FakeLlm::new()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let caller = Agent::builder("caller")
        .tool(caller_tool("start", Arc::clone(&outcomes), move || {
            ask_task("email", Arc::clone(&entered))
        }))
        .build()
        .unwrap();
    r.start(caller).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    wait_for_task(&r, "Please give me your email.").await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("fail"))
        .unwrap();
    r.rec.wait_for(ms(10_000), said("All done.")).await;
    assert_eq!(
        outcomes.lock().unwrap().clone(),
        vec![Err(TaskError::failed("the user refused"))]
    );
    let output = r
        .llm
        .last_request()
        .unwrap()
        .chat_ctx
        .items()
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .cloned()
        .unwrap();
    assert!(output.is_error);
    assert_eq!(output.output, "task failed: the user refused");
    assert_eq!(current_agent_instructions(&r), "caller");
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_run_from_inside_a_task_is_refused_as_nested() {
    let r = rig(task_answers(FakeLlm::new()));
    let inner: Arc<Mutex<Vec<Result<String, TaskError>>>> = Arc::default();
    let outer = Arc::new(Mutex::new(Vec::new()));
    let inner2 = Arc::clone(&inner);
    let make_outer = move || {
        let (completer, result) = completion::<String>();
        let inner = Arc::clone(&inner2);
        // The task's greeting hook tries to run another task, then completes with what it got.
        struct Nest {
            completer: TaskCompleter<String>,
            inner: Arc<Mutex<Vec<Result<String, TaskError>>>>,
        }
        #[async_trait]
        impl AgentHooks for Nest {
            async fn on_enter(&self, session: &SessionHandle) {
                let (_c, res) = completion::<String>();
                let got = session
                    .run_task(AgentTask::new(Agent::new("task:inner"), res))
                    .await;
                self.inner.lock().unwrap().push(got.clone());
                let _ = self
                    .completer
                    .complete(got.map_err(|e| TaskError::failed(e.to_string())));
            }
        }
        let agent = Agent::builder("task:outer")
            .hooks(Nest { completer, inner })
            .build()
            .unwrap();
        AgentTask::new(agent, result)
    };
    let caller = Agent::builder("caller")
        .tool(caller_tool("start", Arc::clone(&outer), make_outer))
        .build()
        .unwrap();
    r.start(caller).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    r.rec.wait_for(ms(10_000), said("All done.")).await;
    assert_eq!(inner.lock().unwrap().clone(), vec![Err(TaskError::Nested)]);
    assert_eq!(
        outer.lock().unwrap().clone(),
        vec![Err(TaskError::failed(TaskError::Nested.to_string()))]
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn closing_the_session_during_a_task_ends_it_with_a_session_error() {
    let r = rig(task_answers(FakeLlm::new()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let caller = Agent::builder("caller")
        .tool(caller_tool("start", Arc::clone(&outcomes), move || {
            ask_task("email", Arc::clone(&entered))
        }))
        .build()
        .unwrap();
    r.start(caller).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    wait_for_task(&r, "Please give me your email.").await;
    r.session.close().await.unwrap();
    let got = outcomes.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(matches!(&got[0], Err(TaskError::Session(_))), "{got:?}");
}

#[tokio::test(start_paused = true)]
async fn a_handoff_during_a_task_ends_it_and_the_caller_does_not_resume() {
    let r = rig(task_answers(FakeLlm::new()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let caller = Agent::builder("caller")
        .tool(caller_tool("start", Arc::clone(&outcomes), move || {
            ask_task("email", Arc::clone(&entered))
        }))
        .build()
        .unwrap();
    r.start(caller).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    wait_for_task(&r, "Please give me your email.").await;
    r.session.update_agent(Agent::new("other")).unwrap();
    let end = tokio::time::Instant::now() + ms(10_000);
    while current_agent_instructions(&r) != "other" {
        assert!(tokio::time::Instant::now() < end, "handoff not done");
        tokio::time::sleep(ms(5)).await;
    }
    tokio::time::sleep(ms(100)).await;
    assert_eq!(current_agent_instructions(&r), "other");
    // The caller was closed with its waiting tool: the error never reaches a model, nothing runs on.
    let got = outcomes.lock().unwrap().clone();
    assert!(
        got.is_empty() || got == vec![Err(TaskError::HandedOff)],
        "{got:?}"
    );
    assert!(
        r.llm
            .requests()
            .iter()
            .all(|q| instructions(q) != "caller" || !has_tool_output(q)),
        "the caller does not resume after a handoff"
    );
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_group_returns_every_result_in_order_and_lets_the_user_go_back() {
    let r = rig(task_answers(FakeLlm::new()));
    type Collected = Option<Vec<(String, String)>>;
    let results: Arc<Mutex<Collected>> = Arc::default();
    let runs = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let results2 = Arc::clone(&results);
    let runs2 = Arc::clone(&runs);
    let start = FunctionTool::raw(
        "start",
        "Starts the intake.",
        json!({"type": "object", "properties": {}}),
        move |ctx, _args| {
            let results = Arc::clone(&results2);
            let runs = Arc::clone(&runs2);
            async move {
                let entered = Arc::new(AtomicUsize::new(0));
                let (e1, e2) = (Arc::clone(&entered), Arc::clone(&entered));
                let (r1, r2) = (Arc::clone(&runs), Arc::clone(&runs));
                let group = TaskGroup::new()
                    .add("name", "Collect the user's name", move || {
                        r1.lock().unwrap().push("name");
                        Ok(ask_task("name", Arc::clone(&e1)))
                    })
                    .add("email", "Collect the user's email", move || {
                        r2.lock().unwrap().push("email");
                        Ok(ask_task("email", Arc::clone(&e2)))
                    });
                let mut out = group
                    .run(ctx.session())
                    .await
                    .map_err(|e| ToolError::new(e.to_string()))?;
                let ids: Vec<String> = out.ids().to_vec();
                let mut pairs = Vec::new();
                for id in ids {
                    let v: String = out.take(&id).unwrap().unwrap();
                    pairs.push((id, v));
                }
                *results.lock().unwrap() = Some(pairs.clone());
                Ok(ToolOutcome::Output(format!("{pairs:?}")))
            }
        },
    )
    .unwrap();
    r.start(Agent::builder("caller").tool(start).build().unwrap())
        .await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    wait_for_task(&r, "Please give me your name.").await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("Ada"))
        .unwrap();
    r.rec
        .wait_for(ms(10_000), said("Please give me your email."))
        .await;
    // The second task offers the way back to the first.
    let email_req = r
        .llm
        .requests()
        .into_iter()
        .rfind(|q| instructions(q) == "ask")
        .unwrap();
    let tool_names: Vec<&str> = email_req.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tool_names, vec!["record_email", "out_of_scope"]);
    // The task starts from the group's shared context: it knows the name was given.
    assert!(
        email_req
            .chat_ctx
            .messages()
            .any(|m| m.text_content().as_deref() == Some("Ada"))
    );
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("go back to name"))
        .unwrap();
    let end = tokio::time::Instant::now() + ms(10_000);
    while runs.lock().unwrap().len() < 3 {
        assert!(tokio::time::Instant::now() < end, "no regression");
        tokio::time::sleep(ms(5)).await;
    }
    tokio::time::sleep(ms(2_000)).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("Ada Lovelace"))
        .unwrap();
    let end = tokio::time::Instant::now() + ms(10_000);
    while runs.lock().unwrap().len() < 4 {
        assert!(tokio::time::Instant::now() < end, "email not asked again");
        tokio::time::sleep(ms(5)).await;
    }
    tokio::time::sleep(ms(2_000)).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("ada@example.com"))
        .unwrap();
    r.rec.wait_for(ms(10_000), said("All done.")).await;
    assert_eq!(
        runs.lock().unwrap().clone(),
        vec!["name", "email", "name", "email"]
    );
    assert_eq!(
        results.lock().unwrap().clone().unwrap(),
        vec![
            ("name".to_owned(), "Ada Lovelace".to_owned()),
            ("email".to_owned(), "ada@example.com".to_owned()),
        ]
    );
    r.session.close().await.unwrap();
}

#[tokio::test]
async fn run_task_outside_a_session_is_refused() {
    let (_c, result) = completion::<u32>();
    let got = SessionHandle::detached()
        .run_task(AgentTask::new(Agent::new("x"), result))
        .await;
    assert_eq!(
        got,
        Err(TaskError::Session(agents_core::SessionError::NotRunning))
    );
}

#[tokio::test(start_paused = true)]
async fn the_callers_speech_plays_out_before_the_task_starts() {
    let llm = task_answers(FakeLlm::new()).push_response(
        FakeResponse::text("Sure, let me ask you a few questions.").then_tool_call("start", "{}"),
    );
    let r = rig(llm);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let te = Arc::clone(&entered);
    let caller = Agent::builder("caller")
        .tool(caller_tool("start", Arc::clone(&outcomes), move || {
            ask_task("email", Arc::clone(&te))
        }))
        .build()
        .unwrap();
    r.start(caller).await;
    let speech = r
        .session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    // The tool starts while the reply plays; the task waits for its playout.
    while !speech.done() {
        assert_eq!(
            entered.load(Ordering::SeqCst),
            0,
            "the task started while the caller spoke"
        );
        tokio::time::sleep(ms(5)).await;
    }
    wait_for_task(&r, "Please give me your email.").await;
    let events = r.rec.events();
    let pos = |text: &'static str| events.iter().position(said(text)).unwrap();
    assert!(pos("Sure, let me ask you a few questions.") < pos("Please give me your email."));
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_run_from_on_enter_resumes_the_agent_without_entering_it_again() {
    struct Greeter {
        entered: Arc<AtomicUsize>,
        task_entered: Arc<AtomicUsize>,
        got: Arc<Mutex<Vec<Result<String, TaskError>>>>,
    }
    #[async_trait]
    impl AgentHooks for Greeter {
        async fn on_enter(&self, session: &SessionHandle) {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let got = session
                .run_task(ask_task("consent", Arc::clone(&self.task_entered)))
                .await;
            self.got.lock().unwrap().push(got);
        }
    }
    let r = rig(task_answers(FakeLlm::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let task_entered = Arc::new(AtomicUsize::new(0));
    let got: Arc<Mutex<Vec<Result<String, TaskError>>>> = Arc::default();
    r.start(
        Agent::builder("caller")
            .hooks(Greeter {
                entered: Arc::clone(&entered),
                task_entered: Arc::clone(&task_entered),
                got: Arc::clone(&got),
            })
            .build()
            .unwrap(),
    )
    .await;
    wait_for_task(&r, "Please give me your consent.").await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("yes"))
        .unwrap();
    let end = tokio::time::Instant::now() + ms(10_000);
    while got.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < end, "task never returned");
        tokio::time::sleep(ms(5)).await;
    }
    assert_eq!(got.lock().unwrap().clone(), vec![Ok("yes".to_owned())]);
    assert_eq!(entered.load(Ordering::SeqCst), 1);
    assert_eq!(task_entered.load(Ordering::SeqCst), 1);
    assert_eq!(current_agent_instructions(&r), "caller");
    // The resumed agent answers the next turn with the task's exchange in its context.
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("hello"))
        .unwrap();
    r.rec.wait_for(ms(10_000), said("How can I help?")).await;
    let req = r.llm.last_request().unwrap();
    assert_eq!(instructions(&req), "caller");
    let texts: Vec<String> = req
        .chat_ctx
        .messages()
        .filter(|m| !m.role.is_instructions())
        .map(|m| m.text_content().unwrap_or_default())
        .collect();
    assert_eq!(texts, vec!["Please give me your consent.", "yes", "hello"]);
    r.session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_nobody_can_complete_ends_as_not_completed_and_the_caller_resumes() {
    let r = rig(task_answers(FakeLlm::new()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let caller = Agent::builder("caller")
        .tool(caller_tool("start", Arc::clone(&outcomes), || {
            // The completer is dropped at once: nothing in the task can complete it.
            let (_completer, result) = completion::<String>();
            AgentTask::new(Agent::new("task:none"), result)
        }))
        .build()
        .unwrap();
    r.start(caller).await;
    r.session
        .generate_reply(ReplyRequest::new().with_user_input("register"))
        .unwrap();
    r.rec.wait_for(ms(10_000), said("All done.")).await;
    assert_eq!(
        outcomes.lock().unwrap().clone(),
        vec![Err(TaskError::NotCompleted)]
    );
    assert_eq!(current_agent_instructions(&r), "caller");
    r.session.close().await.unwrap();
}

/// On consent-style tasks run from `on_enter`: the user's speech during the task reaches the task's agent, and
/// the caller's recognition is stopped while it is suspended, then restarted.
#[tokio::test(start_paused = true)]
async fn user_speech_during_a_task_goes_to_the_task_and_the_caller_listens_again_after() {
    use agents_audio::SampleRate;
    use agents_core::{AudioInput, SessionIo};
    use agents_pipeline::interruption::InterruptionOptions;
    use agents_pipeline::{AgentSession, SessionOptions};
    use agents_testkit::signal::sequence;
    use agents_testkit::{FakeAudioOutput, FakeStt, FakeTextOutput, FakeTts, FakeVad};

    struct Starter {
        got: Arc<Mutex<Vec<Result<String, TaskError>>>>,
    }
    #[async_trait]
    impl AgentHooks for Starter {
        async fn on_enter(&self, session: &SessionHandle) {
            let got = session
                .run_task(ask_task("email", Arc::new(AtomicUsize::new(0))))
                .await;
            self.got.lock().unwrap().push(got);
        }
    }

    // Silence while the task asks, then the answer, silence, a second utterance for the caller, silence.
    let parts = [
        (false, 4_000),
        (true, 800),
        (false, 4_000),
        (true, 600),
        (false, 3_000),
    ];
    let mut speech = Vec::new();
    let mut t = 0;
    for &(s, d) in &parts {
        if s {
            speech.push((ms(t), ms(t + d)));
        }
        t += d;
    }
    let llm = task_answers(FakeLlm::new());
    let stt = Arc::new(
        FakeStt::new()
            .with_transcripts(["ada@example.com", "hello"])
            .with_min_silence(ms(100)),
    );
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .tts(Arc::new(FakeTts::new()))
        .vad(Arc::new(FakeVad::scripted(speech)))
        .stt(stt.clone())
        .options(
            SessionOptions::default()
                .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
                .with_user_away_timeout(None),
        )
        .build();
    let rec = session_common::Recorder::start(&session);
    let (tx, input) = AudioInput::channel("user", 64);
    let frames = sequence(&parts.map(|(s, d)| (s, ms(d))), SampleRate::HZ_16000);
    let got: Arc<Mutex<Vec<Result<String, TaskError>>>> = Arc::default();
    session
        .start(
            Agent::builder("caller")
                .hooks(Starter {
                    got: Arc::clone(&got),
                })
                .build()
                .unwrap(),
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(Arc::new(FakeTextOutput::new())),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut at = tokio::time::Instant::now();
        for f in frames {
            tokio::time::sleep_until(at).await;
            at += f.duration();
            if tx.send(f).await.is_err() {
                return;
            }
        }
    });
    rec.wait_for(ms(20_000), said("How can I help?")).await;
    assert_eq!(
        got.lock().unwrap().clone(),
        vec![Ok("ada@example.com".to_owned())]
    );
    let requests = llm.requests();
    let answered: Vec<(String, Option<String>)> = requests
        .iter()
        .map(|q| (instructions(q), last_user(q)))
        .collect();
    assert_eq!(
        answered,
        vec![
            ("ask".to_owned(), None),
            ("task:email".to_owned(), Some("ada@example.com".to_owned())),
            ("caller".to_owned(), Some("hello".to_owned())),
        ]
    );
    assert_eq!(
        stt.stream_count(),
        3,
        "the caller's STT stream, the task's, the caller's again"
    );
    session.close().await.unwrap();
}
