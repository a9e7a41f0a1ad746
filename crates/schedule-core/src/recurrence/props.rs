//! Property tests over random cron expressions, RRULEs, zones (with 30- and 45-minute
//! offsets and a 30-minute DST shift) and windows: results are strictly increasing and
//! inside the window, windows tile, `max_occurrences` holds whatever the window,
//! occurrences are at least a minute apart, walking from the start (as counting does)
//! agrees with jumping near the window, and no input makes a parser panic.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::model::ScheduleSpec;

const ZONES: &[&str] = &[
    "Australia/Lord_Howe",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Ho_Chi_Minh",
    "Asia/Kathmandu",
    "UTC",
];
/// 2024-01-01T00:00:00Z and the span the windows are drawn from (six years).
const BASE: i64 = 1_704_067_200;
const SPAN: i64 = 6 * 365 * 86_400;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_epoch_seconds(secs).unwrap()
}

fn local(secs: i64) -> String {
    t(secs)
        .as_datetime()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn cron_expr() -> impl Strategy<Value = String> {
    let minute = prop_oneof![
        Just("*".to_owned()),
        (1u32..30).prop_map(|k| format!("*/{k}")),
        (0u32..60).prop_map(|a| a.to_string()),
        (0u32..30, 30u32..60).prop_map(|(a, b)| format!("{a},{b}")),
        (0u32..30, 30u32..60, 1u32..20).prop_map(|(a, b, k)| format!("{a}-{b}/{k}")),
        (0u32..60, 1u32..30).prop_map(|(a, k)| format!("{a}/{k}")),
    ];
    let hour = prop_oneof![
        Just("*".to_owned()),
        (0u32..24).prop_map(|a| a.to_string()),
        (0u32..4, 1u32..4).prop_map(|(a, b)| format!("{a}-{}", a + b)),
        (1u32..6).prop_map(|k| format!("*/{k}")),
        Just("1,2,3".to_owned()),
    ];
    let dom = prop_oneof![
        Just("*".to_owned()),
        Just("?".to_owned()),
        (1u32..32).prop_map(|a| a.to_string()),
        Just("L".to_owned()),
        (1u32..15, 15u32..29).prop_map(|(a, b)| format!("{a}-{b}")),
        Just("1,15,L".to_owned()),
    ];
    let month = prop_oneof![
        Just("*".to_owned()),
        (1u32..13).prop_map(|a| a.to_string()),
        Just("jan-mar,OCT".to_owned()),
        Just("*/2".to_owned()),
    ];
    let dow = prop_oneof![
        Just("*".to_owned()),
        Just("?".to_owned()),
        Just("MON-FRI".to_owned()),
        (0u32..8).prop_map(|a| a.to_string()),
        (0u32..7).prop_map(|a| format!("{a}L")),
        (0u32..7, 1u32..6).prop_map(|(a, k)| format!("{a}#{k}")),
        Just("0,7,SAT".to_owned()),
    ];
    let seconds = prop_oneof![Just(None), (0u32..60).prop_map(Some)];
    (seconds, minute, hour, dom, month, dow).prop_map(|(s, mi, h, d, mo, w)| match s {
        Some(s) => format!("{s} {mi} {h} {d} {mo} {w}"),
        None => format!("{mi} {h} {d} {mo} {w}"),
    })
}

fn rrule_text() -> impl Strategy<Value = String> {
    let freq = prop_oneof![
        Just("YEARLY"),
        Just("MONTHLY"),
        Just("WEEKLY"),
        Just("DAILY"),
        Just("HOURLY"),
        Just("MINUTELY"),
    ];
    let interval = prop_oneof![Just(None), (1u32..5).prop_map(Some)];
    let byday = prop_oneof![
        Just(None),
        Just(Some("MO,WE,FR")),
        Just(Some("SU")),
        Just(Some("SA,SU")),
    ];
    let byhour = prop_oneof![
        Just(None),
        Just(Some("2")),
        Just(Some("1,2,3")),
        Just(Some("0,12"))
    ];
    let byminute = prop_oneof![Just(None), Just(Some("0,30")), Just(Some("15"))];
    let other = prop_oneof![
        Just(None),
        Just(Some("BYMONTHDAY=1,-1")),
        Just(Some("BYMONTH=3,10")),
        Just(Some("COUNT=25")),
        Just(Some("BYSETPOS=1,-1")),
        Just(Some("WKST=SU")),
    ];
    (freq, interval, byday, byhour, byminute, other).prop_map(|(f, i, d, h, m, o)| {
        let mut parts = vec![format!("FREQ={f}")];
        parts.extend(i.map(|i| format!("INTERVAL={i}")));
        parts.extend(d.map(|d| format!("BYDAY={d}")));
        parts.extend(h.map(|h| format!("BYHOUR={h}")));
        parts.extend(m.map(|m| format!("BYMINUTE={m}")));
        parts.extend(o.map(str::to_owned));
        parts.join(";")
    })
}

fn policies() -> impl Strategy<Value = (&'static str, &'static str)> {
    (
        prop_oneof![Just("shift_forward"), Just("skip")],
        prop_oneof![Just("first"), Just("both")],
    )
}

/// A random schedule (as JSON) and a start instant the rule is anchored near.
fn schedule() -> impl Strategy<Value = Value> {
    let zone = proptest::sample::select(ZONES);
    let anchor = 0..SPAN;
    let max = prop_oneof![Just(None), (1u32..200).prop_map(Some)];
    let cron = (cron_expr(), zone.clone(), anchor.clone(), max.clone(), policies()).prop_map(
        |(e, z, a, m, (p, q))| {
            let mut v = json!({"type":"cron","expression":e,"timezone":z,"on_missing_time":p,"on_repeated_time":q});
            if m.is_some() || a % 2 == 0 {
                v["start"] = json!(t(BASE + a).to_string());
            }
            if let Some(m) = m {
                v["max_occurrences"] = json!(m);
            }
            v
        },
    );
    let rrule = (rrule_text(), zone, anchor, max, policies()).prop_map(|(r, z, a, m, (p, q))| {
        let mut v = json!({"type":"rrule","rule":r,"dtstart":local(BASE + a),"timezone":z,"on_missing_time":p,"on_repeated_time":q});
        if let Some(m) = m {
            v["max_occurrences"] = json!(m);
        }
        v
    });
    prop_oneof![cron, rrule]
}

fn spec_of(v: &Value) -> Option<ScheduleSpec> {
    ScheduleSpec::from_json(v).ok()
}

/// Instants of the window `[a, b)` as epoch seconds.
fn occ(s: &ScheduleSpec, a: i64, b: i64) -> Vec<i64> {
    occurrences(s, Window::new(t(a), t(b)))
        .unwrap()
        .iter()
        .map(|t| t.epoch_seconds())
        .collect()
}

/// Where the rule starts: `start` for cron, `dtstart` (read as UTC, a day early) for rrule.
fn anchor(v: &Value) -> i64 {
    let at = |s: &str| Timestamp::parse(&format!("{s}Z")).map(|t| t.epoch_seconds());
    match (v.get("start"), v.get("dtstart")) {
        (Some(s), _) => Timestamp::parse(s.as_str().unwrap_or_default())
            .map(|t| t.epoch_seconds())
            .unwrap_or(BASE),
        (_, Some(d)) => at(d.as_str().unwrap_or_default()).unwrap_or(BASE) - 86_400,
        _ => BASE,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn windows_are_ordered_tiled_spaced_and_counted(
        v in schedule(),
        offset in -2 * 86_400i64..40 * 86_400,
        len_a in 0i64..4 * 86_400,
        len_b in 0i64..4 * 86_400,
    ) {
        let Some(s) = spec_of(&v) else { return Ok(()) };
        let a = anchor(&v) + offset;
        let (b, c) = (a + len_a, a + len_a + len_b);
        let whole = occ(&s, a, c);
        let mut tiled = occ(&s, a, b);
        tiled.extend(occ(&s, b, c));
        prop_assert_eq!(&whole, &tiled, "{}", v);
        for w in whole.windows(2) {
            prop_assert!(w[1] - w[0] >= 60, "{} fires at {} and {}", v, w[0], w[1]);
        }
        for o in &whole {
            prop_assert!(a <= *o && *o < c);
        }
        // max_occurrences holds for any window: everything from the anchor on is bounded,
        // and the window sees exactly those of the bounded list that fall in it.
        let from_start = occ(&s, anchor(&v) - 2 * 86_400, c);
        if let Some(m) = s.max_occurrences {
            prop_assert!(from_start.len() <= m as usize);
        }
        let expected: Vec<i64> = from_start.iter().copied().filter(|o| a <= *o && *o < c).collect();
        prop_assert_eq!(&whole, &expected, "{}", v);
    }

    #[test]
    fn jumping_near_the_window_agrees_with_walking_from_the_start(
        v in schedule(),
        offset in 0i64..60 * 86_400,
        len in 0i64..3 * 86_400,
    ) {
        let Some(s) = spec_of(&v) else { return Ok(()) };
        if s.max_occurrences.is_some() {
            return Ok(());
        }
        let a = anchor(&v) + offset;
        let jumped = occ(&s, a, a + len);
        // A huge max_occurrences changes nothing but forces the walk from the start.
        let mut walked_spec = s.clone();
        walked_spec.max_occurrences = Some(u32::MAX);
        let walked = match &s.rule {
            Schedule::Cron { start: None, .. } => return Ok(()),
            _ => occ(&walked_spec, a, a + len),
        };
        prop_assert_eq!(jumped, walked, "{}", v);
    }

    #[test]
    fn parsers_never_panic(
        expr in "[0-9A-Za-z*?/,#L -]{0,40}",
        rule in "[A-Z0-9=;,+-]{0,60}",
        secs in 0i64..SPAN,
        zone in proptest::sample::select(ZONES),
    ) {
        let cron = json!({"type":"cron","expression":expr,"timezone":zone});
        let rrule = json!({"type":"rrule","rule":rule,"dtstart":local(BASE + secs),"timezone":zone});
        for v in [cron, rrule] {
            if let Ok(s) = ScheduleSpec::from_json(&v) {
                let got = occ(&s, BASE + secs, BASE + secs + 86_400);
                prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(preview(&s, t(BASE + secs), 5).is_ok());
            }
        }
    }

    #[test]
    fn structured_rule_text_never_panics(
        parts in proptest::collection::vec(
            (proptest::sample::select(&["FREQ","INTERVAL","COUNT","UNTIL","BYDAY","BYMONTHDAY","BYMONTH","BYYEARDAY","BYHOUR","BYMINUTE","BYSECOND","BYSETPOS","WKST"][..]),
             "[-+0-9A-Z,]{0,12}"),
            1..6),
        zone in proptest::sample::select(ZONES),
    ) {
        let rule = parts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        let v = json!({"type":"rrule","rule":rule,"dtstart":"2026-03-29T02:30:00","timezone":zone});
        if let Ok(s) = ScheduleSpec::from_json(&v) {
            let got = occ(&s, BASE, BASE + 3 * 365 * 86_400);
            prop_assert!(got.windows(2).all(|w| w[1] - w[0] >= 60));
        }
    }
}
