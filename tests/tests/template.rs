//! `template.yaml` and the code agree: key schema, index, TTL attribute, queue settings
//! and defaults all come from `schedule_core::limits`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use schedule_core::limits::{
    DEFAULT_RETENTION, DEFAULT_SCHEDULE_WINDOW, DEFAULT_STATUS_SHARDS, DLQ_RETENTION,
    EXECUTION_MAX_RECEIVE_COUNT, EXECUTION_VISIBILITY_TIMEOUT, MAX_STATUS_SHARDS,
    SCHEDULER_CONTINUATION_CONCURRENCY, SCHEDULER_TIMEOUT, STATUS_INDEX_NAME, attr,
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

/// The scan segment queue: one task per invocation with partial batch responses, a
/// visibility of six scanner timeouts, a DLQ after the receives the code assumes, an alarm
/// on that DLQ, the worker concurrency a parameter, and the scanner told the queue's URL
/// and the segment count.
#[test]
fn the_scan_segment_queue_feeds_the_scanner_and_parks_failures() {
    use schedule_core::limits::{SCAN_SEGMENT_MAX_RECEIVE_COUNT, SCAN_SEGMENT_VISIBILITY_TIMEOUT};
    let t = template();
    let q = resource(&t, "ScanSegmentQueue");
    assert_eq!(
        num(&q["VisibilityTimeout"]),
        SCAN_SEGMENT_VISIBILITY_TIMEOUT.as_secs()
    );
    let scanner = resource(&t, "DailyScannerFunction");
    assert!(num(&scanner["Timeout"]) * 6 <= SCAN_SEGMENT_VISIBILITY_TIMEOUT.as_secs());
    assert_eq!(
        num(&q["RedrivePolicy"]["maxReceiveCount"]),
        u64::from(SCAN_SEGMENT_MAX_RECEIVE_COUNT)
    );
    assert_eq!(
        target_of(&q["RedrivePolicy"]["deadLetterTargetArn"]),
        Some((
            "GetAtt".to_owned(),
            "ScanSegmentDeadLetterQueue.Arn".to_owned()
        ))
    );
    let dlq = resource(&t, "ScanSegmentDeadLetterQueue");
    assert_eq!(num(&dlq["MessageRetentionPeriod"]), DLQ_RETENTION.as_secs());

    let source = &scanner["Events"]["SegmentTasks"];
    assert_eq!(source["Type"].as_str(), Some("SQS"));
    let p = &source["Properties"];
    assert_eq!(
        target_of(&p["Queue"]),
        Some(("GetAtt".to_owned(), "ScanSegmentQueue.Arn".to_owned()))
    );
    assert_eq!(num(&p["BatchSize"]), 1);
    assert_eq!(
        p["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert!(is_ref(
        &p["ScalingConfig"]["MaximumConcurrency"],
        "ScanWorkerMaximumConcurrency"
    ));
    let vars = &scanner["Environment"]["Variables"];
    assert!(is_ref(&vars["SCAN_SEGMENT_QUEUE_URL"], "ScanSegmentQueue"));
    assert!(is_ref(&vars["SCAN_SEGMENTS"], "ScanSegments"));
    // The parameter's range is the one the code accepts.
    let segments = &t["Parameters"]["ScanSegments"];
    assert_eq!(
        (num(&segments["MinValue"]), num(&segments["MaxValue"])),
        (1, 1000)
    );

    // The scanner sends to and reads from this queue only.
    for s in statements(&t, "DailyScannerRole") {
        if strings(&s["Action"]).iter().any(|a| a.starts_with("sqs:")) {
            assert_eq!(
                target_of(&s["Resource"]),
                Some(("GetAtt".to_owned(), "ScanSegmentQueue.Arn".to_owned())),
                "{s:?}"
            );
        }
    }

    let alarm = resource(&t, "ScanSegmentDlqNotEmpty");
    assert_eq!(alarm["Namespace"].as_str(), Some("AWS/SQS"));
    assert_eq!(
        alarm["MetricName"].as_str(),
        Some("ApproximateNumberOfMessagesVisible")
    );
    assert!(
        format!("{:?}", alarm["Dimensions"]).contains("ScanSegmentDeadLetterQueue"),
        "the alarm watches the segment DLQ"
    );
    assert_eq!(num(&alarm["Threshold"]), 0);
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
    assert_eq!(
        resolved(&t, &globals["Architectures"][0]).as_deref(),
        Some("arm64")
    );
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

// --- Observe: alarms and dashboard against the metrics the code writes --------------------

/// The code each function runs that writes metrics: a metric an alarm or the dashboard
/// reads with `Function = name` must be written (`Metric::X`) in one of these files.
const METRIC_WRITERS: &[(&str, &[&str])] = &[
    (
        "daily_scanner_v2",
        &[
            "crates/schedule-core/src/app/scan.rs",
            "crates/schedule-core/src/validation_cache.rs",
            "functions/daily_scanner_v2/src/lib.rs",
        ],
    ),
    (
        "scheduler_v2",
        &[
            "crates/schedule-core/src/app/schedule.rs",
            "functions/scheduler_v2/src/lib.rs",
        ],
    ),
    (
        "executor_v2",
        &[
            "crates/schedule-core/src/app/execute.rs",
            "crates/schedule-core/src/validation_cache.rs",
            "functions/executor_v2/src/lib.rs",
        ],
    ),
    (
        "definition_sync",
        &[
            "crates/schedule-core/src/app/sync.rs",
            "functions/definition_sync/src/lib.rs",
        ],
    ),
];

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// `!Fn x` or `{Fn::Fn: x}` → `("Fn", x)`.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_owned(),
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let name = k.as_str()?.strip_prefix("Fn::")?;
            Some((name.to_owned(), v))
        }
        _ => None,
    }
}

/// One metric an alarm or a widget reads: namespace, name, dimensions (name, value as
/// written: a plain string, or the intrinsic's debug form).
#[derive(Debug)]
struct MetricRef {
    from: String,
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
}

/// A scalar as CloudFormation renders it (`"x"` → `x`, `5` → `5`); an intrinsic in its
/// debug form, which names what it refers to.
fn dimension_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn alarm_metric(from: &str, m: &Value) -> MetricRef {
    let dimensions = m["Dimensions"]
        .as_sequence()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["Name"].as_str().unwrap().to_owned(),
                        dimension_value(&d["Value"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    MetricRef {
        from: from.to_owned(),
        namespace: m["Namespace"].as_str().unwrap().to_owned(),
        name: m["MetricName"].as_str().unwrap().to_owned(),
        dimensions,
    }
}

fn alarms(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), &r["Properties"]))
        .collect()
}

fn alarm_metrics(t: &Value) -> Vec<MetricRef> {
    let mut refs = Vec::new();
    for (name, p) in alarms(t) {
        if p["MetricName"].is_string() {
            refs.push(alarm_metric(&name, p));
        }
        for q in p["Metrics"].as_sequence().into_iter().flatten() {
            if !q["MetricStat"].is_null() {
                refs.push(alarm_metric(&name, &q["MetricStat"]["Metric"]));
            } else {
                assert!(q["Expression"].is_string(), "{name}: {q:?}");
            }
        }
    }
    refs
}

/// Replaces `${X}` in a `Fn::Sub` string: `vars` first, then parameters by their default,
/// anything else (resource attributes, pseudo parameters) by its own name.
fn substitute(text: &str, vars: &[(String, String)], t: &Value) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let name = &rest[start + 2..end];
        let value = vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                let d = &t["Parameters"][name]["Default"];
                (!d.is_null()).then(|| dimension_value(d))
            })
            .unwrap_or_else(|| name.to_owned());
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A `Fn::Sub` variable's value with the condition `owned` decided: `!If` picks a branch,
/// `!Sub` is substituted.
fn resolve(v: &Value, condition: &str, holds: bool, t: &Value) -> String {
    match intrinsic(v) {
        Some((f, args)) if f == "If" => {
            let args = args.as_sequence().unwrap();
            assert_eq!(
                args[0].as_str(),
                Some(condition),
                "only {condition} is resolved here"
            );
            resolve(&args[if holds { 1 } else { 2 }], condition, holds, t)
        }
        Some((f, text)) if f == "Sub" => substitute(text.as_str().unwrap(), &[], t),
        None => v.as_str().unwrap().to_owned(),
        Some((f, _)) => panic!("unexpected intrinsic {f} in the dashboard's variables"),
    }
}

/// The dashboard body as JSON, with the stack owning the action trigger queue or not.
fn dashboard(t: &Value, owns_action_queue: bool) -> serde_json::Value {
    let body = &resource(t, "FlowDashboard")["DashboardBody"];
    let (f, args) = intrinsic(body).expect("DashboardBody is a Fn::Sub");
    assert_eq!(f, "Sub");
    let args = args.as_sequence().unwrap();
    let vars: Vec<(String, String)> = args[1]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                resolve(v, "CreateActionTriggerQueue", owns_action_queue, t),
            )
        })
        .collect();
    let text = substitute(args[0].as_str().unwrap(), &vars, t);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("dashboard body is not JSON: {e}\n{text}"))
}

fn dashboard_metrics(body: &serde_json::Value) -> Vec<MetricRef> {
    let mut refs = Vec::new();
    for w in body["widgets"].as_array().unwrap() {
        let title = w["properties"]["title"].as_str().unwrap_or("(text)");
        for row in w["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().unwrap();
            let Some(namespace) = row[0].as_str() else {
                assert!(row[0]["expression"].is_string(), "{title}: {row:?}");
                continue;
            };
            let strings: Vec<&str> = row[1..].iter().map_while(|v| v.as_str()).collect();
            assert!(
                strings.len() % 2 == 1,
                "{title}: a metric row is namespace, name, then dimension pairs (no \"...\" shorthand): {row:?}"
            );
            refs.push(MetricRef {
                from: format!("dashboard widget {title:?}"),
                namespace: namespace.to_owned(),
                name: strings[0].to_owned(),
                dimensions: strings[1..]
                    .chunks(2)
                    .map(|p| (p[0].to_owned(), p[1].to_owned()))
                    .collect(),
            });
        }
    }
    refs
}

/// Every metric the dashboard and the alarms read in the code's namespace is one the code
/// writes, with exactly the dimension it writes (`Function`), named as the function that
/// writes it; anything else would be a graph that stays empty or an alarm that never sees
/// data. Other namespaces are AWS's own (Lambda, SQS) only.
#[test]
fn dashboard_and_alarms_read_only_metrics_the_code_writes() {
    use schedule_core::metrics::{DIMENSION, Metric, NAMESPACE};
    let t = template();
    let mut refs = alarm_metrics(&t);
    let alarm_refs = refs.len();
    let owned = dashboard(&t, true);
    let external = dashboard(&t, false);
    refs.extend(dashboard_metrics(&owned));
    let external_refs = dashboard_metrics(&external);
    assert!(alarm_refs >= 15, "alarms read {alarm_refs} metrics");
    assert!(
        refs.len() - alarm_refs >= 40,
        "dashboard reads {} metrics",
        refs.len() - alarm_refs
    );
    let action_rows = |rs: &[MetricRef]| {
        rs.iter()
            .filter(|r| {
                r.dimensions
                    .iter()
                    .any(|(_, v)| v == "ActionTriggerQueue.QueueName")
            })
            .count()
    };
    assert_eq!(
        action_rows(&refs[alarm_refs..]),
        2,
        "depth and age of the stack's own action trigger queue"
    );
    assert_eq!(
        action_rows(&external_refs),
        0,
        "an external action trigger queue is not the stack's to graph"
    );
    refs.extend(external_refs);

    let sources: Vec<(&str, String)> = METRIC_WRITERS
        .iter()
        .map(|(function, files)| {
            assert!(
                repo_file(&format!("functions/{function}/src/main.rs"))
                    .contains(&format!("Metrics::new(\"{function}\")")),
                "{function}'s main does not write its metrics as Function = {function}"
            );
            (
                *function,
                files.iter().map(|f| repo_file(f)).collect::<String>(),
            )
        })
        .collect();
    let mut ours = 0;
    for r in &refs {
        if r.namespace != NAMESPACE {
            assert!(
                ["AWS/Lambda", "AWS/SQS"].contains(&r.namespace.as_str()),
                "{}: namespace {:?} is neither the code's ({NAMESPACE}) nor AWS's",
                r.from,
                r.namespace
            );
            continue;
        }
        ours += 1;
        let metric = Metric::ALL
            .iter()
            .find(|m| m.name() == r.name)
            .unwrap_or_else(|| panic!("{}: the code writes no metric {:?}", r.from, r.name));
        let [(dimension, function)] = r.dimensions.as_slice() else {
            panic!(
                "{}: {} must carry exactly the dimension {DIMENSION}: {:?}",
                r.from, r.name, r.dimensions
            )
        };
        assert_eq!(dimension, DIMENSION, "{}: {}", r.from, r.name);
        let code = sources
            .iter()
            .find(|(f, _)| f == function)
            .map(|(_, code)| code)
            .unwrap_or_else(|| panic!("{}: no function writes metrics as {function:?}", r.from));
        assert!(
            code.contains(&format!("Metric::{metric:?}")),
            "{}: {function} never writes {}",
            r.from,
            r.name
        );
    }
    assert!(ours >= 40, "only {ours} references in {NAMESPACE}");
}

/// Every alarm notifies the topic and says what to do; the heartbeat alarms wait 3 hourly
/// runs (scanner) and 3 windows (scheduler) with missing data breaching; every function's
/// errors and throttles are watched; the README has a runbook entry for each alarm.
#[test]
fn alarms_notify_the_topic_and_watch_each_function() {
    let t = template();
    let readme = repo_file("README.md");
    let all = alarms(&t);
    for (name, p) in &all {
        for actions in ["AlarmActions", "OKActions"] {
            assert!(
                format!("{:?}", p[actions]).contains("AlarmTopic"),
                "{name} does not notify the alarm topic on {actions}"
            );
        }
        let text = p["AlarmDescription"].as_str().unwrap_or_default();
        assert!(
            (100..=1024).contains(&text.len()),
            "{name}: a description says what it means and what to do, in at most 1024 characters ({} now)",
            text.len()
        );
        assert!(
            ["breaching", "notBreaching"]
                .contains(&p["TreatMissingData"].as_str().unwrap_or_default()),
            "{name} states how missing data counts"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "README has no runbook entry for `{name}`"
        );
    }
    let alarm = |name: &str| -> &Value {
        all.iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no alarm {name}"))
    };

    // The scan: three hourly runs without a complete one (the horizon is a day ahead).
    let scan = alarm("DailyScanNotCompleted");
    assert_eq!(scan["MetricName"].as_str(), Some("DailyScanCompleted"));
    assert_eq!(scan["TreatMissingData"].as_str(), Some("breaching"));
    assert_eq!(
        num(&scan["Period"]) * num(&scan["EvaluationPeriods"]),
        3 * 3600
    );
    assert_eq!(
        num(&scan["DatapointsToAlarm"]),
        num(&scan["EvaluationPeriods"])
    );

    // The scheduler: 3 windows without a successful run; the period is one window for every
    // allowed window length.
    let sched = alarm("SchedulerNotSucceeding");
    assert_eq!(sched["MetricName"].as_str(), Some("SchedulerRunSucceeded"));
    assert_eq!(sched["TreatMissingData"].as_str(), Some("breaching"));
    assert_eq!(num(&sched["EvaluationPeriods"]), 3);
    assert_eq!(num(&sched["DatapointsToAlarm"]), 3);
    let period = format!("{:?}", sched["Period"]);
    assert!(
        period.contains("ScheduleWindowSeconds") && period.contains("ScheduleWindowMinutes"),
        "{period}"
    );
    let window = &t["Parameters"]["ScheduleWindowMinutes"];
    for minutes in num(&window["MinValue"])..=num(&window["MaxValue"]) {
        let seconds =
            &t["Mappings"]["ScheduleWindowSeconds"][minutes.to_string().as_str()]["Seconds"];
        assert_eq!(num(seconds), minutes * 60, "window of {minutes} min");
    }

    // The lateness alarm reads the threshold parameter, on the p99.
    let late = alarm("LatenessP99High");
    assert_eq!(late["ExtendedStatistic"].as_str(), Some("p99"));
    assert!(format!("{:?}", late["Threshold"]).contains("LatenessP99ThresholdMs"));

    // The scheduler's duration alarm sits at 80 % of its timeout.
    let duration = alarm("SchedulerDurationNearTimeout");
    let timeout_ms = num(&resource(&t, "SchedulerFunction")["Timeout"]) * 1000;
    assert_eq!(num(&duration["Threshold"]), timeout_ms * 8 / 10);

    // Errors and throttles of every function.
    let functions: Vec<&str> = t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(functions.len(), 4);
    for function in functions {
        for metric in ["Errors", "Throttles"] {
            let watched = all.iter().any(|(_, p)| {
                p["Namespace"].as_str() == Some("AWS/Lambda")
                    && p["MetricName"].as_str() == Some(metric)
                    && format!("{:?}", p["Dimensions"]).contains(&format!("\"{function}\""))
            });
            assert!(watched, "no alarm on {function}'s {metric}");
        }
    }
}

// ---- Production hardening: roles, event sources, logs, tables, parameters.

/// The target of a `!Ref`, `!GetAtt` or `!FindInMap` (its tag and text), or `None`.
fn target_of(v: &Value) -> Option<(String, String)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_owned(),
            match &t.value {
                Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            },
        )),
        _ => None,
    }
}

/// A plain string, or a `!Ref` to a parameter resolved to its default.
fn resolved(t: &Value, v: &Value) -> Option<String> {
    // `as_str` looks through tags, so the intrinsic is checked first.
    let Some(target) = target_of(v) else {
        return v.as_str().map(str::to_owned);
    };
    match target {
        (tag, name) if tag == "Ref" => {
            let default = &t["Parameters"][name.as_str()]["Default"];
            default
                .as_str()
                .map(str::to_owned)
                .or_else(|| default.as_u64().map(|n| n.to_string()))
        }
        _ => None,
    }
}

fn is_ref(v: &Value, name: &str) -> bool {
    target_of(v) == Some(("Ref".to_owned(), name.to_owned()))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

const FUNCTIONS: [(&str, &str); 4] = [
    ("DailyScannerFunction", "DailyScanner"),
    ("SchedulerFunction", "Scheduler"),
    ("ExecutorFunction", "Executor"),
    ("DefinitionSyncFunction", "DefinitionSync"),
];

/// Every statement of a role's inline policies, with `!If` branches flattened in.
fn statements(t: &Value, role: &str) -> Vec<Value> {
    let policies = resource(t, role)["Policies"].as_sequence().unwrap();
    let mut out = Vec::new();
    for p in policies {
        for s in p["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            match s {
                Value::Tagged(tagged) => {
                    let branch = &tagged.value.as_sequence().unwrap()[1];
                    out.push(branch.clone());
                }
                plain => out.push(plain.clone()),
            }
        }
    }
    out
}

/// Each function runs under its own role, whose inline policy grants exactly the calls
/// its code makes (and its event source makes for it): no SAM policy templates, no
/// managed policies, no wildcard actions, "*" resources only for X-Ray.
#[test]
fn each_function_has_a_role_with_only_the_calls_it_makes() {
    let t = template();
    let expected: [(&str, &[&str]); 4] = [
        (
            "DailyScanner",
            &[
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Scan",
                "dynamodb:UpdateItem",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ],
        ),
        (
            "Scheduler",
            &[
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ],
        ),
        (
            "Executor",
            &[
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
                "kms:Decrypt",
                "kms:GenerateDataKey",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ],
        ),
        (
            "DefinitionSync",
            &[
                "dynamodb:DescribeStream",
                "dynamodb:GetItem",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "sqs:SendMessage",
            ],
        ),
    ];
    for ((function, prefix), (name, actions)) in FUNCTIONS.iter().zip(expected) {
        assert_eq!(*prefix, name);
        let f = resource(&t, function);
        assert!(f["Policies"].is_null(), "{function} must not use Policies");
        let role = format!("{prefix}Role");
        assert_eq!(
            target_of(&f["Role"]),
            Some(("GetAtt".to_owned(), format!("{role}.Arn"))),
            "{function}"
        );
        assert!(
            resource(&t, &role)["ManagedPolicyArns"].is_null(),
            "{role} must not attach managed policies"
        );
        let mut granted = std::collections::BTreeSet::new();
        for s in statements(&t, &role) {
            assert_eq!(s["Effect"].as_str(), Some("Allow"), "{role}: {s:?}");
            let acts = strings(&s["Action"]);
            for a in &acts {
                assert!(!a.contains('*'), "{role} grants a wildcard action {a}");
            }
            if s["Resource"].as_str() == Some("*") {
                assert!(
                    acts.iter().all(|a| a.starts_with("xray:")),
                    "{role}: only X-Ray may use Resource \"*\": {acts:?}"
                );
                continue;
            }
            if acts.iter().any(|a| a.starts_with("logs:")) {
                assert_eq!(
                    target_of(&s["Resource"]),
                    Some(("GetAtt".to_owned(), format!("{prefix}LogGroup.Arn"))),
                    "{role} may log to its own group only"
                );
                continue;
            }
            granted.extend(acts);
        }
        let want: std::collections::BTreeSet<String> =
            actions.iter().map(|a| (*a).to_owned()).collect();
        assert_eq!(granted, want, "{role}");
    }
    // The scheduler queries the status index, not the table.
    let query = statements(&t, "SchedulerRole")
        .into_iter()
        .find(|s| strings(&s["Action"]) == ["dynamodb:Query"])
        .unwrap();
    let target = format!("{:?}", query["Resource"]);
    assert!(
        target.contains(&format!("/index/{STATUS_INDEX_NAME}")),
        "{target}"
    );
}

/// An existing action trigger queue comes as URL and ARN together (a Rules assertion
/// refuses one without the other); its optional KMS key gets exactly
/// GenerateDataKey/Decrypt, only through SQS, only when given.
#[test]
fn existing_action_trigger_queue_needs_url_and_arn_and_its_key_is_scoped() {
    let t = template();
    let p = &t["Parameters"];
    for name in [
        "ActionTriggerQueueUrl",
        "ActionTriggerQueueArn",
        "ActionTriggerQueueKmsKeyArn",
    ] {
        assert_eq!(p[name]["Default"].as_str(), Some(""), "{name}");
        assert!(p[name]["AllowedPattern"].as_str().is_some(), "{name}");
    }
    let rules = format!("{:?}", t["Rules"]);
    for name in [
        "ActionTriggerQueueUrlAndArnTogether",
        "ActionTriggerQueueKeyNeedsAnExistingQueue",
    ] {
        assert!(!t["Rules"][name]["Assertions"].is_null(), "rule {name}");
    }
    for param in [
        "ActionTriggerQueueUrl",
        "ActionTriggerQueueArn",
        "ActionTriggerQueueKmsKeyArn",
    ] {
        assert!(rules.contains(param), "the Rules must check {param}");
    }
    let policies = resource(&t, "ExecutorRole")["Policies"]
        .as_sequence()
        .unwrap();
    let kms: Vec<&Value> = policies
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap())
        .filter(|s| format!("{s:?}").contains("kms:"))
        .collect();
    assert_eq!(kms.len(), 1, "one KMS statement");
    let Value::Tagged(branch) = kms[0] else {
        panic!("the KMS statement must sit under !If: {:?}", kms[0]);
    };
    let branch = branch.value.as_sequence().unwrap();
    assert_eq!(branch[0].as_str(), Some("ActionTriggerQueueHasKey"));
    assert!(is_ref(&branch[2], "AWS::NoValue"));
    let s = &branch[1];
    assert_eq!(
        strings(&s["Action"]),
        ["kms:GenerateDataKey", "kms:Decrypt"]
    );
    assert!(is_ref(&s["Resource"], "ActionTriggerQueueKmsKeyArn"));
    let via = format!("{:?}", s["Condition"]["StringEquals"]["kms:ViaService"]);
    assert!(via.contains("sqs.${AWS::Region}.amazonaws.com"), "{via}");
    let condition = format!("{:?}", t["Conditions"]["ActionTriggerQueueHasKey"]);
    assert!(
        condition.contains("ActionTriggerQueueKmsKeyArn"),
        "{condition}"
    );
}

/// The executor's event source never invokes more instances than are reserved for it,
/// so no invocation is throttled (a throttle would spend one of a message's receives);
/// the scheduler runs one at a time.
#[test]
fn executor_concurrency_is_capped_and_reserved_and_the_scheduler_reserves_its_continuations() {
    let t = template();
    let p = &t["Parameters"]["ExecutorMaximumConcurrency"];
    // AWS accepts MaximumConcurrency from 2 to 1000.
    assert_eq!(num(&p["MinValue"]), 2);
    assert_eq!(num(&p["MaxValue"]), 1000);
    assert!(num(&p["Default"]) >= 2);
    let executor = resource(&t, "ExecutorFunction");
    assert!(is_ref(
        &executor["ReservedConcurrentExecutions"],
        "ExecutorMaximumConcurrency"
    ));
    let sqs = &executor["Events"]["Execution"]["Properties"];
    assert!(is_ref(
        &sqs["ScalingConfig"]["MaximumConcurrency"],
        "ExecutorMaximumConcurrency"
    ));
    // The scheduled run plus every continuation the event source may start at once.
    let scheduler = resource(&t, "SchedulerFunction");
    assert_eq!(
        num(&scheduler["ReservedConcurrentExecutions"]),
        u64::from(SCHEDULER_CONTINUATION_CONCURRENCY) + 1
    );
    assert_eq!(
        num(
            &scheduler["Events"]["Continuation"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        ),
        u64::from(SCHEDULER_CONTINUATION_CONCURRENCY)
    );
}

/// A backlog past a run's deadline goes to the continuation queue, which scheduler_v2
/// consumes one shard at a time; what fails 3 receives is parked in its DLQ (alarmed), and
/// the role may send, receive and delete on that queue only.
#[test]
fn scheduler_continuations_have_a_queue_a_dlq_an_event_source_and_a_scoped_role() {
    let t = template();
    let scheduler = resource(&t, "SchedulerFunction");
    assert_eq!(num(&scheduler["Timeout"]), SCHEDULER_TIMEOUT.as_secs());
    assert!(is_ref(
        &scheduler["Environment"]["Variables"]["CONTINUATION_QUEUE_URL"],
        "SchedulerContinuationQueue"
    ));
    let send = num(&scheduler["Environment"]["Variables"]["SEND_CONCURRENCY"]);
    assert!((1..=256).contains(&send), "SEND_CONCURRENCY {send}");
    let event = &scheduler["Events"]["Continuation"];
    assert_eq!(event["Type"].as_str(), Some("SQS"));
    let props = &event["Properties"];
    assert_eq!(
        target_of(&props["Queue"]),
        Some((
            "GetAtt".to_owned(),
            "SchedulerContinuationQueue.Arn".to_owned()
        ))
    );
    assert_eq!(num(&props["BatchSize"]), 1);
    assert_eq!(
        props["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let q = resource(&t, "SchedulerContinuationQueue");
    assert!(
        num(&q["VisibilityTimeout"]) >= 6 * SCHEDULER_TIMEOUT.as_secs(),
        "visibility must be ≥ 6 × the scheduler's timeout"
    );
    assert_eq!(num(&q["RedrivePolicy"]["maxReceiveCount"]), 3);
    assert_eq!(
        target_of(&q["RedrivePolicy"]["deadLetterTargetArn"]),
        Some((
            "GetAtt".to_owned(),
            "SchedulerContinuationDeadLetterQueue.Arn".to_owned()
        ))
    );
    let dlq = resource(&t, "SchedulerContinuationDeadLetterQueue");
    assert_eq!(num(&dlq["MessageRetentionPeriod"]), DLQ_RETENTION.as_secs());
    let alarm = resource(&t, "SchedulerContinuationDlqNotEmpty");
    assert_eq!(
        target_of(&alarm["Dimensions"][0]["Value"]),
        Some((
            "GetAtt".to_owned(),
            "SchedulerContinuationDeadLetterQueue.QueueName".to_owned()
        ))
    );
    let polls: Vec<Value> = statements(&t, "SchedulerRole")
        .into_iter()
        .filter(|s| {
            strings(&s["Action"])
                .iter()
                .any(|a| a == "sqs:ReceiveMessage")
        })
        .collect();
    assert_eq!(polls.len(), 1, "{polls:?}");
    assert_eq!(
        target_of(&polls[0]["Resource"]),
        Some((
            "GetAtt".to_owned(),
            "SchedulerContinuationQueue.Arn".to_owned()
        ))
    );
}

/// The execution queue keeps a message long past its longest legitimate wait; the DLQ
/// keeps it 14 days; three receives before the DLQ.
#[test]
fn execution_queue_retention_outlasts_every_legitimate_wait() {
    use schedule_core::limits::{EXECUTION_RETENTION, SQS_MAX_DELAY_SECONDS};
    let t = template();
    let q = resource(&t, "ExecutionQueue");
    let retention = num(&q["MessageRetentionPeriod"]);
    assert_eq!(retention, EXECUTION_RETENTION.as_secs());
    assert_eq!(retention, 86_400);
    let longest_wait = u64::from(SQS_MAX_DELAY_SECONDS)
        + u64::from(EXECUTION_MAX_RECEIVE_COUNT) * EXECUTION_VISIBILITY_TIMEOUT.as_secs();
    assert!(retention > longest_wait, "{retention} <= {longest_wait}");
    assert_eq!(num(&q["RedrivePolicy"]["maxReceiveCount"]), 3);
    let dlq = resource(&t, "ExecutionDeadLetterQueue");
    assert_eq!(num(&dlq["MessageRetentionPeriod"]), 14 * 86_400);
}

/// Each function logs JSON to its own log group, kept `LogRetentionDays`; the level
/// parameter reaches the code as `AWS_LAMBDA_LOG_LEVEL`, which it understands.
#[test]
fn functions_log_json_to_their_own_groups_at_the_level_parameter() {
    use schedule_core::config::Env;
    use schedule_core::logging::LogSettings;
    let t = template();
    let logging = &t["Globals"]["Function"]["LoggingConfig"];
    let format = logging["LogFormat"].as_str().unwrap();
    assert_eq!(format, "JSON");
    let level = format!("{:?}", logging["ApplicationLogLevel"]);
    assert!(
        level.contains("LogLevels") && level.contains("LogLevel"),
        "{level}"
    );
    for (function, prefix) in FUNCTIONS {
        let f = resource(&t, function);
        let group = format!("{prefix}LogGroup");
        assert!(
            is_ref(&f["LoggingConfig"]["LogGroup"], &group),
            "{function}"
        );
        let g = resource(&t, &group);
        assert!(is_ref(&g["RetentionInDays"], "LogRetentionDays"), "{group}");
        let vars = f["Environment"]["Variables"].as_mapping().unwrap();
        assert!(
            !vars.contains_key(Value::String("RUST_LOG".into())),
            "{function}: the level comes from LoggingConfig"
        );
    }
    assert!(t["Globals"]["Function"]["Environment"]["Variables"]["RUST_LOG"].is_null());
    let allowed = t["Parameters"]["LogLevel"]["AllowedValues"]
        .as_sequence()
        .unwrap();
    for value in allowed {
        let value = value.as_str().unwrap();
        let lambda = t["Mappings"]["LogLevels"][value]["Lambda"]
            .as_str()
            .unwrap();
        let env = Env(|name: &str| match name {
            "AWS_LAMBDA_LOG_LEVEL" => Some(lambda.to_owned()),
            "AWS_LAMBDA_LOG_FORMAT" => Some(format.to_owned()),
            _ => None,
        });
        let settings = LogSettings::from_env(&env, false, "info");
        assert_eq!(settings.filter, value, "LogLevel {value} -> {lambda}");
        assert!(settings.json, "LogFormat {format}");
        assert_eq!(settings.ignored, None);
    }
    let retention = &t["Parameters"]["LogRetentionDays"];
    let days: Vec<u64> = retention["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(num)
        .collect();
    assert!(days.contains(&num(&retention["Default"])));
}

/// The architecture is a parameter, arm64 by default, applied to every function.
#[test]
fn architecture_is_a_parameter() {
    let t = template();
    let p = &t["Parameters"]["Architecture"];
    assert_eq!(p["Default"].as_str(), Some("arm64"));
    assert_eq!(strings(&p["AllowedValues"]), ["arm64", "x86_64"]);
    assert!(is_ref(
        &t["Globals"]["Function"]["Architectures"][0],
        "Architecture"
    ));
    for (function, _) in FUNCTIONS {
        assert!(
            resource(&t, function)["Architectures"].is_null(),
            "{function} must take the global architecture"
        );
    }
}

/// Both tables survive a stack deletion or replacement, with PITR and SSE; the schedule
/// table and its index bill on demand unless provisioned through the parameters.
#[test]
fn tables_are_retained_recoverable_encrypted_and_billed_by_parameter() {
    let t = template();
    for table in ["DefinitionsTable", "ScheduleTable"] {
        let r = &t["Resources"][table];
        assert_eq!(r["DeletionPolicy"].as_str(), Some("Retain"), "{table}");
        assert_eq!(r["UpdateReplacePolicy"].as_str(), Some("Retain"), "{table}");
        let p = &r["Properties"];
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
            Some(true),
            "{table}"
        );
        assert_eq!(
            p["SSESpecification"]["SSEEnabled"].as_bool(),
            Some(true),
            "{table}"
        );
    }
    let billing = &t["Parameters"]["ScheduleTableBillingMode"];
    assert_eq!(billing["Default"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        strings(&billing["AllowedValues"]),
        ["PAY_PER_REQUEST", "PROVISIONED"]
    );
    let condition = format!("{:?}", t["Conditions"]["ScheduleTableProvisioned"]);
    assert!(
        condition.contains("ScheduleTableBillingMode") && condition.contains("PROVISIONED"),
        "{condition}"
    );
    let table = resource(&t, "ScheduleTable");
    assert!(is_ref(&table["BillingMode"], "ScheduleTableBillingMode"));
    let gsi = &table["GlobalSecondaryIndexes"][0];
    for (throughput, read, write) in [
        (
            &table["ProvisionedThroughput"],
            "ScheduleTableReadCapacity",
            "ScheduleTableWriteCapacity",
        ),
        (
            &gsi["ProvisionedThroughput"],
            "StatusIndexReadCapacity",
            "StatusIndexWriteCapacity",
        ),
    ] {
        let Value::Tagged(branch) = throughput else {
            panic!("ProvisionedThroughput must be an !If: {throughput:?}");
        };
        let branch = branch.value.as_sequence().unwrap();
        assert_eq!(branch[0].as_str(), Some("ScheduleTableProvisioned"));
        assert!(is_ref(&branch[1]["ReadCapacityUnits"], read));
        assert!(is_ref(&branch[1]["WriteCapacityUnits"], write));
        assert!(is_ref(&branch[2], "AWS::NoValue"));
        for name in [read, write] {
            assert!(num(&t["Parameters"][name]["MinValue"]) >= 1, "{name}");
        }
    }
}

/// Every parameter is described, used somewhere in the template, and explained in the
/// README's deploy section.
#[test]
fn every_parameter_is_described_used_and_in_the_readme() {
    let t = template();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let body = &text[text
        .find("\nRules:")
        .or(text.find("\nConditions:"))
        .unwrap()..];
    for (name, p) in t["Parameters"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        assert!(
            p["Description"].as_str().is_some(),
            "{name} has no Description"
        );
        assert!(
            body.contains(&format!("!Ref {name}")) || body.contains(&format!("${{{name}}}")),
            "{name} is never used"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not explain `{name}`"
        );
    }
}

/// Every variable the template sets on a function is one the code reads: a renamed
/// variable cannot silently fall back to a default.
#[test]
fn every_variable_the_template_sets_is_read_by_the_code() {
    let t = template();
    let config = include_str!("../../crates/schedule-core/src/config.rs");
    let mut names: Vec<String> = Vec::new();
    let mut collect = |vars: &Value| {
        for (k, _) in vars.as_mapping().unwrap() {
            names.push(k.as_str().unwrap().to_owned());
        }
    };
    collect(&t["Globals"]["Function"]["Environment"]["Variables"]);
    for (function, _) in FUNCTIONS {
        collect(&resource(&t, function)["Environment"]["Variables"]);
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            config.contains(&format!("\"{name}\"")),
            "the template sets {name}, which config.rs never reads"
        );
    }
}

/// Rollout modes: the default mode is a parameter of the three values the code accepts
/// (quoted, or YAML 1.1 would read `off` as false); every function that reads modes gets it;
/// the executor reads the mode rows and, only with the optional shadow queue, sends there.
#[test]
fn rollout_modes_are_configured_and_the_shadow_queue_is_optional() {
    use schedule_core::model::TenantMode;
    let t = template();
    let p = &t["Parameters"]["DefaultTenantMode"];
    let allowed: Vec<_> = p["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse::<TenantMode>().unwrap())
        .collect();
    assert_eq!(allowed, TenantMode::ALL);
    assert_eq!(p["Default"].as_str(), Some("active"));
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert!(is_ref(&globals["DEFAULT_TENANT_MODE"], "DefaultTenantMode"));

    let env = &resource(&t, "ExecutorFunction")["Environment"]["Variables"];
    assert!(is_ref(&env["DEFINITIONS_TABLE"], "DefinitionsTable"));
    let shadow_env = format!("{:?}", env["SHADOW_QUEUE_URL"]);
    assert!(
        shadow_env.contains("HasShadowQueue") && shadow_env.contains("ShadowTriggerQueue"),
        "{shadow_env}"
    );
    assert_eq!(
        t["Resources"]["ShadowTriggerQueue"]["Condition"].as_str(),
        Some("HasShadowQueue")
    );
    let executor = statements(&t, "ExecutorRole");
    let reads = executor
        .iter()
        .find(|s| s["Sid"].as_str() == Some("ReadTenantModes"))
        .unwrap();
    assert_eq!(strings(&reads["Action"]), ["dynamodb:GetItem"]);
    assert_eq!(
        target_of(&reads["Resource"]),
        Some(("GetAtt".to_owned(), "DefinitionsTable.Arn".to_owned()))
    );
    let sends = executor
        .iter()
        .find(|s| s["Sid"].as_str() == Some("SendShadowTriggers"))
        .unwrap();
    assert_eq!(
        target_of(&sends["Resource"]),
        Some(("GetAtt".to_owned(), "ShadowTriggerQueue.Arn".to_owned()))
    );
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    assert!(text.contains("- HasShadowQueue\n                - Sid: SendShadowTriggers"));
}
