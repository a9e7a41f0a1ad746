//! Faults: which kinds are on, when they strike, how often they struck; the invocation a
//! call runs in (so a crash can drop it); and the wrappers that put faults between the
//! use cases and the in-memory twin.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::VirtualClock;
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore};
use schedule_core::error::{QueueError, StoreError, ValidationError};
use schedule_core::model::{
    Definition, DeviceId, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, StepId,
    TenantId, Timestamp, TriggerMessage, Validation,
};
use schedule_core::ports::{
    ActionSink, Clock, Cursor, DefinitionKey, DefinitionSource, DeviceValidator, DispatchQueue,
    DueEntry, FetchedDefinitions, Materialized, OutgoingMessage, Page, ReceivedMessage,
    ScannedDefinition, ScheduleStore, SendReport, Sweep,
};

use super::esm::SimQueue;
use super::journal::Journal;
use super::rng::Rng;

macro_rules! faults {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// A kind of fault, switchable by name (`SIM_FAULTS=all`, or a comma list).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Fault { $( $(#[$doc])* $variant, )* }

        impl Fault {
            pub const ALL: &'static [Fault] = &[ $( Fault::$variant, )* ];

            pub fn name(self) -> &'static str {
                match self { $( Fault::$variant => $name, )* }
            }
        }
    };
}

faults! {
    /// An invocation (scanner, scheduler, executor, sync) dies between two external calls,
    /// before or after the call took effect.
    Crash = "crash",
    /// A store call (schedule table, definitions table) fails, before or after it took
    /// effect, with a retryable error.
    StoreErrors = "store_errors",
    /// A send to, or a delete from, the execution queue fails, before or after it took effect.
    QueueErrors = "queue_errors",
    /// A send to the action trigger queue fails, before or after it took effect.
    SinkErrors = "sink_errors",
    /// The action trigger queue is down for minutes.
    SinkOutage = "sink_outage",
    /// The device registry is down for minutes.
    RegistryOutage = "registry_outage",
    /// The device registry answers 401 for minutes (a credential rotated badly).
    Registry401 = "registry_401",
    /// The device registry hangs until the client's timeout for minutes.
    RegistrySlow = "registry_slow",
    /// Devices go inactive and active again during the day.
    DeviceFlaps = "device_flaps",
    /// Two copies of one message delivered at once.
    Duplicates = "duplicates",
    /// Messages delivered later than their delay, and batches out of order.
    LateDelivery = "late_delivery",
    /// Messages delivered before their delay ran out (a queue that ignores it, a redrive).
    EarlyDelivery = "early_delivery",
    /// Invocations throttled: the receive is spent, the handler never runs.
    Throttle = "throttle",
    /// Invocations cut by a timeout at a random moment.
    Timeout = "timeout",
    /// Scheduler runs skipped, delayed (overlapping the next), or doubled.
    SchedulerChaos = "scheduler_chaos",
    /// The daily scan runs late (up to three hours), or twice.
    ScannerLate = "scanner_late",
    /// The daily scan does not run at all one day.
    ScannerSkip = "scanner_skip",
    /// Definitions edited mid-day: payload, time, disabled, deleted; their stream records
    /// delayed and delivered twice.
    Edits = "edits",
    /// The status index lags the table by up to a few seconds.
    IndexLag = "index_lag",
    /// The DLQ redriven to the execution queue once the faults are over, as an operator
    /// does after an incident: each redriven occurrence must run again (or be MISSED).
    Redrive = "redrive",
}

impl Fault {
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name.trim())
    }

    /// Every fault, or those named in `spec` (`all`, `none`, `a,b`, `all,-a,-b`).
    pub fn set_from(spec: &str) -> Result<BTreeSet<Fault>, String> {
        let mut set = BTreeSet::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => set.extend(Fault::ALL.iter().copied()),
                "none" => set.clear(),
                _ => {
                    let (remove, name) = match part.strip_prefix('-') {
                        Some(n) => (true, n),
                        None => (false, part),
                    };
                    let fault = Fault::parse(name).ok_or_else(|| {
                        format!(
                            "SIM_FAULTS: unknown fault {name:?}; known: all, none, {}",
                            Fault::ALL
                                .iter()
                                .map(|f| f.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                    if remove {
                        set.remove(&fault);
                    } else {
                        set.insert(fault);
                    }
                }
            }
        }
        Ok(set)
    }
}

/// A half-open stretch of simulated time.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// The fault state of one run.
#[derive(Debug)]
pub struct Chaos {
    pub enabled: BTreeSet<Fault>,
    rng: Mutex<Rng>,
    /// Faults strike only while this is set (off for the drain at the end).
    active: AtomicBool,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    pub sink_down: Vec<Span>,
    pub registry_down: Vec<Span>,
    pub registry_401: Vec<Span>,
    pub registry_slow: Vec<Span>,
    /// Stretches when Lambda throttles most invocations of the executor.
    pub throttled: Vec<Span>,
    /// Stretches when most invocations of the executor time out (a slow dependency).
    pub timing_out: Vec<Span>,
    next_invocation: AtomicU64,
}

/// What a wrapped call does this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Pass,
    FailBefore,
    FailAfter,
    CrashBefore,
    CrashAfter,
}

/// The class of an external call, for the error fault that applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Store,
    Queue,
    Sink,
    Registry,
}

impl Chaos {
    pub fn new(enabled: BTreeSet<Fault>, rng: Rng) -> Self {
        Self {
            enabled,
            rng: Mutex::new(rng),
            active: AtomicBool::new(true),
            counts: Mutex::new(BTreeMap::new()),
            sink_down: Vec::new(),
            registry_down: Vec::new(),
            registry_401: Vec::new(),
            registry_slow: Vec::new(),
            throttled: Vec::new(),
            timing_out: Vec::new(),
            next_invocation: AtomicU64::new(1),
        }
    }

    pub fn on(&self, fault: Fault) -> bool {
        self.active.load(Ordering::Relaxed) && self.enabled.contains(&fault)
    }

    pub fn stop(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    /// Faults strike again (after a fault-free setup).
    pub fn resume(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    pub fn count(&self, what: &'static str) {
        *self.counts.lock().unwrap().entry(what).or_default() += 1;
    }

    pub fn count_n(&self, what: &'static str, n: u64) {
        if n > 0 {
            *self.counts.lock().unwrap().entry(what).or_default() += n;
        }
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap().clone()
    }

    pub fn with_rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.rng.lock().unwrap())
    }

    /// `true` with probability `p` when `fault` is on (and counts it under `what`).
    pub fn strikes(&self, fault: Fault, p: f64, what: &'static str) -> bool {
        if self.on(fault) && self.with_rng(|r| r.chance(p)) {
            self.count(what);
            true
        } else {
            false
        }
    }

    pub fn in_span(spans: &[Span], now: DateTime<Utc>) -> bool {
        spans.iter().any(|(a, b)| *a <= now && now < *b)
    }

    /// A new invocation of `function` that dies at its `crash_at`-th external call, if the
    /// crash fault draws one. `calls` is about how many external calls it makes.
    pub fn invocation(&self, function: &'static str, p_crash: f64, calls: u64) -> Arc<Invocation> {
        let id = self.next_invocation.fetch_add(1, Ordering::Relaxed);
        let crash_at = if self.on(Fault::Crash) {
            self.with_rng(|r| {
                r.chance(p_crash)
                    .then(|| (r.below(calls.max(1)), r.chance(0.5)))
            })
        } else {
            None
        };
        Arc::new(Invocation {
            id,
            function,
            crash_at,
            cut: false,
            calls: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// A new invocation that a timeout cuts before one of its first `calls` external
    /// calls: the future is dropped at that await point, whatever it was doing.
    pub fn cut_invocation(&self, function: &'static str, calls: u64) -> Arc<Invocation> {
        let id = self.next_invocation.fetch_add(1, Ordering::Relaxed);
        let at = self.with_rng(|r| r.below(calls.max(1)));
        Arc::new(Invocation {
            id,
            function,
            crash_at: Some((at, false)),
            cut: true,
            calls: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// Decides what the next external call of class `class` does.
    pub fn plan(&self, class: Class) -> Plan {
        if !self.active.load(Ordering::Relaxed) {
            return Plan::Pass;
        }
        if let Ok(inv) = INVOCATION.try_with(Arc::clone) {
            let n = inv.calls.fetch_add(1, Ordering::Relaxed);
            if let Some((at, after)) = inv.crash_at
                && n == at
            {
                self.count(match (inv.cut, after) {
                    (true, _) => "timeout_cut_before_call",
                    (false, true) => "crash_after_call",
                    (false, false) => "crash_before_call",
                });
                return if after {
                    Plan::CrashAfter
                } else {
                    Plan::CrashBefore
                };
            }
        }
        let (fault, p, before, after) = match class {
            Class::Store => (
                Fault::StoreErrors,
                0.01,
                "store_error_before",
                "store_error_after",
            ),
            Class::Queue => (
                Fault::QueueErrors,
                0.02,
                "queue_error_before",
                "queue_error_after",
            ),
            Class::Sink => (
                Fault::SinkErrors,
                0.02,
                "sink_error_before",
                "sink_error_after",
            ),
            Class::Registry => return Plan::Pass,
        };
        if !self.enabled.contains(&fault) {
            return Plan::Pass;
        }
        let (hit, is_after) = self.with_rng(|r| (r.chance(p), r.chance(0.5)));
        if !hit {
            return Plan::Pass;
        }
        if is_after {
            self.count(after);
            Plan::FailAfter
        } else {
            self.count(before);
            Plan::FailBefore
        }
    }
}

/// One invocation of a function: its external calls are counted so a crash can strike
/// between any two of them.
#[derive(Debug)]
pub struct Invocation {
    pub id: u64,
    pub function: &'static str,
    /// `(call index, after it took effect?)`.
    crash_at: Option<(u64, bool)>,
    /// The crash is a timeout's cut, not a crash fault.
    cut: bool,
    calls: AtomicU64,
    crashed: AtomicBool,
    notify: tokio::sync::Notify,
}

tokio::task_local! {
    static INVOCATION: Arc<Invocation>;
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Ended<T> {
    Returned(T),
    Crashed,
    TimedOut,
}

impl Invocation {
    /// Runs `fut` as this invocation: `Crashed` when a wrapped call crashed it (the future
    /// is dropped at that await point, as a process dies), `TimedOut` when `limit` passed.
    pub async fn run<T>(
        self: &Arc<Self>,
        limit: std::time::Duration,
        fut: impl Future<Output = T>,
    ) -> Ended<T> {
        let me = Arc::clone(self);
        let body = INVOCATION.scope(Arc::clone(self), fut);
        tokio::select! {
            biased;
            out = body => Ended::Returned(out),
            () = me.notify.notified() => Ended::Crashed,
            () = tokio::time::sleep(limit) => Ended::TimedOut,
        }
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Relaxed)
    }

    /// The id of the invocation the current task runs in (0: none).
    pub fn current_id() -> u64 {
        INVOCATION.try_with(|i| i.id).unwrap_or(0)
    }
}

/// Dies: marks the current invocation crashed and never returns.
async fn crash<T>() -> T {
    if let Ok(inv) = INVOCATION.try_with(Arc::clone) {
        inv.crashed.store(true, Ordering::Relaxed);
        inv.notify.notify_one();
    }
    std::future::pending().await
}

fn store_error(op: &'static str, after: bool) -> StoreError {
    StoreError::Transient {
        operation: op,
        source: format!(
            "injected failure ({} the call took effect)",
            if after { "after" } else { "before" }
        )
        .into(),
    }
}

fn queue_error(op: &'static str, after: bool) -> QueueError {
    QueueError::Transient {
        operation: op,
        source: format!(
            "injected failure ({} the call took effect)",
            if after { "after" } else { "before" }
        )
        .into(),
    }
}

/// Runs `call` under `plan`.
async fn faulty<T, E>(
    plan: Plan,
    call: impl Future<Output = Result<T, E>>,
    error: impl FnOnce(bool) -> E,
) -> Result<T, E> {
    match plan {
        Plan::Pass => call.await,
        Plan::FailBefore => Err(error(false)),
        Plan::FailAfter => {
            let _ = call.await;
            Err(error(true))
        }
        Plan::CrashBefore => crash().await,
        Plan::CrashAfter => {
            let _ = call.await;
            crash().await
        }
    }
}

/// A status mark the invariants check (who marked MISSED or SKIPPED, and when).
#[derive(Debug, Clone)]
pub struct Mark {
    pub key: ScheduleKey,
    pub status: Status,
    pub at: DateTime<Utc>,
}

/// The schedule table with faults in front of it.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    pub inner: Arc<InMemoryScheduleStore>,
    pub chaos: Arc<Chaos>,
    pub clock: VirtualClock,
    pub marks: Arc<Mutex<Vec<Mark>>>,
    pub journal: Journal,
    pub tally: Tally,
}

/// Per invocation, the outcomes its writes recorded in the table (what its metrics must
/// count): EXECUTED, FAILED, SKIPPED, MISSED, CANCELLED.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Mutex<BTreeMap<u64, BTreeMap<Status, u64>>>>);

impl Tally {
    fn add(&self, status: Status) {
        let inv = Invocation::current_id();
        *self
            .0
            .lock()
            .unwrap()
            .entry(inv)
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    pub fn of(&self, invocation: u64) -> BTreeMap<Status, u64> {
        self.0
            .lock()
            .unwrap()
            .get(&invocation)
            .cloned()
            .unwrap_or_default()
    }
}

impl FaultyStore {
    fn plan(&self) -> Plan {
        self.chaos.plan(Class::Store)
    }
}

impl ScheduleStore for FaultyStore {
    fn status_shards(&self) -> u16 {
        self.inner.status_shards()
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        faulty(self.plan(), self.inner.create_if_absent(item), |a| {
            store_error("PutItem", a)
        })
        .await
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        let call = async {
            let out = self.inner.materialize(item).await;
            if let Ok(m) = &out
                && *m != Materialized::Unchanged
            {
                self.journal.note(
                    &item.key,
                    self.clock.now(),
                    format!(
                        "materialized {m:?} as {} v{}",
                        item.status, item.definition_version
                    ),
                );
                if item.status != Status::Pending && *m == Materialized::Created {
                    self.marks.lock().unwrap().push(Mark {
                        key: item.key.clone(),
                        status: item.status,
                        at: self.clock.now(),
                    });
                }
            }
            out
        };
        let out = faulty(self.plan(), call, |a| store_error("UpdateItem", a)).await;
        // Counted only when the caller learns it: a write whose answer was lost cannot be.
        if let Ok(Materialized::Created) = out
            && item.status != Status::Pending
        {
            self.tally.add(item.status);
        }
        out
    }

    async fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let call = async {
            let out = self.inner.cancel(key, cancelling_version, reason).await;
            if let Ok(true) = out {
                self.journal
                    .note(key, self.clock.now(), format!("cancelled: {reason}"));
            }
            out
        };
        let out = faulty(self.plan(), call, |a| store_error("UpdateItem", a)).await;
        if let Ok(true) = out {
            self.tally.add(Status::Cancelled);
        }
        out
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        faulty(self.plan(), self.inner.scan_horizon(), |a| {
            store_error("GetItem", a)
        })
        .await
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        faulty(
            self.plan(),
            self.inner.record_scan_horizon(covered_to),
            |a| store_error("UpdateItem", a),
        )
        .await
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        faulty(self.plan(), self.inner.get(key), |a| {
            store_error("GetItem", a)
        })
        .await
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        let call = async {
            let out = self.inner.change_status(key, change).await;
            if let Ok(true) = out {
                let now = self.clock.now();
                self.journal.note(
                    key,
                    now,
                    format!(
                        "{} -> {} (inv {}){}",
                        change.from,
                        change.to,
                        Invocation::current_id(),
                        change
                            .error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                );
                if matches!(change.to, Status::Missed | Status::Skipped | Status::Failed) {
                    self.marks.lock().unwrap().push(Mark {
                        key: key.clone(),
                        status: change.to,
                        at: now,
                    });
                }
            }
            out
        };
        let out = faulty(self.plan(), call, |a| store_error("UpdateItem", a)).await;
        if let Ok(true) = out
            && change.to.is_terminal()
        {
            self.tally.add(change.to);
        }
        out
    }

    async fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        faulty(
            self.plan(),
            self.inner.try_lease(key, status, owner, until, now),
            |a| store_error("UpdateItem", a),
        )
        .await
    }

    async fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        faulty(
            self.plan(),
            self.inner.query_due_page(shard, before, limit, cursor),
            |a| store_error("Query", a),
        )
        .await
    }

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        faulty(self.plan(), self.inner.max_status_shards(), |a| {
            store_error("GetItem", a)
        })
        .await
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        faulty(self.plan(), self.inner.record_status_shards(shards), |a| {
            store_error("UpdateItem", a)
        })
        .await
    }

    async fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let call = async {
            let out = self
                .inner
                .sweep_queued(key, seen_queued_at, sweep, now)
                .await;
            if let Ok(true) = out {
                let at = self.clock.now();
                self.journal.note(
                    key,
                    at,
                    format!("swept (inv {}): {sweep:?}", Invocation::current_id()),
                );
                if matches!(sweep.status(), Status::Missed | Status::Failed) {
                    self.marks.lock().unwrap().push(Mark {
                        key: key.clone(),
                        status: sweep.status(),
                        at,
                    });
                }
            }
            out
        };
        let out = faulty(self.plan(), call, |a| store_error("UpdateItem", a)).await;
        if let Ok(true) = out
            && sweep.status().is_terminal()
        {
            self.tally.add(sweep.status());
        }
        out
    }

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let call = async {
            let out = self.inner.queue_unleased(key, owner, now).await;
            if let Ok(true) = out {
                self.journal.note(
                    key,
                    self.clock.now(),
                    format!(
                        "PENDING -> QUEUED before the send (inv {})",
                        Invocation::current_id()
                    ),
                );
            }
            out
        };
        faulty(self.plan(), call, |a| store_error("UpdateItem", a)).await
    }

    async fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let call = async {
            let out = self.inner.unqueue(key, queued_at, reason, now).await;
            if let Ok(true) = out {
                self.journal.note(
                    key,
                    self.clock.now(),
                    format!(
                        "QUEUED -> PENDING, send refused (inv {}): {reason}",
                        Invocation::current_id()
                    ),
                );
            }
            out
        };
        faulty(self.plan(), call, |a| store_error("UpdateItem", a)).await
    }
}

/// The definitions table with faults in front of it.
#[derive(Debug, Clone)]
pub struct FaultyDefinitions {
    pub inner: Arc<InMemoryDefinitionSource>,
    pub chaos: Arc<Chaos>,
}

impl DefinitionSource for FaultyDefinitions {
    async fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScannedDefinition>, StoreError> {
        faulty(
            self.chaos.plan(Class::Store),
            self.inner.scan_page(segment, total_segments, cursor),
            |a| store_error("Scan", a),
        )
        .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> Result<Option<ScannedDefinition>, StoreError> {
        faulty(
            self.chaos.plan(Class::Store),
            self.inner.get(tenant, step),
            |a| store_error("GetItem", a),
        )
        .await
    }

    async fn put(&self, def: &Definition) -> Result<(), StoreError> {
        faulty(self.chaos.plan(Class::Store), self.inner.put(def), |a| {
            store_error("PutItem", a)
        })
        .await
    }

    async fn get_many(&self, keys: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        faulty(
            self.chaos.plan(Class::Store),
            self.inner.get_many(keys),
            |a| store_error("BatchGetItem", a),
        )
        .await
    }
}

/// The execution queue as the scheduler sends to it, with faults per entry.
#[derive(Debug, Clone)]
pub struct FaultyQueue {
    pub inner: Arc<SimQueue>,
    pub chaos: Arc<Chaos>,
}

impl DispatchQueue for FaultyQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<SendReport, QueueError> {
        // One request for the batch (a crash strikes it whole), then each entry's own fate.
        match self.chaos.plan(Class::Queue) {
            Plan::CrashBefore => return crash().await,
            Plan::FailBefore => return Err(queue_error("SendMessageBatch", false)),
            _ => {}
        }
        let mut report = SendReport::default();
        for m in messages {
            let fate = if self.chaos.enabled.contains(&Fault::QueueErrors) {
                self.chaos.plan(Class::Queue)
            } else {
                Plan::Pass
            };
            match fate {
                Plan::FailBefore | Plan::CrashBefore => report
                    .failed
                    .push((m.id.clone(), "injected entry failure".to_owned())),
                Plan::FailAfter | Plan::CrashAfter => {
                    self.inner.send(m, Invocation::current_id());
                    report.failed.push((
                        m.id.clone(),
                        "injected entry failure after it was queued".to_owned(),
                    ));
                }
                Plan::Pass => {
                    self.inner.send(m, Invocation::current_id());
                    report.sent.push(m.id.clone());
                }
            }
        }
        Ok(report)
    }

    async fn receive(
        &self,
        max: u32,
        wait: std::time::Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }
}

/// A trigger as the action trigger queue received it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub key: ScheduleKey,
    pub execution_id: String,
    pub scheduled_time: Timestamp,
    pub at: DateTime<Utc>,
    pub invocation: u64,
    /// The sender was told it failed although it went out.
    pub ambiguous: bool,
    /// The item's status in the table when it went out.
    pub status_then: Option<Status>,
}

/// The action trigger queue: records what reached it, with outages and failures.
#[derive(Debug, Clone)]
pub struct SimSink {
    pub chaos: Arc<Chaos>,
    pub clock: VirtualClock,
    pub table: Arc<InMemoryScheduleStore>,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    pub journal: Journal,
}

impl SimSink {
    async fn deliver(&self, message: &TriggerMessage, ambiguous: bool) -> Result<(), QueueError> {
        let key = ScheduleKey::new(
            &message.tenant_id,
            message.scheduled_time,
            &message.device_workflow_step_id,
        );
        let status_then = self.table.get(&key).await.ok().flatten().map(|i| i.status);
        let now = self.clock.now();
        let invocation = Invocation::current_id();
        self.journal.note(
            &key,
            now,
            format!(
                "trigger sent (inv {invocation}, attempt {}, status then {status_then:?}{})",
                message.attempt,
                if ambiguous {
                    ", sender told it failed"
                } else {
                    ""
                }
            ),
        );
        self.sent.lock().unwrap().push(Sent {
            key,
            execution_id: message.execution_id.to_string(),
            scheduled_time: message.scheduled_time,
            at: now,
            invocation,
            ambiguous,
            status_then,
        });
        Ok(())
    }
}

impl ActionSink for SimSink {
    async fn send(&self, message: &TriggerMessage) -> Result<(), QueueError> {
        if self.chaos.on(Fault::SinkOutage)
            && Chaos::in_span(&self.chaos.sink_down, self.clock.now())
        {
            self.chaos.count("sink_outage_refusal");
            return Err(queue_error("SendMessage", false));
        }
        match self.chaos.plan(Class::Sink) {
            Plan::Pass => self.deliver(message, false).await,
            Plan::FailBefore => Err(queue_error("SendMessage", false)),
            Plan::FailAfter => {
                self.deliver(message, true).await?;
                Err(queue_error("SendMessage", true))
            }
            Plan::CrashBefore => crash().await,
            Plan::CrashAfter => {
                self.deliver(message, false).await?;
                crash().await
            }
        }
    }
}

/// The device registry: each device's status over time, with outages, 401s and hangs.
#[derive(Debug)]
pub struct SimRegistry {
    pub chaos: Arc<Chaos>,
    pub clock: VirtualClock,
    /// Per device, the times its status flipped, starting active.
    pub flips: BTreeMap<(String, String), Vec<DateTime<Utc>>>,
    /// How long a hung call takes before the client gives up.
    pub timeout: std::time::Duration,
}

impl SimRegistry {
    pub fn active_at(&self, tenant: &str, device: &str, at: DateTime<Utc>) -> bool {
        self.flips
            .get(&(tenant.to_owned(), device.to_owned()))
            .is_none_or(|f| f.iter().filter(|t| **t <= at).count() % 2 == 0)
    }

    /// Was the device inactive at any moment of `[from, to]`?
    pub fn inactive_during(
        &self,
        tenant: &str,
        device: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> bool {
        if !self.active_at(tenant, device, from) {
            return true;
        }
        self.flips
            .get(&(tenant.to_owned(), device.to_owned()))
            .is_some_and(|f| f.iter().any(|t| *t > from && *t <= to))
    }
}

impl DeviceValidator for SimRegistry {
    async fn validate(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Validation, ValidationError> {
        let fail = |reason: String| ValidationError {
            tenant: tenant.to_string(),
            device: device.to_string(),
            reason,
        };
        let plan = self.chaos.plan(Class::Registry);
        if plan == Plan::CrashBefore {
            return crash().await;
        }
        let now = self.clock.now();
        if self.chaos.on(Fault::RegistrySlow) && Chaos::in_span(&self.chaos.registry_slow, now) {
            self.chaos.count("registry_hung_call");
            self.clock.sleep(self.timeout).await;
            return Err(fail(format!("no answer within {:?}", self.timeout)));
        }
        if self.chaos.on(Fault::RegistryOutage) && Chaos::in_span(&self.chaos.registry_down, now) {
            self.chaos.count("registry_outage_refusal");
            return Err(fail("HTTP 503 Service Unavailable".to_owned()));
        }
        if self.chaos.on(Fault::Registry401) && Chaos::in_span(&self.chaos.registry_401, now) {
            self.chaos.count("registry_401_answer");
            return Err(fail("HTTP 401 Unauthorized".to_owned()));
        }
        let answer = if self.active_at(tenant.as_str(), device.as_str(), now) {
            Validation::Valid
        } else {
            Validation::Invalid
        };
        if plan == Plan::CrashAfter {
            return crash().await;
        }
        Ok(answer)
    }
}
