//! JSON Schema for tool parameters: generation from Rust types, and the OpenAI function formats (strict mode
//! included), shared by every OpenAI-compatible plugin.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::{ToolDefinition, ToolDefinitionError};

/// The parameters schema of `T`: draft 2020-12, subschemas inlined where possible, `$schema` removed. The type's
/// doc comment becomes the schema's `description`, each field's doc comment its property's `description`.
pub fn parameters_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// Checks that `schema` can describe tool parameters: a JSON object schema (`"type": "object"`).
///
/// # Errors
/// [`ToolDefinitionError::ParametersNotObject`].
pub(crate) fn check_parameters(tool: &str, schema: &Value) -> Result<(), ToolDefinitionError> {
    match schema.get("type") {
        Some(Value::String(t)) if t == "object" => Ok(()),
        _ => Err(ToolDefinitionError::ParametersNotObject {
            name: tool.to_owned(),
        }),
    }
}

/// Which OpenAI tool shape to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenAiToolFormat {
    /// Chat Completions: `{"type":"function","function":{"name","description","parameters","strict"?}}`.
    ChatCompletions,
    /// Realtime and Responses APIs: `{"type":"function","name","description","parameters","strict"?}`.
    Flat,
}

/// A tool in OpenAI's function format. With `strict`, the parameters are rewritten for Structured Outputs (see
/// [`to_strict_json_schema`]) and `"strict": true` is set.
///
/// # Errors
/// [`ToolDefinitionError::StrictSchema`] when the schema cannot be made strict.
pub fn to_openai_tool(
    tool: &ToolDefinition,
    format: OpenAiToolFormat,
    strict: bool,
) -> Result<Value, ToolDefinitionError> {
    let parameters = if strict {
        to_strict_json_schema(&tool.parameters).map_err(|reason| {
            ToolDefinitionError::StrictSchema {
                name: tool.name.clone(),
                reason,
            }
        })?
    } else {
        tool.parameters.clone()
    };
    let mut function = Map::new();
    function.insert("name".into(), Value::String(tool.name.clone()));
    if !tool.description.is_empty() {
        function.insert(
            "description".into(),
            Value::String(tool.description.clone()),
        );
    }
    function.insert("parameters".into(), parameters);
    if strict {
        function.insert("strict".into(), Value::Bool(true));
    }
    Ok(match format {
        OpenAiToolFormat::ChatCompletions => json!({"type": "function", "function": function}),
        OpenAiToolFormat::Flat => {
            let mut flat = Map::new();
            flat.insert("type".into(), Value::String("function".into()));
            flat.extend(function);
            Value::Object(flat)
        }
    })
}

/// String formats OpenAI Structured Outputs accept; other `format`s are dropped in strict mode.
const STRICT_STRING_FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// Rewrites a JSON Schema for OpenAI Structured Outputs (strict mode):
/// every object gets `additionalProperties: false` and lists all its properties as `required` (optional Rust
/// fields are already nullable, so the model passes `null`); `$ref`s with sibling keywords and single-element
/// `allOf`s are inlined; `null` defaults, root `title`/`$schema`, and non-string or unsupported `format`s are
/// removed. Applied recursively to `properties`, `items`, `anyOf`, `allOf` and `$defs`.
///
/// # Errors
/// A reason when the schema cannot be strict (not an object at the root, a `$ref` that does not resolve,
/// an object that allows arbitrary extra keys through a schema-valued `additionalProperties`).
pub fn to_strict_json_schema(schema: &Value) -> Result<Value, String> {
    let root = schema.clone();
    let mut out = schema.clone();
    if let Value::Object(m) = &mut out {
        m.remove("$schema");
        m.remove("title");
    }
    ensure_strict(&mut out, &root, 0)?;
    match out.get("type") {
        Some(Value::String(t)) if t == "object" => Ok(out),
        _ => Err("the root of a strict schema must be an object".to_owned()),
    }
}

const MAX_DEPTH: usize = 64;

fn ensure_strict(schema: &mut Value, root: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("schema nesting is too deep (recursive $ref?)".to_owned());
    }
    let Value::Object(map) = schema else {
        // `true`/`false` schemas and other values pass through.
        return Ok(());
    };

    // Inline a $ref that has siblings (OpenAI rejects them).
    if let Some(Value::String(reference)) = map.get("$ref").cloned() {
        if map.len() > 1 {
            let target = resolve_ref(root, &reference)?;
            map.remove("$ref");
            if let Value::Object(t) = target {
                for (k, v) in t {
                    map.entry(k).or_insert(v);
                }
            }
            return ensure_strict(schema, root, depth + 1);
        }
        return Ok(());
    }

    for defs_key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = map.get_mut(defs_key) {
            for def in defs.values_mut() {
                ensure_strict(def, root, depth + 1)?;
            }
        }
    }

    let is_object = match map.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => map.contains_key("properties"),
    };
    if is_object {
        if let Some(ap) = map.get("additionalProperties")
            && !matches!(ap, Value::Bool(_))
            && map
                .get("properties")
                .is_none_or(|p| p.as_object().is_none_or(Map::is_empty))
        {
            return Err("maps with arbitrary keys cannot be expressed in strict mode".to_owned());
        }
        map.insert("additionalProperties".into(), Value::Bool(false));
        let names: Vec<Value> = map
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().map(Value::String).collect())
            .unwrap_or_default();
        map.insert("required".into(), Value::Array(names));
        if !map.contains_key("properties") {
            map.insert("properties".into(), Value::Object(Map::new()));
        }
    }

    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for prop in props.values_mut() {
            ensure_strict(prop, root, depth + 1)?;
        }
    }
    if let Some(items) = map.get_mut("items") {
        ensure_strict(items, root, depth + 1)?;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(variants)) = map.get_mut(key) {
            for v in variants.iter_mut() {
                ensure_strict(v, root, depth + 1)?;
            }
        }
    }
    // OpenAI supports anyOf but not oneOf: the variants of a serde enum are disjoint, so anyOf is equivalent.
    if let Some(one_of) = map.remove("oneOf") {
        map.insert("anyOf".into(), one_of);
    }
    if let Some(Value::Array(mut all)) = map.remove("allOf") {
        if all.len() == 1 {
            let mut only = all.remove(0);
            ensure_strict(&mut only, root, depth + 1)?;
            if let Value::Object(o) = only {
                for (k, v) in o {
                    map.entry(k).or_insert(v);
                }
            }
        } else {
            for v in all.iter_mut() {
                ensure_strict(v, root, depth + 1)?;
            }
            map.insert("allOf".into(), Value::Array(all));
        }
    }

    if matches!(map.get("default"), Some(Value::Null)) {
        map.remove("default");
    }
    if let Some(Value::String(format)) = map.get("format") {
        let is_string = matches!(map.get("type"), Some(Value::String(t)) if t == "string");
        if !is_string || !STRICT_STRING_FORMATS.contains(&format.as_str()) {
            map.remove("format");
        }
    }
    Ok(())
}

fn resolve_ref(root: &Value, reference: &str) -> Result<Value, String> {
    let pointer = reference
        .strip_prefix('#')
        .ok_or_else(|| format!("unsupported $ref `{reference}` (only local references)"))?;
    root.pointer(pointer)
        .cloned()
        .ok_or_else(|| format!("$ref `{reference}` does not resolve"))
}
