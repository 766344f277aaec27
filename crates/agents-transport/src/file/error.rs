//! The error type of the file transport.

use std::path::PathBuf;

use agents_audio::{AudioFrameError, ResampleError, WavError};
use agents_core::SessionError;

/// Why a file session, input, output or transcript failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileIoError {
    /// The input WAV file could not be read (missing, not a WAV file, truncated, unsupported sample format).
    #[error("cannot read WAV file {}", path.display())]
    ReadWav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: WavError,
    },
    /// The input WAV file holds no audio.
    #[error("WAV file {} holds no audio", path.display())]
    EmptyInput {
        /// The file.
        path: PathBuf,
    },
    /// The input audio could not be converted to the requested channel count.
    #[error("cannot convert the input audio to {channels} channel(s)")]
    Remix {
        /// The requested channel count.
        channels: u16,
        /// What went wrong.
        #[source]
        source: AudioFrameError,
    },
    /// The input audio could not be resampled.
    #[error("cannot resample the input audio")]
    Resample(#[source] ResampleError),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
    /// The output WAV file could not be created or written.
    #[error("cannot write WAV file {}", path.display())]
    WriteWav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A transcript file could not be created or written.
    #[error("cannot write transcript file {}", path.display())]
    WriteTranscript {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The session refused to start or close.
    #[error("session failed")]
    Session(#[source] SessionError),
    /// A writer task ended abnormally (it panicked or was cancelled).
    #[error("the {0} writer task ended abnormally")]
    WriterTask(&'static str),
}

/// hound's errors as I/O errors (hound is an implementation detail, not part of this API).
pub(crate) fn hound_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}
