//! The one error type of the tool: something made a scenario impossible to run.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A message for the operator (a missing option, a server that did not start, ...).
    #[error("{0}")]
    Msg(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
}

impl Error {
    pub fn msg(text: impl Into<String>) -> Error {
        Error::Msg(text.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `Err(Error::Msg(format!(...)))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Msg(format!($($arg)*)))
    };
}
