//! The pluggable end-of-utterance (EOU) detector: a model that reads the conversation and says how likely the
//! user has finished their turn.

use async_trait::async_trait;

use agents_core::ChatContext;

/// Why an end-of-turn prediction failed. The recognition then falls back to the minimum endpointing delay.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TurnDetectorError {
    /// The model failed.
    #[error("turn detector failed: {reason}")]
    Model {
        /// What failed.
        reason: String,
    },
    /// The model returned something that is not a probability.
    #[error("turn detector returned an invalid probability: {value}")]
    InvalidProbability {
        /// The value returned.
        value: f32,
    },
    /// The prediction did not finish before the maximum endpointing delay.
    #[error("turn detector did not answer before the maximum endpointing delay")]
    Timeout,
}

/// An end-of-utterance model (LiveKit's `_TurnDetector` protocol: `livekit/turn-detector`, or
/// `inference.TurnDetector` in 1.7). Object safe: held as `Arc<dyn TurnDetector>`.
///
/// The recognition calls [`TurnDetector::predict_end_of_turn`] with the session's chat context plus the pending
/// user message; when the probability is below [`TurnDetector::unlikely_threshold`] for the turn's language, the
/// endpointing wait extends from the minimum to the maximum delay.
#[async_trait]
pub trait TurnDetector: Send + Sync + 'static {
    /// Label for logs and metrics.
    fn label(&self) -> &str {
        "turn_detector"
    }

    /// Whether the model handles `language` (`None`: unknown language).
    fn supports_language(&self, language: Option<&str>) -> bool;

    /// The probability under which the end of turn is unlikely, for `language`; `None` when the model has no
    /// threshold for it (then the minimum delay applies).
    fn unlikely_threshold(&self, language: Option<&str>) -> Option<f32>;

    /// The probability, in `[0, 1]`, that the user finished their turn, given the conversation whose last item is
    /// the user's pending message.
    ///
    /// # Errors
    /// [`TurnDetectorError`] when the model fails.
    async fn predict_end_of_turn(&self, chat_ctx: &ChatContext) -> Result<f32, TurnDetectorError>;
}
