use rpa_protocol::{Dialect, EXTENDED_PROTOCOL_VERSION};
use serde_json::{Map, Value};

/// Who the robot says it is and how it speaks.
#[derive(Debug, Clone)]
pub struct RobotConfig {
    /// The server's WebSocket URL, e.g. `ws://127.0.0.1:4000/` (the paths `/`, `/ws` and
    /// `/api/robots/connect` all reach the robot endpoint). Only `ws://`: TLS ends at the proxy.
    pub url: String,
    /// Sent as `robotName`.
    pub name: String,
    /// Sent as `robotAddress`: the robot's MAC address, such as `001AFFDB45C2`.
    pub address: String,
    /// The robot's user: sent as `userID` when it is a number (README-era robots), as `uuid`
    /// otherwise (the C# robot sends a string). Not sent when `None`.
    pub user: Option<Value>,
    /// Which event key the robot writes (`_event` or `event`).
    pub dialect: Dialect,
    /// Announce `"protocol": 2`: the server then sends `registered` and `error` messages and
    /// expects an acknowledgement for each package.
    pub extended: bool,
    /// Send the metadata value as a JSON-encoded string, as old robots did.
    pub metadata_as_string: bool,
    /// Extended robots only: acknowledge each package as soon as it arrives. Field robots never
    /// acknowledge on their own, whatever this says.
    pub auto_ack: bool,
    /// Sent as `Authorization: Bearer <token>` on the upgrade request when set.
    pub token: Option<String>,
}

impl RobotConfig {
    /// An extended `_event` robot that acknowledges packages itself, with no user and no token.
    pub fn new(
        url: impl Into<String>,
        name: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        RobotConfig {
            url: url.into(),
            name: name.into(),
            address: address.into(),
            user: None,
            dialect: Dialect::Underscore,
            extended: true,
            metadata_as_string: false,
            auto_ack: true,
            token: None,
        }
    }

    /// Whether packages are acknowledged before [`Robot::next_event`](crate::Robot::next_event)
    /// returns them.
    pub(crate) fn acknowledges(&self) -> bool {
        self.extended && self.auto_ack
    }

    /// The `client robot metaData` value, keys in the order field robots write them.
    pub(crate) fn metadata_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("robotName".to_owned(), Value::from(self.name.as_str()));
        object.insert(
            "robotAddress".to_owned(),
            Value::from(self.address.as_str()),
        );
        match &self.user {
            None => {}
            Some(user @ Value::String(_)) => {
                object.insert("uuid".to_owned(), user.clone());
            }
            Some(user) => {
                object.insert("userID".to_owned(), user.clone());
            }
        }
        if self.extended {
            object.insert(
                "protocol".to_owned(),
                Value::from(EXTENDED_PROTOCOL_VERSION),
            );
        }
        let object = Value::Object(object);
        if self.metadata_as_string {
            Value::String(object.to_string())
        } else {
            object
        }
    }
}
