//! Function tools: schema generation, invocation outcomes, malformed input, registry rules, OpenAI conversion.
//! LiveKit behaviours 14, 29 (via outputs), 68-73 (with our deliberate differences, see docs/tools.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agents_core::agent::Agent;
use agents_core::chat::FunctionCall;
use agents_core::session::{SessionHandle, Userdata};
use agents_core::speech::{SpeechHandle, SpeechOptions};
use agents_core::tools::{
    FunctionTool, INTERNAL_ERROR_MESSAGE, Json, OpenAiToolFormat, RunContext, ToolContext,
    ToolDefinitionError, ToolError, ToolOutcome, ToolSet, to_strict_json_schema,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Look up the current weather in a city.
#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// City name, e.g. "Paris".
    city: String,
    /// Temperature unit.
    unit: Option<Unit>,
    /// Days of forecast.
    days: u8,
}

#[derive(Deserialize, Serialize, JsonSchema, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Unit {
    Celsius,
    Fahrenheit,
}

async fn get_weather(_ctx: RunContext, args: WeatherArgs) -> Result<String, ToolError> {
    let unit = match args.unit {
        Some(Unit::Fahrenheit) => "F",
        _ => "C",
    };
    Ok(format!("{}: 21°{unit} for {} day(s)", args.city, args.days))
}

fn ctx() -> ToolContext {
    ToolContext::new(
        SessionHandle::detached(),
        None,
        SpeechHandle::new(SpeechOptions::default()),
    )
}

fn call(name: &str, args: &str) -> FunctionCall {
    FunctionCall::new("call_1", name, args)
}

#[test]
fn typed_tool_yields_the_expected_json_schema() {
    let tool = FunctionTool::new(get_weather).unwrap();
    // Behaviour 14: name from the function, description from the doc comment.
    assert_eq!(tool.name(), "get_weather");
    assert_eq!(tool.description(), "Look up the current weather in a city.");
    assert_eq!(
        tool.definition().parameters,
        json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\"."},
                "unit": {
                    "description": "Temperature unit.",
                    "type": ["string", "null"],
                    "enum": ["celsius", "fahrenheit", null]
                },
                "days": {
                    "type": "integer",
                    "description": "Days of forecast.",
                    "format": "uint8",
                    "minimum": 0,
                    "maximum": 255
                }
            },
            "required": ["city", "days"]
        })
    );
}

#[test]
fn explicit_name_and_description_override_the_inferred_ones() {
    let tool = FunctionTool::builder(get_weather)
        .name("weather")
        .description("Weather lookup")
        .build()
        .unwrap();
    assert_eq!(tool.name(), "weather");
    assert_eq!(tool.description(), "Weather lookup");
}

#[test]
fn closures_need_an_explicit_name() {
    let closure = |args: WeatherArgs| async move { Ok::<_, ToolError>(args.city) };
    let err = FunctionTool::new(closure).unwrap_err();
    assert!(
        matches!(err, ToolDefinitionError::InvalidName { .. }),
        "{err}"
    );
    let tool = FunctionTool::builder(closure)
        .name("city_echo")
        .build()
        .unwrap();
    assert_eq!(tool.name(), "city_echo");
}

#[test]
fn invalid_names_and_non_object_arguments_are_rejected() {
    async fn takes_string(s: String) -> Result<String, ToolError> {
        Ok(s)
    }
    assert_eq!(
        FunctionTool::new(takes_string).unwrap_err(),
        ToolDefinitionError::ParametersNotObject {
            name: "takes_string".into()
        }
    );
    let err = FunctionTool::builder(get_weather)
        .name("has space")
        .build()
        .unwrap_err();
    assert!(matches!(err, ToolDefinitionError::InvalidName { .. }));
    let err = FunctionTool::builder(get_weather)
        .name("x".repeat(65))
        .build()
        .unwrap_err();
    assert!(matches!(err, ToolDefinitionError::InvalidName { .. }));
}

#[tokio::test]
async fn a_valid_call_returns_the_stringified_value() {
    let tool = FunctionTool::new(get_weather).unwrap();
    let r = tool
        .invoke(
            call(
                "get_weather",
                r#"{"city":"Paris","unit":"fahrenheit","days":2}"#,
            ),
            ctx(),
        )
        .await;
    let out = r.output.unwrap();
    assert_eq!(out.output, "Paris: 21°F for 2 day(s)");
    assert!(!out.is_error);
    assert_eq!(out.call_id, "call_1");
    assert_eq!(out.name, "get_weather");
    assert!(r.handoff.is_none() && !r.stop_response);
}

#[tokio::test]
async fn malformed_json_arguments_yield_an_error_output() {
    let tool = FunctionTool::new(get_weather).unwrap();
    let r = tool
        .invoke(call("get_weather", r#"{"city": "Par"#), ctx())
        .await;
    let out = r.output.unwrap();
    assert!(out.is_error);
    assert!(
        out.output
            .starts_with("Invalid arguments for tool `get_weather`: not valid JSON"),
        "{}",
        out.output
    );
}

#[tokio::test]
async fn arguments_not_matching_the_schema_yield_an_error_output() {
    let tool = FunctionTool::new(get_weather).unwrap();
    for bad in [
        r#"{"city": 42, "days": 1}"#,
        r#"{"days": 1}"#,
        r#"{"city": "Paris", "days": 300}"#,
        r#"{"city": "Paris", "days": 1, "unit": "kelvin"}"#,
        r#"[1, 2]"#,
        "",
    ] {
        let r = tool.invoke(call("get_weather", bad), ctx()).await;
        let out = r.output.unwrap();
        assert!(out.is_error, "{bad}: {}", out.output);
        assert!(
            out.output
                .starts_with("Invalid arguments for tool `get_weather`"),
            "{}",
            out.output
        );
    }
}

#[tokio::test]
async fn empty_arguments_count_as_an_empty_object() {
    #[derive(Deserialize, JsonSchema)]
    struct NoArgs {}
    async fn ping(_: NoArgs) -> Result<&'static str, ToolError> {
        Ok("pong")
    }
    let tool = FunctionTool::new(ping).unwrap();
    assert_eq!(tool.definition().parameters["type"], "object");
    let r = tool.invoke(call("ping", "  "), ctx()).await;
    assert_eq!(r.output.unwrap().output, "pong");
}

#[tokio::test]
async fn a_tool_error_message_reaches_the_model_with_is_error() {
    async fn fail(_: WeatherArgs) -> Result<String, ToolError> {
        Err(ToolError::new("city not found"))
    }
    let tool = FunctionTool::new(fail).unwrap();
    let out = tool
        .invoke(call("fail", r#"{"city":"Atlantis","days":1}"#), ctx())
        .await
        .output
        .unwrap();
    assert_eq!(out.output, "city not found");
    assert!(out.is_error);
}

#[tokio::test]
async fn other_errors_are_hidden_from_the_model() {
    async fn io_fail(_: WeatherArgs) -> Result<String, ToolError> {
        let secret_path = std::fs::read_to_string("/definitely/not/here/sk-secret")?;
        Ok(secret_path)
    }
    let tool = FunctionTool::new(io_fail).unwrap();
    let out = tool
        .invoke(call("io_fail", r#"{"city":"x","days":1}"#), ctx())
        .await
        .output
        .unwrap();
    assert_eq!(out.output, INTERNAL_ERROR_MESSAGE);
    assert_eq!(out.output, "An internal error occurred");
    assert!(out.is_error);
}

#[tokio::test]
async fn a_panicking_tool_becomes_an_internal_error_output() {
    async fn boom(_: WeatherArgs) -> Result<String, ToolError> {
        panic!("boom")
    }
    let tool = FunctionTool::new(boom).unwrap();
    let out = tool
        .invoke(call("boom", r#"{"city":"x","days":1}"#), ctx())
        .await
        .output
        .unwrap();
    assert_eq!(out.output, INTERNAL_ERROR_MESSAGE);
    assert!(out.is_error);
}

#[tokio::test]
async fn stop_response_gives_no_output() {
    async fn hang_up(_: WeatherArgs) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::stop_response())
    }
    let tool = FunctionTool::new(hang_up).unwrap();
    let r = tool
        .invoke(call("hang_up", r#"{"city":"x","days":1}"#), ctx())
        .await;
    assert!(r.stop_response);
    assert!(r.output.is_none());
}

#[tokio::test]
async fn handoff_with_and_without_message() {
    async fn transfer(_: WeatherArgs) -> Result<Agent, ToolError> {
        Ok(Agent::builder("You are the billing specialist.")
            .id("billing")
            .build()?)
    }
    async fn transfer_msg(_: WeatherArgs) -> Result<ToolOutcome, ToolError> {
        Ok(ToolOutcome::handoff_with_message(
            Agent::builder("Billing").id("billing").build()?,
            "Transferring you to billing",
        ))
    }
    let r = FunctionTool::new(transfer)
        .unwrap()
        .invoke(call("transfer", r#"{"city":"x","days":1}"#), ctx())
        .await;
    assert_eq!(r.handoff.as_ref().unwrap().agent.id(), "billing");
    assert!(r.output.is_none());

    let r = FunctionTool::new(transfer_msg)
        .unwrap()
        .invoke(call("transfer_msg", r#"{"city":"x","days":1}"#), ctx())
        .await;
    assert_eq!(r.handoff.unwrap().agent.id(), "billing");
    let out = r.output.unwrap();
    assert_eq!(out.output, "Transferring you to billing");
    assert!(!out.is_error);
}

#[tokio::test]
async fn return_values_are_stringified() {
    #[derive(Deserialize, JsonSchema)]
    struct Empty {}
    async fn forty_two(_: Empty) -> Result<i32, ToolError> {
        Ok(42)
    }
    async fn yes(_: Empty) -> Result<bool, ToolError> {
        Ok(true)
    }
    async fn nothing(_: Empty) -> Result<(), ToolError> {
        Ok(())
    }
    #[derive(Serialize)]
    struct Forecast {
        high: i32,
    }
    async fn json_out(_: Empty) -> Result<Json<Forecast>, ToolError> {
        Ok(Json(Forecast { high: 25 }))
    }
    async fn value_out(_: Empty) -> Result<serde_json::Value, ToolError> {
        Ok(json!("plain"))
    }
    let set = ToolSet::from_tools([
        FunctionTool::new(forty_two).unwrap(),
        FunctionTool::new(yes).unwrap(),
        FunctionTool::new(nothing).unwrap(),
        FunctionTool::new(json_out).unwrap(),
        FunctionTool::new(value_out).unwrap(),
    ])
    .unwrap();
    let expect = [
        ("forty_two", "42"),
        ("yes", "true"),
        ("nothing", ""),
        ("json_out", r#"{"high":25}"#),
        ("value_out", "plain"),
    ];
    for (name, text) in expect {
        let out = set.invoke(call(name, "{}"), ctx()).await.output.unwrap();
        assert_eq!(out.output, text, "{name}");
        assert!(!out.is_error);
    }
}

#[tokio::test]
async fn unknown_tool_yields_an_error_output() {
    let set = ToolSet::from_tools([FunctionTool::new(get_weather).unwrap()]).unwrap();
    let r = set.invoke(call("get_time", "{}"), ctx()).await;
    let out = r.output.unwrap();
    assert!(out.is_error);
    assert_eq!(out.output, "Unknown tool `get_time`");
}

#[test]
fn duplicate_tool_names_are_rejected() {
    async fn get_weather2(_: WeatherArgs) -> Result<String, ToolError> {
        Ok(String::new())
    }
    let a = FunctionTool::new(get_weather).unwrap();
    let b = FunctionTool::builder(get_weather2)
        .name("get_weather")
        .build()
        .unwrap();
    let err = ToolSet::from_tools([a.clone(), b]).unwrap_err();
    assert_eq!(err.to_string(), "duplicate function name: get_weather");
    // The very same tool twice is kept once.
    let set = ToolSet::from_tools([a.clone(), a]).unwrap();
    assert_eq!(set.len(), 1);
}

struct Counter {
    calls: AtomicUsize,
}

async fn count(ctx: RunContext<Counter>, _: WeatherArgs) -> Result<usize, ToolError> {
    assert_eq!(ctx.function_call().name, "count");
    assert!(ctx.speech_handle().id().starts_with("speech_"));
    Ok(ctx.userdata().calls.fetch_add(1, Ordering::SeqCst) + 1)
}

#[tokio::test]
async fn typed_userdata_reaches_the_tool() {
    let tool = FunctionTool::new(count).unwrap();
    let data: Userdata = Arc::new(Counter {
        calls: AtomicUsize::new(0),
    });
    let speech = SpeechHandle::new(SpeechOptions::default());
    let c = ToolContext::new(SessionHandle::detached(), Some(data.clone()), speech);
    let args = r#"{"city":"x","days":1}"#;
    assert_eq!(
        tool.invoke(call("count", args), c.clone())
            .await
            .output
            .unwrap()
            .output,
        "1"
    );
    assert_eq!(
        tool.invoke(call("count", args), c)
            .await
            .output
            .unwrap()
            .output,
        "2"
    );
}

#[tokio::test]
async fn missing_or_mistyped_userdata_is_an_internal_error() {
    let tool = FunctionTool::new(count).unwrap();
    let args = r#"{"city":"x","days":1}"#;
    let out = tool
        .invoke(call("count", args), ctx())
        .await
        .output
        .unwrap();
    assert_eq!(out.output, INTERNAL_ERROR_MESSAGE);
    let wrong: Userdata = Arc::new(String::from("not a counter"));
    let c = ToolContext::new(
        SessionHandle::detached(),
        Some(wrong),
        SpeechHandle::new(SpeechOptions::default()),
    );
    let out = tool.invoke(call("count", args), c).await.output.unwrap();
    assert_eq!(out.output, INTERNAL_ERROR_MESSAGE);
}

#[tokio::test]
async fn raw_tools_check_object_and_required_fields() {
    let tool = FunctionTool::raw(
        "lookup",
        "Look something up",
        json!({"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}),
        |_ctx, args| async move { Ok(ToolOutcome::Output(args["q"].to_string())) },
    )
    .unwrap();
    assert_eq!(
        tool.invoke(call("lookup", r#"{"q":"x"}"#), ctx())
            .await
            .output
            .unwrap()
            .output,
        "\"x\""
    );
    let out = tool
        .invoke(call("lookup", "{}"), ctx())
        .await
        .output
        .unwrap();
    assert!(out.is_error);
    assert_eq!(
        out.output,
        "Invalid arguments for tool `lookup`: missing field `q`"
    );
    let out = tool
        .invoke(call("lookup", "[]"), ctx())
        .await
        .output
        .unwrap();
    assert!(out.is_error);
    assert!(
        FunctionTool::raw("bad", "", json!({"type":"string"}), |_c, _a| async {
            Ok(ToolOutcome::stop_response())
        })
        .is_err()
    );
}

#[test]
fn openai_chat_completions_format() {
    let tool = FunctionTool::new(get_weather).unwrap();
    let v = tool
        .definition()
        .to_openai(OpenAiToolFormat::ChatCompletions, false)
        .unwrap();
    assert_eq!(v["type"], "function");
    assert_eq!(v["function"]["name"], "get_weather");
    assert_eq!(
        v["function"]["description"],
        "Look up the current weather in a city."
    );
    assert_eq!(v["function"]["parameters"], tool.definition().parameters);
    assert!(v["function"].get("strict").is_none());
    let flat = tool
        .definition()
        .to_openai(OpenAiToolFormat::Flat, false)
        .unwrap();
    assert_eq!(flat["name"], "get_weather");
    assert_eq!(flat["type"], "function");
    assert!(flat.get("function").is_none());
}

#[test]
fn openai_strict_mode_requires_everything_and_forbids_extras() {
    let tool = FunctionTool::new(get_weather).unwrap();
    let v = tool
        .definition()
        .to_openai(OpenAiToolFormat::ChatCompletions, true)
        .unwrap();
    let f = &v["function"];
    assert_eq!(f["strict"], true);
    let p = &f["parameters"];
    assert_eq!(p["additionalProperties"], false);
    assert_eq!(p["required"], json!(["city", "unit", "days"]));
    // Optional fields stay nullable so the model can pass null.
    assert_eq!(p["properties"]["unit"]["type"], json!(["string", "null"]));
    // Integer formats are not accepted by structured outputs.
    assert!(p["properties"]["days"].get("format").is_none());
}

#[test]
fn strict_mode_recurses_and_inlines() {
    let schema = json!({
        "type": "object",
        "title": "Args",
        "properties": {
            "address": {"$ref": "#/$defs/Address", "description": "Where"},
            "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "when": {"type": "string", "format": "date-time", "default": null},
            "kind": {"oneOf": [{"type": "string", "const": "a"}, {"type": "string", "const": "b"}]}
        },
        "$defs": {"Address": {"type": "object", "properties": {"street": {"type": "string"}}}}
    });
    let s = to_strict_json_schema(&schema).unwrap();
    assert!(s.get("title").is_none());
    let addr = &s["properties"]["address"];
    assert!(addr.get("$ref").is_none());
    assert_eq!(addr["description"], "Where");
    assert_eq!(addr["additionalProperties"], false);
    assert_eq!(addr["required"], json!(["street"]));
    assert_eq!(
        s["properties"]["tags"]["items"]["additionalProperties"],
        false
    );
    assert_eq!(s["properties"]["when"]["format"], "date-time");
    assert!(s["properties"]["when"].get("default").is_none());
    assert!(s["properties"]["kind"].get("oneOf").is_none());
    assert_eq!(
        s["properties"]["kind"]["anyOf"].as_array().unwrap().len(),
        2
    );
    assert_eq!(s["$defs"]["Address"]["additionalProperties"], false);

    let map = json!({"type":"object","additionalProperties":{"type":"string"}});
    assert!(to_strict_json_schema(&map).is_err());
    assert!(to_strict_json_schema(&json!({"type":"string"})).is_err());
    let dangling =
        json!({"type":"object","properties":{"a":{"$ref":"#/$defs/Nope","description":"x"}}});
    assert!(
        to_strict_json_schema(&dangling)
            .unwrap_err()
            .contains("does not resolve")
    );
}
