//! A criterion measurement of **CPU time**, for benchmarks on a shared machine.
//!
//! Wall-clock timings swing with whatever else runs on the machine; the CPU time of the benchmark thread (or of the
//! whole process, for work spread over a runtime's threads) does not. The throughput line can be given a unit, so
//! that e.g. "seconds of audio per CPU second" reads directly as "x real time", or "VAD windows per CPU second" as
//! "streams per core".
//!
//! ```no_run
//! use agents_testkit::bench::CpuTime;
//! use criterion::Criterion;
//! // One `Throughput::Elements(n)` = n seconds of audio: the throughput reads as x real time.
//! let c: Criterion<CpuTime> = Criterion::default().with_measurement(CpuTime::thread().with_unit("x RT", 1.0));
//! ```

use std::time::Duration;

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// Which CPU clock to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuClock {
    /// The calling thread (`CLOCK_THREAD_CPUTIME_ID`).
    Thread,
    /// Every thread of the process (`CLOCK_PROCESS_CPUTIME_ID`).
    Process,
}

/// The CPU time consumed so far on `clock`; zero if the clock cannot be read.
pub fn cpu_time(clock: CpuClock) -> Duration {
    let id = match clock {
        CpuClock::Thread => libc::CLOCK_THREAD_CPUTIME_ID,
        CpuClock::Process => libc::CLOCK_PROCESS_CPUTIME_ID,
    };
    read_clock(id)
}

#[allow(unsafe_code, reason = "clock_gettime has no safe wrapper in std")]
fn read_clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and `id` is one of the constant clock ids the kernel knows.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// A criterion [`Measurement`] of CPU time; values print in CPU microseconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    clock: CpuClock,
    formatter: CpuFormatter,
}

impl CpuTime {
    /// The calling thread's CPU time; throughput prints as elements per CPU second.
    pub const fn thread() -> Self {
        Self::new(CpuClock::Thread)
    }

    /// The CPU time of `clock`; throughput prints as elements per CPU second.
    pub const fn new(clock: CpuClock) -> Self {
        Self {
            clock,
            formatter: CpuFormatter {
                unit: "elem/s (CPU)",
                scale: 1.0,
            },
        }
    }

    /// Prints throughput as `elements per CPU second x scale`, labelled `unit` (e.g. `("x RT", 1.0)` when one
    /// element is one second of audio; `("streams/core", 1.0 / 31.25)` when one element is one 32 ms window).
    pub const fn with_unit(mut self, unit: &'static str, scale: f64) -> Self {
        self.formatter = CpuFormatter { unit, scale };
        self
    }
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        cpu_time(self.clock)
    }
    fn end(&self, start: Duration) -> Duration {
        cpu_time(self.clock).saturating_sub(start)
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
        &self.formatter
    }
}

/// Values in CPU µs; throughput `Elements(n)` as n per CPU second times a scale.
#[derive(Debug, Clone, Copy)]
struct CpuFormatter {
    unit: &'static str,
    scale: f64,
}

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
        let elements = match *throughput {
            Throughput::Elements(n) => n as f64,
            _ => 1.0,
        };
        values
            .iter_mut()
            .for_each(|v| *v = elements * 1e9 / *v * self.scale);
        self.unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_clocks_advance_with_work() {
        let t0 = cpu_time(CpuClock::Thread);
        let p0 = cpu_time(CpuClock::Process);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(cpu_time(CpuClock::Thread) > t0, "{x}");
        assert!(cpu_time(CpuClock::Process) > p0);
    }

    #[test]
    fn throughput_is_scaled_into_the_unit() {
        let f = CpuFormatter {
            unit: "streams/core",
            scale: 1.0 / 31.25,
        };
        // One window per 80 us of CPU = 12,500 windows per CPU second = 400 streams.
        let mut v = [80_000.0];
        assert_eq!(
            f.scale_throughputs(0.0, &Throughput::Elements(1), &mut v),
            "streams/core"
        );
        assert!((v[0] - 400.0).abs() < 1e-9);
    }
}
