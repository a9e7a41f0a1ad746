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

/// How every AWS SDK client of a process talks to DynamoDB and SQS. The clients' own
/// retries are off ([`crate::retry::retrying`] is the one retry layer), so these bound one
/// attempt: a hung call is cut here, not by the Lambda timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkSettings {
    /// Establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// One call, from the first byte sent to the last byte read.
    pub operation_timeout: Duration,
    /// One attempt of a call (with the SDK's retries off, one call is one attempt; kept
    /// separate so a future SDK default cannot add attempts without a bound).
    pub attempt_timeout: Duration,
}

impl Default for SdkSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(3_000),
            operation_timeout: Duration::from_millis(10_000),
            attempt_timeout: Duration::from_millis(10_000),
        }
    }
}

impl SdkSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let ms = |d: Duration| d.as_millis() as u64;
        let connect = env.number(
            "AWS_CONNECT_TIMEOUT_MS",
            ms(defaults.connect_timeout),
            10..=60_000,
        )?;
        let operation = env.number(
            "AWS_OPERATION_TIMEOUT_MS",
            ms(defaults.operation_timeout),
            100..=900_000,
        )?;
        let attempt = env.number("AWS_ATTEMPT_TIMEOUT_MS", operation, 100..=900_000)?;
        if attempt > operation {
            return Err(ConfigError::Invalid {
                name: "AWS_ATTEMPT_TIMEOUT_MS",
                value: attempt.to_string(),
                reason: format!(
                    "one attempt cannot outlast the whole call (AWS_OPERATION_TIMEOUT_MS is {operation})"
                ),
            });
        }
        Ok(Self {
            connect_timeout: Duration::from_millis(connect),
            operation_timeout: Duration::from_millis(operation),
            attempt_timeout: Duration::from_millis(attempt),
        })
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

/// Device validation: the registry (or none: allow all) and the cache in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationConfig {
    /// `None` allows every device (local runs, or no registry in the deployment).
    pub registry_url: Option<String>,
    pub timeout: Duration,
    pub cache: crate::validation_cache::CacheSettings,
}

impl ValidationConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let registry_url = env.optional("DEVICE_REGISTRY_URL");
        if let Some(url) = &registry_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                name: "DEVICE_REGISTRY_URL",
                value: url.clone(),
                reason: "expected an http:// or https:// URL (or nothing, to allow every device)"
                    .to_owned(),
            });
        }
        Ok(Self {
            registry_url,
            timeout: env.span("DEVICE_REGISTRY_TIMEOUT", Duration::from_secs(2))?,
            cache: crate::validation_cache::CacheSettings {
                positive_ttl: env.span("VALIDATION_CACHE_TTL", Duration::from_secs(300))?,
                negative_ttl: env.span("VALIDATION_NEGATIVE_TTL", Duration::from_secs(60))?,
                capacity: 100_000,
            },
        })
    }
}

/// Per-tenant rollout modes: the mode of a tenant without a stored one
/// (`DEFAULT_TENANT_MODE`: off, shadow or active; default active) and how long a tenant's
/// mode is cached (`TENANT_MODE_TTL`, default 30 s: a switch takes effect within it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModesConfig {
    pub default: crate::model::TenantMode,
    pub ttl: Duration,
}

impl ModesConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let default = match env.optional("DEFAULT_TENANT_MODE") {
            None => crate::model::TenantMode::Active,
            Some(v) => {
                v.parse()
                    .map_err(|e: crate::model::ModeParseError| ConfigError::Invalid {
                        name: "DEFAULT_TENANT_MODE",
                        value: v.clone(),
                        reason: e.to_string(),
                    })?
            }
        };
        Ok(Self {
            default,
            ttl: env.span("TENANT_MODE_TTL", crate::mode_cache::DEFAULT_MODE_TTL)?,
        })
    }
}

/// `daily_scanner_v2`.
#[derive(Debug, Clone)]
pub struct ScannerConfig {
    pub store: StoreConfig,
    pub sdk: SdkSettings,
    pub definitions_table: String,
    pub validation: ValidationConfig,
    pub scan: crate::app::scan::ScanSettings,
    pub modes: ModesConfig,
    /// `SCAN_SEGMENT_QUEUE_URL`: where a scheduled run sends its segment tasks (and a
    /// segment task its continuation). Unset: every run is done inline, in one invocation.
    pub segment_queue_url: Option<String>,
}

impl ScannerConfig {
    /// Variables the template must set for this function.
    pub const REQUIRED: &[&str] = &["SCHEDULE_TABLE", "DEFINITIONS_TABLE"];

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let store = StoreConfig::from_env(env)?;
        let defaults = crate::app::scan::ScanSettings::default();
        let scan = crate::app::scan::ScanSettings {
            overlap: env.span("SCAN_OVERLAP", defaults.overlap)?,
            catch_up: env.span("SCAN_CATCH_UP", defaults.catch_up)?,
            // DynamoDB allows up to 1,000,000 segments; a thousand tasks is already far more
            // than a run of tens of millions of definitions needs.
            segments: env.number("SCAN_SEGMENTS", u64::from(defaults.segments), 1..=1000)? as u32,
            concurrency: env.number("SCAN_CONCURRENCY", defaults.concurrency as u64, 1..=256)?
                as usize,
            retention: store.retention,
            shards: store.status_shards,
            ..defaults
        };
        Ok(Self {
            definitions_table: env.required("DEFINITIONS_TABLE")?,
            validation: ValidationConfig::from_env(env)?,
            sdk: SdkSettings::from_env(env)?,
            store,
            scan,
            modes: ModesConfig::from_env(env)?,
            segment_queue_url: env
                .optional("SCAN_SEGMENT_QUEUE_URL")
                .filter(|u| !u.is_empty()),
        })
    }
}

/// `scheduler_v2`.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub store: StoreConfig,
    pub sdk: SdkSettings,
    pub execution_queue_url: String,
    /// Read once per run to check the due occurrences against their definitions.
    pub definitions_table: String,
    /// `CONTINUATION_QUEUE_URL`, optional: where a run hands the backlog its deadline left.
    /// Without it, the backlog waits for the next run.
    pub continuation_queue_url: Option<String>,
    pub schedule: crate::app::schedule::ScheduleSettings,
}

impl SchedulerConfig {
    pub const REQUIRED: &[&str] = &[
        "SCHEDULE_TABLE",
        "EXECUTION_QUEUE_URL",
        "SCHEDULE_WINDOW",
        "DEFINITIONS_TABLE",
    ];

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let defaults = crate::app::schedule::ScheduleSettings::default();
        let window = env.span("SCHEDULE_WINDOW", defaults.window)?;
        let margin = env.span("SCHEDULE_MARGIN", defaults.margin)?;
        if (window + margin).as_secs() > u64::from(crate::limits::SQS_MAX_DELAY_SECONDS) {
            return Err(ConfigError::Invalid {
                name: "SCHEDULE_WINDOW",
                value: env.optional("SCHEDULE_WINDOW").unwrap_or_default(),
                reason: "window plus margin must stay within the 900 s SQS delay limit".to_owned(),
            });
        }
        Ok(Self {
            store: StoreConfig::from_env(env)?,
            sdk: SdkSettings::from_env(env)?,
            execution_queue_url: env.required("EXECUTION_QUEUE_URL")?,
            definitions_table: env.required("DEFINITIONS_TABLE")?,
            continuation_queue_url: env.optional("CONTINUATION_QUEUE_URL"),
            schedule: crate::app::schedule::ScheduleSettings {
                window,
                margin,
                send_concurrency: env.number(
                    "SEND_CONCURRENCY",
                    defaults.send_concurrency as u64,
                    1..=256,
                )? as usize,
                default_misfire_grace: env
                    .span("DEFAULT_MISFIRE_GRACE", defaults.default_misfire_grace)?,
                // The stuck sweep's threshold: the execution queue's own settings.
                execution_max_receive_count: env.number(
                    "EXECUTION_MAX_RECEIVE_COUNT",
                    u64::from(defaults.execution_max_receive_count),
                    1..=1000,
                )? as u32,
                execution_visibility: env.span(
                    "EXECUTION_VISIBILITY_TIMEOUT",
                    defaults.execution_visibility,
                )?,
                stuck_redispatches: env.number(
                    "STUCK_REDISPATCHES",
                    u64::from(defaults.stuck_redispatches),
                    0..=10,
                )? as u32,
                ..defaults
            },
        })
    }
}

/// `executor_v2`.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub store: StoreConfig,
    pub sdk: SdkSettings,
    pub action_trigger_queue_url: String,
    /// The queue the executor reads: an early message goes back to it as a fresh copy.
    pub execution_queue_url: String,
    pub validation: ValidationConfig,
    pub execute: crate::app::execute::ExecuteSettings,
    /// Where the tenants' rollout modes are stored.
    pub definitions_table: String,
    pub modes: ModesConfig,
    /// Optional: the would-be triggers of tenants in shadow mode are also sent here.
    pub shadow_queue_url: Option<String>,
}

impl ExecutorConfig {
    pub const REQUIRED: &[&str] = &[
        "SCHEDULE_TABLE",
        "ACTION_TRIGGER_QUEUE_URL",
        "EXECUTION_QUEUE_URL",
        "EXECUTION_MAX_RECEIVE_COUNT",
        "DEFINITIONS_TABLE",
    ];

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let defaults = crate::app::execute::ExecuteSettings::default();
        Ok(Self {
            store: StoreConfig::from_env(env)?,
            sdk: SdkSettings::from_env(env)?,
            action_trigger_queue_url: env.required("ACTION_TRIGGER_QUEUE_URL")?,
            execution_queue_url: env.required("EXECUTION_QUEUE_URL")?,
            definitions_table: env.required("DEFINITIONS_TABLE")?,
            modes: ModesConfig::from_env(env)?,
            shadow_queue_url: env.optional("SHADOW_QUEUE_URL"),
            validation: ValidationConfig::from_env(env)?,
            execute: crate::app::execute::ExecuteSettings {
                max_receive_count: env.number(
                    "EXECUTION_MAX_RECEIVE_COUNT",
                    u64::from(defaults.max_receive_count),
                    1..=1000,
                )? as u32,
                default_misfire_grace: env
                    .span("DEFAULT_MISFIRE_GRACE", defaults.default_misfire_grace)?,
                deadline_margin: env.span("EXECUTOR_DEADLINE_MARGIN", defaults.deadline_margin)?,
                ..defaults
            },
        })
    }
}

/// `definition_sync`.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub store: StoreConfig,
    pub sdk: SdkSettings,
    pub definitions_table: String,
    pub sync: crate::app::sync::SyncSettings,
    pub modes: ModesConfig,
}

impl SyncConfig {
    /// Variables the template must set for this function.
    pub const REQUIRED: &[&str] = &["SCHEDULE_TABLE", "DEFINITIONS_TABLE"];

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let store = StoreConfig::from_env(env)?;
        let defaults = crate::app::sync::SyncSettings::default();
        let sync = crate::app::sync::SyncSettings {
            lookback: env.span("SYNC_LOOKBACK", defaults.lookback)?,
            concurrency: env.number("SYNC_CONCURRENCY", defaults.concurrency as u64, 1..=256)?
                as usize,
            retention: store.retention,
            shards: store.status_shards,
            ..defaults
        };
        Ok(Self {
            definitions_table: env.required("DEFINITIONS_TABLE")?,
            sdk: SdkSettings::from_env(env)?,
            store,
            sync,
            modes: ModesConfig::from_env(env)?,
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

    #[test]
    fn function_configs_name_what_is_missing_or_wrong() {
        let err = SchedulerConfig::from_env(&env(&[("SCHEDULE_TABLE", "t")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("EXECUTION_QUEUE_URL"));
        let err = SchedulerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("EXECUTION_QUEUE_URL", "q"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable DEFINITIONS_TABLE is required but not set"
        );
        let err = SchedulerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("EXECUTION_QUEUE_URL", "q"),
            ("DEFINITIONS_TABLE", "d"),
            ("SCHEDULE_WINDOW", "15m"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("SCHEDULE_WINDOW") && err.to_string().contains("900"),
            "{err}"
        );
        let ok = SchedulerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("EXECUTION_QUEUE_URL", "q"),
            ("DEFINITIONS_TABLE", "d"),
        ]))
        .unwrap();
        assert_eq!(
            ok.schedule.stuck_after(),
            Duration::from_secs(3 * 180 + 300),
            "maxReceiveCount × visibility timeout + window, from the template's values"
        );
        let ok = SchedulerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("EXECUTION_QUEUE_URL", "q"),
            ("DEFINITIONS_TABLE", "d"),
            ("EXECUTION_MAX_RECEIVE_COUNT", "5"),
            ("EXECUTION_VISIBILITY_TIMEOUT", "1m"),
            ("STUCK_REDISPATCHES", "0"),
        ]))
        .unwrap();
        assert_eq!(
            (ok.schedule.stuck_after(), ok.schedule.stuck_redispatches),
            (Duration::from_secs(5 * 60 + 300), 0)
        );
        assert_eq!(
            (ok.schedule.send_concurrency, ok.continuation_queue_url),
            (16, None),
            "defaults: 16 batches in flight, no continuation queue"
        );
        let ok = SchedulerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("EXECUTION_QUEUE_URL", "q"),
            ("DEFINITIONS_TABLE", "d"),
            ("SEND_CONCURRENCY", "40"),
            ("CONTINUATION_QUEUE_URL", "c"),
        ]))
        .unwrap();
        assert_eq!(
            (
                ok.schedule.send_concurrency,
                ok.continuation_queue_url.as_deref()
            ),
            (40, Some("c"))
        );
        let err = SchedulerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("EXECUTION_QUEUE_URL", "q"),
            ("DEFINITIONS_TABLE", "d"),
            ("SEND_CONCURRENCY", "0"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("SEND_CONCURRENCY") && err.to_string().contains("\"0\""),
            "{err}"
        );
        let err = SchedulerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("EXECUTION_QUEUE_URL", "q"),
            ("DEFINITIONS_TABLE", "d"),
            ("STUCK_REDISPATCHES", "many"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("STUCK_REDISPATCHES") && err.to_string().contains("\"many\""),
            "{err}"
        );
        let err = ExecutorConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("ACTION_TRIGGER_QUEUE_URL", "q"),
        ]))
        .unwrap_err();
        assert_eq!(err, ConfigError::Missing("EXECUTION_QUEUE_URL"));
        let ok = ExecutorConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("ACTION_TRIGGER_QUEUE_URL", "q"),
            ("EXECUTION_QUEUE_URL", "e"),
            ("EXECUTOR_DEADLINE_MARGIN", "5s"),
            ("DEFINITIONS_TABLE", "d"),
        ]))
        .unwrap();
        assert_eq!(
            (ok.execution_queue_url.as_str(), ok.execute.deadline_margin),
            ("e", Duration::from_secs(5))
        );
        assert_eq!(
            (
                ok.modes.default,
                ok.modes.ttl,
                ok.shadow_queue_url.as_deref()
            ),
            (
                crate::model::TenantMode::Active,
                Duration::from_secs(30),
                None
            )
        );
        let err = ExecutorConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("ACTION_TRIGGER_QUEUE_URL", "q"),
            ("EXECUTION_QUEUE_URL", "e"),
            ("DEFINITIONS_TABLE", "d"),
            ("DEFAULT_TENANT_MODE", "on"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable DEFAULT_TENANT_MODE has an invalid value \"on\": invalid tenant mode \"on\": expected off, shadow or active"
        );
        let shadow = ExecutorConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("ACTION_TRIGGER_QUEUE_URL", "q"),
            ("EXECUTION_QUEUE_URL", "e"),
            ("DEFINITIONS_TABLE", "d"),
            ("DEFAULT_TENANT_MODE", "shadow"),
            ("SHADOW_QUEUE_URL", "s"),
            ("TENANT_MODE_TTL", "10s"),
        ]))
        .unwrap();
        assert_eq!(
            (
                shadow.modes.default,
                shadow.modes.ttl,
                shadow.shadow_queue_url.as_deref()
            ),
            (
                crate::model::TenantMode::Shadow,
                Duration::from_secs(10),
                Some("s")
            )
        );
        let err = ExecutorConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("ACTION_TRIGGER_QUEUE_URL", "q"),
            ("EXECUTION_QUEUE_URL", "e"),
            ("DEFINITIONS_TABLE", "d"),
            ("DEVICE_REGISTRY_URL", "registry.local"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("DEVICE_REGISTRY_URL")
                && err.to_string().contains("registry.local"),
            "{err}"
        );
        let ok = ScannerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("DEFINITIONS_TABLE", "d"),
            ("STATUS_SHARDS", "8"),
        ]))
        .unwrap();
        assert_eq!((ok.scan.shards, ok.validation.registry_url), (8, None));
        assert_eq!(ok.scan.catch_up, Duration::from_secs(7 * 86_400));
        let set = ScannerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("DEFINITIONS_TABLE", "d"),
            ("SCAN_CATCH_UP", "3h"),
        ]))
        .unwrap();
        assert_eq!(set.scan.catch_up, Duration::from_secs(3 * 3600));
        let err = ScannerConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("DEFINITIONS_TABLE", "d"),
            ("SCAN_CATCH_UP", "a day"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("SCAN_CATCH_UP") && err.to_string().contains("a day"),
            "{err}"
        );
    }

    #[test]
    fn sdk_timeouts_default_and_name_a_bad_value() {
        assert_eq!(
            SdkSettings::from_env(&env(&[])).unwrap(),
            SdkSettings::default()
        );
        let set = SdkSettings::from_env(&env(&[
            ("AWS_CONNECT_TIMEOUT_MS", "250"),
            ("AWS_OPERATION_TIMEOUT_MS", "4000"),
        ]))
        .unwrap();
        assert_eq!(
            (
                set.connect_timeout,
                set.operation_timeout,
                set.attempt_timeout
            ),
            (
                Duration::from_millis(250),
                Duration::from_secs(4),
                Duration::from_secs(4)
            ),
            "an attempt defaults to the whole call"
        );
        let err = SdkSettings::from_env(&env(&[("AWS_OPERATION_TIMEOUT_MS", "soon")])).unwrap_err();
        assert!(
            err.to_string().contains("AWS_OPERATION_TIMEOUT_MS")
                && err.to_string().contains("soon"),
            "{err}"
        );
        let err = SdkSettings::from_env(&env(&[
            ("AWS_OPERATION_TIMEOUT_MS", "1000"),
            ("AWS_ATTEMPT_TIMEOUT_MS", "2000"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("AWS_ATTEMPT_TIMEOUT_MS"), "{err}");
        let ok = ExecutorConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("ACTION_TRIGGER_QUEUE_URL", "q"),
            ("EXECUTION_QUEUE_URL", "e"),
            ("DEFINITIONS_TABLE", "d"),
            ("AWS_CONNECT_TIMEOUT_MS", "500"),
        ]))
        .unwrap();
        assert_eq!(ok.sdk.connect_timeout, Duration::from_millis(500));
    }

    #[test]
    fn sync_config_names_what_is_missing_or_wrong() {
        let err = SyncConfig::from_env(&env(&[("SCHEDULE_TABLE", "t")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("DEFINITIONS_TABLE"));
        let err = SyncConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("DEFINITIONS_TABLE", "d"),
            ("SYNC_LOOKBACK", "soon"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("SYNC_LOOKBACK") && err.to_string().contains("soon"),
            "{err}"
        );
        let ok = SyncConfig::from_env(&env(&[
            ("SCHEDULE_TABLE", "t"),
            ("DEFINITIONS_TABLE", "d"),
            ("STATUS_SHARDS", "4"),
            ("SYNC_LOOKBACK", "10m"),
        ]))
        .unwrap();
        assert_eq!(
            (
                ok.sync.shards,
                ok.sync.lookback,
                ok.definitions_table.as_str()
            ),
            (4, Duration::from_secs(600), "d")
        );
    }
}
