//! WAV file reading and writing over [`hound`], for tests, fixtures and examples.
//!
//! Reading accepts integer PCM of 8, 16, 24 or 32 bits and 32-bit IEEE float, and converts to
//! 16-bit: 8-bit samples are shifted up (`x << 8`, exact); 24- and 32-bit samples are rounded to
//! the nearest 16-bit value (halves up) and clamped; float samples go through
//! [`crate::f32_to_i16`] (x 32768, rounded, clamped). Any other layout (12-bit, 64-bit float,
//! compressed formats) is refused with [`WavError::UnsupportedFormat`]. All channels are kept,
//! interleaved. Writing always produces 16-bit integer PCM.
//!
//! Malformed input never panics: a missing RIFF/WAVE header or a broken chunk is
//! [`WavError::Malformed`], a file that ends before its declared data is [`WavError::Truncated`].

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::frame::{AudioFrame, AudioFrameError, SampleRate, f32_to_i16};

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// The file could not be opened, read or written.
    #[error("WAV I/O failed")]
    Io(#[source] std::io::Error),
    /// The data is not a well-formed WAV file.
    #[error("malformed WAV data: {reason}")]
    Malformed {
        /// What the parser objected to.
        reason: String,
    },
    /// The file ends before the end of its declared audio data.
    #[error("WAV data is truncated")]
    Truncated,
    /// A sample format this reader does not convert.
    #[error("unsupported WAV sample format: {bits_per_sample}-bit {kind}")]
    UnsupportedFormat {
        /// Bits per sample in the file.
        bits_per_sample: u16,
        /// `"integer"`, `"float"` or `"other"`.
        kind: &'static str,
    },
    /// The header describes audio that cannot be an [`AudioFrame`] (zero rate or channels), or
    /// the frames to write are empty or of different formats.
    #[error("invalid audio")]
    Frame(#[from] AudioFrameError),
}

fn from_hound(e: hound::Error) -> WavError {
    match e {
        // hound reports a short read as a custom `Other` error ("Failed to read enough bytes.").
        hound::Error::IoError(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                || (io.kind() == std::io::ErrorKind::Other
                    && io.to_string().contains("enough bytes")) =>
        {
            WavError::Truncated
        }
        hound::Error::IoError(io) => WavError::Io(io),
        hound::Error::FormatError(reason) => WavError::Malformed {
            reason: reason.to_owned(),
        },
        hound::Error::Unsupported => WavError::UnsupportedFormat {
            bits_per_sample: 0,
            kind: "other",
        },
        other => WavError::Malformed {
            reason: other.to_string(),
        },
    }
}

/// Reads a WAV file into one frame (see the module docs for the accepted formats).
///
/// # Errors
/// See [`WavError`].
pub fn read_wav(path: impl AsRef<Path>) -> Result<AudioFrame, WavError> {
    let file = File::open(path).map_err(WavError::Io)?;
    read_wav_from(BufReader::new(file))
}

/// Reads WAV data from any reader into one frame.
///
/// # Errors
/// See [`WavError`].
pub fn read_wav_from<R: Read>(reader: R) -> Result<AudioFrame, WavError> {
    let mut wav = hound::WavReader::new(reader).map_err(from_hound)?;
    let spec = wav.spec();
    let rate = SampleRate::new(spec.sample_rate)?;
    // Reserve from the header, but never trust it for more than a minute of 48 kHz stereo.
    let declared = usize::try_from(wav.len()).unwrap_or(0).min(48_000 * 2 * 60);
    let mut data: Vec<i16> = Vec::with_capacity(declared);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            for s in wav.samples::<i32>() {
                data.push(int_to_i16(s.map_err(from_hound)?, bits));
            }
        }
        (hound::SampleFormat::Float, 32) => {
            for s in wav.samples::<f32>() {
                data.push(f32_to_i16(s.map_err(from_hound)?));
            }
        }
        (format, bits) => {
            return Err(WavError::UnsupportedFormat {
                bits_per_sample: bits,
                kind: match format {
                    hound::SampleFormat::Int => "integer",
                    hound::SampleFormat::Float => "float",
                },
            });
        }
    }
    Ok(AudioFrame::new(data, rate, spec.channels)?)
}

/// An integer sample of `bits` bits as 16 bits (see the module docs).
fn int_to_i16(v: i32, bits: u16) -> i16 {
    let scaled = match bits {
        8 => v << 8,
        16 => v,
        _ => {
            let shift = u32::from(bits - 16);
            let half = 1i64 << (shift - 1);
            // Round half up, in i64 so 32-bit maxima do not overflow.
            ((i64::from(v) + half) >> shift).clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i32
        }
    };
    scaled.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// Writes `frames` (same format, in order) as one 16-bit PCM WAV file at `path`.
///
/// # Errors
/// [`WavError::Frame`] for no frames or frames of different formats (nothing is written then),
/// [`WavError::Io`].
pub fn write_wav(path: impl AsRef<Path>, frames: &[AudioFrame]) -> Result<(), WavError> {
    check_frames(frames)?;
    let file = File::create(path).map_err(WavError::Io)?;
    let mut out = BufWriter::new(file);
    write_wav_to(&mut out, frames)?;
    out.flush().map_err(WavError::Io)
}

/// Writes `frames` (same format, in order) as 16-bit PCM WAV data to any seekable writer.
///
/// # Errors
/// As [`write_wav`].
pub fn write_wav_to<W: Write + Seek>(writer: W, frames: &[AudioFrame]) -> Result<(), WavError> {
    let first = check_frames(frames)?;
    let spec = hound::WavSpec {
        channels: first.num_channels(),
        sample_rate: first.sample_rate().hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::new(writer, spec).map_err(from_hound)?;
    {
        let mut w = wav.get_i16_writer(
            u32::try_from(frames.iter().map(|f| f.data().len()).sum::<usize>()).map_err(|_| {
                WavError::Malformed {
                    reason: "more samples than a WAV file can hold".to_owned(),
                }
            })?,
        );
        for frame in frames {
            for &s in frame.data() {
                w.write_sample(s);
            }
        }
        w.flush().map_err(from_hound)?;
    }
    wav.finalize().map_err(from_hound)
}

fn check_frames(frames: &[AudioFrame]) -> Result<&AudioFrame, WavError> {
    let first = frames.first().ok_or(AudioFrameError::NoFrames)?;
    for f in frames {
        first.check_format(f)?;
    }
    Ok(first)
}
