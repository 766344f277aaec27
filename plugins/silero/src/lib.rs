#![doc = include_str!("../README.md")]

mod executor;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use agents_audio::onnx::{OnnxError, OnnxModel, OnnxModelOptions};
use agents_audio::{SampleRate, VadOptions, VadOptionsError};
use agents_core::vad::{Vad, VadCapabilities, VadError, VadStream};
use tokio::sync::watch;

/// Re-exported so callers need no direct `agents-audio` dependency to configure the VAD.
pub use agents_audio::VadOptions as SileroVadOptions;
/// Re-exported: the ONNX backend choice of [`SileroLoadOptions::backend`].
pub use agents_audio::onnx::OnnxBackend;

/// The bundled model: `silero_vad_openvino_16k.onnx` from the PyPI `silero-vad` 6.2.3 wheel (MIT, see
/// `assets/LICENSE` and `assets/README.md`). Fixed shapes: `input` f32 [1, 576], `state` f32 [2, 1, 128] ->
/// `output` f32 [1, 1], `stateN` f32 [2, 1, 128].
pub static MODEL_BYTES: &[u8] = include_bytes!("../assets/silero_vad_16k.onnx");

/// sha256 of [`MODEL_BYTES`].
pub const MODEL_SHA256: &str = "7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87";

/// Rate the model runs at.
pub const MODEL_SAMPLE_RATE: SampleRate = SampleRate::HZ_16000;
/// New samples per inference window (32 ms at 16 kHz).
pub const WINDOW_SAMPLES: usize = 512;
/// Samples of the previous window prepended to each window.
pub const CONTEXT_SAMPLES: usize = 64;
/// Size of the recurrent state tensor [2, 1, 128].
pub const STATE_LEN: usize = 2 * 128;

/// Why the Silero VAD could not be created or reconfigured.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SileroError {
    /// The ONNX backend or model failed to load.
    #[error("cannot load the Silero model")]
    Model(#[from] OnnxError),
    /// The options are invalid.
    #[error("invalid Silero VAD options")]
    Options(#[from] VadOptionsError),
    /// The inference threads could not be started.
    #[error("cannot start the Silero inference threads: {reason}")]
    Executor {
        /// The OS error.
        reason: String,
    },
}

/// How the model is loaded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SileroLoadOptions {
    /// VAD settings (thresholds, durations); LiveKit's Silero defaults.
    pub vad: VadOptions,
    /// ONNX backend; `None`: the one already active in the process, else `ORT_DYLIB_PATH` (ONNX Runtime) when set,
    /// else pure-Rust tract.
    pub backend: Option<OnnxBackend>,
    /// Most inferences run at once across all streams (ONNX sessions kept); default: the CPU count.
    pub max_concurrent_inferences: usize,
    /// Dedicated OS threads that run every inference for this model (shared by all its streams); default: the
    /// available parallelism (`std::thread::available_parallelism`, which honours the process's CPU affinity).
    pub inference_threads: usize,
    /// Nice value each inference thread sets for itself (Linux `setpriority` on its own thread id; ignored on other
    /// systems). Default [`DEFAULT_INFERENCE_NICE`]: the scheduler runs the async event loop first and inference
    /// takes the idle time, which keeps the loop's latency tail short when sessions and inference share cores.
    /// 0 leaves the priority alone; negative values need privileges (a refusal is logged, the thread keeps its
    /// priority).
    pub inference_nice: i32,
}

/// Default [`SileroLoadOptions::inference_nice`].
pub const DEFAULT_INFERENCE_NICE: i32 = 19;

impl Default for SileroLoadOptions {
    fn default() -> Self {
        Self {
            vad: VadOptions::default(),
            backend: None,
            max_concurrent_inferences: OnnxModelOptions::default().max_sessions,
            inference_threads: std::thread::available_parallelism().map_or(1, usize::from),
            inference_nice: DEFAULT_INFERENCE_NICE,
        }
    }
}

impl SileroLoadOptions {
    /// Sets [`SileroLoadOptions::vad`].
    #[must_use]
    pub fn with_vad(mut self, vad: VadOptions) -> Self {
        self.vad = vad;
        self
    }

    /// Sets [`SileroLoadOptions::backend`].
    #[must_use]
    pub fn with_backend(mut self, backend: OnnxBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Sets [`SileroLoadOptions::max_concurrent_inferences`] (0 counts as 1).
    #[must_use]
    pub fn with_max_concurrent_inferences(mut self, n: usize) -> Self {
        self.max_concurrent_inferences = n.max(1);
        self
    }

    /// Sets [`SileroLoadOptions::inference_threads`] (0 counts as 1).
    #[must_use]
    pub fn with_inference_threads(mut self, n: usize) -> Self {
        self.inference_threads = n.max(1);
        self
    }

    /// Sets [`SileroLoadOptions::inference_nice`] (clamped to -20..=19; 0: priority unchanged).
    #[must_use]
    pub fn with_inference_nice(mut self, nice: i32) -> Self {
        self.inference_nice = nice.clamp(-20, 19);
        self
    }
}

/// Silero voice activity detection: one model shared by any number of streams. Cheap to clone (clones share the
/// model and the options).
#[derive(Clone)]
pub struct SileroVad {
    inner: Arc<Inner>,
}

struct Inner {
    model: Arc<OnnxModel>,
    options: watch::Sender<VadOptions>,
    executor: executor::ExecutorHandle,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("backend", self.inner.model.backend())
            .field("options", &*self.inner.options.borrow())
            .field("inference_threads", &self.inner.executor.threads())
            .field("inference_nice", &self.inner.executor.nice())
            .finish_non_exhaustive()
    }
}

impl SileroVad {
    /// Loads the bundled model with default options (blocking: ~20 ms in release, ~150 ms in debug builds; call it
    /// at start-up, not per call).
    ///
    /// # Errors
    /// [`SileroError::Model`] when the ONNX backend cannot load it.
    pub fn load() -> Result<Self, SileroError> {
        Self::load_with(SileroLoadOptions::default())
    }

    /// Loads the bundled model with `options`.
    ///
    /// # Errors
    /// [`SileroError::Options`] for invalid VAD options; [`SileroError::Model`] when the backend cannot load it.
    pub fn load_with(options: SileroLoadOptions) -> Result<Self, SileroError> {
        options.vad.validate()?;
        let mut model_options =
            OnnxModelOptions::default().with_max_sessions(options.max_concurrent_inferences);
        if let Some(b) = options.backend {
            model_options = model_options.with_backend(b);
        }
        let model = OnnxModel::from_memory(MODEL_BYTES, model_options)?;
        let executor =
            executor::ExecutorHandle::start(options.inference_threads, options.inference_nice)
                .map_err(|e| SileroError::Executor {
                    reason: e.to_string(),
                })?;
        let (tx, _) = watch::channel(options.vad);
        Ok(Self {
            inner: Arc::new(Inner {
                model: Arc::new(model),
                options: tx,
                executor,
            }),
        })
    }

    /// The options in effect.
    pub fn options(&self) -> VadOptions {
        *self.inner.options.borrow()
    }

    /// Replaces the options for new streams and every open stream (applied from each stream's next window).
    ///
    /// # Errors
    /// [`VadOptionsError`] when `options` are invalid (nothing changes).
    pub fn update_options(&self, options: VadOptions) -> Result<(), VadOptionsError> {
        options.validate()?;
        self.inner.options.send_replace(options);
        Ok(())
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &OnnxBackend {
        self.inner.model.backend()
    }

    /// Dedicated inference threads of this model ([`SileroLoadOptions::inference_threads`]).
    pub fn inference_threads(&self) -> usize {
        self.inner.executor.threads()
    }

    /// Nice value of the inference threads ([`SileroLoadOptions::inference_nice`]).
    pub fn inference_nice(&self) -> i32 {
        self.inner.executor.nice()
    }

    /// The shared model (for benchmarks and diagnostics).
    pub fn model(&self) -> &Arc<OnnxModel> {
        &self.inner.model
    }
}

impl Vad for SileroVad {
    fn label(&self) -> &str {
        "silero.VAD"
    }

    fn capabilities(&self) -> VadCapabilities {
        VadCapabilities::new(Duration::from_millis(32))
    }

    fn stream(&self) -> Result<VadStream, VadError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| VadError::Model {
            reason: format!("SileroVad::stream needs a tokio runtime: {e}"),
        })?;
        let options = self.inner.options.subscribe();
        let detector = SileroDetector::new(Arc::clone(&self.inner.model));
        let (stream, driver) = VadStream::channel();
        runtime.spawn(stream::run(
            driver,
            detector,
            options,
            self.inner.executor.clone(),
        ));
        Ok(stream)
    }
}

/// One Silero stream's model state: the LSTM state and the 64-sample context, over the shared model. Runs one
/// 512-sample 16 kHz window at a time (blocking).
#[derive(Debug)]
pub struct SileroDetector {
    model: Arc<OnnxModel>,
    state: Vec<f32>,
    next_state: Vec<f32>,
    input: Vec<f32>,
}

impl SileroDetector {
    /// A detector with zeroed state over `model` (which must be the Silero model, e.g. [`SileroVad::model`]).
    pub fn new(model: Arc<OnnxModel>) -> Self {
        Self {
            model,
            state: vec![0.0; STATE_LEN],
            next_state: vec![0.0; STATE_LEN],
            input: vec![0.0; CONTEXT_SAMPLES + WINDOW_SAMPLES],
        }
    }

    /// Speech probability of one window of exactly [`WINDOW_SAMPLES`] 16 kHz mono samples (blocking).
    ///
    /// # Errors
    /// [`OnnxError`] when inference fails or the window has another length ([`OnnxError::Run`]).
    pub fn predict(&mut self, window: &[i16]) -> Result<f32, OnnxError> {
        if window.len() != WINDOW_SAMPLES {
            return Err(OnnxError::Run {
                reason: format!(
                    "Silero needs {WINDOW_SAMPLES}-sample windows, got {}",
                    window.len()
                ),
            });
        }
        // Keep the last 64 samples of the previous window as context, then the new window.
        self.input.copy_within(WINDOW_SAMPLES.., 0);
        for (dst, &s) in self.input[CONTEXT_SAMPLES..].iter_mut().zip(window) {
            *dst = f32::from(s) / 32768.0;
        }
        let mut prob = [0.0f32; 1];
        self.model.run(
            &[
                agents_audio::onnx::OnnxInput::new(
                    "input",
                    &[1, CONTEXT_SAMPLES + WINDOW_SAMPLES],
                    &self.input,
                ),
                agents_audio::onnx::OnnxInput::new("state", &[2, 1, 128], &self.state),
            ],
            &mut [
                ("output", &mut prob[..]),
                ("stateN", &mut self.next_state[..]),
            ],
        )?;
        std::mem::swap(&mut self.state, &mut self.next_state);
        Ok(prob[0])
    }

    /// Zeroes the recurrent state and the context.
    pub fn reset(&mut self) {
        self.state.fill(0.0);
        self.input.fill(0.0);
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SileroVad>();
    assert_send_sync::<SileroDetector>();
    assert_send_sync::<SileroError>();
};
