//! Tool events and DTMF over the WebSocket.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::{Arc, Mutex};

use agents_core::Agent;
use agents_core::tools::{FunctionTool, ToolOutcome};
use agents_pipeline::AgentSession;
use agents_testkit::fakes::llm::FakeResponse;
use agents_testkit::{FakeLlm, FakeTts};
use agents_transport::client::{ClientEvent, WsClient};
use agents_transport::protocol::{ClientMessage, ServerMessage};
use agents_transport::server::{SessionRequest, TransportServer};
use common::{collect_until, hello_16k, is_pong, messages, ms};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executed_tools_are_reported_and_dtmf_reaches_the_handler() {
    let digits = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = digits.clone();
    let server = TransportServer::builder(|_req: SessionRequest| async move {
        let llm = FakeLlm::new()
            .push_response(FakeResponse::tool_call("lookup", r#"{"q":"answer"}"#))
            .push_response(FakeResponse::text("It is 42."));
        let lookup = FunctionTool::raw(
            "lookup",
            "Looks the answer up.",
            serde_json::json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            |_ctx, _args| async move { Ok(ToolOutcome::Output("42".to_owned())) },
        )
        .unwrap();
        let session = AgentSession::builder()
            .llm(Arc::new(llm))
            .tts(Arc::new(FakeTts::new()))
            .build();
        let agent = Agent::builder("You look things up.")
            .tool(lookup)
            .build()
            .unwrap();
        Ok::<_, std::convert::Infallible>((session, agent))
    })
    .on_dtmf(move |_session, digit| seen.lock().unwrap().push(digit.to_owned()))
    .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let s = server.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        s.serve(listener, async move {
            let _ = stopped.await;
        })
        .await
    });

    let mut c = WsClient::connect(&url, hello_16k()).await.unwrap();
    c.send(&ClientMessage::Dtmf { digit: "5".into() })
        .await
        .unwrap();
    c.send(&ClientMessage::Dtmf { digit: "#".into() })
        .await
        .unwrap();
    c.send(&ClientMessage::Ping {
        id: serde_json::json!(9),
    })
    .await
    .unwrap();
    collect_until(&mut c, ms(5000), |e| is_pong(e, 9)).await;
    assert_eq!(*digits.lock().unwrap(), ["5", "#"]);

    c.send_text("what is the answer?").await.unwrap();
    // Until the follow-up's transcript is complete (the tool step itself may end with an empty final).
    let mut said = false;
    let got = collect_until(&mut c, ms(10_000), |e| match e {
        ClientEvent::Message(ServerMessage::AgentTranscript { text, is_final, .. }) => {
            said |= !text.trim().is_empty();
            *is_final && said
        }
        _ => false,
    })
    .await;
    let msgs = messages(&got);
    let tool = msgs
        .iter()
        .find_map(|m| match m {
            ServerMessage::Tool {
                name,
                arguments,
                output,
                is_error,
            } => Some((name.clone(), arguments.clone(), output.clone(), *is_error)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no tool event: {msgs:#?}"));
    assert_eq!(
        tool,
        (
            "lookup".into(),
            r#"{"q":"answer"}"#.into(),
            Some("42".into()),
            false
        )
    );
    let text: String = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::AgentTranscript { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text.trim(), "It is 42.");
    c.close().await.unwrap();
    drop(c);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(server.stats().tasks, 0);
}
