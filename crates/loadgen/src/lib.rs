#![doc = include_str!("../README.md")]

pub mod cli;
pub mod fleet;
pub mod http;
pub mod machine;
pub mod metrics;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod stats;
pub mod trigger;
pub mod wire;
pub mod worker;
