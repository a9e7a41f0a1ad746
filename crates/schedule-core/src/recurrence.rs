//! Schedule rules → occurrences inside a window. Pure: the same rule and window always
//! give the same times, sorted, without duplicates.
//!
//! `once` and `rate` expand here; `cron` and `rrule` are parsed and validated by the model
//! and answer [`RecurrenceError::NotYetSupported`] until their expansion lands, so callers
//! (the scanner) count and skip them with a reason rather than fail.

use std::time::Duration;

use crate::model::{Schedule, ScheduleSpec, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error("schedule type {0} cannot be expanded yet")]
    NotYetSupported(&'static str),
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

/// The occurrences of `spec` inside `window`, in time order.
pub fn occurrences(spec: &ScheduleSpec, window: Window) -> Result<Vec<Timestamp>, RecurrenceError> {
    let limit = spec.max_occurrences.map(u64::from).unwrap_or(u64::MAX);
    match &spec.rule {
        Schedule::Once { at } => Ok(if window.contains(*at) && limit >= 1 {
            vec![*at]
        } else {
            Vec::new()
        }),
        Schedule::Rate { every, start, end } => Ok(rate(*every, *start, *end, limit, window)),
        Schedule::Cron { .. } => Err(RecurrenceError::NotYetSupported("cron")),
        Schedule::Rrule { .. } => Err(RecurrenceError::NotYetSupported("rrule")),
    }
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

    #[test]
    fn cron_and_rrule_say_they_cannot_expand_yet() {
        let w = Window::new(ts("2026-11-26T00:00:00Z"), ts("2026-11-27T00:00:00Z"));
        let cron = spec(
            Schedule::Cron {
                expression: "0 8 * * *".into(),
                timezone: chrono_tz::UTC,
                start: None,
                end: None,
            },
            None,
        );
        assert_eq!(
            occurrences(&cron, w),
            Err(RecurrenceError::NotYetSupported("cron"))
        );
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
