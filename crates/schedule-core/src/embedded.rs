//! The whole flow in one process on the in-memory twin: definitions, schedule table,
//! execution queue with its DLQ, action trigger queue, device registry — wired to the same
//! use cases the Lambda functions run. Used by `wfs demo`, by the fast flow tests and by
//! simulations. Time is a [`ManualClock`] that the driver moves.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::adapters::clock::ManualClock;
use crate::adapters::memory::{
    InMemoryDefinitionSource, InMemoryDeviceRegistry, InMemoryQueue, InMemoryScheduleStore,
    QueueSettings,
};
use crate::app::AppError;
use crate::app::execute::{ExecuteSettings, Executor, Incoming, Outcome};
use crate::app::scan::{ScanReport, ScanRequest, ScanSettings, Scanner};
use crate::app::schedule::{ScheduleReport, ScheduleSettings, Scheduler};
use crate::limits::{EXECUTION_MAX_RECEIVE_COUNT, SQS_MAX_RECEIVE};
use crate::metrics::Metrics;
use crate::model::TriggerMessage;
use crate::ports::{ActionSink, Clock, DispatchQueue, OutgoingMessage, ScheduleStore};
use crate::validation_cache::{CacheSettings, CachedValidator};

pub type Validator = Arc<CachedValidator<Arc<InMemoryDeviceRegistry>>>;

/// Settings of an embedded world.
#[derive(Debug, Clone)]
pub struct EmbeddedSettings {
    pub shards: u16,
    /// Visibility timeout of the execution queue (SQS: 180 s in the template).
    pub execution_visibility: Duration,
    pub max_receive_count: u32,
    pub scan: ScanSettings,
    pub schedule: ScheduleSettings,
    pub execute: ExecuteSettings,
    pub cache: CacheSettings,
    /// The rollout mode of a tenant without a stored one.
    pub default_mode: crate::model::TenantMode,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            shards: crate::limits::DEFAULT_STATUS_SHARDS,
            execution_visibility: crate::limits::EXECUTION_VISIBILITY_TIMEOUT,
            max_receive_count: EXECUTION_MAX_RECEIVE_COUNT,
            scan: ScanSettings::default(),
            schedule: ScheduleSettings::default(),
            execute: ExecuteSettings::default(),
            cache: CacheSettings::default(),
            default_mode: crate::model::TenantMode::Active,
        }
    }
}

/// An embedded world; `S` and `A` default to the in-memory store and action queue, and
/// can be wrapped (fault injection) by tests.
#[derive(Debug)]
pub struct Embedded<S = Arc<InMemoryScheduleStore>, A = Arc<InMemoryQueue>> {
    pub clock: Arc<ManualClock>,
    pub memory_store: Arc<InMemoryScheduleStore>,
    pub definitions: Arc<InMemoryDefinitionSource>,
    pub execution_queue: Arc<InMemoryQueue>,
    pub execution_dlq: Arc<InMemoryQueue>,
    /// The scheduler continuation queue: a run's backlog at its deadline.
    pub continuation_queue: Arc<InMemoryQueue>,
    pub action_queue: Arc<InMemoryQueue>,
    /// Where the would-be triggers of tenants in shadow mode go.
    pub shadow_queue: Arc<InMemoryQueue>,
    pub registry: Arc<InMemoryDeviceRegistry>,
    pub scanner_validator: Validator,
    pub executor_validator: Validator,
    pub scanner: Scanner<Arc<InMemoryDefinitionSource>, S, Validator, Arc<ManualClock>>,
    pub scheduler:
        Scheduler<S, Arc<InMemoryQueue>, Arc<InMemoryDefinitionSource>, Arc<ManualClock>>,
    pub executor: Executor<S, A, Validator, Arc<ManualClock>>,
    pub metrics: Metrics,
}

impl Embedded {
    /// A world whose clock starts at `start`.
    pub fn new(start: DateTime<Utc>, settings: EmbeddedSettings) -> Self {
        let store = Arc::new(InMemoryScheduleStore::new(settings.shards));
        let clock = Arc::new(ManualClock::new(start));
        let action_queue = Arc::new(InMemoryQueue::new(
            "action-trigger",
            clock.clone(),
            QueueSettings::default(),
        ));
        Self::with_parts(
            clock,
            store.clone(),
            store,
            action_queue.clone(),
            action_queue,
            settings,
        )
    }
}

impl<S: ScheduleStore + Clone, A: ActionSink> Embedded<S, A> {
    /// A world around a given store view and sink (for example wrappers that inject
    /// faults). `store` must read and write `memory_store`, and `sink` deliver to
    /// `action_queue`.
    pub fn with_parts(
        clock: Arc<ManualClock>,
        memory_store: Arc<InMemoryScheduleStore>,
        store: S,
        action_queue: Arc<InMemoryQueue>,
        sink: A,
        settings: EmbeddedSettings,
    ) -> Self {
        let dlq = Arc::new(InMemoryQueue::new(
            "execution-dlq",
            clock.clone(),
            QueueSettings::default(),
        ));
        let execution_queue = Arc::new(InMemoryQueue::new(
            "execution",
            clock.clone(),
            QueueSettings {
                visibility_timeout: settings.execution_visibility,
                redrive: Some((dlq.clone(), settings.max_receive_count)),
                fifo: false,
            },
        ));
        let continuation_queue = Arc::new(InMemoryQueue::new(
            "scheduler-continuation",
            clock.clone(),
            QueueSettings::default(),
        ));
        let definitions = Arc::new(InMemoryDefinitionSource::new());
        let shadow_queue = Arc::new(InMemoryQueue::new(
            "shadow",
            clock.clone(),
            QueueSettings::default(),
        ));
        // Read on every use: the embedded clock is virtual, so a wall-clock TTL would mean
        // nothing here; a switch takes effect at once.
        let modes: Arc<dyn crate::mode_cache::ModeOf> =
            Arc::new(crate::mode_cache::CachedModes::new(
                definitions.clone(),
                settings.default_mode,
                Duration::ZERO,
            ));
        let shadow: Arc<dyn crate::mode_cache::ShadowSink> = shadow_queue.clone();
        let registry = Arc::new(InMemoryDeviceRegistry::new());
        let scanner_validator = Arc::new(CachedValidator::new(registry.clone(), settings.cache));
        let executor_validator = Arc::new(CachedValidator::new(registry.clone(), settings.cache));
        let mut scan = settings.scan.clone();
        scan.shards = settings.shards;
        let mut execute = settings.execute.clone();
        execute.max_receive_count = settings.max_receive_count;
        // The sweep's threshold follows the execution queue it sweeps for.
        let mut schedule = settings.schedule.clone();
        schedule.execution_max_receive_count = settings.max_receive_count;
        schedule.execution_visibility = settings.execution_visibility;
        Self {
            scanner: Scanner {
                definitions: definitions.clone(),
                store: store.clone(),
                validator: scanner_validator.clone(),
                clock: clock.clone(),
                settings: scan,
                modes: crate::mode_cache::ModeRouting::new(modes.clone(), None),
            },
            scheduler: Scheduler {
                store: store.clone(),
                queue: execution_queue.clone(),
                continuation: Some(continuation_queue.clone()),
                definitions: definitions.clone(),
                clock: clock.clone(),
                settings: schedule,
            },
            executor: Executor {
                store,
                sink,
                validator: executor_validator.clone(),
                clock: clock.clone(),
                settings: execute,
                modes: crate::mode_cache::ModeRouting::new(modes, Some(shadow)),
            },
            definitions,
            clock,
            memory_store,
            execution_queue,
            shadow_queue,
            execution_dlq: dlq,
            continuation_queue,
            action_queue,
            registry,
            scanner_validator,
            executor_validator,
            metrics: Metrics::new("embedded"),
        }
    }

    pub async fn scan(&self, request: &ScanRequest) -> Result<ScanReport, AppError> {
        self.scanner.run(request, None, &self.metrics).await
    }

    pub async fn schedule(&self, run_id: &str) -> Result<ScheduleReport, AppError> {
        self.scheduler.run(run_id, None, &self.metrics).await
    }

    /// Runs every visible scheduler continuation, one message per invocation as the event
    /// source delivers them (and those they hand off in turn), with the deadline `deadline`
    /// after each start (`None`: none). Returns the continuations' reports.
    pub async fn continue_ready(
        &self,
        deadline: Option<Duration>,
    ) -> Result<Vec<ScheduleReport>, AppError> {
        let mut reports = Vec::new();
        loop {
            let got = self.continuation_queue.receive(1, Duration::ZERO).await?;
            let Some(msg) = got.into_iter().next() else {
                return Ok(reports);
            };
            let continuation = crate::app::schedule::Continuation::parse(&msg.body)?;
            let until = deadline.and_then(|d| {
                chrono::Duration::from_std(d)
                    .ok()
                    .map(|d| self.clock.now() + d)
            });
            let report = self
                .scheduler
                .resume(&msg.message_id, until, &self.metrics, &continuation)
                .await?;
            self.continuation_queue.delete(&msg.receipt_handle).await?;
            reports.push(report);
        }
    }

    /// Delivers every visible execution message to the executor, ten at a time, each
    /// batch handled as one (as the Lambda edge does), deleting the acknowledged ones. Returns the
    /// outcomes with their message ids.
    pub async fn execute_ready(&self) -> Result<Vec<(String, Outcome)>, AppError> {
        let mut all = Vec::new();
        loop {
            let batch = self
                .execution_queue
                .receive(SQS_MAX_RECEIVE as u32, Duration::ZERO)
                .await?;
            if batch.is_empty() {
                return Ok(all);
            }
            let incoming: Vec<Incoming<'_>> = batch
                .iter()
                .map(|m| Incoming {
                    message_id: &m.message_id,
                    delivery_id: &m.receipt_handle,
                    body: &m.body,
                    receive_count: m.receive_count,
                    deadline: None,
                })
                .collect();
            let outcomes = self.executor.handle_batch(&incoming, &self.metrics).await;
            let handled: Vec<_> = batch.iter().zip(outcomes).collect();
            for (m, outcome) in handled {
                let done = match &outcome {
                    // As the Lambda edge does: a fresh, delayed copy first, then the delete.
                    Outcome::Deferred { delay } => DispatchQueue::send_batch(
                        &self.execution_queue,
                        &[OutgoingMessage {
                            id: m.message_id.clone(),
                            body: m.body.clone(),
                            delay: *delay,
                        }],
                    )
                    .await
                    .is_ok_and(|r| r.failed.is_empty()),
                    other => other.acknowledge(),
                };
                if done {
                    self.execution_queue.delete(&m.receipt_handle).await?;
                }
                all.push((m.message_id.clone(), outcome));
            }
        }
    }

    /// The trigger messages on the action trigger queue, in send order.
    pub fn triggers(&self) -> Vec<TriggerMessage> {
        self.action_queue
            .peek_bodies()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }
}
