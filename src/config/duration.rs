//! Durations as the original anycastd wrote them: Go's `time.ParseDuration`
//! syntax (`1m30s`, `1.5s`, `100ms`), plus a `d` unit for days.
//!
//! A bare number is rejected: the original read it as nanoseconds, so
//! `check_interval: 10` meant 10 ns, which nobody ever wanted.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The longest duration most config keys take: one day. Every interval,
/// timeout and hold time is at most this, so no deadline computed from them
/// can overflow (see [`ConfigDuration`]).
pub const MAX_SECS: u64 = 86_400;

/// The longest `tls_certificate` `min_valid_for`: ten years.
pub const MAX_LONG_SECS: u64 = 3_650 * 86_400;

/// A duration read from the config file, at most `MAX` seconds (one day by
/// default). Always written back in Go syntax.
///
/// The bound is checked when the file is decoded, so a value past it is a
/// config error naming its key path, never a panic in timer arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDuration<const MAX: u64 = MAX_SECS>(pub Duration);

/// A duration key that may exceed a day (`min_valid_for`).
pub type LongDuration = ConfigDuration<MAX_LONG_SECS>;

impl<const MAX: u64> ConfigDuration<MAX> {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<const MAX: u64> From<Duration> for ConfigDuration<MAX> {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative durations are not allowed")]
    Negative,
    #[error("missing unit after `{0}` (use ns, us, ms, s, m, h or d)")]
    MissingUnit(String),
    #[error("unknown unit `{0}` (use ns, us, ms, s, m, h or d)")]
    UnknownUnit(String),
    #[error("expected a number at `{0}`")]
    ExpectedNumber(String),
    #[error("duration is too large")]
    Overflow,
    #[error("longer than the maximum of {}", format_duration(Duration::from_secs(*.0)))]
    TooLong(u64),
}

/// Parses Go duration syntax plus `d`. `"0"` is accepted, as in Go.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let s = match s.strip_prefix('+') {
        Some(rest) => rest,
        None if s.starts_with('-') => return Err(DurationError::Negative),
        None => s,
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err(DurationError::ExpectedNumber(rest.to_string()));
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: u128 = match unit {
            "" => return Err(DurationError::MissingUnit(number.to_string())),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if frac.contains('.') {
            return Err(DurationError::ExpectedNumber(number.to_string()));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| DurationError::Overflow)?
        };
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or(DurationError::Overflow)?;
        // Fractions are scaled digit by digit so `1.5s` is exact.
        let mut scale = unit_nanos;
        for digit in frac.chars().take(30) {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or(DurationError::Overflow)?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Formats like Go's `Duration.String` (`1m30s`, `100ms`), with days kept as hours.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trim_fraction(nanos, 1_000, "us");
    }
    if nanos < 1_000_000_000 {
        return trim_fraction(nanos, 1_000_000, "ms");
    }
    let mut out = String::new();
    let total_secs = d.as_secs();
    let (h, m) = (total_secs / 3600, (total_secs / 60) % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let sub_minute = Duration::new(total_secs % 60, d.subsec_nanos()).as_nanos();
    out.push_str(&trim_fraction(sub_minute, 1_000_000_000, "s"));
    out
}

fn trim_fraction(value: u128, unit: u128, suffix: &str) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return format!("{whole}{suffix}");
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
}

impl<const MAX: u64> fmt::Display for ConfigDuration<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<const MAX: u64> Serialize for ConfigDuration<MAX> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

struct DurationVisitor<const MAX: u64>;

impl<const MAX: u64> Visitor<'_> for DurationVisitor<MAX> {
    type Value = ConfigDuration<MAX>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string with a unit, such as \"5s\" or \"250ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration(v)
            .and_then(|d| {
                if d > Duration::from_secs(MAX) {
                    Err(DurationError::TooLong(MAX))
                } else {
                    Ok(ConfigDuration(d))
                }
            })
            .map_err(|e| E::custom(format!("invalid duration \"{v}\": {e}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Err(E::custom(bare_number(&v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(E::custom(bare_number(&v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(bare_number(&v.to_string())))
    }
}

fn bare_number(n: &str) -> String {
    format!(
        "expected a duration with a unit, such as \"{n}s\" or \"{n}ms\", found the bare number {n} \
         (the Go anycastd read bare numbers as nanoseconds)"
    )
}

impl<'de, const MAX: u64> Deserialize<'de> for ConfigDuration<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor::<MAX>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("10"),
            Err(DurationError::MissingUnit("10".into()))
        );
        assert_eq!(
            parse_duration("10x"),
            Err(DurationError::UnknownUnit("x".into()))
        );
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert_eq!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn durations_past_their_maximum_are_rejected() {
        let day: ConfigDuration = serde_json::from_str("\"24h\"").unwrap();
        assert_eq!(day.get(), Duration::from_secs(86_400));
        let err = serde_json::from_str::<ConfigDuration>("\"24h0m1s\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid duration \"24h0m1s\": longer than the maximum of 24h0m0s"),
            "{err}"
        );
        assert!(serde_json::from_str::<ConfigDuration>("\"150000000000000d\"").is_err());
        let long: LongDuration = serde_json::from_str("\"365d\"").unwrap();
        assert_eq!(long.get(), Duration::from_secs(365 * 86_400));
        assert!(serde_json::from_str::<LongDuration>("\"3651d\"").is_err());
    }

    #[test]
    fn formats_like_go() {
        for text in [
            "10s", "100ms", "1m30s", "1.5s", "2h0m0s", "3us", "7ns", "0s",
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
