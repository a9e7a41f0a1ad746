//! SQS behind [`DispatchQueue`] (the execution queue and its DLQ) and [`ActionSink`] (the
//! action trigger queue, FIFO-aware), plus queue creation for emulators and local runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::aws_error::{is_transient, queue_error};
use crate::adapters::clock::SystemClock;
use crate::error::QueueError;
use crate::limits::{SQS_MAX_BATCH, SQS_MAX_DELAY_SECONDS, SQS_MAX_MESSAGE_BYTES, SQS_MAX_RECEIVE};
use crate::model::TriggerMessage;
use crate::ports::Clock;
use crate::ports::{ActionSink, DispatchQueue, OutgoingMessage, ReceivedMessage, SendReport};
use crate::retry::{RetryPolicy, retrying};
use crate::usage::{OpUsage, Usage};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Retries of the entries of a batch that failed for a retryable reason.
const BATCH_RETRY: RetryPolicy =
    RetryPolicy::new(4, Duration::from_millis(50), Duration::from_secs(1), 0x5e9d);

/// SQS long-polls for at most 20 s.
const LONG_POLL_MAX: Duration = Duration::from_secs(20);
/// Beyond the long poll, how long a receive may take before it is cut.
const LONG_POLL_GRACE: Duration = Duration::from_secs(10);

/// An SQS standard queue used as a work queue.
#[derive(Clone)]
pub struct SqsDispatchQueue {
    client: Client,
    url: String,
    retry: RetryPolicy,
    /// What the waits between retries of a batch's failed entries wait on.
    clock: Arc<dyn Clock>,
    /// Requests made, as SQS bills them (per started 64 KB of payload).
    usage: Arc<Usage>,
}

impl std::fmt::Debug for SqsDispatchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsDispatchQueue")
            .field("url", &self.url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl SqsDispatchQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            retry: BATCH_RETRY,
            clock: Arc::new(SystemClock),
            usage: Arc::new(Usage::new()),
        }
    }

    /// The same queue tallying its requests into `usage`.
    pub fn with_usage(self, usage: Arc<Usage>) -> Self {
        Self { usage, ..self }
    }

    /// Requests made, as SQS bills them.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// The same queue retrying failed entries by `policy` (attempts per batch of 10).
    pub fn with_retry(self, policy: RetryPolicy) -> Self {
        Self {
            retry: policy,
            ..self
        }
    }

    /// The same queue waiting between retries on `clock` (a simulation's virtual clock).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// Sends one chunk through [`retrying`]: each attempt sends the entries still
    /// pending; entries that failed for a reason a retry cannot fix are reported at once,
    /// the rest are attempted again until the policy runs out.
    async fn send_chunk_retrying(&self, chunk: &[OutgoingMessage], report: &mut SendReport) {
        let pending = Mutex::new(chunk.iter().collect::<Vec<&OutgoingMessage>>());
        let outcome = Mutex::new(SendReport::default());
        let (pending_ref, outcome_ref) = (&pending, &outcome);
        // Jitter seeded by the chunk's first message: chunks throttled together spread out.
        let key = chunk.first().map_or("", |m| m.id.as_str());
        let result = retrying(self.retry, key, &*self.clock, None, move || async move {
            let now = std::mem::take(&mut *lock(pending_ref));
            let failures = self.send_chunk(&now).await;
            let mut again = Vec::new();
            let mut left = Vec::new();
            {
                let mut out = lock(outcome_ref);
                for (i, m) in now.iter().enumerate() {
                    match failures.iter().find(|(p, _, _)| *p == i) {
                        None => out.sent.push(m.id.clone()),
                        Some((_, false, why)) => out.failed.push((m.id.clone(), why.clone())),
                        Some((_, true, why)) => {
                            again.push(*m);
                            left.push((m.id.clone(), why.clone()));
                        }
                    }
                }
            }
            *lock(pending_ref) = again;
            if left.is_empty() {
                Ok(())
            } else {
                Err(QueueError::PartialBatch { failed: left })
            }
        })
        .await;
        let mut out = outcome.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Err(QueueError::PartialBatch { failed }) = result {
            out.failed.extend(failed);
        }
        report.sent.extend(out.sent);
        report.failed.extend(out.failed);
    }

    /// Sends one chunk (≤ 10). Entry ids in the request are the chunk positions, because
    /// SQS allows only `[A-Za-z0-9_-]{1,80}` there and the caller's ids may be anything.
    /// Returns the positions that failed, each with whether a retry may help and why.
    async fn send_chunk(&self, chunk: &[&OutgoingMessage]) -> Vec<(usize, bool, String)> {
        let entries: Result<Vec<_>, _> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .delay_seconds(m.delay.as_secs() as i32)
                    .build()
            })
            .collect();
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                return (0..chunk.len())
                    .map(|i| (i, false, e.to_string()))
                    .collect();
            }
        };
        let bytes = chunk.iter().map(|m| m.body.len() as u64).sum();
        self.usage.record("SendMessageBatch", OpUsage::sqs(bytes));
        match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out
                .failed()
                .iter()
                .filter_map(|f| {
                    let pos: usize = f.id().parse().ok()?;
                    // sender_fault: the entry itself is wrong; retrying cannot help.
                    Some((
                        pos,
                        !f.sender_fault(),
                        format!("{}: {}", f.code(), f.message().unwrap_or("")),
                    ))
                })
                .collect(),
            Err(e) => {
                let retry = is_transient(&e);
                let why = crate::error::chain(&queue_error("SendMessageBatch", e));
                (0..chunk.len()).map(|i| (i, retry, why.clone())).collect()
            }
        }
    }
}

fn check_message(m: &OutgoingMessage) -> Result<(), QueueError> {
    if m.delay.as_secs() > u64::from(SQS_MAX_DELAY_SECONDS) {
        return Err(QueueError::Invalid(format!(
            "message {}: delay {}s is over the SQS maximum of {SQS_MAX_DELAY_SECONDS}s",
            m.id,
            m.delay.as_secs()
        )));
    }
    if m.body.len() > SQS_MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "message {}: body of {} bytes is over the SQS maximum of {SQS_MAX_MESSAGE_BYTES}",
            m.id,
            m.body.len()
        )));
    }
    Ok(())
}

impl DispatchQueue for SqsDispatchQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<SendReport, QueueError> {
        messages.iter().try_for_each(check_message)?;
        let mut report = SendReport::default();
        // 10 entries per SendMessageBatch (and 256 KiB in all; bodies here are small).
        for chunk in messages.chunks(SQS_MAX_BATCH) {
            self.send_chunk_retrying(chunk, &mut report).await;
        }
        Ok(report)
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages((max as i32).clamp(1, SQS_MAX_RECEIVE))
            .wait_time_seconds(wait.min(LONG_POLL_MAX).as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            // A long poll legitimately holds the call for up to `wait`: the operation
            // timeout of the client (which bounds a hung call) starts after it.
            .config_override(
                aws_sdk_sqs::config::Builder::default().timeout_config(
                    TimeoutConfig::builder()
                        .operation_timeout(wait.min(LONG_POLL_MAX) + LONG_POLL_GRACE)
                        .operation_attempt_timeout(wait.min(LONG_POLL_MAX) + LONG_POLL_GRACE)
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|e| queue_error("ReceiveMessage", e))?;
        let bytes = out
            .messages()
            .iter()
            .map(|m| m.body().map_or(0, |b| b.len() as u64))
            .sum();
        self.usage.record("ReceiveMessage", OpUsage::sqs(bytes));
        Ok(out
            .messages()
            .iter()
            .map(|m| ReceivedMessage {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.usage.record("DeleteMessage", OpUsage::sqs(0));
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| queue_error("DeleteMessage", e))?;
        Ok(())
    }
}

/// The action trigger queue. On a FIFO queue (`.fifo` URL), `MessageGroupId` is the device
/// (one device's steps stay in order) and `MessageDeduplicationId` the execution id.
#[derive(Debug, Clone)]
pub struct SqsActionSink {
    client: Client,
    url: String,
    fifo: bool,
    /// Requests made, as SQS bills them (per started 64 KB of payload).
    usage: Arc<Usage>,
}

impl SqsActionSink {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            fifo: url.ends_with(".fifo"),
            client,
            url,
            usage: Arc::new(Usage::new()),
        }
    }

    /// The same sink tallying its requests into `usage`.
    pub fn with_usage(self, usage: Arc<Usage>) -> Self {
        Self { usage, ..self }
    }

    /// Requests made, as SQS bills them.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }
}

fn string_attribute(v: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| QueueError::Invalid(e.to_string()))
}

/// The body of `message`, or why SQS would refuse it.
fn trigger_body(message: &TriggerMessage) -> Result<String, QueueError> {
    let body = message.body();
    if body.len() > SQS_MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "trigger {} of {} bytes is over the SQS maximum of {SQS_MAX_MESSAGE_BYTES}",
            message.execution_id,
            body.len()
        )));
    }
    Ok(body)
}

/// What one entry adds to a `SendMessageBatch` request's size: its body and attributes.
fn entry_size(message: &TriggerMessage, body: &str) -> usize {
    body.len()
        + "tenant_id".len()
        + message.tenant_id.as_str().len()
        + "execution_id".len()
        + message.execution_id.as_str().len()
        + 2 * "String".len()
}

/// Splits positions into `SendMessageBatch` requests: at most 10 entries, and at most
/// the SQS message maximum in all (the limit applies to the whole request too).
fn batch_chunks(sizes: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &(pos, size) in sizes {
        match chunks.last_mut() {
            Some(c) if c.len() < SQS_MAX_BATCH && bytes + size <= SQS_MAX_MESSAGE_BYTES => {
                c.push(pos);
                bytes += size;
            }
            _ => {
                chunks.push(vec![pos]);
                bytes = size;
            }
        }
    }
    chunks
}

impl SqsActionSink {
    /// One `SendMessageBatch` of `entries` (position in the caller's slice, message,
    /// body); returns each position's result. Entry ids are positions, since SQS allows
    /// only `[A-Za-z0-9_-]{1,80}` there.
    async fn send_one_batch(
        &self,
        entries: Vec<(usize, &TriggerMessage, String)>,
    ) -> Vec<(usize, Result<(), QueueError>)> {
        let mut built = Vec::with_capacity(entries.len());
        for (pos, m, body) in &entries {
            let entry = self.batch_entry(*pos, m, body);
            built.push(entry);
        }
        let built: Result<Vec<_>, QueueError> = built.into_iter().collect();
        let request = match built {
            Ok(request) => request,
            Err(e) => {
                let why = e.to_string();
                return entries
                    .iter()
                    .map(|(pos, _, _)| (*pos, Err(QueueError::Invalid(why.clone()))))
                    .collect();
            }
        };
        // The bodies and their two attributes each (name, data type, value) are the billed payload.
        let bytes: usize = entries.iter().map(|(_, m, body)| entry_size(m, body)).sum();
        self.usage
            .record("SendMessageBatch", OpUsage::sqs(bytes as u64));
        match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(request))
            .send()
            .await
        {
            Ok(out) => {
                let failed: HashMap<&str, _> = out.failed().iter().map(|f| (f.id(), f)).collect();
                entries
                    .iter()
                    .map(|(pos, _, _)| {
                        let result = match failed.get(pos.to_string().as_str()) {
                            None => Ok(()),
                            Some(f) => {
                                let source =
                                    format!("{}: {}", f.code(), f.message().unwrap_or("")).into();
                                // sender_fault: the entry itself is wrong; retrying cannot help.
                                Err(if f.sender_fault() {
                                    QueueError::Permanent {
                                        operation: "SendMessageBatch",
                                        source,
                                    }
                                } else {
                                    QueueError::Transient {
                                        operation: "SendMessageBatch",
                                        source,
                                    }
                                })
                            }
                        };
                        (*pos, result)
                    })
                    .collect()
            }
            Err(e) => {
                let transient = is_transient(&e);
                let why = crate::error::chain(&queue_error("SendMessageBatch", e));
                entries
                    .iter()
                    .map(|(pos, _, _)| {
                        let source = why.clone().into();
                        let error = if transient {
                            QueueError::Transient {
                                operation: "SendMessageBatch",
                                source,
                            }
                        } else {
                            QueueError::Permanent {
                                operation: "SendMessageBatch",
                                source,
                            }
                        };
                        (*pos, Err(error))
                    })
                    .collect()
            }
        }
    }

    fn batch_entry(
        &self,
        pos: usize,
        message: &TriggerMessage,
        body: &str,
    ) -> Result<SendMessageBatchRequestEntry, QueueError> {
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(pos.to_string())
            .message_body(body)
            .message_attributes("tenant_id", string_attribute(message.tenant_id.as_str())?)
            .message_attributes(
                "execution_id",
                string_attribute(message.execution_id.as_str())?,
            );
        if self.fifo {
            entry = entry
                .message_group_id(message.device_id.as_str())
                .message_deduplication_id(message.execution_id.as_str());
        }
        entry
            .build()
            .map_err(|e| QueueError::Invalid(format!("trigger {}: {e}", message.execution_id)))
    }
}

impl ActionSink for SqsActionSink {
    /// Requests of up to 10 entries, sent concurrently; an entry SQS refuses, or one too
    /// large to send, fails alone.
    async fn send_batch(&self, messages: &[TriggerMessage]) -> Vec<Result<(), QueueError>> {
        let mut results: Vec<Option<Result<(), QueueError>>> =
            messages.iter().map(|_| None).collect();
        let mut ready = Vec::new();
        for (pos, m) in messages.iter().enumerate() {
            match trigger_body(m) {
                Ok(body) => ready.push((pos, m, body)),
                Err(e) => results[pos] = Some(Err(e)),
            }
        }
        let sizes: Vec<(usize, usize)> = ready
            .iter()
            .map(|(pos, m, body)| (*pos, entry_size(m, body)))
            .collect();
        let mut by_pos: HashMap<usize, (usize, &TriggerMessage, String)> =
            ready.into_iter().map(|e| (e.0, e)).collect();
        let requests = batch_chunks(&sizes).into_iter().map(|chunk| {
            let entries = chunk.iter().filter_map(|p| by_pos.remove(p)).collect();
            self.send_one_batch(entries)
        });
        for (pos, result) in futures::future::join_all(requests)
            .await
            .into_iter()
            .flatten()
        {
            results[pos] = Some(result);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(QueueError::Invalid(
                        "entry left out of every request".to_owned(),
                    ))
                })
            })
            .collect()
    }

    async fn send(&self, message: &TriggerMessage) -> Result<(), QueueError> {
        let body = trigger_body(message)?;
        self.usage.record(
            "SendMessage",
            OpUsage::sqs(entry_size(message, &body) as u64),
        );
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes("tenant_id", string_attribute(message.tenant_id.as_str())?)
            .message_attributes(
                "execution_id",
                string_attribute(message.execution_id.as_str())?,
            );
        if self.fifo {
            req = req
                .message_group_id(message.device_id.as_str())
                .message_deduplication_id(message.execution_id.as_str());
        }
        req.send()
            .await
            .map_err(|e| queue_error("SendMessage", e))?;
        Ok(())
    }
}

/// A queue to create on an emulator or for a local run.
#[derive(Debug, Clone)]
pub struct QueueSpec<'a> {
    pub name: &'a str,
    pub visibility_timeout: Duration,
    /// `(DLQ ARN, maxReceiveCount)`.
    pub redrive: Option<(&'a str, u32)>,
    pub retention: Option<Duration>,
}

/// Creates a queue and returns `(url, arn)`.
pub async fn create_queue(
    client: &Client,
    spec: &QueueSpec<'_>,
) -> Result<(String, String), QueueError> {
    let mut attrs = HashMap::new();
    attrs.insert(
        QueueAttributeName::VisibilityTimeout,
        spec.visibility_timeout.as_secs().to_string(),
    );
    if let Some(r) = spec.retention {
        attrs.insert(
            QueueAttributeName::MessageRetentionPeriod,
            r.as_secs().to_string(),
        );
    }
    if let Some((dlq_arn, max)) = spec.redrive {
        attrs.insert(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max}).to_string(),
        );
    }
    if spec.name.ends_with(".fifo") {
        attrs.insert(QueueAttributeName::FifoQueue, "true".to_owned());
    }
    let out = client
        .create_queue()
        .queue_name(spec.name)
        .set_attributes(Some(attrs))
        .send()
        .await
        .map_err(|e| queue_error("CreateQueue", e))?;
    let url = out.queue_url().unwrap_or_default().to_owned();
    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| queue_error("GetQueueAttributes", e))?;
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default();
    Ok((url, arn))
}
