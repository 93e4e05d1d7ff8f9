//! Schedule expressions: `rate(N unit)` and six-field AWS `cron(min hour dom month dow year)`.

use time::OffsetDateTime;

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every N minutes.
    Rate(u64),
    /// A cron expression.
    Cron(Cron),
}

/// A cron expression as allowed minutes, hours, days, months, weekdays (1 = Sunday) and years.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Option<Vec<u32>>,
    months: Vec<u32>,
    weekdays: Option<Vec<u32>>,
    years: Option<Vec<u32>>,
}

/// Why a schedule expression is invalid.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not `rate(...)` or `cron(...)`.
    #[error("not a rate or cron expression")]
    Syntax,
    /// Bad rate value or unit.
    #[error("invalid rate")]
    Rate,
    /// Bad cron field.
    #[error("invalid cron field {0}")]
    Cron(&'static str),
}

impl Schedule {
    /// Parses a schedule expression. Pure; fuzzed.
    ///
    /// # Errors
    /// [`ScheduleError`] for anything EventBridge would reject (and for `L`, `W`, `#`, which this
    /// platform does not support).
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        if let Some(inner) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let (n, unit) = inner.trim().split_once(' ').ok_or(ScheduleError::Rate)?;
            let n: u64 = n.parse().map_err(|_| ScheduleError::Rate)?;
            if n == 0 || n > 1_000_000 {
                return Err(ScheduleError::Rate);
            }
            // AWS insists on the singular for 1 and the plural otherwise.
            let per = match (unit, n == 1) {
                ("minute", true) | ("minutes", false) => 1,
                ("hour", true) | ("hours", false) => 60,
                ("day", true) | ("days", false) => 1440,
                _ => return Err(ScheduleError::Rate),
            };
            return Ok(Schedule::Rate(n * per));
        }
        let inner = s
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or(ScheduleError::Syntax)?;
        let f: Vec<&str> = inner.split_whitespace().collect();
        let [min, hour, dom, mon, dow, year] = f.as_slice() else {
            return Err(ScheduleError::Cron("count"));
        };
        if (*dom == "?") == (*dow == "?") {
            return Err(ScheduleError::Cron(
                "day-of-month/day-of-week: exactly one must be ?",
            ));
        }
        const MONTHS: &[&str] = &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        Ok(Schedule::Cron(Cron {
            minutes: field(min, 0, 59, &[], "minutes")?,
            hours: field(hour, 0, 23, &[], "hours")?,
            days: if *dom == "?" {
                None
            } else {
                Some(field(dom, 1, 31, &[], "day-of-month")?)
            },
            months: field(mon, 1, 12, MONTHS, "month")?,
            weekdays: if *dow == "?" {
                None
            } else {
                Some(field(dow, 1, 7, DAYS, "day-of-week")?)
            },
            years: if *year == "*" {
                None
            } else {
                Some(field(year, 1970, 2199, &[], "year")?)
            },
        }))
    }
}

impl Cron {
    /// Whether the minute containing `t` (UTC) is scheduled.
    pub fn matches(&self, t: &OffsetDateTime) -> bool {
        let wd = u32::from(t.weekday().number_from_sunday());
        self.minutes.contains(&u32::from(t.minute()))
            && self.hours.contains(&u32::from(t.hour()))
            && self.months.contains(&u32::from(u8::from(t.month())))
            && self
                .days
                .as_ref()
                .is_none_or(|d| d.contains(&u32::from(t.day())))
            && self.weekdays.as_ref().is_none_or(|d| d.contains(&wd))
            && self
                .years
                .as_ref()
                .is_none_or(|y| u32::try_from(t.year()).is_ok_and(|yr| y.contains(&yr)))
    }
}

fn field(
    s: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    what: &'static str,
) -> Result<Vec<u32>, ScheduleError> {
    let err = || ScheduleError::Cron(what);
    let value = |v: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(lo + i as u32);
        }
        let n: u32 = v.parse().map_err(|_| err())?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(err())
        }
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .map_err(|_| err())
                    .and_then(|x| if x == 0 { Err(err()) } else { Ok(x) })?,
            ),
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((x, y)) => (value(x)?, value(y)?),
                None if part.contains('/') => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(err());
        }
        out.extend((a..=b).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_crons() {
        assert_eq!(Schedule::parse("rate(1 minute)"), Ok(Schedule::Rate(1)));
        assert_eq!(Schedule::parse("rate(5 minutes)"), Ok(Schedule::Rate(5)));
        assert_eq!(Schedule::parse("rate(2 hours)"), Ok(Schedule::Rate(120)));
        assert!(Schedule::parse("rate(1 minutes)").is_err());
        assert!(Schedule::parse("rate(0 minutes)").is_err());
        let Ok(Schedule::Cron(c)) = Schedule::parse("cron(0/15 10 ? * MON-FRI *)") else {
            panic!()
        };
        let t = time::macros::datetime!(2026-11-23 10:30 UTC); // a Monday
        assert!(c.matches(&t));
        assert!(!c.matches(&time::macros::datetime!(2026-11-22 10:30 UTC))); // Sunday
        assert!(Schedule::parse("cron(0 10 * * * *)").is_err());
        assert!(Schedule::parse("cron(0 10 L * ? *)").is_err());
    }
}
