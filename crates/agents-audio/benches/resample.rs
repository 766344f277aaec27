//! Streaming resampler throughput: one second of mono audio per iteration, pushed in 10 ms
//! chunks at the default quality.
//!
//! The measurement is the benchmark thread's **CPU time** (`CLOCK_THREAD_CPUTIME_ID`), not wall
//! time, so other processes on a shared machine do not skew it; the throughput line reads
//! directly as seconds of audio per CPU second ("x RT").
//!
//! Run: `cargo bench -p agents-audio --bench resample`

#![allow(missing_docs, reason = "criterion generates the entry point")]
#![allow(unsafe_code, reason = "clock_gettime for the thread's CPU time")]

use std::hint::black_box;
use std::time::Duration;

use agents_audio::{ResampleQuality, Resampler, SampleRate};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// CPU time of the calling thread.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Times in CPU µs; throughput `Elements(n)` = n seconds of audio, shown as x real time.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1_000.0);
        "µs (CPU)"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let seconds = match *throughput {
            Throughput::Elements(n) => n as f64,
            _ => 1.0,
        };
        values.iter_mut().for_each(|v| *v = seconds * 1e9 / *v);
        "x RT"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
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
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench
}
criterion_main!(benches);
