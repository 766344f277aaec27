//! The resampler's steady state allocates nothing: a counting global allocator watches the
//! streaming calls once the output buffer has its capacity.

#![allow(
    unsafe_code,
    reason = "a global allocator wrapper is the only way to count allocations"
)]
#![allow(clippy::unwrap_used, reason = "test")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use agents_audio::{ResampleQuality, Resampler, SampleRate};

struct Counting;

thread_local! {
    /// Allocations made by this thread while counting is on (other test threads don't count).
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note() {
    // `try_with`: the allocator also runs during thread teardown.
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; counting touches no heap memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT.with(|c| c.replace(None)).unwrap()
}

#[test]
fn streaming_allocates_nothing_once_buffers_have_grown() {
    // The counter itself must see allocations, or the check below proves nothing.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 64]))) > 0);

    for (a, b, ch) in [
        (48_000, 16_000, 1u16),
        (16_000, 24_000, 1),
        (44_100, 16_000, 2),
        (8_000, 48_000, 2),
    ] {
        let (a, b) = (SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap());
        let mut r = Resampler::new(a, b, ch, ResampleQuality::default()).unwrap();
        let piece: Vec<i16> = (0..a.hz() as usize / 100 * usize::from(ch))
            .map(|i| ((i * 7919) % 20_000) as i16 - 10_000)
            .collect();
        let mut out: Vec<i16> = Vec::with_capacity(16_384);
        let mut out_f32: Vec<f32> = Vec::with_capacity(16_384);
        let piece_f32: Vec<f32> = piece.iter().map(|&s| f32::from(s) / 32768.0).collect();
        // Warm up: the first blocks and any lazily sized state.
        for _ in 0..20 {
            r.push_into(&piece, &mut out).unwrap();
            out.clear();
        }
        let produced = std::cell::Cell::new(0);
        let n = allocations_during(|| {
            for _ in 0..500 {
                r.push_into(&piece, &mut out).unwrap();
                produced.set(produced.get() + out.len());
                out.clear();
                r.push_f32_into(&piece_f32, &mut out_f32).unwrap();
                produced.set(produced.get() + out_f32.len());
                out_f32.clear();
            }
        });
        assert!(produced.get() > 0, "{a}->{b}: the loop produced output");
        assert_eq!(n, 0, "{a}->{b} x{ch}: {n} allocations in the steady state");
    }
}
