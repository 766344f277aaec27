//! [`TextFanout`]: one `TextOutput` feeding several.

use std::fmt;
use std::sync::Arc;

use agents_core::audio_io::{TextOutput, TextOutputError};
use async_trait::async_trait;

/// A [`TextOutput`] that copies every text and flush to each of its outputs, in order (e.g. a
/// [`super::TranscriptWriter`] and a [`super::ConsoleView`]). A failing output does not stop the others; the first
/// error is returned.
pub struct TextFanout {
    outputs: Vec<Arc<dyn TextOutput>>,
}

impl TextFanout {
    /// A fan-out over `outputs`.
    pub fn new(outputs: Vec<Arc<dyn TextOutput>>) -> Self {
        Self { outputs }
    }
}

impl fmt::Debug for TextFanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.outputs.iter().map(|o| o.label()))
            .finish()
    }
}

#[async_trait]
impl TextOutput for TextFanout {
    fn label(&self) -> &str {
        "file.TextFanout"
    }

    async fn capture_text(&self, text: &str) -> Result<(), TextOutputError> {
        let mut first = Ok(());
        for o in &self.outputs {
            if let Err(e) = o.capture_text(text).await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    fn flush(&self) {
        for o in &self.outputs {
            o.flush();
        }
    }
}
