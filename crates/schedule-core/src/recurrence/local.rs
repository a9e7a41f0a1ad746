//! Local wall time → UTC instants, with the daylight-saving policy.
//!
//! A local time is unique, falls in a gap (clocks jump forward: it does not exist), or is
//! repeated (clocks fall back: it exists twice). Gap boundaries are found by bisection over
//! UTC, so any offset change works (30-minute shifts in Australia/Lord_Howe, whole-day
//! jumps), never by assuming one hour.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike};
use chrono_tz::Tz;

use crate::model::{MissingTimePolicy, RepeatedTimePolicy};

/// Where a local wall time lands on the UTC line (all instants in epoch seconds, offsets
/// in seconds east of UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    Unique {
        at: i64,
        offset: i32,
    },
    /// The local time does not exist. `shifted` is the instant it would have had with the
    /// offset in force before the jump; `transition` is the instant of the jump.
    Gap {
        shifted: i64,
        before: i32,
        after: i32,
        transition: i64,
    },
    /// The local time exists twice.
    Fold {
        first: i64,
        first_offset: i32,
        second: i64,
        second_offset: i32,
    },
}

/// What the policy makes of one local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    Shifted,
    Skipped,
    FirstOfTwo,
    SecondOfTwo,
}

/// One fired or dropped occurrence: `at` orders it (for a dropped one, the instant it
/// would have had), `offset` is the local offset it is shown with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Item {
    pub at: i64,
    pub fired: bool,
    pub offset: i32,
    pub local: NaiveDateTime,
    pub kind: Kind,
    pub resolution: Resolution,
}

/// Resolves local times of one zone, caching per local date whether the whole day has one
/// offset: then a time costs an addition instead of a zone lookup.
#[derive(Debug)]
pub(crate) struct Resolver {
    tz: Tz,
    /// A local date, and when the whole day has one offset: the offset and the instant of
    /// its midnight.
    day: Option<(NaiveDate, Option<(i32, i64)>)>,
}

pub(crate) fn naive_secs(t: &NaiveDateTime) -> i64 {
    t.and_utc().timestamp()
}

pub(crate) fn offset_at(tz: &Tz, utc: i64) -> i32 {
    match DateTime::from_timestamp(utc, 0) {
        Some(t) => tz
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc(),
        None => 0,
    }
}

impl Resolver {
    pub(crate) fn new(tz: Tz) -> Self {
        Self { tz, day: None }
    }

    pub(crate) fn resolve(&mut self, local: NaiveDateTime) -> Resolution {
        let date = local.date();
        let whole_day = match self.day {
            Some((d, off)) if d == date => off,
            _ => {
                let off = self.day_offset(date);
                self.day = Some((date, off));
                off
            }
        };
        match whole_day {
            Some((offset, midnight)) => Resolution::Unique {
                at: midnight + i64::from(local.time().num_seconds_from_midnight()),
                offset,
            },
            None => resolve(&self.tz, local),
        }
    }

    /// The day's offset when midnight and the next midnight both exist once with the same
    /// offset. Zones change offset at most once a day, so then every time between has it.
    fn day_offset(&self, date: NaiveDate) -> Option<(i32, i64)> {
        let start = date.and_hms_opt(0, 0, 0)?;
        let next = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
        match (
            self.tz.offset_from_local_datetime(&start),
            self.tz.offset_from_local_datetime(&next),
        ) {
            (LocalResult::Single(a), LocalResult::Single(b)) if a.fix() == b.fix() => {
                let offset = a.fix().local_minus_utc();
                Some((offset, naive_secs(&start) - i64::from(offset)))
            }
            _ => None,
        }
    }
}

/// Resolves one local time exactly (no cache).
pub(crate) fn resolve(tz: &Tz, local: NaiveDateTime) -> Resolution {
    let n = naive_secs(&local);
    match tz.offset_from_local_datetime(&local) {
        LocalResult::Single(o) => {
            let offset = o.fix().local_minus_utc();
            Resolution::Unique {
                at: n - i64::from(offset),
                offset,
            }
        }
        LocalResult::Ambiguous(a, b) => {
            let (oa, ob) = (a.fix().local_minus_utc(), b.fix().local_minus_utc());
            let (ia, ib) = (n - i64::from(oa), n - i64::from(ob));
            let ((first, first_offset), (second, second_offset)) = if ia <= ib {
                ((ia, oa), (ib, ob))
            } else {
                ((ib, ob), (ia, oa))
            };
            Resolution::Fold {
                first,
                first_offset,
                second,
                second_offset,
            }
        }
        LocalResult::None => gap(tz, n),
    }
}

/// The jump over local time `n`: bisection for the second where the wall clock
/// `u + offset(u)` passes from before `n` to after it. Thirty hours either side bracket
/// any real offset (UTC-12 to UTC+14).
fn gap(tz: &Tz, n: i64) -> Resolution {
    let wall = |u: i64| u + i64::from(offset_at(tz, u));
    let (mut lo, mut hi) = (n - 30 * 3600, n + 30 * 3600);
    if !(wall(lo) < n && wall(hi) > n) {
        let offset = offset_at(tz, n);
        return Resolution::Unique {
            at: n - i64::from(offset),
            offset,
        };
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if wall(mid) < n {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (before, after) = (offset_at(tz, lo), offset_at(tz, hi));
    Resolution::Gap {
        shifted: n - i64::from(before),
        before,
        after,
        transition: hi,
    }
}

/// The first instant in `(lo, hi]` whose offset differs from `lo`'s.
fn transition_between(tz: &Tz, mut lo: i64, mut hi: i64) -> i64 {
    let o = offset_at(tz, lo);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, mid) == o {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The occurrences one local time gives under the policies: none, one or two items.
pub(crate) fn apply(
    local: NaiveDateTime,
    resolution: Resolution,
    missing: MissingTimePolicy,
    repeated: RepeatedTimePolicy,
) -> [Option<Item>; 2] {
    let item = |at, fired, offset, kind| Item {
        at,
        fired,
        offset,
        local,
        kind,
        resolution,
    };
    match resolution {
        Resolution::Unique { at, offset } => [Some(item(at, true, offset, Kind::Plain)), None],
        Resolution::Gap {
            shifted,
            before,
            after,
            ..
        } => match missing {
            MissingTimePolicy::ShiftForward => {
                [Some(item(shifted, true, after, Kind::Shifted)), None]
            }
            MissingTimePolicy::Skip => [Some(item(shifted, false, before, Kind::Skipped)), None],
        },
        Resolution::Fold {
            first,
            first_offset,
            second,
            second_offset,
        } => [
            Some(item(first, true, first_offset, Kind::FirstOfTwo)),
            Some(item(
                second,
                repeated == RepeatedTimePolicy::Both,
                second_offset,
                Kind::SecondOfTwo,
            )),
        ],
    }
}

fn hm(t: &NaiveDateTime) -> String {
    if t.and_utc().timestamp() % 60 == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

fn wall_at(utc: i64, offset: i32) -> NaiveDateTime {
    DateTime::from_timestamp(utc + i64::from(offset), 0)
        .map(|t| t.naive_utc())
        .unwrap_or_default()
}

/// Why the policy moved or dropped an item; empty when it did neither.
pub(crate) fn note(tz: &Tz, item: &Item) -> String {
    let when = item.local.format("%Y-%m-%d");
    let at = hm(&item.local);
    match (item.resolution, item.kind) {
        (
            Resolution::Gap {
                before,
                after,
                transition,
                ..
            },
            kind,
        ) => {
            let jump = format!(
                "clocks jump forward from {} to {}",
                hm(&wall_at(transition, before)),
                hm(&wall_at(transition, after))
            );
            match kind {
                Kind::Skipped => format!("skipped: {at} does not exist on {when} ({jump})"),
                _ => format!(
                    "shifted: {at} does not exist on {when} ({jump}); fired at {}",
                    hm(&wall_at(item.at, item.offset))
                ),
            }
        }
        (
            Resolution::Fold {
                first,
                first_offset,
                second,
                second_offset,
            },
            kind,
        ) => {
            let t = transition_between(tz, first, second);
            let back = format!(
                "clocks fall back from {} to {}",
                hm(&wall_at(t, first_offset)),
                hm(&wall_at(t, second_offset))
            );
            match kind {
                Kind::FirstOfTwo => format!("repeated: first of two {at} on {when} ({back})"),
                _ if item.fired => format!("repeated: second of two {at} on {when} ({back})"),
                _ => format!(
                    "not fired: second of two {at} on {when} ({back}); on_repeated_time is first"
                ),
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn berlin_gap_shifts_with_the_offset_before() {
        let r = resolve(&chrono_tz::Europe::Berlin, local("2026-03-29T02:30:00"));
        assert_eq!(
            r,
            Resolution::Gap {
                shifted: utc("2026-03-29T01:30:00Z"),
                before: 3600,
                after: 7200,
                transition: utc("2026-03-29T01:00:00Z"),
            }
        );
        let [item, none] = apply(
            local("2026-03-29T02:30:00"),
            r,
            MissingTimePolicy::ShiftForward,
            RepeatedTimePolicy::First,
        );
        assert!(none.is_none());
        let item = item.unwrap();
        assert_eq!(
            note(&chrono_tz::Europe::Berlin, &item),
            "shifted: 02:30 does not exist on 2026-03-29 (clocks jump forward from 02:00 to 03:00); fired at 03:30"
        );
    }

    #[test]
    fn lord_howe_half_hour_fold_and_gap() {
        let tz = chrono_tz::Australia::Lord_Howe;
        match resolve(&tz, local("2026-04-05T01:45:00")) {
            Resolution::Fold { first, second, .. } => assert_eq!(second - first, 1800),
            other => panic!("expected a fold, got {other:?}"),
        }
        match resolve(&tz, local("2026-10-04T02:15:00")) {
            Resolution::Gap { before, after, .. } => assert_eq!(after - before, 1800),
            other => panic!("expected a gap, got {other:?}"),
        }
        // The per-day cache agrees with the exact path on a day with a transition and one without.
        let mut cached = Resolver::new(tz);
        for t in [
            "2026-04-05T01:45:00",
            "2026-04-05T12:00:00",
            "2026-06-01T08:00:00",
        ] {
            assert_eq!(cached.resolve(local(t)), resolve(&tz, local(t)), "{t}");
        }
    }
}
