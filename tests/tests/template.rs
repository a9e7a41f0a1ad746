//! `template.yaml` and the code agree: key schema, index, TTL attribute, queue settings
//! and defaults all come from `schedule_core::limits`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use schedule_core::limits::{
    DEFAULT_RETENTION, DEFAULT_SCHEDULE_WINDOW, DEFAULT_STATUS_SHARDS, DLQ_RETENTION,
    EXECUTION_MAX_RECEIVE_COUNT, EXECUTION_VISIBILITY_TIMEOUT, MAX_STATUS_SHARDS,
    STATUS_INDEX_NAME, attr,
};
use serde_norway::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    let r = &t["Resources"][name];
    assert!(!r.is_null(), "template has no resource {name}");
    &r["Properties"]
}

/// `[{AttributeName, KeyType}]` → `[(name, type)]`.
fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn num(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v:?}"))
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[test]
fn schedule_table_matches_the_code() {
    let t = template();
    let table = resource(&t, "ScheduleTable");
    assert_eq!(
        key_schema(&table["KeySchema"]),
        vec![pair(attr::PK, "HASH"), pair(attr::SK, "RANGE")]
    );
    let gsis = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
    assert_eq!(gsis.len(), 1);
    let gsi = &gsis[0];
    assert_eq!(gsi["IndexName"].as_str(), Some(STATUS_INDEX_NAME));
    assert_eq!(
        key_schema(&gsi["KeySchema"]),
        vec![
            pair(attr::STATUS_SHARD, "HASH"),
            pair(attr::SCHEDULED_TIME, "RANGE")
        ]
    );
    assert_eq!(
        gsi["Projection"]["ProjectionType"].as_str(),
        Some("KEYS_ONLY")
    );
    let defs: Vec<_> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["AttributeName"].as_str().unwrap().to_owned(),
                d["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for a in [attr::PK, attr::SK, attr::STATUS_SHARD, attr::SCHEDULED_TIME] {
        assert!(
            defs.contains(&pair(a, "S")),
            "{a} must be declared as a string attribute"
        );
    }
    assert_eq!(
        defs.len(),
        4,
        "only key attributes may be declared: {defs:?}"
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(attr::TTL)
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn definitions_table_has_keys_and_a_stream() {
    let t = template();
    let table = resource(&t, "DefinitionsTable");
    assert_eq!(
        key_schema(&table["KeySchema"]),
        vec![pair(attr::PK, "HASH"), pair(attr::SK, "RANGE")]
    );
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some("NEW_AND_OLD_IMAGES")
    );
}

#[test]
fn queues_match_the_code() {
    let t = template();
    let q = resource(&t, "ExecutionQueue");
    assert_eq!(
        num(&q["VisibilityTimeout"]),
        EXECUTION_VISIBILITY_TIMEOUT.as_secs()
    );
    assert_eq!(
        num(&q["RedrivePolicy"]["maxReceiveCount"]),
        u64::from(EXECUTION_MAX_RECEIVE_COUNT)
    );
    let dlq = resource(&t, "ExecutionDeadLetterQueue");
    assert_eq!(num(&dlq["MessageRetentionPeriod"]), DLQ_RETENTION.as_secs());

    let executor = resource(&t, "ExecutorFunction");
    let timeout = num(&executor["Timeout"]);
    assert!(
        timeout * 6 <= EXECUTION_VISIBILITY_TIMEOUT.as_secs(),
        "visibility must be ≥ 6 × executor timeout ({timeout} s)"
    );
    assert_eq!(
        num(&executor["Environment"]["Variables"]["EXECUTION_MAX_RECEIVE_COUNT"]),
        u64::from(EXECUTION_MAX_RECEIVE_COUNT)
    );
    let sqs = &executor["Events"]["Execution"]["Properties"];
    assert_eq!(num(&sqs["BatchSize"]), 10);
    assert_eq!(
        sqs["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
}

#[test]
fn parameter_defaults_match_the_code() {
    let t = template();
    let p = &t["Parameters"];
    assert_eq!(
        num(&p["StatusShards"]["Default"]),
        u64::from(DEFAULT_STATUS_SHARDS)
    );
    assert_eq!(
        num(&p["StatusShards"]["MaxValue"]),
        u64::from(MAX_STATUS_SHARDS)
    );
    assert_eq!(
        num(&p["ScheduleWindowMinutes"]["Default"]) * 60,
        DEFAULT_SCHEDULE_WINDOW.as_secs()
    );
    assert_eq!(
        num(&p["RetentionDays"]["Default"]) * 86_400,
        DEFAULT_RETENTION.as_secs()
    );
}

#[test]
fn functions_are_built_by_cargo_lambda_for_arm64() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    for (resource, binary) in [
        ("DailyScannerFunction", "daily_scanner_v2"),
        ("SchedulerFunction", "scheduler_v2"),
        ("ExecutorFunction", "executor_v2"),
        ("DefinitionSyncFunction", "definition_sync"),
    ] {
        let meta = &t["Resources"][resource]["Metadata"];
        assert_eq!(
            meta["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{resource}"
        );
        assert_eq!(
            meta["BuildProperties"]["Binary"].as_str(),
            Some(binary),
            "{resource}"
        );
        let manifest = format!(
            "{}/../functions/{binary}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        assert!(
            std::path::Path::new(&manifest).exists(),
            "{resource} builds {binary}, which has no crate"
        );
    }
}

/// Every variable a function's config requires is set on that function (or globally).
#[test]
fn each_function_gets_the_variables_its_config_requires() {
    use schedule_core::config::{ExecutorConfig, ScannerConfig, SchedulerConfig, SyncConfig};
    let t = template();
    let globals = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    for (resource, required) in [
        ("DailyScannerFunction", ScannerConfig::REQUIRED),
        ("SchedulerFunction", SchedulerConfig::REQUIRED),
        ("ExecutorFunction", ExecutorConfig::REQUIRED),
        ("DefinitionSyncFunction", SyncConfig::REQUIRED),
    ] {
        let own = t["Resources"][resource]["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap();
        for name in required {
            let key = Value::String((*name).to_owned());
            assert!(
                own.contains_key(&key) || globals.contains_key(&key),
                "{resource} does not set {name}"
            );
        }
    }
}

/// Definition sync reads the definitions table's stream in order, reports partial
/// failures, retries a bounded number of times and parks what it gives up on.
#[test]
fn definition_sync_reads_the_stream_with_bounded_retries_and_a_failure_queue() {
    let t = template();
    let table = resource(&t, "DefinitionsTable");
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some("NEW_AND_OLD_IMAGES"),
        "the sync needs both images"
    );
    let f = resource(&t, "DefinitionSyncFunction");
    let event = &f["Events"]["DefinitionChanges"];
    assert_eq!(event["Type"].as_str(), Some("DynamoDB"));
    let p = &event["Properties"];
    let stream = format!("{:?}", p["Stream"]);
    assert!(stream.contains("DefinitionsTable.StreamArn"), "{stream}");
    assert_eq!(p["StartingPosition"].as_str(), Some("LATEST"));
    assert_eq!(num(&p["BatchSize"]), 100);
    assert_eq!(num(&p["MaximumBatchingWindowInSeconds"]), 1);
    assert_eq!(p["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert_eq!(num(&p["MaximumRetryAttempts"]), 5);
    assert_eq!(num(&p["MaximumRecordAgeInSeconds"]), 21_600);
    assert_eq!(
        p["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let on_failure = &p["DestinationConfig"]["OnFailure"];
    assert_eq!(on_failure["Type"].as_str(), Some("SQS"));
    let destination = format!("{:?}", on_failure["Destination"]);
    assert!(
        destination.contains("DefinitionSyncFailureQueue"),
        "{destination}"
    );
    let queue = resource(&t, "DefinitionSyncFailureQueue");
    assert_eq!(
        num(&queue["MessageRetentionPeriod"]),
        DLQ_RETENTION.as_secs()
    );
}
