//! Metrics in CloudWatch embedded metric format (EMF): counters and millisecond samples
//! gathered during one invocation, then written as one JSON line to stdout, where Lambda's
//! log pipeline turns them into CloudWatch metrics without an API call.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// Declares the metric enum with its name and the list of every variant, so that a new
/// metric cannot be left out of either.
macro_rules! metrics {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$doc:meta])* $variant:ident, )* }
    ) => {
        $(#[$meta])*
        pub enum $name { $( $(#[$doc])* $variant, )* }

        impl $name {
            /// Every metric, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The CloudWatch metric name.
            pub fn name(self) -> &'static str {
                match self { $( $name::$variant => stringify!($variant), )* }
            }
        }
    };
}

metrics! {
    /// Every metric the flow emits, named once: the variant's name is the CloudWatch
    /// metric name, and [`Metric::ALL`] lists them all (the template's alarms and
    /// dashboard are checked against it).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Metric {
        /// Occurrences written by the scanner.
        Materialized,
        /// Occurrences the scanner found already written (re-run, overlap).
        AlreadyMaterialized,
        /// Definitions rejected with a reason (bad zone, bad cron, forged id, …).
        InvalidDefinition,
        /// Definitions whose rule could not be expanded (they are validated when read, so
        /// this counts what validation let through).
        InvalidSchedule,
        /// Scanner writes that failed after retries.
        WriteErrors,
        /// Occurrences the scanner left unwritten at its deadline.
        NotWritten,
        /// Sent to the execution queue.
        Dispatched,
        /// Sends to the execution queue that failed after retries.
        DispatchFailed,
        /// Items another run had already taken.
        AlreadyTaken,
        /// QUEUED items older than expected: their message may be lost or in the DLQ.
        StuckQueued,
        /// Stuck QUEUED items the scheduler's sweep sent again under their execution id.
        StuckRedispatched,
        /// Stuck QUEUED items the sweep moved to FAILED (re-dispatched as often as
        /// allowed); also counted in `Failed`.
        StuckFailed,
        Executed,
        /// A message for an occurrence that already has its outcome.
        Duplicate,
        Failed,
        Skipped,
        Missed,
        /// Failed sends to the action trigger queue that were retried.
        SendRetries,
        /// Execution messages that could not be read.
        MalformedMessage,
        /// Execution messages for an occurrence that does not exist.
        OrphanMessage,
        /// Messages left for redelivery (lease held elsewhere, transient failure).
        Redelivered,
        /// Execution messages that arrived early and went back as a fresh, delayed copy
        /// (their item untouched, no receive spent).
        Deferred,
        /// FAILED occurrences a message redriven from the DLQ put back in the queue.
        Redriven,
        ValidationCacheHit,
        ValidationCacheMiss,
        /// The registry could not answer; the occurrence went on with its scan-time result.
        ValidationUnavailable,
        /// `sent_at - scheduled_time` of each executed trigger.
        LatenessMs,
        /// Definition stream records handled by definition sync.
        SyncRecords,
        /// PENDING occurrences brought to a newer definition version.
        Refreshed,
        /// CANCELLED occurrences a newer definition version yields again.
        Reinstated,
        /// PENDING occurrences cancelled because their definition changed.
        Cancelled,
        /// Stream records older than the definition's current version (replays, duplicates).
        StaleRecordIgnored,
        /// Occurrences dispatched without their definition checked: the definitions table
        /// could not be read (the run fails open rather than stop every step).
        DefinitionCheckUnavailable,
        /// A daily scan (not a backfill) that wrote its whole window: the heartbeat the
        /// "scanner did not run" alarm waits for.
        DailyScanCompleted,
        /// Segment tasks of a fanned-out scan cut by their deadline and continued from their
        /// checkpoint by a new task.
        ScanContinuations,
        /// A scheduler run that finished without an error: the heartbeat the "scheduler is
        /// not running" alarm waits for.
        SchedulerRunSucceeded,
        /// Occurrences of a tenant in shadow mode: EXECUTED with the trigger they would
        /// have sent recorded, nothing sent to the action trigger queue.
        ShadowRecorded,
        /// Occurrences found at their due time for a tenant whose mode is off: SKIPPED,
        /// nothing sent.
        TenantOff,
        /// Due occurrences a scheduler run left PENDING for the next run: its deadline came
        /// first and no continuation took them.
        LeftForNextRun,
        /// Continuation messages a scheduler run sent (one per status shard with work left
        /// at its deadline).
        ContinuationSent,
        /// Continuations the scheduler ran.
        SchedulerContinuationRan,
    }
}

impl Metric {
    fn unit(self) -> &'static str {
        match self {
            Metric::LatenessMs => "Milliseconds",
            _ => "Count",
        }
    }
}

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "WorkflowStepScheduler";
/// The one dimension every metric carries: the function that wrote it (the name given to
/// [`Metrics::new`], e.g. `executor_v2`). An alarm must name exactly this dimension.
pub const DIMENSION: &str = "Function";
/// EMF takes at most 100 values per metric per document.
const EMF_MAX_VALUES: usize = 100;

#[derive(Debug, Default)]
struct Recorded {
    counts: BTreeMap<Metric, u64>,
    samples: BTreeMap<Metric, Vec<f64>>,
}

/// Metrics of one function, recorded from any task.
#[derive(Debug)]
pub struct Metrics {
    function: String,
    recorded: Mutex<Recorded>,
}

impl Metrics {
    pub fn new(function: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            recorded: Mutex::new(Recorded::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self, metric: Metric, n: u64) {
        *self.lock().counts.entry(metric).or_default() += n;
    }

    pub fn incr(&self, metric: Metric) {
        self.count(metric, 1);
    }

    pub fn sample(&self, metric: Metric, value: f64) {
        self.lock().samples.entry(metric).or_default().push(value);
    }

    /// The count recorded since the last [`Metrics::take_emf`].
    pub fn get(&self, metric: Metric) -> u64 {
        self.lock().counts.get(&metric).copied().unwrap_or(0)
    }

    pub fn samples(&self, metric: Metric) -> Vec<f64> {
        self.lock()
            .samples
            .get(&metric)
            .cloned()
            .unwrap_or_default()
    }

    /// The EMF documents for what was recorded (empty when nothing was), and a reset.
    pub fn take_emf(&self, timestamp_ms: i64) -> Vec<String> {
        let recorded = std::mem::take(&mut *self.lock());
        let mut docs = Vec::new();
        let mut values: Vec<(Metric, Value)> = recorded
            .counts
            .iter()
            .map(|(m, n)| (*m, json!(n)))
            .collect();
        let mut rest: Vec<(Metric, Vec<f64>)> = recorded.samples.into_iter().collect();
        loop {
            for (m, samples) in rest.iter_mut() {
                if !samples.is_empty() {
                    let take = samples.len().min(EMF_MAX_VALUES);
                    values.push((*m, json!(samples.drain(..take).collect::<Vec<_>>())));
                }
            }
            if values.is_empty() {
                break;
            }
            docs.push(self.document(timestamp_ms, &values));
            values.clear();
        }
        docs
    }

    fn document(&self, timestamp_ms: i64, values: &[(Metric, Value)]) -> String {
        let definitions: Vec<Value> = values
            .iter()
            .map(|(m, _)| json!({"Name": m.name(), "Unit": m.unit()}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [
                {"Namespace": NAMESPACE, "Dimensions": [[DIMENSION]], "Metrics": definitions}
            ]}),
        );
        root.insert(DIMENSION.into(), json!(self.function));
        for (m, v) in values {
            root.insert(m.name().into(), v.clone());
        }
        Value::Object(root).to_string()
    }

    /// Writes the EMF documents to stdout (one line each), where Lambda picks them up.
    pub fn flush(&self, timestamp_ms: i64) {
        for doc in self.take_emf(timestamp_ms) {
            println!("{doc}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_metric_once_under_its_variant_name() {
        let names: std::collections::BTreeSet<&str> =
            Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len(), "names are unique");
        for m in Metric::ALL {
            assert_eq!(m.name(), format!("{m:?}"));
        }
        assert!(names.contains("DailyScanCompleted") && names.contains("SchedulerRunSucceeded"));
    }

    #[test]
    fn every_document_carries_the_one_dimension_with_the_function_name() {
        let m = Metrics::new("scheduler_v2");
        m.incr(Metric::SchedulerRunSucceeded);
        let doc: Value = serde_json::from_str(&m.take_emf(0)[0]).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], json!(NAMESPACE));
        assert_eq!(directive["Dimensions"], json!([[DIMENSION]]));
        assert_eq!(doc[DIMENSION], json!("scheduler_v2"));
    }

    #[test]
    fn emf_documents_declare_every_value_and_split_long_sample_lists() {
        let m = Metrics::new("executor_v2");
        m.count(Metric::Executed, 3);
        m.incr(Metric::Executed);
        for i in 0..150 {
            m.sample(Metric::LatenessMs, f64::from(i));
        }
        let docs = m.take_emf(1_700_000_000_000);
        assert_eq!(
            docs.len(),
            2,
            "150 samples need two documents of at most 100"
        );
        let first: Value = serde_json::from_str(&docs[0]).unwrap();
        assert_eq!(first["Executed"], json!(4));
        assert_eq!(first["Function"], json!("executor_v2"));
        assert_eq!(first["LatenessMs"].as_array().unwrap().len(), 100);
        let declared: Vec<_> = first["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Name"].clone())
            .collect();
        assert_eq!(declared, vec![json!("Executed"), json!("LatenessMs")]);
        let second: Value = serde_json::from_str(&docs[1]).unwrap();
        assert_eq!(second["LatenessMs"].as_array().unwrap().len(), 50);
        assert!(second.get("Executed").is_none());
        assert!(m.take_emf(0).is_empty(), "taking resets");
    }
}
