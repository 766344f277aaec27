//! Text rendering of the transcript lines and the per-turn latency table.

use std::time::Duration;

use crate::conversation::{Line, TurnLatency};

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{}", d.as_millis()))
}

/// One transcript line as printed.
pub fn line(l: &Line) -> String {
    match l {
        Line::User(t) => format!("user:  {t}"),
        Line::Agent { text, interrupted } => {
            format!(
                "agent: {text}{}",
                if *interrupted { " [interrupted]" } else { "" }
            )
        }
        Line::Tool(t) => format!(
            "  tool {}({}) -> {}{}",
            t.name,
            t.arguments,
            if t.output.is_empty() {
                "(no output)"
            } else {
                &t.output
            },
            if t.is_error { " [error]" } else { "" }
        ),
        Line::Latency(t) => format!(
            "  latency: e2e {} ms (end of utterance {} ms, transcription {} ms, LLM ttft {} ms, TTS ttfb {} ms)",
            ms(t.e2e),
            ms(t.end_of_utterance),
            ms(t.transcription),
            ms(t.llm_ttft),
            ms(t.tts_ttfb)
        ),
        Line::Error(e) => format!("  error: {e}"),
    }
}

/// The per-turn latency table (milliseconds; `-` where the session had no measure).
pub fn latency_table(turns: &[&TurnLatency]) -> String {
    let mut out = String::from(
        "turn | end of utterance | transcription | LLM ttft | TTS ttfb |    e2e\n\
         -----+------------------+---------------+----------+----------+-------\n",
    );
    for (i, t) in turns.iter().enumerate() {
        out.push_str(&format!(
            "{:>4} | {:>16} | {:>13} | {:>8} | {:>8} | {:>6}\n",
            i + 1,
            ms(t.end_of_utterance),
            ms(t.transcription),
            ms(t.llm_ttft),
            ms(t.tts_ttfb),
            ms(t.e2e)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_turn_and_dashes_for_missing_values() {
        let a = TurnLatency {
            e2e: Some(Duration::from_millis(812)),
            llm_ttft: Some(Duration::from_millis(95)),
            ..TurnLatency::default()
        };
        let table = latency_table(&[&a, &TurnLatency::default()]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4);
        assert!(
            rows[2].starts_with("   1 |") && rows[2].ends_with("   812"),
            "{}",
            rows[2]
        );
        assert!(rows[2].contains("       95 |"), "{}", rows[2]);
        assert!(rows[3].ends_with("     -"), "{}", rows[3]);
    }
}
