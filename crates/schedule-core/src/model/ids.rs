//! Validated id newtypes. An id matches `[A-Za-z0-9_.:-]{1,128}`: a `#` would let one
//! tenant forge another's key, so anything else is rejected with the field and value named.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits::MAX_ID_LEN;

/// An id that does not match `[A-Za-z0-9_.:-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct IdError {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

fn validate(field: &'static str, value: &str) -> Result<(), IdError> {
    let fail = |reason| {
        Err(IdError {
            field,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("must not be empty");
    }
    if value.len() > MAX_ID_LEN {
        return fail("must be at most 128 characters");
    }
    if !value.is_ascii() {
        return fail("must be ASCII: letters, digits and _ . : -");
    }
    if value.contains('#') {
        return fail("must not contain '#', the key separator");
    }
    if let Some(_bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return fail("may contain only letters, digits and _ . : -");
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The field name used in errors.
            pub const FIELD: &'static str = $field;

            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($field, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Owner of definitions and occurrences; the first part of every key.
    TenantId,
    "tenant_id"
);
id_type!(
    /// A device workflow step: one definition, many occurrences.
    StepId,
    "device_workflow_step_id"
);
id_type!(
    /// The device the step acts on.
    DeviceId,
    "device_id"
);
id_type!(
    /// The workflow the step belongs to.
    WorkflowId,
    "workflow_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        let id = TenantId::parse("Acme_01.eu:west-1").unwrap();
        assert_eq!(id.as_str(), "Acme_01.eu:west-1");
        assert!(StepId::parse("a".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_with_field_and_value_named() {
        let cases = [
            ("", "must not be empty"),
            ("acme#DATE#2026", "must not contain '#', the key separator"),
            ("café", "must be ASCII: letters, digits and _ . : -"),
            ("a b", "may contain only letters, digits and _ . : -"),
            ("a/b", "may contain only letters, digits and _ . : -"),
        ];
        for (value, reason) in cases {
            let err = TenantId::parse(value).unwrap_err();
            assert_eq!(err.field, "tenant_id");
            assert_eq!(err.value, value);
            assert_eq!(err.reason, reason);
            let text = err.to_string();
            assert!(
                text.contains("tenant_id") && text.contains(&format!("{value:?}")),
                "{text}"
            );
        }
        let long = "x".repeat(129);
        let err = DeviceId::parse(long.clone()).unwrap_err();
        assert_eq!(
            (err.field, err.value.as_str()),
            ("device_id", long.as_str())
        );
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<WorkflowId>("\"w#1\"").unwrap_err();
        assert!(err.to_string().contains("workflow_id"), "{err}");
        let ok: WorkflowId = serde_json::from_str("\"w1\"").unwrap();
        assert_eq!(ok.as_str(), "w1");
    }
}
