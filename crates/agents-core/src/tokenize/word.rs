//! Word splitting, whole-text and streamed.
//!
//! Words are separated by whitespace, as in LiveKit's basic word tokenizer; in addition every CJK ideograph, kana
//! or Hangul syllable is a word of its own (those scripts do not put spaces between words, and one character is
//! about one spoken syllable). With `ignore_punctuation`, leading and trailing characters that are neither letters
//! nor digits are removed (`"test."` -> `test`, `"don't"` stays) and words left empty are dropped.

use std::ops::Range;

/// Whether `c` is written without spaces between words (CJK ideographs, kana, Hangul).
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F) // CJK Extensions B-F, compatibility supplement
}

/// Byte ranges of the words of `text` (with their punctuation).
pub fn word_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || is_cjk(c) {
            if let Some(s) = start.take() {
                spans.push(s..i);
            }
            if is_cjk(c) {
                spans.push(i..i + c.len_utf8());
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        spans.push(s..text.len());
    }
    spans
}

/// `word` without leading and trailing characters that are neither letters nor digits.
pub fn strip_punctuation(word: &str) -> &str {
    word.trim_matches(|c: char| !c.is_alphanumeric())
}

/// The words of `text`; with `ignore_punctuation`, stripped of surrounding punctuation (empty ones dropped).
pub fn split_words(text: &str, ignore_punctuation: bool) -> Vec<String> {
    word_spans(text)
        .into_iter()
        .filter_map(|r| finish_word(&text[r], ignore_punctuation))
        .collect()
}

fn finish_word(word: &str, ignore_punctuation: bool) -> Option<String> {
    let w = if ignore_punctuation {
        strip_punctuation(word)
    } else {
        word
    };
    (!w.is_empty()).then(|| w.to_owned())
}

/// Streaming word tokenizer: push text deltas, get the words they complete.
///
/// ```
/// use agents_core::tokenize::WordStream;
/// let mut s = WordStream::new(true);
/// assert_eq!(s.push_str("Hello, wor"), vec!["Hello"]);
/// assert_eq!(s.push_str("ld! How"), vec!["world"]);
/// assert_eq!(s.end_input(), vec!["How"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WordStream {
    ignore_punctuation: bool,
    buf: String,
}

impl WordStream {
    /// A stream; `ignore_punctuation` strips punctuation around words.
    pub fn new(ignore_punctuation: bool) -> Self {
        Self {
            ignore_punctuation,
            buf: String::new(),
        }
    }

    /// Adds a text delta; returns the words it completed (a word completes at the next space or CJK character).
    pub fn push_str(&mut self, delta: &str) -> Vec<String> {
        self.buf.push_str(delta);
        let spans = word_spans(&self.buf);
        let mut out = Vec::new();
        let mut consumed = 0;
        for r in spans {
            let complete = r.end < self.buf.len() || self.buf[r.clone()].chars().all(is_cjk);
            if !complete {
                break;
            }
            out.extend(finish_word(&self.buf[r.clone()], self.ignore_punctuation));
            consumed = r.end;
        }
        self.buf.drain(..consumed);
        out
    }

    /// Ends the current text: returns the last word, if any (the stream can be reused).
    pub fn flush(&mut self) -> Vec<String> {
        let rest = std::mem::take(&mut self.buf);
        split_words(&rest, self.ignore_punctuation)
    }

    /// Ends the input: returns the last word, if any.
    pub fn end_input(mut self) -> Vec<String> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_livekit_basic_word_tokenizer() {
        let text = "This is a test. Blabla another test! multiple consecutive spaces:     done";
        assert_eq!(
            split_words(text, true),
            vec![
                "This",
                "is",
                "a",
                "test",
                "Blabla",
                "another",
                "test",
                "multiple",
                "consecutive",
                "spaces",
                "done"
            ]
        );
        assert_eq!(
            split_words("to handle. -- ok", false),
            vec!["to", "handle.", "--", "ok"]
        );
        assert_eq!(
            split_words("to handle. -- ok", true),
            vec!["to", "handle", "ok"]
        );
    }

    #[test]
    fn cjk_characters_are_words() {
        assert_eq!(split_words("我爱 Rust!", true), vec!["我", "爱", "Rust"]);
    }
}
