//! Go-style durations (`"5s"`, `"1h30m"`, `"300ms"`; a bare integer is nanoseconds), because
//! kuiperbelt configs are parsed with Go's `time.ParseDuration` and yaml.v2.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration read and written in Go's notation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Zero, which kuiperbelt uses for "off" on every timeout.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The duration, or `None` when it is zero ("off").
    pub fn non_zero(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }

    /// True when zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for GoDuration {
    fn from(value: Duration) -> Self {
        Self(value)
    }
}

/// Why a duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Empty input.
    #[error("empty duration")]
    Empty,
    /// A number without a unit (Go accepts a unitless number only when it is 0).
    #[error("missing unit in duration {0:?} (use ns, us, ms, s, m or h)")]
    MissingUnit(String),
    /// An unknown unit.
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// Not a duration at all.
    #[error("invalid duration {0:?}")]
    Invalid(String),
    /// Negative durations make no sense for timeouts.
    #[error("negative duration {0:?} is not allowed")]
    Negative(String),
    /// Larger than Go's int64 nanoseconds.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const NANOS_PER_UNIT: [(&str, u128); 9] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    // Sentinel so the table length stays explicit; never matches a real unit.
    ("", 0),
];

/// Parses Go's `time.ParseDuration` syntax: a sequence of decimal numbers, each with an optional
/// fraction and a unit, such as `"300ms"`, `"1.5h"` or `"2h45m"`.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let owned = || input.to_owned();
    let mut rest = input;
    let mut negative = false;
    if let Some(stripped) = rest.strip_prefix('-') {
        negative = true;
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(if input.is_empty() {
            DurationError::Empty
        } else {
            DurationError::Invalid(owned())
        });
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        let (fraction, after_fraction) = match after_whole.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", after_whole),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(DurationError::Invalid(owned()));
        }
        let unit_len = after_fraction
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_fraction.len());
        let unit = &after_fraction[..unit_len];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(owned()));
        }
        let scale = NANOS_PER_UNIT
            .iter()
            .find(|(name, scale)| *scale > 0 && *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| DurationError::UnknownUnit {
                unit: unit.to_owned(),
                input: owned(),
            })?;
        total = total
            .checked_add(
                component_nanos(whole, fraction, scale)
                    .ok_or_else(|| DurationError::Overflow(owned()))?,
            )
            .ok_or_else(|| DurationError::Overflow(owned()))?;
        rest = &after_fraction[unit_len..];
    }
    if total > i64::MAX as u128 {
        return Err(DurationError::Overflow(owned()));
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(owned()));
    }
    Ok(Duration::from_nanos(total as u64))
}

fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// `whole.fraction` units in nanoseconds, truncating below one nanosecond as Go does.
fn component_nanos(whole: &str, fraction: &str, scale: u128) -> Option<u128> {
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole_value.checked_mul(scale)?;
    let mut divisor: u128 = 1;
    let mut fraction_value: u128 = 0;
    for digit in fraction.bytes().take(30) {
        fraction_value = fraction_value * 10 + u128::from(digit - b'0');
        divisor *= 10;
    }
    nanos = nanos.checked_add(fraction_value.checked_mul(scale)? / divisor)?;
    Some(nanos)
}

impl fmt::Display for GoDuration {
    /// Formats like Go's `Duration.String`: `"0s"`, `"300ms"`, `"1m30s"`, `"1h0m0s"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000 {
            return write!(f, "{nanos}ns");
        }
        if nanos < 1_000_000 {
            return write!(f, "{}\u{b5}s", trim_fraction(nanos, 1_000));
        }
        if nanos < 1_000_000_000 {
            return write!(f, "{}ms", trim_fraction(nanos, 1_000_000));
        }
        let hours = nanos / 3_600_000_000_000;
        let minutes = (nanos / 60_000_000_000) % 60;
        let seconds = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
        if hours > 0 {
            write!(f, "{hours}h{minutes}m{seconds}s")
        } else if minutes > 0 {
            write!(f, "{minutes}m{seconds}s")
        } else {
            write!(f, "{seconds}s")
        }
    }
}

fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(GoDurationVisitor)
    }
}

struct GoDurationVisitor;

impl Visitor<'_> for GoDurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"5s\" or \"300ms\", or an integer number of nanoseconds")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        parse_go_duration(value.trim())
            .map(GoDuration)
            .map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        if value > i64::MAX as u64 {
            return Err(E::custom(format!("duration {value}ns is too large")));
        }
        Ok(GoDuration(Duration::from_nanos(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        u64::try_from(value)
            .map_err(|_| E::custom(format!("negative duration {value}ns is not allowed")))
            .and_then(|nanos| self.visit_u64(nanos))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(GoDuration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(text: &str) -> Duration {
        parse_go_duration(text).unwrap()
    }

    #[test]
    fn parses_what_go_parses() {
        assert_eq!(parse("0"), Duration::ZERO);
        assert_eq!(parse("-0"), Duration::ZERO);
        assert_eq!(parse("5s"), Duration::from_secs(5));
        assert_eq!(parse("300ms"), Duration::from_millis(300));
        assert_eq!(parse("1.5h"), Duration::from_secs(5400));
        assert_eq!(parse("2h45m"), Duration::from_secs(9900));
        assert_eq!(parse("1h2m3.5s"), Duration::from_millis(3_723_500));
        assert_eq!(parse("10us"), Duration::from_micros(10));
        assert_eq!(parse("10\u{b5}s"), Duration::from_micros(10));
        assert_eq!(parse("10\u{3bc}s"), Duration::from_micros(10));
        assert_eq!(parse("7ns"), Duration::from_nanos(7));
        assert_eq!(parse(".5s"), Duration::from_millis(500));
        assert_eq!(parse("5.s"), Duration::from_secs(5));
        assert_eq!(parse("+1s"), Duration::from_secs(1));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_go_duration("5"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_go_duration("5 s"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("5d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("s"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("."),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("-1s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_go_duration("3000000h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(GoDuration::ZERO.to_string(), "0s");
        assert_eq!(GoDuration::from_millis(300).to_string(), "300ms");
        assert_eq!(GoDuration::from_secs(90).to_string(), "1m30s");
        assert_eq!(GoDuration::from_secs(3600).to_string(), "1h0m0s");
        assert_eq!(GoDuration::from_millis(1500).to_string(), "1.5s");
        assert_eq!(
            GoDuration(Duration::from_nanos(1500)).to_string(),
            "1.5\u{b5}s"
        );
    }

    #[test]
    fn integers_are_nanoseconds_as_in_yaml_v2() {
        let value: GoDuration = serde_json::from_str("1000000000").unwrap();
        assert_eq!(value, GoDuration::from_secs(1));
        assert!(serde_json::from_str::<GoDuration>("-5").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(nanos in 0u64..(i64::MAX as u64)) {
            let duration = GoDuration(Duration::from_nanos(nanos));
            prop_assert_eq!(parse_go_duration(&duration.to_string()).map(GoDuration), Ok(duration));
        }

        #[test]
        fn never_panics(text in "\\PC{0,20}") {
            let _ = parse_go_duration(&text);
        }
    }
}
