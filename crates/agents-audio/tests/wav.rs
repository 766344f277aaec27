//! WAV round trips, format conversions and typed errors for bad files.

#![allow(clippy::unwrap_used, reason = "test")]

use std::io::Cursor;

use agents_audio::{
    AudioFrame, AudioFrameError, SampleRate, WavError, read_wav, read_wav_from, write_wav,
    write_wav_to,
};

fn wav_bytes(frames: &[AudioFrame]) -> Vec<u8> {
    let mut cur = Cursor::new(Vec::new());
    write_wav_to(&mut cur, frames).unwrap();
    cur.into_inner()
}

fn hound_bytes<S: hound::Sample + Copy>(spec: hound::WavSpec, samples: &[S]) -> Vec<u8> {
    let mut cur = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

#[test]
fn round_trip_through_a_file_and_a_buffer() {
    let a = AudioFrame::new(
        vec![i16::MIN, -1, 0, 1, i16::MAX, 1234],
        SampleRate::HZ_22050,
        2,
    )
    .unwrap();
    let b = AudioFrame::new(vec![7, 8], SampleRate::HZ_22050, 2).unwrap();
    let dir = std::env::temp_dir().join(format!("agents-audio-wav-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("round_trip.wav");
    write_wav(&path, &[a.clone(), b.clone()]).unwrap();
    let back = read_wav(&path).unwrap();
    assert_eq!(back, AudioFrame::concat(&[a.clone(), b]).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();

    let bytes = wav_bytes(std::slice::from_ref(&a));
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(
        bytes.len(),
        44 + 12,
        "canonical 44-byte header and 6 samples"
    );
    assert_eq!(read_wav_from(Cursor::new(bytes)).unwrap(), a);
}

#[test]
fn committed_fixture_reads() {
    let f = read_wav(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sine_440hz_16k_mono.wav"
    ))
    .unwrap();
    assert_eq!(f.sample_rate(), SampleRate::HZ_16000);
    assert_eq!(f.num_channels(), 1);
    assert_eq!(f.samples_per_channel(), 1600);
    // The fixture is 0.5 * sin(2 pi 440 t): check a few samples against the formula.
    for n in [0usize, 1, 9, 100, 1599] {
        let want =
            (0.5 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 16_000.0).sin() * 32768.0)
                .round() as i16;
        assert_eq!(f.data()[n], want, "sample {n}");
    }
}

#[test]
fn other_sample_formats_are_converted_to_16_bit() {
    let spec = |bits, fmt| hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: bits,
        sample_format: fmt,
    };
    let int = hound::SampleFormat::Int;
    let f8 = read_wav_from(Cursor::new(hound_bytes(
        spec(8, int),
        &[-128i8, -1, 0, 1, 127],
    )))
    .unwrap();
    assert_eq!(f8.data(), &[-32_768, -256, 0, 256, 32_512]);
    let f24 = read_wav_from(Cursor::new(hound_bytes(
        spec(24, int),
        &[-8_388_608i32, 383, 384, -129, 8_388_607, 0x12_3456],
    )))
    .unwrap();
    // x / 256 rounded half up and clamped: 383/256 = 1.496 -> 1, 384/256 = 1.5 -> 2, -129/256 -> -1.
    assert_eq!(f24.data(), &[-32_768, 1, 2, -1, 32_767, 0x1234]);
    let f32i = read_wav_from(Cursor::new(hound_bytes(
        spec(32, int),
        &[i32::MIN, i32::MAX, 0x1234_8000, -65_536],
    )))
    .unwrap();
    assert_eq!(f32i.data(), &[-32_768, 32_767, 0x1235, -1]);
    let ff = read_wav_from(Cursor::new(hound_bytes(
        spec(32, hound::SampleFormat::Float),
        &[-1.0f32, 0.5, 2.0, 0.25],
    )))
    .unwrap();
    assert_eq!(ff.data(), &[-32_768, 16_384, 32_767, 8_192]);
    assert_eq!(ff.sample_rate(), SampleRate::HZ_8000);
}

#[test]
fn garbage_is_malformed() {
    for bytes in [
        b"this is not a wav file at all, just text".to_vec(),
        Vec::new(),
        vec![0u8; 100],
        b"RIFF\x24\x00\x00\x00WAVEjunk".to_vec(),
    ] {
        let err = read_wav_from(Cursor::new(bytes.clone())).unwrap_err();
        assert!(
            matches!(err, WavError::Malformed { .. } | WavError::Truncated),
            "{bytes:?}: {err:?}"
        );
    }
    let err = read_wav_from(Cursor::new(b"RIFX\x24\x00\x00\x00WAVEfmt ".to_vec())).unwrap_err();
    assert!(matches!(err, WavError::Malformed { .. }), "{err:?}");
}

#[test]
fn truncated_files_are_typed_errors() {
    let frame = AudioFrame::new(
        (0..400).map(|i| i as i16).collect(),
        SampleRate::HZ_16000,
        1,
    )
    .unwrap();
    let bytes = wav_bytes(&[frame]);
    // Cut inside the data, inside a sample, and inside the header.
    for cut in [bytes.len() - 100, bytes.len() - 1, 30, 12] {
        let err = read_wav_from(Cursor::new(bytes[..cut].to_vec())).unwrap_err();
        assert!(
            matches!(err, WavError::Truncated | WavError::Malformed { .. }),
            "cut at {cut}: {err:?}"
        );
    }
    let err = read_wav_from(Cursor::new(bytes[..bytes.len() - 100].to_vec())).unwrap_err();
    assert!(
        matches!(err, WavError::Truncated),
        "cut in the data: {err:?}"
    );
}

#[test]
fn unsupported_sample_formats_are_refused() {
    let frame = AudioFrame::new(vec![1, 2], SampleRate::HZ_16000, 1).unwrap();
    let mut alaw = wav_bytes(&[frame]);
    // The format tag (offset 20) 6 is A-law.
    alaw[20] = 6;
    let err = read_wav_from(Cursor::new(alaw)).unwrap_err();
    assert!(matches!(err, WavError::UnsupportedFormat { .. }), "{err:?}");

    // 12 valid bits in 32-bit containers: hound writes 32-bit integer PCM as
    // WAVE_FORMAT_EXTENSIBLE (tag 0xFFFE); patch the valid-bits field (offset 38) to 12.
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Int,
    };
    let mut twelve = hound_bytes(spec, &[16i32, 32]);
    assert_eq!(&twelve[20..22], &[0xFE, 0xFF], "extensible format expected");
    twelve[38..40].copy_from_slice(&12u16.to_le_bytes());
    let err = read_wav_from(Cursor::new(twelve)).unwrap_err();
    assert!(
        matches!(
            err,
            WavError::UnsupportedFormat {
                bits_per_sample: 12,
                kind: "integer"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn zero_rate_and_bad_frame_lists_are_typed_errors() {
    let frame = AudioFrame::new(vec![1, 2], SampleRate::HZ_16000, 1).unwrap();
    let mut zero_rate = wav_bytes(std::slice::from_ref(&frame));
    zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
    let err = read_wav_from(Cursor::new(zero_rate)).unwrap_err();
    assert!(
        matches!(
            err,
            WavError::Frame(AudioFrameError::ZeroSampleRate) | WavError::Malformed { .. }
        ),
        "{err:?}"
    );

    let mut cur = Cursor::new(Vec::new());
    assert!(matches!(
        write_wav_to(&mut cur, &[]),
        Err(WavError::Frame(AudioFrameError::NoFrames))
    ));
    let other = AudioFrame::new(vec![1, 2], SampleRate::HZ_8000, 1).unwrap();
    assert!(matches!(
        write_wav_to(&mut cur, &[frame, other]),
        Err(WavError::Frame(AudioFrameError::FormatMismatch { .. }))
    ));
    assert!(
        cur.into_inner().is_empty(),
        "nothing is written for refused frames"
    );
    assert!(matches!(
        read_wav("/nonexistent/dir/x.wav"),
        Err(WavError::Io(_))
    ));
}

#[test]
fn corrupted_headers_never_panic() {
    // Every header byte of valid files (canonical 16-bit, and 32-bit WAVE_FORMAT_EXTENSIBLE),
    // set to a handful of hostile values: the reader must return a frame or a typed error,
    // never panic.
    for channels in [1u16, 2] {
        let frame = AudioFrame::new(vec![100; 64], SampleRate::HZ_16000, channels).unwrap();
        let spec = hound::WavSpec {
            channels,
            sample_rate: 16_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Int,
        };
        let samples = vec![1i32 << 20; 32 * usize::from(channels)];
        for (good, header_len) in [(wav_bytes(&[frame]), 44), (hound_bytes(spec, &samples), 68)] {
            assert!(good.len() > header_len);
            for offset in 0..header_len {
                for value in [0u8, 1, 2, 3, 0x7F, 0x80, 0xFE, 0xFF] {
                    let mut bad = good.clone();
                    bad[offset] = value;
                    let _ = read_wav_from(Cursor::new(bad));
                }
            }
        }
    }
}
