//! The bad-input corpus: definitions with one bad field each, read from
//! `tests/corpus/definitions.jsonl`. A case is a patch on a valid definition (`null`
//! removes a field) or a `whole` value; string values `@repeat:C:N` (C repeated N times)
//! and `@nest:N` (objects nested N deep) stand for inputs too large to keep in the file.
//! `field` is the field the error must name and `error` the whole message.

use serde_json::{Map, Value, json};

pub const DEFINITIONS: &str = include_str!("../corpus/definitions.jsonl");

#[derive(Debug, Clone)]
#[allow(dead_code)] // the command line's test reads no `field`: it checks the whole message
pub struct BadDefinition {
    pub case: String,
    pub input: Value,
    pub field: String,
    pub error: String,
}

/// The valid definition every patch starts from.
pub fn base_definition() -> Value {
    json!({
        "tenant_id": "acme", "device_workflow_step_id": "s1", "workflow_id": "w1",
        "device_id": "d1", "enabled": true, "version": 1,
        "payload": {"action": "water", "litres": 2},
        "schedule": {"type": "rate", "every": "15m", "start": "2026-11-26T00:00:00Z"}
    })
}

/// Every case of the corpus, expanded.
pub fn bad_definitions() -> Vec<BadDefinition> {
    DEFINITIONS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let case: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1));
            let text = |name: &str| case[name].as_str().unwrap_or_default().to_owned();
            let input = match case.get("whole") {
                Some(whole) => expand(whole.clone()),
                None => {
                    let mut def = base_definition();
                    patch(&mut def, &case["patch"]);
                    def
                }
            };
            BadDefinition {
                case: text("case"),
                input,
                field: text("field"),
                error: text("error"),
            }
        })
        .collect()
}

fn patch(target: &mut Value, with: &Value) {
    let (Some(obj), Some(changes)) = (target.as_object_mut(), with.as_object()) else {
        return;
    };
    for (k, v) in changes {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), expand(v.clone()));
        }
    }
}

fn expand(v: Value) -> Value {
    match v {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix("@repeat:") {
                let (c, n) = rest.split_once(':').unwrap_or((rest, "1"));
                return Value::String(c.repeat(n.parse().unwrap_or(1)));
            }
            if let Some(n) = s.strip_prefix("@nest:") {
                let mut v = json!({"leaf": 1});
                for _ in 1..n.parse::<usize>().unwrap_or(1) {
                    let mut m = Map::new();
                    m.insert("level".into(), v);
                    v = Value::Object(m);
                }
                return v;
            }
            Value::String(s)
        }
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, expand(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(expand).collect()),
        other => other,
    }
}
