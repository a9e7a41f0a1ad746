//! `daily_scanner_v2`: the Lambda edge of the scan. The event is a scheduled run — the
//! hourly `{"mode": "incremental"}` (from the recorded horizon: only what is new) or the
//! daily `{}` / `{"mode": "full"}` (from the earlier of the horizon and now) — or a backfill
//! request: `{"from": "2026-11-26T00:00:00Z", "to": "2026-11-27T00:00:00Z", "tenant_id": "acme"}`.
//! Any other payload without a range (an EventBridge event) is a full run.
//!
//! **Fan-out.** With a segment queue (`SCAN_SEGMENT_QUEUE_URL`) and `SCAN_SEGMENTS` above
//! one, a run is split into one task per segment of the definitions scan, sent to the
//! segment queue; the same binary, invoked by that queue (an SQS batch), runs one segment
//! per task, continues a segment cut by its deadline through a new task carrying its
//! checkpoint, and the worker that completes the last segment records the horizon. Without
//! a queue every run is done inline, in one invocation.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::SystemClock;
use schedule_core::adapters::dynamo::{DynamoDefinitionSource, DynamoScheduleStore};
use schedule_core::adapters::http_validator::RegistryValidator;
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::AppError;
use schedule_core::app::scan::{
    ScanKind, ScanReport, ScanRequest, ScanSettings, Scanner, SegmentTask, SegmentWork,
};
use schedule_core::config::ScannerConfig;
use schedule_core::error::ConfigError;
use schedule_core::metrics::{Metric, Metrics};
use schedule_core::model::{TenantId, Timestamp};
use schedule_core::ports::{
    Clock, DefinitionSource, DeviceValidator, DispatchQueue, ScanRuns, ScheduleStore,
};
use schedule_core::validation_cache::CachedValidator;
use serde_json::Value;
use tracing::Instrument;

pub type AwsScanner = Scanner<
    DynamoDefinitionSource,
    DynamoScheduleStore,
    CachedValidator<RegistryValidator>,
    SystemClock,
>;

#[derive(Debug, thiserror::Error)]
pub enum ScanFailure {
    #[error("invalid scan request: field {field} = {value}: {reason}")]
    BadEvent {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    App(#[from] AppError),
    /// Nothing is lost — the run is idempotent — but the window is not fully written; the
    /// invocation fails so EventBridge retries it.
    #[error("scan incomplete: {} write errors, {} occurrences not written before the deadline, {} segments not read to their end", .0.write_errors, .0.not_written, .0.segments_unfinished)]
    Incomplete(Box<ScanReport>),
}

/// The segment queue a scanner sends tasks and continuations to, when one is configured.
pub fn segment_queue(
    config: &ScannerConfig,
    sdk: &aws_config::SdkConfig,
) -> Option<SqsDispatchQueue> {
    config
        .segment_queue_url
        .as_ref()
        .map(|url| SqsDispatchQueue::new(aws_sdk_sqs::Client::new(sdk), url))
}

pub fn build(
    config: &ScannerConfig,
    sdk: &aws_config::SdkConfig,
) -> Result<AwsScanner, ConfigError> {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let dynamo_modes = dynamo.clone();
    Ok(Scanner {
        definitions: DynamoDefinitionSource::new(dynamo.clone(), &config.definitions_table),
        store: DynamoScheduleStore::new(
            dynamo,
            &config.store.schedule_table,
            config.store.status_shards,
        ),
        validator: CachedValidator::new(
            RegistryValidator::from_config(&config.validation)?,
            config.validation.cache,
        ),
        clock: SystemClock,
        settings: config.scan.clone(),
        modes: schedule_core::mode_cache::ModeRouting::new(
            std::sync::Arc::new(schedule_core::mode_cache::CachedModes::new(
                DynamoDefinitionSource::new(dynamo_modes, &config.definitions_table),
                config.modes.default,
                config.modes.ttl,
            )),
            None,
        ),
    })
}

/// Reads the event: a range means backfill; anything else a scheduled run, full unless
/// `"mode": "incremental"`, placed after the recorded `horizon` (see `app::scan`).
pub fn request_from_event(
    event: &Value,
    now: Timestamp,
    horizon: Option<Timestamp>,
    settings: &ScanSettings,
) -> Result<ScanRequest, ScanFailure> {
    const TAKES: &str = "the scanner takes a scheduled event, {\"mode\": \"full\" | \"incremental\"} or a backfill {\"from\", \"to\", \"tenant_id\"}";
    if !event.is_object() {
        return Err(ScanFailure::BadEvent {
            field: "event",
            value: short(event),
            reason: format!("must be a JSON object: {TAKES}"),
        });
    }
    // An event meant for another function (a queue batch, a stream batch) is refused,
    // not read as a full run.
    if let Some(records) = event.get("Records") {
        let source = records
            .get(0)
            .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
            .and_then(Value::as_str)
            .unwrap_or("unknown source");
        return Err(ScanFailure::BadEvent {
            field: "Records",
            value: format!("<a batch of records from {source}>"),
            reason: format!("is not an event for the scanner: {TAKES}"),
        });
    }
    let field = |name: &'static str| -> Result<Option<&str>, ScanFailure> {
        match event.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ScanFailure::BadEvent {
                field: name,
                value: other.to_string(),
                reason: "must be a string".into(),
            }),
        }
    };
    let time = |name: &'static str, raw: &str| {
        Timestamp::parse(raw).map_err(|e| ScanFailure::BadEvent {
            field: name,
            value: format!("{raw:?}"),
            reason: e.reason,
        })
    };
    let tenant = field("tenant_id")?
        .map(|t| {
            TenantId::parse(t).map_err(|e| ScanFailure::BadEvent {
                field: "tenant_id",
                value: format!("{t:?}"),
                reason: e.reason.into(),
            })
        })
        .transpose()?;
    let mode = field("mode")?;
    match (field("from")?, field("to")?) {
        (None, None) if tenant.is_none() => match mode {
            None | Some("full") => Ok(ScanRequest::full(now, horizon, settings)),
            Some("incremental") => Ok(ScanRequest::incremental(now, horizon, settings)),
            Some(other) => Err(ScanFailure::BadEvent {
                field: "mode",
                value: format!("{other:?}"),
                reason: "expected \"full\" or \"incremental\"".into(),
            }),
        },
        (Some(_), Some(_)) if mode.is_some() => Err(ScanFailure::BadEvent {
            field: "mode",
            value: format!("{:?}", mode.unwrap_or_default()),
            reason: "a backfill (from, to) has no mode".into(),
        }),
        (Some(from), Some(to)) => Ok(ScanRequest::backfill(
            time("from", from)?,
            time("to", to)?,
            tenant,
            settings,
        )?),
        (None, None) => Err(ScanFailure::BadEvent {
            field: "from",
            value: "<missing>".into(),
            reason: "a tenant_id needs a range: from and to".into(),
        }),
        (Some(_), None) => Err(ScanFailure::BadEvent {
            field: "to",
            value: "<missing>".into(),
            reason: "a backfill needs both from and to".into(),
        }),
        (None, Some(_)) => Err(ScanFailure::BadEvent {
            field: "from",
            value: "<missing>".into(),
            reason: "a backfill needs both from and to".into(),
        }),
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The handler: one scan, its metrics flushed, its report returned.
pub async fn handle<D, S, V, C>(
    scanner: &Scanner<D, S, V, C>,
    event: &Value,
    deadline: Option<DateTime<Utc>>,
    metrics: &Metrics,
) -> Result<ScanReport, ScanFailure>
where
    D: DefinitionSource,
    S: ScheduleStore,
    V: DeviceValidator,
    C: Clock,
{
    let horizon = scanner
        .recorded_horizon(deadline)
        .await
        .map_err(AppError::from)?;
    let now = Timestamp::from_datetime(scanner.clock.now());
    let request = request_from_event(event, now, horizon, &scanner.settings)?;
    let report = scanner.run(&request, deadline, metrics).await?;
    if report.is_complete() {
        // The heartbeat the "scanner did not run" alarm waits for; a backfill does not
        // stand in for a missing scheduled scan.
        if request.kind != ScanKind::Backfill {
            metrics.incr(Metric::DailyScanCompleted);
        }
        Ok(report)
    } else {
        Err(ScanFailure::Incomplete(Box::new(report)))
    }
}

/// Whether `event` is an SQS batch (segment tasks from the segment queue).
fn is_sqs_batch(event: &Value) -> bool {
    event
        .get("Records")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// The handler for every event the function takes: a batch of segment tasks from the
/// segment queue (answered with the partial batch response), or a scheduled run or
/// backfill — fanned out to the segment queue when there is one and `SCAN_SEGMENTS` is
/// above one, run inline otherwise (answered with the fan-out or the report).
pub async fn handle_event<D, S, V, C, Q>(
    scanner: &Scanner<D, S, V, C>,
    segment_queue: Option<&Q>,
    event: &Value,
    deadline: Option<DateTime<Utc>>,
    metrics: &Metrics,
) -> Result<Value, ScanFailure>
where
    D: DefinitionSource,
    S: ScheduleStore + ScanRuns,
    V: DeviceValidator,
    C: Clock,
    Q: DispatchQueue,
{
    let to_value = |v: Result<Value, serde_json::Error>| {
        v.map_err(|e| ScanFailure::BadEvent {
            field: "response",
            value: String::new(),
            reason: e.to_string(),
        })
    };
    if is_sqs_batch(event) {
        let Some(queue) = segment_queue else {
            return Err(ScanFailure::BadEvent {
                field: "Records",
                value: "<a batch of segment tasks>".into(),
                reason: "SCAN_SEGMENT_QUEUE_URL is not set: this scanner sends no segment tasks and runs none".into(),
            });
        };
        let batch: SqsEvent =
            serde_json::from_value(event.clone()).map_err(|e| ScanFailure::BadEvent {
                field: "Records",
                value: "<a batch of segment tasks>".into(),
                reason: format!("not an SQS event: {e}"),
            })?;
        let response = handle_segment_tasks(scanner, queue, &batch, deadline, metrics).await;
        return to_value(serde_json::to_value(response));
    }
    match segment_queue {
        Some(queue) if scanner.settings.segments > 1 => {
            let horizon = scanner
                .recorded_horizon(deadline)
                .await
                .map_err(AppError::from)?;
            let now = Timestamp::from_datetime(scanner.clock.now());
            let request = request_from_event(event, now, horizon, &scanner.settings)?;
            let fan_out = scanner.fan_out(&request, queue, deadline).await?;
            to_value(serde_json::to_value(fan_out))
        }
        _ => {
            let report = handle(scanner, event, deadline, metrics).await?;
            to_value(serde_json::to_value(report))
        }
    }
}

/// Works each segment task of a batch (the event source mapping gives one at a time);
/// a task that is malformed, or whose segment could not be completed or continued, is a
/// failed item: SQS delivers it again, and after `maxReceiveCount` moves it to the DLQ.
pub async fn handle_segment_tasks<D, S, V, C, Q>(
    scanner: &Scanner<D, S, V, C>,
    queue: &Q,
    batch: &SqsEvent,
    deadline: Option<DateTime<Utc>>,
    metrics: &Metrics,
) -> SqsBatchResponse
where
    D: DefinitionSource,
    S: ScheduleStore + ScanRuns,
    V: DeviceValidator,
    C: Clock,
    Q: DispatchQueue,
{
    let mut response = SqsBatchResponse::default();
    for record in &batch.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("segment_task", message_id = %message_id);
        let body = record.body.as_deref().unwrap_or_default();
        let acknowledged = work_one_task(scanner, queue, body, deadline, metrics)
            .instrument(span)
            .await;
        if !acknowledged {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// One segment task: `true` when it is done or continued (acknowledge it).
async fn work_one_task<D, S, V, C, Q>(
    scanner: &Scanner<D, S, V, C>,
    queue: &Q,
    body: &str,
    deadline: Option<DateTime<Utc>>,
    metrics: &Metrics,
) -> bool
where
    D: DefinitionSource,
    S: ScheduleStore + ScanRuns,
    V: DeviceValidator,
    C: Clock,
    Q: DispatchQueue,
{
    let task = match SegmentTask::parse(body) {
        Ok(task) => task,
        Err(e) => {
            tracing::error!(field = e.field, value = %e.value, reason = %e.reason, "malformed segment task; left for the DLQ");
            return false;
        }
    };
    match scanner.work_segment(&task, queue, deadline, metrics).await {
        Ok(SegmentWork::Done {
            run_complete: true,
            horizon_recorded: Some(_),
            ..
        }) if task.kind != ScanKind::Backfill => {
            // The heartbeat of a complete scheduled run, written once: by the worker that
            // completed its last segment.
            metrics.incr(Metric::DailyScanCompleted);
            true
        }
        Ok(_) => true,
        Err(e) => {
            schedule_core::logging::error_chain("segment task failed", &e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_sample_events_read_as_a_daily_run_and_a_backfill() {
        let now = Timestamp::parse("2026-11-26T00:00:03Z").unwrap();
        let settings = ScanSettings::default();
        let daily =
            request_from_event(&event("daily_scanner_v2.json"), now, None, &settings).unwrap();
        assert_eq!((daily.window.from, daily.tenant), (now, None));
        assert_eq!(
            daily.window.to.to_string(),
            "2026-11-27T01:00:03Z",
            "24 h plus the 1 h overlap"
        );
        let backfill = request_from_event(
            &event("daily_scanner_v2_backfill.json"),
            now,
            None,
            &settings,
        )
        .unwrap();
        assert_eq!(backfill.window.from.to_string(), "2026-11-26T00:00:00Z");
        assert_eq!(backfill.tenant.unwrap().as_str(), "acme");
    }

    /// The sample segment task event (`cargo lambda invoke --data-file`) is worked by the
    /// handler: its one segment of two is done, acknowledged, the run not yet complete.
    #[tokio::test]
    async fn the_sample_segment_task_is_worked_and_acknowledged() {
        use schedule_core::adapters::memory::{InMemoryQueue, QueueSettings};
        use schedule_core::embedded::{Embedded, EmbeddedSettings};
        let world = Embedded::new(
            "2026-11-26T00:00:03Z".parse().unwrap(),
            EmbeddedSettings::default(),
        );
        let queue = InMemoryQueue::new(
            "scan-segment",
            world.clock.clone(),
            QueueSettings::default(),
        );
        let answer = handle_event(
            &world.scanner,
            Some(&queue),
            &event("daily_scanner_v2_segment.json"),
            None,
            &world.metrics,
        )
        .await
        .unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
        assert!(queue.is_empty(), "no continuation without a deadline");
        assert_eq!(world.memory_store.scan_horizon().await.unwrap(), None);
        // Without a segment queue the function refuses segment tasks, naming why.
        let refused = handle_event(
            &world.scanner,
            None::<&InMemoryQueue>,
            &event("daily_scanner_v2_segment.json"),
            None,
            &world.metrics,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(refused.contains("SCAN_SEGMENT_QUEUE_URL"), "{refused}");
    }

    /// The daily run's heartbeat is written once per complete daily scan; a backfill
    /// writes none, so it cannot hide a daily scan that did not run.
    #[tokio::test]
    async fn only_a_complete_daily_scan_writes_the_heartbeat() {
        use schedule_core::embedded::{Embedded, EmbeddedSettings};
        let world = Embedded::new(
            "2026-11-26T00:00:03Z".parse().unwrap(),
            EmbeddedSettings::default(),
        );
        handle(
            &world.scanner,
            &event("daily_scanner_v2.json"),
            None,
            &world.metrics,
        )
        .await
        .unwrap();
        assert_eq!(world.metrics.get(Metric::DailyScanCompleted), 1);
        world.metrics.take_emf(0);
        handle(
            &world.scanner,
            &event("daily_scanner_v2_backfill.json"),
            None,
            &world.metrics,
        )
        .await
        .unwrap();
        assert_eq!(world.metrics.get(Metric::DailyScanCompleted), 0);
    }

    #[test]
    fn a_scheduled_event_picks_its_mode_and_starts_after_the_horizon() {
        let now = Timestamp::parse("2026-11-26T10:00:00Z").unwrap();
        let horizon = Timestamp::parse("2026-11-27T10:00:00Z").ok();
        let settings = ScanSettings::default();
        let full = request_from_event(&json!({}), now, horizon, &settings).unwrap();
        assert_eq!((full.kind, full.window.from), (ScanKind::Full, now));
        let also_full =
            request_from_event(&json!({"mode": "full"}), now, horizon, &settings).unwrap();
        assert_eq!(also_full, full);
        let incremental =
            request_from_event(&json!({"mode": "incremental"}), now, horizon, &settings).unwrap();
        assert_eq!(
            (incremental.kind, Some(incremental.window.from)),
            (ScanKind::Incremental, horizon)
        );
        assert_eq!(incremental.window.to, full.window.to);
    }

    #[test]
    fn bad_events_name_the_field_and_value() {
        let now = Timestamp::parse("2026-11-26T00:00:00Z").unwrap();
        let settings = ScanSettings::default();
        let cases = [
            (
                json!({"from": "2026-11-26", "to": "2026-11-27T00:00:00Z"}),
                "from",
                "2026-11-26",
            ),
            (json!({"from": "2026-11-26T00:00:00Z"}), "to", "<missing>"),
            (json!({"tenant_id": "acme"}), "from", "<missing>"),
            (
                json!({"from": "2026-11-26T00:00:00Z", "to": "2026-11-27T00:00:00Z", "tenant_id": "a#b"}),
                "tenant_id",
                "a#b",
            ),
            (json!({"from": 5, "to": "x"}), "from", "5"),
        ];
        for (event, field, value) in cases {
            let err = request_from_event(&event, now, None, &settings)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field) && err.contains(value), "{event}: {err}");
        }
        for (event, value) in [
            (json!({"mode": "hourly"}), "\"hourly\""),
            (
                json!({"mode": "full", "from": "2026-11-26T00:00:00Z", "to": "2026-11-27T00:00:00Z"}),
                "\"full\"",
            ),
        ] {
            let err = request_from_event(&event, now, None, &settings)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("mode") && err.contains(value),
                "{event}: {err}"
            );
        }
        let reversed = json!({"from": "2026-11-27T00:00:00Z", "to": "2026-11-26T00:00:00Z"});
        assert!(
            request_from_event(&reversed, now, None, &settings)
                .unwrap_err()
                .to_string()
                .contains("before")
        );
        let too_long = json!({"from": "2026-01-01T00:00:00Z", "to": "2026-11-26T00:00:00Z"});
        assert!(
            request_from_event(&too_long, now, None, &settings)
                .unwrap_err()
                .to_string()
                .contains("31 days")
        );
    }
}
