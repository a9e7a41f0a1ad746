//! The DynamoDB definitions adapter's batched read against a DynamoDB endpoint served
//! over HTTP (wiremock): how it splits keys into requests, and that a retry asks for
//! exactly the keys DynamoDB left unprocessed — through the one retry helper, with the
//! SDK's own retries off.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use schedule_core::adapters::dynamo::DynamoDefinitionSource;
use schedule_core::error::StoreError;
use schedule_core::model::{StepId, TenantId};
use schedule_core::ports::{DefinitionKey, DefinitionSource};
use serde_json::{Value, json};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TABLE: &str = "definitions";
const TARGET: &str = "DynamoDB_20120810.BatchGetItem";

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

fn keys(n: usize) -> Vec<DefinitionKey> {
    (0..n)
        .map(|i| {
            (
                TenantId::parse("acme").unwrap(),
                StepId::parse(format!("s{i:03}")).unwrap(),
            )
        })
        .collect()
}

/// The keys one request asked for, as `(PK, SK)`, and whether it asked for a consistent read.
fn asked(body: &Value) -> (Vec<(String, String)>, bool) {
    let table = &body["RequestItems"][TABLE];
    let keys = table["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["PK"]["S"].as_str().unwrap().to_owned(),
                k["SK"]["S"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (keys, table["ConsistentRead"] == json!(true))
}

/// A valid definition row for a key, in DynamoDB's JSON.
fn row(pk: &str, sk: &str) -> Value {
    let tenant = pk.trim_start_matches("TENANT#");
    let step = sk.trim_start_matches("STEP#");
    json!({
        "PK": {"S": pk}, "SK": {"S": sk},
        "tenant_id": {"S": tenant}, "device_workflow_step_id": {"S": step},
        "workflow_id": {"S": "w1"}, "device_id": {"S": "d1"},
        "enabled": {"BOOL": true}, "version": {"N": "3"},
        "schedule": {"M": {"type": {"S": "once"}, "at": {"S": "2026-11-26T10:30:00Z"}}},
        "payload": {"M": {}}
    })
}

fn answer(rows: &[(String, String)], unprocessed: &[(String, String)]) -> ResponseTemplate {
    let mut body =
        json!({"Responses": {TABLE: rows.iter().map(|(p, s)| row(p, s)).collect::<Vec<_>>()}});
    if !unprocessed.is_empty() {
        body["UnprocessedKeys"] = json!({TABLE: {
            "Keys": unprocessed.iter().map(|(p, s)| json!({"PK": {"S": p}, "SK": {"S": s}})).collect::<Vec<_>>(),
            "ConsistentRead": true
        }});
    }
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.0")
        .set_body_json(body)
}

/// Serves BatchGetItem: `respond(call, asked keys)` answers call `call` (from 0).
async fn serve(
    respond: impl Fn(usize, &[(String, String)]) -> ResponseTemplate + Send + Sync + 'static,
) -> MockServer {
    let server = MockServer::start().await;
    let calls = AtomicUsize::new(0);
    Mock::given(method("POST"))
        .and(header("x-amz-target", TARGET))
        .respond_with(move |req: &Request| {
            let (keys, _) = asked(&req.body_json().unwrap());
            respond(calls.fetch_add(1, Ordering::SeqCst), &keys)
        })
        .mount(&server)
        .await;
    server
}

async fn requests(server: &MockServer) -> Vec<(Vec<(String, String)>, bool)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| asked(&r.body_json().unwrap()))
        .collect()
}

#[tokio::test]
async fn unprocessed_keys_are_asked_again_and_only_they() {
    // The first answer leaves the first three keys it was asked for unprocessed.
    let server = serve(|call, asked| match call {
        0 => answer(&asked[3..], &asked[..3]),
        _ => answer(asked, &[]),
    })
    .await;
    let source = DynamoDefinitionSource::new(client(&server).await, TABLE);
    let wanted = keys(20);
    let got = source.get_many(&wanted).await.unwrap();

    assert_eq!(got.len(), 20);
    for k in &wanted {
        let def = got[k].as_ref().unwrap().as_ref().unwrap();
        assert_eq!((&def.device_workflow_step_id, def.version), (&k.1, 3));
    }
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2, "one request, then one retry");
    assert!(sent.iter().all(|(_, consistent)| *consistent));
    assert_eq!(sent[0].0.len(), 20);
    let left: BTreeSet<_> = sent[0].0[..3].iter().cloned().collect();
    let retried: BTreeSet<_> = sent[1].0.iter().cloned().collect();
    assert_eq!(
        (retried, sent[1].0.len()),
        (left, 3),
        "the retry asks for exactly the unprocessed keys"
    );
}

#[tokio::test]
async fn keys_are_split_into_requests_of_at_most_one_hundred() {
    let server = serve(|_, asked| answer(asked, &[])).await;
    let source = DynamoDefinitionSource::new(client(&server).await, TABLE);
    let mut wanted = keys(230);
    wanted.push(wanted[7].clone());
    let got = source.get_many(&wanted).await.unwrap();
    assert_eq!(got.len(), 230);
    assert!(got.values().all(|d| matches!(d, Some(Ok(_)))));

    let sent = requests(&server).await;
    let mut sizes: Vec<_> = sent.iter().map(|(k, _)| k.len()).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![
            30,
            schedule_core::limits::DYNAMO_MAX_BATCH_GET,
            schedule_core::limits::DYNAMO_MAX_BATCH_GET
        ]
    );
    let all: BTreeSet<_> = sent.iter().flat_map(|(k, _)| k.iter().cloned()).collect();
    assert_eq!(
        all.len(),
        230,
        "every key asked once, the duplicate not at all"
    );
}

fn throttled() -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("content-type", "application/x-amz-json-1.0")
        .set_body_json(json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "slow down"
        }))
}

#[tokio::test]
async fn a_throttled_request_is_retried() {
    let server = serve(|call, asked| match call {
        0 => throttled(),
        _ => answer(asked, &[]),
    })
    .await;
    let source = DynamoDefinitionSource::new(client(&server).await, TABLE);
    let got = source.get_many(&keys(5)).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn retries_are_the_helpers_alone_not_the_sdks_on_top() {
    let server = serve(|_, _| throttled()).await;
    let source = DynamoDefinitionSource::new(client(&server).await, TABLE);
    let err = source.get_many(&keys(5)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        schedule_core::error::chain(&err).contains("ProvisionedThroughputExceededException"),
        "{}",
        schedule_core::error::chain(&err)
    );
    // Five attempts of the policy; SDK retries inside each would multiply them.
    assert_eq!(requests(&server).await.len(), 5);
}

#[tokio::test]
async fn keys_left_unprocessed_on_every_attempt_end_in_a_retryable_error() {
    let server = serve(|_, asked| answer(&[], asked)).await;
    let source = DynamoDefinitionSource::new(client(&server).await, TABLE);
    let err = source.get_many(&keys(4)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Transient {
                operation: "BatchGetItem",
                ..
            }
        ),
        "{err}"
    );
    let chain = schedule_core::error::chain(&err);
    assert!(chain.contains("4 keys") && chain.contains(TABLE), "{chain}");
    let sent = requests(&server).await;
    assert_eq!(
        sent.len(),
        5,
        "the policy's five attempts, then it gives up"
    );
    assert!(sent.iter().all(|(k, _)| k.len() == 4));
}
