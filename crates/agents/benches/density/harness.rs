//! The density harness shared by `benches/density` and the smoke test `tests/density_smoke.rs`.
//!
//! `sessions` voice sessions run in one tokio runtime, each with the real Silero VAD (one shared model), the
//! testkit's fake STT / LLM / TTS (zero configured latency) and a fake audio output playing in real time. Every
//! session is fed 20 ms frames of a real speech recording (looping) in real time, VAD turn detection ends the
//! user's turns, and the agent replies. The harness measures:
//!
//! - **added latency** per turn: the end-of-turn decision (`EouMetrics::timestamp`, stamped at the commit) to the
//!   first frame of the reply reaching the audio output (the fake output's `OutputFirstFrame` stamp). The fakes'
//!   configured latencies are all zero, so nothing is subtracted;
//! - turns committed, replies started, and frames dropped at the session input (the feeder uses `try_send` into a
//!   bounded input, 10 frames in the benchmark; a full input drops the frame and counts it);
//! - how late the feeders' 20 ms ticks fire (a sign of an overloaded core);
//! - process CPU time over the measurement window.
#![allow(dead_code, reason = "the smoke test uses part of the harness")]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, MissedTickBehavior};

use agents::audio::{AudioFrame, SampleRate};
use agents::core::audio_io::AudioInput;
use agents::core::events::{AgentState, SessionEvent};
use agents::core::metrics::Metrics;
use agents::core::{Agent, SessionControl, SessionIo, Vad};
use agents::pipeline::{AgentSession, TurnDetectionMode};
use agents_testkit::stamps::{Stamp, Stamps, first_of};
use agents_testkit::{FakeAudioOutput, FakeLlm, FakeResponse, FakeStt, FakeTts};

/// The agent's reply (6 words: 1.8 s of fake speech).
pub(crate) const REPLY: &str = "Sure, I can help with that.";
/// Frame length fed to the sessions.
pub(crate) const FRAME: Duration = Duration::from_millis(20);
/// Capacity of each session's audio input in the benchmark (frames: 200 ms).
pub(crate) const INPUT_CAPACITY: usize = 10;

/// Path of the speech fixture (espeak-ng utterances with pauses, 16 kHz mono, 6.6 s).
pub(crate) fn fixture_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/silero/tests/fixtures/speech_pauses_16k.wav")
}

/// Reads the fixture into 20 ms frames.
pub(crate) fn load_frames(path: &Path) -> Vec<AudioFrame> {
    let mut reader = hound::WavReader::open(path).expect("open the speech fixture");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels),
        (16_000, 1),
        "16 kHz mono fixture"
    );
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("read the fixture");
    samples
        .chunks(320)
        .filter(|c| c.len() == 320)
        .map(|c| AudioFrame::new(c.to_vec(), SampleRate::HZ_16000, 1).expect("valid frame"))
        .collect()
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Concurrent sessions.
    pub(crate) sessions: usize,
    /// Warm-up before the measurement window (the first user turn of the fixture ends after ~3 s).
    pub(crate) warmup: Duration,
    /// Measurement window.
    pub(crate) measure: Duration,
    /// Capacity of each session's audio input (frames); a frame that finds it full is dropped and counted.
    pub(crate) input_capacity: usize,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Concurrent sessions.
    pub(crate) sessions: usize,
    /// Measurement window (wall).
    pub(crate) wall: Duration,
    /// Process CPU time over the window.
    pub(crate) cpu: Duration,
    /// End-of-turn decisions in the window.
    pub(crate) turns: u64,
    /// Replies whose first frame reached the output in the window.
    pub(crate) replies: u64,
    /// Frames the feeders could not hand to a full session input (whole run).
    pub(crate) dropped_frames: u64,
    /// Frames fed (whole run).
    pub(crate) fed_frames: u64,
    /// Added latency of each reply in the window, sorted.
    pub(crate) latencies: Vec<Duration>,
    /// How late the feeder ticks fired in the window: p50, p99, p99.9, max (upper bounds of 50 µs buckets).
    pub(crate) tick_lateness: [Option<Duration>; 4],
    /// Live heap bytes (counting allocator) at the end of the window minus before the sessions started, when
    /// the caller counts.
    pub(crate) heap_growth: Option<i64>,
    /// Resident set growth over the same span (bytes).
    pub(crate) rss_growth: Option<i64>,
}

impl Report {
    /// Percentile `q` (0..=1) of a sorted list.
    pub(crate) fn pct(v: &[Duration], q: f64) -> Option<Duration> {
        if v.is_empty() {
            return None;
        }
        Some(v[((v.len() as f64 - 1.0) * q).round() as usize])
    }
}

#[derive(Default)]
struct Shared {
    measuring: std::sync::atomic::AtomicBool,
    turns: AtomicU64,
    replies: AtomicU64,
    dropped: AtomicU64,
    fed: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    lateness: Histogram,
}

/// Tick lateness in fixed 50 µs buckets up to 200 ms (fixed memory, so it does not count as session memory).
struct Histogram {
    buckets: Vec<AtomicU64>,
}

const BUCKET: Duration = Duration::from_micros(50);

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..4001).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn add(&self, d: Duration) {
        let i = (d.as_micros() / BUCKET.as_micros()) as usize;
        self.buckets[i.min(self.buckets.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Upper bound of the bucket holding percentile `q`.
    fn pct(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total - 1) as f64 * q).round() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(BUCKET * (i as u32 + 1));
            }
        }
        None
    }
}

impl Shared {
    fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }
}

/// Resident set size of this process (bytes), from `/proc/self/statm`.
#[allow(unsafe_code, reason = "sysconf has no safe wrapper in std")]
pub(crate) fn rss_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf with a constant name has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * i64::from(i32::try_from(page).ok()?))
}

/// Pins the calling thread (and every thread it creates later: the runtime, the blocking pool) to one CPU, the
/// first of its current affinity set. Returns the CPU.
#[allow(unsafe_code, reason = "sched_setaffinity has no safe wrapper in std")]
pub(crate) fn pin_to_one_core() -> std::io::Result<usize> {
    // SAFETY: `set` is a plain bitmask owned by this frame; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .unwrap_or(0);
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cpu)
    }
}

struct Running {
    session: AgentSession,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_session(
    index: usize,
    count: usize,
    vad: &Arc<dyn Vad>,
    frames: Arc<Vec<AudioFrame>>,
    shared: Arc<Shared>,
    start: Instant,
    input_capacity: usize,
) -> Running {
    let stamps = Stamps::new();
    let stt = FakeStt::new().with_transcripts(["hello there", "hello there"]);
    let llm = FakeLlm::new()
        .with_responder(|_| FakeResponse::text(REPLY).chunked_words())
        .without_request_log()
        .with_stamps(stamps.clone());
    let output = FakeAudioOutput::new()
        .without_audio_log()
        .with_stamps(stamps.clone());
    let session = AgentSession::builder()
        .vad(Arc::clone(vad))
        .stt(Arc::new(stt.clone()))
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .turn_detection(TurnDetectionMode::Vad)
        .build();
    let mut events = session.events();
    let (tx, input) = AudioInput::channel("density.input", input_capacity);
    session
        .start(
            Agent::new("You are a density benchmark."),
            SessionIo::new()
                .with_audio_input(input)
                .with_audio_output(Arc::new(output)),
        )
        .await
        .expect("session starts");

    // Feeder: one 20 ms frame per tick, real time, staggered across sessions so the ticks spread over the frame.
    let offset = FRAME.mul_f64(index as f64 / count.max(1) as f64);
    let feeder_shared = Arc::clone(&shared);
    let feeder = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(start + offset, FRAME);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut scheduled = start + offset;
        // Each session starts at its own point of the recording, so turns end at independent times (not all
        // sessions at once).
        let skip = index * frames.len() / count.max(1);
        for frame in frames.iter().cycle().skip(skip) {
            tick.tick().await;
            if feeder_shared.measuring() {
                let late = Instant::now().saturating_duration_since(scheduled);
                feeder_shared.lateness.add(late);
            }
            scheduled += FRAME;
            feeder_shared.fed.fetch_add(1, Ordering::Relaxed);
            match tx.try_send(frame.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    feeder_shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
    });

    // Observer: pairs each end-of-turn decision with the first output frame of the reply.
    let observer = tokio::spawn(async move {
        let mut decision: Option<Instant> = None;
        while let Some(event) = events.next().await {
            match event {
                SessionEvent::UserInputTranscribed { is_final: true, .. } => {
                    // Keep one transcript queued for the fake STT's next utterance.
                    stt.push_transcript("hello there");
                }
                SessionEvent::MetricsCollected(Metrics::EndOfUtterance(m)) => {
                    // The decision's wall-clock stamp, mapped onto the monotonic clock.
                    let ago = SystemTime::now()
                        .duration_since(m.timestamp)
                        .unwrap_or_default();
                    decision = Some(Instant::now() - ago);
                    // Stamps before the decision belong to earlier replies.
                    stamps.take();
                    if shared.measuring() {
                        shared.turns.fetch_add(1, Ordering::Relaxed);
                    }
                }
                SessionEvent::AgentStateChanged {
                    new: AgentState::Speaking,
                    ..
                } => {
                    let log = stamps.take();
                    if let (Some(d), Some(out)) =
                        (decision.take(), first_of(&log, Stamp::OutputFirstFrame))
                        && shared.measuring()
                    {
                        shared.replies.fetch_add(1, Ordering::Relaxed);
                        lock(&shared.latencies).push(out.saturating_duration_since(d));
                    }
                }
                SessionEvent::Close { .. } => return,
                _ => {}
            }
        }
    });
    Running {
        session,
        tasks: vec![feeder, observer],
    }
}

fn lock<T>(m: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `config.sessions` sessions for `warmup + measure`; `live_bytes` reads the counting allocator, if any.
pub(crate) async fn run(
    config: &Config,
    vad: &Arc<dyn Vad>,
    frames: Arc<Vec<AudioFrame>>,
    live_bytes: Option<fn() -> i64>,
) -> Report {
    let shared = Arc::new(Shared::default());
    // Room for every reply, so the list does not grow during the window (it would count as session memory).
    lock(&shared.latencies).reserve(config.sessions * (config.measure.as_secs() as usize + 1));
    let heap0 = live_bytes.map(|f| f());
    let rss0 = rss_bytes();
    // Feeding starts once every session is up (starting one takes well under 1 ms in release).
    let start = Instant::now()
        + Duration::from_millis(100)
        + Duration::from_millis(2) * config.sessions as u32;
    let mut running = Vec::with_capacity(config.sessions);
    for i in 0..config.sessions {
        running.push(
            start_session(
                i,
                config.sessions,
                vad,
                Arc::clone(&frames),
                Arc::clone(&shared),
                start,
                config.input_capacity,
            )
            .await,
        );
    }
    tokio::time::sleep_until(start + config.warmup).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let cpu0 = agents_testkit::bench::cpu_time(agents_testkit::bench::CpuClock::Process);
    let t0 = Instant::now();
    tokio::time::sleep(config.measure).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let wall = t0.elapsed();
    let cpu = agents_testkit::bench::cpu_time(agents_testkit::bench::CpuClock::Process)
        .saturating_sub(cpu0);
    let heap_growth = live_bytes.zip(heap0).map(|(f, h0)| f() - h0);
    let rss_growth = rss_bytes().zip(rss0).map(|(r, r0)| r - r0);
    for r in running {
        let mut tasks = r.tasks.into_iter();
        // The feeder loops forever: stop it, so the input ends.
        if let Some(feeder) = tasks.next() {
            feeder.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), r.session.close()).await;
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
    let mut latencies = std::mem::take(&mut *lock(&shared.latencies));
    latencies.sort();
    let tick_lateness = [0.5, 0.99, 0.999, 1.0].map(|q| shared.lateness.pct(q));
    Report {
        sessions: config.sessions,
        wall,
        cpu,
        turns: shared.turns.load(Ordering::Relaxed),
        replies: shared.replies.load(Ordering::Relaxed),
        dropped_frames: shared.dropped.load(Ordering::Relaxed),
        fed_frames: shared.fed.load(Ordering::Relaxed),
        latencies,
        tick_lateness,
        heap_growth,
        rss_growth,
    }
}
