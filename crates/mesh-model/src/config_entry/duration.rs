//! Go `time.Duration` values as Consul's JSON carries them: written as Go's `Duration.String()`
//! (`"5s"`, `"1m30s"`, `"1.5ms"`), read from either that syntax or an integer of nanoseconds
//! (mapstructure's weak decoding accepts both, and `consul config write` files use both).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A signed duration in nanoseconds, like Go's `time.Duration`. Signed on purpose: Consul decodes
/// negative values and only then refuses them with a field-specific message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub i64);

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

// === impl GoDuration ===

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(0);
    pub const SECOND: i64 = 1_000_000_000;

    pub fn from_secs(s: i64) -> Self {
        GoDuration(s.saturating_mul(Self::SECOND))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// Parses Go's duration syntax: an optional sign, then one or more `<number><unit>` pairs
    /// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`; fractions allowed), or a bare `0`.
    ///
    /// # Errors
    /// When the text is not in that syntax or overflows an `i64` of nanoseconds.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        let (neg, mut rest) = match input.as_bytes().first() {
            Some(b'-') => (true, &input[1..]),
            Some(b'+') => (false, &input[1..]),
            _ => (false, input),
        };
        if rest == "0" {
            return Ok(GoDuration(0));
        }
        if rest.is_empty() {
            return Err(err("empty duration"));
        }
        let mut total: i128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let int_part = &rest[..int_len];
            rest = &rest[int_len..];
            let mut frac_part = "";
            if let Some(after_dot) = rest.strip_prefix('.') {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                frac_part = &after_dot[..frac_len];
                rest = &after_dot[frac_len..];
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(rest.len(), |(i, _)| i);
            let unit: i128 = match &rest[..unit_len] {
                "ns" => 1,
                "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            rest = &rest[unit_len..];
            let whole: i128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err("number too large"))?
            };
            let mut value = whole.checked_mul(unit).ok_or_else(|| err("overflow"))?;
            // Fractions are scaled digit by digit so "1.5h" is exact and tiny fractions truncate
            // towards zero the way Go's parser does.
            let mut scale = unit;
            for d in frac_part.bytes().take(30) {
                scale /= 10;
                value += i128::from(d - b'0') * scale;
            }
            total = total.checked_add(value).ok_or_else(|| err("overflow"))?;
            if total > i128::from(i64::MAX) {
                return Err(err("overflow"));
            }
        }
        let total = if neg { -total } else { total };
        i64::try_from(total)
            .map(GoDuration)
            .map_err(|_| err("overflow"))
    }
}

impl fmt::Display for GoDuration {
    /// Formats exactly like Go's `Duration.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < 0;
        let mut u = self.0.unsigned_abs();
        let sign = if neg { "-" } else { "" };
        if u == 0 {
            return f.write_str("0s");
        }
        if u < 1_000_000_000 {
            let (unit, div) = if u < 1_000 {
                ("ns", 1)
            } else if u < 1_000_000 {
                ("\u{b5}s", 1_000)
            } else {
                ("ms", 1_000_000)
            };
            return write!(f, "{sign}{}{unit}", frac(u, div));
        }
        let mut out = String::new();
        let hours = u / 3_600_000_000_000;
        u %= 3_600_000_000_000;
        let mins = u / 60_000_000_000;
        u %= 60_000_000_000;
        if hours > 0 {
            out.push_str(&format!("{hours}h{mins}m"));
        } else if mins > 0 {
            out.push_str(&format!("{mins}m"));
        }
        out.push_str(&frac(u, 1_000_000_000));
        out.push('s');
        write!(f, "{sign}{out}")
    }
}

/// `v / div` with the fractional digits Go prints (trailing zeros trimmed).
fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"5s\" or an integer of nanoseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                GoDuration::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                Ok(GoDuration(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                i64::try_from(v)
                    .map(GoDuration)
                    .map_err(|_| E::custom("duration overflows"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
                if v.fract() == 0.0 && v.abs() < 9.2e18 {
                    // The check above bounds the value, so the cast cannot saturate.
                    Ok(GoDuration(v as i64))
                } else {
                    Err(E::custom("duration in nanoseconds must be an integer"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5\u{b5}s"),
            (1_500_000, "1.5ms"),
            (5 * GoDuration::SECOND, "5s"),
            (1_500_000_000, "1.5s"),
            (90 * GoDuration::SECOND, "1m30s"),
            (3600 * GoDuration::SECOND, "1h0m0s"),
            (-5 * GoDuration::SECOND, "-5s"),
        ];
        for (ns, want) in cases {
            assert_eq!(GoDuration(ns).to_string(), want, "{ns}");
            assert_eq!(GoDuration::parse(want).unwrap(), GoDuration(ns), "{want}");
        }
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(
            GoDuration::parse("1h30m").unwrap(),
            GoDuration::from_secs(5400)
        );
        assert_eq!(GoDuration::parse("300ms").unwrap(), GoDuration(300_000_000));
        assert_eq!(GoDuration::parse("2us").unwrap(), GoDuration(2_000));
        assert_eq!(GoDuration::parse(".5s").unwrap(), GoDuration(500_000_000));
        assert_eq!(GoDuration::parse("0").unwrap(), GoDuration(0));
        for bad in ["", "5", "s", "5x", "1.s.", "--5s", "99999999999h"] {
            assert!(GoDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserializes_strings_and_nanoseconds() {
        let d: GoDuration = serde_json::from_str("\"15s\"").unwrap();
        assert_eq!(d, GoDuration::from_secs(15));
        let d: GoDuration = serde_json::from_str("5000000000").unwrap();
        assert_eq!(d, GoDuration::from_secs(5));
        assert!(serde_json::from_str::<GoDuration>("\"soon\"").is_err());
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"5s\"");
    }
}
