//! [`Agent`]: one persona of a voice session (instructions, tools, its own chat context, model overrides and
//! lifecycle hooks). The pipeline runs it; handoffs switch from one agent to another.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::chat::{ChatContext, ChatMessage, CopyOptions};
use crate::ids::short_id;
use crate::llm::{ChatRequest, Llm, LlmStream};
use crate::realtime::RealtimeModel;
use crate::session::SessionHandle;
use crate::stream::EventStream;
use crate::stt::{SpeechEvent, Stt, SttError};
use crate::tools::{FunctionTool, ToolDefinitionError, ToolSet};
use crate::tts::Tts;
use crate::vad::Vad;

/// The language model of an agent or session: a chat LLM (cascading pipeline) or a realtime model.
#[derive(Clone)]
#[non_exhaustive]
pub enum LanguageModel {
    /// A chat LLM; speech goes through STT and TTS.
    Llm(Arc<dyn Llm>),
    /// A speech-to-speech model.
    Realtime(Arc<dyn RealtimeModel>),
}

impl fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Llm(l) => write!(f, "Llm({})", l.label()),
            Self::Realtime(r) => write!(f, "Realtime({})", r.label()),
        }
    }
}

/// What to do after the user's turn completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TurnDecision {
    /// Generate a reply (the default).
    #[default]
    Reply,
    /// Commit the user message but do not reply.
    StopResponse,
}

/// Behaviour an agent type adds: its own tools and lifecycle hooks. Every method has a default, so an
/// implementation overrides only what it needs.
#[async_trait]
pub trait AgentHooks: Send + Sync + 'static {
    /// Tools of this agent type, exposed in addition to the tools given to the builder.
    fn tools(&self) -> Vec<FunctionTool> {
        Vec::new()
    }

    /// The agent became active (after a handoff, once the previous agent's speech drained).
    async fn on_enter(&self, session: &SessionHandle) {
        let _ = session;
    }

    /// The agent is being replaced or the session is closing.
    async fn on_exit(&self, session: &SessionHandle) {
        let _ = session;
    }

    /// The user finished a turn: `new_message` may be edited before it is committed, and the reply can be
    /// stopped. `chat_ctx` is the agent's context before the new message.
    async fn on_user_turn_completed(
        &self,
        session: &SessionHandle,
        chat_ctx: &ChatContext,
        new_message: &mut ChatMessage,
    ) -> TurnDecision {
        let _ = (session, chat_ctx, new_message);
        TurnDecision::Reply
    }

    /// The user has been silent (and the agent too) for the session's user-away timeout.
    async fn on_user_away(&self, session: &SessionHandle) {
        let _ = session;
    }

    /// The STT node: the user's speech events as the STT streams them (start and end of speech, interim and final
    /// transcripts, usage), before the session's turn detection and interruption logic see them. The default
    /// passes them through; override it to filter or rewrite transcripts (vocabulary fixes, profanity filter,
    /// dropping filler-only finals) without forking the pipeline: the rewritten finals are what the user turn
    /// commits. Runs once per STT stream (the stream is reopened after an STT error).
    ///
    /// Unlike LiveKit's `stt_node`, which takes the audio frames, this sees the events: audio processing belongs
    /// before the STT (the session's audio input), and an events hook stays independent of the provider.
    fn stt_node(
        &self,
        events: EventStream<Result<SpeechEvent, SttError>>,
    ) -> EventStream<Result<SpeechEvent, SttError>> {
        events
    }

    /// The LLM node: turns a chat request (context, tools, tool choice) into a stream of chunks. The default calls
    /// `llm.chat(request)`; override it to edit the request, or to filter or rewrite the stream (wrap it in a new
    /// [`LlmStream`]) without forking the pipeline.
    fn llm_node(&self, llm: &Arc<dyn Llm>, request: ChatRequest) -> LlmStream {
        llm.chat(request)
    }

    /// The TTS node's text step: the reply text, as it streams, on its way to the TTS. The default passes it
    /// through; override it to rewrite what is spoken (pronunciations, stripping markup). What the chat context
    /// records is the LLM text, not this rewrite.
    fn tts_node(&self, text: EventStream<String>) -> EventStream<String> {
        text
    }

    /// The transcription node: the reply text on its way to the text output (captions). The default passes it
    /// through.
    fn transcription_node(&self, text: EventStream<String>) -> EventStream<String> {
        text
    }
}

/// Per-agent overrides of the session's turn-handling options (`None` keeps the session's value), merged over
/// the session defaults when the agent's activity starts, as LiveKit 1.7 merges an agent's `turn_handling`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TurnOverrides {
    /// Speech needed before the VAD interrupts the agent.
    pub min_interruption_duration: Option<Duration>,
    /// Words needed before a transcript interrupts the agent.
    pub min_interruption_words: Option<usize>,
    /// Silence after the end of speech before the turn commits.
    pub min_endpointing_delay: Option<Duration>,
    /// Longest wait when the turn detector thinks the user will go on.
    pub max_endpointing_delay: Option<Duration>,
    /// Whether a false interruption resumes playout.
    pub resume_false_interruption: Option<bool>,
    /// Who ends the user's turn while this agent is active (LiveKit `Agent(turn_detection=...)`).
    pub turn_detection: Option<crate::session::TurnDetectionMode>,
}

impl TurnOverrides {
    /// No override.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the minimum interruption duration.
    pub fn with_min_interruption_duration(mut self, v: Duration) -> Self {
        self.min_interruption_duration = Some(v);
        self
    }
    /// Sets the minimum interruption words.
    pub fn with_min_interruption_words(mut self, v: usize) -> Self {
        self.min_interruption_words = Some(v);
        self
    }
    /// Sets the minimum endpointing delay.
    pub fn with_min_endpointing_delay(mut self, v: Duration) -> Self {
        self.min_endpointing_delay = Some(v);
        self
    }
    /// Sets the maximum endpointing delay.
    pub fn with_max_endpointing_delay(mut self, v: Duration) -> Self {
        self.max_endpointing_delay = Some(v);
        self
    }
    /// Sets whether false interruptions resume.
    pub fn with_resume_false_interruption(mut self, v: bool) -> Self {
        self.resume_false_interruption = Some(v);
        self
    }
    /// Sets the turn detection mode of this agent.
    pub fn with_turn_detection(mut self, v: crate::session::TurnDetectionMode) -> Self {
        self.turn_detection = Some(v);
        self
    }
}

struct NoHooks;

impl AgentHooks for NoHooks {}

/// One persona of a voice session. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    id: String,
    instructions: String,
    /// Tools given explicitly (builder or `update_tools`).
    given_tools: Vec<FunctionTool>,
    /// `given_tools` plus the hooks' own tools, unique by name.
    tools: ToolSet,
    chat_ctx: ChatContext,
    llm: Option<LanguageModel>,
    stt: Option<Arc<dyn Stt>>,
    tts: Option<Arc<dyn Tts>>,
    vad: Option<Arc<dyn Vad>>,
    allow_interruptions: Option<bool>,
    turn_overrides: TurnOverrides,
    hooks: Arc<dyn AgentHooks>,
}

impl Agent {
    /// An agent with instructions only.
    pub fn new(instructions: impl Into<String>) -> Self {
        Self {
            id: short_id("agent_"),
            instructions: instructions.into(),
            given_tools: Vec::new(),
            tools: ToolSet::new(),
            chat_ctx: ChatContext::new(),
            llm: None,
            stt: None,
            tts: None,
            vad: None,
            allow_interruptions: None,
            turn_overrides: TurnOverrides::default(),
            hooks: Arc::new(NoHooks),
        }
    }

    /// A builder for everything else.
    pub fn builder(instructions: impl Into<String>) -> AgentBuilder {
        AgentBuilder {
            agent: Self::new(instructions),
            tools: Vec::new(),
            chat_ctx: None,
        }
    }

    /// The agent's id (used in handoff records).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The instructions.
    pub fn instructions(&self) -> &str {
        &self.instructions
    }

    /// The tools: those given plus the hooks' own, in that order. A copy: changing it does not change the agent.
    pub fn tools(&self) -> ToolSet {
        self.tools.clone()
    }

    /// The agent's chat context, read-only. To change it, copy, edit and call [`Agent::update_chat_ctx`]:
    ///
    /// ```compile_fail
    /// let agent = agents_core::agent::Agent::new("hi");
    /// agent.chat_ctx().push(agents_core::ChatMessage::new(agents_core::ChatRole::User, "x"));
    /// ```
    pub fn chat_ctx(&self) -> &ChatContext {
        &self.chat_ctx
    }

    /// The LLM override (`None`: inherit the session's).
    pub fn llm(&self) -> Option<&LanguageModel> {
        self.llm.as_ref()
    }

    /// The STT override.
    pub fn stt(&self) -> Option<&Arc<dyn Stt>> {
        self.stt.as_ref()
    }

    /// The TTS override.
    pub fn tts(&self) -> Option<&Arc<dyn Tts>> {
        self.tts.as_ref()
    }

    /// The VAD override.
    pub fn vad(&self) -> Option<&Arc<dyn Vad>> {
        self.vad.as_ref()
    }

    /// The interruption override.
    pub fn allow_interruptions(&self) -> Option<bool> {
        self.allow_interruptions
    }

    /// The turn-handling overrides.
    pub fn turn_overrides(&self) -> &TurnOverrides {
        &self.turn_overrides
    }

    /// The hooks.
    pub fn hooks(&self) -> &Arc<dyn AgentHooks> {
        &self.hooks
    }

    /// Replaces the instructions.
    pub fn update_instructions(&mut self, instructions: impl Into<String>) {
        self.instructions = instructions.into();
    }

    /// Replaces the given tools (the same tool given twice is kept once; the hooks' own tools stay) and drops
    /// function calls and outputs of tools no longer present from the chat context.
    ///
    /// # Errors
    /// [`ToolDefinitionError::DuplicateName`] when two different tools share a name; the agent is unchanged.
    pub fn update_tools(&mut self, tools: Vec<FunctionTool>) -> Result<(), ToolDefinitionError> {
        let set = Self::tool_set(&tools, self.hooks.as_ref())?;
        let mut given = Vec::new();
        for t in tools {
            if !given.iter().any(|g: &FunctionTool| g.same_as(&t)) {
                given.push(t);
            }
        }
        self.given_tools = given;
        self.tools = set;
        self.chat_ctx = filter_tools(&self.chat_ctx, &self.tools);
        Ok(())
    }

    /// Replaces the chat context with a copy of `chat_ctx` keeping only function items of this agent's tools.
    pub fn update_chat_ctx(&mut self, chat_ctx: &ChatContext) {
        self.chat_ctx = filter_tools(chat_ctx, &self.tools);
    }

    fn tool_set(
        given: &[FunctionTool],
        hooks: &dyn AgentHooks,
    ) -> Result<ToolSet, ToolDefinitionError> {
        ToolSet::from_tools(given.iter().cloned().chain(hooks.tools()))
    }
}

/// A copy of `ctx` keeping only function calls/outputs of `tools` (outputs with an empty name are dropped too, as
/// in LiveKit).
fn filter_tools(ctx: &ChatContext, tools: &ToolSet) -> ChatContext {
    ctx.copy(&CopyOptions::default().with_tools(tools.names()))
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("instructions", &self.instructions)
            .field("tools", &self.tools)
            .field("chat_items", &self.chat_ctx.items().len())
            .field("llm", &self.llm)
            .field("allow_interruptions", &self.allow_interruptions)
            .finish_non_exhaustive()
    }
}

/// Builder of an [`Agent`]; settings are checked at [`AgentBuilder::build`].
pub struct AgentBuilder {
    agent: Agent,
    tools: Vec<FunctionTool>,
    chat_ctx: Option<ChatContext>,
}

impl AgentBuilder {
    /// Sets the id (defaults to a random `agent_…`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.agent.id = id.into();
        self
    }
    /// Adds a tool.
    pub fn tool(mut self, tool: FunctionTool) -> Self {
        self.tools.push(tool);
        self
    }
    /// Adds tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = FunctionTool>) -> Self {
        self.tools.extend(tools);
        self
    }
    /// Starts from a copy of `chat_ctx` (function items of other tools are dropped at build).
    pub fn chat_ctx(mut self, chat_ctx: ChatContext) -> Self {
        self.chat_ctx = Some(chat_ctx);
        self
    }
    /// Overrides the session's LLM with a chat LLM.
    pub fn llm(mut self, llm: Arc<dyn Llm>) -> Self {
        self.agent.llm = Some(LanguageModel::Llm(llm));
        self
    }
    /// Overrides the session's LLM with a realtime model.
    pub fn realtime_model(mut self, model: Arc<dyn RealtimeModel>) -> Self {
        self.agent.llm = Some(LanguageModel::Realtime(model));
        self
    }
    /// Overrides the session's STT.
    pub fn stt(mut self, stt: Arc<dyn Stt>) -> Self {
        self.agent.stt = Some(stt);
        self
    }
    /// Overrides the session's TTS.
    pub fn tts(mut self, tts: Arc<dyn Tts>) -> Self {
        self.agent.tts = Some(tts);
        self
    }
    /// Overrides the session's VAD.
    pub fn vad(mut self, vad: Arc<dyn Vad>) -> Self {
        self.agent.vad = Some(vad);
        self
    }
    /// Overrides the session's interruption setting.
    pub fn allow_interruptions(mut self, allow: bool) -> Self {
        self.agent.allow_interruptions = Some(allow);
        self
    }
    /// Overrides the session's turn-handling options for this agent.
    pub fn turn_overrides(mut self, overrides: TurnOverrides) -> Self {
        self.agent.turn_overrides = overrides;
        self
    }
    /// Overrides the session's turn detection mode for this agent (sets `TurnOverrides::turn_detection`; a later
    /// `turn_overrides` call replaces it).
    pub fn turn_detection(mut self, mode: crate::session::TurnDetectionMode) -> Self {
        self.agent.turn_overrides.turn_detection = Some(mode);
        self
    }
    /// Sets the hooks (and the hooks' own tools).
    pub fn hooks(mut self, hooks: impl AgentHooks) -> Self {
        self.agent.hooks = Arc::new(hooks);
        self
    }

    /// Builds the agent.
    ///
    /// # Errors
    /// [`ToolDefinitionError::DuplicateName`] when two different tools share a name.
    pub fn build(self) -> Result<Agent, ToolDefinitionError> {
        let mut agent = self.agent;
        agent.update_tools(self.tools)?;
        if let Some(ctx) = self.chat_ctx {
            agent.update_chat_ctx(&ctx);
        }
        Ok(agent)
    }
}

impl fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}
