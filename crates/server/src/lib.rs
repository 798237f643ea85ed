#![doc = include_str!("../README.md")]

mod app;
pub mod auth;
pub mod config;
mod db;
mod dispatch;
mod instance;
mod listener;
pub mod logging;
mod metrics;
mod package_files;
mod percent;
mod problem;
mod recurring;
mod rest;
mod retention;
mod ui;
mod views;
mod ws;

pub use app::{Server, StartError};
pub use config::{Config, Database, Limits};
