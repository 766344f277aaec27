//! The Silero VAD on the native ONNX Runtime backend, loaded from `ORT_DYLIB_PATH` (skipped when unset).
//!
//! Its own test binary: the ONNX backend is process-global, so these tests must not share a process with the tract
//! tests.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::PathBuf;

use agents_audio::onnx::{OnnxBackend, OnnxError, active_backend, init_backend};
use agents_silero::{SileroLoadOptions, SileroVad};
use common::*;

fn library() -> Option<PathBuf> {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => {
            eprintln!(
                "skipped: set ORT_DYLIB_PATH to an ONNX Runtime >= 1.24 library to run the native backend tests"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnxruntime_backend_finds_every_utterance() {
    let Some(lib) = library() else { return };
    let backend = OnnxBackend::OnnxRuntime { library: lib };
    let vad = match SileroVad::load_with(SileroLoadOptions::default().with_backend(backend.clone()))
    {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(vad.backend(), &backend);
    assert_eq!(active_backend(), Some(backend));
    // Loading again without naming a backend reuses the active one.
    let again = match SileroVad::load() {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(again.backend(), vad.backend());
    let events = events(run(&vad, fixture_frames("speech_pauses_16k.wav")).await);
    let found = segments(&events);
    // ONNX Runtime and tract agree to ~1e-5 on this model: the same segments as with tract and LiveKit.
    assert_segments_match_truth(&found, "onnxruntime");
    assert_segments_match_livekit(&found, "speech_pauses_16k.wav");
    // Tract cannot be switched to any more.
    assert!(matches!(
        init_backend(&OnnxBackend::Tract),
        Err(OnnxError::BackendConflict { .. })
    ));
}
