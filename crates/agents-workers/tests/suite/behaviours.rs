// The behaviour suite, included by `tests/behaviours.rs` (in-process bus) and `tests/behaviours_redis.rs` (Redis).
// Each test starts from `new_bus()`, which the including file defines; `None` means "skip".

async fn setup(names: &[&str]) -> Option<(Arc<dyn Bus>, WorkerRunner, Log, Vec<WorkerHandle>)> {
    let bus = new_bus().await?;
    let runner = runner_on("R", &bus);
    let log = Log::default();
    let mut handles = Vec::new();
    for n in names {
        handles.push(runner.add_worker(Probe::spec(n, &log)).await.unwrap());
    }
    Some((bus, runner, log, handles))
}

fn p(name: &str) -> JobParams {
    JobParams::new()
        .with_name(name)
        .with_timeout(Duration::from_secs(5))
}

// 10, 15: one uuid job id shared by the group, one request per worker; completion fires once, keyed by name.
#[tokio::test]
async fn b10_b15_group_shares_one_job_id_and_completes_once() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w1", "w2", "w3"]).await else {
        return;
    };
    let ctx = h[0].context();
    let group = ctx
        .job_group(
            ["w1", "w2", "w3"],
            JobGroupParams::new()
                .with_name("echo")
                .with_payload(json!({"x": 1})),
        )
        .await
        .unwrap();
    let id = group.job_id().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 4));
    let responses = within("group", group.responses()).await.unwrap();
    assert_eq!(responses.keys().collect::<Vec<_>>(), vec!["w1", "w2", "w3"]);
    assert!(responses.values().all(|v| *v == json!({"x": 1})));
    for w in ["w1", "w2", "w3"] {
        assert_eq!(log.count_prefix(&format!("{w}:echo:")), 1);
        assert!(log.has(&format!("{w}:echo:{id}")));
    }
    log.wait_for("req:completed:[\"w1\", \"w2\", \"w3\"]").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(log.count_prefix("req:completed"), 1);
    assert!(ctx.job_groups().is_empty());
}

// 11: dispatch waits for readiness within the timeout; otherwise NotReady and nothing is sent.
#[tokio::test]
async fn b11_not_ready_within_timeout_sends_nothing() {
    let Some((bus, _r, _log, h)) = setup(&["req"]).await else {
        return;
    };
    let mut ghost = bus.subscribe("ghost").unwrap();
    let err = h[0]
        .context()
        .job(
            "ghost",
            JobParams::new().with_timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        JobError::NotReady {
            missing: vec!["ghost".into()]
        }
    );
    assert_eq!(
        err.to_string(),
        "workers not ready within timeout: [\"ghost\"]"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    while let Some(m) = ghost.try_recv() {
        assert!(
            !matches!(m.body, MessageBody::JobRequest { .. }),
            "a request was sent: {m:?}"
        );
    }
}

// 11 (positive): a job to a worker added later is dispatched once it is ready.
#[tokio::test]
async fn b11_dispatch_waits_for_a_late_worker() {
    let Some((_bus, runner, log, h)) = setup(&["req"]).await else {
        return;
    };
    let ctx = h[0].context().clone();
    let job = tokio::spawn(async move {
        ctx.job("late", p("echo").with_payload(json!(7)))
            .await
            .unwrap()
            .response()
            .await
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    runner.add_worker(Probe::spec("late", &log)).await.unwrap();
    assert_eq!(within("late job", job).await.unwrap().unwrap(), json!(7));
}

// 12: named handler vs on_job_request.
#[tokio::test]
async fn b12_named_handler_else_on_job_request() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let ctx = h[0].context();
    assert_eq!(
        ctx.job("w", p("echo").with_payload(json!("e")))
            .await
            .unwrap()
            .response()
            .await
            .unwrap(),
        json!("e")
    );
    let r = ctx
        .job("w", p("nobody-has-this"))
        .await
        .unwrap()
        .response()
        .await
        .unwrap();
    assert_eq!(r, json!({"default": true}));
    let r = ctx
        .job("w", JobParams::new())
        .await
        .unwrap()
        .response()
        .await
        .unwrap();
    assert_eq!(r, json!({"default": true}));
    assert!(log.has("w:default-handler:Some(\"nobody-has-this\")"));
    assert!(log.has("w:default-handler:None"));
}

// 13: a slow handler does not block the worker.
#[tokio::test]
async fn b13_slow_handler_does_not_block() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let ctx = h[0].context();
    let slow = ctx
        .job("w", p("slow").with_payload(json!({"ms": 2000})))
        .await
        .unwrap();
    let fast = ctx
        .job("w", p("echo").with_payload(json!(1)))
        .await
        .unwrap();
    assert_eq!(within("fast", fast.response()).await.unwrap(), json!(1));
    assert!(
        !log.has("w:slow-done"),
        "the fast job finished while the slow one still runs"
    );
    drop(slow);
}

// 14: sequential handlers run in arrival order; queueing counts against the timeout.
#[tokio::test]
async fn b14_sequential_jobs_fifo_and_wait_counts_against_timeout() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let ctx = h[0].context();
    let a = ctx
        .job("w", p("seq").with_payload(json!({"n": 1, "ms": 400})))
        .await
        .unwrap();
    let b = ctx
        .job("w", p("seq").with_payload(json!({"n": 2, "ms": 10})))
        .await
        .unwrap();
    let c = ctx
        .job(
            "w",
            JobParams::new()
                .with_name("seq")
                .with_payload(json!({"n": 3, "ms": 1}))
                .with_timeout(Duration::from_millis(60)),
        )
        .await
        .unwrap();
    assert_eq!(within("c", c.response()).await, Err(JobError::Timeout));
    assert_eq!(within("a", a.response()).await.unwrap(), json!(1));
    assert_eq!(within("b", b.response()).await.unwrap(), json!(2));
    let seq: Vec<String> = log
        .all()
        .into_iter()
        .filter(|l| l.starts_with("seq-"))
        .collect();
    assert_eq!(
        seq,
        vec!["seq-start:1", "seq-end:1", "seq-start:2", "seq-end:2"]
    );
}

// 16, 17: stream end is the response; events arrive in order and the iterator ends.
#[tokio::test]
async fn b16_b17_stream_events_in_order_and_stream_end_is_terminal() {
    let Some((_bus, _r, _log, h)) = setup(&["req", "w1", "w2"]).await else {
        return;
    };
    let ctx = h[0].context();
    let mut job = ctx.job("w1", p("stream")).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(e) = within("event", job.next()).await {
        kinds.push((e.kind.as_str().to_owned(), e.data));
    }
    assert_eq!(
        kinds,
        vec![
            ("update".into(), Some(json!({"progress": 0}))),
            ("stream_start".into(), Some(json!("start"))),
            ("stream_data".into(), Some(json!(0))),
            ("stream_data".into(), Some(json!(1))),
            ("stream_data".into(), Some(json!(2))),
            ("stream_end".into(), Some(json!({"total": 3}))),
        ]
    );
    assert_eq!(job.response().await.unwrap(), json!({"total": 3}));

    let mut group = ctx
        .job_group(["w1", "w2"], JobGroupParams::new().with_name("stream"))
        .await
        .unwrap();
    let mut per_worker = std::collections::BTreeMap::<String, Vec<JobEventKind>>::new();
    while let Some(e) = within("group event", group.next()).await {
        per_worker.entry(e.worker_name).or_default().push(e.kind);
    }
    for w in ["w1", "w2"] {
        let k = &per_worker[w];
        assert_eq!(k.first(), Some(&JobEventKind::Update));
        assert_eq!(k.last(), Some(&JobEventKind::StreamEnd));
        assert_eq!(k.len(), 6);
    }
    let r = group.responses().await.unwrap();
    assert_eq!(r["w2"], json!({"total": 3}));
}

// 18: a single job's response and typed decoding.
#[tokio::test]
async fn b18_single_job_response_typed() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Order {
        id: u32,
    }
    let Some((_bus, _r, _log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let params = p("echo").with_typed_payload(&Order { id: 9 }).unwrap();
    let job = h[0].context().job("w", params).await.unwrap();
    assert_eq!(job.worker_name(), "w");
    let order: Order = job.response_as().await.unwrap().unwrap();
    assert_eq!(order, Order { id: 9 });
}

// 19, 22: timeout cancels every worker (which answer CANCELLED on their own); the context errors.
#[tokio::test]
async fn b19_b22_timeout_cancels_workers_and_fails_context() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w1", "w2"]).await else {
        return;
    };
    let ctx = h[0].context();
    let params = JobGroupParams::new()
        .with_name("block")
        .with_timeout(Duration::from_millis(100));
    let group = ctx.job_group(["w1", "w2"], params).await.unwrap();
    assert_eq!(
        within("timeout", group.responses()).await,
        Err(JobError::Timeout)
    );
    log.wait_for("w1:cancelled:timeout").await;
    log.wait_for("w2:cancelled:timeout").await;
    let job = ctx
        .job(
            "w1",
            JobParams::new()
                .with_name("block")
                .with_timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    assert_eq!(
        within("single timeout", job.response()).await,
        Err(JobError::Timeout)
    );
}

// 22: a cancelled worker answers `cancelled` without user code: seen by a fire-and-forget requester.
#[tokio::test]
async fn b22_cancel_sends_cancelled_response_automatically() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let ctx = h[0].context();
    let id = ctx
        .request_job("w", JobParams::new().with_name("block"))
        .await
        .unwrap();
    log.wait_for("w:block-started").await;
    assert!(ctx.cancel_job_group(&id, "changed my mind").await);
    log.wait_for("w:cancelled:changed my mind").await;
    assert!(
        !ctx.cancel_job_group(&id, "again").await,
        "already cancelled"
    );
}

// 20: cancel_on_error with a FAILED or ERROR answer: the context errors and on_job_error fires.
#[tokio::test]
async fn b20_cancel_on_error() {
    let Some((_bus, _r, log, h)) = setup(&["req", "bad"]).await else {
        return;
    };
    let ctx = h[0].context();
    for (handler, status) in [("fail", JobStatus::Failed), ("error", JobStatus::Error)] {
        let group = ctx
            .job_group(["bad"], JobGroupParams::new().with_name(handler))
            .await
            .unwrap();
        match within("err", group.responses()).await {
            Err(JobError::WorkerErrored {
                worker, status: s, ..
            }) => {
                assert_eq!(worker, "bad");
                assert_eq!(s, status);
            }
            other => panic!("unexpected {other:?}"),
        }
        log.wait_for(&format!("req:job-error:bad:{status}")).await;
    }
    assert_eq!(log.count_prefix("req:completed"), 0);
}

// 20 (group of two): the failing worker's error cancels the blocked worker with the documented reason.
#[tokio::test]
async fn b20_error_cancels_remaining_worker_with_reason() {
    let Some(bus) = new_bus().await else { return };
    let runner = runner_on("R", &bus);
    let log = Log::default();
    let req = runner.add_worker(Probe::spec("req", &log)).await.unwrap();
    runner
        .add_worker(WorkerSpec::new("a", OneOff("fail", log.clone())))
        .await
        .unwrap();
    runner
        .add_worker(WorkerSpec::new("b", OneOff("block", log.clone())))
        .await
        .unwrap();
    let group = req
        .context()
        .job_group(["a", "b"], JobGroupParams::new().with_name("go"))
        .await
        .unwrap();
    let err = within("group", group.responses()).await.unwrap_err();
    assert!(
        matches!(err, JobError::WorkerErrored { ref worker, status: JobStatus::Failed, .. } if worker == "a")
    );
    log.wait_for("b:cancelled:worker 'a' errored").await;
    log.wait_for("req:job-error:a:failed").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(log.count_prefix("req:completed"), 0);
}

/// Answers every job the same way (`fail` or `block`), logs cancellations.
struct OneOff(&'static str, Log);

#[async_trait::async_trait]
impl Worker for OneOff {
    async fn on_job_request(&self, _ctx: &WorkerContext, _job: Job) -> JobResult {
        if self.0 == "fail" {
            tokio::time::sleep(Duration::from_millis(30)).await;
            return Err(JobFailure::Failed(json!("nope")));
        }
        std::future::pending::<()>().await;
        Ok(Value::Null)
    }
    async fn on_job_cancelled(&self, ctx: &WorkerContext, _id: &str, reason: &str) {
        self.1.push(format!("{}:cancelled:{reason}", ctx.name()));
    }
}

// 21: without cancel_on_error, errors are ordinary responses.
#[tokio::test]
async fn b21_no_cancel_on_error_collects_everything() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w1", "w2"]).await else {
        return;
    };
    let ctx = h[0].context();
    let group = ctx
        .job_group(
            ["w1", "w2"],
            JobGroupParams::new()
                .with_name("error")
                .with_cancel_on_error(false),
        )
        .await
        .unwrap();
    let r = within("group", group.responses()).await.unwrap();
    assert_eq!(r["w1"], json!({"error": "boom"}));
    assert_eq!(r.len(), 2);
    log.wait_for("req:completed:[\"w1\", \"w2\"]").await;
    assert_eq!(log.count_prefix("req:job-error"), 0);
}

// A panicking handler answers `error` instead of leaving the requester hanging.
#[tokio::test]
async fn handler_panic_answers_error() {
    let Some((_bus, _r, _log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let err = h[0]
        .context()
        .job("w", p("panic"))
        .await
        .unwrap()
        .response()
        .await
        .unwrap_err();
    assert!(
        matches!(err, JobError::WorkerErrored { status: JobStatus::Error, ref response, .. }
        if response["error"] == "job handler panicked")
    );
}

// 23: a stopping worker answers its in-flight jobs with CANCELLED and cancels the groups it started.
#[tokio::test]
async fn b23_stopping_worker_cancels_in_flight_and_own_groups() {
    let Some((_bus, _r, log, h)) = setup(&["req", "mid", "leaf"]).await else {
        return;
    };
    let ctx = h[0].context();
    let job = ctx
        .job("mid", JobParams::new().with_name("block"))
        .await
        .unwrap();
    log.wait_for("mid:block-started").await;
    // `mid` also started a group of its own on `leaf`.
    let mid_ctx = h[1].context();
    let _id = mid_ctx
        .request_job("leaf", JobParams::new().with_name("block"))
        .await
        .unwrap();
    log.wait_for("leaf:block-started").await;
    h[1].cancel("shutdown").await.unwrap();
    let err = within("requester", job.response()).await.unwrap_err();
    assert_eq!(
        err,
        JobError::Cancelled {
            reason: "worker 'mid' cancelled the job".into()
        }
    );
    log.wait_for("leaf:cancelled:worker stopped").await;
    within("finished", h[1].finished()).await;
}

// 24: dropping the context (scope exit by error or cancellation) cancels the group.
#[tokio::test]
async fn b24_dropping_the_context_cancels() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let ctx = h[0].context().clone();
    let task = tokio::spawn(async move {
        let job = ctx
            .job("w", JobParams::new().with_name("block"))
            .await
            .unwrap();
        job.response().await
    });
    log.wait_for("w:block-started").await;
    task.abort();
    let _ = task.await;
    log.wait_for("w:cancelled:context exited with error").await;
}

// 25: cancellable=false refuses external cancel requests; the timeout still cancels.
#[tokio::test]
async fn b25_cancellable_gates_only_external_requests() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let ctx = h[0].context();
    let params = JobParams::new()
        .with_name("block")
        .with_cancellable(false)
        .with_timeout(Duration::from_millis(1000));
    let job = ctx.job("w", params).await.unwrap();
    log.wait_for("w:block-started").await;
    assert!(!job.request_cancel().await);
    assert!(!job.is_done());
    assert_eq!(
        within("timeout", job.response()).await,
        Err(JobError::Timeout)
    );
    let job = ctx
        .job("w", JobParams::new().with_name("block"))
        .await
        .unwrap();
    assert!(job.request_cancel().await);
    assert!(matches!(
        job.response().await,
        Err(JobError::Cancelled { .. })
    ));
}

// 26: urgent updates overtake queued data messages.
#[tokio::test]
async fn b26_urgent_update_jumps_the_queue() {
    let Some((bus, _r, log, _h)) = setup(&["w"]).await else {
        return;
    };
    let mut requester = bus.subscribe("raw-requester").unwrap();
    bus.send(BusMessage::new(
        "raw-requester",
        Some("w".into()),
        MessageBody::JobRequest {
            job_id: "j1".into(),
            job_name: Some("burst".into()),
            payload: None,
        },
    ))
    .await
    .unwrap();
    log.wait_for("burst-done").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut got = Vec::new();
    while let Some(m) = requester.try_recv() {
        match &m.body {
            MessageBody::JobEvent { data, .. } => got.push(data.clone().unwrap_or(Value::Null)),
            MessageBody::JobResponse { response, .. } => got.push(json!({"response": response})),
            _ => {}
        }
    }
    assert_eq!(got.first(), Some(&json!("urgent")));
    assert_eq!(
        got[1..21],
        (0..20).map(|i| json!(i)).collect::<Vec<_>>()[..]
    );
    assert_eq!(got.last(), Some(&json!({"response": "done"})));
}

// 27: request_job_update reaches on_job_update_requested.
#[tokio::test]
async fn b27_request_job_update() {
    let Some((_bus, _r, log, h)) = setup(&["req", "w"]).await else {
        return;
    };
    let ctx = h[0].context();
    let job = ctx
        .job("w", JobParams::new().with_name("block"))
        .await
        .unwrap();
    let mut job = job;
    assert_eq!(
        within("started", job.next()).await.unwrap().data,
        Some(json!("started"))
    );
    ctx.request_job_update(job.job_id(), "w").await.unwrap();
    log.wait_for("w:update-requested-by:req").await;
    let e = within("on-demand update", job.next()).await.unwrap();
    assert_eq!(
        (e.kind, e.data),
        (JobEventKind::Update, Some(json!("on demand")))
    );
    ctx.request_job_update("no-such-job", "w").await.unwrap();
    log.wait_for("w:on-demand-update-sent:false").await;
}

// 29, 30: addressing through workers, and a panicking hook does not stop later deliveries.
#[tokio::test]
async fn b29_b30_addressing_and_failing_hook() {
    let Some((_bus, _r, log, h)) = setup(&["a", "b", "c"]).await else {
        return;
    };
    let a = h[0].context();
    a.send_message(Some("b"), "panic", json!(null))
        .await
        .unwrap();
    a.send_message(Some("b"), "only-b", json!(null))
        .await
        .unwrap();
    a.send_message(None, "all", json!(null)).await.unwrap();
    log.wait_for("b:msg:all").await;
    log.wait_for("c:msg:all").await;
    assert!(log.has("b:msg:only-b"));
    assert!(!log.has("c:msg:only-b"));
    assert!(
        !log.has("a:msg:all"),
        "the sender does not receive its own broadcast"
    );
}

// 32: two runners on one bus: handshake, then jobs in both directions.
#[tokio::test]
async fn b32_registry_handshake_between_runners() {
    let Some(bus) = new_bus().await else { return };
    let log = Log::default();
    let ra = runner_on("A", &bus);
    let a1 = ra.add_worker(Probe::spec("a1", &log)).await.unwrap();
    let rb = runner_on("B", &bus);
    let b1 = rb.add_worker(Probe::spec("b1", &log)).await.unwrap();
    within("A learns b1", async {
        while !ra.registry().contains("b1") || !rb.registry().contains("a1") {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(ra.registry().remote_workers(), vec!["b1".to_owned()]);
    assert_eq!(rb.registry().get("a1").unwrap().runner, "A");
    let r = a1
        .context()
        .job("b1", p("echo").with_payload(json!("x")))
        .await
        .unwrap()
        .response()
        .await;
    assert_eq!(r.unwrap(), json!("x"));
    let r = b1
        .context()
        .job("a1", p("echo").with_payload(json!("y")))
        .await
        .unwrap()
        .response()
        .await;
    assert_eq!(r.unwrap(), json!("y"));
}

// 33: on_worker_ready for local roots, children only on the parent, remote only when watched.
#[tokio::test]
async fn b33_worker_ready_delivery_rules() {
    let Some(bus) = new_bus().await else { return };
    let log = Log::default();
    let ra = runner_on("A", &bus);
    let root1 = ra.add_worker(Probe::spec("root1", &log)).await.unwrap();
    ra.add_worker(Probe::spec("root2", &log)).await.unwrap();
    log.wait_for("root1:ready:root2@A").await;
    root1
        .context()
        .add_child(Probe::spec("kid", &log))
        .await
        .unwrap();
    log.wait_for("root1:ready:kid@A").await;
    let rb = runner_on("B", &bus);
    root1.context().watch_workers(["remote-watched"]).await;
    rb.add_worker(Probe::spec("remote-watched", &log))
        .await
        .unwrap();
    rb.add_worker(Probe::spec("remote-other", &log))
        .await
        .unwrap();
    log.wait_for("root1:ready:remote-watched@B").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !log.has("root2:ready:kid@A"),
        "a child is announced to its parent only"
    );
    assert!(
        !log.has("root1:ready:remote-other@B"),
        "remote workers only when watched"
    );
    assert!(!log.has("root2:ready:remote-watched@B"));
    assert_eq!(log.count_prefix("root1:ready:remote-watched"), 1);
}

// 37, 38: activation with args, deactivation; deactivate_self never leaves two workers active.
#[tokio::test]
async fn b37_b38_activation_and_handoff() {
    let Some(bus) = new_bus().await else { return };
    let runner = runner_on("R", &bus);
    let log = Log::default();
    let greeter = Arc::new(Probe::new(&log));
    let support = Arc::new(Probe::new(&log));
    let g = runner
        .add_worker(WorkerSpec::from_arc("greeter", greeter.clone()).active())
        .await
        .unwrap();
    let s = runner
        .add_worker(WorkerSpec::from_arc("support", support.clone()))
        .await
        .unwrap();
    *support.peer.lock().unwrap() = Some(g.context().clone());
    assert!(g.is_active() && !s.is_active());
    let args = ActivationArgs::encode(&WorkerActivationArgs::with_metadata(
        json!({"reason": "billing"}),
    ))
    .unwrap();
    g.context()
        .activate_worker("support", args, true)
        .await
        .unwrap();
    assert!(
        !g.is_active(),
        "the caller is inactive before the activation is even delivered"
    );
    log.wait_for("support:activated:{\"metadata\":{\"reason\":\"billing\"}}")
        .await;
    assert!(log.has("support:peer-active=false"));
    log.wait_for("greeter:deactivated").await;
    assert!(s.is_active() && !g.is_active());
    s.context().deactivate_worker("support").await.unwrap();
    log.wait_for("support:deactivated").await;
    assert!(!s.is_active());
}

// 4, 39: an LLM worker starts inactive; activation messages are appended and the LLM runs unless run_llm=false.
#[tokio::test]
async fn b4_b39_llm_worker_activation() {
    let Some(bus) = new_bus().await else { return };
    let runner = runner_on("R", &bus);
    let llm = Arc::new(FakeLlm::new().push_response(FakeResponse::text("Hello from support")));
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let worker = Arc::new(
        LlmWorker::new(llm.clone())
            .with_instructions("You are support.")
            .with_output(tx),
    );
    let h = runner
        .add_worker(WorkerSpec::from_arc("support", worker.clone()))
        .await
        .unwrap();
    assert!(!h.is_active(), "LLM workers start inactive");
    let req = runner
        .add_worker(Probe::spec("req", &Log::default()))
        .await
        .unwrap();
    let r = req
        .context()
        .job(
            "support",
            JobParams::new()
                .with_name(CHAT_JOB)
                .with_payload(json!({"text": "hi"})),
        )
        .await;
    assert!(matches!(
        r.unwrap().response().await,
        Err(JobError::WorkerErrored {
            status: JobStatus::Failed,
            ..
        })
    ));

    let args = LlmWorkerActivationArgs::with_messages(vec![ActivationMessage::new(
        ChatRole::Developer,
        "User wants billing",
    )]);
    h.activate(ActivationArgs::encode(&args).unwrap())
        .await
        .unwrap();
    let out = within("reply", rx.recv()).await.unwrap();
    assert_eq!(
        out,
        LlmWorkerOutput {
            worker: "support".into(),
            text: "Hello from support".into()
        }
    );
    let ctx = worker.chat_context().await;
    let texts: Vec<(ChatRole, String)> = ctx
        .messages()
        .map(|m| (m.role, m.text_content().unwrap_or_default()))
        .collect();
    assert_eq!(
        texts,
        vec![
            (ChatRole::System, "You are support.".into()),
            (ChatRole::Developer, "User wants billing".into()),
            (ChatRole::Assistant, "Hello from support".into()),
        ]
    );
    assert_eq!(llm.request_count(), 1);

    let args = LlmWorkerActivationArgs::with_messages(vec![ActivationMessage::new(
        ChatRole::User,
        "quiet",
    )])
    .with_run_llm(false);
    h.activate(ActivationArgs::encode(&args).unwrap())
        .await
        .unwrap();
    within("appended", async {
        while worker.chat_context().await.messages().count() < 4 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(
        llm.request_count(),
        1,
        "run_llm=false appends without running"
    );

    llm.add_response(FakeResponse::text("Sure."));
    let r = req
        .context()
        .job(
            "support",
            JobParams::new()
                .with_name(CHAT_JOB)
                .with_payload(json!({"text": "refund?"})),
        )
        .await;
    assert_eq!(
        r.unwrap().response().await.unwrap(),
        json!({"text": "Sure."})
    );
    let last = llm.last_request().unwrap();
    assert_eq!(
        last.chat_ctx
            .messages()
            .last()
            .unwrap()
            .text_content()
            .unwrap(),
        "refund?"
    );
}

// 45: run(auto_end=true) returns once every root worker finished; workers can be added after run starts.
#[tokio::test]
async fn b45_run_auto_end() {
    let Some(bus) = new_bus().await else { return };
    let runner = runner_on("R", &bus);
    runner
        .add_worker(WorkerSpec::new("a", Finite(20)))
        .await
        .unwrap();
    let r2 = runner.clone();
    let run = tokio::spawn(async move { r2.run(true).await });
    runner
        .add_worker(WorkerSpec::new("b", Finite(60)))
        .await
        .unwrap();
    within("run", run).await.unwrap().unwrap();
    assert!(runner.workers().is_empty());
    assert!(!runner.registry().contains("a"));
}

// 45, 46: auto_end=false keeps running; end() is graceful (queued messages handled first); cancel() is not.
#[tokio::test]
async fn b45_b46_long_lived_runner_end_vs_cancel() {
    for graceful in [true, false] {
        let Some(bus) = new_bus().await else { return };
        let runner = runner_on("R", &bus);
        let log = Log::default();
        let probe = Arc::new(Probe::new(&log));
        let w = runner
            .add_worker(WorkerSpec::from_arc("w", probe.clone()))
            .await
            .unwrap();
        let client = runner
            .add_worker(Probe::spec("client", &Log::default()))
            .await
            .unwrap();
        let r2 = runner.clone();
        let run = tokio::spawn(async move { r2.run(false).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!run.is_finished(), "auto_end=false keeps running");
        let c = client.context();
        c.send_message(Some("w"), "gate", json!(null))
            .await
            .unwrap();
        log.wait_for("w:gate-wait").await;
        c.send_message(Some("w"), "m1", json!(null)).await.unwrap();
        c.send_message(Some("w"), "m2", json!(null)).await.unwrap();
        if graceful {
            runner.end("done").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            probe.gate.notify_one();
            within("run", run).await.unwrap().unwrap();
            assert!(
                log.has("w:msg:m1") && log.has("w:msg:m2"),
                "{:?}",
                log.all()
            );
        } else {
            runner.cancel("now").await;
            within("run", run).await.unwrap().unwrap();
            assert!(
                !log.has("w:msg:m1"),
                "cancel does not run queued hooks: {:?}",
                log.all()
            );
        }
        assert!(w.is_finished());
    }
}

// Worker failure reaches the parent's on_worker_failed; a parent stopping stops its children.
#[tokio::test]
async fn worker_failure_reaches_parent_and_children_stop_with_parent() {
    let Some((_bus, _r, log, h)) = setup(&["parent"]).await else {
        return;
    };
    h[0].context()
        .add_child(WorkerSpec::new("doomed", Failing))
        .await
        .unwrap();
    log.wait_for("parent:failed:doomed:body failed").await;
    let kid = h[0]
        .context()
        .add_child(Probe::spec("kid", &log))
        .await
        .unwrap();
    h[0].cancel("bye").await.unwrap();
    within("kid stops", kid.finished()).await;
}

// Duplicate worker names on one runner are refused.
#[tokio::test]
async fn duplicate_worker_name_is_an_error() {
    let Some((_bus, runner, log, _h)) = setup(&["w"]).await else {
        return;
    };
    assert!(matches!(
        runner.add_worker(Probe::spec("w", &log)).await,
        Err(WorkersError::DuplicateWorker(_))
    ));
}

// A system-lane cancel can overtake the data-lane request it cancels: the worker then answers CANCELLED to the
// late request and never runs the handler.
#[tokio::test]
async fn cancel_overtaking_its_request_is_honoured() {
    let Some((bus, _r, log, _h)) = setup(&["w"]).await else {
        return;
    };
    let mut raw = bus.subscribe("raw").unwrap();
    let cancel = MessageBody::JobCancel {
        job_id: "j".into(),
        reason: "early".into(),
    };
    bus.send(BusMessage::new("raw", Some("w".into()), cancel))
        .await
        .unwrap();
    let request = MessageBody::JobRequest {
        job_id: "j".into(),
        job_name: Some("block".into()),
        payload: None,
    };
    bus.send(BusMessage::new("raw", Some("w".into()), request))
        .await
        .unwrap();
    // Skip the runners' periodic registry snapshots (heartbeats), which reach every subscriber.
    let m = within("answer", async {
        loop {
            let m = raw.recv().await.unwrap();
            if !matches!(m.body, MessageBody::WorkerRegistry { .. }) {
                return m;
            }
        }
    })
    .await;
    assert!(
        matches!(&m.body, MessageBody::JobResponse { job_id, status: JobStatus::Cancelled, .. } if job_id == "j")
    );
    log.wait_for("w:cancelled:cancelled before the request arrived")
        .await;
    assert!(!log.has("w:block-started"));
}

/// A bus whose `send` yields before delivering, like a network transport does.
struct YieldingBus(Arc<dyn Bus>);

#[async_trait::async_trait]
impl Bus for YieldingBus {
    fn subscribe(&self, name: &str) -> Result<Subscription, BusError> {
        self.0.subscribe(name)
    }
    async fn send(&self, message: BusMessage) -> Result<(), BusError> {
        tokio::task::yield_now().await;
        self.0.send(message).await
    }
    fn dropped(&self) -> u64 {
        self.0.dropped()
    }
}

// 19 on a transport whose send yields: the timeout's cancels must still go out (a timer that aborted itself while
// sending them was a real bug, first seen over Redis).
#[tokio::test]
async fn b19_timeout_cancels_reach_workers_on_a_yielding_bus() {
    let Some(inner) = new_bus().await else { return };
    let runner = WorkerRunner::new("Y", Arc::new(YieldingBus(inner)))
        .unwrap()
        .with_sigint_handling(false);
    let log = Log::default();
    let req = runner.add_worker(Probe::spec("req", &log)).await.unwrap();
    runner.add_worker(Probe::spec("w", &log)).await.unwrap();
    let job = req
        .context()
        .job(
            "w",
            JobParams::new()
                .with_name("block")
                .with_timeout(Duration::from_millis(80)),
        )
        .await
        .unwrap();
    assert_eq!(
        within("timeout", job.response()).await,
        Err(JobError::Timeout)
    );
    log.wait_for("w:cancelled:timeout").await;
}

// Registry snapshot entries (what a runner broadcasts) carry parent and active flags.
#[tokio::test]
async fn snapshot_entries_carry_parent_and_active() {
    let Some((_bus, runner, log, h)) = setup(&["root"]).await else {
        return;
    };
    h[0].context()
        .add_child(Probe::spec("kid", &log).active())
        .await
        .unwrap();
    let mut snap = runner.snapshot();
    snap.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(snap.len(), 2);
    assert_eq!(
        (
            snap[0].name.as_str(),
            snap[0].parent.as_deref(),
            snap[0].active
        ),
        ("kid", Some("root"), true)
    );
    assert_eq!(
        (
            snap[1].name.as_str(),
            snap[1].parent.as_deref(),
            snap[1].active
        ),
        ("root", None, false)
    );
    assert!(snap.iter().all(|e| e.started_at.is_some() && !e.bridged));
}
