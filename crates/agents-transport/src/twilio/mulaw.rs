//! G.711 µ-law (ITU-T Recommendation G.711, §2 "µ-law"), the codec of Twilio Media Streams (`audio/x-mulaw`,
//! 8 kHz, mono).
//!
//! Hand-written: the algorithm is a few lines of integer arithmetic fully defined by the recommendation (the
//! classic Sun `g711.c` formulation: bias 0x84, clip at 32635, 8 segments of 16 steps, bits inverted on the wire),
//! and the crates.io registry search was not reachable from the build machine to vet a maintained crate. Decoding
//! uses a 256-entry table built at compile time; encoding computes the segment with one `leading_zeros`.
//!
//! Error bound of a round trip: a sample in segment `e` (0..=7) comes back within half a quantization step,
//! `4 << e` (4 near zero, 512 at the top segment); samples above 32635 in magnitude are first clipped to it.

/// Bias added before the segment search (33 << 2).
const BIAS: i32 = 0x84;
/// Largest magnitude encoded without clipping.
const CLIP: i32 = 32_635;

/// Encodes one linear PCM16 sample to a µ-law byte.
pub fn encode_sample(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign: u8 = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0
    };
    let biased = magnitude.min(CLIP) + BIAS; // 0x84 ..= 0x7FFF
    // `biased >> 7` is in 1..=255: its highest set bit is the segment.
    let top = (biased >> 7) as u8;
    let exponent = 7 - top.leading_zeros() as u8;
    let mantissa = ((biased >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

const fn decode_const(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_const(i as u8);
        i += 1;
    }
    table
}

static DECODE: [i16; 256] = build_decode_table();

/// Decodes one µ-law byte to a linear PCM16 sample.
pub fn decode_sample(byte: u8) -> i16 {
    DECODE[usize::from(byte)]
}

/// Encodes PCM16 samples, appending one byte per sample to `out`.
pub fn encode_into(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len());
    out.extend(samples.iter().map(|&s| encode_sample(s)));
}

/// Decodes µ-law bytes, appending one sample per byte to `out`.
pub fn decode_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.reserve(bytes.len());
    out.extend(bytes.iter().map(|&b| decode_sample(b)));
}

/// Encodes PCM16 samples to a new buffer.
pub fn encode(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len());
    encode_into(samples, &mut out);
    out
}

/// Decodes µ-law bytes to a new buffer.
pub fn decode(bytes: &[u8]) -> Vec<i16> {
    let mut out = Vec::with_capacity(bytes.len());
    decode_into(bytes, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors of G.711 µ-law (the values every reference implementation agrees on).
    #[test]
    fn known_vectors() {
        // Silence is 0xFF (positive zero) on the wire; 0x7F is negative zero.
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(decode_sample(0xFF), 0);
        assert_eq!(decode_sample(0x7F), 0);
        // Full scale: 0x80 / 0x00 are the largest magnitudes, ±32124.
        assert_eq!(encode_sample(i16::MAX), 0x80);
        assert_eq!(encode_sample(i16::MIN), 0x00);
        assert_eq!(decode_sample(0x80), 32_124);
        assert_eq!(decode_sample(0x00), -32_124);
        // Segment boundaries of the positive half (decoded values of the first code of each segment).
        let firsts: Vec<i16> = (0..8).map(|e| decode_sample(!((e << 4) as u8))).collect();
        assert_eq!(firsts, vec![0, 132, 396, 924, 1980, 4092, 8316, 16764]);
        // Smallest steps (8): 0..=3 decode as 0, 4..=11 as 8, 12..=19 as 16.
        assert_eq!(encode_sample(3), 0xFF);
        assert_eq!(encode_sample(4), 0xFE);
        assert_eq!(encode_sample(11), 0xFE);
        assert_eq!(encode_sample(12), 0xFD);
        assert_eq!(decode_sample(0xFE), 8);
        assert_eq!(decode_sample(0xFD), 16);
        assert_eq!(encode_sample(-8), 0x7E);
        assert_eq!(decode_sample(0x7E), -8);
    }

    #[test]
    fn decode_then_encode_is_identity_except_negative_zero() {
        for b in 0..=255u8 {
            let back = encode_sample(decode_sample(b));
            if b == 0x7F {
                assert_eq!(back, 0xFF, "negative zero encodes as positive zero");
            } else {
                assert_eq!(back, b, "code {b:#04x}");
            }
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let code = encode_sample(x);
            let segment = ((!code) >> 4) & 0x07;
            let y = decode_sample(code);
            let err = (i32::from(x) - i32::from(y)).abs();
            let clipped = (i32::from(x).abs() - CLIP).max(0);
            let bound = (4 << segment) + clipped;
            assert!(err <= bound, "x={x} y={y} err={err} bound={bound}");
            assert!(x.signum() * y.signum() >= 0, "sign kept for x={x}");
        }
    }

    #[test]
    fn decoded_values_are_monotonic() {
        let positive: Vec<i16> = (0..=0x7Fu8)
            .rev()
            .map(|b| decode_sample(b | 0x80))
            .collect();
        assert!(positive.windows(2).all(|w| w[0] < w[1]), "{positive:?}");
    }

    #[test]
    fn buffers_round_trip() {
        let samples: Vec<i16> = (0..160)
            .map(|i| ((f64::from(i) * 0.3).sin() * 10_000.0) as i16)
            .collect();
        let bytes = encode(&samples);
        assert_eq!(bytes.len(), 160);
        let back = decode(&bytes);
        assert_eq!(back.len(), 160);
        for (x, y) in samples.iter().zip(&back) {
            assert!((i32::from(*x) - i32::from(*y)).abs() <= 256);
        }
    }
}
