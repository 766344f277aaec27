//! Interruption policy: when user audio or words stop (or pause) the agent's speech.
//!
//! [`InterruptionPolicy`] is pure decision logic: it owns no task and no clock. The session feeds it what happens
//! (agent speech started/ended, VAD inference progress, transcripts, user speech start/end, committed user turns),
//! each with the current [`Instant`], and acts on the [`InterruptionDecision`] it returns: pause playout, interrupt
//! the speech for good, or resume a paused playout (a *false interruption*). The false-interruption timer is a
//! deadline ([`InterruptionPolicy::deadline`]); the session sleeps until it and calls [`InterruptionPolicy::poll`].
//!
//! Rules (details and sources in `docs/turn-taking.md`):
//!
//! - Audio interrupts when the VAD's `speech_duration` is **strictly greater** than
//!   [`InterruptionOptions::min_duration`] (0.5 s), as in LiveKit 1.0 behaviour 55.
//! - With [`InterruptionOptions::min_words`] > 0 the user's current transcript must hold at least that many words.
//! - With a [`BackchannelFilter`], a transcript made only of backchannel words ("mhmm", "yeah", "okay"…) never
//!   interrupts; audio without words yet pauses a pausable output (undecided) and does nothing otherwise.
//! - Non-interruptible speech is never interrupted; for [`InterruptionOptions::aec_warmup_duration`] after the agent
//!   starts speaking, audio and words are ignored (echo-cancellation warm-up).
//! - With [`InterruptionOptions::resume_false_interruption`] and a pausable output, an interruption first **pauses**;
//!   a committed user turn makes it final, while `false_interruption_timeout` of user silence without a turn
//!   resumes playout.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

/// Words that acknowledge without taking the turn, used by [`BackchannelFilter::default`].
pub const DEFAULT_BACKCHANNEL_WORDS: &[&str] = &[
    "mhmm",
    "mhm",
    "mm",
    "mmm",
    "hmm",
    "hm",
    "uh-huh",
    "uh huh",
    "yeah",
    "yep",
    "yup",
    "okay",
    "ok",
    "right",
    "alright",
    "all right",
    "i see",
    "got it",
];

/// Recognizes utterances made only of backchannel phrases.
///
/// Matching is case-insensitive, ignores surrounding punctuation, treats `-` as a word separator ("uh-huh" equals
/// "uh huh") and accepts any sequence of listed phrases ("yeah okay", "mhmm right").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackchannelFilter {
    phrases: Vec<Vec<String>>,
}

impl Default for BackchannelFilter {
    fn default() -> Self {
        Self::new(DEFAULT_BACKCHANNEL_WORDS.iter().copied())
    }
}

impl BackchannelFilter {
    /// A filter over the given phrases (empty phrases are ignored).
    pub fn new<S: AsRef<str>>(phrases: impl IntoIterator<Item = S>) -> Self {
        let mut seen = HashSet::new();
        let phrases = phrases
            .into_iter()
            .map(|p| tokens(p.as_ref()))
            .filter(|t| !t.is_empty() && seen.insert(t.clone()))
            .collect();
        Self { phrases }
    }

    /// Whether `text` is non-empty and made only of backchannel phrases.
    pub fn is_backchannel(&self, text: &str) -> bool {
        let words = tokens(text);
        if words.is_empty() {
            return false;
        }
        // reachable[i]: words[..i] splits into listed phrases.
        let mut reachable = vec![false; words.len() + 1];
        reachable[0] = true;
        for i in 0..words.len() {
            if !reachable[i] {
                continue;
            }
            for phrase in &self.phrases {
                let end = i + phrase.len();
                if end <= words.len() && words[i..end] == phrase[..] {
                    reachable[end] = true;
                }
            }
        }
        reachable[words.len()]
    }
}

/// Lower-cased words of `text`, split on whitespace and `-`, with surrounding punctuation removed.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Number of words in `text` (whitespace separated, punctuation-only tokens not counted).
pub fn word_count(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
}

/// Interruption settings. Defaults follow LiveKit 1.7 (`InterruptionOptions`) except the backchannel filter, which
/// LiveKit does not have (off by default here too).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InterruptionOptions {
    /// Whether the user can interrupt at all (LiveKit `allow_interruptions`). Default `true`.
    pub enabled: bool,
    /// User speech must last strictly longer than this to interrupt. Default 0.5 s.
    pub min_duration: Duration,
    /// Minimum words in the user's current transcript to interrupt (and to take the turn while the agent speaks);
    /// 0 disables the check. Default 0. Needs transcripts: without an STT keep it at 0, or audio never interrupts.
    pub min_words: usize,
    /// Backchannel phrases that neither interrupt nor take the turn while the agent speaks. Default `None`.
    pub backchannel: Option<BackchannelFilter>,
    /// Pause (rather than stop) a pausable output on user speech, and resume it when no user turn follows.
    /// Default `true`.
    pub resume_false_interruption: bool,
    /// User silence after which a paused speech resumes when no user turn was committed. Default 2.0 s.
    pub false_interruption_timeout: Duration,
    /// Audio and words are ignored for this long after the agent starts speaking; `None` disables it.
    /// Default 3.0 s (LiveKit 1.7; use `None` for outbound SIP). A committed user turn is not gated by it.
    pub aec_warmup_duration: Option<Duration>,
}

impl Default for InterruptionOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            min_duration: Duration::from_millis(500),
            min_words: 0,
            backchannel: None,
            resume_false_interruption: true,
            false_interruption_timeout: Duration::from_secs(2),
            aec_warmup_duration: Some(Duration::from_secs(3)),
        }
    }
}

impl InterruptionOptions {
    /// Sets `enabled`.
    pub fn with_enabled(mut self, v: bool) -> Self {
        self.enabled = v;
        self
    }
    /// Sets `min_duration`.
    pub fn with_min_duration(mut self, v: Duration) -> Self {
        self.min_duration = v;
        self
    }
    /// Sets `min_words`.
    pub fn with_min_words(mut self, v: usize) -> Self {
        self.min_words = v;
        self
    }
    /// Sets the backchannel filter.
    pub fn with_backchannel(mut self, v: Option<BackchannelFilter>) -> Self {
        self.backchannel = v;
        self
    }
    /// Sets `resume_false_interruption`.
    pub fn with_resume_false_interruption(mut self, v: bool) -> Self {
        self.resume_false_interruption = v;
        self
    }
    /// Sets `false_interruption_timeout`.
    pub fn with_false_interruption_timeout(mut self, v: Duration) -> Self {
        self.false_interruption_timeout = v;
        self
    }
    /// Sets `aec_warmup_duration`.
    pub fn with_aec_warmup_duration(mut self, v: Option<Duration>) -> Self {
        self.aec_warmup_duration = v;
        self
    }
}

/// Why the policy decided to do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HoldReason {
    /// Interruptions are disabled.
    Disabled,
    /// The agent is not speaking.
    AgentNotSpeaking,
    /// The current speech does not allow interruptions.
    NotInterruptible,
    /// Inside the echo-cancellation warm-up after the agent started speaking.
    AecWarmup,
    /// User speech not (yet) longer than the minimum duration.
    TooShort,
    /// Fewer words than the minimum.
    TooFewWords,
    /// Only backchannel words.
    Backchannel,
    /// The backchannel filter needs words before deciding and the output cannot pause.
    AwaitingWords,
    /// The speech was already interrupted.
    AlreadyInterrupted,
    /// The speech is already paused; a user turn or the timeout decides.
    AlreadyPaused,
    /// Nothing is pending.
    Idle,
}

/// What the session must do with the current agent speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InterruptionDecision {
    /// Nothing.
    None(HoldReason),
    /// Pause playout; the policy waits for a user turn (interrupt) or the false-interruption timeout (resume).
    Pause,
    /// Stop the speech for good (interrupt it, clear the output buffer).
    Interrupt,
    /// False interruption: resume the paused playout and report `AgentFalseInterruption { resumed: true }`.
    Resume,
}

/// What to do with a committed user turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TurnVerdict {
    /// Whether the turn should get a reply (false: keep it out of the reply path, as LiveKit does while the current
    /// speech is not interruptible, or drop it as a backchannel / too short).
    pub reply: bool,
    /// What to do with the current agent speech.
    pub decision: InterruptionDecision,
}

/// The agent speech the policy is watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AgentSpeech {
    started_at: Instant,
    interruptible: bool,
    can_pause: bool,
    paused: bool,
    interrupted: bool,
}

/// The interruption state machine; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct InterruptionPolicy {
    options: InterruptionOptions,
    speech: Option<AgentSpeech>,
    user_speaking: bool,
    /// The user's transcript since the agent started speaking: committed finals plus the latest interim.
    finals: String,
    interim: String,
    deadline: Option<Instant>,
}

impl InterruptionPolicy {
    /// A policy with `options`.
    pub fn new(options: InterruptionOptions) -> Self {
        Self {
            options,
            speech: None,
            user_speaking: false,
            finals: String::new(),
            interim: String::new(),
            deadline: None,
        }
    }

    /// The options.
    pub fn options(&self) -> &InterruptionOptions {
        &self.options
    }

    /// Replaces the options (takes effect for the next decision).
    pub fn set_options(&mut self, options: InterruptionOptions) {
        self.options = options;
    }

    /// The agent started playing a speech. `can_pause`: the audio output can pause and resume.
    pub fn agent_speech_started(&mut self, now: Instant, interruptible: bool, can_pause: bool) {
        self.speech = Some(AgentSpeech {
            started_at: now,
            interruptible,
            can_pause,
            paused: false,
            interrupted: false,
        });
        self.finals.clear();
        self.interim.clear();
        self.deadline = None;
    }

    /// The agent speech ended (played out or interrupted); the policy forgets it.
    pub fn agent_speech_ended(&mut self) {
        self.speech = None;
        self.deadline = None;
        self.finals.clear();
        self.interim.clear();
    }

    /// The current speech's interruptibility changed.
    pub fn set_interruptible(&mut self, interruptible: bool) {
        if let Some(s) = &mut self.speech {
            s.interruptible = interruptible;
        }
    }

    /// Whether the current speech is paused by the policy.
    pub fn is_paused(&self) -> bool {
        self.speech.is_some_and(|s| s.paused)
    }

    /// The user's transcript since the agent started speaking (finals joined with single spaces, then the latest
    /// interim).
    pub fn current_transcript(&self) -> String {
        join(&self.finals, &self.interim)
    }

    /// Whether the policy knows a current agent speech (from its first played frame until it ended).
    pub fn has_speech(&self) -> bool {
        self.speech.is_some()
    }

    /// When the false-interruption timer fires, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The user started speaking: cancels a pending false-interruption timer.
    pub fn user_speech_started(&mut self) {
        self.user_speaking = true;
        self.deadline = None;
    }

    /// The user stopped speaking: a paused speech arms the false-interruption timer.
    pub fn user_speech_ended(&mut self, now: Instant) {
        self.user_speaking = false;
        if self.is_paused() {
            self.arm(now);
        }
    }

    /// A VAD inference while the user speaks, with the speech accumulated in the current segment.
    pub fn vad_inference(
        &mut self,
        now: Instant,
        speech_duration: Duration,
    ) -> InterruptionDecision {
        if speech_duration <= self.options.min_duration {
            return match self.precheck(now) {
                Some(reason) => InterruptionDecision::None(reason),
                None => InterruptionDecision::None(HoldReason::TooShort),
            };
        }
        self.evaluate(now)
    }

    /// A user transcript (interim replaces the previous interim; a final is appended).
    pub fn transcript(&mut self, now: Instant, text: &str, is_final: bool) -> InterruptionDecision {
        if self.speech.is_none() {
            return InterruptionDecision::None(HoldReason::AgentNotSpeaking);
        }
        if is_final {
            self.finals = join(&self.finals, text.trim());
            self.interim.clear();
        } else {
            self.interim = text.trim().to_owned();
        }
        if self.current_transcript().is_empty() {
            return InterruptionDecision::None(HoldReason::TooFewWords);
        }
        self.evaluate(now)
    }

    /// A user turn was committed with `transcript`: decides whether it gets a reply and what happens to the current
    /// speech (a paused speech is interrupted by a real turn, and resumed when the turn is dropped).
    pub fn user_turn_completed(&mut self, now: Instant, transcript: &str) -> TurnVerdict {
        let _ = now;
        let Some(speech) = self.speech else {
            return TurnVerdict {
                reply: true,
                decision: InterruptionDecision::None(HoldReason::AgentNotSpeaking),
            };
        };
        if speech.interrupted {
            return TurnVerdict {
                reply: true,
                decision: InterruptionDecision::None(HoldReason::AlreadyInterrupted),
            };
        }
        if !self.options.enabled || !speech.interruptible {
            let reason = if self.options.enabled {
                HoldReason::NotInterruptible
            } else {
                HoldReason::Disabled
            };
            return TurnVerdict {
                reply: false,
                decision: InterruptionDecision::None(reason),
            };
        }
        let dropped = if self.is_backchannel(transcript) {
            Some(HoldReason::Backchannel)
        } else if self.options.min_words > 0 && word_count(transcript) < self.options.min_words {
            Some(HoldReason::TooFewWords)
        } else {
            None
        };
        if let Some(reason) = dropped {
            let decision = if speech.paused {
                self.resume()
            } else {
                InterruptionDecision::None(reason)
            };
            self.finals.clear();
            self.interim.clear();
            return TurnVerdict {
                reply: false,
                decision,
            };
        }
        self.mark_interrupted();
        TurnVerdict {
            reply: true,
            decision: InterruptionDecision::Interrupt,
        }
    }

    /// Checks the false-interruption timer: at or after the deadline a paused speech resumes.
    pub fn poll(&mut self, now: Instant) -> InterruptionDecision {
        match self.deadline {
            Some(d) if now >= d && self.is_paused() => self.resume(),
            Some(_) => InterruptionDecision::None(HoldReason::AlreadyPaused),
            None => InterruptionDecision::None(HoldReason::Idle),
        }
    }

    fn is_backchannel(&self, text: &str) -> bool {
        self.options
            .backchannel
            .as_ref()
            .is_some_and(|f| f.is_backchannel(text))
    }

    fn arm(&mut self, now: Instant) {
        // A timeout too large for the clock means "never resume".
        self.deadline = now.checked_add(self.options.false_interruption_timeout);
    }

    fn resume(&mut self) -> InterruptionDecision {
        self.deadline = None;
        if let Some(s) = &mut self.speech {
            s.paused = false;
        }
        self.finals.clear();
        self.interim.clear();
        InterruptionDecision::Resume
    }

    fn mark_interrupted(&mut self) {
        self.deadline = None;
        if let Some(s) = &mut self.speech {
            s.paused = false;
            s.interrupted = true;
        }
    }

    /// Reasons that hold whatever the user did.
    fn precheck(&self, now: Instant) -> Option<HoldReason> {
        let Some(speech) = self.speech else {
            return Some(HoldReason::AgentNotSpeaking);
        };
        if !self.options.enabled {
            return Some(HoldReason::Disabled);
        }
        if speech.interrupted {
            return Some(HoldReason::AlreadyInterrupted);
        }
        if !speech.interruptible {
            return Some(HoldReason::NotInterruptible);
        }
        if let Some(warmup) = self.options.aec_warmup_duration
            && now < speech.started_at + warmup
        {
            return Some(HoldReason::AecWarmup);
        }
        None
    }

    fn evaluate(&mut self, now: Instant) -> InterruptionDecision {
        if let Some(reason) = self.precheck(now) {
            return InterruptionDecision::None(reason);
        }
        let Some(speech) = self.speech else {
            return InterruptionDecision::None(HoldReason::AgentNotSpeaking);
        };
        if speech.paused {
            return InterruptionDecision::None(HoldReason::AlreadyPaused);
        }
        let transcript = self.current_transcript();
        if self.options.min_words > 0 && word_count(&transcript) < self.options.min_words {
            return InterruptionDecision::None(HoldReason::TooFewWords);
        }
        let can_pause = speech.can_pause && self.options.resume_false_interruption;
        if self.options.backchannel.is_some() {
            if transcript.is_empty() {
                // Audio without words yet: pause if we can while the words decide, otherwise wait for them.
                return if can_pause {
                    self.pause(now)
                } else {
                    InterruptionDecision::None(HoldReason::AwaitingWords)
                };
            }
            if self.is_backchannel(&transcript) {
                return InterruptionDecision::None(HoldReason::Backchannel);
            }
        }
        if can_pause {
            return self.pause(now);
        }
        self.mark_interrupted();
        InterruptionDecision::Interrupt
    }

    fn pause(&mut self, now: Instant) -> InterruptionDecision {
        if let Some(s) = &mut self.speech {
            s.paused = true;
        }
        if self.user_speaking {
            self.deadline = None;
        } else {
            self.arm(now);
        }
        InterruptionDecision::Pause
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (false, true) => a.to_owned(),
        (false, false) => format!("{a} {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn options() -> InterruptionOptions {
        InterruptionOptions::default().with_aec_warmup_duration(None)
    }

    fn speaking(options: InterruptionOptions, can_pause: bool) -> (InterruptionPolicy, Instant) {
        let mut p = InterruptionPolicy::new(options);
        let t0 = Instant::now();
        p.agent_speech_started(t0, true, can_pause);
        p.user_speech_started();
        (p, t0)
    }

    #[test]
    fn defaults_follow_livekit_1_7_behaviour_116() {
        let o = InterruptionOptions::default();
        assert!(o.enabled);
        assert_eq!(o.min_duration, MS(500));
        assert_eq!(o.min_words, 0);
        assert!(o.resume_false_interruption);
        assert_eq!(o.false_interruption_timeout, MS(2000));
        assert_eq!(o.aec_warmup_duration, Some(MS(3000)));
        assert!(o.backchannel.is_none());
    }

    #[test]
    fn cough_of_0_3_s_does_not_interrupt_behaviour_55() {
        let (mut p, t0) = speaking(options(), false);
        assert_eq!(
            p.vad_inference(t0 + MS(300), MS(300)),
            InterruptionDecision::None(HoldReason::TooShort)
        );
        p.user_speech_ended(t0 + MS(350));
        assert!(!p.is_paused());
    }

    #[test]
    fn speech_exactly_min_duration_does_not_interrupt_strictly_greater_does_behaviour_55() {
        let (mut p, t0) = speaking(options(), false);
        assert_eq!(
            p.vad_inference(t0 + MS(500), MS(500)),
            InterruptionDecision::None(HoldReason::TooShort)
        );
        assert_eq!(
            p.vad_inference(t0 + MS(532), MS(532)),
            InterruptionDecision::Interrupt
        );
        assert_eq!(
            p.vad_inference(t0 + MS(564), MS(564)),
            InterruptionDecision::None(HoldReason::AlreadyInterrupted)
        );
    }

    #[test]
    fn two_words_below_min_words_do_not_interrupt() {
        let (mut p, t0) = speaking(options().with_min_words(3), false);
        assert_eq!(
            p.transcript(t0 + MS(600), "wait please", false),
            InterruptionDecision::None(HoldReason::TooFewWords)
        );
        assert_eq!(
            p.vad_inference(t0 + MS(700), MS(700)),
            InterruptionDecision::None(HoldReason::TooFewWords)
        );
        assert_eq!(
            p.transcript(t0 + MS(800), "wait please stop", false),
            InterruptionDecision::Interrupt
        );
    }

    #[test]
    fn min_words_counts_finals_and_the_latest_interim() {
        let (mut p, t0) = speaking(options().with_min_words(3), false);
        assert!(matches!(
            p.transcript(t0, "hold on", true),
            InterruptionDecision::None(HoldReason::TooFewWords)
        ));
        assert_eq!(p.current_transcript(), "hold on");
        assert_eq!(
            p.transcript(t0 + MS(100), "please", false),
            InterruptionDecision::Interrupt
        );
    }

    #[test]
    fn non_interruptible_speech_is_never_interrupted_and_its_turn_gets_no_reply_behaviour_56() {
        let mut p = InterruptionPolicy::new(options());
        let t0 = Instant::now();
        p.agent_speech_started(t0, false, true);
        assert_eq!(
            p.vad_inference(t0 + MS(2000), MS(2000)),
            InterruptionDecision::None(HoldReason::NotInterruptible)
        );
        assert_eq!(
            p.transcript(t0 + MS(2000), "stop talking now", true),
            InterruptionDecision::None(HoldReason::NotInterruptible)
        );
        let v = p.user_turn_completed(t0 + MS(3000), "stop talking now");
        assert!(!v.reply);
        assert_eq!(
            v.decision,
            InterruptionDecision::None(HoldReason::NotInterruptible)
        );
    }

    #[test]
    fn disabled_interruptions_hold() {
        let (mut p, t0) = speaking(options().with_enabled(false), true);
        assert_eq!(
            p.vad_inference(t0 + MS(900), MS(900)),
            InterruptionDecision::None(HoldReason::Disabled)
        );
    }

    #[test]
    fn backchannel_does_not_interrupt() {
        let o = options().with_backchannel(Some(BackchannelFilter::default()));
        let (mut p, t0) = speaking(o, false);
        // Audio alone cannot decide with the filter on and no pausable output.
        assert_eq!(
            p.vad_inference(t0 + MS(700), MS(700)),
            InterruptionDecision::None(HoldReason::AwaitingWords)
        );
        assert_eq!(
            p.transcript(t0 + MS(800), "Mhmm.", false),
            InterruptionDecision::None(HoldReason::Backchannel)
        );
        assert_eq!(
            p.transcript(t0 + MS(900), "Uh-huh, yeah okay!", true),
            InterruptionDecision::None(HoldReason::Backchannel)
        );
        let v = p.user_turn_completed(t0 + MS(1500), "Uh-huh, yeah okay!");
        assert!(!v.reply, "a backchannel does not take the turn");
        assert_eq!(
            v.decision,
            InterruptionDecision::None(HoldReason::Backchannel)
        );
        // Real words do interrupt.
        assert_eq!(
            p.transcript(t0 + MS(2000), "yeah but what about Tuesday", false),
            InterruptionDecision::Interrupt
        );
    }

    #[test]
    fn backchannel_on_pausable_output_pauses_then_resumes() {
        let o = options().with_backchannel(Some(BackchannelFilter::default()));
        let (mut p, t0) = speaking(o, true);
        assert_eq!(
            p.vad_inference(t0 + MS(600), MS(600)),
            InterruptionDecision::Pause
        );
        p.user_speech_ended(t0 + MS(700));
        let v = p.user_turn_completed(t0 + MS(1300), "okay");
        assert!(!v.reply);
        assert_eq!(v.decision, InterruptionDecision::Resume);
        assert!(!p.is_paused());
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn backchannel_filter_matching() {
        let f = BackchannelFilter::default();
        assert!(f.is_backchannel("Yeah."));
        assert!(f.is_backchannel("uh huh, right"));
        assert!(f.is_backchannel("I see"));
        assert!(!f.is_backchannel(""));
        assert!(!f.is_backchannel("yeah no"));
        assert!(!f.is_backchannel("see"));
        let custom = BackchannelFilter::new(["d'accord", "oui"]);
        assert!(custom.is_backchannel("Oui, d'accord"));
        assert!(!custom.is_backchannel("okay"));
    }

    #[test]
    fn word_count_ignores_punctuation_tokens() {
        assert_eq!(word_count("  hello , there -  "), 2);
        assert_eq!(word_count(""), 0);
    }

    #[test]
    fn false_interruption_resumes_after_timeout_behaviour_117() {
        let (mut p, t0) = speaking(options(), true);
        assert_eq!(
            p.vad_inference(t0 + MS(600), MS(600)),
            InterruptionDecision::Pause
        );
        assert!(p.is_paused());
        assert_eq!(p.deadline(), None, "no timer while the user still speaks");
        p.user_speech_ended(t0 + MS(800));
        assert_eq!(p.deadline(), Some(t0 + MS(2800)));
        assert_eq!(
            p.poll(t0 + MS(2799)),
            InterruptionDecision::None(HoldReason::AlreadyPaused)
        );
        assert_eq!(p.poll(t0 + MS(2800)), InterruptionDecision::Resume);
        assert!(!p.is_paused());
        assert_eq!(
            p.poll(t0 + MS(5000)),
            InterruptionDecision::None(HoldReason::Idle)
        );
    }

    #[test]
    fn user_speech_resuming_cancels_the_false_interruption_timer() {
        let (mut p, t0) = speaking(options(), true);
        assert_eq!(
            p.vad_inference(t0 + MS(600), MS(600)),
            InterruptionDecision::Pause
        );
        p.user_speech_ended(t0 + MS(700));
        p.user_speech_started();
        assert_eq!(p.deadline(), None);
        p.user_speech_ended(t0 + MS(1500));
        assert_eq!(p.deadline(), Some(t0 + MS(3500)));
    }

    #[test]
    fn real_user_turn_turns_a_pause_into_an_interruption() {
        let (mut p, t0) = speaking(options(), true);
        assert_eq!(
            p.vad_inference(t0 + MS(600), MS(600)),
            InterruptionDecision::Pause
        );
        p.user_speech_ended(t0 + MS(900));
        let v = p.user_turn_completed(t0 + MS(1400), "what time is it");
        assert!(v.reply);
        assert_eq!(v.decision, InterruptionDecision::Interrupt);
        assert_eq!(p.deadline(), None);
        assert_eq!(
            p.poll(t0 + MS(9000)),
            InterruptionDecision::None(HoldReason::Idle)
        );
    }

    #[test]
    fn without_pausable_output_audio_interrupts_at_once() {
        let (mut p, t0) = speaking(options(), false);
        assert_eq!(
            p.vad_inference(t0 + MS(600), MS(600)),
            InterruptionDecision::Interrupt
        );
        let (mut p, t0) = speaking(options().with_resume_false_interruption(false), true);
        assert_eq!(
            p.vad_inference(t0 + MS(600), MS(600)),
            InterruptionDecision::Interrupt
        );
    }

    #[test]
    fn aec_warmup_ignores_interruptions_after_agent_starts_speaking_behaviour_119() {
        let o = InterruptionOptions::default().with_aec_warmup_duration(Some(MS(3000)));
        let (mut p, t0) = speaking(o, false);
        assert_eq!(
            p.vad_inference(t0 + MS(2999), MS(2000)),
            InterruptionDecision::None(HoldReason::AecWarmup)
        );
        assert_eq!(
            p.transcript(t0 + MS(2999), "stop right there", false),
            InterruptionDecision::None(HoldReason::AecWarmup)
        );
        assert_eq!(
            p.vad_inference(t0 + MS(3000), MS(2100)),
            InterruptionDecision::Interrupt
        );
    }

    #[test]
    fn no_agent_speech_means_nothing_to_interrupt_and_turns_get_replies() {
        let mut p = InterruptionPolicy::new(options());
        let t0 = Instant::now();
        assert_eq!(
            p.vad_inference(t0, MS(900)),
            InterruptionDecision::None(HoldReason::AgentNotSpeaking)
        );
        let v = p.user_turn_completed(t0, "hello");
        assert!(v.reply);
        p.agent_speech_started(t0, true, true);
        p.agent_speech_ended();
        assert_eq!(
            p.transcript(t0, "hello", true),
            InterruptionDecision::None(HoldReason::AgentNotSpeaking)
        );
    }

    #[test]
    fn min_words_turn_below_minimum_is_dropped_while_agent_speaks() {
        let (mut p, t0) = speaking(options().with_min_words(2), true);
        let v = p.user_turn_completed(t0 + MS(900), "okay");
        assert!(!v.reply);
        assert_eq!(
            v.decision,
            InterruptionDecision::None(HoldReason::TooFewWords)
        );
    }
}
