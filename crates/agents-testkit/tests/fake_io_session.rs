//! FakeAudioOutput, FakeTextOutput and FakeSession behaviour.

use std::sync::Arc;
use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::audio_io::{
    AudioOutput, AudioOutputError, PlaybackEvent, PlaybackFinished, TextOutput,
};
use agents_core::session::{ReplyRequest, SayRequest, SessionError};
use agents_testkit::signal::{silence, tone};
use agents_testkit::{FakeAudioOutput, FakeSession, FakeTextOutput, SessionCall};
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;
const RATE: SampleRate = SampleRate::HZ_24000;

#[tokio::test(start_paused = true)]
async fn plays_out_in_real_time_and_records() {
    let out = FakeAudioOutput::new().with_max_buffer(Duration::from_secs(10));
    let mut events = out.playout().subscribe();
    let start = Instant::now();
    for f in tone(MS(1000), RATE) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let done = out.wait_for_playout().await.unwrap();
    assert_eq!(start.elapsed(), MS(1000));
    assert_eq!(done, PlaybackFinished::new(1, MS(1000), false));
    assert!(matches!(
        events.recv().await.unwrap(),
        PlaybackEvent::Started(_)
    ));
    let played = out.played_segments();
    assert_eq!(played.len(), 1);
    assert_eq!(played[0].frames, tone(MS(1000), RATE));
    assert!(!played[0].interrupted);
}

#[tokio::test(start_paused = true)]
async fn clear_stops_at_the_current_position() {
    let out = Arc::new(FakeAudioOutput::new().with_max_buffer(Duration::from_secs(10)));
    for f in tone(MS(1000), RATE) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    tokio::time::sleep(MS(330)).await;
    assert_eq!(out.position(), MS(330));
    out.clear_buffer();
    let done = out.wait_for_playout().await.unwrap();
    assert_eq!(done, PlaybackFinished::new(1, MS(330), true));
    let played = &out.played_segments()[0];
    assert!(played.interrupted);
    assert_eq!(played.position, MS(330));
    // Exactly 330 ms heard: 16 whole frames and 10 ms of the 17th.
    assert_eq!(played.frames.len(), 17);
    assert_eq!(
        played.frames.iter().map(|f| f.duration()).sum::<Duration>(),
        MS(330)
    );
    assert_eq!(played.captured, MS(1000));
}

#[tokio::test(start_paused = true)]
async fn capture_applies_back_pressure() {
    let out = FakeAudioOutput::new(); // 200 ms buffer
    let start = Instant::now();
    let frames = tone(MS(400), RATE);
    let mut accepted = Vec::new();
    for f in frames {
        out.capture_frame(f).await.unwrap();
        accepted.push(start.elapsed());
    }
    // 11 frames (220 ms) go in at once: the 11th is accepted with exactly 200 ms ahead.
    assert!(accepted[..11].iter().all(|t| t.is_zero()), "{accepted:?}");
    // Then one frame per 20 ms of playback.
    assert_eq!(accepted[11], MS(20));
    assert_eq!(accepted[19], MS(180));
    assert_eq!(out.buffered(), MS(220));
}

#[tokio::test(start_paused = true)]
async fn pause_freezes_the_position() {
    let out = FakeAudioOutput::new()
        .with_pause(true)
        .with_max_buffer(Duration::from_secs(10));
    assert!(out.capabilities().pause);
    for f in tone(MS(1000), RATE) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    tokio::time::sleep(MS(200)).await;
    out.pause();
    tokio::time::sleep(MS(500)).await;
    assert_eq!(out.position(), MS(200));
    out.resume();
    let start = Instant::now();
    let done = out.wait_for_playout().await.unwrap();
    assert_eq!(start.elapsed(), MS(800));
    assert_eq!(done.playback_position, MS(1000));

    // Without the capability pause is a no-op.
    let out = FakeAudioOutput::new();
    out.capture_frame(tone(MS(20), RATE).remove(0))
        .await
        .unwrap();
    out.pause();
    assert!(!out.is_paused());
}

#[tokio::test(start_paused = true)]
async fn segments_play_back_to_back_and_underrun_waits() {
    let out = FakeAudioOutput::new().with_max_buffer(Duration::from_secs(10));
    for f in tone(MS(100), RATE) {
        out.capture_frame(f).await.unwrap();
    }
    // Underrun: 100 ms queued, not flushed; after 300 ms the position is stuck at 100 ms.
    tokio::time::sleep(MS(300)).await;
    assert_eq!(out.position(), MS(100));
    for f in tone(MS(100), RATE) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    for f in silence(MS(60), RATE) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    let start = Instant::now();
    let last = out.wait_for_playout().await.unwrap();
    assert_eq!(start.elapsed(), MS(160));
    assert_eq!(last, PlaybackFinished::new(2, MS(60), false));
    let played = out.played_segments();
    assert_eq!(played[0].position, MS(200));
    assert_eq!(out.heard_duration(), MS(260));
}

#[tokio::test(start_paused = true)]
async fn rejects_wrong_format() {
    let out = FakeAudioOutput::new().with_sample_rate(Some(SampleRate::HZ_48000));
    assert_eq!(
        out.capture_frame(tone(MS(20), RATE).remove(0)).await,
        Err(AudioOutputError::SampleRateMismatch {
            expected: 48_000,
            actual: 24_000
        })
    );
}

#[tokio::test]
async fn text_output_records_segments() {
    let t = FakeTextOutput::new();
    t.capture_text("Hello ").await.unwrap();
    t.capture_text("there").await.unwrap();
    t.flush();
    t.capture_text("Bye").await.unwrap();
    assert_eq!(t.segments(), vec!["Hello there"]);
    assert_eq!(t.current().as_deref(), Some("Bye"));
    assert_eq!(t.all_text(), "Hello thereBye");
}

#[tokio::test]
async fn fake_session_records_and_returns_handles() {
    let session = FakeSession::new();
    let handle = session.handle();
    let a = handle
        .say(SayRequest::new("Hi").with_allow_interruptions(false))
        .unwrap();
    let b = handle
        .generate_reply(ReplyRequest::new().with_instructions("greet"))
        .unwrap();
    assert_ne!(a, b);
    assert!(!a.allow_interruptions());
    assert_eq!(handle.current_speech(), Some(b.clone()));
    // `a` refuses interruption.
    assert!(handle.interrupt().await.is_err());
    a.mark_done();
    handle.interrupt().await.unwrap();
    assert!(b.interrupted());
    assert_eq!(session.said(), vec!["Hi"]);
    assert_eq!(session.replies()[0].instructions.as_deref(), Some("greet"));
    assert_eq!(session.interrupt_count(), 2);
    handle
        .update_agent(agents_core::Agent::new("be brief"))
        .unwrap();
    assert_eq!(session.agent_updates()[0].instructions(), "be brief");
    handle.close().await.unwrap();
    assert_eq!(
        handle.say(SayRequest::new("late")).unwrap_err(),
        SessionError::NotRunning
    );
    assert!(matches!(
        session.calls().last(),
        Some(SessionCall::Say { speech: None, .. })
    ));
    session.fail_with(Some(SessionError::NoTts));
    assert_eq!(handle.interrupt().await, Err(SessionError::NoTts));
}

#[tokio::test]
async fn emulator_server_serves_on_loopback_and_stops_when_dropped() {
    let router = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    let server = agents_testkit::EmulatorServer::serve(router).await.unwrap();
    assert!(server.addr().ip().is_loopback());
    let addr = server.addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("pong"),
        "{response}"
    );
    server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
