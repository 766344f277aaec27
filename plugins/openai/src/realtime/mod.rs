//! The OpenAI Realtime model over WebSocket ([`OpenAiRealtimeModel`]), implementing
//! [`agents_core::realtime::RealtimeModel`].
//!
//! One session is one WebSocket to `{base_url}/realtime?model=...` (`wss://api.openai.com/v1/realtime` by default)
//! with `Authorization: Bearer <key>`, speaking the GA event protocol ([`Protocol::Ga`]) or the beta one
//! ([`Protocol::Beta`], which adds `OpenAI-Beta: realtime=v1`). Both protocols' server event names are accepted.
//!
//! - **Setup.** On connect the session waits for `session.created`, sends one `session.update` with the whole
//!   configuration ([`RealtimeOptions`] + the instructions, tools and tool choice of the
//!   [`RealtimeSessionOptions`]), waits for `session.updated`, then creates the seed chat context's items in order.
//!   A failure of any step fails `session()` with a typed [`RealtimeError`]; a 401 or 403 at the upgrade is not
//!   retried.
//! - **Audio.** PCM16 mono 24 kHz both ways, base64 in JSON. [`RealtimeSession::push_audio`](agents_core::realtime::RealtimeSession::push_audio)
//!   takes any rate and channel count: frames are downmixed to mono and resampled to 24 kHz with
//!   [`agents_audio::Resampler`]; `commit_audio` sends the resampler's tail before `input_audio_buffer.commit`. The
//!   first frame fixes the input format until the next commit or clear; another format before that is
//!   [`RealtimeError::InvalidAudio`]. Output audio is 24 kHz mono.
//! - **Calls that wait.** `commit_audio`, `generate_reply`, `truncate`, `update_*` and `update_chat_ctx` return once
//!   the server acknowledged them (`committed`, `response.created`, `conversation.item.truncated`,
//!   `session.updated`, `conversation.item.added`/`deleted`), or with the `error` event the server answered them
//!   with (matched by `event_id`), or after the connection timeout.
//! - **Errors.** An `error` event nobody waits for becomes a recoverable [`RealtimeEvent::Error`](agents_core::realtime::RealtimeEvent::Error). A lost connection
//!   is re-opened with the retry policy of [`ApiConnectOptions`]; when that fails
//!   the session ends with an unrecoverable [`RealtimeEvent::Error`](agents_core::realtime::RealtimeEvent::Error).
//! - **Session lifetime.** On `session_expired` (OpenAI closes a session at its maximum duration), a close or a
//!   dropped socket, the session reconnects, re-sends the configuration and re-creates the mirrored conversation
//!   (text and transcripts; audio itself cannot be replayed), then emits [`RealtimeEvent::Reconnected`](agents_core::realtime::RealtimeEvent::Reconnected). A response
//!   in progress at that moment ends with [`ResponseStatus::Failed`](agents_core::realtime::ResponseStatus).
//!   [`RealtimeOptions::max_session_duration`] reconnects ahead of the server's limit, between responses.
//!
//! See `docs/providers/openai-realtime.md` for the event mapping and the sources of each protocol fact.

mod options;
mod protocol;
mod session;

use std::sync::Arc;

use agents_core::realtime::{
    RealtimeCapabilities, RealtimeConnection, RealtimeError, RealtimeModel, RealtimeSessionOptions,
};
use agents_core::stream::EventStream;
use agents_core::{ApiConnectOptions, ApiError};
use async_trait::async_trait;

use crate::ClientOptions;

pub use options::{
    DEFAULT_MODEL, DEFAULT_TRANSCRIPTION_MODEL, DEFAULT_VOICE, Eagerness, InputTranscription,
    Output, Protocol, RealtimeOptions, SemanticVad, ServerVad, TurnDetection,
};
pub use session::OpenAiRealtimeSession;

use protocol::LiveConfig;
use session::{Actor, EVENT_CAPACITY, Endpoint, Shared};

/// Label of the model in logs and metrics.
pub const LABEL: &str = "openai.realtime";

/// The OpenAI Realtime model (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct OpenAiRealtimeModel {
    client: ClientOptions,
    options: Arc<RealtimeOptions>,
}

impl OpenAiRealtimeModel {
    /// A model over `client` (key, base URL, headers) with `options`.
    pub fn new(client: ClientOptions, options: RealtimeOptions) -> Self {
        Self {
            client,
            options: Arc::new(options),
        }
    }

    /// A model configured from the environment (see [`ClientOptions::from_env`]) with the default options.
    pub fn from_env() -> Self {
        Self::new(ClientOptions::from_env(), RealtimeOptions::default())
    }

    /// The options.
    pub fn options(&self) -> &RealtimeOptions {
        &self.options
    }

    fn endpoint(&self, options: &RealtimeSessionOptions) -> Result<Endpoint, RealtimeError> {
        let base = self.client.ws_url("realtime");
        let url = url::Url::parse_with_params(&base, &[("model", self.options.model.as_str())])
            .map_err(|e| {
                ApiError::connection(format!("invalid Realtime URL {base:?}: {e}"))
                    .with_retryable(false)
            })?;
        // The session's options win; left at their default, the client's policy applies.
        let conn = if options.conn_options == ApiConnectOptions::default() {
            self.client.conn
        } else {
            options.conn_options
        };
        Ok(Endpoint {
            url: url.into(),
            headers: self.client.headers(),
            protocol: self.options.protocol,
            conn,
        })
    }
}

#[async_trait]
impl RealtimeModel for OpenAiRealtimeModel {
    fn label(&self) -> &str {
        LABEL
    }

    fn model(&self) -> &str {
        &self.options.model
    }

    fn capabilities(&self) -> RealtimeCapabilities {
        let mut c = RealtimeCapabilities::default();
        c.turn_detection = self.options.turn_detection.is_some();
        c.user_transcription = self.options.input_transcription.is_some();
        c.audio_output = self.options.output == Output::Audio;
        c.message_truncation = true;
        c.auto_tool_reply_generation = false;
        c
    }

    /// Opens a session. Connection attempts follow `options.conn_options`, or the client's
    /// [`ClientOptions::conn`] when the session's are left at their default; the timeout bounds each attempt's
    /// connect + setup, and each acknowledged call.
    async fn session(
        &self,
        options: RealtimeSessionOptions,
    ) -> Result<RealtimeConnection, RealtimeError> {
        let ep = self.endpoint(&options)?;
        // Instructions given only as the chat context's instructions message still configure the session.
        let instructions = options.instructions.clone().or_else(|| {
            options
                .chat_ctx
                .instructions()
                .and_then(agents_core::chat::ChatMessage::text_content)
        });
        let live = LiveConfig {
            instructions,
            tools: options.tools.clone(),
            tool_choice: options.tool_choice.clone(),
        };
        let items = options.chat_ctx.items().to_vec();
        let opts = self.options.clone();
        let (ws, replayed) = ep
            .conn
            .retry("connect to the OpenAI Realtime API", |_| {
                session::open(&ep, &opts, &live, &items)
            })
            .await?;
        let shared = Arc::new(Shared::default());
        *shared.ctx.lock().unwrap_or_else(|p| p.into_inner()) =
            agents_core::chat::ChatContext::from_items(replayed);
        *shared.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
        let (tx, events) = EventStream::channel(EVENT_CAPACITY);
        let handle = Actor::spawn(ws, ep, opts, shared, tx, LABEL.to_owned());
        Ok(RealtimeConnection {
            session: Arc::new(handle),
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_url_headers_and_policy() {
        let model = OpenAiRealtimeModel::new(
            ClientOptions::default()
                .with_api_key("sk-secret")
                .with_conn_options(ApiConnectOptions::default().with_max_retry(7)),
            RealtimeOptions::default().with_model("gpt realtime/x"),
        );
        let ep = model.endpoint(&RealtimeSessionOptions::default()).unwrap();
        assert_eq!(
            ep.url,
            "wss://api.openai.com/v1/realtime?model=gpt+realtime%2Fx"
        );
        assert_eq!(
            ep.conn.max_retry, 7,
            "the client's policy applies by default"
        );
        assert!(!format!("{ep:?} {model:?}").contains("sk-secret"));
        let mut so = RealtimeSessionOptions::default();
        so.conn_options = ApiConnectOptions::default().with_max_retry(1);
        assert_eq!(model.endpoint(&so).unwrap().conn.max_retry, 1);
        let caps = model.capabilities();
        assert!(caps.turn_detection && caps.user_transcription && caps.audio_output);
        assert!(caps.message_truncation && !caps.auto_tool_reply_generation);
    }
}
