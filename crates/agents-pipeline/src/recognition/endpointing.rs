//! Endpointing delays: how long to wait after the user stops speaking before committing the turn.

use std::time::Duration;

use tokio::time::Instant;

/// How the minimum delay is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum EndpointingMode {
    /// `min_delay` and `max_delay` as configured (LiveKit 1.0 and the 1.7 default).
    #[default]
    Fixed,
    /// LiveKit 1.7 `"dynamic"`: the minimum delay is learned from the user's own pauses between utterances of
    /// one turn (no agent speech in between), as an exponential moving average
    /// `m = alpha * m + (1 - alpha) * pause`, starting at `min_delay` and clamped to `[min_delay, max_delay]`.
    /// `alpha` (default 0.9) weighs the history.
    Dynamic {
        /// Weight of the history, in `(0, 1]`.
        alpha: f32,
    },
}

impl EndpointingMode {
    /// Dynamic endpointing with LiveKit 1.7's `alpha = 0.9`.
    pub fn dynamic() -> Self {
        Self::Dynamic { alpha: 0.9 }
    }
}

/// Endpointing settings. Defaults follow LiveKit 1.7 (`min_delay = 0.5`, `max_delay = 3.0`); LiveKit 1.0 used
/// `max_endpointing_delay = 6.0` (see `docs/turn-taking.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct EndpointingOptions {
    /// How the minimum delay is chosen.
    pub mode: EndpointingMode,
    /// Wait after the end of speech when the turn is likely over (or no detector decides).
    pub min_delay: Duration,
    /// Wait after the end of speech when the turn detector finds the end of turn unlikely.
    pub max_delay: Duration,
}

impl Default for EndpointingOptions {
    fn default() -> Self {
        Self {
            mode: EndpointingMode::Fixed,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
        }
    }
}

impl EndpointingOptions {
    /// LiveKit 1.0's defaults: 0.5 s and 6.0 s.
    pub fn livekit_1_0() -> Self {
        Self {
            max_delay: Duration::from_secs(6),
            ..Self::default()
        }
    }

    /// Sets the mode.
    pub fn with_mode(mut self, mode: EndpointingMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets `min_delay`.
    pub fn with_min_delay(mut self, d: Duration) -> Self {
        self.min_delay = d;
        self
    }

    /// Sets `max_delay`.
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The delay for a turn: `max_delay` when the probability is below the threshold, `min_delay` otherwise
    /// (LiveKit 1.0 §5.3 and 1.7 §6.2; a `max_delay` below `min_delay` is raised to `min_delay`).
    pub fn delay_for(&self, probability: Option<f32>, unlikely_threshold: Option<f32>) -> Duration {
        match (probability, unlikely_threshold) {
            (Some(p), Some(t)) if p < t => self.max_delay.max(self.min_delay),
            _ => self.min_delay,
        }
    }
}

/// Endpointing state of one session: the options plus what dynamic mode learned. Pure logic fed with times.
#[derive(Debug, Clone)]
pub struct Endpointing {
    options: EndpointingOptions,
    learned_min: Duration,
    utterance_ended_at: Option<Instant>,
    agent_spoke_since: bool,
}

impl Endpointing {
    /// State for `options`.
    pub fn new(options: EndpointingOptions) -> Self {
        Self {
            options,
            learned_min: options.min_delay,
            utterance_ended_at: None,
            agent_spoke_since: false,
        }
    }

    /// The options.
    pub fn options(&self) -> &EndpointingOptions {
        &self.options
    }

    /// The minimum delay in force (learned in dynamic mode).
    pub fn min_delay(&self) -> Duration {
        match self.options.mode {
            EndpointingMode::Fixed => self.options.min_delay,
            EndpointingMode::Dynamic { .. } => self.learned_min,
        }
    }

    /// The delay for a turn, as [`EndpointingOptions::delay_for`] with the minimum in force.
    pub fn delay_for(&self, probability: Option<f32>, unlikely_threshold: Option<f32>) -> Duration {
        let mut o = self.options;
        o.min_delay = self.min_delay();
        o.delay_for(probability, unlikely_threshold)
    }

    /// The user started an utterance: the pause since the previous one (same turn, no agent speech in between)
    /// updates the learned minimum.
    pub fn user_speech_started(&mut self, at: Instant) {
        let EndpointingMode::Dynamic { alpha } = self.options.mode else {
            return;
        };
        if let Some(ended) = self.utterance_ended_at.take()
            && !self.agent_spoke_since
        {
            let pause = at.saturating_duration_since(ended).as_secs_f64();
            // A non-finite alpha (NaN) is not a smoothing factor: nothing is learned.
            if pause > 0.0 && alpha.is_finite() {
                let alpha = f64::from(alpha.clamp(f32::MIN_POSITIVE, 1.0));
                let next = alpha * self.learned_min.as_secs_f64() + (1.0 - alpha) * pause;
                let lo = self.options.min_delay.as_secs_f64();
                let hi = self.options.max_delay.as_secs_f64().max(lo);
                // `try_`: a maximum such as `Duration::MAX` does not round-trip through f64.
                self.learned_min = Duration::try_from_secs_f64(next.clamp(lo, hi))
                    .unwrap_or(self.options.max_delay);
            }
        }
        self.agent_spoke_since = false;
    }

    /// The user ended an utterance (last speaking time).
    pub fn user_speech_ended(&mut self, last_speaking_time: Instant) {
        self.utterance_ended_at = Some(last_speaking_time);
        self.agent_spoke_since = false;
    }

    /// The agent started speaking: the next user pause spans an agent turn and is not learned.
    pub fn agent_speech_started(&mut self) {
        self.agent_spoke_since = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_livekit_1_7_behaviour_113() {
        let o = EndpointingOptions::default();
        assert_eq!(o.mode, EndpointingMode::Fixed);
        assert_eq!(o.min_delay, Duration::from_millis(500));
        assert_eq!(o.max_delay, Duration::from_secs(3));
        assert_eq!(
            EndpointingOptions::livekit_1_0().max_delay,
            Duration::from_secs(6)
        );
    }

    #[test]
    fn dynamic_mode_learns_min_delay_from_pauses_between_utterances_behaviour_114() {
        let o = EndpointingOptions::default()
            .with_mode(EndpointingMode::dynamic())
            .with_max_delay(Duration::from_secs(3));
        let mut e = Endpointing::new(o);
        let t0 = Instant::now();
        assert_eq!(e.min_delay(), Duration::from_millis(500));
        // A 1.5 s pause inside the turn: 0.9 * 0.5 + 0.1 * 1.5 = 0.6.
        e.user_speech_ended(t0);
        e.user_speech_started(t0 + Duration::from_millis(1500));
        assert_eq!(e.min_delay().as_millis(), 600);
        // A short pause pulls it down (0.9 * 0.6 + 0.1 * 0.1 = 0.55), never under the configured minimum.
        e.user_speech_ended(t0 + Duration::from_secs(3));
        e.user_speech_started(t0 + Duration::from_millis(3100));
        assert_eq!(e.min_delay().as_millis(), 550);
        for i in 0..50 {
            let base = t0 + Duration::from_secs(4 + i);
            e.user_speech_ended(base);
            e.user_speech_started(base + Duration::from_millis(100));
        }
        assert_eq!(e.min_delay(), Duration::from_millis(500));
        // Never above max_delay.
        for i in 0..100 {
            let base = t0 + Duration::from_secs(10 + 20 * i);
            e.user_speech_ended(base);
            e.user_speech_started(base + Duration::from_secs(15));
        }
        assert_eq!(e.min_delay(), Duration::from_secs(3));
        assert_eq!(e.delay_for(None, None), Duration::from_secs(3));
    }

    #[test]
    fn nan_alpha_and_an_unbounded_max_delay_do_not_panic() {
        let t0 = Instant::now();
        let mut nan = Endpointing::new(
            EndpointingOptions::default().with_mode(EndpointingMode::Dynamic { alpha: f32::NAN }),
        );
        nan.user_speech_ended(t0);
        nan.user_speech_started(t0 + Duration::from_secs(2));
        assert_eq!(
            nan.min_delay(),
            Duration::from_millis(500),
            "NaN learns nothing"
        );
        let mut huge = Endpointing::new(
            EndpointingOptions::default()
                .with_mode(EndpointingMode::Dynamic { alpha: 0.0 })
                .with_max_delay(Duration::MAX),
        );
        huge.user_speech_ended(t0);
        huge.user_speech_started(t0 + Duration::from_secs(2));
        assert_eq!(huge.min_delay(), Duration::from_secs(2));
    }

    #[test]
    fn dynamic_mode_ignores_pauses_spanning_agent_speech_and_fixed_mode_never_learns() {
        let mut e =
            Endpointing::new(EndpointingOptions::default().with_mode(EndpointingMode::dynamic()));
        let t0 = Instant::now();
        e.user_speech_ended(t0);
        e.agent_speech_started();
        e.user_speech_started(t0 + Duration::from_secs(2));
        assert_eq!(e.min_delay(), Duration::from_millis(500));
        let mut f = Endpointing::new(EndpointingOptions::default());
        f.user_speech_ended(t0);
        f.user_speech_started(t0 + Duration::from_secs(2));
        assert_eq!(f.min_delay(), Duration::from_millis(500));
    }

    #[test]
    fn low_probability_selects_max_delay_behaviour_62() {
        let o = EndpointingOptions::default();
        assert_eq!(o.delay_for(Some(0.1), Some(0.2)), o.max_delay);
        assert_eq!(
            o.delay_for(Some(0.2), Some(0.2)),
            o.min_delay,
            "equal is not below"
        );
        assert_eq!(o.delay_for(Some(0.9), Some(0.2)), o.min_delay);
        assert_eq!(o.delay_for(None, Some(0.2)), o.min_delay);
        assert_eq!(o.delay_for(Some(0.0), None), o.min_delay);
    }
}
