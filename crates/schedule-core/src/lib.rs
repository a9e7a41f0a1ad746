//! Core of the workflow step scheduler: the domain, the ports it talks through,
//! the adapters behind those ports and the use cases that drive them.
//!
//! # Crate map
//!
//! | module | room |
//! |---|---|
//! | [`model`] | ids, times, keys, [`model::ScheduleItem`], the status table, definitions — pure, no I/O |
//! | [`recurrence`] | schedule rules → occurrences inside a window — pure |
//! | [`ports`] | the small traits the use cases need: [`ports::ScheduleStore`], [`ports::DefinitionSource`], [`ports::DispatchQueue`], [`ports::ActionSink`], [`ports::Clock`] |
//! | [`adapters`] | DynamoDB and SQS behind the ports, and [`adapters::memory`], the embedded twin with the same semantics |
//! | [`app`] | use cases generic over the ports: [`app::scan`], [`app::schedule`], [`app::execute`], [`app::sync`] (definition changes from the stream) |
//! | [`mode_cache`] | the per-tenant rollout mode (off, shadow, active) through a short cache, with the deployment's default |
//! | [`validation_cache`] | the device-validation cache (positive and negative TTLs, one call per concurrent miss) |
//! | [`metrics`] | CloudWatch embedded metric format |
//! | [`retry`] | backoff policy (exponential, jittered, seeded) for retryable errors |
//! | [`embedded`] | the whole flow in one process on the in-memory twin (`wfs demo`, fast tests) |
//! | [`config`] | every setting read once from the environment into a typed struct |
//! | [`error`] | one error enum per layer; each knows whether it is retryable |
//! | [`limits`] | AWS limits and product constants, defined once |
//! | [`usage`] | request and capacity accounting per operation, and the billing rules the twin applies |
//!
//! The domain never imports an AWS type; adapters never decide policy.

pub mod adapters;
pub mod app;
pub mod config;
pub mod embedded;
pub mod error;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod mode_cache;
pub mod model;
pub mod ports;
pub mod recurrence;
pub mod retry;
pub mod usage;
pub mod validation_cache;
