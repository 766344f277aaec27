//! The inference executor: a small pool of dedicated OS threads, owned by the shared model, that runs every Silero
//! inference.
//!
//! Why not tokio's blocking pool: on a busy machine the inference threads compete with the async event loop for the
//! same cores, and a 60 µs window landing in front of a ready task adds its whole length to that task's latency.
//! Dedicated threads can lower their own scheduling priority (Linux: `setpriority(PRIO_PROCESS, gettid(), nice)`,
//! which on Linux applies to the one thread), so the scheduler runs the event loop first and inference fills the
//! idle time; throughput is unchanged while the cores are not saturated, because a niced thread still gets every
//! idle cycle.
//!
//! * Threads: fixed at start-up (default: available parallelism). They exit by themselves once the last
//!   [`ExecutorHandle`] is gone (the `SileroVad` and every stream hold one).
//! * Queue: bounded ([`QUEUE_PER_THREAD`] jobs per thread). A full queue makes the submitting stream await, so the
//!   back-pressure reaches the stream's own bounded input channel and, from there, the producer.
//! * Results come back over a tokio `oneshot`. A job that panics is caught on the worker (the thread survives) and
//!   the waiting stream gets [`ExecutorError::JobFailed`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

/// Queued jobs allowed per worker thread before submitters wait.
pub(crate) const QUEUE_PER_THREAD: usize = 64;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExecutorError {
    /// Every worker thread is gone (cannot happen while a handle exists, unless the threads died).
    #[error("the Silero inference threads have stopped")]
    Stopped,
    /// The job panicked; the worker caught it and goes on.
    #[error("a Silero inference job panicked")]
    JobFailed,
}

/// A cheap, cloneable way to submit jobs to the executor.
#[derive(Debug, Clone)]
pub(crate) struct ExecutorHandle {
    jobs: mpsc::Sender<Job>,
    threads: usize,
    nice: i32,
}

impl ExecutorHandle {
    /// Starts `threads` worker threads (0 counts as 1), each lowering its own priority to `nice` (0: unchanged;
    /// Linux only, elsewhere ignored).
    ///
    /// # Errors
    /// The OS refused to start a thread (the ones already started stop again).
    pub(crate) fn start(threads: usize, nice: i32) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>(threads.saturating_mul(QUEUE_PER_THREAD));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("silero-infer-{i}"))
                .spawn(move || worker(&rx, nice))?;
        }
        Ok(Self {
            jobs: tx,
            threads,
            nice,
        })
    }

    /// Worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Nice value the workers asked for.
    pub(crate) fn nice(&self) -> i32 {
        self.nice
    }

    /// Runs `f` on a worker and returns its result; waits for queue space first when the queue is full.
    ///
    /// # Errors
    /// [`ExecutorError`] when the workers are gone or `f` panicked.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R, ExecutorError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The receiver may be gone (stream dropped mid-job): nothing to report then.
            let _ = tx.send(f());
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| ExecutorError::Stopped)?;
        // A panicking job drops `tx` while unwinding: the receiver sees that as an error.
        rx.await.map_err(|_| ExecutorError::JobFailed)
    }
}

fn worker(jobs: &Mutex<mpsc::Receiver<Job>>, nice: i32) {
    lower_priority(nice);
    loop {
        // One idle worker waits inside the lock; the others wait for the lock. The lock is released before the job
        // runs, so a panicking job cannot poison it.
        let job = match jobs.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => return,
        };
        let Some(job) = job else {
            // Every handle is gone.
            return;
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a Silero inference job panicked; the worker goes on");
        }
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux; a no-op for 0 and on other systems).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    let Ok(who) = libc::id_t::try_from(tid) else {
        return;
    };
    // SAFETY: setpriority only reads its integer arguments; on Linux PRIO_PROCESS with a thread id applies to that
    // one thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) };
    if rc != 0 {
        tracing::warn!(
            nice,
            error = %std::io::Error::last_os_error(),
            "cannot set the Silero inference thread's priority; it keeps the default"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_returns_their_results() {
        let ex = ExecutorHandle::start(2, 0).unwrap();
        let mut results = Vec::new();
        for i in 0..10u32 {
            results.push(ex.run(move || i * 2).await.unwrap());
        }
        assert_eq!(results, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn jobs_run_off_the_calling_thread_on_named_workers() {
        let ex = ExecutorHandle::start(1, 0).unwrap();
        let name = ex
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("silero-infer-0"));
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let ex = ExecutorHandle::start(1, 0).unwrap();
        let r: Result<(), _> = ex.run(|| panic!("boom")).await;
        assert_eq!(r, Err(ExecutorError::JobFailed));
        assert_eq!(ex.run(|| 7).await, Ok(7));
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    #[tokio::test]
    async fn workers_lower_their_own_priority_only() {
        // SAFETY: getpriority reads integer arguments only.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let ex = ExecutorHandle::start(1, 5).unwrap();
        let worker_nice = ex
            .run(|| {
                // SAFETY: as above; 0 = the calling thread on Linux.
                unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
            })
            .await
            .unwrap();
        // Raising nice needs no privilege; it is capped at 19.
        assert_eq!(worker_nice, (own + 5).min(19));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, own);
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_submitter_wait() {
        let ex = ExecutorHandle::start(1, 0).unwrap();
        // Block the only worker until released.
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        let blocker = {
            let ex = ex.clone();
            tokio::spawn(async move {
                ex.run(move || {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv();
                })
                .await
            })
        };
        started_rx.await.unwrap();
        // Fill the queue: these submissions complete (queued) without a worker.
        let mut queued = Vec::new();
        for _ in 0..QUEUE_PER_THREAD {
            let ex = ex.clone();
            queued.push(tokio::spawn(async move { ex.run(|| ()).await }));
        }
        // Let every queued submission reach the channel.
        while ex.jobs.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        // One more: it cannot even be queued, so it stays pending.
        let extra = ex.clone();
        let mut extra = tokio::spawn(async move { extra.run(|| 1).await });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), &mut extra).await;
        assert!(waited.is_err(), "a submit to a full queue should wait");
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert_eq!(extra.await.unwrap(), Ok(1));
    }
}
