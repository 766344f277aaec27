//! FakeRealtimeModel behaviour.

use std::time::Duration;

use agents_audio::SampleRate;
use agents_core::chat::ChatItem;
use agents_core::realtime::{RealtimeEvent, RealtimeModel, RealtimeSessionOptions, ResponseStatus};
use agents_core::stream::EventStream;
use agents_testkit::signal::sequence;
use agents_testkit::{FakeRealtimeModel, FakeRealtimeResponse};
use futures::StreamExt;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn until_done(events: &mut EventStream<RealtimeEvent>) -> Vec<RealtimeEvent> {
    let mut out = Vec::new();
    while let Some(e) = events.next().await {
        let done = matches!(e, RealtimeEvent::ResponseDone { .. });
        out.push(e);
        if done {
            break;
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn reply_streams_text_and_audio_then_done() {
    let model = FakeRealtimeModel::new()
        .with_ttfb(MS(300))
        .push_response(FakeRealtimeResponse::text("Hello there"));
    let mut conn = model
        .session(RealtimeSessionOptions::default())
        .await
        .unwrap();
    let start = Instant::now();
    conn.session
        .generate_reply(Some("be nice".into()))
        .await
        .unwrap();
    let events = until_done(&mut conn.events).await;
    assert!(
        matches!(&events[0], RealtimeEvent::ResponseCreated { response_id, user_initiated: true } if response_id == "resp_1")
    );
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::TextDelta { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello there");
    let audio: Duration = events
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::AudioDelta { frame, .. } => {
                assert_eq!(frame.sample_rate(), SampleRate::HZ_24000);
                Some(frame.duration())
            }
            _ => None,
        })
        .sum();
    assert_eq!(audio, MS(600));
    assert!(matches!(
        events.last(),
        Some(RealtimeEvent::ResponseDone {
            status: ResponseStatus::Completed,
            ..
        })
    ));
    assert_eq!(start.elapsed(), MS(300));
    let rec = model.last_session().unwrap();
    assert_eq!(rec.replies(), vec![Some("be nice".to_owned())]);
    let ctx = conn.session.chat_ctx();
    let msg = ctx.items()[0].as_message().unwrap();
    assert_eq!(msg.text_content().as_deref(), Some("Hello there"));
    assert_eq!(msg.id, "item_1");
}

#[tokio::test(start_paused = true)]
async fn interrupt_cancels_the_response_in_progress() {
    let model = FakeRealtimeModel::new()
        .with_real_time_factor(1.0)
        .push_response(FakeRealtimeResponse::text(
            "one two three four five six seven eight",
        ));
    let mut conn = model
        .session(RealtimeSessionOptions::default())
        .await
        .unwrap();
    conn.session.generate_reply(None).await.unwrap();
    let mut audio = Duration::ZERO;
    // Read 500 ms of audio, then interrupt.
    while audio < MS(500) {
        if let Some(RealtimeEvent::AudioDelta { frame, .. }) = conn.events.next().await {
            audio += frame.duration();
        }
    }
    conn.session.interrupt().await.unwrap();
    let rest = until_done(&mut conn.events).await;
    assert!(matches!(
        rest.last(),
        Some(RealtimeEvent::ResponseDone {
            status: ResponseStatus::Cancelled,
            ..
        })
    ));
    let more: Duration = rest
        .iter()
        .filter_map(|e| match e {
            RealtimeEvent::AudioDelta { frame, .. } => Some(frame.duration()),
            _ => None,
        })
        .sum();
    assert!(audio + more < MS(2400), "{:?}", audio + more);
    // Interrupting with nothing in progress is a no-op.
    conn.session.interrupt().await.unwrap();
    conn.session.truncate("item_1", MS(500)).await.unwrap();
    let rec = model.last_session().unwrap();
    assert_eq!(rec.interrupts(), 2);
    assert_eq!(rec.truncations(), vec![("item_1".to_owned(), MS(500))]);
    let ctx = rec.chat_ctx();
    assert!(ctx.items()[0].as_message().unwrap().interrupted);
}

#[tokio::test(start_paused = true)]
async fn function_calls_and_server_vad() {
    let model = FakeRealtimeModel::new()
        .with_server_vad(true)
        .push_response(FakeRealtimeResponse::function_call(
            "get_weather",
            r#"{"city":"Paris"}"#,
        ));
    model.push_user_transcript("what's the weather");
    let mut conn = model
        .session(RealtimeSessionOptions::default())
        .await
        .unwrap();
    let rate = SampleRate::HZ_16000;
    for f in sequence(&[(false, MS(200)), (true, MS(600)), (false, MS(600))], rate) {
        conn.session.push_audio(f).await.unwrap();
    }
    let events = until_done(&mut conn.events).await;
    assert!(matches!(events[0], RealtimeEvent::InputSpeechStarted));
    assert!(matches!(
        events[1],
        RealtimeEvent::InputSpeechStopped { .. }
    ));
    assert!(
        matches!(&events[2], RealtimeEvent::InputAudioTranscription { transcript, is_final: true, .. } if transcript == "what's the weather")
    );
    assert!(matches!(
        events[3],
        RealtimeEvent::ResponseCreated {
            user_initiated: false,
            ..
        }
    ));
    match &events[4] {
        RealtimeEvent::FunctionCall { call, .. } => {
            assert_eq!(call.name, "get_weather");
            assert_eq!(call.call_id, "call_1");
        }
        e => panic!("{e:?}"),
    }
    let rec = model.last_session().unwrap();
    assert_eq!(rec.pushed_audio(), MS(1400));
    let items = rec.chat_ctx();
    assert!(matches!(items.items()[1], ChatItem::FunctionCall(_)));
}

#[tokio::test(start_paused = true)]
async fn second_reply_while_active_is_an_error_event() {
    let model = FakeRealtimeModel::new()
        .with_real_time_factor(1.0)
        .push_response(FakeRealtimeResponse::text("a b c"));
    let mut conn = model
        .session(RealtimeSessionOptions::default())
        .await
        .unwrap();
    conn.session.generate_reply(None).await.unwrap();
    conn.session.generate_reply(None).await.unwrap();
    let events = until_done(&mut conn.events).await;
    assert!(events.iter().any(|e| matches!(
        e,
        RealtimeEvent::Error {
            recoverable: true,
            ..
        }
    )));
    conn.session.close().await.unwrap();
    assert!(conn.session.generate_reply(None).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn response_done_carries_metrics_and_injected_events_follow_in_order() {
    let model = FakeRealtimeModel::new()
        .with_ttfb(MS(200))
        .push_response(FakeRealtimeResponse::text("one two three"));
    let mut conn = model
        .session(RealtimeSessionOptions::default())
        .await
        .unwrap();
    conn.session.generate_reply(None).await.unwrap();
    let events = until_done(&mut conn.events).await;
    let Some(RealtimeEvent::ResponseDone {
        response_id,
        metrics: Some(m),
        ..
    }) = events.last()
    else {
        panic!("no metrics: {events:?}");
    };
    assert_eq!(m.label, "fake.realtime");
    assert_eq!(m.request_id.as_deref(), Some(response_id.as_str()));
    assert_eq!(m.ttft, Some(MS(200)));
    assert_eq!(m.output_tokens, 3);
    assert!(!m.cancelled);

    assert!(model.inject_event(RealtimeEvent::Error {
        error: agents_core::realtime::RealtimeError::Protocol {
            reason: "injected".into()
        },
        recoverable: true,
    }));
    match conn.events.next().await {
        Some(RealtimeEvent::Error { recoverable, error }) => {
            assert!(recoverable);
            assert!(error.to_string().contains("injected"));
        }
        other => panic!("expected the injected error, got {other:?}"),
    }
    conn.session.close().await.unwrap();
}
