#![doc = include_str!("../README.md")]

mod address;
mod dialect;
mod envelope;
mod error;
pub mod event;
mod metadata;
mod report;
mod robot;
mod server;

pub use address::RobotAddress;
pub use dialect::Dialect;
pub use envelope::MAX_REPORTED_EVENT_CHARS;
pub use error::{FrameError, MetadataError};
pub use metadata::{MAX_FIELD_CHARS, Metadata, ProtocolLevel};
pub use report::{JobReport, ReportStatus};
pub use robot::{RobotFrame, RobotMessage, parse_robot_frame};
pub use server::{
    EXTENDED_PROTOCOL_VERSION, ServerMessage, encode_notification, parse_server_frame,
};
