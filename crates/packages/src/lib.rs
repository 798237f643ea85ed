#![doc = include_str!("../README.md")]

mod dir;
mod error;
mod names;
mod path;
mod trigger;

pub use dir::PackageDir;
pub use error::PackagesError;
pub use names::is_safe_package_name;
pub use path::is_safe_path;
pub use rpa_validation::{FieldError, FieldErrorKind, FieldErrors};
pub use trigger::{
    MAX_POOL_CHARS, POOL_NAME_RULE, Package, RobotRef, Target, Trigger, is_valid_pool_name,
    validate_robot_name, validate_trigger, validate_trigger_body,
};

/// Largest serialized `Package` object, in bytes. The `_event` dialect delivers the package
/// JSON-escaped inside a string, which can grow it, and the whole notification must still fit
/// one 64 KiB WebSocket message; packages made mostly of quotes and backslashes (which double
/// when escaped) are held to that message limit as well.
pub const MAX_PACKAGE_JSON_BYTES: usize = 32 * 1024;

/// Longest `package_name`, in characters. With `_<jobID>` appended it stays far below the
/// 255-byte file name limit of common file systems.
pub const MAX_NAME_CHARS: usize = 128;

/// Longest `path`, in characters: room for signed cloud-storage URLs.
pub const MAX_PATH_CHARS: usize = 2048;

/// Longest `robot_name` and `robot_address`, in characters.
pub const MAX_ROBOT_FIELD_CHARS: usize = 255;
