#![doc = include_str!("../README.md")]

mod config;
mod error;
mod event;
mod history;
mod robot;

pub use config::RobotConfig;
pub use error::RobotError;
pub use event::Event;
pub use history::DELIVERY_HISTORY;
pub use robot::{CLOSE_TIMEOUT, CONNECT_TIMEOUT, REGISTRATION_TIMEOUT, Robot};
pub use rpa_protocol::Dialect;
