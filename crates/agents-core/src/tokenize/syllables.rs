//! An English syllable splitter (hyphenator) for estimating how long text takes to speak.
//!
//! LiveKit hyphenates with Liang's algorithm and the TeX `hyph-en-us` patterns; this module uses plain spelling
//! rules instead, which is enough to pace a transcript and to estimate durations:
//!
//! - a syllable is a run of vowels (`a e i o u y` and accented forms; `y` is a consonant at the start of a word);
//! - a final `e` is silent (`come`), except in a consonant + `le` ending (`ta-ble`) or when it is the only vowel;
//! - `-ed` is silent except after `t`/`d` (`jumped` 1, `want-ed` 2), `-es` is silent except after a sibilant
//!   (`makes` 1, `box-es` 2);
//! - the split is before a single consonant (`mu-ni`), between two consonants (`seg-ment`), after a consonant
//!   digraph (`ch sh th ph wh ck ng`), and right before a voiced `-ed`/`-es`.
//!
//! Limits: English only; words whose spelling hides the count (`chaos`, `create`: vowel pairs read as two
//! syllables, silent letters in names, loan words) are off by about one; split points are plausible, not the
//! dictionary's. Digits count one syllable each, an all-capital word without vowels (`GPT`) one per letter, and
//! each CJK character one.

use super::word::is_cjk;

fn is_vowel(c: char) -> bool {
    matches!(
        c,
        'a' | 'e'
            | 'i'
            | 'o'
            | 'u'
            | 'y'
            | 'à'
            | 'á'
            | 'â'
            | 'ä'
            | 'ã'
            | 'å'
            | 'æ'
            | 'è'
            | 'é'
            | 'ê'
            | 'ë'
            | 'ì'
            | 'í'
            | 'î'
            | 'ï'
            | 'ò'
            | 'ó'
            | 'ô'
            | 'ö'
            | 'õ'
            | 'ø'
            | 'ù'
            | 'ú'
            | 'û'
            | 'ü'
            | 'œ'
    )
}

const DIGRAPHS: &[[char; 2]] = &[
    ['c', 'h'],
    ['s', 'h'],
    ['t', 'h'],
    ['p', 'h'],
    ['w', 'h'],
    ['c', 'k'],
    ['n', 'g'],
];

/// Splits one word into its syllables (see the [module documentation](self) for the rules and limits).
///
/// A word without vowels is one syllable; the pieces always concatenate back to `word`.
///
/// ```
/// use agents_core::tokenize::hyphenate_word;
/// assert_eq!(hyphenate_word("communication"), vec!["com", "mu", "ni", "ca", "tion"]);
/// ```
pub fn hyphenate_word(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let n = lower.len();
    let vowel_at = |i: usize| is_vowel(lower[i]) && !(i == 0 && lower[i] == 'y');
    // Vowel groups as [start, end) char indices.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < n {
        if vowel_at(i) {
            let start = i;
            while i < n && vowel_at(i) {
                i += 1;
            }
            groups.push((start, i));
        } else {
            i += 1;
        }
    }
    // Silent endings.
    let mut suffix_vowel = false;
    if groups.len() > 1
        && let Some(&(s, e)) = groups.last()
        && e - s == 1
        && lower[s] == 'e'
    {
        let before = |k: usize| s.checked_sub(k).map(|j| lower[j]);
        let consonant_before_l = before(2).is_some_and(|c| !is_vowel(c));
        if e == n {
            if !(before(1) == Some('l') && consonant_before_l) {
                groups.pop();
            }
        } else if e + 1 == n && lower[e] == 'd' {
            if matches!(before(1), Some('t' | 'd')) {
                suffix_vowel = true;
            } else {
                groups.pop();
            }
        } else if e + 1 == n && lower[e] == 's' {
            let sibilant = matches!(before(1), Some('s' | 'x' | 'z' | 'c' | 'g'))
                || (matches!(before(1), Some('h')) && matches!(before(2), Some('c' | 's')));
            if sibilant {
                suffix_vowel = true;
            } else {
                groups.pop();
            }
        }
    }
    if groups.len() <= 1 {
        return vec![word.to_owned()];
    }
    let mut cuts = Vec::with_capacity(groups.len() - 1);
    for (k, pair) in groups.windows(2).enumerate() {
        let (a, b) = (pair[0].1, pair[1].0);
        let last = k + 2 == groups.len();
        let cut = if last && suffix_vowel {
            b
        } else if b - a <= 1 {
            a
        } else if DIGRAPHS.contains(&[lower[a], lower[a + 1]]) {
            (a + 2).min(b)
        } else {
            a + 1
        };
        cuts.push(cut);
    }
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(n)) {
        if cut > start {
            out.push(chars[start..cut].iter().collect());
            start = cut;
        }
    }
    out
}

/// Estimated syllables of one whitespace-separated token (see the [module documentation](self)).
pub fn count_syllables(word: &str) -> usize {
    let mut total = 0;
    for part in word.split(|c: char| !c.is_alphanumeric()) {
        let mut letters = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || is_cjk(c) {
                total += 1;
            } else if c.is_alphabetic() {
                letters.push(c);
            }
        }
        if letters.is_empty() {
            continue;
        }
        let no_vowels = !letters.chars().any(|c| is_vowel(c.to_ascii_lowercase()));
        if no_vowels && letters.chars().count() > 1 && letters.chars().all(char::is_uppercase) {
            total += letters.chars().count();
        } else {
            total += hyphenate_word(&letters).len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_livekit_hyphenator_examples() {
        let cases: &[(&str, &[&str])] = &[
            ("Segment", &["Seg", "ment"]),
            ("expected", &["ex", "pect", "ed"]),
            ("communication", &["com", "mu", "ni", "ca", "tion"]),
            ("window", &["win", "dow"]),
            ("welcome", &["wel", "come"]),
            ("bedroom", &["bed", "room"]),
        ];
        for (word, expected) in cases {
            assert_eq!(hyphenate_word(word), *expected, "{word}");
        }
    }

    #[test]
    fn silent_endings() {
        for (word, n) in [
            ("jumped", 1),
            ("wanted", 2),
            ("makes", 1),
            ("boxes", 2),
            ("table", 2),
            ("the", 1),
            ("yes", 1),
            ("rhythm", 1),
            ("beautiful", 3),
        ] {
            assert_eq!(
                count_syllables(word),
                n,
                "{word}: {:?}",
                hyphenate_word(word)
            );
        }
    }

    #[test]
    fn digits_acronyms_cjk_and_punctuation() {
        assert_eq!(count_syllables("2024"), 4);
        assert_eq!(count_syllables("GPT-4"), 4);
        assert_eq!(count_syllables("你好"), 2);
        assert_eq!(count_syllables("--"), 0);
        assert_eq!(count_syllables("Real-Time"), 2);
    }

    #[test]
    fn pieces_concatenate_back() {
        for w in ["strengths", "queueing", "Zürich", "a", "", "schedule"] {
            assert_eq!(hyphenate_word(w).concat(), w);
        }
    }
}
