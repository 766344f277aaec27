//! The demo's two tools, with real local logic: a fixed weather table and UTC-offset arithmetic for the local time
//! (no time-zone database; daylight saving time follows the EU and US rules in pure integer arithmetic).

use std::time::{SystemTime, UNIX_EPOCH};

use agents::tools::{FunctionTool, ToolError};
use schemars::JsonSchema;
use serde::Deserialize;

/// Daylight saving rule of a city.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dst {
    /// No daylight saving time.
    None,
    /// EU: +1 h from the last Sunday of March 01:00 UTC to the last Sunday of October 01:00 UTC.
    Eu,
    /// US: +1 h from the second Sunday of March 02:00 local to the first Sunday of November 02:00 local.
    Us,
}

/// A city the tools know: (name, weather in °C, sky, standard UTC offset in minutes, DST rule).
const CITIES: &[(&str, i32, &str, i32, Dst)] = &[
    ("Paris", 18, "partly cloudy", 60, Dst::Eu),
    ("London", 14, "drizzling", 0, Dst::Eu),
    ("Berlin", 16, "sunny", 60, Dst::Eu),
    ("Tokyo", 22, "clear", 9 * 60, Dst::None),
    ("New York", 12, "windy", -5 * 60, Dst::Us),
    ("San Francisco", 17, "foggy", -8 * 60, Dst::Us),
    ("Sydney", 24, "sunny", 10 * 60, Dst::None),
    ("Mumbai", 31, "humid", 5 * 60 + 30, Dst::None),
];

fn city(name: &str) -> Result<&'static (&'static str, i32, &'static str, i32, Dst), ToolError> {
    let wanted = name.trim();
    CITIES
        .iter()
        .find(|c| c.0.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| {
            ToolError::new(format!(
                "unknown city {wanted:?}; known cities: {}",
                CITIES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// The weather report the `get_weather` tool returns for `name`.
///
/// # Errors
/// A [`ToolError`] naming the known cities when `name` is not one of them.
pub fn weather_report(name: &str) -> Result<String, ToolError> {
    let (name, temp, sky, _, _) = city(name)?;
    Ok(format!("{temp} degrees Celsius and {sky} in {name}"))
}

/// The local time the `get_time` tool returns for `name` at `now`, as `HH:MM (UTC±hh:mm)`.
///
/// # Errors
/// A [`ToolError`] when `name` is unknown or `now` is before 1970.
pub fn local_time(name: &str, now: SystemTime) -> Result<String, ToolError> {
    let &(name, _, _, std_offset, dst) = city(name)?;
    let unix = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ToolError::new("the system clock is before 1970"))?
        .as_secs() as i64;
    let offset = std_offset + if in_dst(dst, unix, std_offset) { 60 } else { 0 };
    let local = unix + i64::from(offset) * 60;
    let minute_of_day = local.rem_euclid(86_400) / 60;
    let sign = if offset < 0 { '-' } else { '+' };
    Ok(format!(
        "{:02}:{:02} in {name} (UTC{sign}{:02}:{:02})",
        minute_of_day / 60,
        minute_of_day % 60,
        offset.abs() / 60,
        offset.abs() % 60
    ))
}

/// Whether `unix` (seconds) falls in daylight saving time under `rule` for a city at `std_offset` minutes.
fn in_dst(rule: Dst, unix: i64, std_offset: i32) -> bool {
    let days = unix.div_euclid(86_400);
    let (year, _, _) = civil_from_days(days);
    match rule {
        Dst::None => false,
        Dst::Eu => {
            let start = nth_sunday_from_end(year, 3) * 86_400 + 3_600;
            let end = nth_sunday_from_end(year, 10) * 86_400 + 3_600;
            (start..end).contains(&unix)
        }
        Dst::Us => {
            // 02:00 local standard time = 02:00 - offset in UTC.
            let shift = 7_200 - i64::from(std_offset) * 60;
            let start = nth_sunday(year, 3, 2) * 86_400 + shift;
            // The end is at 02:00 local daylight time = 01:00 local standard time.
            let end = nth_sunday(year, 11, 1) * 86_400 + shift - 3_600;
            (start..end).contains(&unix)
        }
    }
}

/// Days since 1970-01-01 of the `n`-th Sunday (1-based) of `month` in `year`.
fn nth_sunday(year: i64, month: u32, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday.
    let weekday = (first + 4).rem_euclid(7);
    first + (7 - weekday) % 7 + 7 * (n - 1)
}

/// Days since 1970-01-01 of the last Sunday of `month` in `year`.
fn nth_sunday_from_end(year: i64, month: u32) -> i64 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = days_from_civil(next_year, next_month, 1) - 1;
    last - (last + 4).rem_euclid(7)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of `days` since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Look up the current weather in a city.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WeatherArgs {
    /// City name, e.g. "Paris".
    pub city: String,
}

/// Get the current local time in a city.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TimeArgs {
    /// City name, e.g. "Tokyo".
    pub city: String,
}

/// Look up the current weather in a city.
async fn get_weather(args: WeatherArgs) -> Result<String, ToolError> {
    weather_report(&args.city)
}

/// Get the current local time in a city.
async fn get_time(args: TimeArgs) -> Result<String, ToolError> {
    local_time(&args.city, SystemTime::now())
}

/// The two tools, `get_weather` and `get_time`.
///
/// # Errors
/// When a tool's schema cannot be generated (a bug).
pub fn tools() -> anyhow::Result<Vec<FunctionTool>> {
    Ok(vec![
        FunctionTool::new(get_weather)?,
        FunctionTool::new(get_time)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(year: i64, month: u32, day: u32, h: i64, m: i64) -> SystemTime {
        let secs = days_from_civil(year, month, day) * 86_400 + h * 3_600 + m * 60;
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1, 0, 59, 60, 365, 11_016, 19_782, 20_000, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn tokyo_is_nine_hours_ahead_all_year() {
        assert_eq!(
            local_time("tokyo", at(2026, 1, 15, 23, 30)).unwrap(),
            "08:30 in Tokyo (UTC+09:00)"
        );
        assert_eq!(
            local_time("Tokyo", at(2026, 7, 1, 3, 5)).unwrap(),
            "12:05 in Tokyo (UTC+09:00)"
        );
    }

    #[test]
    fn paris_follows_eu_summer_time() {
        // 2026: summer time from Sunday 29 March to Sunday 25 October, at 01:00 UTC.
        assert_eq!(
            local_time("Paris", at(2026, 3, 29, 0, 59)).unwrap(),
            "01:59 in Paris (UTC+01:00)"
        );
        assert_eq!(
            local_time("Paris", at(2026, 3, 29, 1, 0)).unwrap(),
            "03:00 in Paris (UTC+02:00)"
        );
        assert_eq!(
            local_time("Paris", at(2026, 10, 25, 1, 0)).unwrap(),
            "02:00 in Paris (UTC+01:00)"
        );
    }

    #[test]
    fn new_york_follows_us_daylight_time() {
        // 2026: from Sunday 8 March 07:00 UTC to Sunday 1 November 06:00 UTC.
        assert_eq!(
            local_time("new york", at(2026, 3, 8, 6, 59)).unwrap(),
            "01:59 in New York (UTC-05:00)"
        );
        assert_eq!(
            local_time("New York", at(2026, 3, 8, 7, 0)).unwrap(),
            "03:00 in New York (UTC-04:00)"
        );
        assert_eq!(
            local_time("New York", at(2026, 11, 1, 5, 59)).unwrap(),
            "01:59 in New York (UTC-04:00)"
        );
        assert_eq!(
            local_time("New York", at(2026, 11, 1, 6, 0)).unwrap(),
            "01:00 in New York (UTC-05:00)"
        );
    }

    #[test]
    fn half_hour_offsets_and_unknown_cities() {
        assert_eq!(
            local_time("Mumbai", at(2026, 5, 5, 20, 0)).unwrap(),
            "01:30 in Mumbai (UTC+05:30)"
        );
        assert_eq!(
            weather_report(" paris ").unwrap(),
            "18 degrees Celsius and partly cloudy in Paris"
        );
        let err = weather_report("Atlantis").unwrap_err().to_string();
        assert!(err.contains("Atlantis") && err.contains("Tokyo"), "{err}");
        assert!(local_time("Atlantis", SystemTime::now()).is_err());
    }
}
