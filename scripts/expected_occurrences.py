#!/usr/bin/env python3
"""Expected occurrences for the recurrence table tests, computed independently of the Rust
code: cron by brute force (every minute of every day is checked against the fields),
RRULE by python-dateutil, local time -> UTC by zoneinfo with PEP 495 `fold`.

Prints Rust constants for crates/schedule-core/src/recurrence/tables.rs:

    .venv/bin/python scripts/expected_occurrences.py > /tmp/cases.rs

The DST policy, as the product defines it:
  - a local time in a gap (clocks jump forward): `shift_forward` fires at the instant the
    time would have had with the offset before the gap (zoneinfo fold=0), `skip` drops it;
  - a repeated local time (clocks fall back): `first` fires the earlier instant only,
    `both` fires both;
  - fired instants are merged (a shifted time can land on another occurrence) and sorted;
  - `start`/`end` bound the instants ([start, end)); `max_occurrences` counts fired
    instants from the first one; RRULE COUNT counts the rule's local times (before EXDATE).
"""

import datetime as dt
import json
from zoneinfo import ZoneInfo

from dateutil import rrule as du

UTC = dt.timezone.utc
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


# ---- cron, brute force ---------------------------------------------------------------

def cron_values(text, lo, hi, names=(), names_from=0):
    def num(s):
        if s.upper() in names:
            return names.index(s.upper()) + names_from
        return int(s)

    out = set()
    for item in text.split(","):
        rng, _, step = item.partition("/")
        step = int(step) if step else 1
        if rng in ("*", "?"):
            a, b = lo, hi
        elif "-" in rng:
            a, b = (num(x) for x in rng.split("-"))
        else:
            a = num(rng)
            b = hi if "/" in item else a
        out.update(range(a, b + 1, step))
    return out


def days_in_month(y, m):
    return ((dt.date(y + (m == 12), m % 12 + 1, 1)) - dt.date(y, m, 1)).days


def cron_day_matches(fields, day):
    dom_f, mon_f, dow_f = fields[2], fields[3], fields[4]
    if day.month not in cron_values(mon_f, 1, 12, MONTHS, 1):
        return False
    dim = days_in_month(day.year, day.month)
    wd = (day.weekday() + 1) % 7  # cron: Sunday = 0
    dom_ok = False
    for tok in dom_f.split(","):
        if tok.upper() == "L":
            dom_ok |= day.day == dim
        else:
            dom_ok |= day.day in cron_values(tok, 1, 31)
    dow_ok = False
    for tok in dow_f.split(","):
        if "#" in tok:
            d, k = tok.split("#")
            dow_ok |= (wd in {x % 7 for x in cron_values(d, 0, 7, DAYS)}
                       and (day.day - 1) // 7 + 1 == int(k))
        elif tok.upper().endswith("L"):
            dow_ok |= wd in {x % 7 for x in cron_values(tok[:-1], 0, 7, DAYS)} and day.day + 7 > dim
        elif tok in ("*", "?"):
            dow_ok = True
        else:
            dow_ok |= wd in {x % 7 for x in cron_values(tok, 0, 7, DAYS)}
    dom_star = dom_f in ("*", "?")
    dow_star = dow_f in ("*", "?")
    if not dom_star and not dow_star:
        return dom_ok or dow_ok
    return (dom_star or dom_ok) and (dow_star or dow_ok)


def cron_locals(expr, first_day, last_day):
    fields = expr.split()
    assert len(fields) == 5, "the tables use 5-field cron"
    minutes = cron_values(fields[0], 0, 59)
    hours = cron_values(fields[1], 0, 23)
    day = first_day
    while day <= last_day:
        if cron_day_matches(fields, day):
            for minute_of_day in range(24 * 60):  # every minute of the day
                h, m = divmod(minute_of_day, 60)
                if h in hours and m in minutes:
                    yield dt.datetime.combine(day, dt.time(h, m))
        day += dt.timedelta(days=1)


# ---- rrule, dateutil -----------------------------------------------------------------

def rrule_locals(rule, dtstart, zone, exdate, last_local):
    parts = []
    for p in rule.split(";"):
        k, v = p.split("=")
        if k == "UNTIL" and v.endswith("Z"):
            # A UTC UNTIL bounds the local times up to its local reading.
            u = dt.datetime.strptime(v, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            v = u.astimezone(zone).replace(tzinfo=None).strftime("%Y%m%dT%H%M%S")
        parts.append(f"{k}={v}")
    r = du.rrulestr(";".join(parts), dtstart=dtstart)
    excluded = set(exdate)
    for t in r:
        if t > last_local:
            return
        if t not in excluded:
            yield t


# ---- local -> UTC with the policy ----------------------------------------------------

def resolve(local, zone, missing, repeated):
    """Fired UTC instants of one local time."""
    a = local.replace(tzinfo=zone, fold=0)
    b = local.replace(tzinfo=zone, fold=1)
    ua, ub = a.astimezone(UTC), b.astimezone(UTC)
    exists = ua.astimezone(zone).replace(tzinfo=None) == local
    if ua == ub:
        return [ua]
    if not exists:  # a gap: fold=0 uses the offset before it
        return [ua] if missing == "shift_forward" else []
    first, second = sorted([ua, ub])
    return [first, second] if repeated == "both" else [first]


def parse_utc(s):
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def expected(schedule, window):
    zone = ZoneInfo(schedule["timezone"])
    frm, to = parse_utc(window[0]), parse_utc(window[1])
    start = parse_utc(schedule["start"]) if "start" in schedule else None
    end = parse_utc(schedule["end"]) if "end" in schedule else None
    limit = schedule.get("max_occurrences")
    missing = schedule.get("on_missing_time", "shift_forward")
    repeated = schedule.get("on_repeated_time", "first")
    last_local = (to + dt.timedelta(days=2)).replace(tzinfo=None)
    if schedule["type"] == "cron":
        begin = start if start is not None else frm
        locals_ = cron_locals(schedule["expression"], (begin - dt.timedelta(days=2)).date(),
                              last_local.date())
    else:
        dtstart = dt.datetime.strptime(schedule["dtstart"], "%Y-%m-%dT%H:%M:%S")
        exdate = [dt.datetime.strptime(x, "%Y-%m-%dT%H:%M:%S") for x in schedule.get("exdate", [])]
        locals_ = rrule_locals(schedule["rule"], dtstart, zone, exdate, last_local)
    fired = set()
    for local in locals_:
        fired.update(resolve(local, zone, missing, repeated))
    fired = sorted(t for t in fired
                   if (start is None or t >= start) and (end is None or t < end))
    if limit is not None:
        fired = fired[:limit]
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in fired if frm <= t < to]


# ---- cases ---------------------------------------------------------------------------

BERLIN, NY, LH = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"
SPRING_BERLIN = ("2026-03-27T00:00:00Z", "2026-04-01T00:00:00Z")
FALL_BERLIN = ("2026-10-23T00:00:00Z", "2026-10-28T00:00:00Z")
SPRING_NY = ("2026-03-06T00:00:00Z", "2026-03-11T00:00:00Z")
FALL_NY = ("2026-10-30T00:00:00Z", "2026-11-04T00:00:00Z")


def cron(expr, tz, **kw):
    return {"type": "cron", "expression": expr, "timezone": tz, **kw}


def rr(rule, dtstart, tz, **kw):
    return {"type": "rrule", "rule": rule, "dtstart": dtstart, "timezone": tz, **kw}


CASES = []


def case(name, schedule, window):
    CASES.append((name, schedule, window))


def policies(name, make, spring, fall):
    for missing in ("shift_forward", "skip"):
        case(f"{name}_spring_{missing}", make(on_missing_time=missing), spring)
    for repeated in ("first", "both"):
        case(f"{name}_fall_{repeated}", make(on_repeated_time=repeated), fall)


for tz, name, spring, fall in [(BERLIN, "berlin", SPRING_BERLIN, FALL_BERLIN),
                               (NY, "new_york", SPRING_NY, FALL_NY)]:
    policies(f"{name}_cron_daily_0230", lambda tz=tz, **kw: cron("30 2 * * *", tz, **kw), spring, fall)
    policies(f"{name}_cron_daily_0130", lambda tz=tz, **kw: cron("30 1 * * *", tz, **kw), spring, fall)
    policies(f"{name}_cron_hourly", lambda tz=tz, **kw: cron("0 * * * *", tz, **kw), spring, fall)
    policies(f"{name}_rrule_daily_0230",
             lambda tz=tz, **kw: rr("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "2026-01-01T02:30:00", tz, **kw),
             spring, fall)
    policies(f"{name}_rrule_hourly",
             lambda tz=tz, **kw: rr("FREQ=HOURLY", "2026-01-01T00:15:00", tz, **kw), spring, fall)

policies("lord_howe_quarter_hours", lambda **kw: cron("*/15 1-2 * * *", LH, **kw),
         ("2026-10-02T00:00:00Z", "2026-10-06T00:00:00Z"),
         ("2026-04-03T00:00:00Z", "2026-04-07T00:00:00Z"))
policies("lord_howe_rrule_minutely",
         lambda **kw: rr("FREQ=MINUTELY;INTERVAL=20;BYHOUR=1,2", "2026-01-01T00:00:00", LH, **kw),
         ("2026-10-02T00:00:00Z", "2026-10-06T00:00:00Z"),
         ("2026-04-03T00:00:00Z", "2026-04-07T00:00:00Z"))
case("ho_chi_minh_weekdays", cron("0 8 * * MON-FRI", "Asia/Ho_Chi_Minh"),
     ("2026-11-01T00:00:00Z", "2026-11-15T00:00:00Z"))
case("ho_chi_minh_rrule_weekdays",
     rr("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=8;BYMINUTE=0", "2026-11-02T08:00:00", "Asia/Ho_Chi_Minh"),
     ("2026-11-01T00:00:00Z", "2026-11-15T00:00:00Z"))
YEAR_2026 = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")
case("last_friday_cron", cron("0 17 * * 5L", BERLIN), YEAR_2026)
case("last_friday_rrule", rr("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0", "2026-01-01T17:00:00", BERLIN),
     YEAR_2026)
LEAP = ("2024-01-01T00:00:00Z", "2033-01-01T00:00:00Z")
case("leap_day_rrule", rr("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "2024-02-29T09:00:00", BERLIN), LEAP)
case("leap_day_cron", cron("0 9 29 2 *", BERLIN), LEAP)
for p in ("shift_forward", "skip"):
    for q in ("first", "both"):
        case(f"biweekly_sunday_0230_{p}_{q}",
             rr("FREQ=WEEKLY;INTERVAL=2;BYDAY=SU;BYHOUR=2;BYMINUTE=30", "2026-03-01T02:30:00", BERLIN,
                on_missing_time=p, on_repeated_time=q), YEAR_2026)
# rust-rrule#115: Europe/London, half-hours from 00:00 to 04:30 daily since 2000.
for q in ("first", "both"):
    london = rr("FREQ=DAILY;BYHOUR=0,1,2,3,4;BYMINUTE=0,30", "2000-01-01T00:00:00", "Europe/London",
                on_repeated_time=q)
    case(f"rust_rrule_115_forward_{q}", london, ("2024-03-31T00:00:00Z", "2024-03-31T04:00:01Z"))
    case(f"rust_rrule_115_back_{q}", london, ("2024-10-27T00:00:00Z", "2024-10-27T04:00:01Z"))
case("daily_0230_from_winter_across_the_year",
     rr("FREQ=DAILY", "2026-01-10T02:30:00", BERLIN), YEAR_2026)
case("cron_dom_or_dow", cron("0 12 13 * FRI", BERLIN), ("2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z"))
case("cron_last_day_of_month", cron("0 0 L * *", "UTC"), ("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"))
case("cron_second_monday", cron("30 9 * * MON#2", NY), YEAR_2026)
case("cron_steps_and_lists", cron("5/20 8-18/5 1,15 JAN-MAR *", "Asia/Kathmandu"),
     ("2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z"))
case("last_weekday_setpos",
     rr("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=18;BYMINUTE=0", "2026-01-01T18:00:00", BERLIN),
     YEAR_2026)
case("count", rr("FREQ=DAILY;COUNT=5", "2026-03-27T02:30:00", BERLIN), SPRING_BERLIN)
case("until_utc", rr("FREQ=DAILY;UNTIL=20260310T070000Z", "2026-03-01T08:00:00", BERLIN),
     ("2026-02-01T00:00:00Z", "2026-04-01T00:00:00Z"))
case("until_local", rr("FREQ=DAILY;UNTIL=20260310T075959", "2026-03-01T08:00:00", BERLIN),
     ("2026-02-01T00:00:00Z", "2026-04-01T00:00:00Z"))
case("exdate", rr("FREQ=WEEKLY;BYDAY=TH", "2026-12-03T08:00:00", BERLIN,
                  exdate=["2026-12-24T08:00:00", "2026-12-31T08:00:00"]),
     ("2026-12-01T00:00:00Z", "2027-01-20T00:00:00Z"))
case("max_occurrences_cron_far_window",
     cron("0 8 * * *", BERLIN, start="2026-01-01T00:00:00Z", max_occurrences=40),
     ("2026-02-05T00:00:00Z", "2026-02-15T00:00:00Z"))
case("max_occurrences_rrule_far_window",
     rr("FREQ=DAILY;BYHOUR=8,20", "2026-01-01T00:00:00", BERLIN, max_occurrences=70),
     ("2026-02-01T00:00:00Z", "2026-02-15T00:00:00Z"))
case("count_far_window", rr("FREQ=WEEKLY;BYDAY=MO,FR;COUNT=12", "2026-01-01T09:00:00", BERLIN),
     ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"))
case("yearly_nth_weekday_of_year", rr("FREQ=YEARLY;BYDAY=-1SU;BYHOUR=1;BYMINUTE=0", "2020-01-01T01:00:00", NY),
     ("2020-01-01T00:00:00Z", "2031-01-01T00:00:00Z"))
case("yearday", rr("FREQ=YEARLY;BYYEARDAY=1,-1;BYHOUR=12", "2024-01-01T12:00:00", "UTC"),
     ("2024-01-01T00:00:00Z", "2027-01-01T00:00:00Z"))
case("monthly_negative_monthday_wkst", rr("FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=-1,1;WKST=SU", "2026-01-15T06:00:00", NY),
     YEAR_2026)


def main():
    print("// Generated by scripts/expected_occurrences.py (python-dateutil, zoneinfo, brute-force cron).")
    print("// Do not edit by hand: change the cases there and paste its output here.")
    print("pub(super) const CASES: &[Case] = &[")
    for name, schedule, window in CASES:
        times = expected(schedule, window)
        print("    Case {")
        print(f"        name: {json.dumps(name)},")
        print(f"        schedule: r#\"{json.dumps(schedule, separators=(',', ':'))}\"#,")
        print(f"        from: {json.dumps(window[0])},")
        print(f"        to: {json.dumps(window[1])},")
        print("        expected: &[")
        for t in times:
            print(f"            {json.dumps(t)},")
        print("        ],")
        print("    },")
    print("];")


if __name__ == "__main__":
    main()
