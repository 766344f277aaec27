//! How long text takes to speak, and which part of it was spoken after some playback time.

use std::time::Duration;

use super::syllables::count_syllables;
use super::word::word_spans;
use crate::tts::TimedText;

/// LiveKit's speaking rate for transcript pacing: 3.83 syllables per second at speed 1.
pub const STANDARD_SPEECH_RATE: f64 = 3.83;

fn rate(speed: f64) -> f64 {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    STANDARD_SPEECH_RATE * speed
}

/// Estimated syllables of `text` (sum over its words; see [`count_syllables`]).
pub fn count_text_syllables(text: &str) -> usize {
    word_spans(text)
        .into_iter()
        .map(|r| count_syllables(&text[r]))
        .sum()
}

/// Estimated time to speak `text` at `speed` (1 = normal; a non-positive or non-finite speed counts as 1):
/// its syllables at [`STANDARD_SPEECH_RATE`] × `speed`.
pub fn estimate_speech_duration(text: &str, speed: f64) -> Duration {
    syllables_duration(count_text_syllables(text), speed)
}

fn syllables_duration(syllables: usize, speed: f64) -> Duration {
    // Syllable counts are far below 2^52: the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let secs = syllables as f64 / rate(speed);
    Duration::from_secs_f64(secs)
}

/// The part of `text` spoken after `played` of its audio, at normal speed.
///
/// With `timings` (the TTS's word or character alignment of this text, times from the start of its audio), an
/// item counts as spoken once the middle of it was played, and the result ends after the last spoken item. Without
/// timings (or when they cannot be matched to `text`, e.g. the provider normalized it), each word is paced by its
/// syllables at [`STANDARD_SPEECH_RATE`] and counts as spoken once its middle was played.
///
/// The result is a prefix of `text` ending at a word (or aligned character) boundary.
///
/// ```
/// use std::time::Duration;
/// use agents_core::tokenize::truncate_to_duration;
/// // "Hello" (2 syllables) lasts about 0.52 s at 3.83 syllables/s.
/// assert_eq!(truncate_to_duration("Hello there, friend.", Duration::from_millis(400), None), "Hello");
/// assert_eq!(truncate_to_duration("Hello there, friend.", Duration::from_secs(10), None), "Hello there, friend.");
/// ```
pub fn truncate_to_duration<'a>(
    text: &'a str,
    played: Duration,
    timings: Option<&[TimedText]>,
) -> &'a str {
    truncate_to_duration_at_speed(text, played, timings, 1.0)
}

/// [`truncate_to_duration`] for speech at `speed` (used only without timings).
pub fn truncate_to_duration_at_speed<'a>(
    text: &'a str,
    played: Duration,
    timings: Option<&[TimedText]>,
    speed: f64,
) -> &'a str {
    if let Some(timings) = timings.filter(|t| !t.is_empty())
        && let Some(end) = aligned_end(text, played, timings)
    {
        return &text[..end];
    }
    let mut t = Duration::ZERO;
    let mut end = 0;
    for r in word_spans(text) {
        let d = syllables_duration(count_syllables(&text[r.clone()]), speed);
        if t + d / 2 > played {
            break;
        }
        t += d;
        end = r.end;
    }
    &text[..end]
}

/// Byte index in `text` after the last aligned item spoken by `played`; `None` when the items do not match.
fn aligned_end(text: &str, played: Duration, timings: &[TimedText]) -> Option<usize> {
    let mut pos = 0;
    for item in timings {
        let middle = item.start + item.end.saturating_sub(item.start) / 2;
        if middle > played {
            break;
        }
        let needle = item.text.trim();
        if needle.is_empty() {
            continue;
        }
        let found = text[pos..].find(needle)?;
        pos += found + needle.len();
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_follows_the_standard_rate_and_speed() {
        // 4 syllables: "com-mu-ni-ca-tion" is 5; "hello world" = 2 + 1.
        let d = estimate_speech_duration("hello world", 1.0);
        assert!((d.as_secs_f64() - 3.0 / 3.83).abs() < 1e-9, "{d:?}");
        let fast = estimate_speech_duration("hello world", 2.0);
        assert!((fast.as_secs_f64() - 3.0 / 7.66).abs() < 1e-9);
        assert_eq!(estimate_speech_duration("hello world", -1.0), d);
        assert_eq!(estimate_speech_duration("", 1.0), Duration::ZERO);
    }

    #[test]
    fn truncates_by_estimate() {
        let text = "one two three four";
        // 1 syllable each: 0.261 s per word, middles at 0.13, 0.39, 0.65, 0.91 s.
        assert_eq!(truncate_to_duration(text, Duration::ZERO, None), "");
        assert_eq!(
            truncate_to_duration(text, Duration::from_millis(200), None),
            "one"
        );
        assert_eq!(
            truncate_to_duration(text, Duration::from_millis(700), None),
            "one two three"
        );
        assert_eq!(
            truncate_to_duration_at_speed(text, Duration::from_millis(700), None, 2.0),
            text
        );
    }

    #[test]
    fn truncates_by_word_timings() {
        let ms = Duration::from_millis;
        let timings = vec![
            TimedText::new("Hello", ms(0), ms(400)),
            TimedText::new("there,", ms(400), ms(600)),
            TimedText::new("friend.", ms(600), ms(1400)),
        ];
        let text = "Hello there, friend.";
        assert_eq!(truncate_to_duration(text, ms(199), Some(&timings)), "");
        assert_eq!(
            truncate_to_duration(text, ms(500), Some(&timings)),
            "Hello there,"
        );
        assert_eq!(truncate_to_duration(text, ms(1000), Some(&timings)), text);
        // Timings that do not match the text fall back to the estimate.
        let other = vec![TimedText::new("Bonjour", ms(0), ms(100))];
        assert_eq!(truncate_to_duration(text, ms(10_000), Some(&other)), text);
    }

    #[test]
    fn truncates_by_character_timings() {
        let ms = Duration::from_millis;
        let timings: Vec<_> = "Hi you"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                TimedText::new(c.to_string(), ms(100 * i as u64), ms(100 * (i as u64 + 1)))
            })
            .collect();
        assert_eq!(
            truncate_to_duration("Hi you", ms(420), Some(&timings)),
            "Hi y"
        );
    }
}
