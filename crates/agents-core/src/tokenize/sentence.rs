//! Rule-based sentence splitting, whole-text and streamed.
//!
//! Same approach as LiveKit's basic sentence tokenizer (rules, no model): a sentence ends at terminal punctuation
//! (`.`, `!`, `?`, `…`, and the full-width `。`, `！`, `？`, `｡`) followed by whitespace (full-width terminators need
//! none), including closing quotes and brackets right after it, or at a blank line. A `.` does not end a sentence
//! after a title (`Mr.`, `Dr.`...), after a single initial (`J. Smith`), inside a number or a dotted word (`3.14`,
//! `example.com`), or before a lowercase word after a dotted or common abbreviation (`e.g. this`, `approx. five`); an ellipsis ends one only before
//! a word that is not lowercase. Sentences shorter than `min_sentence_len` characters are merged with the next ones
//! (LiveKit's default is 20), and a run longer than `max_sentence_len` is cut at its last space.
//!
//! The streaming form decides a boundary only once the text after it settles the rule (the whitespace after the
//! terminator, or the next word's first character after an ellipsis or a possible abbreviation), so any chunking of
//! the text gives the same sentences as the whole text.

/// Characters that end a sentence when followed by whitespace.
fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…') || is_full_width_terminal(c)
}

/// Full-width (CJK) terminators end a sentence even without a following space.
fn is_full_width_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '｡')
}

/// Closing quotes and brackets that stay with the sentence they close.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | '」' | '』' | '）' | '】'
    )
}

/// Words after which `.` never ends a sentence (they precede a name).
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "rev", "hon", "st", "mt", "gen", "col", "capt", "lt", "sgt",
    "sen", "rep", "gov", "pres", "messrs", "mme", "mlle",
];

/// Words after which `.` does not end a sentence when a number follows (`No. 5`, `p. 12`).
const NUMBER_ABBREVIATIONS: &[&str] = &[
    "no", "nos", "vol", "p", "pp", "fig", "ch", "sec", "art", "op",
];

/// Words after which `.` does not end a sentence when a lowercase word follows (`approx. five`).
const LOWERCASE_ABBREVIATIONS: &[&str] = &[
    "etc", "approx", "vs", "ca", "cf", "al", "incl", "esp", "min", "max", "dept", "est", "fig",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
];

/// Options of a sentence tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentenceOptions {
    /// Sentences shorter than this many characters are merged with the following ones (0 = never merge).
    pub min_sentence_len: usize,
    /// A run without a boundary is cut at its last space once it reaches this many characters (at least 1).
    pub max_sentence_len: usize,
}

impl Default for SentenceOptions {
    fn default() -> Self {
        Self {
            min_sentence_len: 20,
            max_sentence_len: 4000,
        }
    }
}

impl SentenceOptions {
    /// Sets the shortest sentence emitted alone.
    #[must_use]
    pub fn with_min_sentence_len(mut self, n: usize) -> Self {
        self.min_sentence_len = n;
        self
    }

    /// Sets the longest run emitted without a boundary (at least 1).
    #[must_use]
    pub fn with_max_sentence_len(mut self, n: usize) -> Self {
        self.max_sentence_len = n.max(1);
        self
    }
}

/// Splits `text` into sentences with the default options (merging those under 20 characters).
pub fn split_sentences(text: &str) -> Vec<String> {
    split_sentences_with(text, SentenceOptions::default())
}

/// Splits `text` into sentences with `options`.
pub fn split_sentences_with(text: &str, options: SentenceOptions) -> Vec<String> {
    let mut s = SentenceStream::with_options(options);
    let mut out = s.push_str(text);
    out.extend(s.end_input());
    out
}

/// A scanning position with what the length cut needs to know about the text before it.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// Byte index.
    at: usize,
    /// Characters before `at`.
    count: usize,
    /// Byte index of the last whitespace before `at`.
    last_space: Option<usize>,
}

/// What the scanner decided for the buffered text.
enum Scan {
    /// A sentence ends at this byte index.
    Boundary(usize),
    /// Undecided from this position on: more text is needed.
    NeedMore(Cursor),
    /// No boundary in the buffer (scanned up to its end).
    None(Cursor),
}

/// Streaming sentence tokenizer: push text deltas, get the sentences they complete.
///
/// ```
/// use agents_core::tokenize::SentenceStream;
/// let mut s = SentenceStream::new();
/// assert!(s.push_str("Mr. Smith arrived at no").is_empty());
/// assert_eq!(s.push_str("on. He sat down."), vec!["Mr. Smith arrived at noon."]);
/// assert_eq!(s.flush(), vec!["He sat down."]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SentenceStream {
    options: SentenceOptions,
    /// Text not yet part of an emitted sentence, starting at the current raw sentence.
    buf: String,
    /// Where scanning resumes: no boundary exists before it.
    cursor: Cursor,
    /// Raw sentences waiting to reach `min_sentence_len`.
    pending: String,
}

impl SentenceStream {
    /// A stream with the default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream with `options`.
    pub fn with_options(options: SentenceOptions) -> Self {
        Self {
            options: SentenceOptions {
                max_sentence_len: options.max_sentence_len.max(1),
                ..options
            },
            ..Self::default()
        }
    }

    /// The options.
    pub fn options(&self) -> SentenceOptions {
        self.options
    }

    /// Adds a text delta; returns the sentences it completed, in order.
    pub fn push_str(&mut self, delta: &str) -> Vec<String> {
        self.buf.push_str(delta);
        let mut out = Vec::new();
        self.drain(false, &mut out);
        out
    }

    /// Ends the current text: returns every sentence still buffered (the stream can be reused).
    pub fn flush(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.drain(true, &mut out);
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            out.push(rest);
        }
        self.buf.clear();
        self.cursor = Cursor::default();
        out
    }

    /// Ends the input: returns every sentence still buffered.
    pub fn end_input(mut self) -> Vec<String> {
        self.flush()
    }

    fn drain(&mut self, eof: bool, out: &mut Vec<String>) {
        loop {
            let trimmed = self.buf.len() - self.buf.trim_start().len();
            if trimmed > 0 {
                self.buf.drain(..trimmed);
                self.cursor = Cursor::default();
            }
            match scan(&self.buf, self.cursor, eof, self.options.max_sentence_len) {
                Scan::Boundary(end) => {
                    let sentence = self.buf[..end].trim().to_owned();
                    self.buf.drain(..end);
                    self.cursor = Cursor::default();
                    self.emit(sentence, out);
                }
                Scan::NeedMore(at) => {
                    self.cursor = at;
                    return;
                }
                Scan::None(at) => {
                    if eof {
                        let sentence = std::mem::take(&mut self.buf).trim().to_owned();
                        self.cursor = Cursor::default();
                        self.emit(sentence, out);
                    } else {
                        self.cursor = at;
                    }
                    return;
                }
            }
        }
    }

    fn emit(&mut self, sentence: String, out: &mut Vec<String>) {
        if sentence.is_empty() {
            return;
        }
        if !self.pending.is_empty() {
            let merged = self.pending.chars().count() + 1 + sentence.chars().count();
            if merged > self.options.max_sentence_len {
                out.push(std::mem::take(&mut self.pending));
            } else {
                self.pending.push(' ');
            }
        }
        self.pending.push_str(&sentence);
        if self.pending.chars().count() >= self.options.min_sentence_len {
            out.push(std::mem::take(&mut self.pending));
        }
    }
}

/// The word right before byte `at` (after the last whitespace), without opening quotes or brackets.
fn word_before(s: &str, at: usize) -> &str {
    let start = s[..at]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    s[start..at].trim_start_matches(['"', '\'', '(', '[', '{', '“', '‘', '«'])
}

/// Finds the first sentence boundary of `s` at or after `from`.
fn scan(s: &str, from: Cursor, eof: bool, max_len: usize) -> Scan {
    let Cursor {
        at: mut i,
        mut count,
        mut last_space,
    } = from;
    let here = |i, count, last_space| Cursor {
        at: i,
        count,
        last_space,
    };
    while i < s.len() {
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        if count >= max_len {
            return Scan::Boundary(last_space.filter(|&sp| sp > 0).unwrap_or(i));
        }
        if c == '\n' {
            // A blank line ends a sentence.
            let rest = &s[i + 1..];
            let gap = rest.len() - rest.trim_start_matches([' ', '\t', '\r']).len();
            match rest[gap..].chars().next() {
                Some('\n') => return Scan::Boundary(i),
                None if !eof => return Scan::NeedMore(here(i, count, last_space)),
                _ => {}
            }
        }
        if is_terminal(c) {
            match decide(s, i, eof) {
                Decision::Boundary(end) => return Scan::Boundary(end),
                Decision::NeedMore => return Scan::NeedMore(here(i, count, last_space)),
                Decision::Continue(next) => {
                    count += s[i..next].chars().count();
                    i = next;
                    continue;
                }
            }
        }
        if c.is_whitespace() {
            last_space = Some(i);
        }
        count += 1;
        i += c.len_utf8();
    }
    Scan::None(here(i, count, last_space))
}

enum Decision {
    Boundary(usize),
    NeedMore,
    /// Not a boundary; scanning resumes at this byte index.
    Continue(usize),
}

/// Decides whether the terminator run starting at byte `i` ends a sentence.
fn decide(s: &str, i: usize, eof: bool) -> Decision {
    let run_end = s[i..]
        .find(|c: char| !is_terminal(c))
        .map_or(s.len(), |n| i + n);
    let close_end = s[run_end..]
        .find(|c: char| !is_closer(c))
        .map_or(s.len(), |n| run_end + n);
    if close_end == s.len() {
        // The run or its closers may continue; at the end of the text, it ends the sentence.
        return if eof {
            Decision::Boundary(close_end)
        } else {
            Decision::NeedMore
        };
    }
    let run = &s[i..run_end];
    if run.chars().any(is_full_width_terminal) {
        return Decision::Boundary(close_end);
    }
    let after = &s[close_end..];
    if !after.starts_with(char::is_whitespace) {
        return Decision::Continue(close_end);
    }
    if run.contains(['!', '?']) {
        return Decision::Boundary(close_end);
    }
    let ellipsis = run.chars().count() > 1 || run.contains('…');
    // A single '.': decided without the next word unless the word before may be an abbreviation.
    let word = word_before(s, i);
    let lower = word.to_lowercase();
    if !ellipsis {
        let is_title = TITLES.contains(&lower.as_str());
        let is_initial = {
            let mut cs = word.chars();
            matches!((cs.next(), cs.next()), (Some(c), None) if c.is_uppercase())
        };
        if is_title || is_initial {
            return Decision::Continue(close_end);
        }
        let may_be_abbreviation = word.contains('.')
            || LOWERCASE_ABBREVIATIONS.contains(&lower.as_str())
            || NUMBER_ABBREVIATIONS.contains(&lower.as_str());
        if !may_be_abbreviation {
            return Decision::Boundary(close_end);
        }
    }
    let next_word = after.trim_start();
    let Some(next) = next_word.chars().next() else {
        return if eof {
            Decision::Boundary(close_end)
        } else {
            Decision::NeedMore
        };
    };
    if after[..after.len() - next_word.len()].matches('\n').count() >= 2 {
        return Decision::Boundary(close_end);
    }
    let lower_next = next.is_lowercase();
    if ellipsis {
        // A pause unless a new sentence visibly starts.
        return if lower_next {
            Decision::Continue(close_end)
        } else {
            Decision::Boundary(close_end)
        };
    }
    let number_abbrev = NUMBER_ABBREVIATIONS.contains(&lower.as_str()) && next.is_ascii_digit();
    let lower_abbrev =
        lower_next && (word.contains('.') || LOWERCASE_ABBREVIATIONS.contains(&lower.as_str()));
    if number_abbrev || lower_abbrev {
        Decision::Continue(close_end)
    } else {
        Decision::Boundary(close_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_merge(text: &str) -> Vec<String> {
        split_sentences_with(text, SentenceOptions::default().with_min_sentence_len(0))
    }

    #[test]
    fn splits_on_terminators_with_closers() {
        assert_eq!(
            no_merge("He said \"Stop.\" Then he left! Did he? (Yes.) Fine"),
            vec![
                "He said \"Stop.\"",
                "Then he left!",
                "Did he?",
                "(Yes.)",
                "Fine"
            ]
        );
    }

    #[test]
    fn abbreviations_numbers_and_initials_do_not_split() {
        assert_eq!(
            no_merge(
                "Dr. J. Smith paid 3.14 dollars, e.g. to example.com on p. 3. Then no. 5 left."
            ),
            vec![
                "Dr. J. Smith paid 3.14 dollars, e.g. to example.com on p. 3.",
                "Then no. 5 left."
            ]
        );
        assert_eq!(
            no_merge("It is in the U.S. It is big."),
            vec!["It is in the U.S.", "It is big."]
        );
    }

    #[test]
    fn ellipsis_splits_only_before_a_new_sentence() {
        assert_eq!(
            no_merge("Well... maybe. Wait… What?"),
            vec!["Well... maybe.", "Wait…", "What?"]
        );
    }

    #[test]
    fn cjk_terminators_need_no_space() {
        assert_eq!(
            no_merge("你好。今天天气很好！「走吧。」好"),
            vec!["你好。", "今天天气很好！", "「走吧。」", "好"]
        );
    }

    #[test]
    fn blank_lines_end_sentences() {
        assert_eq!(
            no_merge("Title\n\nSome text\nmore"),
            vec!["Title", "Some text\nmore"]
        );
    }

    #[test]
    fn long_runs_are_cut_at_a_space() {
        let opts = SentenceOptions::default().with_max_sentence_len(12);
        let parts = split_sentences_with("aaaa bbbb cccc dddd eeee", opts);
        assert!(parts.iter().all(|p| p.chars().count() <= 12), "{parts:?}");
        assert_eq!(parts.join(" "), "aaaa bbbb cccc dddd eeee");
    }
}
