//! The contract: behaviour every backend must share. Each case is generic over
//! [`Backend`] and runs once on the in-memory twin and once on the emulator.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use schedule_core::adapters::clock::SystemClock;
use schedule_core::error::StoreError;
use schedule_core::model::{
    Definition, ScheduleItem, ScheduleKey, Status, StatusChange, Timestamp,
};
use schedule_core::ports::{
    ActionSink, DefinitionSource, DispatchQueue, DueEntry, OutgoingMessage, Paging, ScheduleStore,
    Sweep, scan_definitions,
};
use serde_json::json;

use crate::backends::Backend;

const RETENTION: Duration = Duration::from_secs(30 * 86_400);

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

pub fn definition(tenant: &str, step: &str, at: &str) -> Definition {
    Definition::from_json(&json!({
        "tenant_id": tenant, "device_workflow_step_id": step, "workflow_id": "w1", "device_id": format!("dev-{step}"),
        "enabled": true, "version": 1, "schedule": {"type": "once", "at": at},
        "payload": {"action": "open_valve", "step": step, "nested": {"level": 2, "ok": true, "list": [1, 2.5, "x", null]}}
    }))
    .unwrap()
}

pub fn item(tenant: &str, step: &str, at: &str, shards: u16) -> ScheduleItem {
    let now = ts("2026-11-26T00:00:00Z");
    ScheduleItem::pending(
        &definition(tenant, step, at),
        ts(at),
        now,
        RETENTION,
        shards,
    )
}

/// Every entry of `status` due before `before`, retried on the system clock, no deadline.
async fn query_due<S: ScheduleStore>(
    store: &S,
    status: Status,
    before: Timestamp,
    page_size: u32,
) -> Result<Vec<DueEntry>, StoreError> {
    let paging = Paging {
        page_size,
        clock: &SystemClock,
        deadline: None,
    };
    schedule_core::ports::query_due(store, status, before, paging).await
}

fn change(from: Status, to: Status) -> StatusChange {
    StatusChange::transition(from, to, ts("2026-11-26T10:00:00Z")).unwrap()
}

/// An item reads back exactly as written, payload and all.
pub async fn item_round_trips<B: Backend>(b: &B) {
    let store = b.store(16).await;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    assert!(store.create_if_absent(&it).await.unwrap());
    assert_eq!(
        store.get(&it.key).await.unwrap().as_ref(),
        Some(&it),
        "{}",
        b.name()
    );
    let missing = ScheduleKey::new(
        &it.tenant_id,
        ts("2026-11-26T10:31:00Z"),
        &it.device_workflow_step_id,
    );
    assert_eq!(store.get(&missing).await.unwrap(), None);
}

/// Creating the same occurrence twice: the second loses and the status is untouched.
pub async fn conditional_create_twice<B: Backend>(b: &B) {
    let store = b.store(16).await;
    let first = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    assert!(store.create_if_absent(&first).await.unwrap());
    assert!(
        store
            .change_status(&first.key, &change(Status::Pending, Status::Queued))
            .await
            .unwrap()
    );

    let mut again = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    again
        .payload
        .insert("action".into(), json!("something_else"));
    assert!(
        !store.create_if_absent(&again).await.unwrap(),
        "second create must lose"
    );

    let stored = store.get(&first.key).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        Status::Queued,
        "{}: status was reset",
        b.name()
    );
    assert_eq!(
        stored.payload,
        first.payload,
        "{}: payload was overwritten",
        b.name()
    );
}

/// Many claimers race for each item; exactly one wins each, the rest see `false`.
pub async fn transition_races_have_one_winner<B: Backend>(b: &B) {
    let store = b.store(4).await;
    let items: Vec<_> = (0..5)
        .map(|i| item("acme", &format!("race-{i}"), "2026-11-26T10:30:00Z", 4))
        .collect();
    for it in &items {
        assert!(store.create_if_absent(it).await.unwrap());
    }
    let claims = items.iter().flat_map(|it| {
        let store = &store;
        (0..4).map(move |_| async move {
            let won = store
                .change_status(&it.key, &change(Status::Pending, Status::Queued))
                .await
                .unwrap();
            (it.key.clone(), won)
        })
    });
    let results = join_all(claims).await;
    for it in &items {
        let wins = results
            .iter()
            .filter(|(k, won)| *k == it.key && *won)
            .count();
        assert_eq!(wins, 1, "{}: {} claimers won {}", b.name(), wins, it.key);
    }
    // A transition from a status the item no longer has loses too, and so does one on
    // an item that does not exist.
    assert!(
        !store
            .change_status(&items[0].key, &change(Status::Pending, Status::Cancelled))
            .await
            .unwrap()
    );
    let ghost = item("acme", "ghost", "2026-11-26T10:30:00Z", 4);
    assert!(
        !store
            .change_status(&ghost.key, &change(Status::Pending, Status::Queued))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get(&ghost.key).await.unwrap(),
        None,
        "a lost transition must not create an item"
    );
}

/// Failed attempts are recorded without a status change; counts add up.
pub async fn failed_attempts_are_counted<B: Backend>(b: &B) {
    let store = b.store(16).await;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    store.create_if_absent(&it).await.unwrap();
    store
        .change_status(&it.key, &change(Status::Pending, Status::Queued))
        .await
        .unwrap();
    let at = ts("2026-11-26T10:30:01Z");
    for _ in 0..2 {
        let noted = StatusChange::attempts_failed(Status::Queued, at, 3, "ThrottlingException");
        assert!(store.change_status(&it.key, &noted).await.unwrap());
    }
    let stored = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.retry_count),
        (Status::Queued, 6),
        "{}",
        b.name()
    );
    assert_eq!(stored.last_error.as_deref(), Some("ThrottlingException"));
    assert_eq!(
        stored.queued_at,
        Some(ts("2026-11-26T10:00:00Z")),
        "noting failures must not move queued_at"
    );
}

fn keys(entries: &[schedule_core::ports::DueEntry]) -> Vec<ScheduleKey> {
    entries.iter().map(|e| e.key.clone()).collect()
}

/// An item is in the index while PENDING or QUEUED (under its status) and leaves it
/// once terminal.
pub async fn sparse_index_follows_status<B: Backend>(b: &B) {
    let store = b.store(16).await;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    store.create_if_absent(&it).await.unwrap();
    let before = ts("2026-11-27T00:00:00Z");
    assert_eq!(
        keys(
            &query_due(&store, Status::Pending, before, 100)
                .await
                .unwrap()
        ),
        vec![it.key.clone()]
    );

    store
        .change_status(&it.key, &change(Status::Pending, Status::Queued))
        .await
        .unwrap();
    assert!(
        query_due(&store, Status::Pending, before, 100)
            .await
            .unwrap()
            .is_empty(),
        "{}",
        b.name()
    );
    let queued = query_due(&store, Status::Queued, before, 100)
        .await
        .unwrap();
    assert_eq!(keys(&queued), vec![it.key.clone()]);
    assert!(queued[0].status_shard.as_str().starts_with("QUEUED#"));

    store
        .change_status(&it.key, &change(Status::Queued, Status::Executed))
        .await
        .unwrap();
    for st in [Status::Pending, Status::Queued] {
        assert!(
            query_due(&store, st, before, 100).await.unwrap().is_empty(),
            "{}: still indexed as {st}",
            b.name()
        );
    }
    let stored = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.status_shard),
        (Status::Executed, None)
    );
}

/// A shard with more entries than a page: every entry once, in time order.
pub async fn due_query_pages<B: Backend>(b: &B) {
    let store = b.store(1).await;
    let mut want = Vec::new();
    for i in 0..23 {
        let at = format!("2026-11-26T10:{:02}:00Z", i * 2);
        let it = item("acme", &format!("p{i}"), &at, 1);
        store.create_if_absent(&it).await.unwrap();
        want.push(it.key);
    }
    let shard = schedule_core::model::StatusShard::new(Status::Pending, 0);
    let first = store
        .query_due_page(&shard, ts("2026-11-27T00:00:00Z"), 5, None)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 5, "{}", b.name());
    assert!(
        first.next.is_some(),
        "{}: a full page must say there is more",
        b.name()
    );

    let got = query_due(&store, Status::Pending, ts("2026-11-27T00:00:00Z"), 5)
        .await
        .unwrap();
    assert_eq!(
        keys(&got),
        want,
        "{}: paged query lost, repeated or reordered entries",
        b.name()
    );
}

/// Due entries come from every shard and from both sides of UTC midnight; nothing at or
/// after the bound is returned.
pub async fn due_query_spans_shards_and_midnight<B: Backend>(b: &B) {
    let store = b.store(8).await;
    let times = [
        "2026-11-25T23:40:00Z", // overdue, yesterday's partition
        "2026-11-25T23:58:00Z",
        "2026-11-25T23:59:59Z",
        "2026-11-26T00:00:00Z",
        "2026-11-26T00:04:59Z",
        "2026-11-26T00:05:00Z", // the bound: excluded
        "2026-11-26T00:10:00Z",
    ];
    let mut due = BTreeSet::new();
    let mut shards_used = HashSet::new();
    for tenant in ["acme", "globex", "initech"] {
        for (i, at) in times.iter().enumerate() {
            let it = item(tenant, &format!("m{i}"), at, 8);
            shards_used.insert(it.status_shard.clone().unwrap());
            store.create_if_absent(&it).await.unwrap();
            if ts(at) < ts("2026-11-26T00:05:00Z") {
                due.insert(it.key.clone());
            }
        }
    }
    assert!(
        shards_used.len() > 3,
        "test data should spread over shards: {shards_used:?}"
    );
    let got = query_due(&store, Status::Pending, ts("2026-11-26T00:05:00Z"), 4)
        .await
        .unwrap();
    let got_keys: BTreeSet<_> = got.iter().map(|e| e.key.clone()).collect();
    assert_eq!(got.len(), got_keys.len(), "{}: duplicates", b.name());
    assert_eq!(got_keys, due, "{}", b.name());
    assert!(
        got.windows(2)
            .all(|w| w[0].scheduled_time <= w[1].scheduled_time),
        "not in time order"
    );
    assert!(
        got.iter().any(|e| e.key.pk.ends_with("2026-11-25"))
            && got.iter().any(|e| e.key.pk.ends_with("2026-11-26"))
    );
}

/// 23 messages (three batches) with delays of 0–3 s: all arrive, none before its delay.
pub async fn send_batch_with_delays_is_never_early<B: Backend>(b: &B) {
    let (queue, _dlq) = b.queue_with_dlq(Duration::from_secs(30), 3).await;
    let messages: Vec<_> = (0..23u64)
        .map(|i| OutgoingMessage {
            id: format!("m{i}"),
            body: json!({"i": i, "delay": i % 4}).to_string(),
            delay: Duration::from_secs(i % 4),
        })
        .collect();
    let sent_at: DateTime<Utc> = b.now();
    let report = queue.send_batch(&messages).await.unwrap();
    assert_eq!(report.sent.len(), 23, "{}: {:?}", b.name(), report.failed);
    assert!(report.failed.is_empty());

    let mut seen = HashSet::new();
    for _ in 0..40 {
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        let received_at = b.now();
        for m in got {
            let body: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            let delay = body["delay"].as_i64().unwrap();
            let earliest = sent_at + chrono::Duration::seconds(delay);
            assert!(
                received_at >= earliest,
                "{}: message {} with delay {delay}s came {:?} early",
                b.name(),
                body["i"],
                earliest - received_at
            );
            assert!(
                seen.insert(body["i"].as_u64().unwrap()),
                "{}: delivered twice",
                b.name()
            );
            queue.delete(&m.receipt_handle).await.unwrap();
        }
        if seen.len() == 23 {
            break;
        }
        b.wait(Duration::from_millis(250)).await;
    }
    assert_eq!(
        seen.len(),
        23,
        "{}: only {} of 23 arrived",
        b.name(),
        seen.len()
    );
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "deleted messages came back"
    );
}

/// A message received and not deleted 3 times moves to the DLQ on the next receive.
pub async fn redrive_to_dlq_after_max_receives<B: Backend>(b: &B) {
    let (queue, dlq) = b.queue_with_dlq(Duration::from_secs(1), 3).await;
    let msg = OutgoingMessage {
        id: "poison".into(),
        body: "{not json".into(),
        delay: Duration::ZERO,
    };
    queue.send_batch(std::slice::from_ref(&msg)).await.unwrap();
    for expected in 1..=3 {
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1, "{}: receive {expected}", b.name());
        assert_eq!(got[0].receive_count, expected);
        assert!(
            queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
            "visible while in flight"
        );
        b.wait(Duration::from_millis(1300)).await;
    }
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "{}: delivered a 4th time",
        b.name()
    );
    let dead = dlq.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(dead.len(), 1, "{}: DLQ should hold the message", b.name());
    assert_eq!(dead[0].body, msg.body);
}

/// Definitions: versioned puts, reads, parallel scans that see each row once, and a bad
/// row reported with its key instead of failing the scan.
pub async fn definitions_put_get_scan<B: Backend>(b: &B) {
    let defs = b.definitions().await;
    let mut all = Vec::new();
    for i in 0..30 {
        let d = definition(
            if i % 2 == 0 { "acme" } else { "globex" },
            &format!("s{i}"),
            "2026-11-26T10:30:00Z",
        );
        defs.put(&d).await.unwrap();
        all.push(d);
    }
    let d0 = &all[0];
    let got = defs
        .get(&d0.tenant_id, &d0.device_workflow_step_id)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&got, d0, "{}", b.name());

    let stale = defs.put(d0).await.unwrap_err();
    assert!(
        matches!(stale, StoreError::Conflict { .. }),
        "{}: {stale}",
        b.name()
    );
    let mut newer = d0.clone();
    newer.version = 2;
    newer.enabled = false;
    defs.put(&newer).await.unwrap();
    let got = defs
        .get(&d0.tenant_id, &d0.device_workflow_step_id)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((got.version, got.enabled), (2, false));

    b.put_raw_definition(&defs, "TENANT#acme", "STEP#bad", json!({"tenant_id": "acme", "device_workflow_step_id": "bad",
        "workflow_id": "w1", "device_id": "d1", "schedule": {"type": "cron", "expression": "0 8 * * *", "timezone": "Mars/Olympus"}}))
        .await;

    let scanned = scan_definitions(&defs, 3).await.unwrap();
    assert_eq!(
        scanned.len(),
        31,
        "{}: parallel segments must cover every row once",
        b.name()
    );
    let valid: BTreeSet<_> = scanned
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .map(|d| d.device_workflow_step_id.to_string())
        .collect();
    assert_eq!(valid.len(), 30);
    let bad: Vec<_> = scanned.iter().filter_map(|d| d.as_ref().err()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].key, "TENANT#acme|STEP#bad");
    assert_eq!(
        (bad[0].error.field.as_str(), bad[0].error.value.as_str()),
        ("schedule.timezone", "\"Mars/Olympus\"")
    );
}

/// A lease keeps others out until it runs out; its owner may renew it; a status change
/// releases it; a lease on the wrong status or a missing item is refused.
pub async fn leases_exclude_others_until_released<B: Backend>(b: &B) {
    let store = b.store(16).await;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    store.create_if_absent(&it).await.unwrap();
    let now = ts("2026-11-26T10:30:00Z");
    let until = ts("2026-11-26T10:31:00Z");
    let racers = (0..4).map(|i| {
        let store = &store;
        let key = &it.key;
        async move {
            store
                .try_lease(key, Status::Pending, &format!("owner-{i}"), until, now)
                .await
                .unwrap()
        }
    });
    let wins = join_all(racers).await.into_iter().filter(|w| *w).count();
    assert_eq!(wins, 1, "{}: {wins} leases granted at once", b.name());
    let holder = store
        .get(&it.key)
        .await
        .unwrap()
        .unwrap()
        .lease_owner
        .unwrap();

    assert!(
        store
            .try_lease(
                &it.key,
                Status::Pending,
                &holder,
                ts("2026-11-26T10:32:00Z"),
                now
            )
            .await
            .unwrap(),
        "owner renews"
    );
    assert!(
        !store
            .try_lease(
                &it.key,
                Status::Pending,
                "other",
                until,
                ts("2026-11-26T10:31:30Z")
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease(
                &it.key,
                Status::Pending,
                "other",
                ts("2026-11-26T10:33:00Z"),
                ts("2026-11-26T10:32:00Z")
            )
            .await
            .unwrap(),
        "{}: an expired lease must be free",
        b.name()
    );
    assert!(
        !store
            .try_lease(
                &it.key,
                Status::Queued,
                "third",
                until,
                ts("2026-11-26T10:40:00Z")
            )
            .await
            .unwrap(),
        "wrong status"
    );

    store
        .change_status(&it.key, &change(Status::Pending, Status::Queued))
        .await
        .unwrap();
    let stored = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (stored.lease_owner, stored.lease_until),
        (None, None),
        "{}: a status change must release the lease",
        b.name()
    );
    assert!(
        store
            .try_lease(&it.key, Status::Queued, "executor", until, now)
            .await
            .unwrap()
    );
    let ghost = item("acme", "ghost", "2026-11-26T10:30:00Z", 16);
    assert!(
        !store
            .try_lease(&ghost.key, Status::Pending, "x", until, now)
            .await
            .unwrap()
    );
    assert_eq!(store.get(&ghost.key).await.unwrap(), None);
}

/// Triggers carry the design's body; on a FIFO queue a repeated execution id is dropped
/// (the consumer never sees the rare duplicate send), on a standard queue it is not.
pub async fn action_sink_sends_triggers_and_fifo_dedups<B: Backend>(b: &B) {
    use schedule_core::model::TriggerMessage;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    let first = TriggerMessage::for_item(&it, b.now(), 1);
    let again = TriggerMessage::for_item(&it, b.now(), 2);
    for (fifo, expected) in [(true, 1), (false, 2)] {
        let (sink, queue) = b.action_queue(fifo).await;
        sink.send(&first).await.unwrap();
        sink.send(&again).await.unwrap();
        let got = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), expected, "{}: fifo={fifo}", b.name());
        let body: TriggerMessage = serde_json::from_str(&got[0].body).unwrap();
        assert_eq!(body, first, "{}: the body round-trips", b.name());
        let raw: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
        for field in [
            "schema_version",
            "execution_id",
            "tenant_id",
            "device_workflow_step_id",
            "workflow_id",
            "device_id",
            "scheduled_time",
            "sent_at",
            "attempt",
            "payload",
        ] {
            assert!(
                raw.get(field).is_some(),
                "{}: trigger lacks {field}",
                b.name()
            );
        }
    }
}

/// `send_batch` answers each entry in order: more than one request's worth (10) goes
/// out whole, an entry too large to send fails alone and for good, and on a FIFO queue a
/// repeated execution id inside one batch is accepted and delivered once.
pub async fn action_sink_send_batch_answers_each_entry<B: Backend>(b: &B) {
    use schedule_core::model::TriggerMessage;
    let mut triggers: Vec<TriggerMessage> = (0..12)
        .map(|i| {
            let it = item("acme", &format!("s{i:02}"), "2026-11-26T10:30:00Z", 16);
            TriggerMessage::for_item(&it, b.now(), 1)
        })
        .collect();
    let mut huge = item("acme", "huge", "2026-11-26T10:30:00Z", 16);
    huge.payload = json!({"blob": "x".repeat(schedule_core::limits::SQS_MAX_MESSAGE_BYTES)})
        .as_object()
        .unwrap()
        .clone();
    triggers.insert(5, TriggerMessage::for_item(&huge, b.now(), 1));

    let (sink, queue) = b.action_queue(false).await;
    let results = sink.send_batch(&triggers).await;
    assert_eq!(results.len(), 13, "{}: one result per entry", b.name());
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (5, Err(e)) => assert!(!e.is_retryable(), "{}: {e}", b.name()),
            (5, Ok(())) => panic!("{}: an oversize entry was accepted", b.name()),
            (_, r) => assert!(r.is_ok(), "{}: entry {i}: {r:?}", b.name()),
        }
    }
    let mut got = HashSet::new();
    for _ in 0..10 {
        if got.len() >= 12 {
            break;
        }
        for m in queue.receive(10, Duration::from_secs(1)).await.unwrap() {
            let t: TriggerMessage = serde_json::from_str(&m.body).unwrap();
            got.insert(t.execution_id.to_string());
            queue.delete(&m.receipt_handle).await.unwrap();
        }
    }
    let sent: HashSet<String> = triggers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, t)| t.execution_id.to_string())
        .collect();
    assert_eq!(got, sent, "{}: every other entry delivered once", b.name());

    let (fifo, fifo_queue) = b.action_queue(true).await;
    let again =
        TriggerMessage::for_item(&item("acme", "s00", "2026-11-26T10:30:00Z", 16), b.now(), 2);
    let results = fifo.send_batch(&[triggers[0].clone(), again]).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{}: {results:?}",
        b.name()
    );
    let got = fifo_queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "{}: one delivery per execution id", b.name());
}

/// `item` as materialized from `version` of its definition, with a payload naming it.
fn versioned(base: &ScheduleItem, version: u64) -> ScheduleItem {
    let mut it = base.clone();
    it.definition_version = version;
    it.payload = json!({"action": "open_valve", "version": version})
        .as_object()
        .unwrap()
        .clone();
    it.created_at = ts("2026-11-26T09:00:00Z");
    it
}

async fn pending_keys<S: ScheduleStore>(store: &S) -> Vec<ScheduleKey> {
    keys(
        &query_due(store, Status::Pending, ts("2026-11-27T00:00:00Z"), 100)
            .await
            .unwrap(),
    )
}

/// Materialize creates once, takes a newer version over PENDING (Refreshed) and over
/// CANCELLED (Reinstated), and leaves same, older, QUEUED and terminal alone; cancel
/// takes PENDING of an older version out of the index with its reason.
pub async fn materialize_and_cancel_follow_the_version<B: Backend>(b: &B) {
    use schedule_core::ports::Materialized::*;
    let store = b.store(16).await;
    let base = item("acme", "s1", "2026-11-26T10:30:00Z", 16);
    let key = base.key.clone();
    let v1 = base.clone();
    assert_eq!(
        store.materialize(&v1).await.unwrap(),
        Created,
        "{}",
        b.name()
    );
    assert_eq!(
        store.get(&key).await.unwrap().as_ref(),
        Some(&v1),
        "{}",
        b.name()
    );
    assert_eq!(store.materialize(&v1).await.unwrap(), Unchanged);

    let v2 = versioned(&base, 2);
    assert_eq!(
        store.materialize(&v2).await.unwrap(),
        Refreshed,
        "{}",
        b.name()
    );
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.definition_version, &got.payload),
        (Status::Pending, 2, &v2.payload)
    );
    assert_eq!(got.created_at, v1.created_at, "bookkeeping is kept");
    assert_eq!(pending_keys(&store).await, vec![key.clone()]);
    assert_eq!(store.materialize(&v2).await.unwrap(), Unchanged);
    assert_eq!(store.materialize(&v1).await.unwrap(), Unchanged, "older");
    assert_eq!(
        store.get(&key).await.unwrap().unwrap().definition_version,
        2
    );

    assert!(!store.cancel(&key, 2, "same version").await.unwrap());
    assert!(
        store
            .cancel(&key, 3, "definition disabled (version 3)")
            .await
            .unwrap()
    );
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status,
            got.cancelled_by_version,
            got.last_error.as_deref()
        ),
        (
            Status::Cancelled,
            Some(3),
            Some("definition disabled (version 3)")
        ),
        "{}",
        b.name()
    );
    assert_eq!(got.status_shard, None);
    assert!(pending_keys(&store).await.is_empty(), "{}", b.name());
    assert!(!store.cancel(&key, 4, "again").await.unwrap());
    assert_eq!(store.materialize(&v2).await.unwrap(), Unchanged);

    let v4 = versioned(&base, 4);
    assert_eq!(
        store.materialize(&v4).await.unwrap(),
        Reinstated,
        "{}",
        b.name()
    );
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status,
            got.definition_version,
            got.cancelled_by_version,
            got.last_error
        ),
        (Status::Pending, 4, None, None)
    );
    assert_eq!(got.payload, v4.payload);
    assert_eq!(pending_keys(&store).await, vec![key.clone()]);

    // QUEUED and terminal occurrences are never touched by either.
    assert!(
        store
            .change_status(&key, &change(Status::Pending, Status::Queued))
            .await
            .unwrap()
    );
    assert_eq!(
        store.materialize(&versioned(&base, 5)).await.unwrap(),
        Unchanged
    );
    assert!(!store.cancel(&key, 9, "late").await.unwrap());
    assert!(
        store
            .change_status(&key, &change(Status::Queued, Status::Executed))
            .await
            .unwrap()
    );
    assert_eq!(
        store.materialize(&versioned(&base, 6)).await.unwrap(),
        Unchanged
    );
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!((got.status, got.definition_version), (Status::Executed, 4));

    let missing = item("acme", "s2", "2026-11-26T10:30:00Z", 16);
    assert!(!store.cancel(&missing.key, 9, "absent").await.unwrap());
    assert_eq!(store.get(&missing.key).await.unwrap(), None);
}

/// The scan horizon is absent until recorded, then only moves forward; the state item
/// never shows up as an occurrence.
pub async fn scan_horizon_only_moves_forward<B: Backend>(b: &B) {
    let store = b.store(16).await;
    assert_eq!(store.scan_horizon().await.unwrap(), None, "{}", b.name());
    let t1 = ts("2026-11-27T01:00:00Z");
    let t2 = ts("2026-11-28T01:00:00Z");
    assert!(store.record_scan_horizon(t1).await.unwrap());
    assert_eq!(store.scan_horizon().await.unwrap(), Some(t1));
    assert!(store.record_scan_horizon(t2).await.unwrap());
    assert!(!store.record_scan_horizon(t1).await.unwrap(), "backwards");
    assert!(!store.record_scan_horizon(t2).await.unwrap(), "same");
    assert_eq!(
        store.scan_horizon().await.unwrap(),
        Some(t2),
        "{}",
        b.name()
    );
    assert!(pending_keys(&store).await.is_empty());
}

/// Many definitions in one call, more than one `BatchGetItem` holds: each valid one as
/// written, an invalid row with its reason, keys without a row as `None`, and a key asked
/// twice answered once.
pub async fn definitions_get_many<B: Backend>(b: &B) {
    let defs = b.definitions().await;
    let mut written = Vec::new();
    for i in 0..120 {
        let tenant = if i % 3 == 0 { "acme" } else { "globex" };
        let mut d = definition(tenant, &format!("m{i:03}"), "2026-11-26T10:30:00Z");
        d.version = 1 + i % 4;
        d.enabled = i % 5 != 0;
        defs.put(&d).await.unwrap();
        written.push(d);
    }
    b.put_raw_definition(&defs, "TENANT#acme", "STEP#bad", json!({"tenant_id": "acme", "device_workflow_step_id": "bad",
        "workflow_id": "w1", "device_id": "d1", "schedule": {"type": "cron", "expression": "0 8 * * *", "timezone": "Mars/Olympus"}}))
        .await;
    let key = |t: &str, s: &str| {
        (
            schedule_core::model::TenantId::parse(t).unwrap(),
            schedule_core::model::StepId::parse(s).unwrap(),
        )
    };
    let absent: Vec<_> = (0..9).map(|i| key("acme", &format!("none-{i}"))).collect();
    let mut keys: Vec<_> = written
        .iter()
        .map(|d| (d.tenant_id.clone(), d.device_workflow_step_id.clone()))
        .collect();
    keys.push(key("acme", "bad"));
    keys.extend(absent.iter().cloned());
    keys.push(keys[0].clone());
    assert_eq!(keys.len(), 131, "130 distinct keys and one asked twice");

    let got = defs.get_many(&keys).await.unwrap();
    assert_eq!(got.len(), 130, "{}: one answer per distinct key", b.name());
    for d in &written {
        let found = got[&(d.tenant_id.clone(), d.device_workflow_step_id.clone())]
            .as_ref()
            .unwrap_or_else(|| panic!("{}: {} not found", b.name(), d.device_workflow_step_id));
        assert_eq!(found.as_ref().unwrap(), d, "{}", b.name());
    }
    let bad = got[&key("acme", "bad")]
        .as_ref()
        .unwrap()
        .as_ref()
        .unwrap_err();
    assert_eq!(bad.key, "TENANT#acme|STEP#bad", "{}", b.name());
    assert_eq!(bad.error.field, "schedule.timezone", "{}: {bad}", b.name());
    for k in &absent {
        assert!(got[k].is_none(), "{}: {k:?} has no row", b.name());
    }
    assert!(defs.get_many(&[]).await.unwrap().is_empty());
}

/// The largest shard count is absent until recorded, then only grows, beside the scan
/// horizon without touching it; the due query reads every shard up to it, so occurrences
/// indexed under more shards than the store is now configured with are still found.
pub async fn recorded_status_shards_only_grow_and_are_all_queried<B: Backend>(b: &B) {
    let store = b.store(2).await;
    assert_eq!(
        store.max_status_shards().await.unwrap(),
        None,
        "{}",
        b.name()
    );
    let horizon = ts("2026-11-27T01:00:00Z");
    assert!(store.record_scan_horizon(horizon).await.unwrap());
    // Written by a deployment with 8 shards.
    let items: Vec<ScheduleItem> = (0..24)
        .map(|i| item("acme", &format!("s{i:02}"), "2026-11-26T10:30:00Z", 8))
        .collect();
    for it in &items {
        assert!(store.create_if_absent(it).await.unwrap());
    }
    assert!(
        items.iter().any(|it| it
            .status_shard
            .as_ref()
            .is_some_and(|s| s.as_str() >= "PENDING#02")),
        "some items lie past the configured shards"
    );
    assert!(store.record_status_shards(8).await.unwrap());
    assert!(!store.record_status_shards(2).await.unwrap(), "lower");
    assert!(!store.record_status_shards(8).await.unwrap(), "same");
    assert_eq!(store.max_status_shards().await.unwrap(), Some(8));
    assert_eq!(
        store.scan_horizon().await.unwrap(),
        Some(horizon),
        "{}: the horizon beside it is kept",
        b.name()
    );
    let found: BTreeSet<ScheduleKey> =
        query_due(&store, Status::Pending, ts("2026-11-27T00:00:00Z"), 5)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
    let written: BTreeSet<ScheduleKey> = items.iter().map(|it| it.key.clone()).collect();
    assert_eq!(found, written, "{}", b.name());
}

/// The sweep of a stuck QUEUED occurrence applies only while the item is exactly as read:
/// QUEUED, same `queued_at`, no live lease. A re-dispatch keeps it QUEUED and indexed with
/// a new `queued_at` and one more sweep; a settling sweep ends it with its reason.
pub async fn sweeps_of_stuck_queued_items_are_conditional<B: Backend>(b: &B) {
    let store = b.store(4).await;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 4);
    store.create_if_absent(&it).await.unwrap();
    let queued_at = ts("2026-11-26T10:00:00Z");
    assert!(
        store
            .change_status(&it.key, &change(Status::Pending, Status::Queued))
            .await
            .unwrap()
    );
    let later = ts("2026-11-26T11:00:00Z");
    let other = Some(ts("2026-11-26T09:59:59Z"));
    assert!(
        !store
            .sweep_queued(&it.key, other, &Sweep::Redispatch, later)
            .await
            .unwrap(),
        "{}: another queued_at",
        b.name()
    );
    assert!(
        !store
            .sweep_queued(&it.key, None, &Sweep::Redispatch, later)
            .await
            .unwrap()
    );
    // A late executor holds a live lease: the sweep loses; once it has run out, it wins.
    let until = ts("2026-11-26T11:01:00Z");
    assert!(
        store
            .try_lease(&it.key, Status::Queued, "executor", until, later)
            .await
            .unwrap()
    );
    assert!(
        !store
            .sweep_queued(&it.key, Some(queued_at), &Sweep::Redispatch, later)
            .await
            .unwrap(),
        "{}: leased",
        b.name()
    );
    let swept_at = ts("2026-11-26T11:02:00Z");
    assert!(
        store
            .sweep_queued(&it.key, Some(queued_at), &Sweep::Redispatch, swept_at)
            .await
            .unwrap()
    );
    let stored = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.status,
            stored.queued_at,
            stored.sweeps,
            stored.lease_owner.clone()
        ),
        (Status::Queued, Some(swept_at), 1, None),
        "{}",
        b.name()
    );
    let before = ts("2026-11-27T00:00:00Z");
    assert_eq!(
        query_due(&store, Status::Queued, before, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    // The sweep that read it before the re-dispatch loses now.
    let fail = Sweep::Fail {
        reason: "swept twice".to_owned(),
    };
    assert!(
        !store
            .sweep_queued(&it.key, Some(queued_at), &fail, swept_at)
            .await
            .unwrap()
    );
    assert!(
        store
            .sweep_queued(&it.key, Some(swept_at), &Sweep::Redispatch, swept_at)
            .await
            .unwrap()
    );
    assert_eq!(store.get(&it.key).await.unwrap().unwrap().sweeps, 2);
    assert!(
        store
            .sweep_queued(&it.key, Some(swept_at), &fail, swept_at)
            .await
            .unwrap()
    );
    let stored = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.status,
            stored.last_error.as_deref(),
            stored.status_shard.clone(),
            stored.sweeps
        ),
        (Status::Failed, Some("swept twice"), None, 2),
        "{}",
        b.name()
    );
    assert!(
        query_due(&store, Status::Queued, before, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // A terminal item is never swept again.
    let miss = Sweep::Miss {
        reason: "late".to_owned(),
    };
    assert!(
        !store
            .sweep_queued(&it.key, Some(swept_at), &miss, swept_at)
            .await
            .unwrap()
    );
    // The round trip keeps the count.
    let round = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(round.sweeps, 2);
}

// ==== Operator reads and edits (the `wfs` CLI) ========================================

/// A tenant's day is its partition only (not another tenant's, not the next day), in time
/// order, paged; a definition delete reports whether there was one.
pub async fn operator_reads_a_tenants_day_and_deletes_definitions<B: Backend>(b: &B) {
    use schedule_core::model::TenantId;
    use schedule_core::ports::{DefinitionAdmin, occurrences_on};
    let store = b.store(4).await;
    let times = [
        "2026-11-26T10:00:00Z",
        "2026-11-26T00:00:00Z",
        "2026-11-26T23:59:59Z",
        "2026-11-26T12:30:00Z",
        "2026-11-26T12:30:00Z",
    ];
    for (i, at) in times.iter().enumerate() {
        assert!(
            store
                .create_if_absent(&item("acme", &format!("s{i}"), at, 4))
                .await
                .unwrap()
        );
    }
    store
        .create_if_absent(&item("acme", "next-day", "2026-11-27T00:00:00Z", 4))
        .await
        .unwrap();
    store
        .create_if_absent(&item("acme2", "other", "2026-11-26T10:00:00Z", 4))
        .await
        .unwrap();
    let clock = SystemClock;
    let paging = Paging {
        page_size: 2,
        clock: &clock,
        deadline: None,
    };
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let got = occurrences_on(&store, &acme, day, paging).await.unwrap();
    let keys: Vec<(String, String)> = got
        .iter()
        .map(|i| {
            (
                i.scheduled_time.to_string(),
                i.device_workflow_step_id.to_string(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = times
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), format!("s{i}")))
        .collect();
    want.sort();
    assert_eq!(keys, want, "{}", b.name());
    assert_eq!(
        got[0],
        store.get(&got[0].key).await.unwrap().unwrap(),
        "{}",
        b.name()
    );
    let empty = occurrences_on(&store, &TenantId::parse("nobody").unwrap(), day, paging)
        .await
        .unwrap();
    assert!(empty.is_empty(), "{}", b.name());

    let defs = b.definitions().await;
    let d = definition("acme", "gone", "2026-11-26T10:30:00Z");
    defs.put(&d).await.unwrap();
    assert!(
        defs.delete_definition(&d.tenant_id, &d.device_workflow_step_id)
            .await
            .unwrap(),
        "{}",
        b.name()
    );
    assert!(
        defs.get(&d.tenant_id, &d.device_workflow_step_id)
            .await
            .unwrap()
            .is_none(),
        "{}",
        b.name()
    );
    assert!(
        !defs
            .delete_definition(&d.tenant_id, &d.device_workflow_step_id)
            .await
            .unwrap(),
        "{}",
        b.name()
    );
}
// ==== end of operator reads and edits ==================================================

/// Tenant modes: absent until set, set and read back, listed by tenant; their rows stay
/// out of the definitions scan (neither a definition nor an invalid one); an executed
/// item records the mode and the would-be trigger.
pub async fn tenant_modes_round_trip_and_stay_out_of_the_scan<B: Backend>(b: &B) {
    use schedule_core::model::{TenantId, TenantMode};
    use schedule_core::ports::TenantModes;
    let defs = b.definitions().await;
    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    assert_eq!(defs.stored_mode(&acme).await.unwrap(), None, "{}", b.name());
    defs.put(&definition("acme", "s1", "2026-11-26T10:30:00Z"))
        .await
        .unwrap();
    defs.set_mode(&acme, TenantMode::Shadow, ts("2026-11-26T09:00:00Z"))
        .await
        .unwrap();
    defs.set_mode(&globex, TenantMode::Off, ts("2026-11-26T09:00:00Z"))
        .await
        .unwrap();
    defs.set_mode(&acme, TenantMode::Active, ts("2026-11-26T09:05:00Z"))
        .await
        .unwrap();
    assert_eq!(
        defs.stored_mode(&acme).await.unwrap(),
        Some(TenantMode::Active),
        "{}",
        b.name()
    );
    let listed: Vec<_> = defs
        .modes()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.tenant_id.to_string(), s.mode, s.updated_at))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "acme".to_owned(),
                TenantMode::Active,
                Some("2026-11-26T09:05:00Z".to_owned())
            ),
            (
                "globex".to_owned(),
                TenantMode::Off,
                Some("2026-11-26T09:00:00Z".to_owned())
            ),
        ],
        "{}",
        b.name()
    );
    let scanned = scan_definitions(&defs, 2).await.unwrap();
    assert_eq!(
        scanned.len(),
        1,
        "{}: settings rows are no definitions",
        b.name()
    );
    assert!(scanned[0].is_ok());

    let store = b.store(4).await;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 4);
    store.create_if_absent(&it).await.unwrap();
    assert!(
        store
            .change_status(&it.key, &change(Status::Pending, Status::Queued))
            .await
            .unwrap()
    );
    let executed = StatusChange::executed(ts("2026-11-26T10:30:00Z"))
        .with_mode(TenantMode::Shadow)
        .with_shadow_trigger("{\"execution_id\":\"x\"}");
    assert!(store.change_status(&it.key, &executed).await.unwrap());
    let got = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (got.mode, got.shadow_trigger.as_deref()),
        (Some(TenantMode::Shadow), Some("{\"execution_id\":\"x\"}")),
        "{}",
        b.name()
    );
    let mut copy = got.clone();
    copy.key = ScheduleKey::new(
        &it.tenant_id,
        ts("2026-11-26T10:45:00Z"),
        &it.device_workflow_step_id,
    );
    copy.scheduled_time = ts("2026-11-26T10:45:00Z");
    copy.status_shard = None;
    assert!(store.create_if_absent(&copy).await.unwrap());
    assert_eq!(
        store.get(&copy.key).await.unwrap().as_ref(),
        Some(&copy),
        "{}",
        b.name()
    );
}

/// A payload that would take an occurrence past 1 KB is stored once beside it: the
/// occurrence stays within one write unit (so a status change costs one unit whatever
/// the payload), the payload reads back exactly, a day's read lists occurrences only, and
/// a newer version brings its own payload.
pub async fn large_payloads_are_stored_once_beside_small_occurrences<B: Backend>(b: &B) {
    use schedule_core::adapters::dynamo::schedule_item_size;
    use schedule_core::limits::INLINE_ITEM_MAX_BYTES;
    use schedule_core::model::TenantId;
    use schedule_core::ports::{Materialized, ScheduleBrowse};
    use schedule_core::usage::update_write_units;
    let store = b.store(4).await;
    let big = |version: u64, fill: &str| {
        let blob = fill.repeat(64 * 1024 / fill.len());
        json!({"blob": blob, "n": 12345.678, "deep": {"list": [1, "Đà Lạt", null, true]}, "v": version})
    };
    let def = |version: u64, fill: &str, at: &str| {
        Definition::from_json(&json!({
            "tenant_id": "acme", "device_workflow_step_id": "big", "workflow_id": "w1",
            "device_id": "d1", "enabled": true, "version": version,
            "schedule": {"type": "once", "at": at}, "payload": big(version, fill)
        }))
        .unwrap()
    };
    let occurrence = |version: u64, fill: &str, at: &str| {
        let now = ts("2026-11-26T00:00:00Z");
        ScheduleItem::pending(&def(version, fill, at), ts(at), now, RETENTION, 4)
    };
    let first = occurrence(1, "x", "2026-11-26T10:00:00Z");
    let second = occurrence(1, "x", "2026-11-26T16:00:00Z");
    assert!(schedule_item_size(&first) > 64 * 1024, "{}", b.name());
    assert_eq!(
        store.materialize(&first).await.unwrap(),
        Materialized::Created
    );
    assert_eq!(
        store.materialize(&second).await.unwrap(),
        Materialized::Created
    );

    let stored = store.get(&first.key).await.unwrap().unwrap();
    let size = schedule_item_size(&stored);
    assert!(
        size <= INLINE_ITEM_MAX_BYTES,
        "{}: the occurrence is {size} bytes",
        b.name()
    );
    let reference = stored.payload_ref.clone().expect("a payload reference");
    assert!(reference.starts_with("PAYLOAD#") && stored.payload.is_empty());
    assert_eq!(store.payload(&stored).await.unwrap(), first.payload);
    let other = store.get(&second.key).await.unwrap().unwrap();
    assert_eq!(
        other.payload_ref.as_deref(),
        Some(reference.as_str()),
        "one payload item for the step's day and version"
    );

    // A status change is one write unit: billed on the larger image, both within 1 KB.
    assert!(
        store
            .change_status(&first.key, &change(Status::Pending, Status::Queued))
            .await
            .unwrap()
    );
    let queued = store.get(&first.key).await.unwrap().unwrap();
    assert_eq!(
        update_write_units(Some(size), schedule_item_size(&queued)),
        1,
        "{}",
        b.name()
    );
    assert_eq!(queued.status, Status::Queued);
    assert_eq!(store.payload(&queued).await.unwrap(), first.payload);

    // A replay leaves it alone; the day's read lists the two occurrences and nothing else.
    assert_eq!(
        store.materialize(&first).await.unwrap(),
        Materialized::Unchanged
    );
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let page = store
        .occurrences_page(&TenantId::parse("acme").unwrap(), day, 100, None)
        .await
        .unwrap();
    let keys: Vec<_> = page.items.iter().map(|i| i.key.clone()).collect();
    assert_eq!(
        keys,
        vec![first.key.clone(), second.key.clone()],
        "{}",
        b.name()
    );

    // A newer version with another payload: PENDING refreshed, pointing at its own item.
    let refreshed = occurrence(2, "y", "2026-11-26T16:00:00Z");
    assert_eq!(
        store.materialize(&refreshed).await.unwrap(),
        Materialized::Refreshed
    );
    let now_stored = store.get(&second.key).await.unwrap().unwrap();
    assert_ne!(now_stored.payload_ref.as_deref(), Some(reference.as_str()));
    assert_eq!(store.payload(&now_stored).await.unwrap(), refreshed.payload);

    // A small payload stays on the occurrence.
    let small = item("acme", "small", "2026-11-26T11:00:00Z", 4);
    assert!(store.create_if_absent(&small).await.unwrap());
    let small_stored = store.get(&small.key).await.unwrap().unwrap();
    assert_eq!(small_stored, small);
    assert_eq!(store.payload(&small_stored).await.unwrap(), small.payload);
}

/// `existing` answers exactly the stored occurrences among the keys asked (more than one
/// `BatchGetItem` of 100 keys, a key asked twice), with their status and version.
pub async fn existing_reads_which_occurrences_are_stored<B: Backend>(b: &B) {
    let store = b.store(16).await;
    let mut keys = Vec::new();
    let mut stored = std::collections::HashMap::new();
    for i in 0..250 {
        let at = format!("2026-11-26T{:02}:{:02}:00Z", i / 60, i % 60);
        let mut it = item("acme", &format!("s{i}"), &at, 16);
        keys.push(it.key.clone());
        if i % 5 < 3 {
            it.definition_version = 1 + (i % 3) as u64;
            store.create_if_absent(&it).await.unwrap();
            let mut status = Status::Pending;
            if i % 50 == 0 {
                store
                    .cancel(&it.key, it.definition_version + 1, "changed")
                    .await
                    .unwrap();
                status = Status::Cancelled;
            } else if i % 50 == 1 {
                store
                    .change_status(&it.key, &change(Status::Pending, Status::Queued))
                    .await
                    .unwrap();
                status = Status::Queued;
            }
            stored.insert(it.key.clone(), (status, it.definition_version));
        }
    }
    keys.push(keys[0].clone());
    let found = store.existing(&keys).await.unwrap();
    let found: std::collections::HashMap<_, _> = found
        .into_iter()
        .map(|(k, e)| (k, (e.status, e.definition_version)))
        .collect();
    assert_eq!(found.len(), 150, "{}", b.name());
    assert_eq!(found, stored, "{}", b.name());
    assert!(store.existing(&[]).await.unwrap().is_empty());
    let pending = schedule_core::ports::Existing {
        status: Status::Pending,
        definition_version: 2,
    };
    assert!(pending.would_change(3) && !pending.would_change(2));
    let queued = schedule_core::ports::Existing {
        status: Status::Queued,
        definition_version: 1,
    };
    assert!(!queued.would_change(9));
}

/// A fanned-out run's segments count once each, whatever the redeliveries, per run.
pub async fn scan_run_segments_count_once<B: Backend>(b: &B) {
    use schedule_core::ports::ScanRuns;
    let store = b.store(16).await;
    let expires = ts("2026-12-04T00:00:00Z");
    let run = "full/2026-11-26T00:00:00Z/2026-11-27T01:00:00Z/*/3";
    assert_eq!(store.segment_done(run, 0, 3, expires).await.unwrap(), 1);
    assert_eq!(
        store.segment_done(run, 0, 3, expires).await.unwrap(),
        1,
        "{}",
        b.name()
    );
    assert_eq!(store.segment_done(run, 2, 3, expires).await.unwrap(), 2);
    assert_eq!(
        store.segment_done("another", 1, 3, expires).await.unwrap(),
        1
    );
    assert_eq!(store.segment_done(run, 1, 3, expires).await.unwrap(), 3);
    assert_eq!(store.segment_done(run, 2, 3, expires).await.unwrap(), 3);
    assert_eq!(
        store.scan_horizon().await.unwrap(),
        None,
        "the run item is not the horizon"
    );
}

/// The scheduler's one write per step: PENDING → QUEUED only while PENDING with no live
/// lease (moving the item to its QUEUED shard), and back to PENDING — only as that write
/// left it — when the send is refused, counting the failed attempt.
pub async fn queued_before_the_send_and_put_back_when_refused<B: Backend>(b: &B) {
    let store = b.store(4).await;
    let it = item("acme", "s1", "2026-11-26T10:30:00Z", 4);
    store.create_if_absent(&it).await.unwrap();
    let now = ts("2026-11-26T10:25:00Z");
    let before = ts("2026-11-27T00:00:00Z");
    // A run of an older scheduler holds a live lease: not ours to send.
    assert!(
        store
            .try_lease(
                &it.key,
                Status::Pending,
                "old-run",
                ts("2026-11-26T10:26:00Z"),
                now
            )
            .await
            .unwrap()
    );
    assert!(
        !store.queue_unleased(&it.key, "run-1", now).await.unwrap(),
        "{}: leased by another run",
        b.name()
    );
    let later = ts("2026-11-26T10:27:00Z");
    assert!(
        store.queue_unleased(&it.key, "run-1", later).await.unwrap(),
        "{}",
        b.name()
    );
    assert!(
        store.queue_unleased(&it.key, "run-1", later).await.unwrap(),
        "{}: the same call again (a lost answer, retried) is recognized as ours",
        b.name()
    );
    assert!(
        !store.queue_unleased(&it.key, "run-2", later).await.unwrap(),
        "{}: a second run loses",
        b.name()
    );
    let stored = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.queued_at, stored.lease_until),
        (Status::Queued, Some(later), None),
        "{}",
        b.name()
    );
    assert!(
        query_due(&store, Status::Pending, before, 100)
            .await
            .unwrap()
            .is_empty(),
        "{}",
        b.name()
    );
    assert_eq!(
        keys(
            &query_due(&store, Status::Queued, before, 100)
                .await
                .unwrap()
        ),
        vec![it.key.clone()]
    );
    // Put back only as left: another queued_at (a sweep re-dispatched it) is not ours.
    assert!(
        !store
            .unqueue(&it.key, ts("2026-11-26T10:26:59Z"), "refused", later)
            .await
            .unwrap(),
        "{}",
        b.name()
    );
    assert!(
        store
            .unqueue(
                &it.key,
                later,
                "execution queue refused the message: throttled",
                later
            )
            .await
            .unwrap(),
        "{}",
        b.name()
    );
    let stored = store.get(&it.key).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.status,
            stored.queued_at,
            stored.retry_count,
            stored.last_error.as_deref()
        ),
        (
            Status::Pending,
            None,
            1,
            Some("execution queue refused the message: throttled")
        ),
        "{}",
        b.name()
    );
    assert_eq!(
        keys(
            &query_due(&store, Status::Pending, before, 100)
                .await
                .unwrap()
        ),
        vec![it.key.clone()],
        "{}: back in the PENDING shard",
        b.name()
    );
    assert!(
        query_due(&store, Status::Queued, before, 100)
            .await
            .unwrap()
            .is_empty(),
        "{}",
        b.name()
    );
    // Once an executor moved it on, nothing puts it back.
    assert!(store.queue_unleased(&it.key, "run-3", later).await.unwrap());
    assert!(
        store
            .change_status(&it.key, &change(Status::Queued, Status::Executed))
            .await
            .unwrap()
    );
    assert!(
        !store
            .unqueue(&it.key, later, "refused", later)
            .await
            .unwrap(),
        "{}",
        b.name()
    );
    assert_eq!(
        store.get(&it.key).await.unwrap().unwrap().status,
        Status::Executed
    );
}
