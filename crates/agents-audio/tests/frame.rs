//! AudioFrame constructors, conversions, concatenation, splitting and remixing.

#![allow(clippy::unwrap_used, reason = "test")]

use std::time::Duration;

use agents_audio::{AudioFrame, AudioFrameError, SampleRate, f32_to_i16, i16_to_f32};

fn mono(data: &[i16]) -> AudioFrame {
    AudioFrame::new(data.to_vec(), SampleRate::HZ_16000, 1).unwrap()
}

#[test]
fn every_constructor_error_is_typed() {
    assert_eq!(SampleRate::new(0), Err(AudioFrameError::ZeroSampleRate));
    assert_eq!(
        SampleRate::try_from(0),
        Err(AudioFrameError::ZeroSampleRate)
    );
    assert_eq!(
        AudioFrame::new(vec![0; 4], SampleRate::HZ_16000, 0),
        Err(AudioFrameError::ZeroChannels)
    );
    assert_eq!(
        AudioFrame::new(vec![0; 5], SampleRate::HZ_16000, 2),
        Err(AudioFrameError::UnevenChannels {
            samples: 5,
            channels: 2
        })
    );
    assert_eq!(
        AudioFrame::from_le_bytes(&[0; 7], SampleRate::HZ_16000, 1),
        Err(AudioFrameError::OddByteLength { len: 7 })
    );
    assert_eq!(
        AudioFrame::from_le_bytes(&[0; 6], SampleRate::HZ_16000, 2),
        Err(AudioFrameError::UnevenChannels {
            samples: 3,
            channels: 2
        })
    );
    assert_eq!(
        AudioFrame::from_f32(&[0.0; 3], SampleRate::HZ_16000, 2),
        Err(AudioFrameError::UnevenChannels {
            samples: 3,
            channels: 2
        })
    );
    assert_eq!(
        AudioFrame::silence(Duration::from_millis(10), SampleRate::HZ_16000, 0),
        Err(AudioFrameError::ZeroChannels)
    );
    assert_eq!(
        AudioFrame::silence_samples(10, SampleRate::HZ_16000, 0),
        Err(AudioFrameError::ZeroChannels)
    );
}

#[test]
fn duration_and_samples_per_channel() {
    let f = AudioFrame::new(vec![0; 960], SampleRate::HZ_48000, 2).unwrap();
    assert_eq!(f.samples_per_channel(), 480);
    assert_eq!(f.duration(), Duration::from_millis(10));
    let g = AudioFrame::silence_samples(441, SampleRate::HZ_44100, 1).unwrap();
    assert_eq!(g.duration(), Duration::from_millis(10));
    assert!(g.data().iter().all(|&s| s == 0));
}

#[test]
fn f32_conversion_round_trips_every_i16_and_clamps() {
    let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    let f = AudioFrame::new(all.clone(), SampleRate::HZ_8000, 1).unwrap();
    let floats = f.to_f32();
    assert_eq!(floats[0], -1.0);
    assert_eq!(floats[32_768], 0.0);
    assert_eq!(floats[65_535], 32_767.0 / 32_768.0);
    let back = AudioFrame::from_f32(&floats, SampleRate::HZ_8000, 1).unwrap();
    assert!(back.data() == all.as_slice(), "f32 round trip is lossless");
    // Clamping and rounding.
    assert_eq!(f32_to_i16(1.0), 32_767);
    assert_eq!(f32_to_i16(2.5), 32_767);
    assert_eq!(f32_to_i16(-1.0), -32_768);
    assert_eq!(f32_to_i16(-7.0), -32_768);
    assert_eq!(f32_to_i16(f32::NAN), 0);
    assert_eq!(f32_to_i16(0.5 / 32_768.0), 1, "halves round away from zero");
    assert_eq!(f32_to_i16(-0.5 / 32_768.0), -1);
    assert_eq!(f32_to_i16(0.4 / 32_768.0), 0);
    assert_eq!(i16_to_f32(16_384), 0.5);
}

#[test]
fn concat_joins_in_order_and_checks_formats() {
    let joined = AudioFrame::concat(&[mono(&[1, 2]), mono(&[]), mono(&[3])]).unwrap();
    assert_eq!(joined.data(), &[1, 2, 3]);
    assert_eq!(joined.sample_rate(), SampleRate::HZ_16000);
    assert_eq!(AudioFrame::concat(&[]), Err(AudioFrameError::NoFrames));
    let other_rate = AudioFrame::new(vec![4], SampleRate::HZ_24000, 1).unwrap();
    assert_eq!(
        AudioFrame::concat(&[mono(&[1]), other_rate.clone()]),
        Err(AudioFrameError::FormatMismatch {
            expected_rate: SampleRate::HZ_16000,
            expected_channels: 1,
            actual_rate: SampleRate::HZ_24000,
            actual_channels: 1,
        })
    );
    let stereo = AudioFrame::new(vec![4, 5], SampleRate::HZ_16000, 2).unwrap();
    assert!(matches!(
        AudioFrame::concat(&[mono(&[1]), stereo.clone()]),
        Err(AudioFrameError::FormatMismatch {
            actual_channels: 2,
            ..
        })
    ));
    let mut a = mono(&[1]);
    assert!(a.append(&stereo).is_err());
    assert_eq!(
        a.data(),
        &[1],
        "a refused append leaves the frame unchanged"
    );
    a.append(&mono(&[2, 3])).unwrap();
    assert_eq!(a.data(), &[1, 2, 3]);
}

#[test]
fn split_and_chunks_keep_every_sample() {
    let stereo =
        AudioFrame::new(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10], SampleRate::HZ_16000, 2).unwrap();
    let (head, tail) = stereo.split_at(2).unwrap();
    assert_eq!(head.data(), &[1, 2, 3, 4]);
    assert_eq!(tail.data(), &[5, 6, 7, 8, 9, 10]);
    assert_eq!(tail.num_channels(), 2);
    let (all, none) = stereo.split_at(5).unwrap();
    assert_eq!(all, stereo);
    assert!(none.is_empty());
    assert_eq!(
        stereo.split_at(6),
        Err(AudioFrameError::SplitOutOfRange { at: 6, len: 5 })
    );
    let chunks = stereo.chunks(2).unwrap();
    let lens: Vec<usize> = chunks.iter().map(AudioFrame::samples_per_channel).collect();
    assert_eq!(lens, [2, 2, 1]);
    assert_eq!(chunks[2].data(), &[9, 10]);
    assert_eq!(AudioFrame::concat(&chunks).unwrap(), stereo);
    assert_eq!(stereo.chunks(0), Err(AudioFrameError::ZeroChunkSize));
    assert!(mono(&[]).chunks(3).unwrap().is_empty());
}

#[test]
fn remix_duplicates_and_averages_with_documented_rounding() {
    let m = mono(&[1, -2, i16::MAX, i16::MIN]);
    let s = m.remix(2).unwrap();
    assert_eq!(
        s.data(),
        &[1, 1, -2, -2, i16::MAX, i16::MAX, i16::MIN, i16::MIN]
    );
    assert_eq!(s.num_channels(), 2);
    assert_eq!(s.to_mono(), m, "duplicate then average is the identity");

    let st = AudioFrame::new(
        vec![
            1,
            2,
            -1,
            -2,
            3,
            3,
            i16::MAX,
            i16::MAX,
            i16::MIN,
            i16::MIN,
            i16::MAX,
            i16::MIN,
            0,
            1,
        ],
        SampleRate::HZ_48000,
        2,
    )
    .unwrap();
    let down = st.to_mono();
    // (1+2)/2 = 1.5 -> 2, (-1-2)/2 = -1.5 -> -2, (32767-32768)/2 = -0.5 -> -1, (0+1)/2 -> 1.
    assert_eq!(down.data(), &[2, -2, 3, i16::MAX, i16::MIN, -1, 1]);
    assert_eq!(down.sample_rate(), SampleRate::HZ_48000);
    assert_eq!(st.remix(2).unwrap(), st);
    assert_eq!(st.remix(0), Err(AudioFrameError::ZeroChannels));
    assert_eq!(
        st.remix(6),
        Err(AudioFrameError::UnsupportedRemix { from: 2, to: 6 })
    );
    let three = AudioFrame::new(vec![1, 1, 2, -3, -3, -4], SampleRate::HZ_8000, 3).unwrap();
    // 4/3 = 1.33 -> 1, -10/3 = -3.33 -> -3.
    assert_eq!(three.to_mono().data(), &[1, -3]);
}
