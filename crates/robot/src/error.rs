use thiserror::Error;
use tokio_tungstenite::tungstenite;

/// What can go wrong talking to the server.
#[derive(Debug, Error)]
pub enum RobotError {
    /// The configuration cannot be sent (e.g. a token that is not a valid header value).
    #[error("invalid robot configuration: {0}")]
    Config(String),
    /// The TCP connection or the WebSocket upgrade failed; see [`RobotError::http_status`].
    #[error("cannot connect: {0}")]
    Connect(#[source] Box<tungstenite::Error>),
    /// The open WebSocket failed.
    #[error("WebSocket error: {0}")]
    Socket(#[source] Box<tungstenite::Error>),
    /// The server sent a frame the robot cannot read. The connection is still usable.
    #[error("unreadable frame from the server: {0}")]
    Protocol(String),
    /// Extended robots, while connecting: the server declined the metadata.
    #[error("the server declined the robot's metadata")]
    MetadataDeclined,
    /// Extended robots, while connecting: the server answered the metadata with an error.
    #[error("the server refused the registration: {code}: {message}")]
    Refused { code: String, message: String },
    /// Extended robots, while connecting: the server closed the connection before
    /// registering the robot.
    #[error(
        "the server closed the connection before registering the robot (code {code:?}): {reason}"
    )]
    ClosedBeforeRegistration { code: Option<u16>, reason: String },
    /// The connection is closed; the robot has already seen [`Event::Closed`](crate::Event::Closed)
    /// or an error.
    #[error("the connection is closed")]
    Closed,
    /// The server did not answer in time.
    #[error("timed out waiting for the server")]
    Timeout,
}

impl RobotError {
    /// The HTTP status of a refused upgrade (e.g. 401 when the server wants a token).
    pub fn http_status(&self) -> Option<u16> {
        match self {
            RobotError::Connect(error) => match error.as_ref() {
                tungstenite::Error::Http(response) => Some(response.status().as_u16()),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn socket(error: tungstenite::Error) -> RobotError {
        match error {
            tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::SendAfterClosing) => {
                RobotError::Closed
            }
            other => RobotError::Socket(Box::new(other)),
        }
    }
}
