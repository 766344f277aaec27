//! Endpointing delays: how long to wait after the user stops speaking before committing the turn.

use std::time::Duration;

/// How the minimum delay is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum EndpointingMode {
    /// `min_delay` and `max_delay` as configured (LiveKit 1.0 and the 1.7 default).
    #[default]
    Fixed,
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
