//! Session density on one core (issue 6): N concurrent voice sessions, each with the real Silero VAD (one shared
//! model) and fake STT / LLM / TTS / output, fed 20 ms frames of real speech in real time. See `harness.rs` for
//! what is measured.
//!
//! ```text
//! cargo bench -p agents --features silero --bench density -- --sessions 25,50,100,150,200 --seconds 20
//! ```
//!
//! Options: `--sessions a,b,c` (default 25,50,100,150,200), `--seconds S` (measurement window per N, default 20),
//! `--warmup S` (default 4), `--vad-nice N` (nice value of the Silero inference threads; default the plugin's
//! `DEFAULT_INFERENCE_NICE`, 0 = unchanged); environment `DENSITY_VAD=energy` swaps Silero for the testkit's energy VAD. The whole process is pinned to one CPU (`sched_setaffinity` before the runtime and the
//! model exist, so every thread, the VAD's blocking pool included, shares that core); the runtime is tokio's
//! `current_thread`. Memory per session is the growth of live heap bytes (a counting global allocator) from before
//! the sessions start to the end of the window, divided by N; the model is loaded before the baseline, so it is
//! not included. RSS growth is printed too.
#![allow(
    missing_docs,
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod harness;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use agents::silero::{DEFAULT_INFERENCE_NICE, SileroLoadOptions, SileroVad};

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

fn main() {
    let sessions: Vec<usize> = arg("--sessions")
        .unwrap_or_else(|| "25,50,100,150,200".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0);
    let warmup: f64 = arg("--warmup").and_then(|s| s.parse().ok()).unwrap_or(4.0);
    // `--vad-nice N`: nice value of the Silero inference threads (the plugin sets it); 0 leaves them alone.
    let vad_nice: i32 = arg("--vad-nice")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_INFERENCE_NICE);

    let cpu = harness::pin_to_one_core().expect("pin to one core");
    // Loaded after pinning: its inference threads (default: available parallelism = 1 here) share the core.
    let silero = SileroVad::load_with(SileroLoadOptions::default().with_inference_nice(vad_nice))
        .expect("load the Silero model");
    // `DENSITY_VAD=energy`: the testkit's energy VAD instead of Silero (no model, no blocking pool), to separate
    // the VAD's cost from the session's.
    let energy = std::env::var("DENSITY_VAD").is_ok_and(|v| v == "energy");
    let vad: Arc<dyn agents::core::Vad> = if energy {
        Arc::new(agents_testkit::FakeVad::energy())
    } else {
        Arc::new(silero.clone())
    };
    let frames = Arc::new(harness::load_frames(&harness::fixture_path()));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "density: pinned to CPU {cpu} (sched_setaffinity; runtime and the Silero inference threads all on it), \
         {} ({} online), tokio current_thread, VAD {}, fixture {} frames of 20 ms, \
         Silero inference threads {} at nice {}, warm-up {warmup} s, window {seconds} s, load average before: {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, usize::from),
        if energy {
            "testkit FakeVad::energy (DENSITY_VAD=energy)".to_owned()
        } else {
            format!("Silero ({:?} backend)", silero.backend())
        },
        frames.len(),
        silero.inference_threads(),
        silero.inference_nice(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    println!(
        "| sessions | CPU per session (% of a core) | CPU total | added latency p50 / p99 / max (ms) | turns | \
         replies | dropped / fed frames | feeder tick lateness p50 / p99 (ms) | heap per session | RSS growth per session |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sessions {
        let config = harness::Config {
            sessions: n,
            warmup: Duration::from_secs_f64(warmup),
            measure: Duration::from_secs_f64(seconds),
            input_capacity: harness::INPUT_CAPACITY,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(harness::run(
            &config,
            &vad,
            Arc::clone(&frames),
            Some(live_bytes),
        ));
        drop(rt);
        let share = r.cpu.as_secs_f64() / r.wall.as_secs_f64();
        let lat = &r.latencies;
        println!(
            "| {n} | {:.3} % | {:.1} % | {} / {} / {} | {} | {} | {} / {} | {} / {} | {} | {} |",
            share / n as f64 * 100.0,
            share * 100.0,
            ms(harness::Report::pct(lat, 0.5)),
            ms(harness::Report::pct(lat, 0.99)),
            ms(lat.last().copied()),
            r.turns,
            r.replies,
            r.dropped_frames,
            r.fed_frames,
            ms(r.tick_lateness[0]),
            ms(r.tick_lateness[1]),
            r.heap_growth.map_or("-".to_owned(), |b| format!(
                "{:.0} KiB",
                b as f64 / n as f64 / 1024.0
            )),
            r.rss_growth.map_or("-".to_owned(), |b| format!(
                "{:.0} KiB",
                b as f64 / n as f64 / 1024.0
            )),
        );
    }
}
