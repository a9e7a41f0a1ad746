//! Data on its way through the stores: payload numbers stay exact (DynamoDB keeps 38
//! digits, the trigger message must too), a paging cursor survives any key, and a
//! definitions row whose key disagrees with its ids is refused, not acted on — each on
//! the embedded twin and on the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::backends::{Backend, Emulator, Memory};
use schedule_core::app::sync::Image;
use schedule_core::model::{
    Definition, ScheduleItem, Status, StatusShard, StepId, TenantId, Timestamp, TriggerMessage,
};
use schedule_core::ports::{Cursor, DefinitionSource, ScheduleStore};
use serde_json::Value;

/// A 25-digit integer, a decimal of 30 significant digits, a tiny negative one, and the
/// same inside a list and a nested map: none of them survives a trip through `f64`.
const PAYLOAD: &str = r#"{"big": 1234567890123456789012345, "dec": 3.14159265358979323846264338327, "tiny": -0.000000000000000000012345678901234567, "list": [98765432109876543210987654321, 0.1000000000000000055511151231257827], "nested": {"n": 12345678901234567890.123456789}}"#;

/// The number texts that must arrive unchanged.
const EXACT: &[&str] = &[
    "1234567890123456789012345",
    "3.14159265358979323846264338327",
    "-0.000000000000000000012345678901234567",
    "98765432109876543210987654321",
    "0.1000000000000000055511151231257827",
    "12345678901234567890.123456789",
];

fn definition_text() -> String {
    format!(
        r#"{{"tenant_id":"acme","device_workflow_step_id":"exact","workflow_id":"w1","device_id":"d1",
            "version":1,"schedule":{{"type":"once","at":"2026-11-26T10:30:00Z"}},"payload":{PAYLOAD}}}"#
    )
}

fn assert_exact(what: &str, text: &str) {
    let missing: Vec<_> = EXACT.iter().filter(|n| !text.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "{what} changed the numbers {missing:?}: {text}"
    );
}

/// Definition JSON → schedule item in the store → read back → trigger message body.
async fn payload_numbers_stay_exact_end_to_end<B: Backend>(b: &B) {
    let value: Value = serde_json::from_str(&definition_text()).unwrap();
    let def = Definition::from_json(&value).unwrap();
    assert_exact(
        "parsing the definition",
        &serde_json::to_string(&def.payload).unwrap(),
    );

    // Through the definitions table…
    let defs = b.definitions().await;
    defs.put(&def).await.unwrap();
    let read = defs
        .get(&def.tenant_id, &def.device_workflow_step_id)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_exact(
        &format!("the definitions table ({})", b.name()),
        &serde_json::to_string(&read.payload).unwrap(),
    );

    // …the schedule table…
    let store = b.store(4).await;
    let at = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
    let now = Timestamp::parse("2026-11-26T00:00:00Z").unwrap();
    let item = ScheduleItem::pending(&read, at, now, std::time::Duration::from_secs(86_400), 4);
    store.materialize(&item).await.unwrap();
    let stored = store.get(&item.key).await.unwrap().unwrap();
    assert_eq!(
        stored.payload,
        def.payload,
        "payload through the schedule table ({})",
        b.name()
    );

    // …and the trigger message.
    let body = TriggerMessage::for_item(&stored, chrono::Utc::now(), 1).body();
    assert_exact(&format!("the trigger message ({})", b.name()), &body);
    let back: TriggerMessage = serde_json::from_str(&body).unwrap();
    assert_eq!(back.payload, def.payload);
}

/// A row under `TENANT#initech` whose `tenant_id` says `globex` is invalid, named by its
/// key; it is found under initech's key only and never read as globex's definition.
async fn a_row_whose_key_disagrees_with_its_ids_is_invalid<B: Backend>(b: &B) {
    let defs = b.definitions().await;
    let forged: Value = serde_json::from_str(
        r#"{"tenant_id":"globex","device_workflow_step_id":"s1","workflow_id":"w1","device_id":"d1",
            "enabled":true,"version":1,"schedule":{"type":"once","at":"2026-11-26T10:30:00Z"},"payload":{}}"#,
    )
    .unwrap();
    b.put_raw_definition(&defs, "TENANT#initech", "STEP#s1", forged.clone())
        .await;
    let mut step_forged = forged.clone();
    step_forged["tenant_id"] = Value::from("initech");
    b.put_raw_definition(&defs, "TENANT#initech", "STEP#s2", step_forged)
        .await;

    let mut rows = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = defs.scan_page(0, 1, cursor.as_ref()).await.unwrap();
        rows.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        let bad = row
            .as_ref()
            .expect_err("a forged row must not read as valid");
        let text = bad.error.to_string();
        assert!(bad.key.starts_with("TENANT#initech|"), "{bad:?}");
        assert!(
            (bad.error.field == "PK" && text.contains("TENANT#initech") && text.contains("globex"))
                || (bad.error.field == "SK" && text.contains("STEP#s2") && text.contains("s1")),
            "the error names the key and the id: {text}"
        );
    }
    let initech = TenantId::parse("initech").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let s1 = StepId::parse("s1").unwrap();
    assert!(matches!(
        defs.get(&initech, &s1).await.unwrap(),
        Some(Err(_))
    ));
    assert!(defs.get(&globex, &s1).await.unwrap().is_none());
    let many = defs
        .get_many(&[(initech.clone(), s1.clone()), (globex.clone(), s1.clone())])
        .await
        .unwrap();
    assert!(matches!(many[&(initech, s1.clone())], Some(Err(_))));
    assert!(many[&(globex, s1)].is_none());
}

mod memory {
    use super::*;

    #[tokio::test]
    async fn payload_numbers_stay_exact_end_to_end() {
        super::payload_numbers_stay_exact_end_to_end(&Memory::default()).await;
    }

    #[tokio::test]
    async fn a_row_whose_key_disagrees_with_its_ids_is_invalid() {
        super::a_row_whose_key_disagrees_with_its_ids_is_invalid(&Memory::default()).await;
    }
}

mod emulator {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payload_numbers_stay_exact_end_to_end() {
        if let Some(b) = Emulator::from_env().await {
            super::payload_numbers_stay_exact_end_to_end(&b).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_whose_key_disagrees_with_its_ids_is_invalid() {
        if let Some(b) = Emulator::from_env().await {
            super::a_row_whose_key_disagrees_with_its_ids_is_invalid(&b).await;
        }
    }

    /// Schedule items written by another writer with a newline and `=` in their sort key:
    /// paging the due query one item at a time still returns each exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cursor_survives_a_key_with_a_newline_and_an_equals_sign() {
        let Some(b) = Emulator::from_env().await else {
            return;
        };
        let store = b.store(1).await;
        let shard = StatusShard::new(Status::Pending, 0);
        let sks = [
            "TIME#2026-11-26T10:00:00Z#STEP#a\nSK=forged",
            "TIME#2026-11-26T10:00:00Z#STEP#b=c\n\nd",
            "TIME#2026-11-26T10:00:00Z#STEP#plain",
        ];
        for sk in sks {
            b.dynamo
                .put_item()
                .table_name(store.table())
                .item(
                    "PK",
                    AttributeValue::S("TENANT#acme#DATE#2026-11-26".into()),
                )
                .item("SK", AttributeValue::S(sk.into()))
                .item("status", AttributeValue::S("PENDING".into()))
                .item("status_shard", AttributeValue::S(shard.as_str().to_owned()))
                .item(
                    "scheduled_time",
                    AttributeValue::S("2026-11-26T10:00:00Z".into()),
                )
                .send()
                .await
                .unwrap();
        }
        let before = Timestamp::parse("2026-11-27T00:00:00Z").unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        for _ in 0..10 {
            let page = store
                .query_due_page(&shard, before, 1, cursor.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{}", schedule_core::error::chain(&e)));
            seen.extend(page.items.into_iter().map(|e| e.key.sk));
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            (seen.len(), unique),
            (3, sks.iter().map(|s| (*s).to_owned()).collect()),
            "{seen:?}"
        );
    }
}

/// A stream image of a forged row (the sync's input) is invalid and names the row by
/// its real key, so nothing is materialized into globex's partition.
#[test]
fn a_forged_stream_image_is_invalid_under_its_own_key() {
    let forged: Value = serde_json::from_str(
        r#"{"PK":"TENANT#initech","SK":"STEP#s1","tenant_id":"globex","device_workflow_step_id":"s1",
            "workflow_id":"w1","device_id":"d1","enabled":true,"version":1,
            "schedule":{"type":"once","at":"2026-11-26T10:30:00Z"},"payload":{}}"#,
    )
    .unwrap();
    let Image::Invalid(bad) = Image::from_json(&forged) else {
        panic!("a row whose PK names initech and whose tenant_id says globex is not valid");
    };
    assert_eq!(bad.key, "TENANT#initech|STEP#s1");
    assert_eq!(bad.error.field, "PK");
    assert_eq!(
        bad.ids.as_ref().map(|(t, _)| t.as_str()),
        Some("initech"),
        "the row's ids are those of the key it lives under"
    );
    assert!(
        Definition::from_row("TENANT#initech", "STEP#s1", &forged).is_err(),
        "the same check reads rows of every store"
    );
}

/// The daily scan reads a forged row as invalid: nothing lands in globex's partition (nor
/// in initech's), and the row is counted as an invalid definition.
#[tokio::test]
async fn a_forged_row_materializes_into_no_tenants_partition() {
    use schedule_core::app::scan::ScanRequest;
    use schedule_core::embedded::{Embedded, EmbeddedSettings};
    use schedule_core::model::ScheduleKey;

    let now = Timestamp::parse("2026-11-26T00:00:00Z").unwrap();
    let embedded = Embedded::new(now.as_datetime(), EmbeddedSettings::default());
    let forged: Value = serde_json::from_str(
        r#"{"tenant_id":"globex","device_workflow_step_id":"s1","workflow_id":"w1","device_id":"d1",
            "enabled":true,"version":1,"schedule":{"type":"once","at":"2026-11-26T10:30:00Z"},"payload":{}}"#,
    )
    .unwrap();
    embedded
        .definitions
        .put_raw("TENANT#initech", "STEP#s1", forged);
    let report = embedded
        .scan(&ScanRequest::daily(now, &embedded.scanner.settings))
        .await
        .unwrap();
    assert_eq!(
        (report.invalid_definitions, report.created),
        (1, 0),
        "{report:?}"
    );
    let at = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
    let s1 = StepId::parse("s1").unwrap();
    for tenant in ["globex", "initech"] {
        let key = ScheduleKey::new(&TenantId::parse(tenant).unwrap(), at, &s1);
        assert!(
            embedded.memory_store.get(&key).await.unwrap().is_none(),
            "an occurrence in {tenant}'s partition"
        );
    }
}
