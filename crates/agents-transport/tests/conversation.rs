//! A conversation over the WebSocket: spoken and typed turns, paced agent audio, transcripts, states, metrics,
//! interruption.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use agents_core::{AgentState, UserState};
use agents_transport::client::{ClientEvent, WsClient};
use agents_transport::protocol::{AudioFormat, ClientMessage, ServerMessage, SpeechEventKind};
use agents_transport::server::Limits;
use common::{REPLY, TestServer, audio, collect_until, hello_16k, messages, ms, utterance};

fn speech_done(e: &ClientEvent) -> bool {
    matches!(
        e,
        ClientEvent::Message(ServerMessage::Speech {
            event: SpeechEventKind::Done,
            ..
        })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_turn_gets_transcripts_states_metrics_and_audio_at_the_output_rate() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let hello = hello_16k().with_output(AudioFormat::new(16000, 1));
    let client = WsClient::connect(&t.url(), hello).await.unwrap();
    let (mut tx, mut rx) = client.split();
    let sender = tokio::spawn(async move {
        let frames = utterance(ms(800), ms(1500));
        tx.stream_audio(futures::stream::iter(frames), true)
            .await
            .unwrap();
        tx
    });
    let mut got = Vec::new();
    let started = tokio::time::Instant::now();
    let mut first_audio = None;
    let mut last_audio = None;
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(e) = rx.next_event().await {
            let e = e.unwrap();
            if matches!(e, ClientEvent::Audio(_)) {
                let now = tokio::time::Instant::now();
                first_audio.get_or_insert(now);
                last_audio = Some(now);
            }
            let done = speech_done(&e);
            got.push(e);
            if done {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no finished speech: {:#?}", common::summary(&got)));
    let tx = sender.await.unwrap();
    let msgs = messages(&got);

    // The user's words, interim then final.
    let finals: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::UserTranscript {
                text,
                is_final: true,
                ..
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finals, ["what is the weather"], "{msgs:#?}");
    assert!(msgs.iter().any(|m| matches!(
        m,
        ServerMessage::UserTranscript {
            is_final: false,
            ..
        }
    )));
    // States.
    assert!(msgs.iter().any(|m| matches!(
        m,
        ServerMessage::UserState {
            state: UserState::Speaking
        }
    )));
    let agent_states: Vec<AgentState> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::AgentState { state } => Some(*state),
            _ => None,
        })
        .collect();
    let thinking = agent_states.iter().position(|s| *s == AgentState::Thinking);
    let speaking = agent_states.iter().position(|s| *s == AgentState::Speaking);
    assert!(
        thinking.is_some() && speaking > thinking,
        "{agent_states:?}"
    );
    // The agent's words, in step with playback, complete and final.
    let text: String = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::AgentTranscript { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text.trim(), REPLY);
    assert!(
        msgs.iter()
            .any(|m| matches!(m, ServerMessage::AgentTranscript { is_final: true, .. }))
    );
    // Started then done, not interrupted, same speech.
    let speech: Vec<(String, SpeechEventKind, bool)> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Speech {
                speech_id,
                event,
                interrupted,
            } => Some((speech_id.clone(), *event, *interrupted)),
            _ => None,
        })
        .collect();
    assert_eq!(speech.len(), 2, "{speech:?}");
    assert_eq!(speech[0].1, SpeechEventKind::Started);
    assert_eq!(speech[0].0, speech[1].0);
    assert!(!speech[1].2);
    // Audio: 16 kHz mono 20 ms frames, about the reply's duration (3 words x 300 ms), paced in real time.
    let frames = audio(&got);
    assert!(
        frames
            .iter()
            .all(|f| f.sample_rate().hz() == 16000 && f.num_channels() == 1)
    );
    assert!(frames.iter().all(|f| f.samples_per_channel() <= 320));
    let total: Duration = frames.iter().map(|f| f.duration()).sum();
    assert!(total >= ms(880) && total <= ms(920), "{total:?}");
    let spread = last_audio.unwrap() - first_audio.unwrap();
    assert!(
        spread >= ms(600),
        "audio of {total:?} arrived within {spread:?}: not paced"
    );
    assert!(first_audio.unwrap() > started);

    // Metrics of the turn arrive (after playback started).
    let has_metrics = |m: &ServerMessage| matches!(m, ServerMessage::Metrics { .. });
    let mut rest = if msgs.iter().any(has_metrics) {
        Vec::new()
    } else {
        collect_until_rx(
            &mut rx,
            |e| matches!(e, ClientEvent::Message(m) if has_metrics(m)),
        )
        .await
    };
    let all: Vec<ServerMessage> = msgs.into_iter().chain(messages(&rest)).collect();
    let turn = all
        .iter()
        .find_map(|m| match m {
            ServerMessage::Metrics { turn } => Some(turn.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(turn.speech_id.as_deref(), Some(speech[0].0.as_str()));
    assert!(turn.e2e_ms.is_some(), "{turn:?}");
    rest.clear();
    // Vanish: both halves dropped, no close frame.
    drop(rx);
    drop(tx);
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

async fn collect_until_rx(
    rx: &mut agents_transport::client::WsReceiver,
    mut stop: impl FnMut(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = rx.next_event().await {
            let e = e.unwrap();
            let done = stop(&e);
            out.push(e);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "{:#?}", common::summary(&out));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_gets_a_spoken_reply_and_ping_gets_pong() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let mut c = t.connect().await;
    c.send(&ClientMessage::Ping {
        id: serde_json::json!(42),
    })
    .await
    .unwrap();
    c.send_text("hi").await.unwrap();
    let got = collect_until(&mut c, ms(10_000), speech_done).await;
    assert!(got.iter().any(|e| common::is_pong(e, 42)));
    let frames = audio(&got);
    assert!(frames.iter().all(|f| f.sample_rate().hz() == 24000));
    let total: Duration = frames.iter().map(|f| f.duration()).sum();
    assert!(total >= ms(880), "{total:?}");
    c.close().await.unwrap();
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_sends_clear_and_the_audio_stops() {
    let t = TestServer::start(Limits::default(), None, true).await;
    let mut c = t.connect().await;
    c.send_text("tell me a long story").await.unwrap();
    // Let some audio play.
    let mut frames = 0;
    let before = collect_until(&mut c, ms(10_000), |e| {
        if matches!(e, ClientEvent::Audio(_)) {
            frames += 1;
        }
        frames >= 15
    })
    .await;
    assert!(audio(&before).len() >= 15);
    c.send(&ClientMessage::Interrupt).await.unwrap();
    let after = collect_until(&mut c, ms(10_000), speech_done).await;
    let msgs = messages(&after);
    let clear_at = after
        .iter()
        .position(|e| matches!(e, ClientEvent::Message(ServerMessage::Clear { .. })))
        .unwrap_or_else(|| panic!("no clear: {:#?}", common::summary(&after)));
    // Nothing but what was already in flight before the clear; none after.
    assert!(
        audio(&after[clear_at..]).is_empty(),
        "{:#?}",
        common::summary(&after)
    );
    let Some(ServerMessage::Speech { interrupted, .. }) = msgs.last() else {
        panic!("{msgs:?}")
    };
    assert!(*interrupted);
    // The speech was 16 words x 300 ms (4.8 s); much less than that was sent.
    let sent: Duration = audio(&before)
        .iter()
        .chain(audio(&after).iter())
        .map(|f| f.duration())
        .sum();
    assert!(sent < ms(4000), "{sent:?}");
    // And no more audio comes afterwards: the next thing is the pong.
    c.send(&ClientMessage::Ping {
        id: serde_json::json!(1),
    })
    .await
    .unwrap();
    let tail = collect_until(&mut c, ms(5000), |e| common::is_pong(e, 1)).await;
    assert!(audio(&tail).is_empty(), "{:#?}", common::summary(&tail));
    c.close().await.unwrap();
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_longer_than_the_output_buffer_plays_to_the_end() {
    // 16 words x 300 ms = 4.8 s of audio, generated at once by the fake TTS, through a 1 s output buffer.
    let t = TestServer::start(Limits::default(), None, true).await;
    let mut c = t.connect().await;
    c.send_text("tell me a long story").await.unwrap();
    let got = collect_until(&mut c, ms(20_000), speech_done).await;
    let total: Duration = audio(&got).iter().map(|f| f.duration()).sum();
    assert!(total >= ms(4780) && total <= ms(4820), "{total:?}");
    let Some(ServerMessage::Speech { interrupted, .. }) = messages(&got).last().cloned() else {
        panic!()
    };
    assert!(!interrupted);
    c.close().await.unwrap();
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_speaking_over_the_agent_gets_clear_and_an_interrupted_speech() {
    let t = TestServer::start(Limits::default(), None, true).await;
    let client = t.connect().await;
    let (mut tx, mut rx) = client.split();
    tx.send_text("tell me a long story").await.unwrap();
    let mut frames = 0;
    collect_until_rx(&mut rx, |e| {
        if matches!(e, ClientEvent::Audio(_)) {
            frames += 1;
        }
        frames >= 10
    })
    .await;
    // Barge in: the user talks for 1.2 s.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let speaking = tokio::spawn(async move {
        common::speak_then_listen(&mut tx, utterance(ms(1200), ms(0)), stopped).await;
        tx
    });
    let after = collect_until_rx(&mut rx, speech_done).await;
    let _ = stop.send(true);
    let clear_at = after
        .iter()
        .position(|e| matches!(e, ClientEvent::Message(ServerMessage::Clear { .. })))
        .unwrap_or_else(|| panic!("no clear: {:#?}", common::summary(&after)));
    assert!(audio(&after[clear_at..]).is_empty());
    let Some(ServerMessage::Speech { interrupted, .. }) = messages(&after).last().cloned() else {
        panic!()
    };
    assert!(interrupted);
    let tx = speaking.await.unwrap();
    drop((tx, rx));
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stereo_48k_output_is_sent_as_negotiated() {
    let t = TestServer::start(Limits::default(), None, false).await;
    let hello = hello_16k().with_output(AudioFormat::new(48000, 2));
    let mut c = WsClient::connect(&t.url(), hello).await.unwrap();
    c.send_text("hi").await.unwrap();
    let got = collect_until(&mut c, ms(10_000), speech_done).await;
    let frames = audio(&got);
    assert!(!frames.is_empty());
    assert!(frames.iter().all(|f| f.sample_rate().hz() == 48000
        && f.num_channels() == 2
        && f.samples_per_channel() <= 960));
    let total: Duration = frames.iter().map(|f| f.duration()).sum();
    assert!(total >= ms(880) && total <= ms(920), "{total:?}");
    c.close().await.unwrap();
    t.wait_idle(ms(10_000)).await;
    t.stop().await;
}
