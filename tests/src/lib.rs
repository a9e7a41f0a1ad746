//! Test support: the backends a contract case runs on (the in-memory twin and the
//! emulator, through the real adapters) and the contract cases themselves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws_world;
pub mod backends;
pub mod contract;
pub mod corpus;
pub mod fakes;
pub mod sim;
pub mod streams;
