//! The handoff conversation on the emulators, through the WebSocket transport: the greeter's transition line is
//! spoken, the transfer tool runs, the specialist (knowing the question) answers with its tool, then handles the
//! next lines. No timing assertion.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use voice_demo::{DemoConfig, ProviderChoice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_greeter_hands_the_call_to_the_specialist_after_its_transition_line() {
    let out_dir = std::env::temp_dir().join(format!("voice-handoff-test-{}", std::process::id()));
    let config = DemoConfig {
        providers: ProviderChoice::Offline,
        scenario: voice_handoff::scenario(),
        out_dir: out_dir.clone(),
        ..DemoConfig::default()
    };
    let report = voice_demo::run(&config, |_| {})
        .await
        .expect("the conversation completes");
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    assert_eq!(report.user_turns().len(), 3);
    let replies = report.agent_replies();
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert_eq!(replies[0], voice_handoff::TRANSITION);
    assert!(
        replies[1].starts_with("Hi, I'm the weather and time specialist."),
        "{replies:?}"
    );
    assert!(replies[1].contains("partly cloudy in Paris"), "{replies:?}");
    let tools: Vec<&str> = report
        .tool_calls()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(tools, ["transfer_to_specialist", "get_weather", "get_time"]);
    assert!(report.tool_calls().iter().all(|t| !t.is_error));
    assert_eq!(report.latencies().len(), 3, "one report per user turn");
    let _ = std::fs::remove_dir_all(out_dir);
}
