//! Text transforms applied before TTS: markdown and emoji removal, whole-text or over streamed deltas.
//!
//! LiveKit 1.x filters the text sent to TTS with `tts_text_transforms`, by default `["filter_markdown",
//! "filter_emoji"]`; [`default_transforms`] is the same chain. Every transform here works on deltas: a construct
//! split across deltas (`"**bo"` + `"ld**"`) is held back until it is settled, and the output for any chunking equals
//! the output for the whole text.
//!
//! # Markdown
//!
//! - headings (`# Title`), blockquotes (`> `), bullets (`- `, `* `, `+ `) lose their marker; numbered items keep
//!   their number;
//! - emphasis `*x*`, `_x_`, `**x**`, `__x__`, `***x***`, strikethrough `~~x~~` and inline code `` `x` `` keep their
//!   text; `_` only counts at word edges, so `snake_case` stays, and `2 * 3 * 4` stays (a marker followed by a space
//!   opens nothing);
//! - links `[text](url)` become `text`; images `![alt](url)` are removed;
//! - code fences (```` ``` ```` or `~~~` lines) are removed, the code between them is kept verbatim;
//! - horizontal rules and table separator rows are removed; table rows become their cells joined by `, `.
//!
//! An inline construct must close on its line and within 1024 bytes of its opener, otherwise its marker is kept
//! as text; a marker that may still open a construct is held back until the line ends or the limit is reached.
//!
//! # Emoji
//!
//! Pictographs, emoticons, dingbats, regional-indicator flags, skin-tone modifiers, keycap and presentation
//! selectors are removed; a zero-width joiner is removed only inside an emoji sequence (Indic scripts use it too).

/// A transform of text on its way to TTS, fed with deltas.
pub trait TextTransform: Send {
    /// Transforms a delta; returns the text that is settled (some may be held back until later deltas).
    fn push(&mut self, delta: &str) -> String;

    /// Ends the text: returns everything still held back and resets the transform for a new text.
    fn flush(&mut self) -> String;

    /// Transforms a whole text (`push` then `flush`).
    fn apply(&mut self, text: &str) -> String {
        let mut out = self.push(text);
        out.push_str(&self.flush());
        out
    }
}

/// Transforms applied one after the other.
#[derive(Default)]
pub struct TransformChain {
    stages: Vec<Box<dyn TextTransform>>,
}

impl std::fmt::Debug for TransformChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformChain")
            .field("stages", &self.stages.len())
            .finish()
    }
}

impl TransformChain {
    /// An empty chain (passes text through).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a stage.
    #[must_use]
    pub fn with(mut self, stage: impl TextTransform + 'static) -> Self {
        self.stages.push(Box::new(stage));
        self
    }

    /// Appends a boxed stage.
    pub fn push_stage(&mut self, stage: Box<dyn TextTransform>) {
        self.stages.push(stage);
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Whether the chain has no stage.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }
}

impl TextTransform for TransformChain {
    fn push(&mut self, delta: &str) -> String {
        let mut carry = delta.to_owned();
        for stage in &mut self.stages {
            carry = stage.push(&carry);
        }
        carry
    }

    fn flush(&mut self) -> String {
        let mut carry = String::new();
        for stage in &mut self.stages {
            let mut out = stage.push(&carry);
            out.push_str(&stage.flush());
            carry = out;
        }
        carry
    }
}

/// The default transforms before TTS, as LiveKit's: markdown removal, then emoji removal.
pub fn default_transforms() -> TransformChain {
    TransformChain::new()
        .with(MarkdownFilter::new())
        .with(EmojiFilter::new())
}

/// Removes markdown from a whole text (see the [module documentation](self)).
///
/// ```
/// use agents_core::tokenize::filter_markdown;
/// assert_eq!(filter_markdown("## Plan\n- **Call** [Bob](https://x.y)"), "Plan\nCall Bob");
/// ```
pub fn filter_markdown(text: &str) -> String {
    MarkdownFilter::new().apply(text)
}

/// Removes emoji from a whole text (see the [module documentation](self)).
///
/// ```
/// use agents_core::tokenize::filter_emoji;
/// assert_eq!(filter_emoji("Done ✅ 👍🏽!"), "Done  !");
/// ```
pub fn filter_emoji(text: &str) -> String {
    EmojiFilter::new().apply(text)
}

fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF          // pictographs, emoticons, transport, flags, skin tones, extended-A
        | 0x2600..=0x27BF          // miscellaneous symbols, dingbats
        | 0x2B05..=0x2B07 | 0x2B1B..=0x2B1C | 0x2B50 | 0x2B55
        | 0x231A..=0x231B | 0x2328 | 0x23CF | 0x23E9..=0x23F3 | 0x23F8..=0x23FA
        | 0x2194..=0x2199 | 0x21A9..=0x21AA | 0x25AA..=0x25AB | 0x25B6 | 0x25C0 | 0x25FB..=0x25FE
        | 0x2934..=0x2935 | 0x3030 | 0x303D | 0x3297 | 0x3299
        | 0xE0020..=0xE007F) // tag sequences (subdivision flags)
}

fn is_emoji_modifier(c: char) -> bool {
    matches!(c as u32, 0xFE0E | 0xFE0F | 0x20E3)
}

/// Streaming emoji removal.
#[derive(Debug, Clone, Default)]
pub struct EmojiFilter {
    /// The previous character was part of an emoji (a following zero-width joiner belongs to it).
    in_emoji: bool,
}

impl EmojiFilter {
    /// A new filter.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TextTransform for EmojiFilter {
    fn push(&mut self, delta: &str) -> String {
        let mut out = String::with_capacity(delta.len());
        for c in delta.chars() {
            if is_emoji(c) || is_emoji_modifier(c) || (c == '\u{200D}' && self.in_emoji) {
                self.in_emoji = c != '\u{20E3}';
                continue;
            }
            self.in_emoji = false;
            out.push(c);
        }
        out
    }

    fn flush(&mut self) -> String {
        self.in_emoji = false;
        String::new()
    }
}

/// Longest distance from an inline marker to its closer.
const MAX_SPAN: usize = 1024;

/// Streaming markdown removal (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct MarkdownFilter {
    /// Source text not yet transformed.
    buf: String,
    /// `buf` starts at the beginning of a line whose markers are not resolved yet.
    line_start: bool,
    /// Inside a code block opened by this fence.
    fence: Option<&'static str>,
    /// The last source character consumed on this line (for `_` word edges).
    prev: Option<char>,
}

impl Default for MarkdownFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// What the filter can do at the head of its buffer.
enum Step {
    /// Consume this many bytes, emitting this text.
    Emit(usize, String),
    /// Wait for more text.
    NeedMore,
}

impl MarkdownFilter {
    /// A new filter.
    pub fn new() -> Self {
        Self {
            buf: String::new(),
            line_start: true,
            fence: None,
            prev: None,
        }
    }

    fn process(&mut self, eof: bool, out: &mut String) {
        while !self.buf.is_empty() {
            let step = if self.fence.is_some() {
                self.fence_line(eof)
            } else if self.line_start {
                self.line_head(eof)
            } else {
                inline_step(&self.buf, self.prev, eof)
            };
            match step {
                Step::NeedMore => return,
                Step::Emit(n, text) => {
                    let consumed = &self.buf[..n];
                    if consumed.ends_with('\n') {
                        self.line_start = true;
                        self.prev = None;
                    } else if let Some(c) = consumed.chars().next_back() {
                        self.prev = Some(c);
                    }
                    out.push_str(&text);
                    self.buf.drain(..n);
                }
            }
        }
    }

    /// The current line if complete (with its `\n`) or at the end of input.
    fn whole_line(&self, eof: bool) -> Option<(usize, &str)> {
        match self.buf.find('\n') {
            Some(i) => Some((i + 1, &self.buf[..i])),
            None if eof => Some((self.buf.len(), self.buf.as_str())),
            None => None,
        }
    }

    fn fence_line(&mut self, eof: bool) -> Step {
        let Some((n, line)) = self.whole_line(eof) else {
            return Step::NeedMore;
        };
        let newline = if n > line.len() { "\n" } else { "" };
        if let Some(fence) = self.fence
            && line.trim_start().starts_with(fence)
        {
            self.fence = None;
            return Step::Emit(n, String::new());
        }
        Step::Emit(n, format!("{line}{newline}"))
    }

    fn line_head(&mut self, eof: bool) -> Step {
        let (line, complete) = match self.buf.find('\n') {
            Some(i) => (&self.buf[..i], true),
            None => (self.buf.as_str(), eof),
        };
        let n_line = if complete && line.len() < self.buf.len() {
            line.len() + 1
        } else {
            line.len()
        };
        let newline = if n_line > line.len() { "\n" } else { "" };
        let rest = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - rest.len();
        if rest.is_empty() {
            if !complete {
                return Step::NeedMore;
            }
            self.line_start = false;
            return Step::Emit(n_line, newline.to_owned());
        }
        let Some(first) = rest.chars().next() else {
            return Step::NeedMore;
        };
        // Code fences.
        for fence in ["```", "~~~"] {
            if rest.starts_with(fence) {
                if !complete {
                    return Step::NeedMore;
                }
                self.fence = Some(fence);
                return Step::Emit(n_line, String::new());
            }
            if !complete && fence.starts_with(rest) {
                return Step::NeedMore;
            }
        }
        // Tables.
        if first == '|' {
            if !complete {
                return Step::NeedMore;
            }
            let separator = rest
                .chars()
                .all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t'));
            if separator {
                return Step::Emit(n_line, String::new());
            }
            let cells: Vec<String> = rest
                .trim_end()
                .trim_matches('|')
                .split('|')
                .map(|cell| inline_all(cell.trim()))
                .filter(|cell| !cell.is_empty())
                .collect();
            return Step::Emit(n_line, format!("{}{newline}", cells.join(", ")));
        }
        // Horizontal rules and bullets.
        if matches!(first, '-' | '*' | '_' | '+') {
            let only_marks = rest.chars().all(|c| c == first || c == ' ' || c == '\t');
            if only_marks && !complete {
                return Step::NeedMore;
            }
            if only_marks && first != '+' && rest.chars().filter(|&c| c == first).count() >= 3 {
                return Step::Emit(n_line, String::new());
            }
            if first != '_' && rest[1..].starts_with([' ', '\t']) {
                return self.after_marker(marker(indent + 1, line, complete));
            }
        }
        if first == '#' {
            let hashes = rest.len() - rest.trim_start_matches('#').len();
            let after = &rest[hashes..];
            if after.is_empty() && !complete {
                return Step::NeedMore;
            }
            if hashes <= 6 && after.starts_with([' ', '\t']) {
                return self.after_marker(marker(indent + hashes, line, complete));
            }
        }
        if first == '>' {
            let marks = rest.len() - rest.trim_start_matches(['>', ' ', '\t']).len();
            return self.after_marker(marker(indent + marks, line, complete));
        }
        self.line_start = false;
        Step::Emit(indent, String::new())
    }

    fn after_marker(&mut self, step: Step) -> Step {
        if matches!(step, Step::Emit(..)) {
            self.line_start = false;
        }
        step
    }
}

/// Drops a line marker of `len` bytes and the spaces after it, once the text after them is known.
fn marker(len: usize, line: &str, complete: bool) -> Step {
    let after = &line[len..];
    let body = after.trim_start_matches([' ', '\t']);
    if body.is_empty() && !complete {
        return Step::NeedMore;
    }
    Step::Emit(line.len() - body.len(), String::new())
}

impl TextTransform for MarkdownFilter {
    fn push(&mut self, delta: &str) -> String {
        self.buf.push_str(delta);
        let mut out = String::new();
        self.process(false, &mut out);
        out
    }

    fn flush(&mut self) -> String {
        let mut out = String::new();
        self.process(true, &mut out);
        self.buf.clear();
        self.line_start = true;
        self.fence = None;
        self.prev = None;
        out
    }
}

/// Filters a complete piece of inline text (a cell, the inside of emphasis or of a link).
fn inline_all(s: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    let mut prev = None;
    while i < s.len() {
        match inline_step(&s[i..], prev, true) {
            Step::Emit(n, text) => {
                prev = s[i..i + n].chars().next_back();
                out.push_str(&text);
                i += n;
            }
            Step::NeedMore => break,
        }
    }
    out
}

fn is_special(c: char) -> bool {
    matches!(c, '*' | '_' | '~' | '`' | '[' | '!')
}

/// One step of inline filtering at the head of `s` (which never starts a line).
fn inline_step(s: &str, prev: Option<char>, eof: bool) -> Step {
    let Some(first) = s.chars().next() else {
        return Step::NeedMore;
    };
    if first == '\n' {
        return Step::Emit(1, "\n".to_owned());
    }
    if !is_special(first) {
        let n = s
            .find(|c: char| c == '\n' || is_special(c))
            .unwrap_or(s.len());
        return Step::Emit(n, s[..n].to_owned());
    }
    // The rest of the line, bounded.
    let line_end = s.find('\n');
    let line = &s[..line_end.unwrap_or(s.len())];
    let complete = line_end.is_some() || eof;
    let (window, full) = if line.len() > MAX_SPAN {
        let mut end = MAX_SPAN;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        (&line[..end], true)
    } else {
        (line, complete)
    };
    let found = match first {
        '`' => code_span(window, full),
        '*' | '_' | '~' => emphasis(window, first, prev, full),
        '[' => link(window, full).map(|m| m.map(|(n, text)| (n, inline_all(text)))),
        '!' => match window[1..].chars().next() {
            Some('[') => link(&window[1..], full).map(|m| m.map(|(n, _)| (n + 1, String::new()))),
            None if !full => None,
            _ => Some(None),
        },
        _ => Some(None),
    };
    match found {
        None => Step::NeedMore,
        Some(Some((n, text))) => Step::Emit(n, text),
        Some(None) => {
            // Not a construct: the marker run is text.
            let run = s.len() - s.trim_start_matches(first).len();
            Step::Emit(run, s[..run].to_owned())
        }
    }
}

/// `None`: undecided; `Some(None)`: not a construct; `Some(Some((consumed, text)))`: a construct.
type Found<'a> = Option<Option<(usize, String)>>;
type FoundRef<'a> = Option<Option<(usize, &'a str)>>;

fn run_len(s: &str, c: char) -> usize {
    s.len() - s.trim_start_matches(c).len()
}

fn code_span(w: &str, full: bool) -> Found<'static> {
    let k = run_len(w, '`');
    if k == w.len() {
        return if full { Some(None) } else { None };
    }
    let mut j = k;
    while let Some(off) = w[j..].find('`') {
        let at = j + off;
        let r = run_len(&w[at..], '`');
        if at + r == w.len() && !full {
            return None;
        }
        if r == k {
            return Some(Some((at + r, w[k..at].to_owned())));
        }
        j = at + r;
    }
    if full { Some(None) } else { None }
}

fn emphasis(w: &str, d: char, prev: Option<char>, full: bool) -> Found<'static> {
    let k = run_len(w, d);
    let Some(next) = w[k..].chars().next() else {
        return if full { Some(None) } else { None };
    };
    let valid = match d {
        '~' => k == 2,
        '_' => k <= 3 && !prev.is_some_and(char::is_alphanumeric),
        _ => k <= 3,
    };
    if !valid || next.is_whitespace() {
        return Some(None);
    }
    let mut j = k;
    while let Some(off) = w[j..].find(d) {
        let at = j + off;
        let r = run_len(&w[at..], d);
        let after = w[at + r..].chars().next();
        if after.is_none() && !full {
            return None;
        }
        let before_ok = !w[..at].ends_with(char::is_whitespace);
        let after_ok = d != '_' || !after.is_some_and(char::is_alphanumeric);
        if r == k && before_ok && after_ok {
            return Some(Some((at + r, inline_all(&w[k..at]))));
        }
        j = at + r;
    }
    if full { Some(None) } else { None }
}

/// `[text](target)` at the head of `w`: the bytes it spans and its text.
fn link(w: &str, full: bool) -> FoundRef<'_> {
    let undecided = if full { Some(None) } else { None };
    let Some(close) = w.find(']') else {
        return undecided;
    };
    match w[close + 1..].chars().next() {
        None => return undecided,
        Some('(') => {}
        Some(_) => return Some(None),
    }
    let Some(end) = w[close + 2..].find(')') else {
        return undecided;
    };
    Some(Some((close + 2 + end + 1, &w[1..close])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markdown() {
        assert_eq!(
            filter_markdown("A **bold**, *it*, __u__, _e_, ~~s~~ and `code` ***both***."),
            "A bold, it, u, e, s and code both."
        );
        assert_eq!(
            filter_markdown("snake_case_name and 2 * 3 * 4"),
            "snake_case_name and 2 * 3 * 4"
        );
        assert_eq!(
            filter_markdown("See [the docs](https://x.io/a_b) ![logo](l.png)now"),
            "See the docs now"
        );
        assert_eq!(
            filter_markdown("An **unclosed bold\nline"),
            "An **unclosed bold\nline"
        );
        assert_eq!(filter_markdown("[1] and [x] (y) !"), "[1] and [x] (y) !");
    }

    #[test]
    fn block_markdown() {
        let md = "# Title\n\n> quoted *text*\n- one\n* two\n+ three\n1. first\n---\n```rust\nlet x = a * b;\n```\n| a | b |\n|---|:-:|\n| **1** | 2 |\n";
        assert_eq!(
            filter_markdown(md),
            "Title\n\nquoted text\none\ntwo\nthree\n1. first\nlet x = a * b;\na, b\n1, 2\n"
        );
    }

    #[test]
    fn emoji() {
        assert_eq!(
            filter_emoji("Hi 👋🏽, 👨‍👩‍👧 family! 🇫🇷 1️⃣ ok ❤️"),
            "Hi ,  family!  1 ok "
        );
        // A zero-width joiner outside emoji stays.
        assert_eq!(filter_emoji("ന്\u{200D}"), "ന്\u{200D}");
    }

    #[test]
    fn split_markers_are_removed() {
        let mut f = MarkdownFilter::new();
        let mut out = f.push("This is **bo");
        assert_eq!(out, "This is ");
        out.push_str(&f.push("ld** text"));
        out.push_str(&f.flush());
        assert_eq!(out, "This is bold text");
    }

    #[test]
    fn chain_applies_in_order() {
        let mut chain = default_transforms();
        assert_eq!(chain.len(), 2);
        let mut out = chain.push("**Great** 🎉 ");
        out.push_str(&chain.push("[job](u"));
        out.push_str(&chain.push(")!"));
        out.push_str(&chain.flush());
        assert_eq!(out, "Great  job!");
    }
}
