#![doc = include_str!("../README.md")]

pub mod error;
pub mod http;
pub mod postgres;
pub mod procfs;
pub mod server;
pub mod trigger;

pub use error::{Error, Result, StartFailure};
pub use http::{Answer, HttpClient};
pub use postgres::TestDatabase;
pub use server::{ServerCommand, ServerProcess, Started};
pub use trigger::{Trigger, now_us, rfc3339_micros, rfc3339_millis, utc};
