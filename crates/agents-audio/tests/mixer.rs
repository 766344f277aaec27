//! Mixer: exact sums with volumes, saturation, block size, late and ended sources, format
//! errors, and the async stream on a paused clock.

#![allow(clippy::unwrap_used, reason = "test")]

use std::time::Duration;

use agents_audio::{AudioFrame, Mixer, MixerError, SampleRate};
use futures::StreamExt;

const RATE: SampleRate = SampleRate::HZ_16000;

fn frame(data: &[i16]) -> AudioFrame {
    AudioFrame::new(data.to_vec(), RATE, 1).unwrap()
}

fn frames_of(data: &[i16], size: usize) -> Vec<AudioFrame> {
    data.chunks(size).map(frame).collect()
}

#[test]
fn two_sources_with_volumes_sum_exactly() {
    let a: Vec<i16> = (0..40).map(|i| i * 100 - 2_000).collect();
    let b: Vec<i16> = (0..40).map(|i| 3 - i * 7).collect();
    let mut m = Mixer::new(RATE, 1, 8).unwrap();
    m.add_iter(frames_of(&a, 5), 1.0);
    m.add_iter(frames_of(&b, 3), 0.5);
    let mut out = Vec::new();
    while let Some(block) = m.mix_block().unwrap() {
        assert_eq!(block.samples_per_channel(), 8);
        out.extend_from_slice(block.data());
    }
    // a + b/2, halves rounded away from zero (b odd gives x.5).
    let expected: Vec<i16> = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| {
            let v = f64::from(x) + f64::from(y) / 2.0;
            v.round() as i16
        })
        .collect();
    assert_eq!(out, expected);
    assert_eq!(out[1], -2_000 + 100 + (-2)); // 3 - 7 = -4, halved = -2
    assert_eq!(
        out[0], -1_999,
        "-2000 + 1.5 = -1998.5 rounds away from zero"
    );
}

#[test]
fn output_saturates_at_the_16_bit_range() {
    let mut m = Mixer::new(RATE, 1, 4).unwrap();
    m.add_iter(vec![frame(&[30_000, -30_000, 20_000, -1])], 1.0);
    m.add_iter(vec![frame(&[30_000, -30_000, 12_767, 0])], 1.0);
    m.add_iter(vec![frame(&[1, -1, 1, 0])], 1.0);
    let block = m.mix_block().unwrap().unwrap();
    assert_eq!(block.data(), &[i16::MAX, i16::MIN, i16::MAX, -1]);
}

#[test]
fn ended_sources_are_removed_and_their_tail_is_padded() {
    let mut m = Mixer::new(RATE, 2, 3).unwrap();
    let st = |d: &[i16]| AudioFrame::new(d.to_vec(), RATE, 2).unwrap();
    m.add_iter(vec![st(&[1, 2, 3, 4, 5, 6, 7, 8])], 1.0); // 4 samples per channel
    m.add_iter(
        vec![
            st(&[10, 10]),
            st(&[10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]),
        ],
        1.0,
    ); // 7
    assert_eq!(m.source_count(), 2);
    let b1 = m.mix_block().unwrap().unwrap();
    assert_eq!(b1.data(), &[11, 12, 13, 14, 15, 16]);
    let b2 = m.mix_block().unwrap().unwrap();
    assert_eq!(
        b2.data(),
        &[17, 18, 10, 10, 10, 10],
        "first source's tail, then silence"
    );
    assert_eq!(m.source_count(), 1, "the drained source is removed");
    let b3 = m.mix_block().unwrap().unwrap();
    assert_eq!(b3.data(), &[10, 10, 0, 0, 0, 0]);
    assert_eq!(m.mix_block().unwrap(), None);
    assert_eq!(m.source_count(), 0);
}

#[test]
fn late_channel_source_contributes_silence_and_loses_nothing() {
    let mut m = Mixer::new(RATE, 1, 4).unwrap();
    let steady = m.add_iter(frames_of(&[1; 16], 4), 1.0);
    let (late, tx) = m.add_channel(4, 2.0);
    assert_ne!(steady.id(), late.id());
    assert_eq!(
        m.mix_block().unwrap().unwrap().data(),
        &[1, 1, 1, 1],
        "late: silence"
    );
    tx.try_send(frame(&[5, 6])).unwrap();
    assert_eq!(
        m.mix_block().unwrap().unwrap().data(),
        &[11, 13, 1, 1],
        "partial: rest silent"
    );
    tx.try_send(frame(&[7, 8, 9, 10, 11])).unwrap();
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[15, 17, 19, 21]);
    late.set_volume(1.0);
    drop(tx);
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[12, 1, 1, 1]);
    assert_eq!(m.source_count(), 1, "closed channel removed once drained");
    assert_eq!(
        m.mix_block().unwrap(),
        None,
        "the iterator source ran out too"
    );
}

#[test]
fn volume_changes_apply_from_the_next_block() {
    let mut m = Mixer::new(RATE, 1, 2).unwrap();
    let h = m.add_iter(frames_of(&[100; 8], 8), 1.0);
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[100, 100]);
    h.set_volume(0.25);
    assert_eq!(h.volume(), 0.25);
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[25, 25]);
    h.set_volume(-3.0);
    assert_eq!(h.volume(), 0.0, "negative volume mutes");
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[0, 0]);
    h.set_volume(f32::NAN);
    assert_eq!(h.volume(), 0.0);
}

#[test]
fn format_mismatch_removes_only_the_offending_source() {
    let mut m = Mixer::new(RATE, 1, 2).unwrap();
    m.add_iter(frames_of(&[1; 6], 2), 1.0);
    let bad = m.add_iter(
        vec![AudioFrame::new(vec![0; 4], SampleRate::HZ_48000, 1).unwrap()],
        1.0,
    );
    let err = m.mix_block().unwrap_err();
    assert_eq!(
        err,
        MixerError::FormatMismatch {
            source_id: bad.id(),
            expected_rate: RATE,
            expected_channels: 1,
            actual_rate: SampleRate::HZ_48000,
            actual_channels: 1,
        }
    );
    assert_eq!(m.source_count(), 1);
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[1, 1]);
    let (_, tx) = m.add_channel(1, 1.0);
    tx.try_send(AudioFrame::new(vec![0; 4], RATE, 2).unwrap())
        .unwrap();
    assert!(matches!(
        m.mix_block(),
        Err(MixerError::FormatMismatch {
            actual_channels: 2,
            ..
        })
    ));
    assert!(
        tx.try_send(frame(&[1])).is_err(),
        "the removed source's channel is closed"
    );
}

#[test]
fn configuration_errors_are_typed() {
    assert!(matches!(
        Mixer::new(RATE, 0, 160),
        Err(MixerError::Config(_))
    ));
    assert!(matches!(Mixer::new(RATE, 1, 0), Err(MixerError::Config(_))));
    let m = Mixer::new(RATE, 1, 160).unwrap();
    assert_eq!(m.source_timeout(), Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn stream_waits_for_sources_up_to_the_timeout() {
    let mut m = Mixer::new(RATE, 1, 160).unwrap(); // 10 ms blocks, 10 ms timeout
    let (_a, tx_a) = m.add_channel(8, 1.0);
    let (_b, tx_b) = m.add_channel(8, 1.0);
    tx_a.send(frame(&[1; 160])).await.unwrap();
    tx_b.send(frame(&[2; 160])).await.unwrap();
    let start = tokio::time::Instant::now();
    let block = m.next().await.unwrap().unwrap();
    assert_eq!(block.data(), &[3; 160][..]);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no waiting when everyone is on time"
    );

    // b is late: the block comes after the timeout with b silent.
    tx_a.send(frame(&[1; 160])).await.unwrap();
    let block = m.next().await.unwrap().unwrap();
    assert_eq!(block.data(), &[1; 160][..]);
    assert_eq!(start.elapsed(), Duration::from_millis(10));

    // b delivers within the wait: the block is mixed as soon as it arrives.
    tx_a.send(frame(&[1; 160])).await.unwrap();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(4)).await;
        tx_b.send(frame(&[5; 160])).await.unwrap();
        tx_b
    });
    let block = m.next().await.unwrap().unwrap();
    assert_eq!(block.data(), &[6; 160][..]);
    assert_eq!(start.elapsed(), Duration::from_millis(14));
    let tx_b = sender.await.unwrap();

    drop(tx_a);
    drop(tx_b);
    assert!(
        m.next().await.is_none(),
        "the stream ends when every source has ended"
    );
}

#[test]
fn a_source_of_endless_empty_frames_does_not_stall_the_mixer() {
    let mut m = Mixer::new(RATE, 1, 4).unwrap();
    m.add_iter(std::iter::repeat(frame(&[])), 1.0);
    m.add_iter(frames_of(&[3; 8], 8), 1.0);
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[3, 3, 3, 3]);
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[3, 3, 3, 3]);
    assert_eq!(m.mix_block().unwrap().unwrap().data(), &[0, 0, 0, 0]);
    assert_eq!(
        m.source_count(),
        1,
        "the endless source stays, the finished one is gone"
    );
}
