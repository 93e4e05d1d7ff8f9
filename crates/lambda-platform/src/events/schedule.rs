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

/// A cron expression as allowed minutes, hours, days, months, weekdays (1 = Sunday) and years,
/// plus AWS's day specials (`L`, `LW`, `15W` in day-of-month; `6L`, `3#2` in day-of-week).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Option<Vec<u32>>,
    day_specials: Vec<DaySpecial>,
    months: Vec<u32>,
    weekdays: Option<Vec<u32>>,
    weekday_specials: Vec<WeekdaySpecial>,
    years: Option<Vec<u32>>,
}

/// Day-of-month specials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DaySpecial {
    /// `L`: the last day of the month.
    Last,
    /// `LW`: the last weekday (Mon–Fri) of the month.
    LastWeekday,
    /// `nW`: the weekday nearest to day n, within the month.
    NearestWeekday(u32),
}

/// Day-of-week specials (weekday 1 = Sunday).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WeekdaySpecial {
    /// `nL`: the last such weekday of the month.
    Last(u32),
    /// `n#k`: the k-th such weekday of the month.
    Nth(u32, u32),
}

const DAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn weekday_value(v: &str, what: &'static str) -> Result<u32, ScheduleError> {
    if let Some(i) = DAY_NAMES.iter().position(|n| n.eq_ignore_ascii_case(v)) {
        return Ok(i as u32 + 1);
    }
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=7).contains(n))
        .ok_or(ScheduleError::Cron(what))
}

/// Splits the specials out of a day-of-month field; the rest is a normal field (or empty).
fn day_specials(s: &str) -> Result<(Vec<DaySpecial>, Vec<&str>), ScheduleError> {
    let mut specials = Vec::new();
    let mut rest = Vec::new();
    for part in s.split(',') {
        if part == "L" {
            specials.push(DaySpecial::Last);
        } else if part == "LW" {
            specials.push(DaySpecial::LastWeekday);
        } else if let Some(n) = part.strip_suffix('W') {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (1..=31).contains(n))
                .ok_or(ScheduleError::Cron("day-of-month"))?;
            specials.push(DaySpecial::NearestWeekday(n));
        } else {
            rest.push(part);
        }
    }
    Ok((specials, rest))
}

/// Splits the specials out of a day-of-week field.
fn weekday_specials(s: &str) -> Result<(Vec<WeekdaySpecial>, Vec<&str>), ScheduleError> {
    let mut specials = Vec::new();
    let mut rest = Vec::new();
    for part in s.split(',') {
        if let Some((d, k)) = part.split_once('#') {
            let k: u32 = k
                .parse()
                .ok()
                .filter(|k| (1..=5).contains(k))
                .ok_or(ScheduleError::Cron("day-of-week"))?;
            specials.push(WeekdaySpecial::Nth(weekday_value(d, "day-of-week")?, k));
        } else if let Some(d) = part.strip_suffix('L').filter(|d| !d.is_empty()) {
            specials.push(WeekdaySpecial::Last(weekday_value(d, "day-of-week")?));
        } else {
            rest.push(part);
        }
    }
    Ok((specials, rest))
}

fn is_weekday(wd: u32) -> bool {
    (2..=6).contains(&wd)
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
    /// [`ScheduleError`] for anything EventBridge would reject.
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
        let (day_specials, dom_rest) = if *dom == "?" {
            (vec![], vec![])
        } else {
            day_specials(dom)?
        };
        let (weekday_specials, dow_rest) = if *dow == "?" {
            (vec![], vec![])
        } else {
            weekday_specials(dow)?
        };
        let plain = |rest: &[&str], lo, hi, names, what| -> Result<Vec<u32>, ScheduleError> {
            if rest.is_empty() {
                Ok(vec![])
            } else {
                field(&rest.join(","), lo, hi, names, what)
            }
        };
        Ok(Schedule::Cron(Cron {
            minutes: field(min, 0, 59, &[], "minutes")?,
            hours: field(hour, 0, 23, &[], "hours")?,
            days: if *dom == "?" {
                None
            } else {
                Some(plain(&dom_rest, 1, 31, &[], "day-of-month")?)
            },
            day_specials,
            months: field(mon, 1, 12, MONTHS, "month")?,
            weekdays: if *dow == "?" {
                None
            } else {
                Some(plain(&dow_rest, 1, 7, DAY_NAMES, "day-of-week")?)
            },
            weekday_specials,
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
        let day = u32::from(t.day());
        let last = u32::from(t.month().length(t.year()));
        // Weekday (1 = Sunday) of day `d` of this month.
        // 35 keeps the subtraction positive (day ≤ 31).
        let wd_of = |d: u32| (wd - 1 + 35 + d - day) % 7 + 1;
        let day_special = |s: &DaySpecial| match *s {
            DaySpecial::Last => day == last,
            DaySpecial::LastWeekday => {
                is_weekday(wd) && (day + 1..=last).all(|d| !is_weekday(wd_of(d)))
            }
            DaySpecial::NearestWeekday(n) => {
                let n = n.min(last);
                let target = match wd_of(n) {
                    7 => {
                        if n == 1 {
                            3
                        } else {
                            n - 1
                        }
                    } // Saturday: Friday, or Monday the 3rd
                    1 => {
                        if n == last {
                            n - 2
                        } else {
                            n + 1
                        }
                    } // Sunday: Monday, or Friday
                    _ => n,
                };
                day == target
            }
        };
        let weekday_special = |s: &WeekdaySpecial| match *s {
            WeekdaySpecial::Last(w) => wd == w && day + 7 > last,
            WeekdaySpecial::Nth(w, k) => wd == w && (day - 1) / 7 + 1 == k,
        };
        self.minutes.contains(&u32::from(t.minute()))
            && self.hours.contains(&u32::from(t.hour()))
            && self.months.contains(&u32::from(u8::from(t.month())))
            && self
                .days
                .as_ref()
                .is_none_or(|d| d.contains(&day) || self.day_specials.iter().any(day_special))
            && self.weekdays.as_ref().is_none_or(|d| {
                d.contains(&wd) || self.weekday_specials.iter().any(weekday_special)
            })
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
        assert!(Schedule::parse("cron(0 10 5X * ? *)").is_err());
        assert!(Schedule::parse("cron(0 10 ? * 3#9 *)").is_err());
    }

    fn cron(s: &str) -> Cron {
        let Ok(Schedule::Cron(c)) = Schedule::parse(s) else {
            panic!("{s}")
        };
        c
    }

    #[test]
    fn aws_day_specials() {
        use time::macros::datetime;
        // L: the last day of the month (Feb 2028 has 29 days).
        let c = cron("cron(0 12 L * ? *)");
        assert!(c.matches(&datetime!(2028-02-29 12:00 UTC)));
        assert!(!c.matches(&datetime!(2028-02-28 12:00 UTC)));
        // LW: the last weekday; 2026-10-31 is a Saturday, so Friday the 30th.
        let c = cron("cron(0 12 LW * ? *)");
        assert!(c.matches(&datetime!(2026-10-30 12:00 UTC)));
        assert!(!c.matches(&datetime!(2026-10-31 12:00 UTC)));
        // 15W: 2026-11-15 is a Sunday → Monday the 16th.
        let c = cron("cron(0 12 15W * ? *)");
        assert!(c.matches(&datetime!(2026-11-16 12:00 UTC)));
        assert!(!c.matches(&datetime!(2026-11-15 12:00 UTC)));
        // 1W on a Saturday (2026-08-01) → Monday the 3rd, never the previous month.
        let c = cron("cron(0 12 1W * ? *)");
        assert!(c.matches(&datetime!(2026-08-03 12:00 UTC)));
        // 6L: the last Friday; November 2026's is the 27th.
        let c = cron("cron(0 12 ? * 6L *)");
        assert!(c.matches(&datetime!(2026-11-27 12:00 UTC)));
        assert!(!c.matches(&datetime!(2026-11-20 12:00 UTC)));
        // 3#2 / TUE#2: the second Tuesday; November 2026's is the 10th.
        for expr in ["cron(0 12 ? * 3#2 *)", "cron(0 12 ? * TUE#2 *)"] {
            let c = cron(expr);
            assert!(c.matches(&datetime!(2026-11-10 12:00 UTC)), "{expr}");
            assert!(!c.matches(&datetime!(2026-11-03 12:00 UTC)), "{expr}");
        }
    }
}
