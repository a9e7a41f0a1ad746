//! A complete deployment on the emulator: both tables, the execution queue with its DLQ,
//! the action trigger queue, and a device registry served over HTTP (wiremock) — built
//! through the functions' own config readers, so the wiring under test is the real one.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use schedule_core::adapters::sqs::{QueueSpec, create_queue};
use schedule_core::config::{Env, ExecutorConfig, ScannerConfig, SchedulerConfig, SyncConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::backends::{Emulator, unique_name};

#[derive(Debug)]
pub struct AwsWorld {
    pub emu: Emulator,
    pub sdk: aws_config::SdkConfig,
    pub env: HashMap<&'static str, String>,
    pub execution_url: String,
    pub dlq_url: String,
    pub action_url: String,
    pub registry: MockServer,
}

/// How the registry answers for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Active,
    Inactive,
    Unknown,
}

impl AwsWorld {
    /// `None` when no emulator is configured (see [`Emulator::from_env`]).
    pub async fn new(execution_visibility: Duration) -> Option<Self> {
        let emu = Emulator::from_env().await?;
        let sdk = schedule_core::adapters::load_sdk_config(
            &schedule_core::config::SdkSettings::from_env(&schedule_core::config::Env::process())
                .unwrap(),
        )
        .await;
        let schedule_table = emu.schedule_table().await;
        let definitions_table = emu.definitions_table().await;
        let dlq = unique_name("execution-dlq");
        let (dlq_url, dlq_arn) = create_queue(
            &emu.sqs,
            &QueueSpec {
                name: &dlq,
                visibility_timeout: Duration::from_secs(30),
                redrive: None,
                retention: None,
            },
        )
        .await
        .unwrap();
        let exec = unique_name("execution");
        let (execution_url, _) = create_queue(
            &emu.sqs,
            &QueueSpec {
                name: &exec,
                visibility_timeout: execution_visibility,
                redrive: Some((&dlq_arn, schedule_core::limits::EXECUTION_MAX_RECEIVE_COUNT)),
                retention: None,
            },
        )
        .await
        .unwrap();
        let action = unique_name("action-trigger");
        let (action_url, _) = create_queue(
            &emu.sqs,
            &QueueSpec {
                name: &action,
                visibility_timeout: Duration::from_secs(30),
                redrive: None,
                retention: None,
            },
        )
        .await
        .unwrap();
        let registry = MockServer::start().await;
        let env = HashMap::from([
            ("SCHEDULE_TABLE", schedule_table),
            ("DEFINITIONS_TABLE", definitions_table),
            ("EXECUTION_QUEUE_URL", execution_url.clone()),
            ("ACTION_TRIGGER_QUEUE_URL", action_url.clone()),
            ("EXECUTION_MAX_RECEIVE_COUNT", "3".to_owned()),
            ("DEVICE_REGISTRY_URL", registry.uri()),
            ("SCHEDULE_WINDOW", "5m".to_owned()),
        ]);
        Some(Self {
            emu,
            sdk,
            env,
            execution_url,
            dlq_url,
            action_url,
            registry,
        })
    }

    fn lookup(&self) -> Env<impl Fn(&str) -> Option<String> + '_> {
        Env(|k: &str| self.env.get(k).cloned())
    }

    pub fn scanner_config(&self) -> ScannerConfig {
        ScannerConfig::from_env(&self.lookup()).unwrap()
    }

    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig::from_env(&self.lookup()).unwrap()
    }

    pub fn executor_config(&self) -> ExecutorConfig {
        ExecutorConfig::from_env(&self.lookup()).unwrap()
    }

    pub fn sync_config(&self) -> SyncConfig {
        SyncConfig::from_env(&self.lookup()).unwrap()
    }

    pub async fn device(&self, tenant: &str, device: &str, state: DeviceState) {
        let response = match state {
            DeviceState::Active => ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"device_id": device, "status": "ACTIVE"})),
            DeviceState::Inactive => ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"device_id": device, "status": "INACTIVE"})),
            DeviceState::Unknown => ResponseTemplate::new(404),
        };
        Mock::given(method("GET"))
            .and(path(format!("/tenants/{tenant}/devices/{device}")))
            .respond_with(response)
            .mount(&self.registry)
            .await;
    }

    pub async fn registry_calls(&self) -> usize {
        self.registry
            .received_requests()
            .await
            .map(|r| r.len())
            .unwrap_or(0)
    }

    /// Visible plus in-flight plus delayed messages of a queue.
    pub async fn queue_depth(&self, url: &str) -> u64 {
        let out = self
            .emu
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        out.attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0)
    }

    /// Creates a shadow queue and sets `SHADOW_QUEUE_URL` for the executor's config.
    pub async fn add_shadow_queue(&mut self) -> String {
        let name = unique_name("shadow");
        let (url, _) = create_queue(
            &self.emu.sqs,
            &QueueSpec {
                name: &name,
                visibility_timeout: Duration::from_secs(30),
                redrive: None,
                retention: None,
            },
        )
        .await
        .unwrap();
        self.env.insert("SHADOW_QUEUE_URL", url.clone());
        url
    }

    /// Receives and deletes everything on the action trigger queue: `(body, attributes)`.
    pub async fn drain_triggers(&self) -> Vec<(String, HashMap<String, String>)> {
        self.drain_queue(&self.action_url).await
    }

    /// Receives and deletes everything on the queue at `url`: `(body, attributes)`.
    pub async fn drain_queue(&self, url: &str) -> Vec<(String, HashMap<String, String>)> {
        let mut out = Vec::new();
        let mut idle = 0;
        while idle < 2 {
            let got = self
                .emu
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            let messages = got.messages();
            if messages.is_empty() {
                idle += 1;
                continue;
            }
            idle = 0;
            for m in messages {
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.clone(), v.string_value().unwrap_or_default().to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.body().unwrap_or_default().to_owned(), attrs));
                self.emu
                    .sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        out
    }
}
