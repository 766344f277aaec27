//! Streaming resampler throughput: one second of mono audio per iteration, pushed in 10 ms
//! chunks at the default quality.
//!
//! The measurement is the benchmark thread's **CPU time** (`CLOCK_THREAD_CPUTIME_ID`), not wall
//! time, so other processes on a shared machine do not skew it; the throughput line reads
//! directly as seconds of audio per CPU second ("x RT").
//!
//! Run: `cargo bench -p agents-audio --bench resample`

#![allow(missing_docs, reason = "criterion generates the entry point")]

use std::hint::black_box;

use agents_audio::{ResampleQuality, Resampler, SampleRate};
use agents_testkit::bench::CpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion<CpuTime>) {
    let mut group = c.benchmark_group("resample_1s_mono_10ms_chunks");
    for (a, b) in [
        (SampleRate::HZ_48000, SampleRate::HZ_16000),
        (SampleRate::HZ_16000, SampleRate::HZ_24000),
        (SampleRate::HZ_24000, SampleRate::HZ_48000),
        (SampleRate::HZ_8000, SampleRate::HZ_16000),
    ] {
        let Ok(mut r) = Resampler::new(a, b, 1, ResampleQuality::default()) else {
            continue;
        };
        // One second of a 440 Hz tone plus a little 3 kHz, as 16-bit samples.
        let n = a.hz() as usize;
        let input: Vec<i16> = (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(a.hz());
                let v = 0.4 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    + 0.1 * (2.0 * std::f64::consts::PI * 3_000.0 * t).sin();
                (v * 32_767.0) as i16
            })
            .collect();
        let chunk = n / 100;
        let mut out = Vec::with_capacity(b.hz() as usize * 2);
        // One element = one second of audio, so the throughput reads as x real time.
        group.throughput(Throughput::Elements(1));
        group.bench_function(
            format!("{}k_to_{}k", a.hz() / 1000, b.hz() / 1000),
            |bench| {
                bench.iter(|| {
                    out.clear();
                    for piece in input.chunks(chunk) {
                        if r.push_into(black_box(piece), &mut out).is_err() {
                            return;
                        }
                    }
                    black_box(out.len());
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime::thread().with_unit("x RT", 1.0));
    targets = bench
}
criterion_main!(benches);
