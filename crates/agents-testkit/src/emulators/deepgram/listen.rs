//! `/v1/listen`: the live WebSocket and the pre-recorded REST endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    Endpoint, Fault, RestRecord, SessionEnd, Shared, bad_request, parse_bool, secs, send_json,
    with_request_id,
};

/// Quiet time that ends the draining of a socket about to be dropped.
const DRAIN_QUIET: Duration = Duration::from_millis(100);
/// Longest draining of a socket about to be dropped (a client streaming in real time is never quiet).
const DRAIN_MAX: Duration = Duration::from_secs(1);

/// The close reason Deepgram sends with 1011 after the idle timeout.
pub(crate) const NET0001_REASON: &str = "Deepgram did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001";

const BOOL_PARAMS: &[&str] = &[
    "interim_results",
    "punctuate",
    "smart_format",
    "vad_events",
    "filler_words",
    "numerals",
    "profanity_filter",
    "diarize",
    "mip_opt_out",
    "no_delay",
    "dictation",
    "multichannel",
    "detect_language",
];
const FREE_PARAMS: &[&str] = &[
    "model", "language", "keyterm", "keywords", "tag", "redact", "replace", "search", "version",
];
const ENCODINGS: &[&str] = &[
    "linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus",
    "speex", "g729",
];

/// The listen parameters the emulator acts on.
#[derive(Debug, Clone)]
pub(crate) struct ListenParams {
    encoding: Option<String>,
    rate: u32,
    channels: u16,
    interim: bool,
    punctuate: bool,
    vad_events: bool,
    /// `None` when `endpointing=false`.
    endpointing_ms: Option<u64>,
    utterance_end_ms: Option<u64>,
    model: String,
    language: String,
}

fn invalid(name: &str, value: &str) -> String {
    format!("Invalid '{name}' value of '{value}'.")
}

/// Validates the query as the real API does on upgrade: unknown names and invalid values are refused.
pub(crate) fn parse_params(query: &[(String, String)]) -> Result<ListenParams, String> {
    let mut p = ListenParams {
        encoding: None,
        rate: 16_000,
        channels: 1,
        interim: false,
        punctuate: false,
        vad_events: false,
        endpointing_ms: Some(10),
        utterance_end_ms: None,
        model: "base".to_owned(),
        language: "en".to_owned(),
    };
    let mut has_rate = false;
    let mut keyterm = false;
    for (k, v) in query {
        let k = k.as_str();
        if BOOL_PARAMS.contains(&k) {
            let b = parse_bool(v).ok_or_else(|| invalid(k, v))?;
            match k {
                "interim_results" => p.interim = b,
                "punctuate" | "smart_format" => p.punctuate |= b,
                "vad_events" => p.vad_events = b,
                _ => {}
            }
            continue;
        }
        match k {
            "encoding" => {
                if !ENCODINGS.contains(&v.as_str()) {
                    return Err(invalid(k, v));
                }
                p.encoding = Some(v.clone());
            }
            "sample_rate" => {
                p.rate = v
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| invalid(k, v))?;
                has_rate = true;
            }
            "channels" => {
                p.channels = v
                    .parse()
                    .ok()
                    .filter(|c| (1..=16).contains(c))
                    .ok_or_else(|| invalid(k, v))?;
            }
            "endpointing" => {
                p.endpointing_ms = if v == "false" {
                    None
                } else {
                    Some(v.parse().map_err(|_| invalid(k, v))?)
                };
            }
            "utterance_end_ms" => {
                let ms: u64 = v.parse().map_err(|_| invalid(k, v))?;
                if ms < 1000 {
                    return Err(invalid(k, v));
                }
                p.utterance_end_ms = Some(ms);
            }
            _ if FREE_PARAMS.contains(&k) => {
                if v.is_empty() {
                    return Err(invalid(k, v));
                }
                match k {
                    "model" => p.model.clone_from(v),
                    "language" => p.language.clone_from(v),
                    "keyterm" => keyterm = true,
                    _ => {}
                }
            }
            _ => return Err(format!("Unknown query parameter '{k}'.")),
        }
    }
    if p.encoding.is_some() && !has_rate {
        return Err("'sample_rate' is required when 'encoding' is set.".to_owned());
    }
    if p.utterance_end_ms.is_some() && !p.interim {
        return Err("'utterance_end_ms' requires 'interim_results=true'.".to_owned());
    }
    if keyterm && !p.model.starts_with("nova-3") {
        return Err("Keyterm prompting is only available with Nova-3 models.".to_owned());
    }
    Ok(p)
}

/// An utterance being heard (positions in samples per channel since the socket opened).
#[derive(Debug)]
struct Utterance {
    speech_start: u64,
    speech_end: u64,
    speech: u64,
    next_interim: u64,
}

/// Turns received audio and control messages into Deepgram messages. Time is counted in received samples.
#[derive(Debug)]
pub(crate) struct Recognizer {
    p: ListenParams,
    request_id: String,
    threshold: f32,
    interim_every: u64,
    silence_final: u64,
    frame: u64,
    byte_carry: Option<u8>,
    carry: Vec<i16>,
    pos: u64,
    window_start: u64,
    silence_run: u64,
    utt: Option<Utterance>,
    /// Last word end of the last final, while an `UtteranceEnd` is due.
    utterance_end_due: Option<u64>,
}

fn samples(d: Duration, rate: u32) -> u64 {
    u64::try_from(d.as_millis() * u128::from(rate) / 1000).unwrap_or(u64::MAX)
}

impl Recognizer {
    pub(crate) fn new(p: ListenParams, shared: &Shared, request_id: String) -> Self {
        let rate = p.rate;
        Self {
            threshold: shared.config.speech_threshold,
            interim_every: samples(shared.config.interim_every, rate).max(1),
            silence_final: samples(shared.config.silence_final_after, rate).max(1),
            frame: u64::from(rate / 100).max(1),
            p,
            request_id,
            byte_carry: None,
            carry: Vec::new(),
            pos: 0,
            window_start: 0,
            silence_run: 0,
            utt: None,
            utterance_end_due: None,
        }
    }

    /// Audio received so far, per channel.
    pub(crate) fn position(&self) -> Duration {
        Duration::from_secs_f64(secs(self.pos, self.p.rate))
    }

    /// Speech heard in the current utterance.
    pub(crate) fn current_speech(&self) -> Duration {
        self.utt.as_ref().map_or(Duration::ZERO, |u| {
            Duration::from_secs_f64(secs(u.speech, self.p.rate))
        })
    }

    /// Feeds PCM16 little-endian bytes; returns the messages to send.
    pub(crate) fn push_audio(&mut self, shared: &Shared, bytes: &[u8]) -> Vec<Value> {
        let mut it = bytes.iter().copied();
        if let Some(lo) = self.byte_carry.take() {
            match it.next() {
                Some(hi) => self.carry.push(i16::from_le_bytes([lo, hi])),
                None => self.byte_carry = Some(lo),
            }
        }
        let rest: Vec<u8> = it.collect();
        let mut chunks = rest.chunks_exact(2);
        self.carry
            .extend(chunks.by_ref().map(|b| i16::from_le_bytes([b[0], b[1]])));
        if let [b] = chunks.remainder() {
            self.byte_carry = Some(*b);
        }
        let channels = usize::from(self.p.channels);
        let per_frame = usize::try_from(self.frame).unwrap_or(usize::MAX) * channels;
        let mut out = Vec::new();
        let mut start = 0;
        while self.carry.len() - start >= per_frame {
            let rms = crate::signal::rms_of(&self.carry[start..start + per_frame]);
            start += per_frame;
            self.frame_analysed(shared, rms >= self.threshold, &mut out);
        }
        self.carry.drain(..start);
        out
    }

    fn frame_analysed(&mut self, shared: &Shared, voiced: bool, out: &mut Vec<Value>) {
        let frame_start = self.pos;
        self.pos += self.frame;
        if voiced {
            self.silence_run = 0;
            if self.utt.is_none() {
                self.utterance_end_due = None;
                self.utt = Some(Utterance {
                    speech_start: frame_start,
                    speech_end: self.pos,
                    speech: 0,
                    next_interim: self.interim_every,
                });
                if self.p.vad_events {
                    out.push(json!({
                        "type": "SpeechStarted",
                        "channel": [0, 1],
                        "timestamp": secs(frame_start, self.p.rate),
                    }));
                }
            }
            let mut interim_due = false;
            if let Some(u) = self.utt.as_mut() {
                u.speech_end = self.pos;
                u.speech += self.frame;
                if u.speech >= u.next_interim {
                    u.next_interim += self.interim_every;
                    interim_due = self.p.interim;
                }
            }
            if interim_due {
                out.push(self.interim(shared));
            }
            return;
        }
        self.silence_run += self.frame;
        if self.utt.is_some() {
            let endpoint = self
                .p
                .endpointing_ms
                .map(|ms| ms * u64::from(self.p.rate) / 1000);
            match endpoint {
                Some(e) if self.silence_run >= e.max(1) => {
                    out.push(self.finalize_utterance(shared, true, false));
                }
                None if self.silence_run >= self.silence_final => {
                    out.push(self.finalize_utterance(shared, false, false));
                }
                _ => {}
            }
            return;
        }
        if let (Some(last), Some(ms)) = (self.utterance_end_due, self.p.utterance_end_ms)
            && self.pos.saturating_sub(last) >= ms * u64::from(self.p.rate) / 1000
        {
            self.utterance_end_due = None;
            out.push(json!({
                "type": "UtteranceEnd",
                "channel": [0, 1],
                "last_word_end": secs(last, self.p.rate),
            }));
        }
        if self.pos - self.window_start >= self.silence_final {
            out.push(self.results(Vec::new(), true, false, false));
            self.window_start = self.pos;
        }
    }

    fn words(
        &self,
        text: &str,
        from: u64,
        to: u64,
        take: usize,
    ) -> Vec<(String, String, u64, u64)> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let n = tokens.len().max(1) as u64;
        let slot = to.saturating_sub(from) / n;
        tokens
            .iter()
            .take(take)
            .enumerate()
            .map(|(i, t)| {
                let s = from + slot * i as u64;
                let bare: String = t
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'' || *c == '-')
                    .collect::<String>()
                    .to_lowercase();
                (bare, (*t).to_owned(), s, s + slot * 9 / 10)
            })
            .collect()
    }

    fn interim(&self, shared: &Shared) -> Value {
        let text = shared.peek_transcript();
        let Some(u) = &self.utt else {
            return self.results(Vec::new(), false, false, false);
        };
        let total = text.split_whitespace().count();
        let revealed = usize::try_from(u.speech / self.interim_every)
            .unwrap_or(usize::MAX)
            .min(total.saturating_sub(1))
            .max(1);
        let words = self.words(&text, u.speech_start, u.speech_end, revealed);
        self.results(words, false, false, false)
    }

    /// The final result of the current utterance; takes its scripted transcript.
    fn finalize_utterance(
        &mut self,
        shared: &Shared,
        speech_final: bool,
        from_finalize: bool,
    ) -> Value {
        let Some(u) = self.utt.take() else {
            return self.results(Vec::new(), true, speech_final, from_finalize);
        };
        let text = shared.take_transcript();
        let words = self.words(&text, u.speech_start, u.speech_end, usize::MAX);
        if !words.is_empty() && self.p.interim && self.p.utterance_end_ms.is_some() {
            self.utterance_end_due = Some(u.speech_end);
        }
        let v = self.results(words, true, speech_final, from_finalize);
        self.window_start = self.pos;
        self.silence_run = 0;
        v
    }

    fn results(
        &self,
        words: Vec<(String, String, u64, u64)>,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> Value {
        let rate = self.p.rate;
        let transcript = words
            .iter()
            .map(|w| {
                if self.p.punctuate {
                    w.1.as_str()
                } else {
                    w.0.as_str()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<Value> = words
            .iter()
            .map(|(w, pw, s, e)| {
                let mut v = json!({
                    "word": w, "start": secs(*s, rate), "end": secs(*e, rate), "confidence": 0.97,
                });
                if self.p.punctuate {
                    v["punctuated_word"] = json!(pw);
                }
                v
            })
            .collect();
        let confidence = if words.is_empty() { 0.0 } else { 0.97 };
        let mut alt = json!({"transcript": transcript, "confidence": confidence, "words": words});
        if self.p.language == "multi" {
            alt["languages"] = json!(["en"]);
        }
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": secs(self.pos - self.window_start, rate),
            "start": secs(self.window_start, rate),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [alt]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": format!("general-{}", self.p.model), "version": "2026-01-01.0", "arch": self.p.model},
                "model_uuid": "00000000-0000-4000-8000-00000000e41a",
            },
        })
    }

    /// `Finalize`: the current utterance becomes final at once.
    pub(crate) fn finalize(&mut self, shared: &Shared) -> Vec<Value> {
        if self.utt.is_some() {
            vec![self.finalize_utterance(shared, false, true)]
        } else {
            Vec::new()
        }
    }

    /// `CloseStream`: the last results, then `Metadata`.
    pub(crate) fn close(&mut self, shared: &Shared) -> Vec<Value> {
        let mut out = Vec::new();
        if self.utt.is_some() {
            out.push(self.finalize_utterance(shared, true, false));
        }
        out.push(json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0".repeat(64),
            "created": "2026-01-01T00:00:00.000Z",
            "duration": secs(self.pos, self.p.rate),
            "channels": self.p.channels,
        }));
        out
    }
}

/// `GET /v1/listen` upgrade.
pub(crate) async fn ws_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let request_id = match shared.admit(Endpoint::ListenWs, &headers) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let params = match parse_params(&query) {
        Ok(p) => p,
        Err(msg) => return bad_request(&msg, &request_id),
    };
    let fault = shared.take_fault(Endpoint::ListenWs, false);
    let index = shared.add_listen(query);
    let id = request_id.clone();
    let resp = ws.on_upgrade(move |socket| async move {
        run_socket(socket, shared, params, index, request_id, fault).await;
    });
    with_request_id(resp, &id)
}

async fn run_socket(
    mut socket: WebSocket,
    shared: Arc<Shared>,
    params: ListenParams,
    index: usize,
    request_id: String,
    fault: Option<Fault>,
) {
    let rate = params.rate;
    let channels = u32::from(params.channels);
    let mut rec = Recognizer::new(params, &shared, request_id);
    let drop_after = match &fault {
        Some(Fault::DropMidUtterance { after_speech }) => Some(*after_speech),
        _ => None,
    };
    let mut malformed = matches!(fault, Some(Fault::MalformedMessage));
    let mut muted = false;
    let idle = shared.config.idle_timeout;
    let end = loop {
        let msg = match tokio::time::timeout(idle, socket.recv()).await {
            Err(_elapsed) => {
                let frame = CloseFrame {
                    code: 1011,
                    reason: NET0001_REASON.into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break SessionEnd::IdleTimeout;
            }
            Ok(None | Some(Err(_))) => break SessionEnd::ClientGone,
            Ok(Some(Ok(m))) => m,
        };
        if muted {
            // After the malformed message the emulator stays silent: what the client sends is not processed.
            if let Message::Close(_) = msg {
                break SessionEnd::Normal;
            }
            continue;
        }
        let mut closing = false;
        let out = match msg {
            Message::Binary(b) => {
                let per_second = f64::from(rate) * f64::from(channels) * 2.0;
                shared.with_listen(index, |r| {
                    r.audio_messages += 1;
                    r.audio += Duration::from_secs_f64(b.len() as f64 / per_second);
                });
                rec.push_audio(&shared, &b)
            }
            Message::Text(t) => {
                let kind = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
                match kind.as_deref() {
                    Some("KeepAlive") => {
                        shared.with_listen(index, |r| r.keep_alives += 1);
                        Vec::new()
                    }
                    Some("Finalize") => {
                        shared.with_listen(index, |r| r.finalizes += 1);
                        rec.finalize(&shared)
                    }
                    Some("CloseStream") => {
                        shared.with_listen(index, |r| r.close_stream = true);
                        closing = true;
                        rec.close(&shared)
                    }
                    _ => vec![json!({
                        "type": "Error",
                        "variant": "SchemaError",
                        "description": "Unrecognized or malformed message.",
                        "message": t.as_str(),
                    })],
                }
            }
            Message::Close(_) => break SessionEnd::Normal,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        for v in &out {
            let is_results = v.get("type").and_then(Value::as_str) == Some("Results");
            if malformed && is_results {
                malformed = false;
                muted = true;
                let text = v.to_string();
                let cut = text.len() / 2;
                let _ = socket
                    .send(Message::Text(text[..cut].to_owned().into()))
                    .await;
                break;
            }
            let nonempty_final = is_results
                && v["is_final"].as_bool() == Some(true)
                && v["channel"]["alternatives"][0]["transcript"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty());
            if !send_json(&mut socket, v).await {
                break;
            }
            if nonempty_final {
                shared.with_listen(index, |r| r.finals_sent += 1);
            }
        }
        if closing {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
            break SessionEnd::Normal;
        }
        if let Some(after) = drop_after
            && rec.current_speech() >= after
        {
            tracing::debug!(position = ?rec.position(), "deepgram emulator: dropping the listen socket");
            // Read (and discard) what the client already sent, so that closing the TCP socket sends a FIN after
            // the results already written rather than a reset that could discard them.
            let give_up = tokio::time::Instant::now() + DRAIN_MAX;
            while tokio::time::Instant::now() < give_up
                && let Ok(Some(Ok(_))) = tokio::time::timeout(DRAIN_QUIET, socket.recv()).await
            {
            }
            break SessionEnd::Dropped;
        }
    };
    shared.with_listen(index, |r| r.end = end);
    drop(socket);
}

/// `POST /v1/listen`: pre-recorded recognition of the whole body (raw with `encoding`, or WAV).
pub(crate) async fn rest_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = match shared.admit(Endpoint::ListenRest, &headers) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let mut params = match parse_params(&query) {
        Ok(p) => p,
        Err(msg) => return bad_request(&msg, &request_id),
    };
    shared.add_rest(RestRecord {
        path: "/v1/listen",
        query: query.clone(),
        content_type: headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body_len: body.len(),
    });
    let corrupt = "Bad Request: failed to process audio: corrupt or unsupported data";
    let pcm: Vec<u8> = match params.encoding.as_deref() {
        Some("linear16") if !body.is_empty() => body.to_vec(),
        Some(_) => return bad_request(corrupt, &request_id),
        None => match agents_audio::read_wav_from(&body[..]) {
            Ok(frame) => {
                params.rate = frame.sample_rate().hz();
                params.channels = frame.num_channels();
                frame.to_le_bytes()
            }
            Err(_) => return bad_request(corrupt, &request_id),
        },
    };
    let rate = params.rate;
    let channels = params.channels;
    params.interim = false;
    params.vad_events = false;
    params.endpointing_ms = None;
    params.utterance_end_ms = None;
    let mut rec = Recognizer::new(params, &shared, request_id.clone());
    // Speech span of the whole file: every voiced frame belongs to the one scripted transcript.
    rec.silence_final = u64::MAX;
    let _ = rec.push_audio(&shared, &pcm);
    let duration = secs(rec.pos, rate);
    let alt = match rec.utt.as_ref() {
        Some(_) => {
            let v = rec.finalize_utterance(&shared, true, false);
            v["channel"]["alternatives"][0].clone()
        }
        None => json!({"transcript": "", "confidence": 0.0, "words": []}),
    };
    let body = json!({
        "metadata": {
            "transaction_key": "deprecated",
            "request_id": request_id,
            "sha256": "0".repeat(64),
            "created": "2026-01-01T00:00:00.000Z",
            "duration": duration,
            "channels": channels,
            "models": ["00000000-0000-4000-8000-00000000e41a"],
        },
        "results": {"channels": [{"alternatives": [alt]}]},
    });
    with_request_id(axum::Json(body).into_response(), &request_id)
}
