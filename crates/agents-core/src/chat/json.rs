//! The stable JSON form of a [`ChatContext`] (see `docs/chat-context.md`).
//!
//! Export streams through [`Serialize`] with a fixed field order, so `serde_json::to_string` output is
//! deterministic. Import walks a [`serde_json::Value`] by hand so every malformed input yields a
//! [`ChatContextError`] with a JSON Pointer to the offending value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agents_audio::{AudioFrame, SampleRate};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{
    AgentHandoff, AudioContent, ChatContent, ChatContext, ChatContextError, ChatItem, ChatMessage,
    ChatRole, FunctionCall, FunctionCallOutput, ImageContent, ImageDetail, ImageSource,
    MessageMetrics,
};
use crate::ids::short_id;

/// What [`ChatContext::to_json`] and [`ChatContext::export`] leave out.
///
/// The default strips image and audio content (as LiveKit's `to_dict` does) and keeps everything else;
/// [`ExportOptions::full`] keeps everything and is what the [`Serialize`] impls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Remove image parts from message content. Default `true`.
    pub exclude_image: bool,
    /// Remove audio parts from message content. Default `true`.
    pub exclude_audio: bool,
    /// Remove function calls and their outputs. Default `false`.
    pub exclude_function_calls: bool,
    /// Omit every item's `created_at`. Default `false`.
    pub exclude_timestamps: bool,
    /// Omit message `metrics`. Default `false`.
    pub exclude_metrics: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            exclude_image: true,
            exclude_audio: true,
            exclude_function_calls: false,
            exclude_timestamps: false,
            exclude_metrics: false,
        }
    }
}

impl ExportOptions {
    /// Options that keep everything (images, audio, function items, timestamps and metrics).
    pub fn full() -> Self {
        Self {
            exclude_image: false,
            exclude_audio: false,
            exclude_function_calls: false,
            exclude_timestamps: false,
            exclude_metrics: false,
        }
    }

    /// Sets [`exclude_image`](Self::exclude_image).
    pub fn with_exclude_image(mut self, v: bool) -> Self {
        self.exclude_image = v;
        self
    }

    /// Sets [`exclude_audio`](Self::exclude_audio).
    pub fn with_exclude_audio(mut self, v: bool) -> Self {
        self.exclude_audio = v;
        self
    }

    /// Sets [`exclude_function_calls`](Self::exclude_function_calls).
    pub fn with_exclude_function_calls(mut self, v: bool) -> Self {
        self.exclude_function_calls = v;
        self
    }

    /// Sets [`exclude_timestamps`](Self::exclude_timestamps).
    pub fn with_exclude_timestamps(mut self, v: bool) -> Self {
        self.exclude_timestamps = v;
        self
    }

    /// Sets [`exclude_metrics`](Self::exclude_metrics).
    pub fn with_exclude_metrics(mut self, v: bool) -> Self {
        self.exclude_metrics = v;
        self
    }
}

/// A [`ChatContext`] seen through [`ExportOptions`]; serialize it with any serde serializer.
///
/// ```
/// use agents_core::chat::{ChatContext, ChatRole, ExportOptions};
/// let mut ctx = ChatContext::new();
/// ctx.add_message(ChatRole::User, "hi");
/// let text = serde_json::to_string(&ctx.export(&ExportOptions::default())).unwrap_or_default();
/// assert!(text.starts_with(r#"{"items":[{"type":"message","id":"item_"#));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ChatContextExport<'a> {
    ctx: &'a ChatContext,
    options: ExportOptions,
}

impl ChatContext {
    /// A serializable view of this context under `options` (fields in a fixed order).
    pub fn export(&self, options: &ExportOptions) -> ChatContextExport<'_> {
        ChatContextExport {
            ctx: self,
            options: *options,
        }
    }

    /// The JSON form under `options`: `{"items": [...]}`.
    pub fn to_json(&self, options: &ExportOptions) -> Value {
        // Serializing into a `Value` cannot fail here: every map key is a string and nothing raises a custom error.
        serde_json::to_value(self.export(options)).unwrap_or(Value::Null)
    }

    /// Parses the JSON form.
    ///
    /// Absent optional fields take their defaults: `id` a fresh id, `interrupted` false, `created_at` now,
    /// `name` of an output `""`, `inference_detail` auto. Unknown fields are ignored; unknown item or content
    /// types are errors. A `data:` image URL stays an [`ImageSource::Url`].
    ///
    /// # Errors
    /// A [`ChatContextError`] naming the path of the first malformed value.
    pub fn from_json(value: &Value) -> Result<ChatContext, ChatContextError> {
        let root = Obj::new(value, String::new())?;
        let items = root.req_array("items")?;
        let items = items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_item(item, format!("/items/{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChatContext::from_items(items))
    }
}

impl Serialize for ChatContextExport<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let options = self.options;
        let items = self
            .ctx
            .items()
            .iter()
            .filter(|i| !(options.exclude_function_calls && i.is_function_item()))
            .map(|item| ItemSer { item, options });
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("items", &Seq(items))?;
        map.end()
    }
}

/// The full form ([`ExportOptions::full`]).
impl Serialize for ChatContext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.export(&ExportOptions::full()).serialize(s)
    }
}

/// Parses the full form, like [`ChatContext::from_json`].
impl<'de> Deserialize<'de> for ChatContext {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        ChatContext::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// The full form of one item (as found in the `items` array).
impl Serialize for ChatItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ItemSer {
            item: self,
            options: ExportOptions::full(),
        }
        .serialize(s)
    }
}

/// Parses one item of the `items` array.
impl<'de> Deserialize<'de> for ChatItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        parse_item(&value, String::new()).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Export

/// Serializes an iterator as a sequence (the iterator is cloned, so the view stays `&self`).
struct Seq<I>(I);

impl<I> Serialize for Seq<I>
where
    I: Iterator + Clone,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

struct ItemSer<'a> {
    item: &'a ChatItem,
    options: ExportOptions,
}

impl Serialize for ItemSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let options = self.options;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", self.item.kind())?;
        map.serialize_entry("id", self.item.id())?;
        match self.item {
            ChatItem::Message(m) => {
                map.serialize_entry("role", m.role.as_str())?;
                let parts = m
                    .content
                    .iter()
                    .filter(move |c| match c {
                        ChatContent::Image(_) => !options.exclude_image,
                        ChatContent::Audio(_) => !options.exclude_audio,
                        ChatContent::Text(_) => true,
                    })
                    .map(PartSer);
                map.serialize_entry("content", &Seq(parts))?;
                map.serialize_entry("interrupted", &m.interrupted)?;
            }
            ChatItem::FunctionCall(c) => {
                map.serialize_entry("call_id", &c.call_id)?;
                map.serialize_entry("name", &c.name)?;
                map.serialize_entry("arguments", &c.arguments)?;
            }
            ChatItem::FunctionCallOutput(o) => {
                map.serialize_entry("call_id", &o.call_id)?;
                map.serialize_entry("name", &o.name)?;
                map.serialize_entry("output", &o.output)?;
                map.serialize_entry("is_error", &o.is_error)?;
            }
            ChatItem::AgentHandoff(h) => {
                if let Some(old) = &h.old_agent_id {
                    map.serialize_entry("old_agent_id", old)?;
                }
                map.serialize_entry("new_agent_id", &h.new_agent_id)?;
            }
        }
        if !options.exclude_timestamps {
            map.serialize_entry("created_at", &unix_secs(self.item.created_at()))?;
        }
        if let ChatItem::Message(ChatMessage {
            metrics: Some(metrics),
            ..
        }) = self.item
            && !options.exclude_metrics
        {
            map.serialize_entry("metrics", &MetricsSer(metrics))?;
        }
        map.end()
    }
}

struct PartSer<'a>(&'a ChatContent);

impl Serialize for PartSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ChatContent::Text(t) => s.serialize_str(t),
            ChatContent::Image(img) => {
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("type", "image_content")?;
                map.serialize_entry("id", &img.id)?;
                map.serialize_entry("image", &img.image.to_url())?;
                if let Some(w) = img.inference_width {
                    map.serialize_entry("inference_width", &w)?;
                }
                if let Some(h) = img.inference_height {
                    map.serialize_entry("inference_height", &h)?;
                }
                map.serialize_entry("inference_detail", &img.inference_detail)?;
                map.end()
            }
            ChatContent::Audio(audio) => {
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("type", "audio_content")?;
                if let Some(t) = &audio.transcript {
                    map.serialize_entry("transcript", t)?;
                }
                map.serialize_entry("frames", &Seq(audio.frames.iter().map(FrameSer)))?;
                map.end()
            }
        }
    }
}

struct FrameSer<'a>(&'a AudioFrame);

impl Serialize for FrameSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("sample_rate", &self.0.sample_rate().hz())?;
        map.serialize_entry("num_channels", &self.0.num_channels())?;
        map.serialize_entry("data", &BASE64.encode(self.0.to_le_bytes()))?;
        map.end()
    }
}

struct MetricsSer<'a>(&'a MessageMetrics);

impl Serialize for MetricsSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        let times = [
            ("started_speaking_at", m.started_speaking_at),
            ("stopped_speaking_at", m.stopped_speaking_at),
        ];
        for (key, t) in times {
            if let Some(t) = t {
                map.serialize_entry(key, &unix_secs(t))?;
            }
        }
        for (key, d) in metric_durations(m) {
            if let Some(d) = d {
                map.serialize_entry(key, &d.as_secs_f64())?;
            }
        }
        map.end()
    }
}

/// The duration metrics with their JSON keys, in output order.
fn metric_durations(m: &MessageMetrics) -> [(&'static str, Option<Duration>); 6] {
    [
        ("transcription_delay", m.transcription_delay),
        ("end_of_turn_delay", m.end_of_turn_delay),
        (
            "on_user_turn_completed_delay",
            m.on_user_turn_completed_delay,
        ),
        ("llm_ttft", m.llm_ttft),
        ("tts_ttfb", m.tts_ttfb),
        ("e2e_latency", m.e2e_latency),
    ]
}

/// Seconds since the Unix epoch (negative before it).
fn unix_secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Import

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A JSON object being read, with its path for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, path: String) -> Result<Self, ChatContextError> {
        match value {
            Value::Object(map) => Ok(Self { map, path }),
            other => Err(ChatContextError::WrongType {
                path,
                expected: "object",
                found: json_type(other),
            }),
        }
    }

    fn field_path(&self, field: &str) -> String {
        format!("{}/{}", self.path, field)
    }

    fn wrong_type(&self, field: &str, expected: &'static str, v: &Value) -> ChatContextError {
        ChatContextError::WrongType {
            path: self.field_path(field),
            expected,
            found: json_type(v),
        }
    }

    fn invalid(&self, field: &str, reason: impl Into<String>) -> ChatContextError {
        ChatContextError::InvalidValue {
            path: self.field_path(field),
            reason: reason.into(),
        }
    }

    /// The field's value; `null` counts as absent.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn req(&self, field: &'static str) -> Result<&'a Value, ChatContextError> {
        self.get(field)
            .ok_or_else(|| ChatContextError::MissingField {
                path: self.path.clone(),
                field,
            })
    }

    fn opt_str(&self, field: &'static str) -> Result<Option<&'a str>, ChatContextError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(field, "string", other)),
        }
    }

    fn req_str(&self, field: &'static str) -> Result<&'a str, ChatContextError> {
        let v = self.req(field)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(field, "string", v))
    }

    fn opt_bool(&self, field: &'static str) -> Result<Option<bool>, ChatContextError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(field, "boolean", other)),
        }
    }

    fn req_bool(&self, field: &'static str) -> Result<bool, ChatContextError> {
        let v = self.req(field)?;
        v.as_bool()
            .ok_or_else(|| self.wrong_type(field, "boolean", v))
    }

    fn req_array(&self, field: &'static str) -> Result<&'a Vec<Value>, ChatContextError> {
        let v = self.req(field)?;
        v.as_array()
            .ok_or_else(|| self.wrong_type(field, "array", v))
    }

    fn opt_f64(&self, field: &str) -> Result<Option<f64>, ChatContextError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                Some(_) => Err(self.invalid(field, "not a finite number")),
                None => Err(self.wrong_type(field, "number", v)),
            },
        }
    }

    /// An unsigned integer no larger than `max`.
    fn opt_uint(&self, field: &'static str, max: u64) -> Result<Option<u64>, ChatContextError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                Some(n) => Err(self.invalid(field, format!("{n} is larger than {max}"))),
                None => Err(self.wrong_type(field, "unsigned integer", v)),
            },
        }
    }

    fn opt_u32(&self, field: &'static str) -> Result<Option<u32>, ChatContextError> {
        Ok(self
            .opt_uint(field, u64::from(u32::MAX))?
            .and_then(|n| u32::try_from(n).ok()))
    }

    fn req_uint(&self, field: &'static str, max: u64) -> Result<u64, ChatContextError> {
        self.req(field)?;
        self.opt_uint(field, max)?
            .ok_or_else(|| ChatContextError::MissingField {
                path: self.path.clone(),
                field,
            })
    }

    fn opt_time(&self, field: &str) -> Result<Option<SystemTime>, ChatContextError> {
        let Some(secs) = self.opt_f64(field)? else {
            return Ok(None);
        };
        let time = if secs >= 0.0 {
            Duration::try_from_secs_f64(secs)
                .ok()
                .and_then(|d| UNIX_EPOCH.checked_add(d))
        } else {
            Duration::try_from_secs_f64(-secs)
                .ok()
                .and_then(|d| UNIX_EPOCH.checked_sub(d))
        };
        time.map(Some)
            .ok_or_else(|| self.invalid(field, format!("timestamp {secs} is out of range")))
    }

    fn opt_duration(&self, field: &str) -> Result<Option<Duration>, ChatContextError> {
        let Some(secs) = self.opt_f64(field)? else {
            return Ok(None);
        };
        Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|_| self.invalid(field, format!("{secs} is not a valid duration in seconds")))
    }

    fn id(&self, prefix: &str) -> Result<String, ChatContextError> {
        Ok(self
            .opt_str("id")?
            .map_or_else(|| short_id(prefix), str::to_owned))
    }

    fn created_at(&self) -> Result<SystemTime, ChatContextError> {
        Ok(self.opt_time("created_at")?.unwrap_or_else(SystemTime::now))
    }
}

fn parse_item(value: &Value, path: String) -> Result<ChatItem, ChatContextError> {
    let obj = Obj::new(value, path)?;
    let item = match obj.req_str("type")? {
        "message" => ChatItem::Message(parse_message(&obj)?),
        "function_call" => {
            let mut c = FunctionCall::new(
                obj.req_str("call_id")?,
                obj.req_str("name")?,
                obj.req_str("arguments")?,
            );
            c.id = obj.id("item_")?;
            c.created_at = obj.created_at()?;
            ChatItem::FunctionCall(c)
        }
        "function_call_output" => {
            let mut o = FunctionCallOutput::new(
                obj.req_str("call_id")?,
                obj.opt_str("name")?.unwrap_or_default(),
                obj.req_str("output")?,
                obj.req_bool("is_error")?,
            );
            o.id = obj.id("item_")?;
            o.created_at = obj.created_at()?;
            ChatItem::FunctionCallOutput(o)
        }
        "agent_handoff" => {
            let mut h = AgentHandoff::new(
                obj.opt_str("old_agent_id")?.map(str::to_owned),
                obj.req_str("new_agent_id")?,
            );
            h.id = obj.id("item_")?;
            h.created_at = obj.created_at()?;
            ChatItem::AgentHandoff(h)
        }
        other => {
            return Err(ChatContextError::UnknownType {
                path: obj.path,
                type_name: other.to_owned(),
            });
        }
    };
    Ok(item)
}

fn parse_message(obj: &Obj<'_>) -> Result<ChatMessage, ChatContextError> {
    let role = match obj.req_str("role")? {
        "system" => ChatRole::System,
        "developer" => ChatRole::Developer,
        "user" => ChatRole::User,
        "assistant" => ChatRole::Assistant,
        other => return Err(obj.invalid("role", format!("unknown role `{other}`"))),
    };
    let content = obj
        .req_array("content")?
        .iter()
        .enumerate()
        .map(|(i, part)| parse_part(part, format!("{}/{i}", obj.field_path("content"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut msg = ChatMessage::with_content(role, content);
    msg.id = obj.id("item_")?;
    msg.interrupted = obj.opt_bool("interrupted")?.unwrap_or(false);
    msg.created_at = obj.created_at()?;
    msg.metrics = match obj.get("metrics") {
        None => None,
        Some(v) => Some(parse_metrics(&Obj::new(v, obj.field_path("metrics"))?)?),
    };
    Ok(msg)
}

fn parse_part(value: &Value, path: String) -> Result<ChatContent, ChatContextError> {
    if let Value::String(text) = value {
        return Ok(ChatContent::Text(text.clone()));
    }
    if !value.is_object() {
        return Err(ChatContextError::WrongType {
            path,
            expected: "string or object",
            found: json_type(value),
        });
    }
    let obj = Obj::new(value, path)?;
    match obj.req_str("type")? {
        "image_content" => {
            let mut img = ImageContent::new(ImageSource::Url(obj.req_str("image")?.to_owned()));
            img.id = obj.id("img_")?;
            img.inference_width = obj.opt_u32("inference_width")?;
            img.inference_height = obj.opt_u32("inference_height")?;
            img.inference_detail = match obj.opt_str("inference_detail")? {
                None | Some("auto") => ImageDetail::Auto,
                Some("low") => ImageDetail::Low,
                Some("high") => ImageDetail::High,
                Some(other) => {
                    return Err(obj.invalid(
                        "inference_detail",
                        format!("unknown detail `{other}` (expected auto, low or high)"),
                    ));
                }
            };
            Ok(ChatContent::Image(img))
        }
        "audio_content" => {
            let frames_path = obj.field_path("frames");
            let frames = obj
                .req_array("frames")?
                .iter()
                .enumerate()
                .map(|(i, f)| parse_frame(f, format!("{frames_path}/{i}")))
                .collect::<Result<Vec<_>, _>>()?;
            let transcript = obj.opt_str("transcript")?.map(str::to_owned);
            Ok(ChatContent::Audio(AudioContent::new(frames, transcript)))
        }
        other => Err(ChatContextError::UnknownType {
            path: obj.path,
            type_name: other.to_owned(),
        }),
    }
}

fn parse_frame(value: &Value, path: String) -> Result<AudioFrame, ChatContextError> {
    let obj = Obj::new(value, path)?;
    let hz = obj.req_uint("sample_rate", u64::from(u32::MAX))?;
    let channels = obj.req_uint("num_channels", u64::from(u16::MAX))?;
    let data = obj.req_str("data")?;
    let bytes = BASE64
        .decode(data)
        .map_err(|e| obj.invalid("data", format!("bad base64: {e}")))?;
    let audio_err = |source| ChatContextError::InvalidAudio {
        path: obj.path.clone(),
        source,
    };
    // Both conversions are in range: `req_uint` checked the bounds.
    let rate = SampleRate::new(u32::try_from(hz).unwrap_or(0)).map_err(audio_err)?;
    let channels = u16::try_from(channels).unwrap_or(0);
    AudioFrame::from_le_bytes(&bytes, rate, channels).map_err(audio_err)
}

fn parse_metrics(obj: &Obj<'_>) -> Result<MessageMetrics, ChatContextError> {
    let mut m = MessageMetrics {
        started_speaking_at: obj.opt_time("started_speaking_at")?,
        stopped_speaking_at: obj.opt_time("stopped_speaking_at")?,
        transcription_delay: obj.opt_duration("transcription_delay")?,
        end_of_turn_delay: obj.opt_duration("end_of_turn_delay")?,
        on_user_turn_completed_delay: obj.opt_duration("on_user_turn_completed_delay")?,
        llm_ttft: obj.opt_duration("llm_ttft")?,
        tts_ttfb: obj.opt_duration("tts_ttfb")?,
        e2e_latency: obj.opt_duration("e2e_latency")?,
    };
    // LiveKit's names for the same measurements.
    if m.llm_ttft.is_none() {
        m.llm_ttft = obj.opt_duration("llm_node_ttft")?;
    }
    if m.tts_ttfb.is_none() {
        m.tts_ttfb = obj.opt_duration("tts_node_ttfb")?;
    }
    Ok(m)
}
