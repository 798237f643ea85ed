#![doc = include_str!("../README.md")]

pub mod api;
pub mod checker;
pub mod clock;
pub mod faketime;
pub mod faults;
pub mod fleet;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod server;
