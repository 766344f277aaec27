//! Silero VAD cost per 32 ms window on one shared model.
//!
//! `cargo bench -p agents-silero --bench vad`. Results and the comparison with LiveKit's Python plugin are in
//! `docs/benchmarks.md` (## VAD).
//!
//! * `silero/window`: one 512-sample window through the model (one stream's LSTM state and context).
//! * `silero/window+state_machine`: the same plus the VAD state machine (smoothing, hysteresis, speech buffer).
//! * `silero/interleaved_streams/N`: N streams, each with its own state, over one shared model, one window each
//!   per iteration, on one thread: time per iteration / N is the cost of one stream-window on one core.

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use agents_audio::{SampleRate, VadOptions, VadStateMachine, VadWindow};
use agents_silero::{SileroDetector, SileroLoadOptions, SileroVad, WINDOW_SAMPLES};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn speech() -> Vec<i16> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/speech_pauses_16k.wav");
    let mut r = hound::WavReader::open(path).expect("fixture");
    r.samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples")
}

fn bench(c: &mut Criterion) {
    let vad = SileroVad::load_with(SileroLoadOptions::default().with_max_concurrent_inferences(1))
        .expect("model");
    let audio = speech();
    let windows: Vec<&[i16]> = audio.chunks_exact(WINDOW_SAMPLES).collect();
    let mut g = c.benchmark_group("silero");
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));

    let mut d = SileroDetector::new(vad.model().clone());
    let mut i = 0;
    g.bench_function("window", |b| {
        b.iter(|| {
            i = (i + 1) % windows.len();
            black_box(d.predict(windows[i]).expect("predict"))
        })
    });

    let mut d = SileroDetector::new(vad.model().clone());
    let mut m = VadStateMachine::new(
        VadOptions::default(),
        512,
        SampleRate::HZ_16000,
        SampleRate::HZ_16000,
    )
    .expect("options");
    let mut steps = Vec::new();
    let mut i = 0;
    g.bench_function("window+state_machine", |b| {
        b.iter(|| {
            i = (i + 1) % windows.len();
            let p = d.predict(windows[i]).expect("predict");
            steps.clear();
            m.process(
                VadWindow {
                    probability: p,
                    audio: windows[i],
                    inference_duration: Duration::ZERO,
                },
                &mut steps,
            );
            black_box(steps.len())
        })
    });

    for n in [10usize, 100] {
        let mut streams: Vec<SileroDetector> = (0..n)
            .map(|_| SileroDetector::new(vad.model().clone()))
            .collect();
        let mut i = 0;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("interleaved_streams", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % windows.len();
                for (k, s) in streams.iter_mut().enumerate() {
                    black_box(
                        s.predict(windows[(i + k) % windows.len()])
                            .expect("predict"),
                    );
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
