//! Byte-to-frame and frame-to-frame rebuffering.

#![allow(clippy::unwrap_used, reason = "test")]

use std::time::Duration;

use agents_audio::{AudioByteStream, AudioFrame, AudioFrameError, FrameBuffer, SampleRate};

/// A deterministic pseudo-random generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

fn samples(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i * 40_503) % 65_536) as u16 as i16)
        .collect()
}

fn bytes_of(s: &[i16]) -> Vec<u8> {
    s.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn odd_byte_chunks_keep_the_dangling_byte() {
    let mut stream = AudioByteStream::new(SampleRate::HZ_16000, 1, 2).unwrap();
    let bytes = bytes_of(&[0x0102, -2, 0x7fff, -32_768]);
    assert!(
        stream.push(&bytes[..3]).is_empty(),
        "1.5 samples: no frame yet"
    );
    assert_eq!(stream.pending_bytes(), 3);
    let frames = stream.push(&bytes[3..5]);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].data(), &[0x0102, -2]);
    let frames = stream.push(&bytes[5..]);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].data(), &[0x7fff, -32_768]);
    assert_eq!(stream.flush(), None);
    assert_eq!(stream.dropped_bytes(), 0);
}

#[test]
fn random_chunking_equals_one_shot() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (channels, spc) in [(1u16, 160usize), (2, 480), (1, 7), (3, 5)] {
        let data = samples(usize::from(channels) * 5_003);
        let bytes = bytes_of(&data);
        let mut one = AudioByteStream::new(SampleRate::HZ_16000, channels, spc).unwrap();
        let mut expected = one.push(&bytes);
        expected.extend(one.flush());
        for _ in 0..20 {
            let mut s = AudioByteStream::new(SampleRate::HZ_16000, channels, spc).unwrap();
            let mut got = Vec::new();
            let mut pos = 0;
            while pos < bytes.len() {
                let n = (1 + rng.below(700)).min(bytes.len() - pos);
                s.push_into(&bytes[pos..pos + n], &mut got);
                pos += n;
            }
            got.extend(s.flush());
            assert!(
                got == expected,
                "x{channels} {spc}: random chunking changed the frames"
            );
        }
        assert!(
            expected[..expected.len() - 1]
                .iter()
                .all(|f| f.samples_per_channel() == spc)
        );
        let all: Vec<i16> = expected.iter().flat_map(|f| f.data().to_vec()).collect();
        assert!(all == data, "every sample comes out once, in order");
    }
}

#[test]
fn flush_returns_the_remainder_and_counts_dropped_bytes() {
    let mut s =
        AudioByteStream::with_duration(SampleRate::HZ_16000, 2, Duration::from_millis(10)).unwrap();
    assert_eq!(s.samples_per_channel(), 160);
    let data = samples(2 * 170);
    let mut bytes = bytes_of(&data);
    bytes.extend_from_slice(&[1, 2, 3]); // one more sample on the left channel and a half
    let frames = s.push(&bytes);
    assert_eq!(frames.len(), 1);
    let rest = s.flush().unwrap();
    assert_eq!(rest.samples_per_channel(), 10);
    assert_eq!(rest.data(), &data[320..]);
    assert_eq!(
        s.dropped_bytes(),
        3,
        "an incomplete stereo sample pair is dropped"
    );
    assert_eq!(s.pending_bytes(), 0);
    assert_eq!(s.flush(), None);
}

#[test]
fn byte_stream_configuration_errors() {
    assert!(matches!(
        AudioByteStream::new(SampleRate::HZ_16000, 0, 160),
        Err(AudioFrameError::ZeroChannels)
    ));
    assert!(matches!(
        AudioByteStream::new(SampleRate::HZ_16000, 1, 0),
        Err(AudioFrameError::ZeroChunkSize)
    ));
    assert!(matches!(
        AudioByteStream::with_duration(SampleRate::HZ_8000, 1, Duration::from_micros(100)),
        Err(AudioFrameError::ZeroChunkSize)
    ));
    assert!(matches!(
        FrameBuffer::new(SampleRate::HZ_16000, 0, 160),
        Err(AudioFrameError::ZeroChannels)
    ));
    assert!(matches!(
        FrameBuffer::new(SampleRate::HZ_16000, 1, 0),
        Err(AudioFrameError::ZeroChunkSize)
    ));
}

#[test]
fn frame_buffer_rechunks_without_loss() {
    let mut rng = Rng(42);
    let data = samples(2 * 3_001);
    let mut fb =
        FrameBuffer::with_duration(SampleRate::HZ_48000, 2, Duration::from_millis(20)).unwrap();
    assert_eq!(fb.samples_per_channel(), 960);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = 2 * (1 + rng.below(1_500)).min((data.len() - pos) / 2);
        let f = AudioFrame::new(data[pos..pos + n].to_vec(), SampleRate::HZ_48000, 2).unwrap();
        out.extend(fb.push(&f).unwrap());
        pos += n;
    }
    assert_eq!(fb.pending_samples_per_channel(), 3_001 % 960);
    out.extend(fb.flush());
    let lens: Vec<usize> = out.iter().map(AudioFrame::samples_per_channel).collect();
    assert_eq!(lens, [960, 960, 960, 121]);
    assert!(AudioFrame::concat(&out).unwrap().data() == data.as_slice());
    assert_eq!(fb.flush(), None);
}

#[test]
fn frame_buffer_refuses_other_formats_and_keeps_its_state() {
    let mut fb = FrameBuffer::new(SampleRate::HZ_16000, 1, 4).unwrap();
    fb.push(&AudioFrame::new(vec![1, 2, 3], SampleRate::HZ_16000, 1).unwrap())
        .unwrap();
    let err = fb
        .push(&AudioFrame::new(vec![9; 8], SampleRate::HZ_16000, 2).unwrap())
        .unwrap_err();
    assert_eq!(
        err,
        AudioFrameError::FormatMismatch {
            expected_rate: SampleRate::HZ_16000,
            expected_channels: 1,
            actual_rate: SampleRate::HZ_16000,
            actual_channels: 2
        }
    );
    assert!(
        fb.push(&AudioFrame::new(vec![9; 8], SampleRate::HZ_8000, 1).unwrap())
            .is_err()
    );
    let out = fb
        .push(&AudioFrame::new(vec![4, 5], SampleRate::HZ_16000, 1).unwrap())
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data(), &[1, 2, 3, 4]);
    assert_eq!(fb.flush().unwrap().data(), &[5]);
}
