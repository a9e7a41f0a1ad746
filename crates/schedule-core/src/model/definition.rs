//! Definitions: the source of truth for what fires when. Outside DynamoDB a definition is a
//! plain JSON object; [`Definition::from_json`] validates it and names the field and value
//! of the first thing wrong.

use std::time::Duration;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Map, Value};

use super::ids::{DeviceId, IdError, StepId, TenantId, WorkflowId};
use super::time::{TimeError, Timestamp};
use crate::limits::{
    DYNAMO_MAX_DEPTH, DYNAMO_MAX_ITEM_BYTES, MAX_DEFINITION_ITEM_BYTES, MAX_PAYLOAD_BYTES,
    MIN_OCCURRENCE_INTERVAL,
};
use crate::recurrence::{self, RecurrenceError};

/// What is wrong with a definition: the field path, the offending value and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value}: {reason}")]
pub struct DefinitionError {
    pub field: String,
    /// The offending value as JSON (strings quoted), or `<missing>`.
    pub value: String,
    pub reason: String,
}

impl DefinitionError {
    fn new(field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl From<RecurrenceError> for DefinitionError {
    fn from(e: RecurrenceError) -> Self {
        Self::new(e.field(), e.value(), e.reason())
    }
}

impl From<IdError> for DefinitionError {
    fn from(e: IdError) -> Self {
        // An id can be any length: the message shows its start and says how long it is.
        let value = if e.value.len() > 80 {
            format!(
                "{} ({} bytes)",
                short(&Value::String(e.value.clone())),
                e.value.len()
            )
        } else {
            format!("{:?}", e.value)
        };
        Self::new(e.field, value, e.reason)
    }
}

/// The smallest repeat interval accepted (see [`MIN_OCCURRENCE_INTERVAL`]).
pub const MIN_RATE: Duration = MIN_OCCURRENCE_INTERVAL;

/// What to do with a local time that a daylight-saving jump skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingTimePolicy {
    #[default]
    ShiftForward,
    Skip,
}

/// What to do with a local time that occurs twice when daylight saving ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatedTimePolicy {
    #[default]
    First,
    Both,
}

/// The rule part of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Schedule {
    Once {
        at: Timestamp,
    },
    Rate {
        #[serde(serialize_with = "ser_span")]
        every: Duration,
        start: Timestamp,
        #[serde(skip_serializing_if = "Option::is_none")]
        end: Option<Timestamp>,
    },
    Cron {
        expression: String,
        #[serde(serialize_with = "ser_tz")]
        timezone: Tz,
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<Timestamp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        end: Option<Timestamp>,
    },
    Rrule {
        rule: String,
        #[serde(serialize_with = "ser_local")]
        dtstart: NaiveDateTime,
        #[serde(serialize_with = "ser_tz")]
        timezone: Tz,
        #[serde(skip_serializing_if = "Option::is_none")]
        end: Option<Timestamp>,
        /// Local times the rule would give that do not fire (RFC 5545 EXDATE).
        #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_locals")]
        exdate: Vec<NaiveDateTime>,
    },
}

/// A schedule: its rule plus the options that apply to every rule type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleSpec {
    #[serde(flatten)]
    pub rule: Schedule,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_occurrences: Option<u32>,
    pub on_missing_time: MissingTimePolicy,
    pub on_repeated_time: RepeatedTimePolicy,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_span"
    )]
    pub misfire_grace: Option<Duration>,
}

/// One device workflow step definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Definition {
    pub tenant_id: TenantId,
    pub device_workflow_step_id: StepId,
    pub workflow_id: WorkflowId,
    pub device_id: DeviceId,
    pub enabled: bool,
    pub version: u64,
    pub schedule: ScheduleSpec,
    pub payload: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl Definition {
    /// Validates a plain JSON definition. `PK`/`SK`, when present (an item read from
    /// DynamoDB, a stream image), must be the ones the ids derive: a row stored under one
    /// tenant's key that names another tenant would otherwise schedule steps for it.
    pub fn from_json(value: &Value) -> Result<Self, DefinitionError> {
        let def = Self::parse(value)?;
        let key = |name: &str| match value.get(name) {
            None => Ok(None),
            Some(Value::String(k)) => Ok(Some(k.as_str())),
            Some(other) => Err(DefinitionError::new(name, short(other), "must be a string")),
        };
        let (pk, sk) = (key("PK")?, key("SK")?);
        let (own_pk, own_sk) = def.key();
        def.check_key(pk.unwrap_or(&own_pk), sk.unwrap_or(&own_sk))?;
        Ok(def)
    }

    /// Reads a row of the definitions table stored under `pk`/`sk`: valid, and stored
    /// under the key its ids derive (see [`Definition::from_json`]).
    pub fn from_row(pk: &str, sk: &str, value: &Value) -> Result<Self, DefinitionError> {
        let def = Self::from_json(value)?;
        def.check_key(pk, sk)?;
        Ok(def)
    }

    /// The row's key must be the one the ids derive; the error names the key and the id.
    fn check_key(&self, pk: &str, sk: &str) -> Result<(), DefinitionError> {
        let (own_pk, own_sk) = self.key();
        if pk != own_pk {
            return Err(DefinitionError::new(
                "PK",
                format!("{pk:?}"),
                format!(
                    "does not match tenant_id {:?} (its key is {own_pk:?}): a row cannot define another tenant's step",
                    self.tenant_id.as_str()
                ),
            ));
        }
        if sk != own_sk {
            return Err(DefinitionError::new(
                "SK",
                format!("{sk:?}"),
                format!(
                    "does not match device_workflow_step_id {:?} (its key is {own_sk:?})",
                    self.device_workflow_step_id.as_str()
                ),
            ));
        }
        Ok(())
    }

    fn parse(value: &Value) -> Result<Self, DefinitionError> {
        let obj = value.as_object().ok_or_else(|| {
            DefinitionError::new("definition", short(value), "must be a JSON object")
        })?;
        let fields = Fields { obj, prefix: "" };
        let payload = match obj.get("payload") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(DefinitionError::new(
                    "payload",
                    short(other),
                    "must be a JSON object",
                ));
            }
        };
        let size = serde_json::to_vec(&payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD_BYTES {
            return Err(DefinitionError::new(
                "payload",
                format!("<{size} bytes>"),
                format!("must be at most {MAX_PAYLOAD_BYTES} bytes as JSON"),
            ));
        }
        let depth = depth_of(&payload);
        if depth > DYNAMO_MAX_DEPTH {
            return Err(DefinitionError::new(
                "payload",
                format!("<nested {depth} levels deep>"),
                format!(
                    "nests {depth} levels of objects and arrays; DynamoDB stores at most {DYNAMO_MAX_DEPTH}"
                ),
            ));
        }
        let version = match obj.get("version") {
            None => 1,
            Some(v) => v.as_u64().ok_or_else(|| {
                DefinitionError::new("version", short(v), "must be a non-negative integer")
            })?,
        };
        let enabled = match obj.get("enabled") {
            None => true,
            Some(v) => v.as_bool().ok_or_else(|| {
                DefinitionError::new("enabled", short(v), "must be true or false")
            })?,
        };
        let schedule = obj
            .get("schedule")
            .ok_or_else(|| DefinitionError::new("schedule", "<missing>", "is required"))?;
        let def = Self {
            tenant_id: TenantId::parse(fields.string("tenant_id")?)?,
            device_workflow_step_id: StepId::parse(fields.string("device_workflow_step_id")?)?,
            workflow_id: WorkflowId::parse(fields.string("workflow_id")?)?,
            device_id: DeviceId::parse(fields.string("device_id")?)?,
            enabled,
            version,
            schedule: ScheduleSpec::from_json(schedule)?,
            payload,
            updated_at: fields.opt_time("updated_at")?,
        };
        let (pk, sk) = def.key();
        let size = serde_json::to_vec(&def)
            .map(|v| v.len() + pk.len() + sk.len())
            .unwrap_or(usize::MAX);
        if size > MAX_DEFINITION_ITEM_BYTES {
            return Err(DefinitionError::new(
                "definition",
                format!("<{size} bytes>"),
                format!(
                    "as a row of the definitions table it would be {size} bytes; a DynamoDB item holds at most {DYNAMO_MAX_ITEM_BYTES} bytes, and {MAX_DEFINITION_ITEM_BYTES} are accepted to leave room for the key and bookkeeping"
                ),
            ));
        }
        Ok(def)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Key of the definition in the definitions table.
    pub fn key(&self) -> (String, String) {
        Self::key_of(&self.tenant_id, &self.device_workflow_step_id)
    }

    pub fn key_of(tenant: &TenantId, step: &StepId) -> (String, String) {
        (format!("TENANT#{tenant}"), format!("STEP#{step}"))
    }
}

impl ScheduleSpec {
    pub fn from_json(value: &Value) -> Result<Self, DefinitionError> {
        let obj = value.as_object().ok_or_else(|| {
            DefinitionError::new("schedule", short(value), "must be a JSON object")
        })?;
        let f = Fields {
            obj,
            prefix: "schedule.",
        };
        let kind = f.string("type")?;
        let rule = match kind {
            "once" => Schedule::Once { at: f.time("at")? },
            "rate" => {
                let every = parse_span("schedule.every", f.string("every")?)?;
                if every < MIN_RATE {
                    return Err(DefinitionError::new(
                        "schedule.every",
                        format!("{:?}", f.string("every")?),
                        "must be at least 1m",
                    ));
                }
                Schedule::Rate {
                    every,
                    start: f.time("start")?,
                    end: f.opt_time("end")?,
                }
            }
            "cron" => Schedule::Cron {
                expression: f
                    .string("expression")?
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                timezone: f.timezone("timezone")?,
                start: f.opt_time("start")?,
                end: f.opt_time("end")?,
            },
            "rrule" => {
                let rule = f.string("rule")?;
                Schedule::Rrule {
                    rule: rule.strip_prefix("RRULE:").unwrap_or(rule).to_owned(),
                    dtstart: parse_local("schedule.dtstart", f.string("dtstart")?)?,
                    timezone: f.timezone("timezone")?,
                    end: f.opt_time("end")?,
                    exdate: f.exdates("exdate")?,
                }
            }
            other => {
                return Err(DefinitionError::new(
                    "schedule.type",
                    format!("{other:?}"),
                    "expected one of once, rate, cron, rrule",
                ));
            }
        };
        let max_occurrences = match obj.get("max_occurrences") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        DefinitionError::new(
                            "schedule.max_occurrences",
                            short(v),
                            "must be a positive integer",
                        )
                    })?,
            ),
        };
        let on_missing_time = match f.opt_string("on_missing_time")? {
            None | Some("shift_forward") => MissingTimePolicy::ShiftForward,
            Some("skip") => MissingTimePolicy::Skip,
            Some(other) => {
                return Err(DefinitionError::new(
                    "schedule.on_missing_time",
                    format!("{other:?}"),
                    "expected shift_forward or skip",
                ));
            }
        };
        let on_repeated_time = match f.opt_string("on_repeated_time")? {
            None | Some("first") => RepeatedTimePolicy::First,
            Some("both") => RepeatedTimePolicy::Both,
            Some(other) => {
                return Err(DefinitionError::new(
                    "schedule.on_repeated_time",
                    format!("{other:?}"),
                    "expected first or both",
                ));
            }
        };
        let misfire_grace = f
            .opt_string("misfire_grace")?
            .map(|s| parse_span("schedule.misfire_grace", s))
            .transpose()?;
        let spec = Self {
            rule,
            max_occurrences,
            on_missing_time,
            on_repeated_time,
            misfire_grace,
        };
        recurrence::validate(&spec)?;
        Ok(spec)
    }
}

/// A local wall time `2026-11-02T08:00:00` (no offset: the schedule's zone applies).
fn parse_local(field: &str, raw: &str) -> Result<NaiveDateTime, DefinitionError> {
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S").map_err(|_| {
        DefinitionError::new(
            field,
            format!("{raw:?}"),
            "expected a local time like 2026-11-02T08:00:00 (no offset; see timezone)",
        )
    })
}

/// Parses a span such as `15m`: a positive integer and one unit of `s`, `m`, `h`, `d`.
pub fn parse_span(field: &str, raw: &str) -> Result<Duration, DefinitionError> {
    let err = || {
        DefinitionError::new(
            field,
            format!("{raw:?}"),
            "expected a positive whole number and a unit s, m, h or d, like 15m",
        )
    };
    let unit_at = raw.len().checked_sub(1).ok_or_else(err)?;
    let (digits, unit) = raw.split_at(unit_at);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err()),
    };
    match n.checked_mul(scale) {
        Some(secs) if secs > 0 && secs <= 366 * 86_400 * 100 => Ok(Duration::from_secs(secs)),
        _ => Err(err()),
    }
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Fields<'a> {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn opt_string(&self, key: &str) -> Result<Option<&'a str>, DefinitionError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(DefinitionError::new(
                self.name(key),
                short(other),
                "must be a string",
            )),
        }
    }

    fn string(&self, key: &str) -> Result<&'a str, DefinitionError> {
        self.opt_string(key)?
            .ok_or_else(|| DefinitionError::new(self.name(key), "<missing>", "is required"))
    }

    fn opt_time(&self, key: &str) -> Result<Option<Timestamp>, DefinitionError> {
        self.opt_string(key)?
            .map(|s| {
                Timestamp::parse(s).map_err(|TimeError { value, reason }| {
                    DefinitionError::new(self.name(key), format!("{value:?}"), reason)
                })
            })
            .transpose()
    }

    fn time(&self, key: &str) -> Result<Timestamp, DefinitionError> {
        self.opt_time(key)?
            .ok_or_else(|| DefinitionError::new(self.name(key), "<missing>", "is required"))
    }

    /// An optional list of local times; an error names the element, like `schedule.exdate[1]`.
    fn exdates(&self, key: &str) -> Result<Vec<NaiveDateTime>, DefinitionError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let field = format!("{}[{i}]", self.name(key));
                    match v {
                        Value::String(s) => parse_local(&field, s),
                        other => Err(DefinitionError::new(
                            field,
                            short(other),
                            "must be a local time string like 2026-12-24T08:00:00",
                        )),
                    }
                })
                .collect(),
            Some(other) => Err(DefinitionError::new(
                self.name(key),
                short(other),
                "must be a list of local times like [\"2026-12-24T08:00:00\"]",
            )),
        }
    }

    fn timezone(&self, key: &str) -> Result<Tz, DefinitionError> {
        let raw = self.string(key)?;
        raw.parse::<Tz>().map_err(|_| {
            DefinitionError::new(
                self.name(key),
                format!("{raw:?}"),
                "unknown IANA time zone (expected a name like Asia/Ho_Chi_Minh or UTC)",
            )
        })
    }
}

/// How deep `value` nests as an attribute of a DynamoDB item: a map or list is one level
/// more than its deepest element, a scalar none (the payload map itself is level 1).
fn depth_of(value: &Map<String, Value>) -> usize {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    1 + value.values().map(depth).max().unwrap_or(0)
}

/// A value for an error message, cut short so a huge payload does not flood the log.
fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let cut = (0..=80).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A span as `parse_span` reads it: `15m`, `2h`, `1d`, `90s`.
pub fn format_span(d: &Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

fn ser_span<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_span(d))
}

fn ser_opt_span<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_span(d)),
        None => s.serialize_none(),
    }
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

fn ser_local<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.format("%Y-%m-%dT%H:%M:%S"))
}

fn ser_locals<S: serde::Serializer>(ts: &[NaiveDateTime], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ts.iter().map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(schedule: Value) -> Value {
        json!({"tenant_id":"acme","device_workflow_step_id":"s1","workflow_id":"w1","device_id":"d1",
               "enabled":true,"version":3,"schedule":schedule,"payload":{"action":"open_valve"}})
    }

    #[test]
    fn parses_every_schedule_type_and_round_trips() {
        let schedules = [
            json!({"type":"once","at":"2026-11-26T10:30:00Z"}),
            json!({"type":"rate","every":"15m","start":"2026-11-26T00:00:00Z","end":"2026-11-27T00:00:00Z","misfire_grace":"1h"}),
            json!({"type":"cron","expression":"0 8 * * MON-FRI","timezone":"Asia/Ho_Chi_Minh"}),
            json!({"type":"rrule","rule":"FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=8;BYMINUTE=0","dtstart":"2026-11-02T08:00:00","timezone":"Europe/Berlin","on_missing_time":"skip","on_repeated_time":"both","max_occurrences":10}),
        ];
        for s in schedules {
            let d = Definition::from_json(&base(s.clone())).unwrap();
            assert_eq!(d.version, 3);
            let again = Definition::from_json(&d.to_json()).unwrap();
            assert_eq!(again, d, "round trip of {s}");
        }
        let d = Definition::from_json(&base(
            json!({"type":"rate","every":"2h","start":"2026-11-26T00:00:00Z"}),
        ))
        .unwrap();
        assert!(
            matches!(d.schedule.rule, Schedule::Rate { every, .. } if every == Duration::from_secs(7200))
        );
        assert_eq!(d.key(), ("TENANT#acme".to_owned(), "STEP#s1".to_owned()));
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let cases = [
            (
                base(json!({"type":"cron","expression":"0 8 * * *","timezone":"Mars/Olympus"})),
                "schedule.timezone",
                "\"Mars/Olympus\"",
            ),
            (
                base(json!({"type":"cron","expression":"0 8 * *","timezone":"UTC"})),
                "schedule.expression",
                "\"0 8 * *\"",
            ),
            (
                base(json!({"type":"rate","every":"15x","start":"2026-11-26T00:00:00Z"})),
                "schedule.every",
                "\"15x\"",
            ),
            (
                base(json!({"type":"rate","every":"10s","start":"2026-11-26T00:00:00Z"})),
                "schedule.every",
                "\"10s\"",
            ),
            (
                base(json!({"type":"once","at":"2026-11-26 10:30"})),
                "schedule.at",
                "\"2026-11-26 10:30\"",
            ),
            (
                base(json!({"type":"weekly"})),
                "schedule.type",
                "\"weekly\"",
            ),
            (
                base(
                    json!({"type":"rrule","rule":"BYDAY=MO","dtstart":"2026-11-02T08:00:00","timezone":"UTC"}),
                ),
                "schedule.rule",
                "\"BYDAY=MO\"",
            ),
            (
                base(json!({"type":"once","at":"2026-11-26T10:30:00Z","on_missing_time":"later"})),
                "schedule.on_missing_time",
                "\"later\"",
            ),
        ];
        for (input, field, value) in cases {
            let err = Definition::from_json(&input).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.value.as_str()),
                (field, value),
                "{err}"
            );
        }
        let mut forged = base(json!({"type":"once","at":"2026-11-26T10:30:00Z"}));
        forged["tenant_id"] = json!("acme#DATE#2026-11-26");
        let err = Definition::from_json(&forged).unwrap_err();
        assert_eq!(err.field, "tenant_id");
        let mut missing = base(json!({"type":"once","at":"2026-11-26T10:30:00Z"}));
        missing.as_object_mut().unwrap().remove("device_id");
        assert_eq!(
            Definition::from_json(&missing).unwrap_err().to_string(),
            "invalid device_id <missing>: is required"
        );
    }

    #[test]
    fn payload_must_be_an_object_of_bounded_size() {
        let mut d = base(json!({"type":"once","at":"2026-11-26T10:30:00Z"}));
        d["payload"] = json!("open");
        assert_eq!(Definition::from_json(&d).unwrap_err().field, "payload");
        d["payload"] = json!({"blob": "x".repeat(MAX_PAYLOAD_BYTES)});
        let err = Definition::from_json(&d).unwrap_err();
        assert_eq!(err.field, "payload");
        assert!(err.reason.contains("at most"), "{err}");
    }

    #[test]
    fn payload_deeper_than_dynamodb_nests_is_rejected_naming_the_depth() {
        // A payload nesting `levels` maps (the payload itself is the first), or lists.
        let nested = |levels: usize, list: bool| {
            let mut v = json!(1);
            for _ in 1..levels {
                v = if list { json!([v]) } else { json!({"n": v}) };
            }
            json!({ "deep": v })
        };
        let mut d = base(json!({"type": "once", "at": "2026-11-26T10:30:00Z"}));
        for list in [false, true] {
            d["payload"] = nested(DYNAMO_MAX_DEPTH, list);
            assert!(Definition::from_json(&d).is_ok(), "32 levels are stored");
            d["payload"] = nested(DYNAMO_MAX_DEPTH + 1, list);
            let err = Definition::from_json(&d).unwrap_err();
            assert_eq!(err.field, "payload");
            assert!(
                err.to_string().contains("33 levels") && err.to_string().contains("32"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_definition_whose_row_would_pass_the_item_limit_is_rejected_naming_its_size() {
        let days = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| format!("{:04}-01-01T08:00:00", 2100 + i % 7000))
                .collect()
        };
        let rule = |exdate: Vec<String>| {
            json!({"type": "rrule", "rule": "FREQ=DAILY;BYHOUR=8;BYMINUTE=0",
                   "dtstart": "2026-11-02T08:00:00", "timezone": "Europe/Berlin", "exdate": exdate})
        };
        // 22 bytes a date as JSON: 20,000 of them are about 440 KB.
        let mut d = base(rule(days(20_000)));
        let Err(err) = Definition::from_json(&d) else {
            panic!("a definition of more than 400 KB as a row is accepted");
        };
        assert_eq!(err.field, "definition");
        let size: usize = err
            .value
            .trim_matches(|c| c == '<' || c == '>')
            .trim_end_matches(" bytes")
            .parse()
            .unwrap();
        assert!(size > DYNAMO_MAX_ITEM_BYTES, "{err}");
        assert!(
            err.reason.contains(&DYNAMO_MAX_ITEM_BYTES.to_string()),
            "{err}"
        );
        // A payload at its own limit together with a long rule still fits, with the margin.
        d["schedule"] = rule(days(1_000));
        d["payload"] = json!({"blob": "x".repeat(MAX_PAYLOAD_BYTES - 20)});
        assert!(Definition::from_json(&d).is_ok());
    }

    #[test]
    fn a_row_key_must_be_the_one_its_ids_derive() {
        let mut d = base(json!({"type": "once", "at": "2026-11-26T10:30:00Z"}));
        assert!(Definition::from_row("TENANT#acme", "STEP#s1", &d).is_ok());
        let err = Definition::from_row("TENANT#initech", "STEP#s1", &d).unwrap_err();
        assert_eq!(err.field, "PK");
        assert!(
            err.to_string().contains("TENANT#initech") && err.to_string().contains("acme"),
            "{err}"
        );
        let err = Definition::from_row("TENANT#acme", "STEP#s2", &d).unwrap_err();
        assert_eq!(err.field, "SK");
        d["PK"] = json!("TENANT#globex");
        let err = Definition::from_json(&d).unwrap_err();
        assert_eq!(err.field, "PK");
        d["PK"] = json!(7);
        assert_eq!(Definition::from_json(&d).unwrap_err().field, "PK");
    }

    #[test]
    fn spans() {
        assert_eq!(parse_span("f", "15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_span("f", "1d").unwrap(), Duration::from_secs(86_400));
        for bad in [
            "",
            "m",
            "0m",
            "-1m",
            "1.5h",
            "15",
            "15 m",
            "99999999999999999999d",
        ] {
            assert!(parse_span("f", bad).is_err(), "{bad}");
        }
    }
}
