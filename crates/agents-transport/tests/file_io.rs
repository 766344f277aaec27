//! WAV-file and console I/O: `WavInput` conversion and pacing, `WavOutput`'s playout contract and file, the
//! transcript files and whole sessions run from a file with the testkit fakes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use agents_audio::{AudioFrame, SampleRate, WavError, read_wav, write_wav};
use agents_core::Agent;
use agents_core::audio_io::{AudioOutput, AudioOutputError};
use agents_core::events::CloseReason;
use agents_pipeline::interruption::InterruptionOptions;
use agents_pipeline::{AgentSession, SessionOptions};
use agents_testkit::signal::{rms, sequence};
use agents_testkit::{FakeLlm, FakeResponse, FakeStt, FakeTts, FakeVad};
use agents_transport::file::{
    ConsoleView, FileIoError, FileSessionOptions, Pacing, TranscriptOptions, WavInput,
    WavInputOptions, WavOutput, WavOutputOptions, run_file_session,
};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A fresh directory for one test's files.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("agents-file-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `parts` (`true` = the testkit's speech tone) as a WAV file at `rate` with `channels` channels.
fn write_input(path: &Path, parts: &[(bool, u64)], rate: SampleRate, channels: u16) {
    let parts: Vec<(bool, Duration)> = parts.iter().map(|&(s, d)| (s, ms(d))).collect();
    let mono = AudioFrame::concat(&sequence(&parts, rate)).unwrap();
    write_wav(path, &[mono.remix(channels).unwrap()]).unwrap();
}

async fn collect(input: WavInput) -> Vec<AudioFrame> {
    input.into_audio_input().collect().await
}

#[tokio::test]
async fn a_48k_stereo_file_reaches_the_session_as_16k_mono_20ms_frames() {
    let dir = TempDir::new("convert");
    let path = dir.path("in.wav");
    write_input(
        &path,
        &[(true, 1000), (false, 500)],
        SampleRate::HZ_48000,
        2,
    );
    let input = WavInput::open(
        &path,
        WavInputOptions::default()
            .with_pacing(Pacing::AsFastAsPossible)
            .with_trailing_silence(Duration::ZERO),
    )
    .unwrap();
    assert_eq!(input.audio_duration(), ms(1500));
    assert_eq!(input.frame_count(), 75);
    let frames = collect(input).await;
    assert_eq!(frames.len(), 75);
    for f in &frames {
        assert_eq!(f.sample_rate(), SampleRate::HZ_16000);
        assert_eq!(f.num_channels(), 1);
        assert_eq!(f.samples_per_channel(), 320);
    }
    // The tone is kept (same level as the 16 kHz original) and the silence stays silent.
    let reference = sequence(&[(true, ms(1000))], SampleRate::HZ_16000);
    let want = rms(&AudioFrame::concat(&reference).unwrap());
    let got = rms(&AudioFrame::concat(&frames[5..45]).unwrap());
    assert!((got - want).abs() < want * 0.02, "tone rms {got} vs {want}");
    assert!(rms(&AudioFrame::concat(&frames[52..]).unwrap()) < 1e-3);
}

#[tokio::test]
async fn trailing_silence_pads_the_last_frame_and_looping_starts_over() {
    let audio = AudioFrame::concat(&sequence(&[(true, ms(110))], SampleRate::HZ_16000)).unwrap();
    let input = WavInput::from_frame(
        "mem",
        &audio,
        WavInputOptions::default()
            .with_pacing(Pacing::AsFastAsPossible)
            .with_trailing_silence(ms(100)),
    )
    .unwrap();
    // 110 ms + 100 ms = 210 ms, padded to 11 frames.
    assert_eq!(input.frame_count(), 11);
    assert_eq!(input.pass_duration(), ms(220));
    let progress = input.progress();
    let frames = collect(input).await;
    assert_eq!(frames.len(), 11);
    assert!(rms(&frames[10]) < 1e-6, "the last frame is silence");
    let p = *progress.borrow();
    assert!(p.finished);
    assert_eq!(p.delivered, ms(220));
    assert_eq!(p.pass, 1);

    let input = WavInput::from_frame(
        "mem",
        &audio,
        WavInputOptions::default()
            .with_pacing(Pacing::AsFastAsPossible)
            .with_trailing_silence(Duration::ZERO)
            .with_looping(true),
    )
    .unwrap();
    let progress = input.progress();
    let frames: Vec<AudioFrame> = input.into_audio_input().take(14).collect().await;
    assert_eq!(frames.len(), 14, "a looping input does not end");
    assert_eq!(
        frames[0].data(),
        frames[6].data(),
        "the second pass starts over"
    );
    let p = *progress.borrow();
    assert_eq!((p.pass, p.position, p.finished), (3, ms(40), false));
}

#[tokio::test(start_paused = true)]
async fn real_time_pacing_delivers_one_frame_per_20ms_of_the_tokio_clock() {
    let audio = AudioFrame::concat(&sequence(&[(true, ms(400))], SampleRate::HZ_16000)).unwrap();
    let input = WavInput::from_frame(
        "mem",
        &audio,
        WavInputOptions::default().with_trailing_silence(Duration::ZERO),
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let mut stream = input.into_audio_input();
    let mut times = Vec::new();
    while stream.next().await.is_some() {
        times.push(start.elapsed());
    }
    let want: Vec<Duration> = (0..20).map(|k| ms(20 * k)).collect();
    assert_eq!(times, want);
}

#[tokio::test(start_paused = true)]
async fn fast_pacing_delivers_everything_without_the_clock_moving() {
    let audio = AudioFrame::concat(&sequence(&[(true, ms(3000))], SampleRate::HZ_16000)).unwrap();
    let input = WavInput::from_frame(
        "mem",
        &audio,
        WavInputOptions::default().with_pacing(Pacing::AsFastAsPossible),
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let frames = collect(input).await;
    assert_eq!(
        frames.len(),
        200,
        "3 s of audio and 1 s of trailing silence"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[test]
fn unreadable_or_unsupported_files_are_typed_errors() {
    let dir = TempDir::new("bad");
    let opts = WavInputOptions::default;

    let missing = WavInput::open(dir.path("missing.wav"), opts()).unwrap_err();
    assert!(
        matches!(
            &missing,
            FileIoError::ReadWav {
                source: WavError::Io(_),
                ..
            }
        ),
        "{missing:?}"
    );
    assert!(missing.to_string().contains("missing.wav"));

    let garbage = dir.path("garbage.wav");
    std::fs::write(&garbage, b"this is not a RIFF file at all, just text").unwrap();
    let e = WavInput::open(&garbage, opts()).unwrap_err();
    assert!(
        matches!(
            &e,
            FileIoError::ReadWav {
                source: WavError::Malformed { .. },
                ..
            }
        ),
        "{e:?}"
    );

    // A valid header followed by half of its declared data.
    let truncated = dir.path("truncated.wav");
    write_input(&truncated, &[(true, 500)], SampleRate::HZ_16000, 1);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = WavInput::open(&truncated, opts()).unwrap_err();
    assert!(
        matches!(
            &e,
            FileIoError::ReadWav {
                source: WavError::Truncated,
                ..
            }
        ),
        "{e:?}"
    );

    // 64-bit float is not a format the reader converts.
    let f64_path = dir.path("f64.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 64,
        sample_format: hound::SampleFormat::Float,
    };
    write_raw_wav(&f64_path, spec);
    let e = WavInput::open(&f64_path, opts()).unwrap_err();
    assert!(matches!(&e, FileIoError::ReadWav { .. }), "{e:?}");

    // A well-formed file without samples.
    let empty = dir.path("empty.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&empty, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let e = WavInput::open(&empty, opts()).unwrap_err();
    assert!(matches!(&e, FileIoError::EmptyInput { .. }), "{e:?}");

    let ok = dir.path("ok.wav");
    write_input(&ok, &[(true, 100)], SampleRate::HZ_16000, 1);
    let e = WavInput::open(&ok, opts().with_num_channels(0)).unwrap_err();
    assert!(matches!(e, FileIoError::InvalidOption(_)), "{e:?}");
    let e = WavInput::open(&ok, opts().with_frame_duration(Duration::ZERO)).unwrap_err();
    assert!(matches!(e, FileIoError::InvalidOption(_)), "{e:?}");
}

/// A WAV header of `spec` with a few bytes of data, written by hand (hound refuses to write 64-bit float).
fn write_raw_wav(path: &Path, spec: hound::WavSpec) {
    let data = [0u8; 16];
    let block = spec.channels * spec.bits_per_sample / 8;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    let format: u16 = match spec.sample_format {
        hound::SampleFormat::Float => 3,
        hound::SampleFormat::Int => 1,
    };
    b.extend_from_slice(&format.to_le_bytes());
    b.extend_from_slice(&spec.channels.to_le_bytes());
    b.extend_from_slice(&spec.sample_rate.to_le_bytes());
    b.extend_from_slice(&(spec.sample_rate * u32::from(block)).to_le_bytes());
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&spec.bits_per_sample.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    std::fs::write(path, b).unwrap();
}

fn tone(d: u64, rate: SampleRate) -> Vec<AudioFrame> {
    sequence(&[(true, ms(d))], rate)
}

/// Indices (samples) of the first and last non-silent samples of `frame`.
fn voiced_span(frame: &AudioFrame) -> Option<(usize, usize)> {
    let d = frame.data();
    let first = d.iter().position(|&s| s != 0)?;
    let last = d.iter().rposition(|&s| s != 0)?;
    Some((first, last))
}

#[tokio::test(start_paused = true)]
async fn wav_output_plays_in_real_time_writes_gaps_as_silence_and_cuts_an_interrupted_speech() {
    let dir = TempDir::new("output");
    let path = dir.path("out.wav");
    let rate = SampleRate::HZ_16000;
    let out = WavOutput::create(&path, WavOutputOptions::default().with_sample_rate(rate)).unwrap();
    let start = tokio::time::Instant::now();

    // Speech 1: 500 ms, played out.
    for f in tone(500, rate) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    let done = out.wait_for_playout().await.unwrap();
    assert_eq!(
        (done.segment, done.playback_position, done.interrupted),
        (1, ms(500), false)
    );
    assert_eq!(start.elapsed(), ms(500), "played at 1x");

    // Speech 2 at 1.5 s: 1 s captured, cleared after 300 ms of playback.
    tokio::time::sleep_until(start + ms(1500)).await;
    let out = Arc::new(out);
    let feeder = {
        let out = out.clone();
        tokio::spawn(async move {
            for f in tone(1000, rate) {
                if out.capture_frame(f).await.is_err() {
                    return;
                }
            }
        })
    };
    tokio::time::sleep(ms(300)).await;
    // The session stops forwarding before it clears (a capture after the clear would open a new segment).
    feeder.abort();
    out.clear_buffer();
    let done = out.wait_for_playout().await.unwrap();
    assert_eq!(
        (done.segment, done.playback_position, done.interrupted),
        (2, ms(300), true)
    );

    let summary = out.finish(ms(2500)).await.unwrap();
    let segs: Vec<_> = summary
        .segments
        .iter()
        .map(|s| (s.segment, s.file_start, s.played, s.interrupted))
        .collect();
    assert_eq!(
        segs,
        vec![(1, ms(0), ms(500), false), (2, ms(1500), ms(300), true)]
    );
    assert!(summary.segments[1].captured > ms(300));
    assert_eq!(summary.duration, ms(2500), "padded to the asked length");

    let file = read_wav(&path).unwrap();
    assert_eq!(file.sample_rate(), rate);
    assert_eq!(file.samples_per_channel(), 40_000);
    let d = file.data();
    // Speech 1 at [0, 8000), silence until 24000, speech 2 cut at 300 ms = 4800 samples, silence after.
    assert!(rms(&AudioFrame::new(d[..8000].to_vec(), rate, 1).unwrap()) > 0.05);
    assert!(
        d[8000..24_000].iter().all(|&s| s == 0),
        "the gap is silence"
    );
    assert!(rms(&AudioFrame::new(d[24_000..28_800].to_vec(), rate, 1).unwrap()) > 0.05);
    assert!(
        d[28_800..].iter().all(|&s| s == 0),
        "nothing after the interruption point"
    );
}

#[tokio::test]
async fn wav_output_in_fast_mode_plays_instantly_and_writes_speeches_back_to_back() {
    let dir = TempDir::new("output-fast");
    let path = dir.path("out.wav");
    let rate = SampleRate::HZ_24000;
    let out = WavOutput::create(
        &path,
        WavOutputOptions::default()
            .with_sample_rate(rate)
            .with_pacing(Pacing::AsFastAsPossible),
    )
    .unwrap();
    for f in tone(2000, rate) {
        out.capture_frame(f).await.unwrap();
    }
    out.flush();
    let done = out.wait_for_playout().await.unwrap();
    assert_eq!(
        (done.playback_position, done.interrupted),
        (ms(2000), false)
    );
    for f in tone(400, rate) {
        out.capture_frame(f).await.unwrap();
    }
    out.clear_buffer();
    let done = out.wait_for_playout().await.unwrap();
    // Fast playback has nothing left to cut: what was captured was played.
    assert_eq!(
        (done.segment, done.playback_position, done.interrupted),
        (2, ms(400), true)
    );
    let summary = out.finish(Duration::ZERO).await.unwrap();
    assert_eq!(summary.segments[1].file_start, ms(2000));
    assert_eq!(read_wav(&path).unwrap().duration(), ms(2400));
}

#[tokio::test]
async fn wav_output_refuses_frames_of_another_format_and_frames_after_finish() {
    let dir = TempDir::new("output-format");
    let out = WavOutput::create(
        dir.path("out.wav"),
        WavOutputOptions::default().with_sample_rate(SampleRate::HZ_16000),
    )
    .unwrap();
    assert_eq!(out.sample_rate(), Some(SampleRate::HZ_16000));
    let e = out
        .capture_frame(AudioFrame::silence(ms(20), SampleRate::HZ_24000, 1).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        AudioOutputError::SampleRateMismatch {
            expected: 16_000,
            actual: 24_000
        }
    );
    let e = out
        .capture_frame(AudioFrame::silence(ms(20), SampleRate::HZ_16000, 2).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        AudioOutputError::ChannelMismatch {
            expected: 1,
            actual: 2
        }
    );
    out.finish(Duration::ZERO).await.unwrap();
    let e = out
        .capture_frame(AudioFrame::silence(ms(20), SampleRate::HZ_16000, 1).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e, AudioOutputError::Closed);

    let e = WavOutput::create(dir.path("no/such/dir/out.wav"), WavOutputOptions::default())
        .unwrap_err();
    assert!(matches!(e, FileIoError::WriteWav { .. }), "{e:?}");
}

fn session_options() -> SessionOptions {
    SessionOptions::default()
        .with_interruption(InterruptionOptions::default().with_aec_warmup_duration(None))
        .with_user_away_timeout(None)
}

fn session(llm: FakeLlm, transcripts: &[&str]) -> AgentSession {
    let stt = FakeStt::new()
        .with_transcripts(transcripts.iter().copied())
        .with_min_silence(ms(100));
    AgentSession::builder()
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .vad(Arc::new(FakeVad::energy()))
        .stt(Arc::new(stt))
        .options(session_options())
        .build()
}

/// A `Write` into a shared buffer (the console view's output).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_runs_from_a_48k_stereo_file_in_real_time_and_writes_audio_and_transcripts() {
    let dir = TempDir::new("session");
    let input = dir.path("user.wav");
    // Two user turns: 1 s of speech, 3 s of silence, 0.8 s of speech; then 3 s of trailing silence.
    write_input(
        &input,
        &[(true, 1000), (false, 3000), (true, 800)],
        SampleRate::HZ_48000,
        2,
    );
    let llm = FakeLlm::new()
        .push_response(FakeResponse::text("Sunny and warm today."))
        .push_response(FakeResponse::text("It is noon."));
    let session = session(llm, &["what is the weather", "what time is it"]);
    let console = Captured::default();
    let options = FileSessionOptions::new(&input)
        .with_input(WavInputOptions::default().with_trailing_silence(ms(3000)))
        .with_output(
            dir.path("agent.wav"),
            WavOutputOptions::default().with_sample_rate(SampleRate::HZ_16000),
        )
        .with_transcript(
            TranscriptOptions::default()
                .with_text_path(dir.path("transcript.txt"))
                .with_jsonl_path(dir.path("transcript.jsonl")),
        )
        .with_console(ConsoleView::new(console.clone(), false));
    let report = run_file_session(&session, Agent::new("You answer."), options)
        .await
        .unwrap();

    assert_eq!(report.turns, 2);
    assert_eq!(
        report.close_reason,
        Some(CloseReason::ParticipantDisconnected)
    );
    assert_eq!(report.input_delivered, ms(7800));
    assert_eq!(report.latencies.len(), 2);

    // The agent's audio: two whole speeches at 16 kHz (the fake TTS speaks 300 ms a word), each after the user
    // turn that asked for it, at its place on the input's timeline.
    let out = report.output.as_ref().unwrap();
    let segs: Vec<_> = out
        .segments
        .iter()
        .map(|s| (s.played, s.interrupted))
        .collect();
    assert_eq!(segs, vec![(ms(1200), false), (ms(900), false)]);
    assert!(out.segments[0].file_start > ms(1000) && out.segments[0].file_start < ms(4000));
    assert!(out.segments[1].file_start > ms(4800) && out.segments[1].file_start < ms(7800));
    assert_eq!(out.duration, ms(7800), "the output is as long as the input");
    let file = read_wav(&out.path).unwrap();
    assert_eq!(file.sample_rate(), SampleRate::HZ_16000);
    let (first, _) = voiced_span(&file).unwrap();
    let start = (out.segments[0].file_start.as_secs_f64() * 16_000.0).round() as usize;
    assert!(
        first.abs_diff(start) <= 2,
        "speech 1 starts at {first}, expected {start}"
    );
    let voiced = file.data().iter().filter(|&&s| s != 0).count() as f64 / 16_000.0;
    assert!(
        (voiced - 2.1).abs() < 0.05,
        "{voiced} s of speech in the file"
    );

    // The transcript files.
    let text = std::fs::read_to_string(dir.path("transcript.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let spoken: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once("] ").map(|x| x.1))
        .filter(|l| l.starts_with("user:") || l.starts_with("agent:"))
        .collect();
    assert_eq!(
        spoken,
        vec![
            "user: what is the weather",
            "agent: Sunny and warm today.",
            "user: what time is it",
            "agent: It is noon.",
        ]
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("] latency: e2e "))
            .count(),
        2
    );
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with("session closed: participant_disconnected")
    );
    // User lines are stamped when the user started speaking (on the input timeline).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[00:00.") && l.contains("user: what is the weather"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[00:04.") && l.contains("user: what time is it"))
    );

    let jsonl = std::fs::read_to_string(dir.path("transcript.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), lines.len());
    let agent: Vec<&serde_json::Value> = entries.iter().filter(|e| e["type"] == "agent").collect();
    assert_eq!(agent[0]["text"], "Sunny and warm today.");
    assert_eq!(agent[0]["interrupted"], false);
    assert!(agent[0]["at"].as_f64().unwrap() > 1.0);
    assert_eq!(report.transcript.len(), entries.len());

    // The console (plain mode): states, progress, transcripts, latency and close as lines.
    let shown = console.text();
    for needle in [
        "state: user speaking",
        "state: agent speaking",
        "user (final): what is the weather",
        "agent: Sunny and warm today.",
        "latency: e2e",
        "input: 50%",
        "input: 100%",
        "session closed: participant_disconnected",
    ] {
        assert!(
            shown.contains(needle),
            "{needle:?} not in console output:\n{shown}"
        );
    }
    assert!(
        !shown.contains('\x1b'),
        "no escape codes when not a terminal"
    );
}

fn lookup_tool() -> agents_core::tools::FunctionTool {
    agents_core::tools::FunctionTool::raw(
        "lookup",
        "Looks the answer up.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx, _args| async move { Ok(agents_core::tools::ToolOutcome::Output("42".to_owned())) },
    )
    .unwrap()
}

const LONG: &str = "Let me tell you everything about the weather today because there is a lot to say about \
                    clouds and rain and wind and sun";

#[tokio::test(start_paused = true)]
async fn a_barge_in_cuts_the_speech_in_the_output_file_and_marks_the_transcript() {
    let dir = TempDir::new("barge-in");
    let input = dir.path("user.wav");
    // The user asks, then talks over the (long) answer at 4 s.
    write_input(
        &input,
        &[(true, 1000), (false, 3000), (true, 1000)],
        SampleRate::HZ_16000,
        1,
    );
    let llm = FakeLlm::new()
        .push_response(FakeResponse::tool_call("lookup", "{}"))
        .push_response(FakeResponse::text(LONG))
        .push_response(FakeResponse::text("Okay."));
    let session = session(llm, &["what is the weather", "stop please"]);
    let options = FileSessionOptions::new(&input)
        .with_input(WavInputOptions::default().with_trailing_silence(ms(3000)))
        .with_output(dir.path("agent.wav"), WavOutputOptions::default())
        .with_transcript(TranscriptOptions::default().with_jsonl_path(dir.path("t.jsonl")));
    let agent = Agent::builder("You answer.")
        .tool(lookup_tool())
        .build()
        .unwrap();
    let report = run_file_session(&session, agent, options).await.unwrap();

    let out = report.output.as_ref().unwrap();
    assert_eq!(out.segments.len(), 2, "{:?}", out.segments);
    let cut = &out.segments[0];
    let full = FakeTts::new().audio_duration(LONG);
    assert!(cut.interrupted);
    assert!(cut.played > Duration::ZERO && cut.played < full, "{cut:?}");
    // Cut where the user came back (4 s on the input timeline), within the interruption's reaction time.
    let cut_at = cut.file_start + cut.played;
    assert!(cut_at >= ms(4000) && cut_at < ms(4600), "cut at {cut_at:?}");
    assert!(!out.segments[1].interrupted);
    assert_eq!(out.segments[1].played, ms(300));

    // In the file: the answer up to the cut, then silence until the next speech.
    let file = read_wav(&out.path).unwrap();
    let at = |d: Duration| (d.as_secs_f64() * 24_000.0).round() as usize;
    let d = file.data();
    assert!(
        d[at(cut_at) + 1..at(out.segments[1].file_start)]
            .iter()
            .all(|&s| s == 0)
    );
    assert!(
        rms(&AudioFrame::new(
            d[at(cut_at) - 2400..at(cut_at)].to_vec(),
            SampleRate::HZ_24000,
            1
        )
        .unwrap())
            > 0.05
    );

    // The transcript marks the interruption; the agent line holds only the words heard.
    let kinds: Vec<(String, String, bool)> = report
        .transcript
        .iter()
        .filter_map(|e| {
            let v = serde_json::to_value(e).unwrap();
            let kind = v["type"].as_str().unwrap().to_owned();
            matches!(kind.as_str(), "user" | "agent" | "tool_call").then(|| {
                let text = v["text"]
                    .as_str()
                    .or(v["name"].as_str())
                    .unwrap()
                    .to_owned();
                (kind, text, v["interrupted"].as_bool().unwrap_or(false))
            })
        })
        .collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    assert_eq!(
        kinds[0],
        ("user".into(), "what is the weather".into(), false)
    );
    assert_eq!(kinds[1], ("tool_call".into(), "lookup".into(), false));
    assert_eq!(
        (kinds[2].0.as_str(), kinds[2].2),
        ("agent", true),
        "{kinds:#?}"
    );
    assert!(
        LONG.starts_with(&kinds[2].1) && kinds[2].1.len() < LONG.len(),
        "{:?}",
        kinds[2].1
    );
    assert!(!kinds[2].1.is_empty());
    assert_eq!(kinds[3], ("user".into(), "stop please".into(), false));
    assert_eq!(kinds[4], ("agent".into(), "Okay.".into(), false));
    let jsonl = std::fs::read_to_string(dir.path("t.jsonl")).unwrap();
    assert!(jsonl.contains(
        r#""type":"tool_call","name":"lookup","arguments":"{}","output":"42","is_error":false"#
    ));
    assert!(jsonl.contains(r#""interrupted":true"#));
}

#[tokio::test]
async fn fast_pacing_runs_a_session_from_a_file_faster_than_real_time() {
    let dir = TempDir::new("fast");
    let input = dir.path("user.wav");
    // 6 s of input; the session hears one turn and answers before the input ends.
    write_input(
        &input,
        &[(true, 1000), (false, 5000)],
        SampleRate::HZ_16000,
        1,
    );
    let llm = FakeLlm::new().push_response(FakeResponse::text("Hello there."));
    let session = AgentSession::builder()
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new()))
        .vad(Arc::new(FakeVad::energy()))
        .stt(Arc::new(
            FakeStt::new()
                .with_transcripts(["hi"])
                .with_min_silence(ms(100)),
        ))
        .options(session_options().with_close_on_input_end(false))
        .build();
    let options = FileSessionOptions::new(&input)
        .with_input(
            WavInputOptions::default()
                .with_pacing(Pacing::AsFastAsPossible)
                .with_trailing_silence(Duration::ZERO),
        )
        .with_output(dir.path("agent.wav"), WavOutputOptions::default())
        .with_transcript(TranscriptOptions::default().with_text_path(dir.path("t.txt")))
        .with_idle_close(ms(800))
        .with_max_duration(Duration::from_secs(8));
    let started = std::time::Instant::now();
    let report = run_file_session(&session, Agent::new("x"), options)
        .await
        .unwrap();
    // Real-time pacing could not deliver 6 s of audio in less than 6 s.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.input_delivered, ms(6000));
    assert_eq!(report.close_reason, Some(CloseReason::UserInitiated));
    assert_eq!(report.turns, 1);
    let out = report.output.as_ref().unwrap();
    assert_eq!(out.segments.len(), 1);
    assert_eq!(
        (out.segments[0].played, out.segments[0].interrupted),
        (ms(600), false)
    );
    // Fast mode: the reply is placed at the input position delivered when it started (here the whole file).
    assert!(out.segments[0].file_start >= ms(1000));
    let text = std::fs::read_to_string(dir.path("t.txt")).unwrap();
    assert!(text.contains("user: hi\n"), "{text}");
    assert!(text.contains("agent: Hello there.\n"), "{text}");
}

#[test]
fn transcript_lines_render_as_text_and_round_trip_as_json() {
    use agents_transport::file::{TranscriptEntry, TranscriptEvent};
    let entries: Vec<TranscriptEntry> = [
        r#"{"at":1.5,"type":"user","text":"what is the weather"}"#,
        r#"{"at":62.25,"type":"agent","text":"Sunny.","interrupted":true}"#,
        r#"{"at":3.0,"type":"tool_call","name":"lookup","arguments":"{}","output":"boom","is_error":true}"#,
        r#"{"at":3.0,"type":"latency","speech_id":"s1","e2e":0.9,"llm_ttft":0.25}"#,
        r#"{"at":9.0,"type":"closed","reason":"participant_disconnected"}"#,
    ]
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let text: Vec<String> = entries.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "[00:01.500] user: what is the weather",
            "[01:02.250] agent: Sunny. [interrupted]",
            "[00:03.000] tool: lookup({}) -> error: boom",
            "[00:03.000] latency: e2e 0.900 s, LLM TTFT 0.250 s",
            "[00:09.000] session closed: participant_disconnected",
        ]
    );
    assert!(matches!(
        entries[1].event,
        TranscriptEvent::Agent {
            interrupted: true,
            ..
        }
    ));
    for e in &entries {
        let back: TranscriptEntry =
            serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }
}

#[tokio::test(start_paused = true)]
async fn on_a_terminal_the_console_redraws_one_status_line_with_states_and_progress() {
    use agents_core::audio_io::TextOutput;
    let out = Captured::default();
    let view = ConsoleView::new(out.clone(), true);
    assert!(view.is_tty());
    let audio = AudioFrame::concat(&sequence(&[(true, ms(1000))], SampleRate::HZ_16000)).unwrap();
    let input = WavInput::from_frame(
        "mem",
        &audio,
        WavInputOptions::default().with_trailing_silence(Duration::ZERO),
    )
    .unwrap();
    let progress = input.progress();
    let (tx, events) = agents_core::stream::EventStream::channel(16);
    let task = view.follow(events, Some(progress));
    let mut stream = input.into_audio_input();
    for _ in 0..25 {
        stream.next().await.unwrap();
    }
    tokio::task::yield_now().await;
    use agents_core::events::{AgentState, SessionEvent, UserState};
    tx.send(SessionEvent::AgentStateChanged {
        old: AgentState::Listening,
        new: AgentState::Speaking,
    })
    .await
    .unwrap();
    tx.send(SessionEvent::UserInputTranscribed {
        transcript: "what is".into(),
        is_final: false,
        language: None,
        speaker_id: None,
    })
    .await
    .unwrap();
    tokio::time::sleep(ms(1)).await;
    let shown = out.text();
    let status = shown.rsplit("\r\x1b[2K").next().unwrap();
    assert_eq!(
        status,
        "agent: speaking  user: listening [############............] 0.5/1.0 s | you: what is"
    );
    view.capture_text("Hello ").await.unwrap();
    view.capture_text("there.").await.unwrap();
    TextOutput::flush(&view);
    tx.send(SessionEvent::UserStateChanged {
        old: UserState::Listening,
        new: UserState::Speaking,
    })
    .await
    .unwrap();
    tx.send(SessionEvent::Close {
        reason: CloseReason::UserInitiated,
        error: None,
    })
    .await
    .unwrap();
    task.await.unwrap();
    let shown = out.text();
    // Lines are printed above the status line; state changes only update it on a terminal.
    assert!(shown.contains("agent: Hello there.\n"), "{shown:?}");
    assert!(
        shown.contains("session closed: user_initiated\n"),
        "{shown:?}"
    );
    assert!(!shown.contains("state: "), "{shown:?}");
}

#[tokio::test]
async fn run_file_session_reports_a_bad_input_or_a_closed_session_as_typed_errors() {
    use agents_core::SessionControl;
    let dir = TempDir::new("run-errors");
    let session = session(FakeLlm::new(), &[]);
    let e = run_file_session(
        &session,
        Agent::new("x"),
        FileSessionOptions::new(dir.path("missing.wav")),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FileIoError::ReadWav { .. }), "{e:?}");

    let input = dir.path("user.wav");
    write_input(&input, &[(true, 200)], SampleRate::HZ_16000, 1);
    let e = run_file_session(
        &session,
        Agent::new("x"),
        FileSessionOptions::new(&input).with_input(
            WavInputOptions::default().with_trailing_silence(Duration::from_secs(3600)),
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FileIoError::InvalidOption(_)), "{e:?}");

    session
        .start(Agent::new("x"), agents_core::SessionIo::new())
        .await
        .unwrap();
    session.close().await.unwrap();
    let out = dir.path("agent.wav");
    let e = run_file_session(
        &session,
        Agent::new("x"),
        FileSessionOptions::new(&input)
            .with_output(&out, WavOutputOptions::default())
            .with_transcript(TranscriptOptions::default().with_text_path(dir.path("t.txt"))),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            FileIoError::Session(agents_core::SessionError::NotRunning)
        ),
        "{e:?}"
    );
    // The files were closed properly: a valid, empty WAV file and an empty transcript.
    let wav = read_wav(&out).unwrap();
    assert!(wav.is_empty());
    assert_eq!(wav.sample_rate(), SampleRate::HZ_24000);
    assert_eq!(std::fs::read_to_string(dir.path("t.txt")).unwrap(), "");
}

/// The committed speech fixtures of the Silero plugin (espeak-ng speech; the 48 kHz file is the 16 kHz one
/// resampled by sox, linear phase, no delay: see `make_fixtures.sh` there).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/silero/tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn real_speech_at_48k_converts_to_the_16k_original_within_the_resamplers_error() {
    let original = read_wav(fixture("speech_pauses_16k.wav")).unwrap();
    let input = WavInput::open(
        fixture("speech_pauses_48k.wav"),
        WavInputOptions::default()
            .with_pacing(Pacing::AsFastAsPossible)
            .with_trailing_silence(Duration::ZERO),
    )
    .unwrap();
    assert_eq!(input.audio_duration(), original.duration());
    let got = AudioFrame::concat(&collect(input).await).unwrap();
    let n = original.samples_per_channel();
    assert!(got.samples_per_channel() >= n && got.samples_per_channel() < n + 320);
    let (a, b) = (original.data(), &got.data()[..n]);
    let err: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let sig: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum();
    let snr_db = 10.0 * (sig / err).log10();
    assert!(
        snr_db > 30.0,
        "48k -> 16k differs from the original by {snr_db:.1} dB SNR"
    );
    assert!(
        got.data()[n..].iter().all(|&s| s == 0),
        "the last frame is padded with silence"
    );
}
