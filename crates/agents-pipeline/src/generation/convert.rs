//! Conversion of a speech's audio to the format of the audio output.
//!
//! A TTS (or the pre-rendered audio of a `say`) produces frames at its own rate and channel count; the sink
//! announces the format it wants ([`AudioOutput::sample_rate`], [`AudioOutput::num_channels`]). [`OutputConverter`]
//! converts one speech's frames as they stream: channels are remixed with [`AudioFrame::remix`] (down-mixing before
//! the rate conversion, up-mixing after it, so the resampler works on the fewest channels) and the rate is converted
//! with one streaming [`Resampler`] per input format, so consecutive chunks are continuous (no gap, no click at a
//! chunk boundary: the resampler's filter state carries over). The resampler's start-up delay is trimmed, so time
//! `t` of the input is time `t` of the output and TTS word timings stay valid. [`OutputConverter::finish`] pushes
//! the resampler's tail out at the end of the speech; the total output is then the input duration, rounded to
//! whole samples.
//!
//! [`AudioOutput::sample_rate`]: agents_core::audio_io::AudioOutput::sample_rate
//! [`AudioOutput::num_channels`]: agents_core::audio_io::AudioOutput::num_channels

use agents_audio::{
    AudioFrame, AudioFrameError, ResampleError, ResampleQuality, Resampler, SampleRate,
};

/// Why a speech's audio could not be converted to the output's format.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    /// The rate conversion failed (unsupported ratio, backend error).
    #[error("cannot resample the speech audio to the output rate: {0}")]
    Resample(#[from] ResampleError),
    /// The channel layouts have no defined mapping.
    #[error("cannot remix the speech audio to the output channels: {0}")]
    Remix(#[from] AudioFrameError),
}

/// Converts one speech's frames to the output's rate and channels; see the module documentation.
pub(crate) struct OutputConverter {
    /// `None`: any rate.
    rate: Option<SampleRate>,
    channels: u16,
    resampler: Option<Resampler>,
}

impl OutputConverter {
    /// A converter to `rate` (`None` keeps the input rate) and `channels` (0 counts as 1).
    pub(crate) fn new(rate: Option<SampleRate>, channels: u16) -> Self {
        Self {
            rate,
            channels: channels.max(1),
            resampler: None,
        }
    }

    /// Converts `frame`; the output may be empty while the resampler fills its first block, and holds the tail of
    /// the previous resampler when the input format changed mid-speech.
    pub(crate) fn push(&mut self, frame: AudioFrame) -> Result<Vec<AudioFrame>, ConvertError> {
        let mut out = Vec::new();
        let target = self.rate.unwrap_or(frame.sample_rate());
        if frame.sample_rate() == target {
            // No rate change: close a resampler left from an earlier input format, then remix only.
            self.finish_into(&mut out)?;
            out.push(remixed(frame, self.channels)?);
            return Ok(out);
        }
        // Down-mix before resampling; up-mix after.
        let work_channels = frame.num_channels().min(self.channels);
        let frame = remixed(frame, work_channels)?;
        let reusable = self.resampler.as_ref().is_some_and(|r| {
            r.input_rate() == frame.sample_rate()
                && r.output_rate() == target
                && r.num_channels() == work_channels
        });
        if !reusable {
            self.finish_into(&mut out)?;
            self.resampler = Some(Resampler::new(
                frame.sample_rate(),
                target,
                work_channels,
                ResampleQuality::default(),
            )?);
        }
        if let Some(r) = self.resampler.as_mut()
            && let Some(converted) = r.push(&frame)?
        {
            out.push(remixed(converted, self.channels)?);
        }
        Ok(out)
    }

    /// Ends the speech: the resampler's buffered tail, if any.
    pub(crate) fn finish(&mut self) -> Result<Vec<AudioFrame>, ConvertError> {
        let mut out = Vec::new();
        self.finish_into(&mut out)?;
        Ok(out)
    }

    fn finish_into(&mut self, out: &mut Vec<AudioFrame>) -> Result<(), ConvertError> {
        if let Some(mut r) = self.resampler.take()
            && let Some(tail) = r.flush()?
        {
            out.push(remixed(tail, self.channels)?);
        }
        Ok(())
    }
}

fn remixed(frame: AudioFrame, channels: u16) -> Result<AudioFrame, AudioFrameError> {
    if frame.num_channels() == channels {
        Ok(frame)
    } else {
        frame.remix(channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sine(rate: SampleRate, start: usize, len: usize) -> AudioFrame {
        let hz = f64::from(rate.hz());
        let data = (start..start + len)
            .map(|i| {
                let v = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / hz).sin() * 8000.0;
                v.round() as i16
            })
            .collect();
        AudioFrame::new(data, rate, 1).unwrap()
    }

    fn convert_all(conv: &mut OutputConverter, frames: Vec<AudioFrame>) -> Vec<AudioFrame> {
        let mut out = Vec::new();
        for f in frames {
            out.extend(conv.push(f).unwrap());
        }
        out.extend(conv.finish().unwrap());
        out
    }

    #[test]
    fn same_format_passes_through_unchanged() {
        let rate = SampleRate::HZ_24000;
        let frames: Vec<_> = (0..5).map(|k| sine(rate, k * 480, 480)).collect();
        let mut conv = OutputConverter::new(Some(rate), 1);
        let out = convert_all(&mut conv, frames.clone());
        assert_eq!(out, frames);
    }

    #[test]
    fn chunked_resampling_matches_the_whole_signal_and_keeps_the_duration() {
        let from = SampleRate::HZ_24000;
        let to = SampleRate::HZ_48000;
        // 1 s in 20 ms chunks.
        let frames: Vec<_> = (0..50).map(|k| sine(from, k * 480, 480)).collect();
        let mut conv = OutputConverter::new(Some(to), 1);
        let out = convert_all(&mut conv, frames);
        assert!(
            out.iter()
                .all(|f| f.sample_rate() == to && f.num_channels() == 1)
        );
        let joined = AudioFrame::concat(&out).unwrap();
        assert_eq!(joined.samples_per_channel(), 48_000);
        assert_eq!(joined.duration(), Duration::from_secs(1));
        // Continuity: the converted chunks, joined, are the 440 Hz sine at 48 kHz (no gap or jump at any chunk
        // boundary); the resampler's delay is trimmed, so sample j is the signal at j / 48000.
        let expected = sine(to, 0, 48_000);
        let worst = joined
            .data()
            .iter()
            .zip(expected.data())
            .skip(200)
            .take(47_600)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(worst < 80, "largest deviation from the ideal sine: {worst}");
    }

    #[test]
    fn stereo_output_gets_both_channels_at_the_new_rate() {
        let from = SampleRate::HZ_16000;
        let to = SampleRate::HZ_48000;
        let frames: Vec<_> = (0..10).map(|k| sine(from, k * 320, 320)).collect();
        let mut conv = OutputConverter::new(Some(to), 2);
        let out = convert_all(&mut conv, frames);
        let joined = AudioFrame::concat(&out).unwrap();
        assert_eq!(joined.num_channels(), 2);
        assert_eq!(joined.sample_rate(), to);
        assert_eq!(joined.samples_per_channel(), 9600);
        assert!(
            joined.data().chunks_exact(2).all(|c| c[0] == c[1]),
            "up-mixed channels are equal"
        );
    }

    #[test]
    fn any_rate_output_only_remixes() {
        let rate = SampleRate::HZ_22050;
        let stereo = AudioFrame::new(vec![100, 300, -50, -150], rate, 2).unwrap();
        let mut conv = OutputConverter::new(None, 1);
        let out = convert_all(&mut conv, vec![stereo]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].sample_rate(), rate);
        assert_eq!(out[0].data(), &[200, -100]);
    }

    #[test]
    fn a_format_change_mid_speech_flushes_the_first_resampler() {
        let to = SampleRate::HZ_48000;
        let mut conv = OutputConverter::new(Some(to), 1);
        let mut out = Vec::new();
        for k in 0..10 {
            out.extend(conv.push(sine(SampleRate::HZ_24000, k * 480, 480)).unwrap());
        }
        for k in 0..10 {
            out.extend(conv.push(sine(SampleRate::HZ_16000, k * 320, 320)).unwrap());
        }
        out.extend(conv.finish().unwrap());
        let total: usize = out.iter().map(AudioFrame::samples_per_channel).sum();
        // 200 ms + 200 ms at 48 kHz.
        assert_eq!(total, 19_200);
    }
}
