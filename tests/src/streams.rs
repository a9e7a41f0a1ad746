//! Reads the definitions table's stream from the emulator through the DynamoDB Streams
//! JSON API (plain HTTP: the SDK crate for it is heavy and only tests need it), and turns
//! its records into the event the Lambda service hands `definition_sync`.

use aws_lambda_events::event::dynamodb::Event;
use serde_json::{Value, json};

/// A reader of every shard of one table's stream, from its start.
#[derive(Debug)]
pub struct StreamReader {
    http: reqwest::Client,
    endpoint: String,
    /// The next iterator of each shard.
    iterators: Vec<String>,
}

impl StreamReader {
    /// Opens the stream of `table` at its start (TRIM_HORIZON).
    pub async fn open(dynamo: &aws_sdk_dynamodb::Client, table: &str) -> Self {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
        let described = dynamo
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .expect("the definitions table has a stream")
            .to_owned();
        let mut reader = Self {
            http: reqwest::Client::new(),
            endpoint,
            iterators: Vec::new(),
        };
        let stream = reader
            .call("DescribeStream", json!({"StreamArn": arn}))
            .await;
        let shards = stream["StreamDescription"]["Shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!shards.is_empty(), "stream {arn} has no shard: {stream}");
        for shard in shards {
            let it = reader
                .call(
                    "GetShardIterator",
                    json!({"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
                )
                .await;
            reader
                .iterators
                .push(it["ShardIterator"].as_str().unwrap().to_owned());
        }
        reader
    }

    async fn call(&self, operation: &str, body: Value) -> Value {
        // moto routes on the target and the credential scope; it does not check signatures.
        let response = self
            .http
            .post(&self.endpoint)
            .header("X-Amz-Target", format!("DynamoDBStreams_20120810.{operation}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{operation}: {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The records written since the last read, in order, as stream records.
    pub async fn read_new(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        for i in 0..self.iterators.len() {
            let got = self
                .call("GetRecords", json!({"ShardIterator": self.iterators[i]}))
                .await;
            out.extend(got["Records"].as_array().cloned().unwrap_or_default());
            if let Some(next) = got["NextShardIterator"].as_str() {
                self.iterators[i] = next.to_owned();
            }
        }
        out
    }
}

/// The Lambda event for `records` (fields Lambda always sets are filled in if absent).
pub fn lambda_event(records: &[Value]) -> Event {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let change = &mut r["dynamodb"];
            if change.get("SizeBytes").is_none() {
                change["SizeBytes"] = json!(0);
            }
            if let Some(t) = change
                .get("ApproximateCreationDateTime")
                .and_then(Value::as_str)
            {
                // Streams give an ISO time; Lambda events carry epoch seconds.
                let secs = chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| d.timestamp())
                    .unwrap_or(0);
                change["ApproximateCreationDateTime"] = json!(secs);
            }
            r
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}
