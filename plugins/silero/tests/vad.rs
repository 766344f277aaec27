//! The Silero VAD on recorded speech, silence and noise (committed fixtures, see tests/fixtures/make_fixtures.sh).

mod common;

use std::time::Duration;

use agents_audio::onnx::{OnnxBackend, OnnxError, init_backend};
use agents_audio::{AudioFrame, AudioFrameError, SampleRate, VadOptions};
use agents_core::vad::{Vad, VadError, VadEventKind};
use agents_silero::{SileroDetector, SileroError, SileroLoadOptions, SileroVad};
use common::*;
use futures::StreamExt;

async fn segments_of(name: &str) -> Vec<(Duration, Duration)> {
    let vad = vad();
    let events = events(run(&vad, fixture_frames(name)).await);
    segments(&events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_every_utterance_at_16k() {
    let found = segments_of("speech_pauses_16k.wav").await;
    assert_segments_match_truth(&found, "16 kHz");
    assert_segments_match_livekit(&found, "speech_pauses_16k.wav");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_every_utterance_at_24k_and_48k_like_at_16k() {
    let at16 = segments_of("speech_pauses_16k.wav").await;
    for name in ["speech_pauses_24k.wav", "speech_pauses_48k.wav"] {
        let found = segments_of(name).await;
        assert_segments_match_truth(&found, name);
        assert_segments_match_livekit(&found, name);
        // Resampling moves a boundary by at most one window.
        for ((s, e), (s16, e16)) in found.iter().zip(&at16) {
            assert!(
                s.abs_diff(*s16) <= WINDOW && e.abs_diff(*e16) <= WINDOW,
                "{name}: {found:?} vs 16 kHz {at16:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_frames_keep_the_input_rate() {
    let vad = vad();
    let events = events(run(&vad, fixture_frames("speech_pauses_48k.wav")).await);
    let (samples, _, _) = read_wav("speech_pauses_48k.wav");
    // Every InferenceDone carries its share of the 48 kHz input: 1536 samples per 32 ms window.
    let windows: Vec<_> = events
        .iter()
        .filter(|e| e.kind == VadEventKind::InferenceDone)
        .collect();
    let covered: usize = windows
        .iter()
        .flat_map(|e| &e.frames)
        .map(AudioFrame::samples_per_channel)
        .sum();
    assert_eq!(covered, windows.len() * 1536);
    assert!(
        samples.len() - covered < 1536 + 1,
        "{} input samples, {covered} attributed",
        samples.len()
    );
    for e in events
        .iter()
        .filter(|e| e.kind != VadEventKind::InferenceDone)
    {
        assert!(
            e.frames
                .iter()
                .all(|f| f.sample_rate() == SampleRate::HZ_48000 && f.num_channels() == 1)
        );
    }
    let start = events
        .iter()
        .find(|e| e.kind == VadEventKind::StartOfSpeech);
    let audio: Option<Duration> = start.map(|s| s.frames.iter().map(AudioFrame::duration).sum());
    assert_eq!(
        audio,
        start.map(|s| Duration::from_millis(500) + s.speech_duration)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stereo_48k_input_is_downmixed_and_resampled() {
    let (mono, rate, _) = read_wav("speech_pauses_48k.wav");
    let stereo: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
    let vad = vad();
    let events = events(run(&vad, frames(&stereo, rate, 2)).await);
    assert_segments_match_truth(&segments(&events), "48 kHz stereo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stereo_input_is_downmixed() {
    let (mono, rate, _) = read_wav("speech_pauses_16k.wav");
    let stereo: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
    let vad = vad();
    let events = events(run(&vad, frames(&stereo, rate, 2)).await);
    assert_segments_match_truth(&segments(&events), "16 kHz stereo");
    // Speech frames come back mono at the input rate.
    let start = events
        .iter()
        .find(|e| e.kind == VadEventKind::StartOfSpeech)
        .map(|e| (e.frames[0].num_channels(), e.frames[0].sample_rate()));
    assert_eq!(start, Some((1, SampleRate::HZ_16000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_speech_in_silence_pink_noise_or_a_tone() {
    for name in ["silence_16k.wav", "pink_noise_16k.wav", "tone_16k.wav"] {
        let vad = vad();
        let events = events(run(&vad, fixture_frames(name)).await);
        assert!(!events.is_empty(), "{name}: no events");
        assert!(
            events
                .iter()
                .all(|e| e.kind == VadEventKind::InferenceDone && !e.speaking),
            "{name}: speech found"
        );
        let max = events.iter().map(|e| e.probability).fold(0.0f32, f32::max);
        assert!(max < 0.35, "{name}: max probability {max}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_audio_durations_and_probabilities() {
    let vad = vad();
    let events = events(run(&vad, fixture_frames("speech_pauses_16k.wav")).await);
    let window = WINDOW;
    let inference: Vec<_> = events
        .iter()
        .filter(|e| e.kind == VadEventKind::InferenceDone)
        .collect();
    // Every full 512-sample window is reported, in order, with its 512 samples.
    let total = truth_total_samples();
    assert_eq!(inference.len() as u64, total / 512);
    for (i, e) in inference.iter().enumerate() {
        assert_eq!(e.timestamp, window * (i as u32 + 1));
        assert_eq!(e.samples_index, 512 * (i as u64 + 1));
        assert_eq!(
            e.frames
                .iter()
                .map(AudioFrame::samples_per_channel)
                .sum::<usize>(),
            512
        );
        assert!((0.0..=1.0).contains(&e.probability));
    }
    assert!(
        inference.iter().any(|e| e.probability > 0.9),
        "speech never above 0.9"
    );
    // Start: the frames hold 0.5 s of padding plus the speech run that triggered the start.
    let starts: Vec<_> = events
        .iter()
        .filter(|e| e.kind == VadEventKind::StartOfSpeech)
        .collect();
    assert_eq!(starts.len(), 3);
    for s in &starts {
        let audio: Duration = s.frames.iter().map(AudioFrame::duration).sum();
        assert_eq!(
            audio,
            Duration::from_millis(500) + s.speech_duration,
            "{s:?}"
        );
        assert!(s.speaking);
        assert!(s.speech_duration >= Duration::from_millis(50));
    }
    // End: padding + the whole segment including the closing silence; speech duration excludes that silence.
    let truth = truth();
    let ends: Vec<_> = events
        .iter()
        .filter(|e| e.kind == VadEventKind::EndOfSpeech)
        .collect();
    assert_eq!(ends.len(), 3);
    for (e, (ts, te)) in ends.iter().zip(&truth) {
        assert!(!e.speaking);
        assert!(e.silence_duration >= Duration::from_millis(550));
        let spoken = *te - *ts;
        assert!(
            e.speech_duration.abs_diff(spoken) <= 2 * TOLERANCE,
            "speech {:?} vs truth {spoken:?}",
            e.speech_duration
        );
        let audio: Duration = e.frames.iter().map(AudioFrame::duration).sum();
        assert!(
            audio >= Duration::from_millis(500) + e.speech_duration + e.silence_duration - window
        );
    }
}

fn truth_total_samples() -> u64 {
    let (s, _, _) = read_wav("speech_pauses_16k.wav");
    s.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_change_mid_stream_is_a_typed_error_and_the_stream_goes_on() {
    let vad = vad();
    let mut frames = fixture_frames("silence_16k.wav");
    let odd = match AudioFrame::silence(Duration::from_millis(10), SampleRate::HZ_24000, 1) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    frames.insert(50, odd);
    let results = run(&vad, frames).await;
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(matches!(
        errors[0],
        VadError::SampleRateChanged {
            expected: 16000,
            actual: 24000
        }
    ));
    // The bad frame was dropped; the 1.5 s of 16 kHz audio were all processed.
    let windows = results
        .iter()
        .filter(|r| matches!(r, Ok(e) if e.kind == VadEventKind::InferenceDone))
        .count();
    assert_eq!(windows, 24000 / 512);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_change_mid_stream_is_a_typed_error() {
    let vad = vad();
    let mut frames = fixture_frames("silence_16k.wav");
    let stereo = match AudioFrame::silence(Duration::from_millis(10), SampleRate::HZ_16000, 2) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    frames.insert(3, stereo);
    let results = run(&vad, frames).await;
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errors.len(), 1);
    assert!(matches!(
        errors[0],
        VadError::InvalidAudio(AudioFrameError::FormatMismatch {
            expected_channels: 1,
            actual_channels: 2,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_update_reaches_an_open_stream() {
    // Own model so the option change does not leak into other tests.
    let vad = match SileroVad::load() {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    };
    let frames = fixture_frames("speech_pauses_16k.wav");
    let mut stream = match vad.stream() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut events = Vec::new();
    // First 0.5 s (all silence), then wait until the VAD has processed it.
    for f in frames.iter().take(50) {
        assert!(stream.push_frame(f.clone()).await.is_ok());
    }
    while let Some(e) = stream.next().await {
        let e = match e {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        };
        let t = e.timestamp;
        events.push(e);
        if t >= Duration::from_millis(480) {
            break;
        }
    }
    // Longer than every pause in the fixture: the three utterances become one segment, closed at end of input.
    assert!(
        vad.update_options(VadOptions::default().with_min_silence_duration(Duration::from_secs(3)))
            .is_ok()
    );
    for f in frames.iter().skip(50) {
        assert!(stream.push_frame(f.clone()).await.is_ok());
        while let Some(Some(e)) = futures::FutureExt::now_or_never(stream.next()) {
            events.push(match e {
                Ok(e) => e,
                Err(e) => panic!("{e}"),
            });
        }
    }
    assert!(stream.end_input().await.is_ok());
    while let Some(e) = stream.next().await {
        events.push(match e {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        });
    }
    let marks: Vec<_> = events
        .iter()
        .filter(|e| e.kind != VadEventKind::InferenceDone)
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        marks,
        vec![VadEventKind::StartOfSpeech, VadEventKind::EndOfSpeech]
    );
    assert_eq!(vad.options().min_silence_duration, Duration::from_secs(3));
    // Invalid options are refused.
    assert!(
        vad.update_options(VadOptions::default().with_activation_threshold(2.0))
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_closes_open_speech() {
    let vad = vad();
    let frames = fixture_frames("speech_pauses_16k.wav");
    let mut stream = match vad.stream() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    // Up to 1.5 s: the first utterance (0.6 s .. 2.34 s) is under way.
    for f in frames.iter().take(150) {
        assert!(stream.push_frame(f.clone()).await.is_ok());
    }
    assert!(stream.flush().await.is_ok());
    assert!(stream.end_input().await.is_ok());
    let mut marks = Vec::new();
    while let Some(e) = stream.next().await {
        match e {
            Ok(e) if e.kind != VadEventKind::InferenceDone => marks.push((e.kind, e.timestamp)),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(marks.len(), 2, "{marks:?}");
    assert_eq!(marks[0].0, VadEventKind::StartOfSpeech);
    assert_eq!(marks[1].0, VadEventKind::EndOfSpeech);
    // Closed at the last full window before the flush.
    assert_eq!(marks[1].1, Duration::from_millis(32) * (24000 / 512));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_one_model_and_agree() {
    let vad = match SileroVad::load_with(
        SileroLoadOptions::default().with_max_concurrent_inferences(2),
    ) {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    };
    let frames = fixture_frames("speech_pauses_16k.wav");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let vad = vad.clone();
        let frames = frames.clone();
        tasks.push(tokio::spawn(async move { events(run(&vad, frames).await) }));
    }
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(e) => all.push(e),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(vad.model().session_count() <= 2);
    let probs = |evs: &Vec<agents_core::vad::VadEvent>| -> Vec<f32> {
        evs.iter()
            .filter(|e| e.kind == VadEventKind::InferenceDone)
            .map(|e| e.probability)
            .collect()
    };
    let first = probs(&all[0]);
    for evs in &all[1..] {
        // Each stream keeps its own state: identical input gives identical output.
        assert_eq!(probs(evs), first);
    }
    assert_segments_match_truth(&segments(&all[0]), "shared model");
}

#[test]
fn detector_refuses_wrong_window_length_and_tracks_state() {
    let vad = vad();
    let mut d = SileroDetector::new(vad.model().clone());
    assert!(matches!(d.predict(&[0; 100]), Err(OnnxError::Run { .. })));
    let (speech, _, _) = read_wav("speech_pauses_16k.wav");
    // Feed 1 s of speech from the first utterance; the model's state makes later windows confident.
    let mut last = 0.0;
    for w in speech[9600..9600 + 32 * 512].chunks_exact(512) {
        last = match d.predict(w) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
    }
    assert!(last > 0.5, "speech probability {last}");
    d.reset();
    let p = match d.predict(&[0; 512]) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert!(p < 0.1, "silence after reset {p}");
}

#[test]
fn backend_is_process_global_and_a_second_choice_is_refused() {
    let vad = vad();
    assert_eq!(vad.backend(), &OnnxBackend::Tract);
    assert!(init_backend(&OnnxBackend::Tract).is_ok());
    let other = OnnxBackend::OnnxRuntime {
        library: "/opt/ort/libonnxruntime.so".into(),
    };
    match init_backend(&other) {
        Err(OnnxError::BackendConflict { active, requested }) => {
            assert_eq!(active, OnnxBackend::Tract);
            assert_eq!(requested, other);
        }
        r => panic!("expected a conflict, got {r:?}"),
    }
    match SileroVad::load_with(SileroLoadOptions::default().with_backend(other)) {
        Err(SileroError::Model(OnnxError::BackendConflict { .. })) => {}
        r => panic!("expected a conflict, got {r:?}"),
    }
}

#[test]
fn invalid_load_options_are_refused() {
    let r = SileroVad::load_with(
        SileroLoadOptions::default().with_vad(VadOptions::default().with_smoothing(1.5)),
    );
    assert!(matches!(r, Err(SileroError::Options(_))), "{r:?}");
}

#[test]
fn stream_outside_a_runtime_is_an_error_not_a_panic() {
    let vad = vad();
    assert!(matches!(vad.stream(), Err(VadError::Model { .. })));
    assert_eq!(vad.label(), "silero.VAD");
    assert_eq!(
        vad.capabilities().update_interval,
        Duration::from_millis(32)
    );
}

#[test]
fn onnx_model_reports_bad_names_shapes_and_buffers() {
    use agents_audio::onnx::OnnxInput;
    let vad = vad();
    let model = vad.model();
    assert_eq!(model.input_names(), ["input", "state"]);
    assert_eq!(model.output_names(), ["output", "stateN"]);
    let input = vec![0.0f32; 576];
    let state = vec![0.0f32; 256];
    let inputs = [
        OnnxInput::new("input", &[1, 576], &input),
        OnnxInput::new("state", &[2, 1, 128], &state),
    ];
    let mut p = [0.0f32; 1];
    let mut next = vec![0.0f32; 256];
    assert!(
        model
            .run(
                &inputs,
                &mut [("output", &mut p[..]), ("stateN", &mut next[..])]
            )
            .is_ok()
    );
    match model.run(&inputs, &mut [("nope", &mut p[..])]) {
        Err(OnnxError::UnknownOutput { name }) => assert_eq!(name, "nope"),
        r => panic!("expected UnknownOutput, got {r:?}"),
    }
    let mut small = [0.0f32; 3];
    match model.run(&inputs, &mut [("stateN", &mut small[..])]) {
        Err(OnnxError::OutputSize {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (3, 256)),
        r => panic!("expected OutputSize, got {r:?}"),
    }
    // A shape that does not match the data length is refused before the model runs.
    let bad = [
        OnnxInput::new("input", &[1, 577], &input),
        OnnxInput::new("state", &[2, 1, 128], &state),
    ];
    assert!(matches!(
        model.run(&bad, &mut [("output", &mut p[..])]),
        Err(OnnxError::Run { .. })
    ));
    // A consistent shape the model does not take is the backend's error, not a panic.
    let transposed = [
        OnnxInput::new("input", &[576, 1], &input),
        OnnxInput::new("state", &[2, 1, 128], &state),
    ];
    assert!(matches!(
        model.run(&transposed, &mut [("output", &mut p[..])]),
        Err(OnnxError::Run { .. })
    ));
    // An unknown input name too.
    let unknown = [
        OnnxInput::new("input", &[1, 576], &input),
        OnnxInput::new("memory", &[2, 1, 128], &state),
    ];
    assert!(matches!(
        model.run(&unknown, &mut [("output", &mut p[..])]),
        Err(OnnxError::Run { .. })
    ));
}
