//! The AWS adapters tally what their requests consume: the DynamoDB adapter the capacity
//! the service reports for each request (table and index), asked for with
//! `ReturnConsumedCapacity: INDEXES` (checked against an endpoint served over HTTP, so the
//! figures are exact); the SQS adapter the requests as billed, from the bodies it sends
//! (checked against the emulator).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use integration_tests::backends::{Backend, Emulator};
use schedule_core::adapters::dynamo::DynamoScheduleStore;
use schedule_core::model::{ScheduleKey, Status, StatusChange, Timestamp};
use schedule_core::ports::{DispatchQueue, OutgoingMessage, ScheduleStore};
use serde_json::{Value, json};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

async fn client(server: &MockServer) -> aws_sdk_dynamodb::Client {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(server.uri());
    let settings = schedule_core::config::SdkSettings::default();
    let sdk = schedule_core::adapters::sdk_settings(loader, &settings)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

fn answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.0")
        .set_body_string(body.to_string())
}

#[tokio::test]
async fn the_dynamodb_adapter_records_the_capacity_the_service_reports() {
    let server = MockServer::start().await;
    let asked_indexes = |r: &Request| {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        body["ReturnConsumedCapacity"] == "INDEXES"
    };
    Mock::given(method("POST"))
        .and(header("x-amz-target", "DynamoDB_20120810.UpdateItem"))
        .and(move |r: &Request| asked_indexes(r))
        .respond_with(answer(json!({"ConsumedCapacity": {
            "TableName": "schedule", "CapacityUnits": 3.0,
            "Table": {"CapacityUnits": 1.0, "WriteCapacityUnits": 1.0},
            "GlobalSecondaryIndexes": {"status-scheduled_time-index":
                {"CapacityUnits": 2.0, "WriteCapacityUnits": 2.0}}}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "DynamoDB_20120810.GetItem"))
        .and(move |r: &Request| asked_indexes(r))
        // Only `CapacityUnits`: of the request's kind, a read.
        .respond_with(answer(json!({"ConsumedCapacity": {
            "TableName": "schedule", "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}}})))
        .expect(1)
        .mount(&server)
        .await;
    let store = DynamoScheduleStore::new(client(&server).await, "schedule", 4);
    let key = ScheduleKey {
        pk: "TENANT#acme#DATE#2026-11-26".to_owned(),
        sk: "TIME#2026-11-26T10:00:00Z#STEP#s1".to_owned(),
    };
    let at = Timestamp::parse("2026-11-26T10:00:00Z").unwrap();
    let queued = StatusChange::transition(Status::Pending, Status::Queued, at).unwrap();
    assert!(store.change_status(&key, &queued).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap(), None);

    let usage = store.usage().snapshot();
    let update = usage.operations["UpdateItem"];
    assert_eq!(
        (
            update.calls,
            update.table_writes,
            update.table_wru,
            update.index_writes,
            update.index_wru
        ),
        (1, 1, 1.0, 2, 2.0)
    );
    let get = usage.operations["GetItem"];
    assert_eq!((get.calls, get.rru, get.table_wru), (1, 1.0, 0.0));
    assert_eq!(usage.total.calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_adapter_counts_requests_as_billed_per_64kb() {
    let Some(emulator) = Emulator::from_env().await else {
        return;
    };
    let (queue, _dlq) = emulator.queue_with_dlq(Duration::from_secs(30), 3).await;
    let msg = |i: usize, bytes: usize| OutgoingMessage {
        id: format!("m{i}"),
        body: "x".repeat(bytes),
        delay: Duration::ZERO,
    };
    // Ten 1 KB bodies in one request: one billed request; one body over 64 KB: two.
    let ten: Vec<_> = (0..10).map(|i| msg(i, 1024)).collect();
    let sent = queue.send_batch(&ten).await.unwrap();
    assert_eq!(sent.sent.len(), 10, "{:?}", sent.failed);
    let big = queue.send_batch(&[msg(10, 64 * 1024 + 1)]).await.unwrap();
    assert_eq!(big.sent.len(), 1, "{:?}", big.failed);
    let usage = queue.usage().snapshot();
    let batch = usage.operations["SendMessageBatch"];
    assert_eq!((batch.calls, batch.sqs_requests), (2, 1 + 2));

    let mut received = 0;
    while received < 11 {
        let got = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        for m in &got {
            queue.delete(&m.receipt_handle).await.unwrap();
        }
        received += got.len();
    }
    let usage = queue.usage().snapshot();
    assert_eq!(usage.operations["DeleteMessage"].sqs_requests, 11);
    let receives = usage.operations["ReceiveMessage"];
    assert!(
        receives.sqs_requests > receives.calls,
        "the receive that returned the 64 KB body is billed twice: {receives:?}"
    );
}
