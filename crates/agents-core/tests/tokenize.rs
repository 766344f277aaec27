//! Tokenizers and text transforms: LiveKit's reference examples, and the streaming forms give the same result as
//! the whole text for random chunkings.

use agents_core::tokenize::{
    MarkdownFilter, SentenceOptions, SentenceStream, TextTransform, WordStream, default_transforms,
    filter_markdown, split_sentences, split_sentences_with, split_words,
};

/// LiveKit's sentence tokenizer test text (tests/test_tokenizer.py).
const LIVEKIT_TEXT: &str = "Hi! \
LiveKit is a platform for live audio and video applications and services. \
R.T.C stands for Real-Time Communication... again R.T.C. \
Mr. Theo is testing the sentence tokenizer. \
This is a test. Another test. \
A short sentence. \
A longer sentence that is longer than the previous sentence. \
f(x) = x * 2.54 + 42. \
Hey! Hi! Hello! ";

const TEXTS: &[&str] = &[
    LIVEKIT_TEXT,
    "Dr. Who? \"Yes!\" she said... and left. It cost $3.50, i.e. cheap. The U.S. Navy (est. 1775) agreed.",
    "Wait… What?! (Really.) [Sure.] ok.   Then\n\nNew paragraph here.\nSame one. 你好。世界！「引用。」结束",
    "No punctuation at all but quite a long run of words that never ends",
    "Émile a dit: « Très bien. » Ça va? Oui! Mr. Dupont, Mrs. Smith & Prof. X. met at 10 a.m. today.",
    "## Plan\n- **Call** [Bob](https://x.y/a_b) *today*\n- Send `the_file` ~~now~~ later 🎉\n\n```\ncode * here\n```\n| a | b |\n|---|---|\n| 1 | 2 |\n> quote __end__\n",
];

/// A deterministic pseudo-random generator (no dependency needed for chunk sizes).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

/// `text` cut at random character boundaries into pieces of 1 to `max` characters.
fn chunks(text: &str, seed: u64, max: usize) -> Vec<String> {
    let mut rng = Lcg(seed);
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let n = 1 + rng.next(max);
        let end = (i + n).min(chars.len());
        out.push(chars[i..end].iter().collect());
        i = end;
    }
    out
}

#[test]
fn sentences_match_livekit_expectations() {
    assert_eq!(
        split_sentences(LIVEKIT_TEXT),
        vec![
            "Hi! LiveKit is a platform for live audio and video applications and services.",
            "R.T.C stands for Real-Time Communication... again R.T.C.",
            "Mr. Theo is testing the sentence tokenizer.",
            "This is a test. Another test.",
            "A short sentence. A longer sentence that is longer than the previous sentence.",
            "f(x) = x * 2.54 + 42.",
            "Hey! Hi! Hello!",
        ]
    );
}

#[test]
fn streamed_sentences_equal_whole_text_for_any_chunking() {
    for options in [
        SentenceOptions::default(),
        SentenceOptions::default().with_min_sentence_len(0),
        SentenceOptions::default().with_max_sentence_len(25),
    ] {
        for text in TEXTS {
            let whole = split_sentences_with(text, options);
            assert!(!whole.is_empty());
            for seed in 0..40 {
                let mut s = SentenceStream::with_options(options);
                let mut got = Vec::new();
                for c in chunks(text, seed, 1 + (seed as usize % 9)) {
                    got.extend(s.push_str(&c));
                }
                got.extend(s.end_input());
                assert_eq!(got, whole, "seed {seed} options {options:?} text {text:?}");
            }
        }
    }
}

#[test]
fn sentences_are_emitted_as_soon_as_certain() {
    let mut s = SentenceStream::with_options(SentenceOptions::default().with_min_sentence_len(0));
    assert!(
        s.push_str("It works.").is_empty(),
        "the '.' may still be an ellipsis"
    );
    assert_eq!(s.push_str(" "), vec!["It works."]);
    assert!(s.push_str("Then e.g.").is_empty());
    assert!(
        s.push_str(" ").is_empty(),
        "an abbreviation waits for the next word"
    );
    assert!(
        s.push_str("this... ").is_empty(),
        "an ellipsis waits for the next word"
    );
    assert_eq!(
        s.push_str("Now stop! "),
        vec!["Then e.g. this...", "Now stop!"]
    );
    assert!(s.flush().is_empty());
    // The stream is reusable after a flush.
    assert_eq!(s.push_str("Again? Yes"), vec!["Again?"]);
    assert_eq!(s.flush(), vec!["Yes"]);
}

#[test]
fn streamed_words_equal_whole_text_for_any_chunking() {
    for ignore in [true, false] {
        for text in TEXTS {
            let whole = split_words(text, ignore);
            for seed in 0..20 {
                let mut s = WordStream::new(ignore);
                let mut got = Vec::new();
                for c in chunks(text, seed, 6) {
                    got.extend(s.push_str(&c));
                }
                got.extend(s.end_input());
                assert_eq!(got, whole, "seed {seed} text {text:?}");
            }
        }
    }
}

fn run_chunked(t: &mut dyn TextTransform, pieces: &[String]) -> String {
    let mut out = String::new();
    for p in pieces {
        out.push_str(&t.push(p));
    }
    out.push_str(&t.flush());
    out
}

#[test]
fn markdown_and_emoji_filters_are_chunking_invariant() {
    for text in TEXTS {
        let whole = default_transforms().apply(text);
        for seed in 0..40 {
            let pieces = chunks(text, seed, 1 + (seed as usize % 7));
            assert_eq!(
                run_chunked(&mut default_transforms(), &pieces),
                whole,
                "seed {seed} text {text:?}"
            );
        }
    }
}

#[test]
fn markdown_document_is_read_as_plain_text() {
    assert_eq!(
        default_transforms().apply(TEXTS[5]),
        "Plan\nCall Bob today\nSend the_file now later \n\ncode * here\na, b\n1, 2\nquote end\n"
    );
}

#[test]
fn markdown_markers_split_across_deltas() {
    let cases: &[(&[&str], &str)] = &[
        (&["**bo", "ld**"], "bold"),
        (&["*", "*bold*", "*"], "bold"),
        (&["[li", "nk](ht", "tp://x)"], "link"),
        (&["!", "[img](x.png) after"], " after"),
        (&["#", "# Head"], "Head"),
        (&["`", "`", "`py\nx = 1\n`", "``\n"], "x = 1\n"),
        (&["-", "--\n"], ""),
        (&["-", " item"], "item"),
        (&["snake", "_", "case"], "snake_case"),
    ];
    for (pieces, expected) in cases {
        let pieces: Vec<String> = pieces.iter().map(|p| (*p).to_owned()).collect();
        assert_eq!(
            run_chunked(&mut MarkdownFilter::new(), &pieces),
            *expected,
            "{pieces:?}"
        );
        assert_eq!(filter_markdown(&pieces.concat()), *expected);
    }
}

#[test]
fn an_unclosed_marker_is_released_at_the_line_end() {
    let mut f = MarkdownFilter::new();
    assert_eq!(f.push("Price *"), "Price ");
    assert_eq!(f.push("5"), "");
    assert_eq!(f.push(" off\nNext"), "*5 off\nNext");
    assert_eq!(f.flush(), "");
}

/// Random text over an alphabet rich in markers, terminators and multi-byte characters.
fn random_text(seed: u64, len: usize) -> String {
    const ALPHABET: &[&str] = &[
        "a", "B", "word", " ", " ", "\n", "\n\n", "*", "**", "_", "~~", "`", "```", "[", "]", "(",
        ")", "!", "#", "# ", "> ", "- ", "|", ".", "...", "…", "?", "\"", "é", "😀", "👍🏽",
        "\u{200D}", "。", "Mr.", "e.g.", "3.14", "你",
    ];
    let mut rng = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| ALPHABET[rng.next(ALPHABET.len())])
        .collect()
}

#[test]
fn random_inputs_never_panic_and_stream_like_the_whole_text() {
    for seed in 0..300 {
        let text = random_text(seed, 60);
        let pieces = chunks(&text, seed, 1 + (seed as usize % 5));

        let whole = default_transforms().apply(&text);
        assert_eq!(
            run_chunked(&mut default_transforms(), &pieces),
            whole,
            "{text:?}"
        );

        let options = SentenceOptions::default().with_min_sentence_len(seed as usize % 25);
        let sentences = split_sentences_with(&text, options);
        let mut s = SentenceStream::with_options(options);
        let mut got = Vec::new();
        for p in &pieces {
            got.extend(s.push_str(p));
        }
        got.extend(s.end_input());
        assert_eq!(got, sentences, "{text:?}");
        // Nothing is lost but whitespace.
        let squash = |v: &str| v.split_whitespace().collect::<String>();
        assert_eq!(squash(&sentences.join(" ")), squash(&text));

        let mut w = WordStream::new(true);
        let mut words = Vec::new();
        for p in &pieces {
            words.extend(w.push_str(p));
        }
        words.extend(w.end_input());
        assert_eq!(words, split_words(&text, true));
    }
}
