//! Table keys: `PK = TENANT#{tenant}#DATE#{yyyy-mm-dd}`, `SK = TIME#{time}#STEP#{step}`,
//! and the sparse GSI's hash key `status_shard = {STATUS}#{nn}`. Formats live here only.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::{IdError, StepId, TenantId};
use super::status::Status;
use super::time::{TimeError, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid {field} {value:?}: expected {expected}")]
    Shape {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("invalid key: PK date {pk_date} is not the UTC date of SK time {time}")]
    DateMismatch { pk_date: String, time: Timestamp },
}

/// The primary key of one occurrence in the schedule table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ScheduleKey {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
}

const PK_SHAPE: &str = "TENANT#{tenant_id}#DATE#{yyyy-mm-dd}";
const SK_SHAPE: &str = "TIME#{scheduled_time}#STEP#{device_workflow_step_id}";

/// Every occurrence's sort key starts with this: a day's occurrences are read with
/// `begins_with(SK, "TIME#")`, which leaves out the payload items beside them.
pub const OCCURRENCE_SK_PREFIX: &str = "TIME#";
/// Sort keys of payload items: a payload too large to keep on its occurrences is stored
/// once per tenant, day, step and definition version, beside them in the same partition.
pub const PAYLOAD_SK_PREFIX: &str = "PAYLOAD#";

impl ScheduleKey {
    pub fn new(tenant: &TenantId, scheduled_time: Timestamp, step: &StepId) -> Self {
        Self {
            pk: Self::partition(tenant, scheduled_time.date()),
            sk: format!("{OCCURRENCE_SK_PREFIX}{scheduled_time}#STEP#{step}"),
        }
    }

    /// The key of the payload item of `step` at definition `version` in this key's
    /// partition: `PAYLOAD#{step}#{version}`, never a `TIME#` key.
    pub fn payload_of(&self, step: &StepId, version: u64) -> Self {
        Self {
            pk: self.pk.clone(),
            sk: format!("{PAYLOAD_SK_PREFIX}{step}#{version}"),
        }
    }

    /// The partition holding one tenant's occurrences of one UTC day.
    pub fn partition(tenant: &TenantId, date: chrono::NaiveDate) -> String {
        format!("TENANT#{tenant}#DATE#{}", date.format("%Y-%m-%d"))
    }

    /// Parses and validates a key read from outside (a queue message, a CLI argument):
    /// the ids must be valid and the date must be the time's UTC date.
    pub fn parse(pk: &str, sk: &str) -> Result<(Self, TenantId, Timestamp, StepId), KeyError> {
        let pk_err = || KeyError::Shape {
            field: "PK",
            value: pk.to_owned(),
            expected: PK_SHAPE,
        };
        let sk_err = || KeyError::Shape {
            field: "SK",
            value: sk.to_owned(),
            expected: SK_SHAPE,
        };
        let rest = pk.strip_prefix("TENANT#").ok_or_else(pk_err)?;
        let (tenant, date) = rest.split_once("#DATE#").ok_or_else(pk_err)?;
        let tenant = TenantId::parse(tenant)?;
        let rest = sk.strip_prefix("TIME#").ok_or_else(sk_err)?;
        let (time, step) = rest.split_once("#STEP#").ok_or_else(sk_err)?;
        let time = Timestamp::parse(time)?;
        let step = StepId::parse(step)?;
        if time.date().format("%Y-%m-%d").to_string() != date {
            return Err(KeyError::DateMismatch {
                pk_date: date.to_owned(),
                time,
            });
        }
        Ok((Self::new(&tenant, time, &step), tenant, time, step))
    }
}

impl fmt::Display for ScheduleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.pk, self.sk)
    }
}

/// The shard an item lands on: FNV-1a of `PK` and `SK`, so it is stable across
/// processes and releases (unlike `std`'s randomly seeded hasher).
pub fn shard_of(key: &ScheduleKey, shards: u16) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in key.pk.bytes().chain([0u8]).chain(key.sk.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    (h % u64::from(shards.max(1))) as u16
}

/// The value of `status_shard` for an item that needs the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusShard(String);

impl StatusShard {
    pub fn new(status: Status, shard: u16) -> Self {
        Self(format!("{status}#{shard:02}"))
    }

    /// Every shard value of one status, to query them all.
    pub fn all(status: Status, shards: u16) -> impl Iterator<Item = StatusShard> {
        (0..shards.max(1)).map(move |n| Self::new(status, n))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StatusShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str, time: &str, s: &str) -> ScheduleKey {
        ScheduleKey::new(
            &TenantId::parse(t).unwrap(),
            Timestamp::parse(time).unwrap(),
            &StepId::parse(s).unwrap(),
        )
    }

    #[test]
    fn formats_match_the_design() {
        let k = key("acme", "2026-11-26T10:30:00Z", "s1");
        assert_eq!(k.pk, "TENANT#acme#DATE#2026-11-26");
        assert_eq!(k.sk, "TIME#2026-11-26T10:30:00Z#STEP#s1");
        assert_eq!(StatusShard::new(Status::Pending, 7).as_str(), "PENDING#07");
        assert_eq!(StatusShard::all(Status::Queued, 16).count(), 16);
    }

    #[test]
    fn parse_round_trips_and_rejects_forgeries() {
        let k = key("acme", "2026-11-26T23:59:59Z", "s.1");
        let (back, tenant, time, step) = ScheduleKey::parse(&k.pk, &k.sk).unwrap();
        assert_eq!(back, k);
        assert_eq!((tenant.as_str(), step.as_str()), ("acme", "s.1"));
        assert_eq!(time.to_string(), "2026-11-26T23:59:59Z");

        let err = ScheduleKey::parse("TENANT#acme#DATE#2026-11-27", &k.sk).unwrap_err();
        assert!(matches!(err, KeyError::DateMismatch { .. }), "{err}");
        let err = ScheduleKey::parse("acme", &k.sk).unwrap_err();
        assert!(err.to_string().contains("PK") && err.to_string().contains("\"acme\""));
        let err = ScheduleKey::parse(&k.pk, "TIME#2026-11-26T23:59:59Z#STEP#a#b").unwrap_err();
        assert!(err.to_string().contains("device_workflow_step_id"), "{err}");
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let k = key("acme", "2026-11-26T10:30:00Z", "s1");
        assert_eq!(shard_of(&k, 16), shard_of(&k.clone(), 16));
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            let k = key("acme", "2026-11-26T10:30:00Z", &format!("step-{i}"));
            seen[usize::from(shard_of(&k, 16))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "uneven spread: {seen:?}");
    }
}
