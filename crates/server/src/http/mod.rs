//! The HTTP edge: the accept loop on one port, the robot WebSocket, the REST API, access
//! control, problem documents and the JSON views of stored records.

pub(crate) mod auth;
pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod methods;
pub(crate) mod metrics;
pub(crate) mod percent;
pub(crate) mod problem;
pub(crate) mod rest;
pub(crate) mod robot_token;
pub(crate) mod ui;
pub(crate) mod views;
pub(crate) mod ws;
