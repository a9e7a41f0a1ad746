//! The bad-input corpus (`tests/corpus/definitions.jsonl`, and the cases below) through
//! the real code paths: definition validation, the scanner's handler and the definition
//! sync's handler. Each bad record gets an error naming what is wrong, is counted where
//! an operator looks (metric, report), and costs nothing to the good records beside it.
//! The command line's side is `crates/wfs-cli/tests/bad_input.rs`.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use integration_tests::corpus::{BadDefinition, bad_definitions, base_definition};
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore};
use schedule_core::app::sync::{DefinitionSync, SyncSettings};
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::metrics::{Metric, Metrics};
use schedule_core::model::{Definition, Status, Timestamp};
use serde_json::{Value, json};

fn good(step: &str) -> Value {
    let mut def = base_definition();
    def["device_workflow_step_id"] = json!(step);
    def
}

/// The key a bad row is stored under: the one it names itself, else one of its own (its
/// content is refused before its key is compared with its ids).
fn row_key(i: usize, case: &BadDefinition) -> (String, String) {
    match (
        case.input.get("PK").and_then(Value::as_str),
        case.input.get("SK").and_then(Value::as_str),
    ) {
        (Some(pk), Some(sk)) => (pk.to_owned(), sk.to_owned()),
        _ => (format!("TENANT#bad{i}"), format!("STEP#bad{i}")),
    }
}

#[test]
fn the_corpus_has_a_case_for_every_kind_of_bad_field() {
    let cases = bad_definitions();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let fields: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.field.as_str()).collect();
    for field in [
        "tenant_id",
        "device_workflow_step_id",
        "device_id",
        "workflow_id",
        "enabled",
        "version",
        "schedule",
        "schedule.type",
        "schedule.timezone",
        "schedule.expression",
        "schedule.rule",
        "schedule.every",
        "schedule.end",
        "payload",
        "PK",
        "SK",
    ] {
        assert!(fields.contains(field), "no case for {field}");
    }
}

#[test]
fn every_bad_definition_is_refused_naming_its_field_value_and_reason() {
    for case in bad_definitions() {
        let error =
            Definition::from_json(&case.input).expect_err(&format!("{}: accepted", case.case));
        assert_eq!(error.field, case.field, "{}", case.case);
        assert_eq!(error.to_string(), case.error, "{}", case.case);
        assert!(
            error.to_string().len() < 400,
            "{}: a message of {} bytes",
            case.case,
            error.to_string().len()
        );
    }
}

/// Every bad row in the definitions table beside two good ones: the scan completes,
/// counts each bad row once, and writes every occurrence of the good ones.
#[tokio::test]
async fn a_scan_counts_every_bad_row_and_writes_every_good_one() {
    let now: chrono::DateTime<chrono::Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
    let world = Embedded::new(now, EmbeddedSettings::default());
    let cases = bad_definitions();
    for (i, case) in cases.iter().enumerate() {
        let (pk, sk) = row_key(i, case);
        world.definitions.put_raw(&pk, &sk, case.input.clone());
    }
    for step in ["good1", "good2"] {
        let def = Definition::from_json(&good(step)).unwrap();
        world
            .definitions
            .put_raw(&def.key().0, &def.key().1, good(step));
    }
    let event = json!({});
    let report = daily_scanner_v2::handle(&world.scanner, &event, None, &world.metrics)
        .await
        .expect("the scan runs to its end");
    assert_eq!(report.invalid_definitions, cases.len(), "{report:?}");
    assert_eq!(
        world.metrics.get(Metric::InvalidDefinition),
        cases.len() as u64
    );
    assert!(report.is_complete(), "{report:?}");
    // 15-minute rate over the 25 h window, for each of the two good definitions.
    assert_eq!(report.created, 2 * 100, "{report:?}");
    let items = world.memory_store.items();
    assert_eq!(items.len(), 200);
    assert!(
        items.iter().all(|i| i.status == Status::Pending
            && i.device_workflow_step_id.as_str().starts_with("good"))
    );
}

fn insert_record(i: usize, key: (String, String), image: &Value) -> EventRecord {
    let mut record = EventRecord::default();
    record.event_id = format!("event-{i}");
    record.event_name = "INSERT".to_owned();
    record.change.sequence_number = Some(format!("{:021}", i + 1));
    record.change.keys = serde_dynamo::to_item(json!({"PK": key.0, "SK": key.1})).unwrap();
    let mut with_key = image.clone();
    if let Some(obj) = with_key.as_object_mut() {
        obj.entry("PK").or_insert(json!(key.0));
        obj.entry("SK").or_insert(json!(key.1));
        record.change.new_image = serde_dynamo::to_item(with_key).unwrap();
    }
    record
}

/// The same corpus as stream records of the definitions table, good ones among them: the
/// batch is not failed (a bad record is not retried for ever), each bad record is counted
/// invalid, and the good ones are materialized.
#[tokio::test]
async fn definition_sync_counts_every_bad_record_and_applies_the_good_ones() {
    let now: chrono::DateTime<chrono::Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let store = Arc::new(InMemoryScheduleStore::new(4));
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    let sync = DefinitionSync {
        modes: schedule_core::mode_cache::ModeRouting::default(),
        store: store.clone(),
        definitions: definitions.clone(),
        clock: clock.clone(),
        settings: SyncSettings::default(),
    };
    let mut records = Vec::new();
    let cases = bad_definitions();
    for (i, case) in cases.iter().enumerate() {
        let key = row_key(i, case);
        definitions.put_raw(&key.0, &key.1, case.input.clone());
        records.push(insert_record(i, key, &case.input));
    }
    let good_def = Definition::from_json(&good("good1")).unwrap();
    definitions.put_raw(&good_def.key().0, &good_def.key().1, good("good1"));
    records.insert(
        cases.len() / 2,
        insert_record(cases.len(), good_def.key(), &good("good1")),
    );
    let mut event = Event::default();
    event.records = records;
    let metrics = Metrics::new("definition_sync");
    let (response, outcome) = definition_sync::handle(&sync, &event, &metrics).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!(outcome.records, cases.len() + 1, "{outcome:?}");
    assert_eq!(outcome.invalid, cases.len(), "{outcome:?}");
    assert_eq!(metrics.get(Metric::InvalidDefinition), cases.len() as u64);
    assert!(outcome.created > 0, "{outcome:?}");
    assert!(
        store
            .items()
            .iter()
            .all(|i| i.device_workflow_step_id.as_str() == "good1"
                && i.scheduled_time >= Timestamp::from_datetime(now))
    );
}

fn event_file(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Events meant for another function, or not events at all, given to the scanner: each
/// is refused naming what it is, and nothing is written (not read as a full run).
#[tokio::test]
async fn the_scanner_refuses_events_of_another_kind() {
    let now: chrono::DateTime<chrono::Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
    let world = Embedded::new(now, EmbeddedSettings::default());
    world
        .definitions
        .put_raw("TENANT#acme", "STEP#good1", good("good1"));
    let cases = [
        (
            event_file("executor_v2.json"),
            "invalid scan request: field Records = <a batch of records from aws:sqs>: is not an event for the scanner",
        ),
        (
            event_file("definition_sync.json"),
            "invalid scan request: field Records = <a batch of records from aws:dynamodb>: is not an event for the scanner",
        ),
        (
            json!([1, 2]),
            "invalid scan request: field event = [1,2]: must be a JSON object",
        ),
        (
            json!("run"),
            "invalid scan request: field event = \"run\": must be a JSON object",
        ),
        (
            json!({"mode": "weekly"}),
            "invalid scan request: field mode = \"weekly\": expected \"full\" or \"incremental\"",
        ),
        (
            json!({"from": "yesterday", "to": "2026-11-27T00:00:00Z"}),
            "invalid scan request: field from = \"yesterday\"",
        ),
    ];
    for (event, expected) in cases {
        let error = daily_scanner_v2::handle(&world.scanner, &event, None, &world.metrics)
            .await
            .expect_err(&format!("{event}: accepted"));
        assert!(error.to_string().starts_with(expected), "{event}: {error}");
    }
    assert!(world.memory_store.items().is_empty());
}

/// The executor and the definition sync are given each other's events (and the
/// scanner's): the Lambda runtime's decoding refuses them naming the missing field, so
/// the invocation fails visibly instead of doing nothing quietly.
#[test]
fn the_queue_and_stream_functions_refuse_events_of_another_kind() {
    use aws_lambda_events::event::sqs::SqsEvent;
    for name in ["daily_scanner_v2.json", "scheduler_v2.json"] {
        let error = serde_json::from_value::<SqsEvent>(event_file(name)).unwrap_err();
        assert!(
            error.to_string().contains("missing field `Records`"),
            "{name}: {error}"
        );
        let error = serde_json::from_value::<Event>(event_file(name)).unwrap_err();
        assert!(
            error.to_string().contains("missing field `Records`"),
            "{name}: {error}"
        );
    }
    let error = serde_json::from_value::<Event>(event_file("executor_v2.json")).unwrap_err();
    assert!(error.to_string().contains("missing field"), "{error}");
}

/// Registry answers that are not what the registry promises: errors naming the device and
/// what came back, never a verdict on the device.
#[tokio::test]
async fn registry_answers_that_are_not_json_are_errors_naming_what_came_back() {
    use schedule_core::adapters::http_validator::HttpDeviceValidator;
    use schedule_core::model::{DeviceId, TenantId};
    use schedule_core::ports::DeviceValidator;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let cases = [
        (
            ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
            "unreadable body",
        ),
        (
            ResponseTemplate::new(200).set_body_string(""),
            "unreadable body",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!(["ACTIVE"])),
            "status",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"status": null})),
            "status",
        ),
        (ResponseTemplate::new(401), "HTTP 401"),
    ];
    for (i, (response, expected)) in cases.into_iter().enumerate() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(response)
            .mount(&server)
            .await;
        let validator =
            HttpDeviceValidator::new(&server.uri(), std::time::Duration::from_secs(2)).unwrap();
        let error = validator
            .validate(
                &TenantId::parse("acme").unwrap(),
                &DeviceId::parse("d1").unwrap(),
            )
            .await
            .expect_err(&format!("case {i}: a verdict"));
        let text = error.to_string();
        assert!(
            text.starts_with("device registry unavailable for acme/d1") && text.contains(expected),
            "case {i}: {text}"
        );
    }
}

/// Execution-queue bodies that are empty, not JSON, JSON of another shape, of another
/// version, with a forged key or a time that disagrees with the key, or naming an item
/// that does not exist, in one batch with a good message: the good one fires; each
/// unreadable one is reported as a batch item failure (so SQS moves it to the DLQ after
/// its receives) with the reason; the orphan is dropped and counted.
#[tokio::test]
async fn execution_messages_that_cannot_be_read_end_in_the_dlq_and_spare_the_batch() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    use schedule_core::app::ExecutionMessage;
    use schedule_core::app::execute::Outcome;
    use schedule_core::app::scan::ScanRequest;
    use schedule_core::model::{ScheduleKey, StepId, TenantId};

    let now: chrono::DateTime<chrono::Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
    let world = Embedded::new(now, EmbeddedSettings::default());
    let mut def = good("good1");
    def["schedule"] = json!({"type": "once", "at": "2026-11-26T10:00:00Z"});
    world
        .definitions
        .put_raw("TENANT#acme", "STEP#good1", def.clone());
    let t = Timestamp::from_datetime(now);
    world
        .scan(&ScanRequest::daily(t, &EmbeddedSettings::default().scan))
        .await
        .unwrap();
    let key = ScheduleKey::new(
        &TenantId::parse("acme").unwrap(),
        t,
        &StepId::parse("good1").unwrap(),
    );
    let good_body = ExecutionMessage::for_key(&key, t).body();
    let orphan = ScheduleKey::new(
        &TenantId::parse("acme").unwrap(),
        t,
        &StepId::parse("nobody").unwrap(),
    );
    let bodies = [
        ("good", good_body.clone(), None),
        (
            "empty",
            String::new(),
            Some("body is not an execution message: EOF while parsing a value"),
        ),
        (
            "not json",
            "water the plants".to_owned(),
            Some("body is not an execution message: expected value"),
        ),
        (
            "json array",
            "[1,2]".to_owned(),
            Some("body is not an execution message: invalid type: integer `2`, expected a string"),
        ),
        (
            "other shape",
            r#"{"device":"d1"}"#.to_owned(),
            Some("body is not an execution message: missing field `v`"),
        ),
        (
            "other version",
            good_body.replace("\"v\":1", "\"v\":9"),
            Some("unsupported execution message version 9"),
        ),
        (
            "forged key",
            good_body.replace("TENANT#acme", "TENANT#acme#DATE#x"),
            Some(
                "invalid key: PK date x#DATE#2026-11-26 is not the UTC date of SK time 2026-11-26T10:00:00Z",
            ),
        ),
        (
            "time not the key's",
            good_body.replace(
                "\"scheduled_time\":\"2026-11-26T10:00:00Z\"",
                "\"scheduled_time\":\"2026-11-26T10:01:00Z\"",
            ),
            Some(
                "scheduled_time 2026-11-26T10:01:00Z does not match the key's time 2026-11-26T10:00:00Z",
            ),
        ),
        ("orphan", ExecutionMessage::for_key(&orphan, t).body(), None),
    ];
    let mut event = SqsEvent::default();
    for (id, body, _) in &bodies {
        let mut m = SqsMessage::default();
        m.message_id = Some((*id).to_owned());
        m.receipt_handle = Some(format!("rh-{id}"));
        m.body = Some(body.clone());
        m.attributes
            .insert("ApproximateReceiveCount".to_owned(), "1".to_owned());
        event.records.push(m);
    }
    let (response, outcomes) = executor_v2::handle(
        &world.executor,
        &world.execution_queue,
        &event,
        None,
        &world.metrics,
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let malformed: Vec<&str> = bodies
        .iter()
        .filter(|(_, _, e)| e.is_some())
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(failed, malformed);
    for ((id, _, expected), (oid, outcome)) in bodies.iter().zip(&outcomes) {
        assert_eq!(id, oid);
        match (expected, outcome) {
            (Some(text), Outcome::Malformed { reason }) => {
                assert!(reason.starts_with(text), "{id}: {reason}");
                assert!(!reason.is_empty(), "{id}: no reason");
            }
            (None, Outcome::Executed { .. }) if *id == "good" => {}
            (None, Outcome::Orphan) if *id == "orphan" => {}
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(
        world.metrics.get(Metric::MalformedMessage),
        malformed.len() as u64
    );
    assert_eq!(world.metrics.get(Metric::OrphanMessage), 1);
    assert_eq!(world.triggers().len(), 1, "the good message fired, once");
}
