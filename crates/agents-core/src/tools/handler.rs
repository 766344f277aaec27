//! How plain async functions become tools: the [`ToolHandler`] trait, implemented for
//! `async fn(RunContext<U>, Args) -> Result<R, ToolError>` and `async fn(Args) -> Result<R, ToolError>`.

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::{IntoToolOutcome, RunContext, ToolContext, ToolError, ToolOutcome};
use crate::chat::FunctionCall;

/// Marker for handlers taking a [`RunContext`] and the arguments.
pub struct WithContext<U, A, R>(PhantomData<fn(U, A) -> R>);

/// Marker for handlers taking only the arguments.
pub struct ArgsOnly<A, R>(PhantomData<fn(A) -> R>);

/// An async function usable as a tool. Implemented for `Fn(RunContext<U>, A) -> impl Future<Output =
/// Result<R, ToolError>>` and `Fn(A) -> ...`, where `A: Deserialize + JsonSchema` and `R: IntoToolOutcome`.
pub trait ToolHandler<Marker>: Send + Sync + 'static {
    /// The argument struct.
    type Args: DeserializeOwned + JsonSchema + Send + 'static;
    /// The userdata type the handler expects (`()` when it needs none).
    type Userdata: Send + Sync + 'static;

    /// Runs the handler.
    fn call(
        &self,
        ctx: RunContext<Self::Userdata>,
        args: Self::Args,
    ) -> BoxFuture<'static, Result<ToolOutcome, ToolError>>;
}

impl<F, Fut, U, A, R> ToolHandler<WithContext<U, A, R>> for F
where
    F: Fn(RunContext<U>, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
    U: Send + Sync + 'static,
    A: DeserializeOwned + JsonSchema + Send + 'static,
    R: IntoToolOutcome,
{
    type Args = A;
    type Userdata = U;

    fn call(
        &self,
        ctx: RunContext<U>,
        args: A,
    ) -> BoxFuture<'static, Result<ToolOutcome, ToolError>> {
        let fut = self(ctx, args);
        async move { fut.await?.into_tool_outcome() }.boxed()
    }
}

impl<F, Fut, A, R> ToolHandler<ArgsOnly<A, R>> for F
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
    A: DeserializeOwned + JsonSchema + Send + 'static,
    R: IntoToolOutcome,
{
    type Args = A;
    type Userdata = ();

    fn call(
        &self,
        _ctx: RunContext<()>,
        args: A,
    ) -> BoxFuture<'static, Result<ToolOutcome, ToolError>> {
        let fut = self(args);
        async move { fut.await?.into_tool_outcome() }.boxed()
    }
}

/// The tool name implied by a function item's type (`my_crate::tools::get_weather` → `get_weather`); `None` for
/// closures and other unnamed types.
pub(super) fn infer_name<H>() -> Option<String> {
    let full = std::any::type_name::<H>();
    let last = full.rsplit("::").next()?;
    let ok = !last.is_empty() && last.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| last.to_owned())
}

/// Parses the call's arguments as JSON (`""` counts as `{}`).
pub(super) fn parse_arguments(call: &FunctionCall) -> Result<serde_json::Value, ToolError> {
    let text = call.arguments.trim();
    if text.is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(text).map_err(|e| {
        ToolError::new(format!(
            "Invalid arguments for tool `{}`: not valid JSON ({e})",
            call.name
        ))
    })
}

/// Builds the typed run context, resolving the userdata.
pub(super) fn run_context<U: Send + Sync + 'static>(
    ctx: ToolContext,
    call: FunctionCall,
) -> Result<RunContext<U>, ToolError> {
    let userdata: Arc<U> = if TypeId::of::<U>() == TypeId::of::<()>() {
        let unit: Arc<dyn Any + Send + Sync> = Arc::new(());
        unit.downcast::<U>()
            .map_err(|_| ToolError::internal("unit userdata downcast failed"))?
    } else {
        let Some(data) = ctx.userdata.clone() else {
            return Err(ToolError::internal(format!(
                "tool `{}` needs session userdata of type {} but none is set",
                call.name,
                std::any::type_name::<U>()
            )));
        };
        data.downcast::<U>().map_err(|_| {
            ToolError::internal(format!(
                "tool `{}` expects session userdata of type {}, the session holds another type",
                call.name,
                std::any::type_name::<U>()
            ))
        })?
    };
    Ok(RunContext {
        session: ctx.session,
        userdata,
        function_call: call,
        speech_handle: ctx.speech_handle,
    })
}

/// Runs a handler future, turning a panic into an internal error.
pub(super) async fn guard(
    fut: impl Future<Output = Result<ToolOutcome, ToolError>>,
) -> Result<ToolOutcome, ToolError> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(ToolError::internal(format!("tool panicked: {what}")))
        }
    }
}

/// Full invocation of a typed handler: parse, deserialize, resolve userdata, run guarded.
pub(super) fn invoke<M, H: super::ToolHandler<M>>(
    handler: Arc<H>,
    ctx: ToolContext,
    call: FunctionCall,
) -> BoxFuture<'static, Result<ToolOutcome, ToolError>> {
    async move {
        let value = parse_arguments(&call)?;
        let args: H::Args = serde_json::from_value(value).map_err(|e| {
            ToolError::new(format!("Invalid arguments for tool `{}`: {e}", call.name))
        })?;
        let run = run_context::<H::Userdata>(ctx, call)?;
        guard(async move { handler.call(run, args).await }).await
    }
    .boxed()
}
