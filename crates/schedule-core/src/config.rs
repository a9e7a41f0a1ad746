//! Settings, read once from the environment into typed values. Every error names the
//! variable and its value.

use std::time::Duration;

use crate::error::ConfigError;
use crate::limits::{DEFAULT_RETENTION, DEFAULT_STATUS_SHARDS, MAX_STATUS_SHARDS};
use crate::model::parse_span;

/// Reads variables through a lookup function, so tests need not touch the process env.
#[derive(Debug, Clone, Copy)]
pub struct Env<F>(pub F);

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        fn lookup(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        }
        Env(lookup)
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        (self.0)(name).ok_or(ConfigError::Missing(name))
    }

    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.0)(name)
    }

    /// A span such as `5m`, or `default` when unset.
    pub fn span(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match (self.0)(name) {
            None => Ok(default),
            Some(v) => parse_span(name, &v).map_err(|e| ConfigError::Invalid {
                name,
                value: v,
                reason: e.reason,
            }),
        }
    }

    /// A whole number in `range`, or `default` when unset.
    pub fn number(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        match (self.0)(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ConfigError::Invalid {
                    name,
                    value: v,
                    reason: format!(
                        "expected a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                }),
            },
        }
    }
}

/// Where occurrences live and how they are indexed and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub schedule_table: String,
    pub status_shards: u16,
    pub retention: Duration,
}

impl StoreConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule_table: env.required("SCHEDULE_TABLE")?,
            status_shards: env.number(
                "STATUS_SHARDS",
                u64::from(DEFAULT_STATUS_SHARDS),
                1..=u64::from(MAX_STATUS_SHARDS),
            )? as u16,
            retention: env.span("RETENTION", DEFAULT_RETENTION)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env(move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let c = StoreConfig::from_env(&env(&[("SCHEDULE_TABLE", "t")])).unwrap();
        assert_eq!(
            (c.status_shards, c.retention),
            (16, Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            StoreConfig::from_env(&env(&[])).unwrap_err().to_string(),
            "environment variable SCHEDULE_TABLE is required but not set"
        );
        let err = StoreConfig::from_env(&env(&[("SCHEDULE_TABLE", "t"), ("STATUS_SHARDS", "0")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("STATUS_SHARDS") && err.to_string().contains("\"0\""),
            "{err}"
        );
        let err = StoreConfig::from_env(&env(&[("SCHEDULE_TABLE", "t"), ("RETENTION", "30 days")]))
            .unwrap_err();
        assert!(err.to_string().contains("RETENTION"), "{err}");
    }
}
