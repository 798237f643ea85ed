//! Canonical event names, as encoders write them. Parsers match them ignoring ASCII case and
//! surrounding white space, because older robots send e.g. `decline pkg reception`.

/// Robot -> server: the robot announces itself.
pub const CLIENT_ROBOT_METADATA: &str = "client robot metaData";
/// Robot -> server: free-form message, or a job report.
pub const CLIENT_ROBOT_MESSAGE: &str = "client robot message";
/// Robot -> server: the robot failed to take a package.
pub const DECLINE_PKG_RECEPTION: &str = "Decline pkg reception";
/// Robot -> server, extended protocol: the robot received a package.
pub const ACK_PKG_RECEPTION: &str = "Ack pkg reception";

/// Server -> robot: package delivery.
pub const NOTIFICATION: &str = "notification";
/// Server -> robot: metadata rejected. Its spelling is the one the C# robot compares against.
pub const DECLINE_METADATA_RECEPTION: &str = "Decline metaData reception";
/// Server -> robot, extended protocol: metadata accepted.
pub const REGISTERED: &str = "registered";
/// Server -> robot, extended protocol: the robot sent a bad frame.
pub const ERROR: &str = "error";
