//! The execution queue and the Lambda event source mapping in front of the executor, as
//! SQS and Lambda behave: per-message `DelaySeconds`, a visibility timeout from each
//! receive, `ApproximateReceiveCount`, a move to the DLQ on the receive after the
//! `maxReceiveCount`-th, partial batch responses (only the acknowledged messages are
//! deleted), a delete that needs a current receipt handle, two copies of one message
//! handed out at once, and deliveries late, early or out of order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schedule_core::app::ExecutionMessage;
use schedule_core::error::QueueError;
use schedule_core::model::ScheduleKey;
use schedule_core::ports::{Clock, DispatchQueue, OutgoingMessage, ReceivedMessage, SendReport};

use super::chaos::{Chaos, Fault};
use super::journal::Journal;

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    body: String,
    key: Option<ScheduleKey>,
    visible_at: DateTime<Utc>,
    receive_count: u32,
    /// Receipt handles of the latest receive (two when a copy went out twice).
    receipts: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    messages: BTreeMap<u64, Msg>,
    dlq: Vec<Msg>,
    next: u64,
}

#[derive(Debug)]
pub struct SimQueue {
    pub chaos: Arc<Chaos>,
    pub clock: schedule_core::adapters::clock::VirtualClock,
    pub visibility: Duration,
    pub max_receive_count: u32,
    pub journal: Journal,
    state: Mutex<State>,
    pub arrived: tokio::sync::Notify,
}

fn ms(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap()
}

impl SimQueue {
    pub fn new(
        chaos: Arc<Chaos>,
        clock: schedule_core::adapters::clock::VirtualClock,
        visibility: Duration,
        max_receive_count: u32,
        journal: Journal,
    ) -> Self {
        Self {
            chaos,
            clock,
            visibility,
            max_receive_count,
            journal,
            state: Mutex::new(State::default()),
            arrived: tokio::sync::Notify::new(),
        }
    }

    /// Enqueues one message (what `SendMessageBatch` does for one entry).
    pub fn send(&self, m: &OutgoingMessage, invocation: u64) {
        let now = self.clock.now();
        let mut visible_at = now + ms(m.delay);
        if self
            .chaos
            .strikes(Fault::LateDelivery, 0.05, "late_delivery")
        {
            let extra = self.chaos.with_rng(|r| r.between(1, 120_000));
            visible_at += chrono::Duration::milliseconds(extra as i64);
        }
        if self
            .chaos
            .strikes(Fault::EarlyDelivery, 0.02, "early_delivery")
        {
            let early = self.chaos.with_rng(|r| r.between(3_000, 900_000));
            visible_at -= chrono::Duration::milliseconds(early as i64);
        }
        let key = ExecutionMessage::parse(&m.body).ok().map(|(_, k)| k);
        if let Some(k) = &key {
            self.journal.note(
                k,
                now,
                format!(
                    "message queued (inv {invocation}, delay {}s, visible at {})",
                    m.delay.as_secs(),
                    visible_at.format("%H:%M:%S%.3f")
                ),
            );
        }
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let n = st.next;
        st.messages.insert(
            n,
            Msg {
                id: format!("msg-{n}"),
                body: m.body.clone(),
                key,
                visible_at,
                receive_count: 0,
                receipts: Vec::new(),
            },
        );
        drop(st);
        self.arrived.notify_one();
    }

    /// When the next message becomes visible, if any is held.
    pub fn next_visible(&self) -> Option<DateTime<Utc>> {
        self.state
            .lock()
            .unwrap()
            .messages
            .values()
            .map(|m| m.visible_at)
            .min()
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of the messages in the DLQ.
    pub fn dlq_keys(&self) -> Vec<Option<ScheduleKey>> {
        self.state
            .lock()
            .unwrap()
            .dlq
            .iter()
            .map(|m| m.key.clone())
            .collect()
    }

    /// Moves every message of the DLQ back to the queue (a redrive): new messages,
    /// visible at once, never received. Returns the keys they name.
    pub fn redrive(&self) -> Vec<ScheduleKey> {
        let now = self.clock.now();
        let mut st = self.state.lock().unwrap();
        let moved: Vec<Msg> = std::mem::take(&mut st.dlq);
        let mut keys = Vec::new();
        for m in moved {
            st.next += 1;
            let n = st.next;
            if let Some(k) = &m.key {
                self.journal.note(
                    k,
                    now,
                    format!("message {} redriven from the DLQ as msg-{n}", m.id),
                );
                keys.push(k.clone());
            }
            st.messages.insert(
                n,
                Msg {
                    id: format!("msg-{n}"),
                    visible_at: now,
                    receive_count: 0,
                    receipts: Vec::new(),
                    ..m
                },
            );
        }
        drop(st);
        self.arrived.notify_one();
        keys
    }

    /// One poll of the event source mapping: up to `max` visible messages (and copies).
    pub fn poll(&self, max: usize) -> Vec<ReceivedMessage> {
        let now = self.clock.now();
        let mut st = self.state.lock().unwrap();
        let mut visible: Vec<(DateTime<Utc>, u64)> = st
            .messages
            .iter()
            .filter(|(_, m)| m.visible_at <= now)
            .map(|(n, m)| (m.visible_at, *n))
            .collect();
        visible.sort();
        if visible.len() > 1
            && self
                .chaos
                .strikes(Fault::LateDelivery, 0.05, "reordered_batch")
        {
            self.chaos.with_rng(|r| {
                for i in (1..visible.len()).rev() {
                    let j = r.below(i as u64 + 1) as usize;
                    visible.swap(i, j);
                }
            });
        }
        let mut out = Vec::new();
        for (_, n) in visible {
            if out.len() >= max {
                break;
            }
            let Some(m) = st.messages.get_mut(&n) else {
                continue;
            };
            // SQS moves a message to the DLQ on the receive after its maxReceiveCount-th.
            if m.receive_count >= self.max_receive_count {
                if let Some(m) = st.messages.remove(&n) {
                    if let Some(k) = &m.key {
                        self.journal.note(
                            k,
                            now,
                            format!(
                                "message {} moved to the DLQ after {} receives",
                                m.id, m.receive_count
                            ),
                        );
                    }
                    st.dlq.push(m);
                }
                continue;
            }
            m.receive_count += 1;
            m.visible_at = now + ms(self.visibility);
            let copies = if self
                .chaos
                .strikes(Fault::Duplicates, 0.03, "duplicate_delivery")
            {
                2
            } else {
                1
            };
            m.receipts.clear();
            for c in 0..copies {
                let receipt = format!("{}#{}#{c}", m.id, m.receive_count);
                m.receipts.push(receipt.clone());
                out.push(ReceivedMessage {
                    message_id: m.id.clone(),
                    receipt_handle: receipt,
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                });
            }
        }
        out
    }

    /// Deletes the message a current receipt handle names (a stale handle deletes nothing).
    pub fn delete_receipt(&self, receipt: &str) {
        let mut st = self.state.lock().unwrap();
        st.messages
            .retain(|_, m| !m.receipts.iter().any(|r| r == receipt));
    }
}

impl DispatchQueue for SimQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<SendReport, QueueError> {
        let mut report = SendReport::default();
        for m in messages {
            self.send(m, 0);
            report.sent.push(m.id.clone());
        }
        Ok(report)
    }

    async fn receive(&self, max: u32, _wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(self.poll(max as usize))
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.delete_receipt(receipt_handle);
        Ok(())
    }
}
