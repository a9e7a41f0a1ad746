//! RFC 5545 RRULEs, expanded with python-dateutil's semantics: the rule walks periods of
//! its frequency (a year, a month, a week from WKST, a day, an hour, a minute) every
//! INTERVAL; in each period the days pass the BY* filters, each day takes the times of
//! BYHOUR × BYMINUTE × BYSECOND, BYSETPOS picks among them, and COUNT / UNTIL stop the walk.
//! Missing BY* parts default from DTSTART as dateutil does. Times are local wall times;
//! the zone is applied afterwards (see `local.rs`).

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;

use super::RecurrenceError;
use super::cron::days_in_month;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Freq {
    Yearly,
    Monthly,
    Weekly,
    Daily,
    Hourly,
    Minutely,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    Utc(NaiveDateTime),
    Local(NaiveDateTime),
}

/// A parsed RRULE, before the defaults that depend on DTSTART.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RruleRule {
    pub freq: Freq,
    pub interval: u32,
    pub count: Option<u32>,
    pub until: Option<Until>,
    /// Monday = 0, as in dateutil.
    pub wkst: u32,
    pub bymonth: Vec<u32>,
    pub bymonthday: Vec<i32>,
    pub byyearday: Vec<i32>,
    /// `(weekday, ordinal)`; ordinal 0 for a plain weekday.
    pub byday: Vec<(u32, i32)>,
    pub byhour: Option<Vec<u32>>,
    pub byminute: Option<Vec<u32>>,
    pub bysecond: Option<Vec<u32>>,
    pub bysetpos: Vec<i32>,
}

const DAY_NAMES: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

impl RruleRule {
    pub(crate) fn parse(text: &str) -> Result<Self, RecurrenceError> {
        let err = |reason: String| RecurrenceError::Rrule {
            value: text.to_owned(),
            reason,
        };
        let body = text.strip_prefix("RRULE:").unwrap_or(text);
        let mut seen: Vec<String> = Vec::new();
        let mut freq = None;
        let mut r = RruleRule {
            freq: Freq::Daily,
            interval: 1,
            count: None,
            until: None,
            wkst: 0,
            bymonth: Vec::new(),
            bymonthday: Vec::new(),
            byyearday: Vec::new(),
            byday: Vec::new(),
            byhour: None,
            byminute: None,
            bysecond: None,
            bysetpos: Vec::new(),
        };
        for part in body.split(';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(err(format!("part {part:?} is not KEY=VALUE")));
            };
            let key = key.trim().to_ascii_uppercase();
            let value = value.trim().to_ascii_uppercase();
            if value.is_empty() {
                return Err(err(format!("{key} has an empty value")));
            }
            if seen.contains(&key) {
                return Err(err(format!("{key} appears twice")));
            }
            seen.push(key.clone());
            let ints = |lo: i32, hi: i32, signed: bool| -> Result<Vec<i32>, RecurrenceError> {
                value
                    .split(',')
                    .map(|v| {
                        v.parse::<i32>()
                            .ok()
                            .filter(|n| {
                                (lo..=hi).contains(n) || (signed && (-hi..=-lo).contains(n))
                            })
                            .ok_or_else(|| {
                                let range = if signed {
                                    format!("{lo}..{hi} or -{hi}..-{lo}")
                                } else {
                                    format!("{lo}..{hi}")
                                };
                                err(format!("{key} value {v:?} is not an integer in {range}"))
                            })
                    })
                    .collect()
            };
            let unsigned = |v: Vec<i32>| v.into_iter().map(|n| n as u32).collect::<Vec<_>>();
            match key.as_str() {
                "FREQ" => {
                    freq = Some(match value.as_str() {
                        "YEARLY" => Freq::Yearly,
                        "MONTHLY" => Freq::Monthly,
                        "WEEKLY" => Freq::Weekly,
                        "DAILY" => Freq::Daily,
                        "HOURLY" => Freq::Hourly,
                        "MINUTELY" => Freq::Minutely,
                        "SECONDLY" => {
                            return Err(err(
                                "FREQ=SECONDLY is not accepted: occurrences must be at least 1 minute apart"
                                    .into(),
                            ));
                        }
                        other => {
                            return Err(err(format!(
                                "FREQ {other:?} is not one of YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY"
                            )));
                        }
                    })
                }
                "INTERVAL" => r.interval = ints(1, 10_000, false)?.first().copied().unwrap_or(1) as u32,
                "COUNT" => r.count = Some(ints(1, 1_000_000_000, false)?.first().copied().unwrap_or(1) as u32),
                "UNTIL" => r.until = Some(parse_until(&value).ok_or_else(|| {
                    err(format!(
                        "UNTIL {value:?} is not a date-time like 20261231T235959Z (UTC) or 20261231T235959 (local) or a date like 20261231"
                    ))
                })?),
                "WKST" => {
                    r.wkst = DAY_NAMES
                        .iter()
                        .position(|d| *d == value)
                        .ok_or_else(|| err(format!("WKST {value:?} is not a weekday MO..SU")))?
                        as u32
                }
                "BYMONTH" => r.bymonth = unsigned(ints(1, 12, false)?),
                "BYMONTHDAY" => r.bymonthday = ints(1, 31, true)?,
                "BYYEARDAY" => r.byyearday = ints(1, 366, true)?,
                "BYHOUR" => r.byhour = Some(unsigned(ints(0, 23, false)?)),
                "BYMINUTE" => r.byminute = Some(unsigned(ints(0, 59, false)?)),
                "BYSECOND" => r.bysecond = Some(unsigned(ints(0, 59, false)?)),
                "BYSETPOS" => r.bysetpos = ints(1, 366, true)?,
                "BYDAY" => {
                    for d in value.split(',') {
                        let split = d.len().saturating_sub(2);
                        let (n, name) = (d.get(..split).unwrap_or(""), d.get(split..).unwrap_or(""));
                        let wd = DAY_NAMES.iter().position(|x| *x == name).ok_or_else(|| {
                            err(format!("BYDAY value {d:?} does not end in a weekday MO..SU"))
                        })? as u32;
                        let ord = if n.is_empty() {
                            0
                        } else {
                            n.parse::<i32>()
                                .ok()
                                .filter(|k| *k != 0 && (-53..=53).contains(k))
                                .ok_or_else(|| {
                                    err(format!("BYDAY value {d:?} has an ordinal outside -53..53 (not 0)"))
                                })?
                        };
                        r.byday.push((wd, ord));
                    }
                }
                "BYWEEKNO" | "BYEASTER" => {
                    return Err(err(format!("{key} is not supported")));
                }
                "DTSTART" | "TZID" => {
                    return Err(err(format!(
                        "{key} belongs in the schedule's dtstart and timezone fields, not in the rule"
                    )));
                }
                other => return Err(err(format!("unknown part {other:?}"))),
            }
        }
        r.freq = freq.ok_or_else(|| err("FREQ is required".into()))?;
        if r.count.is_some() && r.until.is_some() {
            return Err(err("COUNT and UNTIL cannot both be given (RFC 5545)".into()));
        }
        if r.freq > Freq::Monthly && r.byday.iter().any(|(_, n)| *n != 0) {
            return Err(err(format!(
                "BYDAY ordinals like +1MO or -1FR only apply to FREQ=MONTHLY or FREQ=YEARLY, not FREQ={}",
                format!("{:?}", r.freq).to_uppercase()
            )));
        }
        if r.freq == Freq::Monthly && r.byday.iter().any(|(_, n)| n.abs() > 5) {
            return Err(err(
                "BYDAY ordinals in a monthly rule must be within -5..5".into()
            ));
        }
        Ok(r)
    }

    /// How many seconds of a minute the rule can name.
    pub(crate) fn seconds_per_minute(&self) -> usize {
        self.bysecond.as_ref().map_or(1, |s| {
            let mut s = s.clone();
            s.sort_unstable();
            s.dedup();
            s.len()
        })
    }
}

fn parse_until(v: &str) -> Option<Until> {
    if let Some(t) = v.strip_suffix('Z') {
        return NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%S")
            .ok()
            .map(Until::Utc);
    }
    if v.len() == 8 {
        return NaiveDate::parse_from_str(v, "%Y%m%d")
            .ok()
            .map(|d| Until::Local(d.and_time(NaiveTime::MIN)));
    }
    NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
        .ok()
        .map(Until::Local)
}

/// Membership over small integers.
#[derive(Debug, Clone, Default)]
struct Set(u64);

impl Set {
    fn of(values: impl IntoIterator<Item = u32>) -> Self {
        Self(values.into_iter().fold(0, |s, v| s | (1u64 << (v & 63))))
    }
    fn has(&self, v: i64) -> bool {
        (0..64).contains(&v) && self.0 & (1 << v) != 0
    }
}

/// The rule with its DTSTART defaults applied, ready to walk.
#[derive(Debug, Clone)]
pub(crate) struct Expanded {
    freq: Freq,
    interval: i64,
    count: Option<u32>,
    until: Option<NaiveDateTime>,
    wkst: u32,
    dtstart: NaiveDateTime,
    bymonth: Option<Set>,
    bymonth_list: Vec<u32>,
    bymonthday: Vec<i32>,
    bynmonthday: Vec<i32>,
    byyearday: Vec<i32>,
    byweekday: Option<Set>,
    bynweekday: Vec<(u32, i32)>,
    byhour: Option<Set>,
    byminute: Option<Set>,
    byminute_list: Vec<u32>,
    bysecond_list: Vec<u32>,
    bysetpos: Vec<i32>,
    /// The times of every day for FREQ=DAILY and coarser.
    timeset: Vec<NaiveTime>,
    exdate: Vec<NaiveDateTime>,
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

impl Expanded {
    pub(crate) fn new(
        rule: &RruleRule,
        dtstart: NaiveDateTime,
        tz: &Tz,
        exdate: &[NaiveDateTime],
    ) -> Self {
        let freq = rule.freq;
        let mut bymonth = rule.bymonth.clone();
        let mut bymonthday = rule.bymonthday.clone();
        let mut byday = rule.byday.clone();
        if rule.byyearday.is_empty() && bymonthday.is_empty() && byday.is_empty() {
            match freq {
                Freq::Yearly => {
                    if bymonth.is_empty() {
                        bymonth = vec![dtstart.month()];
                    }
                    bymonthday = vec![dtstart.day() as i32];
                }
                Freq::Monthly => bymonthday = vec![dtstart.day() as i32],
                Freq::Weekly => byday = vec![(dtstart.weekday().num_days_from_monday(), 0)],
                _ => {}
            }
        }
        let byweekday: Vec<u32> = byday
            .iter()
            .filter(|(_, n)| *n == 0 || freq > Freq::Monthly)
            .map(|(d, _)| *d)
            .collect();
        let bynweekday: Vec<(u32, i32)> = byday
            .iter()
            .filter(|(_, n)| *n != 0 && freq <= Freq::Monthly)
            .copied()
            .collect();
        let byhour = match (&rule.byhour, freq < Freq::Hourly) {
            (Some(h), _) => Some(sorted(h.clone())),
            (None, true) => Some(vec![dtstart.hour()]),
            (None, false) => None,
        };
        let byminute = match (&rule.byminute, freq < Freq::Minutely) {
            (Some(m), _) => Some(sorted(m.clone())),
            (None, true) => Some(vec![dtstart.minute()]),
            (None, false) => None,
        };
        let bysecond = sorted(
            rule.bysecond
                .clone()
                .unwrap_or_else(|| vec![dtstart.second()]),
        );
        let byminute_list = byminute.clone().unwrap_or_default();
        let mut timeset = Vec::new();
        if freq < Freq::Hourly {
            for h in byhour.iter().flatten() {
                for m in &byminute_list {
                    for s in &bysecond {
                        if let Some(t) = NaiveTime::from_hms_opt(*h, *m, *s) {
                            timeset.push(t);
                        }
                    }
                }
            }
        }
        let until = rule.until.map(|u| match u {
            Until::Local(t) => t,
            // An UTC UNTIL bounds the local times that are not after its local reading.
            Until::Utc(t) => tz.from_utc_datetime(&t).naive_local(),
        });
        let mut exdate = exdate.to_vec();
        exdate.sort_unstable();
        Self {
            freq,
            interval: i64::from(rule.interval.max(1)),
            count: rule.count,
            until,
            wkst: rule.wkst,
            dtstart,
            bymonth: (!bymonth.is_empty()).then(|| Set::of(bymonth.iter().copied())),
            bymonth_list: sorted(bymonth),
            bymonthday: bymonthday.iter().copied().filter(|d| *d > 0).collect(),
            bynmonthday: bymonthday.iter().copied().filter(|d| *d < 0).collect(),
            byyearday: rule.byyearday.clone(),
            byweekday: (!byweekday.is_empty()).then(|| Set::of(byweekday)),
            bynweekday,
            byhour: byhour.map(Set::of),
            byminute: byminute.map(Set::of),
            byminute_list,
            bysecond_list: bysecond,
            bysetpos: rule.bysetpos.clone(),
            timeset,
            exdate,
        }
    }

    pub(crate) fn dtstart(&self) -> NaiveDateTime {
        self.dtstart
    }

    pub(crate) fn counted(&self) -> bool {
        self.count.is_some()
    }
}

/// Day masks of one year (plus seven days of the next, for weeks that cross it), as
/// dateutil's `_iterinfo`.
#[derive(Debug, Default)]
struct YearInfo {
    year: i32,
    month: u32,
    len: usize,
    next_len: usize,
    jan1: Option<NaiveDate>,
    /// Weekday of Jan 1, Monday = 0.
    weekday0: usize,
    mmask: Vec<u32>,
    mdaymask: Vec<i32>,
    nmdaymask: Vec<i32>,
    /// Start index of each month, 13 entries.
    mrange: Vec<usize>,
    nwdaymask: Vec<bool>,
}

fn year_len(y: i32) -> usize {
    if days_in_month(y, 2) == 29 { 366 } else { 365 }
}

impl YearInfo {
    fn rebuild(&mut self, e: &Expanded, year: i32, month: u32) {
        let new_year = self.jan1.is_none() || year != self.year;
        if new_year {
            self.year = year;
            self.len = year_len(year);
            self.next_len = year_len(year + 1);
            self.jan1 = NaiveDate::from_ymd_opt(year, 1, 1);
            self.weekday0 = self
                .jan1
                .map_or(0, |d| d.weekday().num_days_from_monday() as usize);
            self.mmask.clear();
            self.mdaymask.clear();
            self.nmdaymask.clear();
            self.mrange.clear();
            self.mrange.push(0);
            for m in 1..=12 {
                let dim = days_in_month(year, m) as i32;
                for d in 1..=dim {
                    self.mmask.push(m);
                    self.mdaymask.push(d);
                    self.nmdaymask.push(d - dim - 1);
                }
                self.mrange.push(self.mmask.len());
            }
            for d in 1..=7 {
                self.mmask.push(1);
                self.mdaymask.push(d);
                self.nmdaymask.push(d - 32);
            }
        }
        if !e.bynweekday.is_empty() && (new_year || month != self.month) {
            self.nwdaymask.clear();
            self.nwdaymask.resize(self.len + 7, false);
            let mut ranges = Vec::new();
            if e.freq == Freq::Yearly {
                if e.bymonth_list.is_empty() {
                    ranges.push((0, self.len));
                } else {
                    for m in &e.bymonth_list {
                        let m = *m as usize;
                        ranges.push((self.mrange[m - 1], self.mrange[m]));
                    }
                }
            } else if e.freq == Freq::Monthly {
                let m = month as usize;
                ranges.push((self.mrange[m - 1], self.mrange[m]));
            }
            for (first, last) in ranges {
                let last = last as i64 - 1;
                let first = first as i64;
                for (wd, n) in &e.bynweekday {
                    let (wd, n) = (i64::from(*wd), i64::from(*n));
                    let i = if n < 0 {
                        let i = last + (n + 1) * 7;
                        i - (self.wday(i) - wd).rem_euclid(7)
                    } else {
                        let i = first + (n - 1) * 7;
                        i + (7 - self.wday(i) + wd).rem_euclid(7)
                    };
                    if first <= i && i <= last {
                        self.nwdaymask[i as usize] = true;
                    }
                }
            }
        }
        self.month = month;
    }

    fn wday(&self, i: i64) -> i64 {
        (self.weekday0 as i64 + i).rem_euclid(7)
    }
}

/// The walk of one rule, as dateutil's `rrule._iter`.
#[derive(Debug)]
pub(crate) struct RruleIter<'a> {
    e: &'a Expanded,
    ii: YearInfo,
    year: i32,
    month: u32,
    day: i64,
    hour: i64,
    minute: i64,
    weekday: u32,
    timeset: Vec<NaiveTime>,
    remaining: Option<u32>,
    last: NaiveDate,
    pending: std::collections::VecDeque<NaiveDateTime>,
    days: Vec<usize>,
    done: bool,
}

impl<'a> RruleIter<'a> {
    /// Walks from DTSTART; with `skip_to` (only for rules without COUNT) periods that end
    /// before that date are jumped over. Stops after periods starting past `last`.
    pub(crate) fn new(e: &'a Expanded, skip_to: Option<NaiveDate>, last: NaiveDate) -> Self {
        let d = e.dtstart;
        let mut it = Self {
            e,
            ii: YearInfo::default(),
            year: d.year(),
            month: d.month(),
            day: i64::from(d.day()),
            hour: i64::from(d.hour()),
            minute: i64::from(d.minute()),
            weekday: d.weekday().num_days_from_monday(),
            timeset: Vec::new(),
            remaining: e.count,
            last,
            pending: Default::default(),
            days: Vec::new(),
            done: false,
        };
        if let Some(target) = skip_to.filter(|_| e.count.is_none()) {
            it.jump(target);
        }
        it.ii.rebuild(e, it.year, it.month);
        it.timeset = it.first_timeset();
        it
    }

    fn first_timeset(&self) -> Vec<NaiveTime> {
        let e = self.e;
        if e.freq < Freq::Hourly {
            return e.timeset.clone();
        }
        let hour_bad = e.byhour.as_ref().is_some_and(|s| !s.has(self.hour));
        let minute_bad =
            e.freq >= Freq::Minutely && e.byminute.as_ref().is_some_and(|s| !s.has(self.minute));
        if hour_bad || minute_bad {
            Vec::new()
        } else {
            self.hm_timeset()
        }
    }

    fn hm_timeset(&self) -> Vec<NaiveTime> {
        let e = self.e;
        let (h, m) = (self.hour as u32, self.minute as u32);
        let mut out = Vec::new();
        let minutes: &[u32] = if e.freq == Freq::Hourly {
            &e.byminute_list
        } else {
            std::slice::from_ref(&m)
        };
        for mm in minutes {
            for s in &e.bysecond_list {
                if let Some(t) = NaiveTime::from_hms_opt(h, *mm, *s) {
                    out.push(t);
                }
            }
        }
        out.sort_unstable();
        out
    }

    fn date(&self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)?
            .checked_add_days(Days::new(u64::try_from(self.day - 1).ok()?))
    }

    fn set_date(&mut self, d: NaiveDate) {
        self.year = d.year();
        self.month = d.month();
        self.day = i64::from(d.day());
    }

    /// Moves whole intervals forward so the walk starts just before `target`. The walk
    /// only ever visits DTSTART plus whole intervals, so skipping some of them changes
    /// nothing after the new start.
    fn jump(&mut self, target: NaiveDate) {
        let Some(start) = self.date() else { return };
        if target <= start {
            return;
        }
        let iv = self.e.interval;
        match self.e.freq {
            Freq::Yearly => {
                let k = (i64::from(target.year()) - i64::from(self.year) - 1) / iv;
                if k > 0 {
                    self.year += (k * iv) as i32;
                }
            }
            Freq::Monthly => {
                let months = (i64::from(target.year()) * 12 + i64::from(target.month0()))
                    - (i64::from(self.year) * 12 + i64::from(self.month - 1));
                let k = (months - 1) / iv;
                if k > 0 {
                    let total = i64::from(self.year) * 12 + i64::from(self.month - 1) + k * iv;
                    self.year = total.div_euclid(12) as i32;
                    self.month = total.rem_euclid(12) as u32 + 1;
                }
            }
            Freq::Weekly => {
                let back = (i64::from(self.weekday) - i64::from(self.e.wkst)).rem_euclid(7);
                let Some(week0) = start.checked_sub_days(Days::new(back as u64)) else {
                    return;
                };
                let weeks = (target - week0).num_days() / 7;
                let k = (weeks - 1) / iv;
                if k >= 1
                    && let Some(d) = week0.checked_add_days(Days::new((k * iv * 7) as u64))
                {
                    self.set_date(d);
                    self.weekday = self.e.wkst;
                }
            }
            Freq::Daily => {
                let k = ((target - start).num_days() - 1) / iv;
                if k > 0
                    && let Some(d) = start.checked_add_days(Days::new((k * iv) as u64))
                {
                    self.set_date(d);
                }
            }
            Freq::Hourly | Freq::Minutely => {
                let unit = if self.e.freq == Freq::Hourly {
                    3600
                } else {
                    60
                };
                let now = start.and_hms_opt(self.hour as u32, self.minute as u32, 0);
                let (Some(now), Some(goal)) = (now, target.and_hms_opt(0, 0, 0)) else {
                    return;
                };
                let k = ((goal - now).num_seconds() / unit - 1) / iv;
                if k > 0 {
                    let t = now + chrono::Duration::seconds(k * iv * unit);
                    self.set_date(t.date());
                    self.hour = i64::from(t.hour());
                    self.minute = i64::from(t.minute());
                }
            }
        }
    }

    /// Expands one period into `pending`, then moves to the next period.
    fn period(&mut self) {
        let e = self.e;
        let Some(jan1) = self.ii.jan1 else {
            self.done = true;
            return;
        };
        let ii = &self.ii;
        let (start, end) = match e.freq {
            Freq::Yearly => (0, ii.len),
            Freq::Monthly => (
                ii.mrange[self.month as usize - 1],
                ii.mrange[self.month as usize],
            ),
            Freq::Weekly => {
                let Some(today) = self.date() else {
                    self.done = true;
                    return;
                };
                let mut i = (today - jan1).num_days().max(0) as usize;
                let start = i;
                for _ in 0..7 {
                    i += 1;
                    if ii.wday(i as i64) as u32 == e.wkst {
                        break;
                    }
                }
                (start, i)
            }
            _ => {
                let Some(today) = self.date() else {
                    self.done = true;
                    return;
                };
                let i = (today - jan1).num_days().max(0) as usize;
                (i, i + 1)
            }
        };
        let period_start = jan1.checked_add_days(Days::new(start as u64));
        if period_start.is_none_or(|d| d > self.last) {
            self.done = true;
            return;
        }
        let mut filtered = false;
        self.days.clear();
        for i in start..end.min(ii.mmask.len()) {
            if self.day_passes(i) {
                self.days.push(i);
            } else {
                filtered = true;
            }
        }
        let mut found: Vec<NaiveDateTime> = Vec::new();
        let at = |i: usize, t: &NaiveTime| {
            jan1.checked_add_days(Days::new(i as u64))
                .map(|d| d.and_time(*t))
        };
        if !e.bysetpos.is_empty() && !self.timeset.is_empty() {
            let n = self.timeset.len() as i64;
            for pos in &e.bysetpos {
                let pos = i64::from(*pos);
                let (daypos, timepos) = if pos < 0 {
                    (pos.div_euclid(n), pos.rem_euclid(n))
                } else {
                    ((pos - 1).div_euclid(n), (pos - 1).rem_euclid(n))
                };
                let idx = if daypos < 0 {
                    self.days.len() as i64 + daypos
                } else {
                    daypos
                };
                if idx < 0 {
                    continue;
                }
                if let (Some(i), Some(t)) = (
                    self.days.get(idx as usize),
                    self.timeset.get(timepos as usize),
                ) && let Some(res) = at(*i, t)
                    && !found.contains(&res)
                {
                    found.push(res);
                }
            }
            found.sort_unstable();
        } else {
            for i in &self.days {
                for t in &self.timeset {
                    if let Some(res) = at(*i, t) {
                        found.push(res);
                    }
                }
            }
        }
        for res in found {
            if e.until.is_some_and(|u| res > u) {
                self.done = true;
                return;
            }
            if res >= e.dtstart {
                if let Some(c) = self.remaining.as_mut() {
                    if *c == 0 {
                        self.done = true;
                        return;
                    }
                    *c -= 1;
                }
                if e.exdate.binary_search(&res).is_err() {
                    self.pending.push_back(res);
                }
            }
        }
        self.advance(filtered);
    }

    fn day_passes(&self, i: usize) -> bool {
        let e = self.e;
        let ii = &self.ii;
        if e.bymonth
            .as_ref()
            .is_some_and(|s| !s.has(i64::from(ii.mmask[i])))
        {
            return false;
        }
        if e.byweekday
            .as_ref()
            .is_some_and(|s| !s.has(ii.wday(i as i64)))
        {
            return false;
        }
        if !e.bynweekday.is_empty() && !ii.nwdaymask.get(i).copied().unwrap_or(false) {
            return false;
        }
        if (!e.bymonthday.is_empty() || !e.bynmonthday.is_empty())
            && !e.bymonthday.contains(&ii.mdaymask[i])
            && !e.bynmonthday.contains(&ii.nmdaymask[i])
        {
            return false;
        }
        if !e.byyearday.is_empty() {
            let (len, next) = (ii.len as i32, ii.next_len as i32);
            let i = i as i32;
            let ok = if i < len {
                e.byyearday.contains(&(i + 1)) || e.byyearday.contains(&(-len + i))
            } else {
                e.byyearday.contains(&(i + 1 - len)) || e.byyearday.contains(&(-next + i - len))
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// dateutil's `__mod_distance`: steps of INTERVAL until a value in `set`.
    fn mod_distance(&self, value: i64, set: &Set, base: i64) -> Option<(i64, i64)> {
        let mut acc = 0;
        let mut v = value;
        for _ in 0..base {
            let s = v + self.e.interval;
            acc += s.div_euclid(base);
            v = s.rem_euclid(base);
            if set.has(v) {
                return Some((acc, v));
            }
        }
        None
    }

    fn advance(&mut self, mut filtered: bool) {
        let e = self.e;
        let iv = e.interval;
        let mut fixday = false;
        match e.freq {
            Freq::Yearly => {
                self.year = self.year.saturating_add(iv as i32);
                if self.year > 9999 {
                    self.done = true;
                    return;
                }
                self.ii.rebuild(e, self.year, self.month);
            }
            Freq::Monthly => {
                let total = i64::from(self.year) * 12 + i64::from(self.month - 1) + iv;
                self.year = total.div_euclid(12) as i32;
                self.month = total.rem_euclid(12) as u32 + 1;
                if self.year > 9999 {
                    self.done = true;
                    return;
                }
                self.ii.rebuild(e, self.year, self.month);
            }
            Freq::Weekly => {
                let (wd, wk) = (i64::from(self.weekday), i64::from(e.wkst));
                self.day += if wk > wd {
                    -(wd + 1 + (6 - wk)) + iv * 7
                } else {
                    -(wd - wk) + iv * 7
                };
                self.weekday = e.wkst;
                fixday = true;
            }
            Freq::Daily => {
                self.day += iv;
                fixday = true;
            }
            Freq::Hourly => {
                if filtered {
                    self.hour += ((23 - self.hour) / iv) * iv;
                }
                let step = match &e.byhour {
                    Some(set) => self.mod_distance(self.hour, set, 24),
                    None => Some((
                        (self.hour + iv).div_euclid(24),
                        (self.hour + iv).rem_euclid(24),
                    )),
                };
                let Some((ndays, hour)) = step else {
                    self.done = true;
                    return;
                };
                self.hour = hour;
                if ndays != 0 {
                    self.day += ndays;
                    fixday = true;
                }
                self.timeset = self.hm_timeset();
            }
            Freq::Minutely => {
                if filtered {
                    self.minute += ((1439 - (self.hour * 60 + self.minute)) / iv) * iv;
                }
                let rep = 1440 / gcd(iv, 1440);
                let mut valid = false;
                for _ in 0..rep {
                    let step = match &e.byminute {
                        Some(set) => self.mod_distance(self.minute, set, 60),
                        None => Some((
                            (self.minute + iv).div_euclid(60),
                            (self.minute + iv).rem_euclid(60),
                        )),
                    };
                    let Some((nhours, minute)) = step else {
                        self.done = true;
                        return;
                    };
                    self.minute = minute;
                    let h = self.hour + nhours;
                    let div = h.div_euclid(24);
                    self.hour = h.rem_euclid(24);
                    if div != 0 {
                        self.day += div;
                        fixday = true;
                        filtered = false;
                    }
                    if e.byhour.as_ref().is_none_or(|s| s.has(self.hour)) {
                        valid = true;
                        break;
                    }
                }
                let _ = filtered;
                if !valid {
                    self.done = true;
                    return;
                }
                self.timeset = self.hm_timeset();
            }
        }
        if fixday && self.day > 28 {
            let mut dim = i64::from(days_in_month(self.year, self.month));
            if self.day > dim {
                while self.day > dim {
                    self.day -= dim;
                    self.month += 1;
                    if self.month == 13 {
                        self.month = 1;
                        self.year += 1;
                        if self.year > 9999 {
                            self.done = true;
                            return;
                        }
                    }
                    dim = i64::from(days_in_month(self.year, self.month));
                }
                self.ii.rebuild(e, self.year, self.month);
            }
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

impl super::LocalSource for RruleIter<'_> {
    fn next_local(&mut self) -> Option<NaiveDateTime> {
        loop {
            if let Some(t) = self.pending.pop_front() {
                return Some(t);
            }
            if self.done {
                return None;
            }
            self.period();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::LocalSource;
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    fn first(rule: &str, dtstart: &str, n: usize) -> Vec<String> {
        let r = RruleRule::parse(rule).unwrap();
        let e = Expanded::new(&r, local(dtstart), &chrono_tz::UTC, &[]);
        let last = NaiveDate::from_ymd_opt(2100, 1, 1).unwrap();
        let mut it = RruleIter::new(&e, None, last);
        (0..n)
            .map_while(|_| it.next_local())
            .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
            .collect()
    }

    #[test]
    fn defaults_come_from_dtstart() {
        // WEEKLY without BYDAY: dtstart's weekday (2026-11-04 is a Wednesday) at its time.
        assert_eq!(
            first("FREQ=WEEKLY", "2026-11-04T08:15:00", 3),
            ["2026-11-04T08:15", "2026-11-11T08:15", "2026-11-18T08:15"]
        );
        // MONTHLY on the 31st skips shorter months, like dateutil.
        assert_eq!(
            first("FREQ=MONTHLY;COUNT=3", "2026-01-31T09:00:00", 5),
            ["2026-01-31T09:00", "2026-03-31T09:00", "2026-05-31T09:00"]
        );
    }

    #[test]
    fn ordinals_and_setpos() {
        assert_eq!(
            first("FREQ=MONTHLY;BYDAY=+1MO,-1FR", "2026-01-01T10:00:00", 4),
            [
                "2026-01-05T10:00",
                "2026-01-30T10:00",
                "2026-02-02T10:00",
                "2026-02-27T10:00"
            ]
        );
        assert_eq!(
            first(
                "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
                "2026-01-01T18:00:00",
                3
            ),
            ["2026-01-30T18:00", "2026-02-27T18:00", "2026-03-31T18:00"]
        );
        // Ordinals relative to the year when YEARLY has no BYMONTH: the 20th Monday.
        assert_eq!(
            first("FREQ=YEARLY;BYDAY=20MO", "2026-01-01T00:00:00", 1),
            ["2026-05-18T00:00"]
        );
    }
}
