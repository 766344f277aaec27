//! [`FakeSession`]: a [`SessionControl`] that records what tools and hooks ask of the session.
//!
//! `say` and `generate_reply` return fresh [`SpeechHandle`]s (pending: never authorized nor done unless the test
//! drives them), `interrupt` interrupts every handle not done, `close` makes further requests fail with
//! [`SessionError::NotRunning`]. [`FakeSession::fail_with`] makes every request fail with a given error.

use std::fmt;
use std::sync::{Arc, Mutex};

use agents_core::agent::Agent;
use agents_core::chat::ChatContext;
use agents_core::events::{AgentState, UserState};
use agents_core::session::{ReplyRequest, SayRequest, SessionControl, SessionError, SessionHandle};
use agents_core::speech::{SpeechHandle, SpeechOptions};
use async_trait::async_trait;

use crate::util::lock;

/// One request received by a [`FakeSession`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionCall {
    /// `say`.
    Say {
        /// The text.
        text: String,
        /// Whether pre-rendered audio was given.
        has_audio: bool,
        /// The interruption override.
        allow_interruptions: Option<bool>,
        /// Whether the text goes to the chat context.
        add_to_chat_ctx: bool,
        /// The handle returned (absent when the call failed).
        speech: Option<SpeechHandle>,
    },
    /// `generate_reply`.
    GenerateReply {
        /// The request.
        request: ReplyRequest,
        /// The handle returned (absent when the call failed).
        speech: Option<SpeechHandle>,
    },
    /// `interrupt`.
    Interrupt,
    /// `update_agent`.
    UpdateAgent(Agent),
    /// `close`.
    Close,
}

struct State {
    calls: Vec<SessionCall>,
    history: ChatContext,
    agent_state: AgentState,
    user_state: UserState,
    current_speech: Option<SpeechHandle>,
    speeches: Vec<SpeechHandle>,
    failure: Option<SessionError>,
    closed: bool,
}

/// A recording [`SessionControl`]; cheap to clone (clones share the records).
#[derive(Clone)]
pub struct FakeSession {
    state: Arc<Mutex<State>>,
}

impl Default for FakeSession {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FakeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("FakeSession")
            .field("calls", &s.calls)
            .field("closed", &s.closed)
            .finish_non_exhaustive()
    }
}

impl FakeSession {
    /// A running session with an empty history, agent listening.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                calls: Vec::new(),
                history: ChatContext::new(),
                agent_state: AgentState::Listening,
                user_state: UserState::Listening,
                current_speech: None,
                speeches: Vec::new(),
                failure: None,
                closed: false,
            })),
        }
    }

    /// Sets the history (builder style).
    pub fn with_history(self, history: ChatContext) -> Self {
        self.set_history(history);
        self
    }

    /// Sets the history returned by `history()`.
    pub fn set_history(&self, history: ChatContext) {
        lock(&self.state).history = history;
    }

    /// Sets the agent state.
    pub fn set_agent_state(&self, state: AgentState) {
        lock(&self.state).agent_state = state;
    }

    /// Sets the user state.
    pub fn set_user_state(&self, state: UserState) {
        lock(&self.state).user_state = state;
    }

    /// Sets the speech returned by `current_speech()` (by default the last speech returned that is not done).
    pub fn set_current_speech(&self, speech: Option<SpeechHandle>) {
        lock(&self.state).current_speech = speech;
    }

    /// Makes every request fail with `error` (`None` restores normal behaviour).
    pub fn fail_with(&self, error: Option<SessionError>) {
        lock(&self.state).failure = error;
    }

    /// A [`SessionHandle`] over this session (sharing its records).
    pub fn handle(&self) -> SessionHandle {
        SessionHandle::new(Arc::new(self.clone()))
    }

    /// Every request, in order.
    pub fn calls(&self) -> Vec<SessionCall> {
        lock(&self.state).calls.clone()
    }

    /// The texts of every `say`, in order.
    pub fn said(&self) -> Vec<String> {
        lock(&self.state)
            .calls
            .iter()
            .filter_map(|c| match c {
                SessionCall::Say { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every `generate_reply` request, in order.
    pub fn replies(&self) -> Vec<ReplyRequest> {
        lock(&self.state)
            .calls
            .iter()
            .filter_map(|c| match c {
                SessionCall::GenerateReply { request, .. } => Some(request.clone()),
                _ => None,
            })
            .collect()
    }

    /// Number of `interrupt` calls.
    pub fn interrupt_count(&self) -> usize {
        lock(&self.state)
            .calls
            .iter()
            .filter(|c| matches!(c, SessionCall::Interrupt))
            .count()
    }

    /// The agents passed to `update_agent`, in order.
    pub fn agent_updates(&self) -> Vec<Agent> {
        lock(&self.state)
            .calls
            .iter()
            .filter_map(|c| match c {
                SessionCall::UpdateAgent(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every speech handle returned, in order.
    pub fn speeches(&self) -> Vec<SpeechHandle> {
        lock(&self.state).speeches.clone()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    fn check(s: &State) -> Result<(), SessionError> {
        if let Some(e) = &s.failure {
            return Err(e.clone());
        }
        if s.closed {
            return Err(SessionError::NotRunning);
        }
        Ok(())
    }

    fn new_speech(s: &mut State, allow_interruptions: Option<bool>) -> SpeechHandle {
        let mut options = SpeechOptions::default();
        if let Some(allow) = allow_interruptions {
            options = options.with_allow_interruptions(allow);
        }
        let h = SpeechHandle::new(options);
        s.speeches.push(h.clone());
        h
    }
}

#[async_trait]
impl SessionControl for FakeSession {
    fn say(&self, request: SayRequest) -> Result<SpeechHandle, SessionError> {
        let mut s = lock(&self.state);
        let result =
            Self::check(&s).map(|()| Self::new_speech(&mut s, request.allow_interruptions));
        s.calls.push(SessionCall::Say {
            text: request.text,
            has_audio: request.audio.is_some(),
            allow_interruptions: request.allow_interruptions,
            add_to_chat_ctx: request.add_to_chat_ctx,
            speech: result.as_ref().ok().cloned(),
        });
        result
    }

    fn generate_reply(&self, request: ReplyRequest) -> Result<SpeechHandle, SessionError> {
        let mut s = lock(&self.state);
        let result =
            Self::check(&s).map(|()| Self::new_speech(&mut s, request.allow_interruptions));
        s.calls.push(SessionCall::GenerateReply {
            request,
            speech: result.as_ref().ok().cloned(),
        });
        result
    }

    async fn interrupt(&self) -> Result<(), SessionError> {
        let speeches = {
            let mut s = lock(&self.state);
            s.calls.push(SessionCall::Interrupt);
            Self::check(&s)?;
            s.speeches.clone()
        };
        for h in speeches.iter().filter(|h| !h.done()) {
            h.interrupt()?;
        }
        Ok(())
    }

    fn update_agent(&self, agent: Agent) -> Result<(), SessionError> {
        let mut s = lock(&self.state);
        s.calls.push(SessionCall::UpdateAgent(agent));
        Self::check(&s)
    }

    fn history(&self) -> ChatContext {
        lock(&self.state).history.clone()
    }

    fn agent_state(&self) -> AgentState {
        lock(&self.state).agent_state
    }

    fn user_state(&self) -> UserState {
        lock(&self.state).user_state
    }

    fn current_speech(&self) -> Option<SpeechHandle> {
        let s = lock(&self.state);
        s.current_speech
            .clone()
            .or_else(|| s.speeches.iter().rev().find(|h| !h.done()).cloned())
    }

    async fn close(&self) -> Result<(), SessionError> {
        let mut s = lock(&self.state);
        s.calls.push(SessionCall::Close);
        Self::check(&s)?;
        s.closed = true;
        Ok(())
    }
}
