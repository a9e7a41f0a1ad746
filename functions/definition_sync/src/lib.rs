//! `definition_sync`: the Lambda edge of definition sync, on the definitions table's
//! stream (NEW_AND_OLD_IMAGES). Records of one shard arrive in order and are applied in
//! order; the response names the first record that failed *and every record after it*
//! (`batchItemFailures`, by sequence number), so the retry resumes from there and a later
//! edit is never applied before an earlier one.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use schedule_core::adapters::clock::SystemClock;
use schedule_core::adapters::dynamo::{DynamoDefinitionSource, DynamoScheduleStore};
use schedule_core::app::sync::{
    ChangeKind, DefinitionChange, DefinitionSync, Image, InvalidImage, SyncOutcome,
};
use schedule_core::config::SyncConfig;
use schedule_core::metrics::Metrics;
use schedule_core::model::DefinitionError;
use schedule_core::ports::{Clock, DefinitionSource, ScheduleStore};
use serde_json::Value;

pub type AwsSync = DefinitionSync<DynamoScheduleStore, DynamoDefinitionSource, SystemClock>;

pub fn build(config: &SyncConfig, sdk: &aws_config::SdkConfig) -> AwsSync {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    DefinitionSync {
        store: DynamoScheduleStore::new(
            dynamo.clone(),
            &config.store.schedule_table,
            config.store.status_shards,
        ),
        definitions: DynamoDefinitionSource::new(dynamo.clone(), &config.definitions_table),
        clock: SystemClock,
        settings: config.sync.clone(),
        modes: schedule_core::mode_cache::ModeRouting::new(
            std::sync::Arc::new(schedule_core::mode_cache::CachedModes::new(
                DynamoDefinitionSource::new(dynamo, &config.definitions_table),
                config.modes.default,
                config.modes.ttl,
            )),
            None,
        ),
    }
}

/// One image of a stream record, or `None` when the record has none (INSERT has no old
/// image, REMOVE no new one).
fn image(item: &serde_dynamo::Item, keys: &serde_dynamo::Item) -> Option<Image> {
    if item.is_empty() {
        return None;
    }
    Some(match serde_dynamo::from_item::<_, Value>(item.clone()) {
        Ok(json) => Image::from_json(&json),
        Err(e) => {
            // Keys are plain strings; they at least name the row in the report.
            let key_json = serde_dynamo::from_item::<_, Value>(keys.clone()).unwrap_or_default();
            let mut image = Image::from_json(&key_json);
            if let Image::Invalid(bad) = &mut image {
                bad.error = DefinitionError {
                    field: "definition".to_owned(),
                    value: "<stream image>".to_owned(),
                    reason: format!("does not convert to JSON: {e}"),
                };
            }
            image
        }
    })
}

/// A stream record as the use case reads it.
pub fn change_of(record: &EventRecord) -> DefinitionChange {
    let kind = match record.event_name.as_str() {
        "INSERT" => ChangeKind::Insert,
        "REMOVE" => ChangeKind::Remove,
        // MODIFY, and anything newer: the use case acts on the current row either way.
        _ => ChangeKind::Modify,
    };
    let keys = &record.change.keys;
    let mut new = image(&record.change.new_image, keys);
    if kind == ChangeKind::Remove {
        new = None;
    }
    let old = image(&record.change.old_image, keys);
    DefinitionChange {
        event_id: record.event_id.clone(),
        kind,
        old,
        new,
    }
}

/// The identifier Lambda expects for a stream record in `batchItemFailures`.
fn identifier(record: &EventRecord) -> String {
    record
        .change
        .sequence_number
        .clone()
        .unwrap_or_else(|| record.event_id.clone())
}

/// Applies the batch in order; returns the response and what was done.
pub async fn handle<S, D, C>(
    sync: &DefinitionSync<S, D, C>,
    event: &Event,
    metrics: &Metrics,
) -> (DynamoDbEventResponse, SyncOutcome)
where
    S: ScheduleStore,
    D: DefinitionSource,
    C: Clock,
{
    let changes: Vec<DefinitionChange> = event.records.iter().map(change_of).collect();
    for change in &changes {
        if let Some(Image::Invalid(InvalidImage { key, error, .. })) = &change.new {
            tracing::warn!(event_id = %change.event_id, key = %key, field = %error.field, reason = %error.reason, "new image is not a valid definition");
        }
    }
    let result = sync.apply_batch(&changes, metrics).await;
    let mut response = DynamoDbEventResponse::default();
    if let Some((first, _)) = result.failed {
        for record in &event.records[first..] {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(identifier(record));
            response.batch_item_failures.push(failure);
        }
    }
    (response, result.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schedule_core::adapters::clock::ManualClock;
    use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore};
    use schedule_core::app::sync::SyncSettings;
    use schedule_core::error::StoreError;
    use schedule_core::model::{Definition, ScheduleItem, Status, StepId, TenantId, Timestamp};
    use std::sync::Arc;

    fn sample() -> Event {
        let path = format!(
            "{}/../../events/definition_sync.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_sample_event_reads_as_a_modify_that_disables_a_step() {
        let event = sample();
        let change = change_of(&event.records[0]);
        assert_eq!(change.kind, ChangeKind::Modify);
        let (Some(Image::Valid(old)), Some(Image::Valid(new))) = (&change.old, &change.new) else {
            panic!("both images must parse: {change:?}");
        };
        assert!(old.enabled && !new.enabled);
        assert_eq!((old.version, new.version), (3, 4));
        assert_eq!(new.payload["action"], "open_valve");
    }

    /// The occurrences of the old version in the store, the disabled version in the
    /// definitions table: the sample cancels the PENDING ones and leaves the QUEUED one.
    #[tokio::test]
    async fn the_sample_event_cancels_what_the_disabled_step_no_longer_fires() {
        let event = sample();
        let change = change_of(&event.records[0]);
        let (Some(Image::Valid(old)), Some(Image::Valid(new))) = (change.old, change.new) else {
            panic!("both images must parse");
        };
        let now = Timestamp::parse("2026-11-26T10:00:00Z").unwrap();
        let clock = Arc::new(ManualClock::new(now.as_datetime()));
        let store = Arc::new(InMemoryScheduleStore::new(4));
        let definitions = Arc::new(InMemoryDefinitionSource::new());
        definitions.put(&new).await.unwrap();
        let settings = SyncSettings {
            shards: 4,
            ..SyncSettings::default()
        };
        let times = [
            "2026-11-26T10:00:00Z",
            "2026-11-26T10:30:00Z",
            "2026-11-26T11:00:00Z",
        ];
        for t in times {
            let item = ScheduleItem::pending(
                &old,
                Timestamp::parse(t).unwrap(),
                now,
                settings.retention,
                4,
            );
            store.create_if_absent(&item).await.unwrap();
        }
        let first = ScheduleItem::pending(
            &old,
            Timestamp::parse(times[0]).unwrap(),
            now,
            settings.retention,
            4,
        );
        let queued =
            schedule_core::model::StatusChange::transition(Status::Pending, Status::Queued, now)
                .unwrap();
        assert!(store.change_status(&first.key, &queued).await.unwrap());

        let sync = DefinitionSync {
            modes: schedule_core::mode_cache::ModeRouting::default(),
            store: store.clone(),
            definitions,
            clock,
            settings,
        };
        let metrics = Metrics::new("definition_sync");
        let (response, outcome) = handle(&sync, &event, &metrics).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            (outcome.cancelled, outcome.stale_ignored),
            (2, 0),
            "{outcome:?}"
        );
        let statuses: Vec<(String, Status, Option<u64>)> = store
            .items()
            .into_iter()
            .map(|i| {
                (
                    i.scheduled_time.to_string(),
                    i.status,
                    i.cancelled_by_version,
                )
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("2026-11-26T10:00:00Z".to_owned(), Status::Queued, None),
                (
                    "2026-11-26T10:30:00Z".to_owned(),
                    Status::Cancelled,
                    Some(4)
                ),
                (
                    "2026-11-26T11:00:00Z".to_owned(),
                    Status::Cancelled,
                    Some(4)
                ),
            ]
        );
        let cancelled = store
            .items()
            .into_iter()
            .find(|i| i.status == Status::Cancelled)
            .unwrap();
        assert_eq!(
            cancelled.last_error.as_deref(),
            Some("definition disabled (version 4)")
        );
    }

    /// A definitions table that cannot answer for one step.
    #[derive(Debug)]
    struct Unreadable {
        inner: InMemoryDefinitionSource,
        broken: &'static str,
    }

    impl DefinitionSource for Unreadable {
        async fn scan_page(
            &self,
            segment: u32,
            total: u32,
            cursor: Option<&schedule_core::ports::Cursor>,
        ) -> Result<schedule_core::ports::Page<schedule_core::ports::ScannedDefinition>, StoreError>
        {
            self.inner.scan_page(segment, total, cursor).await
        }

        async fn get(
            &self,
            tenant: &TenantId,
            step: &StepId,
        ) -> Result<Option<schedule_core::ports::ScannedDefinition>, StoreError> {
            if step.as_str() == self.broken {
                return Err(StoreError::Permanent {
                    operation: "GetItem",
                    source: format!("no access to {step}").into(),
                });
            }
            self.inner.get(tenant, step).await
        }

        async fn get_many(
            &self,
            keys: &[schedule_core::ports::DefinitionKey],
        ) -> Result<schedule_core::ports::FetchedDefinitions, StoreError> {
            self.inner.get_many(keys).await
        }

        async fn put(&self, def: &Definition) -> Result<(), StoreError> {
            self.inner.put(def).await
        }
    }

    #[tokio::test]
    async fn a_failure_reports_that_record_and_every_later_one() {
        let mut event = sample();
        let template = event.records[0].clone();
        let mut records = Vec::new();
        for (seq, step) in [("111", "s1"), ("222", "broken"), ("333", "s3")] {
            let mut r = template.clone();
            r.change.sequence_number = Some(seq.to_owned());
            for image in [&mut r.change.new_image, &mut r.change.old_image] {
                let mut json: Value = serde_dynamo::from_item(image.clone()).unwrap();
                json["device_workflow_step_id"] = Value::from(step);
                json["SK"] = Value::from(format!("STEP#{step}"));
                *image = serde_dynamo::to_item(json).unwrap();
            }
            records.push(r);
        }
        event.records = records;
        let now = Timestamp::parse("2026-11-26T10:00:00Z").unwrap();
        let sync = DefinitionSync {
            modes: schedule_core::mode_cache::ModeRouting::default(),
            store: InMemoryScheduleStore::new(4),
            definitions: Unreadable {
                inner: InMemoryDefinitionSource::new(),
                broken: "broken",
            },
            clock: ManualClock::new(now.as_datetime()),
            settings: SyncSettings::default(),
        };
        let metrics = Metrics::new("definition_sync");
        let (response, outcome) = handle(&sync, &event, &metrics).await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap_or_default())
            .collect();
        assert_eq!(failed, vec!["222".to_owned(), "333".to_owned()]);
        assert_eq!(
            outcome.records, 1,
            "only the record before the failure counts"
        );
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(body["batchItemFailures"][0]["itemIdentifier"], "222");
    }
}
