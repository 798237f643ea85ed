#![doc = include_str!("../README.md")]

mod app;
pub mod config;
mod db;
mod http;
mod lock;
pub mod logging;
mod tasks;

pub use app::{Server, StartError, WebhookSetupError};
pub use config::{Access, Config, ConfigError, Database, Limits, RobotAuth};
pub use lock::LockError;
