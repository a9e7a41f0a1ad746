//! Schedule rules → occurrences inside a window. Pure: the same rule and window always
//! give the same times, strictly increasing, without duplicates.
//!
//! `once` and `rate` expand by arithmetic. `cron` and `rrule` have their own parsers here
//! (`cron.rs`, `rrule.rs`) over chrono and chrono-tz rather than a crate: the maintained
//! ones duplicate, skip or panic at daylight-saving transitions (rust-rrule#115,
//! croner-rust#16), and the local → UTC step with its policy (`on_missing_time`,
//! `on_repeated_time`) has to be ours anyway (`local.rs`).
//!
//! Both produce local wall times in order; each becomes zero, one or two instants under the
//! policy; a small reorder buffer turns them into UTC order (a repeated hour and a shifted
//! time can land out of order or on the same instant) and drops duplicates.
//! `max_occurrences` and RRULE `COUNT` count from the rule's true first occurrence, so a
//! counted rule is walked from its start; an uncounted one starts near the window.

mod cron;
mod local;
mod rrule;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tables;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;

use crate::limits::{MAX_OCCURRENCES_PER_UTC_DAY, MIN_OCCURRENCE_INTERVAL};
use crate::model::{Schedule, ScheduleSpec, Timestamp};

use self::cron::{CronIter, CronRule};
use self::local::{Item, Resolution, Resolver};
use self::rrule::{Expanded, RruleIter, RruleRule};

/// The most entries one [`preview`] returns.
pub const MAX_PREVIEW: usize = 10_000;

/// How far a search for a rule's first occurrence looks: the Gregorian calendar repeats
/// every 400 years, so a rule that does not fire in 400 years never fires.
const SEARCH_YEARS: u64 = 400;

/// A rule that cannot be expanded. Each names the schedule field, its value and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error("invalid schedule.expression {value:?}: {reason}")]
    Cron { value: String, reason: String },
    #[error("invalid schedule.rule {value:?}: {reason}")]
    Rrule { value: String, reason: String },
    /// Any other schedule field; `value` is already written as JSON.
    #[error("invalid {field} {value}: {reason}")]
    Field {
        field: String,
        value: String,
        reason: String,
    },
}

impl RecurrenceError {
    pub fn field(&self) -> &str {
        match self {
            Self::Cron { .. } => "schedule.expression",
            Self::Rrule { .. } => "schedule.rule",
            Self::Field { field, .. } => field,
        }
    }

    /// The offending value as JSON (strings quoted).
    pub fn value(&self) -> String {
        match self {
            Self::Cron { value, .. } | Self::Rrule { value, .. } => format!("{value:?}"),
            Self::Field { value, .. } => value.clone(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Cron { reason, .. } | Self::Rrule { reason, .. } | Self::Field { reason, .. } => {
                reason
            }
        }
    }

    fn other(field: &str, value: String, reason: impl Into<String>) -> Self {
        Self::Field {
            field: field.to_owned(),
            value,
            reason: reason.into(),
        }
    }
}

/// The half-open window `[from, to)` an expansion covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Window {
    pub fn new(from: Timestamp, to: Timestamp) -> Self {
        Self { from, to }
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }
}

/// One line of a preview: a fired occurrence (`utc` set) or one the DST policy dropped
/// (`utc` is `None`), its local time with the offset, and why the policy moved or dropped
/// it (empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewEntry {
    pub utc: Option<Timestamp>,
    pub local: DateTime<FixedOffset>,
    pub note: String,
}

/// The occurrences of `spec` inside `window`, strictly increasing.
pub fn occurrences(spec: &ScheduleSpec, window: Window) -> Result<Vec<Timestamp>, RecurrenceError> {
    let limit = spec.max_occurrences.map(u64::from).unwrap_or(u64::MAX);
    if window.from >= window.to {
        return Ok(Vec::new());
    }
    match &spec.rule {
        Schedule::Once { at } => Ok(if window.contains(*at) && limit >= 1 {
            vec![*at]
        } else {
            Vec::new()
        }),
        Schedule::Rate { every, start, end } => Ok(rate(*every, *start, *end, limit, window)),
        _ => {
            let plan = Plan::compile(spec)?;
            let (from, to) = (window.from.epoch_seconds(), window.to.epoch_seconds());
            let mut out = Vec::new();
            plan.walk(spec, from, Some(to), &mut |item| {
                if item.at >= to {
                    return false;
                }
                if item.fired
                    && item.at >= from
                    && let Some(t) = Timestamp::from_epoch_seconds(item.at)
                {
                    out.push(t);
                }
                true
            });
            Ok(out)
        }
    }
}

/// The next `count` (at most [`MAX_PREVIEW`]) entries from `from` on: fired occurrences
/// and those the DST policy dropped, each with a note when the policy moved or dropped it.
pub fn preview(
    spec: &ScheduleSpec,
    from: Timestamp,
    count: usize,
) -> Result<Vec<PreviewEntry>, RecurrenceError> {
    let count = count.min(MAX_PREVIEW);
    let mut out = Vec::new();
    if count == 0 {
        return Ok(out);
    }
    let utc_entry = |t: Timestamp| PreviewEntry {
        utc: Some(t),
        local: t.as_datetime().fixed_offset(),
        note: String::new(),
    };
    match &spec.rule {
        Schedule::Once { at } => {
            if *at >= from && spec.max_occurrences != Some(0) {
                out.push(utc_entry(*at));
            }
        }
        Schedule::Rate { every, start, end } => {
            let limit = spec.max_occurrences.map(u64::from).unwrap_or(u64::MAX);
            let step = every.as_secs().max(1) as i64;
            let first = if from <= *start {
                0
            } else {
                (from.epoch_seconds() - start.epoch_seconds() + step - 1) / step
            } as u64;
            for k in (first..limit).take(count) {
                let Some(t) =
                    Timestamp::from_epoch_seconds(start.epoch_seconds() + k as i64 * step)
                else {
                    break;
                };
                if end.is_some_and(|e| t >= e) {
                    break;
                }
                out.push(utc_entry(t));
            }
        }
        _ => {
            let plan = Plan::compile(spec)?;
            let from = from.epoch_seconds();
            let tz = plan.tz();
            plan.walk(spec, from, None, &mut |item| {
                if item.at < from {
                    return true;
                }
                let offset = FixedOffset::east_opt(item.offset).unwrap_or(chrono::Utc.fix());
                let Some(utc) = DateTime::from_timestamp(item.at, 0) else {
                    return false;
                };
                out.push(PreviewEntry {
                    utc: item
                        .fired
                        .then(|| Timestamp::from_epoch_seconds(item.at))
                        .flatten(),
                    local: utc.with_timezone(&offset),
                    note: local::note(&tz, item),
                });
                out.len() < count
            });
        }
    }
    Ok(out)
}

use chrono::Offset;

/// Checks what every reader must reject: unparsable rules, occurrences closer than
/// [`MIN_OCCURRENCE_INTERVAL`] or more than [`MAX_OCCURRENCES_PER_UTC_DAY`] in a UTC day,
/// an `end` not after the start, COUNT with UNTIL, `max_occurrences` on a cron rule without
/// `start`, and rules that never fire.
pub fn validate(spec: &ScheduleSpec) -> Result<(), RecurrenceError> {
    let plan = match &spec.rule {
        Schedule::Once { .. } => return Ok(()),
        Schedule::Rate { start, end, .. } => return check_end(*start, *end),
        _ => Plan::compile(spec)?,
    };
    let rule_error = |reason: String| match &plan {
        Plan::Cron { text, .. } => RecurrenceError::Cron {
            value: text.clone(),
            reason,
        },
        Plan::Rrule { text, .. } => RecurrenceError::Rrule {
            value: text.clone(),
            reason,
        },
    };
    let start = match &plan {
        Plan::Cron {
            rule, start, end, ..
        } => {
            if rule.seconds_per_minute() > 1 {
                return Err(rule_error(format!(
                    "second field names {} seconds: occurrences must be at least {} seconds apart, so name one second",
                    rule.seconds_per_minute(),
                    MIN_OCCURRENCE_INTERVAL.as_secs()
                )));
            }
            if spec.max_occurrences.is_some() && start.is_none() {
                return Err(RecurrenceError::other(
                    "schedule.max_occurrences",
                    spec.max_occurrences
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    "needs schedule.start with a cron rule: occurrences are counted from the first one",
                ));
            }
            if let Some(s) = start {
                check_end(*s, *end)?;
            }
            start.map(|s| s.epoch_seconds()).unwrap_or(0)
        }
        Plan::Rrule {
            rule,
            expanded,
            tz,
            end,
            ..
        } => {
            if rule.seconds_per_minute() > 1 {
                return Err(rule_error(format!(
                    "BYSECOND names {} seconds: occurrences must be at least {} seconds apart, so name one second",
                    rule.seconds_per_minute(),
                    MIN_OCCURRENCE_INTERVAL.as_secs()
                )));
            }
            let dtstart = match local::resolve(tz, expanded.dtstart()) {
                local::Resolution::Unique { at, .. } => at,
                local::Resolution::Gap { shifted, .. } => shifted,
                local::Resolution::Fold { first, .. } => first,
            };
            if let (Some(e), Some(s)) = (end, Timestamp::from_epoch_seconds(dtstart)) {
                check_end(s, Some(*e))?;
            }
            dtstart
        }
    };
    // The first fired occurrence, then a day of them: spacing and the daily cap.
    let mut first: Option<i64> = None;
    let mut previous: Option<i64> = None;
    let mut problem: Option<String> = None;
    let mut per_day: (i64, usize) = (i64::MIN, 0);
    plan.walk(spec, start, None, &mut |item| {
        if !item.fired {
            return true;
        }
        let first = *first.get_or_insert(item.at);
        if let Some(p) = previous
            && item.at - p < MIN_OCCURRENCE_INTERVAL.as_secs() as i64
        {
            problem = Some(format!(
                "fires twice within {} seconds ({} and {}); occurrences must be at least 1 minute apart",
                item.at - p,
                fmt_utc(p),
                fmt_utc(item.at)
            ));
            return false;
        }
        previous = Some(item.at);
        let day = item.at.div_euclid(86_400);
        per_day = if per_day.0 == day {
            (day, per_day.1 + 1)
        } else {
            (day, 1)
        };
        if per_day.1 > MAX_OCCURRENCES_PER_UTC_DAY {
            problem = Some(format!(
                "fires more than {MAX_OCCURRENCES_PER_UTC_DAY} times in one UTC day"
            ));
            return false;
        }
        item.at - first < 2 * 86_400
    });
    if let Some(p) = problem {
        return Err(rule_error(p));
    }
    if first.is_none() {
        return Err(rule_error(match &plan {
            Plan::Cron { end: Some(_), .. } | Plan::Rrule { end: Some(_), .. } => {
                "never fires between its start and schedule.end".to_owned()
            }
            _ => format!("never fires (no occurrence in {SEARCH_YEARS} years)"),
        }));
    }
    Ok(())
}

fn fmt_utc(t: i64) -> String {
    Timestamp::from_epoch_seconds(t).map_or_else(|| t.to_string(), |t| t.to_string())
}

fn check_end(start: Timestamp, end: Option<Timestamp>) -> Result<(), RecurrenceError> {
    match end {
        Some(e) if e <= start => Err(RecurrenceError::other(
            "schedule.end",
            format!("{:?}", e.to_string()),
            format!("must be after the start {start}"),
        )),
        _ => Ok(()),
    }
}

/// A cron or RRULE schedule, parsed.
#[derive(Debug)]
enum Plan {
    Cron {
        text: String,
        rule: CronRule,
        tz: Tz,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    },
    Rrule {
        text: String,
        rule: RruleRule,
        expanded: Box<Expanded>,
        tz: Tz,
        end: Option<Timestamp>,
    },
}

/// A source of local wall times, in increasing order.
trait LocalSource {
    fn next_local(&mut self) -> Option<NaiveDateTime>;
}

impl Plan {
    fn compile(spec: &ScheduleSpec) -> Result<Self, RecurrenceError> {
        match &spec.rule {
            Schedule::Cron {
                expression,
                timezone,
                start,
                end,
            } => Ok(Plan::Cron {
                text: expression.clone(),
                rule: CronRule::parse(expression)?,
                tz: *timezone,
                start: *start,
                end: *end,
            }),
            Schedule::Rrule {
                rule,
                dtstart,
                timezone,
                end,
                exdate,
            } => {
                let parsed = RruleRule::parse(rule)?;
                let expanded = Box::new(Expanded::new(&parsed, *dtstart, timezone, exdate));
                Ok(Plan::Rrule {
                    text: rule.clone(),
                    rule: parsed,
                    expanded,
                    tz: *timezone,
                    end: *end,
                })
            }
            Schedule::Once { .. } | Schedule::Rate { .. } => Err(RecurrenceError::other(
                "schedule.type",
                "\"once or rate\"".into(),
                "expands without a calendar",
            )),
        }
    }

    fn tz(&self) -> Tz {
        match self {
            Plan::Cron { tz, .. } | Plan::Rrule { tz, .. } => *tz,
        }
    }

    /// Calls `visit` with fired and dropped items in instant order, from the rule's first
    /// occurrence when occurrences are counted, else from shortly before `from`, and never
    /// past `to` (plus slack for offsets) or [`SEARCH_YEARS`] after the start. Items outside
    /// `[start, end)` are left out; `max_occurrences` ends the walk. `visit` returns
    /// whether to go on.
    fn walk(
        &self,
        spec: &ScheduleSpec,
        from: i64,
        to: Option<i64>,
        visit: &mut dyn FnMut(&Item) -> bool,
    ) {
        let limit = spec.max_occurrences.map(u64::from);
        let (lower, upper) = match self {
            Plan::Cron { start, end, .. } => (start.map(|s| s.epoch_seconds()), *end),
            Plan::Rrule { end, .. } => (None, *end),
        };
        let upper = upper.map(|e| e.epoch_seconds());
        // Local dates: two days of slack either side cover every UTC offset.
        let date_of = |secs: i64| {
            DateTime::from_timestamp(secs.clamp(0, 253_402_300_799), 0).map(|t| t.date_naive())
        };
        let begin = match (limit, lower) {
            (Some(_), Some(s)) => s,
            (_, Some(s)) => s.max(from),
            (_, None) => from,
        };
        let Some(first_date) = date_of(begin).and_then(|d| d.checked_sub_days(Days::new(2))) else {
            return;
        };
        let search_end = first_date
            .checked_add_days(Days::new(SEARCH_YEARS * 366))
            .unwrap_or(NaiveDate::MAX);
        let last_date = to
            .and_then(date_of)
            .and_then(|d| d.checked_add_days(Days::new(2)))
            .map_or(search_end, |d| d.min(search_end));
        let mut fired = 0u64;
        let mut step = |item: &Item| -> bool {
            if lower.is_some_and(|l| item.at < l) {
                return true;
            }
            if upper.is_some_and(|u| item.at >= u) {
                return false;
            }
            if item.fired {
                if limit.is_some_and(|l| fired >= l) {
                    return false;
                }
                fired += 1;
            }
            visit(item)
        };
        match self {
            Plan::Cron { rule, tz, .. } => {
                let src = CronIter::new(rule, first_date, last_date);
                drive(src, *tz, spec, &mut step);
            }
            Plan::Rrule { expanded, tz, .. } => {
                let skip = (limit.is_none() && !expanded.counted()).then_some(first_date);
                let src = RruleIter::new(expanded, skip, last_date);
                drive(src, *tz, spec, &mut step);
            }
        }
    }
}

/// Local times → items in instant order. The wall clock only runs backwards inside a
/// repeated hour, so the instant of a *unique* local time comes before every item of a
/// later local time. Items of gaps and repeated times wait in a small sorted buffer; a
/// unique time releases those before it and then goes straight through, unless a shifted
/// time already holds its instant. (A shifted time reads `local + gap` on the clock, so it
/// can come after the unique times that follow it.)
fn drive<S: LocalSource>(
    mut src: S,
    tz: Tz,
    spec: &ScheduleSpec,
    visit: &mut dyn FnMut(&Item) -> bool,
) {
    let (missing, repeated) = (spec.on_missing_time, spec.on_repeated_time);
    let mut resolver = Resolver::new(tz);
    let mut buf: VecDeque<Item> = VecDeque::new();
    let mut last_fired: Option<i64> = None;
    let mut emit = |item: &Item, last_fired: &mut Option<i64>| -> bool {
        if item.fired {
            if *last_fired == Some(item.at) {
                return true;
            }
            *last_fired = Some(item.at);
        }
        visit(item)
    };
    loop {
        let Some(l) = src.next_local() else {
            for item in &buf {
                if !emit(item, &mut last_fired) {
                    return;
                }
            }
            return;
        };
        let resolution = resolver.resolve(l);
        if let Resolution::Unique { at, offset } = resolution {
            while buf
                .front()
                .is_some_and(|f| f.at < at || (f.at == at && f.fired))
            {
                if let Some(item) = buf.pop_front()
                    && !emit(&item, &mut last_fired)
                {
                    return;
                }
            }
            let item = Item {
                at,
                fired: true,
                offset,
                local: l,
                kind: local::Kind::Plain,
                resolution,
            };
            if !emit(&item, &mut last_fired) {
                return;
            }
        } else {
            for item in local::apply(l, resolution, missing, repeated)
                .into_iter()
                .flatten()
            {
                insert(&mut buf, item);
            }
        }
    }
}

/// Inserts in `(instant, fired first)` order; a fired item on the instant of another
/// fired one is a duplicate and is dropped.
fn insert(buf: &mut VecDeque<Item>, item: Item) {
    let key = |i: &Item| (i.at, !i.fired);
    if buf.back().is_none_or(|b| key(b) < key(&item)) {
        buf.push_back(item);
        return;
    }
    let pos = buf.partition_point(|x| key(x) < key(&item));
    if item.fired && buf.get(pos).is_some_and(|x| x.fired && x.at == item.at) {
        return;
    }
    buf.insert(pos, item);
}

/// `start + k·every` for `k = 0, 1, …` while `k < limit`, before `end` (exclusive),
/// clipped to the window. Computed by index, not by stepping, so a window far from
/// `start` costs nothing and `max_occurrences` counts from the true first occurrence.
fn rate(
    every: Duration,
    start: Timestamp,
    end: Option<Timestamp>,
    limit: u64,
    window: Window,
) -> Vec<Timestamp> {
    let step = every.as_secs().max(1) as i64;
    let first_k = if window.from <= start {
        0
    } else {
        (window.from.epoch_seconds() - start.epoch_seconds() + step - 1) / step
    } as u64;
    let stop = match end {
        Some(e) if e < window.to => e,
        _ => window.to,
    };
    let mut out = Vec::new();
    let mut k = first_k;
    while k < limit {
        let Some(t) = Timestamp::from_epoch_seconds(start.epoch_seconds() + k as i64 * step) else {
            break;
        };
        if t >= stop {
            break;
        }
        out.push(t);
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MissingTimePolicy, RepeatedTimePolicy};
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn spec(rule: Schedule, max: Option<u32>) -> ScheduleSpec {
        ScheduleSpec {
            rule,
            max_occurrences: max,
            on_missing_time: MissingTimePolicy::default(),
            on_repeated_time: RepeatedTimePolicy::default(),
            misfire_grace: None,
        }
    }

    #[test]
    fn once_inside_and_outside_the_window() {
        let w = Window::new(ts("2026-11-26T00:00:00Z"), ts("2026-11-27T00:00:00Z"));
        let inside = spec(
            Schedule::Once {
                at: ts("2026-11-26T10:30:00Z"),
            },
            None,
        );
        assert_eq!(
            occurrences(&inside, w).unwrap(),
            vec![ts("2026-11-26T10:30:00Z")]
        );
        let at_end = spec(
            Schedule::Once {
                at: ts("2026-11-27T00:00:00Z"),
            },
            None,
        );
        assert!(
            occurrences(&at_end, w).unwrap().is_empty(),
            "window end is exclusive"
        );
    }

    #[test]
    fn rate_table() {
        let w = Window::new(ts("2026-11-26T10:00:00Z"), ts("2026-11-26T11:00:00Z"));
        let every15 = |start: &str, end: Option<&str>, max: Option<u32>| {
            spec(
                Schedule::Rate {
                    every: Duration::from_secs(900),
                    start: ts(start),
                    end: end.map(ts),
                },
                max,
            )
        };
        let got = occurrences(&every15("2026-11-26T09:50:00Z", None, None), w).unwrap();
        let want: Vec<_> = ["10:05", "10:20", "10:35", "10:50"]
            .iter()
            .map(|m| ts(&format!("2026-11-26T{m}:00Z")))
            .collect();
        assert_eq!(got, want);
        let ended = occurrences(
            &every15("2026-11-26T10:00:00Z", Some("2026-11-26T10:30:00Z"), None),
            w,
        )
        .unwrap();
        assert_eq!(
            ended,
            vec![ts("2026-11-26T10:00:00Z"), ts("2026-11-26T10:15:00Z")]
        );
        // max_occurrences counts from start, not from the window.
        let capped = occurrences(&every15("2026-11-26T09:30:00Z", None, Some(3)), w).unwrap();
        assert_eq!(capped, vec![ts("2026-11-26T10:00:00Z")]);
        let later = occurrences(&every15("2026-11-26T12:00:00Z", None, None), w).unwrap();
        assert!(later.is_empty());
    }

    proptest! {
        /// Every rate occurrence lies in the window and on the grid, none is missing, and
        /// windows that tile a range give exactly the occurrences of the whole range.
        #[test]
        fn rate_is_complete_and_tiles(
            start in 1_700_000_000i64..1_800_000_000,
            every in 60u64..200_000,
            from_off in -500_000i64..500_000,
            len_a in 0i64..300_000,
            len_b in 0i64..300_000,
            max in proptest::option::of(1u32..50),
        ) {
            let s = spec(Schedule::Rate { every: Duration::from_secs(every), start: Timestamp::from_epoch_seconds(start).unwrap(), end: None }, max);
            let t = |x: i64| Timestamp::from_epoch_seconds(x).unwrap();
            let (a, b, c) = (start + from_off, start + from_off + len_a, start + from_off + len_a + len_b);
            let whole = occurrences(&s, Window::new(t(a), t(c))).unwrap();
            let mut tiled = occurrences(&s, Window::new(t(a), t(b))).unwrap();
            tiled.extend(occurrences(&s, Window::new(t(b), t(c))).unwrap());
            prop_assert_eq!(&whole, &tiled);
            for w in whole.windows(2) {
                prop_assert_eq!(w[1].epoch_seconds() - w[0].epoch_seconds(), every as i64);
            }
            for o in &whole {
                prop_assert!(a <= o.epoch_seconds() && o.epoch_seconds() < c);
                let k = (o.epoch_seconds() - start) as u64 / every;
                prop_assert_eq!((o.epoch_seconds() - start) as u64 % every, 0);
                prop_assert!(max.is_none_or(|m| k < u64::from(m)));
            }
            // Brute force: count grid points in the window by stepping.
            let limit = max.map(u64::from).unwrap_or(u64::MAX);
            let brute = (0..).map(|k: u64| (k, start + (k * every) as i64))
                .take_while(|(k, x)| *x < c && *k < limit)
                .filter(|(_, x)| *x >= a)
                .count();
            prop_assert_eq!(whole.len(), brute);
        }
    }
}
