//! What can stop the harness itself (as opposed to a fault whose pass rule fails, which is a
//! result, not an error).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Msg(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP request: {0}")]
    HttpRequest(#[from] hyper::http::Error),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("database connection: {0}")]
    DbConnect(#[from] diesel::ConnectionError),
    #[error("robot: {0}")]
    Robot(#[from] rpa_robot::RobotError),
    #[error("a background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    pub fn msg(text: impl Into<String>) -> Error {
        Error::Msg(text.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `bail!("...")`: return an [`Error::Msg`] from the current function.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::msg(format!($($arg)*)))
    };
}
