//! Splits streamed text into sentences for one synthesis request each, as LiveKit's `StreamAdapter` does with its
//! basic sentence tokenizer: a sentence ends at `.`, `!`, `?` or `…` followed by whitespace (or at a CJK full
//! stop), and short sentences are merged with the next until at least `min_chars` characters.

/// OpenAI's `/audio/speech` takes at most 4096 characters; longer runs without punctuation are cut at a space.
const MAX_CHARS: usize = 4000;

/// Incremental sentence splitter.
#[derive(Debug)]
pub(crate) struct SentenceSplitter {
    buf: String,
    min_chars: usize,
}

fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

fn is_cjk_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}

impl SentenceSplitter {
    pub(crate) fn new(min_chars: usize) -> Self {
        Self {
            buf: String::new(),
            min_chars,
        }
    }

    /// Adds text; returns the sentences it completed.
    pub(crate) fn push(&mut self, text: &str) -> Vec<String> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        while let Some(end) = self.boundary() {
            let sentence = self.buf[..end].trim().to_owned();
            self.buf = self.buf[end..].trim_start().to_owned();
            if !sentence.is_empty() {
                out.push(sentence);
            }
        }
        out
    }

    /// Byte index where the first complete sentence (of at least `min_chars`) ends.
    fn boundary(&self) -> Option<usize> {
        let mut count = 0usize;
        let mut last_space = None;
        let mut iter = self.buf.char_indices().peekable();
        while let Some((i, c)) = iter.next() {
            count += 1;
            if c.is_whitespace() {
                last_space = Some(i);
            }
            let end = i + c.len_utf8();
            let ends_here = is_cjk_terminal(c)
                || (is_terminal(c) && iter.peek().is_some_and(|(_, n)| n.is_whitespace()));
            if ends_here && self.buf[..end].trim().chars().count() >= self.min_chars {
                return Some(end);
            }
            if count >= MAX_CHARS {
                return Some(last_space.unwrap_or(end));
            }
        }
        None
    }

    /// Ends the segment: returns what is left, if anything.
    pub(crate) fn flush(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_terminal_punctuation_followed_by_space() {
        let mut s = SentenceSplitter::new(10);
        assert!(s.push("Hello there, my").is_empty());
        assert_eq!(
            s.push(" friend. How are you? Fi"),
            vec!["Hello there, my friend.", "How are you?"]
        );
        assert!(s.push("ne, 3.5 km").is_empty());
        assert_eq!(s.flush().as_deref(), Some("Fine, 3.5 km"));
        assert_eq!(s.flush(), None);
    }

    #[test]
    fn short_sentences_are_merged() {
        let mut s = SentenceSplitter::new(20);
        assert!(s.push("Hi. Ok. ").is_empty());
        assert_eq!(
            s.push("That is settled then. "),
            vec!["Hi. Ok. That is settled then."]
        );
    }

    #[test]
    fn long_runs_are_cut_below_the_api_limit() {
        let mut s = SentenceSplitter::new(20);
        let text = "word ".repeat(1000);
        let parts = s.push(&text);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].chars().count() <= MAX_CHARS);
    }
}
