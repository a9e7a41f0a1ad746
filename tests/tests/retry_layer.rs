//! One retry layer, bounded in time: clients built by the project's `SdkConfig` helper have
//! the SDK's own retries off and explicit timeouts, so one logical call against a failing
//! endpoint makes exactly the attempts of its `retrying` policy, and a call to an endpoint
//! that never answers is cut at the operation timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::dynamo::{DynamoDefinitionSource, DynamoScheduleStore};
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::config::SdkSettings;
use schedule_core::error::{QueueError, StoreError};
use schedule_core::model::{ScheduleKey, StepId, TenantId, Timestamp};
use schedule_core::ports::{DefinitionSource, DispatchQueue, OutgoingMessage, ScheduleStore};
use schedule_core::retry::{RetryPolicy, retrying};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The project's `SdkConfig`, pointed at `endpoint` with test credentials.
async fn sdk(endpoint: &str, settings: &SdkSettings) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ));
    schedule_core::adapters::sdk_settings(loader, settings)
        .load()
        .await
}

/// An endpoint that answers 500 to every request.
async fn failing() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&server)
        .await;
    server
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(
        attempts,
        Duration::from_millis(1),
        Duration::from_millis(4),
        1,
    )
}

fn key() -> ScheduleKey {
    ScheduleKey::new(
        &TenantId::parse("acme").unwrap(),
        Timestamp::parse("2026-11-26T10:30:00Z").unwrap(),
        &StepId::parse("s1").unwrap(),
    )
}

#[tokio::test]
async fn one_logical_call_makes_exactly_the_policys_attempts() {
    let server = failing().await;
    let sdk = sdk(&server.uri(), &SdkSettings::default()).await;
    let clock = ManualClock::new(chrono::Utc::now());

    // A store read, retried by the helper: 4 attempts are 4 requests, not 4 × the SDK's 3.
    let store = DynamoScheduleStore::new(aws_sdk_dynamodb::Client::new(&sdk), "schedule", 16);
    let k = key();
    let err = retrying(quick(4), &k.to_string(), &clock, None, || store.get(&k))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Transient { .. }),
        "a 500 is transient: {err}"
    );
    assert_eq!(requests(&server).await, 4, "requests for one GetItem call");
    server.reset().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;

    // A batch send: the adapter's own retry of failed entries is the helper, 3 attempts.
    let queue = SqsDispatchQueue::new(aws_sdk_sqs::Client::new(&sdk), server.uri())
        .with_retry(quick(3))
        .with_clock(Arc::new(ManualClock::new(chrono::Utc::now())));
    let messages: Vec<OutgoingMessage> = (0..3)
        .map(|i| OutgoingMessage {
            id: format!("m{i}"),
            body: "{}".to_owned(),
            delay: Duration::ZERO,
        })
        .collect();
    let report = queue.send_batch(&messages).await.unwrap();
    assert!(report.sent.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 3, "{report:?}");
    assert_eq!(
        requests(&server).await,
        3,
        "requests for one SendMessageBatch"
    );
    server.reset().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;

    // A batched definitions read: its policy has 5 attempts.
    let source = DynamoDefinitionSource::new(aws_sdk_dynamodb::Client::new(&sdk), "definitions")
        .with_clock(Arc::new(ManualClock::new(chrono::Utc::now())));
    let wanted = vec![(
        TenantId::parse("acme").unwrap(),
        StepId::parse("s1").unwrap(),
    )];
    let err = source.get_many(&wanted).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(requests(&server).await, 5, "requests for one BatchGetItem");
}

/// Accepts connections and reads from them, but never answers; counts the connections.
async fn silent() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (format!("http://{addr}"), connections)
}

#[tokio::test]
async fn a_call_to_an_endpoint_that_never_answers_is_cut_at_the_operation_timeout() {
    let (endpoint, connections) = silent().await;
    let settings = SdkSettings {
        connect_timeout: Duration::from_millis(200),
        operation_timeout: Duration::from_millis(400),
        attempt_timeout: Duration::from_millis(400),
    };
    let sdk = sdk(&endpoint, &settings).await;
    let store = DynamoScheduleStore::new(aws_sdk_dynamodb::Client::new(&sdk), "schedule", 16);
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), store.get(&key())).await;
    let took = started.elapsed();
    let err = result
        .unwrap_or_else(|_| panic!("the call was not cut: still waiting after {took:?}"))
        .unwrap_err();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(2),
        "cut after {took:?}, the operation timeout is 400 ms"
    );
    assert!(
        matches!(err, StoreError::Transient { .. }),
        "a timeout is transient: {}",
        schedule_core::error::chain(&err)
    );
    assert!(
        schedule_core::error::chain(&err).contains("timed out"),
        "{}",
        schedule_core::error::chain(&err)
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one attempt, no retry by the SDK"
    );

    let queue = SqsDispatchQueue::new(aws_sdk_sqs::Client::new(&sdk), endpoint.clone())
        .with_retry(quick(1));
    let started = Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        queue.send_batch(&[OutgoingMessage {
            id: "m".to_owned(),
            body: "{}".to_owned(),
            delay: Duration::ZERO,
        }]),
    )
    .await
    .unwrap_or_else(|_| panic!("the send was not cut"))
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.contains("timed out"), "{report:?}");
}

/// The status of a service answer decides, whatever its code: a 503 without a body the
/// SDK can read is transient, a 400 with an unknown code is not.
#[tokio::test]
async fn a_5xx_or_429_answer_is_transient_whatever_its_code() {
    let server = MockServer::start().await;
    let calls = AtomicUsize::new(0);
    Mock::given(any())
        .respond_with(move |_: &wiremock::Request| {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => ResponseTemplate::new(503).set_body_string("<html>unavailable</html>"),
                1 => ResponseTemplate::new(429),
                _ => ResponseTemplate::new(400)
                    .insert_header("content-type", "application/x-amz-json-1.0")
                    .set_body_string(r#"{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"bad"}"#),
            }
        })
        .mount(&server)
        .await;
    let sdk = sdk(&server.uri(), &SdkSettings::default()).await;
    let store = DynamoScheduleStore::new(aws_sdk_dynamodb::Client::new(&sdk), "schedule", 16);
    for want_transient in [true, true, false] {
        let err = store.get(&key()).await.unwrap_err();
        assert_eq!(
            err.is_retryable(),
            want_transient,
            "{}",
            schedule_core::error::chain(&err)
        );
    }

    let sqs = SqsDispatchQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        format!("{}/q", server.uri()),
    );
    server.reset().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .insert_header("x-amzn-query-error", "KMS.ThrottlingException;Sender")
                .set_body_string(
                    r#"{"__type":"com.amazonaws.sqs#KmsThrottled","message":"slow down"}"#,
                ),
        )
        .mount(&server)
        .await;
    let err = sqs.delete("handle").await.unwrap_err();
    assert!(
        matches!(err, QueueError::Transient { .. }),
        "KMS throttling is transient: {}",
        schedule_core::error::chain(&err)
    );
}
