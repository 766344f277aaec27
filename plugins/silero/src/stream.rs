//! The task behind each [`VadStream`](agents_core::vad::VadStream).
//!
//! Threading: the stream task itself is async and only moves data; every inference runs on the model's dedicated
//! inference threads ([`crate::executor`]), never on an async worker thread and not on tokio's blocking pool. The
//! task takes whatever input is queued (up to [`MAX_BATCH`] items), moves its per-stream [`Processor`] into one job
//! that handles them all, and gets it back with the events. Why this and not a thread per stream:
//!
//! * A 32 ms window costs ~60 µs in release (~1 ms in debug): the hop to a worker (a few µs) is small next to it,
//!   and batching the queued frames amortises it further when the stream is behind.
//! * Streams cost no OS thread while idle: 1,000 open streams do not mean 1,000 threads. The pool is fixed
//!   ([`SileroLoadOptions::inference_threads`](crate::SileroLoadOptions), default the available parallelism) and
//!   its threads run at a lower priority (`inference_nice`), so the event loop is scheduled first.
//! * The executor's job queue is bounded: when it is full the stream awaits, and its own bounded input channel
//!   pushes back on the producer.

use std::time::Instant;

use agents_audio::{
    AudioFrame, AudioFrameError, ResampleQuality, Resampler, SampleRate, VadOptions,
    VadStateMachine, VadStep, VadStepKind, VadWindow,
};
use agents_core::stream::FrameInput;
use agents_core::vad::{VadError, VadEvent, VadEventKind, VadStreamDriver};
use tokio::sync::watch;

use crate::executor::ExecutorHandle;
use crate::{MODEL_SAMPLE_RATE, SileroDetector, WINDOW_SAMPLES};

/// Most queued inputs handled in one blocking call.
const MAX_BATCH: usize = 32;

pub(crate) async fn run(
    mut driver: VadStreamDriver,
    detector: SileroDetector,
    mut options: watch::Receiver<VadOptions>,
    executor: ExecutorHandle,
) {
    let mut processor = Processor::new(detector, *options.borrow_and_update());
    loop {
        let Some(first) = driver.recv().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match driver.try_recv() {
                Some(i) => batch.push(i),
                None => break,
            }
        }
        if options.has_changed().unwrap_or(false) {
            processor.set_options(*options.borrow_and_update());
        }
        let joined = executor
            .run(move || {
                let mut out = Vec::new();
                let mut ended = false;
                for input in batch {
                    if processor.handle(input, &mut out) == Flow::End {
                        ended = true;
                        break;
                    }
                }
                (processor, out, ended)
            })
            .await;
        let (p, out, ended) = match joined {
            Ok(v) => v,
            Err(e) => {
                let _ = driver
                    .send(Err(VadError::Model {
                        reason: format!("VAD inference task failed: {e}"),
                    }))
                    .await;
                return;
            }
        };
        processor = p;
        for e in out {
            if driver.send(e).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Format {
    rate: SampleRate,
    channels: u16,
}

/// One stream's state: model state, format, pending audio and the VAD state machine. Pure blocking code.
#[derive(Debug)]
pub(crate) struct Processor {
    detector: SileroDetector,
    options: VadOptions,
    format: Option<Format>,
    machine: Option<VadStateMachine>,
    /// Input rate -> 16 kHz, when the input is not at 16 kHz.
    resampler: Option<Resampler>,
    /// Mono audio at the input rate, not yet attributed to a window.
    audio_pending: Vec<i16>,
    /// Mono 16 kHz audio not yet run through the model.
    model_pending: Vec<i16>,
    windows: u64,
    audio_consumed: u64,
    steps: Vec<VadStep>,
}

impl Processor {
    pub(crate) fn new(detector: SileroDetector, options: VadOptions) -> Self {
        Self {
            detector,
            options,
            format: None,
            machine: None,
            resampler: None,
            audio_pending: Vec::new(),
            model_pending: Vec::new(),
            windows: 0,
            audio_consumed: 0,
            steps: Vec::new(),
        }
    }

    pub(crate) fn set_options(&mut self, options: VadOptions) {
        self.options = options;
        if let Some(m) = self.machine.as_mut() {
            // Options come validated from SileroVad::update_options; a refusal keeps the old ones.
            if let Err(e) = m.set_options(options) {
                tracing::warn!(error = %e, "VAD options not applied");
            }
        }
    }

    fn handle(&mut self, input: FrameInput, out: &mut Vec<Result<VadEvent, VadError>>) -> Flow {
        match input {
            FrameInput::Frame(frame) => self.push_frame(&frame, out),
            FrameInput::Flush => {
                self.close(out);
                self.detector.reset();
                if let Some(m) = self.machine.as_mut() {
                    m.reset();
                }
                Flow::Continue
            }
            FrameInput::EndInput => {
                // The resampler holds back up to one block: push its tail through the model first.
                if let Some(r) = self.resampler.as_mut() {
                    if let Err(e) = r.flush_into(&mut self.model_pending) {
                        out.push(Err(VadError::Model {
                            reason: format!("resampling to 16 kHz failed: {e}"),
                        }));
                        return Flow::End;
                    }
                    if self.run_windows(out) == Flow::End {
                        return Flow::End;
                    }
                }
                self.close(out);
                Flow::End
            }
            // Future input kinds carry no audio for the VAD.
            _ => Flow::Continue,
        }
    }

    /// Closes open speech with an `EndOfSpeech`.
    fn close(&mut self, out: &mut Vec<Result<VadEvent, VadError>>) {
        if let Some(step) = self.machine.as_mut().and_then(VadStateMachine::finish) {
            out.extend(to_event(step).map(Ok));
        }
    }

    fn start(&mut self, frame: &AudioFrame) -> Result<VadStateMachine, VadError> {
        if frame.sample_rate() != MODEL_SAMPLE_RATE {
            // Low quality (shortest delay, 2 ms at 16 kHz) is plenty for a VAD; LiveKit uses its QUICK preset.
            // The resampler trims its start-up delay, so model time and input time stay aligned.
            let r = Resampler::new(
                frame.sample_rate(),
                MODEL_SAMPLE_RATE,
                1,
                ResampleQuality::Low,
            )
            .map_err(|e| VadError::Model {
                reason: format!(
                    "cannot resample {} Hz input to 16 kHz: {e}",
                    frame.sample_rate().hz()
                ),
            })?;
            self.resampler = Some(r);
        }
        VadStateMachine::new(
            self.options,
            WINDOW_SAMPLES as u32,
            MODEL_SAMPLE_RATE,
            frame.sample_rate(),
        )
        .map_err(|e| VadError::Model {
            reason: e.to_string(),
        })
    }

    fn push_frame(
        &mut self,
        frame: &AudioFrame,
        out: &mut Vec<Result<VadEvent, VadError>>,
    ) -> Flow {
        match self.format {
            None => match self.start(frame) {
                Ok(m) => {
                    self.machine = Some(m);
                    self.format = Some(Format {
                        rate: frame.sample_rate(),
                        channels: frame.num_channels(),
                    });
                }
                Err(e) => {
                    out.push(Err(e));
                    return Flow::End;
                }
            },
            Some(f) if f.rate != frame.sample_rate() => {
                out.push(Err(VadError::SampleRateChanged {
                    expected: f.rate.hz(),
                    actual: frame.sample_rate().hz(),
                }));
                return Flow::Continue;
            }
            Some(f) if f.channels != frame.num_channels() => {
                out.push(Err(VadError::InvalidAudio(
                    AudioFrameError::FormatMismatch {
                        expected_rate: f.rate,
                        expected_channels: f.channels,
                        actual_rate: frame.sample_rate(),
                        actual_channels: frame.num_channels(),
                    },
                )));
                return Flow::Continue;
            }
            Some(_) => {}
        }
        let mixed;
        let mono = if frame.num_channels() == 1 {
            frame.data()
        } else {
            mixed = frame.to_mono();
            mixed.data()
        };
        self.audio_pending.extend_from_slice(mono);
        match self.resampler.as_mut() {
            None => self.model_pending.extend_from_slice(mono),
            Some(r) => {
                if let Err(e) = r.push_into(mono, &mut self.model_pending) {
                    out.push(Err(VadError::Model {
                        reason: format!("resampling to 16 kHz failed: {e}"),
                    }));
                    return Flow::End;
                }
            }
        }
        self.run_windows(out)
    }

    fn run_windows(&mut self, out: &mut Vec<Result<VadEvent, VadError>>) -> Flow {
        let (Some(machine), Some(format)) = (self.machine.as_mut(), self.format) else {
            return Flow::Continue;
        };
        let rate = u64::from(format.rate.hz());
        let model_rate = u64::from(MODEL_SAMPLE_RATE.hz());
        let mut model_off = 0;
        let mut audio_off = 0;
        let mut flow = Flow::Continue;
        while self.model_pending.len() - model_off >= WINDOW_SAMPLES {
            let window = &self.model_pending[model_off..model_off + WINDOW_SAMPLES];
            let started = Instant::now();
            let p = match self.detector.predict(window) {
                Ok(p) => p,
                Err(e) => {
                    out.push(Err(VadError::Model {
                        reason: e.to_string(),
                    }));
                    flow = Flow::End;
                    break;
                }
            };
            let inference_duration = started.elapsed();
            model_off += WINDOW_SAMPLES;
            // Input-rate samples that belong to this window, computed from the window count so a non-integer
            // rate ratio never drifts.
            self.windows += 1;
            let target = self.windows * WINDOW_SAMPLES as u64 * rate / model_rate;
            let want = usize::try_from(target.saturating_sub(self.audio_consumed)).unwrap_or(0);
            let take = want.min(self.audio_pending.len() - audio_off);
            self.audio_consumed += take as u64;
            machine.process(
                VadWindow {
                    probability: p,
                    audio: &self.audio_pending[audio_off..audio_off + take],
                    inference_duration,
                },
                &mut self.steps,
            );
            audio_off += take;
            out.extend(self.steps.drain(..).filter_map(to_event).map(Ok));
        }
        self.model_pending.drain(..model_off);
        self.audio_pending.drain(..audio_off);
        flow
    }
}

fn to_event(step: VadStep) -> Option<VadEvent> {
    let kind = match step.kind {
        VadStepKind::StartOfSpeech => VadEventKind::StartOfSpeech,
        VadStepKind::InferenceDone => VadEventKind::InferenceDone,
        VadStepKind::EndOfSpeech => VadEventKind::EndOfSpeech,
        _ => return None,
    };
    let mut e = VadEvent::new(kind, step.timestamp);
    e.samples_index = step.samples_index;
    e.speech_duration = step.speech_duration;
    e.silence_duration = step.silence_duration;
    e.probability = step.probability;
    e.inference_duration = step.inference_duration;
    e.speaking = step.speaking;
    e.frames = step.frames;
    Some(e)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::SileroVad;

    fn processor() -> Processor {
        let vad = match SileroVad::load() {
            Ok(v) => v,
            Err(e) => panic!("{e:?}"),
        };
        Processor::new(
            SileroDetector::new(Arc::clone(vad.model())),
            VadOptions::default(),
        )
    }

    /// At 44.1 kHz a 32 ms window is 1411.2 input samples: windows get 1411 or 1412 and the total never drifts.
    #[test]
    fn non_integer_rate_ratio_attributes_audio_without_drift() {
        let mut p = processor();
        let rate = SampleRate::HZ_44100;
        let mut out = Vec::new();
        for _ in 0..200 {
            let f = match AudioFrame::silence(Duration::from_millis(10), rate, 1) {
                Ok(f) => f,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(p.handle(FrameInput::Frame(f), &mut out), Flow::Continue);
        }
        assert_eq!(p.handle(FrameInput::EndInput, &mut out), Flow::End);
        let sizes: Vec<usize> = out
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|e| e.kind == VadEventKind::InferenceDone)
            .map(|e| e.frames.iter().map(AudioFrame::samples_per_channel).sum())
            .collect();
        // 2 s at 16 kHz after the resampler's tail is flushed = 32000 samples = 62 full windows.
        assert_eq!(sizes.len(), 62);
        assert!(sizes.iter().all(|&n| n == 1411 || n == 1412), "{sizes:?}");
        let total: usize = sizes.iter().sum();
        assert_eq!(total, 62 * 512 * 44100 / 16000);
    }

    #[test]
    fn end_input_without_audio_gives_no_events() {
        let mut p = processor();
        let mut out = Vec::new();
        // Nothing pushed: ending gives no events.
        assert_eq!(p.handle(FrameInput::EndInput, &mut out), Flow::End);
        assert!(out.is_empty());
    }
}
