use serde_json::{Map, Value};

/// Something the server told the robot. Pings are not events: they are answered and counted
/// ([`Robot::pings`](crate::Robot::pings)).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A package delivery (`notification`), whichever form its value had. `job_id` has been
    /// taken out of `package`.
    Package {
        job_id: i64,
        package: Map<String, Value>,
    },
    /// `Decline metaData reception`: the server refused the robot's metadata.
    MetadataDeclined,
    /// Extended protocol: the server accepted the metadata.
    Registered {
        connection_id: String,
        ping_interval_ms: u64,
        ack_timeout_ms: u64,
    },
    /// Extended protocol: the server found one of the robot's frames bad.
    ServerError { code: String, message: String },
    /// The connection ended. `code` is the close code of the server's close frame; `None`
    /// when it sent none or the connection dropped without a closing handshake.
    Closed { code: Option<u16>, reason: String },
}
