//! User presence: speaking, listening, or away after a silence from both sides.

use std::time::Duration;

use tokio::time::Instant;

use agents_core::UserState;

/// Default silence (user and agent) after which the user is away (LiveKit 1.7 `user_away_timeout`).
pub const DEFAULT_USER_AWAY_TIMEOUT: Duration = Duration::from_secs(15);

/// A user-state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStateChange {
    /// Before.
    pub old: UserState,
    /// After.
    pub new: UserState,
}

/// Tracks [`UserState`]: `Speaking` while the user speaks, `Listening` otherwise, and `Away` once neither the user
/// nor the agent spoke for the timeout. The timer runs only while both are silent; user speech resets it.
/// Pure logic: the owner sleeps until [`UserStateTracker::deadline`] and calls [`UserStateTracker::poll`].
#[derive(Debug, Clone)]
pub struct UserStateTracker {
    state: UserState,
    timeout: Option<Duration>,
    agent_speaking: bool,
    deadline: Option<Instant>,
}

impl UserStateTracker {
    /// A tracker in `Listening`, with the away timer armed from `now` (`timeout = None` disables away).
    pub fn new(now: Instant, timeout: Option<Duration>) -> Self {
        let mut t = Self {
            state: UserState::Listening,
            timeout,
            agent_speaking: false,
            deadline: None,
        };
        t.rearm(now);
        t
    }

    /// The current state.
    pub fn state(&self) -> UserState {
        self.state
    }

    /// When the user becomes away if nothing happens.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The user started (`true`) or stopped speaking.
    pub fn user_speaking(&mut self, now: Instant, speaking: bool) -> Option<UserStateChange> {
        let change = self.set(if speaking {
            UserState::Speaking
        } else {
            UserState::Listening
        });
        self.rearm(now);
        change
    }

    /// The agent started (`true`) or stopped speaking.
    pub fn agent_speaking(&mut self, now: Instant, speaking: bool) {
        self.agent_speaking = speaking;
        self.rearm(now);
    }

    /// At or after the deadline the user becomes away.
    pub fn poll(&mut self, now: Instant) -> Option<UserStateChange> {
        match self.deadline {
            Some(d) if now >= d => {
                self.deadline = None;
                self.set(UserState::Away)
            }
            _ => None,
        }
    }

    fn set(&mut self, new: UserState) -> Option<UserStateChange> {
        let old = std::mem::replace(&mut self.state, new);
        (old != new).then_some(UserStateChange { old, new })
    }

    fn rearm(&mut self, now: Instant) {
        self.deadline = match self.timeout {
            Some(t) if !self.agent_speaking && self.state == UserState::Listening => {
                now.checked_add(t)
            }
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn away_after_15_s_of_silence_from_both_sides_behaviour_128() {
        let t0 = Instant::now();
        let mut u = UserStateTracker::new(t0, Some(DEFAULT_USER_AWAY_TIMEOUT));
        assert_eq!(u.deadline(), Some(t0 + S(15)));
        assert_eq!(u.poll(t0 + S(14)), None);
        assert_eq!(
            u.poll(t0 + S(15)),
            Some(UserStateChange {
                old: UserState::Listening,
                new: UserState::Away
            })
        );
        assert_eq!(u.state(), UserState::Away);
        assert_eq!(u.poll(t0 + S(40)), None, "reported once");
    }

    #[test]
    fn speech_resets_away_and_agent_speech_holds_the_timer() {
        let t0 = Instant::now();
        let mut u = UserStateTracker::new(t0, Some(S(15)));
        u.poll(t0 + S(15));
        let c = u.user_speaking(t0 + S(16), true).unwrap();
        assert_eq!((c.old, c.new), (UserState::Away, UserState::Speaking));
        assert_eq!(u.deadline(), None);
        u.user_speaking(t0 + S(17), false);
        assert_eq!(u.deadline(), Some(t0 + S(32)));
        u.agent_speaking(t0 + S(18), true);
        assert_eq!(u.deadline(), None);
        assert_eq!(u.poll(t0 + S(60)), None);
        u.agent_speaking(t0 + S(61), false);
        assert_eq!(u.deadline(), Some(t0 + S(76)));
    }

    #[test]
    fn no_timeout_never_away() {
        let t0 = Instant::now();
        let mut u = UserStateTracker::new(t0, None);
        assert_eq!(u.deadline(), None);
        assert_eq!(u.poll(t0 + S(1000)), None);
    }
}
