//! Silero VAD cost per 32 ms window on one shared model.
//!
//! Run: `cargo bench -p agents-silero --bench vad`. Results, and the comparison with LiveKit's Python plugin, are in
//! `docs/benchmarks.md` (## VAD).
//!
//! The measurement is the benchmark thread's **CPU time** (`CLOCK_THREAD_CPUTIME_ID`), as in the resampler bench:
//! the machine is shared, and inference runs single-threaded on the calling thread, so thread CPU time is the
//! cost of a window. Throughput is shown as **streams per core**: windows per CPU second / 31.25 (a 16 kHz stream
//! produces 31.25 windows per second).
//!
//! * `silero/window`: one 512-sample window of recorded speech through the model, one stream's state.
//! * `silero/window+state_machine`: the same plus the VAD state machine (smoothing, hysteresis, speech buffer).
//! * `silero/interleaved_streams/N`: N streams, each with its own LSTM state, over one shared model, one window
//!   each per iteration (cache effects of switching state between streams included).
//! * `silero/stream_end_to_end`: the whole speech fixture (6.6 s) through `Vad::stream()` in 10 ms frames on a
//!   2-worker tokio runtime: channels, hops to the inference threads, state machine, events. Measured as **process** CPU
//!   time (`CLOCK_PROCESS_CPUTIME_ID`, every thread of the bench process) per window, to compare with LiveKit's
//!   `VADStream`.

#![allow(missing_docs, reason = "criterion generates the entry point")]
#![allow(clippy::expect_used, reason = "bench set-up")]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate, VadOptions, VadStateMachine, VadWindow};
use agents_core::vad::Vad;
use agents_silero::{SileroDetector, SileroLoadOptions, SileroVad, WINDOW_SAMPLES};
use agents_testkit::bench::{CpuClock, CpuTime, cpu_time};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{FutureExt, StreamExt};

fn speech() -> Vec<i16> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/speech_pauses_16k.wav");
    let mut r = hound::WavReader::open(path).expect("fixture");
    r.samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples")
}

fn bench(c: &mut Criterion<CpuTime>) {
    let vad = SileroVad::load_with(SileroLoadOptions::default().with_max_concurrent_inferences(1))
        .expect("model");
    let audio = speech();
    let windows: Vec<&[i16]> = audio.chunks_exact(WINDOW_SAMPLES).collect();
    let mut g = c.benchmark_group("silero");
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let frames: Vec<AudioFrame> = audio
        .chunks(160)
        .map(|c| AudioFrame::new(c.to_vec(), SampleRate::HZ_16000, 1).expect("frame"))
        .collect();
    g.throughput(Throughput::Elements(windows.len() as u64));
    g.bench_function("stream_end_to_end", |b| {
        b.iter_custom(|iters| {
            let start = cpu_time(CpuClock::Process);
            for _ in 0..iters {
                runtime.block_on(async {
                    let mut stream = vad.stream().expect("stream");
                    for f in &frames {
                        stream.push_frame(f.clone()).await.expect("push");
                        while let Some(Some(e)) = stream.next().now_or_never() {
                            black_box(e.expect("event"));
                        }
                    }
                    stream.end_input().await.expect("end");
                    while let Some(e) = stream.next().await {
                        black_box(e.expect("event"));
                    }
                });
            }
            cpu_time(CpuClock::Process).saturating_sub(start)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(CpuTime::thread().with_unit("streams/core", 1.0 / 31.25));
    targets = bench
}
criterion_main!(benches);
