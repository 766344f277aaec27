//! `POST /v1/chat/completions`: validation as the real service does it, then the scripted reply.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::http::{self, Piece};
use super::{ChatScript, ChatStep, Fault, OpenAiEmulator, RecordedBody};

/// Top-level fields of `CreateChatCompletionRequest` (OpenAI's OpenAPI spec).
const KNOWN_FIELDS: &[&str] = &[
    "messages",
    "model",
    "modalities",
    "verbosity",
    "reasoning_effort",
    "max_completion_tokens",
    "frequency_penalty",
    "presence_penalty",
    "web_search_options",
    "top_logprobs",
    "response_format",
    "audio",
    "store",
    "stream",
    "stop",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "prediction",
    "seed",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "function_call",
    "functions",
    "metadata",
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
];

const ROLES: &[&str] = &[
    "developer",
    "system",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Whether the model is a reasoning model, which rejects `temperature`.
fn is_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| model.starts_with(p))
        && !model.starts_with("gpt-5-chat")
}

pub(super) async fn handle(
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
    let Ok(request) = parsed else {
        return http::invalid(
            rid,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your \
             HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
        );
    };
    if let Err((message, param)) = validate(&request, incoming.azure, emu.allow_unknown_fields()) {
        return http::invalid(rid, &message, param.as_deref());
    }
    let script = emu.next_chat();
    if let Some(response) = http::before_response(rid, script.fault.as_ref()).await {
        return response;
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("azure-deployment")
        .to_owned();
    let prompt_tokens = prompt_tokens(&request);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let events = sse_events(&script, rid, &model, include_usage, prompt_tokens);
        http::streamed(rid, "text/event-stream", with_faults(&script, events))
    } else {
        http::json_response(rid, whole_completion(&script, rid, &model, prompt_tokens))
    }
}

type Invalid = (String, Option<String>);

fn bad(message: impl Into<String>, param: impl Into<String>) -> Invalid {
    (message.into(), Some(param.into()))
}

/// Validates a request the way the real service does; `Err` is the message and `param` of the 400.
fn validate(req: &Value, azure: bool, allow_unknown: bool) -> Result<(), Invalid> {
    let Some(obj) = req.as_object() else {
        return Err((
            "Invalid type for request body: expected an object.".into(),
            None,
        ));
    };
    if !allow_unknown
        && let Some(unknown) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str()))
    {
        return Err((
            format!("Unrecognized request argument supplied: {unknown}"),
            None,
        ));
    }
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        None if azure => "",
        Some(_) => return Err(bad("Invalid type for 'model': expected a string.", "model")),
        None => return Err(bad("you must provide a model parameter", "model")),
    };
    let Some(messages) = obj.get("messages") else {
        return Err(bad("Missing required parameter: 'messages'.", "messages"));
    };
    let Some(messages) = messages.as_array() else {
        return Err(bad(
            "Invalid type for 'messages': expected an array.",
            "messages",
        ));
    };
    if messages.is_empty() {
        return Err(bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
        ));
    }
    validate_messages(messages)?;
    let stream = obj.get("stream").and_then(Value::as_bool) == Some(true);
    if obj.contains_key("stream_options") && !stream {
        return Err(bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ));
    }
    let has_tools = match obj.get("tools") {
        None => false,
        Some(Value::Array(tools)) => {
            validate_tools(tools)?;
            true
        }
        Some(_) => return Err(bad("Invalid type for 'tools': expected an array.", "tools")),
    };
    if obj.contains_key("tool_choice") && !has_tools {
        return Err(bad(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            "tool_choice",
        ));
    }
    if obj.contains_key("parallel_tool_calls") && !has_tools {
        return Err(bad(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.",
            "parallel_tool_calls",
        ));
    }
    if let Some(choice) = obj.get("tool_choice") {
        validate_tool_choice(choice, obj.get("tools"))?;
    }
    if let Some(t) = obj.get("temperature") {
        if is_reasoning_model(model) {
            return Err(bad(
                "Unsupported parameter: 'temperature' is not supported with this model.",
                "temperature",
            ));
        }
        match t.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => {}
            _ => {
                return Err(bad(
                    "Invalid 'temperature': expected a number between 0 and 2.",
                    "temperature",
                ));
            }
        }
    }
    if obj.contains_key("max_tokens") && is_reasoning_model(model) {
        return Err(bad(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "max_tokens",
        ));
    }
    if let Some(effort) = obj.get("reasoning_effort") {
        let ok = matches!(
            effort.as_str(),
            Some("none" | "minimal" | "low" | "medium" | "high" | "xhigh")
        );
        if !ok {
            return Err(bad(
                "Invalid value for 'reasoning_effort'.",
                "reasoning_effort",
            ));
        }
    }
    for key in ["top_p"] {
        if let Some(v) = obj.get(key)
            && !v.as_f64().is_some_and(|v| (0.0..=1.0).contains(&v))
        {
            return Err(bad(
                format!("Invalid '{key}': expected a number between 0 and 1."),
                key,
            ));
        }
    }
    for key in ["max_completion_tokens", "max_tokens", "seed"] {
        if let Some(v) = obj.get(key)
            && !(v.is_i64() || v.is_u64())
        {
            return Err(bad(
                format!("Invalid type for '{key}': expected an integer."),
                key,
            ));
        }
    }
    Ok(())
}

fn validate_content(content: &Value, param: &str, allow_images: bool) -> Result<(), Invalid> {
    match content {
        Value::String(_) => Ok(()),
        Value::Array(parts) => {
            if parts.is_empty() {
                return Err(bad(
                    format!(
                        "Invalid '{param}': empty array. Expected an array with minimum length 1."
                    ),
                    param,
                ));
            }
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{param}[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") if part.get("text").is_some_and(Value::is_string) => {}
                    Some("image_url") if allow_images => {
                        let url = part.pointer("/image_url/url").and_then(Value::as_str);
                        let ok = url.is_some_and(|u| {
                            u.starts_with("https://")
                                || u.starts_with("http://")
                                || (u.starts_with("data:image/") && u.contains(";base64,"))
                        });
                        if !ok {
                            return Err(bad(
                                format!(
                                    "Invalid '{p}.image_url.url': expected a URL or a base64 data URL."
                                ),
                                format!("{p}.image_url.url"),
                            ));
                        }
                        if let Some(d) = part.pointer("/image_url/detail")
                            && !matches!(d.as_str(), Some("auto" | "low" | "high"))
                        {
                            return Err(bad(
                                format!("Invalid value for '{p}.image_url.detail'."),
                                format!("{p}.image_url.detail"),
                            ));
                        }
                    }
                    _ => {
                        return Err(bad(format!("Invalid content part at '{p}'."), p));
                    }
                }
            }
            Ok(())
        }
        _ => Err(bad(
            format!("Invalid type for '{param}': expected one of a string or array of objects."),
            param,
        )),
    }
}

fn validate_messages(messages: &[Value]) -> Result<(), Invalid> {
    // Tool call ids the latest assistant message asked for and no tool message answered yet.
    let mut pending: Vec<String> = Vec::new();
    let mut in_tool_block = false;
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages.[{i}]");
        let Some(obj) = m.as_object() else {
            return Err(bad(
                format!("Invalid type for 'messages[{i}]': expected an object."),
                param,
            ));
        };
        let role = match obj.get("role").and_then(Value::as_str) {
            Some(r) if ROLES.contains(&r) => r,
            Some(r) => {
                return Err(bad(
                    format!(
                        "Invalid value: '{r}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                    ),
                    format!("messages[{i}].role"),
                ));
            }
            None => {
                return Err(bad(
                    format!("Missing required parameter: 'messages[{i}].role'."),
                    format!("messages[{i}].role"),
                ));
            }
        };
        let allowed: &[&str] = match role {
            "tool" => &["role", "content", "tool_call_id", "name"],
            "assistant" => &[
                "role",
                "content",
                "tool_calls",
                "name",
                "refusal",
                "audio",
                "function_call",
            ],
            _ => &["role", "content", "name"],
        };
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(
                format!(
                    "Additional properties are not allowed ('{k}' was unexpected) - 'messages.{i}'"
                ),
                format!("messages.[{i}]"),
            ));
        }
        if role != "tool" && !pending.is_empty() {
            return Err(bad(
                format!(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each \
                     'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                    pending.join(", ")
                ),
                format!("messages.[{i}].role"),
            ));
        }
        match role {
            "tool" => {
                let Some(call_id) = obj.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(bad(
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                        format!("messages[{i}].tool_call_id"),
                    ));
                };
                let Some(pos) = pending
                    .iter()
                    .position(|p| p == call_id)
                    .filter(|_| in_tool_block)
                else {
                    return Err(bad(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message \
                         with 'tool_calls'.",
                        format!("messages.[{i}].role"),
                    ));
                };
                pending.remove(pos);
                match obj.get("content") {
                    Some(c) => validate_content(c, &format!("messages[{i}].content"), false)?,
                    None => {
                        return Err(bad(
                            format!("Missing required parameter: 'messages[{i}].content'."),
                            format!("messages[{i}].content"),
                        ));
                    }
                }
            }
            "assistant" => {
                in_tool_block = false;
                let content = obj.get("content").filter(|c| !c.is_null());
                if let Some(c) = content {
                    validate_content(c, &format!("messages[{i}].content"), false)?;
                }
                match obj.get("tool_calls") {
                    None => {
                        if content.is_none() {
                            return Err(bad(
                                format!(
                                    "Invalid value for 'content': expected a string, got null. ('messages[{i}]')"
                                ),
                                format!("messages.[{i}].content"),
                            ));
                        }
                    }
                    Some(Value::Array(calls)) => {
                        if calls.is_empty() {
                            return Err((
                                format!(
                                    "Invalid 'messages[{i}].tool_calls': empty array. Expected an array with minimum length 1, but got an empty array instead."
                                ),
                                Some(format!("messages[{i}].tool_calls")),
                            ));
                        }
                        let mut ids = HashSet::new();
                        for (j, c) in calls.iter().enumerate() {
                            let p = format!("messages[{i}].tool_calls[{j}]");
                            let id = c.get("id").and_then(Value::as_str).unwrap_or("");
                            let ok = !id.is_empty()
                                && c.get("type").and_then(Value::as_str) == Some("function")
                                && c.pointer("/function/name")
                                    .and_then(Value::as_str)
                                    .is_some()
                                && c.pointer("/function/arguments")
                                    .is_some_and(Value::is_string);
                            if !ok {
                                return Err(bad(
                                    format!(
                                        "Invalid '{p}': expected {{id, type: 'function', function: {{name, arguments: string}}}}."
                                    ),
                                    p,
                                ));
                            }
                            if !ids.insert(id.to_owned()) {
                                return Err(bad(
                                    format!("Duplicate tool call id '{id}' in '{p}'."),
                                    p,
                                ));
                            }
                            pending.push(id.to_owned());
                        }
                        in_tool_block = true;
                    }
                    Some(_) => {
                        return Err(bad(
                            format!(
                                "Invalid type for 'messages[{i}].tool_calls': expected an array."
                            ),
                            format!("messages[{i}].tool_calls"),
                        ));
                    }
                }
            }
            _ => {
                in_tool_block = false;
                match obj.get("content") {
                    Some(c) => {
                        validate_content(c, &format!("messages[{i}].content"), role == "user")?;
                    }
                    None => {
                        return Err(bad(
                            format!("Missing required parameter: 'messages[{i}].content'."),
                            format!("messages[{i}].content"),
                        ));
                    }
                }
            }
        }
    }
    if !pending.is_empty() {
        return Err(bad(
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each \
                 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                pending.join(", ")
            ),
            "messages",
        ));
    }
    Ok(())
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_tools(tools: &[Value]) -> Result<(), Invalid> {
    if tools.is_empty() {
        return Err(bad(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "tools",
        ));
    }
    if tools.len() > 128 {
        return Err(bad(
            format!(
                "Invalid 'tools': array too long. Expected an array with maximum length 128, but got an array with length {} instead.",
                tools.len()
            ),
            "tools",
        ));
    }
    let mut names = HashSet::new();
    for (i, t) in tools.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(
                format!("Invalid value for 'tools[{i}].type': expected 'function'."),
                format!("tools[{i}].type"),
            ));
        }
        let Some(f) = t.get("function").and_then(Value::as_object) else {
            return Err(bad(
                format!("Missing required parameter: 'tools[{i}].function'."),
                format!("tools[{i}].function"),
            ));
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_tool_name(name) {
            return Err(bad(
                format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                ),
                format!("tools[{i}].function.name"),
            ));
        }
        if !names.insert(name.to_owned()) {
            return Err(bad(
                format!("Duplicate function name '{name}' in 'tools'."),
                "tools",
            ));
        }
        if let Some(params) = f.get("parameters") {
            let is_object_schema = params.get("type").and_then(Value::as_str) == Some("object");
            if !is_object_schema {
                return Err(bad(
                    format!(
                        "Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{}\"'.",
                        params.get("type").and_then(Value::as_str).unwrap_or("None")
                    ),
                    format!("tools[{i}].function.parameters"),
                ));
            }
            if f.get("strict").and_then(Value::as_bool) == Some(true) {
                check_strict(name, params, &format!("tools[{i}].function.parameters"))?;
            }
        }
    }
    Ok(())
}

/// Strict mode: every object has `additionalProperties: false` and lists all its properties as required.
fn check_strict(name: &str, schema: &Value, param: &str) -> Result<(), Invalid> {
    if let Some(obj) = schema.as_object() {
        if obj.get("type").and_then(Value::as_str) == Some("object") {
            if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
                return Err(bad(
                    format!(
                        "Invalid schema for function '{name}': In context=(), 'additionalProperties' is required to be supplied and to be false."
                    ),
                    param,
                ));
            }
            let props: Vec<&String> = obj
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().collect())
                .unwrap_or_default();
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(missing) = props.iter().find(|p| !required.contains(&p.as_str())) {
                return Err(bad(
                    format!(
                        "Invalid schema for function '{name}': In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing '{missing}'."
                    ),
                    param,
                ));
            }
        }
        for v in obj.values() {
            check_strict(name, v, param)?;
        }
    } else if let Some(arr) = schema.as_array() {
        for v in arr {
            check_strict(name, v, param)?;
        }
    }
    Ok(())
}

fn validate_tool_choice(choice: &Value, tools: Option<&Value>) -> Result<(), Invalid> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let known = tools.and_then(Value::as_array).is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
            });
            if known {
                Ok(())
            } else {
                Err(bad(
                    format!(
                        "Invalid value for 'tool_choice': function '{name}' is not one of the tools."
                    ),
                    "tool_choice",
                ))
            }
        }
        _ => Err(bad(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a named function.",
            "tool_choice",
        )),
    }
}

/// A rough, deterministic token count of the prompt: words of every string in the messages.
fn prompt_tokens(req: &Value) -> u32 {
    fn words(v: &Value) -> usize {
        match v {
            Value::String(s) => s.split_whitespace().count(),
            Value::Array(a) => a.iter().map(words).sum(),
            Value::Object(o) => o.values().map(words).sum(),
            _ => 0,
        }
    }
    let n = req.get("messages").map_or(0, words);
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

fn finish_reason(script: &ChatScript) -> String {
    script.finish_reason.clone().unwrap_or_else(|| {
        if script
            .steps
            .iter()
            .any(|s| matches!(s, ChatStep::ToolCall(_)))
        {
            "tool_calls".to_owned()
        } else {
            "stop".to_owned()
        }
    })
}

fn completion_tokens(script: &ChatScript) -> u32 {
    let n: usize = script
        .steps
        .iter()
        .map(|s| match s {
            ChatStep::Text(_) => 1,
            ChatStep::ToolCall(c) => 1 + c.fragments.len(),
        })
        .sum();
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

fn usage_json(script: &ChatScript, prompt_tokens: u32) -> Value {
    let (p, c) = script
        .usage
        .unwrap_or_else(|| (prompt_tokens, completion_tokens(script)));
    json!({
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p.saturating_add(c),
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    })
}

fn call_id(index: usize, explicit: Option<&String>) -> String {
    explicit
        .cloned()
        .unwrap_or_else(|| format!("call_emu{index}"))
}

/// The `data:` payloads of a streamed reply, `[DONE]` included.
fn sse_events(
    script: &ChatScript,
    rid: &str,
    model: &str,
    include_usage: bool,
    prompt_tokens: u32,
) -> Vec<String> {
    let id = format!("chatcmpl-{}", rid.trim_start_matches("req_"));
    let envelope = |choices: Value, usage: Option<Value>| {
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("object".into(), json!("chat.completion.chunk"));
        m.insert("created".into(), json!(1_700_000_000));
        m.insert("model".into(), json!(model));
        m.insert("system_fingerprint".into(), json!("fp_emulator"));
        m.insert("service_tier".into(), json!("default"));
        m.insert("choices".into(), choices);
        if include_usage {
            m.insert("usage".into(), usage.unwrap_or(Value::Null));
        }
        Value::Object(m).to_string()
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut out = Vec::new();
    let first_is_tool = matches!(script.steps.first(), Some(ChatStep::ToolCall(_)));
    if !first_is_tool {
        out.push(envelope(
            choice(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ),
            None,
        ));
    }
    let mut tool_index = 0usize;
    for (n, step) in script.steps.iter().enumerate() {
        match step {
            ChatStep::Text(t) => {
                out.push(envelope(choice(json!({"content": t}), Value::Null), None));
            }
            ChatStep::ToolCall(call) => {
                let index = if script.reuse_index_zero {
                    0
                } else {
                    tool_index
                };
                let id = call_id(tool_index, call.id.as_ref());
                let mut first = json!({"tool_calls": [{
                    "index": index, "id": id, "type": "function",
                    "function": {"name": call.name, "arguments": ""}
                }]});
                if n == 0 {
                    first["role"] = json!("assistant");
                    first["content"] = Value::Null;
                }
                out.push(envelope(choice(first, Value::Null), None));
                for frag in &call.fragments {
                    let mut delta = json!({"index": index, "function": {"arguments": frag}});
                    if script.repeat_ids || script.reuse_index_zero {
                        delta["id"] = json!(id);
                    }
                    out.push(envelope(
                        choice(json!({"tool_calls": [delta]}), Value::Null),
                        None,
                    ));
                }
                tool_index += 1;
            }
        }
    }
    out.push(envelope(
        choice(json!({}), json!(finish_reason(script))),
        None,
    ));
    if include_usage {
        out.push(envelope(json!([]), Some(usage_json(script, prompt_tokens))));
    }
    out.push("[DONE]".to_owned());
    out
}

/// Turns the payloads into body pieces, applying the script's mid-stream fault.
fn with_faults(script: &ChatScript, events: Vec<String>) -> Vec<Piece> {
    let delay = script.chunk_delay;
    let mut pieces = Vec::with_capacity(events.len() + 1);
    for (i, e) in events.into_iter().enumerate() {
        match &script.fault {
            Some(Fault::DropMidStream { after }) if i == *after => {
                pieces.push(Piece::Drop);
                return pieces;
            }
            Some(Fault::MalformedSseLine { after }) if i == *after => {
                pieces.push(Piece::Data(
                    delay,
                    Bytes::from_static(b"this line is not server-sent events\n\n"),
                ));
            }
            Some(Fault::StreamError { after }) if i == *after => {
                let error = json!({"error": {"message": "The server had an error while processing your request. Sorry about that!",
                    "type": "server_error", "param": null, "code": null}});
                pieces.push(Piece::Data(
                    delay,
                    Bytes::from(format!("data: {error}\n\n")),
                ));
                return pieces;
            }
            Some(Fault::InvalidJsonEvent { after }) if i == *after => {
                pieces.push(Piece::Data(
                    delay,
                    Bytes::from_static(b"data: {\"choices\": [{\"delta\": \n\n"),
                ));
            }
            _ => {}
        }
        pieces.push(Piece::Data(delay, Bytes::from(format!("data: {e}\n\n"))));
    }
    if let Some(Fault::DropMidStream { .. }) = &script.fault {
        pieces.push(Piece::Drop);
    }
    pieces
}

/// A whole (non-streamed) `chat.completion`.
fn whole_completion(script: &ChatScript, rid: &str, model: &str, prompt_tokens: u32) -> Value {
    let text: String = script
        .steps
        .iter()
        .filter_map(|s| match s {
            ChatStep::Text(t) => Some(t.as_str()),
            ChatStep::ToolCall(_) => None,
        })
        .collect();
    let calls: Vec<Value> = script
        .steps
        .iter()
        .filter_map(|s| match s {
            ChatStep::ToolCall(c) => Some(c),
            ChatStep::Text(_) => None,
        })
        .enumerate()
        .map(|(i, c)| {
            json!({"id": call_id(i, c.id.as_ref()), "type": "function",
                "function": {"name": c.name, "arguments": c.fragments.concat()}})
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) },
        "refusal": null, "annotations": []});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": format!("chatcmpl-{}", rid.trim_start_matches("req_")),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_emulator",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(script)}],
        "usage": usage_json(script, prompt_tokens),
    })
}
