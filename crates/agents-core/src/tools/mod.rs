//! Function tools: typed Rust async functions the LLM can call.
//!
//! A tool is a plain async function taking a `Deserialize + JsonSchema` argument struct, optionally preceded by a
//! [`RunContext`]. The JSON Schema the model sees is generated from the struct; the tool's name defaults to the
//! function's name and its description to the struct's doc comment.
//!
//! ```
//! use agents_core::tools::{FunctionTool, RunContext, ToolError};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! /// Look up the current weather in a city.
//! #[derive(Deserialize, JsonSchema)]
//! struct WeatherArgs {
//!     /// City name, e.g. "Paris".
//!     city: String,
//! }
//!
//! async fn get_weather(_ctx: RunContext, args: WeatherArgs) -> Result<String, ToolError> {
//!     if args.city.is_empty() {
//!         return Err(ToolError::new("the city is empty"));
//!     }
//!     Ok(format!("sunny in {}", args.city))
//! }
//!
//! let tool = FunctionTool::new(get_weather)?;
//! assert_eq!(tool.name(), "get_weather");
//! assert_eq!(tool.description(), "Look up the current weather in a city.");
//! assert_eq!(tool.definition().parameters["required"][0], "city");
//! # Ok::<(), agents_core::tools::ToolDefinitionError>(())
//! ```
//!
//! Outcomes: a value (stringified for the model), a [`ToolError`] (its message goes to the model with
//! `is_error`; other errors are hidden behind "An internal error occurred" and logged), [`ToolOutcome::StopResponse`]
//! (no reply), or [`ToolOutcome::Handoff`] to another agent. Malformed arguments never reach the function: they
//! become an error output the model can correct.

mod handler;
mod outcome;
pub mod schema;

use std::fmt;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::chat::{FunctionCall, FunctionCallOutput};
use crate::session::{SessionHandle, Userdata};
use crate::speech::SpeechHandle;

pub use handler::{ArgsOnly, ToolHandler, WithContext};
pub use outcome::{Handoff, INTERNAL_ERROR_MESSAGE, IntoToolOutcome, Json, ToolError, ToolOutcome};
pub use schema::{OpenAiToolFormat, parameters_schema, to_openai_tool, to_strict_json_schema};

/// What the model is told about a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolDefinition {
    /// Tool name (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

impl ToolDefinition {
    /// A definition; validates the name and that `parameters` is an object schema.
    ///
    /// # Errors
    /// [`ToolDefinitionError::InvalidName`] or [`ToolDefinitionError::ParametersNotObject`].
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: serde_json::Value,
    ) -> Result<Self, ToolDefinitionError> {
        let name = name.into();
        validate_name(&name)?;
        schema::check_parameters(&name, &parameters)?;
        Ok(Self {
            name,
            description: description.into(),
            parameters,
        })
    }

    /// This tool in OpenAI's function format (see [`to_openai_tool`]).
    ///
    /// # Errors
    /// [`ToolDefinitionError::StrictSchema`] when `strict` and the schema cannot be made strict.
    pub fn to_openai(
        &self,
        format: OpenAiToolFormat,
        strict: bool,
    ) -> Result<serde_json::Value, ToolDefinitionError> {
        to_openai_tool(self, format, strict)
    }
}

/// Why a tool or a tool set could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolDefinitionError {
    /// Two different tools share a name.
    #[error("duplicate function name: {name}")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The name is not `^[a-zA-Z0-9_-]{1,64}$` (or could not be inferred, e.g. from a closure).
    #[error(
        "invalid tool name {name:?}: use 1-64 ASCII letters, digits, '_' or '-' (closures need an explicit name)"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The parameters schema does not describe a JSON object.
    #[error(
        "the parameters of tool `{name}` must be a JSON object schema (use a struct for the arguments)"
    )]
    ParametersNotObject {
        /// The tool.
        name: String,
    },
    /// The schema cannot be converted to OpenAI strict mode.
    #[error("tool `{name}` cannot use strict mode: {reason}")]
    StrictSchema {
        /// The tool.
        name: String,
        /// Why.
        reason: String,
    },
}

fn validate_name(name: &str) -> Result<(), ToolDefinitionError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ToolDefinitionError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// What a running tool can reach: the session, typed userdata, the call and the speech that made it.
pub struct RunContext<U = ()> {
    session: SessionHandle,
    userdata: Arc<U>,
    function_call: FunctionCall,
    speech_handle: SpeechHandle,
}

impl<U> RunContext<U> {
    /// The session (say, generate_reply, interrupt, history...).
    pub fn session(&self) -> &SessionHandle {
        &self.session
    }

    /// The session's userdata, typed.
    pub fn userdata(&self) -> &U {
        &self.userdata
    }

    /// The session's userdata as a shared pointer (to move into a spawned task).
    pub fn userdata_arc(&self) -> Arc<U> {
        Arc::clone(&self.userdata)
    }

    /// The call being executed.
    pub fn function_call(&self) -> &FunctionCall {
        &self.function_call
    }

    /// The speech whose LLM output contained the call.
    pub fn speech_handle(&self) -> &SpeechHandle {
        &self.speech_handle
    }
}

impl<U> fmt::Debug for RunContext<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("function_call", &self.function_call)
            .field("speech_handle", &self.speech_handle.id())
            .finish_non_exhaustive()
    }
}

/// What the runtime provides to execute a tool call.
#[derive(Clone)]
#[non_exhaustive]
pub struct ToolContext {
    /// The session.
    pub session: SessionHandle,
    /// The session's userdata, if set.
    pub userdata: Option<Userdata>,
    /// The speech whose LLM output contained the call.
    pub speech_handle: SpeechHandle,
}

impl ToolContext {
    /// A context for calls made by `speech_handle` in `session`.
    pub fn new(
        session: SessionHandle,
        userdata: Option<Userdata>,
        speech_handle: SpeechHandle,
    ) -> Self {
        Self {
            session,
            userdata,
            speech_handle,
        }
    }
}

impl fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolContext")
            .field("speech_handle", &self.speech_handle.id())
            .field("userdata", &self.userdata.is_some())
            .finish_non_exhaustive()
    }
}

/// The result of executing one tool call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolCallResult {
    /// The call.
    pub call: FunctionCall,
    /// What the model is shown; `None` for stop-response, and for a handoff without message.
    pub output: Option<FunctionCallOutput>,
    /// The agent to hand off to.
    pub handoff: Option<Handoff>,
    /// The tool asked that no reply follow.
    pub stop_response: bool,
}

impl ToolCallResult {
    fn from_outcome(call: FunctionCall, outcome: Result<ToolOutcome, ToolError>) -> Self {
        let mut r = Self {
            output: None,
            handoff: None,
            stop_response: false,
            call,
        };
        let output = |r: &Self, text: String, is_error: bool| {
            Some(FunctionCallOutput::new(
                r.call.call_id.clone(),
                r.call.name.clone(),
                text,
                is_error,
            ))
        };
        match outcome {
            Ok(ToolOutcome::Output(text)) => r.output = output(&r, text, false),
            Ok(ToolOutcome::StopResponse) => r.stop_response = true,
            Ok(ToolOutcome::Handoff(h)) => {
                if let Some(m) = &h.message {
                    r.output = output(&r, m.clone(), false);
                }
                r.handoff = Some(h);
            }
            Err(e) => {
                if let Some(internal) = e.internal_cause() {
                    tracing::error!(tool = %r.call.name, call_id = %r.call.call_id, error = %internal,
                        "tool failed with an internal error; the model is told only that an error occurred");
                }
                r.output = output(&r, e.message_for_model().to_owned(), true);
            }
        }
        r
    }

    /// An error result for `call` with a message the model sees.
    pub fn error(call: FunctionCall, message: impl Into<String>) -> Self {
        Self::from_outcome(call, Err(ToolError::new(message)))
    }
}

type Invoke = dyn Fn(ToolContext, FunctionCall) -> BoxFuture<'static, Result<ToolOutcome, ToolError>>
    + Send
    + Sync;

struct ToolInner {
    definition: ToolDefinition,
    invoke: Box<Invoke>,
}

/// A tool the model can call. Cheap to clone.
#[derive(Clone)]
pub struct FunctionTool {
    inner: Arc<ToolInner>,
}

impl FunctionTool {
    /// A tool from a typed async function, named after the function and described by the argument struct's doc
    /// comment.
    ///
    /// # Errors
    /// [`ToolDefinitionError`] when the name cannot be inferred (closures: use [`FunctionTool::builder`]) or the
    /// arguments are not a struct.
    pub fn new<M, H: ToolHandler<M>>(handler: H) -> Result<Self, ToolDefinitionError> {
        Self::builder(handler).build()
    }

    /// A builder to set the name and description explicitly.
    pub fn builder<M, H: ToolHandler<M>>(handler: H) -> FunctionToolBuilder {
        let mut parameters = parameters_schema::<H::Args>();
        let mut doc = None;
        if let serde_json::Value::Object(m) = &mut parameters {
            m.remove("title");
            if let Some(serde_json::Value::String(d)) = m.remove("description") {
                doc = Some(d);
            }
        }
        let handler = Arc::new(handler);
        FunctionToolBuilder {
            name: handler::infer_name::<H>(),
            description: doc,
            parameters,
            invoke: Box::new(move |ctx, call| handler::invoke(Arc::clone(&handler), ctx, call)),
        }
    }

    /// A tool over raw JSON arguments with a hand-written schema. Arguments are checked to be a JSON object
    /// carrying every `required` property before `handler` runs; finer validation is the handler's.
    ///
    /// # Errors
    /// [`ToolDefinitionError`] for an invalid name or a non-object schema.
    pub fn raw<F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: serde_json::Value,
        handler: F,
    ) -> Result<Self, ToolDefinitionError>
    where
        F: Fn(RunContext, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ToolOutcome, ToolError>> + Send + 'static,
    {
        let definition = ToolDefinition::new(name, description, parameters)?;
        let required: Vec<String> = definition
            .parameters
            .get("required")
            .and_then(serde_json::Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let handler = Arc::new(handler);
        let invoke = move |ctx: ToolContext, call: FunctionCall| {
            let handler = Arc::clone(&handler);
            let required = required.clone();
            async move {
                let value = handler::parse_arguments(&call)?;
                let Some(obj) = value.as_object() else {
                    return Err(ToolError::new(format!(
                        "Invalid arguments for tool `{}`: expected a JSON object",
                        call.name
                    )));
                };
                if let Some(missing) = required.iter().find(|k| !obj.contains_key(k.as_str())) {
                    return Err(ToolError::new(format!(
                        "Invalid arguments for tool `{}`: missing field `{missing}`",
                        call.name
                    )));
                }
                let run = handler::run_context::<()>(ctx, call)?;
                handler::guard(async move { handler(run, value).await }).await
            }
            .boxed()
        };
        Ok(Self {
            inner: Arc::new(ToolInner {
                definition,
                invoke: Box::new(invoke),
            }),
        })
    }

    /// Tool name.
    pub fn name(&self) -> &str {
        &self.inner.definition.name
    }

    /// Tool description.
    pub fn description(&self) -> &str {
        &self.inner.definition.description
    }

    /// What the model is told.
    pub fn definition(&self) -> &ToolDefinition {
        &self.inner.definition
    }

    /// Whether `self` and `other` are the same tool (clones of one another).
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Executes `call`. Never panics: malformed arguments, a missing or mistyped userdata, a failing or panicking
    /// handler all become an error output.
    pub async fn invoke(&self, call: FunctionCall, ctx: ToolContext) -> ToolCallResult {
        let outcome = (self.inner.invoke)(ctx, call.clone()).await;
        ToolCallResult::from_outcome(call, outcome)
    }
}

impl fmt::Debug for FunctionTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionTool")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// Builder of a [`FunctionTool`] with explicit name or description.
pub struct FunctionToolBuilder {
    name: Option<String>,
    description: Option<String>,
    parameters: serde_json::Value,
    invoke: Box<Invoke>,
}

impl FunctionToolBuilder {
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Builds the tool.
    ///
    /// # Errors
    /// [`ToolDefinitionError`] for an invalid or missing name or non-object arguments.
    pub fn build(self) -> Result<FunctionTool, ToolDefinitionError> {
        let name = self.name.unwrap_or_default();
        let definition =
            ToolDefinition::new(name, self.description.unwrap_or_default(), self.parameters)?;
        Ok(FunctionTool {
            inner: Arc::new(ToolInner {
                definition,
                invoke: self.invoke,
            }),
        })
    }
}

impl fmt::Debug for FunctionToolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionToolBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A set of tools with unique names, in registration order.
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: Vec<FunctionTool>,
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of `tools`. The same tool given twice is kept once.
    ///
    /// # Errors
    /// [`ToolDefinitionError::DuplicateName`] when two different tools share a name.
    pub fn from_tools(
        tools: impl IntoIterator<Item = FunctionTool>,
    ) -> Result<Self, ToolDefinitionError> {
        let mut set = Self::new();
        for t in tools {
            set.add(t)?;
        }
        Ok(set)
    }

    /// Adds a tool (a no-op if this very tool is already there).
    ///
    /// # Errors
    /// [`ToolDefinitionError::DuplicateName`] when a different tool has the name.
    pub fn add(&mut self, tool: FunctionTool) -> Result<(), ToolDefinitionError> {
        match self.get(tool.name()) {
            Some(existing) if existing.same_as(&tool) => Ok(()),
            Some(_) => Err(ToolDefinitionError::DuplicateName {
                name: tool.name().to_owned(),
            }),
            None => {
                self.tools.push(tool);
                Ok(())
            }
        }
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&FunctionTool> {
        self.tools.iter().find(|t| t.name() == name)
    }

    /// Whether a tool is named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The tools, in order.
    pub fn iter(&self) -> impl Iterator<Item = &FunctionTool> {
        self.tools.iter()
    }

    /// Tool names, in order.
    pub fn names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name().to_owned()).collect()
    }

    /// What the model is told, in order.
    pub fn definitions(&self) -> Vec<ToolDefinition> {
        self.tools.iter().map(|t| t.definition().clone()).collect()
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there is no tool.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Executes `call` with the tool of its name; an unknown name gives an error output (every call needs an
    /// output for the next request to be valid on OpenAI-style APIs).
    pub async fn invoke(&self, call: FunctionCall, ctx: ToolContext) -> ToolCallResult {
        match self.get(&call.name) {
            Some(tool) => tool.invoke(call, ctx).await,
            None => {
                tracing::warn!(tool = %call.name, "the model called an unknown tool");
                let message = format!("Unknown tool `{}`", call.name);
                ToolCallResult::error(call, message)
            }
        }
    }
}

impl fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(FunctionTool::name))
            .finish()
    }
}

impl IntoIterator for ToolSet {
    type Item = FunctionTool;
    type IntoIter = std::vec::IntoIter<FunctionTool>;
    fn into_iter(self) -> Self::IntoIter {
        self.tools.into_iter()
    }
}
