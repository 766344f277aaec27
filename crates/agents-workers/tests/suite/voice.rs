// The voice suite, included by `tests/voice.rs` (in-process bus) and `tests/voice_redis.rs` (Redis: a fresh
// channel per test, so every bridged frame, job and registry message goes through pub/sub). Each test starts from
// `new_bus()`, which the including file defines; `None` means "skip". Real time with short fake-TTS words (the
// fake audio output plays at 1x).

async fn setup() -> Option<(Arc<dyn Bus>, WorkerRunner)> {
    let bus = new_bus().await?;
    let runner = runner_on("R", &bus);
    Some((bus, runner))
}

fn llm_with(responses: Vec<FakeResponse>) -> Arc<FakeLlm> {
    let mut llm = FakeLlm::new();
    for r in responses {
        llm = llm.push_response(r);
    }
    Arc::new(llm)
}

fn user_texts(llm: &FakeLlm) -> Vec<String> {
    llm.requests()
        .iter()
        .filter_map(|r| {
            r.chat_ctx
                .last_message(ChatRole::User)
                .and_then(|m| m.text_content())
        })
        .collect()
}

// 40, 43: the active bridged worker answers the session's turn and the session speaks it; an inactive one drops it.
#[tokio::test]
async fn b40_b43_active_worker_answers_and_inactive_drops() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let greeter_llm = llm_with(vec![FakeResponse::text("Hello, how can I help?")]);
    let support_llm = llm_with(vec![FakeResponse::text("never")]);
    let greeter = Arc::new(LlmWorker::new(greeter_llm.clone()).with_bridges(["voice"]));
    let support = Arc::new(LlmWorker::new(support_llm.clone()).with_bridges(["voice"]));
    runner
        .add_worker(WorkerSpec::from_arc("greeter", greeter.clone()).active())
        .await
        .unwrap();
    runner
        .add_worker(WorkerSpec::from_arc("support", support.clone()))
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;

    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("hi there"))
        .unwrap();
    within("reply played", h.wait_for_playout()).await;
    assert!(!h.interrupted());
    assert_eq!(rig.text.all_text(), "Hello, how can I help?");
    assert_eq!(rig.tts.pushed_texts().concat(), "Hello, how can I help?");
    let played = rig.out.played_segments();
    assert_eq!(played.len(), 1);
    assert!(!played[0].interrupted && played[0].position > Duration::ZERO);
    assert_eq!(user_texts(&greeter_llm), vec!["hi there".to_owned()]);
    until("support saw the turn", || support.dropped_turns() == 1).await;
    assert_eq!(
        support_llm.request_count(),
        0,
        "inactive workers drop bridged turns"
    );
    let ctx = greeter.chat_context().await;
    let last = ctx.last_message(ChatRole::Assistant).unwrap();
    assert_eq!(last.text_content().unwrap(), "Hello, how can I help?");
}

// 41: a worker bridged to named bridges ignores turns of other bridges (not even counted as dropped).
#[tokio::test]
async fn b41_worker_only_accepts_bridges_it_names() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let other_llm = llm_with(vec![FakeResponse::text("wrong bridge")]);
    let mine_llm = llm_with(vec![FakeResponse::text("Right bridge.")]);
    let other = Arc::new(LlmWorker::new(other_llm.clone()).with_bridges(["phone"]));
    let mine = Arc::new(LlmWorker::new(mine_llm.clone()).with_bridges(["voice"]));
    let unbridged_llm = llm_with(vec![FakeResponse::text("not bridged")]);
    runner
        .add_worker(WorkerSpec::from_arc("other", other.clone()).active())
        .await
        .unwrap();
    runner
        .add_worker(WorkerSpec::from_arc("mine", mine.clone()).active())
        .await
        .unwrap();
    runner
        .add_worker(WorkerSpec::new("plain", LlmWorker::new(unbridged_llm.clone())).active())
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("hello"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    assert_eq!(rig.text.all_text(), "Right bridge.");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(other_llm.request_count(), 0);
    assert_eq!(other.dropped_turns(), 0);
    assert_eq!(unbridged_llm.request_count(), 0);
    assert_eq!(mine_llm.request_count(), 1);
}

fn bridge_frames(sub: &mut Subscription) -> Vec<BridgeFrame> {
    let mut frames = Vec::new();
    while let Some(m) = sub.try_recv() {
        if let Some(f) = BridgeFrame::from_message(&m) {
            frames.push(f.unwrap());
        }
    }
    frames
}

// 42: the session's lifecycle (start, state changes, close) never crosses the bus; only conversation frames do.
#[tokio::test]
async fn b42_lifecycle_never_crosses_the_bus() {
    let Some((bus, runner)) = setup().await else {
        return;
    };
    let llm = llm_with(vec![FakeResponse::text("Hi.")]);
    runner
        .add_worker(WorkerSpec::new("agent", LlmWorker::new(llm).with_bridges(["voice"])).active())
        .await
        .unwrap();
    let mut spy = bus.subscribe("spy").unwrap();
    let rig = voice_rig(&runner, "voice").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        bridge_frames(&mut spy).is_empty(),
        "starting the session sends nothing"
    );
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("hey"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    let frames = bridge_frames(&mut spy);
    assert_eq!(
        frames.len(),
        1,
        "the spy sees the broadcast turn only: {frames:?}"
    );
    assert!(matches!(&frames[0], BridgeFrame::UserTurn { text: Some(t), .. } if t == "hey"));
    rig.session.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    while let Some(m) = spy.try_recv() {
        assert!(
            !matches!(m.body, MessageBody::Custom { .. }),
            "closing the session sent {m:?}"
        );
    }
}

// 44, 38: hand-off from the greeter's tool: the transition line is fully played, the tool call is completed
// without a second LLM run, then support is activated (never both active) and answers the next turns.
#[tokio::test]
async fn b44_handoff_speaks_transition_then_activates_target() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let greeter_llm = llm_with(vec![
        FakeResponse::text("Let me get you to our support team.").then_tool_call(
            ACTIVATE_WORKER_TOOL,
            r#"{"target": "support", "reason": "billing question"}"#,
        ),
    ]);
    // Support's first run is its greeting on activation; record what the session had played by then.
    let seen_at_activation: Arc<Mutex<Option<(usize, bool)>>> = Arc::default();
    let out_slot: Arc<Mutex<Option<Arc<FakeAudioOutput>>>> = Arc::default();
    let (seen, slot) = (seen_at_activation.clone(), out_slot.clone());
    let support_llm = Arc::new(
        FakeLlm::new()
            .push_response(FakeResponse::text(
                "Support here, what is the billing issue?",
            ))
            .push_response(FakeResponse::text("Your refund is on its way.")),
    );
    let greeter = Arc::new(
        LlmWorker::new(greeter_llm.clone())
            .with_instructions("You are the greeter.")
            .with_bridges(["voice"])
            .with_handoff_targets(["support"]),
    );
    let support = Arc::new(
        LlmWorker::new(support_llm.clone())
            .with_instructions("You are support.")
            .with_bridges(["voice"]),
    );
    let g = runner
        .add_worker(WorkerSpec::from_arc("greeter", greeter.clone()).active())
        .await
        .unwrap();
    let s = runner
        .add_worker(WorkerSpec::from_arc("support", support.clone()))
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    *slot.lock().unwrap() = Some(rig.out.clone());

    // Never two active at once: sample both flags for the whole hand-off.
    let both_active = Arc::new(Mutex::new(false));
    let sampler = {
        let (g, s, both) = (g.clone(), s.clone(), both_active.clone());
        tokio::spawn(async move {
            loop {
                if g.is_active() && s.is_active() {
                    *both.lock().unwrap() = true;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    // Record the played segments when support's on_activated runs its LLM (it reads `out` then).
    let watcher = {
        let (s, seen, slot) = (s.clone(), seen.clone(), slot.clone());
        tokio::spawn(async move {
            while !s.is_active() {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let out = slot.lock().unwrap().clone().unwrap();
            let played = out.played_segments();
            *seen.lock().unwrap() = Some((played.len(), played.iter().any(|p| p.interrupted)));
        })
    };

    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("I was charged twice"))
        .unwrap();
    within("transition played", h.wait_for_playout()).await;
    until("support active", || s.is_active()).await;
    within("watcher", watcher).await.unwrap();
    assert!(!g.is_active());
    let (segments, interrupted) = seen_at_activation.lock().unwrap().unwrap();
    assert_eq!(
        (segments, interrupted),
        (1, false),
        "the transition line was fully played before the target became active"
    );
    assert_eq!(
        rig.out.played_segments()[0].position,
        rig.tts
            .audio_duration("Let me get you to our support team.")
    );

    // Support's greeting is spoken through the bridge.
    until("support greeting spoken", || {
        rig.text
            .all_text()
            .contains("Support here, what is the billing issue?")
    })
    .await;
    assert_eq!(
        greeter_llm.request_count(),
        1,
        "no LLM run after the hand-off tool"
    );
    let gctx = greeter.chat_context().await;
    let items = gctx.items();
    let call = items
        .iter()
        .rev()
        .find_map(ChatItem::as_function_call)
        .unwrap();
    let output = items
        .iter()
        .rev()
        .find_map(ChatItem::as_function_call_output)
        .unwrap();
    assert_eq!(call.name, ACTIVATE_WORKER_TOOL);
    assert_eq!(
        (
            output.call_id.as_str(),
            output.output.as_str(),
            output.is_error
        ),
        (call.call_id.as_str(), "Handed over to support.", false)
    );
    let sctx = support.chat_context().await;
    assert!(
        sctx.messages().any(|m| m.role == ChatRole::Developer
            && m.text_content().unwrap().contains("billing question"))
    );
    let req = &greeter_llm.requests()[0];
    assert_eq!(req.tools.len(), 1);
    assert_eq!(
        req.tools[0].parameters["properties"]["target"]["enum"],
        json!(["support"])
    );

    // The next turn goes to support; the greeter drops it.
    let h2 = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("when do I get my money?"))
        .unwrap();
    within("support reply", h2.wait_for_playout()).await;
    assert!(rig.text.all_text().ends_with("Your refund is on its way."));
    assert_eq!(
        user_texts(&support_llm).last().unwrap(),
        "when do I get my money?"
    );
    assert_eq!(greeter.dropped_turns(), 1);
    sampler.abort();
    assert!(
        !*both_active.lock().unwrap(),
        "greeter and support were active at once"
    );
}

// 44: a hand-off to a worker not in the allowed list is refused: an error output, no activation.
#[tokio::test]
async fn handoff_to_an_unknown_target_is_refused() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let llm = llm_with(vec![
        FakeResponse::text("Transferring.")
            .then_tool_call(ACTIVATE_WORKER_TOOL, r#"{"target": "admin"}"#),
    ]);
    let greeter = Arc::new(
        LlmWorker::new(llm.clone())
            .with_bridges(Vec::<String>::new())
            .with_handoff_targets(["support"]),
    );
    let g = runner
        .add_worker(WorkerSpec::from_arc("greeter", greeter.clone()).active())
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("let me in"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(g.is_active(), "still the active agent");
    let ctx = greeter.chat_context().await;
    let out = ctx
        .items()
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .unwrap();
    assert!(out.is_error && out.output.contains("admin"), "{out:?}");
}

// 48 (cancel_on_interruption default): barge-in drops the reply stream, which cancels the worker's turn.
#[tokio::test]
async fn barge_in_cancels_the_workers_turn() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let llm = Arc::new(
        FakeLlm::new()
            .push_response(
                FakeResponse::chunks(["one ", "two ", "three ", "four ", "five"])
                    .with_inter_token_delay(Duration::from_millis(300)),
            )
            .push_response(FakeResponse::text("Second answer.")),
    );
    let worker = Arc::new(LlmWorker::new(llm.clone()).with_bridges(["voice"]));
    runner
        .add_worker(WorkerSpec::from_arc("agent", worker.clone()).active())
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("count"))
        .unwrap();
    until("first words at the TTS", || rig.tts.pushed_texts().concat().contains("one")).await;
    rig.session.interrupt().await.unwrap();
    within("interrupted", h.wait_for_playout()).await;
    assert!(h.interrupted());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let ctx = worker.chat_context().await;
    assert!(
        ctx.last_message(ChatRole::Assistant).is_none(),
        "the cancelled turn never completed in the worker: {:?}",
        ctx.items()
    );
    let h2 = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("again"))
        .unwrap();
    within("second", h2.wait_for_playout()).await;
    assert!(rig.text.all_text().ends_with("Second answer."));
}

// No active worker: the reply fails with a timeout error instead of hanging, and the session keeps running.
#[tokio::test]
async fn no_active_worker_fails_by_reply_timeout() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    runner
        .add_worker(WorkerSpec::new(
            "idle",
            LlmWorker::new(llm_with(vec![])).with_bridges(["voice"]),
        ))
        .await
        .unwrap();
    let bridge = VoiceBridge::new().with_reply_timeout(Duration::from_millis(200));
    let session = AgentSession::builder()
        .llm(bridge.llm())
        .tts(Arc::new(FakeTts::new()))
        .build();
    bridge.attach(&session);
    runner
        .add_worker(WorkerSpec::new("voice", bridge.clone()))
        .await
        .unwrap();
    let mut events = session.events();
    session
        .start(
            Agent::new(""),
            SessionIo::new()
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(Arc::new(FakeTextOutput::new())),
        )
        .await
        .unwrap();
    let h = session
        .generate_reply(ReplyRequest::new().with_user_input("anyone?"))
        .unwrap();
    within("reply ends", h.wait_for_playout()).await;
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

/// A specialist: streams a progress line, then answers with its advice.
struct Specialist;

#[async_trait::async_trait]
impl Worker for Specialist {
    fn job_handlers(&self) -> JobHandlers<Self> {
        JobHandlers::new().job("advise", |_w: Arc<Self>, job: Job| async move {
            let me = job.context().name().to_owned();
            let query = job
                .payload()
                .and_then(|p| p.get("query"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            job.update(json!({"text": format!("The {me} desk is on it.")}))
                .await
                .map_err(|e| JobFailure::Error(e.to_string()))?;
            Ok(json!({"advice": format!("{me} advice for {query}")}))
        })
    }
}

// A job group from a session tool: three specialists asked in parallel, their progress spoken, the combined
// result returned to the model, which answers from it.
#[tokio::test]
async fn job_group_tool_speaks_progress_and_answers_with_combined_result() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    for name in ["flights", "hotels", "weather"] {
        runner
            .add_worker(WorkerSpec::new(name, Specialist))
            .await
            .unwrap();
    }
    let requester = runner
        .add_worker(WorkerSpec::new("voice-agent", VoiceBridge::new()))
        .await
        .unwrap();
    let tool = job_group_tool(
        requester.context().clone(),
        JobGroupTool::new(
            "ask_specialists",
            "Ask the travel specialists.",
            ["flights", "hotels", "weather"],
        )
        .with_job_name("advise")
        .with_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let llm = Arc::new(
        FakeLlm::new()
            .push_response(FakeResponse::tool_call(
                "ask_specialists",
                r#"{"query": "Lisbon in May"}"#,
            ))
            .push_response(FakeResponse::text("Here is your combined plan.")),
    );
    let tts = Arc::new(FakeTts::new().with_word_duration(Duration::from_millis(10)));
    let text = Arc::new(FakeTextOutput::new());
    let session = AgentSession::builder()
        .llm(llm.clone())
        .tts(tts.clone())
        .build();
    session
        .start(
            Agent::builder("You plan trips.")
                .tool(tool)
                .build()
                .unwrap(),
            SessionIo::new()
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(text.clone()),
        )
        .await
        .unwrap();
    session
        .generate_reply(ReplyRequest::new().with_user_input("plan my trip"))
        .unwrap();
    until("final answer", || {
        text.all_text().contains("Here is your combined plan.")
    })
    .await;
    let spoken = tts.pushed_texts().concat();
    for name in ["flights", "hotels", "weather"] {
        assert!(
            spoken.contains(&format!("The {name} desk is on it.")),
            "progress of {name} spoken: {spoken}"
        );
    }
    let second = &llm.requests()[1];
    let out = second
        .chat_ctx
        .items()
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .unwrap();
    assert!(!out.is_error);
    let combined: Value = serde_json::from_str(&out.output).unwrap();
    assert_eq!(
        combined,
        json!({
            "flights": {"advice": "flights advice for Lisbon in May"},
            "hotels": {"advice": "hotels advice for Lisbon in May"},
            "weather": {"advice": "weather advice for Lisbon in May"},
        })
    );
}

// A job group tool whose workers are missing reports an error to the model (no hang, no panic).
#[tokio::test]
async fn job_group_tool_reports_unavailable_workers_to_the_model() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let requester = runner
        .add_worker(WorkerSpec::new("voice-agent", VoiceBridge::new()))
        .await
        .unwrap();
    let tool = job_group_tool(
        requester.context().clone(),
        JobGroupTool::new("ask", "Ask.", ["ghost"]).with_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let llm = Arc::new(
        FakeLlm::new()
            .push_response(FakeResponse::tool_call("ask", r#"{"query": "x"}"#))
            .push_response(FakeResponse::text("Sorry.")),
    );
    let text = Arc::new(FakeTextOutput::new());
    let session = AgentSession::builder()
        .llm(llm.clone())
        .tts(Arc::new(
            FakeTts::new().with_word_duration(Duration::from_millis(10)),
        ))
        .build();
    session
        .start(
            Agent::builder("x").tool(tool).build().unwrap(),
            SessionIo::new()
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(text.clone()),
        )
        .await
        .unwrap();
    session
        .generate_reply(ReplyRequest::new().with_user_input("go"))
        .unwrap();
    until("answer", || text.all_text().contains("Sorry.")).await;
    let out = llm.requests()[1]
        .chat_ctx
        .items()
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .cloned()
        .unwrap();
    assert!(
        out.is_error && out.output.contains("unavailable"),
        "{out:?}"
    );
}

// Malformed bridge frames are logged and skipped; the bridge keeps working.
#[tokio::test]
async fn malformed_bridge_frames_are_skipped() {
    let Some((bus, runner)) = setup().await else {
        return;
    };
    let llm = llm_with(vec![FakeResponse::text("Still fine.")]);
    runner
        .add_worker(WorkerSpec::new("agent", LlmWorker::new(llm).with_bridges(["voice"])).active())
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    for target in ["agent", "voice"] {
        bus.send(BusMessage::new(
            "mallory",
            Some(target.to_owned()),
            MessageBody::Custom {
                name: BRIDGE_MESSAGE.to_owned(),
                data: json!({"frame": "user_turn", "turn_id": 5}),
            },
        ))
        .await
        .unwrap();
    }
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("ok?"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    assert_eq!(rig.text.all_text(), "Still fine.");
    let _ = rig.session.history();
}

/// Arguments of the worker tool in the tests below.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct LookupArgs {
    /// The order number.
    order: u64,
}

async fn lookup(
    ctx: agents_core::tools::RunContext<WorkerToolContext>,
    args: LookupArgs,
) -> Result<String, agents_core::tools::ToolError> {
    // The tool reaches the bus through its worker's context: a job on the "orders" worker.
    let job = ctx
        .userdata()
        .job(
            "orders",
            JobParams::new()
                .with_name("status")
                .with_payload(json!({"order": args.order}))
                .with_timeout(Duration::from_secs(5)),
        )
        .await
        .map_err(|e| agents_core::tools::ToolError::new(e.to_string()))?;
    let status = job
        .response()
        .await
        .map_err(|e| agents_core::tools::ToolError::new(e.to_string()))?;
    Ok(status.to_string())
}

struct Orders;

#[async_trait::async_trait]
impl Worker for Orders {
    fn job_handlers(&self) -> JobHandlers<Self> {
        JobHandlers::new().job("status", |_w: Arc<Self>, job: Job| async move {
            let order = job.payload().and_then(|p| p.get("order")).cloned();
            if order == Some(json!(0)) {
                std::future::pending::<()>().await;
            }
            Ok(json!({"order": order, "status": "shipped"}))
        })
    }
}

fn lookup_tool() -> agents_core::tools::FunctionTool {
    agents_core::tools::FunctionTool::builder(lookup)
        .name("lookup")
        .description("Looks an order up.")
        .build()
        .unwrap()
}

// A worker's own tool in a bridged turn: it runs a job over the bus, its output goes back to the model, and the
// follow-up is streamed to the session and spoken (one turn, two LLM runs).
#[tokio::test]
async fn worker_tool_runs_over_the_bus_and_the_follow_up_is_spoken() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    runner
        .add_worker(WorkerSpec::new("orders", Orders))
        .await
        .unwrap();
    let llm = llm_with(vec![
        FakeResponse::text("Let me check. ").then_tool_call("lookup", r#"{"order": 42}"#),
        FakeResponse::text("Order 42 has shipped."),
    ]);
    let worker = Arc::new(
        LlmWorker::new(llm.clone())
            .with_bridges(["voice"])
            .with_tool(lookup_tool()),
    );
    runner
        .add_worker(WorkerSpec::from_arc("agent", worker.clone()).active())
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("where is order 42?"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    assert_eq!(rig.text.all_text(), "Let me check. Order 42 has shipped.");
    assert_eq!(llm.request_count(), 2);
    let second = &llm.requests()[1];
    assert_eq!(second.tools.len(), 1);
    let out = second
        .chat_ctx
        .items()
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .unwrap();
    assert!(!out.is_error);
    assert_eq!(
        serde_json::from_str::<Value>(&out.output).unwrap(),
        json!({"order": 42, "status": "shipped"})
    );
}

// 48: a tool timeout turns into an error output for the model (default: none; set per tool).
#[tokio::test]
async fn worker_tool_timeout_is_reported_to_the_model() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    runner
        .add_worker(WorkerSpec::new("orders", Orders))
        .await
        .unwrap();
    let llm = llm_with(vec![
        FakeResponse::tool_call("lookup", r#"{"order": 0}"#),
        FakeResponse::text("Sorry, the order system is slow."),
    ]);
    let worker = Arc::new(
        LlmWorker::new(llm.clone())
            .with_bridges(["voice"])
            .with_tool(lookup_tool())
            .with_tool_options(
                "lookup",
                ToolOptions::default().with_timeout(Duration::from_millis(100)),
            ),
    );
    runner
        .add_worker(WorkerSpec::from_arc("agent", worker).active())
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("order 0?"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    assert_eq!(rig.text.all_text(), "Sorry, the order system is slow.");
    let out = llm.requests()[1]
        .chat_ctx
        .items()
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .cloned()
        .unwrap();
    assert!(out.is_error && out.output.contains("timed out"), "{out:?}");
    assert_eq!(
        ToolOptions::default(),
        ToolOptions::default().with_cancel_on_interruption(true)
    );
    assert_eq!(ToolOptions::default().timeout, None);
}

/// Counts completed runs of a slow tool.
static SLOW_DONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Arguments of the slow tool.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SlowArgs {}

async fn slow(_args: SlowArgs) -> Result<String, agents_core::tools::ToolError> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    SLOW_DONE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok("done".to_owned())
}

// 48: barge-in cancels a running tool by default; a tool with cancel_on_interruption = false completes.
#[tokio::test]
async fn barge_in_cancels_tools_unless_they_opt_out() {
    for (cancel, expected) in [(true, 0), (false, 1)] {
        SLOW_DONE.store(0, std::sync::atomic::Ordering::SeqCst);
        let Some((_bus, runner)) = setup().await else {
        return;
    };
        let llm = llm_with(vec![
            FakeResponse::text("Working on it. ").then_tool_call("slow", "{}"),
        ]);
        let tool = agents_core::tools::FunctionTool::builder(slow)
            .name("slow")
            .description("Slow.")
            .build()
            .unwrap();
        let worker = LlmWorker::new(llm)
            .with_bridges(["voice"])
            .with_tool(tool)
            .with_tool_options(
                "slow",
                ToolOptions::default().with_cancel_on_interruption(cancel),
            );
        runner
            .add_worker(WorkerSpec::new("agent", worker).active())
            .await
            .unwrap();
        let rig = voice_rig(&runner, "voice").await;
        let h = rig
            .session
            .generate_reply(ReplyRequest::new().with_user_input("go"))
            .unwrap();
        until("first words at the TTS", || {
            rig.tts.pushed_texts().concat().contains("Working")
        }).await;
        rig.session.interrupt().await.unwrap();
        within("interrupted", h.wait_for_playout()).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            SLOW_DONE.load(std::sync::atomic::Ordering::SeqCst),
            expected,
            "cancel_on_interruption = {cancel}"
        );
    }
}

// A user turn arriving while the transition line plays is not lost: the handing-off worker answers it empty (no
// error, no wait) and passes the words to the target, whose first reply sees them.
#[tokio::test]
async fn turn_during_handoff_is_deferred_to_the_target() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let greeter_llm = llm_with(vec![
        FakeResponse::text("One moment please, I am transferring you to support now.")
            .then_tool_call(ACTIVATE_WORKER_TOOL, r#"{"target": "support"}"#),
    ]);
    let support_llm = llm_with(vec![FakeResponse::text("Support here, about your card.")]);
    let greeter = Arc::new(
        LlmWorker::new(greeter_llm)
            .with_bridges(["voice"])
            .with_handoff_targets(["support"]),
    );
    let g = runner
        .add_worker(WorkerSpec::from_arc("greeter", greeter.clone()).active())
        .await
        .unwrap();
    let s = runner
        .add_worker(WorkerSpec::new(
            "support",
            LlmWorker::new(support_llm.clone()).with_bridges(["voice"]),
        ))
        .await
        .unwrap();
    // Slow words: the transition line plays for about a second.
    let bridge = VoiceBridge::new().with_reply_timeout(Duration::from_secs(5));
    let text = Arc::new(FakeTextOutput::new());
    let session = AgentSession::builder()
        .llm(bridge.llm())
        .tts(Arc::new(
            FakeTts::new().with_word_duration(Duration::from_millis(100)),
        ))
        .build();
    bridge.attach(&session);
    runner
        .add_worker(WorkerSpec::new("voice", bridge))
        .await
        .unwrap();
    let mut events = session.events();
    session
        .start(
            Agent::new(""),
            SessionIo::new()
                .with_audio_output(Arc::new(FakeAudioOutput::new()))
                .with_text_output(text.clone()),
        )
        .await
        .unwrap();
    let h = session
        .generate_reply(ReplyRequest::new().with_user_input("my card was stolen"))
        .unwrap();
    until("transition text", || {
        text.all_text().contains("support now.")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(g.is_active() && !h.done(), "still playing the transition");
    let h2 = session
        .generate_reply(ReplyRequest::new().with_user_input("please hurry"))
        .unwrap();
    within("transition", h.wait_for_playout()).await;
    within("deferred turn answered empty", h2.wait_for_playout()).await;
    until("support active", || s.is_active()).await;
    until("support greeting", || {
        text.all_text().contains("Support here")
    })
    .await;
    let req = &support_llm.requests()[0];
    assert_eq!(
        req.chat_ctx
            .last_message(ChatRole::User)
            .and_then(|m| m.text_content())
            .as_deref(),
        Some("please hurry")
    );
    assert_eq!(greeter.dropped_turns(), 0);
    // No error event: the deferred turn did not time out.
    while let Ok(Some(e)) = tokio::time::timeout(
        Duration::from_millis(10),
        futures::StreamExt::next(&mut events),
    )
    .await
    {
        assert!(
            !matches!(e, agents_core::events::SessionEvent::Error(_)),
            "{e:?}"
        );
    }
}

// Two workers active by mistake: the reply belongs to the first that answers; the other's frames are ignored, so
// the session never speaks a mix of two replies.
#[tokio::test]
async fn a_reply_belongs_to_the_first_worker_that_answers() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    let a = llm_with(vec![
        FakeResponse::chunks(["Alpha ", "one ", "two."])
            .with_inter_token_delay(Duration::from_millis(20)),
    ]);
    let b = llm_with(vec![
        FakeResponse::chunks(["Beta ", "three ", "four."])
            .with_inter_token_delay(Duration::from_millis(20)),
    ]);
    for (name, llm) in [("a", a), ("b", b)] {
        runner
            .add_worker(WorkerSpec::new(name, LlmWorker::new(llm).with_bridges(["voice"])).active())
            .await
            .unwrap();
    }
    let rig = voice_rig(&runner, "voice").await;
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("who?"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    let said = rig.text.all_text();
    assert!(
        said == "Alpha one two." || said == "Beta three four.",
        "{said}"
    );
}

/// Arguments of the trip tool.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct TripArgs {
    /// Where to.
    city: String,
}

/// A worker tool: a job group over three specialists, each progress update spoken inside the reply.
async fn plan_trip(
    ctx: agents_core::tools::RunContext<WorkerToolContext>,
    args: TripArgs,
) -> Result<String, agents_core::tools::ToolError> {
    use futures::StreamExt;
    let err = |e: String| agents_core::tools::ToolError::new(e);
    let mut group = ctx
        .userdata()
        .job_group(
            ["flights", "hotels", "weather"],
            JobGroupParams::new()
                .with_name("advise")
                .with_payload(json!({"query": args.city}))
                .with_timeout(Duration::from_secs(5)),
        )
        .await
        .map_err(|e| err(e.to_string()))?;
    while let Some(event) = group.next().await {
        if let Some(text) = event.data.as_ref().and_then(|d| d.get("text")).and_then(Value::as_str) {
            ctx.userdata()
                .say_progress(format!("{text} "))
                .await
                .map_err(|e| err(e.to_string()))?;
        }
    }
    let responses = group.responses().await.map_err(|e| err(e.to_string()))?;
    serde_json::to_string(&responses).map_err(|e| err(e.to_string()))
}

// A tool of the agent behind the bridge runs a job group over three specialists, streams their progress as
// spoken lines inside the reply, and the follow-up answers from the combined result.
#[tokio::test]
async fn worker_tool_job_group_speaks_progress_inside_the_reply() {
    let Some((_bus, runner)) = setup().await else {
        return;
    };
    for name in ["flights", "hotels", "weather"] {
        runner.add_worker(WorkerSpec::new(name, Specialist)).await.unwrap();
    }
    let llm = llm_with(vec![
        FakeResponse::text("Let me ask our desks. ").then_tool_call("plan_trip", r#"{"city": "Lisbon"}"#),
        FakeResponse::text("Everything is set for Lisbon."),
    ]);
    let tool = agents_core::tools::FunctionTool::builder(plan_trip)
        .name("plan_trip")
        .description("Plans a trip with the specialists.")
        .build()
        .unwrap();
    runner
        .add_worker(WorkerSpec::new("agent", LlmWorker::new(llm.clone()).with_bridges(["voice"]).with_tool(tool)).active())
        .await
        .unwrap();
    let rig = voice_rig(&runner, "voice").await;
    let h = rig
        .session
        .generate_reply(ReplyRequest::new().with_user_input("plan Lisbon"))
        .unwrap();
    within("reply", h.wait_for_playout()).await;
    let said = rig.text.all_text();
    assert!(said.starts_with("Let me ask our desks. "), "{said}");
    assert!(said.ends_with("Everything is set for Lisbon."), "{said}");
    for name in ["flights", "hotels", "weather"] {
        assert!(said.contains(&format!("The {name} desk is on it.")), "{said}");
    }
    let out = llm.requests()[1]
        .chat_ctx
        .items()
        .iter()
        .find_map(ChatItem::as_function_call_output)
        .cloned()
        .unwrap();
    let combined: Value = serde_json::from_str(&out.output).unwrap();
    assert_eq!(combined["hotels"], json!({"advice": "hotels advice for Lisbon"}));
    assert_eq!(combined.as_object().unwrap().len(), 3);
}
