//! Cron expressions: 5 fields (minute hour day-of-month month day-of-week) or 6 with
//! seconds first. Each field compiles to a bit set; a date matches by its month, then by
//! day-of-month and day-of-week with the classic rule: when both are restricted (neither
//! is `*` nor `?`) a day matching either fires, otherwise both must match.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};

use super::RecurrenceError;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CronRule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bit `d` for day-of-month `d` (1..=31).
    dom: u64,
    /// `L` in day-of-month: the last day of the month.
    last_dom: bool,
    /// Bit `m` for month `m` (1..=12).
    months: u64,
    /// Bit `w` for weekday `w` (0 = Sunday).
    dow: u8,
    /// `wL`: bit `w` for "the last weekday `w` of the month".
    last_dow: u8,
    /// `w#k`: `nth[k - 1]` has bit `w` for "the k-th weekday `w` of the month".
    nth: [u8; 5],
    dom_restricted: bool,
    dow_restricted: bool,
    /// Every time of day the rule fires at, sorted.
    times: Vec<NaiveTime>,
}

#[derive(Clone, Copy)]
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name stands for this number (JAN = 1, SUN = 0).
    names_from: u32,
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DOM: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    names_from: 1,
};
const DOW: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &DAYS,
    names_from: 0,
};

impl CronRule {
    pub(crate) fn parse(expr: &str) -> Result<Self, RecurrenceError> {
        let err = |reason: String| RecurrenceError::Cron {
            value: expr.to_owned(),
            reason,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(err(format!(
                    "expected 5 cron fields (minute hour day-of-month month day-of-week), or 6 with seconds first; found {n}"
                )));
            }
        };
        let (min, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let seconds = plain_field(sec, SECOND).map_err(err)?;
        let minutes = plain_field(min, MINUTE).map_err(err)?;
        let hours = plain_field(hour, HOUR).map_err(err)?;
        let months = plain_field(month, MONTH).map_err(err)?;
        let (dom_bits, last_dom) = dom_field(dom).map_err(err)?;
        let (dow_bits, last_dow, nth) = dow_field(dow).map_err(err)?;
        let mut times = Vec::new();
        for h in bits(hours) {
            for m in bits(minutes) {
                for s in bits(seconds) {
                    if let Some(t) = NaiveTime::from_hms_opt(h, m, s) {
                        times.push(t);
                    }
                }
            }
        }
        Ok(Self {
            seconds,
            minutes,
            hours,
            dom: dom_bits,
            last_dom,
            months,
            dow: dow_bits,
            last_dow,
            nth,
            dom_restricted: !matches!(dom, "*" | "?"),
            dow_restricted: !matches!(dow, "*" | "?"),
            times,
        })
    }

    /// How many seconds of a minute the rule names (more than one fires more than once a
    /// minute).
    pub(crate) fn seconds_per_minute(&self) -> u32 {
        self.seconds.count_ones()
    }

    pub(crate) fn matches_date(&self, date: NaiveDate) -> bool {
        let month = date.month();
        if self.months & (1 << month) == 0 {
            return false;
        }
        let day = date.day();
        let len = days_in_month(date.year(), month);
        let dom_ok = self.dom & (1 << day) != 0 || (self.last_dom && day == len);
        let wd = date.weekday().num_days_from_sunday();
        let bit = 1u8 << wd;
        let nth = ((day - 1) / 7) as usize;
        let dow_ok = self.dow & bit != 0
            || (self.last_dow & bit != 0 && day + 7 > len)
            || self.nth.get(nth).is_some_and(|n| n & bit != 0);
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom_ok || dow_ok,
            _ => dom_ok && dow_ok,
        }
    }
}

/// Local wall times of a cron rule from `first` (a date) through `last`, in order.
#[derive(Debug)]
pub(crate) struct CronIter<'a> {
    rule: &'a CronRule,
    date: Option<NaiveDate>,
    last: NaiveDate,
    next_time: usize,
}

impl<'a> CronIter<'a> {
    pub(crate) fn new(rule: &'a CronRule, first: NaiveDate, last: NaiveDate) -> Self {
        Self {
            rule,
            date: Some(first),
            last,
            next_time: 0,
        }
    }
}

impl super::LocalSource for CronIter<'_> {
    fn next_local(&mut self) -> Option<NaiveDateTime> {
        loop {
            let date = self.date.filter(|d| *d <= self.last)?;
            if self.next_time == 0 && !self.rule.matches_date(date) {
                self.date = date.succ_opt();
                continue;
            }
            if let Some(t) = self.rule.times.get(self.next_time) {
                self.next_time += 1;
                return Some(date.and_time(*t));
            }
            self.next_time = 0;
            self.date = date.succ_opt();
        }
    }
}

pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn bits(set: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |b| set & (1u64 << b) != 0)
}

fn token_err(f: FieldSpec, tok: &str, why: &str) -> String {
    format!("{} field: token {tok:?} {why}", f.name)
}

/// A number or a name of the field, in range.
fn value(f: FieldSpec, tok: &str, part: &str) -> Result<u32, String> {
    let n = match part.parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            let upper = part.to_ascii_uppercase();
            match f.names.iter().position(|n| *n == upper) {
                Some(i) => i as u32 + f.names_from,
                None if f.names.is_empty() => {
                    return Err(token_err(f, tok, "is not a number"));
                }
                None => {
                    return Err(token_err(
                        f,
                        tok,
                        &format!("is neither a number nor a name ({})", f.names.join(", ")),
                    ));
                }
            }
        }
    };
    if n < f.min || n > f.max {
        return Err(token_err(
            f,
            tok,
            &format!("is out of range {}-{}", f.min, f.max),
        ));
    }
    Ok(n)
}

/// `*`, `a`, `a-b`, each optionally `/step`; `a/step` runs to the field's maximum.
fn item(f: FieldSpec, tok: &str) -> Result<u64, String> {
    let (range, step) = match tok.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s
                .parse()
                .map_err(|_| token_err(f, tok, "has a step that is not a number"))?;
            if step == 0 {
                return Err(token_err(f, tok, "has a step of 0"));
            }
            (r, Some(step))
        }
        None => (tok, None),
    };
    let (lo, hi) = if range == "*" || range == "?" {
        (f.min, if f.max == 7 { 6 } else { f.max })
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (value(f, tok, a)?, value(f, tok, b)?);
        if a > b {
            return Err(token_err(f, tok, "is a range whose start is after its end"));
        }
        (a, b)
    } else {
        let a = value(f, tok, range)?;
        match step {
            Some(_) => (a, f.max),
            None => (a, a),
        }
    };
    let mut set = 0u64;
    let mut v = lo;
    while v <= hi {
        set |= 1 << v;
        v += step.unwrap_or(1);
    }
    Ok(set)
}

fn plain_field(text: &str, f: FieldSpec) -> Result<u64, String> {
    if text == "?" {
        return Err(token_err(
            f,
            text,
            "is only allowed in day-of-month and day-of-week",
        ));
    }
    let mut set = 0;
    for tok in text.split(',') {
        if tok.is_empty() {
            return Err(token_err(f, text, "has an empty list item"));
        }
        set |= item(f, tok)?;
    }
    Ok(set)
}

fn dom_field(text: &str) -> Result<(u64, bool), String> {
    let mut set = 0;
    let mut last = false;
    for tok in text.split(',') {
        match tok {
            "" => return Err(token_err(DOM, text, "has an empty list item")),
            "L" | "l" => last = true,
            "?" if text == "?" => set |= item(DOM, "*")?,
            _ if tok.contains('?') => {
                return Err(token_err(DOM, tok, "uses ? inside a list (? stands alone)"));
            }
            _ => set |= item(DOM, tok)?,
        }
    }
    Ok((set, last))
}

fn dow_field(text: &str) -> Result<(u8, u8, [u8; 5]), String> {
    let mut set = 0u8;
    let mut last = 0u8;
    let mut nth = [0u8; 5];
    let day = |tok: &str, part: &str| value(DOW, tok, part).map(|d| 1u8 << (d % 7));
    for tok in text.split(',') {
        if tok.is_empty() {
            return Err(token_err(DOW, text, "has an empty list item"));
        }
        if tok == "?" && text == "?" {
            set |= 0x7f;
        } else if tok.contains('?') {
            return Err(token_err(DOW, tok, "uses ? inside a list (? stands alone)"));
        } else if let Some((d, k)) = tok.split_once('#') {
            let k: usize = k
                .parse()
                .ok()
                .filter(|k| (1..=5).contains(k))
                .ok_or_else(|| token_err(DOW, tok, "needs a week number 1-5 after #"))?;
            nth[k - 1] |= day(tok, d)?;
        } else if let Some(d) = tok.strip_suffix(['L', 'l']) {
            if d.is_empty() {
                return Err(token_err(
                    DOW,
                    tok,
                    "needs a weekday before L, like 5L for the last Friday",
                ));
            }
            last |= day(tok, d)?;
        } else {
            // Numbers 0-7 with 7 = Sunday: compile over 0..=7, then fold 7 onto 0.
            let s = item(DOW, tok)?;
            set |= ((s & 0x7f) | ((s >> 7) & 1)) as u8;
        }
    }
    Ok((set, last, nth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn fields_compile_to_the_right_sets() {
        let r = CronRule::parse("*/15 8-18/5 * JAN,mar-May MON-FRI").unwrap();
        assert_eq!(r.minutes, (1 << 0) | (1 << 15) | (1 << 30) | (1 << 45));
        assert_eq!(r.hours, (1 << 8) | (1 << 13) | (1 << 18));
        assert_eq!(r.months, (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5));
        assert_eq!(r.dow, 0b0111110);
        assert!(!r.dom_restricted && r.dow_restricted);
        let r = CronRule::parse("5/20 0 * * 5-7").unwrap();
        assert_eq!(r.minutes, (1 << 5) | (1 << 25) | (1 << 45));
        assert_eq!(r.dow, 0b1100001, "5-7 is Friday, Saturday, Sunday");
        let r = CronRule::parse("30 0 9 * * 0,7").unwrap();
        assert_eq!(r.seconds, 1 << 30);
        assert_eq!(r.dow, 1);
    }

    #[test]
    fn last_nth_and_or_semantics() {
        let last_friday = CronRule::parse("0 17 * * 5L").unwrap();
        assert!(last_friday.matches_date(d(2026, 1, 30)));
        assert!(!last_friday.matches_date(d(2026, 1, 23)));
        let second_tuesday = CronRule::parse("0 9 ? * TUE#2").unwrap();
        assert!(second_tuesday.matches_date(d(2026, 3, 10)));
        assert!(!second_tuesday.matches_date(d(2026, 3, 3)));
        let last_day = CronRule::parse("0 0 L * *").unwrap();
        assert!(last_day.matches_date(d(2024, 2, 29)));
        assert!(!last_day.matches_date(d(2024, 2, 28)));
        let either = CronRule::parse("0 0 13 * FRI").unwrap();
        assert!(either.matches_date(d(2026, 3, 13)), "the 13th");
        assert!(either.matches_date(d(2026, 3, 6)), "a Friday");
        assert!(!either.matches_date(d(2026, 3, 7)));
    }
}
