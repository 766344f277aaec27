//! `POST /v1/audio/speech` and `POST /v1/audio/transcriptions`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::http::{self, Piece};
use super::{Fault, OpenAiEmulator, RecordedBody, RecordedFile, multipart};

/// Fields of `CreateSpeechRequest` (`additionalProperties: false` in OpenAI's spec).
const SPEECH_FIELDS: &[&str] = &[
    "model",
    "input",
    "voice",
    "instructions",
    "response_format",
    "speed",
    "stream_format",
];

/// Rate of `response_format: "pcm"`.
const PCM_RATE: u32 = 24_000;

pub(super) async fn speech(
    State(emu): State<OpenAiEmulator>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let recorded = match &parsed {
        Ok(v) => RecordedBody::Json(v.clone()),
        Err(_) => RecordedBody::Raw(body.to_vec()),
    };
    let incoming = match http::admit(&emu, &uri, &headers, recorded) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let rid = incoming.request_id.as_str();
    let Ok(Value::Object(req)) = parsed else {
        return http::invalid(
            rid,
            "We could not parse the JSON body of your request.",
            None,
        );
    };
    if let Some(k) = req.keys().find(|k| !SPEECH_FIELDS.contains(&k.as_str())) {
        return http::invalid(
            rid,
            &format!("Unrecognized request argument supplied: {k}"),
            None,
        );
    }
    for field in ["model", "input", "voice"] {
        if field == "model" && incoming.azure {
            continue;
        }
        if !req.get(field).is_some_and(Value::is_string) {
            return http::invalid(
                rid,
                &format!("Missing required parameter: '{field}'."),
                Some(field),
            );
        }
    }
    let input = req.get("input").and_then(Value::as_str).unwrap_or("");
    let chars = input.chars().count();
    if chars == 0 {
        return http::invalid(
            rid,
            "Invalid 'input': string too short. Expected a string with minimum length 1, but got an empty string instead.",
            Some("input"),
        );
    }
    if chars > 4096 {
        return http::invalid(
            rid,
            &format!(
                "Invalid 'input': string too long. Expected a string with maximum length 4096, but got a string with length {chars} instead."
            ),
            Some("input"),
        );
    }
    let speed = match req.get("speed") {
        None => 1.0,
        Some(v) => match v.as_f64() {
            Some(s) if (0.25..=4.0).contains(&s) => s,
            _ => {
                return http::invalid(
                    rid,
                    "Invalid 'speed': expected a number between 0.25 and 4.0.",
                    Some("speed"),
                );
            }
        },
    };
    match req.get("response_format").and_then(Value::as_str) {
        Some("pcm") => {}
        Some(f @ ("mp3" | "opus" | "aac" | "flac" | "wav")) => {
            return http::invalid(
                rid,
                &format!("The emulator only produces 'pcm' audio, not '{f}'."),
                Some("response_format"),
            );
        }
        None => {
            return http::invalid(
                rid,
                "The emulator only produces 'pcm' audio; the default 'mp3' is not emulated.",
                Some("response_format"),
            );
        }
        Some(f) => {
            return http::invalid(
                rid,
                &format!(
                    "Invalid value: '{f}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav', and 'pcm'."
                ),
                Some("response_format"),
            );
        }
    }
    if let Some(sf) = req.get("stream_format")
        && sf.as_str() != Some("audio")
    {
        return http::invalid(
            rid,
            "The emulator only streams raw audio ('stream_format': 'audio').",
            Some("stream_format"),
        );
    }
    let script = emu.next_speech();
    if let Some(response) = http::before_response(rid, script.fault.as_ref()).await {
        return response;
    }
    let pcm = synthesize(input, script.ms_per_char, speed);
    let mut pieces = Vec::new();
    for (i, chunk) in pcm.chunks(script.chunk_bytes.max(1)).enumerate() {
        if let Some(Fault::DropMidStream { after }) = &script.fault
            && i == *after
        {
            pieces.push(Piece::Drop);
            break;
        }
        pieces.push(Piece::Data(
            script.chunk_delay,
            Bytes::copy_from_slice(chunk),
        ));
    }
    http::streamed(rid, "audio/pcm", pieces)
}

/// Deterministic PCM16 mono at 24 kHz: `ms_per_char / speed` milliseconds of a sine per character, pitched by the
/// character.
fn synthesize(input: &str, ms_per_char: u32, speed: f64) -> Vec<u8> {
    let samples_per_char = (f64::from(PCM_RATE) * f64::from(ms_per_char) / 1000.0 / speed) as usize;
    let mut out = Vec::with_capacity(input.len() * samples_per_char * 2);
    let mut t = 0usize;
    for c in input.chars() {
        let freq = 180.0 + f64::from(u32::from(c) % 40) * 12.0;
        for _ in 0..samples_per_char {
            let phase = 2.0 * std::f64::consts::PI * freq * t as f64 / f64::from(PCM_RATE);
            let s = (phase.sin() * 6000.0) as i16;
            out.extend_from_slice(&s.to_le_bytes());
            t += 1;
        }
    }
    out
}

const AUDIO_EXTENSIONS: &[&str] = &[
    "flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm",
];

pub(super) async fn transcriptions(
    State(emu): State<OpenAiEmulator>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = multipart::boundary(content_type)
        .ok_or_else(|| "the body is not multipart/form-data".to_owned())
        .and_then(|b| multipart::parse(&body, &b));
    let recorded = match &parts {
        Ok(parts) => {
            let mut fields = BTreeMap::new();
            let mut file = None;
            for p in parts {
                if p.name == "file" {
                    file = Some(RecordedFile {
                        filename: p.filename.clone(),
                        content_type: p.content_type.clone(),
                        len: p.data.len(),
                        wav: multipart::wav_info(&p.data),
                    });
                } else {
                    fields.insert(
                        p.name.clone(),
                        String::from_utf8_lossy(&p.data).into_owned(),
                    );
                }
            }
            RecordedBody::Multipart { fields, file }
        }
        Err(_) => RecordedBody::Raw(body.to_vec()),
    };
    let incoming = match http::admit(&emu, &uri, &headers, recorded.clone()) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let rid = incoming.request_id.as_str();
    let RecordedBody::Multipart { fields, file } = recorded else {
        let reason = parts.err().unwrap_or_default();
        return http::invalid(
            rid,
            &format!("Could not parse multipart form: {reason}"),
            None,
        );
    };
    let Some(file) = file else {
        return http::invalid(rid, "Missing required parameter: 'file'.", Some("file"));
    };
    if !incoming.azure && !fields.contains_key("model") {
        return http::invalid(rid, "Missing required parameter: 'model'.", Some("model"));
    }
    let unsupported = || {
        http::invalid(
            rid,
            "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']",
            Some("file"),
        )
    };
    let ext = file
        .filename
        .as_deref()
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("wav") if file.wav.is_some() => {}
        Some(e) if AUDIO_EXTENSIONS.contains(&e) && e != "wav" => {
            return http::invalid(rid, "The emulator only decodes WAV uploads.", Some("file"));
        }
        _ => return unsupported(),
    }
    let duration = file.wav.map(|w| w.duration()).unwrap_or_default();
    if duration.as_millis() < 100 {
        return http::invalid(
            rid,
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            Some("file"),
        );
    }
    let format = fields
        .get("response_format")
        .map_or("json", String::as_str)
        .to_owned();
    if !matches!(format.as_str(), "json" | "text" | "verbose_json") {
        return http::invalid(
            rid,
            &format!("The emulator does not produce response_format '{format}'."),
            Some("response_format"),
        );
    }
    let script = emu.next_transcription();
    if let Some(response) = http::before_response(rid, script.fault.as_ref()).await {
        return response;
    }
    let seconds = duration.as_secs_f64();
    match format.as_str() {
        "text" => http::text_response(rid, format!("{}\n", script.text)),
        "verbose_json" => http::json_response(
            rid,
            json!({
                "task": "transcribe",
                "language": fields.get("language").cloned().unwrap_or(script.language.clone()),
                "duration": seconds,
                "text": script.text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": script.text,
                    "tokens": [], "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0,
                    "no_speech_prob": 0.01}],
                "usage": {"type": "duration", "seconds": seconds.ceil()}
            }),
        ),
        _ => http::json_response(
            rid,
            json!({"text": script.text, "usage": {"type": "duration", "seconds": seconds.ceil()}}),
        ),
    }
}
