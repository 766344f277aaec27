//! Text utilities for speech: sentence and word tokenizers (whole-text and streamed), an English syllable
//! counter, speech-duration estimates, truncation to the played audio, and text transforms before TTS.
//!
//! These follow LiveKit Agents' `tokenize` package (basic sentence/word tokenizers, hyphenator) and its text
//! filters; see `docs/text-processing.md` for the rules and their limits.

pub mod duration;
pub mod filters;
pub mod sentence;
pub mod syllables;
pub mod word;

pub use duration::{
    STANDARD_SPEECH_RATE, count_text_syllables, estimate_speech_duration, truncate_to_duration,
    truncate_to_duration_at_speed,
};
pub use filters::{
    EmojiFilter, MarkdownFilter, TextTransform, TransformChain, default_transforms, filter_emoji,
    filter_markdown,
};
pub use sentence::{SentenceOptions, SentenceStream, split_sentences, split_sentences_with};
pub use syllables::{count_syllables, hyphenate_word};
pub use word::{WordStream, split_words, strip_punctuation, word_spans};
