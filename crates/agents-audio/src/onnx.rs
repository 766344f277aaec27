//! A small ONNX model wrapper (feature `onnx`): load a model from bytes once, run it from many threads.
//!
//! # Backends
//!
//! Models run through [`ort`] with one of two backends:
//!
//! * [`OnnxBackend::Tract`] (the default): pure Rust, [`ort_tract`] on top of `tract`. No native library, no
//!   download, works offline. It runs fixed-shape models only (e.g. Silero's `silero_vad_openvino_16k.onnx`).
//! * [`OnnxBackend::OnnxRuntime`]: Microsoft's ONNX Runtime, loaded at run time from a shared library the user
//!   provides (for example `onnxruntime/capi/libonnxruntime.so.1.*` from the PyPI `onnxruntime` wheel), usually
//!   named by the `ORT_DYLIB_PATH` environment variable ([`OnnxBackend::from_env`]). It needs ONNX Runtime ≥ 1.24
//!   (C API version 24); an older library is refused with [`OnnxError::RuntimeTooOld`].
//!
//! **The backend is process-global**: `ort` keeps one API table per process. The first [`init_backend`] (or the
//! first [`OnnxModel`] load, which initialises [`OnnxBackend::from_env`]) wins; asking later for a different
//! backend fails with [`OnnxError::BackendConflict`], asking for the same one is a no-op.
//!
//! # Sessions
//!
//! `ort`'s `Session::run` needs exclusive access (ONNX Runtime's `Run` is not thread safe), so an [`OnnxModel`]
//! keeps a small pool of sessions over the same model bytes, each behind a mutex, created on demand up to
//! [`OnnxModelOptions::max_sessions`] (default: the number of CPUs). Any number of callers share one
//! `Arc<OnnxModel>`; at most `max_sessions` inferences run at once, the others wait for a free session.
//! Each session runs single-threaded (intra-op threads = 1), which is fastest for small models such as Silero.
//!
//! # Example
//!
//! ```no_run
//! use agents_audio::onnx::{OnnxInput, OnnxModel, OnnxModelOptions};
//! # fn main() -> Result<(), agents_audio::onnx::OnnxError> {
//! let bytes = std::fs::read("model.onnx").map_err(|e| agents_audio::onnx::OnnxError::Load {
//!     reason: e.to_string(),
//! })?;
//! let model = OnnxModel::from_memory(&bytes, OnnxModelOptions::default())?;
//! let input = vec![0.0f32; 576];
//! let state = vec![0.0f32; 256];
//! let mut prob = [0.0f32; 1];
//! let mut next_state = vec![0.0f32; 256];
//! model.run(
//!     &[
//!         OnnxInput::new("input", &[1, 576], &input),
//!         OnnxInput::new("state", &[2, 1, 128], &state),
//!     ],
//!     &mut [("output", &mut prob[..]), ("stateN", &mut next_state[..])],
//! )?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;

/// Environment variable naming the ONNX Runtime shared library ([`OnnxBackend::from_env`]).
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// Where ONNX models run. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnnxBackend {
    /// Pure Rust (`ort-tract`): no native library.
    Tract,
    /// ONNX Runtime loaded from this shared library at run time.
    OnnxRuntime {
        /// Path of `libonnxruntime.so` / `onnxruntime.dll` / `libonnxruntime.dylib`.
        library: PathBuf,
    },
}

impl OnnxBackend {
    /// [`OnnxBackend::OnnxRuntime`] when `ORT_DYLIB_PATH` is set and not empty, else [`OnnxBackend::Tract`].
    pub fn from_env() -> Self {
        match std::env::var_os(ORT_DYLIB_PATH) {
            Some(p) if !p.is_empty() => Self::OnnxRuntime { library: p.into() },
            _ => Self::Tract,
        }
    }
}

impl fmt::Display for OnnxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tract => f.write_str("tract"),
            Self::OnnxRuntime { library } => write!(f, "onnxruntime ({})", library.display()),
        }
    }
}

/// Why loading or running a model failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The process already uses another backend (the backend is process-global).
    #[error(
        "ONNX backend {active} is already in use in this process; cannot switch to {requested}"
    )]
    BackendConflict {
        /// The backend in use.
        active: OnnxBackend,
        /// The backend asked for.
        requested: OnnxBackend,
    },
    /// Some other code in the process set `ort`'s API table before this module did.
    #[error("another ONNX Runtime API was installed in this process outside agents_audio::onnx")]
    BackendSetElsewhere,
    /// The ONNX Runtime library could not be loaded or lacks `OrtGetApiBase`.
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    LibraryLoad {
        /// The library path.
        path: PathBuf,
        /// What failed (from the dynamic loader).
        reason: String,
    },
    /// The ONNX Runtime library does not offer the C API version this build needs.
    #[error(
        "ONNX Runtime at {path} is version {runtime_version}, too old: C API version {api_version} (ONNX Runtime 1.{api_version} or newer) is required"
    )]
    RuntimeTooOld {
        /// The library path.
        path: PathBuf,
        /// Version string the library reports.
        runtime_version: String,
        /// C API version needed.
        api_version: u32,
    },
    /// The ONNX environment could not be created.
    #[error("cannot create the ONNX environment: {reason}")]
    Environment {
        /// What failed.
        reason: String,
    },
    /// The model could not be loaded.
    #[error("cannot load the ONNX model: {reason}")]
    Load {
        /// What failed.
        reason: String,
    },
    /// A run failed (bad input shape, unknown input name, backend error).
    #[error("ONNX inference failed: {reason}")]
    Run {
        /// What failed.
        reason: String,
    },
    /// The model has no output of this name.
    #[error("the model has no output named {name:?}")]
    UnknownOutput {
        /// The name asked for.
        name: String,
    },
    /// An output has another size than the buffer given for it.
    #[error("output {name:?} has {actual} values, the buffer holds {expected}")]
    OutputSize {
        /// The output.
        name: String,
        /// Buffer length.
        expected: usize,
        /// Values produced.
        actual: usize,
    },
}

struct Active {
    backend: OnnxBackend,
    env: Environment,
}

static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);

/// Selects the process-wide backend and creates the ONNX environment. Calling it again with the same backend does
/// nothing.
///
/// # Errors
/// [`OnnxError::BackendConflict`] when another backend is already in use; [`OnnxError::LibraryLoad`] or
/// [`OnnxError::RuntimeTooOld`] for a bad ONNX Runtime library; [`OnnxError::BackendSetElsewhere`] when other code
/// set `ort`'s API directly; [`OnnxError::Environment`].
pub fn init_backend(backend: &OnnxBackend) -> Result<(), OnnxError> {
    environment(backend).map(drop)
}

/// The backend in use, if one was initialised.
pub fn active_backend() -> Option<OnnxBackend> {
    ACTIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|a| a.backend.clone())
}

fn environment(backend: &OnnxBackend) -> Result<Environment, OnnxError> {
    let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(a) = active.as_ref() {
        if &a.backend != backend {
            return Err(OnnxError::BackendConflict {
                active: a.backend.clone(),
                requested: backend.clone(),
            });
        }
        return Ok(a.env.clone());
    }
    let api = match backend {
        OnnxBackend::Tract => ort_tract::api(),
        OnnxBackend::OnnxRuntime { library } => load_onnxruntime(library)?,
    };
    if !ort::set_api(api) {
        return Err(OnnxError::BackendSetElsewhere);
    }
    let env =
        ort::init()
            .with_name("agents-audio")
            .build()
            .map_err(|e| OnnxError::Environment {
                reason: e.to_string(),
            })?;
    *active = Some(Active {
        backend: backend.clone(),
        env: env.clone(),
    });
    Ok(env)
}

/// Loads ONNX Runtime from `path` and returns its API table. The library stays loaded for the life of the process
/// (the table points into it).
#[allow(unsafe_code)]
fn load_onnxruntime(path: &Path) -> Result<ort::sys::OrtApi, OnnxError> {
    let load_err = |reason: String| OnnxError::LibraryLoad {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: loading a library runs its initialisers; the user names an ONNX Runtime build, whose initialisers
    // are safe to run. `OrtGetApiBase` has the C signature `const OrtApiBase* (void)` declared by ort-sys (ORT's
    // C API, ABI-stable). The returned base pointer is checked for null before use; `GetApi` returns either null
    // (checked) or a pointer to a static `OrtApi` table inside the library, which we copy. The library is leaked
    // (never unloaded) so the function pointers in that table stay valid for the life of the process. The version
    // string is a static NUL-terminated string owned by the library.
    unsafe {
        let lib = libloading::Library::new(path).map_err(|e| load_err(e.to_string()))?;
        let get_base: unsafe extern "system" fn() -> *const ort::sys::OrtApiBase = *lib
            .get::<unsafe extern "system" fn() -> *const ort::sys::OrtApiBase>(b"OrtGetApiBase\0")
            .map_err(|e| {
                load_err(format!(
                    "no OrtGetApiBase symbol ({e}): not an ONNX Runtime library"
                ))
            })?;
        let base = get_base();
        if base.is_null() {
            return Err(load_err("OrtGetApiBase returned null".to_owned()));
        }
        let api = ((*base).GetApi)(ort::sys::ORT_API_VERSION);
        if api.is_null() {
            let version = ((*base).GetVersionString)();
            let runtime_version = if version.is_null() {
                "unknown".to_owned()
            } else {
                std::ffi::CStr::from_ptr(version)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(OnnxError::RuntimeTooOld {
                path: path.to_path_buf(),
                runtime_version,
                api_version: ort::sys::ORT_API_VERSION,
            });
        }
        let table = std::ptr::read(api);
        std::mem::forget(lib);
        Ok(table)
    }
}

/// How an [`OnnxModel`] is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OnnxModelOptions {
    /// Backend to use; `None` means [`OnnxBackend::from_env`] (ignored when a backend is already active and equal).
    pub backend: Option<OnnxBackend>,
    /// Most sessions (concurrent inferences) kept for the model (default: CPU count, at least 1).
    pub max_sessions: usize,
}

impl Default for OnnxModelOptions {
    fn default() -> Self {
        Self {
            backend: None,
            max_sessions: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl OnnxModelOptions {
    /// Sets [`OnnxModelOptions::backend`].
    #[must_use]
    pub fn with_backend(mut self, backend: OnnxBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Sets [`OnnxModelOptions::max_sessions`] (0 counts as 1).
    #[must_use]
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }
}

/// One named f32 input tensor.
#[derive(Debug, Clone, Copy)]
pub struct OnnxInput<'a> {
    /// Input name in the model.
    pub name: &'a str,
    /// Shape; its product must equal `data.len()`.
    pub shape: &'a [usize],
    /// Values, row-major.
    pub data: &'a [f32],
}

impl<'a> OnnxInput<'a> {
    /// An input tensor.
    pub fn new(name: &'a str, shape: &'a [usize], data: &'a [f32]) -> Self {
        Self { name, shape, data }
    }
}

/// An ONNX model loaded once and shared (`Arc<OnnxModel>`) by any number of threads. See the [module docs](self).
pub struct OnnxModel {
    bytes: Arc<[u8]>,
    env: Environment,
    backend: OnnxBackend,
    sessions: RwLock<Vec<Arc<Mutex<Session>>>>,
    max_sessions: usize,
    next: AtomicUsize,
    input_names: Vec<String>,
    output_names: Vec<String>,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("backend", &self.backend)
            .field("bytes", &self.bytes.len())
            .field("inputs", &self.input_names)
            .field("outputs", &self.output_names)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl OnnxModel {
    /// Loads a model from its bytes (copied once). Creates the first session now, so a bad model fails here.
    ///
    /// # Errors
    /// The backend errors of [`init_backend`]; [`OnnxError::Load`] for a model the backend cannot load.
    pub fn from_memory(bytes: &[u8], options: OnnxModelOptions) -> Result<Self, OnnxError> {
        let backend = options
            .backend
            .unwrap_or_else(|| active_backend().unwrap_or_else(OnnxBackend::from_env));
        let env = environment(&backend)?;
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let first = build_session(&env, &bytes)?;
        let input_names = first.inputs().iter().map(|o| o.name().to_owned()).collect();
        let output_names = first
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        Ok(Self {
            bytes,
            env,
            backend,
            sessions: RwLock::new(vec![Arc::new(Mutex::new(first))]),
            max_sessions: options.max_sessions.max(1),
            next: AtomicUsize::new(0),
            input_names,
            output_names,
        })
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &OnnxBackend {
        &self.backend
    }

    /// Input names, in model order.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    /// Output names, in model order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Sessions created so far.
    pub fn session_count(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Runs the model on `inputs` and copies each named output into its buffer. Blocks the calling thread for the
    /// inference (and while all sessions are busy): call it from a blocking-capable thread, not an async worker.
    ///
    /// # Errors
    /// [`OnnxError::Run`] for bad inputs or a backend failure; [`OnnxError::UnknownOutput`];
    /// [`OnnxError::OutputSize`] when a buffer does not match its output.
    pub fn run(
        &self,
        inputs: &[OnnxInput<'_>],
        outputs: &mut [(&str, &mut [f32])],
    ) -> Result<(), OnnxError> {
        let run_err = |e: ort::Error| OnnxError::Run {
            reason: e.to_string(),
        };
        let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for i in inputs {
            let t = TensorRef::from_array_view((i.shape, i.data)).map_err(run_err)?;
            values.push((i.name, t.into()));
        }
        self.with_session(|session| {
            let result = session.run(values).map_err(run_err)?;
            for (name, dst) in outputs.iter_mut() {
                let value = result.get(*name).ok_or_else(|| OnnxError::UnknownOutput {
                    name: (*name).to_owned(),
                })?;
                let (_, src) = value.try_extract_tensor::<f32>().map_err(run_err)?;
                if src.len() != dst.len() {
                    return Err(OnnxError::OutputSize {
                        name: (*name).to_owned(),
                        expected: dst.len(),
                        actual: src.len(),
                    });
                }
                dst.copy_from_slice(src);
            }
            Ok(())
        })
    }

    fn with_session<R>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<R, OnnxError>,
    ) -> Result<R, OnnxError> {
        let waiting_on = {
            let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
            for s in sessions.iter() {
                match s.try_lock() {
                    Ok(mut g) => return f(&mut g),
                    Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
                    Err(TryLockError::WouldBlock) => {}
                }
            }
            if sessions.len() >= self.max_sessions {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % sessions.len();
                sessions.get(i).cloned()
            } else {
                None
            }
        };
        if let Some(s) = waiting_on {
            let mut g = s.lock().unwrap_or_else(PoisonError::into_inner);
            return f(&mut g);
        }
        // Every session is busy and the pool may grow: build one outside the pool lock, then publish it.
        let session = Arc::new(Mutex::new(build_session(&self.env, &self.bytes)?));
        let mut g = session.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut sessions = self
                .sessions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if sessions.len() < self.max_sessions {
                sessions.push(Arc::clone(&session));
            }
        }
        f(&mut g)
    }
}

fn build_session(env: &Environment, bytes: &[u8]) -> Result<Session, OnnxError> {
    let load_err = |reason: String| OnnxError::Load { reason };
    Session::builder(env)
        .map_err(|e| load_err(e.to_string()))?
        // ort-tract only optimises the graph when a level is set: without it tract runs ~25x slower.
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load_err(e.to_string()))?
        .with_intra_threads(1)
        .map_err(|e| load_err(e.to_string()))?
        .commit_from_memory(bytes)
        .map_err(|e| load_err(e.to_string()))
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OnnxModel>();
    assert_send_sync::<OnnxError>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_typed_error() {
        let path = Path::new("/nonexistent/libonnxruntime.so");
        match load_onnxruntime(path) {
            Err(OnnxError::LibraryLoad { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(!reason.is_empty());
            }
            other => panic!("expected LibraryLoad, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn library_without_ort_symbol_is_a_typed_error() {
        // libm exists on every glibc system and has no OrtGetApiBase.
        let path = Path::new("libm.so.6");
        match load_onnxruntime(path) {
            Err(OnnxError::LibraryLoad { reason, .. }) => {
                assert!(reason.contains("OrtGetApiBase"), "{reason}");
            }
            other => panic!("expected LibraryLoad, got {:?}", other.map(|_| ())),
        }
    }

    /// A fake ONNX Runtime whose `GetApi` returns null for every version, as an old runtime does for an API
    /// version it does not know. Built with the system C compiler; skipped when there is none.
    #[test]
    fn too_old_runtime_is_a_typed_error() {
        let dir =
            std::env::temp_dir().join(format!("agents-audio-fake-ort-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let src = dir.join("fake_ort.c");
        let lib = dir.join("libfake_ort.so");
        let code = r#"
            #include <stddef.h>
            typedef struct { const void* (*GetApi)(unsigned); const char* (*GetVersionString)(void); } Base;
            static const void* get_api(unsigned v) { (void)v; return NULL; }
            static const char* version(void) { return "1.16.3"; }
            static const Base BASE = { get_api, version };
            const Base* OrtGetApiBase(void) { return &BASE; }
        "#;
        if std::fs::write(&src, code).is_err() {
            return;
        }
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(&src)
            .status();
        if !matches!(built, Ok(s) if s.success()) {
            eprintln!("skipped: no working C compiler to build a fake ONNX Runtime");
            return;
        }
        let result = load_onnxruntime(&lib);
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Err(OnnxError::RuntimeTooOld {
                runtime_version,
                api_version,
                ..
            }) => {
                assert_eq!(runtime_version, "1.16.3");
                assert_eq!(api_version, ort::sys::ORT_API_VERSION);
            }
            other => panic!("expected RuntimeTooOld, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn backend_display_names_the_library() {
        assert_eq!(OnnxBackend::Tract.to_string(), "tract");
        let b = OnnxBackend::OnnxRuntime {
            library: "/x/libonnxruntime.so".into(),
        };
        assert_eq!(b.to_string(), "onnxruntime (/x/libonnxruntime.so)");
    }
}
