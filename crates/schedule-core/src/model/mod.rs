//! The schedule model: validated ids, fixed-width UTC times, table keys, the status
//! table, schedule items and definitions. Pure: no I/O, no AWS types.

mod definition;
mod ids;
mod item;
mod keys;
mod mode;
pub mod scan_state;
mod status;
mod time;
mod trigger;

pub use definition::{
    Definition, DefinitionError, MissingTimePolicy, RepeatedTimePolicy, Schedule, ScheduleSpec,
    format_span, parse_span,
};
pub use ids::{DeviceId, IdError, StepId, TenantId, WorkflowId};
pub use item::{ExecutionId, Payload, ScheduleItem, StatusChange, TransitionError, Validation};
pub use keys::{
    KeyError, OCCURRENCE_SK_PREFIX, PAYLOAD_SK_PREFIX, ScheduleKey, StatusShard, shard_of,
};
pub use mode::{
    MODE_ATTR, MODE_SK, ModeParseError, SETTINGS_SK_PREFIX, TenantMode, TenantSetting,
    is_settings_row, mode_key,
};
pub use status::{Status, StatusParseError};
pub use time::{TimeError, Timestamp};
pub use trigger::{TRIGGER_SCHEMA_VERSION, TriggerMessage};
