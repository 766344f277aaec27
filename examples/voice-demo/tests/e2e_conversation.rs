//! Runs the demo's conversation (the function behind `cargo run -p voice-demo`) on the bundled emulators, through
//! the WebSocket transport and its Rust client, and checks what the README promises: three user turns with a reply each, the two tool calls with their arguments and real
//! results, a latency report per reply, the agent audio and the transcript on disk. No timing assertion.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use voice_demo::{DemoConfig, Line, ProviderChoice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_demo_conversation_completes_with_tools_and_latencies() {
    let out_dir = std::env::temp_dir().join(format!("voice-demo-test-{}", std::process::id()));
    let config = DemoConfig {
        providers: ProviderChoice::Offline,
        out_dir: out_dir.clone(),
        ..DemoConfig::default()
    };
    let mut live = Vec::new();
    let report = voice_demo::run(&config, |l| live.push(l.clone()))
        .await
        .expect("the conversation completes");

    assert_eq!(live, report.lines, "every line was reported live, in order");
    assert!(
        report.errors().is_empty(),
        "no error: {:?}",
        report.errors()
    );
    assert_eq!(
        report.user_turns(),
        [
            "What's the weather in Paris?",
            "And what time is it in Tokyo?",
            "Thank you, goodbye."
        ]
    );
    let replies = report.agent_replies();
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert!(
        replies[0].contains("18 degrees Celsius and partly cloudy in Paris"),
        "{replies:?}"
    );
    assert!(replies[1].contains("in Tokyo"), "{replies:?}");

    let tools = report.tool_calls();
    assert_eq!(tools.len(), 2, "{tools:?}");
    assert_eq!(
        (tools[0].name.as_str(), tools[0].arguments.as_str()),
        ("get_weather", r#"{"city":"Paris"}"#)
    );
    assert_eq!(
        tools[0].output,
        "18 degrees Celsius and partly cloudy in Paris"
    );
    assert_eq!(
        (tools[1].name.as_str(), tools[1].arguments.as_str()),
        ("get_time", r#"{"city":"Tokyo"}"#)
    );
    assert!(
        tools[1].output.ends_with("in Tokyo (UTC+09:00)"),
        "{}",
        tools[1].output
    );
    assert!(tools.iter().all(|t| !t.is_error));

    // Transcript order: user, (tool), agent, latency for each turn.
    let kinds: Vec<&str> = report
        .lines
        .iter()
        .map(|l| match l {
            Line::User(_) => "user",
            Line::Agent { .. } => "agent",
            Line::Tool(_) => "tool",
            Line::Latency(_) => "latency",
            Line::Error(_) => "error",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "user", "tool", "agent", "latency", "user", "tool", "agent", "latency", "user",
            "agent", "latency"
        ]
    );

    let latencies = report.latencies();
    assert_eq!(latencies.len(), 3);
    for (i, t) in latencies.iter().enumerate() {
        assert!(t.end_of_utterance.is_some(), "turn {}: {t:?}", i + 1);
        assert!(t.transcription.is_some(), "turn {}: {t:?}", i + 1);
        assert!(t.llm_ttft.is_some(), "turn {}: {t:?}", i + 1);
        assert!(t.tts_ttfb.is_some(), "turn {}: {t:?}", i + 1);
        assert!(t.e2e.is_some(), "turn {}: {t:?}", i + 1);
    }

    // What the WebSocket client received: the agent's words (released with playback) and its audio.
    for reply in &replies {
        let words: String = reply.split_whitespace().collect();
        let heard: String = report.client_transcript.split_whitespace().collect();
        assert!(
            heard.contains(&words),
            "{reply:?} not in {:?}",
            report.client_transcript
        );
    }
    assert_eq!(
        report.client_tool_events, 2,
        "the client saw both tool calls"
    );
    assert_eq!(
        report.client_close.as_deref(),
        Some("bye"),
        "the client's bye closed the connection"
    );
    assert!(!report.agent_audio.is_zero());
    let wav = std::fs::metadata(&report.audio_path).expect("agent.wav written");
    assert!(wav.len() > 44, "agent.wav has audio");
    let transcript = std::fs::read_to_string(&report.transcript_path).expect("transcript written");
    assert!(
        transcript.contains("user:  And what time is it in Tokyo?"),
        "{transcript}"
    );
    assert!(
        transcript.contains("tool get_weather({\"city\":\"Paris\"})"),
        "{transcript}"
    );
    let _ = std::fs::remove_dir_all(out_dir);
}
