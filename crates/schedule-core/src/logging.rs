//! Structured logs: JSON lines with the ids as fields (what CloudWatch Logs Insights
//! queries).
//!
//! In Lambda the function's `LoggingConfig` decides the format and the level: Lambda sets
//! `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`) and, with the JSON format,
//! `AWS_LAMBDA_LOG_LEVEL` (`TRACE` .. `FATAL`). `RUST_LOG`, when set, wins over the level,
//! so one deployment can still raise a single module (`info,schedule_core=debug`); Lambda
//! itself drops JSON lines below the configured application level either way.

use tracing_subscriber::EnvFilter;

use crate::config::Env;

/// Log format and filter, decided once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// JSON lines (one object per event) rather than compact text.
    pub json: bool,
    /// An `EnvFilter` directive such as `info` or `info,schedule_core=debug`.
    pub filter: String,
    /// A variable that was set to a value this code does not know, and was therefore
    /// ignored: `(name, value)`. Logged once the subscriber is installed.
    pub ignored: Option<(&'static str, String)>,
}

impl LogSettings {
    /// Reads `RUST_LOG`, `AWS_LAMBDA_LOG_LEVEL` and `AWS_LAMBDA_LOG_FORMAT`; `json` and
    /// `default_level` apply where they are unset.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        json: bool,
        default_level: &str,
    ) -> Self {
        let mut ignored = None;
        let json = match env.optional("AWS_LAMBDA_LOG_FORMAT") {
            None => json,
            Some(v) if v.eq_ignore_ascii_case("json") => true,
            Some(v) if v.eq_ignore_ascii_case("text") => false,
            Some(v) => {
                ignored = Some(("AWS_LAMBDA_LOG_FORMAT", v));
                json
            }
        };
        let filter = if let Some(directive) = env.optional("RUST_LOG") {
            directive
        } else {
            match env.optional("AWS_LAMBDA_LOG_LEVEL") {
                None => default_level.to_owned(),
                Some(v) => match lambda_level(&v) {
                    Some(level) => level.to_owned(),
                    None => {
                        ignored = Some(("AWS_LAMBDA_LOG_LEVEL", v));
                        default_level.to_owned()
                    }
                },
            }
        };
        Self {
            json,
            filter,
            ignored,
        }
    }
}

/// Lambda's application log levels mapped to `tracing` levels. `FATAL` has no
/// `tracing` twin: errors are the most severe events this code writes.
fn lambda_level(value: &str) -> Option<&'static str> {
    match value.to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    }
}

/// Installs the global subscriber for a Lambda function: format and level from the
/// function's `LoggingConfig` (see [`LogSettings::from_env`]), JSON and `info` by default.
pub fn init_lambda() {
    let settings = LogSettings::from_env(&Env::process(), true, "info");
    install(&settings.filter, "info", settings.json);
    if let Some((name, value)) = settings.ignored {
        tracing::warn!(
            variable = name,
            value = %value,
            "unknown logging setting ignored; using the default"
        );
    }
}

/// Installs the global subscriber once; later calls do nothing. `json = false` gives
/// compact human-readable lines for the CLI. `default_level` applies when `RUST_LOG` is
/// unset.
pub fn init(json: bool, default_level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default_level.to_owned());
    install(&filter, default_level, json);
}

/// A directive `EnvFilter` cannot parse falls back to `fallback`.
fn install(directive: &str, fallback: &str, json: bool) {
    let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new(fallback));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        builder.compact().with_target(false).try_init()
    };
}

/// Logs `e` with its whole chain of sources (`outer: inner: innermost`), once, where an
/// edge handles it: a function that cannot start, or an invocation that failed.
pub fn error_chain(what: &str, e: &(dyn std::error::Error + 'static)) {
    tracing::error!(error = %crate::error::chain(e), "{what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)], json: bool) -> LogSettings {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env =
            Env(move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
        LogSettings::from_env(&env, json, "info")
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = settings(&[], true);
        assert_eq!((s.json, s.filter.as_str(), s.ignored), (true, "info", None));
        assert!(!settings(&[], false).json);
    }

    #[test]
    fn lambda_level_sets_the_filter() {
        for (lambda, tracing) in [
            ("TRACE", "trace"),
            ("DEBUG", "debug"),
            ("INFO", "info"),
            ("WARN", "warn"),
            ("ERROR", "error"),
            ("FATAL", "error"),
            ("debug", "debug"),
        ] {
            let s = settings(&[("AWS_LAMBDA_LOG_LEVEL", lambda)], true);
            assert_eq!(s.filter, tracing, "{lambda}");
            assert_eq!(s.ignored, None);
        }
    }

    #[test]
    fn rust_log_wins_over_the_lambda_level() {
        let s = settings(
            &[
                ("AWS_LAMBDA_LOG_LEVEL", "ERROR"),
                ("RUST_LOG", "info,schedule_core=debug"),
            ],
            true,
        );
        assert_eq!(s.filter, "info,schedule_core=debug");
    }

    #[test]
    fn lambda_format_chooses_json_or_text() {
        assert!(settings(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")], false).json);
        assert!(!settings(&[("AWS_LAMBDA_LOG_FORMAT", "Text")], true).json);
    }

    #[test]
    fn unknown_values_are_named_and_the_defaults_kept() {
        let s = settings(&[("AWS_LAMBDA_LOG_LEVEL", "LOUD")], true);
        assert_eq!(s.filter, "info");
        assert_eq!(s.ignored, Some(("AWS_LAMBDA_LOG_LEVEL", "LOUD".to_owned())));
        let s = settings(&[("AWS_LAMBDA_LOG_FORMAT", "XML")], true);
        assert!(s.json);
        assert_eq!(s.ignored, Some(("AWS_LAMBDA_LOG_FORMAT", "XML".to_owned())));
    }
}
