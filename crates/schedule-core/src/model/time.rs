//! `Timestamp`: a UTC instant at second precision, written `2026-11-26T10:30:00Z`.
//! Fixed width, so string order is time order — the keys rely on it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {value:?}: {reason}")]
pub struct TimeError {
    pub value: String,
    pub reason: String,
}

/// A UTC instant truncated to the second, between years 1970 and 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Truncates sub-second precision.
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        Self(t.with_nanosecond(0).unwrap_or(t))
    }

    pub fn from_epoch_seconds(secs: i64) -> Option<Self> {
        Utc.timestamp_opt(secs, 0).single().map(Self)
    }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`; fractions and offsets are rejected so that
    /// every stored time has one spelling.
    pub fn parse(value: &str) -> Result<Self, TimeError> {
        let fail = |reason: &str| TimeError {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let b = value.as_bytes();
        let shape_ok = b.len() == 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z';
        if !shape_ok {
            return Err(fail(
                "expected UTC RFC 3339 with second precision, like 2026-11-26T10:30:00Z",
            ));
        }
        DateTime::parse_from_rfc3339(value)
            .map(|t| Self(t.with_timezone(&Utc)))
            .map_err(|e| fail(&e.to_string()))
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    pub fn epoch_seconds(&self) -> i64 {
        self.0.timestamp()
    }

    /// The UTC calendar date, which partitions the schedule table.
    pub fn date(&self) -> NaiveDate {
        self.0.date_naive()
    }

    pub fn plus(&self, d: Duration) -> Self {
        Self(self.0 + chrono::Duration::seconds(d.as_secs() as i64))
    }

    pub fn minus(&self, d: Duration) -> Self {
        Self(self.0 - chrono::Duration::seconds(d.as_secs() as i64))
    }

    /// Whole seconds from `self` until `later`, rounded up; zero when `later` is not after.
    pub fn seconds_until_ceil(&self, later: DateTime<Utc>) -> u64 {
        let millis = (later - self.0).num_milliseconds();
        if millis <= 0 {
            0
        } else {
            (millis as u64).div_ceil(1000)
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, TimeError> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_rejects_other_spellings() {
        let t = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-26T10:30:00Z");
        for bad in [
            "2026-11-26T10:30:00.5Z",
            "2026-11-26T10:30:00+00:00",
            "2026-11-26 10:30:00Z",
            "2026-11-26T25:30:00Z",
            "2026-02-30T10:30:00Z",
            "",
        ] {
            let err = Timestamp::parse(bad).unwrap_err();
            assert_eq!(err.value, bad);
        }
    }

    #[test]
    fn ceil_of_seconds_until() {
        let t = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        let later = t.as_datetime() + chrono::Duration::milliseconds(1001);
        assert_eq!(t.seconds_until_ceil(later), 2);
        assert_eq!(t.seconds_until_ceil(t.as_datetime()), 0);
        assert_eq!(
            t.seconds_until_ceil(t.as_datetime() - chrono::Duration::seconds(5)),
            0
        );
    }

    proptest! {
        #[test]
        fn string_order_is_time_order(a in 0i64..253_402_300_799, b in 0i64..253_402_300_799) {
            let (ta, tb) = (Timestamp::from_epoch_seconds(a).unwrap(), Timestamp::from_epoch_seconds(b).unwrap());
            prop_assert_eq!(ta.cmp(&tb), ta.to_string().cmp(&tb.to_string()));
            prop_assert_eq!(Timestamp::parse(&ta.to_string()).unwrap(), ta);
        }
    }
}
