//! The trigger message pushed to the action trigger queue (DESIGN.md §3).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::{DeviceId, StepId, TenantId, WorkflowId};
use super::item::{ExecutionId, ScheduleItem};
use super::time::Timestamp;

pub const TRIGGER_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerMessage {
    pub schema_version: u32,
    pub execution_id: ExecutionId,
    pub tenant_id: TenantId,
    pub device_workflow_step_id: StepId,
    pub workflow_id: WorkflowId,
    pub device_id: DeviceId,
    pub scheduled_time: Timestamp,
    /// When this copy was sent, with milliseconds: lateness is `sent_at - scheduled_time`.
    pub sent_at: String,
    /// 1 for the first send of this occurrence, then 2, 3, …
    pub attempt: u32,
    pub payload: Map<String, Value>,
}

impl TriggerMessage {
    pub fn for_item(item: &ScheduleItem, sent_at: DateTime<Utc>, attempt: u32) -> Self {
        Self {
            schema_version: TRIGGER_SCHEMA_VERSION,
            execution_id: item.execution_id(),
            tenant_id: item.tenant_id.clone(),
            device_workflow_step_id: item.device_workflow_step_id.clone(),
            workflow_id: item.workflow_id.clone(),
            device_id: item.device_id.clone(),
            scheduled_time: item.scheduled_time,
            sent_at: sent_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            attempt,
            payload: item.payload.clone(),
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
